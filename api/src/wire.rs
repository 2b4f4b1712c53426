//! Requests, responses and streamed events of the `/v1` API.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{AppName, BuildpackName, MemorySize};

/// The one shape of every error the API returns, with a status code >= 400.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ErrorBody {
    /// A stable, machine-readable code such as `invalid-name` or `app-not-found`.
    pub code: String,
    /// What happened, to what.
    pub message: String,
    /// What to do about it, when there is something to do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

/// `GET /v1/info`: what the daemon is and where apps answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Info {
    pub version: String,
    pub domain: String,
    /// The router's base address as a client would use it, e.g. `http://localhost:8080`.
    pub router_url: String,
}

/// `PUT /v1/apps/{name}`: the desired settings of an app; creates it if new.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AppSettings {
    pub instances: u32,
    pub memory: MemorySize,
    /// Buildpacks in the order they run; empty means detect.
    #[serde(default)]
    pub buildpacks: Vec<BuildpackName>,
    /// The start command; `None` takes the Procfile's or the buildpack's.
    #[serde(default)]
    pub command: Option<String>,
    /// How the platform tells that an instance is healthy.
    #[serde(default)]
    pub health_check: HealthCheck,
    /// Seconds an instance may take to pass its first health check; `None` is the
    /// platform's default (60).
    #[serde(default)]
    pub start_timeout_secs: Option<u32>,
    /// Seconds between two checks of a running instance (cf's `health-check-interval`);
    /// `None` is 5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check_interval_secs: Option<u32>,
    /// Seconds one check may take (cf's `health-check-invocation-timeout`); `None` is 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check_timeout_secs: Option<u32>,
    /// A readiness check apart from the (liveness) health check: an instance failing it
    /// is only taken out of the route table, never restarted. `None`: liveness alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readiness_check: Option<HealthCheck>,
    /// Seconds between two readiness checks (cf's `readiness-health-check-interval`);
    /// `None` is the health check interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readiness_check_interval_secs: Option<u32>,
    /// Seconds one readiness check may take (cf's
    /// `readiness-health-check-invocation-timeout`); `None` is the health check's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readiness_check_timeout_secs: Option<u32>,
    /// The most each instance may write to its disk; `None` is the default, 1G.
    #[serde(default)]
    pub disk: Option<MemorySize>,
    /// Instances may open connections to the world (never to the host or to other
    /// instances). Off by default; `None` in a change keeps what the app has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbound: Option<bool>,
    /// The stack it is built and runs on (`paas stacks`; `push -s`); `None` in a change
    /// keeps what the app has, and a new app gets the platform's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack: Option<String>,
    /// The process types other than `web` (whose settings are the fields above), by
    /// type: what differs from the defaults (one instance, the app's memory and disk,
    /// the `process` health check, the droplet's command).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub processes: BTreeMap<String, ProcessSettings>,
}

/// The process type that gets routes: the others run beside it, unrouted.
pub const WEB: &str = "web";

/// Whether `name` may be a process type: 1 to 63 ASCII letters, digits, `-` or `_`, as
/// a Procfile writes them. (It goes into every log line of its instances.)
pub fn is_process_type(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// The serde default of a process type: `web`.
pub fn web() -> String {
    WEB.to_string()
}

/// Settings of one process type other than `web`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProcessSettings {
    pub instances: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<MemorySize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<MemorySize>,
    /// `None`: the `process` check (it runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,
    /// `None`: the droplet's command for the type (Procfile, buildpack).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
}

impl Default for ProcessSettings {
    fn default() -> Self {
        ProcessSettings {
            instances: 1,
            memory: None,
            disk: None,
            health_check: None,
            command: None,
        }
    }
}

impl AppSettings {
    /// The most instances one app may ask for on one host.
    pub const MAX_INSTANCES: u32 = 100;
    /// The longest start timeout one may ask for, as Cloud Foundry allows.
    pub const MAX_START_TIMEOUT_SECS: u32 = 600;
    /// Cloud Foundry's default disk quota.
    pub const DEFAULT_DISK_MB: u64 = 1024;
    /// The longest interval between health checks one may ask for.
    pub const MAX_CHECK_INTERVAL_SECS: u32 = 300;
    /// The longest one health check may be given.
    pub const MAX_CHECK_TIMEOUT_SECS: u32 = 60;

