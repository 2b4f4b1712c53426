//! The daemon side: start, stop and clean up containers.
//!
//! File work here (a few small files and folders per container) uses `std::fs` directly:
//! each call takes microseconds, while `tokio::fs` would hand every one to a blocking
//! thread, which costs more than the work and shows in container start times.

use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, ChildStdin, Command};

use crate::cgroup::{Cgroup, CgroupDriver, CgroupError, Limits};
use crate::network::{AddressPool, InstanceAddress, NetworkError};
use crate::spec::{ContainerSpec, ExecSpec, IdMap, Mount, MountKind, ProcessSpec};
use crate::stack::Stack;
use crate::INIT_FAILURE_EXIT_CODE;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("stack {0} is not on this host: build it with `paasd stack build --name {0}` and start paasd again, or see `paas stacks`")]
    NoStack(String),
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error(transparent)]
    Network(#[from] NetworkError),
    #[error(transparent)]
    Disk(#[from] crate::disk::DiskError),
    #[error("container {id}: {action}: {source}")]
    Io {
        id: String,
        action: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("container id {0:?} is invalid: use 1-40 lowercase letters, digits and '-'")]
    BadId(String),
}

/// How a container reaches the network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetworkMode {
    /// Loopback only: used for staging, which must not reach the platform.
    Isolated,
    /// Its own address, from [`Runtime::allocate_address`], reachable from the host (the
    /// router, health checks). The container owns it from then on, and frees it.
    Routed(InstanceAddress),
}

/// What to run, and how.
#[derive(Debug, Clone)]
pub struct ContainerConfig {
    /// Unique on this host; names the cgroup and the container's folder.
    pub id: String,
    pub hostname: String,
    /// The stack it runs on (see [`Runtime::stacks`]).
    pub stack: String,
    /// Mounts on top of the stack's, in order.
    pub mounts: Vec<Mount>,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub uid: u32,
    pub gid: u32,
    pub limits: Limits,
    pub network: NetworkMode,
    /// A writable layer over a read-only folder (a droplet), with an optional quota.
    pub writable: Option<WritableLayer>,
    /// A user namespace of its own (`uid` and `gid` are then ids inside it); `None`
    /// runs it with the host's ids.
    pub id_map: Option<IdMap>,
    /// Give the process a pipe as its stdin ([`Container::stdin`]); else `/dev/null`.
    pub stdin: bool,
    /// Give the process a terminal of this size instead, made inside the container, as
    /// its stdin, stdout and stderr ([`Container::terminal`]; `stdin` is then unused).
    pub tty: Option<crate::TtySize>,
    /// Set for a container that outlives the daemon (an app instance): its output goes
    /// through FIFOs its shim holds open, what a later daemon needs to take it over is
    /// recorded, and [`Runtime::recover`] hands it, with this label, to the next run of
    /// the daemon, which may [`Runtime::adopt`] it. Without one, a container is removed
    /// when the daemon starts again.
    pub survivor_label: Option<String>,
}

/// A copy-on-write layer: `lower` read-only, changes kept in the container's folder (or
/// on its quota filesystem) and gone with the container.
#[derive(Debug, Clone)]
pub struct WritableLayer {
    /// Where it appears inside the container.
    pub target: String,
    pub lower: PathBuf,
    /// The most its changes may take, in bytes; `None` for no quota.
    pub disk_bytes: Option<u64>,
}

/// Why a container's process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitReason {
    Exited(i32),
    Signaled(i32),
    /// The kernel killed it for using more than its memory limit.
    OutOfMemory,
    /// `paas-init` could not set the container up; the reason is on its stderr.
    SetupFailed,
    /// A container taken over from an earlier daemon ended without its shim writing a
    /// status (the shim itself was killed).
    Vanished,
}

impl std::fmt::Display for ExitReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExitReason::Exited(c) => write!(f, "exited with status {c}"),
            ExitReason::Signaled(s) => write!(f, "killed by signal {s}"),
            ExitReason::OutOfMemory => f.write_str("out of memory"),
            ExitReason::SetupFailed => f.write_str("container setup failed"),
            ExitReason::Vanished => f.write_str("its container's supervisor was killed"),
        }
    }
}

