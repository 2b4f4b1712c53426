//! The platform: desired state on one side, running instances and routes on the other.
//!
//! Every app has a list of live [`Instance`]s, run and supervised by a cell
//! ([`crate::cell`]), which reports back through [`Reporter`] (implemented at the end of
//! this file). Whenever an instance becomes healthy or stops being so, the route table
//! is rebuilt from these lists and published to the router as a new snapshot.
//!
//! Pushes and deletes of one app are serialised by a per-app lock; different apps deploy
//! in parallel.

mod deploy;
mod error;
mod routes;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use paas_api::{AppEvent, AppName, AppSummary, LogStream, Route};
use paas_router::Router;
use paas_runtime::IdMap;

use crate::buildpacks::Registry;
use crate::cell::{InstanceSpec, LocalCell, Reporter};

use crate::blobs::Blobs;
pub use crate::cell::{Instance, InstanceState};
use crate::logs::Logs;
use crate::store::{AppRecord, Release, Store};
use crate::Config;
pub use error::{Error, ErrorKind};

/// Every recorded event, as it is recorded, with the app it is about.
pub type EventFeed = tokio::sync::broadcast::Receiver<(AppName, AppEvent)>;

pub struct Platform {
    pub domain: String,
    router_port: u16,
    pub store: Store,
    pub blobs: Blobs,
    /// File contents of uploaded packages, by SHA-256: what a push need not send again.
    pub resources: Blobs,
    pub logs: Logs,
    /// Where stagings and instances run: this host.
    cell: Arc<LocalCell>,
    router: Arc<Router>,
    /// The router's certificate for names no domain certificate covers.
    default_cert: Arc<rustls::sign::CertifiedKey>,
    /// The same certificate and key as PEM, for routers on other hosts.
    default_cert_pem: (String, String),
    pub buildpacks: Registry,
    caches_dir: PathBuf,
    staging_timeout: Duration,
    /// The stored routes as last read (see `routes.rs`).
    route_rows: Mutex<routes::RouteRows>,
    /// The live instances of each app, old and new during a deploy.
    instances: Mutex<HashMap<AppName, Vec<Arc<Instance>>>>,
    /// Replaced instances that still drain before they stop; a shutdown stops them too.
    retiring: Mutex<Vec<Arc<Instance>>>,
    app_locks: Mutex<HashMap<AppName, Arc<tokio::sync::Mutex<()>>>>,
    /// Every event as it is recorded, for `events --follow`.
    event_feed: tokio::sync::broadcast::Sender<(AppName, AppEvent)>,
}

impl Platform {
    /// Opens the data folder: database, blobs, logs, stack, buildpacks, runtime.
    pub async fn open(
        cfg: &Config,
        router_port: u16,
        router: Arc<Router>,
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
        let blobs = Blobs::open(dir.join("blobs")).context("opening the blob store")?;
        let resources = Blobs::open(dir.join("resources")).context("opening the resource cache")?;
        let logs = Logs::open(dir.join("logs")).context("opening the log folder")?;
        let cell = LocalCell::open(cfg, dir, store.clone()).await?;
        let (cert, key) = crate::secrets::load_or_create_router_cert(dir, &cfg.domain)?;
        // For routers on other hosts, which follow the store.
        store
            .put_default_certificate(&paas_api::state::StoredDomain {
                name: cfg.domain.clone(),
                cert_pem: Some(cert.clone()),
                key_pem: Some(key.clone()),
            })
            .await
            .context("storing the router's certificate")?;
        let default_cert = paas_router::tls::certified_key(&cert, &key)
            .map_err(|e| anyhow::anyhow!("the router's certificate in {}: {e}", dir.display()))?;
        let shipped = crate::shipped::install(&dir.join("buildpacks/shipped"))?;
        let buildpacks = Registry::open(&store, &blobs, &dir.join("buildpacks"), shipped).await?;
        // Made now, so that the data folder is closed over it at start.
        std::fs::create_dir_all(dir.join("caches"))
            .with_context(|| format!("creating {}", dir.join("caches").display()))?;
        Ok(Arc::new(Platform {
            domain: cfg.domain.clone(),
            router_port,
            store,
            blobs,
            resources,
            logs,
            cell,
            router,
            default_cert: Arc::new(default_cert),
            default_cert_pem: (cert, key),
            buildpacks,
            caches_dir: dir.join("caches"),
            staging_timeout: cfg.staging_timeout,
            route_rows: Mutex::new(None),
            instances: Mutex::new(HashMap::new()),
            retiring: Mutex::new(Vec::new()),
            app_locks: Mutex::new(HashMap::new()),
            event_feed: tokio::sync::broadcast::channel(256).0,
        }))
    }

    /// After a start: removes what an earlier run left behind, then starts every app's
    /// instances again from the desired state.
    pub async fn restore(self: &Arc<Self>) {
        let n = self.cell.clean_up_leftovers().await;
        if n > 0 {
            tracing::info!("cleaned up {n} containers left by an earlier run");
        }
        let apps = match self.store.apps().await {
            Ok(a) => a,
            Err(e) => {
                tracing::error!("reading apps to restore: {e}");
                return;
            }
        };
        for app in apps {
            let Some(release) = app.release.clone() else {
                continue;
            };
            if app.stopped {
                // Routed with no instance: a stopped app answers 503, not 404.
                self.instances
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(app.name.clone(), Vec::new());
                continue;
            }
            let unpacked = match self.id_map(&app.name).await {
                Ok(ids) => self
                    .cell
                    .droplet_dir(&release.droplet, &self.blobs.path(&release.droplet), ids)
                    .await
                    .map(|dir| (dir, ids)),
                Err(e) => Err(e),
            };
            match unpacked {
                Ok((droplet, ids)) => {
                    let started = self.start_instances(&app, &release, &droplet, ids).await;
                    self.instances
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(app.name.clone(), started);
                    tracing::info!(app = %app.name, instances = app.settings.instances, "restarting app");
                }
                Err(e) => tracing::error!(app = %app.name, "cannot restore: {e:#}"),
            }
        }
        self.reload_routes().await;
    }

