//! Revisions, rollback, scale, stop and start through the CLI.

use crate::harness::Daemon;

/// An app that answers with its version.
fn app_dir(version: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("server.py"),
        format!(
            "import http.server, os\n\
             class H(http.server.BaseHTTPRequestHandler):\n    \
             def do_GET(self):\n        \
             self.send_response(200); self.end_headers(); self.wfile.write(b'{version}')\n    \
             def log_message(self, *a): pass\n\
             http.server.ThreadingHTTPServer(('0.0.0.0', int(os.environ['PORT'])), H).serve_forever()\n"
        ),
    )
    .unwrap();
    dir
}

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
