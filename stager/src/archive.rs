//! Unpacking untrusted tar.gz archives (app packages, buildpacks).
//!
//! Every entry is checked before anything is written for it:
//! - its path is relative and has no `..` (the "zip slip" family, e.g. CVE-2018-1002200);
//! - no entry goes through a symlink that the archive made earlier: a symlink may only be
//!   a leaf, so a later entry cannot be written through it (the "symlink, then a file
//!   beneath it" trick of node-tar's CVE-2021-32803);
//! - a symlink's target, taken from the link's own folder, stays inside the archive root,
//!   and may not be absolute;
//! - a hardlink names a regular file already unpacked from the same archive;
//! - devices, fifos and sockets are dropped; setuid, setgid and sticky bits are cleared;
//! - entry count, total size and path length are bounded (a gzip bomb stops at the
//!   size bound).
//!
//! [`scan`] applies the same checks without writing, so an upload can be refused before
//! it is stored. [`unpack`] writes into a folder that must be empty; on error the caller
//! removes the folder, so nothing half-written is ever used.

use std::collections::HashSet;
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Component, Path, PathBuf};

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
    walk(reader, limits, None)
}

/// Unpacks a tar.gz into the empty folder `dest`, giving every file to `owner` (uid, gid).
pub fn unpack(
    reader: impl Read,
    dest: &Path,
    limits: ArchivePolicy,
    owner: Option<(u32, u32)>,
) -> Result<ArchiveStats, ArchiveError> {
    walk(reader, limits, Some((dest, owner)))
}

const MAX_PATH_BYTES: usize = 4096;

fn unsafe_entry(path: &Path, reason: &'static str) -> ArchiveError {
    ArchiveError::Unsafe {
        path: path.to_string_lossy().chars().take(200).collect(),
        reason,
    }
}

/// Makes an entry path relative and plain: `./a/b/` → `a/b`. Refuses anything else.
fn clean_path(raw: &Path) -> Result<Option<PathBuf>, ArchiveError> {
    if raw.as_os_str().len() > MAX_PATH_BYTES {
        return Err(unsafe_entry(raw, "its path is too long"));
    }
    let mut out = PathBuf::new();
    for c in raw.components() {
        match c {
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

/// Resolves a symlink target lexically from the link's folder; `None` if it leaves the root.
fn resolve_inside(link: &Path, target: &Path) -> Option<PathBuf> {
    if target.is_absolute() {
        return None;
    }
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
    if let Some(parent) = link.parent() {
        parts.extend(parent.components().map(|c| c.as_os_str()));
    }
    for c in target.components() {
        match c {
            Component::Normal(p) => parts.push(p),
            Component::CurDir => {}
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(parts.iter().collect())
}

fn walk(
    reader: impl Read,
    limits: ArchivePolicy,
    dest: Option<(&Path, Option<(u32, u32)>)>,
) -> Result<ArchiveStats, ArchiveError> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(reader));
    let mut stats = ArchiveStats::default();
    let mut symlinks: HashSet<PathBuf> = HashSet::new();
    let mut files: HashSet<PathBuf> = HashSet::new();
    for entry in archive.entries().map_err(ArchiveError::Corrupt)? {
        let mut entry = entry.map_err(ArchiveError::Corrupt)?;
        stats.entries += 1;
        if stats.entries > limits.max_entries {
            return Err(ArchiveError::TooManyEntries(limits.max_entries));
        }
        let raw = entry.path().map_err(ArchiveError::Corrupt)?.into_owned();
        let Some(path) = clean_path(&raw)? else {
            continue; // the archive root itself, "./"
        };
        if path.ancestors().skip(1).any(|a| symlinks.contains(a)) {
            return Err(unsafe_entry(
                &raw,
                "it goes through a symlink in the same archive",
            ));
        }
        let kind = entry.header().entry_type();
        let mode = entry.header().mode().map_err(ArchiveError::Corrupt)? & 0o777;
        let target = dest.map(|(d, _)| d.join(&path));
        match kind {
            tar::EntryType::Directory => {
                if let Some(t) = &target {
                    create_dir(t, mode | 0o700)?;
                }
            }
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                let size = entry.header().size().map_err(ArchiveError::Corrupt)?;
                if stats.bytes.saturating_add(size) > limits.max_bytes {
                    return Err(ArchiveError::TooLarge(limits.max_bytes >> 20));
                }
                match &target {
                    Some(t) => {
                        let written =
                            write_file(&mut entry, t, mode, limits.max_bytes - stats.bytes)?;
                        stats.bytes += written;
                    }
                    None => {
                        let read = io::copy(&mut (&mut entry).take(size), &mut io::sink())
                            .map_err(ArchiveError::Corrupt)?;
                        stats.bytes += read;
                    }
                }
                files.insert(path.clone());
            }
            tar::EntryType::Symlink => {
                let link = entry
                    .link_name()
                    .map_err(ArchiveError::Corrupt)?
                    .ok_or_else(|| unsafe_entry(&raw, "it is a symlink with no target"))?
                    .into_owned();
                if !limits.symlinks_anywhere && link.is_absolute() {
                    return Err(unsafe_entry(&raw, "it is a symlink to an absolute path"));
                }
                if !limits.symlinks_anywhere && resolve_inside(&path, &link).is_none() {
                    return Err(unsafe_entry(
                        &raw,
                        "it is a symlink that points outside the archive",
                    ));
                }
                if let Some(t) = &target {
                    prepare_parent(t)?;
                    remove_existing(t)?;
                    symlink(&link, t).map_err(|source| ArchiveError::Write {
                        path: t.clone(),
                        source,
                    })?;
                }
                symlinks.insert(path.clone());
            }
            tar::EntryType::Link => {
                let link = entry
                    .link_name()
                    .map_err(ArchiveError::Corrupt)?
                    .ok_or_else(|| unsafe_entry(&raw, "it is a hardlink with no target"))?
                    .into_owned();
                let source = clean_path(&link)?
                    .filter(|s| files.contains(s))
                    .ok_or_else(|| unsafe_entry(&raw, "it is a hardlink to something other than a file earlier in the archive"))?;
                if let (Some(t), Some((d, _))) = (&target, dest) {
                    prepare_parent(t)?;
                    remove_existing(t)?;
                    fs::hard_link(d.join(&source), t).map_err(|e| ArchiveError::Write {
                        path: t.clone(),
                        source: e,
                    })?;
                }
                files.insert(path.clone());
            }
            tar::EntryType::XHeader | tar::EntryType::XGlobalHeader => {}
            _ => {
                stats.dropped += 1;
                continue;
            }
        }
        if let (Some(t), Some((_, Some((uid, gid))))) = (&target, dest) {
            std::os::unix::fs::lchown(t, Some(uid), Some(gid)).map_err(|source| {
                ArchiveError::Write {
                    path: t.clone(),
                    source,
                }
            })?;
        }
    }
    Ok(stats)
}

fn create_dir(path: &Path, mode: u32) -> Result<(), ArchiveError> {
    let err = |source| ArchiveError::Write {
        path: path.to_path_buf(),
        source,
    };
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            remove_existing(path)?;
            fs::create_dir_all(path).map_err(err)?;
        }
        Err(_) => fs::create_dir_all(path).map_err(err)?,
    }
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(err)
}

