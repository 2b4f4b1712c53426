//! Unpacking untrusted tar.gz archives (app packages, buildpacks).
//!
//! Every entry is checked before anything is written for it:
//! - its path is relative and has no `..` (the "zip slip" family, e.g. CVE-2018-1002200);
//! - no entry goes through a symlink that the archive made earlier: a symlink may only be
//!   a leaf, so a later entry cannot be written through it (the "symlink, then a file
//!   beneath it" trick of node-tar's CVE-2021-32803);
//! - a name keeps the type it was first given (a folder stays a folder, a symlink is never
//!   redefined), so nothing checked against one meaning of a path meets another later
//!   (node-tar's CVE-2021-37701 and CVE-2021-37712 replaced folders with links);
//! - a symlink's target, walked from the link's own folder, stays inside the archive root,
//!   is not absolute and leads through no other symlink of the archive, before or after
//!   (`c -> .` then `x -> c/..` looks inside but leads out);
//! - a hardlink names a regular file already unpacked from the same archive;
//! - devices, fifos and sockets are dropped; setuid, setgid and sticky bits are cleared;
//! - entry count, total size and path length are bounded (a gzip bomb stops at the
//!   size bound), GNU long-name and PAX headers are read here with a bound of their own
//!   (the tar crate would read them whole), and so is the work of checking paths.
//!
//! [`scan`] applies the same checks without writing, so an upload can be refused before
//! it is stored; [`seal`] applies them to the plain tar a staging container packed, and
//! stores exactly what it checked, gzipped. [`unpack`] writes through a [`Tree`]: every path is resolved beneath the
//! target folder with no symlink followed, so even an archive the checks missed, or a
//! folder that already held links, cannot make it write elsewhere. On error the caller
//! removes the folder, so nothing half-written is ever used.

use std::collections::{HashMap, HashSet};
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

