//! Desired state: apps, their releases and events, routes, domains and buildpacks, as
//! JSON documents in the state store ([`paas_kv`]).
//!
//! Written once against the etcd-shaped [`Kv`] interface, so it runs the same on the
//! embedded SQLite backend of a single host and on a real etcd. The layout (every key
//! under `/paas/`, see `keys`):
//!
//! - `apps/NAME`: one document per app holding everything about it that changes
//!   together: settings, the release it runs (a copy: releases never change), whether
//!   it is stopped, its environment and its slot of host user ids. Changes are
//!   read-modify-write with a compare-and-swap on the key's modification revision.
//! - `releases/GUID/VERSION` and `events/GUID/SLOT`: keyed by the app's GUID, not its
//!   name, so a new app of a deleted app's name never sees the old one's history, and
//!   what a delete leaves behind (it removes these after the app) is unreachable.
//!   An app keeps its newest [`KEPT_RELEASES`] releases and the one it runs; the
//!   platform deletes older ones once their droplets are collected.
//!   Events are a ring of `EVENTS_KEPT` slots, numbered by `event-seq/GUID`.
//! - `routes/HOSTPATH`, `domains/NAME`, `buildpacks` (the ordered list, whole),
//!   `id-slots/next` (the next slot of host user ids: slots are never handed out twice).
//!
//! A database from before the state store is imported once at open (`legacy.rs`).

use std::collections::BTreeMap;
use std::path::Path;

use paas_api::{AppEvent, AppName, AppSettings};
use paas_kv::{Backend, Compare, KeyValue, Kv, KvError, Op, Txn};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

mod audit;
mod auth;
mod cells;
mod inflight;
pub use cells::Held;
pub use inflight::RollingOut;
pub use paused::PausedAt;
mod legacy;
mod paused;
mod routes;
mod services;
mod tasks;
pub use auth::{SpaceDoc, TokenDoc, TokenKind, UserDoc};
pub use routes::{MapError, RouteSettings, StoredDomain, StoredRoute};
pub use services::ServiceDoc;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Kv(#[from] KvError),
    #[error("the state store holds invalid data at {key}: {detail}")]
    Corrupt { key: String, detail: String },
    #[error("making the database file private: {0}")]
    Permissions(#[source] std::io::Error),
    #[error("{0} was changed by others {CAS_TRIES} times while this change was made; try again")]
    Contended(String),
    #[error("app {0} does not exist")]
    NoApp(AppName),
}

/// A stored app.
#[derive(Debug, Clone)]
pub struct AppRecord {
    pub name: AppName,
    pub guid: String,
    pub settings: AppSettings,
    /// The release it runs (none before its first roll-out).
    pub release: Option<Release>,
    pub stopped: bool,
    /// Its own environment variables.
    pub env: BTreeMap<String, String>,
    /// The services bound to it, in the order they were bound.
    pub services: Vec<String>,
    /// The space it belongs to.
    pub space: String,
    /// The packages last uploaded to it (what a deployment may name besides its
    /// releases' packages).
    pub packages: Vec<String>,
    /// When its release was last set (a deploy, a rollback), in seconds since the epoch.
    pub deployed_at: Option<i64>,
}

/// What runs: a droplet with its start command, and the app's own configuration it
/// runs with. Never changed once written: a change of droplet, env or start command
/// makes a new one (a revision).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    pub version: i64,
    pub droplet: String,
    pub package: String,
    pub buildpack: String,
    /// The command web instances start with.
    pub start_command: String,
    /// The droplet's process types (Procfile, buildpack defaults): command by type.
    #[serde(default)]
    pub process_types: BTreeMap<String, String>,
    /// The app's env and start command it was made with; `None` in releases made
    /// before they were recorded.
    #[serde(default)]
    pub config: Option<ReleaseConfig>,
    /// The stack its droplet was built on, which its instances run on; `None` in
    /// releases made before stacks were recorded (the host's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack: Option<String>,
}

/// What one process type of a release runs: its command, and the settings its
/// instances run with ([`AppSettings::for_process`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessPlan {
    pub process: String,
    pub command: String,
    pub settings: AppSettings,
}

/// The process type the release phase runs as a task, never as instances.
pub const RELEASE_PHASE: &str = "release";

/// The part of a release that comes from the app rather than from its droplet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseConfig {
    pub env: BTreeMap<String, String>,
    /// The start command the app asked for (`-c`); `None` takes the droplet's.
    pub command: Option<String>,
}

impl Release {
    /// The stack it was built on.
    pub fn stack(&self) -> &str {
        self.stack.as_deref().unwrap_or(paas_runtime::stack::HOST)
    }