fn prepare_parent(path: &Path) -> Result<(), ArchiveError> {
    if let Some(parent) = path.parent() {
        if !parent.is_dir() {
            fs::create_dir_all(parent).map_err(|source| ArchiveError::Write {
                path: parent.to_path_buf(),
                source,
            })?;
        }
    }
    Ok(())
}

/// A later entry replaces an earlier one of the same name; never write through it.
fn remove_existing(path: &Path) -> Result<(), ArchiveError> {
    let res = match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(_) => Ok(()),
    };
    res.map_err(|source| ArchiveError::Write {
        path: path.to_path_buf(),
        source,
    })
}

fn write_file(
    entry: &mut impl Read,
    path: &Path,
    mode: u32,
    budget: u64,
) -> Result<u64, ArchiveError> {
    prepare_parent(path)?;
    remove_existing(path)?;
    let err = |source| ArchiveError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(err)?;
    let written = io::copy(&mut entry.take(budget + 1), &mut f).map_err(ArchiveError::Corrupt)?;
    if written > budget {
        return Err(ArchiveError::TooLarge(budget >> 20));
    }
    f.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(err)?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlink_targets_resolve_from_the_links_folder() {
        let p = Path::new;
        assert_eq!(resolve_inside(p("a/l"), p("b")), Some(PathBuf::from("a/b")));
        assert_eq!(
            resolve_inside(p("a/l"), p("../b")),
            Some(PathBuf::from("b"))
        );
        assert_eq!(resolve_inside(p("a/l"), p("../../b")), None);
        assert_eq!(resolve_inside(p("l"), p("/etc/passwd")), None);
        assert_eq!(resolve_inside(p("l"), p("..")), None);
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
    let mut input = tar::Archive::new(flate2::read::GzDecoder::new(uploaded));
    let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(
        out,
        flate2::Compression::fast(),
    ));
    let mut listed: Vec<paas_api::ResourceEntry> = Vec::new();
    for entry in input.entries().map_err(ArchiveError::Corrupt)? {
        let mut entry = entry.map_err(ArchiveError::Corrupt)?;
        let raw = entry.path().map_err(ArchiveError::Corrupt)?.into_owned();
        let Some(path) = clean_path(&raw)? else {
            continue;
        };
        if path == Path::new(paas_api::RESOURCES_ENTRY) {
            let mut json = Vec::new();
            (&mut entry)
                .take(64 << 20)
                .read_to_end(&mut json)
                .map_err(ArchiveError::Corrupt)?;
            listed = serde_json::from_slice(&json).map_err(|e| {
                ArchiveError::Corrupt(io::Error::other(format!(
                    "{}: {e}",
                    paas_api::RESOURCES_ENTRY
                )))
            })?;
            continue;
        }
        let mut h = entry.header().clone();
        let kind = h.entry_type();
        let res = match kind {
            tar::EntryType::Symlink | tar::EntryType::Link => {
                let link = entry
                    .link_name()
                    .map_err(ArchiveError::Corrupt)?
                    .map(|l| l.into_owned())
                    .unwrap_or_default();
                tar.append_link(&mut h, &path, &link)
            }
            _ => tar.append_data(&mut h, &path, &mut entry),
        };
        res.map_err(|e| unsafe_entry_owned(&raw.to_string_lossy(), e))?;
    }
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
    let mut input = tar::Archive::new(flate2::read::GzDecoder::new(reader));
    for entry in input.entries().map_err(ArchiveError::Corrupt)? {
        let mut entry = entry.map_err(ArchiveError::Corrupt)?;
        if entry.header().entry_type() == tar::EntryType::Regular {
            let size = entry.header().size().map_err(ArchiveError::Corrupt)?;
            each(size, &mut entry)?;
        }
    }
    Ok(())
}
