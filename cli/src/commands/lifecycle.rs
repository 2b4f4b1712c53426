//! `paas start`, `stop`, `restart`, `scale`, `revisions` and `rollback`: running an app's
//! releases without staging. Every change rolls over: new instances start and pass their
//! health check before the old ones stop.

use bytes::Bytes;
use http::Method;
use paas_api::{
    AppSummary, MemorySize, Revision, RollbackRequest, RolloutRequest, ScaleRequest, Strategy,
};

use super::apps::print_table;
use super::push::follow_deployment;
use crate::client::check;
use crate::exit::{self, Failure};

#[derive(Debug, clap::Args)]
pub struct NameArgs {
    name: String,
}

/// How a roll-out replaces the running instances.
#[derive(Debug, Clone, clap::Args)]
pub struct RolloutArgs {
    /// rolling: new instances replace old ones --max-in-flight at a time; canary: one
    /// new instance runs beside the old ones, then the deployment pauses until
    /// `paas continue-deployment` or `paas cancel-deployment`. Without it, every new
    /// instance passes its health check before any old one stops.
    #[arg(long, value_enum, value_name = "STRATEGY")]
    strategy: Option<StrategyArg>,
    /// With --strategy: how many new instances start at once [default: 1].
    #[arg(long = "max-in-flight", value_name = "N", requires = "strategy")]
    max_in_flight: Option<u32>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum StrategyArg {
    Rolling,
    Canary,
}

impl RolloutArgs {
    pub fn request(&self) -> RolloutRequest {
        RolloutRequest {
            strategy: self.strategy.map(|s| match s {
                StrategyArg::Rolling => Strategy::Rolling,
                StrategyArg::Canary => Strategy::Canary,
            }),
            max_in_flight: self.max_in_flight,
        }
    }

    /// The request as a body.
    pub fn body(&self) -> Bytes {
        Bytes::from(serde_json::to_vec(&self.request()).unwrap_or_default())
    }
}

#[derive(Debug, clap::Args)]
pub struct RestartArgs {
    name: String,
    #[command(flatten)]
    rollout: RolloutArgs,
}

#[derive(Debug, clap::Args)]
pub struct ScaleArgs {
    name: String,
    /// The process type to scale (`web`, `worker`, … as the Procfile names them).
    #[arg(
        short = 'p',
        long = "process",
        value_name = "TYPE",
        default_value = "web"
    )]
    process: String,
    /// How many instances.
    #[arg(short = 'i', long = "instances", value_name = "N")]
    instances: Option<u32>,
    /// Memory per instance, e.g. 512M.
    #[arg(short = 'm', long = "memory", value_name = "SIZE")]
    memory: Option<String>,
    /// Disk per instance, e.g. 2G.
    #[arg(short = 'k', long = "disk", value_name = "SIZE")]
    disk: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct RollbackArgs {
    name: String,
    /// The revision to run again (see `paas revisions`).
    #[arg(long, value_name = "N")]
    version: i64,
    #[command(flatten)]
    rollout: RolloutArgs,
}

async fn roll(name: &str, path: &str, body: Bytes, ctx: super::Ctx) -> Result<(), Failure> {
    let name = super::app_name(name)?;
    let client = super::client(ctx)?;
    let resp = client
        .send(
            Method::POST,
            &format!("/v1/apps/{name}/{path}"),
            body,
            "application/json",
        )
        .await?;
    follow_deployment(resp, &name, super::push::Reporter { json: ctx.json }).await
}

pub async fn start(args: NameArgs, ctx: super::Ctx) -> Result<(), Failure> {
    println!("Starting app {}", args.name);
    roll(&args.name, "start", Bytes::new(), ctx).await
}

pub async fn restart(args: RestartArgs, ctx: super::Ctx) -> Result<(), Failure> {
    println!("Restarting app {}", args.name);
    roll(&args.name, "restart", args.rollout.body(), ctx).await
}

pub async fn continue_deployment(args: NameArgs, ctx: super::Ctx) -> Result<(), Failure> {
    println!("Continuing the deployment of app {}", args.name);
    roll(&args.name, "deployment/continue", Bytes::new(), ctx).await
}

pub async fn cancel_deployment(args: NameArgs, ctx: super::Ctx) -> Result<(), Failure> {
    let name = super::app_name(&args.name)?;
    let client = super::client(ctx)?;
    let resp = client
        .send(
            Method::POST,
            &format!("/v1/apps/{name}/deployment/cancel"),
            Bytes::new(),
            "application/json",
        )
        .await?;
    check(resp, exit::GENERAL).await?;
    println!("Cancelled the deployment of app {name}: its canary is stopped, the previous release runs on");
    Ok(())
}

