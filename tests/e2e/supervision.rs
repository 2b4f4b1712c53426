//! Crashes, out-of-memory kills and health checks, seen through the router, `paas app`
//! and `paas events`.

use crate::harness::{eventually, Daemon};

/// A Python app: `/crash` exits with status 7, `/hog` allocates far past the memory
/// limit, `/health` answers 200 unless `/sick` was asked for, and `/` answers "ok".
const APP: &str = r#"
import http.server, os
sick = False
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        global sick
        if self.path == "/crash":
            os._exit(7)
        if self.path == "/hog":
            hog = bytearray(1024 * 1024 * 1024)
        if self.path == "/sick":
            sick = True
        code = 500 if (self.path == "/health" and sick) else 200
        self.send_response(code)
        self.end_headers()
        self.wfile.write(b"ok")
    def log_message(self, *a):
        pass
http.server.HTTPServer(("0.0.0.0", int(os.environ["PORT"])), H).serve_forever()
"#;

fn push_app(d: &Daemon, name: &str, extra: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("server.py"), APP).unwrap();
    let path = dir.path().to_str().unwrap().to_string();
    let mut args = vec![
        "push",
        name,
        "-p",
        &path,
        "-b",
        "binary",
        "-c",
        "python3 server.py",
        "-m",
        "64M",
    ];
    args.extend_from_slice(extra);
    d.paas_ok(&args);
    dir
}

#[test]
fn a_crashed_instance_restarts_and_its_exit_code_shows_in_events() {
    let d = Daemon::start();
    let _app = push_app(&d, "crashy", &[]);
    let host = "crashy.localhost";
    assert_eq!(d.get(host, "/").status, 200);
    let resp = d.get(host, "/crash");
    assert_eq!(
        resp.status, 502,
        "the request that crashed it fails: {resp:?}"
    );
    assert!(
        eventually(20, || d.get(host, "/").status == 200),
        "the instance is restarted and routed again"
    );
    let events = d.paas_ok(&["events", "crashy"]);
    let crash = events
        .lines()
        .find(|l| l.contains("crash "))
        .unwrap_or_else(|| panic!("{events}"));
    assert!(
        crash.contains("#0") && crash.contains(" 7 ") && crash.contains("exited with status 7"),
        "{events}"
    );
    assert!(events.contains("deploy"), "{events}");
    let app = d.paas_ok(&["app", "crashy"]);
    assert!(app.contains("running"), "{app}");
}

#[test]
fn an_out_of_memory_kill_is_reported_as_such() {
    let d = Daemon::start();
    let _app = push_app(&d, "hungry", &[]);
    let _ = d.get("hungry.localhost", "/hog");
    assert!(
        eventually(20, || d
            .paas_ok(&["events", "hungry"])
            .contains("out of memory")),
        "{}",
        d.paas_ok(&["events", "hungry"])
    );
    assert!(eventually(20, || d.get("hungry.localhost", "/").status == 200));
}

#[test]
fn an_instance_failing_its_http_check_leaves_the_route_table() {
    let d = Daemon::start();
    let _app = push_app(
        &d,
        "sickly",
        &["-u", "http", "--endpoint", "/health", "-t", "10"],
    );
    assert_eq!(d.get("sickly.localhost", "/").status, 200);
    let _ = d.get("sickly.localhost", "/sick");
    // The next check (every 5 s) fails: the only instance leaves the route table (503),
    // and after three failures in a row it is restarted healthy (200 again).
    assert!(
        eventually(15, || d.get("sickly.localhost", "/").status == 503),
        "an unhealthy instance is not routed"
    );
    assert!(
        eventually(30, || d.get("sickly.localhost", "/").status == 200),
        "restarted healthy"
    );
    let events = d.paas_ok(&["events", "sickly"]);
    assert!(
        events.contains("failed its http /health health check 3 times in a row"),
        "{events}"
    );
}

