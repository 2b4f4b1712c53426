//! `paas delete NAME`: stop an app and delete it with its routes and logs.

use bytes::Bytes;
use http::Method;

use crate::client::check;
use crate::exit::{self, Failure};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The app to delete.
    name: String,
}

pub async fn run(args: Args, ctx: super::Ctx) -> Result<(), Failure> {
    let name = super::app_name(&args.name)?;
    let client = super::client(ctx)?;
    let resp = client
        .send(
            Method::DELETE,
            &format!("/v1/apps/{name}"),
            Bytes::new(),
            "application/json",
        )
        .await?;
    check(resp, exit::GENERAL).await?;
    println!("Deleted app {name}");
    Ok(())
}
