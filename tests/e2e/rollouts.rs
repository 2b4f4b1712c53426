//! Roll-out strategies through the CLI, under load through the router: rolling with
//! max-in-flight (and its own rollback), and canary with continue and cancel.

use crate::harness::{eventually, Daemon};

/// An app that answers `version`, or, for "broken", exits at once.
fn app_dir(version: &str) -> tempfile::TempDir {
    let dir = crate::harness::answering_app(version);
    if version == "broken" {
        std::fs::write(dir.path().join("server.py"), "import sys\nsys.exit(3)\n").unwrap();
    }
    dir
}

fn push(d: &Daemon, version: &str, extra: &[&str]) -> std::process::Output {
    let dir = app_dir(version);
    let path = dir.path().to_str().unwrap();
    let mut args = vec![
        "push",
        "roller",
        "-p",
        path,
        "-b",
        "binary",
        "-c",
        "python3 server.py",
    ];
    args.extend_from_slice(extra);
    d.paas(&args)
}

/// The versions that answer, over `n` requests.
fn answers(d: &Daemon, n: usize) -> std::collections::BTreeMap<String, usize> {
    let mut seen = std::collections::BTreeMap::new();
    for _ in 0..n {
        let r = d.get("roller.localhost", "/");
        let key = if r.status == 200 {
            r.body
        } else {
            format!("HTTP {}", r.status)
        };
        *seen.entry(key).or_default() += 1;
    }
    seen
}

fn current_revision(d: &Daemon) -> i64 {
    let revs: serde_json::Value =
        serde_json::from_str(&d.paas_ok(&["revisions", "roller", "--json"])).unwrap();
    revs.as_array()
        .unwrap()
        .iter()
        .find(|r| r["current"] == true)
        .and_then(|r| r["version"].as_i64())
        .unwrap()
}

fn web_count(d: &Daemon) -> usize {
    let a: serde_json::Value =
        serde_json::from_str(&d.paas_ok(&["app", "roller", "--json"])).unwrap();
    a["instances"].as_array().unwrap().len()
}

/// Sends requests through the router until `stop`, at most 120 s; returns the failures
/// and how many were answered.
fn load(
    d: &Daemon,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<(usize, Vec<String>)> {
    let router = d.router;
    std::thread::spawn(move || {
        let (mut ok, mut failed) = (0, Vec::new());
        let began = std::time::Instant::now();
        while !stop.load(std::sync::atomic::Ordering::SeqCst)
            && began.elapsed() < std::time::Duration::from_secs(120)
        {
            let r = crate::harness::get(router, "roller.localhost", "/");
            if r.status == 200 {
                ok += 1;
            } else {
                failed.push(format!("{} {}", r.status, r.body));
            }
        }
        (ok, failed)
    })
}

#[test]
fn a_rolling_deploy_fails_no_request_and_a_failing_one_puts_the_old_release_back() {
    let d = Daemon::start();
    assert!(push(&d, "v1", &["-i", "4"]).status.success());
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let loaded = load(&d, std::sync::Arc::clone(&stop));
    let out = push(
        &d,
        "v2",
        &["-i", "4", "--strategy", "rolling", "--max-in-flight", "2"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(answers(&d, 20).keys().collect::<Vec<_>>(), ["v2"]);
    assert_eq!(web_count(&d), 4);

    // Instance 0 of v3 crashes: the batch fails, and v2 runs on every index again.
    let out = push(
        &d,
        "broken",
        &["--strategy", "rolling", "--max-in-flight", "1"],
    );
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (ok, failed) = loaded.join().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("the previous release runs again"), "{err}");
    assert!(
        failed.is_empty(),
        "{} of {} failed: {failed:?}",
        failed.len(),
        ok + failed.len()
    );
    assert!(
        eventually(20, || web_count(&d) == 4),
        "four instances again: {}",
        d.paas_ok(&["app", "roller"])
    );
    assert_eq!(answers(&d, 20).keys().collect::<Vec<_>>(), ["v2"]);
    assert_eq!(current_revision(&d), 2);
    let bad = d.paas(&["restart", "roller", "--max-in-flight", "2"]);
    assert!(!bad.status.success(), "max-in-flight needs a strategy");

    // A delete right after a restart stops the instances the restart retires too:
    // once it is answered, nothing of the app runs or is left on disk.
    d.paas_ok(&["restart", "roller"]);
    d.paas_ok(&["delete", "roller", "-f"]);
    let data = d.dir.path().to_str().unwrap();
    assert_eq!(crate::harness::container_processes(data), Vec::<i32>::new());
    let folders: Vec<_> = std::fs::read_dir(d.dir.path().join("containers"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| !n.to_string_lossy().starts_with('.'))
        .collect();
    assert!(folders.is_empty(), "container folders left: {folders:?}");
}

#[test]
fn a_canary_runs_beside_the_old_release_until_it_is_continued_or_cancelled() {
    let d = Daemon::start();
    assert!(push(&d, "v1", &["-i", "2"]).status.success());
    let out = push(&d, "v2", &["-i", "2", "--strategy", "canary"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("paas continue-deployment roller"),
        "{text}"
    );
    assert_eq!(web_count(&d), 3, "two old instances and the canary");
    let seen = answers(&d, 40);
    assert_eq!(seen.keys().collect::<Vec<_>>(), ["v1", "v2"], "{seen:?}");
    let busy = d.paas(&["restart", "roller"]);
    assert!(String::from_utf8_lossy(&busy.stderr).contains("deployment of app roller is paused"));
    assert_eq!(current_revision(&d), 1);

    d.paas_ok(&["cancel-deployment", "roller"]);
    assert_eq!(web_count(&d), 2);
    assert_eq!(answers(&d, 20).keys().collect::<Vec<_>>(), ["v1"]);
    assert_eq!(current_revision(&d), 1);
    let none = d.paas(&["continue-deployment", "roller"]);
    assert!(String::from_utf8_lossy(&none.stderr).contains("has no paused deployment"));

    assert!(push(&d, "v3", &["-i", "2", "--strategy", "canary"])
        .status
        .success());
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let loaded = load(&d, std::sync::Arc::clone(&stop));
    let out = d.paas_ok(&["continue-deployment", "roller"]);
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (ok, failed) = loaded.join().unwrap();
    assert!(out.contains("is running 2 instance(s)"), "{out}");
    assert!(
        failed.is_empty(),
        "{} of {} failed: {failed:?}",
        failed.len(),
        ok + failed.len()
    );
    assert_eq!(web_count(&d), 2);
    assert_eq!(answers(&d, 20).keys().collect::<Vec<_>>(), ["v3"]);
    assert_eq!(current_revision(&d), 3, "v3 is the third staging");
    let events = d.paas_ok(&["events", "roller"]);
    assert!(
        events.contains("canary") && events.contains("deployment-cancelled"),
        "{events}"
    );
}