use crate::tree::{Kind, Tree};

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("the archive is not a valid tar.gz: {0}")]
    Corrupt(#[source] io::Error),
    #[error("archive entry {path:?} is refused: {reason}")]
    Unsafe { path: String, reason: &'static str },
    #[error("the archive has more than {0} entries; leave build output and dependencies out of the upload (see .paasignore)")]
    TooManyEntries(usize),
    #[error("the archive unpacks to more than {0} MiB; leave build output and dependencies out of the upload (see .paasignore)")]
    TooLarge(u64),
    #[error("the archive's paths are too many or too deep to check; leave build output and dependencies out of the upload (see .paasignore)")]
    TooComplex,
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// What one archive may hold.
#[derive(Debug, Clone, Copy)]
pub struct ArchivePolicy {
    pub max_entries: usize,
    pub max_bytes: u64,
    /// Allow symlinks to any target. Unpacking never writes through a symlink, so such
    /// links are harmless to the host; they are allowed in droplets, where they resolve
    /// inside the container (a Python venv links `bin/python3` to `/usr/bin/python3`),
    /// and refused in uploads, where they point at the uploader's own machine.
    pub symlinks_anywhere: bool,
}

impl ArchivePolicy {
    /// For app packages and buildpacks that users upload.
    pub fn upload() -> Self {
        ArchivePolicy {
            max_entries: 100_000,
            max_bytes: 1 << 30,
            symlinks_anywhere: false,
        }
    }

    /// For droplets, which buildpacks made.
    pub fn droplet() -> Self {
        ArchivePolicy {
            max_entries: 1_000_000,
            max_bytes: 4 << 30,
            symlinks_anywhere: true,
        }
    }

    /// The most bytes a plain tar within this policy may take: its content, and for each
    /// entry a header, padding, and a long-name header with its block.
    pub fn max_tar_bytes(&self) -> u64 {
        let per_entry = 4 * 512;
        self.max_bytes
            .saturating_add(self.max_entries as u64 * per_entry)
            .saturating_add(1024)
    }
}

/// What an archive held.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ArchiveStats {
    pub entries: usize,
    pub bytes: u64,
    /// Devices, fifos and other entries that were left out.
    pub dropped: usize,
}

/// Checks every entry of a tar.gz without writing anything.
pub fn scan(reader: impl Read, limits: ArchivePolicy) -> Result<ArchiveStats, ArchiveError> {
    walk(flate2::read::GzDecoder::new(reader), limits, None)
}

/// Checks the plain (uncompressed) tar at `tar_path` as [`scan`] does and, if it passes,
/// writes it gzipped to `out` (synced). A staging container packs a droplet or a build
/// cache as a plain tar; compressing it here, with zlib-rs, is faster than `gzip -1` in
/// the container was, and the check reads no gzip.
///
/// One pass: exactly the bytes the check read are compressed, then an end-of-archive
/// marker of the platform's own. Whatever the container wrote after the archive's first
/// zero block, which the check never reads, is not stored (`tar --ignore-zeros` would
/// read it). Past `deadline` the sealing stops with an error. On any error `out` is
/// removed.
pub fn seal(
    tar_path: &Path,
    out: &Path,
    limits: ArchivePolicy,
    deadline: std::time::Instant,
) -> Result<ArchiveStats, ArchiveError> {
    let sealed = seal_into(tar_path, out, limits, deadline);
    if sealed.is_err() {
        let _ = std::fs::remove_file(out);
    }
    sealed
}

fn seal_into(
    tar_path: &Path,
    out: &Path,
    limits: ArchivePolicy,
    deadline: std::time::Instant,
) -> Result<ArchiveStats, ArchiveError> {
    let write_err = |source| ArchiveError::Write {
        path: out.to_path_buf(),
        source,
    };
    let packed = std::fs::File::open(tar_path).map_err(ArchiveError::Corrupt)?;
    let file = std::fs::File::create(out).map_err(write_err)?;
    // Level 2 packs the tar of a 13 MB Python droplet as small as `gzip -1` did (3.9
    // against 4.1 MB) in 82 ms against its 143. Level 1 takes 52 ms but a fifth more
    // bytes, which every cell that runs the droplet fetches.
    let gz = flate2::write::GzEncoder::new(io::BufWriter::new(file), flate2::Compression::new(2));
    let mut tee = Tee {
        from: io::BufReader::new(packed),
        to: gz,
        failed: None,
        deadline,
    };
    let checked = walk(&mut tee, limits, None);
    if let Some(e) = tee.failed.take() {
        return Err(write_err(e));
    }
    let stats = checked?;
    // The tar crate stops at the first of the two zero blocks that end an archive.
    let mut gz = tee.to;
    io::Write::write_all(&mut gz, &[0; 1024]).map_err(write_err)?;
    let file = gz
        .finish()
        .and_then(|w| w.into_inner().map_err(io::IntoInnerError::into_error))
        .map_err(write_err)?;
    file.sync_all().map_err(write_err)?;
    Ok(stats)
}

/// Hands on what it reads, and writes the same bytes to `to`.
struct Tee<R, W> {
    from: R,
    to: W,
    /// Why writing failed or stopped; reading fails from then on.
    failed: Option<io::Error>,
    deadline: std::time::Instant,
}

impl<R: Read, W: io::Write> Read for Tee<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.failed.is_none() && std::time::Instant::now() > self.deadline {
            self.failed = Some(io::Error::new(
                io::ErrorKind::TimedOut,
                "the staging's time ran out while its archive was stored",
            ));
        }
        if self.failed.is_some() {
            return Err(io::Error::other("the archive could not be stored"));
        }
        let n = self.from.read(buf)?;
        if let Err(e) = self.to.write_all(&buf[..n]) {
            self.failed = Some(e);
            return Err(io::Error::other("the archive could not be stored"));
        }
        Ok(n)
    }
}

/// Unpacks a tar.gz into the empty folder `dest`, giving every file to `owner` (uid, gid).
pub fn unpack(
    reader: impl Read,
    dest: &Path,
    limits: ArchivePolicy,
    owner: Option<(u32, u32)>,
) -> Result<ArchiveStats, ArchiveError> {
    walk(
        flate2::read::GzDecoder::new(reader),
        limits,
        Some((dest, owner)),
    )
}

const MAX_PATH_BYTES: usize = 4095;

