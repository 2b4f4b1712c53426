//! `paas push NAME`: upload the app folder, stage it, run it, print its URL.
//!
//! `report.rs` prints what happens (text, or JSON events); `plan.rs` is `--plan`.

mod plan;
mod report;

use report::PushEvent;
pub use report::Reporter;

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Context;
use bytes::Bytes;
use http::Method;
use paas_api::{
    AppName, AppSettings, AppSummary, BuildpackName, DeployEvent, DeployRequest, HealthCheck,
    MemorySize, PackageStored, ResourceRef, Route,
};

use crate::archive;
use crate::client::{check, ndjson, Client};
use crate::exit::{self, Failure};
use crate::manifest::{self, ManifestApp};
use crate::upload::Upload;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The app's name: lowercase letters, digits and '-'. It answers at NAME.DOMAIN.
    /// Without it, every app of the manifest is pushed.
    name: Option<String>,
    /// The manifest [default: manifest.yml in this folder, if there is one].
    #[arg(short = 'f', long = "manifest", value_name = "FILE")]
    manifest: Option<PathBuf>,
    /// Ignore manifest.yml.
    #[arg(long, conflicts_with = "manifest")]
    no_manifest: bool,
    /// A value for ((NAME)) in the manifest; repeatable.
    #[arg(long = "var", value_name = "NAME=VALUE")]
    vars: Vec<String>,
    /// A YAML file of values for ((NAME)) in the manifest; repeatable.
    #[arg(long = "vars-file", value_name = "FILE")]
    vars_files: Vec<PathBuf>,
    /// The app folder to upload, or a .jar, .war or .zip whose files to upload [default: .].
    #[arg(short = 'p', long = "path", value_name = "PATH")]
    path: Option<PathBuf>,
    /// How many instances to run [default: as many as it runs now; 1 for a new app].
    #[arg(short = 'i', long = "instances", value_name = "N")]
    instances: Option<u32>,
    /// Memory per instance, e.g. 256M or 1G [default: what it has now; 256M for a new app].
    #[arg(short = 'm', long = "memory", value_name = "SIZE")]
    memory: Option<String>,
    /// Disk per instance, e.g. 512M or 2G [default: what it has now; 1G for a new app].
    #[arg(short = 'k', long = "disk", value_name = "SIZE")]
    disk: Option<String>,
    /// A buildpack to use instead of detecting one; repeat to run several in order.
    #[arg(short = 'b', long = "buildpack", value_name = "BUILDPACK")]
    buildpacks: Vec<String>,
    /// The start command, instead of the Procfile's or the buildpack's.
    #[arg(short = 'c', long = "command", value_name = "COMMAND")]
    command: Option<String>,
    /// The stack to build and run on (see `paas stacks`) [default: the app's, or for a
    /// new app the platform's default].
    #[arg(short = 's', long = "stack", value_name = "STACK")]
    stack: Option<String>,
    /// How to tell an instance is healthy: port, http or process [default: port].
    #[arg(short = 'u', long = "health-check-type", value_name = "TYPE")]
    health_check_type: Option<String>,
    /// The path an http health check asks for, e.g. /health.
    #[arg(long = "endpoint", value_name = "PATH")]
    endpoint: Option<String>,
    /// Seconds an instance may take to become healthy [default: the platform's, 60].
    #[arg(short = 't', long = "timeout", value_name = "SECONDS")]
    timeout: Option<u32>,
    /// Seconds between two health checks of a running instance [default: 5].
    #[arg(long = "health-check-interval", value_name = "SECONDS")]
    health_check_interval: Option<u32>,
    /// Seconds one health check may take [default: 1].
    #[arg(long = "health-check-invocation-timeout", value_name = "SECONDS")]
    health_check_invocation_timeout: Option<u32>,
    /// A readiness check apart from the health check: port, http or process. An
    /// instance failing it only leaves the route table; it is never restarted for it.
    #[arg(long = "readiness-health-check-type", value_name = "TYPE")]
    readiness_type: Option<String>,
    /// The path an http readiness check asks for, e.g. /ready.
    #[arg(long = "readiness-endpoint", value_name = "PATH")]
    readiness_endpoint: Option<String>,
    /// Seconds between two readiness checks [default: the health check interval].
    #[arg(long = "readiness-health-check-interval", value_name = "SECONDS")]
    readiness_interval: Option<u32>,
    /// Seconds one readiness check may take [default: the health check's].
    #[arg(
        long = "readiness-health-check-invocation-timeout",
        value_name = "SECONDS"
    )]
    readiness_invocation_timeout: Option<u32>,
    /// Upload and stage, but leave the app stopped (start it with `paas start`).
    #[arg(long)]
    no_start: bool,
    /// Map no route, and unmap the routes the app has.
    #[arg(long, conflicts_with = "random_route")]
    no_route: bool,
    /// A new app gets a route with random words, NAME-WORD-WORD.DOMAIN, instead of
    /// NAME.DOMAIN.
    #[arg(long)]
    random_route: bool,
    #[command(flatten)]
    rollout: super::lifecycle::RolloutArgs,
    /// Show what the push would upload and change (create, settings, env, routes, then a
    /// restage and roll-out), and change nothing.
    #[arg(long)]
    plan: bool,
}

