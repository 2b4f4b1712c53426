//! `/v1/apps/{name}...`: apps, their deployments and roll-outs, environment, events,
//! logs, revisions, droplet and exec.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::Extension;
use http::{Response, Uri};
use paas_api::auth::DEFAULT_SPACE;
use paas_api::{
    AppName, AppSettings, DeployEvent, DeployRequest, ExecRequest, Info, Revision, RollbackRequest,
    RolloutRequest, ScaleRequest,
};

use super::body::{self, ApiBody};
use super::extract::{read_json, read_optional_json, AppPath};
use super::failure::Failure;
use super::{page, query, LogLines};
use crate::blobs::is_sha256;
use crate::platform::access::Caller;
use crate::platform::quota::Demand;
use crate::platform::Execution;
use crate::platform::Platform;

pub async fn info(State(p): State<Arc<Platform>>) -> Response<ApiBody> {
    body::json(
        200,
        &Info {
            version: env!("CARGO_PKG_VERSION").to_string(),
            domain: p.domain.clone(),
            router_url: p.router_url(),
        },
    )
}

/// The cells that are up, by id.
pub async fn cells(State(p): State<Arc<Platform>>, uri: Uri) -> Result<Response<ApiBody>, Failure> {
    let cells = p.store.cells().await.map_err(Failure::internal)?;
    page::list(&cells, uri.path(), uri.query().unwrap_or(""))
}

/// The apps the caller sees (in the space of `?space=`, if given).
pub async fn list(
    State(p): State<Arc<Platform>>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
) -> Result<Response<ApiBody>, Failure> {
    let mut apps = p.store.apps().await.map_err(Failure::internal)?;
    let space = query::param(uri.query().unwrap_or(""), "space");
    apps.retain(|a| caller.sees(&a.space) && space.as_ref().is_none_or(|s| *s == a.space));
    let summaries = p.summaries(&apps).await;
    page::list(&summaries, uri.path(), uri.query().unwrap_or(""))
}

pub async fn get_app(
    State(p): State<Arc<Platform>>,
    AppPath(app): AppPath,
) -> Result<Response<ApiBody>, Failure> {
    let app = &app;
    let record = p.app_record(app).await?;
    Ok(body::json(200, &p.summary(&record).await))
}

