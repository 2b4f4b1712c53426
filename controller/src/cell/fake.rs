//! An [`Engine`] that only pretends, for testing orchestration without root: its
//! "containers" are records that a test reads, behaving as their start command says.
//!
//! A package's bytes are its start command (the fake staging reads them), one of:
//! - `serve …`: runs and passes every health check until it is stopped;
//! - `crash N`: passes health checks, and exits with code 1 N seconds after it starts;
//! - `silent`: runs but never passes a health check;
//! - `sicken N`: passes health checks for N seconds, then fails them.
//!
//! It exits at once on SIGTERM. Time is tokio's, so that tests pause it.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use paas_api::{AppName, HealthCheck, LogStream};
use paas_runtime::{ExecTarget, ExitReason, IdMap, RuntimeError, Survivor, UsageProbe};
use paas_stager::droplet::StagingInfo;
use paas_stager::{StagingError, StagingRequest, StagingResult};
use tokio::sync::watch;
use tokio::time::Instant;

use super::engine::{BoxFuture, Engine, Io, Running};
use super::instance::{InstanceSpec, APP_PORT};

/// What one fake container did, for a test to read.
#[derive(Debug, Clone)]
pub struct Record {
    pub id: String,
    pub app: AppName,
    pub process: String,
    pub index: u32,
    pub command: String,
    pub env: Vec<(String, String)>,
    pub addr: SocketAddr,
    pub started: Instant,
    /// When it was asked to stop (SIGTERM).
    pub stop_asked: Option<Instant>,
    /// When it exited, by itself or stopped.
    pub exited: Option<Instant>,
    /// When it was removed.
    pub destroyed: Option<Instant>,
}

impl Record {
    /// Started and not removed yet.
    pub fn alive(&self) -> bool {
        self.destroyed.is_none()
    }
}

#[derive(Default)]
pub struct FakeEngine {
    records: Mutex<Vec<Record>>,
    stagings: Mutex<u32>,
}

impl FakeEngine {
    /// Every container started so far, in order.
    pub fn records(&self) -> Vec<Record> {
        self.records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Every container of `app` started so far, in order.
    pub fn of_app(&self, app: &str) -> Vec<Record> {
        self.records()
            .into_iter()
            .filter(|r| r.app.as_str() == app)
            .collect()
    }

    /// The containers of `app` not removed yet.
    pub fn alive(&self, app: &str) -> Vec<Record> {
        self.of_app(app).into_iter().filter(Record::alive).collect()
    }

    /// The container `id` as it is now.
    pub fn record(&self, id: &str) -> Option<Record> {
        self.records().into_iter().find(|r| r.id == id)
    }

    /// How many stagings ran.
    pub fn stagings(&self) -> u32 {
        *self.stagings.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn update(&self, id: &str, change: impl FnOnce(&mut Record)) {
        let mut records = self.records.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = records.iter_mut().find(|r| r.id == id) {
            change(r);
        }
    }
}

struct FakeContainer {
    engine: Arc<FakeEngine>,
    id: String,
    addr: SocketAddr,
    command: String,
    started: Instant,
    /// Set once it has exited.
    exit: watch::Sender<Option<ExitReason>>,
}

impl Engine for Arc<FakeEngine> {
    fn start<'a>(
        &'a self,
        spec: &'a InstanceSpec,
        _survivor_label: Option<String>,
    ) -> BoxFuture<'a, Result<Box<dyn Running>, String>> {
        Box::pin(async move {
            let mut records = self.records.lock().unwrap_or_else(|p| p.into_inner());
            let n = u32::try_from(records.len()).unwrap_or(u32::MAX);
            let addr = SocketAddr::from((Ipv4Addr::from(0x0a00_0000 + n + 1), APP_PORT));
            let id = format!("{}-{}-{n}", spec.app, spec.index);
            let started = Instant::now();
            records.push(Record {
                id: id.clone(),
                app: spec.app.clone(),
                process: spec.process.clone(),
                index: spec.index,
                command: spec.start_command.clone(),
                env: spec.env.clone(),
                addr,
                started,
                stop_asked: None,
                exited: None,
                destroyed: None,
            });
            Ok(Box::new(FakeContainer {
                engine: Arc::clone(self),
                id,
                addr,
                command: spec.start_command.clone(),
                started,
                exit: watch::channel(None).0,
            }) as Box<dyn Running>)
        })
    }

