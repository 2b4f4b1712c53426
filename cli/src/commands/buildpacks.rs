//! `paas buildpacks`, `create-buildpack`, `update-buildpack`, `delete-buildpack`: the
//! buildpacks the platform offers, as cf's commands of the same names.

use std::path::Path;

use bytes::Bytes;
use http::Method;
use paas_api::{BuildpackInfo, BuildpackName, BuildpackUpdate};

use super::apps::print_table;
use crate::client::{check, read_all, Client};
use crate::exit::{self, Failure};

#[derive(Debug, clap::Args)]
pub struct ListArgs {}

#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// The buildpack's name: lowercase letters, digits, '-', '_' and '.'.
    name: String,
    /// A folder, or a .zip, .tgz or .tar.gz archive, holding the buildpack.
    path: String,
    /// Where detection tries it: 1 is first [default: last].
    #[arg(long, value_name = "N")]
    position: Option<u32>,
}

#[derive(Debug, clap::Args)]
pub struct UpdateArgs {
    name: String,
    /// New bits: a folder, or a .zip, .tgz or .tar.gz archive.
    #[arg(long, value_name = "PATH")]
    path: Option<String>,
    /// Move it to this position: 1 is first.
    #[arg(long, value_name = "N")]
    position: Option<u32>,
    /// Use it again in detection and with -b.
    #[arg(long, conflicts_with = "disable")]
    enable: bool,
    /// Stop using it.
    #[arg(long)]
    disable: bool,
}

#[derive(Debug, clap::Args)]
pub struct DeleteArgs {
    name: String,
}

fn name(raw: &str) -> Result<BuildpackName, Failure> {
    BuildpackName::parse(raw).map_err(|e| Failure::usage(e.to_string()))
}

/// The archive to upload for PATH: a folder is packed as tar.gz, an archive sent as is.
fn bits(path: &str) -> Result<Bytes, Failure> {
    let p = Path::new(path);
    if p.is_dir() {
        let tmp = tempfile::NamedTempFile::new()
            .map_err(|e| Failure::new(exit::UPLOAD, e.to_string()))?;
        crate::archive::pack(p, tmp.path())
            .map_err(|e| Failure::new(exit::UPLOAD, format!("packing {path}: {e:#}")))?;
        return std::fs::read(tmp.path())
            .map(Bytes::from)
            .map_err(|e| Failure::new(exit::UPLOAD, e.to_string()));
    }
    std::fs::read(p).map(Bytes::from).map_err(|e| {
        Failure::usage(format!("reading {path}: {e}"))
            .with_hint("give a folder, or a .zip, .tgz or .tar.gz file")
    })
}

async fn info(
    client: &Client,
    method: Method,
    path: &str,
    body: Bytes,
    content_type: &str,
) -> Result<BuildpackInfo, Failure> {
    let resp = client.send(method, path, body, content_type).await?;
    let resp = check(resp, exit::GENERAL).await?;
    let raw = read_all(resp).await?;
    serde_json::from_slice(&raw)
        .map_err(|e| Failure::general(format!("the API answered something unexpected: {e}")))
}

pub async fn list(_: ListArgs, ctx: super::Ctx) -> Result<(), Failure> {
    let list: Vec<BuildpackInfo> = super::client(ctx)?.list("/v1/buildpacks").await?;
    if ctx.json {
        return super::print_json(&list);
    }
    let rows: Vec<[String; 5]> = list
        .iter()
        .map(|b| {
            [
                b.position.to_string(),
                b.name.to_string(),
                b.dialect.clone(),
                if b.enabled { "true" } else { "false" }.to_string(),
                if b.shipped { "shipped" } else { "custom" }.to_string(),
            ]
        })
        .collect();
    print_table(&["position", "name", "dialect", "enabled", "origin"], &rows);
    Ok(())
}

/// `paas stacks`: what apps can be built and run on.
pub async fn stacks(_: ListArgs, ctx: super::Ctx) -> Result<(), Failure> {
    let list: Vec<paas_api::StackInfo> = super::client(ctx)?.list("/v1/stacks").await?;
    if ctx.json {
        return super::print_json(&list);
    }
    let rows: Vec<[String; 3]> = list
        .iter()
        .map(|s| {
            [
                s.name.clone(),
                if s.default { "yes" } else { "" }.to_string(),
                s.description.clone(),
            ]
        })
        .collect();
    print_table(&["name", "default", "description"], &rows);
    Ok(())
}

pub async fn create(args: CreateArgs, ctx: super::Ctx) -> Result<(), Failure> {
    let name = name(&args.name)?;
    let body = bits(&args.path)?;
    let client = super::client(ctx)?;
    let query = args
        .position
        .map(|p| format!("?position={p}"))
        .unwrap_or_default();
    let b = info(
        &client,
        Method::POST,
        &format!("/v1/buildpacks/{name}{query}"),
        body,
        "application/octet-stream",
    )
    .await?;
    println!(
        "Created buildpack {} ({}) at position {}",
        b.name, b.dialect, b.position
    );
    Ok(())
}

pub async fn update(args: UpdateArgs, ctx: super::Ctx) -> Result<(), Failure> {
    let name = name(&args.name)?;
    let client = super::client(ctx)?;
    if args.path.is_none() && args.position.is_none() && !args.enable && !args.disable {
        return Err(Failure::usage(
            "nothing to change: give --path, --position, --enable or --disable",
        ));
    }
    if let Some(path) = &args.path {
        let body = bits(path)?;
        info(
            &client,
            Method::PUT,
            &format!("/v1/buildpacks/{name}/bits"),
            body,
            "application/octet-stream",
        )
        .await?;
    }
    let update = BuildpackUpdate {
        position: args.position,
        enabled: match (args.enable, args.disable) {
            (true, _) => Some(true),
            (_, true) => Some(false),
            _ => None,
        },
    };
    let body = Bytes::from(serde_json::to_vec(&update).unwrap_or_default());
    let b = info(
        &client,
        Method::PATCH,
        &format!("/v1/buildpacks/{name}"),
        body,
        "application/json",
    )
    .await?;
    println!(
        "Updated buildpack {} ({}): position {}, {}",
        b.name,
        b.dialect,
        b.position,
        if b.enabled { "enabled" } else { "disabled" }
    );
    Ok(())
}

pub async fn delete(args: DeleteArgs, ctx: super::Ctx) -> Result<(), Failure> {
    let name = name(&args.name)?;
    let client = super::client(ctx)?;
    client.delete(&format!("/v1/buildpacks/{name}")).await?;
    println!("Deleted buildpack {name}");
    Ok(())
}
