//! One app instance and the task that keeps it alive.
//!
//! The task starts the container, waits for its health check to pass, marks it running
//! (which routes it), keeps checking it, and restarts it when it crashes, with DESIGN.md's
//! backoff. A failed check takes it out of the route table at once; three in a row kill
//! it. Asking it to stop takes it out of the route table first, then sends SIGTERM, and
//! SIGKILL after [`STOP_GRACE`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use paas_api::{AppName, AppSettings, HealthCheck, InstanceSummary, LogStream};
use paas_runtime::{ExecTarget, ExitReason, Usage, UsageProbe};
use tokio::io::AsyncRead;
use tokio::sync::watch;
use tokio::time::Instant;

use super::engine::Running;
use super::forward::Forwarder;
use super::presence::Change;
use super::{LocalCell, Reporter, STOP_GRACE};
use paas_api::state::ActualInstance;

/// The port every instance listens on, as Cloud Foundry sets it.
pub const APP_PORT: u16 = 8080;
/// An instance that ran this long before crashing has its crash count reset.
const CRASH_RESET_AFTER: Duration = Duration::from_secs(5 * 60);
/// Failed checks in a row after which a running instance is killed and restarted.
const LIVENESS_FAILURES: u32 = 3;
/// How long a crash's restart waits for the crash to be recorded.
const EVENT_WAIT: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstanceState {
    Starting,
    Running,
    /// Running, but its last health check failed: not routed until one passes.
    Unhealthy,
    /// Running and healthy, but its readiness check fails: not routed until it passes.
    NotReady,
    Crashed(String),
    Stopping,
    Stopped,
}

impl InstanceState {
    pub fn as_str(&self) -> &'static str {
        match self {
            InstanceState::Starting => "starting",
            InstanceState::Running => "running",
            InstanceState::Unhealthy => "unhealthy",
            InstanceState::NotReady => "not-ready",
            InstanceState::Crashed(_) => "crashed",
            InstanceState::Stopping => "stopping",
            InstanceState::Stopped => "stopped",
        }
    }
}

/// What an instance runs.
#[derive(Debug, Clone)]
pub struct InstanceSpec {
    /// Unique among every instance ever run: its key in the state store.
    pub id: String,
    pub app: AppName,
    pub app_guid: String,
    /// Its process type: only `web` instances are routed.
    pub process: String,
    pub index: u32,
    /// Its process type's settings ([`AppSettings::for_process`]).
    pub settings: AppSettings,
    pub start_command: String,
    pub droplet_dir: PathBuf,
    /// The app's own environment, set after the platform's.
    pub env: Vec<(String, String)>,
    /// What the platform adds from the app's bindings (`VCAP_SERVICES`,
    /// `DATABASE_URL`); `VCAP_SERVICES` is `{}` if it is not among them.
    pub system_env: Vec<(String, String)>,
    /// The app's user namespace.
    pub id_map: paas_runtime::IdMap,
    /// The app's routes, for `VCAP_APPLICATION`.
    pub uris: Vec<String>,
    /// How long it keeps serving, unpublished, after it is asked to stop and before its
    /// SIGTERM: the time routers that follow the store take to drop it and finish the
    /// requests they sent it.
    pub drain: Duration,
    /// Its process reads its stdin from the container's `stdin` pipe (an attached task);
    /// else from `/dev/null`.
    pub stdin: bool,
    /// Its process has a terminal of this size instead (an attached task, from a
    /// terminal).
    pub tty: Option<paas_runtime::TtySize>,
}

impl InstanceSpec {
    /// The stack it runs on: its release's, given in its settings.
    pub fn stack(&self) -> &str {
        self.settings
            .stack
            .as_deref()
            .unwrap_or(paas_runtime::stack::HOST)
    }
}

/// What an instance's task works with: the cell it runs on, and whom it tells.
#[derive(Clone)]
struct Ctx {
    cell: Arc<LocalCell>,
    reporter: Arc<dyn Reporter>,
}

