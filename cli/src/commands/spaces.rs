//! Spaces, their members and quotas: `spaces`, `space`, `create-space`,
//! `delete-space`, `space-users`, `set-space-role`, `unset-space-role`,
//! `set-space-quota`.

use http::Method;
use paas_api::auth::{CreateSpace, Quota, Role, SpaceInfo, SpaceMember};
use paas_api::MemorySize;

use super::apps::print_table;
use crate::exit::Failure;

#[derive(Debug, clap::Args)]
pub struct ListArgs {}

#[derive(Debug, clap::Args)]
pub struct SpaceArgs {
    space: String,
}

#[derive(Debug, clap::Args)]
pub struct DeleteArgs {
    space: String,
    /// Do not ask (paas never asks: accepted for cf's scripts).
    #[arg(short = 'f')]
    force: bool,
}

#[derive(Debug, clap::Args)]
pub struct RoleArgs {
    user: String,
    space: String,
    /// manager, developer or auditor.
    role: Role,
}

#[derive(Debug, clap::Args)]
pub struct QuotaArgs {
    space: String,
    /// Memory of every instance of every app together, e.g. 4G (0: no limit).
    #[arg(short = 'm', long)]
    memory: Option<MemorySize>,
    /// Instances at once (0: no limit).
    #[arg(short = 'i', long)]
    instances: Option<u32>,
    /// Routes (0: no limit).
    #[arg(short = 'r', long)]
    routes: Option<u32>,
    /// Services (0: no limit).
    #[arg(short = 's', long)]
    services: Option<u32>,
    /// Tasks running at once (0: no limit).
    #[arg(short = 't', long)]
    tasks: Option<u32>,
}

fn limit<T: std::fmt::Display>(v: Option<T>, unit: &str) -> String {
    v.map_or("no limit".into(), |v| format!("{v}{unit}"))
}

fn show(s: &SpaceInfo) -> [String; 6] {
    let u = &s.usage;
    let q = &s.quota;
    [
        s.name.clone(),
        format!("{} MiB of {}", u.memory_mb, limit(q.memory_mb, " MiB")),
        format!("{} of {}", u.instances, limit(q.instances, "")),
        format!("{} of {}", u.routes, limit(q.routes, "")),
        format!("{} of {}", u.services, limit(q.services, "")),
        format!("{} of {}", u.tasks, limit(q.tasks, "")),
    ]
}

const HEADERS: [&str; 6] = ["name", "memory", "instances", "routes", "services", "tasks"];

/// The spaces you have a role in (every space, for an admin), with use and quota.
pub async fn list(_: ListArgs, ctx: super::Ctx) -> Result<(), Failure> {
    let spaces: Vec<SpaceInfo> = super::client(ctx)?.list("/v1/spaces").await?;
    if ctx.json {
        return super::print_json(&spaces);
    }
    let rows: Vec<[String; 6]> = spaces.iter().map(show).collect();
    print_table(&HEADERS, &rows);
    Ok(())
}

pub async fn show_one(args: SpaceArgs, ctx: super::Ctx) -> Result<(), Failure> {
    let space: SpaceInfo = super::client(ctx)?
        .json(
            Method::GET,
            &format!("/v1/spaces/{}", args.space),
            None::<&()>,
        )
        .await?;
    if ctx.json {
        return super::print_json(&space);
    }
    print_table(&HEADERS, &[show(&space)]);
    Ok(())
}

pub async fn create(args: SpaceArgs, ctx: super::Ctx) -> Result<(), Failure> {
    paas_api::auth::check_label("space", &args.space).map_err(Failure::usage)?;
    let req = CreateSpace {
        name: args.space.clone(),
        quota: Quota::default(),
    };
    let _: SpaceInfo = super::client(ctx)?
        .json(Method::POST, "/v1/spaces", Some(&req))
        .await?;
    println!(
        "Created space {0}: give people roles in it with `paas set-space-role USER {0} developer`",
        args.space
    );
    Ok(())
}

pub async fn delete(args: DeleteArgs, ctx: super::Ctx) -> Result<(), Failure> {
    let _ = args.force;
    super::client(ctx)?
        .delete(&format!("/v1/spaces/{}", args.space))
        .await?;
    println!("Deleted space {}", args.space);
    Ok(())
}

pub async fn users(args: SpaceArgs, ctx: super::Ctx) -> Result<(), Failure> {
    let members: Vec<SpaceMember> = super::client(ctx)?
        .list(&format!("/v1/spaces/{}/users", args.space))
        .await?;
    if ctx.json {
        return super::print_json(&members);
    }
    let rows: Vec<[String; 2]> = members
        .iter()
        .map(|m| {
            let roles: Vec<&str> = m.roles.iter().map(|r| r.as_str()).collect();
            [m.user.clone(), roles.join(", ")]
        })
        .collect();
    print_table(&["user", "roles"], &rows);
    Ok(())
}

pub async fn set_role(args: RoleArgs, on: bool, ctx: super::Ctx) -> Result<(), Failure> {
    let path = format!(
        "/v1/spaces/{}/users/{}/roles/{}",
        args.space, args.user, args.role
    );
    let client = super::client(ctx)?;
    if on {
        let resp = client
            .send(Method::PUT, &path, bytes::Bytes::new(), "application/json")
            .await?;
        crate::client::check(resp, crate::exit::GENERAL).await?;
        println!("{} is now {} in space {}", args.user, args.role, args.space);
    } else {
        client.delete(&path).await?;
        println!(
            "{} is no longer {} in space {}",
            args.user, args.role, args.space
        );
    }
    Ok(())
}

pub async fn set_quota(args: QuotaArgs, ctx: super::Ctx) -> Result<(), Failure> {
    let client = super::client(ctx)?;
    let now: SpaceInfo = client
        .json(
            Method::GET,
            &format!("/v1/spaces/{}", args.space),
            None::<&()>,
        )
        .await?;
    // Flags left out keep their limit; 0 takes it away.
    let pick = |given: Option<u32>, had: Option<u32>| match given {
        Some(0) => None,
        Some(n) => Some(n),
        None => had,
    };
    let quota = Quota {
        memory_mb: match args.memory {
            Some(m) if m.bytes() == 0 => None,
            Some(m) => Some(m.bytes() / (1024 * 1024)),
            None => now.quota.memory_mb,
        },
        instances: pick(args.instances, now.quota.instances),
        routes: pick(args.routes, now.quota.routes),
        services: pick(args.services, now.quota.services),
        tasks: pick(args.tasks, now.quota.tasks),
    };
    let space: SpaceInfo = client
        .json(
            Method::PUT,
            &format!("/v1/spaces/{}/quota", args.space),
            Some(&quota),
        )
        .await?;
    if ctx.json {
        return super::print_json(&space);
    }
    print_table(&HEADERS, &[show(&space)]);
    Ok(())
}