/// The shared root mount point's name in the state folder. Container ids cannot start
/// with a dot, so it is never taken for a container's folder.
const ROOT_MOUNT_POINT: &str = ".root";

/// What the daemon needs to clean a container up, even after the daemon itself crashed,
/// and for a container with a survivor label, to take it over (`state.json` in its
/// folder).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Leftovers {
    address: Option<(u32, String, String)>,
    /// The shim's pid and its start time (`/proc/PID/stat`, in clock ticks since boot),
    /// which tells it from a later process given the same pid.
    #[serde(default)]
    shim: Option<(i32, u64)>,
    #[serde(default)]
    label: Option<String>,
    /// What `exec` runs commands as, in a container taken over.
    #[serde(default)]
    process: Option<ProcessSpec>,
}

/// Names, in a container's folder, of the FIFOs its output goes through and of the
/// file its shim writes the exit code to (containers with a survivor label).
const STDOUT_FIFO: &str = "stdout";
const STDERR_FIFO: &str = "stderr";
const STATUS_FILE: &str = "status";
/// How much output a survivor's pipe holds while no daemon reads it: 1 MiB, Linux's
/// default `pipe-max-size`, about ten thousand access-log lines.
const SURVIVOR_PIPE_BYTES: i32 = 1 << 20;

/// A container an earlier run of the daemon left running, found by
/// [`Runtime::recover`]: [`Runtime::adopt`] it, or [`Runtime::remove`] it.
#[derive(Debug)]
pub struct Survivor {
    pub id: String,
    /// Its [`ContainerConfig::survivor_label`].
    pub label: String,
    dir: PathBuf,
    leftovers: Leftovers,
    /// Its address, taken from the pool as it was found, so no container started
    /// meanwhile is given it.
    address: Option<InstanceAddress>,
}

/// Starts containers. One per host.
#[derive(Debug)]
pub struct Runtime {
    init_exe: PathBuf,
    state_dir: PathBuf,
    cgroups: CgroupDriver,
    pool: Arc<AddressPool>,
    /// The stacks containers may run on: the host's first.
    stacks: Vec<Stack>,
}

impl Runtime {
    /// `init_exe` is the `paas-init` binary; container folders live under `state_dir`.
    pub fn new(
        init_exe: PathBuf,
        state_dir: PathBuf,
        cgroups: CgroupDriver,
        pool: AddressPool,
        stacks: Vec<Stack>,
    ) -> Result<Self, RuntimeError> {
        std::fs::create_dir_all(state_dir.join(ROOT_MOUNT_POINT)).map_err(|source| {
            RuntimeError::Io {
                id: String::new(),
                action: "creating the state folder",
                source,
            }
        })?;
        Ok(Runtime {
            init_exe,
            state_dir,
            cgroups,
            pool: Arc::new(pool),
            stacks,
        })
    }

    pub fn cgroup_version(&self) -> u8 {
        self.cgroups.version()
    }

    /// Takes an address for the routed container `id`, so that its environment can name
    /// it before it starts. Pass it in [`NetworkMode::Routed`].
    pub fn allocate_address(&self, id: &str) -> Result<InstanceAddress, RuntimeError> {
        Ok(self.pool.allocate(id)?)
    }

    /// Gives back an address that [`Runtime::allocate_address`] handed out but no
    /// container came to use.
    pub fn release_address(&self, address: &InstanceAddress) {
        self.pool.release(address);
    }

    /// The empty folder every container's root filesystem is assembled on. They share
    /// it: each mounts its own tmpfs there inside its own private mount namespace, so no
    /// other container or the host sees it, and no folder is made and removed per start
    /// (removing a former mount point costs about 0.2 ms).
    fn root_mount_point(&self) -> PathBuf {
        self.state_dir.join(ROOT_MOUNT_POINT)
    }

