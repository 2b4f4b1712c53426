//! `paas target`, `paas logout`, `paas version`: where the CLI points, and what it is.

use http::Method;
use paas_api::Info;

use crate::exit::Failure;

#[derive(Debug, clap::Args)]
pub struct Args {}

/// Shows the API the CLI talks to, and checks that it answers.
pub async fn target(_: Args, ctx: super::Ctx) -> Result<(), Failure> {
    let t = crate::config::load(ctx.skip_ssl_validation)?;
    let info: Info = super::client(ctx)?
        .json(Method::GET, "/v1/info", None::<&()>)
        .await?;
    if ctx.json {
        return super::print_json(&serde_json::json!({
            "api": t.api,
            "version": info.version,
            "domain": info.domain,
            "router": info.router_url,
        }));
    }
    println!("api:     {}", t.api);
    println!("version: paas {}", info.version);
    println!(
        "domain:  {} (apps answer at NAME.{})",
        info.domain, info.domain
    );
    println!("router:  {}", info.router_url);
    Ok(())
}

/// Forgets what `paas login` saved.
pub async fn logout(_: Args, _: super::Ctx) -> Result<(), Failure> {
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
