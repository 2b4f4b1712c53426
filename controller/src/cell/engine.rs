//! What a cell runs things with: containers, stagings, health checks.
//!
//! A cell decides what runs and keeps it running (supervision, restarts, placements);
//! an [`Engine`] does the running. On a host that is [`HostEngine`](super::host): the
//! runtime's containers, real TCP health checks, the stager. Keeping the two apart lets
//! the orchestration above (deploys, roll-outs, crash restarts, drains, rollbacks) be
//! tested without root, against an engine that only pretends, with the clock paused
//! (`platform/tests.rs`).

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::time::Duration;

use paas_api::{HealthCheck, LogStream};
use paas_runtime::{ExecTarget, ExitReason, IdMap, RuntimeError, Survivor, UsageProbe};
use paas_stager::{StagingError, StagingRequest, StagingResult};
use tokio::io::{AsyncRead, AsyncWrite};

use super::instance::InstanceSpec;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A stream of a container's output.
pub type Output = Box<dyn AsyncRead + Unpin + Send>;

/// Runs containers, stagings and health checks for a cell. See the module docs.
pub trait Engine: Send + Sync + 'static {
    /// Starts a container for `spec`: its address, outbound access and mounts, the
    /// droplet under a writable layer, the launcher running its start command. With a
    /// `survivor_label`, it outlives paasd (see `ContainerConfig::survivor_label`).
    fn start<'a>(
        &'a self,
        spec: &'a InstanceSpec,
        survivor_label: Option<String>,
    ) -> BoxFuture<'a, Result<Box<dyn Running>, String>>;

    /// Takes over a container paasd's last run started for an instance of `spec`;
    /// `None` (the survivor removed) if that cannot be done.
    fn take_over<'a>(
        &'a self,
        survivor: Survivor,
        spec: &'a InstanceSpec,
    ) -> BoxFuture<'a, Option<Box<dyn Running>>>;

    /// One health check of at most `timeout` on the instance at `addr`.
    fn healthy<'a>(
        &'a self,
        check: &'a HealthCheck,
        addr: SocketAddr,
        timeout: Duration,
    ) -> BoxFuture<'a, bool>;

    /// The containers an earlier run of paasd left running, every other one it left
    /// removed.
    fn recover(&self) -> BoxFuture<'_, Vec<Survivor>>;

    /// Removes a container an earlier run left running.
    fn remove(&self, survivor: Survivor) -> BoxFuture<'_, ()>;

    /// Removes every container an earlier run left; answers how many.
    fn clean_up_leftovers(&self) -> BoxFuture<'_, usize>;

    /// Stages an app; its buildpacks' output lines go to `log`.
    fn stage<'a>(
        &'a self,
        req: &'a StagingRequest,
        log: &'a tokio::sync::mpsc::UnboundedSender<(LogStream, String)>,
    ) -> BoxFuture<'a, Result<StagingResult, StagingError>>;

    /// Starts `args` in a running container.
    fn exec(
        &self,
        target: &ExecTarget,
        args: Vec<String>,
    ) -> Result<tokio::process::Child, RuntimeError>;

    /// Unpacks the droplet at `blob` into the new folder `into`, its files owned by vcap
    /// of the user namespace `ids`.
    fn unpack_droplet(&self, blob: &Path, into: &Path, ids: IdMap) -> anyhow::Result<()>;
}

/// A started container.
pub trait Running: Send {
    /// Its name on the host.
    fn id(&self) -> &str;

    /// Where its app listens, for a routed container.
    fn addr(&self) -> Option<SocketAddr>;

    /// Its stdin, terminal and output, once; later calls get nothing.
    fn take_io(&mut self) -> Io;

    /// Waits for its process to end. Cancel-safe: it may be raced and called again.
    fn wait(&mut self) -> BoxFuture<'_, ExitReason>;

    /// Asks its process to stop (SIGTERM), and kills everything in it after `grace`.
    fn stop(&mut self, grace: Duration) -> BoxFuture<'_, ()>;

    /// How to run more processes in it, once its first process runs.
    fn exec_target(&self) -> Option<ExecTarget>;

    /// Reads what it uses, if that can be read.
    fn usage_probe(&self) -> Option<UsageProbe>;

    /// Kills what is left and removes it, and takes back its outbound access.
    fn destroy(self: Box<Self>) -> BoxFuture<'static, ()>;
}

/// A container's stdin, terminal and output streams, each where its config asked for it.
#[derive(Default)]
pub struct Io {
    pub stdin: Option<Box<dyn AsyncWrite + Unpin + Send>>,
    pub terminal: Option<paas_runtime::Terminal>,
    pub stdout: Option<Output>,
    pub stderr: Option<Output>,
}
