//! User-provided service instances, as Cloud Foundry has them: credentials stored once
//! and bound to apps, which find them in `VCAP_SERVICES` (and a database's URL in
//! `DATABASE_URL`) from their next restart.

use std::path::Path;

use http::Method;
use paas_api::{ServiceRequest, ServiceSummary};

use super::apps::print_table;
use crate::exit::Failure;

#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    name: String,
    /// Credentials: a JSON object, or a file holding one.
    #[arg(short = 'p', value_name = "JSON|FILE")]
    credentials: Option<String>,
    /// A syslog drain: bound apps' log lines go there as RFC 5424 messages, from their
    /// next restart (syslog://HOST:PORT, syslog-tls://HOST:PORT or https://HOST/PATH).
    #[arg(short = 'l', value_name = "URL")]
    syslog_drain_url: Option<String>,
    /// A route service URL (recorded; requests are not sent through it yet).
    #[arg(short = 'r', value_name = "URL")]
    route_service_url: Option<String>,
    /// Tags, comma-separated (a `database` tag makes its uri DATABASE_URL).
    #[arg(short = 't', value_name = "TAGS")]
    tags: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct NameArgs {
    service: String,
}

#[derive(Debug, clap::Args)]
pub struct DeleteArgs {
    service: String,
    /// Do not ask (paas never asks: accepted for cf's scripts).
    #[arg(short = 'f')]
    force: bool,
}

#[derive(Debug, clap::Args)]
pub struct BindArgs {
    app: String,
    service: String,
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {}

fn request(args: CreateArgs) -> Result<ServiceRequest, Failure> {
    let credentials =
        match args.credentials {
            None => None,
            Some(raw) => {
                let text = if raw.trim_start().starts_with(['{', '[']) {
                    raw
                } else if Path::new(&raw).is_file() {
                    std::fs::read_to_string(&raw)
                        .map_err(|e| Failure::usage(format!("reading {raw}: {e}")))?
                } else {
                    return Err(Failure::usage(format!(
                        "-p {raw:?} is neither a JSON object nor a file"
                    ))
                    .with_hint(
                        r#"give -p '{"uri": "postgres://user:pass@host/db"}' or -p creds.json"#,
                    ));
                };
                Some(serde_json::from_str(&text).map_err(|e| {
                    Failure::usage(format!("the credentials are not valid JSON: {e}"))
                })?)
            }
        };
    Ok(ServiceRequest {
        name: Some(args.name),
        credentials,
        syslog_drain_url: args.syslog_drain_url,
        route_service_url: args.route_service_url,
        tags: args.tags.map(|t| {
            t.split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        }),
    })
}

pub async fn create(args: CreateArgs, ctx: super::Ctx) -> Result<(), Failure> {
    let req = request(args)?;
    let name = req.name.clone().unwrap_or_default();
    let client = super::client(ctx)?;
    let s: ServiceSummary = client
        .json(Method::POST, &client.in_space("/v1/services"), Some(&req))
        .await?;
    if ctx.json {
        return super::print_json(&s);
    }
    println!("Created user-provided service {name}: bind it with `paas bind-service APP {name}`");
    Ok(())
}

pub async fn update(args: CreateArgs, ctx: super::Ctx) -> Result<(), Failure> {
    let mut req = request(args)?;
    let name = req.name.take().unwrap_or_default();
    let s: ServiceSummary = super::client(ctx)?
        .json(Method::PATCH, &format!("/v1/services/{name}"), Some(&req))
        .await?;
    if ctx.json {
        return super::print_json(&s);
    }
    println!("Updated service {name}; bound apps see it at their next restart");
    Ok(())
}

pub async fn list(_: ListArgs, ctx: super::Ctx) -> Result<(), Failure> {
    let client = super::client(ctx)?;
    let list: Vec<ServiceSummary> = client.list(&client.in_space("/v1/services")).await?;
    if ctx.json {
        return super::print_json(&list);
    }
    if list.is_empty() {
        println!("No services yet: `paas create-user-provided-service NAME -p JSON` makes one.");
        return Ok(());
    }
    let rows: Vec<[String; 4]> = list
        .iter()
        .map(|s| {
            [
                s.name.clone(),
                s.label.clone(),
                s.bound_apps.join(", "),
                s.tags.join(", "),
            ]
        })
        .collect();
    print_table(&["name", "service", "bound apps", "tags"], &rows);
    Ok(())
}

pub async fn delete(args: DeleteArgs, ctx: super::Ctx) -> Result<(), Failure> {
    let _ = args.force;
    super::client(ctx)?
        .delete(&format!("/v1/services/{}", args.service))
        .await?;
    println!("Deleted service {}", args.service);
    Ok(())
}

pub async fn bind(args: BindArgs, ctx: super::Ctx) -> Result<(), Failure> {
    let app = super::app_name(&args.app)?;
    let _: Option<ServiceSummary> = super::client(ctx)?
        .json(
            Method::PUT,
            &format!("/v1/apps/{app}/services/{}", args.service),
            None::<&()>,
        )
        .await?;
    println!(
        "Bound service {} to app {app}; restart it to use it: `paas restart {app}`",
        args.service
    );
    Ok(())
}

pub async fn unbind(args: BindArgs, ctx: super::Ctx) -> Result<(), Failure> {
    let app = super::app_name(&args.app)?;
    super::client(ctx)?
        .delete(&format!("/v1/apps/{app}/services/{}", args.service))
        .await?;
    println!(
        "Unbound service {} from app {app}; restart it to drop it: `paas restart {app}`",
        args.service
    );
    Ok(())
}
