//! Containers for paas, built directly on Linux namespaces and cgroups.
//!
//! Two halves share [`spec::ContainerSpec`]:
//! - the daemon side ([`Runtime`], [`Container`]) runs inside `paasd`: it makes the cgroup
//!   and the network, writes the spec and starts the `paas-init` binary;
//! - the `paas-init` side ([`init`]) is a small single-threaded program that joins the
//!   cgroup and network, unshares the other namespaces, becomes pid 1 of the new pid
//!   namespace, builds the root filesystem, and runs the process as an unprivileged user.
//!
//! Why a separate binary instead of `fork` in the daemon: `paasd` is multi-threaded (tokio),
//! and after `fork` only async-signal-safe calls are allowed, which rules out the mount and
//! file work a container needs. A fresh single-threaded process may do anything.
//!
//! This is the only crate with `unsafe` code; each use says why it is sound.

pub mod cgroup;
pub mod cgroup_mount;
mod container;
pub mod disk;
pub mod init;
pub mod memory;
pub mod network;
pub mod output;
pub mod seccomp;
pub mod spec;
pub mod stack;
pub mod terminal;

pub use cgroup::{Cgroup, CgroupDriver, CgroupError, Limits};
pub use container::{
    Container, ContainerConfig, ExecTarget, ExitReason, NetworkMode, Runtime, RuntimeError,
    Survivor, Usage, UsageProbe, WritableLayer,
};
pub use network::{AddressPool, InstanceAddress, NetworkError};
pub use spec::{IdMap, TtySize};
pub use stack::{Stack, StackError};
pub use terminal::Terminal;

/// The uid and gid apps and buildpacks run as, as in Cloud Foundry's stacks.
pub const VCAP_UID: u32 = 2000;
pub const VCAP_GID: u32 = 2000;

/// Open files a container process may have (`RLIMIT_NOFILE`).
pub const NOFILE_LIMIT: u64 = 16384;

/// The exit code `paas-init` uses when it could not set up the container, before the
/// process ran. The reason is on the container's stderr, prefixed `paas-init:`.
pub const INIT_FAILURE_EXIT_CODE: i32 = 120;
