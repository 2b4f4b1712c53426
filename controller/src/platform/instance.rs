//! One app instance and the task that keeps it alive.
//!
//! The task starts the container, waits for its port to answer, marks it running (which
//! routes it), and restarts it when it crashes, with DESIGN.md's backoff. Asking it to
//! stop takes it out of the route table first, then sends SIGTERM, and SIGKILL after
//! [`STOP_GRACE`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use paas_api::{AppName, AppSettings, LogStream};
use paas_runtime::spec::{Mount, MountKind};
use paas_runtime::{Container, ContainerConfig, Limits, NetworkMode, VCAP_GID, VCAP_UID};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::watch;
use tokio::time::Instant;

use super::{Platform, STOP_GRACE};

/// The port every instance listens on, as Cloud Foundry sets it.
pub const APP_PORT: u16 = 8080;
/// Pids one instance may have.
const PIDS_LIMIT: u32 = 1024;
/// An instance that ran this long before crashing has its crash count reset.
const CRASH_RESET_AFTER: Duration = Duration::from_secs(5 * 60);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstanceState {
    Starting,
    Running,
    Crashed(String),
    Stopping,
    Stopped,
}

/// What an instance runs.
#[derive(Debug, Clone)]
pub struct InstanceSpec {
    pub app: AppName,
    pub app_guid: String,
    pub index: u32,
    pub settings: AppSettings,
    pub start_command: String,
    pub droplet_dir: PathBuf,
}

pub struct Instance {
    pub app: AppName,
    pub index: u32,
    state: watch::Sender<InstanceState>,
    addr: Mutex<Option<SocketAddr>>,
    stop: watch::Sender<bool>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Instance {
    pub fn state(&self) -> InstanceState {
        self.state.borrow().clone()
    }

    /// Where the router may send requests: only while running.
    pub fn routable_addr(&self) -> Option<SocketAddr> {
        if *self.state.borrow() == InstanceState::Running {
            *self.addr.lock().unwrap_or_else(|p| p.into_inner())
        } else {
            None
        }
    }

    /// Waits until the instance first runs (`Ok`) or crashes or stops (`Err` with why).
    pub async fn started(&self) -> Result<(), String> {
        let mut rx = self.state.subscribe();
        let s = rx
            .wait_for(|s| !matches!(s, InstanceState::Starting))
            .await
            .map(|s| s.clone())
            .unwrap_or(InstanceState::Stopped);
        match s {
            InstanceState::Running => Ok(()),
            InstanceState::Crashed(why) => Err(why),
            _ => Err("it was stopped".to_string()),
        }
    }

    /// Stops the instance and waits until it is gone.
    pub async fn stop(&self) {
        let _ = self.stop.send(true);
        let task = self.task.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = task {
            let _ = t.await;
        }
    }

    fn set(&self, platform: &Platform, s: InstanceState) {
        let routed_before = self.routable_addr().is_some();
        self.state.send_replace(s);
        if routed_before != self.routable_addr().is_some() {
            platform.refresh_routes();
        }
    }
}

/// Starts supervising a new instance.
pub fn spawn(platform: Arc<Platform>, spec: InstanceSpec) -> Arc<Instance> {
    let inst = Arc::new(Instance {
        app: spec.app.clone(),
        index: spec.index,
        state: watch::channel(InstanceState::Starting).0,
        addr: Mutex::new(None),
        stop: watch::channel(false).0,
        task: Mutex::new(None),
    });
    let task = tokio::spawn(supervise(platform, Arc::clone(&inst), spec));
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

async fn supervise(platform: Arc<Platform>, inst: Arc<Instance>, spec: InstanceSpec) {
    let mut stop = inst.stop.subscribe();
    let source = format!("APP/WEB/{}", spec.index);
    let cell = |msg: String| {
        platform
            .logs
            .append(&spec.app, "CELL", LogStream::Out, &msg)
    };
    let mut crashes = 0u32;
    loop {
        inst.set(&platform, InstanceState::Starting);
        let began = Instant::now();
        let why = match start(&platform, &spec).await {
            Err(e) => format!("could not start: {e}"),
            Ok(mut c) => {
                let addr = c
                    .address
                    .as_ref()
                    .map(|a| SocketAddr::from((a.instance_ip, APP_PORT)));
                *inst.addr.lock().unwrap_or_else(|p| p.into_inner()) = addr;
                let pumps = (
                    tokio::spawn(pump(
                        Arc::clone(&platform),
                        spec.app.clone(),
                        source.clone(),
                        LogStream::Out,
                        c.stdout.take(),
                    )),
                    tokio::spawn(pump(
                        Arc::clone(&platform),
                        spec.app.clone(),
                        source.clone(),
                        LogStream::Err,
                        c.stderr.take(),
                    )),
                );
                let outcome = run_once(&platform, &inst, &mut c, addr, &mut stop).await;
                let _ = tokio::join!(pumps.0, pumps.1);
                c.destroy().await;
                match outcome {
                    Outcome::Stopped => {
                        inst.set(&platform, InstanceState::Stopped);
                        return;
                    }
                    Outcome::Crashed(why) => why,
                }
            }
        };
        crashes = if began.elapsed() >= CRASH_RESET_AFTER {
            1
        } else {
            crashes + 1
        };
        cell(format!("instance {} crashed: {why}", spec.index));
        inst.set(&platform, InstanceState::Crashed(why));
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
                inst.set(&platform, InstanceState::Stopped);
                return;
            }
        }
    }
}

