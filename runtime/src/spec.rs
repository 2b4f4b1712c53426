//! The container spec: everything `paas-init` needs, written by the daemon as JSON.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerSpec {
    pub hostname: String,
    /// `cgroup.procs` files that `paas-init` writes its pid to before it starts anything,
    /// so that every process of the container is held to the limits from its first
    /// instruction.
    pub cgroup_procs: Vec<PathBuf>,
    /// A network namespace to join (`/run/netns/NAME`); `None` makes a new one with only
    /// loopback.
    pub netns: Option<PathBuf>,
    /// An empty host folder on which the new root is assembled, on a tmpfs that only the
    /// container's mount namespace sees (so containers may share the folder).
    pub rootfs: PathBuf,
    /// Mounts in order; each target is a path inside the container.
    pub mounts: Vec<Mount>,
    /// Symlinks made in the root: `(target, link path inside the container)`.
    pub symlinks: Vec<(String, String)>,
    pub process: ProcessSpec,
    /// A user namespace of its own, with these ids; `None`: the host's ids.
    #[serde(default)]
    pub id_map: Option<IdMap>,
    /// The process reads, as its stdin, what the daemon writes after the go byte;
    /// otherwise its stdin is `/dev/null`.
    #[serde(default)]
    pub stdin: bool,
    /// A terminal of its own for the process (`paas run` from a terminal): pid 1 makes
    /// the pty inside the container, from the container's own devpts, gives the process
    /// its slave as stdin, stdout, stderr and controlling terminal, and sends the master
    /// to the daemon over its stdin, which is then a Unix socket (SCM_RIGHTS).
    #[serde(default)]
    pub tty: Option<TtySize>,
    /// FIFOs (the process's stdout and stderr) the shim opens for reading and holds
    /// open, without reading, for as long as the container runs: the process never
    /// writes to a pipe nobody holds, so it does not die of SIGPIPE while the daemon is
    /// away (killed or restarting), and what it writes meanwhile waits in the pipe for
    /// the daemon that takes the container over.
    #[serde(default)]
    pub hold_open: Vec<PathBuf>,
    /// Where the shim writes the process's exit code as it ends, for a daemon that took
    /// the container over and so is not the shim's parent.
    #[serde(default)]
    pub status_file: Option<PathBuf>,
}

/// A terminal's size, in character cells.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct TtySize {
    pub rows: u16,
    pub cols: u16,
}

/// How a container's user namespace maps its ids to the host's: its uids and gids
/// `0..size` are the host's `host_base..host_base + size`. Root inside is an ordinary
/// user outside, and containers with different bases share no host id (and so no
/// per-user kernel limit, no file, no signal).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct IdMap {
    pub host_base: u32,
    pub size: u32,
}

impl IdMap {
    /// Ids a container sees: 0 to 65535, as a standard Linux user database has them.
    pub const SIZE: u32 = 65536;

    /// The host id of the container's `id`.
    pub fn host(&self, id: u32) -> u32 {
        self.host_base + id
    }
}

/// The most a framed spec may claim to be: a spec is a few KiB, and this only guards the
/// allocation against a garbled length.
const MAX_SPEC_BYTES: usize = 16 << 20;

impl ContainerSpec {
    /// The spec as the daemon writes it to paas-init's stdin: its length (u32,
    /// little-endian), then JSON.
    pub fn framed(&self) -> Vec<u8> {
        let json = serde_json::to_vec(self).unwrap_or_default();
        let mut framed = (json.len() as u32).to_le_bytes().to_vec();
        framed.extend_from_slice(&json);
        framed
    }

    /// Reads a spec written by [`ContainerSpec::framed`].
    pub fn read_framed(r: &mut impl std::io::Read) -> Result<Self, String> {
        let mut len = [0u8; 4];
        r.read_exact(&mut len)
            .map_err(|e| format!("reading the spec's length: {e}"))?;
        let len = u32::from_le_bytes(len) as usize;
        if len > MAX_SPEC_BYTES {
            return Err(format!(
                "the spec claims {len} bytes: not a spec from paasd"
            ));
        }
        let mut raw = vec![0u8; len];
        r.read_exact(&mut raw)
            .map_err(|e| format!("reading the spec: {e}"))?;
        serde_json::from_slice(&raw).map_err(|e| format!("parsing the container spec: {e}"))
    }
}

/// A process to run inside a running container (`paas-init --exec`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExecSpec {
    /// A process of the container whose namespaces to join: its pid 1, as the host sees it.
    pub target_pid: i32,
    pub cgroup_procs: Vec<PathBuf>,
    pub process: ProcessSpec,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProcessSpec {
    /// `args[0]` is an absolute path inside the container.
    pub args: Vec<String>,
    /// `KEY=VALUE` pairs, the whole environment.
    pub env: Vec<String>,
    pub cwd: String,
    pub uid: u32,
    pub gid: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Mount {
    pub target: String,
    pub kind: MountKind,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum MountKind {
    /// A bind mount of a host file or folder.
    Bind { source: PathBuf, readonly: bool },
    /// A fresh tmpfs, owned by `uid:gid`.
    Tmpfs {
        size_bytes: u64,
        mode: u32,
        uid: u32,
        gid: u32,
    },
    /// An overlay: read-only `lower` host folder, writes go to `upper`.
    Overlay {
        lower: PathBuf,
        upper: PathBuf,
        work: PathBuf,
    },
    /// `/proc` of the new pid namespace, with runc's masked and read-only paths.
    Proc,
    /// A minimal `/dev`: null, zero, full, random, urandom, tty, pts, shm.
    Dev,
}