    /// Seconds between two checks of a running instance.
    pub fn check_interval(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.health_check_interval_secs.unwrap_or(5).into())
    }

    /// How long one check may take.
    pub fn check_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.health_check_timeout_secs.unwrap_or(1).into())
    }

    /// Seconds between two readiness checks of a running instance.
    pub fn readiness_interval(&self) -> std::time::Duration {
        self.readiness_check_interval_secs
            .map_or(self.check_interval(), |s| {
                std::time::Duration::from_secs(s.into())
            })
    }

    /// How long one readiness check may take.
    pub fn readiness_timeout(&self) -> std::time::Duration {
        self.readiness_check_timeout_secs
            .map_or(self.check_timeout(), |s| {
                std::time::Duration::from_secs(s.into())
            })
    }

    /// Whether instances may open connections to the world.
    pub fn outbound(&self) -> bool {
        self.outbound.unwrap_or(false)
    }

    pub fn disk_or_default(&self) -> MemorySize {
        self.disk.unwrap_or_else(|| {
            MemorySize::from_mb(Self::DEFAULT_DISK_MB).expect("1024M is a valid size")
        })
    }

    /// The settings instances of `process` run with: these for `web`; for another type
    /// its own where it has them, else one instance, the app's memory, disk and command
    /// overrides cleared, and the `process` health check.
    pub fn for_process(&self, process: &str) -> AppSettings {
        if process == WEB {
            return self.clone();
        }
        let own = self.processes.get(process).cloned().unwrap_or_default();
        AppSettings {
            instances: own.instances,
            memory: own.memory.unwrap_or(self.memory),
            disk: own.disk.or(self.disk),
            health_check: own.health_check.unwrap_or(HealthCheck::Process),
            readiness_check: None,
            readiness_check_interval_secs: None,
            readiness_check_timeout_secs: None,
            command: own.command,
            processes: BTreeMap::new(),
            ..self.clone()
        }
    }
}

/// A health check, as Cloud Foundry's `health-check-type`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum HealthCheck {
    /// Healthy while `$PORT` accepts TCP connections.
    #[default]
    Port,
    /// Healthy while `GET endpoint` on `$PORT` answers 2xx or 3xx.
    Http { endpoint: String },
    /// Healthy while the process runs.
    Process,
}

impl HealthCheck {
    /// Parses cf's `-u TYPE` with its `--endpoint`.
    pub fn parse(kind: &str, endpoint: Option<&str>) -> Result<Self, String> {
        match (kind, endpoint) {
            ("port", None) => Ok(HealthCheck::Port),
            ("process", None) => Ok(HealthCheck::Process),
            ("http", e) => {
                let endpoint = e.unwrap_or("/");
                if !endpoint.starts_with('/')
                    || endpoint.chars().any(|c| c.is_control() || c == ' ')
                {
                    return Err(format!(
                        "health check endpoint {endpoint:?} must be a path such as /health"
                    ));
                }
                Ok(HealthCheck::Http {
                    endpoint: endpoint.to_string(),
                })
            }
            ("port" | "process", Some(_)) => {
                Err("--endpoint goes only with the http health check (-u http)".into())
            }
            (other, _) => Err(format!(
                "health check type {other:?} is unknown: use port, http or process"
            )),
        }
    }
}

impl std::fmt::Display for HealthCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HealthCheck::Port => f.write_str("port"),
            HealthCheck::Http { endpoint } => write!(f, "http {endpoint}"),
            HealthCheck::Process => f.write_str("process"),
        }
    }
}