    /// The folder of container `id`: callers may put its overlay layers here, and it is
    /// removed with the container.
    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.state_dir.join(id)
    }

    /// Starts a container. Its stdout and stderr are pipes the caller reads.
    pub async fn start(&self, cfg: ContainerConfig) -> Result<Container, RuntimeError> {
        let id = cfg.id.clone();
        let valid = !id.is_empty()
            && id.len() <= 40
            && id
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !valid {
            return Err(RuntimeError::BadId(id));
        }
        let io = |action: &'static str| {
            let id = id.clone();
            move |source| RuntimeError::Io { id, action, source }
        };
        let dir = self.container_dir(&id);
        std::fs::create_dir_all(&dir).map_err(io("creating its folder"))?;

        let address = match &cfg.network {
            NetworkMode::Routed(a) => Some(a.clone()),
            NetworkMode::Isolated => None,
        };
        let leftovers = Leftovers {
            address: address
                .as_ref()
                .map(|a| (a.pair, a.netns.clone(), a.host_if.clone())),
            shim: None,
            label: cfg.survivor_label.clone(),
            process: None,
        };
        let mut container = self.container(&id, dir.clone(), address);
        // From here on, a failure cleans up what was made so far.
        match self.launch(&mut container, cfg, leftovers).await {
            Ok(()) => Ok(container),
            Err(e) => {
                container.destroy().await;
                Err(e)
            }
        }
    }

    /// Starts `paas-init` first and readies the container's cgroup, network and disk
    /// while it loads and makes the network namespace, then lets it go on: on two or more
    /// cores the two halves overlap (about 0.15 ms of a `paas-run` start here, measured
    /// against the build before).
    /// paas-init reads its spec from stdin, and then waits for a go byte there: until it
    /// comes, it does nothing another container could see; if it never comes (a step here
    /// failed), paas-init exits.
    async fn launch(
        &self,
        c: &mut Container,
        cfg: ContainerConfig,
        mut leftovers: Leftovers,
    ) -> Result<(), RuntimeError> {
        let io = |action: &'static str| {
            let id = c.id.clone();
            move |source| RuntimeError::Io { id, action, source }
        };
        // Only a network needs more than the folder's name to be cleaned up after a crash.
        if leftovers.address.is_some() {
            write_state(&c.dir, &leftovers).map_err(io("writing its state"))?;
        }
        let survives = leftovers.label.is_some();
        let stack = self
            .stacks
            .iter()
            .find(|s| s.name() == cfg.stack)
            .ok_or_else(|| RuntimeError::NoStack(cfg.stack.clone()))?;
        let (mut mounts, symlinks) = stack.mounts();
        // Where the writable layer's changes go: on its quota filesystem (made below,
        // once paas-init is loading) or in the container's folder.
        let layer = cfg.writable.as_ref().map(|layer| {
            let base = match layer.disk_bytes {
                Some(_) => crate::disk::mount_point(&c.dir),
                None => c.dir.clone(),
            };
            (layer, base.join("upper"), base.join("work"))
        });
        if let Some((layer, upper, work)) = &layer {
            mounts.push(Mount {
                target: layer.target.clone(),
                kind: MountKind::Overlay {
                    lower: layer.lower.clone(),
                    upper: upper.clone(),
                    work: work.clone(),
                },
            });
        }
        mounts.extend(cfg.mounts);
        let spec = ContainerSpec {
            hostname: cfg.hostname,
            cgroup_procs: c.cgroup.procs_files(),
            netns: c.address.as_ref().map(InstanceAddress::netns_path),
            rootfs: self.root_mount_point(),
            mounts,
            symlinks,
            process: ProcessSpec {
                args: cfg.args,
                env: cfg.env,
                cwd: cfg.cwd,
                uid: cfg.uid,
                gid: cfg.gid,
            },
            id_map: cfg.id_map,
            // With a terminal, stdin is the socket pid 1 sends it over.
            stdin: cfg.stdin || cfg.tty.is_some(),
            tty: cfg.tty,
            hold_open: match survives {
                true => vec![c.dir.join(STDOUT_FIFO), c.dir.join(STDERR_FIFO)],
                false => Vec::new(),
            },
            status_file: survives.then(|| c.dir.join(STATUS_FILE)),
        };
        // The container's user as the host sees it, for what the daemon makes for it.
        let (host_uid, host_gid) = match cfg.id_map {
            Some(m) => (m.host(cfg.uid), m.host(cfg.gid)),
            None => (cfg.uid, cfg.gid),
        };
        c.process = Some(spec.process.clone());
        // A survivor's output goes through FIFOs in its folder, which a later daemon
        // opens again; another container's through plain pipes.
        let (stdout, stderr) = match survives {
            true => {
                let (out, out_w) =
                    output_fifo(&c.dir.join(STDOUT_FIFO)).map_err(io("making its stdout FIFO"))?;
                let (err, err_w) =
                    output_fifo(&c.dir.join(STDERR_FIFO)).map_err(io("making its stderr FIFO"))?;
                c.stdout = Some(out);
                c.stderr = Some(err);
                (Stdio::from(out_w), Stdio::from(err_w))
            }
            false => (Stdio::piped(), Stdio::piped()),
        };
        // With a terminal, paas-init's stdin is a Unix socket: the spec and the go byte
        // go down it, and the terminal's master comes back up.
        let (control, mut socket) = match cfg.tty {
            Some(_) => {
                let (ours, theirs) = std::os::unix::net::UnixStream::pair()
                    .map_err(io("making the terminal's socket"))?;
                ours.set_nonblocking(true)
                    .map_err(io("making the terminal's socket"))?;
                let ours = tokio::net::UnixStream::from_std(ours)
                    .map_err(io("making the terminal's socket"))?;
                (Stdio::from(std::os::fd::OwnedFd::from(theirs)), Some(ours))
            }
            None => (Stdio::piped(), None),
        };
        let mut child = Command::new(&self.init_exe)
            // Only for people: it names the container in `ps`.
            .arg(&c.dir)
            .env_clear()
            .stdin(control)
            .stdout(stdout)
            .stderr(stderr)
            // Its own process group: a Ctrl-C meant for paasd does not reach apps.
            .process_group(0)
            .spawn()
            .map_err(io("starting paas-init"))?;
        let stdin = child.stdin.take();
        if let Some(out) = child.stdout.take() {
            c.stdout = Some(
                receiver(out.into_owned_fd().map_err(io("reading its stdout"))?)
                    .map_err(io("reading its stdout"))?,
            );
        }
        if let Some(err) = child.stderr.take() {
            c.stderr = Some(
                receiver(err.into_owned_fd().map_err(io("reading its stderr"))?)
                    .map_err(io("reading its stderr"))?,
            );
        }
        if survives {
            // Before the go byte: from then on the container may outlive this daemon.
            let pid = child.id().map_or(0, |p| p as i32);
            leftovers.shim = process_start_time(pid).map(|t| (pid, t));
            leftovers.process = c.process.clone();
            write_state(&c.dir, &leftovers).map_err(io("writing its state"))?;
        }
        c.child = Some(child);
        let mut stdin = stdin;
        send_control(&mut stdin, &mut socket, &spec.framed())
            .await
            .map_err(io("handing paas-init its spec"))?;

        c.cgroup = self.cgroups.create(&c.id, cfg.limits)?;
        if let Some(a) = &c.address {
            self.pool.create(a).await?;
        }
        if let Some((layer, upper, work)) = &layer {
            if let Some(bytes) = layer.disk_bytes {
                crate::disk::create(&c.dir, bytes, host_uid, host_gid).await?;
            }
            for d in [upper, work] {
                std::fs::create_dir_all(d).map_err(io("creating its writable layer"))?;
            }
            std::os::unix::fs::chown(upper, Some(host_uid), Some(host_gid))
                .map_err(io("handing its writable layer to its user"))?;
        }
        send_control(&mut stdin, &mut socket, b"g")
            .await
            .map_err(io("letting paas-init go on"))?;
        if let Some(socket) = &socket {
            let terminal = tokio::time::timeout(TERMINAL_WAIT, crate::terminal::receive(socket))
                .await
                .unwrap_or_else(|_| Err(std::io::Error::other("no terminal came within 10 s")))
                .map_err(io("receiving its terminal"))?;
            c.terminal = Some(terminal);
        } else if cfg.stdin {
            // What is written next is the process's input.
            c.stdin = stdin;
        }
        Ok(())
    }

    /// Runs `args` inside the running container `target`, as its process runs: same
    /// namespaces, cgroup, user, environment and seccomp filter. Its stdout and stderr are
    /// pipes; dropping the child kills it.
    pub fn exec(&self, target: &ExecTarget, args: Vec<String>) -> Result<Child, RuntimeError> {
        let io = |action: &'static str| {
            move |source| RuntimeError::Io {
                id: String::new(),
                action,
                source,
            }
        };
        let spec = ExecSpec {
            target_pid: target.pid1,
            cgroup_procs: target.cgroup_procs.clone(),
            process: ProcessSpec {
                args,
                ..target.process.clone()
            },
        };
        let mut rand = [0u8; 8];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut rand))
            .map_err(io("reading random bytes"))?;
        let name: String = rand.iter().map(|b| format!("{b:02x}")).collect();
        let path = target.dir.join(format!("exec-{name}.json"));
        std::fs::write(&path, serde_json::to_vec(&spec).unwrap_or_default())
            .map_err(io("writing the exec spec"))?;
        Command::new(&self.init_exe)
            .arg("--exec")
            .arg(&path)
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(io("starting paas-init --exec"))
    }

    /// Removes what containers of an earlier run of the daemon left behind: their
    /// processes, cgroups, networks and folders. Returns how many there were.
    pub async fn clean_up_leftovers(&self) -> usize {
        let survivors = self.recover().await;
        let n = survivors.len();
        for s in survivors {
            self.remove(s).await;
        }
        n
    }

    /// Goes through what containers of an earlier run of the daemon left behind:
    /// removes each that has no survivor label or whose shim is gone, and returns the
    /// others, still running, to be adopted or removed.
    pub async fn recover(&self) -> Vec<Survivor> {
        let Ok(entries) = std::fs::read_dir(&self.state_dir) else {
            return Vec::new();
        };
        let mut survivors = Vec::new();
        for e in entries.flatten() {
            let Some(id) = e.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if id == ROOT_MOUNT_POINT {
                continue;
            }
            let leftovers: Leftovers = std::fs::read(e.path().join("state.json"))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or(Leftovers {
                    address: None,
                    shim: None,
                    label: None,
                    process: None,
                });
            let mut survivor = Survivor {
                id,
                label: leftovers.label.clone().unwrap_or_default(),
                dir: e.path(),
                leftovers,
                address: None,
            };
            let alive = survivor
                .leftovers
                .shim
                .is_some_and(|(pid, started)| process_start_time(pid) == Some(started));
            let claimed = match &survivor.leftovers.address {
                Some((pair, netns, host_if)) => match self.pool.claim(*pair, netns, host_if) {
                    Ok(a) => {
                        survivor.address = Some(a);
                        true
                    }
                    Err(_) => false,
                },
                None => true,
            };
            match (alive && claimed, survivor.leftovers.label.is_some()) {
                (true, true) => survivors.push(survivor),
                _ => self.remove(survivor).await,
            }
        }
        survivors
    }

    /// Removes a container an earlier daemon left: kills what runs in it, and removes
    /// its cgroup, network and folder.
    pub async fn remove(&self, s: Survivor) {
        // Its claimed address, or as recorded (found at start, before any container of
        // this daemon holds an address).
        let address = s.address.or_else(|| {
            s.leftovers
                .address
                .map(|(pair, netns, host_if)| InstanceAddress {
                    pair,
                    netns,
                    host_if,
                    host_ip: std::net::Ipv4Addr::UNSPECIFIED,
                    instance_ip: std::net::Ipv4Addr::UNSPECIFIED,
                })
        });
        self.container(&s.id, s.dir, address).destroy().await;
    }

    /// Takes over a container an earlier run of the daemon started: it goes on running
    /// as it was, its output is read again from where the last daemon stopped reading,
    /// and it is waited for, stopped and destroyed as if this daemon had started it.
    /// On an error the caller still owns nothing: remove the survivor.
    pub fn adopt(&self, s: &Survivor) -> Result<Container, RuntimeError> {
        let io = |action: &'static str| {
            let id = s.id.clone();
            move |source| RuntimeError::Io { id, action, source }
        };
        let (pid, started) = s.leftovers.shim.ok_or_else(|| {
            io("taking it over")(std::io::Error::other("no shim is recorded for it"))
        })?;
        let pidfd = pidfd_open(pid).map_err(io("opening its shim's pidfd"))?;
        // Checked after the pidfd is open: the pid cannot be given to another process
        // while it is held.
        if process_start_time(pid) != Some(started) {
            return Err(io("taking it over")(std::io::Error::other(
                "its shim has exited",
            )));
        }
        // SAFETY: an OwnedFd stays open and names the same pidfd for as long as the
        // AsyncFd that owns it, and its as_raw_fd always returns that descriptor.
        let pidfd = unsafe { tokio::io::unix::AsyncFd::register(pidfd) }
            .map_err(|e| io("waiting on its shim")(e.into()))?;
        let address = s.address.clone();
        let open =
            |name: &str| tokio::net::unix::pipe::OpenOptions::new().open_receiver(s.dir.join(name));
        let stdout = open(STDOUT_FIFO).map_err(io("opening its stdout FIFO"));
        let stderr = open(STDERR_FIFO).map_err(io("opening its stderr FIFO"));
        let (stdout, stderr) = match (stdout, stderr) {
            (Ok(o), Ok(e)) => (o, e),
            // The address stays the survivor's: removing it gives it back.
            (Err(e), _) | (_, Err(e)) => return Err(e),
        };
        Ok(Container {
            stdout: Some(stdout),
            stderr: Some(stderr),
            adopted: Some(Adopted { pid, pidfd }),
            process: s.leftovers.process.clone(),
            ..self.container(&s.id, s.dir.clone(), address)
        })
    }

    /// Container `id` in folder `dir`, with nothing running in it yet.
    fn container(&self, id: &str, dir: PathBuf, address: Option<InstanceAddress>) -> Container {
        Container {
            id: id.to_string(),
            dir,
            cgroup: self.cgroups.cgroup(id),
            address,
            pool: Arc::clone(&self.pool),
            child: None,
            adopted: None,
            process: None,
            stdin: None,
            terminal: None,
            stdout: None,
            stderr: None,
        }
    }
}

