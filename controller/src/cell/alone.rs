//! `paasd --roles cell`: a host that only runs the instances a controller places on it
//! (through the state store, which must be etcd), with no API and no router.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use anyhow::Context;
use paas_api::{AppEvent, AppName, LogStream};

use super::{LocalCell, Reporter};
use crate::logs::Logs;
use crate::store::Store;
use crate::Config;

/// Runs a cell on its own until `shutdown` completes; then stops its instances (their
/// placements stay, for when it is back) and leaves the cluster.
pub async fn run_alone(cfg: Config, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    anyhow::ensure!(
        !cfg.etcd_endpoints.is_empty(),
        "a cell on its own (--roles cell) takes its instances from the cluster's etcd: give --etcd-endpoints"
    );
    anyhow::ensure!(
        cfg.advertise_address.is_some(),
        "a cell on its own (--roles cell) must be reachable by the cluster's routers: give --advertise-address"
    );
    let dir = &cfg.data_dir;
    crate::data_dir::create(dir)?;
    let etcd = paas_kv::etcd::connect(&cfg.etcd_endpoints)
        .await
        .with_context(|| {
            format!(
                "connecting to etcd at {} (--etcd-endpoints)",
                cfg.etcd_endpoints.join(",")
            )
        })?;
    let store = Store::new(paas_kv::Backend::Etcd(Box::new(etcd)));
    let blobs = crate::blobs::Blobs::open(dir.join("blobs")).context("opening the blob store")?;
    let logs = Arc::new(
        Logs::open(dir.join("logs"), cfg.drain_allow.clone()).context("opening the log folder")?,
    );
    let listener = crate::peer::bind(&cfg).await?;
    let peer_addr = listener.local_addr()?;
    let cell = LocalCell::open(&cfg, dir, store.clone(), Some(peer_addr)).await?;
    let n = cell.clean_up_leftovers().await;
    if n > 0 {
        tracing::info!("cleaned up {n} containers left by an earlier run");
    }
    // Controllers without a cell have their apps staged here.
    let kit = crate::peer::StagingKit {
        shipped: crate::shipped::install(&dir.join("buildpacks/shipped"))?,
        custom_dir: dir.join("buildpacks/custom"),
        caches_dir: dir.join("caches"),
    };
    for d in [&kit.custom_dir, &kit.caches_dir] {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let peers = crate::peer::Peers::open(
        store.clone(),
        blobs,
        Arc::clone(&cell),
        Arc::clone(&logs),
        kit,
        peer_addr,
    )
    .await?;
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let serving = tokio::spawn(Arc::clone(&peers).serve(listener, async move {
        let _ = stop_rx.wait_for(|s| *s).await;
    }));
    cell.follow_assignments(store.clone(), peers, Arc::new(CellReporter { store, logs }));
    crate::data_dir::lock_down(dir)?;
    println!("paasd ready cell={} peer={peer_addr}", cell.id());
    tracing::info!(cell = %cell.id(), %peer_addr, "the cell is ready");
    shutdown.await;
    tracing::info!("stopping: stopping instances, leaving the cluster");
    cell.shut_down().await;
    let _ = stop_tx.send(true);
    let _ = serving.await;
    Ok(())
}

/// What a cell on its own does with what its instances report: events go to the state
/// store, where every controller reads them; log lines stay in this host's log folder.
struct CellReporter {
    store: Store,
    logs: Arc<Logs>,
}

impl Reporter for CellReporter {
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
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        Box::pin(async move {
            let event = AppEvent {
                timestamp_ms: crate::logs::now_ms(),
                kind: kind.to_string(),
                instance: Some(index),
                exit_code,
                description: description.to_string(),
            };
            if let Err(e) = self.store.add_event(app, &event).await {
                tracing::warn!(%app, "recording an event: {e}");
            }
        })
    }

    fn routable_changed(&self) {}
}