/// One instance of an app as the API reports it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InstanceSummary {
    /// Its id: a new one for every instance started, kept across health changes.
    #[serde(default)]
    pub id: String,
    /// Its process type.
    #[serde(default = "web")]
    pub process: String,
    pub index: u32,
    /// `starting`, `running`, `unhealthy`, `crashed`, `stopping`.
    pub state: String,
    /// When it entered that state, in milliseconds since the epoch.
    pub since_ms: u64,
    pub memory_bytes: u64,
    /// CPU use since the previous reading (or since start), in percent of one core.
    #[serde(default)]
    pub cpu_percent: f64,
    /// CPU time its container has used since it started, in nanoseconds (0 when its
    /// cell does not say).
    #[serde(default)]
    pub cpu_ns: u64,
    /// Bytes written to its disk (the writable layer).
    #[serde(default)]
    pub disk_bytes: u64,
    /// The cell it runs on.
    #[serde(default)]
    pub cell: String,
}

/// Something that happened to an app: a crash, a deploy.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AppEvent {
    pub timestamp_ms: u64,
    /// `crash`, `deploy`, `deploy-failed`.
    pub kind: String,
    #[serde(default)]
    pub instance: Option<u32>,
    #[serde(default)]
    pub exit_code: Option<i32>,
    pub description: String,
}

/// What the API says about an app.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AppSummary {
    pub name: AppName,
    /// The space it belongs to.
    #[serde(default)]
    pub space: String,
    pub settings: AppSettings,
    /// `started` once a release runs, `pending` before the first successful push.
    pub state: String,
    pub running_instances: u32,
    /// The URL of its first route (not a wildcard), or empty when it has none.
    pub url: String,
    /// Its routes, `HOST[/PATH]`.
    #[serde(default)]
    pub routes: Vec<String>,
    /// The SHA-256 of the running droplet, if any.
    #[serde(default)]
    pub droplet: Option<String>,
    /// The detected or chosen buildpack of the running droplet.
    #[serde(default)]
    pub detected_buildpack: Option<String>,
    /// When its running release was deployed (or rolled back to), in milliseconds
    /// since the epoch; `None` before its first deploy.
    #[serde(default)]
    pub last_deploy_ms: Option<u64>,
    /// The start command of the running release.
    #[serde(default)]
    pub start_command: Option<String>,
    /// Its instances, by process type (`web` first) and index.
    #[serde(default)]
    pub instances: Vec<InstanceSummary>,
    /// The process types of the running release, `web` first.
    #[serde(default)]
    pub processes: Vec<ProcessSummary>,
}

/// One process type of an app, as the API reports it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProcessSummary {
    pub process: String,
    pub command: String,
    /// Instances it asks for.
    pub instances: u32,
    /// Instances running now.
    pub running: u32,
    pub memory: MemorySize,
    pub health_check: HealthCheck,
}

/// `POST /v1/apps/{name}/packages` answer: the upload is stored under its SHA-256.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PackageStored {
    pub sha256: String,
    pub bytes: u64,
}

/// A file the CLI may not need to upload: `POST /v1/resources/match` answers with the
/// ones the platform holds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Hash)]
pub struct ResourceRef {
    pub sha256: String,
    pub size: u64,
}

/// A file of a package that was not uploaded because the platform holds its content,
/// listed in the package's [`RESOURCES_ENTRY`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ResourceEntry {
    pub path: String,
    pub sha256: String,
    pub size: u64,
    /// Permission bits, e.g. 0o755.
    pub mode: u32,
}

/// The package entry that lists [`ResourceEntry`]s to fill in from the resource cache.
pub const RESOURCES_ENTRY: &str = ".paas/resources.json";

/// `POST /v1/apps/{name}/deployments` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeployRequest {
    pub package: String,
    /// Start the new release; with `false` (`push --no-start`) it is staged and made
    /// current, and the app is left stopped.
    #[serde(default = "yes")]
    pub start: bool,
    /// How the new release replaces the running one.
    #[serde(default, flatten)]
    pub rollout: RolloutRequest,
}

/// How a roll-out (a deployment, restart, restage or rollback) replaces the running
/// instances. Without a strategy, every new instance starts and passes its health check
/// before any old one stops.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct RolloutRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<Strategy>,
    /// With a strategy: how many new instances start at once (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_in_flight: Option<u32>,
}

