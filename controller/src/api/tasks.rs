//! `/v1/apps/{name}/tasks...`: one-off commands of an app, run once in containers of
//! their own.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use http::{Response, Uri};
use paas_api::{AppName, ExecEvent, TaskRequest};

use super::body::{self, ApiBody};
use super::extract::{read_json, AppPath};
use super::failure::Failure;
use super::page;
use crate::platform::Platform;

/// The longest task name: it goes into every log line's source.
const MAX_NAME: usize = 64;
/// The longest task command.
const MAX_COMMAND: usize = 8 * 1024;

/// Starts a task; answers 201 with it, running.
pub async fn run(
    State(p): State<Arc<Platform>>,
    AppPath(app): AppPath,
    body: Body,
) -> Result<Response<ApiBody>, Failure> {
    let req: TaskRequest = read_json(body).await?;
    if req.command.trim().is_empty()
        || req.command.contains('\0')
        || req.command.len() > MAX_COMMAND
    {
        return Err(Failure::new(
            422,
            "invalid-command",
            format!("a task's command must be 1 to {MAX_COMMAND} bytes, with no NUL byte"),
            None,
        ));
    }
    if let Some(name) = &req.name {
        let fine = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
        if name.is_empty() || name.len() > MAX_NAME || !name.chars().all(fine) {
            return Err(Failure::new(
                422,
                "invalid-task-name",
                format!("task name {name:?} is not allowed"),
                Some(&format!(
                    "use 1 to {MAX_NAME} letters, digits, '-', '_' or '.'"
                )),
            ));
        }
    }
    if !req.attach {
        let task = p.run_task(&app, req, None).await?;
        return Ok(body::json(201, &task));
    }
    let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
    let task = p.run_task(&app, req, Some(tx)).await?;
    let (out, resp) = body::ndjson_stream();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                event = rx.recv() => match event {
                    Some(e) => {
                        let last = matches!(e, ExecEvent::Exit { .. });
                        if !out.send(&e).await {
                            break;
                        }
                        if last {
                            return;
                        }
                    }
                    None => return,
                },
                () = out.closed() => break,
            }
        }
        // The client left before the end: so does the task, as `heroku run`'s does.
        let _ = p.terminate_task(&app, task.sequence).await;
    });
    Ok(resp)
}

/// The app's tasks, oldest first, paged.
pub async fn list(
    State(p): State<Arc<Platform>>,
    AppPath(app): AppPath,
    uri: Uri,
) -> Result<Response<ApiBody>, Failure> {
    let tasks = p.tasks(&app).await?;
    page::list(&tasks, uri.path(), uri.query().unwrap_or(""))
}

/// Terminates a running task; answers with it, ended.
pub async fn terminate(
    State(p): State<Arc<Platform>>,
    Path((name, sequence)): Path<(String, String)>,
) -> Result<Response<ApiBody>, Failure> {
    let app = AppName::parse(&name)
        .map_err(|e| Failure::new(400, "invalid-name", e.to_string(), None))?;
    let sequence: u64 = sequence.parse().map_err(|_| {
        Failure::new(
            400,
            "invalid-task",
            format!("{sequence:?} is not a task number"),
            Some(&format!("see `paas tasks {app}`")),
        )
    })?;
    let task = p.terminate_task(&app, sequence).await?;
    Ok(body::json(200, &task))
}
