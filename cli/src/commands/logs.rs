//! `paas logs NAME [--recent]`: the app's log lines, followed live unless `--recent`.

use std::io::Write;

use bytes::Bytes;
use http::Method;
use paas_api::{format_timestamp_ms, LogLine};

use crate::client::{check, ndjson};
use crate::exit::{self, Failure};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The app whose logs to show.
    name: String,
    /// Print the recent lines and stop, instead of following new ones.
    #[arg(long)]
    recent: bool,
}

pub async fn run(args: Args, ctx: super::Ctx) -> Result<(), Failure> {
    let name = super::app_name(&args.name)?;
    let client = super::client(ctx)?;
    let path = if args.recent {
        format!("/v1/apps/{name}/logs?recent=true")
    } else {
        format!("/v1/apps/{name}/logs?follow=true")
    };
    let resp = client
        .send(Method::GET, &path, Bytes::new(), "application/json")
        .await?;
    let resp = check(resp, exit::GENERAL).await?;
    let mut out = std::io::stdout().lock();
    ndjson(resp, |l: LogLine| {
        // A closed pipe (`paas logs app | head`) is the reader's choice, not an error.
        writeln!(out, "{}", format_line(&l)).is_ok() && out.flush().is_ok()
    })
    .await
}

/// `2026-11-21T23:03:31.123Z [APP/WEB/0] OUT listening on port 8080`
pub fn format_line(l: &LogLine) -> String {
    format!(
        "{} [{}] {} {}",
        format_timestamp_ms(l.timestamp_ms),
        l.source,
        l.stream.as_str(),
        l.line
    )
}