/// Which routes a push leaves the app with.
#[derive(Debug, Clone, PartialEq)]
enum Routes {
    /// A new app gets NAME.DOMAIN; an existing one keeps its routes.
    Default,
    /// None: the app's routes are unmapped.
    Unmapped,
    /// A new app gets NAME-WORD-WORD.DOMAIN.
    Random,
    /// These are mapped (others the app has are kept, as cf does).
    Listed(Vec<Route>),
}

impl Args {
    fn has_app_flags(&self) -> bool {
        self.path.is_some()
            || self.instances.is_some()
            || self.memory.is_some()
            || self.disk.is_some()
            || !self.buildpacks.is_empty()
            || self.command.is_some()
            || self.health_check_type.is_some()
            || self.endpoint.is_some()
            || self.timeout.is_some()
            || self.health_check_interval.is_some()
            || self.health_check_invocation_timeout.is_some()
            || self.readiness_type.is_some()
            || self.readiness_endpoint.is_some()
            || self.readiness_interval.is_some()
            || self.readiness_invocation_timeout.is_some()
    }
}

/// One app to push: the manifest's entry with the flags laid over it.
struct Plan {
    name: AppName,
    path: PathBuf,
    settings: AppSettings,
    env: BTreeMap<String, String>,
    /// Services to bind (the manifest's `services:`).
    services: Vec<String>,
    routes: Routes,
    start: bool,
    rollout: paas_api::RolloutRequest,
    /// What neither the flags nor the manifest say (instances, memory, disk): a pushed
    /// app keeps what it has (as `cf push` does), a new one gets the defaults.
    keep: Keep,
}

/// Which settings a push leaves as the app has them.
#[derive(Debug, Clone, Copy)]
struct Keep {
    instances: bool,
    memory: bool,
    disk: bool,
}

