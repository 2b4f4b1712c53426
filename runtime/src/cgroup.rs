//! Resource limits through cgroups, v1 (including hybrid hosts) and v2, detected at start.
//!
//! Every container gets `paas/<id>` in each controller it needs. On v1 that is one folder
//! per controller (memory, pids, cpu, devices); on v2 one folder in the unified tree.
//!
//! Devices: a container may open (or make) only the character devices paas-init makes
//! in its `/dev`, and its own ptys. v1 has a `devices` controller that takes this as a
//! list. v2 has none: the kernel runs a BPF program of type `BPF_PROG_TYPE_CGROUP_DEVICE`
//! attached to the cgroup at each such access instead, as runc and systemd do; the
//! program is written out here from the same list (32 instructions), loaded once per
//! process and attached to every container's cgroup.
#![allow(unsafe_code)]

use std::fs;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
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
    /// and `/sys/fs/cgroup/cpu` and `/sys/fs/cgroup/devices` when mounted).
    V1 {
        memory: PathBuf,
        pids: PathBuf,
        cpu: Option<PathBuf>,
        /// The cpuacct hierarchy when it is mounted apart from cpu (as on some hosts);
        /// `None` when `cpu` holds `cpuacct.usage` itself, or there is no cpuacct.
        cpuacct: Option<PathBuf>,
        /// `None` on a host without the devices controller: containers then have only
        /// their `/dev` and the lack of `CAP_MKNOD` between them and the host's devices.
        devices: Option<PathBuf>,
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
            let devices = base.join("devices");
            let devices = devices
                .join("devices.allow")
                .exists()
                .then(|| devices.join("paas"));
            if devices.is_none() {
                tracing::warn!(
                    "no cgroup v1 devices controller under {}: containers' access to \
                     devices is not limited by a cgroup; mount it to have it",
                    base.display()
                );
            }
            return Ok(CgroupDriver::V1 {
                memory: memory.join("paas"),
                pids: pids.join("paas"),
                cpu: cpu.join("cpu.shares").exists().then(|| cpu.join("paas")),
                cpuacct: apart.then(|| cpuacct.join("paas")),
                devices,
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
                devices,
            } => {
                // Memory and pids first, cpu third: `Cgroup`'s readers count on it.
                let mut v = vec![memory.clone(), pids.clone()];
                v.extend(cpu.clone());
                v.extend(cpuacct.clone());
                v.extend(devices.clone());
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
            CgroupDriver::V1 { cpu, devices, .. } => {
                if let Some(devices) = devices {
                    let d = devices.join(id);
                    // Nothing, then each allowed device (the file takes one line a write).
                    write(&d, "devices.deny", "a")?;
                    for (major, minor) in allowed_devices() {
                        let minor = minor.map_or("*".to_string(), |m| m.to_string());
                        write(&d, "devices.allow", &format!("c {major}:{minor} rwm"))?;
                    }
                }
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
                attach_device_program(d)?;
            }
        }
        Ok(cg)
    }
}

/// The devices a container may use, as (major, minor) of character devices, `None` for
/// any minor: the nodes paas-init makes in its `/dev` (`init::DEVICES`), the pty
/// multiplexer of its own devpts (`/dev/pts/ptmx`, 5:2) and the ptys that hands out
/// (major 136), as Docker allows them. Opening or making any other device node fails
/// with `EPERM`: a node bound in or made from outside, or a block device.
fn allowed_devices() -> impl Iterator<Item = (u32, Option<u32>)> {
    crate::init::DEVICES
        .iter()
        .map(|&(_, major, minor)| (major as u32, Some(minor as u32)))
        .chain([(5, Some(2)), (136, None)])
}

/// One eBPF instruction (`struct bpf_insn`).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct BpfInsn {
    code: u8,
    /// Destination register in the low four bits, source in the high four.
    regs: u8,
    off: i16,
    imm: i32,
}