/// Creates or changes an app. A new app is made in the space of `?space=` (else the
/// default one: the access rule checked the caller may) and gets the route
/// `NAME.DOMAIN` unless the query says `default-route=false` (the CLI's `--no-route`
/// and `--random-route`). What it would run must fit its space's quota.
pub async fn put_app(
    State(p): State<Arc<Platform>>,
    Extension(caller): Extension<Caller>,
    AppPath(app): AppPath,
    uri: Uri,
    body: Body,
) -> Result<Response<ApiBody>, Failure> {
    let (app, query) = (&app, uri.query().unwrap_or(""));
    let mut settings: AppSettings = read_json(body).await?;
    check_instances(settings.instances)?;
    if let Some(t) = settings.start_timeout_secs {
        if t == 0 || t > AppSettings::MAX_START_TIMEOUT_SECS {
            return Err(Failure::new(
                422,
                "invalid-timeout",
                format!("a start timeout of {t} seconds is not allowed"),
                Some(&format!(
                    "ask for 1 to {} seconds",
                    AppSettings::MAX_START_TIMEOUT_SECS
                )),
            ));
        }
    }
    for check in [
        Some(&settings.health_check),
        settings.readiness_check.as_ref(),
    ] {
        if let Some(paas_api::HealthCheck::Http { endpoint }) = check {
            if let Err(e) = paas_api::HealthCheck::parse("http", Some(endpoint)) {
                return Err(Failure::new(422, "invalid-health-check", e, None));
            }
        }
    }
    for (what, value, max) in [
        (
            "health check interval",
            settings.health_check_interval_secs,
            AppSettings::MAX_CHECK_INTERVAL_SECS,
        ),
        (
            "health check invocation timeout",
            settings.health_check_timeout_secs,
            AppSettings::MAX_CHECK_TIMEOUT_SECS,
        ),
        (
            "readiness check interval",
            settings.readiness_check_interval_secs,
            AppSettings::MAX_CHECK_INTERVAL_SECS,
        ),
        (
            "readiness check invocation timeout",
            settings.readiness_check_timeout_secs,
            AppSettings::MAX_CHECK_TIMEOUT_SECS,
        ),
    ] {
        if value.is_some_and(|v| v == 0 || v > max) {
            return Err(Failure::new(
                422,
                "invalid-health-check",
                format!("a {what} of {} seconds is not allowed", value.unwrap_or(0)),
                Some(&format!("ask for 1 to {max} seconds")),
            ));
        }
    }
    if let Some(c) = &settings.command {
        if c.trim().is_empty() || c.contains('\0') {
            return Err(Failure::new(
                422,
                "invalid-command",
                "the start command is empty or holds a NUL byte",
                None,
            ));
        }
    }
    let existing = p.store.app(app).await.map_err(Failure::internal)?;
    let is_new = existing.is_none();
    let space = match &existing {
        Some(a) => a.space.clone(),
        None => query::param(query, "space").unwrap_or_else(|| DEFAULT_SPACE.to_string()),
    };
    if settings.outbound.is_none() {
        // A push does not say: outbound access stays as it was.
        settings.outbound = Some(existing.as_ref().is_some_and(|a| a.settings.outbound()));
    }
    match settings.stack.take() {
        Some(stack) => {
            if !p.stacks().iter().any(|s| s.name == stack) {
                return Err(Failure::new(
                    422,
                    "unknown-stack",
                    format!("there is no stack {stack:?} on this platform"),
                    Some(&format!(
                        "see `paas stacks`: {}; an operator builds one with `paasd stack build`",
                        p.stacks()
                            .iter()
                            .map(|s| s.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )),
                ));
            }
            settings.stack = Some(stack);
        }
        // A push that does not say keeps the app's stack; a new app gets the default.
        None => {
            settings.stack = Some(
                existing
                    .as_ref()
                    .and_then(|a| a.settings.stack.clone())
                    .unwrap_or_else(|| p.default_stack()),
            )
        }
    }
    if settings.processes.is_empty() {
        // Nor does it say how the other process types are scaled: that stays too.
        settings.processes = existing
            .as_ref()
            .map(|a| a.settings.processes.clone())
            .unwrap_or_default();
    }
    let release = existing.as_ref().and_then(|a| a.release.as_ref());
    let running = existing
        .as_ref()
        .filter(|a| !a.stopped)
        .map(|a| (&a.settings, release));
    if existing.as_ref().is_none_or(|a| !a.stopped) {
        let mut more = Demand::settings(running, (&settings, release));
        if is_new && query::param(query, "default-route").as_deref() != Some("false") {
            more.routes = 1;
        }
        p.check_quota(&space, more).await?;
    }
    let record = p
        .store
        .put_app(app, &settings, &space)
        .await
        .map_err(Failure::internal)?;
    if is_new {
        p.logs.created(app);
    }
    if is_new && query::param(query, "default-route").as_deref() != Some("false") {
        let route = p.default_route(app)?;
        if let Err(f) = p.map_route(&caller, app, &route, Default::default()).await {
            // A new app whose route is taken is not created: nothing is half-made.
            let _ = p.store.delete_app(app, false).await;
            p.forget_app_space(app);
            return Err(f.into());
        }
    }
    Ok(body::json(
        if is_new { 201 } else { 200 },
        &p.summary(&record).await,
    ))
}

/// Runs a command in an instance and streams its output, then its exit code. A client
/// that goes away kills the command.
pub async fn exec(
    State(p): State<Arc<Platform>>,
    AppPath(app): AppPath,
    body: Body,
) -> Result<Response<ApiBody>, Failure> {
    let app = &app;
    let ExecRequest {
        index,
        command,
        process,
    } = read_json(body).await?;
    if command.is_empty() || command.iter().any(|a| a.contains('\0')) {
        return Err(Failure::new(
            400,
            "invalid-request",
            "give a command to run, with no NUL bytes",
            None,
        ));
    }
    p.app_record(app).await?;
    let process = process.as_deref().unwrap_or(paas_api::WEB);
    match p.exec(app, process, index, &command).await? {
        Execution::Here(child) => Ok(super::stream_exec(child)),
        Execution::There(mut events) => {
            let (out, resp) = body::ndjson_stream();
            tokio::spawn(async move {
                while let Some(event) = events.recv().await {
                    if !out.send(&event).await {
                        return;
                    }
                }
            });
            Ok(resp)
        }
    }
}

pub async fn get_env(
    State(p): State<Arc<Platform>>,
    AppPath(app): AppPath,
) -> Result<Response<ApiBody>, Failure> {
    Ok(body::json(200, &p.app_record(&app).await?.env))
}

/// `{"KEY": "value", "OTHER": null}` sets KEY and removes OTHER. Takes effect at the next
/// push or restart.
pub async fn patch_env(
    State(p): State<Arc<Platform>>,
    AppPath(app): AppPath,
    body: Body,
) -> Result<Response<ApiBody>, Failure> {
    let app = &app;
    let changes: std::collections::BTreeMap<String, Option<String>> = read_json(body).await?;
    p.app_record(app).await?;
    for (k, v) in &changes {
        paas_api::check_env_name(k).map_err(|e| Failure::new(422, "invalid-env", e, None))?;
        if v.as_deref().is_some_and(|v| v.contains('\0')) {
            return Err(Failure::new(
                422,
                "invalid-env",
                format!("the value of {k} holds a NUL byte"),
                None,
            ));
        }
    }
    let env = p
        .store
        .update_env(app, &changes)
        .await
        .map_err(Failure::internal)?;
    Ok(body::json(200, &env))
}

pub async fn events(
    State(p): State<Arc<Platform>>,
    AppPath(app): AppPath,
    uri: Uri,
) -> Result<Response<ApiBody>, Failure> {
    let (app, path, query) = (&app, uri.path(), uri.query().unwrap_or(""));
    p.app_record(app).await?;
    if !query::flag(query, "follow") {
        let events = p.store.events(app).await.map_err(Failure::internal)?;
        return page::list(&events, path, query);
    }
    // `?follow`: the recorded events, then each new one as it is recorded, as NDJSON.
    let (recorded, mut live) = p.follow_events(app).await?;
    let (out, resp) = body::ndjson_stream();
    let app = app.clone();
    tokio::spawn(async move {
        for e in &recorded {
            if !out.send(e).await {
                return;
            }
        }
        loop {
            let next = tokio::select! {
                () = out.closed() => return,
                next = live.recv() => next,
            };
            match next {
                Ok((a, e)) if a == app => {
                    if !out.send(&e).await {
                        return;
                    }
                }
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    });
    Ok(resp)
}

/// Streams the deployment's events as NDJSON. The deployment runs in its own task, so a
/// client that goes away does not stop it half-way.
pub async fn deploy(
    State(p): State<Arc<Platform>>,
    AppPath(app): AppPath,
    body: Body,
) -> Result<Response<ApiBody>, Failure> {
    let (p, app) = (&p, &app);
    let DeployRequest {
        package,
        start,
        rollout,
    } = read_json(body).await?;
    check_rollout(&rollout)?;
    if !is_sha256(&package) {
        return Err(Failure::new(
            400,
            "invalid-request",
            "package must be a SHA-256 in lowercase hex",
            None,
        ));
    }
    if start {
        fits_when_started(p, app).await?;
    }
    Ok(stream_deployment(p, app, package, start, rollout))
}

fn check_rollout(r: &RolloutRequest) -> Result<(), Failure> {
    match (r.strategy, r.max_in_flight) {
        (None, Some(_)) => Err(Failure::new(
            422,
            "invalid-rollout",
            "max-in-flight goes with a strategy (rolling or canary)",
            None,
        )),
        (_, Some(n)) if n == 0 || n > crate::platform::MAX_IN_FLIGHT => Err(Failure::new(
            422,
            "invalid-rollout",
            format!("a max-in-flight of {n} is not allowed"),
            Some(&format!("ask for 1 to {}", crate::platform::MAX_IN_FLIGHT)),
        )),
        _ => Ok(()),
    }
}

/// Stages the current package again, as a new deployment.
pub async fn restage(
    State(p): State<Arc<Platform>>,
    AppPath(app): AppPath,
    body: Body,
) -> Result<Response<ApiBody>, Failure> {
    let rollout: RolloutRequest = read_optional_json(body).await?;
    check_rollout(&rollout)?;
    let (p, app) = (&p, &app);
    let record = p.app_record(app).await?;
    let release = record.release.ok_or_else(|| {
        Failure::new(
            422,
            "nothing-to-restage",
            format!("app {app} has never been staged"),
            Some(&format!("push it first: `paas push {app}`")),
        )
    })?;
    fits_when_started(p, app).await?;
    Ok(stream_deployment(p, app, release.package, true, rollout))
}

/// The droplet the app runs, as a tar.gz.
pub async fn droplet(
    State(p): State<Arc<Platform>>,
    AppPath(app): AppPath,
) -> Result<Response<ApiBody>, Failure> {
    let app = &app;
    let record = p.app_record(app).await?;
    let release = record.release.ok_or_else(|| {
        Failure::new(
            404,
            "no-droplet",
            format!("app {app} has no droplet yet"),
            Some(&format!("push it first: `paas push {app}`")),
        )
    })?;
    let path = p.blob(&release.droplet).await?;
    let file = tokio::fs::File::open(path)
        .await
        .map_err(Failure::internal)?;
    Ok(body::file(file, "application/gzip"))
}

/// Deletes the app; `?routes=true` deletes its routes too (else they stay, unmapped).
pub async fn delete(
    State(p): State<Arc<Platform>>,
    AppPath(app): AppPath,
    uri: Uri,
) -> Result<Response<ApiBody>, Failure> {
    let routes = query::flag(uri.query().unwrap_or(""), "routes");
    p.delete(&app, routes).await?;
    Ok(body::empty(204))
}

/// Rolls the app over to its current release again (`restart` and `start`).
pub async fn restart(
    State(p): State<Arc<Platform>>,
    AppPath(app): AppPath,
    body: Body,
) -> Result<Response<ApiBody>, Failure> {
    let rollout: RolloutRequest = read_optional_json(body).await?;
    check_rollout(&rollout)?;
    fits_when_started(&p, &app).await?;
    Ok(stream_restart(&p, &app, None, rollout))
}

/// A stopped app counts for nothing in its space's quota: what starts it (start,
/// deploy, restage, rollback) must fit.
async fn fits_when_started(p: &Platform, app: &AppName) -> Result<(), Failure> {
    let record = p.app_record(app).await?;
    if record.stopped {
        let more = Demand::settings(None, (&record.settings, record.release.as_ref()));
        p.check_quota(&record.space, more).await?;
    }
    Ok(())
}

/// Finishes a paused canary deployment, streamed like a deployment.
pub async fn continue_deployment(
    State(p): State<Arc<Platform>>,
    AppPath(app): AppPath,
) -> Response<ApiBody> {
    stream_roll_out(
        &p,
        &app.clone(),
        "deployment",
        move |platform, tx| async move { platform.continue_deployment(&app, &tx).await },
    )
}

/// Takes a paused canary deployment back.
pub async fn cancel_deployment(
    State(p): State<Arc<Platform>>,
    AppPath(app): AppPath,
) -> Result<Response<ApiBody>, Failure> {
    p.cancel_deployment(&app).await?;
    Ok(body::empty(204))
}

/// Scales the app (`{"instances": N, "memory": SIZE, "disk": SIZE}`, each optional),
/// streamed like a deployment.
pub async fn scale(
    State(p): State<Arc<Platform>>,
    AppPath(app): AppPath,
    body: Body,
) -> Result<Response<ApiBody>, Failure> {
    let change: ScaleRequest = read_json(body).await?;
    if let Some(n) = change.instances {
        check_instances(n)?;
    }
    if let Some(p) = change
        .process
        .as_deref()
        .filter(|p| !paas_api::is_process_type(p))
    {
        return Err(Failure::new(
            422,
            "invalid-process-type",
            format!("{p:?} is not a process type"),
            Some("process types are 1 to 63 letters, digits, '-' or '_', as in a Procfile"),
        ));
    }
    Ok(stream_roll_out(
        &p,
        &app.clone(),
        "scale",
        move |platform, tx| async move { platform.scale(&app, &change, &tx).await },
    ))
}

fn check_instances(n: u32) -> Result<(), Failure> {
    if n == 0 || n > AppSettings::MAX_INSTANCES {
        return Err(Failure::new(
            422,
            "invalid-instances",
            format!("{n} instances is not allowed"),
            Some(&format!("ask for 1 to {}", AppSettings::MAX_INSTANCES)),
        ));
    }
    Ok(())
}

/// Rolls the app back to the release of `{"version": N}`.
pub async fn rollback(
    State(p): State<Arc<Platform>>,
    AppPath(app): AppPath,
    body: Body,
) -> Result<Response<ApiBody>, Failure> {
    let RollbackRequest { version, rollout } = read_json(body).await?;
    fits_when_started(&p, &app).await?;
    check_rollout(&rollout)?;
    Ok(stream_restart(&p, &app, Some(version), rollout))
}

pub async fn stop(
    State(p): State<Arc<Platform>>,
    AppPath(app): AppPath,
) -> Result<Response<ApiBody>, Failure> {
    p.stop_app(&app).await?;
    Ok(body::empty(204))
}

/// Rolls the app over to its current (restart) or an older (rollback) release, streamed
/// like a deployment.
fn stream_restart(
    p: &Arc<Platform>,
    app: &AppName,
    version: Option<i64>,
    rollout: RolloutRequest,
) -> Response<ApiBody> {
    let what = if version.is_some() {
        "rollback"
    } else {
        "restart"
    };
    let app = app.clone();
    stream_roll_out(p, &app.clone(), what, move |platform, tx| async move {
        platform.restart(&app, version, &rollout, &tx).await
    })
}

pub async fn revisions(
    State(p): State<Arc<Platform>>,
    AppPath(app): AppPath,
    uri: Uri,
) -> Result<Response<ApiBody>, Failure> {
    let (app, path, query) = (&app, uri.path(), uri.query().unwrap_or(""));
    let record = p.app_record(app).await?;
    let current = record.release.map(|r| r.version);
    let releases = p.store.releases(app).await.map_err(Failure::internal)?;
    // Newest first: each one's predecessor follows it.
    let list: Vec<Revision> = releases
        .iter()
        .enumerate()
        .map(|(i, r)| Revision {
            available: p.blobs.exists(&r.droplet),
            current: Some(r.version) == current,
            version: r.version,
            changes: r.changes_in_history(releases.get(i + 1)),
            droplet: r.droplet.clone(),
            buildpack: r.buildpack.clone(),
            start_command: r.start_command.clone(),
        })
        .collect();
    page::list(&list, path, query)
}

/// Runs a deployment in its own task and streams its events as NDJSON.
fn stream_deployment(
    p: &Arc<Platform>,
    app: &AppName,
    package: String,
    start: bool,
    rollout: RolloutRequest,
) -> Response<ApiBody> {
    let app = app.clone();
    stream_roll_out(
        p,
        &app.clone(),
        "deployment",
        move |platform, tx| async move { platform.deploy(&app, &package, start, &rollout, &tx).await },
    )
}

/// Runs `work` (a deployment, restart or rollback) in its own task, so a client that
/// goes away does not stop it half-way, and streams its events as NDJSON; a failure
/// becomes the last event.
fn stream_roll_out<F, Fut>(
    p: &Arc<Platform>,
    app: &AppName,
    what: &'static str,
    work: F,
) -> Response<ApiBody>
where
    F: FnOnce(Arc<Platform>, tokio::sync::mpsc::UnboundedSender<DeployEvent>) -> Fut
        + Send
        + 'static,
    Fut: std::future::Future<Output = Result<(), crate::platform::Error>> + Send + 'static,
{
    let (out, resp) = body::ndjson_stream();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<DeployEvent>();
    let (platform, app) = (Arc::clone(p), app.clone());
    tokio::spawn(async move {
        let failed = tx.clone();
        let run = work(Arc::clone(&platform), tx);
        if let Err(f) = platform.run_roll_out(&app, what, run).await {
            let _ = failed.send(DeployEvent::Failed { error: f.body });
        }
    });
    tokio::spawn(forward_deploy_events(Arc::clone(p), rx, out));
    resp
}

/// Passes a roll-out's events to its client. Log lines that a slow client has no room
/// for are dropped (and counted in a line that says so: `paas logs` has them all); the
/// other events wait, in order, for room, while later lines keep being taken from the
/// roll-out, so neither the roll-out nor paasd's memory waits on the client.
async fn forward_deploy_events(
    p: Arc<Platform>,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<DeployEvent>,
    out: body::NdjsonSender,
) {
    use body::TrySend;
    let mut waiting: std::collections::VecDeque<DeployEvent> = Default::default();
    let mut dropped: u64 = 0;
    let mut gone = false;
    let note = |dropped: u64| {
        DeployEvent::Log(paas_api::LogLine {
            timestamp_ms: crate::logs::now_ms(),
            source: "API".into(),
            stream: paas_api::LogStream::Err,
            line: format!(
                "{dropped} log lines were not sent because the client read too slowly; `paas logs APP --recent` shows them"
            ),
        })
    };
    loop {
        let next = if waiting.is_empty() || gone {
            rx.recv().await
        } else {
            let front = waiting.front().cloned();
            tokio::select! {
                // Room for what waits comes first; only without it are lines taken
                // (and dropped) from the roll-out meanwhile.
                biased;
                sent = async {
                    match &front {
                        Some(event) => out.send(event).await,
                        None => true,
                    }
                } => {
                    if sent {
                        waiting.pop_front();
                    } else {
                        gone = true;
                    }
                    continue;
                }
                next = rx.recv() => next,
            }
        };
        let Some(event) = next else { break };
        if gone {
            continue; // nobody listens, but the roll-out goes on
        }
        if matches!(event, DeployEvent::Done { .. } | DeployEvent::Paused { .. }) {
            // The client hears "done" once the router routes the new instances.
            p.router_synced().await;
        }
        match event {
            DeployEvent::Log(_) if waiting.is_empty() => match out.try_send(&event) {
                TrySend::Sent => {}
                TrySend::Full => dropped += 1,
                TrySend::Gone => gone = true,
            },
            DeployEvent::Log(_) => dropped += 1,
            other => {
                if dropped > 0 {
                    waiting.push_back(note(std::mem::take(&mut dropped)));
                }
                waiting.push_back(other);
            }
        }
    }
    // The roll-out has ended: what waits still goes out, as long as the client listens.
    if dropped > 0 && !gone {
        waiting.push_back(note(dropped));
    }
    for event in waiting {
        if gone || !out.send(&event).await {
            return;
        }
    }
}

/// The app's requests, server errors and p95 response time through this host's
/// router, by minute, for the last 90 minutes (minutes without traffic left out).
pub async fn traffic(
    State(p): State<Arc<Platform>>,
    AppPath(app): AppPath,
) -> Result<Response<ApiBody>, Failure> {
    p.app_record(&app).await?;
    let minutes = p.traffic.of(app.as_str(), crate::logs::now_ms());
    Ok(body::json(200, &minutes))
}

/// The app's CPU and memory, all instances together, by minute, for the last hour.
pub async fn usage(
    State(p): State<Arc<Platform>>,
    AppPath(app): AppPath,
) -> Result<Response<ApiBody>, Failure> {
    p.app_record(&app).await?;
    let minutes = p.usage_history.of(app.as_str(), crate::logs::now_ms());
    Ok(body::json(200, &minutes))
}

/// `?recent` (the default) answers the recent lines; `?follow=true` keeps streaming.
pub async fn logs(
    State(p): State<Arc<Platform>>,
    AppPath(app): AppPath,
    uri: Uri,
) -> Result<Response<ApiBody>, Failure> {
    let (app, query) = (&app, uri.query().unwrap_or(""));
    p.app_record(app).await?;
    let follow = query::flag(query, "follow");
    let remote = p.log_peers(app);
    // Following in a cluster, cells that gain an instance of the app later count too.
    if remote.is_empty() && !(follow && p.in_cluster()) {
        let which = if follow {
            LogLines::Follow
        } else {
            LogLines::Recent
        };
        return Ok(super::stream_logs(&p.logs, app, which));
    }
    let (out, resp) = body::ndjson_stream();
    let (p, app) = (Arc::clone(&p), app.clone());
    tokio::spawn(async move {
        // Every host's recent lines in time order, then (following) each new line as
        // it comes from any of them.
        let mut live = follow.then(|| p.logs.follow(&app).1);
        let mut recent = p.logs.recent(&app);
        recent.extend(p.remote_recent_logs(&app, &remote).await);
        recent.sort_by_key(|l| l.timestamp_ms);
        for line in recent {
            if !out.send(&line).await {
                return;
            }
        }
        let Some(local) = live.take() else { return };
        let mut merged = p.new_logs(&app, local);
        while let Some(line) = merged.recv().await {
            if !out.send(&line).await {
                return;
            }
        }
    });
    Ok(resp)
}