fn unsafe_entry(path: &Path, reason: &'static str) -> ArchiveError {
    ArchiveError::Unsafe {
        path: path.to_string_lossy().chars().take(200).collect(),
        reason,
    }
}

/// The most one GNU long-name or long-link entry, or one PAX header, may hold. The tar
/// crate would read such an entry whole, whatever size it claims, so a small gzip bomb in
/// one header could make paasd allocate without bound: they are read here instead.
const MAX_META_BYTES: u64 = 64 << 10;

/// An archive member with its path and link target resolved from long-name and PAX
/// headers.
pub(crate) struct Member {
    pub path: PathBuf,
    pub link: Option<PathBuf>,
}

fn path_from(bytes: &[u8]) -> PathBuf {
    use std::os::unix::ffi::OsStrExt;
    let bytes = bytes.strip_suffix(b"\0").unwrap_or(bytes);
    PathBuf::from(std::ffi::OsStr::from_bytes(bytes))
}

/// Calls `each` with every member of a tar stream (not the long-name and PAX headers,
/// which are applied to the member after them), each read with a bound.
pub(crate) fn for_each_member<T: Read>(
    tar_stream: T,
    mut each: impl FnMut(Member, &mut tar::Entry<'_, T>) -> Result<(), ArchiveError>,
) -> Result<(), ArchiveError> {
    let mut archive = tar::Archive::new(tar_stream);
    let (mut long_path, mut long_link): (Option<Vec<u8>>, Option<Vec<u8>>) = (None, None);
    for entry in archive.entries().map_err(ArchiveError::Corrupt)?.raw(true) {
        let mut entry = entry.map_err(ArchiveError::Corrupt)?;
        let kind = entry.header().entry_type();
        let meta = matches!(
            kind,
            tar::EntryType::GNULongName
                | tar::EntryType::GNULongLink
                | tar::EntryType::XHeader
                | tar::EntryType::XGlobalHeader
        );
        if meta {
            let size = entry.header().size().map_err(ArchiveError::Corrupt)?;
            if size > MAX_META_BYTES {
                return Err(ArchiveError::Unsafe {
                    path: String::from_utf8_lossy(&entry.path_bytes())
                        .chars()
                        .take(200)
                        .collect(),
                    reason: "it is an extended header of more than 64 KiB",
                });
            }
            let mut data = Vec::new();
            (&mut entry)
                .take(MAX_META_BYTES)
                .read_to_end(&mut data)
                .map_err(ArchiveError::Corrupt)?;
            match kind {
                tar::EntryType::GNULongName => long_path = Some(data),
                tar::EntryType::GNULongLink => long_link = Some(data),
                tar::EntryType::XHeader => {
                    for ext in tar::PaxExtensions::new(&data) {
                        let ext = ext.map_err(ArchiveError::Corrupt)?;
                        match ext.key_bytes() {
                            b"path" => long_path = Some(ext.value_bytes().to_vec()),
                            b"linkpath" => long_link = Some(ext.value_bytes().to_vec()),
                            // A size beyond the header's (files of 8 GiB and more) or a
                            // sparse map would change how the data is read.
                            b"size" => {
                                return Err(ArchiveError::TooLarge(u64::MAX >> 20));
                            }
                            k if k.starts_with(b"GNU.sparse") => {
                                return Err(unsafe_entry(
                                    &path_from(&entry.path_bytes()),
                                    "it is a sparse file; pack it without --sparse",
                                ));
                            }
                            _ => {}
                        }
                    }
                }
                _ => {} // global PAX headers change nothing that is used here
            }
            continue;
        }
        let path = match long_path.take() {
            Some(p) => path_from(&p),
            None => path_from(&entry.path_bytes()),
        };
        let link = match long_link.take() {
            Some(l) => Some(path_from(&l)),
            None => entry.link_name_bytes().map(|l| path_from(&l)),
        };
        each(Member { path, link }, &mut entry)?;
    }
    Ok(())
}

/// Makes an entry path relative and plain: `./a/b/` → `a/b`. Refuses anything else.
fn clean_path(raw: &Path) -> Result<Option<PathBuf>, ArchiveError> {
    if raw.as_os_str().len() > MAX_PATH_BYTES {
        return Err(unsafe_entry(raw, "its path is too long"));
    }
    use std::os::unix::ffi::OsStrExt;
    if raw.as_os_str().as_bytes().contains(&0) {
        return Err(unsafe_entry(raw, "its path contains a NUL byte"));
    }
    let mut out = PathBuf::new();
    for c in raw.components() {
        match c {
            Component::Normal(p) if p.len() > 255 => {
                return Err(unsafe_entry(
                    raw,
                    "a name in its path is longer than 255 bytes",
                ));
            }
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            Component::ParentDir => {
                return Err(unsafe_entry(raw, "its path contains '..'"));
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(unsafe_entry(raw, "its path is absolute"));
            }
        }
    }
    Ok(if out.as_os_str().is_empty() {
        None
    } else {
        Some(out)
    })
}

/// What the archive has put at each name so far. A name keeps its type: a later entry of
/// another type under the same name is refused, so a link checked against one meaning of
/// a path can never see another.
struct Seen {
    kinds: HashMap<PathBuf, Kind>,
    /// Every path that a symlink's target walks through (lexically), so that no later
    /// symlink can be put on it and change where the earlier one leads.
    walked: HashSet<PathBuf>,
    /// What checking may still cost: path bytes hashed, and kept.
    work_left: u64,
    keep_left: u64,
}

/// Path bytes the checks of one archive may hash: a path of depth D and length L costs
/// D × L (each of its folders is looked up). Far above what real trees need (100,000
/// entries 10 deep with 100-byte paths take 100 MB), and a bound on archives built to
/// make the checker slow.
const CHECK_WORK: u64 = 256 << 20;
/// Path bytes the checks of one archive may keep.
const CHECK_KEEP: u64 = 128 << 20;

impl Default for Seen {
    fn default() -> Self {
        Seen {
            kinds: HashMap::new(),
            walked: HashSet::new(),
            work_left: CHECK_WORK,
            keep_left: CHECK_KEEP,
        }
    }
}

impl Seen {
    fn charge(&mut self, work: u64, keep: u64) -> Result<(), ArchiveError> {
        match (
            self.work_left.checked_sub(work),
            self.keep_left.checked_sub(keep),
        ) {
            (Some(w), Some(k)) => {
                (self.work_left, self.keep_left) = (w, k);
                Ok(())
            }
            _ => Err(ArchiveError::TooComplex),
        }
    }

    /// Checks that `path` may be written as `kind`, then records it (and its folders).
    fn claim(&mut self, raw: &Path, path: &Path, kind: Kind) -> Result<(), ArchiveError> {
        let len = path.as_os_str().len() as u64;
        self.charge(len * path.components().count() as u64, 0)?;
        for a in path
            .ancestors()
            .skip(1)
            .filter(|a| !a.as_os_str().is_empty())
        {
            match self.kinds.get(a) {
                Some(Kind::Symlink) => {
                    return Err(unsafe_entry(
                        raw,
                        "it goes through a symlink in the same archive",
                    ))
                }
                Some(Kind::File) | Some(Kind::Other) => {
                    return Err(unsafe_entry(
                        raw,
                        "its folder is a file earlier in the same archive",
                    ))
                }
                Some(Kind::Dir) | None => {}
            }
        }
        match (self.kinds.get(path), kind) {
            (None, _) | (Some(Kind::Dir), Kind::Dir) | (Some(Kind::File), Kind::File) => {}
            (Some(Kind::Symlink), Kind::Symlink) => {
                return Err(unsafe_entry(
                    raw,
                    "it redefines a symlink of the same archive",
                ))
            }
            _ => {
                return Err(unsafe_entry(
                    raw,
                    "its name was used earlier in the archive for another type of entry",
                ))
            }
        }
        if kind == Kind::Symlink && self.walked.contains(path) {
            return Err(unsafe_entry(
                raw,
                "it is a symlink where an earlier symlink's target leads through",
            ));
        }
        // Folders from the nearest up, until one is known: those above it are too.
        for a in path
            .ancestors()
            .skip(1)
            .filter(|a| !a.as_os_str().is_empty())
        {
            if self.kinds.contains_key(a) {
                break;
            }
            self.charge(0, a.as_os_str().len() as u64)?;
            self.kinds.insert(a.to_path_buf(), Kind::Dir);
        }
        if !self.kinds.contains_key(path) {
            self.charge(0, len)?;
        }
        self.kinds.insert(path.to_path_buf(), kind);
        Ok(())
    }

    /// Follows a symlink's target from the link's folder, lexically: refuses a target
    /// that leaves the archive or leads through another symlink of it, and records the
    /// paths it walks through.
    fn walk_target(&mut self, raw: &Path, link: &Path, target: &Path) -> Result<(), ArchiveError> {
        if target.is_absolute() {
            return Err(unsafe_entry(raw, "it is a symlink to an absolute path"));
        }
        if target.as_os_str().len() > MAX_PATH_BYTES {
            return Err(unsafe_entry(raw, "its symlink target is too long"));
        }
        let reach = (link.as_os_str().len() + target.as_os_str().len()) as u64;
        self.charge(reach * target.components().count() as u64, 0)?;
        let mut at: PathBuf = link.parent().map(Path::to_path_buf).unwrap_or_default();
        let mut walked = Vec::new();
        for c in target.components() {
            match c {
                Component::Normal(p) => {
                    at.push(p);
                    if self.kinds.get(&at) == Some(&Kind::Symlink) || at == link {
                        return Err(unsafe_entry(
                            raw,
                            "it is a symlink whose target leads through another symlink",
                        ));
                    }
                    walked.push(at.clone());
                }
                Component::CurDir => {}
                Component::ParentDir => {
                    if !at.pop() {
                        return Err(unsafe_entry(
                            raw,
                            "it is a symlink that points outside the archive",
                        ));
                    }
                }
                Component::RootDir | Component::Prefix(_) => {
                    return Err(unsafe_entry(raw, "it is a symlink to an absolute path"))
                }
            }
        }
        for w in walked {
            if !self.walked.contains(&w) {
                self.charge(0, w.as_os_str().len() as u64)?;
                self.walked.insert(w);
            }
        }
        Ok(())
    }
}

fn walk(
    tar_stream: impl Read,
    limits: ArchivePolicy,
    dest: Option<(&Path, Option<(u32, u32)>)>,
) -> Result<ArchiveStats, ArchiveError> {
    let tree = match dest {
        Some((d, _)) => Some(Tree::open(d).map_err(|source| ArchiveError::Write {
            path: d.to_path_buf(),
            source,
        })?),
        None => None,
    };
    let owner = dest.and_then(|(_, o)| o);
    let mut stats = ArchiveStats::default();
    let mut seen = Seen::default();
    // Folders this unpack made or found, so that the folder of many files is made (or
    // checked) once, not once per file and per level above it.
    let mut made = HashSet::new();
    for_each_member(tar_stream, |member, entry| {
        stats.entries += 1;
        if stats.entries > limits.max_entries {
            return Err(ArchiveError::TooManyEntries(limits.max_entries));
        }
        let raw = member.path;
        let Some(path) = clean_path(&raw)? else {
            return Ok(()); // the archive root itself, "./"
        };
        let kind = entry.header().entry_type();
        let mode = entry.header().mode().map_err(ArchiveError::Corrupt)? & 0o777;
        let write_err = |source| ArchiveError::Write {
            path: path.clone(),
            source,
        };
        match kind {
            tar::EntryType::Directory => {
                seen.claim(&raw, &path, Kind::Dir)?;
                if let Some(t) = &tree {
                    mkdir_all(t, &mut made, &path).map_err(write_err)?;
                    t.chmod_dir(&path, mode | 0o700).map_err(write_err)?;
                }
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                seen.claim(&raw, &path, Kind::File)?;
                let size = entry.header().size().map_err(ArchiveError::Corrupt)?;
                if stats.bytes.saturating_add(size) > limits.max_bytes {
                    return Err(ArchiveError::TooLarge(limits.max_bytes >> 20));
                }
                let budget = limits.max_bytes - stats.bytes;
                let read = match &tree {
                    Some(t) => {
                        mkdir_parent(t, &mut made, &path).map_err(write_err)?;
                        let mut f = t.create(&path, mode).map_err(write_err)?;
                        if let Some((uid, gid)) = owner {
                            // Through the open file: no second lookup of its path.
                            std::os::unix::fs::fchown(&f, Some(uid), Some(gid))
                                .map_err(write_err)?;
                        }
                        io::copy(&mut entry.take(budget + 1), &mut f)
                            .map_err(ArchiveError::Corrupt)?
                    }
                    None => io::copy(&mut entry.take(budget + 1), &mut io::sink())
                        .map_err(ArchiveError::Corrupt)?,
                };
                if read > budget {
                    return Err(ArchiveError::TooLarge(limits.max_bytes >> 20));
                }
                stats.bytes += read;
            }
            tar::EntryType::Symlink => {
                let link = member
                    .link
                    .ok_or_else(|| unsafe_entry(&raw, "it is a symlink with no target"))?;
                if link.as_os_str().is_empty() {
                    return Err(unsafe_entry(&raw, "it is a symlink with no target"));
                }
                // What the kernel would refuse to make, refused by the scan too (under
                // every policy), so that a scan never passes what unpacking cannot do.
                {
                    use std::os::unix::ffi::OsStrExt;
                    let bytes = link.as_os_str().as_bytes();
                    if bytes.len() > MAX_PATH_BYTES {
                        return Err(unsafe_entry(&raw, "its symlink target is too long"));
                    }
                    if bytes.contains(&0) {
                        return Err(unsafe_entry(&raw, "its symlink target contains a NUL byte"));
                    }
                }
                seen.claim(&raw, &path, Kind::Symlink)?;
                if !limits.symlinks_anywhere {
                    seen.walk_target(&raw, &path, &link)?;
                }
                if let Some(t) = &tree {
                    mkdir_parent(t, &mut made, &path).map_err(write_err)?;
                    t.symlink(&path, &link).map_err(write_err)?;
                }
            }
            tar::EntryType::Link => {
                let link = member
                    .link
                    .ok_or_else(|| unsafe_entry(&raw, "it is a hardlink with no target"))?;
                let source = clean_path(&link)?
                    .filter(|s| seen.kinds.get(s) == Some(&Kind::File) && *s != path)
                    .ok_or_else(|| unsafe_entry(&raw, "it is a hardlink to something other than a file earlier in the archive"))?;
                seen.claim(&raw, &path, Kind::File)?;
                if let Some(t) = &tree {
                    mkdir_parent(t, &mut made, &path).map_err(write_err)?;
                    t.hard_link(&source, &path).map_err(write_err)?;
                }
            }
            tar::EntryType::GNUSparse => {
                return Err(unsafe_entry(
                    &raw,
                    "it is a sparse file; pack it without --sparse",
                ))
            }
            _ => {
                stats.dropped += 1;
                return Ok(());
            }
        }
        let file = matches!(kind, tar::EntryType::Regular | tar::EntryType::Continuous);
        if let (Some(t), Some((uid, gid)), false) = (&tree, owner, file) {
            t.chown(&path, uid, gid).map_err(write_err)?;
        }
        Ok(())
    })?;
    Ok(stats)
}

/// Makes the folders above `path` that no entry named (archives may leave them out).
fn mkdir_parent(tree: &Tree, made: &mut HashSet<PathBuf>, path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => mkdir_all(tree, made, p),
        _ => Ok(()),
    }
}

