//! Users: `users`, `create-user`, `delete-user` (platform admins), and `passwd`.

use std::io::IsTerminal;

use http::Method;
use paas_api::auth::{ChangePassword, CreateUser, UserInfo};

use super::apps::print_table;
use crate::exit::Failure;

#[derive(Debug, clap::Args)]
pub struct ListArgs {}

#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    user: String,
    /// Their password (at least 8 characters); tell it to them out of band. Left out,
    /// the user cannot log in with a password.
    password: Option<String>,
    /// Make them a platform admin: every space, users, domains, buildpacks, cells.
    #[arg(long)]
    admin: bool,
}

#[derive(Debug, clap::Args)]
pub struct DeleteArgs {
    user: String,
    /// Do not ask (paas never asks: accepted for cf's scripts).
    #[arg(short = 'f')]
    force: bool,
}

#[derive(Debug, clap::Args)]
pub struct PasswdArgs {}

pub async fn list(_: ListArgs, ctx: super::Ctx) -> Result<(), Failure> {
    let users: Vec<UserInfo> = super::client(ctx)?.list("/v1/users").await?;
    if ctx.json {
        return super::print_json(&users);
    }
    let rows: Vec<[String; 3]> = users
        .iter()
        .map(|u| {
            let spaces: Vec<String> = u
                .spaces
                .iter()
                .map(|(space, roles)| {
                    let roles: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
                    format!("{space} ({})", roles.join(", "))
                })
                .collect();
            [
                u.name.clone(),
                if u.admin { "admin" } else { "-" }.to_string(),
                spaces.join("; "),
            ]
        })
        .collect();
    print_table(&["user", "platform", "spaces"], &rows);
    Ok(())
}

pub async fn create(args: CreateArgs, ctx: super::Ctx) -> Result<(), Failure> {
    paas_api::auth::check_label("user", &args.user).map_err(Failure::usage)?;
    let req = CreateUser {
        name: args.user.clone(),
        password: args.password,
        admin: args.admin,
    };
    let _: UserInfo = super::client(ctx)?
        .json(Method::POST, "/v1/users", Some(&req))
        .await?;
    println!(
        "Created user {0}: give them a role with `paas set-space-role {0} SPACE developer`",
        args.user
    );
    Ok(())
}

pub async fn delete(args: DeleteArgs, ctx: super::Ctx) -> Result<(), Failure> {
    let _ = args.force;
    super::client(ctx)?
        .delete(&format!("/v1/users/{}", args.user))
        .await?;
    println!("Deleted user {}: their logins have ended", args.user);
    Ok(())
}

/// Changes your password; your other logins end.
pub async fn passwd(_: PasswdArgs, ctx: super::Ctx) -> Result<(), Failure> {
    if !std::io::stdin().is_terminal() {
        return Err(
            Failure::usage("passwd asks on a terminal, and there is none")
                .with_hint("run it in a terminal"),
        );
    }
    let old_password = super::login::ask("Current password: ", true)?;
    let new_password = super::login::ask("New password: ", true)?;
    if super::login::ask("New password again: ", true)? != new_password {
        return Err(Failure::usage(
            "the two new passwords differ; nothing changed",
        ));
    }
    let req = ChangePassword {
        old_password,
        new_password,
    };
    let resp = super::client(ctx)?
        .send(
            Method::PUT,
            "/v1/user/password",
            bytes::Bytes::from(serde_json::to_vec(&req).unwrap_or_default()),
            "application/json",
        )
        .await?;
    crate::client::check(resp, crate::exit::GENERAL).await?;
    println!("Password changed; your other logins have ended");
    Ok(())
}
