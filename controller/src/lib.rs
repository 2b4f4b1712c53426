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
    if cfg.roles.cell_alone() {
        return cell::run_alone(cfg, shutdown).await;
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
    let router_listeners = match cfg.roles.router {
        true => Some(RouterListeners::bind(&cfg).await?),
        false => None,
    };
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
    let router_port = router_listeners
        .as_ref()
        .map_or(cfg.http_listen.port(), |l| l.http_addr.port());
    let platform =
        platform::Platform::open(&cfg, router_port, Arc::clone(&router), peer_addr).await?;
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

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let (router_tasks, router_line) = match router_listeners {
        Some(l) => l.serve(&router, &stop_rx),
        None => (Vec::new(), "router=none".to_string()),
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
    let _ = api_task.await;
    for t in router_tasks {
        let _ = t.await;
    }
    if let Some(t) = peer_task {
        let _ = t.await;
    }
    Ok(())
}

/// The router's listeners (`--roles` with `router`): app traffic over HTTP and HTTPS, and
/// `/health` and `/metrics`.
struct RouterListeners {
    http: TcpListener,
    https: TcpListener,
    admin: TcpListener,
    http_addr: std::net::SocketAddr,
}

impl RouterListeners {
    async fn bind(cfg: &Config) -> anyhow::Result<Self> {
        let http = TcpListener::bind(cfg.http_listen)
            .await
            .with_context(|| format!("listening for app traffic on {}", cfg.http_listen))?;
        let https = TcpListener::bind(cfg.https_listen)
            .await
            .with_context(|| format!("listening for HTTPS app traffic on {}", cfg.https_listen))?;
        let admin = TcpListener::bind(cfg.admin_listen).await.with_context(|| {
            format!(
                "listening for the router's /health and /metrics on {}",
                cfg.admin_listen
            )
        })?;
        let http_addr = http.local_addr()?;
        Ok(RouterListeners {
            http,
            https,
            admin,
            http_addr,
        })
    }

    /// Serves until `stop` turns true; returns the tasks, and the part of the ready line
    /// that says where.
    fn serve(
        self,
        router: &Arc<paas_router::Router>,
        stop: &tokio::sync::watch::Receiver<bool>,
    ) -> (Vec<tokio::task::JoinHandle<()>>, String) {
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let line = format!(
            "router=http://{} https=https://{} admin=http://{}",
            self.http_addr,
            self.https
                .local_addr()
                .map_or_else(|_| "?".into(), |a| a.to_string()),
            self.admin
                .local_addr()
                .map_or_else(|_| "?".into(), |a| a.to_string()),
        );
        let http = tokio::spawn(Arc::clone(router).run(self.http, stopped(stop.clone())));
        let admin = tokio::spawn(Arc::clone(router).run_admin(self.admin, stopped(stop.clone())));
        let serve = Arc::clone(router).run_tls(self.https, stopped(stop.clone()));
        let https = tokio::spawn(async move {
            if let Err(e) = serve.await {
                tracing::error!("the router's HTTPS listener cannot start: {e}");
            }
        });
        (vec![http, admin, https], line)
    }
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