/// Makes the folder `path` and those above it, unless this unpack already has (`made`).
/// Skipping a known folder skips no check: every later operation resolves its path
/// again, refusing symlinks, and the archive cannot put anything but a folder at a name
/// it used for one ([`Seen::claim`]).
fn mkdir_all(tree: &Tree, made: &mut HashSet<PathBuf>, path: &Path) -> io::Result<()> {
    if made.contains(path) {
        return Ok(());
    }
    tree.mkdir_all(path, 0o755)?;
    for a in path.ancestors().take_while(|a| !a.as_os_str().is_empty()) {
        if !made.insert(a.to_path_buf()) {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlink_targets_are_walked_from_the_links_folder() {
        let p = Path::new;
        let walk =
            |link: &str, target: &str| Seen::default().walk_target(p(link), p(link), p(target));
        assert!(walk("a/l", "b").is_ok());
        assert!(walk("a/l", "../b").is_ok());
        assert!(walk("a/l", "../../b").is_err());
        assert!(walk("l", "/etc/passwd").is_err());
        assert!(walk("l", "..").is_err());
        assert!(walk("l", "l/x").is_err(), "a link through itself");
    }

    #[test]
    fn paths_are_cleaned_or_refused() {
        assert_eq!(
            clean_path(Path::new("./a/b/")).unwrap(),
            Some(PathBuf::from("a/b"))
        );
        assert_eq!(clean_path(Path::new("./")).unwrap(), None);
        assert!(clean_path(Path::new("a/../../b")).is_err());
        assert!(clean_path(Path::new("/etc/passwd")).is_err());
    }
}

/// The archive formats uploads may come in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    TarGz,
    Zip,
}

impl Format {
    /// Tells the format from an archive's first bytes.
    pub fn sniff(head: &[u8]) -> Option<Format> {
        match head {
            [0x1f, 0x8b, ..] => Some(Format::TarGz),
            [b'P', b'K', 3, 4, ..] | [b'P', b'K', 5, 6, ..] => Some(Format::Zip),
            _ => None,
        }
    }
}

/// Rewrites a zip archive as a tar.gz, entry by entry, so that it is checked and unpacked
/// by the same code as every other archive. Paths that are absolute or contain `..` are
/// refused here already; symlinks (a Unix mode of `S_IFLNK`) stay symlinks.
pub fn zip_to_tar_gz(
    input: impl Read + std::io::Seek,
    out: impl std::io::Write,
    limits: ArchivePolicy,
) -> Result<(), ArchiveError> {
    let corrupt = |e: zip::result::ZipError| {
        ArchiveError::Corrupt(io::Error::other(format!("not a valid zip: {e}")))
    };
    let mut zip = zip::ZipArchive::new(input).map_err(corrupt)?;
    if zip.len() > limits.max_entries {
        return Err(ArchiveError::TooManyEntries(limits.max_entries));
    }
    let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(
        out,
        flate2::Compression::fast(),
    ));
    let mut total: u64 = 0;
    for i in 0..zip.len() {
        let mut f = zip.by_index(i).map_err(corrupt)?;
        let name = f.name().to_string();
        let path = clean_path(Path::new(&name))?;
        let Some(path) = path else { continue };
        let mode = f
            .unix_mode()
            .unwrap_or(if f.is_dir() { 0o40755 } else { 0o100644 });
        let mut h = tar::Header::new_gnu();
        h.set_mode(mode & 0o777);
        let res = if mode & 0o170000 == 0o120000 {
            let mut target = String::new();
            (&mut f)
                .take(4096)
                .read_to_string(&mut target)
                .map_err(ArchiveError::Corrupt)?;
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_size(0);
            tar.append_link(&mut h, &path, &target)
        } else if f.is_dir() {
            h.set_entry_type(tar::EntryType::Directory);
            h.set_size(0);
            tar.append_data(&mut h, &path, io::empty())
        } else {
            total = total.saturating_add(f.size());
            if total > limits.max_bytes {
                return Err(ArchiveError::TooLarge(limits.max_bytes >> 20));
            }
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(f.size());
            tar.append_data(&mut h, &path, &mut f)
        };
        res.map_err(|e| unsafe_entry_owned(&name, e))?;
    }
    let gz = tar.into_inner().map_err(ArchiveError::Corrupt)?;
    gz.finish().map_err(ArchiveError::Corrupt)?;
    Ok(())
}

