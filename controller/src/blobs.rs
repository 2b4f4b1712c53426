//! Content-addressed blobs: packages and droplets, named by their SHA-256.
//!
//! A blob is written to a temporary file in the same folder, fsynced, then renamed to its
//! final name: a crash never leaves a half-written blob where a reader would find it.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("blob store: {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the upload is larger than {0} MiB")]
    TooLarge(u64),
    #[error("the bytes received hash to {got}, not to the {expected} asked for")]
    Mismatch { expected: String, got: String },
}

#[derive(Debug, Clone)]
pub struct Blobs {
    dir: PathBuf,
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> BlobError {
    let path = path.to_path_buf();
    move |source| BlobError::Io {
        action,
        path,
        source,
    }
}

/// A blob being written: bytes go to a temporary file and into the hash.
pub struct BlobWriter {
    file: tempfile::NamedTempFile,
    hasher: Sha256,
    bytes: u64,
    limit: u64,
}

impl BlobWriter {
    pub fn write(&mut self, chunk: &[u8]) -> Result<(), BlobError> {
        self.bytes += chunk.len() as u64;
        if self.bytes > self.limit {
            return Err(BlobError::TooLarge(self.limit >> 20));
        }
        self.hasher.update(chunk);
        let path = self.file.path().to_path_buf();
        self.file.write_all(chunk).map_err(io("writing", &path))
    }

