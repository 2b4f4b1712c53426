//! The `paas-init` program: turns a [`ContainerSpec`] into a running, isolated process.
//!
//! Three processes, each with one job:
//! 1. the **shim** (started by the daemon) joins the cgroup and network namespace,
//!    unshares the rest and forks; it relays signals in and the exit status out, so the
//!    daemon can treat the container as one child process;
//! 2. **pid 1** of the new pid namespace builds the root filesystem, `pivot_root`s into it,
//!    starts the process and reaps every zombie until that process exits;
//! 3. the **process** drops to the unprivileged user, loses every capability, sets
//!    `no_new_privs`, closes inherited descriptors and `exec`s.
//!
//! Signals are blocked and taken with `sigwaitinfo` rather than handlers, so no code runs
//! in signal context.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::fs;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{symlink, DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{
    chdir, fork, pivot_root, setgid, setgroups, sethostname, setsid, setuid, ForkResult, Gid, Pid,
    Uid,
};

use crate::spec::{ContainerSpec, ExecSpec, IdMap, Mount, MountKind, ProcessSpec};
use crate::INIT_FAILURE_EXIT_CODE;

type Result<T> = std::result::Result<T, String>;

/// Signals the shim and pid 1 pass on to the process.
const FORWARDED: [Signal; 6] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

/// Entry point of the `paas-init` binary: reads the spec from stdin. Never returns.
pub fn main() -> ! {
    let code = match run_shim() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("paas-init: {e}");
            INIT_FAILURE_EXIT_CODE
        }
    };
    std::process::exit(code)
}

/// Entry point of `paas-init --exec SPEC.json`: runs a process inside a running
/// container. Never returns.
pub fn exec_main(spec_path: &Path) -> ! {
    let code = match run_exec(spec_path) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("paas-init: {e}");
            INIT_FAILURE_EXIT_CODE
        }
    };
    std::process::exit(code)
}

/// Namespaces joined by `--exec`, the mount namespace last: once in it, the host's
/// `/proc` is no longer visible to open the others.
const EXEC_NAMESPACES: [(&str, CloneFlags); 6] = [
    ("ipc", CloneFlags::CLONE_NEWIPC),
    ("uts", CloneFlags::CLONE_NEWUTS),
    ("net", CloneFlags::CLONE_NEWNET),
    ("pid", CloneFlags::CLONE_NEWPID),
    ("cgroup", CloneFlags::CLONE_NEWCGROUP),
    ("mnt", CloneFlags::CLONE_NEWNS),
];

fn run_exec(spec_path: &Path) -> Result<i32> {
    let raw = ctx(
        fs::read(spec_path),
        &format!("reading {}", spec_path.display()),
    )?;
    let _ = fs::remove_file(spec_path);
    let spec: ExecSpec = ctx(serde_json::from_slice(&raw), "parsing the exec spec")?;
    for procs in &spec.cgroup_procs {
        ctx(
            fs::write(procs, std::process::id().to_string()),
            &format!("joining cgroup {}", procs.display()),
        )?;
    }
    // Open every namespace first: after joining the mount namespace, /proc/<pid> of the
    // host is gone.
    let mut handles = Vec::new();
    for (name, flag) in EXEC_NAMESPACES {
        let path = format!("/proc/{}/ns/{name}", spec.target_pid);
        handles.push((
            ctx(fs::File::open(&path), &format!("opening {path}"))?,
            flag,
            name,
        ));
    }
    // A container with a user namespace of its own: joined last, once everything that
    // needs the host's root is done, and then as its root.
    let user = format!("/proc/{}/ns/user", spec.target_pid);
    let theirs = ctx(fs::metadata(&user), &format!("reading {user}"))?;
    let ours = ctx(
        fs::metadata("/proc/self/ns/user"),
        "reading our user namespace",
    )?;
    let join_user = if (theirs.dev(), theirs.ino()) != (ours.dev(), ours.ino()) {
        Some(ctx(fs::File::open(&user), &format!("opening {user}"))?)
    } else {
        None
    };
    for (file, flag, name) in handles {
        ctx(setns(file, flag), &format!("joining the {name} namespace"))?;
    }
    if let Some(file) = join_user {
        ctx(
            setns(file, CloneFlags::CLONE_NEWUSER),
            "joining the user namespace",
        )?;
        let (uid, gid) = (Uid::from_raw(0), Gid::from_raw(0));
        ctx(
            nix::unistd::setresgid(gid, gid, gid),
            "becoming the namespace's root group",
        )?;
        ctx(
            nix::unistd::setresuid(uid, uid, uid),
            "becoming the namespace's root",
        )?;
    }
    let signals = blocked_signals();
    ctx(signals.thread_block(), "blocking signals")?;
    // The pid namespace applies to children: the process is forked into it. It becomes
    // vcap with no capabilities before anything of the container's can see it, so a
    // container process cannot reach this host binary through /proc/PID/exe
    // (CVE-2019-5736 needs root in the container, which no container process has).
    // SAFETY: paas-init is single-threaded, so the child may run any code after fork.
    match ctx(unsafe { fork() }, "forking into the container")? {
        ForkResult::Child => {
            let _ = chdir("/");
            let err = exec_process(&spec.process, &signals, false);
            eprintln!("paas-init: {err}");
            std::process::exit(127)
        }
        ForkResult::Parent { child } => Ok(supervise(child, &signals, false)),
    }
}