/// A container's shim that an earlier daemon started: not a child of this one, so it is
/// waited for through a pidfd, and its exit code read from its status file.
#[derive(Debug)]
struct Adopted {
    pid: i32,
    pidfd: tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>,
}

/// Writes a container's `state.json` whole or not at all (a temporary file renamed over
/// it), so a daemon killed mid-write leaves the last complete one.
fn write_state(dir: &std::path::Path, leftovers: &Leftovers) -> std::io::Result<()> {
    let tmp = dir.join("state.json.tmp");
    std::fs::write(&tmp, serde_json::to_vec(leftovers).unwrap_or_default())?;
    std::fs::rename(tmp, dir.join("state.json"))
}

/// Makes the FIFO `path` and opens both ends: the daemon's (non-blocking) read end, and
/// the write end the container's process inherits (blocking, as a pipe's is). Its
/// buffer is raised to [`SURVIVOR_PIPE_BYTES`].
fn output_fifo(
    path: &std::path::Path,
) -> std::io::Result<(tokio::net::unix::pipe::Receiver, std::fs::File)> {
    match nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600)) {
        Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
        Err(e) => return Err(e.into()),
    }
    // The read end first: opening the write end blocks until a reader exists.
    let reader = tokio::net::unix::pipe::OpenOptions::new().open_receiver(path)?;
    let writer = std::fs::OpenOptions::new().write(true).open(path)?;
    let _ = nix::fcntl::fcntl(
        &writer,
        nix::fcntl::FcntlArg::F_SETPIPE_SZ(SURVIVOR_PIPE_BYTES),
    );
    Ok((reader, writer))
}

