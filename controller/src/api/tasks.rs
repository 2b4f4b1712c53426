//! `/v1/apps/{name}/tasks...`: one-off commands of an app, run once in containers of
//! their own.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use bytes::{Bytes, BytesMut};
use http::{Response, Uri};
use http_body_util::BodyExt;
use paas_api::{AppName, ExecEvent, TaskRequest};

use super::body::{self, ApiBody};
use super::extract::{read_json, AppPath, MAX_JSON_BYTES};
use super::failure::Failure;
use super::{page, query};
use crate::platform::{Attached, Platform};

/// The longest task name: it goes into every log line's source.
const MAX_NAME: usize = 64;
/// The longest task command.
const MAX_COMMAND: usize = 8 * 1024;

/// Starts a task; answers 201 with it, running. With `?attach` (`paas run`), the body
/// is the task as one JSON line and then its input, as it comes; the answer streams its
/// output and exit code as exec's does, and a client that leaves terminates it.
pub async fn run(
    State(p): State<Arc<Platform>>,
    AppPath(app): AppPath,
    uri: Uri,
    body: Body,
) -> Result<Response<ApiBody>, Failure> {
    if !query::flag(uri.query().unwrap_or(""), "attach") {
        let req: TaskRequest = read_json(body).await?;
        check(&req)?;
        let task = p.run_task(&app, req, None).await?;
        return Ok(body::json(201, &task));
    }
    let (req, input) = request_then_input(body).await?;
    check(&req)?;
    let (output, mut events) = tokio::sync::mpsc::channel(1024);
    let task = p
        .run_task(&app, req, Some(Attached { output, input }))
        .await?;
    let (out, resp) = body::ndjson_stream();
    tokio::spawn(async move {
        out.send(&ExecEvent::Task {
            sequence: task.sequence,
        })
        .await;
        loop {
            tokio::select! {
                event = events.recv() => match event {
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
        // Its output has nowhere to go now: whatever waits to send it must not wait.
        drop(events);
        p.terminate_running(&task.id).await;
    });
    Ok(resp)
}

/// Reads an attached task's request (the body's first line, JSON) and hands the rest of
/// the body, as it comes, to the returned input.
pub(crate) async fn request_then_input<T: serde::de::DeserializeOwned>(
    mut body: Body,
) -> Result<(T, tokio::sync::mpsc::Receiver<Bytes>), Failure> {
    let invalid = |why: String| Failure::new(400, "invalid-request", why, None);
    let mut head = BytesMut::new();
    let mut rest = None;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| invalid(format!("reading the request body: {e}")))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        head.extend_from_slice(&data);
        if let Some(i) = head.iter().position(|b| *b == b'\n') {
            rest = Some(head.split_off(i + 1).freeze());
            break;
        }
        if head.len() > MAX_JSON_BYTES {
            return Err(invalid(format!(
                "the task's line is longer than {MAX_JSON_BYTES} bytes"
            )));
        }
    }
    let req: T = serde_json::from_slice(&head)
        .map_err(|e| invalid(format!("the request body is not valid: {e}")))?;
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(async move {
        if let Some(rest) = rest.filter(|r| !r.is_empty()) {
            if tx.send(rest).await.is_err() {
                return;
            }
        }
        // The body ending (or failing) ends the input: the task reads end of file.
        while let Some(Ok(frame)) = body.frame().await {
            if let Ok(data) = frame.into_data() {
                if tx.send(data).await.is_err() {
                    return;
                }
            }
        }
    });
    Ok((req, rx))
}

fn check(req: &TaskRequest) -> Result<(), Failure> {
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
    Ok(())
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
    let (app, sequence) = task_path(&name, &sequence)?;
    let task = p.terminate_task(&app, sequence).await?;
    Ok(body::json(200, &task))
}

/// Gives a running task's terminal a new size (`{"rows": R, "cols": C}`): the person's
/// terminal was resized.
pub async fn resize(
    State(p): State<Arc<Platform>>,
    Path((name, sequence)): Path<(String, String)>,
    body: Body,
) -> Result<Response<ApiBody>, Failure> {
    let (app, sequence) = task_path(&name, &sequence)?;
    let size: paas_api::TerminalSize = read_json(body).await?;
    if size.rows == 0 || size.cols == 0 {
        return Err(Failure::new(
            422,
            "invalid-size",
            "a terminal has at least one row and one column",
            None,
        ));
    }
    p.resize_task(&app, sequence, size).await?;
    Ok(body::empty(204))
}

/// The app and task number of a task's path.
fn task_path(name: &str, sequence: &str) -> Result<(AppName, u64), Failure> {
    let app =
        AppName::parse(name).map_err(|e| Failure::new(400, "invalid-name", e.to_string(), None))?;
    let sequence: u64 = sequence.parse().map_err(|_| {
        Failure::new(
            400,
            "invalid-task",
            format!("{sequence:?} is not a task number"),
            Some(&format!("see `paas tasks {app}`")),
        )
    })?;
    Ok((app, sequence))
}