const BPF_LDX_MEM_W: u8 = (libc::BPF_LDX | libc::BPF_MEM | libc::BPF_W) as u8;
const BPF_ALU32_AND_K: u8 = (libc::BPF_ALU | libc::BPF_AND | libc::BPF_K) as u8;
const BPF_JNE_K: u8 = 0x05 | 0x50; // BPF_JMP | BPF_JNE | BPF_K
const BPF_JA: u8 = 0x05; // BPF_JMP | BPF_JA
const BPF_MOV64_K: u8 = 0x07 | 0xb0; // BPF_ALU64 | BPF_MOV | BPF_K
const BPF_EXIT: u8 = 0x05 | 0x90; // BPF_JMP | BPF_EXIT
/// `bpf_cgroup_dev_ctx.access_type`'s low half: the kind of device.
const BPF_DEVCG_DEV_CHAR: i32 = 2;

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> BpfInsn {
    BpfInsn {
        code,
        regs: dst | (src << 4),
        off,
        imm,
    }
}

/// The v2 device program. It is given `struct bpf_cgroup_dev_ctx { u32 access_type; u32
/// major; u32 minor; }` in r1 and returns 1 to allow the access, 0 to refuse it:
///
/// ```text
/// r2 = ctx->access_type & 0xffff; if r2 != CHAR goto deny
/// r3 = ctx->major; r4 = ctx->minor
/// for each allowed device: if r3 == major && r4 == minor goto allow
/// deny: return 0
/// allow: return 1
/// ```
fn device_program() -> Vec<BpfInsn> {
    let rules: Vec<(u32, Option<u32>)> = allowed_devices().collect();
    let body: usize = rules
        .iter()
        .map(|r| if r.1.is_some() { 3 } else { 2 })
        .sum();
    let (deny, allow) = (5 + body, 5 + body + 2);
    // A jump's offset counts from the instruction after it.
    let to = |from: usize, target: usize| (target - from - 1) as i16;
    let mut p = vec![
        insn(BPF_LDX_MEM_W, 2, 1, 0, 0),
        insn(BPF_ALU32_AND_K, 2, 0, 0, 0xffff),
        insn(BPF_JNE_K, 2, 0, to(2, deny), BPF_DEVCG_DEV_CHAR),
        insn(BPF_LDX_MEM_W, 3, 1, 4, 0),
        insn(BPF_LDX_MEM_W, 4, 1, 8, 0),
    ];
    for (major, minor) in rules {
        p.push(insn(
            BPF_JNE_K,
            3,
            0,
            1 + i16::from(minor.is_some()),
            major as i32,
        ));
        if let Some(minor) = minor {
            p.push(insn(BPF_JNE_K, 4, 0, 1, minor as i32));
        }
        p.push(insn(BPF_JA, 0, 0, to(p.len(), allow), 0));
    }
    debug_assert_eq!(p.len(), deny);
    p.extend([
        insn(BPF_MOV64_K, 0, 0, 0, 0),
        insn(BPF_EXIT, 0, 0, 0, 0),
        insn(BPF_MOV64_K, 0, 0, 0, 1),
        insn(BPF_EXIT, 0, 0, 0, 0),
    ]);
    p
}

/// The start of `union bpf_attr` for `BPF_PROG_LOAD`; the kernel takes a shorter struct
/// than its own as long as the rest would be zero.
#[repr(C)]
struct BpfProgLoad {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
}

/// The start of `union bpf_attr` for `BPF_PROG_ATTACH`.
#[repr(C)]
struct BpfProgAttach {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
}

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
/// Programs of the cgroup's ancestors run too, and all must allow (as runc and systemd
/// attach theirs).
const BPF_F_ALLOW_MULTI: u32 = 2;

/// Loads the device program; on failure, the verifier's log says why.
fn load_device_program() -> std::io::Result<OwnedFd> {
    let code = device_program();
    let license = c"Apache-2.0";
    let mut name = [0u8; 16];
    name[..12].copy_from_slice(b"paas_devices");
    let mut log = vec![0u8; 4096];
    for log_level in [0, 1] {
        let attr = BpfProgLoad {
            prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
            insn_cnt: code.len() as u32,
            insns: code.as_ptr() as u64,
            license: license.as_ptr() as u64,
            log_level,
            log_size: if log_level > 0 { log.len() as u32 } else { 0 },
            log_buf: if log_level > 0 {
                log.as_mut_ptr() as u64
            } else {
                0
            },
            kern_version: 0,
            prog_flags: 0,
            prog_name: name,
        };
        // SAFETY: `attr` is the head of `union bpf_attr` for BPF_PROG_LOAD, its size is
        // passed, and the instructions, license and log it points at outlive the call.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_PROG_LOAD,
                &attr as *const BpfProgLoad,
                std::mem::size_of::<BpfProgLoad>(),
            )
        };
        if fd >= 0 {
            // SAFETY: the kernel just returned this descriptor, and nothing else owns it.
            return Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) });
        }
        if log_level > 0 {
            let e = std::io::Error::last_os_error();
            let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
            let log = String::from_utf8_lossy(&log[..end]);
            return Err(std::io::Error::new(
                e.kind(),
                format!("loading the device program: {e}: {}", log.trim()),
            ));
        }
    }
    unreachable!("the second attempt returns")
}

