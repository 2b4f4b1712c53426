//! Cheap moves between cgroups: the cgroup v2 mount option `favordynmods`.
//!
//! Every container start moves a process into a new cgroup (a write to `cgroup.procs`).
//! The kernel guards such moves with one system-wide lock whose writer side normally
//! waits for an RCU grace period first: on an idle host that wait is 9-14 ms, more than
//! the rest of a container start. `favordynmods` (Linux 6.0+) keeps that lock in the mode
//! where writers need no wait, at the cost of slightly slower fork and exit everywhere:
//! the trade a host that starts containers all day wants. The lock is shared by every
//! hierarchy, so setting it on the v2 mount also speeds up moves on a v1 or hybrid host.
//! Kernels can also turn it on at boot (`cgroup_favordynmods=true`, or
//! `CONFIG_CGROUP_FAVOR_DYNMODS`); then there is nothing to do here.

use std::path::{Path, PathBuf};

use nix::mount::{mount, MsFlags};

/// The host's cgroup v2 mount under `base` (`/sys/fs/cgroup`, or `/sys/fs/cgroup/unified`
/// on a hybrid host), as `/proc/self/mountinfo` lists it.
#[derive(Debug, PartialEq, Eq)]
struct Cgroup2Mount {
    point: PathBuf,
    /// Per-mount options: `rw,nosuid,nodev,noexec,relatime`.
    mount_options: String,
    /// Options of the filesystem: `rw,nsdelegate,memory_recursiveprot`.
    super_options: String,
}

fn find_cgroup2(mountinfo: &str, base: &Path) -> Option<Cgroup2Mount> {
    mountinfo.lines().find_map(|line| {
        // ID PARENT MAJ:MIN ROOT POINT OPTIONS [OPTIONAL...] - TYPE SOURCE SUPER_OPTIONS
        let (left, right) = line.split_once(" - ")?;
        let left: Vec<&str> = left.split(' ').collect();
        let right: Vec<&str> = right.split(' ').collect();
        if right.first() != Some(&"cgroup2") || left.len() < 6 || right.len() < 3 {
            return None;
        }
        let point = PathBuf::from(unescape(left[4]));
        point.starts_with(base).then(|| Cgroup2Mount {
            point,
            mount_options: left[5].to_string(),
            super_options: right[2].to_string(),
        })
    })
}

/// mountinfo writes space, tab, newline and backslash in paths as `\ooo`.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|d| {
            std::str::from_utf8(d)
                .ok()
                .and_then(|d| u8::from_str_radix(d, 8).ok())
        });
        match (bytes[i], octal) {
            (b'\\', Some(b)) => {
                out.push(b);
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The flags that keep a mount's per-mount options as they are across a remount (a
/// remount sets them all anew).
fn mount_flags(options: &str) -> MsFlags {
    let mut flags = MsFlags::MS_REMOUNT;
    for o in options.split(',') {
        flags |= match o {
            "ro" => MsFlags::MS_RDONLY,
            "nosuid" => MsFlags::MS_NOSUID,
            "nodev" => MsFlags::MS_NODEV,
            "noexec" => MsFlags::MS_NOEXEC,
            "noatime" => MsFlags::MS_NOATIME,
            "nodiratime" => MsFlags::MS_NODIRATIME,
            "relatime" => MsFlags::MS_RELATIME,
            "strictatime" => MsFlags::MS_STRICTATIME,
            _ => MsFlags::empty(),
        };
    }
    flags
}

/// The filesystem options to remount with: the current ones (cgroup2 resets any option
/// not given, such as systemd's `nsdelegate`) plus `favordynmods`.
fn remount_data(super_options: &str) -> String {
    super_options
        .split(',')
        .filter(|o| !matches!(*o, "rw" | "ro" | ""))
        .chain(std::iter::once("favordynmods"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Turns on `favordynmods` on the cgroup v2 mount under `base`. Returns the mount it
/// changed; `None` when it was already on or the host has no cgroup v2 mount.
pub fn favor_dynamic_changes(base: &Path) -> Result<Option<PathBuf>, String> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| format!("reading /proc/self/mountinfo: {e}"))?;
    let Some(m) = find_cgroup2(&mountinfo, base) else {
        return Ok(None);
    };
    if m.super_options.split(',').any(|o| o == "favordynmods") {
        return Ok(None);
    }
    mount(
        None::<&str>,
        &m.point,
        None::<&str>,
        mount_flags(&m.mount_options),
        Some(remount_data(&m.super_options).as_str()),
    )
    .map_err(|e| {
        format!(
            "remounting {} with favordynmods (needs Linux 6.0 or later): {e}",
            m.point.display()
        )
    })?;
    Ok(Some(m.point))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
25 30 0:23 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
31 25 0:26 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
40 31 0:35 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
49 31 0:44 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate
";

    #[test]
    fn finds_the_v2_mount_of_a_hybrid_host() {
        let m = find_cgroup2(HYBRID, Path::new("/sys/fs/cgroup")).unwrap();
        assert_eq!(m.point, Path::new("/sys/fs/cgroup/unified"));
        assert_eq!(m.super_options, "rw,nsdelegate");
        assert_eq!(
            mount_flags(&m.mount_options),
            MsFlags::MS_REMOUNT
                | MsFlags::MS_NOSUID
                | MsFlags::MS_NODEV
                | MsFlags::MS_NOEXEC
                | MsFlags::MS_RELATIME
        );
        // Options the host chose survive the remount.
        assert_eq!(remount_data(&m.super_options), "nsdelegate,favordynmods");
        assert_eq!(find_cgroup2(HYBRID, Path::new("/elsewhere")), None);
    }

    #[test]
    fn reads_escaped_mount_points() {
        let info = "1 0 0:1 / /srv/cg\\040two rw - cgroup2 none rw\n";
        let m = find_cgroup2(info, Path::new("/srv")).unwrap();
        assert_eq!(m.point, Path::new("/srv/cg two"));
        assert_eq!(remount_data(&m.super_options), "favordynmods");
    }
}