enum Outcome {
    Stopped,
    Crashed(String),
}

/// Health-checks a started container, then waits for it to exit or to be stopped.
async fn run_once(
    platform: &Platform,
    inst: &Instance,
    c: &mut Container,
    addr: Option<SocketAddr>,
    stop: &mut watch::Receiver<bool>,
) -> Outcome {
    let Some(addr) = addr else {
        return Outcome::Crashed("the container has no address".into());
    };
    let deadline = Instant::now() + platform.start_timeout;
    // The `port` health check: the instance is healthy once its port accepts connections.
    let healthy = loop {
        tokio::select! {
            reason = c.wait() => break Err(format!("exited during start ({reason})")),
            _ = stopped(stop) => {
                inst.set(platform, InstanceState::Stopping);
                c.stop(STOP_GRACE).await;
                return Outcome::Stopped;
            }
            _ = tokio::time::sleep_until(deadline) => {
                break Err(format!("did not listen on port {APP_PORT} within {}s", platform.start_timeout.as_secs()));
            }
            ok = port_answers(addr) => if ok { break Ok(()) } else {
                tokio::time::sleep(Duration::from_millis(50)).await;
            },
        }
    };
    if let Err(why) = healthy {
        c.stop(Duration::ZERO).await;
        return Outcome::Crashed(why);
    }
    inst.set(platform, InstanceState::Running);
    platform.logs.append(
        &inst.app,
        "CELL",
        LogStream::Out,
        &format!("instance {} is running", inst.index),
    );
    tokio::select! {
        reason = c.wait() => Outcome::Crashed(reason.to_string()),
        _ = stopped(stop) => {
            inst.set(platform, InstanceState::Stopping);
            c.stop(STOP_GRACE).await;
            Outcome::Stopped
        }
    }
}

/// Completes once the instance is asked to stop.
async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

async fn port_answers(addr: SocketAddr) -> bool {
    matches!(
        tokio::time::timeout(Duration::from_secs(1), tokio::net::TcpStream::connect(addr)).await,
        Ok(Ok(_))
    )
}