pub struct Instance {
    /// Unique among every instance ever run: its key in the state store.
    pub id: String,
    pub app: AppName,
    /// Its process type: only `web` instances are routed.
    pub process: String,
    pub index: u32,
    /// The memory it is given.
    memory_bytes: u64,
    /// The cell it runs on.
    cell: String,
    /// See [`InstanceSpec::drain`].
    drain: Duration,
    state: watch::Sender<InstanceState>,
    /// How its first start ended, once it has: it ran, or why not. Kept apart from
    /// `state`, which an immediate restart may turn back to `Starting` before anyone
    /// waiting saw the crash.
    first_start: watch::Sender<Option<Result<(), String>>>,
    since_ms: AtomicU64,
    /// Reads the running container's usage; with the CPU time and moment of the last
    /// reading, so CPU use is shown over the time between two readings.
    usage: Mutex<Option<(UsageProbe, Instant, u64)>>,
    exec: Mutex<Option<ExecTarget>>,
    addr: Mutex<Option<SocketAddr>>,
    /// The port on the cell's advertised address that reaches it, while it runs.
    published: Mutex<Option<Forwarder>>,
    stop: watch::Sender<bool>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// It took over a container an earlier run of paasd left running.
    pub adopted: bool,
}

impl Instance {
    pub fn state(&self) -> InstanceState {
        self.state.borrow().clone()
    }

    /// What the API reports about this instance.
    pub fn summary(&self) -> InstanceSummary {
        let mut usage = self.usage.lock().unwrap_or_else(|p| p.into_inner());
        let (now, cpu_percent) = match usage.as_mut() {
            None => (Usage::default(), 0.0),
            Some((probe, at, cpu_ns)) => {
                let now = probe.sample();
                let wall = at.elapsed().as_nanos().max(1) as f64;
                let percent = now.cpu_ns.saturating_sub(*cpu_ns) as f64 / wall * 100.0;
                (*at, *cpu_ns) = (Instant::now(), now.cpu_ns);
                (now, percent)
            }
        };
        InstanceSummary {
            id: self.id.clone(),
            process: self.process.clone(),
            index: self.index,
            state: self.state.borrow().as_str().to_string(),
            since_ms: self.since_ms.load(Ordering::Relaxed),
            memory_bytes: now.memory_bytes,
            cpu_percent: (cpu_percent * 10.0).round() / 10.0,
            cpu_ns: now.cpu_ns,
            disk_bytes: now.disk_bytes,
            cell: self.cell.clone(),
        }
    }

