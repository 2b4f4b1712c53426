//! The data folder holds every app's secrets (the database with their environments), the
//! API's and router's private keys and the admin token: it is root's alone. The folder is
//! 0700 and owned by root, and what lies directly in it is 0700 (folders) or 0600
//! (files), so no other user of the host reads or changes any of it, even if a file
//! inside was made with looser bits (SQLite makes its database 0644 by default).
//!
//! Deeper entries keep their own owners and modes: unpacked droplets belong to the
//! instances' user, and are reached by containers through mounts, never through this
//! folder's path.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use anyhow::Context;

/// Makes the data folder if needed and closes it to everyone but root.
pub fn create(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("creating the data folder {}", dir.display()))?;
    let meta = std::fs::symlink_metadata(dir)
        .with_context(|| format!("reading the data folder {}", dir.display()))?;
    if !meta.is_dir() {
        anyhow::bail!(
            "the data folder {} is not a folder: give --data-dir a folder",
            dir.display()
        );
    }
    if meta.uid() != 0 || meta.gid() != 0 {
        std::os::unix::fs::chown(dir, Some(0), Some(0))
            .with_context(|| format!("giving the data folder {} to root", dir.display()))?;
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("closing the data folder {} to other users", dir.display()))
}

/// Makes `dir` (inside the data folder) if needed, 0700, for root alone.
pub fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("closing {} to other users", dir.display()))
}

/// Closes what lies directly in the data folder: folders 0700, files 0600. Symlinks are
/// left alone (and never followed).
pub fn lock_down(dir: &Path) -> anyhow::Result<()> {
    for e in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let e = e?;
        let t = e.file_type()?;
        let mode = if t.is_dir() {
            0o700
        } else if t.is_file() {
            0o600
        } else {
            continue;
        };
        std::fs::set_permissions(e.path(), std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("closing {} to other users", e.path().display()))?;
    }
    Ok(())
}