    /// The environment its instances get: the one it was made with, or `app_env` for a
    /// release that did not record it.
    pub fn env<'a>(
        &'a self,
        app_env: &'a BTreeMap<String, String>,
    ) -> &'a BTreeMap<String, String> {
        self.config.as_ref().map_or(app_env, |c| &c.env)
    }

    /// The process types this release runs with `settings`: `web` with the release's
    /// start command, then, in name order, every other type the droplet declares (but
    /// [`RELEASE_PHASE`]) and every type the settings give a command of their own.
    pub fn processes(&self, settings: &AppSettings) -> Vec<ProcessPlan> {
        // Its droplet runs on the stack it was built on, whatever the app asks now.
        let settings = &AppSettings {
            stack: Some(self.stack().to_string()),
            ..settings.clone()
        };
        let mut plans = vec![ProcessPlan {
            process: paas_api::WEB.to_string(),
            command: self.start_command.clone(),
            settings: settings.clone(),
        }];
        let mut kinds: std::collections::BTreeSet<&str> =
            self.process_types.keys().map(String::as_str).collect();
        kinds.extend(
            settings
                .processes
                .iter()
                .filter(|(_, p)| p.command.is_some())
                .map(|(k, _)| k.as_str()),
        );
        for kind in kinds {
            if kind == paas_api::WEB || kind == RELEASE_PHASE || !paas_api::is_process_type(kind) {
                continue;
            }
            let own = settings.for_process(kind);
            let Some(command) = own
                .command
                .clone()
                .or_else(|| self.process_types.get(kind).cloned())
            else {
                continue;
            };
            plans.push(ProcessPlan {
                process: kind.to_string(),
                command,
                settings: own,
            });
        }
        plans
    }

    /// What this release changed since the one before it, `older`: the next in a list
    /// of the app's releases, newest first. Versions follow one another, so a gap is
    /// releases deleted as too old, and what changed is not known.
    pub fn changes_in_history(&self, older: Option<&Release>) -> String {
        match older.filter(|b| b.version == self.version - 1) {
            None if self.version > 1 => {
                format!("not known: revision {} is no longer kept", self.version - 1)
            }
            before => self.changes_since(before),
        }
    }

    /// What this release changed from `before` (the one made before it): droplet, env
    /// variables (names only: values may be secrets) and start command.
    pub fn changes_since(&self, before: Option<&Release>) -> String {
        let Some(before) = before else {
            return "first release".into();
        };
        let mut changes = Vec::new();
        if self.droplet != before.droplet {
            changes.push(format!("new droplet ({})", self.buildpack));
        }
        if let (Some(now), Some(then)) = (&self.config, &before.config) {
            let mut env = Vec::new();
            for (k, v) in &now.env {
                match then.env.get(k) {
                    None => env.push(format!("+{k}")),
                    Some(old) if old != v => env.push(format!("~{k}")),
                    Some(_) => {}
                }
            }
            env.extend(
                then.env
                    .keys()
                    .filter(|k| !now.env.contains_key(*k))
                    .map(|k| format!("-{k}")),
            );
            if !env.is_empty() {
                changes.push(format!("env {}", env.join(" ")));
            }
        }
        if self.start_command != before.start_command {
            changes.push("start command".into());
        }
        if changes.is_empty() {
            return "nothing new".into();
        }
        changes.join(", ")
    }

    /// This release with `config` in place of its own, for a new revision; `None` when
    /// it already has that configuration.
    pub fn with_config(&self, config: ReleaseConfig) -> Option<Release> {
        if self.config.as_ref() == Some(&config) {
            return None;
        }
        let start_command = config
            .command
            .clone()
            .or_else(|| self.process_types.get("web").cloned())
            .unwrap_or_else(|| self.start_command.clone());
        Some(Release {
            start_command,
            config: Some(config),
            ..self.clone()
        })
    }
}

/// A buildpack as stored; its position is its place in the list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildpackRow {
    pub name: paas_api::BuildpackName,
    pub enabled: bool,
    pub shipped: bool,
    pub sha256: String,
}

/// Events kept per app; older ones are overwritten as new ones arrive.
const EVENTS_KEPT: u64 = 500;

/// How often a compare-and-swap is tried again when another writer got in between.
const CAS_TRIES: usize = 20;

/// Releases kept per app, as Cloud Foundry keeps revisions (its
/// `max_retained_revisions_per_app`): the platform deletes older ones after a roll-out,
/// so an app's history, and what reading it costs every deploy, stays bounded.
pub const KEPT_RELEASES: usize = 100;

/// The keys of the layout in the module docs.
pub(crate) mod keys {
    pub const APPS: &str = "/paas/apps/";
    pub use paas_api::state::{DOMAINS, ROUTES};
    pub const BUILDPACKS: &str = "/paas/buildpacks";
    pub const NEXT_ID_SLOT: &str = "/paas/id-slots/next";
    pub const SERVICES: &str = "/paas/services/";
    pub const USERS: &str = "/paas/users/";
    pub const TOKENS: &str = "/paas/tokens/";
    pub const SPACES: &str = "/paas/spaces/";
    /// Present once a database from before the state store has been imported.
    pub const SCHEMA: &str = "/paas/schema";

    pub fn app(name: &str) -> String {
        format!("{APPS}{name}")
    }
    pub fn releases(guid: &str) -> String {
        format!("/paas/releases/{guid}/")
    }
    /// Zero-padded, so that key order is version order.
    pub fn release(guid: &str, version: i64) -> String {
        format!("/paas/releases/{guid}/{version:012}")
    }
    pub fn events(guid: &str) -> String {
        format!("/paas/events/{guid}/")
    }
    pub fn event(guid: &str, seq: u64) -> String {
        format!("/paas/events/{guid}/{:04}", seq % super::EVENTS_KEPT)
    }
    pub fn event_seq(guid: &str) -> String {
        format!("/paas/event-seq/{guid}")
    }
    pub fn user(name: &str) -> String {
        format!("{USERS}{name}")
    }
    pub fn token(hash: &str) -> String {
        format!("{TOKENS}{hash}")
    }
    pub fn space(name: &str) -> String {
        format!("{SPACES}{name}")
    }
    pub fn service(name: &str) -> String {
        format!("{SERVICES}{name}")
    }
    pub fn tasks(guid: &str) -> String {
        format!("/paas/tasks/{guid}/")
    }
    /// Zero-padded, so that key order is sequence order.
    pub fn task(guid: &str, sequence: u64) -> String {
        format!("/paas/tasks/{guid}/{sequence:012}")
    }
    pub fn task_seq(guid: &str) -> String {
        format!("/paas/task-seq/{guid}")
    }
}

