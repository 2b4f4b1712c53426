//! Disk quotas for a container's writable layer.
//!
//! The writable layer lives on its own small ext4 filesystem in a sparse image file,
//! mounted through a loop device: writes past the quota fail with `ENOSPC` inside that
//! container only, and the host's filesystem needs no quota support. The image takes
//! host disk only for what is written.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error("disk quota: creating {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("disk quota: running {tool}: {source}; install {package}")]
    Missing {
        tool: &'static str,
        package: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("disk quota: {tool} failed: {stderr}")]
    Failed { tool: &'static str, stderr: String },
}

/// The smallest quota: ext4 needs some room for its own metadata.
pub const MIN_DISK_BYTES: u64 = 16 << 20;

/// Makes a `bytes`-sized filesystem for container folder `dir` and mounts it at
/// `dir/disk`, whose root belongs to `uid:gid`. Returns the mount point.
pub async fn create(dir: &Path, bytes: u64, uid: u32, gid: u32) -> Result<PathBuf, DiskError> {
    let image = dir.join("disk.img");
    let mount = mount_point(dir);
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| DiskError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let f = std::fs::File::create(&image).map_err(io(&image))?;
    f.set_len(bytes.max(MIN_DISK_BYTES)).map_err(io(&image))?;
    drop(f);
    std::fs::create_dir_all(&mount).map_err(io(&mount))?;
    run(
        "mkfs.ext4",
        "e2fsprogs",
        Command::new("mkfs.ext4")
            .args(["-q", "-F", "-m", "0", "-O", "^has_journal"])
            .arg("-E")
            .arg(format!(
                "lazy_itable_init=1,nodiscard,root_owner={uid}:{gid}"
            ))
            .arg(&image),
    )
    .await?;
    run(
        "mount",
        "mount (util-linux)",
        Command::new("mount")
            .args(["-t", "ext4", "-o", "loop,nosuid,nodev,noatime"])
            .arg(&image)
            .arg(&mount),
    )
    .await?;
    Ok(mount)
}

/// Where the quota filesystem of container folder `dir` is mounted.
pub fn mount_point(dir: &Path) -> PathBuf {
    dir.join("disk")
}

/// Unmounts the quota filesystem of `dir`, if it has one; the loop device frees itself.
pub fn remove(dir: &Path) {
    let mount = mount_point(dir);
    if mount.is_dir() {
        let _ = nix::mount::umount2(&mount, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// Unmounts the quota filesystem of `dir` without writing back what the kernel still
/// holds for it, for a disk whose content is thrown away (a finished staging's).
/// A plain unmount writes every dirty page to the image first (measured: 150-190 ms
/// for a Node.js build's 45 MB, on every staging); ext4's shutdown ioctl
/// (`EXT4_IOC_SHUTDOWN` with `NOLOGFLUSH`, as xfstests' `godown` uses it) drops them.
/// It is only ever sent to a filesystem on a loop device mounted at `dir/disk`: sent to
/// the host's own filesystem it would stop it, so anything else is only unmounted.
pub fn discard(dir: &Path) {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::MetadataExt;
    /// `_IOR('X', 125, __u32)`, from linux/fs/ext4/ext4.h.
    const EXT4_IOC_SHUTDOWN: libc::c_ulong = 0x8004_587d;
    const EXT4_GOING_FLAGS_NOLOGFLUSH: u32 = 0x2;
    /// Loop devices' major number (linux/major.h).
    const LOOP_MAJOR: u32 = 7;
    let mount = mount_point(dir);
    // Not followed if a link: only the mount itself counts.
    let our_loop_disk = match (std::fs::metadata(dir), std::fs::symlink_metadata(&mount)) {
        (Ok(parent), Ok(disk)) => {
            disk.dev() != parent.dev() && libc::major(disk.dev()) == LOOP_MAJOR
        }
        _ => false,
    };
    if our_loop_disk {
        if let Ok(root) = std::fs::File::open(&mount) {
            let flags = EXT4_GOING_FLAGS_NOLOGFLUSH;
            // SAFETY: the ioctl reads one u32 through the pointer, which outlives it.
            let _ = unsafe { libc::ioctl(root.as_raw_fd(), EXT4_IOC_SHUTDOWN, &flags) };
        }
    }
    remove(dir);
}

async fn run(
    tool: &'static str,
    package: &'static str,
    cmd: &mut Command,
) -> Result<(), DiskError> {
    let out = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .await
        .map_err(|source| DiskError::Missing {
            tool,
            package,
            source,
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(DiskError::Failed {
            tool,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}
