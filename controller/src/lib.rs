//! `paasd`: the API server, the desired-state store, the blob store, and the
//! orchestration that turns a push into running, routed instances.
//!
//! [`run`] wires the parts together; everything long-running stops when its `shutdown`
//! future completes.
//!
//! - [`store`]: apps, releases, events, routes, domains and buildpacks as documents in
//!   the state store ([`paas_kv`]: embedded SQLite by default, or etcd);
//! - [`blobs`]: content-addressed files (packages, droplets), written atomically;
//! - [`logs`]: per-app log lines, in memory and on disk;
//! - [`platform`]: deployments, instance supervision, and the route table;
//! - [`api`]: the HTTPS `/v1` API.
#![forbid(unsafe_code)]

pub mod api;
pub mod blobs;
pub mod buildpacks;
pub mod cell;
pub mod config;
pub mod data_dir;
pub mod drain;
pub mod edge;
pub mod logs;
pub mod peer;
pub mod platform;
pub mod secrets;
pub mod shipped;
pub mod stacks;
pub mod store;
pub mod traffic;
pub mod usage_history;

pub use config::{Config, Roles};

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;

/// How paasd is asked to end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Stop everything: the router (after the drain), then every instance (SIGTERM).
    Everything,
    /// Only this paasd: the router and the instances run on, for the next paasd to
    /// take over (SIGQUIT, for an upgrade in place; on one host).
    HandOver,
}