fn ctx<T, E: std::fmt::Display>(r: std::result::Result<T, E>, what: &str) -> Result<T> {
    r.map_err(|e| format!("{what}: {e}"))
}

fn run_shim() -> Result<i32> {
    // Unbuffered: what follows the spec and the go byte on stdin is the process's own
    // input, and std's buffer would swallow it.
    let spec = ContainerSpec::read_framed(&mut RawStdin)?;
    // Held, never read, until the shim exits (see `ContainerSpec::hold_open`).
    let mut held = Vec::with_capacity(spec.hold_open.len());
    for fifo in &spec.hold_open {
        held.push(ctx(
            fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(fifo),
            &format!("holding {} open", fifo.display()),
        )?);
    }
    let status_file = match &spec.status_file {
        Some(path) => Some(ctx(
            fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(path),
            &format!("opening {}", path.display()),
        )?),
        None => None,
    };
    // A new network namespace needs nothing from the daemon, so it is made while the
    // daemon is still creating the cgroup. Its few kernel objects are charged to the
    // daemon's memory cgroup rather than the container's: a fixed amount per container,
    // which the app cannot grow.
    if spec.netns.is_none() {
        ctx(
            unshare(CloneFlags::CLONE_NEWNET),
            "unsharing the network namespace",
        )?;
        // Done here, as root of the host's user namespace, which owns this network
        // namespace: the container's own root could not.
        loopback_up()?;
    }
    wait_for_go(spec.stdin)?;
    for procs in &spec.cgroup_procs {
        ctx(
            fs::write(procs, std::process::id().to_string()),
            &format!("joining cgroup {}", procs.display()),
        )?;
    }
    if let Some(path) = &spec.netns {
        let f = ctx(fs::File::open(path), &format!("opening {}", path.display()))?;
        ctx(
            setns(f, CloneFlags::CLONE_NEWNET),
            "joining the network namespace",
        )?;
    }
    ctx(
        unshare(
            CloneFlags::CLONE_NEWNS
                | CloneFlags::CLONE_NEWUTS
                | CloneFlags::CLONE_NEWIPC
                | CloneFlags::CLONE_NEWPID
                | CloneFlags::CLONE_NEWCGROUP,
        ),
        "unsharing namespaces",
    )?;

    let signals = blocked_signals();
    ctx(signals.thread_block(), "blocking signals")?;

    // SAFETY: paas-init is single-threaded, so the child may run any code after fork.
    match ctx(unsafe { fork() }, "forking pid 1")? {
        ForkResult::Child => {
            let code = match run_pid1(&spec) {
                Ok(code) => code,
                Err(e) => {
                    eprintln!("paas-init: {e}");
                    INIT_FAILURE_EXIT_CODE
                }
            };
            std::process::exit(code)
        }
        ForkResult::Parent { child } => {
            let code = supervise(child, &signals, false);
            if let Some(mut f) = status_file {
                // Best effort: a daemon that finds no status says the shim vanished.
                let _ = std::io::Write::write_all(&mut f, code.to_string().as_bytes());
            }
            drop(held);
            Ok(code)
        }
    }
}