    /// The stored app, or the API's 404 when there is none.
    pub async fn app_record(&self, app: &AppName) -> Result<AppRecord, Error> {
        self.store
            .app(app)
            .await
            .map_err(Error::internal)?
            .ok_or_else(|| Error::app_not_found(app))
    }

    fn app_lock(&self, app: &AppName) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.app_locks.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(locks.entry(app.clone()).or_default())
    }

    pub async fn summary(&self, app: &AppRecord) -> AppSummary {
        let routes = self.store.app_routes(&app.name).await.unwrap_or_default();
        self.summary_with(app, routes)
    }

    /// The summaries of `apps`, from one read of the routes.
    pub async fn summaries(&self, apps: &[AppRecord]) -> Vec<AppSummary> {
        let all = self.store.routes().await.unwrap_or_default();
        apps.iter()
            .map(|app| {
                let routes = all
                    .iter()
                    .filter(|r| r.app.as_ref() == Some(&app.name))
                    .map(|r| r.route.clone())
                    .collect();
                self.summary_with(app, routes)
            })
            .collect()
    }

    fn summary_with(&self, app: &AppRecord, routes: Vec<Route>) -> AppSummary {
        let instances: Vec<_> = self
            .instances
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&app.name)
            .map(|l| l.iter().map(|i| i.summary()).collect())
            .unwrap_or_default();
        let running = instances
            .iter()
            .filter(|i| i.state == InstanceState::Running.as_str())
            .count() as u32;
        AppSummary {
            name: app.name.clone(),
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
            instances,
        }
    }

    /// The resolv.conf for instances that may reach the world, if the host has name
    /// servers they can use.
    pub fn outbound_resolv_conf(&self) -> Option<PathBuf> {
        self.cell.outbound_resolv_conf()
    }

    /// Starts `command` in instance `index` of `app`, as `cf ssh` would run it.
    pub fn exec(
        &self,
        app: &AppName,
        index: u32,
        command: &[String],
    ) -> Result<tokio::process::Child, Error> {
        let target = self
            .instances
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(app)
            .and_then(|l| {
                l.iter()
                    .filter(|i| i.index == index)
                    .find_map(|i| i.exec_target())
            });
        let target = target.ok_or_else(|| {
            Error::new(
                ErrorKind::NotFound,
                "instance-not-running",
                format!("instance {index} of app {app} is not running"),
                Some(&format!("see `paas app {app}` for its instances")),
            )
        })?;
        self.cell
            .exec(&target, &paas_stager::shell::join(command))
            .map_err(Error::internal)
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
        if let Err(e) = self.store.add_event(app, &event).await {
            tracing::warn!(%app, "recording an event: {e}");
        }
        let _ = self.event_feed.send((app.clone(), event));
        let who = instance
            .map(|i| format!("instance {i} "))
            .unwrap_or_default();
        self.logs.append(
            app,
            "API",
            LogStream::Out,
            &format!("{kind}: {who}{description}"),
        );
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
        let lock = self.app_lock(app);
        let _held = lock.lock().await;
        self.app_record(app).await?;
        let old = self
            .instances
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(app)
            .unwrap_or_default();
        self.store
            .delete_app(app, delete_routes)
            .await
            .map_err(Error::internal)?;
        self.reload_routes().await;
        stop_all(old).await;
        self.logs.remove(app);
        let _ = std::fs::remove_dir_all(self.caches_dir.join(app.as_str()));
        Ok(())
    }

    /// Stops every instance of every app, for a clean shutdown of the daemon.
    pub async fn shutdown(&self) {
        let mut all: Vec<Arc<Instance>> = {
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

    async fn start_instances(
        self: &Arc<Self>,
        app: &AppRecord,
        release: &Release,
        droplet: &std::path::Path,
        ids: IdMap,
    ) -> Vec<Arc<Instance>> {
        let env: Vec<(String, String)> = app.env.clone().into_iter().collect();
        let uris: Vec<String> = self
            .store
            .app_routes(&app.name)
            .await
            .unwrap_or_default()
            .iter()
            .map(ToString::to_string)
            .collect();
        (0..app.settings.instances)
            .map(|index| {
                self.cell.run(
                    Arc::clone(self) as Arc<dyn Reporter>,
                    InstanceSpec {
                        app: app.name.clone(),
                        app_guid: app.guid.clone(),
                        index,
                        settings: app.settings.clone(),
                        start_command: release.start_command.clone(),
                        droplet_dir: droplet.to_path_buf(),
                        env: env.clone(),
                        id_map: ids,
                        uris: uris.clone(),
                    },
                )
            })
            .collect()
    }
}

/// Stops instances in parallel and waits until all are gone.
async fn stop_all(list: Vec<Arc<Instance>>) {
    let tasks: Vec<_> = list
        .into_iter()
        .map(|i| tokio::spawn(async move { i.stop().await }))
        .collect();
    for t in tasks {
        let _ = t.await;
    }
}

/// The platform hears from its cells: lines go to the app's log, events to the store and
/// the log, and a change of what is routable to the router.
impl Reporter for Platform {
    fn log(&self, app: &AppName, source: &str, stream: LogStream, line: &str) {
        self.logs.append(app, source, stream, line);
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
