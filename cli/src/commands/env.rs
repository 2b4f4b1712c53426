//! `paas env`, `set-env`, `unset-env`: an app's own environment variables.
//!
//! Changes apply at the app's next push (or restart), as in Cloud Foundry.

use std::collections::BTreeMap;

use bytes::Bytes;
use http::Method;

use crate::client::{check, read_all};
use crate::exit::{self, Failure};
use crate::terminal::Screen;

#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    name: String,
    /// Show the values of variables that look secret (passwords, tokens, keys).
    #[arg(long)]
    reveal: bool,
}

#[derive(Debug, clap::Args)]
pub struct SetArgs {
    name: String,
    key: String,
    value: String,
}

#[derive(Debug, clap::Args)]
pub struct UnsetArgs {
    name: String,
    key: String,
}

/// Names whose values are hidden unless `--reveal`.
fn looks_secret(key: &str) -> bool {
    let k = key.to_ascii_uppercase();
    [
        "SECRET",
        "PASSWORD",
        "PASSWD",
        "TOKEN",
        "KEY",
        "CREDENTIAL",
        "PRIVATE",
    ]
    .iter()
    .any(|s| k.contains(s))
}

pub async fn show(args: ShowArgs, ctx: super::Ctx) -> Result<(), Failure> {
    let name = super::app_name(&args.name)?;
    let client = super::client(ctx)?;
    let mut env: BTreeMap<String, String> = client
        .json(Method::GET, &format!("/v1/apps/{name}/env"), None::<&()>)
        .await?;
    // What bound services add: credentials, always redacted unless asked for.
    let system: serde_json::Value = client
        .json(
            Method::GET,
            &format!("/v1/apps/{name}/system-env"),
            None::<&()>,
        )
        .await?;
    let mut from_services = Vec::new();
    if let Some(vars) = system.as_object() {
        for (k, v) in vars {
            let bound = v.as_object().is_none_or(|o| !o.is_empty());
            if bound {
                let text = v.as_str().map_or_else(|| v.to_string(), str::to_string);
                env.insert(k.clone(), text);
                from_services.push(k.clone());
            }
        }
    }
    let shown: BTreeMap<String, String> = env
        .into_iter()
        .map(|(k, v)| {
            let redact = (looks_secret(&k) || from_services.contains(&k)) && !args.reveal;
            let v = if redact {
                "[redacted: use --reveal]".to_string()
            } else {
                v
            };
            (k, v)
        })
        .collect();
    if ctx.json {
        return super::print_json(&shown);
    }
    if shown.is_empty() {
        println!("App {name} sets no environment variables of its own and is bound to no service.");
    }
    // One variable a line on a terminal: a line break in a value shows as `^J`, so no
    // value can pass for another variable.
    let screen = Screen::stdout();
    for (k, v) in shown {
        println!("{}: {}", screen.line(&k), screen.line(&v));
    }
    Ok(())
}

async fn patch(
    name: &str,
    changes: BTreeMap<String, Option<String>>,
    ctx: super::Ctx,
) -> Result<(), Failure> {
    let client = super::client(ctx)?;
    let body = Bytes::from(serde_json::to_vec(&changes).unwrap_or_default());
    let resp = client
        .send(
            Method::PATCH,
            &format!("/v1/apps/{name}/env"),
            body,
            "application/json",
        )
        .await?;
    let resp = check(resp, exit::GENERAL).await?;
    read_all(resp).await.map(|_| ())
}

pub async fn set(args: SetArgs, ctx: super::Ctx) -> Result<(), Failure> {
    let name = super::app_name(&args.name)?;
    paas_api::check_env_name(&args.key).map_err(Failure::usage)?;
    patch(
        name.as_str(),
        BTreeMap::from([(args.key.clone(), Some(args.value))]),
        ctx,
    )
    .await?;
    println!(
        "Set {} for app {name}; push or restart the app to apply it.",
        args.key
    );
    Ok(())
}

pub async fn unset(args: UnsetArgs, ctx: super::Ctx) -> Result<(), Failure> {
    let name = super::app_name(&args.name)?;
    patch(
        name.as_str(),
        BTreeMap::from([(args.key.clone(), None)]),
        ctx,
    )
    .await?;
    println!(
        "Removed {} from app {name}; push or restart the app to apply it.",
        args.key
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn secret_looking_names_are_recognised() {
        for k in [
            "DB_PASSWORD",
            "api_token",
            "AWS_SECRET_ACCESS_KEY",
            "PRIVATE_PEM",
        ] {
            assert!(super::looks_secret(k), "{k}");
        }
        assert!(!super::looks_secret("GREETING"));
    }
}
