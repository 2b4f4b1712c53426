//! `paas run NAME -- COMMAND...`: a one-off task of the app, attached, as Heroku's
//! `run`: what `paas` reads on its stdin is the task's input, its output streams back
//! as it is printed, and the command's exit code is `paas`'s. The task is recorded like
//! any other (`paas tasks`); leaving terminates it.
//!
//! From a terminal (stdin and stdout both), the task gets a terminal of its own, of the
//! same size, as `heroku run bash` does: this one goes into raw mode, keys (Ctrl-C
//! too) go to the task as typed, and what it shows comes back raw, so shells, editors
//! and progress bars work. Otherwise (or with `--no-tty`) its input and output are
//! pipes, its output comes back line by line, and Ctrl-C leaves.

use std::convert::Infallible;
use std::io::Read;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::Method;
use hyper::body::{Body, Frame};
use paas_api::{MemorySize, TaskRequest, TerminalSize};

use crate::client::check;
use crate::exit::{self, Failure};

#[derive(Debug, clap::Args)]
pub struct Args {
    name: String,
    /// The task's name in logs and lists (default: made up).
    #[arg(long = "name", value_name = "NAME")]
    task_name: Option<String>,
    /// Memory for the task, e.g. 512M (default: the app's).
    #[arg(short = 'm', long = "memory", value_name = "SIZE")]
    memory: Option<String>,
    /// Disk for the task, e.g. 2G (default: the app's).
    #[arg(short = 'k', long = "disk", value_name = "SIZE")]
    disk: Option<String>,
    /// Give the task pipes, not a terminal, even when paas runs in one.
    #[arg(long = "no-tty")]
    no_tty: bool,
    /// The command, after `--`: one argument is a shell command line (`"rake db:migrate
    /// && echo done"`); several are quoted and joined into one.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    command: Vec<String>,
}

pub async fn run(args: Args, ctx: super::Ctx) -> Result<(), Failure> {
    let name = super::app_name(&args.name)?;
    let size = |s: &Option<String>| {
        s.as_deref()
            .map(MemorySize::parse)
            .transpose()
            .map_err(|e| Failure::usage(e.to_string()))
    };
    let command = match args.command.as_slice() {
        [one] => one.clone(),
        many => many.iter().map(|a| quote(a)).collect::<Vec<_>>().join(" "),
    };
    let tty = (!args.no_tty)
        .then(crate::tty::size)
        .flatten()
        .map(|(rows, cols)| TerminalSize { rows, cols });
    let req = TaskRequest {
        command,
        name: args.task_name,
        memory: size(&args.memory)?,
        disk: size(&args.disk)?,
        tty,
    };
    let mut head = serde_json::to_vec(&req).unwrap_or_default();
    head.push(b'\n');
    let resp = super::client(ctx)?
        .send_body(
            Method::POST,
            &format!("/v1/apps/{name}/tasks?attach"),
            Input::from_stdin(Bytes::from(head)),
            "application/x-ndjson",
        )
        .await?;
    let resp = check(resp, exit::GENERAL).await?;
    let lost = "the task stopped; see `paas tasks`";
    if tty.is_none() {
        return super::exec::follow(resp, lost).await;
    }
    // Restored before paas exits with the task's code.
    let raw = crate::tty::RawMode::enter();
    let number: Arc<OnceLock<u64>> = Arc::default();
    let resizing = tokio::spawn(follow_resizes(ctx, name.clone(), Arc::clone(&number)));
    let code = super::exec::follow_to_end(resp, lost, Some(&number)).await;
    resizing.abort();
    drop(raw);
    super::exec::exit_with(code?)
}

/// Gives the task's terminal the size of this one each time it is resized (SIGWINCH),
/// once the task's number is known.
async fn follow_resizes(ctx: super::Ctx, app: paas_api::AppName, number: Arc<OnceLock<u64>>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut resized), Ok(client)) = (signal(SignalKind::window_change()), super::client(ctx))
    else {
        return;
    };
    while resized.recv().await.is_some() {
        let (Some(sequence), Some((rows, cols))) = (number.get(), crate::tty::size()) else {
            continue;
        };
        let body = serde_json::to_vec(&TerminalSize { rows, cols }).unwrap_or_default();
        // Best effort: a lost resize leaves the old size, as over a flaky ssh.
        let _ = client
            .send(
                Method::POST,
                &format!("/v1/apps/{app}/tasks/{sequence}/resize"),
                Bytes::from(body),
                "application/json",
            )
            .await;
    }
}

/// The request's body: the task as one JSON line, then what `paas` reads on its stdin,
/// as it comes.
struct Input {
    head: Option<Bytes>,
    stdin: tokio::sync::mpsc::Receiver<Bytes>,
}

impl Input {
    fn from_stdin(head: Bytes) -> Self {
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        // A thread of its own, not the runtime's: a read that waits on a terminal must
        // not hold `paas` back from exiting when the task is over.
        std::thread::spawn(move || {
            let mut stdin = std::io::stdin().lock();
            let mut buf = vec![0u8; 16 * 1024];
            while let Ok(n @ 1..) = stdin.read(&mut buf) {
                if tx.blocking_send(Bytes::copy_from_slice(&buf[..n])).is_err() {
                    return;
                }
            }
        });
        Input {
            head: Some(head),
            stdin: rx,
        }
    }
}

impl Body for Input {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if let Some(head) = self.head.take() {
            return Poll::Ready(Some(Ok(Frame::data(head))));
        }
        self.stdin
            .poll_recv(cx)
            .map(|chunk| chunk.map(|c| Ok(Frame::data(c))))
    }
}

/// `arg` as one word of a POSIX shell command line.
fn quote(arg: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "_./:=@%+,-".contains(c);
    if !arg.is_empty() && arg.chars().all(plain) {
        return arg.to_string();
    }
    format!("'{}'", arg.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn words_are_quoted_only_when_a_shell_would_split_or_expand_them() {
        assert_eq!(super::quote("db:migrate"), "db:migrate");
        assert_eq!(super::quote("two words"), "'two words'");
        assert_eq!(super::quote("$HOME"), "'$HOME'");
        assert_eq!(super::quote("it's"), r"'it'\''s'");
        assert_eq!(super::quote(""), "''");
    }
}