/// Starts everything and serves until `shutdown` completes; then stops every instance,
/// or, asked to hand over, leaves them and the router running.
pub async fn run(cfg: Config, shutdown: impl Future<Output = Stop>) -> anyhow::Result<()> {
    if cfg.roles.cell_alone() {
        return cell::run_alone(cfg, async {
            shutdown.await;
        })
        .await;
    }
    anyhow::ensure!(
        cfg.roles.cell || !cfg.etcd_endpoints.is_empty(),
        "a controller without the cell role places instances on the cells of a cluster: give --etcd-endpoints (on one host, paasd runs every role)"
    );
    data_dir::create(&cfg.data_dir)?;
    // On one host a self-signed certificate; in a cluster one the cluster's CA issues,
    // below, once the state store is open.
    let own_tls = match cfg.etcd_endpoints.is_empty() {
        true => Some(secrets::load_or_create_tls(&cfg.data_dir, &cfg.api_listen)?),
        false => None,
    };
    let token = secrets::load_or_create_token(&cfg.data_dir)?;

    let api_listener = TcpListener::bind(cfg.api_listen)
        .await
        .with_context(|| format!("listening for the API on {}", cfg.api_listen))?;
    let api_addr = api_listener.local_addr()?;
    // Access log lines go to the app's logs as RTR; the platform that holds the logs is
    // made after the router, so the sink finds it through a cell filled in below.
    let logs_of: Arc<std::sync::OnceLock<Arc<platform::Platform>>> = Arc::default();
    let sink_cell = Arc::clone(&logs_of);
    let access: edge::AccessSink = Arc::new(move |batch: &[paas_router::feed::AccessLine]| {
        let Some(p) = sink_cell.get() else { return };
        // One write per app's file for the batch, not one per line; each response
        // counted in the app's traffic too.
        let mut by_app: std::collections::BTreeMap<&str, Vec<&paas_router::feed::AccessLine>> =
            Default::default();
        let now = logs::now_ms();
        for entry in batch {
            by_app.entry(&entry.app).or_default().push(entry);
        }
        for (app, entries) in by_app {
            // From a process that faces every client: names are checked again.
            let Ok(app) = paas_api::AppName::parse(app) else {
                continue;
            };
            for e in &entries {
                p.traffic.record(app.as_str(), e.status, e.micros, now);
            }
            let lines = entries.iter().map(|e| e.line.as_str());
            p.logs
                .append_all(&app, "RTR", paas_api::LogStream::Out, lines);
        }
    });
    // The router is a process of its own, so traffic goes on while paasd is away.
    let edge = match cfg.roles.router {
        true => edge::Edge::start(&cfg, access).await?,
        false => edge::Edge::none(),
    };
    let router_until_started = edge.until_started();
    // In a cluster, hosts fetch blobs from each other.
    let peer_listener = match cfg.etcd_endpoints.is_empty() {
        true => None,
        false => Some(peer::bind(&cfg).await?),
    };
    let peer_addr = peer_listener
        .as_ref()
        .map(TcpListener::local_addr)
        .transpose()?;
    let router_port = edge
        .addrs()
        .map_or(cfg.http_listen.port(), |a| a.http.port());
    let platform =
        platform::Platform::open(&cfg, router_port, Arc::clone(&edge), peer_addr).await?;
    let _ = logs_of.set(Arc::clone(&platform));
    // Every controller of a cluster accepts the same token: the first one's.
    let token = if cfg.etcd_endpoints.is_empty() {
        token
    } else {
        let shared = platform
            .store
            .admin_token(&token)
            .await
            .context("reading the cluster's admin token")?;
        if shared != token {
            secrets::write_private(
                &cfg.data_dir.join(secrets::TOKEN_FILE),
                format!("{shared}\n").as_bytes(),
            )?;
            tracing::info!(
                "this controller takes the cluster's admin token (written to its admin-token file)"
            );
        }
        shared
    };
    let tls = match own_tls {
        Some(tls) => tls,
        None => {
            let ca = platform
                .store
                .api_ca(|| {
                    let (cert_pem, key_pem) = secrets::make_api_ca()?;
                    Ok(paas_api::state::CertificateAuthority { cert_pem, key_pem })
                })
                .await
                .context("reading the cluster's API CA")?;
            let mut addresses = vec![cfg.api_listen.ip()];
            addresses.extend(cfg.advertise_address.map(std::net::IpAddr::V4));
            secrets::cluster_api_tls(&cfg.data_dir, &addresses, &ca.cert_pem, &ca.key_pem)?
        }
    };
    platform.refresh_certificates().await;
    platform.restore().await;
    router_until_started.disarm();
    // The table now holds every instance that runs: the router may have it.
    edge.open();

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let router_line = match edge.addrs() {
        Some(a) => format!(
            "router=http://{} https=https://{} admin=http://{}",
            a.http, a.https, a.admin
        ),
        None => "router=none".to_string(),
    };
    let peer_task = match (peer_listener, platform.peers()) {
        (Some(listener), Some(peers)) => Some(tokio::spawn(
            peers.serve(listener, stopped(stop_rx.clone())),
        )),
        _ => None,
    };
    let _ = platform.admin_token.set(token);
    platform
        .ensure_default_space()
        .await
        .map_err(|e| anyhow::anyhow!("making the default space: {e}"))?;
    let api = api::router(Arc::clone(&platform));
    let api_task = tokio::spawn(api::run(api, api_listener, tls, stopped(stop_rx.clone())));

    // The one line scripts and tests wait for: where to reach this daemon.
    // Everything the parts above made in the data folder exists by now.
    data_dir::lock_down(&cfg.data_dir)?;
    println!(
        "paasd ready api=https://{api_addr} {router_line} domain={}",
        cfg.domain
    );
    tracing::info!(%api_addr, %router_line, domain = %cfg.domain, data_dir = %cfg.data_dir.display(), "paasd is ready");

    let how = shutdown.await;
    if how == Stop::HandOver && cfg.etcd_endpoints.is_empty() {
        tracing::info!("handing over: the router and the instances run on for the next paasd");
        let _ = stop_tx.send(true);
        let _ = api_task.await;
        platform.hand_over().await;
        return Ok(());
    }
    if how == Stop::HandOver {
        tracing::warn!("in a cluster a cell's instances are not taken over: stopping everything");
    }
    if !cfg.drain.is_zero() {
        // /health fails first; traffic is still served for the drain window.
        tracing::info!("stopping: draining for {} s", cfg.drain.as_secs());
        edge.drain();
        tokio::time::sleep(cfg.drain).await;
    }
    tracing::info!("stopping: closing listeners, stopping the router and instances");
    let _ = stop_tx.send(true);
    // The router finishes the requests under way before the instances stop.
    edge.stop().await;
    platform.shutdown().await;
    let _ = api_task.await;
    if let Some(t) = peer_task {
        let _ = t.await;
    }
    Ok(())
}

/// Runs every future of `all` at once (each a task of its own) and waits for all of
/// them; their outputs in order, less those of tasks that panicked.
pub(crate) async fn join_all<F>(all: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let tasks: Vec<_> = all.map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        if let Ok(v) = t.await {
            out.push(v);
        }
    }
    out
}
