//! Resource limits through cgroups, v1 (including hybrid hosts) and v2, detected at start.
//!
//! Every container gets `paas/<id>` in each controller it needs. On v1 that is one folder
//! per controller (memory, pids); on v2 one folder in the unified tree.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("no usable cgroup hierarchy under {0}: mount cgroup v2, or the v1 memory and pids controllers")]
    NotFound(PathBuf),
    #[error("cgroup {path}: {action}")]
    Io {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// Limits for one container.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub memory_bytes: u64,
    pub pids: u32,
}

/// Which cgroup layout the host has.
#[derive(Debug, Clone)]
pub enum CgroupDriver {
    /// v1: one hierarchy per controller (`/sys/fs/cgroup/memory`, `/sys/fs/cgroup/pids`,
    /// and `/sys/fs/cgroup/cpu` when mounted).
    V1 {
        memory: PathBuf,
        pids: PathBuf,
        cpu: Option<PathBuf>,
        /// The cpuacct hierarchy when it is mounted apart from cpu (as on some hosts);
        /// `None` when `cpu` holds `cpuacct.usage` itself, or there is no cpuacct.
        cpuacct: Option<PathBuf>,
    },
    /// v2: the unified hierarchy; `cpu` when the cpu controller is available.
    V2 { root: PathBuf, cpu: bool },
}

/// One container's cgroup folders.
#[derive(Debug, Clone)]
pub struct Cgroup {
    driver: CgroupDriver,
    dirs: Vec<PathBuf>,
}

fn io_err(path: &Path, action: &'static str) -> impl FnOnce(std::io::Error) -> CgroupError {
    let path = path.to_path_buf();
    move |source| CgroupError::Io {
        path,
        action,
        source,
    }
}

impl CgroupDriver {
    /// Looks at `/sys/fs/cgroup` (or `base`) and picks v2 when it is the whole tree, v1
    /// when the memory controller is mounted on its own.
    pub fn detect(base: &Path) -> Result<Self, CgroupError> {
        if let Ok(controllers) = fs::read_to_string(base.join("cgroup.controllers")) {
            return Ok(CgroupDriver::V2 {
                root: base.join("paas"),
                cpu: controllers.split_whitespace().any(|c| c == "cpu"),
            });
        }
        let memory = base.join("memory");
        let pids = base.join("pids");
        if memory.join("memory.limit_in_bytes").exists() && pids.join("cgroup.procs").exists() {
            let cpu = base.join("cpu");
            let cpuacct = base.join("cpuacct");
            let apart =
                !cpu.join("cpuacct.usage").exists() && cpuacct.join("cpuacct.usage").exists();
            return Ok(CgroupDriver::V1 {
                memory: memory.join("paas"),
                pids: pids.join("paas"),
                cpu: cpu.join("cpu.shares").exists().then(|| cpu.join("paas")),
                cpuacct: apart.then(|| cpuacct.join("paas")),
            });
        }
        Err(CgroupError::NotFound(base.to_path_buf()))
    }

    pub fn version(&self) -> u8 {
        match self {
            CgroupDriver::V1 { .. } => 1,
            CgroupDriver::V2 { .. } => 2,
        }
    }

    fn parents(&self) -> Vec<PathBuf> {
        match self {
            CgroupDriver::V1 {
                memory,
                pids,
                cpu,
                cpuacct,
            } => {
                let mut v = vec![memory.clone(), pids.clone()];
                v.extend(cpu.clone());
                v.extend(cpuacct.clone());
                v
            }
            CgroupDriver::V2 { root, .. } => vec![root.clone()],
        }
    }

    /// The cgroup of container `id`, whether or not it exists yet.
    pub fn cgroup(&self, id: &str) -> Cgroup {
        Cgroup {
            driver: self.clone(),
            dirs: self.parents().iter().map(|p| p.join(id)).collect(),
        }
    }

    /// Creates the cgroup of container `id` with `limits`.
    pub fn create(&self, id: &str, limits: Limits) -> Result<Cgroup, CgroupError> {
        if let CgroupDriver::V2 { root, cpu } = self {
            if !root.exists() {
                fs::create_dir_all(root).map_err(io_err(root, "creating"))?;
            }
            // Children of `paas` may only use controllers that `paas` hands down.
            let ctl = root.join("cgroup.subtree_control");
            let wanted = if *cpu {
                "+memory +pids +cpu"
            } else {
                "+memory +pids"
            };
            fs::write(&ctl, wanted).map_err(io_err(&ctl, "enabling memory, pids and cpu"))?;
        }
        let cg = self.cgroup(id);
        for dir in &cg.dirs {
            fs::create_dir_all(dir).map_err(io_err(dir, "creating"))?;
        }
        let mem = limits.memory_bytes.to_string();
        let pids = limits.pids.to_string();
        match self {
            CgroupDriver::V1 { cpu, .. } => {
                let (m, p) = (&cg.dirs[0], &cg.dirs[1]);
                if cpu.is_some() {
                    write(
                        &cg.dirs[2],
                        "cpu.shares",
                        &cpu_shares(limits.memory_bytes).to_string(),
                    )?;
                }
                write(m, "memory.limit_in_bytes", &mem)?;
                // memsw = memory means no swap at all; absent when swap accounting is off.
                if m.join("memory.memsw.limit_in_bytes").exists() {
                    write(m, "memory.memsw.limit_in_bytes", &mem)?;
                }
                write(p, "pids.max", &pids)?;
            }
            CgroupDriver::V2 { .. } => {
                let d = &cg.dirs[0];
                write(d, "memory.max", &mem)?;
                if d.join("cpu.weight").exists() {
                    write(
                        d,
                        "cpu.weight",
                        &cpu_weight(limits.memory_bytes).to_string(),
                    )?;
                }
                if d.join("memory.swap.max").exists() {
                    write(d, "memory.swap.max", "0")?;
                }
                write(d, "pids.max", &pids)?;
            }
        }
        Ok(cg)
    }
}

