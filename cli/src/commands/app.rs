//! `paas app NAME`: an app's summary and its instances.

use http::Method;
use paas_api::{format_timestamp_ms, AppSummary};

use super::apps::print_table;
use crate::exit::Failure;
use crate::terminal::Screen;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The app to show.
    name: String,
}

pub async fn run(args: Args, ctx: super::Ctx) -> Result<(), Failure> {
    let name = super::app_name(&args.name)?;
    let a: AppSummary = super::client(ctx)?
        .json(Method::GET, &format!("/v1/apps/{name}"), None::<&()>)
        .await?;
    if ctx.json {
        return super::print_json(&a);
    }
    let s = &a.settings;
    let fields = [
        ("name", a.name.to_string()),
        ("state", a.state.clone()),
        ("routes", a.routes.join(", ")),
        (
            "instances",
            format!("{}/{}", a.running_instances, s.instances),
        ),
        ("memory", s.memory.to_string().to_uppercase()),
        (
            "health check",
            format!(
                "{} every {}s{}",
                s.health_check,
                s.check_interval().as_secs(),
                s.readiness_check
                    .as_ref()
                    .map_or(String::new(), |r| format!(", readiness {r}"))
            ),
        ),
        (
            "outbound",
            if s.outbound() { "allowed" } else { "denied" }.to_string(),
        ),
        (
            "buildpacks",
            a.detected_buildpack.clone().unwrap_or_else(|| "-".into()),
        ),
        (
            "start command",
            a.start_command.clone().unwrap_or_else(|| "-".into()),
        ),
        (
            "droplet",
            a.droplet
                .as_deref()
                .map_or("-".to_string(), |d| d.chars().take(12).collect()),
        ),
    ];
    // The start command and the buildpacks' names are tenants' text.
    let screen = Screen::stdout();
    for (k, v) in fields {
        println!("{:<15}{}", format!("{k}:"), screen.line(&v));
    }
    // Each process type with its instances; an app pushed before process types were
    // reported has its instances listed alone.
    let mut types: Vec<(String, String, String)> = a
        .processes
        .iter()
        .map(|p| {
            let memory = p.memory.to_string().to_uppercase();
            let head = format!(
                "type {}: {}/{} running, {memory}, {} check, command: {}",
                p.process, p.running, p.instances, p.health_check, p.command
            );
            (p.process.clone(), head, memory)
        })
        .collect();
    for i in &a.instances {
        if !types.iter().any(|(t, ..)| *t == i.process) {
            let memory = s.memory.to_string().to_uppercase();
            types.push((i.process.clone(), format!("type {}:", i.process), memory));
        }
    }
    let mib = |b: u64| format!("{:.1}M", b as f64 / (1u64 << 20) as f64);
    let disk_limit = s.disk_or_default().to_string().to_uppercase();
    for (process, head, memory_limit) in types {
        println!();
        println!("{}", screen.line(&head));
        let rows: Vec<[String; 7]> = a
            .instances
            .iter()
            .filter(|i| i.process == process)
            .map(|i| {
                [
                    format!("#{}", i.index),
                    i.state.clone(),
                    format_timestamp_ms(i.since_ms),
                    format!("{:.1}%", i.cpu_percent),
                    format!("{} of {memory_limit}", mib(i.memory_bytes)),
                    format!("{} of {disk_limit}", mib(i.disk_bytes)),
                    i.cell.clone(),
                ]
            })
            .collect();
        if !rows.is_empty() {
            print_table(
                &["", "state", "since", "cpu", "memory", "disk", "cell"],
                &rows,
            );
        }
    }
    Ok(())
}
