//! Hostile tar.gz archives through the stager's unpacker (`paas_stager::archive`). The
//! input is read as a short list of entries (file, folder, symlink, hardlink, char device)
//! whose names and link targets are made of a few path pieces, `..`, `/` and absolute
//! paths to the sandbox among them, so the fuzzer meets the link tricks quickly. The
//! entries go into a tar.gz with their raw names (the tar crate's own path checks
//! bypassed), which is then, inside a fresh sandbox `O/S` holding `S/dest`, `S/dest2`
//! and a file `S/secret`, with each policy (upload, droplet):
//! - scanned and unpacked into the empty `S/dest`: both must accept it or both refuse it;
//! - cut in two where the input says, the first part unpacked into the empty `S/dest2`
//!   and the second over what the first left there (its links included); errors are fine.
//!
//! After every unpack, nothing has landed outside: `O` holds only `S`, `S` only `dest`,
//! `dest2` and `secret` (folders, not links), and `secret` is still the same file, with
//! its content, mode and owner and no second name. After an upload unpacked into an empty
//! folder, every symlink in it that resolves at all resolves inside it. A failed check
//! panics, with the entry list in the message. Run with `stager/fuzz/run.sh`.
#![no_main]

use std::fmt::Write as _;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use libfuzzer_sys::fuzz_target;
use paas_stager::archive::{self, ArchiveError, ArchivePolicy, ArchiveStats};

/// What names and link targets are made of, joined with `/`. `$S` and `$O` stand for the
/// absolute paths of the sandbox `S` and of its parent `O`.
const PIECES: [&str; 11] = [
    "a", "b", "c", ".", "..", "/", "x/y", "secret", "dest", "$S", "$O",
];
const MAX_ENTRIES: usize = 16;
const SECRET: &[u8] = b"host secret";
const SECRET_MODE: u32 = 0o640;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    File,
    Dir,
    Symlink,
    Hardlink,
    CharDevice,
}

const KINDS: [Kind; 5] = [
    Kind::File,
    Kind::Dir,
    Kind::Symlink,
    Kind::Hardlink,
    Kind::CharDevice,
];

/// One entry, its name and target as indexes into [`PIECES`].
struct Entry {
    kind: Kind,
    name: Vec<u8>,
    link: Vec<u8>,
    content: Vec<u8>,
}

/// Reads the input as: a byte for where to cut the list, then per entry a byte for its
/// kind, a byte for its sizes (bits 0-1: name pieces - 1; bits 2-4: target pieces mod 5,
/// for links; bits 5-6: content bytes, for files) and then those pieces and bytes. A missing
/// byte reads as 0.
fn decode(data: &[u8]) -> (u8, Vec<Entry>) {
    let mut rest = data.iter().copied();
    let cut = rest.next().unwrap_or(0);
    let mut entries = Vec::new();
    while entries.len() < MAX_ENTRIES {
        let Some(k) = rest.next() else { break };
        let kind = KINDS[usize::from(k) % KINDS.len()];
        let sizes = rest.next().unwrap_or(0);
        let mut pieces = |n: u8| -> Vec<u8> {
            (0..n)
                .map(|_| rest.next().unwrap_or(0) % PIECES.len() as u8)
                .collect()
        };
        let name = pieces(1 + (sizes & 3));
        let link = match kind {
            Kind::Symlink | Kind::Hardlink => pieces(((sizes >> 2) & 7) % 5),
            _ => Vec::new(),
        };
        let content = match kind {
            Kind::File => (0..(sizes >> 5) & 3)
                .map(|_| rest.next().unwrap_or(0))
                .collect(),
            _ => Vec::new(),
        };
        entries.push(Entry {
            kind,
            name,
            link,
            content,
        });
    }
    (cut, entries)
}

