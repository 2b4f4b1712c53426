//! `paas events NAME [--follow]`: crashes, deploys and route changes of an app, oldest
//! first; with `--follow`, new ones as they happen.

use paas_api::{format_timestamp_ms, AppEvent};

use std::io::Write;

use super::apps::print_table;
use crate::client::{check, ndjson};
use crate::exit::{self, Failure};
use crate::terminal::Screen;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The app whose events to show.
    name: String,
    /// Keep printing events as they happen (Ctrl-C to stop).
    #[arg(short = 'f', long)]
    follow: bool,
}

pub async fn run(args: Args, ctx: super::Ctx) -> Result<(), Failure> {
    let name = super::app_name(&args.name)?;
    if args.follow {
        return follow(&name, ctx).await;
    }
    let events: Vec<AppEvent> = super::client(ctx)?
        .list(&format!("/v1/apps/{name}/events"))
        .await?;
    if ctx.json {
        return super::print_json(&events);
    }
    if events.is_empty() {
        println!("No events for {name} yet.");
        return Ok(());
    }
    let rows: Vec<[String; 5]> = events.iter().map(row).collect();
    print_table(&HEADERS, &rows);
    Ok(())
}

const HEADERS: [&str; 5] = ["time", "event", "instance", "exit", "description"];

fn row(e: &AppEvent) -> [String; 5] {
    [
        format_timestamp_ms(e.timestamp_ms),
        e.kind.clone(),
        e.instance.map_or(String::new(), |i| format!("#{i}")),
        e.exit_code.map_or(String::new(), |c| c.to_string()),
        e.description.clone(),
    ]
}

/// Prints events as the API streams them: one line each (JSON with --json).
async fn follow(name: &paas_api::AppName, ctx: super::Ctx) -> Result<(), Failure> {
    let resp = super::client(ctx)?
        .send(
            http::Method::GET,
            &format!("/v1/apps/{name}/events?follow=true"),
            bytes::Bytes::new(),
            "application/json",
        )
        .await?;
    let resp = check(resp, exit::GENERAL).await?;
    let screen = Screen::stdout();
    let mut stdout = std::io::stdout().lock();
    ndjson(resp, |e: AppEvent| {
        let line = if ctx.json {
            serde_json::to_string(&e).unwrap_or_default()
        } else {
            // A description can quote the app (a crash's reason, a failed start's).
            screen.line(row(&e).join("  ").trim_end()).into_owned()
        };
        writeln!(stdout, "{line}")
            .and_then(|()| stdout.flush())
            .is_ok()
    })
    .await
}