/// Waits for the daemon's go byte on stdin: it comes once the cgroup, network and disk
/// are ready. Then, unless the process is to `keep` it (what the daemon writes next is
/// its input), stdin becomes `/dev/null`, which the process inherits.
fn wait_for_go(keep: bool) -> Result<()> {
    let mut byte = [0u8; 1];
    let n = ctx(RawStdin.read(&mut byte), "waiting for the daemon")?;
    if n == 0 {
        return Err("the daemon gave up on this container before it started".to_string());
    }
    if !keep {
        let null = ctx(fs::File::open("/dev/null"), "opening /dev/null for stdin")?;
        ctx(nix::unistd::dup2_stdin(null), "making /dev/null the stdin")?;
    }
    Ok(())
}

/// Reads fd 0 directly, a read a call: no byte is taken that the caller did not ask for.
struct RawStdin;

impl Read for RawStdin {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use std::os::fd::AsFd;
        nix::unistd::read(std::io::stdin().as_fd(), buf).map_err(std::io::Error::from)
    }
}

fn blocked_signals() -> SigSet {
    let mut set = SigSet::empty();
    for s in FORWARDED {
        set.add(s);
    }
    set.add(Signal::SIGCHLD);
    set
}

/// Waits for `main` to exit, passing forwarded signals on to it. As pid 1 (`reap_all`)
/// it also reaps orphans, and kills what is left once `main` is gone.
fn supervise(main: Pid, signals: &SigSet, reap_all: bool) -> i32 {
    loop {
        let sig = match signals.wait() {
            Ok(sig) => sig,
            Err(_) => continue,
        };
        if sig != Signal::SIGCHLD {
            let _ = kill(main, sig);
            continue;
        }
        let target = if reap_all { Pid::from_raw(-1) } else { main };
        loop {
            match waitpid(target, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) if pid == main => return finish(reap_all, code),
                Ok(WaitStatus::Signaled(pid, s, _)) if pid == main => {
                    return finish(reap_all, 128 + s as i32)
                }
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => continue,
            }
        }
    }
}

fn finish(reap_all: bool, code: i32) -> i32 {
    if reap_all {
        // The process is gone: nothing else in this container may outlive it.
        let _ = kill(Pid::from_raw(-1), Signal::SIGKILL);
        while waitpid(Pid::from_raw(-1), None).is_ok() {}
    }
    code
}

fn run_pid1(spec: &ContainerSpec) -> Result<i32> {
    // If the shim dies, so do we, and with pid 1 the whole namespace.
    ctx(
        nix::sys::prctl::set_pdeathsig(Some(Signal::SIGKILL)),
        "setting the parent-death signal",
    )?;
    build_root(spec)?;
    ctx(sethostname(&spec.hostname), "setting the hostname")?;
    // Everything above needed the host's root; from here pid 1 and the process are in a
    // user namespace of their own. It owns no other namespace: the mounts, network and
    // hostname were made by the host's root and cannot be changed from inside, even by
    // the namespace's root.
    if let Some(map) = spec.id_map {
        enter_user_namespace(map)?;
    }
    // A terminal: made here, inside, and its master sent to the daemon over stdin.
    let slave = match spec.tty {
        Some(size) => {
            let (master, slave) =
                crate::terminal::open(size, (spec.process.uid, spec.process.gid))?;
            crate::terminal::send(0, &master)?;
            drop(master);
            let null = ctx(fs::File::open("/dev/null"), "opening /dev/null for stdin")?;
            ctx(nix::unistd::dup2_stdin(null), "making /dev/null the stdin")?;
            Some(slave)
        }
        None => None,
    };
    let signals = blocked_signals();
    // SAFETY: pid 1 is single-threaded, so the child may run any code after fork.
    match ctx(unsafe { fork() }, "forking the process")? {
        ForkResult::Child => {
            if let Some(slave) = &slave {
                for (dup, what) in [
                    (nix::unistd::dup2_stdin(slave), "stdin"),
                    (nix::unistd::dup2_stdout(slave), "stdout"),
                    (nix::unistd::dup2_stderr(slave), "stderr"),
                ] {
                    if let Err(e) = dup {
                        eprintln!("paas-init: making the terminal the {what}: {e}");
                        std::process::exit(127)
                    }
                }
            }
            drop(slave);
            let err = exec_process(&spec.process, &signals, spec.tty.is_some());
            eprintln!("paas-init: {err}");
            std::process::exit(127)
        }
        ForkResult::Parent { child } => {
            drop(slave);
            Ok(supervise(child, &signals, true))
        }
    }
}

