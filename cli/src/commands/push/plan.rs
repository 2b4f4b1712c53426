//! `push --plan`: what a push would do, worked out with reads only.

use std::collections::BTreeMap;

use http::{Method, StatusCode};
use paas_api::{AppSettings, AppSummary, Route};
use serde::Serialize;

use super::{human_bytes, report::Reporter, Plan, Routes};
use crate::archive::Packed;
use crate::client::{check, Client};
use crate::exit::{self, Failure};

/// What a push would do. Printed as text, or as one JSON object with `--json`.
#[derive(Debug, Serialize)]
struct Preview {
    event: &'static str,
    app: String,
    /// The app does not exist yet and would be created.
    create: bool,
    /// Settings that would change, `name: old → new`.
    settings: Vec<String>,
    /// Variables the manifest sets that are new or different (values are not shown).
    env: Vec<String>,
    map_routes: Vec<String>,
    unmap_routes: Vec<String>,
    files: u64,
    files_sent: u64,
    bytes_sent: u64,
    package_bytes: u64,
    /// `stage-and-roll-out` or `stage-and-stop` (with --no-start).
    then: &'static str,
}

pub async fn show(
    client: &Client,
    plan: &Plan,
    packed: &Packed,
    package_bytes: u64,
    report: Reporter,
) -> Result<(), Failure> {
    let name = &plan.name;
    let resp = client
        .send(
            Method::GET,
            &format!("/v1/apps/{name}"),
            bytes::Bytes::new(),
            "application/json",
        )
        .await?;
    let current: Option<AppSummary> =
        if resp.status() == StatusCode::NOT_FOUND {
            None
        } else {
            let body = crate::client::read_all(check(resp, exit::GENERAL).await?).await?;
            Some(serde_json::from_slice(&body).map_err(|e| {
                Failure::general(format!("the API answered something unexpected: {e}"))
            })?)
        };
    let (settings, env, routes) = match &current {
        None => (Vec::new(), plan.env.keys().cloned().collect(), Vec::new()),
        Some(app) => {
            let env: BTreeMap<String, String> = client
                .json(Method::GET, &format!("/v1/apps/{name}/env"), None::<&()>)
                .await?;
            let changed_env = plan
                .env
                .iter()
                .filter(|(k, v)| env.get(*k) != Some(*v))
                .map(|(k, _)| k.clone())
                .collect();
            let routes: Vec<Route> = client.list(&format!("/v1/apps/{name}/routes")).await?;
            (
                settings_diff(&app.settings, &plan.settings),
                changed_env,
                routes,
            )
        }
    };
    let (map_routes, unmap_routes) = match &plan.routes {
        Routes::Default if current.is_none() => {
            let info: paas_api::Info = client.json(Method::GET, "/v1/info", None::<&()>).await?;
            (vec![format!("{name}.{}", info.domain)], Vec::new())
        }
        Routes::Random if routes.is_empty() => (vec![format!("{name}-WORD-WORD (random)")], vec![]),
        Routes::Default | Routes::Random => (Vec::new(), Vec::new()),
        Routes::Unmapped => (Vec::new(), routes.iter().map(|r| r.to_string()).collect()),
        Routes::Listed(list) => (
            list.iter()
                .filter(|r| !routes.contains(r))
                .map(|r| r.to_string())
                .collect(),
            Vec::new(),
        ),
    };
    let preview = Preview {
        event: "plan",
        app: name.to_string(),
        create: current.is_none(),
        settings,
        env,
        map_routes,
        unmap_routes,
        files: packed.files,
        files_sent: packed.files - packed.matched_files,
        bytes_sent: packed.bytes - packed.matched_bytes,
        package_bytes,
        then: if plan.start {
            "stage-and-roll-out"
        } else {
            "stage-and-stop"
        },
    };
    if report.json {
        println!("{}", serde_json::to_string(&preview).unwrap_or_default());
        return Ok(());
    }
    println!("Plan for app {name} (nothing was changed):");
    if preview.create {
        println!("   create the app");
    }
    // The current start command is the API's copy of a tenant's text.
    let screen = crate::terminal::Screen::stdout();
    for s in &preview.settings {
        println!("   change {}", screen.line(s));
    }
    for k in &preview.env {
        println!("   set env {k}");
    }
    for r in &preview.map_routes {
        println!("   map route {r}");
    }
    for r in &preview.unmap_routes {
        println!("   unmap route {r}");
    }
    println!(
        "   upload {} of {} files, {} ({} compressed); {} are on the platform already",
        preview.files_sent,
        preview.files,
        human_bytes(preview.bytes_sent),
        human_bytes(package_bytes),
        packed.matched_files
    );
    if plan.start {
        println!(
            "   then stage it and roll out {} instance(s): each new one healthy before an old one stops",
            plan.settings.instances
        );
    } else {
        println!("   then stage it and leave the app stopped (--no-start)");
    }
    Ok(())
}

/// The settings that differ, as `name: old → new`.
fn settings_diff(old: &AppSettings, new: &AppSettings) -> Vec<String> {
    let mut out = Vec::new();
    let mut field = |name: &str, a: String, b: String| {
        if a != b {
            out.push(format!("{name}: {a} → {b}"));
        }
    };
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "(default)".into());
    field(
        "instances",
        old.instances.to_string(),
        new.instances.to_string(),
    );
    field("memory", old.memory.to_string(), new.memory.to_string());
    field(
        "disk",
        old.disk_or_default().to_string(),
        new.disk_or_default().to_string(),
    );
    let names = |s: &AppSettings| {
        if s.buildpacks.is_empty() {
            "(detect)".to_string()
        } else {
            s.buildpacks
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    field("buildpacks", names(old), names(new));
    field("command", opt(&old.command), opt(&new.command));
    field(
        "health check",
        old.health_check.to_string(),
        new.health_check.to_string(),
    );
    field(
        "start timeout",
        opt(&old.start_timeout_secs.map(|t| format!("{t} s"))),
        opt(&new.start_timeout_secs.map(|t| format!("{t} s"))),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use paas_api::MemorySize;

    #[test]
    fn only_changed_settings_are_listed() {
        let old = AppSettings {
            instances: 1,
            memory: MemorySize::parse("256M").unwrap(),
            buildpacks: vec![],
            command: None,
            health_check: Default::default(),
            start_timeout_secs: None,
            health_check_interval_secs: None,
            health_check_timeout_secs: None,
            readiness_check: None,
            readiness_check_interval_secs: None,
            readiness_check_timeout_secs: None,
            disk: None,
            outbound: None,
            stack: None,
            processes: Default::default(),
        };
        assert!(settings_diff(&old, &old).is_empty());
        let new = AppSettings {
            instances: 3,
            command: Some("./run".into()),
            ..old.clone()
        };
        assert_eq!(
            settings_diff(&old, &new),
            vec!["instances: 1 → 3", "command: (default) → ./run"]
        );
    }
}
