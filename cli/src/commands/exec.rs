//! `paas exec NAME [-i INDEX] -- COMMAND...`: run a command in a running instance, as
//! `cf ssh NAME -c COMMAND` does, and exit with its exit code.
//!
//! The command's output arrives as lines (the API streams it so; there is no terminal
//! session): printed to a terminal, each is neutralised like the app's logs, since what
//! runs in an instance is the tenant's code and may print escapes meant for whoever
//! looks ([`crate::terminal`]). Piped, it is passed on byte for byte. An interactive
//! session, should one be added (`cf ssh` with a TTY: the person's terminal in raw mode
//! talking to a shell in the instance), must pass its bytes raw instead: it is the
//! person's own shell, and full-screen programs need their escapes.

use std::io::Write;

use bytes::Bytes;
use http::Method;
use paas_api::{ExecEvent, ExecRequest, LogStream};

use crate::client::{check, ndjson};
use crate::exit::{self, Failure};
use crate::terminal::Screen;

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
    /// Which process type's instance (`web`, `worker`, … as the Procfile names them).
    #[arg(
        short = 'p',
        long = "process",
        value_name = "TYPE",
        default_value = "web"
    )]
    process: String,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    command: Vec<String>,
}

pub async fn run(args: Args, ctx: super::Ctx) -> Result<(), Failure> {
    let name = super::app_name(&args.name)?;
    let client = super::client(ctx)?;
    let body = serde_json::to_vec(&ExecRequest {
        index: args.index,
        process: Some(args.process),
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
    follow(resp, "the instance may have stopped; see `paas app`").await
}

/// Prints a command's output stream as it comes and exits with its exit code; `lost`
/// is the hint when the stream ends without one.
pub async fn follow(
    resp: http::Response<hyper::body::Incoming>,
    lost: &str,
) -> Result<(), Failure> {
    let code = follow_to_end(resp, lost, None).await?;
    exit_with(code)
}

/// Exits as the command did: 0 returns, anything else ends `paas` with that code, as
/// ssh passes a command's on.
pub fn exit_with(code: i32) -> Result<(), Failure> {
    match code {
        0 => Ok(()),
        c => std::process::exit(c.clamp(1, 255)),
    }
}

/// Prints a command's output stream as it comes and answers its exit code; an attached
/// task's number goes to `task`.
pub async fn follow_to_end(
    resp: http::Response<hyper::body::Incoming>,
    lost: &str,
    task: Option<&std::sync::OnceLock<u64>>,
) -> Result<i32, Failure> {
    let mut code = None;
    let (stdout, stderr) = (Screen::stdout(), Screen::stderr());
    ndjson(resp, |e: ExecEvent| {
        match e {
            ExecEvent::Output {
                stream: LogStream::Out,
                line,
            } => {
                let mut o = std::io::stdout().lock();
                let _ = writeln!(o, "{}", stdout.text(&line)).and_then(|_| o.flush());
            }
            ExecEvent::Output {
                stream: LogStream::Err,
                line,
            } => eprintln!("{}", stderr.text(&line)),
            // The person's own session: passed on raw, escapes and all.
            ExecEvent::Tty { data } => {
                let mut o = std::io::stdout().lock();
                let _ = o.write_all(data.as_bytes()).and_then(|_| o.flush());
            }
            ExecEvent::Task { sequence } => {
                if let Some(t) = task {
                    let _ = t.set(sequence);
                }
            }
            ExecEvent::Exit { code: c } => code = Some(c),
        }
        code.is_none()
    })
    .await?;
    code.ok_or_else(|| {
        Failure::general("the command's output ended without its exit code").with_hint(lost)
    })
}
