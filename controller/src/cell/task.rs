//! A task: a one-off command in a container of its own, from the app's droplet, with
//! its env and limits (`cf run-task`). It runs once, with no route and no health check,
//! and is not restarted; its output goes to the app's log as `APP/TASK/<name>`.

use std::sync::Arc;

use paas_api::LogStream;
use paas_runtime::ExitReason;
use tokio::sync::watch;

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

/// A task under way on this cell.
pub struct RunningTask {
    stop: watch::Sender<bool>,
    end: watch::Receiver<Option<TaskEnd>>,
}

impl RunningTask {
    /// Asks it to stop (SIGTERM, SIGKILL after the grace period) and waits until it
    /// ended.
    pub async fn terminate(&self) -> TaskEnd {
        let _ = self.stop.send(true);
        self.ended().await
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
    /// (`spec.stdin` must say so) until `input` closes.
    pub fn run_task(
        self: &Arc<Self>,
        reporter: Arc<dyn Reporter>,
        spec: InstanceSpec,
        name: &str,
        input: Option<tokio::sync::mpsc::Receiver<bytes::Bytes>>,
    ) -> Arc<RunningTask> {
        let (stop, mut stopping) = watch::channel(false);
        let (ended, end) = watch::channel(None);
        let cell = Arc::clone(self);
        let source = format!("APP/TASK/{name}");
        let name = name.to_string();
        tokio::spawn(async move {
            let app = spec.app.clone();
            let notice = |line: String| reporter.log(&app, "CELL", LogStream::Out, &line);
            let mut c = match instance::start(&cell, &spec, None).await {
                Ok(c) => c,
                Err(e) => {
                    notice(format!("task {name} could not start: {e}"));
                    let _ = ended.send(Some(TaskEnd::Failed(format!("could not start: {e}"))));
                    return;
                }
            };
            notice(format!("task {name} started"));
            if let (Some(mut input), Some(mut stdin)) = (input, c.stdin.take()) {
                // Ends at the end of the input (the pipe closes: end of file for the
                // task), or when the task no longer reads (a failed write).
                tokio::spawn(async move {
                    use tokio::io::AsyncWriteExt;
                    while let Some(chunk) = input.recv().await {
                        if stdin.write_all(&chunk).await.is_err() {
                            return;
                        }
                    }
                });
            }
            let pumps = (
                instance::spawn_pump(&reporter, &app, &source, LogStream::Out, c.stdout.take()),
                instance::spawn_pump(&reporter, &app, &source, LogStream::Err, c.stderr.take()),
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
            instance::clean_up(&spec, c).await;
            notice(match &end {
                TaskEnd::Exited(code) => format!("task {name} exited with {code}"),
                TaskEnd::Failed(why) => format!("task {name} failed: {why}"),
                TaskEnd::Terminated => format!("task {name} was terminated"),
            });
            let _ = ended.send(Some(end));
        });
        Arc::new(RunningTask { stop, end })
    }
}