/// A roll-out strategy, as Cloud Foundry names them.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// New instances replace old ones `max_in_flight` at a time.
    Rolling,
    /// One new web instance is routed beside the old ones, and the deployment pauses
    /// until `continue` (then rolling) or `cancel`.
    Canary,
}

fn yes() -> bool {
    true
}

/// One line of the newline-delimited JSON stream that a deployment answers with.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum DeployEvent {
    /// The deployment entered a phase: `staging`, `starting`.
    Phase { phase: String },
    /// A line of the staging log, as the buildpack printed it.
    Log(LogLine),
    /// Done: the app runs the new release and answers at `url`.
    Done { url: String, instances: u32 },
    /// A canary deployment paused: the message says how to go on.
    Paused { message: String },
    /// Failed: nothing was changed for the running release.
    Failed { error: ErrorBody },
}

/// `GET /v1/stacks`: a stack apps may be built and run on (`push -s NAME`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StackInfo {
    pub name: String,
    pub description: String,
    /// A built stack's id: the SHA-256 of its package list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// New apps get it.
    pub default: bool,
}

/// `PUT /v1/routes/route-service?host=H&path=P`: the service to bind to the route as
/// its route service.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BindRouteService {
    pub service: String,
}

/// `GET /v1/routes`: every route, with the running instances of the app it is mapped
/// to; routers that run apart from `paasd` build their table from it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RouteEntry {
    /// Lowercase host, e.g. `myapp.example.com`, or a wildcard, `*.example.com`.
    pub host: String,
    /// A path prefix such as `/api`, or empty for every path.
    #[serde(default)]
    pub path: String,
    /// The app it is mapped to; `None` for a route kept after being unmapped.
    #[serde(default)]
    pub app: Option<String>,
    #[serde(default)]
    pub balance: Balance,
    /// The largest request body the route takes, in bytes (413 beyond); `None` for
    /// no limit.
    #[serde(default)]
    pub max_body_bytes: Option<u64>,
    /// The route service requests go through before the app (`bind-route-service`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route_service_url: Option<String>,
    /// The secret the router signs what it sends the route service with: given to
    /// routers (and admins) only, never listed to tenants.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route_service_key: Option<String>,
    /// The running instances: `ip:port` and instance index.
    pub backends: Vec<RouteBackend>,
}

/// How a route spreads requests over its instances.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum Balance {
    /// In turn, from a random start.
    #[default]
    RoundRobin,
    /// To the instance with the fewest requests under way.
    LeastConnections,
}

impl Balance {
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "round-robin" => Ok(Balance::RoundRobin),
            "least-connections" | "least-connection" => Ok(Balance::LeastConnections),
            other => Err(format!(
                "balancing {other:?} is unknown: use round-robin or least-connections"
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Balance::RoundRobin => "round-robin",
            Balance::LeastConnections => "least-connections",
        }
    }
}

/// `POST /v1/apps/{name}/routes`: a route to map, and how it balances.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MapRoute {
    pub host: String,
    #[serde(default)]
    pub path: String,
    /// Leaves the route's balancing as it is when absent (round-robin for a new one).
    #[serde(default)]
    pub balance: Option<Balance>,
    /// Sets the largest request body in bytes (0: no limit); absent leaves it as it is.
    #[serde(default)]
    pub max_body_bytes: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RouteBackend {
    pub addr: String,
    pub index: u32,
}

/// One revision of an app, as `GET /v1/apps/{name}/revisions` lists them, newest first.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Revision {
    pub version: i64,
    pub droplet: String,
    pub buildpack: String,
    pub start_command: String,
    /// What it changed from the revision before it: `new droplet (BUILDPACK)`,
    /// `env +ADDED ~CHANGED -REMOVED` (names only), `start command`.
    #[serde(default)]
    pub changes: String,
    /// The revision the app runs now.
    pub current: bool,
    /// Its droplet is still kept, so it can be rolled back to.
    pub available: bool,
}

/// `POST /v1/apps/{name}/rollback`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RollbackRequest {
    pub version: i64,
    #[serde(default, flatten)]
    pub rollout: RolloutRequest,
}