    /// How to run a command in this instance, while it runs.
    pub fn exec_target(&self) -> Option<ExecTarget> {
        self.exec.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Where the router may send requests: only while a `web` instance runs.
    pub fn routable_addr(&self) -> Option<SocketAddr> {
        if self.process == paas_api::WEB && *self.state.borrow() == InstanceState::Running {
            *self.addr.lock().unwrap_or_else(|p| p.into_inner())
        } else {
            None
        }
    }

    /// Waits until the instance first runs (`Ok`) or crashes or stops (`Err` with why).
    pub async fn started(&self) -> Result<(), String> {
        let mut rx = self.first_start.subscribe();
        let first = rx.wait_for(Option::is_some).await.map(|s| s.clone());
        first
            .ok()
            .flatten()
            .unwrap_or_else(|| Err("it was stopped".to_string()))
    }

    /// Stops the instance and waits until it is gone, whoever else asked first.
    pub async fn stop(&self) {
        let _ = self.stop.send(true);
        let task = self.task.lock().unwrap_or_else(|p| p.into_inner()).take();
        match task {
            Some(t) => {
                let _ = t.await;
            }
            None => {
                let mut rx = self.state.subscribe();
                let _ = rx.wait_for(|s| *s == InstanceState::Stopped).await;
            }
        }
    }

    fn set(&self, ctx: &Ctx, s: InstanceState) {
        let routed_before = self.routable_addr().is_some();
        let since_ms = crate::logs::now_ms();
        self.since_ms.store(since_ms, Ordering::Relaxed);
        self.state.send_replace(s.clone());
        let outcome = match &s {
            InstanceState::Starting => None,
            InstanceState::Crashed(why) => Some(Err(why.clone())),
            InstanceState::Stopping | InstanceState::Stopped => {
                Some(Err("it was stopped".to_string()))
            }
            _ => Some(Ok(())),
        };
        if let Some(outcome) = outcome {
            self.first_start.send_if_modified(|first| {
                let unset = first.is_none();
                if unset {
                    *first = Some(outcome);
                }
                unset
            });
        }
        if routed_before != self.routable_addr().is_some() {
            ctx.reporter.routable_changed();
        }
        ctx.cell.report(self.actual(ctx, &s, since_ms));
    }

    /// What the state store is told of the instance in state `s`. A running instance
    /// is published on the cell's advertised address, if it has one; else at its own.
    fn actual(&self, ctx: &Ctx, s: &InstanceState, since_ms: u64) -> Change {
        let mut published = self.published.lock().unwrap_or_else(|p| p.into_inner());
        let target = *self.addr.lock().unwrap_or_else(|p| p.into_inner());
        // Only web instances are routed, so only they are published.
        let running = self.process == paas_api::WEB
            && matches!(
                s,
                InstanceState::Running | InstanceState::Unhealthy | InstanceState::NotReady
            );
        // A stopping instance is no longer published, but its port stays open while it
        // drains: requests routers sent it before they dropped it finish.
        let keep = running || *s == InstanceState::Stopping;
        match (keep, ctx.cell.advertise, target) {
            (true, Some(ip), Some(target)) if running && published.is_none() => {
                match Forwarder::start(ip, target) {
                    Ok(f) => *published = Some(f),
                    Err(e) => {
                        tracing::warn!(app = %self.app, index = self.index, "publishing the instance on {ip}: {e}")
                    }
                }
            }
            (true, ..) => {}
            (false, ..) => *published = None,
        }
        if *s == InstanceState::Stopped {
            return Change::Gone(self.id.clone());
        }
        let address = match (&*published, ctx.cell.advertise) {
            _ if *s != InstanceState::Running || self.process != paas_api::WEB => None,
            (Some(f), _) => Some(f.addr()),
            (None, None) => target,
            (None, Some(_)) => None,
        };
        Change::Put(
            self.id.clone(),
            ActualInstance {
                app: self.app.clone(),
                process: self.process.clone(),
                index: self.index,
                cell: ctx.cell.id.clone(),
                state: s.as_str().to_string(),
                address: address.map(|a| a.to_string()),
                since_ms,
                memory_bytes: self.memory_bytes,
                reason: match s {
                    InstanceState::Crashed(why) => Some(why.clone()),
                    _ => None,
                },
            },
        )
    }
}

/// Starts supervising a new instance.
pub(super) fn spawn(
    cell: Arc<LocalCell>,
    reporter: Arc<dyn Reporter>,
    spec: InstanceSpec,
) -> Arc<Instance> {
    let survivor = survivor_label(&spec).and_then(|label| cell.claim_survivor(&label));
    let inst = Arc::new(Instance {
        id: spec.id.clone(),
        app: spec.app.clone(),
        process: spec.process.clone(),
        index: spec.index,
        memory_bytes: spec.settings.memory.bytes(),
        cell: cell.id.clone(),
        drain: spec.drain,
        state: watch::channel(InstanceState::Starting).0,
        first_start: watch::channel(None).0,
        since_ms: AtomicU64::new(crate::logs::now_ms()),
        usage: Mutex::new(None),
        exec: Mutex::new(None),
        addr: Mutex::new(None),
        published: Mutex::new(None),
        stop: watch::channel(false).0,
        task: Mutex::new(None),
        adopted: survivor.is_some(),
    });
    let task = tokio::spawn(supervise(
        Ctx { cell, reporter },
        Arc::clone(&inst),
        spec,
        survivor,
    ));
    *inst.task.lock().unwrap_or_else(|p| p.into_inner()) = Some(task);
    inst
}

/// The delay before restart number `crashes` (1-based): the first three are immediate,
/// then 30 s × 2^(n−3), capped at 16 minutes (DESIGN.md, as Diego does).
pub fn restart_delay(crashes: u32) -> Duration {
    if crashes <= 3 {
        return Duration::ZERO;
    }
    let exp = (crashes - 3).min(16);
    Duration::from_secs(30u64.saturating_mul(1 << exp)).min(Duration::from_secs(16 * 60))
}

async fn supervise(
    ctx: Ctx,
    inst: Arc<Instance>,
    spec: InstanceSpec,
    mut survivor: Option<paas_runtime::Survivor>,
) {
    let mut stop = inst.stop.subscribe();
    let source = format!("APP/PROC/{}/{}", spec.process.to_uppercase(), spec.index);
    let cell = |msg: String| ctx.reporter.log(&spec.app, "CELL", LogStream::Out, &msg);
    let mut crashes = 0u32;
    loop {
        inst.set(&ctx, InstanceState::Starting);
        let began = Instant::now();
        let started = match survivor.take() {
            Some(s) => match ctx.cell.engine.take_over(s, &spec).await {
                Some(c) => {
                    cell(format!(
                        "instance {} goes on running in the container {} that paasd's last run started",
                        spec.index,
                        c.id()
                    ));
                    Ok(c)
                }
                None => ctx.cell.engine.start(&spec, survivor_label(&spec)).await,
            },
            None => ctx.cell.engine.start(&spec, survivor_label(&spec)).await,
        };
        let (why, exit_code) = match started {
            Err(e) => (format!("could not start: {e}"), None),
            Ok(mut c) => {
                let addr = c.addr();
                *inst.addr.lock().unwrap_or_else(|p| p.into_inner()) = addr;
                *inst.usage.lock().unwrap_or_else(|p| p.into_inner()) =
                    c.usage_probe().map(|probe| (probe, Instant::now(), 0));
                let io = c.take_io();
                let pumps = (
                    spawn_pump(&ctx.reporter, &spec.app, &source, LogStream::Out, io.stdout),
                    spawn_pump(&ctx.reporter, &spec.app, &source, LogStream::Err, io.stderr),
                );
                let outcome = run_once(&ctx, &inst, &spec, c.as_mut(), addr, &mut stop).await;
                *inst.usage.lock().unwrap_or_else(|p| p.into_inner()) = None;
                *inst.exec.lock().unwrap_or_else(|p| p.into_inner()) = None;
                // Destroyed before its output is read to the end: a shim that was killed
                // leaves processes behind that hold the pipes open until they die too.
                c.destroy().await;
                let _ = tokio::join!(pumps.0, pumps.1);
                match outcome {
                    Outcome::Stopped => {
                        inst.set(&ctx, InstanceState::Stopped);
                        return;
                    }
                    Outcome::Crashed { why, exit_code } => (why, exit_code),
                }
            }
        };
        crashes = if began.elapsed() >= CRASH_RESET_AFTER {
            1
        } else {
            crashes + 1
        };
        // Recorded before the restart as a rule, but a store that does not answer (etcd
        // away) must not hold the restart up: past a second, the record is made in the
        // background.
        let record = {
            let (reporter, app, index, why) = (
                Arc::clone(&ctx.reporter),
                spec.app.clone(),
                spec.index,
                why.clone(),
            );
            tokio::spawn(async move { reporter.event(&app, "crash", index, exit_code, &why).await })
        };
        let _ = tokio::time::timeout(EVENT_WAIT, record).await;
        inst.set(&ctx, InstanceState::Crashed(why));
        let delay = restart_delay(crashes);
        if !delay.is_zero() {
            cell(format!(
                "instance {} restarts in {}s (crash {crashes})",
                spec.index,
                delay.as_secs()
            ));
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stopped(&mut stop) => {
                inst.set(&ctx, InstanceState::Stopped);
                return;
            }
        }
    }
}

enum Outcome {
    Stopped,
    Crashed { why: String, exit_code: Option<i32> },
}

impl Outcome {
    fn exited(reason: ExitReason, during_start: bool) -> Self {
        let exit_code = match reason {
            ExitReason::Exited(c) => Some(c),
            _ => None,
        };
        let why = if during_start {
            format!("exited during start ({reason})")
        } else {
            reason.to_string()
        };
        Outcome::Crashed { why, exit_code }
    }
}

/// Health-checks a started container until it is ready, then keeps checking it until it
/// exits or is stopped.
async fn run_once(
    ctx: &Ctx,
    inst: &Instance,
    spec: &InstanceSpec,
    c: &mut dyn Running,
    addr: Option<SocketAddr>,
    stop: &mut watch::Receiver<bool>,
) -> Outcome {
    let Some(addr) = addr else {
        return Outcome::Crashed {
            why: "the container has no address".into(),
            exit_code: None,
        };
    };
    let check = &spec.settings.health_check;
    let readiness = spec.settings.readiness_check.as_ref();
    let (interval, check_timeout) = (
        spec.settings.check_interval(),
        spec.settings.check_timeout(),
    );
    let timeout = spec
        .settings
        .start_timeout_secs
        .map_or(ctx.cell.start_timeout, |s| {
            Duration::from_secs(u64::from(s))
        });
    let deadline = Instant::now() + timeout;
    let ready = loop {
        tokio::select! {
            reason = c.wait() => return Outcome::exited(reason, true),
            _ = stopped(stop) => return stop_now(ctx, inst, c).await,
            _ = tokio::time::sleep_until(deadline) => break false,
            ok = ready_to_route(
                ctx,
                check,
                readiness.map(|r| (r, spec.settings.readiness_timeout())),
                addr,
                check_timeout,
            ) => if ok { break true } else {
                tokio::time::sleep(Duration::from_millis(50)).await;
            },
        }
    };
    if !ready {
        c.stop(Duration::ZERO).await;
        return Outcome::Crashed {
            why: format!(
                "did not pass its {check} health check within {}s",
                timeout.as_secs()
            ),
            exit_code: None,
        };
    }
    // A `process` check passes at once, possibly before the shim has made the
    // container's pid 1, which exec enters: give it a moment to appear.
    let mut target = c.exec_target();
    for _ in 0..100 {
        if target.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        target = c.exec_target();
    }
    *inst.exec.lock().unwrap_or_else(|p| p.into_inner()) = target;
    inst.set(ctx, InstanceState::Running);
    let cell = |msg: String| ctx.reporter.log(&inst.app, "CELL", LogStream::Out, &msg);
    cell(format!("instance {} is running", inst.index));
    // Liveness and readiness each keep their own interval and timeout.
    let (readiness_interval, readiness_timeout) = (
        spec.settings.readiness_interval(),
        spec.settings.readiness_timeout(),
    );
    let (mut failures, mut ready) = (0, true);
    let mut next_check = Instant::now() + interval;
    let mut next_readiness = Instant::now() + readiness_interval;
    loop {
        let wake = match readiness {
            Some(_) => next_check.min(next_readiness),
            None => next_check,
        };
        tokio::select! {
            reason = c.wait() => return Outcome::exited(reason, false),
            _ = stopped(stop) => return stop_now(ctx, inst, c).await,
            _ = tokio::time::sleep_until(wake) => {}
        }
        if Instant::now() >= next_check {
            let live = ctx.cell.engine.healthy(check, addr, check_timeout).await;
            next_check = Instant::now() + interval;
            if live {
                if failures > 0 {
                    cell(format!(
                        "instance {} passes its health check again",
                        inst.index
                    ));
                }
                failures = 0;
            } else {
                failures += 1;
                if failures == 1 {
                    // Out of the route table at once; killed only if it stays unhealthy.
                    cell(format!(
                        "instance {} failed its {check} health check",
                        inst.index
                    ));
                }
                if failures >= LIVENESS_FAILURES {
                    c.stop(Duration::ZERO).await;
                    return Outcome::Crashed {
                        why: format!("failed its {check} health check {failures} times in a row"),
                        exit_code: None,
                    };
                }
            }
        }
        // Readiness only decides whether it is routed.
        if let Some(r) = readiness.filter(|_| Instant::now() >= next_readiness) {
            let passed = ctx.cell.engine.healthy(r, addr, readiness_timeout).await;
            next_readiness = Instant::now() + readiness_interval;
            if passed != ready {
                cell(if passed {
                    format!(
                        "instance {} passes its {r} readiness check again",
                        inst.index
                    )
                } else {
                    format!(
                        "instance {} failed its {r} readiness check: out of the route table until it passes",
                        inst.index
                    )
                });
                ready = passed;
            }
        }
        let wanted = match (failures, ready) {
            (1.., _) => InstanceState::Unhealthy,
            (0, true) => InstanceState::Running,
            (0, false) => InstanceState::NotReady,
        };
        if inst.state() != wanted {
            inst.set(ctx, wanted);
        }
    }
}

async fn stop_now(ctx: &Ctx, inst: &Instance, c: &mut dyn Running) -> Outcome {
    inst.set(ctx, InstanceState::Stopping);
    if !inst.drain.is_zero() {
        tokio::time::sleep(inst.drain).await;
    }
    c.stop(STOP_GRACE).await;
    Outcome::Stopped
}

/// Completes once the instance is asked to stop.
async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// Whether a starting instance may be routed: its health check passes, and its
/// readiness check if it has one.
async fn ready_to_route(
    ctx: &Ctx,
    check: &HealthCheck,
    readiness: Option<(&HealthCheck, Duration)>,
    addr: SocketAddr,
    timeout: Duration,
) -> bool {
    let engine = &ctx.cell.engine;
    engine.healthy(check, addr, timeout).await
        && match readiness {
            None => true,
            Some((r, readiness_timeout)) => engine.healthy(r, addr, readiness_timeout).await,
        }
}

/// The launcher: sources profile scripts as Cloud Foundry's does, then runs the start
/// command (`$1`) through bash, which execs a simple command directly.
const LAUNCHER: &str = r#"cd /home/vcap/app || exit 1
if [ -f /home/vcap/.paas-env.sh ]; then . /home/vcap/.paas-env.sh; fi
for f in /home/vcap/deps/*/profile.d/*.sh /home/vcap/profile.d/*.sh /home/vcap/app/.profile.d/*.sh; do
  if [ -f "$f" ]; then . "$f"; fi
done
if [ -f /home/vcap/app/.profile ]; then . /home/vcap/app/.profile; fi
exec bash -c "$1""#;

/// The launcher's arguments for running `command` (a shell command line).
pub fn launcher_args(command: &str) -> Vec<String> {
    vec![
        "/bin/bash".into(),
        "-c".into(),
        LAUNCHER.into(),
        "launcher".into(),
        command.to_string(),
    ]
}

/// What tells a container an instance runs from any other, for taking one over after
/// paasd restarts: a hash of what the instance runs (droplet, command, environment,
/// settings, user namespace), so only a container that runs what would be started now
/// is kept. Its routes and bound services' credentials are left out: as for an instance
/// that runs on, they reach it at its next start.
pub(super) fn survivor_label(spec: &InstanceSpec) -> Option<String> {
    use sha2::Digest;
    if spec.stdin {
        // An attached task ends with its client.
        return None;
    }
    let what = serde_json::json!({
        "app_guid": spec.app_guid,
        "app": spec.app.as_str(),
        "process": spec.process,
        "index": spec.index,
        "settings": spec.settings,
        "start_command": spec.start_command,
        "droplet_dir": spec.droplet_dir,
        "env": spec.env,
        "id_map": [spec.id_map.host_base, spec.id_map.size],
    });
    Some(hex::encode(sha2::Sha256::digest(
        what.to_string().as_bytes(),
    )))
}

/// The longest app log line kept; longer lines are cut.
const MAX_LINE: usize = 16 * 1024;
/// Lines per second one instance may log (on each stream); more are dropped and counted,
/// so one noisy instance cannot flood the platform's log store.
const LINES_PER_SECOND: u32 = 1000;

pub(super) fn spawn_pump<R: AsyncRead + Unpin + Send + 'static>(
    reporter: &Arc<dyn Reporter>,
    app: &AppName,
    source: &str,
    stream: LogStream,
    pipe: Option<R>,
) -> tokio::task::JoinHandle<()> {
    let (reporter, app, source) = (Arc::clone(reporter), app.clone(), source.to_string());
    tokio::spawn(async move {
        let Some(pipe) = pipe else { return };
        let mut limit = paas_runtime::output::RateLimit::new(LINES_PER_SECOND);
        paas_runtime::output::for_each_line(pipe, MAX_LINE, |line| {
            let now = Instant::now();
            if let Some(dropped) = limit.dropped_before(now) {
                reporter.log(
                    &app,
                    &source,
                    LogStream::Err,
                    &format!("paas: {dropped} lines dropped: this instance logs more than {LINES_PER_SECOND} lines a second"),
                );
            }
            if limit.admit(now) {
                reporter.log(&app, &source, stream, &line);
            }
        })
        .await;
    })
}

#[cfg(test)]
mod tests {
    use super::restart_delay;
    use std::time::Duration;

    #[test]
    fn first_three_restarts_are_immediate_then_backoff_doubles_to_16_minutes() {
        for n in 1..=3 {
            assert_eq!(restart_delay(n), Duration::ZERO);
        }
        assert_eq!(restart_delay(4), Duration::from_secs(60));
        assert_eq!(restart_delay(5), Duration::from_secs(120));
        assert_eq!(restart_delay(8), Duration::from_secs(960));
        assert_eq!(restart_delay(9), Duration::from_secs(960));
        assert_eq!(restart_delay(u32::MAX), Duration::from_secs(960));
    }
}
