//! The platform: desired state on one side, running instances and routes on the other.
//!
//! Every app has a list of live [`Instance`]s, run and supervised by a cell
//! ([`crate::cell`]), which reports back through [`Reporter`] (implemented at the end of
//! this file). Whenever an instance becomes healthy or stops being so, the route table
//! is rebuilt from these lists and published to the router as a new snapshot.
//!
//! Pushes and deletes of one app are serialised by a per-app lock; different apps deploy
//! in parallel.

pub mod access;
pub mod accounts;
mod background;
mod converge;
mod deploy;
mod domains;
mod error;
pub mod inflight;
pub mod placed;
pub mod quota;
pub use rollout::MAX_IN_FLIGHT;
mod rollout;
mod route_services;
mod routes;
mod scale;
mod services;
mod spaces;
mod staging;
mod tasks;
#[cfg(test)]
mod tests;
pub use tasks::Attached;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use paas_api::{AppEvent, AppName, AppSummary, LogLine, LogStream, Route};

use crate::api::LogLines;
use paas_runtime::IdMap;

use crate::buildpacks::Registry;
use crate::cell::{InstanceSpec, LocalCell, Reporter};

use crate::blobs::Blobs;
pub use crate::cell::{Instance, InstanceState};
use crate::logs::Logs;
use crate::store::{AppRecord, ProcessPlan, Release, Store};
use crate::Config;
pub use error::{is_disk_full, Error, ErrorKind};
use placed::{Assigned, ClusterView, Placed};
pub use staging::store_droplet;

/// What a controller of a cluster (`--etcd-endpoints`) has besides its own cell.
struct Cluster {
    /// What the cells report, as followed from the store.
    view: Arc<ClusterView>,
    /// The other hosts, for blobs.
    peers: Arc<crate::peer::Peers>,
    /// Whether this host's cell is a cell of the cluster (`--roles` with `cell`); else
    /// it only stages.
    runs_instances: bool,
}

/// Held while one app is changed; see [`Platform::lock_app`].
struct AppLock {
    _local: tokio::sync::OwnedMutexGuard<()>,
    _shared: Option<crate::store::Held>,
}

/// A command started in an instance.
pub enum Execution {
    /// On this host.
    Here(tokio::process::Child),
    /// On another host's cell: its output as that cell streams it.
    There(tokio::sync::mpsc::Receiver<paas_api::ExecEvent>),
}

/// Every recorded event, as it is recorded, with the app it is about.
pub type EventFeed = tokio::sync::broadcast::Receiver<(AppName, AppEvent)>;

pub struct Platform {
    pub domain: String,
    router_port: u16,
    pub store: Store,
    pub blobs: Blobs,
    /// File contents of uploaded packages, by SHA-256: what a push need not send again.
    pub resources: Blobs,
    pub logs: Arc<Logs>,
    /// Each app's requests, errors and response times, by minute, from the router.
    pub traffic: crate::traffic::Traffic,
    /// Each app's CPU and memory, by minute, as its instances were last read.
    pub usage_history: crate::usage_history::UsageHistory,
    /// Where stagings run, and on a single host every instance: this host.
    cell: Arc<LocalCell>,
    /// In a cluster, instances are placed on cells through the state store.
    cluster: Option<Cluster>,
    /// How long an instance may take to pass its first health check.
    start_timeout: Duration,
    /// This host's router (`edge.rs`): the route tables and certificates go there.
    edge: Arc<crate::edge::Edge>,
    /// The same certificate and key as PEM, for routers on other hosts.
    default_cert_pem: (String, String),
    pub buildpacks: Registry,
    caches_dir: PathBuf,
    staging_timeout: Duration,
    /// The stored routes as last read (see `routes.rs`).
    route_rows: Mutex<routes::RouteRows>,
    /// The live instances of each app, old and new during a deploy.
    instances: Mutex<HashMap<AppName, Vec<Placed>>>,
    /// Replaced instances that still drain before they stop; a shutdown stops them too.
    retiring: Mutex<Vec<Placed>>,
    /// Tasks under way on this host's cell, by task id.
    running_tasks: Mutex<HashMap<String, Arc<crate::cell::task::RunningTask>>>,
    /// Canary deployments waiting for `continue` or `cancel`, by app.
    paused: Mutex<HashMap<AppName, rollout::Paused>>,
    app_locks: Mutex<HashMap<AppName, Arc<tokio::sync::Mutex<()>>>>,
    /// paasd's admin token (the bootstrap admin), once it is known.
    pub admin_token: std::sync::OnceLock<String>,
    /// Recent failed logins.
    login_limits: accounts::LoginLimits,
    /// Callers and apps' spaces as recently read.
    access_cache: access::AccessCache,
    /// Roll-outs under way.
    in_flight: inflight::InFlight,
    /// What runs on after the call that started it, waited for at shutdown.
    background: background::Background,
    /// Every event as it is recorded, for `events --follow`.
    event_feed: tokio::sync::broadcast::Sender<(AppName, AppEvent)>,
}

impl Platform {
    /// Opens the data folder: database, blobs, logs, stack, buildpacks, runtime.
    pub async fn open(
        cfg: &Config,
        router_port: u16,
        edge: Arc<crate::edge::Edge>,
        peer_addr: Option<std::net::SocketAddr>,
    ) -> anyhow::Result<Arc<Self>> {
        let dir = &cfg.data_dir;
        let store = if cfg.etcd_endpoints.is_empty() {
            Store::open_sqlite(&dir.join("paas.db"), &cfg.domain)
                .await
                .context("opening the state store")?
        } else {
            let etcd = paas_kv::etcd::connect(&cfg.etcd_endpoints)
                .await
                .with_context(|| {
                    format!(
                        "connecting to etcd at {} (--etcd-endpoints)",
                        cfg.etcd_endpoints.join(",")
                    )
                })?;
            tracing::info!(endpoints = %cfg.etcd_endpoints.join(","), "the platform's records are kept in etcd");
            Store::new(paas_kv::Backend::Etcd(Box::new(etcd)))
        };
        let cell = LocalCell::open(cfg, dir, store.clone(), peer_addr).await?;
        Self::with_cell(cfg, store, cell, router_port, edge, peer_addr).await
    }