/// The document at `apps/NAME`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct AppDoc {
    guid: String,
    settings: AppSettings,
    #[serde(default)]
    release: Option<Release>,
    #[serde(default)]
    stopped: bool,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    id_slot: Option<u32>,
    /// The services bound to it, by name, in the order they were bound.
    #[serde(default)]
    services: Vec<String>,
    /// Apps from before spaces are in the default space.
    #[serde(default = "default_space")]
    space: String,
    #[serde(default)]
    packages: Vec<String>,
    /// When `release` was last set; absent in apps stored before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    deployed_at: Option<i64>,
    created_at: i64,
    updated_at: i64,
}

pub(crate) fn default_space() -> String {
    paas_api::auth::DEFAULT_SPACE.to_string()
}

/// The document at `events/GUID/SLOT`: the event and its place in the sequence.
#[derive(Debug, Serialize, Deserialize)]
struct EventDoc {
    seq: u64,
    #[serde(flatten)]
    event: AppEvent,
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Serialising these plain structs to JSON cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

fn decode<T: DeserializeOwned>(kv: &KeyValue) -> Result<T, StoreError> {
    serde_json::from_slice(&kv.value).map_err(|e| StoreError::Corrupt {
        key: kv.key.clone(),
        detail: e.to_string(),
    })
}

fn put(key: String, value: Vec<u8>) -> Op {
    Op::Put {
        key,
        value,
        lease: None,
    }
}

/// A transaction that writes `ops` only if `key` is still at `revision` (0: absent).
fn guarded(key: &str, revision: i64, ops: Vec<Op>) -> Txn {
    Txn {
        when: vec![Compare::ModRevision(key.to_string(), revision)],
        then: ops,
        otherwise: Vec::new(),
    }
}

/// An app's releases past the newest [`KEPT_RELEASES`] ([`Store::releases_past_kept`]).
pub struct PastReleases {
    guid: String,
    /// Oldest first; never the one the app runs.
    pub releases: Vec<Release>,
    /// The droplets of the releases kept, and of the one the app runs.
    pub kept_droplets: std::collections::HashSet<String>,
}

/// Cheap to clone: clones share the backend's connection.
#[derive(Clone)]
pub struct Store {
    kv: Backend,
}

impl Store {
    /// The store of a single host: the state store in the SQLite database at `path`
    /// (made private to root first: every app's environment is in it), with what an
    /// older paasd kept in its own tables of that file imported at the first open.
    /// `domain` names the routes apps from before stored routes answered at.
    pub async fn open_sqlite(path: &Path, domain: &str) -> Result<Self, StoreError> {
        {
            use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(path)
                .map_err(StoreError::Permissions)?;
            f.set_permissions(std::fs::Permissions::from_mode(0o600))
                .map_err(StoreError::Permissions)?;
        }
        let kv = Backend::Sqlite(paas_kv::sqlite::SqliteKv::open(path)?);
        let store = Store { kv };
        legacy::import(&store.kv, path, domain).await?;
        Ok(store)
    }

    /// The store over any backend, for example a real etcd.
    pub fn new(kv: Backend) -> Self {
        Store { kv }
    }

    async fn app_doc(&self, name: &AppName) -> Result<Option<(AppDoc, i64)>, StoreError> {
        match self.kv.get(&keys::app(name.as_str())).await? {
            Some(kv) => Ok(Some((decode(&kv)?, kv.mod_revision))),
            None => Ok(None),
        }
    }

    /// Changes the app's document with `change` and writes it back, trying again from
    /// a fresh read when another writer got in between. `Ok(None)` when there is no app.
    async fn update_app<T>(
        &self,
        name: &AppName,
        mut change: impl FnMut(&mut AppDoc) -> T,
    ) -> Result<Option<T>, StoreError> {
        let key = keys::app(name.as_str());
        for _ in 0..CAS_TRIES {
            let Some((mut doc, revision)) = self.app_doc(name).await? else {
                return Ok(None);
            };
            let out = change(&mut doc);
            doc.updated_at = now();
            let txn = guarded(&key, revision, vec![put(key.clone(), encode(&doc))]);
            if self.kv.txn(txn).await?.succeeded {
                return Ok(Some(out));
            }
        }
        Err(StoreError::Contended(format!("app {name}")))
    }