/// The path the pieces make, `$S` and `$O` replaced by `s` and `o`.
fn render(pieces: &[u8], s: &str, o: &str) -> String {
    pieces
        .iter()
        .map(|&i| match PIECES[usize::from(i)] {
            "$S" => s,
            "$O" => o,
            p => p,
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// The entry list as a reader can follow it (`$S`, `$O` left as such).
fn describe(entries: &[Entry]) -> String {
    let mut out = String::from("[");
    for (i, e) in entries.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        let name = render(&e.name, "$S", "$O");
        let _ = match e.kind {
            Kind::File => write!(out, "File({name:?}, {:?})", e.content),
            Kind::Dir => write!(out, "Dir({name:?})"),
            Kind::Symlink => write!(
                out,
                "Symlink({name:?} -> {:?})",
                render(&e.link, "$S", "$O")
            ),
            Kind::Hardlink => write!(
                out,
                "Hardlink({name:?} -> {:?})",
                render(&e.link, "$S", "$O")
            ),
            Kind::CharDevice => write!(out, "CharDevice({name:?})"),
        };
    }
    out.push(']');
    out
}

/// Copies `text` into a header field, cut to fit (an old-style header has 100 bytes).
fn put(field: &mut [u8], text: &str) {
    let n = text.len().min(field.len());
    field[..n].copy_from_slice(&text.as_bytes()[..n]);
}

/// A tar.gz of `entries`, each written with its raw name, bypassing the tar crate's own
/// path checks.
fn tar_gz(entries: &[Entry], s: &str, o: &str) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let (kind, mode) = match e.kind {
            Kind::File => (tar::EntryType::Regular, 0o644),
            Kind::Dir => (tar::EntryType::Directory, 0o755),
            Kind::Symlink => (tar::EntryType::Symlink, 0o777),
            Kind::Hardlink => (tar::EntryType::Link, 0o644),
            Kind::CharDevice => (tar::EntryType::Char, 0o666),
        };
        let mut h = tar::Header::new_old();
        let raw = h.as_old_mut();
        put(&mut raw.name, &render(&e.name, s, o));
        if matches!(e.kind, Kind::Symlink | Kind::Hardlink) {
            put(&mut raw.linkname, &render(&e.link, s, o));
        }
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(e.content.len() as u64);
        h.set_cksum();
        b.append(&h, e.content.as_slice()).unwrap();
    }
    gzip_stored(&b.into_inner().unwrap())
}

/// `data` as a gzip member of stored (uncompressed) deflate blocks: a real compressor
/// would cost more than the rest of a run, and its branches would only be noise to the
/// fuzzer.
fn gzip_stored(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    let mut blocks = data.chunks(0xffff).peekable();
    if blocks.peek().is_none() {
        out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    }
    while let Some(block) = blocks.next() {
        let len = block.len() as u16;
        out.push(u8::from(blocks.peek().is_none()));
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(block);
    }
    let mut crc = flate2::Crc::new();
    crc.update(data);
    out.extend_from_slice(&crc.sum().to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

/// `O/S` with `S/dest`, `S/dest2` and `S/secret`; `O` is removed when this is dropped.
struct Sandbox {
    outer: tempfile::TempDir,
    s: PathBuf,
    /// What `S/secret` is: (inode, mode, uid, gid).
    secret: (u64, u32, u32, u32),
}

impl Sandbox {
    fn new() -> Sandbox {
        // In memory where there is a tmpfs: removing a folder on a disk can take
        // milliseconds, which would be most of a run.
        let outer = tempfile::tempdir_in("/dev/shm")
            .or_else(|_| tempfile::tempdir())
            .unwrap();
        let s = outer.path().join("S");
        std::fs::create_dir(&s).unwrap();
        let secret = s.join("secret");
        std::fs::write(&secret, SECRET).unwrap();
        std::fs::set_permissions(
            &secret,
            std::os::unix::fs::PermissionsExt::from_mode(SECRET_MODE),
        )
        .unwrap();
        let m = std::fs::symlink_metadata(&secret).unwrap();
        let sb = Sandbox {
            outer,
            s,
            secret: (m.ino(), m.mode(), m.uid(), m.gid()),
        };
        sb.empty_dests();
        sb
    }

    fn dest(&self) -> PathBuf {
        self.s.join("dest")
    }

    fn dest2(&self) -> PathBuf {
        self.s.join("dest2")
    }

    /// Makes `S/dest` and `S/dest2` empty folders (std's `remove_dir_all` follows no
    /// symlink).
    fn empty_dests(&self) {
        for d in [self.dest(), self.dest2()] {
            if std::fs::symlink_metadata(&d).is_ok() {
                std::fs::remove_dir_all(&d).unwrap();
            }
            std::fs::create_dir(&d).unwrap();
        }
    }

    /// Nothing has landed outside `S/dest` and `S/dest2`.
    fn check_nothing_outside(&self, ctx: &str) {
        assert_eq!(
            names(self.outer.path()),
            ["S"],
            "something was written beside the sandbox; {ctx}"
        );
        assert_eq!(
            names(&self.s),
            ["dest", "dest2", "secret"],
            "something was written beside dest; {ctx}"
        );
        for d in [self.dest(), self.dest2()] {
            let m = std::fs::symlink_metadata(&d).unwrap();
            assert!(m.is_dir(), "{} is no longer a folder; {ctx}", d.display());
        }
        let secret = self.s.join("secret");
        let m = std::fs::symlink_metadata(&secret).unwrap();
        assert!(m.is_file(), "secret is no longer a file; {ctx}");
        assert_eq!(
            (m.ino(), m.mode(), m.uid(), m.gid()),
            self.secret,
            "secret was replaced, or its mode or owner changed; {ctx}"
        );
        assert_eq!(m.nlink(), 1, "secret was hard-linked; {ctx}");
        assert_eq!(
            std::fs::read(&secret).unwrap(),
            SECRET,
            "secret was overwritten; {ctx}"
        );
    }
}

/// The names in the folder `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Every symlink below `dir`, found without following any.
fn symlinks(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let m = std::fs::symlink_metadata(&p).unwrap();
        if m.file_type().is_symlink() {
            out.push(p);
        } else if m.is_dir() {
            symlinks(&p, out);
        }
    }
}

/// Every symlink in `dest` that resolves (not dangling, no loop) resolves inside `dest`
/// (or to `dest` itself).
fn check_links_inside(dest: &Path, ctx: &str) {
    let root = std::fs::canonicalize(dest).unwrap();
    let mut links = Vec::new();
    symlinks(dest, &mut links);
    for l in links {
        if let Ok(to) = std::fs::canonicalize(&l) {
            assert!(
                to.starts_with(&root),
                "{} (-> {:?}) resolves to {}, outside {}; {ctx}",
                l.display(),
                std::fs::read_link(&l).unwrap(),
                to.display(),
                root.display()
            );
        }
    }
}

/// Scans `data` and unpacks it into the empty folder `dest`: both accept it or both refuse
/// it, and count the same.
fn scan_and_unpack(
    data: &[u8],
    dest: &Path,
    policy: ArchivePolicy,
    owner: (u32, u32),
    ctx: &str,
) -> Result<ArchiveStats, ArchiveError> {
    let scanned = archive::scan(data, policy);
    let unpacked = archive::unpack(data, dest, policy, Some(owner));
    match (&scanned, &unpacked) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "scan and unpack counted differently; {ctx}"),
        (Err(_), Err(_)) => {}
        _ => panic!("scan and unpack disagree: {scanned:?} vs {unpacked:?}; {ctx}"),
    }
    unpacked
}