/// The launcher: sources profile scripts as Cloud Foundry's does, then runs the start
/// command (`$1`) through bash, which execs a simple command directly.
const LAUNCHER: &str = r#"cd /home/vcap/app || exit 1
for f in /home/vcap/deps/*/profile.d/*.sh /home/vcap/profile.d/*.sh /home/vcap/app/.profile.d/*.sh; do
  if [ -f "$f" ]; then . "$f"; fi
done
if [ -f /home/vcap/app/.profile ]; then . /home/vcap/app/.profile; fi
exec bash -c "$1""#;

async fn start(platform: &Platform, spec: &InstanceSpec) -> Result<Container, String> {
    let id = container_id(spec);
    let dir = platform.runtime.container_dir(&id);
    let (upper, work) = (dir.join("upper"), dir.join("work"));
    for d in [&upper, &work] {
        tokio::fs::create_dir_all(d)
            .await
            .map_err(|e| format!("creating {}: {e}", d.display()))?;
    }
    std::os::unix::fs::chown(&upper, Some(VCAP_UID), Some(VCAP_GID))
        .map_err(|e| format!("preparing the writable layer: {e}"))?;
    let memory = spec.settings.memory;
    let address = platform
        .runtime
        .allocate_address(&id)
        .map_err(|e| e.to_string())?;
    let cfg = ContainerConfig {
        id: id.clone(),
        hostname: id.clone(),
        mounts: vec![
            Mount {
                target: "/home/vcap".into(),
                kind: MountKind::Overlay {
                    lower: spec.droplet_dir.clone(),
                    upper,
                    work,
                },
            },
            Mount {
                target: "/tmp".into(),
                kind: MountKind::Tmpfs {
                    size_bytes: memory.bytes().min(256 << 20),
                    mode: 0o1777,
                    uid: 0,
                    gid: 0,
                },
            },
        ],
        args: vec![
            "/bin/bash".into(),
            "-c".into(),
            LAUNCHER.into(),
            "launcher".into(),
            spec.start_command.clone(),
        ],
        env: instance_env(platform, spec, &id, address.instance_ip),
        cwd: "/home/vcap/app".into(),
        uid: VCAP_UID,
        gid: VCAP_GID,
        limits: Limits {
            memory_bytes: memory.bytes(),
            pids: PIDS_LIMIT,
        },
        network: NetworkMode::Routed(address),
    };
    platform.runtime.start(cfg).await.map_err(|e| e.to_string())
}

/// A container id: the app name (shortened), the index and a random part.
fn container_id(spec: &InstanceSpec) -> String {
    let mut b = [0u8; 4];
    let _ = getrandom::fill(&mut b);
    let name: String = spec.app.as_str().chars().take(24).collect();
    format!("{name}-{}-{}", spec.index, hex::encode(b))
}

/// The instance environment of DESIGN.md, as Cloud Foundry sets it.
fn instance_env(
    platform: &Platform,
    spec: &InstanceSpec,
    id: &str,
    ip: std::net::Ipv4Addr,
) -> Vec<String> {
    let host = platform.host(&spec.app);
    let vcap_application = serde_json::json!({
        "application_id": spec.app_guid,
        "application_name": spec.app.as_str(),
        "application_uris": [host],
        "name": spec.app.as_str(),
        "uris": [host],
        "instance_id": id,
        "instance_index": spec.index,
        "limits": { "mem": spec.settings.memory.mb(), "fds": paas_runtime::NOFILE_LIMIT },
    });
    vec![
        format!("PORT={APP_PORT}"),
        format!("VCAP_APPLICATION={vcap_application}"),
        "VCAP_SERVICES={}".to_string(),
        format!("CF_INSTANCE_INDEX={}", spec.index),
        format!("CF_INSTANCE_GUID={id}"),
        format!("CF_INSTANCE_IP={ip}"),
        format!("CF_INSTANCE_PORT={APP_PORT}"),
        format!("CF_INSTANCE_ADDR={ip}:{APP_PORT}"),
        format!("INSTANCE_INDEX={}", spec.index),
        format!("MEMORY_LIMIT={}", spec.settings.memory),
        "HOME=/home/vcap/app".to_string(),
        "TMPDIR=/home/vcap/tmp".to_string(),
        "USER=vcap".to_string(),
        "LANG=C.UTF-8".to_string(),
        "PATH=/usr/local/bin:/usr/bin:/bin".to_string(),
        format!("CF_STACK={}", paas_runtime::stack::STACK_NAME),
    ]
}

/// The longest app log line kept; longer lines are cut.
const MAX_LINE: usize = 16 * 1024;

async fn pump(
    platform: Arc<Platform>,
    app: AppName,
    source: String,
    stream: LogStream,
    pipe: Option<impl AsyncRead + Unpin>,
) {
    let Some(pipe) = pipe else { return };
    let mut reader = BufReader::new(pipe);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        buf.truncate(MAX_LINE);
        let line = String::from_utf8_lossy(&buf);
        platform
            .logs
            .append(&app, &source, stream, line.trim_end_matches(['\n', '\r']));
    }
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