    /// The temporary file, for checking the content before it is committed.
    pub fn path(&self) -> &Path {
        self.file.path()
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

/// A temporary file of the store untouched this long was left by a paasd that was
/// killed while it wrote it (an upload, a droplet being packed). Files in use are
/// written far more often, and stagings end long before; a second paasd (an upgrade in
/// place) shares the folder, so only age tells what is left over.
const STALE_TMP_AGE: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

impl Blobs {
    /// Opens the store in `dir`, removing temporary files left over from a day ago or
    /// more.
    pub fn open(dir: PathBuf) -> Result<Self, BlobError> {
        let tmp = dir.join("tmp");
        std::fs::create_dir_all(&tmp).map_err(io("creating", &dir))?;
        let removed = remove_files_older_than(&tmp, STALE_TMP_AGE);
        if removed > 0 {
            tracing::info!(
                "removed {removed} temporary files left in {} by an earlier run",
                tmp.display()
            );
        }
        Ok(Blobs { dir })
    }

    /// A folder on the blob store's filesystem for files that may become blobs.
    pub fn tmp_dir(&self) -> PathBuf {
        self.dir.join("tmp")
    }

    /// Where blob `sha256` lives (whether or not it exists).
    pub fn path(&self, sha256: &str) -> PathBuf {
        let shard = sha256.get(..2).unwrap_or("xx");
        self.dir.join(shard).join(sha256)
    }

    pub fn exists(&self, sha256: &str) -> bool {
        is_sha256(sha256) && self.path(sha256).is_file()
    }

    /// Starts a new blob of at most `limit` bytes.
    pub fn writer(&self, limit: u64) -> Result<BlobWriter, BlobError> {
        let tmp = self.tmp_dir();
        let file = tempfile::NamedTempFile::new_in(&tmp).map_err(io("creating a file in", &tmp))?;
        Ok(BlobWriter {
            file,
            hasher: Sha256::new(),
            bytes: 0,
            limit,
        })
    }

    /// Fsyncs and renames the blob into place; returns its SHA-256.
    pub fn commit(&self, w: BlobWriter) -> Result<String, BlobError> {
        let sha = hex::encode(w.hasher.finalize());
        let path = self.path(&sha);
        let parent = path.parent().unwrap_or(&self.dir).to_path_buf();
        std::fs::create_dir_all(&parent).map_err(io("creating", &parent))?;
        w.file.as_file().sync_all().map_err(io("syncing", &path))?;
        w.file.persist(&path).map_err(|e| BlobError::Io {
            action: "renaming into",
            path: path.clone(),
            source: e.error,
        })?;
        // The rename itself must survive a crash too.
        if let Ok(d) = std::fs::File::open(&parent) {
            let _ = d.sync_all();
        }
        Ok(sha)
    }

    /// Like [`Blobs::commit`], for a blob that must be `sha256` (one fetched from
    /// another host): anything else is thrown away.
    pub fn commit_as(&self, w: BlobWriter, sha256: &str) -> Result<(), BlobError> {
        let got = hex::encode(w.hasher.clone().finalize());
        if got != sha256 {
            return Err(BlobError::Mismatch {
                expected: sha256.to_string(),
                got,
            });
        }
        self.commit(w).map(|_| ())
    }

    /// Stores the file at `src` (which is left in place) as a blob.
    pub fn put_file(&self, src: &Path) -> Result<String, BlobError> {
        let mut w = self.writer(u64::MAX)?;
        let mut f = std::fs::File::open(src).map_err(io("opening", src))?;
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = f.read(&mut buf).map_err(io("reading", src))?;
            if n == 0 {
                break;
            }
            w.write(&buf[..n])?;
        }
        self.commit(w)
    }
}

/// True for 64 lowercase hex digits: the only blob names accepted from outside.
pub fn is_sha256(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Removes the regular files directly in `dir` last modified `age` ago or more; returns
/// how many.
fn remove_files_older_than(dir: &Path, age: std::time::Duration) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let now = std::time::SystemTime::now();
    entries
        .flatten()
        .filter(|e| {
            // The entry's own metadata: a link is not followed.
            e.metadata().is_ok_and(|m| {
                m.is_file()
                    && m.modified()
                        .ok()
                        .and_then(|t| now.duration_since(t).ok())
                        .is_some_and(|a| a >= age)
            })
        })
        .filter(|e| std::fs::remove_file(e.path()).is_ok())
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_are_named_by_content() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = Blobs::open(dir.path().to_path_buf()).unwrap();
        let mut w = blobs.writer(1024).unwrap();
        w.write(b"hello").unwrap();
        let sha = blobs.commit(w).unwrap();
        assert_eq!(
            sha,
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert!(blobs.exists(&sha));
        assert_eq!(std::fs::read(blobs.path(&sha)).unwrap(), b"hello");
        assert!(std::fs::read_dir(dir.path().join("tmp"))
            .unwrap()
            .next()
            .is_none());
    }

    #[test]
    fn oversized_blobs_are_refused_and_leave_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = Blobs::open(dir.path().to_path_buf()).unwrap();
        let mut w = blobs.writer(4).unwrap();
        assert!(matches!(w.write(b"hello"), Err(BlobError::TooLarge(_))));
        drop(w);
        assert!(std::fs::read_dir(dir.path().join("tmp"))
            .unwrap()
            .next()
            .is_none());
    }

    #[test]
    fn temporary_files_a_day_old_are_removed_at_open_and_newer_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let tmp = dir.path().join("tmp");
        std::fs::create_dir_all(&tmp).unwrap();
        let day_ago = std::time::SystemTime::now() - STALE_TMP_AGE;
        let stale = std::fs::File::create(tmp.join("droplet-left")).unwrap();
        stale.set_modified(day_ago).unwrap();
        std::fs::write(tmp.join("upload-now"), b"in use").unwrap();
        std::fs::create_dir(tmp.join("a-folder")).unwrap();
        Blobs::open(dir.path().to_path_buf()).unwrap();
        let mut left: Vec<_> = std::fs::read_dir(&tmp)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, ["a-folder", "upload-now"]);
    }

    #[test]
    fn only_hex_names_are_blob_names() {
        assert!(!is_sha256("../../etc/passwd"));
        assert!(!is_sha256(&"A".repeat(64)));
        assert!(is_sha256(&"a".repeat(64)));
    }
}
