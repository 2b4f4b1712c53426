//! Tasks: one-off commands of an app (`paas run-task`), each in a container of its own
//! from the app's current droplet, on this host's cell or, for a controller of a
//! cluster without one, on a cell of another host through its peer listener
//! (`peer/tasks.rs`); and the release phase: the droplet's `release` process type, run
//! as a task before a new release rolls out.

use std::sync::Arc;

use std::collections::HashMap;

use paas_api::state::TaskEvent;
use paas_api::{AppName, DeployEvent, ExecEvent, LogLine, LogStream, TaskRequest, TaskSummary};
use tokio::sync::mpsc::{self, UnboundedSender};

use super::{Error, ErrorKind, Platform};
use crate::cell::task::{RunningTask, TaskEnd};
use crate::cell::{InstanceSpec, Reporter};
use crate::logs::now_ms;
use crate::store::{AppRecord, Release};

/// How often a task on another host's cell is asked again to terminate until it ends.
const TERMINATE_AGAIN: std::time::Duration = std::time::Duration::from_secs(3);
/// How long a task's terminal output waits for a stalled client before it is dropped.
const SCREEN_STALL: std::time::Duration = std::time::Duration::from_secs(5);

/// How long a shutdown waits for its terminated tasks to be recorded.
const RECORD_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

impl Platform {
    /// Starts `req` as a task of `app`'s current release; answers once it is recorded
    /// as running.
    /// `attached`, its output lines and then its exit code go there too, and
    /// what comes from its input is the task's stdin.
    pub async fn run_task(
        self: &Arc<Self>,
        app: &AppName,
        req: TaskRequest,
        attached: Option<Attached>,
    ) -> Result<TaskSummary, Error> {
        let record = self.app_record(app).await?;
        let release = record.release.clone().ok_or_else(|| {
            Error::new(
                ErrorKind::Refused,
                "never-staged",
                format!("app {app} has no droplet to run a task from"),
                Some(&format!("push it first: `paas push {app}`")),
            )
        })?;
        let more = super::quota::Demand {
            tasks: 1,
            memory_mb: super::quota::task_memory(req.memory.unwrap_or(record.settings.memory))
                as i64,
            ..Default::default()
        };
        self.check_quota(&record.space, more).await?;
        if req.tty.is_some() && attached.is_none() {
            return Err(Error::new(
                ErrorKind::Invalid,
                "terminal-needs-attach",
                "a task with a terminal must be attached: someone has to be at it",
                Some("ask for it with ?attach, as `paas run` does"),
            ));
        }
        let name = req.name.clone().unwrap_or_else(random_name);
        let (reporter, input, attached): (Arc<dyn Reporter>, _, _) = match attached {
            Some(Attached { output, input }) => (
                Arc::new(Tee {
                    platform: Arc::clone(self),
                    to: TeeTo::Exec(output.clone()),
                }),
                Some(input),
                Some(output),
            ),
            None => (Arc::clone(self) as Arc<dyn Reporter>, None, None),
        };
        let screen = req.tty.and(attached.clone());
        let (task, running) = self
            .start_task(
                &record,
                &release,
                &name,
                &req.command,
                &req,
                reporter,
                (input, screen),
            )
            .await?;
        let (platform, app, answer) = (Arc::clone(self), app.clone(), task.clone());
        self.background.spawn(async move {
            let end = running.ended().await;
            let done = platform.task_ended(&app, task, &end).await;
            if let Some(to) = attached {
                if let (Some(why), None) = (&done.failure, done.exit_code) {
                    let line = format!("paas: task {} {why}", done.name);
                    let _ = to
                        .send(ExecEvent::Output {
                            stream: LogStream::Err,
                            line,
                        })
                        .await;
                }
                // Killed or never started: as a shell reports a signal's death.
                let code = done.exit_code.unwrap_or(match end {
                    TaskEnd::Terminated => 143,
                    _ => 137,
                });
                let _ = to.send(ExecEvent::Exit { code }).await;
            }
        });
        Ok(answer)
    }

    /// The app's tasks, oldest first.
    pub async fn tasks(&self, app: &AppName) -> Result<Vec<TaskSummary>, Error> {
        self.app_record(app).await?;
        self.store.tasks(app).await.map_err(Error::internal)
    }

