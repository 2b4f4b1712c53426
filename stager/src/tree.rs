//! A folder whose contents a tenant controls, reached only through descriptors that
//! cannot leave it.
//!
//! paasd runs as root, and a tenant's build can leave a symlink anywhere in its own tree
//! (`layers -> /var/lib/paas`, `Procfile -> /etc/shadow`). A path joined onto the tree's
//! folder and handed to `std::fs` would follow such a link out of the tree. Every
//! operation here resolves its path with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`
//! from a descriptor of the tree's root, so a symlink at any step, `..` or an absolute
//! path fails with an error instead of reaching the host (the class of CVE-2018-15664
//! and CVE-2021-30465: a path checked, then resolved again through a planted link).
//! Symlinks can still be made and read as links; they are never followed.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use nix::fcntl::AtFlags;
use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{fstatat, Mode, SFlag};
use nix::unistd::{fchownat, linkat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags};

/// What a name in the tree is, without following it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    /// A device, fifo or socket.
    Other,
}

/// An open folder; see the module docs.
#[derive(Debug)]
pub struct Tree {
    root: OwnedFd,
    /// For messages only: never opened again by path.
    shown: PathBuf,
}

fn resolve() -> ResolveFlag {
    ResolveFlag::RESOLVE_BENEATH
        | ResolveFlag::RESOLVE_NO_SYMLINKS
        | ResolveFlag::RESOLVE_NO_MAGICLINKS
}

fn errno(e: nix::Error) -> io::Error {
    io::Error::from_raw_os_error(e as i32)
}

/// Splits a relative path into its folder and last name; refuses `..`, absolute paths
/// and the empty path.
fn split(rel: &Path) -> io::Result<(PathBuf, &OsStr)> {
    let mut parent = PathBuf::new();
    let mut last = None;
    for c in rel.components() {
        match c {
            Component::Normal(p) => {
                if let Some(prev) = last.replace(p) {
                    parent.push(prev);
                }
            }
            Component::CurDir => {}
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{} is not a plain relative path", rel.display()),
                ))
            }
        }
    }
    let last = last.ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidInput, "an empty path names nothing")
    })?;
    if parent.as_os_str().is_empty() {
        parent.push(".");
    }
    Ok((parent, last))
}

impl Tree {
    /// Opens the folder at `path`, which the caller trusts (the platform made it); what
    /// lies below it is not trusted.
    pub fn open(path: &Path) -> io::Result<Tree> {
        let how = OpenHow::new()
            .flags(OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC);
        let root = openat2(nix::fcntl::AT_FDCWD, path, how).map_err(errno)?;
        Ok(Tree {
            root,
            shown: path.to_path_buf(),
        })
    }

    fn at(&self, rel: &Path, flags: OFlag, mode: u32) -> io::Result<OwnedFd> {
        // O_NONBLOCK: opening a named pipe a tenant left where a file should be would
        // otherwise wait for a writer that never comes (and hold a thread of paasd).
        let how = OpenHow::new()
            .flags(flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)
            .mode(Mode::from_bits_truncate(mode))
            .resolve(resolve());
        let rel = if rel.as_os_str().is_empty() {
            Path::new(".")
        } else {
            rel
        };
        openat2(self.root.as_fd(), rel, how).map_err(|e| {
            let err = errno(e);
            io::Error::new(
                err.kind(),
                format!("{}: {err}", self.shown.join(rel).display()),
            )
        })
    }

    /// The folder `rel` below this one, as a tree of its own.
    pub fn subtree(&self, rel: &Path) -> io::Result<Tree> {
        Ok(Tree {
            root: self.at(rel, OFlag::O_RDONLY | OFlag::O_DIRECTORY, 0)?,
            shown: self.shown.join(rel),
        })
    }