/// CPU in proportion to memory, as Cloud Foundry gives it: v1 shares equal to the
/// memory in MiB (so 1 GiB gets the kernel's default 1024)...
pub fn cpu_shares(memory_bytes: u64) -> u64 {
    (memory_bytes >> 20).clamp(2, 262_144)
}

/// ...and the same proportion as a v2 weight (1 GiB gets the default 100).
pub fn cpu_weight(memory_bytes: u64) -> u64 {
    ((memory_bytes >> 20) * 100 / 1024).clamp(1, 10_000)
}

fn write(dir: &Path, file: &'static str, value: &str) -> Result<(), CgroupError> {
    let path = dir.join(file);
    fs::write(&path, value).map_err(io_err(&path, file))
}

impl Cgroup {
    /// The `cgroup.procs` files a process writes its pid into to join.
    pub fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|d| d.join("cgroup.procs")).collect()
    }

    /// Pids of every process in the cgroup.
    pub fn pids(&self) -> Vec<i32> {
        let mut out = Vec::new();
        for f in self.procs_files() {
            if let Ok(s) = fs::read_to_string(f) {
                out.extend(s.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    /// How many times the kernel's OOM killer struck in this cgroup.
    pub fn oom_kills(&self) -> u64 {
        let file = match self.driver {
            CgroupDriver::V1 { .. } => self.dirs[0].join("memory.oom_control"),
            CgroupDriver::V2 { .. } => self.dirs[0].join("memory.events"),
        };
        fs::read_to_string(file)
            .ok()
            .and_then(|s| {
                s.lines().find_map(|l| {
                    l.strip_prefix("oom_kill ")
                        .and_then(|n| n.trim().parse().ok())
                })
            })
            .unwrap_or(0)
    }

    /// Memory in use now, in bytes.
    pub fn memory_usage(&self) -> u64 {
        let file = match self.driver {
            CgroupDriver::V1 { .. } => self.dirs[0].join("memory.usage_in_bytes"),
            CgroupDriver::V2 { .. } => self.dirs[0].join("memory.current"),
        };
        fs::read_to_string(file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }

    /// CPU time used by the cgroup's processes so far, in nanoseconds.
    pub fn cpu_usage_ns(&self) -> Option<u64> {
        match &self.driver {
            CgroupDriver::V1 { cpu, cpuacct, .. } => {
                // cpuacct's own folder is last; else cpu's (the third) holds it.
                let dir = match (cpu, cpuacct) {
                    (_, Some(_)) => self.dirs.last()?,
                    (Some(_), None) => self.dirs.get(2)?,
                    (None, None) => return None,
                };
                fs::read_to_string(dir.join("cpuacct.usage"))
                    .ok()?
                    .trim()
                    .parse()
                    .ok()
            }
            CgroupDriver::V2 { .. } => fs::read_to_string(self.dirs[0].join("cpu.stat"))
                .ok()?
                .lines()
                .find_map(|l| l.strip_prefix("usage_usec ")?.trim().parse::<u64>().ok())
                .map(|us| us * 1000),
        }
    }

    /// Kills every process in the cgroup with SIGKILL, waits until it is empty, then
    /// removes its folders. Safe to call on a cgroup that no longer exists.
    pub async fn destroy(&self) -> Result<(), CgroupError> {
        for attempt in 0..200 {
            let pids = self.pids();
            if pids.is_empty() {
                break;
            }
            for pid in pids {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            tokio::time::sleep(Duration::from_millis(if attempt < 10 { 2 } else { 20 })).await;
        }
        for dir in &self.dirs {
            let mut last = Ok(());
            for _ in 0..50 {
                last = match fs::remove_dir(dir) {
                    Ok(()) => Ok(()),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                    Err(e) => Err(e),
                };
                if last.is_ok() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            last.map_err(io_err(dir, "removing"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_follows_memory() {
        assert_eq!(cpu_shares(1 << 30), 1024);
        assert_eq!(cpu_shares(256 << 20), 256);
        assert_eq!(cpu_shares(1 << 20), 2);
        assert_eq!(cpu_weight(1 << 30), 100);
        assert_eq!(cpu_weight(256 << 20), 25);
        assert_eq!(cpu_weight(1 << 20), 1);
        assert_eq!(cpu_weight(1 << 50), 10_000);
    }
}
