//! `paas exec NAME [-i INDEX] -- COMMAND...`: run a command in a running instance, as
//! `cf ssh NAME -c COMMAND` does, and exit with its exit code.

use std::io::Write;

use bytes::Bytes;
use http::Method;
use paas_api::{ExecEvent, ExecRequest, LogStream};

use crate::client::{check, ndjson};
use crate::exit::{self, Failure};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The app to run the command in.
    name: String,
    /// Which instance.
    #[arg(
        short = 'i',
        long = "instance",
        default_value_t = 0,
        value_name = "INDEX"
    )]
    index: u32,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    command: Vec<String>,
}

pub async fn run(args: Args, ctx: super::Ctx) -> Result<(), Failure> {
    let name = super::app_name(&args.name)?;
    let client = super::client(ctx)?;
    let body = serde_json::to_vec(&ExecRequest {
        index: args.index,
        command: args.command,
    })
    .map_err(|e| Failure::general(e.to_string()))?;
    let resp = client
        .send(
            Method::POST,
            &format!("/v1/apps/{name}/exec"),
            Bytes::from(body),
            "application/json",
        )
        .await?;
    let resp = check(resp, exit::GENERAL).await?;
    let mut code = None;
    ndjson(resp, |e: ExecEvent| {
        match e {
            ExecEvent::Output {
                stream: LogStream::Out,
                line,
            } => {
                let mut o = std::io::stdout().lock();
                let _ = writeln!(o, "{line}").and_then(|_| o.flush());
            }
            ExecEvent::Output {
                stream: LogStream::Err,
                line,
            } => eprintln!("{line}"),
            ExecEvent::Exit { code: c } => code = Some(c),
        }
        code.is_none()
    })
    .await?;
    match code {
        Some(0) => Ok(()),
        // The command's own exit code, as ssh passes it on.
        Some(c) => std::process::exit(c.clamp(1, 255)),
        None => Err(
            Failure::general("the command's output ended without its exit code")
                .with_hint("the instance may have stopped; see `paas app`"),
        ),
    }
}