fn build_root(spec: &ContainerSpec) -> Result<()> {
    ctx(
        mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_REC | MsFlags::MS_PRIVATE,
            None::<&str>,
        ),
        "making mounts private",
    )?;
    let root = &spec.rootfs;
    ctx(
        mount(
            Some("tmpfs"),
            root,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some("mode=755,size=1m"),
        ),
        &format!("mounting the root tmpfs on {}", root.display()),
    )?;
    for m in &spec.mounts {
        do_mount(root, m)?;
    }
    for (target, link) in &spec.symlinks {
        let at = inside(root, link);
        if let Some(parent) = at.parent() {
            mkdir_p(parent)?;
        }
        ctx(symlink(target, &at), &format!("linking {link} to {target}"))?;
    }

    ctx(chdir(root), "entering the new root")?;
    // pivot_root(".", ".") stacks the old root under the new one; detaching it leaves
    // only the new root visible (the approach runc uses, no temporary folder needed).
    ctx(pivot_root(".", "."), "pivot_root")?;
    ctx(umount2(".", MntFlags::MNT_DETACH), "detaching the old root")?;
    ctx(chdir("/"), "entering /")?;
    // The root tmpfs holds only mount points and links: nothing may add to it.
    ctx(
        mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            None::<&str>,
        ),
        "making / read-only",
    )?;
    Ok(())
}

/// `target` (an absolute path inside the container) under the host path of the new root.
fn inside(root: &Path, target: &str) -> PathBuf {
    root.join(target.trim_start_matches('/'))
}

fn mkdir_p(path: &Path) -> Result<()> {
    ctx(
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(path),
        &format!("creating {}", path.display()),
    )
}

fn do_mount(root: &Path, m: &Mount) -> Result<()> {
    let at = inside(root, &m.target);
    let what = format!("mounting {}", m.target);
    match &m.kind {
        MountKind::Bind { source, readonly } => {
            if source.is_dir() {
                mkdir_p(&at)?;
            } else {
                // A file mounted over one already there (such as /etc/resolv.conf in
                // the read-only /etc) needs no mount point made.
                if !at.exists() {
                    if let Some(p) = at.parent() {
                        mkdir_p(p)?;
                    }
                    ctx(fs::write(&at, b""), &what)?;
                }
            }
            bind(source, &at, *readonly)
                .map_err(|e| format!("{what} from {}: {e}", source.display()))
        }
        MountKind::Tmpfs {
            size_bytes,
            mode,
            uid,
            gid,
        } => {
            mkdir_p(&at)?;
            let data = format!("size={size_bytes},mode={mode:o},uid={uid},gid={gid}");
            ctx(
                mount(
                    Some("tmpfs"),
                    &at,
                    Some("tmpfs"),
                    MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
                    Some(data.as_str()),
                ),
                &what,
            )
        }
        MountKind::Overlay { lower, upper, work } => {
            mkdir_p(&at)?;
            let data = format!(
                "lowerdir={},upperdir={},workdir={}",
                lower.display(),
                upper.display(),
                work.display()
            );
            ctx(
                mount(
                    Some("overlay"),
                    &at,
                    Some("overlay"),
                    MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
                    Some(data.as_str()),
                ),
                &what,
            )
        }
        MountKind::Proc => mount_proc(&at),
        MountKind::Dev => mount_dev(&at),
    }
}

/// `struct mount_attr` of `mount_setattr(2)`, and the attributes used here.
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}
const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NOSUID: u64 = 0x2;
const MOUNT_ATTR_NODEV: u64 = 0x4;

