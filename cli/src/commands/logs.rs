//! `paas logs NAME [--recent]`: the app's log lines, followed live unless `--recent`.
//!
//! The lines are printed as text even with `--json`, so a terminal gets them
//! neutralised either way; a pipe gets them byte for byte.

use std::io::Write;

use bytes::Bytes;
use http::Method;
use paas_api::{format_timestamp_ms, LogLine};

use crate::client::{check, ndjson};
use crate::exit::{self, Failure};
use crate::terminal::{neutralise, Screen};

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
    let screen = Screen::stdout();
    let mut out = std::io::stdout().lock();
    ndjson(resp, |l: LogLine| {
        // A closed pipe (`paas logs app | head`) is the reader's choice, not an error.
        writeln!(out, "{}", format_line(&l, screen)).is_ok() && out.flush().is_ok()
    })
    .await
}

/// `2026-11-21T23:03:31.123Z [APP/PROC/WEB/0] OUT listening on port 8080`
///
/// The line is the app's (or its build's) own text. On a terminal it is neutralised
/// ([`crate::terminal`]), and should it hold line breaks, each of its lines is printed
/// with the prefix, so that no text of an app's can pass for a line of another source.
/// Elsewhere it is printed as it is.
pub fn format_line(l: &LogLine, screen: Screen) -> String {
    let prefix = format!(
        "{} [{}] {} ",
        format_timestamp_ms(l.timestamp_ms),
        l.source,
        l.stream.as_str(),
    );
    if !screen.is_terminal() {
        return prefix + &l.line;
    }
    l.line
        .split('\n')
        .map(|part| neutralise(&format!("{prefix}{part}")).into_owned())
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use paas_api::LogStream;

    fn line(text: &str) -> LogLine {
        LogLine {
            timestamp_ms: 0,
            source: "APP/PROC/WEB/0".into(),
            stream: LogStream::Out,
            line: text.into(),
        }
    }

    #[test]
    fn a_terminal_gets_escapes_as_text_and_a_pipe_gets_them_as_they_are() {
        let l = line("\x1b]52;c;aGk=\x07ok\roverprint");
        assert_eq!(
            format_line(&l, Screen::new(true)),
            "1970-01-01T00:00:00.000Z [APP/PROC/WEB/0] OUT ^[]52;c;aGk=^Gok^Moverprint"
        );
        assert_eq!(
            format_line(&l, Screen::new(false)),
            "1970-01-01T00:00:00.000Z [APP/PROC/WEB/0] OUT \x1b]52;c;aGk=\x07ok\roverprint"
        );
    }

    #[test]
    fn each_line_of_a_multi_line_log_line_carries_the_prefix_on_a_terminal() {
        // Else an app's text after a line break could pass for the platform's own line.
        let l = line("one\n1970-01-01T00:00:00.000Z [API] OUT deleted\x1b[1A");
        assert_eq!(
            format_line(&l, Screen::new(true)),
            "1970-01-01T00:00:00.000Z [APP/PROC/WEB/0] OUT one\n\
             1970-01-01T00:00:00.000Z [APP/PROC/WEB/0] OUT 1970-01-01T00:00:00.000Z [API] OUT deleted^[[1A"
        );
    }
}
