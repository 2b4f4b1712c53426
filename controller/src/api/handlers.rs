//! `/v1` routes and their handlers.

use std::sync::Arc;

use http::{Method, Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use paas_api::{
    AppName, AppSettings, BuildpackName, BuildpackUpdate, DeployEvent, DeployRequest, ExecEvent,
    ExecRequest, Info, LogStream, PackageStored, ResourceRef, Revision, RollbackRequest,
};
use paas_stager::archive::{self, ArchivePolicy};
use serde::de::DeserializeOwned;

use super::body::{self, ApiBody};
use super::{page, query, routes};
use crate::blobs::is_sha256;
use crate::platform::{Failure, Platform};

/// The largest JSON request body.
const MAX_JSON_BYTES: u64 = 1 << 20;
/// The largest package upload (compressed).
const MAX_PACKAGE_BYTES: u64 = 512 << 20;

pub async fn route(p: &Arc<Platform>, req: Request<Incoming>) -> Response<ApiBody> {
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    let method = req.method().clone();
    let result = match (method.clone(), segments.as_slice()) {
        (Method::GET, ["v1", "info"]) => Ok(info(p)),
        (Method::GET, ["v1", "apps"]) => list_apps(p, &path, &query).await,
        (m, ["v1", "routes"]) => routes::routes(p, &m, &path, &query).await,
        (Method::GET, ["v1", "certificates"]) => p
            .certificates()
            .await
            .and_then(|c| page::list(&c, &path, &query)),
        (m, ["v1", "domains", rest @ ..]) => routes::domains(p, &m, rest, &path, &query, req).await,
        (Method::POST, ["v1", "resources", "match"]) => match_resources(p, req).await,
        (m, ["v1", "buildpacks", rest @ ..]) => buildpacks(p, m, rest, &path, &query, req).await,
        (m, ["v1", "apps", name, rest @ ..]) => match app_name(name) {
            Err(f) => Err(f),
            Ok(app) => match (m, rest) {
                (Method::GET, []) => get_app(p, &app).await,
                (Method::PUT, []) => put_app(p, &app, &query, req).await,
                (Method::DELETE, []) => p
                    .delete(&app, query::flag(&query, "routes"))
                    .await
                    .map(|()| body::empty(204)),
                (m, ["routes"]) => routes::app_routes(p, &app, &m, &path, &query, req).await,
                (Method::POST, ["packages"]) => upload_package(p, &app, &query, req).await,
                (Method::POST, ["deployments"]) => deploy(p, &app, req).await,
                (Method::POST, ["restage"]) => restage(p, &app).await,
                (Method::POST, ["restart"] | ["start"]) => Ok(stream_restart(p, &app, None)),
                (Method::POST, ["rollback"]) => read_json::<RollbackRequest>(req)
                    .await
                    .map(|r| stream_restart(p, &app, Some(r.version))),
                (Method::POST, ["stop"]) => p.stop_app(&app).await.map(|()| body::empty(204)),
                (Method::GET, ["revisions"]) => revisions(p, &app, &path, &query).await,
                (Method::GET, ["droplet"]) => droplet(p, &app).await,
                (Method::GET, ["logs"]) => logs(p, &app, &query).await,
                (Method::GET, ["events"]) => events(p, &app, &path, &query).await,
                (Method::GET, ["env"]) => get_env(p, &app).await,
                (Method::PATCH, ["env"]) => patch_env(p, &app, req).await,
                (Method::POST, ["exec"]) => exec(p, &app, req).await,
                _ => Err(not_found(&method, &path)),
            },
        },
        _ => Err(not_found(&method, &path)),
    };
    result.unwrap_or_else(body::failure)
}

pub(super) fn not_found(method: &Method, path: &str) -> Failure {
    Failure::new(
        404,
        "no-such-route",
        format!(
            "the API has no route {method} {}",
            path.chars().take(200).collect::<String>()
        ),
        Some("check that the CLI and paasd are the same version (`paas --version`)"),
    )
}

fn app_name(raw: &str) -> Result<AppName, Failure> {
    AppName::parse(raw).map_err(|e| Failure::new(400, "invalid-name", e.to_string(), None))
}

fn info(p: &Platform) -> Response<ApiBody> {
    body::json(
        200,
        &Info {
            version: env!("CARGO_PKG_VERSION").to_string(),
            domain: p.domain.clone(),
            router_url: p.router_url(),
        },
    )
}

async fn list_apps(p: &Platform, path: &str, query: &str) -> Result<Response<ApiBody>, Failure> {
    let apps = p.store.apps().await.map_err(Failure::internal)?;
    let summaries = p.summaries(&apps).await;
    page::list(&summaries, path, query)
}

async fn get_app(p: &Platform, app: &AppName) -> Result<Response<ApiBody>, Failure> {
    let record = p.app_record(app).await?;
    Ok(body::json(200, &p.summary(&record).await))
}

pub(super) async fn read_json<T: DeserializeOwned>(req: Request<Incoming>) -> Result<T, Failure> {
    read_json_up_to(req, MAX_JSON_BYTES as usize).await
}

/// Reads a JSON request body of at most `limit` bytes.
async fn read_json_up_to<T: DeserializeOwned>(
    req: Request<Incoming>,
    limit: usize,
) -> Result<T, Failure> {
    let limited = http_body_util::Limited::new(req.into_body(), limit);
    let bytes = limited
        .collect()
        .await
        .map_err(|e| {
            Failure::new(
                400,
                "invalid-request",
                format!("reading the request body: {e}"),
                None,
            )
        })?
        .to_bytes();
    serde_json::from_slice(&bytes).map_err(|e| {
        Failure::new(
            400,
            "invalid-request",
            format!("the request body is not valid: {e}"),
            None,
        )
    })
}

/// Creates or changes an app. A new app gets the route `NAME.DOMAIN` unless the query
/// says `default-route=false` (the CLI's `--no-route` and `--random-route`).
async fn put_app(
    p: &Platform,
    app: &AppName,
    query: &str,
    req: Request<Incoming>,
) -> Result<Response<ApiBody>, Failure> {
    let mut settings: AppSettings = read_json(req).await?;
    if settings.instances == 0 || settings.instances > AppSettings::MAX_INSTANCES {
        return Err(Failure::new(
            422,
            "invalid-instances",
            format!("{} instances is not allowed", settings.instances),
            Some(&format!("ask for 1 to {}", AppSettings::MAX_INSTANCES)),
        ));
    }
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
    if let paas_api::HealthCheck::Http { endpoint } = &settings.health_check {
        if let Err(e) = paas_api::HealthCheck::parse("http", Some(endpoint)) {
            return Err(Failure::new(422, "invalid-health-check", e, None));
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
    if settings.outbound.is_none() {
        // A push does not say: outbound access stays as it was.
        settings.outbound = Some(existing.is_some_and(|a| a.settings.outbound()));
    }
    let record = p
        .store
        .put_app(app, &settings)
        .await
        .map_err(Failure::internal)?;
    if is_new && query::param(query, "default-route").as_deref() != Some("false") {
        let route = p.default_route(app)?;
        if let Err(f) = p.map_route(app, &route, Default::default()).await {
            // A new app whose route is taken is not created: nothing is half-made.
            let _ = p.store.delete_app(app, false).await;
            return Err(f);
        }
    }
    Ok(body::json(
        if is_new { 201 } else { 200 },
        &p.summary(&record).await,
    ))
}

/// Runs a command in an instance and streams its output, then its exit code. A client
/// that goes away kills the command.
async fn exec(
    p: &Platform,
    app: &AppName,
    req: Request<Incoming>,
) -> Result<Response<ApiBody>, Failure> {
    let ExecRequest { index, command } = read_json(req).await?;
    if command.is_empty() || command.iter().any(|a| a.contains('\0')) {
        return Err(Failure::new(
            400,
            "invalid-request",
            "give a command to run, with no NUL bytes",
            None,
        ));
    }
    p.app_record(app).await?;
    let mut child = p.exec(app, index, &command)?;
    let (out, resp) = body::ndjson_stream();
    let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
    tokio::spawn(async move {
        // Each line waits for the client to take it: a client that reads slowly slows
        // the command (its pipe fills), and nothing piles up here.
        let pump = |pipe: Option<Box<dyn tokio::io::AsyncRead + Unpin + Send>>, stream| {
            let out = out.clone();
            async move {
                let Some(pipe) = pipe else { return };
                let mut lines = paas_runtime::output::Lines::new(pipe, 64 * 1024);
                while let Some(line) = lines.next_line().await {
                    if !out.send(&ExecEvent::Output { stream, line }).await {
                        return;
                    }
                }
            }
        };
        let run = async {
            tokio::join!(
                pump(stdout.map(|p| Box::new(p) as _), LogStream::Out),
                pump(stderr.map(|p| Box::new(p) as _), LogStream::Err)
            );
            child.wait().await
        };
        tokio::select! {
            status = run => {
                let code = status.ok().and_then(|s| s.code()).unwrap_or(-1);
                out.send(&ExecEvent::Exit { code }).await;
            }
            _ = out.closed() => {}
        }
    });
    Ok(resp)
}

async fn get_env(p: &Platform, app: &AppName) -> Result<Response<ApiBody>, Failure> {
    Ok(body::json(200, &p.app_record(app).await?.env))
}

/// `{"KEY": "value", "OTHER": null}` sets KEY and removes OTHER. Takes effect at the next
/// push or restart.
async fn patch_env(
    p: &Platform,
    app: &AppName,
    req: Request<Incoming>,
) -> Result<Response<ApiBody>, Failure> {
    let changes: std::collections::BTreeMap<String, Option<String>> = read_json(req).await?;
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

async fn events(
    p: &Platform,
    app: &AppName,
    path: &str,
    query: &str,
) -> Result<Response<ApiBody>, Failure> {
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

/// Stores a package after checking every entry: an unsafe archive is refused whole and
/// nothing of it is kept.
/// The largest resource-match request: 100,000 files.
const MAX_MATCH_BYTES: usize = 16 << 20;

/// Answers which of the listed files the platform holds, so the CLI need not send them.
async fn match_resources(
    p: &Platform,
    req: Request<Incoming>,
) -> Result<Response<ApiBody>, Failure> {
    let asked: Vec<ResourceRef> = read_json_up_to(req, MAX_MATCH_BYTES).await?;
    let held: Vec<&ResourceRef> = asked
        .iter()
        .filter(|r| {
            is_sha256(&r.sha256)
                && std::fs::metadata(p.resources.path(&r.sha256)).is_ok_and(|m| m.len() == r.size)
        })
        .collect();
    Ok(body::json(200, &held))
}

/// Stores an app package. With `?resources=true`, the upload lists files it left out
/// because the platform holds them (see `match_resources`); they are filled in here, and
/// the whole package is checked again.
async fn upload_package(
    p: &Platform,
    app: &AppName,
    query: &str,
    req: Request<Incoming>,
) -> Result<Response<ApiBody>, Failure> {
    p.app_record(app).await?;
    let (uploaded, bytes) = receive_archive(p, req, "package").await?;
    // Remember the content of every file that was sent, for the next push.
    let (src, resources) = (p.blobs.path(&uploaded), p.resources.clone());
    tokio::task::spawn_blocking(move || -> Result<(), String> {
        let f = std::fs::File::open(&src).map_err(|e| e.to_string())?;
        archive::for_each_file(std::io::BufReader::new(f), |_, content| {
            let mut w = resources
                .writer(u64::MAX)
                .map_err(|e| paas_stager::ArchiveError::Corrupt(std::io::Error::other(e)))?;
            let mut buf = [0u8; 64 * 1024];
            loop {
                let n = content
                    .read(&mut buf)
                    .map_err(paas_stager::ArchiveError::Corrupt)?;
                if n == 0 {
                    break;
                }
                w.write(&buf[..n])
                    .map_err(|e| paas_stager::ArchiveError::Corrupt(std::io::Error::other(e)))?;
            }
            resources
                .commit(w)
                .map_err(|e| paas_stager::ArchiveError::Corrupt(std::io::Error::other(e)))?;
            Ok(())
        })
        .map_err(|e| e.to_string())
    })
    .await
    .map_err(Failure::internal)?
    .map_err(Failure::internal)?;
    let with_resources = query::flag(query, "resources");
    if !with_resources {
        return Ok(body::json(
            201,
            &PackageStored {
                sha256: uploaded,
                bytes,
            },
        ));
    }
    let whole = tempfile::NamedTempFile::new_in(p.blobs.tmp_dir()).map_err(Failure::internal)?;
    let (src, dst, resources) = (
        p.blobs.path(&uploaded),
        whole.path().to_path_buf(),
        p.resources.clone(),
    );
    let refused = |e: paas_stager::ArchiveError| {
        Failure::new(
            422,
            "unsafe-package",
            format!("the upload was refused: {e}"),
            Some("upload only files inside the app folder; symlinks must point inside it too"),
        )
    };
    tokio::task::spawn_blocking(move || {
        let input = std::fs::File::open(&src).map_err(paas_stager::ArchiveError::Corrupt)?;
        let out = std::fs::File::create(&dst).map_err(paas_stager::ArchiveError::Corrupt)?;
        archive::fill_in_resources(
            std::io::BufReader::new(input),
            std::io::BufWriter::new(out),
            |sha| {
                is_sha256(sha)
                    .then(|| resources.path(sha))
                    .filter(|p| p.is_file())
            },
            ArchivePolicy::upload(),
        )?;
        let f = std::fs::File::open(&dst).map_err(paas_stager::ArchiveError::Corrupt)?;
        archive::scan(std::io::BufReader::new(f), ArchivePolicy::upload()).map(|_| ())
    })
    .await
    .map_err(Failure::internal)?
    .map_err(refused)?;
    let sha256 = p.blobs.put_file(whole.path()).map_err(Failure::internal)?;
    if sha256 != uploaded {
        let _ = std::fs::remove_file(p.blobs.path(&uploaded));
    }
    Ok(body::json(201, &PackageStored { sha256, bytes }))
}

/// Receives an uploaded archive (tar.gz, or zip which is rewritten as tar.gz), checks
/// every entry, and stores it as a blob. An unsafe archive is refused whole and nothing
/// of it is kept. Returns the blob's SHA-256 and the upload's size.
async fn receive_archive(
    p: &Platform,
    req: Request<Incoming>,
    what: &str,
) -> Result<(String, u64), Failure> {
    let mut writer = p
        .blobs
        .writer(MAX_PACKAGE_BYTES)
        .map_err(Failure::internal)?;
    let mut incoming = req.into_body();
    while let Some(frame) = incoming.frame().await {
        let frame = frame.map_err(|e| {
            Failure::new(
                400,
                "upload-failed",
                format!("reading the upload: {e}"),
                Some("try again"),
            )
        })?;
        if let Some(data) = frame.data_ref() {
            writer.write(data).map_err(|e| match e {
                crate::blobs::BlobError::TooLarge(mb) => Failure::new(
                    413,
                    "upload-too-large",
                    format!("the {what} is larger than {mb} MiB"),
                    Some("leave build output and dependencies out with a .paasignore file"),
                ),
                other => Failure::internal(other),
            })?;
        }
    }
    let uploaded = writer.bytes();
    let mut head = [0u8; 4];
    let n = std::fs::File::open(writer.path())
        .and_then(|mut f| std::io::Read::read(&mut f, &mut head))
        .map_err(Failure::internal)?;
    let refused = |e: paas_stager::ArchiveError| {
        Failure::new(
            422,
            &format!("unsafe-{what}"),
            format!("the upload was refused: {e}"),
            Some("upload only files inside the folder; symlinks must point inside it too"),
        )
    };
    // A zip is rewritten as a tar.gz next to the upload; the tar.gz is what is checked
    // and stored.
    let converted = match archive::Format::sniff(&head[..n]) {
        Some(archive::Format::TarGz) => None,
        Some(archive::Format::Zip) => {
            let tgz =
                tempfile::NamedTempFile::new_in(p.blobs.tmp_dir()).map_err(Failure::internal)?;
            let (src, dst) = (writer.path().to_path_buf(), tgz.path().to_path_buf());
            tokio::task::spawn_blocking(move || {
                let input =
                    std::fs::File::open(&src).map_err(paas_stager::ArchiveError::Corrupt)?;
                let out =
                    std::fs::File::create(&dst).map_err(paas_stager::ArchiveError::Corrupt)?;
                archive::zip_to_tar_gz(
                    std::io::BufReader::new(input),
                    std::io::BufWriter::new(out),
                    ArchivePolicy::upload(),
                )
            })
            .await
            .map_err(Failure::internal)?
            .map_err(refused)?;
            Some(tgz)
        }
        None => {
            return Err(Failure::new(
                422,
                &format!("unsafe-{what}"),
                format!("the {what} is neither a tar.gz nor a zip archive"),
                Some("upload a .tgz, .tar.gz or .zip file, or a folder with the CLI"),
            ))
        }
    };
    let path = converted
        .as_ref()
        .map_or(writer.path(), |t| t.path())
        .to_path_buf();
    let checked = path.clone();
    let scanned = tokio::task::spawn_blocking(move || {
        let f = std::fs::File::open(&checked)?;
        Ok::<_, std::io::Error>(archive::scan(
            std::io::BufReader::new(f),
            ArchivePolicy::upload(),
        ))
    })
    .await
    .map_err(Failure::internal)?
    .map_err(Failure::internal)?;
    scanned.map_err(refused)?;
    let sha256 = match converted {
        None => p.blobs.commit(writer),
        Some(_) => p.blobs.put_file(&path),
    }
    .map_err(Failure::internal)?;
    Ok((sha256, uploaded))
}

fn buildpack_name(raw: &str) -> Result<BuildpackName, Failure> {
    BuildpackName::parse(raw).map_err(|e| Failure::new(400, "invalid-name", e.to_string(), None))
}

/// `?position=N` of a query string.
fn position(query: &str) -> Result<Option<u32>, Failure> {
    match query::param(query, "position") {
        None => Ok(None),
        Some(v) => v.parse().map(Some).map_err(|_| {
            Failure::new(
                400,
                "invalid-position",
                format!("position {v:?} is not a whole number"),
                None,
            )
        }),
    }
}

async fn buildpacks(
    p: &Platform,
    method: Method,
    rest: &[&str],
    path: &str,
    query: &str,
    req: Request<Incoming>,
) -> Result<Response<ApiBody>, Failure> {
    match (method, rest) {
        (Method::GET, []) => page::list(&p.buildpacks.list(), path, query),
        (Method::POST, [name]) => {
            let name = buildpack_name(name)?;
            let position = position(query)?;
            let (sha, _) = receive_archive(p, req, "buildpack").await?;
            let info = p
                .buildpacks
                .create(&p.store, &p.blobs, &name, &sha, position)
                .await?;
            Ok(body::json(201, &info))
        }
        (Method::PUT, [name, "bits"]) => {
            let name = buildpack_name(name)?;
            let (sha, _) = receive_archive(p, req, "buildpack").await?;
            let info = p
                .buildpacks
                .update(
                    &p.store,
                    &p.blobs,
                    &name,
                    Some(&sha),
                    &BuildpackUpdate::default(),
                )
                .await?;
            Ok(body::json(200, &info))
        }
        (Method::PATCH, [name]) => {
            let name = buildpack_name(name)?;
            let update: BuildpackUpdate = read_json(req).await?;
            let info = p
                .buildpacks
                .update(&p.store, &p.blobs, &name, None, &update)
                .await?;
            Ok(body::json(200, &info))
        }
        (Method::DELETE, [name]) => {
            let name = buildpack_name(name)?;
            p.buildpacks.delete(&p.store, &name).await?;
            Ok(body::empty(204))
        }
        (m, _) => Err(not_found(&m, &format!("/v1/buildpacks/{}", rest.join("/")))),
    }
}

/// Streams the deployment's events as NDJSON. The deployment runs in its own task, so a
/// client that goes away does not stop it half-way.
async fn deploy(
    p: &Arc<Platform>,
    app: &AppName,
    req: Request<Incoming>,
) -> Result<Response<ApiBody>, Failure> {
    let DeployRequest { package, start } = read_json(req).await?;
    if !is_sha256(&package) {
        return Err(Failure::new(
            400,
            "invalid-request",
            "package must be a SHA-256 in lowercase hex",
            None,
        ));
    }
    p.app_record(app).await?;
    Ok(stream_deployment(p, app, package, start))
}

/// Stages the current package again, as a new deployment.
async fn restage(p: &Arc<Platform>, app: &AppName) -> Result<Response<ApiBody>, Failure> {
    let record = p.app_record(app).await?;
    let release = record.release.ok_or_else(|| {
        Failure::new(
            422,
            "nothing-to-restage",
            format!("app {app} has never been staged"),
            Some(&format!("push it first: `paas push {app}`")),
        )
    })?;
    Ok(stream_deployment(p, app, release.package, true))
}

/// The droplet the app runs, as a tar.gz.
async fn droplet(p: &Platform, app: &AppName) -> Result<Response<ApiBody>, Failure> {
    let record = p.app_record(app).await?;
    let release = record.release.ok_or_else(|| {
        Failure::new(
            404,
            "no-droplet",
            format!("app {app} has no droplet yet"),
            Some(&format!("push it first: `paas push {app}`")),
        )
    })?;
    let file = tokio::fs::File::open(p.blobs.path(&release.droplet))
        .await
        .map_err(Failure::internal)?;
    Ok(body::file(file, "application/gzip"))
}

/// Rolls the app over to its current (restart) or an older (rollback) release, streamed
/// like a deployment.
fn stream_restart(p: &Arc<Platform>, app: &AppName, version: Option<i64>) -> Response<ApiBody> {
    let app = app.clone();
    stream_roll_out(p, move |platform, tx| async move {
        platform.restart(&app, version, &tx).await
    })
}

async fn revisions(
    p: &Platform,
    app: &AppName,
    path: &str,
    query: &str,
) -> Result<Response<ApiBody>, Failure> {
    let record = p.app_record(app).await?;
    let current = record.release.map(|r| r.version);
    let list: Vec<Revision> = p
        .store
        .releases(app)
        .await
        .map_err(Failure::internal)?
        .into_iter()
        .map(|r| Revision {
            available: p.blobs.exists(&r.droplet),
            current: Some(r.version) == current,
            version: r.version,
            droplet: r.droplet,
            buildpack: r.buildpack,
            start_command: r.start_command,
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
) -> Response<ApiBody> {
    let app = app.clone();
    stream_roll_out(p, move |platform, tx| async move {
        platform.deploy(&app, &package, start, &tx).await
    })
}

/// Runs `work` (a deployment, restart or rollback) in its own task, so a client that
/// goes away does not stop it half-way, and streams its events as NDJSON; a failure
/// becomes the last event.
fn stream_roll_out<F, Fut>(p: &Arc<Platform>, work: F) -> Response<ApiBody>
where
    F: FnOnce(Arc<Platform>, tokio::sync::mpsc::UnboundedSender<DeployEvent>) -> Fut
        + Send
        + 'static,
    Fut: std::future::Future<Output = Result<(), Failure>> + Send + 'static,
{
    let (out, resp) = body::ndjson_stream();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<DeployEvent>();
    let platform = Arc::clone(p);
    tokio::spawn(async move {
        let failed = tx.clone();
        if let Err(f) = work(platform, tx).await {
            let _ = failed.send(DeployEvent::Failed { error: f.body });
        }
    });
    tokio::spawn(forward_deploy_events(rx, out));
    resp
}

/// Passes a roll-out's events to its client. Log lines that a slow client has no room
/// for are dropped (and counted in a line that says so: `paas logs` has them all); the
/// other events wait, in order, for room, while later lines keep being taken from the
/// roll-out, so neither the roll-out nor paasd's memory waits on the client.
async fn forward_deploy_events(
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

/// `?recent` (the default) answers the recent lines; `?follow=true` keeps streaming.
async fn logs(p: &Platform, app: &AppName, query: &str) -> Result<Response<ApiBody>, Failure> {
    p.app_record(app).await?;
    let follow = query::flag(query, "follow");
    let (out, resp) = body::ndjson_stream();
    if !follow {
        let recent = p.logs.recent(app);
        tokio::spawn(async move {
            for line in recent {
                if !out.send(&line).await {
                    return;
                }
            }
        });
        return Ok(resp);
    }
    let (recent, mut live) = p.logs.follow(app);
    tokio::spawn(async move {
        for line in recent {
            if !out.send(&line).await {
                return;
            }
        }
        // A client slower than the app: the live feed lags, and says how much it lost.
        loop {
            match live.recv().await {
                Ok(line) => {
                    if !out.send(&line).await {
                        return;
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    let note = paas_api::LogLine {
                        timestamp_ms: crate::logs::now_ms(),
                        source: "API".into(),
                        stream: paas_api::LogStream::Err,
                        line: format!("{n} lines were dropped because the client read too slowly"),
                    };
                    if !out.send(&note).await {
                        return;
                    }
                }
                Err(_) => return,
            }
        }
    });
    Ok(resp)
}
