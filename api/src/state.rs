//! Documents the members of a platform share through its state store (a real etcd, or
//! SQLite on one host), and the keys they live under. Routers on other hosts read them
//! as paasd writes them, so they are defined once, here.
//!
//! - `routes/HOSTPATH`: a [`StoredRoute`] (host + path, the app it is mapped to);
//! - `domains/NAME`: a [`StoredDomain`] with its certificate;
//! - `default-certificate`: a [`StoredDomain`] too: the platform's domain and the
//!   certificate HTTPS serves for names no domain's certificate covers;
//! - `cells/ID`: a [`CellPresence`], under the cell's lease: it vanishes a few seconds
//!   after the cell stops renewing it;
//! - `actual/APP/INSTANCE`: an [`ActualInstance`], also under its cell's lease;
//! - `assigned/CELL/INSTANCE`: an [`Assignment`], an instance the controller placed on a
//!   cell, which the cell runs for as long as the key exists;
//! - `blob-holders/SHA/HOST`: a [`BlobHolder`], a host that keeps the blob and serves it
//!   to the others;
//! - `cluster-secret`: the [`ClusterSecret`] hosts prove themselves to each other with;
//! - `leader`: the id of the controller that converges, under its lease;
//! - `app-locks/APP`: held by the controller that deploys, stops or deletes the app;
//! - `api-ca`: the [`CertificateAuthority`] that issues every controller's API
//!   certificate;
//! - `admin-token`: the admin token every controller of the cluster accepts (the first
//!   controller's).

use serde::{Deserialize, Serialize};

use crate::{AppName, Balance, Route, RouteBackend, RouteEntry};

/// Where every key of the platform lives.
pub const PREFIX: &str = "/paas/";
pub const ROUTES: &str = "/paas/routes/";
pub const DOMAINS: &str = "/paas/domains/";
pub const CELLS: &str = "/paas/cells/";
pub const ACTUAL: &str = "/paas/actual/";
pub const DEFAULT_CERTIFICATE: &str = "/paas/default-certificate";
pub const ASSIGNED: &str = "/paas/assigned/";
pub const BLOB_HOLDERS: &str = "/paas/blob-holders/";
pub const CLUSTER_SECRET: &str = "/paas/cluster-secret";
pub const LEADER: &str = "/paas/leader";
pub const ADMIN_TOKEN: &str = "/paas/admin-token";
pub const APP_LOCKS: &str = "/paas/app-locks/";
pub const API_CA: &str = "/paas/api-ca";

/// The key of a route. Hosts hold no `/` and paths start with one, so host + path is
/// unique.
pub fn route_key(route: &Route) -> String {
    format!("{ROUTES}{}{}", route.host(), route.path())
}

pub fn domain_key(name: &str) -> String {
    format!("{DOMAINS}{name}")
}

pub fn cell_key(id: &str) -> String {
    format!("{CELLS}{id}")
}

/// The key of one instance of `app`.
pub fn actual_key(app: &AppName, instance: &str) -> String {
    format!("{ACTUAL}{app}/{instance}")
}

/// The prefix of every instance placed on cell `cell`.
pub fn assigned_prefix(cell: &str) -> String {
    format!("{ASSIGNED}{cell}/")
}

pub fn assigned_key(cell: &str, instance: &str) -> String {
    format!("{ASSIGNED}{cell}/{instance}")
}

pub fn blob_holder_key(sha256: &str, host: &str) -> String {
    format!("{BLOB_HOLDERS}{sha256}/{host}")
}

/// A route and the app it is mapped to, if any. Kept when unmapped (reserved).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredRoute {
    pub route: Route,
    pub app: Option<AppName>,
    #[serde(default)]
    pub balance: Balance,
    /// The largest request body, in bytes; `None` for no limit.
    #[serde(default)]
    pub max_body: Option<u64>,
    /// The space that made it: only that space maps it (`None`: from before spaces,
    /// the default space's).
    #[serde(default)]
    pub space: Option<String>,
    /// The route service its requests go through first (`paas bind-route-service`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route_service: Option<RouteServiceBinding>,
}