/// Writes `bytes` to paas-init's stdin: its pipe, or the socket of a container with a
/// terminal.
async fn send_control(
    pipe: &mut Option<ChildStdin>,
    socket: &mut Option<tokio::net::UnixStream>,
    bytes: &[u8],
) -> std::io::Result<()> {
    match (pipe, socket) {
        (Some(p), _) => p.write_all(bytes).await,
        (None, Some(s)) => s.write_all(bytes).await,
        (None, None) => Err(std::io::Error::other(
            "its stdin is neither a pipe nor a socket",
        )),
    }
}

/// How long pid 1 may take to send a container's terminal.
const TERMINAL_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// A pipe's read end, read through tokio.
fn receiver(fd: std::os::fd::OwnedFd) -> std::io::Result<tokio::net::unix::pipe::Receiver> {
    tokio::net::unix::pipe::Receiver::from_owned_fd(fd)
}

/// When process `pid` started (field 22 of `/proc/PID/stat`), if it runs.
fn process_start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count after its end.
    let rest = &stat[stat.rfind(')')? + 1..];
    let state = rest.split_whitespace().next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// A pidfd for `pid` (Linux 5.3 or later).
fn pidfd_open(pid: i32) -> std::io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1; no
    // memory is passed.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, libc::PIDFD_NONBLOCK) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by the kernel and is owned by nobody else.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) })
}