    fn parent_of<'a>(&self, rel: &'a Path) -> io::Result<(OwnedFd, &'a OsStr)> {
        let (parent, name) = split(rel)?;
        Ok((
            self.at(&parent, OFlag::O_RDONLY | OFlag::O_DIRECTORY, 0)?,
            name,
        ))
    }

    /// What `rel` is, not following a symlink; `None` when nothing has that name.
    pub fn kind(&self, rel: &Path) -> io::Result<Option<Kind>> {
        let (dir, name) = match self.parent_of(rel) {
            Ok(p) => p,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        match fstatat(&dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(
                match SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT {
                    SFlag::S_IFREG => Kind::File,
                    SFlag::S_IFDIR => Kind::Dir,
                    SFlag::S_IFLNK => Kind::Symlink,
                    _ => Kind::Other,
                },
            )),
            Err(nix::Error::ENOENT) => Ok(None),
            Err(e) => Err(errno(e)),
        }
    }

    /// Opens the regular file `rel` for reading.
    pub fn open_file(&self, rel: &Path) -> io::Result<File> {
        let f = File::from(self.at(rel, OFlag::O_RDONLY, 0)?);
        if !f.metadata()?.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a regular file", self.shown.join(rel).display()),
            ));
        }
        Ok(f)
    }

    /// Reads the regular file `rel`, at most `max` bytes of it; `None` when it does not
    /// exist. A larger file, or anything but a regular file, is an error.
    pub fn read(&self, rel: &Path, max: u64) -> io::Result<Option<Vec<u8>>> {
        let f = match self.open_file(rel) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        f.take(max + 1).read_to_end(&mut out)?;
        if out.len() as u64 > max {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{} is larger than the {max} bytes read from it",
                    self.shown.join(rel).display()
                ),
            ));
        }
        Ok(Some(out))
    }

    /// [`Tree::read`] as UTF-8 text.
    pub fn read_string(&self, rel: &Path, max: u64) -> io::Result<Option<String>> {
        self.read(rel, max)?
            .map(|b| {
                String::from_utf8(b).map_err(|_| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("{} is not UTF-8 text", self.shown.join(rel).display()),
                    )
                })
            })
            .transpose()
    }

    /// Creates the file `rel` (its folder must exist), replacing a file or symlink of
    /// that name, never writing through one.
    pub fn create(&self, rel: &Path, mode: u32) -> io::Result<File> {
        let (dir, name) = self.parent_of(rel)?;
        let how = OpenHow::new()
            .flags(
                OFlag::O_WRONLY
                    | OFlag::O_CREAT
                    | OFlag::O_EXCL
                    | OFlag::O_NOFOLLOW
                    | OFlag::O_CLOEXEC,
            )
            .mode(Mode::from_bits_truncate(mode & 0o777))
            .resolve(resolve());
        // O_EXCL never opens what is there: something of that name is removed first
        // (unless it is a folder), then the file made anew. Most names are new, so the
        // removal is tried only when needed.
        let f = match openat2(&dir, name, how) {
            Err(nix::Error::EEXIST) => {
                unlinkat(&dir, name, UnlinkatFlags::NoRemoveDir).map_err(errno)?;
                openat2(&dir, name, how).map_err(errno)?
            }
            opened => opened.map_err(errno)?,
        };
        let f = File::from(f);
        // The umask may have taken bits away.
        f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(mode & 0o777))?;
        Ok(f)
    }

    /// Writes `bytes` to the file `rel`, replacing what had that name.
    pub fn write(&self, rel: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
        self.create(rel, mode)?.write_all(bytes)
    }

    /// Makes the folder `rel` and any missing folders above it. An existing folder is
    /// kept; anything else in the way is an error.
    pub fn mkdir_all(&self, rel: &Path, mode: u32) -> io::Result<()> {
        let mut so_far = PathBuf::new();
        for c in rel.components() {
            let Component::Normal(p) = c else { continue };
            so_far.push(p);
            let (dir, name) = self.parent_of(&so_far)?;
            match nix::sys::stat::mkdirat(&dir, name, Mode::from_bits_truncate(mode & 0o777)) {
                Ok(()) => {}
                Err(nix::Error::EEXIST) if self.kind(&so_far)? == Some(Kind::Dir) => {}
                Err(e) => {
                    let err = errno(e);
                    return Err(io::Error::new(
                        err.kind(),
                        format!("{}: {err}", self.shown.join(&so_far).display()),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Sets the mode of the folder `rel` (never through a symlink).
    pub fn chmod_dir(&self, rel: &Path, mode: u32) -> io::Result<()> {
        let fd = self.at(rel, OFlag::O_RDONLY | OFlag::O_DIRECTORY, 0)?;
        nix::sys::stat::fchmod(&fd, Mode::from_bits_truncate(mode & 0o777)).map_err(errno)
    }

    /// Makes `rel` a symlink to `target`, replacing a file or symlink of that name. The
    /// target is stored, never followed here.
    pub fn symlink(&self, rel: &Path, target: &Path) -> io::Result<()> {
        let (dir, name) = self.parent_of(rel)?;
        match unlinkat(&dir, name, UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(nix::Error::ENOENT) => {}
            Err(e) => return Err(errno(e)),
        }
        symlinkat(target, &dir, name).map_err(errno)
    }

    /// Makes `rel` another name of the regular file `existing`, both inside the tree.
    pub fn hard_link(&self, existing: &Path, rel: &Path) -> io::Result<()> {
        if self.kind(existing)? != Some(Kind::File) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{} is not a regular file",
                    self.shown.join(existing).display()
                ),
            ));
        }
        let (from_dir, from_name) = self.parent_of(existing)?;
        let (dir, name) = self.parent_of(rel)?;
        match unlinkat(&dir, name, UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(nix::Error::ENOENT) => {}
            Err(e) => return Err(errno(e)),
        }
        // No AT_SYMLINK_FOLLOW: a symlink would be linked as itself, never its target.
        linkat(&from_dir, from_name, &dir, name, AtFlags::empty()).map_err(errno)
    }

    /// Gives `rel` (a symlink itself, if it is one) to `uid`:`gid`.
    pub fn chown(&self, rel: &Path, uid: u32, gid: u32) -> io::Result<()> {
        let owner = (Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)));
        if split(rel).is_err() {
            // The tree's own root.
            return nix::unistd::fchown(&self.root, owner.0, owner.1).map_err(errno);
        }
        let (dir, name) = self.parent_of(rel)?;
        fchownat(&dir, name, owner.0, owner.1, AtFlags::AT_SYMLINK_NOFOLLOW).map_err(errno)
    }

    /// The names in the folder `rel` with what each is, sorted by name; more than `max`
    /// names is an error.
    pub fn entries(&self, rel: &Path, max: usize) -> io::Result<Vec<(OsString, Kind)>> {
        let fd = self.at(rel, OFlag::O_RDONLY | OFlag::O_DIRECTORY, 0)?;
        let dir = nix::dir::Dir::from_fd(fd).map_err(errno)?;
        let mut out = Vec::new();
        let here = self.subtree(rel)?;
        for e in dir {
            let e = e.map_err(errno)?;
            let name = e.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            if out.len() == max {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{} holds more than {max} names",
                        self.shown.join(rel).display()
                    ),
                ));
            }
            let name = OsStr::from_bytes(name).to_os_string();
            if let Some(kind) = here.kind(Path::new(&name))? {
                out.push((name, kind));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }
    /// A digest of everything under the folder `rel`: each name's path, kind, mode,
    /// size and modification time, symlinks not followed. Equal digests before and after
    /// a build mean it changed nothing there, as far as the kernel's metadata tells (a
    /// tenant who fakes that only keeps its own cache from being saved). More than `max`
    /// names in all is an error.
    pub fn digest(&self, rel: &Path, max: usize) -> io::Result<u64> {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        let mut left = max;
        let mut todo = vec![rel.to_path_buf()];
        while let Some(folder) = todo.pop() {
            let dir = self.subtree(&folder)?;
            let names = dir.entries(Path::new(""), left)?;
            left -= names.len();
            for (name, kind) in names {
                let st = fstatat(&dir.root, name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW)
                    .map_err(errno)?;
                let path = folder.join(&name);
                path.hash(&mut hasher);
                (st.st_mode, st.st_size, st.st_mtime, st.st_mtime_nsec).hash(&mut hasher);
                if kind == Kind::Dir {
                    todo.push(path);
                }
            }
        }
        Ok(hasher.finish())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_split_into_folder_and_name() {
        let (d, n) = split(Path::new("a/b/c")).unwrap();
        assert_eq!((d.as_path(), n), (Path::new("a/b"), OsStr::new("c")));
        let (d, n) = split(Path::new("./c")).unwrap();
        assert_eq!((d.as_path(), n), (Path::new("."), OsStr::new("c")));
        assert!(split(Path::new("../c")).is_err());
        assert!(split(Path::new("/etc/passwd")).is_err());
        assert!(split(Path::new("")).is_err());
    }

    #[test]
    fn symlinks_are_never_followed_out_of_the_tree() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "host").unwrap();
        let root = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), root.path().join("dir")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), root.path().join("file"))
            .unwrap();
        let t = Tree::open(root.path()).unwrap();

        assert!(
            t.read(Path::new("file"), 100).is_err(),
            "read through a link"
        );
        assert!(t.read(Path::new("dir/secret"), 100).is_err());
        assert!(t.create(Path::new("dir/new"), 0o644).is_err());
        assert!(t.mkdir_all(Path::new("dir/sub"), 0o755).is_err());
        assert!(t.hard_link(Path::new("file"), Path::new("h")).is_err());
        assert!(t
            .hard_link(Path::new("dir/secret"), Path::new("h"))
            .is_err());
        assert!(t.symlink(Path::new("dir/l"), Path::new("x")).is_err());
        assert!(t.entries(Path::new("dir"), 10).is_err());
        assert_eq!(t.kind(Path::new("file")).unwrap(), Some(Kind::Symlink));

        // Replacing a link writes a new file where the link was, not through it.
        t.write(Path::new("file"), b"mine", 0o600).unwrap();
        assert_eq!(
            std::fs::read(outside.path().join("secret")).unwrap(),
            b"host"
        );
        assert_eq!(t.read(Path::new("file"), 100).unwrap().unwrap(), b"mine");
    }

    // Before: a named pipe where a file was expected made the read wait for a writer
    // that never came, holding one of paasd's threads for good.
    #[test]
    fn a_named_pipe_is_refused_at_once() {
        let root = tempfile::tempdir().unwrap();
        nix::unistd::mkfifo(&root.path().join("fifo"), Mode::from_bits_truncate(0o666)).unwrap();
        let t = Tree::open(root.path()).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(t.read(Path::new("fifo"), 100).map(|_| ()));
        });
        let res = rx
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("the read must not wait for a writer");
        assert!(res.is_err(), "a pipe is not a regular file");
    }

    #[test]
    fn reads_are_bounded() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("big"), vec![b'x'; 100]).unwrap();
        let t = Tree::open(root.path()).unwrap();
        assert!(t.read(Path::new("big"), 99).is_err());
        assert_eq!(t.read(Path::new("big"), 100).unwrap().unwrap().len(), 100);
        assert_eq!(t.read(Path::new("missing"), 100).unwrap(), None);
    }

    #[test]
    fn a_digest_sees_changes_inside_and_never_follows_links_out() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "a").unwrap();
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("deps")).unwrap();
        std::fs::write(root.path().join("deps/pkg.py"), "x = 1").unwrap();
        std::os::unix::fs::symlink(outside.path(), root.path().join("out")).unwrap();
        let tree = Tree::open(root.path()).unwrap();
        let digest = || tree.digest(Path::new(""), 100).unwrap();
        let first = digest();
        assert_eq!(digest(), first, "nothing changed");
        // What the link points at is not the tree's.
        std::fs::write(outside.path().join("secret"), "changed, and longer").unwrap();
        std::fs::write(outside.path().join("more"), "b").unwrap();
        assert_eq!(digest(), first, "the link was not followed");
        std::fs::write(root.path().join("deps/pkg.py"), "x = 22").unwrap();
        assert_ne!(digest(), first, "a file inside changed");
        // A tree with more names than allowed is an error, not a long walk.
        assert!(tree.digest(Path::new(""), 2).is_err());
    }
}