/// `POST /v1/apps/{name}/scale`: what to change; what is absent stays. A new instance
/// count adds or stops instances only; new limits restart every instance with them.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ScaleRequest {
    /// The process type to scale; `web` if absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instances: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<MemorySize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<MemorySize>,
}

/// `POST /v1/apps/{name}/tasks`: a one-off command, run once in a container of its own
/// from the app's current droplet, with its env (`cf run-task`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TaskRequest {
    /// A shell command line, run through the droplet's launcher as a start command is.
    pub command: String,
    /// Its name in logs (`APP/TASK/<name>`) and lists; made up if absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Its memory limit; the app's if absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<MemorySize>,
    /// Its disk limit; the app's if absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<MemorySize>,
    /// For an attached task (`?attach`): a terminal of this size, instead of pipes. Its
    /// output then comes back as `tty` events, raw, and its input goes to the terminal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tty: Option<TerminalSize>,
}

/// A terminal's size, in character cells.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct TerminalSize {
    pub rows: u16,
    pub cols: u16,
}

/// A task as the API reports it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TaskSummary {
    pub id: String,
    /// Its number among the app's tasks, from 1: what `terminate-task` takes.
    pub sequence: u64,
    pub name: String,
    pub command: String,
    /// `running`, `succeeded` or `failed`.
    pub state: String,
    /// The command's exit code, once it exited.
    #[serde(default)]
    pub exit_code: Option<i32>,
    /// Why it failed: `exited with N`, `terminated`, out of memory, …
    #[serde(default)]
    pub failure: Option<String>,
    /// Milliseconds since the epoch.
    pub started_ms: u64,
    #[serde(default)]
    pub ended_ms: Option<u64>,
    pub memory: MemorySize,
    pub disk: MemorySize,
    /// The droplet it ran from.
    pub droplet: String,
    /// The cell it runs on.
    pub cell: String,
}

/// `POST /v1/services` (every field but `name` optional) and `PATCH
/// /v1/services/{name}` (what is given changes): a user-provided service instance, as
/// `cf create-user-provided-service` makes one.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ServiceRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A JSON object: what bound apps find under `credentials` in `VCAP_SERVICES`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub syslog_drain_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route_service_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
}

/// A service instance as `GET /v1/services` lists it: never its credentials.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ServiceSummary {
    pub name: String,
    pub guid: String,
    /// `user-provided`.
    pub label: String,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub syslog_drain_url: Option<String>,
    #[serde(default)]
    pub route_service_url: Option<String>,
    /// The apps bound to it.
    #[serde(default)]
    pub bound_apps: Vec<String>,
    /// The space it belongs to.
    #[serde(default)]
    pub space: String,
}

/// A buildpack as `GET /v1/buildpacks` lists it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BuildpackInfo {
    pub name: BuildpackName,
    /// 1-based; detection tries enabled buildpacks in this order.
    pub position: u32,
    /// `heroku`, `cloud-foundry` or `cloud-native`.
    pub dialect: String,
    pub enabled: bool,
    /// Shipped with the platform rather than added by a user.
    pub shipped: bool,
    pub sha256: String,
}

/// `PATCH /v1/buildpacks/{name}`: what to change; absent fields stay as they are.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BuildpackUpdate {
    #[serde(default)]
    pub position: Option<u32>,
    #[serde(default)]
    pub enabled: Option<bool>,
}

/// `POST /v1/apps/{name}/exec`: run a command in one running instance.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExecRequest {
    pub index: u32,
    /// The instance's process type (`web`, `worker`, …); `web` if absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<String>,
    /// The command and its arguments, run through the instance's launcher (so profile
    /// scripts are sourced, as `cf ssh` does).
    pub command: Vec<String>,
}

/// One line of the NDJSON stream an exec answers with.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum ExecEvent {
    /// An attached task's number, first: what resizes its terminal or terminates it.
    Task {
        sequence: u64,
    },
    Output {
        stream: LogStream,
        line: String,
    },
    /// What a command with a terminal wrote to it, as it came (escapes included): for
    /// the person's own terminal, not for a log.
    Tty {
        data: String,
    },
    Exit {
        code: i32,
    },
}

