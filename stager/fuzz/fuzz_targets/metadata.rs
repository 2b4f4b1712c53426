//! What tenants write that the platform parses besides archives: the files a build
//! leaves (Procfile, `bin/release` YAML, `launch.yml`, `launch.toml`, `buildpack.toml`,
//! a build plan) and the JSON bodies of API requests, each followed by what the
//! platform does next with it (a Procfile's entries, a process's command line, a
//! name's or size's check). The first byte picks the parser, the rest is its input.
//! Any panic is a finding, and so is a broken property:
//! - a Procfile's entries have a name of letters, digits, `_` and `-` and a command,
//!   and written back out as `name: command` lines they parse to the same entries;
//! - a `launch.toml` process always becomes a command line that `exec`s it;
//! - a request body that parses serialises to JSON that parses to the same body;
//! - a name or route that passes its check is within its bounds;
//! - a manifest without `((var))` placeholders is left as it is by interpolation.
//!
//! The CLI's manifest reader (`cli/src/manifest.rs`, a binary crate's module) is
//! compiled in from its source.
//!
//! Run with `stager/fuzz/run.sh SECONDS metadata`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use paas_stager::cnb::{BuildpackToml, DetectPlan, LaunchToml};
use paas_stager::lifecycle::{parse_launch_yml, parse_procfile, parse_release};
use serde::de::DeserializeOwned;
use serde::Serialize;

#[path = "../../../cli/src/manifest.rs"]
#[allow(dead_code)]
mod manifest;

/// Parses `data` as a `T`; if it parses, its JSON must parse back to the same JSON.
fn round_trip<T: Serialize + DeserializeOwned>(data: &[u8]) {
    let Ok(value) = serde_json::from_slice::<T>(data) else {
        return;
    };
    let first = serde_json::to_value(&value).expect("a parsed body serialises");
    let again: T = serde_json::from_value(first.clone()).expect("its JSON parses again");
    let second = serde_json::to_value(&again).expect("and serialises again");
    assert_eq!(first, second, "a body changed on its way through JSON");
}

fn procfile(text: &str) {
    let entries = parse_procfile(text);
    for (name, command) in &entries {
        assert!(!name.is_empty() && !command.is_empty(), "{entries:?}");
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'),
            "{name:?}"
        );
    }
    let written: String = entries.iter().map(|(k, v)| format!("{k}: {v}\n")).collect();
    assert_eq!(
        parse_procfile(&written),
        entries,
        "written back: {written:?}"
    );
}

fn names(text: &str) {
    if let Ok(name) = paas_api::AppName::parse(text) {
        assert!((1..=63).contains(&name.as_str().len()), "{name}");
    }
    if paas_api::auth::check_label("space", text).is_ok() {
        assert!(text.len() <= 63 && !text.is_empty());
    }
    let _ = paas_api::check_env_name(text);
    let _ = paas_api::check_host(text);
    let _ = paas_api::MemorySize::parse(text);
    let _ = paas_api::HealthCheck::parse("http", Some(text));
    if let Ok(route) = paas_api::Route::parse(text) {
        let again = paas_api::Route::parse(&route.to_string()).expect("a route parses again");
        assert_eq!(again, route);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let text = std::str::from_utf8(rest).ok();
    match (which % 26, text) {
        (0, Some(t)) => procfile(t),
        (1, Some(t)) => {
            let _ = parse_release(t);
        }
        (2, Some(t)) => {
            let _ = parse_launch_yml(t);
        }
        (3, Some(t)) => {
            if let Ok(launch) = LaunchToml::parse(t) {
                for p in &launch.processes {
                    let line = p.command_line();
                    assert!(
                        line.starts_with("exec ") || line.starts_with("cd "),
                        "{line}"
                    );
                }
            }
        }
        (4, Some(t)) => {
            let _ = BuildpackToml::parse(t);
        }
        (5, Some(t)) => {
            let _ = DetectPlan::parse(t);
        }
        (6, Some(t)) => names(t),
        (7, _) => round_trip::<paas_api::AppSettings>(rest),
        (8, _) => round_trip::<paas_api::ServiceRequest>(rest),
        (9, _) => round_trip::<paas_api::ScaleRequest>(rest),
        (10, _) => round_trip::<paas_api::TaskRequest>(rest),
        (11, _) => round_trip::<paas_api::DeployRequest>(rest),
        (12, _) => round_trip::<paas_api::RollbackRequest>(rest),
        (13, _) => round_trip::<paas_api::RolloutRequest>(rest),
        (14, _) => round_trip::<paas_api::MapRoute>(rest),
        (15, _) => round_trip::<paas_api::CreateDomain>(rest),
        (16, _) => round_trip::<paas_api::ExecRequest>(rest),
        (17, _) => round_trip::<paas_api::auth::LoginRequest>(rest),
        (18, _) => round_trip::<paas_api::auth::CreateUser>(rest),
        (19, _) => round_trip::<paas_api::auth::CreateSpace>(rest),
        (20, _) => round_trip::<paas_api::auth::Quota>(rest),
        (21, _) => round_trip::<paas_api::auth::ChangePassword>(rest),
        (22, _) => round_trip::<std::collections::BTreeMap<String, Option<String>>>(rest),
        (23, _) => round_trip::<paas_api::auth::RefreshRequest>(rest),
        (24, Some(t)) => {
            let _ = manifest::parse(t);
        }
        (25, Some(t)) => {
            // The first line names variables (`a=b` each), the rest is the manifest.
            let (head, body) = t.split_once('\n').unwrap_or(("", t));
            let vars = head
                .split(',')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            match manifest::interpolate(body, &vars) {
                Ok(out) if !body.contains("((") => assert_eq!(out, body),
                Ok(_) => {}
                Err(e) => assert!(e.starts_with("line "), "{e}"),
            }
            if let Ok(filled) = manifest::interpolate(body, &vars) {
                let _ = manifest::parse(&filled);
            }
        }
        _ => {}
    }
});
