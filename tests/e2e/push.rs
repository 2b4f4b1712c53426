//! Pushing the examples and reaching them through the router.

use std::collections::BTreeSet;

use crate::harness::{repo, Daemon, HttpResponse};

/// Which instance answered: the JSON body's `instance_index` for the Python and Node
/// examples, the `X-Instance-Index` header for the static site.
fn instance_of(resp: &HttpResponse) -> Option<u64> {
    if let Some(h) = resp.header("x-instance-index") {
        return h.parse().ok();
    }
    serde_json::from_str::<serde_json::Value>(&resp.body)
        .ok()?
        .get("instance_index")?
        .as_u64()
}

fn push_reach_both_instances_delete(d: &Daemon, app: &str, example: &str, expect_in_body: &str) {
    let path = repo().join("examples").join(example);
    let out = d.paas_ok(&["push", app, "-p", path.to_str().unwrap(), "-i", "2"]);
    assert!(
        out.contains("-----> Detected"),
        "the staging log is shown:\n{out}"
    );
    let url = format!("http://{app}.localhost:{}", d.router.port());
    assert!(
        out.trim_end().ends_with(&url),
        "push prints the URL last:\n{out}"
    );

    let host = format!("{app}.localhost");
    let mut seen = BTreeSet::new();
    for _ in 0..20 {
        let resp = d.get(&host, "/");
        assert_eq!(resp.status, 200, "{app}: {resp:?}");
        assert!(resp.body.contains(expect_in_body), "{app}: {}", resp.body);
        seen.insert(
            instance_of(&resp).unwrap_or_else(|| panic!("{app}: which instance? {resp:?}")),
        );
        if seen.len() == 2 {
            break;
        }
    }
    assert_eq!(seen, BTreeSet::from([0, 1]), "{app}: both instances answer");

    let recent = d.paas_ok(&["logs", app, "--recent"]);
    assert!(recent.contains("[STG] OUT -----> Detected"), "{recent}");
    assert!(recent.contains("[APP/PROC/WEB/1]"), "{recent}");

    d.paas_ok(&["delete", app]);
    let resp = d.get(&host, "/");
    assert_eq!(resp.status, 404, "{app} after delete: {resp:?}");
    assert!(
        resp.body.contains(&format!("no app is routed at {host}")),
        "{}",
        resp.body
    );
}

#[test]
fn each_example_answers_from_both_instances_and_404s_once_deleted() {
    let d = Daemon::start();
    push_reach_both_instances_delete(&d, "site", "static-site", "Hello from paas");
    push_reach_both_instances_delete(&d, "hello-py", "python-app", "\"language\": \"python\"");
    push_reach_both_instances_delete(&d, "hello-node", "node-app", "\"language\":\"node\"");
    let apps = d.paas_ok(&["apps"]);
    assert!(apps.contains("No apps yet"), "{apps}");
}

#[test]
fn pushing_again_replaces_the_running_version() {
    let d = Daemon::start();
    let app = tempfile::tempdir().unwrap();
    let write = |version: &str| {
        std::fs::write(app.path().join("Procfile"), "web: python3 server.py\n").unwrap();
        std::fs::write(
            app.path().join("server.py"),
            format!(
                "import http.server, os\n\
                 class H(http.server.BaseHTTPRequestHandler):\n    \
                 def do_GET(self):\n        \
                 self.send_response(200); self.end_headers(); self.wfile.write(b'{version}')\n\
                 http.server.HTTPServer(('0.0.0.0', int(os.environ['PORT'])), H).serve_forever()\n"
            ),
        )
        .unwrap();
    };
    write("version one");
    let dir = app.path().to_str().unwrap();
    d.paas_ok(&["push", "replaced", "-p", dir, "-b", "binary"]);
    assert_eq!(d.get("replaced.localhost", "/").body, "version one");
    write("version two");
    d.paas_ok(&["push", "replaced", "-p", dir, "-b", "binary"]);
    for _ in 0..5 {
        assert_eq!(d.get("replaced.localhost", "/").body, "version two");
    }
}

#[test]
fn a_crashing_start_keeps_the_old_release() {
    let d = Daemon::start();
    let path = repo().join("examples/python-app");
    d.paas_ok(&["push", "steady", "-p", path.to_str().unwrap()]);
    let out = d.paas(&[
        "push",
        "steady",
        "-p",
        path.to_str().unwrap(),
        "-c",
        "exit 3",
    ]);
    assert_eq!(
        out.status.code(),
        Some(5),
        "a start failure has its own exit code"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("exited during start (exited with status 3)"),
        "{err}"
    );
    assert!(err.contains("the previous release keeps running"), "{err}");
    assert_eq!(d.get("steady.localhost", "/").status, 200);
}

#[test]
fn a_re_push_of_an_unchanged_app_sends_no_file_content() {
    let d = Daemon::start();
    let app = tempfile::tempdir().unwrap();
    std::fs::write(app.path().join("Staticfile"), "root: public\n").unwrap();
    std::fs::create_dir(app.path().join("public")).unwrap();
    for i in 0..200 {
        std::fs::write(
            app.path().join(format!("public/page{i}.html")),
            format!("page {i}\n"),
        )
        .unwrap();
    }
    std::fs::write(app.path().join("public/index.html"), "home\n").unwrap();
    let dir = app.path().to_str().unwrap();
    let out = d.paas_ok(&["push", "many", "-p", dir]);
    assert!(out.contains("Uploading 202 of 202 files"), "{out}");
    let out = d.paas_ok(&["push", "many", "-p", dir]);
    assert!(out.contains("Uploading 0 of 202 files, 0 B of"), "{out}");
    assert!(
        out.contains("202 files are on the platform already"),
        "{out}"
    );
    assert_eq!(d.get("many.localhost", "/page150.html").body, "page 150\n");
    std::fs::write(app.path().join("public/page7.html"), "changed\n").unwrap();
    let out = d.paas_ok(&["push", "many", "-p", dir]);
    assert!(out.contains("Uploading 1 of 202 files"), "{out}");
    assert_eq!(d.get("many.localhost", "/page7.html").body, "changed\n");
}

#[test]
fn the_router_logs_each_request_as_rtr_and_serves_metrics_and_health() {
    let d = Daemon::start();
    let path = repo().join("examples/python-app");
    d.paas_ok(&["push", "observed", "-p", path.to_str().unwrap()]);
    assert_eq!(d.get("observed.localhost", "/some/path").status, 200);
    let _ = d.get("nowhere.localhost", "/");
    // Access log lines are written off the request path: wait for the line.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let logs = loop {
        let logs = d.paas_ok(&["logs", "observed", "--recent"]);
        if logs.contains("[RTR]") || std::time::Instant::now() > deadline {
            break logs;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let rtr = logs
        .lines()
        .find(|l| l.contains("[RTR]"))
        .unwrap_or_else(|| panic!("{logs}"));
    assert!(
        rtr.contains("observed.localhost - \"GET /some/path HTTP/1.1\" 200"),
        "{rtr}"
    );
    assert!(
        rtr.contains("vcap_request_id:\"") && rtr.contains("app_index:\"0\""),
        "{rtr}"
    );
    let metrics = crate::harness::get(d.admin, "localhost", "/metrics").body;
    assert!(
        metrics.contains("paas_router_responses_total{class=\"2xx\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("paas_router_responses_total{class=\"4xx\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("paas_router_routes 1"), "{metrics}");
    assert_eq!(
        crate::harness::get(d.admin, "localhost", "/health").body,
        "ok\n"
    );
}