    /// Creates the app in `space`, or changes its settings (it stays in its space).
    /// Returns the stored record.
    pub async fn put_app(
        &self,
        name: &AppName,
        settings: &AppSettings,
        space: &str,
    ) -> Result<AppRecord, StoreError> {
        let key = keys::app(name.as_str());
        for _ in 0..CAS_TRIES {
            let (doc, revision) = match self.app_doc(name).await? {
                Some((mut doc, revision)) => {
                    doc.settings = settings.clone();
                    doc.updated_at = now();
                    (doc, revision)
                }
                None => {
                    let doc = AppDoc {
                        guid: new_guid(),
                        settings: settings.clone(),
                        release: None,
                        stopped: false,
                        env: BTreeMap::new(),
                        id_slot: None,
                        services: Vec::new(),
                        space: space.to_string(),
                        packages: Vec::new(),
                        deployed_at: None,
                        created_at: now(),
                        updated_at: now(),
                    };
                    (doc, 0)
                }
            };
            let txn = guarded(&key, revision, vec![put(key.clone(), encode(&doc))]);
            if self.kv.txn(txn).await?.succeeded {
                return Ok(record(name.clone(), doc));
            }
        }
        Err(StoreError::Contended(format!("app {name}")))
    }

    pub async fn app(&self, name: &AppName) -> Result<Option<AppRecord>, StoreError> {
        Ok(self
            .app_doc(name)
            .await?
            .map(|(doc, _)| record(name.clone(), doc)))
    }

    /// Every app, by name.
    pub async fn apps(&self) -> Result<Vec<AppRecord>, StoreError> {
        let (kvs, _) = self.kv.range(keys::APPS).await?;
        kvs.iter()
            .map(|kv| {
                let name = AppName::parse(&kv.key[keys::APPS.len()..]).map_err(|e| {
                    StoreError::Corrupt {
                        key: kv.key.clone(),
                        detail: e.to_string(),
                    }
                })?;
                Ok(record(name, decode(kv)?))
            })
            .collect()
    }

    /// Records `release` as a new release of `app`, numbered one past its newest;
    /// [`Store::set_release`] makes it the current one once its instances are healthy.
    pub async fn add_release(
        &self,
        app: &AppName,
        mut release: Release,
    ) -> Result<Release, StoreError> {
        let (doc, _) = self
            .app_doc(app)
            .await?
            .ok_or_else(|| StoreError::NoApp(app.clone()))?;
        for _ in 0..CAS_TRIES {
            let (kvs, _) = self.kv.range(&keys::releases(&doc.guid)).await?;
            let newest: Option<Release> = kvs.last().map(decode).transpose()?;
            release.version = newest.map_or(1, |r| r.version + 1);
            let key = keys::release(&doc.guid, release.version);
            let txn = guarded(&key, 0, vec![put(key.clone(), encode(&release))]);
            if self.kv.txn(txn).await?.succeeded {
                return Ok(release);
            }
        }
        Err(StoreError::Contended(format!("the releases of app {app}")))
    }

    /// The releases of `app` past its newest [`KEPT_RELEASES`], other than the one it
    /// runs, oldest first; `None` if there is no such app.
    pub async fn releases_past_kept(
        &self,
        app: &AppName,
    ) -> Result<Option<PastReleases>, StoreError> {
        let Some((doc, _)) = self.app_doc(app).await? else {
            return Ok(None);
        };
        let mut all = self.releases_of(&doc.guid).await?;
        let past_count = all.len().saturating_sub(KEPT_RELEASES);
        let kept = all.split_off(past_count);
        let running = doc.release.as_ref().map(|r| r.version);
        all.retain(|r| Some(r.version) != running);
        let kept_droplets = kept
            .into_iter()
            .map(|r| r.droplet)
            .chain(doc.release.map(|r| r.droplet))
            .collect();
        Ok(Some(PastReleases {
            guid: doc.guid,
            releases: all,
            kept_droplets,
        }))
    }

    /// Deletes `versions` of the releases `past` was read from (of that app, not of a
    /// new app of its name); a store from before the cap may hold thousands.
    pub async fn delete_releases(
        &self,
        past: &PastReleases,
        versions: &[i64],
    ) -> Result<(), StoreError> {
        let keys: Vec<String> = versions
            .iter()
            .map(|v| keys::release(&past.guid, *v))
            .collect();
        self.delete_keys(&keys).await
    }

    /// Notes that package `sha` was uploaded to `app`, so a deployment of the app may
    /// name it (and no other app's, which might be a blob of another space).
    pub async fn note_package(&self, app: &AppName, sha: &str) -> Result<(), StoreError> {
        const KEPT: usize = 10;
        self.update_app(app, |doc| {
            doc.packages.retain(|p| p != sha);
            doc.packages.push(sha.to_string());
            let extra = doc.packages.len().saturating_sub(KEPT);
            doc.packages.drain(..extra);
        })
        .await?
        .ok_or_else(|| StoreError::NoApp(app.clone()))
    }

    /// Makes `release` the one `app` runs.
    pub async fn set_release(&self, app: &AppName, release: &Release) -> Result<(), StoreError> {
        self.update_app(app, |doc| {
            doc.release = Some(release.clone());
            doc.deployed_at = Some(now());
        })
        .await?
        .ok_or_else(|| StoreError::NoApp(app.clone()))
    }

    /// Marks the app stopped (it is not started after a restart of paasd) or not.
    pub async fn set_stopped(&self, app: &AppName, stopped: bool) -> Result<(), StoreError> {
        self.update_app(app, |doc| doc.stopped = stopped)
            .await?
            .ok_or_else(|| StoreError::NoApp(app.clone()))
    }

    pub async fn is_stopped(&self, app: &AppName) -> Result<bool, StoreError> {
        Ok(self.app_doc(app).await?.is_some_and(|(doc, _)| doc.stopped))
    }