/// A started container. Call [`Container::destroy`] once it has exited.
#[derive(Debug)]
pub struct Container {
    pub id: String,
    /// Its address, for a routed container.
    pub address: Option<InstanceAddress>,
    /// The process's stdin, if its config asked for one: dropping it is end of input.
    pub stdin: Option<ChildStdin>,
    /// The process's terminal, if its config asked for one.
    pub terminal: Option<crate::Terminal>,
    pub stdout: Option<tokio::net::unix::pipe::Receiver>,
    pub stderr: Option<tokio::net::unix::pipe::Receiver>,
    dir: PathBuf,
    cgroup: Cgroup,
    pool: Arc<AddressPool>,
    child: Option<Child>,
    /// Set instead of `child` for a container taken over from an earlier daemon.
    adopted: Option<Adopted>,
    process: Option<ProcessSpec>,
}

/// Reads a running container's usage; cheap to clone and keep.
#[derive(Debug, Clone)]
pub struct UsageProbe {
    cgroup: Cgroup,
    /// The mount of its writable layer's disk image, when it has a quota.
    disk: PathBuf,
}

/// What a container uses at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub memory_bytes: u64,
    /// CPU time since the container started.
    pub cpu_ns: u64,
    /// Bytes written to its writable layer (0 without a disk quota).
    pub disk_bytes: u64,
}