#[test]
fn exec_runs_a_command_in_an_instance_and_returns_its_exit_code() {
    let d = Daemon::start();
    let path = crate::harness::repo().join("examples/python-app");
    d.paas_ok(&["push", "shell", "-p", path.to_str().unwrap(), "-i", "2"]);
    let out = d.paas_ok(&[
        "exec",
        "shell",
        "-i",
        "1",
        "--",
        "sh",
        "-c",
        "echo $CF_INSTANCE_INDEX $USER; id -u; ls app.py",
    ]);
    assert_eq!(out, "1 vcap\n2000\napp.py\n");
    let out = d.paas(&["exec", "shell", "--", "sh", "-c", "echo oops >&2; exit 3"]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "oops\n");
    let out = d.paas(&["exec", "shell", "-i", "5", "--", "true"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("web instance 5 of app shell is not running")
    );
}

#[test]
fn app_shows_each_instance_s_cpu_memory_and_disk() {
    let d = Daemon::start();
    push_app(&d, "meter", &[]);
    let instance = |d: &Daemon| -> serde_json::Value {
        let a: serde_json::Value =
            serde_json::from_str(&d.paas_ok(&["app", "meter", "--json"])).unwrap();
        a["instances"][0].clone()
    };
    let first = instance(&d);
    assert!(first["memory_bytes"].as_u64().unwrap() > 1 << 20, "{first}");
    // 20 MiB written to the writable layer show as disk use; a busy loop as CPU use.
    d.paas_ok(&[
        "exec",
        "meter",
        "--",
        "sh",
        "-c",
        "dd if=/dev/zero of=/home/vcap/app/blob bs=1M count=20 2>/dev/null; sync; \
         i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done",
    ]);
    let after = instance(&d);
    assert!(after["disk_bytes"].as_u64().unwrap() >= 20 << 20, "{after}");
    assert!(after["cpu_percent"].as_f64().unwrap() > 5.0, "{after}");
    let table = d.paas_ok(&["app", "meter"]);
    assert!(
        table.contains("cpu") && table.contains("of 64M") && table.contains("of 1024M"),
        "{table}"
    );
}

#[test]
fn an_instance_failing_its_readiness_check_leaves_the_route_table_and_keeps_running() {
    let d = Daemon::start();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("server.py"),
        r#"
import http.server, os
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        code = 503 if (self.path == "/ready" and os.path.exists("/tmp/busy")) else 200
        self.send_response(code)
        self.end_headers()
        self.wfile.write(b"ok")
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), H).serve_forever()
"#,
    )
    .unwrap();
    let path = dir.path().to_str().unwrap();
    d.paas_ok(&[
        "push",
        "ready",
        "-p",
        path,
        "-b",
        "binary",
        "-c",
        "python3 server.py",
        "-u",
        "http",
        "--endpoint",
        "/health",
        "--readiness-endpoint",
        "/ready",
        // Readiness on its own interval: with the liveness one, it would not be
        // checked again within the waits below.
        "--health-check-interval",
        "60",
        "--readiness-health-check-interval",
        "1",
        "--health-check-invocation-timeout",
        "2",
    ]);
    let app: serde_json::Value =
        serde_json::from_str(&d.paas_ok(&["app", "ready", "--json"])).unwrap();
    let settings = &app["settings"];
    assert_eq!(settings["readiness_check"]["endpoint"], "/ready", "{app}");
    assert_eq!(settings["health_check_interval_secs"], 60);
    assert_eq!(settings["readiness_check_interval_secs"], 1);
    let id = app["instances"][0]["id"].clone();
    assert_eq!(d.get("ready.localhost", "/").status, 200);

    d.paas_ok(&["exec", "ready", "--", "touch", "/tmp/busy"]);
    let state = |d: &Daemon| -> (String, serde_json::Value) {
        let a: serde_json::Value =
            serde_json::from_str(&d.paas_ok(&["app", "ready", "--json"])).unwrap();
        (
            a["instances"][0]["state"]
                .as_str()
                .unwrap_or("")
                .to_string(),
            a["instances"][0]["id"].clone(),
        )
    };
    assert!(
        eventually(20, || state(&d).0 == "not-ready"),
        "{:?}",
        state(&d)
    );
    assert_eq!(
        d.get("ready.localhost", "/").status,
        503,
        "out of the route table"
    );
    // Readiness never restarts it.
    std::thread::sleep(std::time::Duration::from_secs(4));
    assert_eq!(state(&d), ("not-ready".to_string(), id.clone()));

    d.paas_ok(&["exec", "ready", "--", "rm", "/tmp/busy"]);
    assert!(eventually(20, || state(&d).0 == "running"));
    assert_eq!(state(&d).1, id, "the same instance");
    assert_eq!(d.get("ready.localhost", "/").status, 200);
    let logs = d.paas_ok(&["logs", "ready", "--recent"]);
    assert!(
        logs.contains("failed its http /ready readiness check"),
        "{logs}"
    );
    assert!(
        logs.contains("passes its http /ready readiness check again"),
        "{logs}"
    );

    let bad = d.paas(&[
        "push",
        "ready",
        "-p",
        path,
        "-b",
        "binary",
        "-c",
        "python3 server.py",
        "--health-check-interval",
        "0",
    ]);
    assert!(String::from_utf8_lossy(&bad.stderr)
        .contains("health check interval of 0 seconds is not allowed"));
    let bad = d.paas(&[
        "push",
        "ready",
        "-p",
        path,
        "-b",
        "binary",
        "-c",
        "python3 server.py",
        "--readiness-health-check-interval",
        "301",
    ]);
    assert!(
        String::from_utf8_lossy(&bad.stderr)
            .contains("readiness check interval of 301 seconds is not allowed"),
        "{bad:?}"
    );
}
