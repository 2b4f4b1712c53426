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

/// Collects what arrives on `listener` until the test ends.
fn collect(listener: std::net::TcpListener) -> std::sync::Arc<std::sync::Mutex<Vec<u8>>> {
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let into = std::sync::Arc::clone(&got);
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let into = std::sync::Arc::clone(&into);
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n @ 1..) = std::io::Read::read(&mut conn, &mut buf) {
                    into.lock().unwrap().extend_from_slice(&buf[..n]);
                }
            });
        }
    });
    got
}

/// The messages of an octet-counted stream (RFC 6587 §3.4.1); `None` if it is not one.
fn frames(mut bytes: &[u8]) -> Option<Vec<String>> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let space = bytes.iter().position(|b| *b == b' ')?;
        let len: usize = std::str::from_utf8(&bytes[..space]).ok()?.parse().ok()?;
        let end = space + 1 + len;
        if end > bytes.len() {
            break; // the rest is still on its way
        }
        out.push(String::from_utf8(bytes[space + 1..end].to_vec()).ok()?);
        bytes = &bytes[end..];
    }
    Some(out)
}

#[test]
fn a_syslog_drain_gets_the_app_s_lines_and_never_reaches_the_host_s_own_network() {
    // The operator allows this one loopback address for the test's drain; 127.0.0.2
    // stands for a service on the host that a tenant's drain URL must not reach.
    let d = Daemon::start_with(&["--drain-allow", "127.0.0.1/32"]);
    let drain = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = drain.local_addr().unwrap().port();
    let drained = collect(drain);
    let inside = std::net::TcpListener::bind("127.0.0.2:0").unwrap();
    let inside_port = inside.local_addr().unwrap().port();
    let reached_inside = collect(inside);

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("server.py"),
        "import http.server, os, sys\n\
         class H(http.server.BaseHTTPRequestHandler):\n    \
         def do_GET(self):\n        \
         print('served ' + self.path, flush=True)\n        \
         self.send_response(200); self.end_headers(); self.wfile.write(b'ok')\n    \
         def log_message(self, *a): pass\n\
         http.server.ThreadingHTTPServer(('0.0.0.0', int(os.environ['PORT'])), H).serve_forever()\n",
    )
    .unwrap();
    d.paas_ok(&[
        "push",
        "drainy",
        "-p",
        dir.path().to_str().unwrap(),
        "-b",
        "binary",
        "-c",
        "python3 server.py",
    ]);
    let url = format!("syslog://127.0.0.1:{port}");
    d.paas_ok(&["create-user-provided-service", "logsink", "-l", &url]);
    let sneaky = format!("syslog://127.0.0.2:{inside_port}");
    d.paas_ok(&["create-user-provided-service", "sneaky", "-l", &sneaky]);
    d.paas_ok(&["bind-service", "drainy", "logsink"]);
    d.paas_ok(&["bind-service", "drainy", "sneaky"]);
    d.paas_ok(&["restart", "drainy"]);
    assert_eq!(d.get("drainy.localhost", "/drained").status, 200);

    let arrived = crate::harness::eventually(20, || {
        let got = drained.lock().unwrap().clone();
        frames(&got).is_some_and(|f| f.iter().any(|m| m.contains("served /drained")))
    });
    let got = drained.lock().unwrap().clone();
    let messages = frames(&got).expect("octet-counted frames");
    assert!(arrived, "{messages:?}");
    let served = messages
        .iter()
        .find(|m| m.contains("served /drained"))
        .unwrap();
    // <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID SD MSG
    let fields: Vec<&str> = served.splitn(8, ' ').collect();
    assert_eq!(fields[0], "<14>1", "user.info for stdout: {served}");
    assert!(
        fields[1].ends_with('Z') && fields[1].contains('T'),
        "{served}"
    );
    assert!(fields[2].ends_with(".drainy"), "SPACE.APP: {served}");
    assert_eq!(fields[3].len(), 36, "the app's GUID: {served}");
    assert_eq!(
        (fields[4], fields[5], fields[6], fields[7]),
        ("[APP/PROC/WEB/0]", "-", "-", "served /drained")
    );

    // The drain to the host's own network is refused, and said so in the app's log.
    let refused = crate::harness::eventually(20, || {
        d.paas_ok(&["logs", "drainy", "--recent"]).lines().any(|l| {
            l.contains("[LGR]")
                && l.contains(&sneaky)
                && l.contains("where the platform sends no logs")
        })
    });
    assert!(refused, "{}", d.paas_ok(&["logs", "drainy", "--recent"]));
    assert!(
        reached_inside.lock().unwrap().is_empty(),
        "nothing reached 127.0.0.2"
    );
    assert!(
        !messages.iter().any(|m| m.contains("[LGR]")),
        "what drains say of themselves is not drained: {messages:?}"
    );
}