/// A user-provided service bound to a route as its route service: the router sends the
/// route's requests to `url` first, signed with `key`, and passes on to the app only
/// what comes back with a valid signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteServiceBinding {
    /// The service instance's name.
    pub service: String,
    /// Its `route_service_url`, as it was when bound or last updated.
    pub url: String,
    /// 32 random bytes in hex, made at binding: only the store and routers know them.
    pub key: String,
}

impl StoredRoute {
    /// The space it belongs to.
    pub fn space(&self) -> &str {
        self.space.as_deref().unwrap_or(crate::auth::DEFAULT_SPACE)
    }

    /// The route as a router's table holds it, sending to `backends`.
    pub fn entry(&self, backends: Vec<RouteBackend>) -> RouteEntry {
        RouteEntry {
            host: self.route.host().to_string(),
            path: self.route.path().to_string(),
            app: self.app.as_ref().map(ToString::to_string),
            balance: self.balance,
            max_body_bytes: self.max_body,
            route_service_url: self.route_service.as_ref().map(|b| b.url.clone()),
            route_service_key: self.route_service.as_ref().map(|b| b.key.clone()),
            backends,
        }
    }
}

/// A domain added with `create-domain`, with the certificate HTTPS serves for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredDomain {
    pub name: String,
    pub cert_pem: Option<String>,
    pub key_pem: Option<String>,
    /// The space it is private to; `None`: shared by every space.
    #[serde(default)]
    pub space: Option<String>,
}

/// A cell that is up: where it is, what it has and what it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CellPresence {
    pub id: String,
    /// The address other hosts reach this cell's instances at.
    pub address: String,
    /// Where its host serves the others of its cluster (`IP:PORT`): blobs, log lines,
    /// exec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    /// Memory the cell may give instances, and how much its instances are given now.
    pub memory_bytes: u64,
    pub memory_used_bytes: u64,
    /// Instances it runs now.
    pub instances: u32,
    /// When this record was last written, in milliseconds since the epoch.
    pub updated_ms: u64,
}

/// One instance as its cell last reported it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActualInstance {
    pub app: AppName,
    /// Its process type.
    #[serde(default = "crate::web")]
    pub process: String,
    pub index: u32,
    /// The cell it runs on.
    pub cell: String,
    /// `starting`, `running`, `unhealthy`, `crashed`, `stopping`.
    pub state: String,
    /// Where routers send its requests (`IP:PORT`), while a `web` instance is running.
    pub address: Option<String>,
    /// When it entered its state, in milliseconds since the epoch.
    pub since_ms: u64,
    /// The memory it is given.
    pub memory_bytes: u64,
    /// Why it crashed, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// An instance the controller placed on a cell: everything the cell needs to run it.
/// It never changes; the instance stops when the key is deleted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    pub app: AppName,
    pub app_guid: String,
    /// Its process type (`web`, `worker`, …): only `web` instances are routed.
    #[serde(default = "crate::web")]
    pub process: String,
    pub index: u32,
    pub settings: crate::AppSettings,
    pub start_command: String,
    /// The droplet's SHA-256; the cell fetches it from a holder (`blob-holders/`).
    pub droplet: String,
    /// The app's own environment, set after the platform's.
    pub env: Vec<(String, String)>,
    /// What the platform adds from the app's bindings (`VCAP_SERVICES`, `DATABASE_URL`).
    #[serde(default)]
    pub system_env: Vec<(String, String)>,
    /// The first host user id of the app's user namespace.
    pub id_base: u32,
    /// The app's routes, for `VCAP_APPLICATION`.
    pub uris: Vec<String>,
    /// Where the app's log lines go on to.
    #[serde(default, skip_serializing_if = "LogDrains::is_empty")]
    pub drains: LogDrains,
}

