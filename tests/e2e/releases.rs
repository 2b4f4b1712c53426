//! Revisions, rollback, scale, stop and start through the CLI.

use crate::harness::{answering_app as app_dir, Daemon};

fn push(d: &Daemon, version: &str) {
    let dir = app_dir(version);
    d.paas_ok(&[
        "push",
        "versioned",
        "-p",
        dir.path().to_str().unwrap(),
        "-b",
        "binary",
        "-c",
        "python3 server.py",
    ]);
}

#[test]
fn revisions_roll_back_and_scale_stop_and_start() {
    let d = Daemon::start();
    let host = "versioned.localhost";
    push(&d, "v1");
    push(&d, "v2");
    assert_eq!(d.get(host, "/").body, "v2");
    let revs = d.paas_ok(&["revisions", "versioned"]);
    assert!(
        revs.contains("2 (current)") && revs.lines().any(|l| l.starts_with("1 ")),
        "{revs}"
    );

    let out = d.paas_ok(&["rollback", "versioned", "--version", "1"]);
    assert!(out.contains("is running 1 instance(s)"), "{out}");
    assert_eq!(d.get(host, "/").body, "v1");
    assert!(d
        .paas_ok(&["revisions", "versioned"])
        .contains("1 (current)"));
    let out = d.paas(&["rollback", "versioned", "--version", "9"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("has no revision 9"));

    d.paas_ok(&["scale", "versioned", "-i", "2"]);
    let app = d.paas_ok(&["app", "versioned"]);
    assert!(app.contains("instances:     2/2"), "{app}");
    assert_eq!(d.get(host, "/").body, "v1", "scaling keeps the release");

    d.paas_ok(&["stop", "versioned"]);
    assert_eq!(
        d.get(host, "/").status,
        503,
        "stopped: known route, no instance"
    );
    assert!(d.paas_ok(&["apps"]).contains("stopped"));
    d.paas_ok(&["start", "versioned"]);
    assert_eq!(d.get(host, "/").status, 200);
    let events = d.paas_ok(&["events", "versioned"]);
    for kind in ["deploy", "rollback", "restart", "stop"] {
        assert!(events.contains(kind), "{kind}: {events}");
    }
}

#[test]
fn only_the_droplets_of_the_last_five_revisions_are_kept() {
    let d = Daemon::start();
    for v in 1..=7 {
        push(&d, &format!("v{v}"));
    }
    // Collection runs once the replaced instances have stopped.
    let mut revs = String::new();
    for _ in 0..100 {
        revs = d.paas_ok(&["revisions", "versioned"]);
        if revs.lines().filter(|l| l.contains(" no ")).count() == 2 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let gone: Vec<&str> = revs.lines().filter(|l| l.contains(" no ")).collect();
    assert_eq!(
        gone.len(),
        2,
        "revisions 1 and 2 lost their droplets: {revs}"
    );
    let out = d.paas(&["rollback", "versioned", "--version", "1"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no longer kept"));
    d.paas_ok(&["rollback", "versioned", "--version", "3"]);
    assert_eq!(d.get("versioned.localhost", "/").body, "v3");
}

#[test]
fn reading_commands_speak_json_and_secrets_stay_hidden() {
    let d = Daemon::start();
    push(&d, "v1");
    d.paas_ok(&["set-env", "versioned", "DB_PASSWORD", "hunter2"]);
    d.paas_ok(&["set-env", "versioned", "GREETING", "hi"]);
    let apps: serde_json::Value = serde_json::from_str(&d.paas_ok(&["apps", "--json"])).unwrap();
    assert_eq!(apps[0]["name"], "versioned");
    let app: serde_json::Value =
        serde_json::from_str(&d.paas_ok(&["app", "versioned", "--json"])).unwrap();
    assert_eq!(app["instances"][0]["state"], "running");
    let env: serde_json::Value =
        serde_json::from_str(&d.paas_ok(&["env", "versioned", "--json"])).unwrap();
    assert_eq!(env["GREETING"], "hi");
    assert_eq!(env["DB_PASSWORD"], "[redacted: use --reveal]");
    let env: serde_json::Value =
        serde_json::from_str(&d.paas_ok(&["env", "versioned", "--json", "--reveal"])).unwrap();
    assert_eq!(env["DB_PASSWORD"], "hunter2");
    for cmd in [["events", "versioned"], ["revisions", "versioned"]] {
        let v: serde_json::Value =
            serde_json::from_str(&d.paas_ok(&[cmd[0], cmd[1], "--json"])).unwrap();
        assert!(v.as_array().is_some_and(|a| !a.is_empty()), "{cmd:?}: {v}");
    }
    let bps: serde_json::Value =
        serde_json::from_str(&d.paas_ok(&["buildpacks", "--json"])).unwrap();
    assert_eq!(bps[0]["name"], "staticfile");
}

/// Each instance's index, id and the time it entered its state, by `paas app --json`.
fn instances(d: &Daemon) -> Vec<(u64, String, u64)> {
    let app: serde_json::Value =
        serde_json::from_str(&d.paas_ok(&["app", "versioned", "--json"])).unwrap();
    let mut list: Vec<(u64, String, u64)> = app["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            assert_eq!(i["state"], "running", "{i}");
            (
                i["index"].as_u64().unwrap(),
                i["id"].as_str().unwrap().to_string(),
                i["since_ms"].as_u64().unwrap(),
            )
        })
        .collect();
    list.sort();
    list
}

#[test]
fn scaling_instances_adds_or_stops_only_those_under_load_and_new_limits_roll_over() {
    let d = Daemon::start();
    let dir = app_dir("v1");
    let path = dir.path().to_str().unwrap();
    d.paas_ok(&[
        "push",
        "versioned",
        "-p",
        path,
        "-b",
        "binary",
        "-c",
        "python3 server.py",
        "-i",
        "2",
    ]);
    let first = instances(&d);
    assert_eq!(first.len(), 2, "{first:?}");

    // Requests without pause through the router while it scales; bounded by a stop
    // flag and 120 s.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let (stop, router) = (std::sync::Arc::clone(&stop), d.router);
        std::thread::spawn(move || {
            let (mut served, mut failed) = (0, Vec::new());
            let began = std::time::Instant::now();
            while !stop.load(std::sync::atomic::Ordering::SeqCst)
                && began.elapsed() < std::time::Duration::from_secs(120)
            {
                let r = crate::harness::get(router, "versioned.localhost", "/");
                if r.status == 200 && r.body == "v1" {
                    served += 1;
                } else {
                    failed.push(r.status);
                }
            }
            (served, failed)
        })
    };
    let out = d.paas_ok(&["scale", "versioned", "-i", "4"]);
    assert!(out.contains("is running 4 instance(s)"), "{out}");
    let four = instances(&d);
    assert_eq!(four.len(), 4, "{four:?}");
    assert_eq!(
        &four[..2],
        &first[..],
        "the two first instances ran on untouched"
    );
    d.paas_ok(&["scale", "versioned", "-i", "2"]);
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (served, failed) = load.join().unwrap();
    eprintln!("{served} requests answered through the router while it scaled");
    assert!(served > 0);
    assert!(
        failed.is_empty(),
        "{} of {} requests failed: {failed:?}",
        failed.len(),
        served + failed.len()
    );
    assert_eq!(instances(&d), first, "scaling in stops the instances above");
    let events = d.paas_ok(&["events", "versioned"]);
    assert!(events.contains("scaled web from 2 to 4"), "{events}");
    assert!(events.contains("scaled web from 4 to 2"), "{events}");

    // New limits restart every instance with them.
    d.paas_ok(&["scale", "versioned", "-m", "128M"]);
    let app: serde_json::Value =
        serde_json::from_str(&d.paas_ok(&["app", "versioned", "--json"])).unwrap();
    assert_eq!(app["settings"]["memory"], 128, "{app}");
    let rolled = instances(&d);
    assert_eq!(rolled.len(), 2);
    assert!(
        rolled.iter().all(|r| first.iter().all(|f| f.1 != r.1)),
        "new instances: {rolled:?} after {first:?}"
    );

    // A push that does not say how many instances keeps the count, as `cf push` does.
    d.paas_ok(&["scale", "versioned", "-i", "3"]);
    let out = d.paas_ok(&[
        "push",
        "versioned",
        "-p",
        path,
        "-b",
        "binary",
        "-c",
        "python3 server.py",
    ]);
    assert!(out.contains("is running 3 instance(s)"), "{out}");
}

#[test]
fn a_changed_env_makes_a_revision_and_rollback_brings_the_old_env_back() {
    let d = Daemon::start();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("server.py"),
        "import http.server, os\n\
         class H(http.server.BaseHTTPRequestHandler):\n    \
         def do_GET(self):\n        \
         self.send_response(200); self.end_headers()\n        \
         self.wfile.write(os.environ.get('GREETING', 'none').encode())\n    \
         def log_message(self, *a): pass\n\
         http.server.ThreadingHTTPServer(('0.0.0.0', int(os.environ['PORT'])), H).serve_forever()\n",
    )
    .unwrap();
    let path = dir.path().to_str().unwrap();
    d.paas_ok(&[
        "push",
        "greeter",
        "-p",
        path,
        "-b",
        "binary",
        "-c",
        "python3 server.py",
    ]);
    let host = "greeter.localhost";
    assert_eq!(d.get(host, "/").body, "none");

    d.paas_ok(&["set-env", "greeter", "GREETING", "hello"]);
    assert_eq!(d.get(host, "/").body, "none", "applies at the next restart");
    d.paas_ok(&["restart", "greeter"]);
    assert_eq!(d.get(host, "/").body, "hello");
    let revs: serde_json::Value =
        serde_json::from_str(&d.paas_ok(&["revisions", "greeter", "--json"])).unwrap();
    let revs = revs.as_array().unwrap();
    assert_eq!(revs.len(), 2, "{revs:?}");
    assert_eq!(revs[0]["version"], 2);
    assert_eq!(revs[0]["current"], true);
    assert_eq!(revs[0]["changes"], "env +GREETING", "{revs:?}");
    assert_eq!(revs[0]["droplet"], revs[1]["droplet"], "the same droplet");
    assert_eq!(revs[1]["changes"], "first release");
    let table = d.paas_ok(&["revisions", "greeter"]);
    assert!(!table.contains("hello"), "values stay out: {table}");

    // A restart with nothing changed makes no revision.
    d.paas_ok(&["restart", "greeter"]);
    assert!(!d.paas_ok(&["revisions", "greeter"]).contains("\n3"));

    d.paas_ok(&["rollback", "greeter", "--version", "1"]);
    assert_eq!(d.get(host, "/").body, "none", "revision 1 ran without it");
    let env: serde_json::Value =
        serde_json::from_str(&d.paas_ok(&["env", "greeter", "--json"])).unwrap();
    assert!(
        env.get("GREETING").is_none(),
        "the app's env is revision 1's: {env}"
    );
    d.paas_ok(&["restart", "greeter"]);
    assert_eq!(d.get(host, "/").body, "none");
    let revs = d.paas_ok(&["revisions", "greeter"]);
    assert!(revs.contains("1 (current)"), "no new revision: {revs}");
}
