//! NDJSON streams shared by the API and the peer listener: an app's log lines, and the
//! output of a command run in an instance.

use paas_api::{AppName, ExecEvent, LogLine, LogStream};

use super::body::{self, ApiBody};
use crate::logs::Logs;

/// Which of an app's log lines a stream carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLines {
    /// The recent ones, then the stream ends.
    Recent,
    /// The recent ones, then each new one.
    Follow,
    /// Only each new one.
    New,
    /// The recent ones from this moment (milliseconds since the epoch) on, then each
    /// new one.
    Since(u64),
}

/// A stream of the lines `logs` keeps of `app`.
pub fn stream_logs(logs: &Logs, app: &AppName, which: LogLines) -> http::Response<ApiBody> {
    let (out, resp) = body::ndjson_stream();
    if which == LogLines::Recent {
        let recent = logs.recent(app);
        tokio::spawn(async move {
            for line in recent {
                if !out.send(&line).await {
                    return;
                }
            }
        });
        return resp;
    }
    let (mut recent, mut live) = logs.follow(app);
    match which {
        LogLines::New => recent.clear(),
        LogLines::Since(ms) => recent.retain(|l| l.timestamp_ms >= ms),
        LogLines::Recent | LogLines::Follow => {}
    }
    tokio::spawn(async move {
        for line in recent {
            if !out.send(&line).await {
                return;
            }
        }
        // A client slower than the app: the live feed lags, and says how much it lost.
        loop {
            match live.recv().await {
                Ok(line) => {
                    if !out.send(&line).await {
                        return;
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    if !out.send(&dropped(n)).await {
                        return;
                    }
                }
                Err(_) => return,
            }
        }
    });
    resp
}

/// The line that says `n` lines were dropped for a slow reader.
pub fn dropped(n: u64) -> LogLine {
    LogLine {
        timestamp_ms: crate::logs::now_ms(),
        source: "API".into(),
        stream: LogStream::Err,
        line: format!("{n} lines were dropped because the client read too slowly"),
    }
}

/// The output of `child`, line by line, then its exit code.
pub fn stream_exec(mut child: tokio::process::Child) -> http::Response<ApiBody> {
    let (out, resp) = body::ndjson_stream();
    let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
    tokio::spawn(async move {
        // Each line waits for the client to take it: a client that reads slowly slows
        // the command (its pipe fills), and nothing piles up here.
        let pump = |pipe: Option<Box<dyn tokio::io::AsyncRead + Unpin + Send>>, stream| {
            let out = out.clone();
            async move {
                let Some(pipe) = pipe else { return };
                let mut lines = paas_runtime::output::Lines::new(pipe, 64 * 1024);
                while let Some(line) = lines.next_line().await {
                    if !out.send(&ExecEvent::Output { stream, line }).await {
                        return;
                    }
                }
            }
        };
        let run = async {
            tokio::join!(
                pump(stdout.map(|p| Box::new(p) as _), LogStream::Out),
                pump(stderr.map(|p| Box::new(p) as _), LogStream::Err)
            );
            child.wait().await
        };
        tokio::select! {
            status = run => {
                let code = status.ok().and_then(|s| s.code()).unwrap_or(-1);
                out.send(&ExecEvent::Exit { code }).await;
            }
            _ = out.closed() => {}
        }
    });
    resp
}