/// A task a controller has a cell of another host run (`POST /tasks` on its peer
/// listener); for an attached one, the request's body goes on with the task's input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskOrder {
    /// The task's id (its GUID), by which it is terminated.
    pub id: String,
    /// Its number among the app's tasks: the cell's host records its end under it.
    #[serde(default)]
    pub sequence: u64,
    /// Its name in the app's log (`APP/TASK/<name>`).
    pub name: String,
    /// What to run: the droplet, env and limits of the app, and the task's command as
    /// `start_command` (`process` is `task`).
    pub run: Assignment,
    /// Someone is at it: it ends when they leave, and its input follows the order.
    #[serde(default)]
    pub attached: bool,
    /// A terminal of this size instead of pipes (attached only).
    #[serde(default)]
    pub tty: Option<crate::TerminalSize>,
}

/// What a cell's host answers a [`TaskOrder`] with, NDJSON: the task's output as it
/// comes (its lines are kept in that host's log too), then how it ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum TaskEvent {
    /// A line the task printed.
    Output {
        stream: crate::LogStream,
        line: String,
    },
    /// What it wrote to its terminal.
    Tty { data: String },
    /// It exited with `exit_code`, or ended for the reason `failure` (`terminated`: it
    /// was asked to stop).
    Ended {
        exit_code: Option<i32>,
        failure: Option<String>,
        #[serde(default)]
        terminated: bool,
    },
}

/// Where an app's log lines go on to: the syslog drain URLs of its bound services.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogDrains {
    /// The syslog HOSTNAME of its messages: `SPACE.APP`.
    pub hostname: String,
    pub urls: Vec<String>,
}

impl LogDrains {
    pub fn is_empty(&self) -> bool {
        self.urls.is_empty()
    }
}

/// A host that keeps a blob and serves it to the others on its peer port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobHolder {
    /// `IP:PORT` of the host's peer listener.
    pub peer: String,
}

/// What the platform's hosts prove themselves to each other with: a token every request
/// between them carries, and the certificate (with its key) their peer listeners serve,
/// the only one their clients trust. Made once, by the first host, and kept in the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterSecret {
    pub token: String,
    pub cert_pem: String,
    pub key_pem: String,
}

/// A certificate authority: its certificate and key, PEM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateAuthority {
    pub cert_pem: String,
    pub key_pem: String,
}

/// The name in the cluster certificate, which peers ask for whatever address they dial.
pub const PEER_SERVER_NAME: &str = "peer.paas.internal";

/// A staging a controller without a cell asks a cell's host to run (`POST /stage` on its
/// peer listener), with everything it needs by hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageOrder {
    pub app: AppName,
    /// The package's SHA-256.
    pub package: String,
    /// In position order: a shipped buildpack by name (`sha256` none), a custom one by
    /// name and the SHA-256 of its bits.
    pub buildpacks: Vec<StageBuildpack>,
    /// Pick the first whose detect passes, or run them all in order.
    pub detect: bool,
    pub start_command: Option<String>,
    pub env: Vec<(String, String)>,
    pub memory: crate::MemorySize,
    pub disk: Option<crate::MemorySize>,
    pub timeout_secs: u64,
    /// The app may reach the world while it builds.
    pub outbound: bool,
    /// The first host user id of the app's user namespace.
    pub id_base: u32,
    /// The stack to build on; `None`: the host's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageBuildpack {
    pub name: crate::BuildpackName,
    pub sha256: Option<String>,
}

/// One line of the NDJSON answer to a [`StageOrder`]: output lines, then how it ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum StageEvent {
    Log {
        stream: crate::LogStream,
        line: String,
    },
    /// The droplet is kept by that host (and a second one) under its SHA-256.
    Staged {
        droplet: String,
        detected_buildpack: String,
        start_command: String,
        /// Every process type the droplet declares, with its command.
        #[serde(default)]
        process_types: std::collections::BTreeMap<String, String>,
    },
    Failed {
        message: String,
        /// The app or its buildpacks failed, not the platform.
        user_error: bool,
        cf_exit_code: Option<i32>,
    },
}
