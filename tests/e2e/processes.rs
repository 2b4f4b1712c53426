//! Process types through the CLI: every type of the Procfile runs, only `web` is routed,
//! and each type scales on its own.

use crate::harness::{eventually, Daemon};

/// (process, index, id, state) of each instance, as `paas app --json` lists them.
fn instances(d: &Daemon, app: &str) -> Vec<(String, u64, String, String)> {
    let a: serde_json::Value = serde_json::from_str(&d.paas_ok(&["app", app, "--json"])).unwrap();
    a["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["process"].as_str().unwrap().to_string(),
                i["index"].as_u64().unwrap(),
                i["id"].as_str().unwrap().to_string(),
                i["state"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn every_process_type_runs_only_web_is_routed_and_each_scales_on_its_own() {
    let d = Daemon::start();
    let dir = crate::harness::answering_app("web");
    // The worker listens on no port: routed, or checked like web, it would fail.
    std::fs::write(
        dir.path().join("Procfile"),
        "web: python3 server.py\n\
         worker: while true; do echo \"worker $CF_INSTANCE_INDEX tick\"; sleep 0.2; done\n",
    )
    .unwrap();
    let path = dir.path().to_str().unwrap();
    d.paas_ok(&["push", "duo", "-p", path, "-b", "binary"]);

    let first = instances(&d, "duo");
    let kinds: Vec<(&str, u64, &str)> = first
        .iter()
        .map(|(p, i, _, s)| (p.as_str(), *i, s.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [("web", 0, "running"), ("worker", 0, "running")],
        "{first:?}"
    );
    let ticked = eventually(20, || {
        d.paas_ok(&["logs", "duo", "--recent"])
            .contains("[APP/PROC/WORKER/0] OUT worker 0 tick")
    });
    assert!(ticked, "the worker logs as APP/PROC/WORKER/0");
    for _ in 0..20 {
        let r = d.get("duo.localhost", "/");
        assert_eq!((r.status, r.body.as_str()), (200, "web"));
    }
    // `exec` reaches a worker as well as web, as `cf ssh --process` does.
    let processes = "cat /proc/[0-9]*/cmdline | tr '\\0' ' '";
    let worker = d.paas_ok(&[
        "exec",
        "duo",
        "--process",
        "worker",
        "--",
        "sh",
        "-c",
        processes,
    ]);
    assert!(
        worker.contains("tick") && !worker.contains("server.py"),
        "ran beside the worker: {worker}"
    );
    let web = d.paas_ok(&["exec", "duo", "--", "sh", "-c", processes]);
    assert!(web.contains("server.py") && !web.contains("tick"), "{web}");
    let none = d.paas(&["exec", "duo", "--process", "clock", "--", "true"]);
    assert!(
        String::from_utf8_lossy(&none.stderr)
            .contains("clock instance 0 of app duo is not running"),
        "{none:?}"
    );
    let shown = d.paas_ok(&["app", "duo"]);
    assert!(shown.contains("type worker: 1/1 running"), "{shown}");
    assert!(shown.contains("type web: 1/1 running"), "{shown}");

    d.paas_ok(&["scale", "duo", "--process", "worker", "-i", "2"]);
    let two = instances(&d, "duo");
    assert_eq!(two.len(), 3, "{two:?}");
    assert!(
        first.iter().all(|f| two.contains(f)),
        "{two:?} keeps {first:?}"
    );
    assert!(two
        .iter()
        .any(|(p, i, _, s)| p == "worker" && *i == 1 && s == "running"));
    let ticked = eventually(20, || {
        d.paas_ok(&["logs", "duo", "--recent"])
            .contains("[APP/PROC/WORKER/1] OUT worker 1 tick")
    });
    assert!(ticked, "the second worker runs");
    let a: serde_json::Value = serde_json::from_str(&d.paas_ok(&["app", "duo", "--json"])).unwrap();
    assert_eq!(a["settings"]["instances"], 1, "web stays at 1: {a}");
    assert_eq!(a["settings"]["processes"]["worker"]["instances"], 2, "{a}");

    // A push keeps the worker's scale.
    d.paas_ok(&["push", "duo", "-p", path, "-b", "binary"]);
    let pushed = instances(&d, "duo");
    assert_eq!(
        pushed.iter().filter(|i| i.0 == "worker").count(),
        2,
        "{pushed:?}"
    );

    d.paas_ok(&["scale", "duo", "--process", "worker", "-i", "1"]);
    let one: Vec<_> = instances(&d, "duo")
        .into_iter()
        .map(|(p, i, ..)| (p, i))
        .collect();
    assert_eq!(
        one,
        [("web".to_string(), 0), ("worker".to_string(), 0)],
        "scaling in stops worker 1 only"
    );
    let wrong = d.paas(&["scale", "duo", "--process", "clock", "-i", "2"]);
    let err = String::from_utf8_lossy(&wrong.stderr);
    assert!(
        err.contains("has no process type \"clock\"") && err.contains("web, worker"),
        "{err}"
    );
}

#[test]
fn a_manifest_s_processes_set_each_type_and_can_add_one() {
    let d = Daemon::start();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("server.py"),
        "import http.server, os\n\
         http.server.ThreadingHTTPServer(('0.0.0.0', int(os.environ['PORT'])), http.server.SimpleHTTPRequestHandler).serve_forever()\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("Procfile"),
        "web: python3 server.py\nworker: sleep 1000\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("manifest.yml"),
        "applications:\n\
         - name: trio\n  buildpacks: [binary]\n  processes:\n\
         \x20 - type: web\n    instances: 2\n    memory: 128M\n\
         \x20 - type: worker\n    instances: 2\n    memory: 64M\n\
         \x20 - type: clock\n    command: while true; do echo clock tick; sleep 0.2; done\n",
    )
    .unwrap();
    d.paas_in(dir.path(), &["push"]);
    let a: serde_json::Value =
        serde_json::from_str(&d.paas_ok(&["app", "trio", "--json"])).unwrap();
    assert_eq!(a["settings"]["instances"], 2, "{a}");
    assert_eq!(a["settings"]["memory"], 128);
    let types: Vec<(String, u64, u64)> = a["processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["process"].as_str().unwrap().to_string(),
                p["running"].as_u64().unwrap(),
                p["memory"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        types,
        [
            ("web".to_string(), 2, 128),
            ("clock".to_string(), 1, 128),
            ("worker".to_string(), 2, 64)
        ],
        "{a}"
    );
    assert!(eventually(20, || d
        .paas_ok(&["logs", "trio", "--recent"])
        .contains("[APP/PROC/CLOCK/0] OUT clock tick")));
}