    /// Terminates task `sequence` of `app` and answers with how it ended.
    pub async fn terminate_task(&self, app: &AppName, sequence: u64) -> Result<TaskSummary, Error> {
        let task = self
            .store
            .task(app, sequence)
            .await
            .map_err(Error::internal)?
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::NotFound,
                    "no-such-task",
                    format!("app {app} has no task {sequence}"),
                    Some(&format!("see `paas tasks {app}`")),
                )
            })?;
        if task.state != "running" {
            return Err(Error::new(
                ErrorKind::Conflict,
                "task-ended",
                format!(
                    "task {sequence} of app {app} has already ended ({})",
                    task.state
                ),
                None,
            ));
        }
        let running = self.running_task(&task.id);
        if let Some(running) = running {
            let end = running.terminate().await;
            return Ok(end.applied_to(task));
        }
        // Started through another controller: the cell's host that runs it stops it,
        // and that controller records its end.
        match self.terminate_on_its_cell(&task).await {
            Ok(()) => Ok(TaskEnd::Terminated.applied_to(task)),
            Err(why) => Err(Error::new(
                ErrorKind::Refused,
                "task-elsewhere",
                format!(
                    "task {sequence} of app {app} runs on cell {}, which {why}",
                    task.cell
                ),
                Some("see `paas cells`; try again"),
            )),
        }
    }

    /// Gives the terminal of task `sequence` of `app` a new size, on whichever cell it
    /// runs.
    pub async fn resize_task(
        &self,
        app: &AppName,
        sequence: u64,
        size: paas_api::TerminalSize,
    ) -> Result<(), Error> {
        self.app_record(app).await?;
        let task = self
            .store
            .task(app, sequence)
            .await
            .map_err(Error::internal)?
            .filter(|t| t.state == "running");
        let Some(task) = task else {
            return Err(Error::new(
                ErrorKind::NotFound,
                "no-such-task",
                format!("app {app} has no task {sequence} running"),
                Some(&format!("see `paas tasks {app}`")),
            ));
        };
        if let Some(running) = self.running_task(&task.id) {
            running.resize(paas_runtime::TtySize {
                rows: size.rows,
                cols: size.cols,
            });
            return Ok(());
        }
        // Followed by another controller: the host of its cell resizes it.
        let resized = async {
            let cluster = self.cluster.as_ref()?;
            let peer = cluster.view.peer_of(&task.cell)?;
            let size = paas_runtime::TtySize {
                rows: size.rows,
                cols: size.cols,
            };
            cluster.peers.resize_task(&peer, &task.id, size).await.ok()
        };
        resized.await.ok_or_else(|| {
            Error::new(
                ErrorKind::Refused,
                "task-elsewhere",
                format!(
                    "task {sequence} of app {app} runs on cell {}, which could not be asked to resize it",
                    task.cell
                ),
                Some("see `paas cells`; try again"),
            )
        })
    }

    /// Asks the host of the cell that runs `task` to terminate it; says why not.
    async fn terminate_on_its_cell(&self, task: &TaskSummary) -> Result<(), String> {
        let cluster = self
            .cluster
            .as_ref()
            .ok_or("is not this host's (its paasd may have stopped)")?;
        let peer = cluster.view.peer_of(&task.cell).ok_or("is not up")?;
        cluster
            .peers
            .terminate_task(&peer, &task.id)
            .await
            .map_err(|e| format!("could not be asked to stop it: {e:#}"))
    }

    /// Terminates the task of id `id` if it runs on this host; waits until it ended.
    pub async fn terminate_running(&self, id: &str) {
        let running = self.running_task(id);
        if let Some(r) = running {
            r.terminate().await;
        }
    }

    /// Terminates the tasks of `app` under way on this host (it is being deleted).
    pub(super) async fn terminate_tasks_of(&self, app: &AppName) {
        let Ok(tasks) = self.store.tasks(app).await else {
            return;
        };
        for t in tasks.iter().filter(|t| t.state == "running") {
            let here = self.running_task(&t.id).is_some();
            if here {
                self.terminate_running(&t.id).await;
            } else if let Err(why) = self.terminate_on_its_cell(t).await {
                tracing::warn!(app = %app, task = t.sequence, "terminating a task of a deleted app: its cell {why}");
            }
        }
    }

    /// Runs the droplet's `release` process type (the Procfile's `release:`) as the task
    /// `release` of `release`, its output in the app's log and on `events`. Succeeds
    /// when there is none or it exits 0.
    pub(super) async fn release_phase(
        self: &Arc<Self>,
        record: &AppRecord,
        release: &Release,
        events: &UnboundedSender<DeployEvent>,
    ) -> Result<(), Error> {
        let Some(command) = release.process_types.get("release") else {
            return Ok(());
        };
        let _ = events.send(DeployEvent::Phase {
            phase: "release".into(),
        });
        let reporter = Arc::new(Tee {
            platform: Arc::clone(self),
            to: TeeTo::Deploy(events.clone()),
        });
        let req = TaskRequest {
            command: command.clone(),
            ..Default::default()
        };
        // With the env the release will run with: a rollback's is its revision's.
        let mut record = record.clone();
        if let Some(config) = &release.config {
            record.env = config.env.clone();
        }
        let record = &record;
        let (task, running) = self
            .start_task(
                record,
                release,
                "release",
                command,
                &req,
                reporter,
                (None, None),
            )
            .await?;
        // Held to the staging time limit: the app's lock is held meanwhile.
        let limit = self.staging_timeout;
        let end = match tokio::time::timeout(limit, running.ended()).await {
            Ok(end) => end,
            Err(_) => {
                running.terminate().await;
                TaskEnd::Failed(format!(
                    "ran longer than {} s (the staging time limit) and was stopped",
                    limit.as_secs()
                ))
            }
        };
        let done = self.task_ended(&record.name, task, &end).await;
        if done.state == "succeeded" {
            return Ok(());
        }
        Err(Error::new(
            ErrorKind::Refused,
            "release-phase-failed",
            format!(
                "the release phase (`{command}`) {}; revision {} was not rolled out, the app runs what it ran before",
                done.failure.as_deref().unwrap_or("failed"),
                release.version
            ),
            Some(&format!("see `paas logs {} --recent`", record.name)),
        ))
    }

    /// Records and starts task `name` (`command`, with `req`'s limits) of `release`;
    /// `reporter` hears its output, and `input` is its stdin (else `/dev/null`); with a
    /// terminal (`req.tty`), `input` goes to it and `screen` gets what it shows.
    #[allow(clippy::too_many_arguments)]
    async fn start_task(
        self: &Arc<Self>,
        record: &AppRecord,
        release: &Release,
        name: &str,
        command: &str,
        req: &TaskRequest,
        reporter: Arc<dyn Reporter>,
        (input, screen): (
            Option<mpsc::Receiver<bytes::Bytes>>,
            Option<mpsc::Sender<ExecEvent>>,
        ),
    ) -> Result<(TaskSummary, Arc<RunningTask>), Error> {
        let app = &record.name;
        let mut settings = record.settings.clone();
        // On the stack its droplet was built on.
        settings.stack = Some(release.stack().to_string());
        settings.memory = req.memory.unwrap_or(settings.memory);
        settings.disk = req.disk.or(settings.disk);
        let ids = self
            .id_map(app)
            .await
            .map_err(|e| Error::internal(format!("{e:#}")))?;
        let uris: Vec<String> = self
            .store
            .app_routes(app)
            .await
            .unwrap_or_default()
            .iter()
            .map(ToString::to_string)
            .collect();
        // Everything that can fail comes before the task is recorded as running.
        let services = self.service_env(record).await?;
        let system_env = services.vars();
        let elsewhere = self.cell_for_task(record, &settings).await?;
        let droplet_dir = match &elsewhere {
            Some(_) => std::path::PathBuf::new(),
            None => {
                let blob = self.blob(&release.droplet).await?;
                self.cell
                    .droplet_dir(&release.droplet, &blob, ids)
                    .await
                    .map_err(|e| Error::internal(format!("{e:#}")))?
            }
        };
        let task = TaskSummary {
            id: crate::store::new_guid(),
            sequence: 0,
            name: name.to_string(),
            command: command.to_string(),
            state: "running".into(),
            exit_code: None,
            failure: None,
            started_ms: now_ms(),
            ended_ms: None,
            memory: settings.memory,
            disk: settings.disk_or_default(),
            droplet: release.droplet.clone(),
            cell: match &elsewhere {
                Some((cell, _)) => cell.clone(),
                None => self.cell.id().to_string(),
            },
        };
        let task = self
            .store
            .add_task(app, task)
            .await
            .map_err(Error::internal)?;
        if let Some((_, peer)) = elsewhere {
            let order = paas_api::state::TaskOrder {
                id: task.id.clone(),
                sequence: task.sequence,
                name: name.to_string(),
                run: paas_api::state::Assignment {
                    app: app.clone(),
                    app_guid: record.guid.clone(),
                    process: "task".into(),
                    index: 0,
                    settings,
                    start_command: command.to_string(),
                    droplet: release.droplet.clone(),
                    env: record.env.clone().into_iter().collect(),
                    system_env,
                    id_base: ids.host_base,
                    uris,
                    drains: services.drains,
                },
                attached: input.is_some(),
                tty: req.tty,
            };
            let running = self
                .run_task_elsewhere(&task, order, &peer, reporter, input, screen)
                .await?;
            return Ok((task, running));
        }
        let spec = InstanceSpec {
            id: task.id.clone(),
            app: app.clone(),
            app_guid: record.guid.clone(),
            // Not web: a task is never routed.
            process: "task".into(),
            index: 0,
            settings,
            start_command: command.to_string(),
            droplet_dir,
            // The app's env as it is now, as Cloud Foundry gives its tasks (for the
            // release phase, the env of the release it runs for).
            env: record.env.clone().into_iter().collect(),
            system_env,
            id_map: ids,
            uris,
            drain: std::time::Duration::ZERO,
            stdin: input.is_some(),
            tty: req.tty.map(|t| paas_runtime::TtySize {
                rows: t.rows,
                cols: t.cols,
            }),
        };
        let running = self.cell.run_task(reporter, spec, name, input, screen);
        self.running_tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(task.id.clone(), Arc::clone(&running));
        Ok((task, running))
    }

    /// Where a task of `record` with `settings` runs: here (`None`), unless this is a
    /// controller of a cluster without a cell of its own; then on the cell (its id and
    /// peer address) with room that runs most of the app's instances (it has the
    /// droplet, and `paas logs` reads its log), else the one with the most room.
    async fn cell_for_task(
        &self,
        record: &AppRecord,
        settings: &paas_api::AppSettings,
    ) -> Result<Option<(String, String)>, Error> {
        let Some(cluster) = self.cluster.as_ref().filter(|c| !c.runs_instances) else {
            return Ok(None);
        };
        let mut of_app: HashMap<String, u32> = HashMap::new();
        for p in self
            .instances
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&record.name)
            .into_iter()
            .flatten()
        {
            if let Some(cell) = p.cell() {
                *of_app.entry(cell.to_string()).or_default() += 1;
            }
        }
        let need = settings.memory.bytes();
        let cells = self.store.cells().await.map_err(Error::internal)?;
        let free =
            |c: &paas_api::state::CellPresence| c.memory_bytes.saturating_sub(c.memory_used_bytes);
        let chosen = cells
            .iter()
            .filter(|c| free(c) >= need)
            .filter_map(|c| Some((c, cluster.view.peer_of(&c.id)?)))
            .max_by_key(|(c, _)| (of_app.get(&c.id).copied().unwrap_or(0), free(c)));
        match chosen {
            Some((c, peer)) => Ok(Some((c.id.clone(), peer))),
            None => Err(Error::new(
                ErrorKind::Refused,
                "no-room",
                format!(
                    "no cell that is up has {} free for the task",
                    settings.memory
                ),
                Some("run it with less memory (-m), or add a cell"),
            )),
        }
    }

    /// Has the cell at `peer` run `task` (as `order` says), and follows it: its lines go
    /// on to `reporter` (that host's log keeps them), its terminal's output to
    /// `screen`, `input` to it, and a terminate request to that host.
    async fn run_task_elsewhere(
        self: &Arc<Self>,
        task: &TaskSummary,
        order: paas_api::state::TaskOrder,
        peer: &str,
        reporter: Arc<dyn Reporter>,
        input: Option<mpsc::Receiver<bytes::Bytes>>,
        screen: Option<mpsc::Sender<ExecEvent>>,
    ) -> Result<Arc<RunningTask>, Error> {
        let app = &order.run.app;
        let cluster = self
            .cluster
            .as_ref()
            .ok_or_else(|| Error::internal("not a cluster"))?;
        let started = async {
            if self.blobs.exists(&order.run.droplet) {
                cluster.peers.announce(&order.run.droplet).await?;
            }
            cluster.peers.run_task(peer, &order, input).await
        };
        let mut events = match started.await {
            Ok(events) => events,
            Err(e) => {
                let why = format!("cell {} could not be reached: {e:#}", task.cell);
                // It never reached that host, so its end is recorded here.
                let done = TaskEnd::Failed(why.clone()).applied_to(task.clone());
                self.record_task_end(app, &done).await;
                return Err(Error::new(
                    ErrorKind::Internal,
                    "cell-unreachable",
                    format!("the task could not start: {why}"),
                    Some("see `paas cells`; try again"),
                ));
            }
        };
        let crate::cell::task::Elsewhere {
            running,
            mut stopping,
            mut sizes,
            ended,
        } = RunningTask::elsewhere();
        self.running_tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(task.id.clone(), Arc::clone(&running));
        let (platform, peer, id, app) = (
            Arc::clone(self),
            peer.to_string(),
            task.id.clone(),
            app.clone(),
        );
        let source = format!("APP/TASK/{}", order.name);
        // Cut off at shutdown (after `terminate_tasks`): the cell's host records the
        // task's end itself.
        self.background.spawn_until_shutdown(async move {
            let mut asked = false;
            // A terminate the cell's host did not take (the task was still being
            // readied there, or the host did not answer) is asked again.
            let mut again = tokio::time::interval(TERMINATE_AGAIN);
            let ask = || {
                let (me, peer, id) = (Arc::clone(&platform), peer.clone(), id.clone());
                platform.background.spawn_until_shutdown(async move {
                    if let Some(cluster) = &me.cluster {
                        if let Err(e) = cluster.peers.terminate_task(&peer, &id).await {
                            tracing::warn!(task = %id, "terminating a task on {peer}: {e:#}");
                        }
                    }
                });
            };
            let end = loop {
                tokio::select! {
                    event = events.recv() => match event {
                        Some(TaskEvent::Output { stream, line }) => {
                            reporter.pass_on(&app, &source, stream, &line);
                        }
                        Some(TaskEvent::Tty { data }) => {
                            if let Some(s) = &screen {
                                // A client that stays stalled loses output rather than
                                // holding up the task's stop.
                                let _ = tokio::time::timeout(SCREEN_STALL, s.send(ExecEvent::Tty { data })).await;
                            }
                        }
                        Some(e) => match TaskEnd::from_event(&e) {
                            Some(end) => break end,
                            None => continue,
                        },
                        None => break TaskEnd::Failed(
                            "its cell's host stopped answering; see `paas logs` for what it printed".into(),
                        ),
                    },
                    Ok(()) = sizes.changed() => {
                        let size = *sizes.borrow_and_update();
                        if let (Some(size), Some(cluster)) = (size, &platform.cluster) {
                            let _ = cluster.peers.resize_task(&peer, &id, size).await;
                        }
                    }
                    Ok(()) = stopping.changed(), if !asked => {
                        asked = true;
                        again.reset();
                        ask();
                    }
                    _ = again.tick(), if asked => ask(),
                }
            };
            let _ = ended.send(Some(end));
        });
        Ok(running)
    }

    /// The task of id `id` this controller follows, if any.
    fn running_task(&self, id: &str) -> Option<Arc<RunningTask>> {
        self.running_tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    /// Forgets `task` of `app`, which ended with `end`, and records its end (and an
    /// event that says so) if it ran on this host's cell. The host of another cell
    /// records the end of what it ran itself: it saw it, whether or not this
    /// controller still follows it (restarted, or cut off from that host).
    async fn task_ended(&self, app: &AppName, task: TaskSummary, end: &TaskEnd) -> TaskSummary {
        let done = end.applied_to(task);
        if done.cell == self.cell.id() {
            self.record_task_end(app, &done).await;
        }
        self.running_tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&done.id);
        done
    }

    /// Records `done`, a task of `app` that ended, and an event that says how.
    async fn record_task_end(&self, app: &AppName, done: &TaskSummary) {
        if let Err(e) = self.store.update_task(app, done).await {
            tracing::error!(%app, task = done.sequence, "recording the end of a task: {e}");
        }
        let description = crate::cell::task::end_description(done);
        self.record_event(app, "task", None, done.exit_code, &description)
            .await;
    }

    /// Terminates every task under way on this host, and waits (a while) until each
    /// one's end is recorded.
    pub(super) async fn terminate_tasks(&self) {
        let running: Vec<Arc<RunningTask>> = self
            .running_tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        let all = crate::join_all(running.into_iter().map(|t| async move {
            t.terminate().await;
        }));
        // Bounded: a task on another host's cell that does not answer must not hold
        // the shutdown.
        let _ = tokio::time::timeout(crate::cell::STOP_GRACE + RECORD_WAIT, all).await;
        let recorded = async {
            while !self
                .running_tasks
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_empty()
            {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        };
        let _ = tokio::time::timeout(RECORD_WAIT, recorded).await;
    }

    /// Marks the tasks this host's cell ran when paasd stopped as failed: their
    /// containers are gone.
    pub(super) async fn fail_lost_tasks(&self, app: &AppName) {
        let Ok(tasks) = self.store.tasks(app).await else {
            return;
        };
        for task in tasks {
            if task.state == "running" && task.cell == self.cell.id() {
                let end = TaskEnd::Failed("paasd stopped while it ran".into());
                let done = end.applied_to(task);
                if let Err(e) = self.store.update_task(app, &done).await {
                    tracing::warn!(%app, task = done.sequence, "recording a lost task: {e}");
                }
            }
        }
    }
}