    fn take_over<'a>(
        &'a self,
        _survivor: Survivor,
        _spec: &'a InstanceSpec,
    ) -> BoxFuture<'a, Option<Box<dyn Running>>> {
        Box::pin(async { None })
    }

    fn healthy<'a>(
        &'a self,
        check: &'a HealthCheck,
        addr: SocketAddr,
        _timeout: Duration,
    ) -> BoxFuture<'a, bool> {
        Box::pin(async move {
            if *check == HealthCheck::Process {
                return true;
            }
            let records = self.records.lock().unwrap_or_else(|p| p.into_inner());
            let Some(r) = records
                .iter()
                .find(|r| r.addr == addr && r.exited.is_none())
            else {
                return false;
            };
            match r.command.split_whitespace().collect::<Vec<_>>()[..] {
                ["serve", ..] | ["crash", _] => true,
                ["sicken", secs] => secs
                    .parse()
                    .is_ok_and(|s| r.started.elapsed() < Duration::from_secs(s)),
                _ => false,
            }
        })
    }

    fn recover(&self) -> BoxFuture<'_, Vec<Survivor>> {
        Box::pin(async { Vec::new() })
    }

    fn remove(&self, _survivor: Survivor) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }

    fn clean_up_leftovers(&self) -> BoxFuture<'_, usize> {
        Box::pin(async { 0 })
    }

    fn stage<'a>(
        &'a self,
        req: &'a StagingRequest,
        log: &'a tokio::sync::mpsc::UnboundedSender<(LogStream, String)>,
    ) -> BoxFuture<'a, Result<StagingResult, StagingError>> {
        Box::pin(async move {
            *self.stagings.lock().unwrap_or_else(|p| p.into_inner()) += 1;
            let io = |action: &str| {
                let action = action.to_string();
                move |source| StagingError::Io { action, source }
            };
            let command =
                std::fs::read_to_string(&req.package).map_err(io("reading the package"))?;
            let _ = log.send((LogStream::Out, format!("fake staging: {command}")));
            std::fs::write(&req.droplet_out, format!("droplet running {command}"))
                .map_err(io("writing the droplet"))?;
            Ok(StagingResult {
                info: StagingInfo {
                    detected_buildpack: "fake".into(),
                    start_command: command.clone(),
                    process_types: [("web".to_string(), command)].into(),
                },
                total: Duration::ZERO,
                in_buildpacks: Duration::ZERO,
            })
        })
    }

    fn exec(
        &self,
        _target: &ExecTarget,
        _args: Vec<String>,
    ) -> Result<tokio::process::Child, RuntimeError> {
        Err(RuntimeError::Io {
            id: "fake".into(),
            action: "exec",
            source: std::io::Error::from(std::io::ErrorKind::Unsupported),
        })
    }

    fn unpack_droplet(&self, _blob: &Path, _into: &Path, _ids: IdMap) -> anyhow::Result<()> {
        Ok(())
    }
}

impl Running for FakeContainer {
    fn id(&self) -> &str {
        &self.id
    }

    fn addr(&self) -> Option<SocketAddr> {
        Some(self.addr)
    }

    fn take_io(&mut self) -> Io {
        Io::default()
    }

    fn wait(&mut self) -> BoxFuture<'_, ExitReason> {
        Box::pin(async move {
            let mut exit = self.exit.subscribe();
            let crash_after = match self.command.split_whitespace().collect::<Vec<_>>()[..] {
                ["crash", secs] => secs.parse().ok().map(Duration::from_secs),
                _ => None,
            };
            if let Some(after) = crash_after {
                tokio::select! {
                    _ = tokio::time::sleep_until(self.started + after) => {
                        self.exited(ExitReason::Exited(1));
                    }
                    _ = exit.wait_for(Option::is_some) => {}
                }
            }
            let reason = exit.wait_for(Option::is_some).await.ok().and_then(|r| *r);
            reason.unwrap_or(ExitReason::Vanished)
        })
    }

    fn stop(&mut self, _grace: Duration) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.engine
                .update(&self.id, |r| r.stop_asked = Some(Instant::now()));
            if self.exit.borrow().is_none() {
                self.exited(ExitReason::Signaled(15));
            }
        })
    }

    fn exec_target(&self) -> Option<ExecTarget> {
        None
    }

    fn usage_probe(&self) -> Option<UsageProbe> {
        None
    }

    fn destroy(self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            if self.exit.borrow().is_none() {
                self.exited(ExitReason::Signaled(9));
            }
            self.engine
                .update(&self.id, |r| r.destroyed = Some(Instant::now()));
        })
    }
}

impl FakeContainer {
    fn exited(&self, reason: ExitReason) {
        self.engine
            .update(&self.id, |r| r.exited = Some(Instant::now()));
        self.exit.send_replace(Some(reason));
    }
}
