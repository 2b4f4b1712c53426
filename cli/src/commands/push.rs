//! `paas push NAME`: upload the app folder, stage it, run it, print its URL.

use std::io::Write;
use std::path::PathBuf;

use bytes::Bytes;
use http::Method;
use paas_api::{
    AppName, AppSettings, AppSummary, BuildpackName, DeployEvent, DeployRequest, HealthCheck,
    MemorySize, PackageStored,
};

use crate::archive;
use crate::client::{check, ndjson};
use crate::exit::{self, Failure};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The app's name: lowercase letters, digits and '-'. It answers at NAME.DOMAIN.
    name: String,
    /// The app folder to upload.
    #[arg(short = 'p', long = "path", default_value = ".", value_name = "PATH")]
    path: PathBuf,
    /// How many instances to run.
    #[arg(short = 'i', long = "instances", default_value_t = 1, value_name = "N")]
    instances: u32,
    /// Memory per instance, e.g. 256M or 1G.
    #[arg(
        short = 'm',
        long = "memory",
        default_value = "256M",
        value_name = "SIZE"
    )]
    memory: String,
    /// Disk per instance, e.g. 512M or 2G [default: 1G].
    #[arg(short = 'k', long = "disk", value_name = "SIZE")]
    disk: Option<String>,
    /// A buildpack to use instead of detecting one; repeat to run several in order.
    #[arg(short = 'b', long = "buildpack", value_name = "BUILDPACK")]
    buildpacks: Vec<String>,
    /// The start command, instead of the Procfile's or the buildpack's.
    #[arg(short = 'c', long = "command", value_name = "COMMAND")]
    command: Option<String>,
    /// How to tell an instance is healthy: port, http or process.
    #[arg(
        short = 'u',
        long = "health-check-type",
        default_value = "port",
        value_name = "TYPE"
    )]
    health_check_type: String,
    /// The path an http health check asks for, e.g. /health.
    #[arg(long = "endpoint", value_name = "PATH")]
    endpoint: Option<String>,
    /// Seconds an instance may take to become healthy [default: the platform's, 60].
    #[arg(short = 't', long = "timeout", value_name = "SECONDS")]
    timeout: Option<u32>,
}

pub async fn run(args: Args, skip_ssl_validation: bool) -> Result<(), Failure> {
    let name = super::app_name(&args.name)?;
    let memory = MemorySize::parse(&args.memory).map_err(|e| Failure::usage(e.to_string()))?;
    let disk = args
        .disk
        .as_deref()
        .map(MemorySize::parse)
        .transpose()
        .map_err(|e| Failure::usage(e.to_string()))?;
    let buildpacks = args
        .buildpacks
        .iter()
        .map(|b| BuildpackName::parse(b).map_err(|e| Failure::usage(e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    if args.instances == 0 || args.instances > AppSettings::MAX_INSTANCES {
        return Err(Failure::usage(format!(
            "-i {} is out of range: give 1 to {}",
            args.instances,
            AppSettings::MAX_INSTANCES
        )));
    }
    if !args.path.is_dir() {
        return Err(Failure::new(
            exit::UPLOAD,
            format!("{} is not a folder", args.path.display()),
        )
        .with_hint("give the app's folder with -p PATH"));
    }
    let health_check = HealthCheck::parse(&args.health_check_type, args.endpoint.as_deref())
        .map_err(Failure::usage)?;
    if let Some(t) = args.timeout {
        if t == 0 || t > AppSettings::MAX_START_TIMEOUT_SECS {
            return Err(Failure::usage(format!(
                "-t {t} is out of range: give 1 to {} seconds",
                AppSettings::MAX_START_TIMEOUT_SECS
            )));
        }
    }
    let settings = AppSettings {
        instances: args.instances,
        memory,
        buildpacks,
        command: args.command,
        health_check,
        start_timeout_secs: args.timeout,
        disk,
    };
    let client = super::client(skip_ssl_validation)?;
    println!("Pushing app {name} from {}", args.path.display());

    let tmp = tempfile::NamedTempFile::new()
        .map_err(|e| Failure::new(exit::UPLOAD, format!("creating a temporary file: {e}")))?;
    let dir = args.path.clone();
    let out = tmp.path().to_path_buf();
    let packed = tokio::task::spawn_blocking(move || archive::pack(&dir, &out))
        .await
        .map_err(|e| Failure::new(exit::UPLOAD, e.to_string()))?
        .map_err(|e| {
            Failure::new(
                exit::UPLOAD,
                format!("packing {}: {e:#}", args.path.display()),
            )
        })?;
    let data = std::fs::read(tmp.path())
        .map_err(|e| Failure::new(exit::UPLOAD, format!("reading the package: {e}")))?;
    println!(
        "Uploading {} files, {} ({} compressed)",
        packed.files,
        human_bytes(packed.bytes),
        human_bytes(data.len() as u64)
    );
    // Settings change only once the folder packed cleanly: a bad folder changes nothing.
    let _: AppSummary = client
        .json(Method::PUT, &format!("/v1/apps/{name}"), Some(&settings))
        .await?;
    let resp = client
        .send(
            Method::POST,
            &format!("/v1/apps/{name}/packages"),
            Bytes::from(data),
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
    };
    let resp = client
        .send(
            Method::POST,
            &format!("/v1/apps/{name}/deployments"),
            Bytes::from(serde_json::to_vec(&request).unwrap_or_default()),
            "application/json",
        )
        .await?;
    follow_deployment(resp, &name).await
}

/// Prints a deployment's NDJSON stream as it arrives (phases, the staging log) and ends
/// with the app's URL, or with the failure and its exit code.
pub async fn follow_deployment(
    resp: http::Response<hyper::body::Incoming>,
    name: &AppName,
) -> Result<(), Failure> {
    let resp = check(resp, exit::STAGING).await?;
    let mut outcome: Option<Result<String, Failure>> = None;
    let mut phase = String::new();
    let mut stdout = std::io::stdout().lock();
    ndjson(resp, |event: DeployEvent| {
        match event {
            DeployEvent::Phase { phase: p } => {
                let line = match p.as_str() {
                    "staging" => "Staging app and tracing logs...",
                    "starting" => "Waiting for app to start...",
                    other => other,
                };
                let _ = writeln!(stdout, "{line}");
                phase = p;
            }
            DeployEvent::Log(l) => {
                let _ = writeln!(stdout, "   {}", l.line);
            }
            DeployEvent::Done { url, instances } => {
                outcome = Some(Ok(format!(
                    "App {name} is running {instances} instance(s) at {url}"
                )));
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
        let _ = stdout.flush();
        true
    })
    .await?;
    drop(stdout);
    match outcome {
        Some(Ok(msg)) => {
            println!("{msg}");
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

fn human_bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}