    /// Opens the rest of the data folder around `store` and `cell`: blobs, logs,
    /// certificates, buildpacks. Tests give it a cell whose engine only pretends.
    pub async fn with_cell(
        cfg: &Config,
        store: Store,
        cell: Arc<LocalCell>,
        router_port: u16,
        edge: Arc<crate::edge::Edge>,
        peer_addr: Option<std::net::SocketAddr>,
    ) -> anyhow::Result<Arc<Self>> {
        let dir = &cfg.data_dir;
        let blobs = Blobs::open(dir.join("blobs")).context("opening the blob store")?;
        let resources = Blobs::open(dir.join("resources")).context("opening the resource cache")?;
        let logs = Arc::new(
            Logs::open(dir.join("logs"), cfg.drain_allow.clone())
                .context("opening the log folder")?,
        );
        let shipped = crate::shipped::install(&dir.join("buildpacks/shipped"))?;
        let cluster = match peer_addr {
            Some(addr) if !cfg.etcd_endpoints.is_empty() => Some(Cluster {
                view: Arc::default(),
                peers: crate::peer::Peers::open(
                    store.clone(),
                    blobs.clone(),
                    Arc::clone(&cell),
                    Arc::clone(&logs),
                    crate::peer::StagingKit {
                        shipped: shipped.clone(),
                        custom_dir: dir.join("buildpacks/custom"),
                        caches_dir: dir.join("caches"),
                    },
                    addr,
                )
                .await?,
                runs_instances: cfg.roles.cell,
            }),
            _ => None,
        };
        let (cert, key) = crate::secrets::load_or_create_router_cert(dir, &cfg.domain)?;
        // For routers on other hosts, which follow the store.
        store
            .put_default_certificate(&paas_api::state::StoredDomain {
                name: cfg.domain.clone(),
                cert_pem: Some(cert.clone()),
                key_pem: Some(key.clone()),
                space: None,
            })
            .await
            .context("storing the router's certificate")?;
        paas_router::tls::certified_key(&cert, &key)
            .map_err(|e| anyhow::anyhow!("the router's certificate in {}: {e}", dir.display()))?;
        let buildpacks = Registry::open(&store, &blobs, &dir.join("buildpacks"), shipped).await?;
        // Made now, so that the data folder is closed over it at start.
        std::fs::create_dir_all(dir.join("caches"))
            .with_context(|| format!("creating {}", dir.join("caches").display()))?;
        let platform = Arc::new(Platform {
            domain: cfg.domain.clone(),
            router_port,
            store,
            blobs,
            resources,
            logs,
            traffic: Default::default(),
            usage_history: Default::default(),
            cell,
            cluster,
            start_timeout: cfg.start_timeout,
            edge,
            default_cert_pem: (cert, key),
            buildpacks,
            caches_dir: dir.join("caches"),
            staging_timeout: cfg.staging_timeout,
            route_rows: Mutex::new(None),
            instances: Mutex::new(HashMap::new()),
            retiring: Mutex::new(Vec::new()),
            running_tasks: Mutex::default(),
            admin_token: Default::default(),
            login_limits: Default::default(),
            access_cache: Default::default(),
            in_flight: Default::default(),
            background: Default::default(),
            paused: Mutex::default(),
            app_locks: Mutex::new(HashMap::new()),
            event_feed: tokio::sync::broadcast::channel(256).0,
        });
        if let Some(cluster) = &platform.cluster {
            // Its paused deployments are finished here for other controllers.
            cluster.peers.serve_platform(Arc::downgrade(&platform));
        }
        // The platform's upkeep, every 15 s: its apps' usage read for the console's
        // charts, and the allocator's free pages handed back to the system
        // (`paas_runtime::memory`).
        let weak = Arc::downgrade(&platform);
        platform.background.spawn_until_shutdown(async move {
            let mut every = tokio::time::interval(crate::usage_history::SAMPLE_EVERY);
            loop {
                every.tick().await;
                let Some(platform) = weak.upgrade() else {
                    return;
                };
                platform.sample_usage().await;
                paas_runtime::memory::release_free_memory_and_report();
            }
        });
        Ok(platform)
    }

