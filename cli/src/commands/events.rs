//! `paas events NAME`: crashes and deploys of an app, oldest first.

use http::Method;
use paas_api::{format_timestamp_ms, AppEvent};

use super::apps::print_table;
use crate::exit::Failure;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The app whose events to show.
    name: String,
}

pub async fn run(args: Args, ctx: super::Ctx) -> Result<(), Failure> {
    let name = super::app_name(&args.name)?;
    let events: Vec<AppEvent> = super::client(ctx)?
        .json(Method::GET, &format!("/v1/apps/{name}/events"), None::<&()>)
        .await?;
    if ctx.json {
        return super::print_json(&events);
    }
    if events.is_empty() {
        println!("No events for {name} yet.");
        return Ok(());
    }
    let rows: Vec<[String; 5]> = events
        .iter()
        .map(|e| {
            [
                format_timestamp_ms(e.timestamp_ms),
                e.kind.clone(),
                e.instance.map_or(String::new(), |i| format!("#{i}")),
                e.exit_code.map_or(String::new(), |c| c.to_string()),
                e.description.clone(),
            ]
        })
        .collect();
    print_table(&["time", "event", "instance", "exit", "description"], &rows);
    Ok(())
}
