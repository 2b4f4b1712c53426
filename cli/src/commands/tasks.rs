//! `paas run-task`, `paas tasks` and `paas terminate-task`: one-off commands of an app,
//! each run once in a container of its own from the app's current droplet, with its
//! env and limits (Cloud Foundry's tasks). Their output is in `paas logs` as
//! `APP/TASK/<name>`.

use http::Method;
use paas_api::{format_timestamp_ms, MemorySize, TaskRequest, TaskSummary};

use super::apps::print_table;
use crate::exit::Failure;

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    name: String,
    /// The command, a shell command line (quote it), run as the app's start command
    /// would be: from /home/vcap/app, after its profile scripts.
    command: String,
    /// The task's name in logs and lists (default: made up).
    #[arg(long = "name", value_name = "NAME")]
    task_name: Option<String>,
    /// Memory for the task, e.g. 512M (default: the app's).
    #[arg(short = 'm', long = "memory", value_name = "SIZE")]
    memory: Option<String>,
    /// Disk for the task, e.g. 2G (default: the app's).
    #[arg(short = 'k', long = "disk", value_name = "SIZE")]
    disk: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    name: String,
}

#[derive(Debug, clap::Args)]
pub struct TerminateArgs {
    name: String,
    /// The task's number, as `paas tasks` lists it.
    id: u64,
}

pub async fn run(args: RunArgs, ctx: super::Ctx) -> Result<(), Failure> {
    let name = super::app_name(&args.name)?;
    let parse = |s: &Option<String>| {
        s.as_deref()
            .map(MemorySize::parse)
            .transpose()
            .map_err(|e| Failure::usage(e.to_string()))
    };
    let req = TaskRequest {
        command: args.command,
        name: args.task_name,
        memory: parse(&args.memory)?,
        disk: parse(&args.disk)?,
        tty: None,
    };
    let task: TaskSummary = super::client(ctx)?
        .json(Method::POST, &format!("/v1/apps/{name}/tasks"), Some(&req))
        .await?;
    if ctx.json {
        return super::print_json(&task);
    }
    // The name was checked by the API: letters, digits, '-', '_' and '.' only.
    println!(
        "Task {} ({}) of app {name} is running; its output: `paas logs {name}`",
        task.sequence, task.name
    );
    Ok(())
}

pub async fn list(args: ListArgs, ctx: super::Ctx) -> Result<(), Failure> {
    let name = super::app_name(&args.name)?;
    let tasks: Vec<TaskSummary> = super::client(ctx)?
        .list(&format!("/v1/apps/{name}/tasks"))
        .await?;
    if ctx.json {
        return super::print_json(&tasks);
    }
    if tasks.is_empty() {
        println!("App {name} has run no task yet: `paas run-task {name} COMMAND` runs one.");
        return Ok(());
    }
    let rows: Vec<[String; 7]> = tasks
        .iter()
        .map(|t| {
            [
                t.sequence.to_string(),
                t.name.clone(),
                t.state.clone(),
                t.exit_code.map_or(String::new(), |c| c.to_string()),
                format_timestamp_ms(t.started_ms),
                t.ended_ms.map_or(String::new(), format_timestamp_ms),
                t.command.clone(),
            ]
        })
        .collect();
    print_table(
        &["id", "name", "state", "exit", "started", "ended", "command"],
        &rows,
    );
    Ok(())
}

pub async fn terminate(args: TerminateArgs, ctx: super::Ctx) -> Result<(), Failure> {
    let name = super::app_name(&args.name)?;
    let task: TaskSummary = super::client(ctx)?
        .json(
            Method::POST,
            &format!("/v1/apps/{name}/tasks/{}/terminate", args.id),
            None::<&()>,
        )
        .await?;
    if ctx.json {
        return super::print_json(&task);
    }
    println!(
        "Task {} ({}) of app {name} was terminated",
        task.sequence, task.name
    );
    Ok(())
}