    /// After a start: removes what an earlier run left behind, then starts every app's
    /// instances again from the desired state. In a cluster, instances placed on cells
    /// run on where they are; this host's cell runs its placements again, and apps with
    /// no instance placed anywhere are placed.
    pub async fn restore(self: &Arc<Self>) {
        if let Some(cluster) = &self.cluster {
            let n = self.cell.clean_up_leftovers().await;
            if n > 0 {
                tracing::info!("cleaned up {n} containers left by an earlier run");
            }
            self.follow_cluster(cluster);
        } else {
            // On one host, the instances paasd's last run left keep running: an
            // instance started below with the same spec takes its container over.
            let n = self.cell.recover_survivors().await;
            if n > 0 {
                tracing::info!("found {n} instances still running from paasd's last run");
            }
            self.report_cut_off_roll_outs().await;
        }
        let mut adopted = Vec::new();
        let apps = match self.store.apps().await {
            Ok(a) => a,
            Err(e) => {
                tracing::error!("reading apps to restore: {e}");
                return;
            }
        };
        for app in apps {
            self.fail_lost_tasks(&app.name).await;
            let Some(release) = app.release.clone() else {
                continue;
            };
            if app.stopped {
                // Routed with no instance: a stopped app answers 503, not 404.
                self.instances
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .entry(app.name.clone())
                    .or_default();
                continue;
            }
            if self.cluster.is_some() {
                // Placed already, or placed by the leader's convergence.
                continue;
            }
            match self.start_release(&app, &release).await {
                Ok(started) => {
                    adopted.extend(started.iter().filter_map(|p| match p {
                        Placed::Here(i) if i.adopted => Some(Arc::clone(i)),
                        _ => None,
                    }));
                    self.add_instances(&app.name, &started);
                    tracing::info!(app = %app.name, instances = app.settings.instances, "restarting app");
                }
                Err(e) => tracing::error!(app = %app.name, "cannot restore: {}", e.body.message),
            }
        }
        let n = self.cell.remove_unclaimed_survivors().await;
        if n > 0 {
            tracing::info!("removed {n} instances of paasd's last run that nothing runs now");
        }
        // Taken over instances pass a health check and are routed again before this
        // returns (bounded), so the first route table a router is given has them.
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            crate::join_all(
                adopted
                    .into_iter()
                    .map(|i| async move { i.started().await }),
            ),
        )
        .await;
        self.reload_routes().await;
    }

    /// In a cluster: follows what the cells report, and every instance placed (by this
    /// controller or another), and has this host's cell run what is placed on it.
    fn follow_cluster(self: &Arc<Self>, cluster: &Cluster) {
        let me = Arc::clone(self);
        cluster.view.follow(
            &self.store,
            &self.background,
            Arc::new(move || me.refresh_routes()),
        );
        let me = Arc::clone(self);
        let view = Arc::clone(&cluster.view);
        self.background.spawn_until_shutdown(async move {
            let store = me.store.clone();
            store
                .mirror(paas_api::state::ASSIGNED, |m| me.learn_placements(&view, m))
                .await
        });
        if cluster.runs_instances {
            self.cell.follow_assignments(
                self.store.clone(),
                Arc::clone(&cluster.peers),
                Arc::clone(self) as Arc<dyn Reporter>,
            );
        }
        let background = &self.background;
        background.spawn_until_shutdown(Arc::clone(self).lead(self.cell.id().to_string()));
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let store = self.store.clone();
        background.spawn_until_shutdown(async move { store.follow_new_events(tx).await });
        let me = Arc::clone(self);
        background.spawn_until_shutdown(async move {
            let mut names: HashMap<String, AppName> = HashMap::new();
            while let Some((guid, event)) = rx.recv().await {
                if !names.contains_key(&guid) {
                    if let Ok(apps) = me.store.apps().await {
                        names = apps.into_iter().map(|a| (a.guid, a.name)).collect();
                    }
                }
                if let Some(name) = names.get(&guid) {
                    let _ = me.event_feed.send((name.clone(), event));
                }
            }
        });
    }

    /// Keeps the instance lists in step with the placements in the store: one made by
    /// another controller appears, one taken off its cell by another disappears.
    fn learn_placements(&self, view: &Arc<ClusterView>, m: paas_kv::Mirrored<'_>) {
        let parse = |kv: &paas_kv::KeyValue| -> Option<Placed> {
            let (cell, id) = kv
                .key
                .strip_prefix(paas_api::state::ASSIGNED)?
                .split_once('/')?;
            let a: paas_api::state::Assignment = serde_json::from_slice(&kv.value).ok()?;
            Some(Placed::Assigned(Arc::new(Assigned::new(
                id.to_string(),
                cell.to_string(),
                &a,
                self.start_timeout,
                view,
                &self.store,
            ))))
        };
        match m {
            paas_kv::Mirrored::Reset(kvs) => {
                let all: Vec<Placed> = kvs.iter().filter_map(parse).collect();
                {
                    let mut map = self.instances.lock().unwrap_or_else(|p| p.into_inner());
                    for list in map.values_mut() {
                        list.retain(|i| match i {
                            Placed::Here(_) => true,
                            Placed::Assigned(_) => all.iter().any(|p| p.id() == i.id()),
                        });
                    }
                }
                for p in all {
                    self.add_instances(&p.app().clone(), std::slice::from_ref(&p));
                }
            }
            paas_kv::Mirrored::Put(kv) => {
                if let Some(p) = parse(kv) {
                    self.add_instances(&p.app().clone(), std::slice::from_ref(&p));
                }
            }
            paas_kv::Mirrored::Delete(key) => {
                let Some(id) = key.rsplit('/').next() else {
                    return;
                };
                let mut map = self.instances.lock().unwrap_or_else(|p| p.into_inner());
                for list in map.values_mut() {
                    list.retain(|i| i.id() != id);
                }
            }
        }
        self.refresh_routes();
    }

    /// Adds `list` to the app's instances, but none twice.
    fn add_instances(&self, app: &AppName, list: &[Placed]) {
        let mut map = self.instances.lock().unwrap_or_else(|p| p.into_inner());
        let have = map.entry(app.clone()).or_default();
        for p in list {
            if !have.iter().any(|h| h.id() == p.id()) {
                have.push(p.clone());
            }
        }
    }

    /// This host among the others of its cluster, if it is in one.
    pub fn peers(&self) -> Option<Arc<crate::peer::Peers>> {
        self.cluster.as_ref().map(|c| Arc::clone(&c.peers))
    }

    /// The local path of blob `sha256`; in a cluster, fetched from a host that keeps it
    /// when this one does not.
    pub async fn blob(&self, sha256: &str) -> Result<PathBuf, Error> {
        if self.blobs.exists(sha256) {
            return Ok(self.blobs.path(sha256));
        }
        let gone = || {
            Error::new(
                ErrorKind::Gone,
                "blob-missing",
                format!("blob {sha256} is kept on no host that can be reached"),
                None,
            )
        };
        let Some(cluster) = &self.cluster else {
            return Err(gone());
        };
        cluster.peers.blob(sha256).await.map_err(|e| {
            tracing::warn!("{e:#}");
            gone()
        })
    }

    /// Whether blob `sha256` is kept: here, or in a cluster by a host the store names.
    pub async fn has_blob(&self, sha256: &str) -> bool {
        if self.blobs.exists(sha256) {
            return true;
        }
        match &self.cluster {
            Some(_) => self
                .store
                .blob_holders(sha256)
                .await
                .is_ok_and(|h| !h.is_empty()),
            None => false,
        }
    }

    /// In a cluster: records that this host keeps blob `sha256` and has a second host
    /// keep it too, so that losing one host loses no blob. Failing that, says so in the
    /// log and goes on: the blob is still here.
    pub async fn keep_twice(&self, sha256: &str) {
        let Some(cluster) = &self.cluster else { return };
        let kept = async {
            cluster.peers.announce(sha256).await?;
            cluster.peers.keep_elsewhere(sha256).await
        };
        match kept.await {
            Ok(host) => tracing::info!(blob = %sha256, %host, "a second host keeps the blob"),
            Err(e) => tracing::warn!(blob = %sha256, "the blob is kept on this host only: {e:#}"),
        }
    }

    /// In a cluster: takes the buildpack list as the store has it now (another
    /// controller may have changed it), fetching the custom buildpacks this host lacks.
    /// What cannot be read keeps the list as it was.
    pub async fn refresh_buildpacks(&self) {
        if self.cluster.is_none() {
            return;
        }
        let rows = match self.store.buildpacks().await {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!("reading the buildpack list: {e}");
                return;
            }
        };
        for row in rows.iter().filter(|r| !r.shipped) {
            if let Err(e) = self.blob(&row.sha256).await {
                tracing::warn!(buildpack = %row.name, "fetching a custom buildpack: {}", e.body.message);
            }
        }
        if let Err(e) = self.buildpacks.reload(&self.store, &self.blobs).await {
            tracing::warn!("{e:#}");
        }
    }

    /// [`Platform::keep_twice`], without waiting for it.
    pub fn keep_twice_later(self: &Arc<Self>, sha256: &str) {
        if self.cluster.is_none() {
            return;
        }
        let (me, sha) = (Arc::clone(self), sha256.to_string());
        self.background
            .spawn(async move { me.keep_twice(&sha).await });
    }

    /// The stored app, or the API's 404 when there is none.
    pub async fn app_record(&self, app: &AppName) -> Result<AppRecord, Error> {
        self.store
            .app(app)
            .await
            .map_err(Error::internal)?
            .ok_or_else(|| Error::app_not_found(app))
    }

    /// Serialises the changes of one app (deploys, restarts, stops, deletes): on this
    /// host, and in a cluster across controllers (`app-locks/APP`).
    async fn lock_app(&self, app: &AppName) -> Result<AppLock, Error> {
        self.not_paused(app)?;
        self.not_paused_elsewhere(app).await?;
        let local = {
            let mut locks = self.app_locks.lock().unwrap_or_else(|p| p.into_inner());
            // Locks no one holds or waits for are dropped, so deleted apps' names do
            // not pile up.
            locks.retain(|_, lock| Arc::strong_count(lock) > 1);
            Arc::clone(locks.entry(app.clone()).or_default())
        };
        // A canary that pauses while this waits keeps the lock: then this gives up.
        let local = loop {
            tokio::select! {
                guard = Arc::clone(&local).lock_owned() => break guard,
                () = tokio::time::sleep(std::time::Duration::from_millis(200)) => self.not_paused(app)?,
            }
        };
        let shared = match &self.cluster {
            None => None,
            Some(_) => Some(
                self.store
                    .hold(&converge::app_lock_key(app), self.cell.id())
                    .await
                    .map_err(|e| Error::internal(format!("taking app {app}'s lock: {e}")))?,
            ),
        };
        Ok(AppLock {
            _local: local,
            _shared: shared,
        })
    }

    pub async fn summary(&self, app: &AppRecord) -> AppSummary {
        let routes = self.store.app_routes(&app.name).await.unwrap_or_default();
        let usage = self.remote_usage(std::slice::from_ref(app)).await;
        self.summary_with(app, routes, &usage)
    }

    /// The summaries of `apps`, from one read of the routes.
    pub async fn summaries(&self, apps: &[AppRecord]) -> Vec<AppSummary> {
        let all = self.store.routes().await.unwrap_or_default();
        let usage = self.remote_usage(apps).await;
        apps.iter()
            .map(|app| {
                let routes = all
                    .iter()
                    .filter(|r| r.app.as_ref() == Some(&app.name))
                    .map(|r| r.route.clone())
                    .collect();
                self.summary_with(app, routes, &usage)
            })
            .collect()
    }

    /// Reads every app's instances once, for the charts of their usage over the last
    /// hour (`usage_history.rs`).
    async fn sample_usage(&self) {
        let apps = match self.store.apps().await {
            Ok(apps) => apps,
            Err(e) => {
                tracing::warn!("reading apps to sample their usage: {e}");
                return;
            }
        };
        let now = crate::logs::now_ms();
        for app in self.summaries(&apps).await {
            let limits: HashMap<&str, u64> = app
                .processes
                .iter()
                .map(|p| (p.process.as_str(), p.memory.bytes()))
                .collect();
            let limit = |i: &paas_api::InstanceSummary| {
                limits
                    .get(i.process.as_str())
                    .copied()
                    .unwrap_or(app.settings.memory.bytes())
            };
            self.usage_history
                .record(app.name.as_str(), &app.instances, limit, now);
        }
        self.usage_history
            .retain(&apps.iter().map(|a| a.name.as_str()).collect());
    }

    /// What the other cells that run instances of `apps` measure of them (CPU, memory,
    /// disk), by instance id; a cell that does not answer within a second is left out
    /// (its instances are shown without usage).
    async fn remote_usage(&self, apps: &[AppRecord]) -> placed::Usage {
        let Some(cluster) = &self.cluster else {
            return placed::Usage::new();
        };
        let mut cells: Vec<String> = {
            let map = self.instances.lock().unwrap_or_else(|p| p.into_inner());
            apps.iter()
                .filter_map(|a| map.get(&a.name))
                .flatten()
                .filter_map(|p| match p {
                    Placed::Assigned(a) if a.cell != self.cell.id() => Some(a.cell.clone()),
                    _ => None,
                })
                .collect()
        };
        cells.sort();
        cells.dedup();
        let asks = cells
            .iter()
            .filter_map(|c| cluster.view.peer_of(c))
            .map(|peer| {
                let peers = Arc::clone(&cluster.peers);
                async move {
                    tokio::time::timeout(Duration::from_secs(1), peers.usage(&peer))
                        .await
                        .ok()
                        .and_then(Result::ok)
                        .unwrap_or_default()
                }
            });
        let mut all = placed::Usage::new();
        for one in crate::join_all(asks).await {
            all.extend(one);
        }
        all
    }

    fn summary_with(
        &self,
        app: &AppRecord,
        routes: Vec<Route>,
        usage: &placed::Usage,
    ) -> AppSummary {
        let mut instances: Vec<_> = self
            .instances
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&app.name)
            .map(|l| l.iter().map(|i| i.summary(&self.cell, usage)).collect())
            .unwrap_or_default();
        instances.sort_by(|a, b| {
            let key = |i: &paas_api::InstanceSummary| {
                (i.process != paas_api::WEB, i.process.clone(), i.index)
            };
            key(a).cmp(&key(b))
        });
        let running_of = |process: &str| {
            instances
                .iter()
                .filter(|i| i.process == process && i.state == InstanceState::Running.as_str())
                .count() as u32
        };
        let running = running_of(paas_api::WEB);
        let processes = app
            .release
            .as_ref()
            .map(|r| r.processes(&app.settings))
            .unwrap_or_default()
            .into_iter()
            .map(|p| paas_api::ProcessSummary {
                running: running_of(&p.process),
                process: p.process,
                command: p.command,
                instances: p.settings.instances,
                memory: p.settings.memory,
                health_check: p.settings.health_check,
            })
            .collect();
        AppSummary {
            name: app.name.clone(),
            space: app.space.clone(),
            settings: app.settings.clone(),
            state: if app.release.is_none() {
                "pending"
            } else if app.stopped {
                "stopped"
            } else {
                "started"
            }
            .to_string(),
            running_instances: running,
            url: self.first_url(&routes),
            routes: routes.iter().map(ToString::to_string).collect(),
            droplet: app.release.as_ref().map(|r| r.droplet.clone()),
            detected_buildpack: app.release.as_ref().map(|r| r.buildpack.clone()),
            start_command: app.release.as_ref().map(|r| r.start_command.clone()),
            last_deploy_ms: app.deployed_at.map(|s| s.max(0) as u64 * 1000),
            instances,
            processes,
        }
    }

    /// The stacks apps may be built and run on here: `host`, then those built.
    pub fn stacks(&self) -> &[paas_api::StackInfo] {
        self.cell.stacks()
    }

    /// The stack a new app gets: the first one built, else the host's.
    pub fn default_stack(&self) -> String {
        self.stacks()
            .iter()
            .find(|s| s.default)
            .map_or_else(|| paas_runtime::stack::HOST.to_string(), |s| s.name.clone())
    }

    /// The stack `record` is built on: the one it asks for, else the default.
    pub fn stack_of(&self, record: &crate::store::AppRecord) -> String {
        record
            .settings
            .stack
            .clone()
            .unwrap_or_else(|| self.default_stack())
    }

    /// The resolv.conf for instances that may reach the world, if the host has name
    /// servers they can use.
    pub fn outbound_resolv_conf(&self) -> Option<PathBuf> {
        self.cell.outbound_resolv_conf()
    }

    /// Starts `command` in instance `index` of `app`'s `process` type, as `cf ssh` would
    /// run it: on this host, or through the peer listener of the cell that runs it.
    pub async fn exec(
        &self,
        app: &AppName,
        process: &str,
        index: u32,
        command: &[String],
    ) -> Result<Execution, Error> {
        let placed: Vec<Placed> = self
            .instances
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(app)
            .map(|l| {
                l.iter()
                    .filter(|i| i.process() == process && i.index() == index)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        let not_running = || {
            Error::new(
                ErrorKind::NotFound,
                "instance-not-running",
                format!("{process} instance {index} of app {app} is not running"),
                Some(&format!("see `paas app {app}` for its instances")),
            )
        };
        let here = placed.iter().find_map(|p| match p {
            Placed::Here(i) => i.exec_target(),
            Placed::Assigned(a) => self.cell.assigned_instance(&a.id)?.exec_target(),
        });
        if let Some(target) = here {
            return self
                .cell
                .exec(&target, &paas_stager::shell::join(command))
                .map(Execution::Here)
                .map_err(Error::internal);
        }
        // The running one, if any runs on another cell.
        let there = placed.iter().find_map(|p| match p {
            Placed::Assigned(a) if p.routable_addr().is_some() => Some(Arc::clone(a)),
            _ => None,
        });
        let (Some(a), Some(cluster)) = (there, &self.cluster) else {
            return Err(not_running());
        };
        let peer = cluster.view.peer_of(&a.cell).ok_or_else(not_running)?;
        cluster
            .peers
            .exec(&peer, &a.id, command)
            .await
            .map(Execution::There)
            .map_err(|e| {
                Error::new(
                    ErrorKind::Internal,
                    "cell-unreachable",
                    format!(
                        "instance {index} of app {app} runs on cell {}, which could not be reached: {e:#}",
                        a.cell
                    ),
                    Some("see `paas cells`; try again"),
                )
            })
    }

    /// Whether this controller is one of a cluster.
    pub fn in_cluster(&self) -> bool {
        self.cluster.is_some()
    }

    /// The peer addresses of the other cells that run instances of `app`, whose log
    /// lines they keep.
    pub fn log_peers(&self, app: &AppName) -> Vec<String> {
        let Some(cluster) = &self.cluster else {
            return Vec::new();
        };
        let mut cells: Vec<String> = self
            .instances
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(app)
            .into_iter()
            .flatten()
            .filter_map(|p| match p {
                Placed::Assigned(a) if a.cell != self.cell.id() => Some(a.cell.clone()),
                _ => None,
            })
            .collect();
        cells.sort();
        cells.dedup();
        cells
            .iter()
            .filter_map(|c| cluster.view.peer_of(c))
            .collect()
    }

    /// The recent log lines of `app` the hosts at `peers` keep (those that answer
    /// within a few seconds).
    pub async fn remote_recent_logs(&self, app: &AppName, peers: &[String]) -> Vec<LogLine> {
        let Some(cluster) = &self.cluster else {
            return Vec::new();
        };
        let mut all = Vec::new();
        for peer in peers {
            let read = async {
                let mut lines = cluster.peers.logs(peer, app, LogLines::Recent).await?;
                let mut got = Vec::new();
                while let Some(l) = lines.recv().await {
                    got.push(l);
                }
                Ok::<_, anyhow::Error>(got)
            };
            match tokio::time::timeout(Duration::from_secs(3), read).await {
                Ok(Ok(lines)) => all.extend(lines),
                Ok(Err(e)) => tracing::warn!(%app, %peer, "reading a cell's log lines: {e:#}"),
                Err(_) => {
                    tracing::warn!(%app, %peer, "reading a cell's log lines: no answer within 3 s")
                }
            }
        }
        all
    }

    /// Each new log line of `app`, from this host (`local`) and, in a cluster, from every
    /// other cell that runs an instance of it, as it comes. The cells are looked for
    /// again every few seconds, so one an instance moves to is followed too.
    pub fn new_logs(
        self: &Arc<Self>,
        app: &AppName,
        mut local: tokio::sync::broadcast::Receiver<LogLine>,
    ) -> tokio::sync::mpsc::Receiver<LogLine> {
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        if self.cluster.is_some() {
            let (me, app, tx) = (Arc::clone(self), app.clone(), tx.clone());
            tokio::spawn(async move { me.follow_cells_logs(&app, tx).await });
        }
        tokio::spawn(async move {
            loop {
                let line = match local.recv().await {
                    Ok(l) => l,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        crate::api::streams_dropped(n)
                    }
                    Err(_) => return,
                };
                if tx.send(line).await.is_err() {
                    return;
                }
            }
        });
        rx
    }

    /// Sends `tx` each new log line of `app` from the other cells that run it, following
    /// each such cell once, until `tx` is closed.
    async fn follow_cells_logs(&self, app: &AppName, tx: tokio::sync::mpsc::Sender<LogLine>) {
        const LOOK_AGAIN: Duration = Duration::from_secs(3);
        let Some(cluster) = &self.cluster else { return };
        let began = crate::logs::now_ms();
        let mut followed = std::collections::HashSet::new();
        let mut first = true;
        while !tx.is_closed() {
            // The cells of the first look had their recent lines merged already; a cell
            // found later sends what it has since the follow began (an instance placed
            // there prints its first lines before the next look).
            let which = if first {
                LogLines::New
            } else {
                LogLines::Since(began)
            };
            first = false;
            for peer in self.log_peers(app) {
                if followed.contains(&peer) {
                    continue;
                }
                match cluster.peers.logs(&peer, app, which).await {
                    Ok(mut lines) => {
                        followed.insert(peer);
                        let tx = tx.clone();
                        tokio::spawn(async move {
                            while let Some(l) = lines.recv().await {
                                if tx.send(l).await.is_err() {
                                    return;
                                }
                            }
                        });
                    }
                    Err(e) => tracing::warn!(%app, %peer, "following a cell's log lines: {e:#}"),
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(LOOK_AGAIN) => {}
                _ = tx.closed() => return,
            }
        }
    }

    /// Records an event in the store and in the app's log (as `API`).
    pub async fn record_event(
        &self,
        app: &AppName,
        kind: &str,
        instance: Option<u32>,
        exit_code: Option<i32>,
        description: &str,
    ) {
        let event = AppEvent {
            timestamp_ms: crate::logs::now_ms(),
            kind: kind.to_string(),
            instance,
            exit_code,
            description: description.to_string(),
        };
        record_app_event(&self.store, &self.logs, app, &event).await;
        // In a cluster the feed follows the store, where every host records events.
        if self.cluster.is_none() {
            let _ = self.event_feed.send((app.clone(), event));
        }
    }

    /// The app's recorded events, and a feed of every event recorded from now on (of
    /// all apps: filter by name). Subscribing first means none falls in between.
    pub async fn follow_events(&self, app: &AppName) -> Result<(Vec<AppEvent>, EventFeed), Error> {
        let live = self.event_feed.subscribe();
        let recorded = self.store.events(app).await.map_err(Error::internal)?;
        Ok((recorded, live))
    }

    /// Stops and forgets an app: instances, state and logs. Its routes are deleted when
    /// `delete_routes`, else unmapped and kept.
    pub async fn delete(self: &Arc<Self>, app: &AppName, delete_routes: bool) -> Result<(), Error> {
        let _held = self.lock_app(app).await?;
        self.app_record(app).await?;
        // Its tasks end with it (recorded while the app still exists).
        self.terminate_tasks_of(app).await;
        let old = self
            .instances
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(app)
            .unwrap_or_default();
        // Those a roll-out retires are stopped now too, not after their drain: once
        // the delete is answered, nothing of the app runs. (Stopping twice is harmless.)
        let retiring: Vec<Placed> = self
            .retiring
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|r| r.app() == app)
            .cloned()
            .collect();
        let old: Vec<Placed> = old.into_iter().chain(retiring).collect();
        self.store
            .delete_app(app, delete_routes)
            .await
            .map_err(Error::internal)?;
        self.access_cache.forget_app(app);
        self.reload_routes().await;
        stop_all(old).await;
        self.logs.remove(app);
        self.traffic.forget(app.as_str());
        let _ = std::fs::remove_dir_all(self.caches_dir.join(app.as_str()));
        Ok(())
    }

    /// Stops every instance of every app, for a clean shutdown of the daemon. In a
    /// cluster, only this host's cell stops its instances: the others run on, and the
    /// placements stay for when this host is back.
    pub async fn shutdown(&self) {
        self.hand_over().await;
        if self.cluster.is_some() {
            self.instances
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clear();
            self.cell.shut_down().await;
            return;
        }
        let mut all: Vec<Placed> = {
            let mut map = self.instances.lock().unwrap_or_else(|p| p.into_inner());
            map.drain().flat_map(|(_, v)| v).collect()
        };
        all.extend(
            self.retiring
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .drain(..),
        );
        self.refresh_routes();
        stop_all(all).await;
        self.cell.leave().await;
    }

    /// Ends this paasd's own work and leaves the instances running, for the next paasd
    /// to take over (an upgrade): roll-outs under way get a while to end (one cut off
    /// is said at the next start), tasks are terminated (they are not taken over).
    pub async fn hand_over(&self) {
        self.wait_for_roll_outs(inflight::SHUTDOWN_WAIT).await;
        self.terminate_tasks().await;
        self.background.shut_down(background::SHUTDOWN_WAIT).await;
    }

    /// The user namespace the app's containers run in: host ids of its own, so that no
    /// two apps share a host user (nor its files, signals and per-user kernel limits),
    /// and root inside is an ordinary user outside. Slot N holds host ids
    /// `2^28 + N * 65536` and the 65535 after: above any host's own users and the usual
    /// subordinate id ranges (/etc/subuid starts at 100000), below 2^31, where tools that
    /// read ids as signed numbers go wrong (systemd's "unsafe" range).
    pub(crate) async fn id_map(&self, app: &AppName) -> anyhow::Result<IdMap> {
        const FIRST: u64 = 1 << 28;
        const LAST: u64 = 1 << 31;
        let slot = self
            .store
            .id_slot(app)
            .await
            .context("reading the app's user ids")?;
        let base = FIRST + u64::from(slot) * u64::from(IdMap::SIZE);
        let base = u32::try_from(base)
            .ok()
            .filter(|b| u64::from(*b) + u64::from(IdMap::SIZE) <= LAST)
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "no range of host user ids is left for app {app}: this platform has made 28671 apps"
                )
            })?;
        Ok(IdMap {
            host_base: base,
            size: IdMap::SIZE,
        })
    }

    /// Starts every instance of every process type of `release` for `app`; if one
    /// cannot start, none is left running.
    async fn start_release(
        self: &Arc<Self>,
        app: &AppRecord,
        release: &Release,
    ) -> Result<Vec<Placed>, Error> {
        let mut fresh = Vec::new();
        for plan in release.processes(&app.settings) {
            let count = plan.settings.instances;
            match self
                .start_instances(app, release, &plan, 0..count, &fresh)
                .await
            {
                Ok(started) => fresh.extend(started),
                Err(e) => {
                    stop_all(fresh).await;
                    return Err(e);
                }
            }
        }
        Ok(fresh)
    }

    /// Starts the instances of process type `plan` of `release` with the indices in
    /// `indices`: on this host's cell, or in a cluster placed on cells, spread beside
    /// `beside` (instances of the app that keep running).
    async fn start_instances(
        self: &Arc<Self>,
        app: &AppRecord,
        release: &Release,
        plan: &ProcessPlan,
        indices: std::ops::Range<u32>,
        beside: &[Placed],
    ) -> Result<Vec<Placed>, Error> {
        let ids = self
            .id_map(&app.name)
            .await
            .map_err(|e| Error::internal(format!("{e:#}")))?;
        let env: Vec<(String, String)> = release.env(&app.env).clone().into_iter().collect();
        let services = self.service_env(app).await?;
        let system_env = services.vars();
        let uris: Vec<String> = self
            .store
            .app_routes(&app.name)
            .await
            .unwrap_or_default()
            .iter()
            .map(ToString::to_string)
            .collect();
        if let Some(cluster) = &self.cluster {
            if self.blobs.exists(&release.droplet) {
                cluster
                    .peers
                    .announce(&release.droplet)
                    .await
                    .map_err(|e| Error::internal(format!("{e:#}")))?;
            }
            let base = self.assignment(app, release, plan).await?;
            let what = |index| paas_api::state::Assignment {
                index,
                ..base.clone()
            };
            return self.place(cluster, indices, beside, what).await;
        }
        let droplet = self
            .cell
            .droplet_dir(&release.droplet, &self.blobs.path(&release.droplet), ids)
            .await
            .map_err(|e| Error::internal(format!("{e:#}")))?;
        self.logs.set_drains(&app.name, &app.guid, &services.drains);
        Ok(indices
            .map(|index| {
                Placed::Here(self.cell.run(
                    Arc::clone(self) as Arc<dyn Reporter>,
                    InstanceSpec {
                        id: crate::store::new_guid(),
                        app: app.name.clone(),
                        app_guid: app.guid.clone(),
                        process: plan.process.clone(),
                        index,
                        settings: plan.settings.clone(),
                        start_command: plan.command.clone(),
                        droplet_dir: droplet.clone(),
                        env: env.clone(),
                        system_env: system_env.clone(),
                        id_map: ids,
                        uris: uris.clone(),
                        // This host's router drops it first; the platform drains.
                        drain: std::time::Duration::ZERO,
                        stdin: false,
                        tty: None,
                    },
                ))
            })
            .collect())
    }

    /// What a cell is told to run for an instance of process type `plan` of `release`
    /// of `app` (its index 0).
    pub(super) async fn assignment(
        &self,
        app: &AppRecord,
        release: &Release,
        plan: &ProcessPlan,
    ) -> Result<paas_api::state::Assignment, Error> {
        let ids = self
            .id_map(&app.name)
            .await
            .map_err(|e| Error::internal(format!("{e:#}")))?;
        let uris = self
            .store
            .app_routes(&app.name)
            .await
            .map_err(Error::internal)?
            .iter()
            .map(ToString::to_string)
            .collect();
        let services = self.service_env(app).await?;
        Ok(paas_api::state::Assignment {
            app: app.name.clone(),
            app_guid: app.guid.clone(),
            process: plan.process.clone(),
            index: 0,
            settings: plan.settings.clone(),
            start_command: plan.command.clone(),
            droplet: release.droplet.clone(),
            env: release.env(&app.env).clone().into_iter().collect(),
            system_env: services.vars(),
            id_base: ids.host_base,
            uris,
            drains: services.drains,
        })
    }

    /// Places the instances of `indices` (`what` of each) on the cells that are up:
    /// spread over as many distinct cells as there are, each on the cell with the most
    /// memory free among those that run the fewest of them and of `beside`, never past
    /// a cell's memory.
    async fn place(
        &self,
        cluster: &Cluster,
        indices: std::ops::Range<u32>,
        beside: &[Placed],
        what: impl Fn(u32) -> paas_api::state::Assignment,
    ) -> Result<Vec<Placed>, Error> {
        let mut cells = self.store.cells().await.map_err(Error::internal)?;
        let mut placed: Vec<Placed> = Vec::new();
        let mut here: HashMap<String, u32> = HashMap::new();
        for b in beside {
            if let Some(cell) = b.cell() {
                *here.entry(cell.to_string()).or_default() += 1;
            }
        }
        for index in indices {
            let a = what(index);
            let need = a.settings.memory.bytes();
            let Some(cell) =
                placed::pick_cell(&mut cells, need, |c| here.get(c).copied().unwrap_or(0))
            else {
                stop_all(placed).await;
                return Err(no_room(&a, &cells));
            };
            *here.entry(cell.id.clone()).or_default() += 1;
            let id = crate::store::new_guid();
            if let Err(e) = self.store.assign(&cell.id, &id, &a).await {
                stop_all(placed).await;
                return Err(Error::internal(e));
            }
            placed.push(Placed::Assigned(Arc::new(Assigned::new(
                id,
                cell.id.clone(),
                &a,
                self.start_timeout,
                &cluster.view,
                &self.store,
            ))));
        }
        Ok(placed)
    }
}