/// Binds `source` and what is mounted below it at `at`, all of it nosuid and nodev, and
/// read-only when asked. A bind remount would change the top mount only and leave those
/// below writable (runc's plain `ro` has the same gap; its `rro` is this); mount_setattr
/// with `AT_RECURSIVE` (Linux 5.12) changes the whole tree in one call. Flags not named
/// stay as the host has them.
fn bind(source: &Path, at: &Path, readonly: bool) -> Result<()> {
    ctx(
        mount(
            Some(source),
            at,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        ),
        "binding",
    )?;
    let attrs = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | if readonly { MOUNT_ATTR_RDONLY } else { 0 };
    set_mount_attr(at, attrs, true).map_err(|e| {
        let what = if readonly {
            "making it read-only, nosuid and nodev"
        } else {
            "making it nosuid and nodev"
        };
        format!("{what}: {e}")
    })
}

/// Sets `attrs` on the mount at `at` (and every mount below it, if `recursive`), leaving
/// its other attributes as they are.
fn set_mount_attr(at: &Path, attrs: u64, recursive: bool) -> Result<()> {
    let attr = MountAttr {
        attr_set: attrs,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    let path = CString::new(at.as_os_str().as_encoded_bytes())
        .map_err(|_| format!("{} contains a NUL byte", at.display()))?;
    let flags = if recursive { libc::AT_RECURSIVE } else { 0 };
    // SAFETY: `path` is a NUL-terminated string and `attr` a `struct mount_attr` whose
    // size is passed along; both outlive the call, which only reads them.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            path.as_ptr(),
            flags as libc::c_uint,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r != 0 {
        let e = std::io::Error::last_os_error();
        let hint = if e.raw_os_error() == Some(libc::ENOSYS) {
            " (mount_setattr needs Linux 5.12 or later)"
        } else {
            ""
        };
        return Err(format!("{e}{hint}"));
    }
    Ok(())
}

/// Paths of `/proc` that leak host information or allow host changes, hidden or made
/// read-only as runc does by default (see runc's `config.json` `maskedPaths` and
/// `readonlyPaths`; CVE-2019-16884 and CVE-2019-19921 are attacks on these mounts). Those
/// the kernel does not have are skipped. runc's `/sys/firmware` has no counterpart: no
/// container has a `/sys`.
const PROC_MASKED: [&str; 7] = [
    "kcore",
    "keys",
    "latency_stats",
    "timer_list",
    "timer_stats",
    "sched_debug",
    "sysrq-trigger",
];
const PROC_MASKED_DIRS: [&str; 3] = ["acpi", "asound", "scsi"];
const PROC_READONLY: [&str; 4] = ["bus", "fs", "irq", "sys"];

fn mount_proc(at: &Path) -> Result<()> {
    mkdir_p(at)?;
    ctx(
        mount(
            Some("proc"),
            at,
            Some("proc"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            None::<&str>,
        ),
        "mounting /proc",
    )?;
    for name in PROC_MASKED {
        let p = at.join(name);
        if p.exists() {
            ctx(
                mount(
                    Some("/dev/null"),
                    &p,
                    None::<&str>,
                    MsFlags::MS_BIND,
                    None::<&str>,
                ),
                &format!("masking /proc/{name}"),
            )?;
        }
    }
    for name in PROC_MASKED_DIRS {
        let p = at.join(name);
        if p.is_dir() {
            ctx(
                mount(
                    Some("tmpfs"),
                    &p,
                    Some("tmpfs"),
                    MsFlags::MS_RDONLY
                        | MsFlags::MS_NOSUID
                        | MsFlags::MS_NODEV
                        | MsFlags::MS_NOEXEC,
                    Some("size=0"),
                ),
                &format!("masking /proc/{name}"),
            )?;
        }
    }
    for name in PROC_READONLY {
        let p = at.join(name);
        if p.exists() {
            bind(&p, &p, true).map_err(|e| format!("making /proc/{name} read-only: {e}"))?;
        }
    }
    Ok(())
}

/// The device nodes of `/dev`: name, major, minor (as in Linux's devices.txt). The
/// container's device cgroup allows these and nothing else but its ptys (`cgroup.rs`).
pub(crate) const DEVICES: [(&str, u64, u64); 6] = [
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

fn mount_dev(at: &Path) -> Result<()> {
    mkdir_p(at)?;
    ctx(
        mount(
            Some("tmpfs"),
            at,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
            Some("mode=755,size=64k"),
        ),
        "mounting /dev",
    )?;
    // Made with mknod, as runc does outside user namespaces: cheaper than a bind mount of
    // each host node, and only these six well-known character devices are ever made. The
    // process cannot add more: it has no CAP_MKNOD; and the device cgroup refuses any
    // other device, should a node of one appear.
    for (name, major, minor) in DEVICES {
        let p = at.join(name);
        ctx(
            nix::sys::stat::mknod(
                &p,
                nix::sys::stat::SFlag::S_IFCHR,
                nix::sys::stat::Mode::from_bits_truncate(0o666),
                nix::sys::stat::makedev(major, minor),
            ),
            &format!("creating /dev/{name}"),
        )?;
        // mknod applies the umask; every user may use these.
        ctx(
            fs::set_permissions(&p, fs::Permissions::from_mode(0o666)),
            &format!("opening /dev/{name} to every user"),
        )?;
    }
    let pts = at.join("pts");
    mkdir_p(&pts)?;
    ctx(
        mount(
            Some("devpts"),
            &pts,
            Some("devpts"),
            MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
            Some("newinstance,ptmxmode=0666,mode=0620"),
        ),
        "mounting /dev/pts",
    )?;
    let shm = at.join("shm");
    mkdir_p(&shm)?;
    ctx(
        mount(
            Some("shm"),
            &shm,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            Some("mode=1777,size=64m"),
        ),
        "mounting /dev/shm",
    )?;
    for (target, link) in [
        ("pts/ptmx", "ptmx"),
        ("/proc/self/fd", "fd"),
        ("/proc/self/fd/0", "stdin"),
        ("/proc/self/fd/1", "stdout"),
        ("/proc/self/fd/2", "stderr"),
    ] {
        ctx(
            symlink(target, at.join(link)),
            &format!("linking /dev/{link}"),
        )?;
    }
    let _ = fs::set_permissions(at, fs::Permissions::from_mode(0o755));
    Ok(())
}

/// Enters a new user namespace with `map`'s ids and becomes its root. Its id maps are
/// written by a child that stays in the host's user namespace (the only place they can
/// be written from with a range of host ids), once this process has unshared. Called as
/// pid 1 after `pivot_root`: `/proc/1` is this process.
fn enter_user_namespace(map: IdMap) -> Result<()> {
    let (ready_r, ready_w) = ctx(
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC),
        "making a pipe",
    )?;
    let me = nix::unistd::getpid();
    // SAFETY: paas-init is single-threaded, so the child may run any code after fork.
    match ctx(unsafe { fork() }, "forking the id mapper")? {
        ForkResult::Child => {
            drop(ready_w);
            let mut byte = [0u8; 1];
            let code = match fs::File::from(ready_r).read(&mut byte) {
                Ok(1) => match write_id_maps(me, map) {
                    Ok(()) => 0,
                    Err(e) => {
                        eprintln!("paas-init: {e}");
                        1
                    }
                },
                _ => 1,
            };
            std::process::exit(code)
        }
        ForkResult::Parent { child } => {
            drop(ready_r);
            let unshared = ctx(
                unshare(CloneFlags::CLONE_NEWUSER),
                "unsharing the user namespace",
            );
            let told = ctx(nix::unistd::write(&ready_w, b"u"), "waking the id mapper");
            drop(ready_w);
            let mapped = matches!(
                ctx(waitpid(child, None), "waiting for the id mapper")?,
                WaitStatus::Exited(_, 0)
            );
            unshared?;
            told?;
            if !mapped {
                return Err("writing the user namespace's id maps failed".to_string());
            }
            let root = (Uid::from_raw(0), Gid::from_raw(0));
            ctx(
                nix::unistd::setresgid(root.1, root.1, root.1),
                "becoming the namespace's root group",
            )?;
            ctx(
                nix::unistd::setresuid(root.0, root.0, root.0),
                "becoming the namespace's root",
            )?;
            ctx(setgroups(&[]), "dropping the host's groups")?;
            Ok(())
        }
    }
}

/// Writes the uid and gid maps of `pid`'s user namespace.
fn write_id_maps(pid: Pid, map: IdMap) -> Result<()> {
    let line = format!("0 {} {}\n", map.host_base, map.size);
    for file in ["uid_map", "gid_map"] {
        let path = format!("/proc/{pid}/{file}");
        ctx(fs::write(&path, &line), &format!("writing {path}"))?;
    }
    Ok(())
}

/// Brings `lo` up in a fresh network namespace (`ip link set lo up`, via ioctl).
fn loopback_up() -> Result<()> {
    let sock = ctx(
        nix::sys::socket::socket(
            nix::sys::socket::AddressFamily::Inet,
            nix::sys::socket::SockType::Datagram,
            nix::sys::socket::SockFlag::SOCK_CLOEXEC,
            None,
        ),
        "opening a socket to configure loopback",
    )?;
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: `req` is a valid ifreq naming "lo"; SIOCGIFFLAGS fills ifru_flags.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } < 0 {
        return Err(format!(
            "reading loopback flags: {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: the ioctl above initialised ifru_flags, the union member we read and write.
    unsafe { req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
    // SAFETY: as above; SIOCSIFFLAGS reads ifru_flags.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) } < 0 {
        return Err(format!(
            "bringing loopback up: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// Becomes the unprivileged process `p` and execs it; with `terminal`, its stdin is a terminal it takes as its
/// controlling one. Returns only on failure, with why.
fn exec_process(p: &ProcessSpec, signals: &SigSet, terminal: bool) -> String {
    if let Err(e) = signals.thread_unblock() {
        return format!("unblocking signals: {e}");
    }
    let _ = setsid();
    // SAFETY: TIOCSCTTY takes an integer argument (0: do not steal it from another
    // session); no memory is passed.
    if terminal && unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) } < 0 {
        return format!(
            "taking the terminal as the controlling one: {}",
            std::io::Error::last_os_error()
        );
    }
    // Empty the capability bounding set while still root (it needs CAP_SETPCAP), so that
    // no file capability can hand a capability back after the uid change.
    for cap in 0..=63 {
        // SAFETY: PR_CAPBSET_DROP takes a capability number; unknown numbers fail with
        // EINVAL, which is harmless.
        unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) };
    }
    // SAFETY: clearing the ambient set takes no pointers.
    unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        )
    };
    if let Err(e) = setgroups(&[Gid::from_raw(p.gid)]) {
        return format!("setting groups: {e}");
    }
    if let Err(e) = setgid(Gid::from_raw(p.gid)) {
        return format!("setting gid {}: {e}", p.gid);
    }
    // Leaving uid 0 clears the permitted and effective capability sets.
    if let Err(e) = setuid(Uid::from_raw(p.uid)) {
        return format!("setting uid {}: {e}", p.uid);
    }
    // Dies with its parent (pid 1, or `paas-init --exec`); set after the uid change,
    // which clears it.
    let _ = nix::sys::prctl::set_pdeathsig(Some(Signal::SIGKILL));
    if let Err(e) = nix::sys::prctl::set_no_new_privs() {
        return format!("setting no_new_privs: {e}");
    }
    if let Err(e) = chdir(p.cwd.as_str()) {
        return format!("entering {}: {e}", p.cwd);
    }
    // Open files: the limit Cloud Foundry gives (`limits.fds` in VCAP_APPLICATION).
    if let Err(e) = nix::sys::resource::setrlimit(
        nix::sys::resource::Resource::RLIMIT_NOFILE,
        crate::NOFILE_LIMIT,
        crate::NOFILE_LIMIT,
    ) {
        return format!("limiting open files: {e}");
    }
    // Close every inherited descriptor but stdio, so no host file or directory leaks into
    // the app (CVE-2024-21626 was a leaked cgroup directory descriptor in runc).
    // SAFETY: close_range takes plain integers.
    unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) };
    let to_c = |s: &str| CString::new(s).map_err(|_| format!("{s:?} contains a NUL byte"));
    let args = match p.args.iter().map(|a| to_c(a)).collect::<Result<Vec<_>>>() {
        Ok(a) if !a.is_empty() => a,
        Ok(_) => return "no command to run".to_string(),
        Err(e) => return e,
    };
    let env = match p.env.iter().map(|a| to_c(a)).collect::<Result<Vec<_>>>() {
        Ok(e) => e,
        Err(e) => return e,
    };
    // Last, so that nothing above needs a syscall the filter refuses.
    if let Err(e) = crate::seccomp::apply() {
        return e;
    }
    match nix::unistd::execve(&args[0], &args, &env) {
        Ok(never) => match never {},
        Err(e) => format!("running {}: {e}", p.args[0]),
    }
}