impl UsageProbe {
    pub fn sample(&self) -> Usage {
        use std::os::unix::fs::MetadataExt;
        // Only a mounted image counts: a folder on the host's disk is not the quota.
        let dev = |p: &std::path::Path| std::fs::metadata(p).map(|m| m.dev()).ok();
        let disk_dev = dev(&self.disk);
        let mounted = disk_dev.is_some() && disk_dev != self.disk.parent().and_then(dev);
        let disk_bytes = nix::sys::statvfs::statvfs(&self.disk)
            .ok()
            .filter(|_| mounted)
            .map_or(0, |v| (v.blocks() - v.blocks_free()) * v.fragment_size());
        Usage {
            memory_bytes: self.cgroup.memory_usage(),
            cpu_ns: self.cgroup.cpu_usage_ns().unwrap_or(0),
            disk_bytes,
        }
    }
}

/// What [`Runtime::exec`] needs to run a process in a running container.
#[derive(Debug, Clone)]
pub struct ExecTarget {
    pid1: i32,
    cgroup_procs: Vec<PathBuf>,
    dir: PathBuf,
    process: ProcessSpec,
}

impl Container {
    /// How to run more processes in this container while it runs: its pid 1 and the
    /// environment, user and folder of its process.
    pub fn exec_target(&self) -> Option<ExecTarget> {
        let shim = self.shim_pid()?;
        // pid 1 of the container is the shim's only child.
        let children =
            std::fs::read_to_string(format!("/proc/{shim}/task/{shim}/children")).ok()?;
        let pid1 = children.split_whitespace().next()?.parse().ok()?;
        Some(ExecTarget {
            pid1,
            cgroup_procs: self.cgroup.procs_files(),
            dir: self.dir.clone(),
            process: self.process.clone()?,
        })
    }