/// Why instance `a` cannot be placed on any of `cells`.
fn no_room(a: &paas_api::state::Assignment, cells: &[paas_api::state::CellPresence]) -> Error {
    let free =
        |c: &paas_api::state::CellPresence| c.memory_bytes.saturating_sub(c.memory_used_bytes);
    let why = if cells.is_empty() {
        "no cell is up".to_string()
    } else {
        format!(
            "no cell has {} MiB free (cells: {})",
            a.settings.memory.bytes() >> 20,
            cells
                .iter()
                .map(|c| format!("{} {} MiB free", c.id, free(c) >> 20))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    Error::new(
        ErrorKind::Refused,
        "no-room",
        format!(
            "instance {} of app {} has nowhere to run: {why}",
            a.index, a.app
        ),
        Some("see `paas cells`; add a cell (`paasd --roles cell`) or scale down"),
    )
}

/// Stops instances in parallel and waits until all are gone.
/// Records `event` of `app` in the store, and says it in the app's log as `API`: what
/// every host that sees something happen to an app does.
pub(crate) async fn record_app_event(store: &Store, logs: &Logs, app: &AppName, event: &AppEvent) {
    if let Err(e) = store.add_event(app, event).await {
        tracing::warn!(%app, "recording an event: {e}");
    }
    let who = event
        .instance
        .map(|i| format!("instance {i} "))
        .unwrap_or_default();
    logs.append(
        app,
        "API",
        LogStream::Out,
        &format!("{}: {who}{}", event.kind, event.description),
    );
}

async fn stop_all(list: Vec<Placed>) {
    crate::join_all(list.into_iter().map(|i| async move { i.stop().await })).await;
}

/// The platform hears from its cells: lines go to the app's log, events to the store and
/// the log, and a change of what is routable to the router.
impl Reporter for Platform {
    fn log(&self, app: &AppName, source: &str, stream: LogStream, line: &str) {
        self.logs.append(app, source, stream, line);
    }

    fn drains(&self, app: &AppName, app_guid: &str, drains: &paas_api::state::LogDrains) {
        self.logs.set_drains(app, app_guid, drains);
    }

    fn event<'a>(
        &'a self,
        app: &'a AppName,
        kind: &'a str,
        index: u32,
        exit_code: Option<i32>,
        description: &'a str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>> {
        Box::pin(self.record_event(app, kind, Some(index), exit_code, description))
    }

    fn routable_changed(&self) {
        self.refresh_routes();
    }
}