/// Attaches the device program to the v2 cgroup `dir`.
fn attach_device_program(dir: &Path) -> Result<(), CgroupError> {
    static PROGRAM: Mutex<Option<OwnedFd>> = Mutex::new(None);
    let action = "attaching the device program";
    let mut program = PROGRAM.lock().unwrap_or_else(|e| e.into_inner());
    let program = match &mut *program {
        Some(fd) => fd,
        empty => empty.insert(load_device_program().map_err(io_err(dir, action))?),
    };
    let cgroup = fs::File::open(dir).map_err(io_err(dir, action))?;
    let attr = BpfProgAttach {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_bpf_fd: program.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
    };
    // SAFETY: `attr` is the head of `union bpf_attr` for BPF_PROG_ATTACH and its size is
    // passed; the descriptors in it are open for the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_ATTACH,
            &attr as *const BpfProgAttach,
            std::mem::size_of::<BpfProgAttach>(),
        )
    };
    if r != 0 {
        return Err(io_err(dir, action)(std::io::Error::last_os_error()));
    }
    Ok(())
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
                // cpuacct's own folder follows cpu's (the third); else cpu's holds it.
                let dir = match (cpu, cpuacct) {
                    (_, Some(_)) => self.dirs.get(2 + usize::from(cpu.is_some()))?,
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

    #[test]
    fn the_device_program_lists_every_allowed_device() {
        // 5 instructions to read the context, 3 per device (2 for any minor), 4 to return.
        assert_eq!(device_program().len(), 5 + 7 * 3 + 2 + 4);
    }

    /// Attaches the v2 device program to a new cgroup, moves a forked child into it, and
    /// has the child open an allowed device and another one. Needs root and a cgroup v2
    /// hierarchy: all of `/sys/fs/cgroup`, or `unified` below it on a hybrid host (the
    /// kernel runs the program there too); a host with neither has nothing to check.
    #[test]
    fn the_v2_device_program_lets_only_allowed_devices_open() {
        let base = ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
            .iter()
            .map(Path::new)
            .find(|b| b.join("cgroup.controllers").exists());
        let Some(base) = base else {
            return;
        };
        let dir = base.join(format!("paas-device-test-{}", std::process::id()));
        fs::create_dir(&dir).unwrap();
        let attached = attach_device_program(&dir);
        let procs = std::ffi::CString::new(
            dir.join("cgroup.procs")
                .into_os_string()
                .into_encoded_bytes(),
        )
        .unwrap();
        // (device, the errno its open should fail with, 0 for none)
        let probes = [
            (c"/dev/null", 0),
            (c"/dev/zero", 0),
            (c"/dev/kmsg", libc::EPERM),
        ];
        let mut results = Vec::new();
        if attached.is_ok() {
            for (dev, _) in probes {
                // SAFETY: the child makes raw syscalls only and leaves with _exit, so
                // nothing in it depends on the test harness's other threads.
                let status = unsafe {
                    let pid = libc::fork();
                    assert!(pid >= 0, "fork failed");
                    if pid == 0 {
                        let fd = libc::open(procs.as_ptr(), libc::O_WRONLY);
                        if fd < 0 || libc::write(fd, c"0".as_ptr().cast(), 1) != 1 {
                            libc::_exit(100);
                        }
                        let r = libc::open(dev.as_ptr(), libc::O_WRONLY | libc::O_NONBLOCK);
                        libc::_exit(if r < 0 { *libc::__errno_location() } else { 0 });
                    }
                    let mut status = 0;
                    libc::waitpid(pid, &mut status, 0);
                    status
                };
                results.push(libc::WEXITSTATUS(status));
            }
        }
        fs::remove_dir(&dir).unwrap();
        attached.unwrap();
        let expected: Vec<i32> = probes.iter().map(|p| p.1).collect();
        assert_eq!(results, expected, "exit codes for {probes:?}");
    }
}
