//! The peer listener's side: what a host serves the others of its cluster, to those
//! that show the cluster's token.
//!
//! - `GET /blobs/SHA`: a blob this host keeps;
//! - `POST /blobs/SHA/keep`: fetch blob SHA from a host that keeps it and keep it too
//!   (the second copy of a droplet or package);
//! - `GET /logs/APP[?follow=true|?new=true|?since=MS]`: the log lines this host keeps of
//!   an app (the recent ones, then each new one; only new ones; those from a moment on),
//!   NDJSON;
//! - `POST /instances/ID/exec` (a JSON list: the command and its arguments): runs it
//!   in instance ID of this host's cell, answering as `POST /v1/apps/NAME/exec` does;
//! - `POST /stage` (a `StageOrder`): stages an app for a controller without a cell
//!   (`stage.rs`), answering its output lines and then the droplet's hash, NDJSON;
//! - `GET /usage`: each instance placed on this host's cell as measured now (CPU,
//!   memory, disk), by id;
//! - `POST /tasks` (a `TaskOrder` line, then an attached task's input): runs a task on
//!   this host's cell for a controller (`tasks.rs`), answering its output and then its
//!   end, NDJSON; `POST /tasks/ID/terminate` stops it, `POST /tasks/ID/resize` (a
//!   `TerminalSize`) resizes its terminal;
//! - `POST /deployments/APP/continue` and `.../cancel`: finishes or takes back a paused
//!   canary deployment this controller holds, for another controller (the first
//!   answers the deployment's events, NDJSON).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use paas_api::AppName;

use super::Peers;
use crate::api::LogLines;
use crate::blobs::is_sha256;

impl Peers {
    /// Serves this host's side to its peers on `listener` until `shutdown` completes.
    pub async fn serve(
        self: Arc<Self>,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        let tls = Arc::clone(&self.server);
        let routes = axum::Router::new()
            .route("/blobs/{sha}", get(blob))
            .route("/blobs/{sha}/keep", post(keep))
            .route("/logs/{app}", get(logs))
            .route("/instances/{id}/exec", post(exec))
            .route("/usage", get(usage))
            .route("/stage", post(stage))
            .route("/tasks", post(run_task))
            .route("/tasks/{id}/terminate", post(terminate_task))
            .route("/tasks/{id}/resize", post(resize_task))
            .route("/deployments/{app}/continue", post(continue_deployment))
            .route("/deployments/{app}/cancel", post(cancel_deployment))
            .layer(middleware::from_fn_with_state(
                Arc::clone(&self),
                only_peers,
            ))
            .with_state(self);
        crate::api::run(routes, listener, tls, shutdown).await;
    }
}

/// Lets through only requests with the cluster's token.
async fn only_peers(State(peers): State<Arc<Peers>>, req: Request, next: Next) -> Response {
    let shown = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if !crate::secrets::constant_time_eq(shown.as_bytes(), peers.token.as_bytes()) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    next.run(req).await
}