/// One log line of an app.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LogLine {
    /// Milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// `STG`, `APP/PROC/WEB/<index>`, `API`, `CELL`, `RTR`.
    pub source: String,
    pub stream: LogStream,
    pub line: String,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogStream {
    Out,
    Err,
}

impl LogStream {
    pub fn as_str(self) -> &'static str {
        match self {
            LogStream::Out => "OUT",
            LogStream::Err => "ERR",
        }
    }
}

/// The path a list page's `Link` header names as `rel="next"` (RFC 8288); `None` on the
/// last page. Only paths on the same API count, never another host's URL.
pub fn next_page_link(header: &str) -> Option<String> {
    header.split(',').find_map(|link| {
        let (target, params) = link.split_once(';')?;
        let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        let is_next = params
            .split(';')
            .any(|p| matches!(p.trim(), "rel=\"next\"" | "rel=next"));
        (is_next && target.starts_with('/')).then(|| target.to_string())
    })
}

/// Formats milliseconds since the epoch as RFC 3339 in UTC, `2026-11-21T23:03:31.123Z`.
pub fn format_timestamp_ms(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days: days since 1970-01-01 to a proleptic Gregorian date.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_format_as_rfc3339() {
        assert_eq!(format_timestamp_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            format_timestamp_ms(951_782_400_000),
            "2000-02-29T00:00:00.000Z"
        );
        assert_eq!(
            format_timestamp_ms(1_795_302_211_123),
            "2026-11-21T23:03:31.123Z"
        );
    }

    #[test]
    fn finds_the_next_page_in_a_link_header() {
        assert_eq!(
            next_page_link("</v1/apps?page=2&per_page=100>; rel=\"next\"").as_deref(),
            Some("/v1/apps?page=2&per_page=100")
        );
        assert_eq!(
            next_page_link("</a?page=1>; rel=\"prev\", </a?page=3>; rel=next").as_deref(),
            Some("/a?page=3")
        );
        assert_eq!(next_page_link("</a?page=1>; rel=\"prev\""), None);
        assert_eq!(
            next_page_link("<https://evil.example/x>; rel=\"next\""),
            None
        );
        assert_eq!(next_page_link("garbage"), None);
    }

    #[test]
    fn deploy_events_are_tagged() {
        let e = DeployEvent::Phase {
            phase: "staging".into(),
        };
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"event":"phase","phase":"staging"}"#
        );
        let back: DeployEvent = serde_json::from_str(
            r#"{"event":"done","url":"http://a.localhost:8080","instances":2}"#,
        )
        .unwrap();
        assert!(matches!(back, DeployEvent::Done { instances: 2, .. }));
    }
}

#[cfg(test)]
mod health_check_tests {
    use super::HealthCheck;

    #[test]
    fn parses_cf_health_check_flags() {
        assert_eq!(HealthCheck::parse("port", None), Ok(HealthCheck::Port));
        assert_eq!(
            HealthCheck::parse("process", None),
            Ok(HealthCheck::Process)
        );
        assert_eq!(
            HealthCheck::parse("http", Some("/health")),
            Ok(HealthCheck::Http {
                endpoint: "/health".into()
            })
        );
        assert_eq!(
            HealthCheck::parse("http", None),
            Ok(HealthCheck::Http {
                endpoint: "/".into()
            })
        );
        assert!(HealthCheck::parse("http", Some("health")).is_err());
        assert!(HealthCheck::parse("port", Some("/x")).is_err());
        assert!(HealthCheck::parse("none", None)
            .unwrap_err()
            .contains("port, http or process"));
    }

    #[test]
    fn old_settings_without_a_health_check_mean_port() {
        let s: super::AppSettings =
            serde_json::from_str(r#"{"instances":1,"memory":256}"#).unwrap();
        assert_eq!(s.health_check, HealthCheck::Port);
    }
}
