//! `paas login`: check the API and token, then save them.

use http::Method;
use paas_api::Info;

use crate::client::Client;
use crate::config::{self, Target};
use crate::exit::Failure;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The API, e.g. https://127.0.0.1:9443
    #[arg(long)]
    api: String,
    /// A token: paasd writes the admin token to its data folder (admin-token).
    #[arg(long)]
    token: String,
    /// The API's certificate, or the CA that signed it (paasd writes api-cert.pem).
    #[arg(long, value_name = "FILE")]
    ca_cert: Option<String>,
}

pub async fn run(args: Args, ctx: super::Ctx) -> Result<(), Failure> {
    let target = Target {
        api: args.api,
        token: args.token.trim().to_string(),
        ca_cert_pem: args.ca_cert.as_deref().map(config::read_ca).transpose()?,
        skip_ssl_validation: ctx.skip_ssl_validation,
    };
    let info: Info = Client::new(&target)?
        .json(Method::GET, "/v1/info", None::<&()>)
        .await?;
    let path = config::save(&target)?;
    println!(
        "Logged in to {} (paas {}); apps answer at NAME.{}",
        target.api, info.version, info.domain
    );
    println!("Settings saved in {}", path.display());
    Ok(())
}
