//! `paas restage NAME`: stage the app's current package again (with the buildpacks and
//! environment it has now) and roll the instances over to the new droplet.

use http::Method;

use crate::exit::Failure;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The app to restage.
    name: String,
    #[command(flatten)]
    rollout: super::lifecycle::RolloutArgs,
}

pub async fn run(args: Args, ctx: super::Ctx) -> Result<(), Failure> {
    let name = super::app_name(&args.name)?;
    let client = super::client(ctx)?;
    println!("Restaging app {name}");
    let resp = client
        .send(
            Method::POST,
            &format!("/v1/apps/{name}/restage"),
            args.rollout.body(),
            "application/json",
        )
        .await?;
    super::push::follow_deployment(resp, &name, super::push::Reporter { json: ctx.json }).await
}