    /// The pid of its shim, while it runs.
    fn shim_pid(&self) -> Option<u32> {
        match (&self.child, &self.adopted) {
            (Some(child), _) => child.id(),
            (None, Some(a)) => Some(a.pid as u32),
            (None, None) => None,
        }
    }

    /// Whether it was taken over from an earlier daemon ([`Runtime::adopt`]).
    pub fn is_adopted(&self) -> bool {
        self.adopted.is_some()
    }

    /// Waits for the process to end.
    pub async fn wait(&mut self) -> ExitReason {
        if let Some(a) = &self.adopted {
            let _ = a.pidfd.readable().await;
            let code = std::fs::read_to_string(self.dir.join(STATUS_FILE))
                .ok()
                .and_then(|s| s.trim().parse::<i32>().ok());
            let reason = match code {
                Some(INIT_FAILURE_EXIT_CODE) => ExitReason::SetupFailed,
                Some(c) if c > 128 && c < 128 + 65 => ExitReason::Signaled(c - 128),
                Some(c) => ExitReason::Exited(c),
                None => return ExitReason::Vanished,
            };
            if matches!(reason, ExitReason::Signaled(9)) && self.cgroup.oom_kills() > 0 {
                return ExitReason::OutOfMemory;
            }
            return reason;
        }
        let status = match self.child.as_mut() {
            Some(child) => child.wait().await,
            None => return ExitReason::SetupFailed,
        };
        let reason = match status {
            Ok(s) => match (s.code(), s.signal()) {
                (Some(INIT_FAILURE_EXIT_CODE), _) => ExitReason::SetupFailed,
                (Some(c), _) if c > 128 && c < 128 + 65 => ExitReason::Signaled(c - 128),
                (Some(c), _) => ExitReason::Exited(c),
                (None, Some(sig)) => ExitReason::Signaled(sig),
                (None, None) => ExitReason::SetupFailed,
            },
            Err(_) => ExitReason::SetupFailed,
        };
        if matches!(reason, ExitReason::Signaled(9)) && self.cgroup.oom_kills() > 0 {
            return ExitReason::OutOfMemory;
        }
        reason
    }

    /// The container's cgroup, to read its usage from while it runs.
    pub fn cgroup(&self) -> &Cgroup {
        &self.cgroup
    }

    /// Reads what the container uses (memory, CPU time, disk) while it runs.
    pub fn usage_probe(&self) -> UsageProbe {
        UsageProbe {
            cgroup: self.cgroup.clone(),
            disk: crate::disk::mount_point(&self.dir),
        }
    }

    /// Asks the process to stop with SIGTERM, and kills everything in the container once
    /// `grace` has passed.
    pub async fn stop(&mut self, grace: Duration) -> ExitReason {
        if let Some(pid) = self.shim_pid() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        match tokio::time::timeout(grace, self.wait()).await {
            Ok(reason) => reason,
            Err(_) => {
                let _ = self.cgroup.destroy().await;
                self.wait().await
            }
        }
    }

    /// Kills anything left, and removes the cgroup, the network and the folder. Errors
    /// are logged, not returned: there is nothing a caller could do but try again.
    pub async fn destroy(mut self) {
        if let Err(e) = self.cgroup.destroy().await {
            tracing::warn!(container = %self.id, "cleaning up the cgroup: {e}");
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.wait().await;
        }
        if let Some(a) = self.adopted.take() {
            // Killed with the cgroup above; bounded in case it somehow lingers.
            let _ = tokio::time::timeout(Duration::from_secs(5), a.pidfd.readable()).await;
        }
        if let Some(a) = &self.address {
            if let Err(e) = self.pool.destroy(a).await {
                tracing::warn!(container = %self.id, "cleaning up the network: {e}");
            }
        }
        crate::disk::remove(&self.dir);
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(container = %self.id, "removing {}: {e}", self.dir.display());
            }
        }
    }
}
