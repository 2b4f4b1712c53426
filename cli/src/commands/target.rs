//! `paas target`, `paas logout`, `paas version`: where the CLI points, and what it is.

use http::Method;
use paas_api::auth::{SpaceInfo, UserInfo};
use paas_api::Info;

use crate::exit::Failure;

#[derive(Debug, clap::Args)]
pub struct Args {}

#[derive(Debug, clap::Args)]
pub struct TargetArgs {
    /// Work in this space from now on: new apps and services are made there, and
    /// lists show it.
    #[arg(long, short = 's')]
    space: Option<String>,
}

/// Shows the API, user and space the CLI works with (after switching space with -s),
/// and checks that the API answers.
pub async fn target(args: TargetArgs, ctx: super::Ctx) -> Result<(), Failure> {
    let mut t = crate::config::load(ctx.skip_ssl_validation)?;
    if let Some(space) = args.space {
        // A space saved in the config file would never be read: the environment's
        // target wins over the file (config::load).
        if crate::config::from_environment() {
            return Err(Failure::general(format!(
                "cannot switch to space {space}: PAAS_API and PAAS_TOKEN are set, so the CLI does not read a saved space"
            ))
            .with_hint(format!("set PAAS_SPACE={space} instead, or unset PAAS_API and PAAS_TOKEN and use `paas login`")));
        }
        let _: SpaceInfo = super::client(ctx)?
            .json(Method::GET, &format!("/v1/spaces/{space}"), None::<&()>)
            .await?;
        t.space = Some(space);
        crate::config::save(&t).map_err(|e| Failure::general(format!("{e:#}")))?;
    }
    let client = crate::client::Client::new(&t)?;
    let info: Info = client.json(Method::GET, "/v1/info", None::<&()>).await?;
    let me: UserInfo = client.json(Method::GET, "/v1/user", None::<&()>).await?;
    if ctx.json {
        return super::print_json(&serde_json::json!({
            "api": t.api,
            "version": info.version,
            "domain": info.domain,
            "router": info.router_url,
            "user": me.name,
            "admin": me.admin,
            "space": t.space,
        }));
    }
    println!("api:     {}", t.api);
    println!(
        "user:    {}{}",
        me.name,
        if me.admin { " (platform admin)" } else { "" }
    );
    println!(
        "space:   {}",
        t.space
            .as_deref()
            .unwrap_or("none (pick one with `paas target -s SPACE`)")
    );
    println!("version: paas {}", info.version);
    println!(
        "domain:  {} (apps answer at NAME.{})",
        info.domain, info.domain
    );
    println!("router:  {}", info.router_url);
    Ok(())
}

/// Ends the login on the API (its tokens stop working) and forgets what `paas login`
/// saved.
pub async fn logout(_: Args, ctx: super::Ctx) -> Result<(), Failure> {
    if let Ok(t) = crate::config::load(ctx.skip_ssl_validation) {
        if t.refresh_token.is_some() {
            // Gone from this machine even if the API cannot be told: it lapses then.
            let sent = async {
                let resp = super::client(ctx)?
                    .send(
                        Method::POST,
                        "/v1/logout",
                        bytes::Bytes::new(),
                        "application/json",
                    )
                    .await?;
                crate::client::check(resp, crate::exit::GENERAL).await
            };
            if let Err(e) = sent.await {
                eprintln!(
                    "The API could not be told ({}); the token runs out within the hour",
                    e.message
                );
            }
        }
    }
    let path = crate::config::home()?.join("config.json");
    match std::fs::remove_file(&path) {
        Ok(()) => println!("Logged out: removed {}", path.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => println!("Not logged in"),
        Err(e) => {
            return Err(Failure::general(format!(
                "removing {}: {e}",
                path.display()
            )))
        }
    }
    Ok(())
}

/// The CLI's version, and the API's when one is reachable.
pub async fn version(_: Args, ctx: super::Ctx) -> Result<(), Failure> {
    println!("paas CLI {}", env!("CARGO_PKG_VERSION"));
    if let Ok(client) = super::client(ctx) {
        if let Ok(info) = client
            .json::<Info>(Method::GET, "/v1/info", None::<&()>)
            .await
        {
            println!("paasd {}", info.version);
        }
    }
    Ok(())
}