pub async fn run(args: Args, ctx: super::Ctx) -> Result<(), Failure> {
    let manifest_path = match (&args.manifest, args.no_manifest) {
        (Some(p), _) => Some(p.clone()),
        (None, false) if std::path::Path::new("manifest.yml").is_file() => {
            Some(PathBuf::from("manifest.yml"))
        }
        _ => None,
    };
    let entries = match &manifest_path {
        Some(path) => {
            let vars = manifest::vars(&args.vars_files, &args.vars).map_err(Failure::usage)?;
            let (apps, warnings) = manifest::load(path, &vars).map_err(|e| {
                Failure::usage(format!("manifest {e}"))
                    .with_hint("see Cloud Foundry's manifest schema; --no-manifest ignores it")
            })?;
            for w in warnings {
                eprintln!("warning: {}: {w}", path.display());
            }
            apps
        }
        None => Vec::new(),
    };
    let chosen: Vec<ManifestApp> = match &args.name {
        Some(n) if entries.is_empty() => vec![ManifestApp {
            name: n.clone(),
            ..ManifestApp::default()
        }],
        Some(n) => vec![entries
            .iter()
            .find(|a| &a.name == n)
            .cloned()
            .ok_or_else(|| {
                Failure::usage(format!("the manifest has no app named {n}"))
                    .with_hint("give a name from the manifest, or --no-manifest")
            })?],
        None if entries.is_empty() => {
            return Err(Failure::usage(
                "give the app's name, or push from a folder with a manifest.yml",
            ))
        }
        None if entries.len() > 1 && args.has_app_flags() => {
            return Err(Failure::usage(
                "flags such as -i or -p apply to one app: give its name",
            ))
        }
        None => entries,
    };
    let plans = chosen
        .into_iter()
        .map(|entry| plan(&args, entry))
        .collect::<Result<Vec<_>, _>>()?;
    let report = Reporter { json: ctx.json };
    for p in plans {
        push_one(p, ctx, report, args.plan).await?;
    }
    Ok(())
}