/// Whom an attached task (`paas run`) talks to: where its output and exit code go,
/// and where its input comes from (closed: end of input).
pub struct Attached {
    pub output: mpsc::Sender<ExecEvent>,
    pub input: mpsc::Receiver<bytes::Bytes>,
}

/// A task name as Cloud Foundry makes one up: eight hex digits.
fn random_name() -> String {
    let mut b = [0u8; 4];
    let _ = getrandom::fill(&mut b);
    hex::encode(b)
}

/// Hears a task as the platform does, and passes its lines on to whoever waits on it.
struct Tee {
    platform: Arc<Platform>,
    to: TeeTo,
}

enum TeeTo {
    /// A release phase: every line, to the deployment's events.
    Deploy(UnboundedSender<DeployEvent>),
    /// An attached task (`paas run`): its own output. Lines a slow client has no room
    /// for are left out of the stream (`paas logs` has them).
    Exec(mpsc::Sender<ExecEvent>),
}

impl Reporter for Tee {
    fn log(&self, app: &AppName, source: &str, stream: LogStream, line: &str) {
        self.platform.log(app, source, stream, line);
        self.pass_on(app, source, stream, line);
    }

    fn pass_on(&self, _app: &AppName, source: &str, stream: LogStream, line: &str) {
        match &self.to {
            TeeTo::Deploy(events) => {
                let _ = events.send(DeployEvent::Log(LogLine {
                    timestamp_ms: now_ms(),
                    source: source.to_string(),
                    stream,
                    line: line.to_string(),
                }));
            }
            TeeTo::Exec(to) if source.starts_with("APP/TASK/") => {
                let _ = to.try_send(ExecEvent::Output {
                    stream,
                    line: line.to_string(),
                });
            }
            TeeTo::Exec(_) => {}
        }
    }

    fn event<'a>(
        &'a self,
        app: &'a AppName,
        kind: &'a str,
        index: u32,
        exit_code: Option<i32>,
        description: &'a str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>> {
        self.platform
            .event(app, kind, index, exit_code, description)
    }

    fn routable_changed(&self) {
        self.platform.routable_changed();
    }
}
