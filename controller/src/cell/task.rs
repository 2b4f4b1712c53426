//! A task: a one-off command in a container of its own, from the app's droplet, with
//! its env and limits (`cf run-task`). It runs once, with no route and no health check,
//! and is not restarted; its output goes to the app's log as `APP/TASK/<name>`.

use std::sync::Arc;

use std::time::Duration;

use paas_api::state::TaskEvent;
use paas_api::{ExecEvent, LogStream};
use paas_runtime::{ExitReason, Terminal, TtySize};
use tokio::sync::{mpsc, watch};

use super::instance::{self, InstanceSpec};
use super::{LocalCell, Reporter, STOP_GRACE};

/// How a task ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskEnd {
    /// Its command exited with this code.
    Exited(i32),
    /// It was killed by a signal, ran out of memory, or could not start.
    Failed(String),
    /// It was terminated (`paas terminate-task`, or paasd shutting down).
    Terminated,
}

/// What the app's `task` event says of task `done`, which ended.
pub fn end_description(done: &paas_api::TaskSummary) -> String {
    let how = match &done.failure {
        None => "succeeded".to_string(),
        Some(why) => format!("failed: {why}"),
    };
    format!("task {} ({}) {how}", done.sequence, done.name)
}

impl TaskEnd {
    /// As a cell's host tells a controller.
    pub fn to_event(&self) -> TaskEvent {
        let (exit_code, failure, terminated) = match self {
            TaskEnd::Exited(code) => (Some(*code), None, false),
            TaskEnd::Failed(why) => (None, Some(why.clone()), false),
            TaskEnd::Terminated => (None, None, true),
        };
        TaskEvent::Ended {
            exit_code,
            failure,
            terminated,
        }
    }

    /// `task` as it ended so.
    pub fn applied_to(&self, mut task: paas_api::TaskSummary) -> paas_api::TaskSummary {
        task.ended_ms = Some(crate::logs::now_ms());
        let (state, exit_code, failure) = match self {
            TaskEnd::Exited(0) => ("succeeded", Some(0), None),
            TaskEnd::Exited(code) => ("failed", Some(*code), Some(format!("exited with {code}"))),
            TaskEnd::Failed(why) => ("failed", None, Some(why.clone())),
            TaskEnd::Terminated => ("failed", None, Some("terminated".to_string())),
        };
        task.state = state.into();
        task.exit_code = exit_code;
        task.failure = failure;
        task
    }

    /// From what a cell's host told (`None` for an event that is not an end).
    pub fn from_event(event: &TaskEvent) -> Option<TaskEnd> {
        match event {
            TaskEvent::Ended {
                terminated: true, ..
            } => Some(TaskEnd::Terminated),
            TaskEvent::Ended {
                exit_code: Some(code),
                ..
            } => Some(TaskEnd::Exited(*code)),
            TaskEvent::Ended { failure, .. } => Some(TaskEnd::Failed(
                failure.clone().unwrap_or_else(|| "ended".into()),
            )),
            _ => None,
        }
    }
}

/// The caller's side of a task another host runs ([`RunningTask::elsewhere`]).
pub struct Elsewhere {
    pub running: Arc<RunningTask>,
    /// Hears when it is asked to stop (the caller tells that host).
    pub stopping: watch::Receiver<bool>,
    /// Hears when its terminal is resized (the caller tells that host).
    pub sizes: watch::Receiver<Option<TtySize>>,
    /// Where its end goes.
    pub ended: watch::Sender<Option<TaskEnd>>,
}

/// A task under way, on this cell or on another host's.
pub struct RunningTask {
    stop: watch::Sender<bool>,
    end: watch::Receiver<Option<TaskEnd>>,
    /// Its terminal's size, when the person's changes.
    size: watch::Sender<Option<TtySize>>,
}

impl RunningTask {
    /// Asks it to stop (SIGTERM, SIGKILL after the grace period) and waits until it
    /// ended.
    pub async fn terminate(&self) -> TaskEnd {
        let _ = self.stop.send(true);
        self.ended().await
    }

    /// Gives its terminal (if it has one) a new size.
    pub fn resize(&self, size: TtySize) {
        let _ = self.size.send(Some(size));
    }

    /// A task another host runs: its handle, and the ends the caller follows it with.
    pub fn elsewhere() -> Elsewhere {
        let (stop, stopping) = watch::channel(false);
        let (ended, end) = watch::channel(None);
        let (size, sizes) = watch::channel(None);
        Elsewhere {
            running: Arc::new(RunningTask { stop, end, size }),
            stopping,
            sizes,
            ended,
        }
    }

    /// Waits until it ended.
    pub async fn ended(&self) -> TaskEnd {
        let mut end = self.end.clone();
        let ended = end.wait_for(Option::is_some).await.map(|e| e.clone());
        ended.ok().flatten().unwrap_or(TaskEnd::Terminated)
    }
}