/// Lays the flags over a manifest entry and checks the result.
fn plan(args: &Args, m: ManifestApp) -> Result<Plan, Failure> {
    let name = super::app_name(&m.name)?;
    let size = |flag: &Option<String>,
                manifest: &Option<String>,
                default: &str|
     -> Result<MemorySize, Failure> {
        let raw = flag.as_deref().or(manifest.as_deref()).unwrap_or(default);
        MemorySize::parse(raw).map_err(|e| Failure::usage(format!("{name}: {e}")))
    };
    let memory = size(&args.memory, &m.memory, "256M")?;
    let disk = match args.disk.as_ref().or(m.disk_quota.as_ref()) {
        Some(d) => Some(MemorySize::parse(d).map_err(|e| Failure::usage(format!("{name}: {e}")))?),
        None => None,
    };
    let names = if args.buildpacks.is_empty() {
        &m.buildpacks
    } else {
        &args.buildpacks
    };
    let buildpacks = names
        .iter()
        .map(|b| BuildpackName::parse(b).map_err(|e| Failure::usage(e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    let instances = args.instances.or(m.instances).unwrap_or(1);
    if instances == 0 || instances > AppSettings::MAX_INSTANCES {
        return Err(Failure::usage(format!(
            "{name}: {instances} instances is out of range: give 1 to {}",
            AppSettings::MAX_INSTANCES
        )));
    }
    let kind = args
        .health_check_type
        .as_deref()
        .or(m.health_check_type.as_deref())
        .unwrap_or("port");
    let endpoint = args
        .endpoint
        .as_deref()
        .or(m.health_check_http_endpoint.as_deref());
    let health_check =
        HealthCheck::parse(kind, endpoint).map_err(|e| Failure::usage(format!("{name}: {e}")))?;
    let readiness_kind = args
        .readiness_type
        .as_deref()
        .or(m.readiness_health_check_type.as_deref());
    let readiness_endpoint = args
        .readiness_endpoint
        .as_deref()
        .or(m.readiness_health_check_http_endpoint.as_deref());
    let readiness_check = match (readiness_kind, readiness_endpoint) {
        (None, None) => None,
        (kind, endpoint) => Some(
            HealthCheck::parse(kind.unwrap_or("http"), endpoint)
                .map_err(|e| Failure::usage(format!("{name}: readiness: {e}")))?,
        ),
    };
    let mut processes = std::collections::BTreeMap::new();
    for p in &m.processes {
        if !paas_api::is_process_type(&p.kind) {
            return Err(Failure::usage(format!(
                "{name}: processes: {:?} is not a process type: use letters, digits, '-' or '_'",
                p.kind
            )));
        }
        let size = |s: &Option<String>| {
            s.as_deref()
                .map(MemorySize::parse)
                .transpose()
                .map_err(|e| Failure::usage(format!("{name}: processes: {}: {e}", p.kind)))
        };
        let health_check = match (&p.health_check_type, &p.health_check_http_endpoint) {
            (None, None) => None,
            (kind, endpoint) => Some(
                HealthCheck::parse(kind.as_deref().unwrap_or("http"), endpoint.as_deref())
                    .map_err(|e| Failure::usage(format!("{name}: processes: {}: {e}", p.kind)))?,
            ),
        };
        processes.insert(
            p.kind.clone(),
            paas_api::ProcessSettings {
                instances: p.instances.unwrap_or(1),
                memory: size(&p.memory)?,
                disk: size(&p.disk_quota)?,
                health_check,
                command: p.command.clone(),
            },
        );
    }
    let timeout = args.timeout.or(m.timeout);
    if let Some(t) = timeout {
        if t == 0 || t > AppSettings::MAX_START_TIMEOUT_SECS {
            return Err(Failure::usage(format!(
                "{name}: a start timeout of {t} s is out of range: give 1 to {} seconds",
                AppSettings::MAX_START_TIMEOUT_SECS
            )));
        }
    }
    for k in m.env.keys() {
        paas_api::check_env_name(k).map_err(|e| Failure::usage(format!("{name}: {e}")))?;
    }
    let routes = if args.no_route {
        Routes::Unmapped
    } else if args.random_route {
        Routes::Random
    } else if !m.routes.is_empty() {
        Routes::Listed(
            m.routes
                .iter()
                .map(|r| Route::parse(r).map_err(|e| Failure::usage(format!("{name}: {e}"))))
                .collect::<Result<_, _>>()?,
        )
    } else if m.no_route {
        Routes::Unmapped
    } else if m.random_route {
        Routes::Random
    } else {
        Routes::Default
    };
    let path = args
        .path
        .clone()
        .or(m.path)
        .unwrap_or_else(|| PathBuf::from("."));
    if !path.is_dir() && !archive::is_zip_app(&path) {
        return Err(Failure::new(
            exit::UPLOAD,
            format!(
                "{} is not a folder, nor a .jar, .war or .zip file",
                path.display()
            ),
        )
        .with_hint("give the app's folder (or its JAR) with -p PATH, or `path:` in the manifest"));
    }
    Ok(Plan {
        name,
        path,
        settings: AppSettings {
            instances,
            memory,
            buildpacks,
            command: args.command.clone().or(m.command),
            health_check,
            start_timeout_secs: timeout,
            health_check_interval_secs: args.health_check_interval.or(m.health_check_interval),
            health_check_timeout_secs: args
                .health_check_invocation_timeout
                .or(m.health_check_invocation_timeout),
            readiness_check,
            readiness_check_interval_secs: args
                .readiness_interval
                .or(m.readiness_health_check_interval),
            readiness_check_timeout_secs: args
                .readiness_invocation_timeout
                .or(m.readiness_health_check_invocation_timeout),
            disk,
            outbound: None,
            stack: args.stack.clone().or(m.stack),
            // Empty: kept as they are (`paas scale --process`).
            processes,
        },
        env: m.env,
        services: m.services,
        routes,
        start: !args.no_start,
        rollout: args.rollout.request(),
        keep: Keep {
            instances: args.instances.is_none() && m.instances.is_none(),
            memory: args.memory.is_none() && m.memory.is_none(),
            disk: args.disk.is_none() && m.disk_quota.is_none(),
        },
    })
}

async fn push_one(
    plan: Plan,
    ctx: super::Ctx,
    report: Reporter,
    preview: bool,
) -> Result<(), Failure> {
    let client = super::client(ctx)?;
    if !preview {
        report.say(
            &PushEvent::Pushing {
                app: plan.name.as_str(),
                path: plan.path.display().to_string(),
            },
            || format!("Pushing app {} from {}", plan.name, plan.path.display()),
        );
    }
    let path = plan.path.clone();

    let tmp = tempfile::NamedTempFile::new()
        .map_err(|e| Failure::new(exit::UPLOAD, format!("creating a temporary file: {e}")))?;
    let app = path.clone();
    // A JAR (or WAR, ZIP) is pushed as the files it holds, as cf does; they stay in
    // `_unpacked` until the upload is sent.
    let (_unpacked, entries) = tokio::task::spawn_blocking(move || {
        if !archive::is_zip_app(&app) {
            return archive::collect(&app).map(|e| (None, e));
        }
        let unpacked = tempfile::tempdir().context("making a temporary folder")?;
        archive::unzip(&app, unpacked.path())?;
        let entries = archive::collect(unpacked.path())?;
        Ok((Some(unpacked), entries))
    })
    .await
    .map_err(|e| Failure::new(exit::UPLOAD, e.to_string()))?
    .map_err(|e| Failure::new(exit::UPLOAD, format!("reading {}: {e:#}", path.display())))?;
    // Ask which file contents the platform holds already; those are not sent.
    let refs: std::collections::HashSet<ResourceRef> = entries
        .iter()
        .filter_map(|e| match &e.kind {
            archive::Kind::File { size, sha256, .. } => Some(ResourceRef {
                sha256: sha256.clone(),
                size: *size,
            }),
            _ => None,
        })
        .collect();
    let held: std::collections::HashSet<String> = if refs.is_empty() {
        Default::default()
    } else {
        let refs: Vec<&ResourceRef> = refs.iter().collect();
        let held: Vec<ResourceRef> = client
            .json(Method::POST, "/v1/resources/match", Some(&refs))
            .await?;
        held.into_iter().map(|r| r.sha256).collect()
    };
    let out = tmp.path().to_path_buf();
    let packed = tokio::task::spawn_blocking(move || archive::write(&entries, &held, &out))
        .await
        .map_err(|e| Failure::new(exit::UPLOAD, e.to_string()))?
        .map_err(|e| Failure::new(exit::UPLOAD, format!("packing: {e:#}")))?;
    let data = std::fs::read(tmp.path())
        .map_err(|e| Failure::new(exit::UPLOAD, format!("reading the package: {e}")))?;
    if preview {
        return plan::show(&client, &plan, &packed, data.len() as u64, report).await;
    }
    let Plan {
        name,
        mut settings,
        env,
        services,
        routes,
        start,
        rollout,
        keep,
        ..
    } = plan;
    let sent_files = packed.files - packed.matched_files;
    report.say(
        &PushEvent::Uploading {
            files: packed.files,
            files_sent: sent_files,
            bytes: packed.bytes,
            bytes_sent: packed.bytes - packed.matched_bytes,
            package_bytes: data.len() as u64,
        },
        || {
            format!(
                "Uploading {sent_files} of {} files, {} of {} ({} compressed); {} files are on the platform already",
                packed.files,
                human_bytes(packed.bytes - packed.matched_bytes),
                human_bytes(packed.bytes),
                human_bytes(data.len() as u64),
                packed.matched_files,
            )
        },
    );
    // Settings change only once the folder packed cleanly: a bad folder changes nothing.
    if let Routes::Listed(list) = &routes {
        check_domains(&client, list).await?;
    }
    let query = if routes == Routes::Default {
        ""
    } else {
        "?default-route=false"
    };
    if keep.instances || keep.memory || keep.disk {
        if let Ok(existing) = client
            .json::<AppSummary>(Method::GET, &format!("/v1/apps/{name}"), None::<&()>)
            .await
        {
            let had = existing.settings;
            if keep.instances {
                settings.instances = had.instances;
            }
            if keep.memory {
                settings.memory = had.memory;
            }
            if keep.disk {
                settings.disk = had.disk;
            }
        }
    }
    let _: AppSummary = client
        .json(
            Method::PUT,
            &client.in_space(&format!("/v1/apps/{name}{query}")),
            Some(&settings),
        )
        .await?;
    apply_routes(&client, &name, &routes, report).await?;
    if !env.is_empty() {
        let changes: BTreeMap<String, Option<String>> =
            env.into_iter().map(|(k, v)| (k, Some(v))).collect();
        let _: BTreeMap<String, String> = client
            .json(
                Method::PATCH,
                &format!("/v1/apps/{name}/env"),
                Some(&changes),
            )
            .await?;
    }
    for service in &services {
        // Bound before the staging, so the new instances start with it.
        let _: Option<paas_api::ServiceSummary> = client
            .json(
                Method::PUT,
                &format!("/v1/apps/{name}/services/{service}"),
                None::<&()>,
            )
            .await?;
    }
    // A progress bar only for a person watching a terminal.
    let bar = !report.json && std::io::stderr().is_terminal();
    let resp = client
        .send_body(
            Method::POST,
            &format!(
                "/v1/apps/{name}/packages{}",
                if packed.matched_files > 0 {
                    "?resources=true"
                } else {
                    ""
                }
            ),
            Upload::new(Bytes::from(data), bar),
            "application/gzip",
        )
        .await
        .map_err(|f| Failure {
            code: exit::UPLOAD,
            ..f
        })?;
    let resp = check(resp, exit::UPLOAD).await?;
    let body = crate::client::read_all(resp).await?;
    let stored: PackageStored = serde_json::from_slice(&body).map_err(|e| {
        Failure::new(
            exit::UPLOAD,
            format!("the API answered something unexpected: {e}"),
        )
    })?;

    let request = DeployRequest {
        package: stored.sha256,
        start,
        rollout,
    };
    let resp = client
        .send(
            Method::POST,
            &format!("/v1/apps/{name}/deployments"),
            Bytes::from(serde_json::to_vec(&request).unwrap_or_default()),
            "application/json",
        )
        .await?;
    follow_deployment(resp, &name, report).await
}

/// Prints a deployment's NDJSON stream as it arrives (phases, the staging log) and ends
/// with the app's URL, or with the failure and its exit code.
pub async fn follow_deployment(
    resp: http::Response<hyper::body::Incoming>,
    name: &AppName,
    report: Reporter,
) -> Result<(), Failure> {
    let resp = check(resp, exit::STAGING).await?;
    let mut outcome: Option<Result<String, Failure>> = None;
    let mut phase = String::new();
    ndjson(resp, |event: DeployEvent| {
        let text = match &event {
            DeployEvent::Phase { phase: p } => Some(
                match p.as_str() {
                    "staging" => "Staging app and tracing logs...",
                    "starting" => "Waiting for app to start...",
                    other => other,
                }
                .to_string(),
            ),
            DeployEvent::Log(l) => Some(format!("   {}", l.line)),
            _ => None,
        };
        report.deploy(&event, text);
        match event {
            DeployEvent::Phase { phase: p } => phase = p,
            DeployEvent::Log(_) => {}
            DeployEvent::Done { instances: 0, .. } => {
                outcome = Some(Ok(format!(
                    "App {name} is staged and stopped; start it with `paas start {name}`"
                )));
                return false;
            }
            DeployEvent::Done { url, instances } if url.is_empty() => {
                outcome = Some(Ok(format!(
                    "App {name} is running {instances} instance(s); it has no route (map one with `paas map-route`)"
                )));
                return false;
            }
            DeployEvent::Done { url, instances } => {
                outcome = Some(Ok(format!(
                    "App {name} is running {instances} instance(s) at {url}"
                )));
                return false;
            }
            DeployEvent::Paused { message } => {
                outcome = Some(Ok(message));
                return false;
            }
            DeployEvent::Failed { error } => {
                let code = if phase == "starting" {
                    exit::START
                } else {
                    exit::STAGING
                };
                outcome = Some(Err(Failure::api(code, error)));
                return false;
            }
        }
        true
    })
    .await?;
    match outcome {
        Some(Ok(msg)) => {
            if !report.json {
                // The URL is the API's to say; shown inert like the log above it.
                let msg = crate::terminal::Screen::stdout().text(&msg);
                println!(
                    "{}",
                    crate::style::stdout(&msg, crate::style::Colour::Green)
                );
            }
            Ok(())
        }
        Some(Err(f)) => Err(f),
        None => Err(
            Failure::general("the API ended the deployment without saying how it went").with_hint(
                format!("see `paas app {name}` and `paas logs {name} --recent`"),
            ),
        ),
    }
}

/// Leaves the app with the routes a push asked for.
async fn apply_routes(
    client: &Client,
    name: &AppName,
    routes: &Routes,
    report: Reporter,
) -> Result<(), Failure> {
    let mapped = |r: &Route| {
        report.say(
            &PushEvent::RouteMapped {
                route: r.to_string(),
            },
            || format!("Mapped route {r}"),
        )
    };
    let current = || async {
        client
            .list::<Route>(&format!("/v1/apps/{name}/routes"))
            .await
    };
    match routes {
        Routes::Default => {}
        Routes::Unmapped => {
            for r in current().await? {
                super::routes::unmap_route(client, name, &r).await?;
                report.say(
                    &PushEvent::RouteUnmapped {
                        route: r.to_string(),
                    },
                    || format!("Unmapped route {r}"),
                );
            }
        }
        Routes::Listed(list) => {
            for r in list {
                if super::routes::map_route(client, name, r).await? {
                    mapped(r);
                }
            }
        }
        Routes::Random if current().await?.is_empty() => {
            let info: paas_api::Info = client.json(Method::GET, "/v1/info", None::<&()>).await?;
            let r = random_route(name, &info.domain)?;
            super::routes::map_route(client, name, &r).await?;
            mapped(&r);
        }
        Routes::Random => {}
    }
    Ok(())
}

/// Fails, before anything is changed, when a listed route is under no known domain.
async fn check_domains(client: &Client, routes: &[Route]) -> Result<(), Failure> {
    let domains: Vec<paas_api::DomainInfo> = client.list("/v1/domains").await?;
    match routes
        .iter()
        .find(|r| !domains.iter().any(|d| r.is_under(&d.name)))
    {
        None => Ok(()),
        Some(r) => Err(Failure::usage(format!(
            "route {r} is not under any of the platform's domains ({})",
            domains
                .iter()
                .map(|d| d.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))
        .with_hint(
            "add the domain with `paas create-domain DOMAIN`, or fix the manifest's routes",
        )),
    }
}

/// `NAME-WORD-WORD.DOMAIN`, as cf's `--random-route` makes.
fn random_route(name: &AppName, domain: &str) -> Result<Route, Failure> {
    const FIRST: [&str; 16] = [
        "amber", "brave", "calm", "daring", "eager", "fancy", "gentle", "happy", "icy", "jolly",
        "keen", "lucky", "merry", "nimble", "quiet", "rapid",
    ];
    const SECOND: [&str; 16] = [
        "badger", "crane", "dingo", "egret", "ferret", "gecko", "heron", "ibis", "jackal", "koala",
        "lemur", "marmot", "newt", "otter", "panda", "quokka",
    ];
    let mut b = [0u8; 3];
    let _ = getrandom::fill(&mut b);
    // Labels are at most 63 characters: a long app name is cut to leave room.
    let stem: String = name.as_str().chars().take(40).collect();
    let host = format!(
        "{}-{}-{}-{:02x}",
        stem.trim_end_matches('-'),
        FIRST[usize::from(b[0]) % FIRST.len()],
        SECOND[usize::from(b[1]) % SECOND.len()],
        b[2]
    );
    Route::from_parts(&format!("{host}.{domain}"), "").map_err(|e| Failure::general(e.to_string()))
}

fn human_bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}