fn unsafe_entry_owned(name: &str, e: io::Error) -> ArchiveError {
    if e.kind() == io::ErrorKind::InvalidInput || e.kind() == io::ErrorKind::Other {
        ArchiveError::Unsafe {
            path: name.chars().take(200).collect(),
            reason: "the tar format cannot hold it safely (absolute path, '..' or a name too long)",
        }
    } else {
        ArchiveError::Corrupt(e)
    }
}

/// Rebuilds a package whose upload left out files the platform already holds: copies
/// every entry of `uploaded` but its `paas_api::RESOURCES_ENTRY` list, then adds each
/// listed file from `held` (its SHA-256 → a file of that content). Listed paths meet the
/// same rules as entries; the result must still be checked with [`scan`]. Returns the
/// number of files filled in.
pub fn fill_in_resources(
    uploaded: impl Read,
    out: impl std::io::Write,
    held: impl Fn(&str) -> Option<PathBuf>,
    limits: ArchivePolicy,
) -> Result<usize, ArchiveError> {
    let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(
        out,
        flate2::Compression::fast(),
    ));
    let mut listed: Vec<paas_api::ResourceEntry> = Vec::new();
    // The copy is bounded as a scan would be: it runs before the result is scanned.
    let (mut entries, mut bytes) = (0usize, 0u64);
    for_each_member(flate2::read::GzDecoder::new(uploaded), |member, entry| {
        entries += 1;
        if entries > limits.max_entries {
            return Err(ArchiveError::TooManyEntries(limits.max_entries));
        }
        let raw = member.path;
        let Some(path) = clean_path(&raw)? else {
            return Ok(());
        };
        if path == Path::new(paas_api::RESOURCES_ENTRY) {
            let mut json = Vec::new();
            entry
                .take(64 << 20)
                .read_to_end(&mut json)
                .map_err(ArchiveError::Corrupt)?;
            listed = serde_json::from_slice(&json).map_err(|e| {
                ArchiveError::Corrupt(io::Error::other(format!(
                    "{}: {e}",
                    paas_api::RESOURCES_ENTRY
                )))
            })?;
            return Ok(());
        }
        let mut h = entry.header().clone();
        bytes = bytes.saturating_add(h.size().map_err(ArchiveError::Corrupt)?);
        if bytes > limits.max_bytes {
            return Err(ArchiveError::TooLarge(limits.max_bytes >> 20));
        }
        let kind = h.entry_type();
        let res = match kind {
            tar::EntryType::Symlink | tar::EntryType::Link => {
                let link = member.link.unwrap_or_default();
                tar.append_link(&mut h, &path, &link)
            }
            _ => tar.append_data(&mut h, &path, entry),
        };
        res.map_err(|e| unsafe_entry_owned(&raw.to_string_lossy(), e))
    })?;
    if listed.len() > limits.max_entries {
        return Err(ArchiveError::TooManyEntries(limits.max_entries));
    }
    for r in &listed {
        let path = clean_path(Path::new(&r.path))?
            .ok_or_else(|| unsafe_entry(Path::new(&r.path), "it names no file"))?;
        let file = held(&r.sha256).ok_or_else(|| {
            unsafe_entry(
                &path,
                "it names content the platform does not hold; push again",
            )
        })?;
        let f = std::fs::File::open(&file).map_err(ArchiveError::Corrupt)?;
        let size = f.metadata().map_err(ArchiveError::Corrupt)?.len();
        if size != r.size {
            return Err(unsafe_entry(
                &path,
                "its size differs from the content the platform holds",
            ));
        }
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(r.mode & 0o777);
        h.set_size(size);
        tar.append_data(&mut h, &path, f)
            .map_err(|e| unsafe_entry_owned(&r.path, e))?;
    }
    let gz = tar.into_inner().map_err(ArchiveError::Corrupt)?;
    gz.finish().map_err(ArchiveError::Corrupt)?;
    Ok(listed.len())
}

/// Calls `each(size, content)` for every regular file of a tar.gz, in order.
pub fn for_each_file(
    reader: impl Read,
    mut each: impl FnMut(u64, &mut dyn Read) -> Result<(), ArchiveError>,
) -> Result<(), ArchiveError> {
    for_each_member(flate2::read::GzDecoder::new(reader), |_, entry| {
        if entry.header().entry_type() == tar::EntryType::Regular {
            let size = entry.header().size().map_err(ArchiveError::Corrupt)?;
            each(size, entry)?;
        }
        Ok(())
    })
}