async fn blob(State(peers): State<Arc<Peers>>, Path(sha): Path<String>) -> Response {
    if !is_sha256(&sha) {
        return StatusCode::NOT_FOUND.into_response();
    }
    match tokio::fs::File::open(peers.blobs.path(&sha)).await {
        Ok(f) => crate::api::body::file(f, "application/octet-stream").into_response(),
        Err(_) => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn keep(State(peers): State<Arc<Peers>>, Path(sha): Path<String>) -> Response {
    if !is_sha256(&sha) {
        return StatusCode::NOT_FOUND.into_response();
    }
    match peers.blob(&sha).await {
        Ok(_) => StatusCode::OK.into_response(),
        Err(e) => {
            tracing::warn!(blob = %sha, "keeping a copy for the cluster: {e:#}");
            StatusCode::BAD_GATEWAY.into_response()
        }
    }
}

async fn logs(
    State(peers): State<Arc<Peers>>,
    Path(app): Path<String>,
    uri: axum::http::Uri,
) -> Response {
    let Ok(app) = AppName::parse(&app) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let query = uri.query().unwrap_or("");
    let since = crate::api::query::param(query, "since").and_then(|v| v.parse().ok());
    let which = if let Some(ms) = since {
        LogLines::Since(ms)
    } else if crate::api::query::flag(query, "new") {
        LogLines::New
    } else if crate::api::query::flag(query, "follow") {
        LogLines::Follow
    } else {
        LogLines::Recent
    };
    crate::api::stream_logs(&peers.logs, &app, which).into_response()
}

async fn stage(State(peers): State<Arc<Peers>>, body: Body) -> Response {
    let order: paas_api::state::StageOrder = match crate::api::read_json(body).await {
        Ok(o) => o,
        Err(_) => return StatusCode::BAD_REQUEST.into_response(),
    };
    let (out, resp) = crate::api::body::ndjson_stream();
    tokio::spawn(peers.stage_for_peer(order, out));
    resp.into_response()
}

async fn usage(State(peers): State<Arc<Peers>>) -> Response {
    crate::api::body::json(200, &peers.cell.assigned_summaries()).into_response()
}

async fn exec(State(peers): State<Arc<Peers>>, Path(id): Path<String>, body: Body) -> Response {
    let command: Vec<String> = match crate::api::read_json(body).await {
        Ok(c) => c,
        Err(_) => return StatusCode::BAD_REQUEST.into_response(),
    };
    let Some(target) = peers
        .cell
        .assigned_instance(&id)
        .and_then(|i| i.exec_target())
    else {
        return StatusCode::NOT_FOUND.into_response();
    };
    match peers
        .cell
        .exec(&target, &paas_stager::shell::join(&command))
    {
        Ok(child) => crate::api::stream_exec(child).into_response(),
        Err(e) => {
            tracing::warn!(instance = %id, "exec for a peer: {e}");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

async fn run_task(State(peers): State<Arc<Peers>>, body: Body) -> Response {
    let Ok((order, input)) = crate::api::tasks::request_then_input(body).await else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let (out, resp) = crate::api::body::ndjson_stream();
    tokio::spawn(peers.run_task_for_peer(order, input, out));
    resp.into_response()
}

async fn terminate_task(State(peers): State<Arc<Peers>>, Path(id): Path<String>) -> Response {
    match peers.terminate_task_here(&id).await {
        true => StatusCode::OK.into_response(),
        false => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn resize_task(
    State(peers): State<Arc<Peers>>,
    Path(id): Path<String>,
    body: Body,
) -> Response {
    let Ok(size) = crate::api::read_json::<paas_api::TerminalSize>(body).await else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    match peers.resize_task_here(&id, size) {
        true => StatusCode::OK.into_response(),
        false => StatusCode::NOT_FOUND.into_response(),
    }
}

/// This host's platform, and the app of a deployment path.
fn holder(peers: &Peers, app: &str) -> Option<(Arc<crate::platform::Platform>, AppName)> {
    let platform = peers.platform.get().and_then(std::sync::Weak::upgrade)?;
    Some((platform, AppName::parse(app).ok()?))
}

async fn continue_deployment(State(peers): State<Arc<Peers>>, Path(app): Path<String>) -> Response {
    let Some((platform, app)) = holder(&peers, &app) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let (out, resp) = crate::api::body::ndjson_stream();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<paas_api::DeployEvent>();
    tokio::spawn(async move {
        let failed = tx.clone();
        let run = platform.continue_deployment(&app, &tx);
        if let Err(e) = platform.run_roll_out(&app, "deployment", run).await {
            let _ = failed.send(paas_api::DeployEvent::Failed { error: e.body });
        }
    });
    tokio::spawn(async move {
        while let Some(e) = rx.recv().await {
            if !out.send(&e).await {
                return;
            }
        }
    });
    resp.into_response()
}

async fn cancel_deployment(State(peers): State<Arc<Peers>>, Path(app): Path<String>) -> Response {
    let Some((platform, app)) = holder(&peers, &app) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    match platform.cancel_deployment(&app).await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => {
            tracing::warn!(%app, "cancelling a deployment for a peer: {}", e.body.message);
            StatusCode::CONFLICT.into_response()
        }
    }
}