pub async fn stop(args: NameArgs, ctx: super::Ctx) -> Result<(), Failure> {
    let name = super::app_name(&args.name)?;
    let client = super::client(ctx)?;
    let resp = client
        .send(
            Method::POST,
            &format!("/v1/apps/{name}/stop"),
            Bytes::new(),
            "application/json",
        )
        .await?;
    check(resp, exit::GENERAL).await?;
    println!("Stopped app {name}");
    Ok(())
}

pub async fn scale(args: ScaleArgs, ctx: super::Ctx) -> Result<(), Failure> {
    let name = super::app_name(&args.name)?;
    if args.instances.is_none() && args.memory.is_none() && args.disk.is_none() {
        return Err(Failure::usage("nothing to change: give -i, -m or -k"));
    }
    let parse = |s: &Option<String>| {
        s.as_deref()
            .map(MemorySize::parse)
            .transpose()
            .map_err(|e| Failure::usage(e.to_string()))
    };
    let (memory, disk) = (parse(&args.memory)?, parse(&args.disk)?);
    let change = ScaleRequest {
        process: Some(args.process.clone()),
        instances: args.instances,
        memory,
        disk,
    };
    let mut what = Vec::new();
    if let Some(n) = change.instances {
        what.push(format!("{n} instance(s)"));
    }
    if let Some(m) = change.memory {
        what.push(format!("{} of memory", m.to_string().to_uppercase()));
    }
    if let Some(d) = change.disk {
        what.push(format!("{} of disk", d.to_string().to_uppercase()));
    }
    if args.process == paas_api::WEB {
        println!("Scaling app {name} to {}", what.join(", "));
    } else {
        println!(
            "Scaling process type {} of app {name} to {}",
            args.process,
            what.join(", ")
        );
    }
    let body = Bytes::from(serde_json::to_vec(&change).unwrap_or_default());
    roll(name.as_str(), "scale", body, ctx).await
}

pub async fn revisions(args: NameArgs, ctx: super::Ctx) -> Result<(), Failure> {
    let name = super::app_name(&args.name)?;
    let list: Vec<Revision> = super::client(ctx)?
        .list(&format!("/v1/apps/{name}/revisions"))
        .await?;
    if ctx.json {
        return super::print_json(&list);
    }
    if list.is_empty() {
        println!("App {name} has no revisions yet: push it first.");
        return Ok(());
    }
    let rows: Vec<[String; 6]> = list
        .iter()
        .map(|r| {
            [
                format!("{}{}", r.version, if r.current { " (current)" } else { "" }),
                r.droplet.chars().take(12).collect(),
                r.buildpack.clone(),
                if r.available { "yes" } else { "no" }.to_string(),
                r.changes.clone(),
                r.start_command.clone(),
            ]
        })
        .collect();
    print_table(
        &[
            "revision",
            "droplet",
            "buildpacks",
            "rollback",
            "changes",
            "start command",
        ],
        &rows,
    );
    Ok(())
}

pub async fn rollback(args: RollbackArgs, ctx: super::Ctx) -> Result<(), Failure> {
    println!(
        "Rolling app {} back to revision {}",
        args.name, args.version
    );
    let body = Bytes::from(
        serde_json::to_vec(&RollbackRequest {
            version: args.version,
            rollout: args.rollout.request(),
        })
        .unwrap_or_default(),
    );
    roll(&args.name, "rollback", body, ctx).await
}

/// `allow-outbound` / `deny-outbound`: lets the app's instances open connections to the
/// world (never to the host or to other instances), or not, and rolls them over.
pub async fn outbound(args: NameArgs, allow: bool, ctx: super::Ctx) -> Result<(), Failure> {
    let name = super::app_name(&args.name)?;
    let client = super::client(ctx)?;
    let current: AppSummary = client
        .json(Method::GET, &format!("/v1/apps/{name}"), None::<&()>)
        .await?;
    let mut settings = current.settings;
    settings.outbound = Some(allow);
    let _: AppSummary = client
        .json(Method::PUT, &format!("/v1/apps/{name}"), Some(&settings))
        .await?;
    let what = if allow {
        "may open connections to the world"
    } else {
        "may not open connections"
    };
    if current.droplet.is_none() || current.state == "stopped" {
        println!("App {name} {what} once it runs");
        return Ok(());
    }
    println!("App {name} {what}; rolling its instances over");
    roll(name.as_str(), "restart", Bytes::new(), ctx).await
}
