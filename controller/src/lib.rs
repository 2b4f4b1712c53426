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
pub mod logs;
pub mod peer;
pub mod platform;
pub mod secrets;
pub mod shipped;
pub mod store;

pub use config::{Config, Roles};

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;

/// Starts everything and serves until `shutdown` completes; then stops every instance.
pub async fn run(cfg: Config, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    if cfg.roles == Roles::Cell {
        return cell::run_alone(cfg, shutdown).await;
    }
    data_dir::create(&cfg.data_dir)?;
    let tls = secrets::load_or_create_tls(&cfg.data_dir, &cfg.api_listen)?;
    let token = secrets::load_or_create_token(&cfg.data_dir)?;

    let api_listener = TcpListener::bind(cfg.api_listen)
        .await
        .with_context(|| format!("listening for the API on {}", cfg.api_listen))?;
    let http_listener = TcpListener::bind(cfg.http_listen)
        .await
        .with_context(|| format!("listening for app traffic on {}", cfg.http_listen))?;
    let https_listener = TcpListener::bind(cfg.https_listen)
        .await
        .with_context(|| format!("listening for HTTPS app traffic on {}", cfg.https_listen))?;
    let api_addr = api_listener.local_addr()?;
    let http_addr = http_listener.local_addr()?;
    let https_addr = https_listener.local_addr()?;

    let admin_listener = TcpListener::bind(cfg.admin_listen).await.with_context(|| {
        format!(
            "listening for the router's /health and /metrics on {}",
            cfg.admin_listen
        )
    })?;
    let admin_addr = admin_listener.local_addr()?;
    // Access log lines go to the app's logs as RTR; the platform that holds the logs is
    // made after the router, so the sink finds it through a cell filled in below.
    let logs_of: Arc<std::sync::OnceLock<Arc<platform::Platform>>> = Arc::default();
    let sink_cell = Arc::clone(&logs_of);
    // Written off the request path, in batches (see `with_queued_access_log`).
    let write = move |batch: &[paas_router::ops::AccessLog]| {
        let Some(p) = sink_cell.get() else { return };
        for entry in batch {
            let Some(app) = entry.app.as_deref() else {
                continue;
            };
            if let Ok(app) = paas_api::AppName::parse(app) {
                p.logs
                    .append(&app, "RTR", paas_api::LogStream::Out, &entry.line());
            }
        }
    };
    let router = Arc::new(
        paas_router::Router::with_config(paas_router::RouterConfig {
            trusted_proxies: cfg.trusted_proxies.clone(),
            response_timeout: cfg.response_timeout,
            max_connections: cfg.max_connections,
            max_connections_per_client: cfg.max_connections_per_client,
            ..Default::default()
        })
        .with_queued_access_log(paas_router::ops::ACCESS_QUEUE, write),
    );
    // In a cluster, hosts fetch blobs from each other.
    let peer_listener = match cfg.etcd_endpoints.is_empty() {
        true => None,
        false => Some(peer::bind(&cfg).await?),
    };
    let peer_addr = peer_listener
        .as_ref()
        .map(TcpListener::local_addr)
        .transpose()?;
    let platform =
        platform::Platform::open(&cfg, http_addr.port(), Arc::clone(&router), peer_addr).await?;
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
    platform.refresh_certificates().await;
    platform.restore().await;

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let router_task =
        tokio::spawn(Arc::clone(&router).run(http_listener, stopped(stop_rx.clone())));
    let admin_task =
        tokio::spawn(Arc::clone(&router).run_admin(admin_listener, stopped(stop_rx.clone())));
    let https_task = {
        let serve = Arc::clone(&router).run_tls(https_listener, stopped(stop_rx.clone()));
        tokio::spawn(async move {
            if let Err(e) = serve.await {
                tracing::error!("the router's HTTPS listener cannot start: {e}");
            }
        })
    };
    let peer_task = match (peer_listener, platform.peers()) {
        (Some(listener), Some(peers)) => Some(tokio::spawn(
            peers.serve(listener, stopped(stop_rx.clone())),
        )),
        _ => None,
    };
    let api = api::router(Arc::clone(&platform), token);
    let api_task = tokio::spawn(api::run(api, api_listener, tls, stopped(stop_rx.clone())));

    // The one line scripts and tests wait for: where to reach this daemon.
    // Everything the parts above made in the data folder exists by now.
    data_dir::lock_down(&cfg.data_dir)?;
    println!(
        "paasd ready api=https://{api_addr} router=http://{http_addr} https=https://{https_addr} admin=http://{admin_addr} domain={}",
        cfg.domain
    );
    tracing::info!(%api_addr, %http_addr, domain = %cfg.domain, data_dir = %cfg.data_dir.display(), "paasd is ready");

    shutdown.await;
    if !cfg.drain.is_zero() {
        // /health fails first; traffic is still served for the drain window.
        tracing::info!("stopping: draining for {} s", cfg.drain.as_secs());
        router.metrics().begin_drain();
        tokio::time::sleep(cfg.drain).await;
    }
    tracing::info!("stopping: closing listeners, stopping instances");
    let _ = stop_tx.send(true);
    platform.shutdown().await;
    let _ = tokio::join!(router_task, https_task, api_task, admin_task);
    if let Some(t) = peer_task {
        let _ = t.await;
    }
    Ok(())
}