fuzz_target!(|data: &[u8]| {
    let (cut, entries) = decode(data);
    let cut = usize::from(cut) % (entries.len() + 1);
    let sb = Sandbox::new();
    let s = sb.s.to_str().unwrap().to_owned();
    let o = sb.outer.path().to_str().unwrap().to_owned();
    let whole = tar_gz(&entries, &s, &o);
    let first = tar_gz(&entries[..cut], &s, &o);
    let second = tar_gz(&entries[cut..], &s, &o);
    let shown = describe(&entries);
    // As root, files go to another user (as the stager gives them to vcap), so a chown
    // that went astray shows on `secret`; otherwise to ourselves.
    let owner = match sb.secret {
        (_, _, 0, _) => (2000, 2000),
        (_, _, uid, gid) => (uid, gid),
    };

    for (name, policy) in [
        ("upload", ArchivePolicy::upload()),
        ("droplet", ArchivePolicy::droplet()),
    ] {
        let upload = !policy.symlinks_anywhere;
        sb.empty_dests();

        let ctx = format!("{name} policy, the whole list into dest; entries {shown}");
        let res = scan_and_unpack(&whole, &sb.dest(), policy, owner, &ctx);
        sb.check_nothing_outside(&ctx);
        if upload && res.is_ok() {
            check_links_inside(&sb.dest(), &ctx);
        }

        let ctx =
            format!("{name} policy, entries [..{cut}] into dest2 (then the rest); entries {shown}");
        let res = scan_and_unpack(&first, &sb.dest2(), policy, owner, &ctx);
        sb.check_nothing_outside(&ctx);
        if upload && res.is_ok() {
            check_links_inside(&sb.dest2(), &ctx);
        }

        // Unpacked over what the first part left, whether or not that part was refused.
        // The folder did not start empty, so this run is held to "nothing lands outside"
        // only: links that each part's checks accept on their own may together lead out
        // (`c -> .` from the first, `up -> c/..` from the second). `unpack` is made for
        // an empty folder, and the platform gives every archive a folder made for it.
        let ctx =
            format!("{name} policy, entries [{cut}..] over [..{cut}] in dest2; entries {shown}");
        let _ = archive::unpack(second.as_slice(), &sb.dest2(), policy, Some(owner));
        sb.check_nothing_outside(&ctx);
    }
});