impl LocalCell {
    /// Starts the task `name` of `spec` (its start command is the task's command);
    /// `reporter` hears its output, and what comes from `input` is written to its stdin
    /// (`spec.stdin` must say so) until `input` closes. With a terminal (`spec.tty`),
    /// `input` goes to the terminal, and what the task writes to it goes, raw, to
    /// `screen` instead of the log.
    pub fn run_task(
        self: &Arc<Self>,
        reporter: Arc<dyn Reporter>,
        spec: InstanceSpec,
        name: &str,
        input: Option<mpsc::Receiver<bytes::Bytes>>,
        screen: Option<mpsc::Sender<ExecEvent>>,
    ) -> Arc<RunningTask> {
        let (stop, mut stopping) = watch::channel(false);
        let (ended, end) = watch::channel(None);
        let (size, mut sizes) = watch::channel(None::<TtySize>);
        let cell = Arc::clone(self);
        let source = format!("APP/TASK/{name}");
        let name = name.to_string();
        tokio::spawn(async move {
            let app = spec.app.clone();
            let notice = |line: String| reporter.log(&app, "CELL", LogStream::Out, &line);
            let mut c = match cell.engine.start(&spec, None).await {
                Ok(c) => c,
                Err(e) => {
                    notice(format!("task {name} could not start: {e}"));
                    let _ = ended.send(Some(TaskEnd::Failed(format!("could not start: {e}"))));
                    return;
                }
            };
            notice(format!("task {name} started"));
            let io = c.take_io();
            let terminal = io.terminal.map(Arc::new);
            match (input, &terminal, io.stdin) {
                (Some(mut input), Some(terminal), _) => {
                    let terminal = Arc::clone(terminal);
                    tokio::spawn(async move {
                        while let Some(chunk) = input.recv().await {
                            if terminal.write_all(&chunk).await.is_err() {
                                return;
                            }
                        }
                    });
                }
                (Some(mut input), None, Some(mut stdin)) => {
                    // Ends at the end of the input (the pipe closes: end of file for
                    // the task), or when the task no longer reads (a failed write).
                    tokio::spawn(async move {
                        use tokio::io::AsyncWriteExt;
                        while let Some(chunk) = input.recv().await {
                            if stdin.write_all(&chunk).await.is_err() {
                                return;
                            }
                        }
                    });
                }
                _ => {}
            }
            // The person's terminal resized: so is the task's.
            let resizing = terminal.clone().map(|t| {
                tokio::spawn(async move {
                    while sizes.changed().await.is_ok() {
                        if let Some(s) = *sizes.borrow_and_update() {
                            let _ = t.resize(s);
                        }
                    }
                })
            });
            let shown = terminal.map(|t| tokio::spawn(show(t, screen)));
            let pumps = (
                instance::spawn_pump(&reporter, &app, &source, LogStream::Out, io.stdout),
                instance::spawn_pump(&reporter, &app, &source, LogStream::Err, io.stderr),
            );
            let end = tokio::select! {
                reason = c.wait() => match reason {
                    ExitReason::Exited(code) => TaskEnd::Exited(code),
                    other => TaskEnd::Failed(other.to_string()),
                },
                () = async { let _ = stopping.wait_for(|s| *s).await; } => {
                    c.stop(STOP_GRACE).await;
                    TaskEnd::Terminated
                }
            };
            let _ = tokio::join!(pumps.0, pumps.1);
            if let Some(shown) = shown {
                // Its last output, unless something it left behind holds the terminal.
                let abort = shown.abort_handle();
                if tokio::time::timeout(SCREEN_WAIT, shown).await.is_err() {
                    abort.abort();
                }
            }
            if let Some(r) = resizing {
                r.abort();
            }
            c.destroy().await;
            notice(match &end {
                TaskEnd::Exited(code) => format!("task {name} exited with {code}"),
                TaskEnd::Failed(why) => format!("task {name} failed: {why}"),
                TaskEnd::Terminated => format!("task {name} was terminated"),
            });
            let _ = ended.send(Some(end));
        });
        Arc::new(RunningTask { stop, end, size })
    }
}

/// How long a task's terminal may still be read once the task ended.
const SCREEN_WAIT: Duration = Duration::from_secs(2);

/// Sends what the task writes to its terminal to `screen`, as it comes, until the
/// terminal closes. Bytes of a character split between two reads wait for the rest.
async fn show(terminal: Arc<Terminal>, screen: Option<mpsc::Sender<ExecEvent>>) {
    let mut buf = vec![0u8; 16 * 1024];
    let mut pending: Vec<u8> = Vec::new();
    loop {
        let n = match terminal.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        pending.extend_from_slice(&buf[..n]);
        let whole = match std::str::from_utf8(&pending) {
            Err(e) if e.error_len().is_none() => e.valid_up_to(),
            _ => pending.len(),
        };
        let rest = pending.split_off(whole);
        let data = String::from_utf8_lossy(&pending).into_owned();
        pending = rest;
        if let Some(screen) = &screen {
            // Waits for a slow client: the task's writes wait too, as on a terminal.
            if screen.send(ExecEvent::Tty { data }).await.is_err() {
                return;
            }
        }
    }
    if let (false, Some(screen)) = (pending.is_empty(), &screen) {
        let data = String::from_utf8_lossy(&pending).into_owned();
        let _ = screen.send(ExecEvent::Tty { data }).await;
    }
}
