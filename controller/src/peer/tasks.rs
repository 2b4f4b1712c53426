//! `POST /tasks`: a task a controller has this host's cell run (a controller without a
//! cell, or one whose cell has no room). The droplet is fetched by hash as for an
//! assigned instance; the task's lines are kept in this host's log, as its instances'
//! are, and streamed back with its end, which this host records in the store (it saw
//! it, whatever became of the controller). An attached task ends when its controller
//! leaves; another goes on, and any controller may terminate or resize it.

use std::sync::Arc;

use bytes::Bytes;
use paas_api::state::{TaskEvent, TaskOrder};
use paas_api::{AppName, ExecEvent, LogStream};
use paas_runtime::IdMap;
use tokio::sync::mpsc;

use super::Peers;
use crate::api::body::NdjsonSender;
use crate::cell::instance::InstanceSpec;
use crate::cell::task::TaskEnd;
use crate::cell::Reporter;

impl Peers {
    /// Runs `order`, its input from `input`, answering its output and end on `out`.
    pub(super) async fn run_task_for_peer(
        self: Arc<Self>,
        order: TaskOrder,
        input: mpsc::Receiver<Bytes>,
        out: NdjsonSender,
    ) {
        let a = &order.run;
        let ids = IdMap {
            host_base: a.id_base,
            size: IdMap::SIZE,
        };
        let ready = async {
            let blob = self.blob(&a.droplet).await?;
            self.cell.droplet_dir(&a.droplet, &blob, ids).await
        };
        let droplet_dir = match ready.await {
            Ok(d) => d,
            Err(e) => {
                let why = format!(
                    "its droplet could not be readied on cell {}: {e:#}",
                    self.cell.id()
                );
                let end = TaskEnd::Failed(why);
                self.record_end(&order, &end).await;
                out.send(&end.to_event()).await;
                return;
            }
        };
        let spec = InstanceSpec {
            id: order.id.clone(),
            app: a.app.clone(),
            app_guid: a.app_guid.clone(),
            process: "task".into(),
            index: 0,
            settings: a.settings.clone(),
            start_command: a.start_command.clone(),
            droplet_dir,
            env: a.env.clone(),
            system_env: a.system_env.clone(),
            id_map: ids,
            uris: a.uris.clone(),
            drain: std::time::Duration::ZERO,
            stdin: order.attached,
            tty: order
                .tty
                .filter(|_| order.attached)
                .map(|t| paas_runtime::TtySize {
                    rows: t.rows,
                    cols: t.cols,
                }),
        };
        self.logs.set_drains(&a.app, &a.app_guid, &a.drains);
        let reporter = Arc::new(TaskReporter {
            logs: Arc::clone(&self.logs),
            out: out.clone(),
        });
        // What the task shows on a terminal, passed on in order, all of it before its
        // end.
        let (screen, mut shown) = mpsc::channel::<ExecEvent>(64);
        let show_out = out.clone();
        let showing = tokio::spawn(async move {
            while let Some(e) = shown.recv().await {
                if let ExecEvent::Tty { data } = e {
                    if !show_out.send(&TaskEvent::Tty { data }).await {
                        return;
                    }
                }
            }
        });
        let running = self.cell.run_task(
            reporter,
            spec,
            &order.name,
            order.attached.then_some(input),
            order.tty.is_some().then_some(screen),
        );
        self.tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(order.id.clone(), Arc::clone(&running));
        let end = tokio::select! {
            end = running.ended() => end,
            () = out.closed(), if order.attached => {
                // Its controller left, and with it whoever was at the task.
                running.terminate().await
            }
        };
        let _ = showing.await;
        self.tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&order.id);
        self.record_end(&order, &end).await;
        out.send(&end.to_event()).await;
    }

    /// Records how the task of `order` ended, and an event that says so: this host saw
    /// it end, whether or not its controller still follows it (restarted, or cut off).
    async fn record_end(&self, order: &TaskOrder, end: &TaskEnd) {
        let app = &order.run.app;
        let task = match self.store.task(app, order.sequence).await {
            Ok(Some(t)) if t.id == order.id && t.state == "running" => t,
            Ok(_) => return,
            Err(e) => {
                tracing::error!(%app, task = order.sequence, "reading a task to record its end: {e}");
                return;
            }
        };
        let done = end.applied_to(task);
        if let Err(e) = self.store.update_task(app, &done).await {
            tracing::error!(%app, task = done.sequence, "recording the end of a task: {e}");
        }
        let event = paas_api::AppEvent {
            timestamp_ms: crate::logs::now_ms(),
            kind: "task".into(),
            instance: None,
            exit_code: done.exit_code,
            description: crate::cell::task::end_description(&done),
        };
        crate::platform::record_app_event(&self.store, &self.logs, app, &event).await;
    }

    /// Task `id`, if this host's cell runs it for a controller.
    fn task_here(&self, id: &str) -> Option<Arc<crate::cell::task::RunningTask>> {
        self.tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    /// Resizes the terminal of task `id` if this host's cell runs it.
    pub(super) fn resize_task_here(&self, id: &str, size: paas_api::TerminalSize) -> bool {
        let running = self.task_here(id);
        running
            .map(|r| {
                r.resize(paas_runtime::TtySize {
                    rows: size.rows,
                    cols: size.cols,
                })
            })
            .is_some()
    }

    /// Terminates task `id` if this host's cell runs it; waits until it ended.
    pub(super) async fn terminate_task_here(&self, id: &str) -> bool {
        let running = self.task_here(id);
        match running {
            Some(r) => {
                r.terminate().await;
                true
            }
            None => false,
        }
    }
}

/// A task's lines: kept in this host's log, and sent to the controller that runs it.
struct TaskReporter {
    logs: Arc<crate::logs::Logs>,
    out: NdjsonSender,
}

impl Reporter for TaskReporter {
    fn log(&self, app: &AppName, source: &str, stream: LogStream, line: &str) {
        self.logs.append(app, source, stream, line);
        if source.starts_with("APP/TASK/") {
            // A controller with no room for it finds the line in this host's log.
            let _ = self.out.try_send(&TaskEvent::Output {
                stream,
                line: line.to_string(),
            });
        }
    }

    fn event<'a>(
        &'a self,
        _app: &'a AppName,
        _kind: &'a str,
        _index: u32,
        _exit_code: Option<i32>,
        _description: &'a str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>> {
        // A task's end is recorded once it is known (`record_end`).
        Box::pin(async {})
    }

    fn routable_changed(&self) {}
}