    /// The app's slot of host user ids, taken from `id-slots/next` at its first use.
    pub async fn id_slot(&self, app: &AppName) -> Result<u32, StoreError> {
        let key = keys::app(app.as_str());
        for _ in 0..CAS_TRIES {
            let (mut doc, revision) = self
                .app_doc(app)
                .await?
                .ok_or_else(|| StoreError::NoApp(app.clone()))?;
            if let Some(slot) = doc.id_slot {
                return Ok(slot);
            }
            let (next, next_revision) = match self.kv.get(keys::NEXT_ID_SLOT).await? {
                Some(kv) => (decode::<u32>(&kv)?, kv.mod_revision),
                None => (1, 0),
            };
            doc.id_slot = Some(next);
            let txn = Txn {
                when: vec![
                    Compare::ModRevision(key.clone(), revision),
                    Compare::ModRevision(keys::NEXT_ID_SLOT.into(), next_revision),
                ],
                then: vec![
                    put(key.clone(), encode(&doc)),
                    put(keys::NEXT_ID_SLOT.into(), encode(&(next + 1))),
                ],
                otherwise: Vec::new(),
            };
            if self.kv.txn(txn).await?.succeeded {
                return Ok(next);
            }
        }
        Err(StoreError::Contended(format!("app {app}")))
    }

    async fn releases_of(&self, guid: &str) -> Result<Vec<Release>, StoreError> {
        let (kvs, _) = self.kv.range(&keys::releases(guid)).await?;
        kvs.iter().map(decode).collect()
    }

    /// Every release of the app, newest first.
    pub async fn releases(&self, app: &AppName) -> Result<Vec<Release>, StoreError> {
        let Some((doc, _)) = self.app_doc(app).await? else {
            return Ok(Vec::new());
        };
        let mut all = self.releases_of(&doc.guid).await?;
        all.reverse();
        Ok(all)
    }

    /// Release `version` of the app.
    pub async fn release(
        &self,
        app: &AppName,
        version: i64,
    ) -> Result<Option<Release>, StoreError> {
        let Some((doc, _)) = self.app_doc(app).await? else {
            return Ok(None);
        };
        match self.kv.get(&keys::release(&doc.guid, version)).await? {
            Some(kv) => Ok(Some(decode(&kv)?)),
            None => Ok(None),
        }
    }

    /// Droplets that no app needs any more: referenced only by releases older than each
    /// app's newest `keep`, and by no app's current release.
    pub async fn unneeded_droplets(&self, keep: usize) -> Result<Vec<String>, StoreError> {
        let mut needed = std::collections::HashSet::new();
        let mut old = std::collections::BTreeSet::new();
        for app in self.apps().await? {
            if let Some(r) = &app.release {
                needed.insert(r.droplet.clone());
            }
            // Newest first; the app's document was read just now, with its GUID.
            let mut releases = self.releases_of(&app.guid).await?;
            releases.reverse();
            let older = releases.split_off(keep.min(releases.len()));
            needed.extend(releases.into_iter().map(|r| r.droplet));
            old.extend(older.into_iter().map(|r| r.droplet));
        }
        Ok(old.into_iter().filter(|d| !needed.contains(d)).collect())
    }

    /// The app's own environment variables.
    pub async fn env(&self, app: &AppName) -> Result<BTreeMap<String, String>, StoreError> {
        Ok(self
            .app_doc(app)
            .await?
            .map(|(doc, _)| doc.env)
            .unwrap_or_default())
    }

    /// Sets (`Some`) or removes (`None`) variables, all in one write. Returns the
    /// variables after.
    pub async fn update_env(
        &self,
        app: &AppName,
        changes: &BTreeMap<String, Option<String>>,
    ) -> Result<BTreeMap<String, String>, StoreError> {
        self.update_app(app, |doc| {
            for (k, v) in changes {
                match v {
                    Some(v) => doc.env.insert(k.clone(), v.clone()),
                    None => doc.env.remove(k),
                };
            }
            doc.env.clone()
        })
        .await?
        .ok_or_else(|| StoreError::NoApp(app.clone()))
    }

    /// Makes `config` (a revision's) the app's own env and start command again.
    pub async fn restore_config(
        &self,
        app: &AppName,
        config: &ReleaseConfig,
    ) -> Result<(), StoreError> {
        self.update_app(app, |doc| {
            doc.env = config.env.clone();
            doc.settings.command = config.command.clone();
        })
        .await?
        .ok_or_else(|| StoreError::NoApp(app.clone()))
    }

    /// Every buildpack, in position order.
    pub async fn buildpacks(&self) -> Result<Vec<BuildpackRow>, StoreError> {
        match self.kv.get(keys::BUILDPACKS).await? {
            Some(kv) => decode(&kv),
            None => Ok(Vec::new()),
        }
    }

    /// Replaces the buildpack list with `rows`, in order.
    pub async fn save_buildpacks(&self, rows: &[BuildpackRow]) -> Result<(), StoreError> {
        self.kv.put(keys::BUILDPACKS, encode(&rows)).await?;
        Ok(())
    }

