//! User-provided services through the CLI: credentials reach a bound app's instances in
//! Cloud Foundry's `VCAP_SERVICES` shape (and a database's URL in `DATABASE_URL`) at its
//! next restart, and appear nowhere else unless asked for.

use crate::harness::Daemon;

/// An app that answers with its `VCAP_SERVICES` and `DATABASE_URL`.
fn app_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("server.py"),
        "import http.server, json, os\n\
         class H(http.server.BaseHTTPRequestHandler):\n    \
         def do_GET(self):\n        \
         body = json.dumps({'vcap': json.loads(os.environ['VCAP_SERVICES']), 'db': os.environ.get('DATABASE_URL')})\n        \
         self.send_response(200); self.end_headers(); self.wfile.write(body.encode())\n    \
         def log_message(self, *a): pass\n\
         http.server.ThreadingHTTPServer(('0.0.0.0', int(os.environ['PORT'])), H).serve_forever()\n",
    )
    .unwrap();
    dir
}

fn seen(d: &Daemon) -> serde_json::Value {
    serde_json::from_str(&d.get("binder.localhost", "/").body).unwrap()
}

#[test]
fn a_bound_service_reaches_the_app_at_its_next_restart_and_nowhere_else() {
    let d = Daemon::start();
    let dir = app_dir();
    d.paas_ok(&[
        "push",
        "binder",
        "-p",
        dir.path().to_str().unwrap(),
        "-b",
        "binary",
        "-c",
        "python3 server.py",
    ]);
    assert_eq!(seen(&d)["vcap"], serde_json::json!({}));

    let secret = "s3cr3t-pa55";
    let creds =
        format!(r#"{{"uri": "postgres://app:{secret}@db.internal:5432/shop", "username": "app"}}"#);
    d.paas_ok(&[
        "create-user-provided-service",
        "shopdb",
        "-p",
        &creds,
        "-t",
        "postgres,sql",
        "-l",
        "syslog-tls://logs.example:6514",
    ]);
    let dup = d.paas(&["create-user-provided-service", "shopdb", "-p", "{}"]);
    assert!(String::from_utf8_lossy(&dup.stderr).contains("a service named shopdb exists"));
    let bad = d.paas(&["create-user-provided-service", "other", "-p", "[1, 2]"]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("must be a JSON object"));

    let out = d.paas_ok(&["bind-service", "binder", "shopdb"]);
    assert!(out.contains("paas restart binder"), "{out}");
    assert_eq!(
        seen(&d)["vcap"],
        serde_json::json!({}),
        "not before a restart"
    );
    d.paas_ok(&["restart", "binder"]);
    let s = seen(&d);
    let bound = &s["vcap"]["user-provided"][0];
    assert_eq!(bound["label"], "user-provided", "{s}");
    assert_eq!(bound["name"], "shopdb");
    assert_eq!(bound["instance_name"], "shopdb");
    assert_eq!(bound["credentials"]["username"], "app");
    assert_eq!(bound["syslog_drain_url"], "syslog-tls://logs.example:6514");
    assert_eq!(bound["tags"], serde_json::json!(["postgres", "sql"]));
    assert_eq!(bound["volume_mounts"], serde_json::json!([]));
    assert!(bound.get("binding_name").is_some());
    assert_eq!(
        s["db"],
        format!("postgres://app:{secret}@db.internal:5432/shop")
    );

    // The credentials appear nowhere but in the instance, and `env --reveal`.
    let env = d.paas_ok(&["env", "binder"]);
    assert!(
        env.contains("VCAP_SERVICES: [redacted: use --reveal]"),
        "{env}"
    );
    assert!(!env.contains(secret), "{env}");
    assert!(d.paas_ok(&["env", "binder", "--reveal"]).contains(secret));
    for shown in [
        d.paas_ok(&["services"]),
        d.paas_ok(&["services", "--json"]),
        d.paas_ok(&["events", "binder"]),
        d.paas_ok(&["logs", "binder", "--recent"]),
        d.paas_ok(&["app", "binder", "--json"]),
    ] {
        assert!(!shown.contains(secret), "{shown}");
    }
    let listed = d.paas_ok(&["services"]);
    assert!(
        listed.contains("shopdb") && listed.contains("binder"),
        "{listed}"
    );

    // The app's own DATABASE_URL wins; an update shows at the next restart.
    d.paas_ok(&["set-env", "binder", "DATABASE_URL", "sqlite:///own.db"]);
    d.paas_ok(&[
        "update-user-provided-service",
        "shopdb",
        "-p",
        r#"{"uri": "mysql://new@db/shop"}"#,
    ]);
    d.paas_ok(&["restart", "binder"]);
    let s = seen(&d);
    assert_eq!(s["db"], "sqlite:///own.db");
    assert_eq!(
        s["vcap"]["user-provided"][0]["credentials"]["uri"],
        "mysql://new@db/shop"
    );

    let refused = d.paas(&["delete-service", "shopdb", "-f"]);
    assert!(String::from_utf8_lossy(&refused.stderr).contains("is bound to binder"));
    d.paas_ok(&["unbind-service", "binder", "shopdb"]);
    d.paas_ok(&["restart", "binder"]);
    assert_eq!(seen(&d)["vcap"], serde_json::json!({}));
    d.paas_ok(&["delete-service", "shopdb", "-f"]);
    assert!(!d.paas_ok(&["services"]).contains("shopdb"));
}

#[test]
fn a_manifest_binds_its_services_at_the_push() {
    let d = Daemon::start();
    let dir = app_dir();
    d.paas_ok(&[
        "create-user-provided-service",
        "cache",
        "-p",
        r#"{"url": "redis://cache:6379"}"#,
    ]);
    std::fs::write(
        dir.path().join("manifest.yml"),
        "applications:\n- name: binder\n  buildpacks: [binary]\n  command: python3 server.py\n  services:\n  - cache\n",
    )
    .unwrap();
    d.paas_in(dir.path(), &["push"]);
    let s = seen(&d);
    assert_eq!(s["vcap"]["user-provided"][0]["name"], "cache", "{s}");
    assert_eq!(
        s["db"],
        serde_json::Value::Null,
        "redis is not a database URL"
    );
}