    /// Records an event of `app`, keeping the newest `EVENTS_KEPT`. An event of an app
    /// that no longer exists is dropped.
    pub async fn add_event(&self, app: &AppName, event: &AppEvent) -> Result<(), StoreError> {
        let Some((app_doc, _)) = self.app_doc(app).await? else {
            return Ok(());
        };
        let guid = app_doc.guid;
        let seq_key = keys::event_seq(&guid);
        for _ in 0..CAS_TRIES {
            let (seq, revision) = match self.kv.get(&seq_key).await? {
                Some(kv) => (decode::<u64>(&kv)?, kv.mod_revision),
                None => (0, 0),
            };
            let doc = EventDoc {
                seq,
                event: event.clone(),
            };
            let ops = vec![
                put(seq_key.clone(), encode(&(seq + 1))),
                put(keys::event(&guid, seq), encode(&doc)),
            ];
            if self
                .kv
                .txn(guarded(&seq_key, revision, ops))
                .await?
                .succeeded
            {
                return Ok(());
            }
        }
        Err(StoreError::Contended(format!("the events of app {app}")))
    }

    /// The app's events, oldest first.
    /// Sends every event recorded from now on, by any host, with its app's GUID, until
    /// `to` is closed; after the store was away it goes on from then (what was recorded
    /// meanwhile is not sent).
    pub async fn follow_new_events(
        &self,
        to: tokio::sync::mpsc::UnboundedSender<(String, AppEvent)>,
    ) {
        const PREFIX: &str = "/paas/events/";
        while !to.is_closed() {
            match self.kv.watch(PREFIX, 0).await {
                Ok(mut watch) => {
                    while let Some(Ok(event)) = watch.next().await {
                        let paas_kv::Event::Put(kv) = event else {
                            continue;
                        };
                        let Some((guid, _)) = kv
                            .key
                            .strip_prefix(PREFIX)
                            .and_then(|rest| rest.split_once('/'))
                        else {
                            continue;
                        };
                        if let Ok(doc) = decode::<EventDoc>(&kv) {
                            if to.send((guid.to_string(), doc.event)).is_err() {
                                return;
                            }
                        }
                    }
                }
                Err(e) => tracing::warn!("following events: {e}"),
            }
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
    }

    pub async fn events(&self, app: &AppName) -> Result<Vec<AppEvent>, StoreError> {
        let Some((doc, _)) = self.app_doc(app).await? else {
            return Ok(Vec::new());
        };
        let (kvs, _) = self.kv.range(&keys::events(&doc.guid)).await?;
        let mut docs = kvs
            .iter()
            .map(decode::<EventDoc>)
            .collect::<Result<Vec<_>, _>>()?;
        docs.sort_by_key(|d| d.seq);
        Ok(docs.into_iter().map(|d| d.event).collect())
    }

    /// Deletes the app, then its releases and events. Its routes are deleted with it
    /// when `delete_routes`, else left unmapped (as `cf delete` without `-r` does).
    /// Returns false if there was no such app.
    pub async fn delete_app(&self, app: &AppName, delete_routes: bool) -> Result<bool, StoreError> {
        let key = keys::app(app.as_str());
        for _ in 0..CAS_TRIES {
            let Some((doc, revision)) = self.app_doc(app).await? else {
                return Ok(false);
            };
            // Routes first: once the app is gone, nothing may still send traffic to a
            // new app of the same name.
            self.release_routes(app, delete_routes).await?;
            let ops = vec![Op::Delete { key: key.clone() }];
            if !self.kv.txn(guarded(&key, revision, ops)).await?.succeeded {
                continue;
            }
            // A route mapped to it while the routes above were released must not pass
            // to a new app of the same name.
            self.release_routes(app, delete_routes).await?;
            // Unreachable now (keyed by the GUID): removed in batches, as one etcd
            // transaction holds at most 128 writes.
            for prefix in [
                keys::releases(&doc.guid),
                keys::events(&doc.guid),
                keys::tasks(&doc.guid),
            ] {
                self.delete_prefix(&prefix).await?;
            }
            self.kv.delete(&keys::event_seq(&doc.guid)).await?;
            self.kv.delete(&keys::task_seq(&doc.guid)).await?;
            return Ok(true);
        }
        Err(StoreError::Contended(format!("app {app}")))
    }

    async fn delete_prefix(&self, prefix: &str) -> Result<(), StoreError> {
        let (kvs, _) = self.kv.range(prefix).await?;
        let keys: Vec<String> = kvs.into_iter().map(|kv| kv.key).collect();
        self.delete_keys(&keys).await
    }

    /// Deletes `keys`, in batches: one etcd transaction holds at most 128 writes.
    async fn delete_keys(&self, keys: &[String]) -> Result<(), StoreError> {
        for batch in keys.chunks(paas_kv::MAX_TXN_OPS) {
            let then = batch
                .iter()
                .map(|key| Op::Delete { key: key.clone() })
                .collect();
            self.kv
                .txn(Txn {
                    then,
                    ..Txn::default()
                })
                .await?;
        }
        Ok(())
    }
}

fn record(name: AppName, doc: AppDoc) -> AppRecord {
    AppRecord {
        name,
        guid: doc.guid,
        settings: doc.settings,
        release: doc.release,
        stopped: doc.stopped,
        env: doc.env,
        services: doc.services,
        space: doc.space,
        packages: doc.packages,
        deployed_at: doc.deployed_at,
    }
}

/// A random version-4 UUID, as Cloud Foundry's GUIDs are.
pub fn new_guid() -> String {
    let mut b = [0u8; 16];
    let _ = getrandom::fill(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use paas_api::MemorySize;

    pub(crate) fn settings(instances: u32) -> AppSettings {
        AppSettings {
            instances,
            memory: MemorySize::parse("256M").unwrap(),
            buildpacks: vec![],
            command: None,
            health_check: Default::default(),
            start_timeout_secs: None,
            health_check_interval_secs: None,
            health_check_timeout_secs: None,
            readiness_check: None,
            readiness_check_interval_secs: None,
            readiness_check_timeout_secs: None,
            disk: None,
            outbound: None,
            stack: None,
            processes: Default::default(),
        }
    }

    pub(crate) async fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open_sqlite(&dir.path().join("paas.db"), "localhost")
            .await
            .unwrap();
        (dir, s)
    }

    /// The versions of the app's releases, newest first.
    async fn release_versions(s: &Store, name: &AppName) -> Vec<i64> {
        let releases = s.releases(name).await.unwrap();
        releases.iter().map(|r| r.version).collect()
    }

    fn release(droplet: &str) -> Release {
        Release {
            version: 0,
            droplet: droplet.into(),
            package: "p1".into(),
            buildpack: "python".into(),
            start_command: "python3 app.py".into(),
            process_types: [("web".to_string(), "python3 app.py".to_string())].into(),
            config: None,
            stack: None,
        }
    }

    #[test]
    fn a_release_runs_web_and_every_other_type_but_the_release_phase() {
        let mut r = release("d1");
        r.process_types = [
            ("web", "python3 app.py"),
            ("worker", "python3 work.py"),
            ("release", "python3 migrate.py"),
            ("bad type!", "true"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let mut s = settings(2);
        s.command = Some("gunicorn app".into());
        s.processes.insert(
            "worker".into(),
            paas_api::ProcessSettings {
                instances: 3,
                memory: Some(MemorySize::parse("64M").unwrap()),
                ..Default::default()
            },
        );
        s.processes.insert(
            "clock".into(),
            paas_api::ProcessSettings {
                command: Some("python3 clock.py".into()),
                ..Default::default()
            },
        );
        let r = r.with_config(ReleaseConfig {
            env: Default::default(),
            command: s.command.clone(),
        });
        let plans = r.unwrap().processes(&s);
        let got: Vec<(&str, &str, u32, String)> = plans
            .iter()
            .map(|p| {
                (
                    p.process.as_str(),
                    p.command.as_str(),
                    p.settings.instances,
                    p.settings.health_check.to_string(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("web", "gunicorn app", 2, "port".to_string()),
                ("clock", "python3 clock.py", 1, "process".to_string()),
                ("worker", "python3 work.py", 3, "process".to_string()),
            ]
        );
        assert_eq!(plans[2].settings.memory.mb(), 64);
        assert_eq!(plans[1].settings.memory.mb(), 256, "the app's memory");
        assert!(plans[2].settings.processes.is_empty());
    }

    #[test]
    fn a_new_config_makes_a_revision_that_says_what_changed() {
        let config = |env: &[(&str, &str)], command: Option<&str>| ReleaseConfig {
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            command: command.map(Into::into),
        };
        let first = Release {
            config: Some(config(&[("A", "1"), ("B", "2")], None)),
            ..release("d1")
        };
        assert_eq!(first.changes_since(None), "first release");
        assert!(first
            .with_config(config(&[("A", "1"), ("B", "2")], None))
            .is_none());
        let second = first
            .with_config(config(&[("A", "9"), ("C", "3")], Some("./run")))
            .unwrap();
        assert_eq!(second.start_command, "./run");
        assert_eq!(second.droplet, "d1");
        assert_eq!(
            second.changes_since(Some(&first)),
            "env ~A +C -B, start command"
        );
        // Dropping the command goes back to the droplet's web process.
        let third = second.with_config(config(&[], None)).unwrap();
        assert_eq!(third.start_command, "python3 app.py");
        let restaged = Release {
            config: third.config.clone(),
            ..release("d2")
        };
        assert_eq!(restaged.changes_since(Some(&third)), "new droplet (python)");
        assert_eq!(third.changes_since(Some(&third)), "nothing new");
        // In an app's history, a gap in the versions is releases deleted as too old.
        let numbered = |r: &Release, version| Release {
            version,
            ..r.clone()
        };
        let (v1, v2, v5) = (
            numbered(&first, 1),
            numbered(&second, 2),
            numbered(&second, 5),
        );
        assert_eq!(v1.changes_in_history(None), "first release");
        assert_eq!(
            v2.changes_in_history(Some(&v1)),
            "env ~A +C -B, start command"
        );
        let gone = "not known: revision 4 is no longer kept";
        assert_eq!(v5.changes_in_history(Some(&v1)), gone);
        assert_eq!(v5.changes_in_history(None), gone);
    }

    #[tokio::test]
    async fn apps_and_releases_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("paas.db");
        let name = AppName::parse("web").unwrap();
        {
            let s = Store::open_sqlite(&path, "localhost").await.unwrap();
            let created = s.put_app(&name, &settings(1), "default").await.unwrap();
            let updated = s.put_app(&name, &settings(3), "default").await.unwrap();
            assert_eq!(created.guid, updated.guid, "updating keeps the guid");
            let r1 = s.add_release(&name, release("d1")).await.unwrap();
            let r2 = s.add_release(&name, release("d2")).await.unwrap();
            assert_eq!((r1.version, r2.version), (1, 2));
            let before = s.app(&name).await.unwrap().unwrap();
            assert!(before.release.is_none(), "not current until set");
            assert_eq!(before.deployed_at, None);
            s.set_release(&name, &r2).await.unwrap();
        }
        let s = Store::open_sqlite(&path, "localhost").await.unwrap();
        let app = s.app(&name).await.unwrap().unwrap();
        assert!(
            app.deployed_at.is_some_and(|t| t > 0),
            "when it was deployed"
        );
        assert_eq!(app.settings.instances, 3);
        assert_eq!(app.release.unwrap().droplet, "d2");
        assert_eq!(s.apps().await.unwrap().len(), 1);
        let versions = release_versions(&s, &name).await;
        assert_eq!(versions, vec![2, 1], "newest first");
        assert!(s.delete_app(&name, true).await.unwrap());
        assert!(s.app(&name).await.unwrap().is_none());
        assert!(!s.delete_app(&name, true).await.unwrap());
        // A new app of the same name starts a history of its own.
        s.put_app(&name, &settings(1), "default").await.unwrap();
        assert!(s.releases(&name).await.unwrap().is_empty());
        let r = s.add_release(&name, release("d3")).await.unwrap();
        assert_eq!(r.version, 1);
    }

    #[tokio::test]
    async fn releases_past_the_kept_ones_are_offered_but_never_the_running_one() {
        let (_dir, s) = store().await;
        let name = AppName::parse("web").unwrap();
        s.put_app(&name, &settings(1), "default").await.unwrap();
        let first = s.add_release(&name, release("d1")).await.unwrap();
        s.set_release(&name, &first).await.unwrap();
        let newest = (KEPT_RELEASES + 4) as i64;
        for i in 2..=newest {
            s.add_release(&name, release(&format!("d{i}")))
                .await
                .unwrap();
        }
        let past = s.releases_past_kept(&name).await.unwrap().unwrap();
        let versions: Vec<i64> = past.releases.iter().map(|r| r.version).collect();
        assert_eq!(versions, [2, 3, 4], "oldest first, not the running v1");
        assert!(past.kept_droplets.contains("d1") && past.kept_droplets.contains("d5"));
        assert!(!past.kept_droplets.contains("d4"));
        s.delete_releases(&past, &[2, 4]).await.unwrap();
        let left = release_versions(&s, &name).await;
        let mut expected: Vec<i64> = (5..=newest).rev().collect();
        expected.extend([3, 1]);
        assert_eq!(left, expected);
        // Numbering goes on from the newest.
        let next = s.add_release(&name, release("dn")).await.unwrap();
        assert_eq!(next.version, newest + 1);
    }

    #[tokio::test]
    async fn events_are_kept_in_order_and_bounded() {
        let (_dir, s) = store().await;
        let name = AppName::parse("web").unwrap();
        s.put_app(&name, &settings(1), "default").await.unwrap();
        for i in 0..(EVENTS_KEPT + 3) {
            let e = AppEvent {
                timestamp_ms: i,
                kind: "crash".into(),
                instance: Some(0),
                exit_code: Some(i as i32),
                description: format!("crash {i}"),
            };
            s.add_event(&name, &e).await.unwrap();
        }
        let events = s.events(&name).await.unwrap();
        assert_eq!(events.len() as u64, EVENTS_KEPT);
        assert_eq!(
            events.last().unwrap().exit_code,
            Some((EVENTS_KEPT + 2) as i32)
        );
        assert_eq!(events[0].description, "crash 3");
        s.delete_app(&name, true).await.unwrap();
        assert!(s.events(&name).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn concurrent_writers_lose_no_change() {
        let (_dir, s) = store().await;
        let s = std::sync::Arc::new(s);
        let name = AppName::parse("web").unwrap();
        s.put_app(&name, &settings(1), "default").await.unwrap();
        let mut tasks = Vec::new();
        for i in 0..8 {
            let (s, name) = (std::sync::Arc::clone(&s), name.clone());
            tasks.push(tokio::spawn(async move {
                let change = BTreeMap::from([(format!("K{i}"), Some(i.to_string()))]);
                s.update_env(&name, &change).await.unwrap();
                let e = AppEvent {
                    timestamp_ms: i,
                    kind: "test".into(),
                    instance: None,
                    exit_code: None,
                    description: format!("event {i}"),
                };
                s.add_event(&name, &e).await.unwrap();
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(s.env(&name).await.unwrap().len(), 8);
        assert_eq!(s.events(&name).await.unwrap().len(), 8);
    }

    #[tokio::test]
    async fn id_slots_are_never_handed_out_twice() {
        let (_dir, s) = store().await;
        let a = AppName::parse("a").unwrap();
        let b = AppName::parse("b").unwrap();
        s.put_app(&a, &settings(1), "default").await.unwrap();
        s.put_app(&b, &settings(1), "default").await.unwrap();
        let slot_a = s.id_slot(&a).await.unwrap();
        assert_eq!(s.id_slot(&a).await.unwrap(), slot_a, "kept");
        let slot_b = s.id_slot(&b).await.unwrap();
        assert_ne!(slot_a, slot_b);
        s.delete_app(&a, true).await.unwrap();
        s.put_app(&a, &settings(1), "default").await.unwrap();
        let again = s.id_slot(&a).await.unwrap();
        assert!(
            again != slot_a && again != slot_b,
            "a deleted app's slot is not reused"
        );
    }

    #[test]
    fn guids_are_uuid_v4() {
        let g = new_guid();
        assert_eq!(g.len(), 36);
        assert_eq!(&g[14..15], "4");
    }
}
