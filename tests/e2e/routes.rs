//! Routes and domains through the CLI: default, path and wildcard routes, mapping and
//! unmapping, domains, and push's --no-route, --random-route and --no-start.

use crate::harness::{repo, Daemon};

fn body_of(d: &Daemon, host: &str, path: &str) -> (u16, String) {
    let r = d.get(host, path);
    (r.status, r.body)
}

#[test]
fn path_and_wildcard_routes_send_requests_to_the_app_they_name() {
    let d = Daemon::start();
    let site = repo().join("examples/static-site");
    let py = repo().join("examples/python-app");
    d.paas_ok(&["push", "site", "-p", site.to_str().unwrap()]);
    let out = d.paas_ok(&["push", "api", "-p", py.to_str().unwrap(), "--no-route"]);
    assert!(out.contains("it has no route"), "{out}");
    assert_eq!(d.get("api.localhost", "/").status, 404, "--no-route");

    // A path route under another app's host: the longest prefix wins.
    let out = d.paas_ok(&[
        "map-route",
        "api",
        "localhost",
        "--hostname",
        "site",
        "--path",
        "/api",
    ]);
    assert!(
        out.contains("Mapped route site.localhost/api to app api"),
        "{out}"
    );
    let (status, body) = body_of(&d, "site.localhost", "/api/users?id=1");
    assert_eq!(status, 200);
    assert!(
        body.contains("\"app\": \"api\"") && body.contains("/api/users?id=1"),
        "{body}"
    );
    // `/apis` is not under `/api`: the site answers it (with its own 404 page).
    let r = d.get("SITE.localhost.", "/apis");
    assert_eq!(r.status, 404);
    assert!(r.header("x-paas-router-error").is_none(), "{r:?}");
    assert!(!r.body.contains("\"language\""), "{r:?}");

    // The same route again is not an error; a route another app holds is.
    let again = d.paas_ok(&[
        "map-route",
        "api",
        "localhost",
        "-n",
        "site",
        "--path",
        "api",
    ]);
    assert!(again.contains("already"), "{again}");
    let balanced = d.paas_ok(&[
        "map-route",
        "api",
        "localhost",
        "-n",
        "site",
        "--path",
        "/api",
        "--balance",
        "least-connections",
    ]);
    assert!(
        balanced.contains("balanced least-connections"),
        "{balanced}"
    );
    let (_, json) = d.api_call("GET", "/v1/routes", None);
    assert!(
        json.contains(r#""path":"/api","app":"api","balance":"least-connections""#),
        "{json}"
    );
    assert_eq!(d.get("site.localhost", "/api/x").status, 200);
    let limited = d.paas_ok(&[
        "map-route",
        "api",
        "localhost",
        "-n",
        "site",
        "--path",
        "/api",
        "--max-body",
        "1K",
    ]);
    assert!(limited.contains("bodies up to 1024 bytes"), "{limited}");
    let post = |bytes: usize| {
        let out = std::process::Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "-H",
                "Host: site.localhost",
            ])
            .args(["--data-binary", &"x".repeat(bytes)])
            .arg(format!("http://{}/api/upload", d.router))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(post(2000), "413");
    assert_eq!(
        post(1000),
        "501",
        "the python app has no POST handler: it got the body"
    );
    let out = d.paas(&["map-route", "api", "localhost", "--hostname", "site"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is mapped to app site"), "{err}");

    // A domain must exist before routes are made under it.
    let out = d.paas(&["map-route", "api", "example.test", "--hostname", "*"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("create-domain"),
        "{err}"
    );
    d.paas_ok(&["create-domain", "example.test"]);
    let domains = d.paas_ok(&["domains"]);
    assert!(
        domains.contains("localhost") && domains.contains("example.test"),
        "{domains}"
    );
    d.paas_ok(&["map-route", "api", "example.test", "--hostname", "*"]);
    let (status, body) = body_of(&d, "anything.example.test", "/");
    assert_eq!(status, 200);
    assert!(body.contains("\"app\": \"api\""), "{body}");
    assert_eq!(
        d.get("example.test", "/").status,
        404,
        "a wildcard is not the domain"
    );

    let routes = d.paas_ok(&["routes"]);
    for want in [
        "*.example.test",
        "site.localhost   /api",
        "site.localhost   /  ",
    ] {
        assert!(routes.contains(want), "{want:?} in\n{routes}");
    }
    let app = d.paas_ok(&["app", "api"]);
    assert!(app.contains("*.example.test, site.localhost/api"), "{app}");

    // A domain with routes cannot go; unmapped routes are kept until deleted.
    let out = d.paas(&["delete-domain", "example.test"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("has routes"));
    d.paas_ok(&["unmap-route", "api", "example.test", "--hostname", "*"]);
    assert_eq!(d.get("anything.example.test", "/").status, 404);
    let (_, json) = d.api_call("GET", "/v1/routes", None);
    let routes: Vec<paas_api::RouteEntry> = serde_json::from_str(&json).unwrap();
    assert!(
        routes
            .iter()
            .any(|r| r.host == "*.example.test" && r.app.is_none()),
        "{json}"
    );
    d.paas_ok(&["delete-route", "example.test", "--hostname", "*"]);
    d.paas_ok(&["delete-domain", "example.test"]);

    // Deleting an app without -r keeps its routes; with -r they go.
    d.paas_ok(&["delete", "api", "-f"]);
    assert!(d.paas_ok(&["routes"]).contains("site.localhost   /api   -"));
    d.paas_ok(&["delete", "site", "-r", "-f"]);
    let left = d.paas_ok(&["routes"]);
    assert!(!left.contains("site.localhost   /  "), "{left}");
}

#[test]
fn push_can_leave_an_app_stopped_or_give_it_a_random_route() {
    let d = Daemon::start();
    let site = repo().join("examples/static-site");
    let out = d.paas_ok(&["push", "idle", "-p", site.to_str().unwrap(), "--no-start"]);
    assert!(out.contains("staged and stopped"), "{out}");
    assert_eq!(d.get("idle.localhost", "/").status, 503);
    assert!(d.paas_ok(&["app", "idle"]).contains("stopped"));
    d.paas_ok(&["start", "idle"]);
    assert_eq!(d.get("idle.localhost", "/").status, 200);

    let out = d.paas_ok(&[
        "push",
        "lucky",
        "-p",
        site.to_str().unwrap(),
        "--random-route",
        "--strategy",
        "rolling",
    ]);
    let host = out
        .split_whitespace()
        .find_map(|w| w.strip_prefix("http://"))
        .and_then(|u| u.split(':').next())
        .unwrap_or_else(|| panic!("no URL in {out}"))
        .to_string();
    assert!(
        host.starts_with("lucky-") && host.ends_with(".localhost"),
        "{host}"
    );
    assert_eq!(d.get(&host, "/").status, 200);
    assert_eq!(d.get("lucky.localhost", "/").status, 404);
    // A manifest route under no known domain is refused before anything is made.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("manifest.yml"),
        format!(
            "applications:\n- name: ghost\n  path: {}\n  routes:\n  - route: x.nowhere.test\n",
            site.display()
        ),
    )
    .unwrap();
    let out = d.paas_in(dir.path(), &["push"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("x.nowhere.test is not under"), "{err}");
    assert!(
        !d.paas(&["app", "ghost"]).status.success(),
        "ghost was created"
    );

    // A second push keeps the route it has.
    let again = d.paas_ok(&[
        "push",
        "lucky",
        "-p",
        site.to_str().unwrap(),
        "--random-route",
    ]);
    assert!(again.contains(&host), "{again}");
    // --no-route on an app with routes unmaps them (they stay reserved).
    let bare = d.paas_ok(&["push", "lucky", "-p", site.to_str().unwrap(), "--no-route"]);
    assert!(bare.contains(&format!("Unmapped route {host}")), "{bare}");
    assert_eq!(d.get(&host, "/").status, 404);
    assert!(
        d.paas_ok(&["routes"]).contains(&host),
        "the route is kept, unmapped"
    );
}

#[test]
fn https_serves_the_certificate_of_each_domain_added_with_one() {
    let d = Daemon::start();
    let site = repo().join("examples/static-site");
    d.paas_ok(&["push", "site", "-p", site.to_str().unwrap()]);
    let dir = tempfile::tempdir().unwrap();
    let write_pair = |stem: &str, names: &[&str]| {
        let ck = rcgen::generate_simple_self_signed(
            names.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
        )
        .unwrap();
        let (cert, key) = (
            dir.path().join(format!("{stem}-cert.pem")),
            dir.path().join(format!("{stem}-key.pem")),
        );
        std::fs::write(&cert, ck.cert.pem()).unwrap();
        std::fs::write(&key, ck.key_pair.serialize_pem()).unwrap();
        (cert, key)
    };
    let (cert, key) = write_pair("shop", &["shop.test", "*.shop.test"]);
    let (other_cert, other_key) = write_pair("other", &["other.test"]);

    let out = d.paas(&[
        "create-domain",
        "bad.test",
        "--cert",
        cert.to_str().unwrap(),
        "--key",
        other_key.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("does not belong to the certificate"), "{err}");
    assert!(!d.paas_ok(&["domains"]).contains("bad.test"));

    let out = d.paas_ok(&[
        "create-domain",
        "shop.test",
        "--cert",
        cert.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
    ]);
    assert!(out.contains("with its certificate"), "{out}");
    d.paas_ok(&["map-route", "site", "shop.test", "--hostname", "www"]);
    let port = d.https.port().to_string();
    let https_status =
        |host: &str, ca: &std::path::Path| crate::harness::https_status(&port, host, ca);
    assert_eq!(https_status("www.shop.test", &cert), "200");
    // Another domain's certificate is not served for it: the client refuses ("000": no
    // answer past the handshake).
    assert_eq!(https_status("www.shop.test", &other_cert), "000");
    // Names under no domain with a certificate get paasd's own, made at first start.
    let own = d.dir.path().join("router-cert.pem");
    assert_eq!(https_status("localhost", &own), "404");
}

#[test]
fn events_follow_streams_each_event_as_it_is_recorded() {
    events_follow_streams_each_event_of(&Daemon::start());
}

/// `paas events --follow` on `d`: the recorded events, then each new one.
pub fn events_follow_streams_each_event_of(d: &Daemon) {
    use std::io::BufRead;
    let settings = d.dir.path().join("settings.json");
    std::fs::write(&settings, r#"{"instances":1,"memory":64}"#).unwrap();
    assert_eq!(
        d.api_call("PUT", "/v1/apps/watched", Some(&settings)).0,
        201
    );
    let mut child = d.paas_spawn(&["events", "watched", "--follow", "--json"]);
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    // The platform's own events; the record of each API request that changed the app
    // (kind `request`, written once it was answered) comes in between.
    let next = || loop {
        let line = rx
            .recv_timeout(std::time::Duration::from_secs(20))
            .expect("no event within 20 s");
        let event = serde_json::from_str::<serde_json::Value>(&line).unwrap();
        if event["kind"] != "request" {
            return event;
        }
    };
    // The recorded event first (the default route of the new app), then live ones.
    let first = next();
    assert_eq!(first["kind"], "route-mapped", "{first}");
    d.paas_ok(&["map-route", "watched", "localhost", "--hostname", "live"]);
    let live = next();
    assert_eq!(
        (live["kind"].as_str(), live["description"].as_str()),
        (Some("route-mapped"), Some("live.localhost"))
    );
    d.paas_ok(&["unmap-route", "watched", "localhost", "--hostname", "live"]);
    assert_eq!(next()["kind"], "route-unmapped");
    let _ = child.kill();
    let _ = child.wait();
}

/// A `paas-router` following `d`, on ephemeral ports; returns it with its HTTP and HTTPS
/// addresses.
fn edge_router(d: &Daemon) -> (std::process::Child, String, String) {
    use std::io::BufRead;
    let mut child = std::process::Command::new(crate::harness::bin("paas-router"))
        .args(["--listen", "127.0.0.1:0", "--https-listen", "127.0.0.1:0"])
        .args(["--admin-listen", "127.0.0.1:0", "--drain-seconds", "0"])
        .args(["--api", &d.api, "--token", &d.token()])
        .arg("--ca-cert")
        .arg(d.cert())
        .env("PAAS_ROUTER_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let field = |k: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(k))
            .unwrap_or_else(|| panic!("no {k} in {line:?}"))
            .to_string()
    };
    (child, field("listen="), field("https="))
}

#[test]
fn an_edge_router_serves_the_daemon_s_routes_and_certificates() {
    let d = Daemon::start();
    let site = repo().join("examples/static-site");
    d.paas_ok(&["push", "site", "-p", site.to_str().unwrap()]);
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = crate::harness::wildcard_cert(dir.path(), "edge.test");
    d.paas_ok(&[
        "create-domain",
        "edge.test",
        "--cert",
        cert.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
    ]);
    d.paas_ok(&["map-route", "site", "edge.test", "--hostname", "www"]);

    let (mut router, http, https) = edge_router(&d);
    let port = https.rsplit(':').next().unwrap().to_string();
    let https_get =
        |host: &str, ca: &std::path::Path| crate::harness::https_status(&port, host, ca);
    // It polls the daemon every second: give it a few.
    let end = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let mut answer = String::new();
    while std::time::Instant::now() < end {
        answer = https_get("www.edge.test", &cert);
        if answer == "200" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert_eq!(
        answer, "200",
        "the domain's certificate and route over HTTPS"
    );
    let http_addr: std::net::SocketAddr = http.parse().unwrap();
    assert_eq!(
        crate::harness::get(http_addr, "site.localhost", "/").status,
        200
    );
    let default = https_get("localhost", &d.dir.path().join("router-cert.pem"));
    assert_eq!(default, "404", "the daemon's default certificate");
    let _ = router.kill();
    let _ = router.wait();
}

#[test]
fn a_store_that_cannot_be_read_leaves_the_route_table_as_it_was() {
    // Before: a failed read of the routes published an empty table, and every app
    // answered 404 until the store came back.
    let d = Daemon::start();
    let site = crate::harness::repo().join("examples/static-site");
    d.paas_ok(&["push", "steady", "-p", site.to_str().unwrap()]);
    d.paas_ok(&["push", "crasher", "-p", site.to_str().unwrap()]);
    let map = d.paas_ok(&["exec", "crasher", "--", "cat", "/proc/self/uid_map"]);
    let base: u64 = map.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert_eq!(d.get("steady.localhost", "/").status, 200);
    let before = crate::harness::container_processes(d.dir.path().to_str().unwrap());

    // The database becomes unreadable (its pages zeroed, the file left open).
    for f in ["paas.db", "paas.db-wal", "paas.db-shm"] {
        let p = d.dir.path().join(f);
        if let Ok(len) = std::fs::metadata(&p).map(|m| m.len()) {
            std::fs::write(&p, vec![0u8; len as usize]).unwrap();
        }
    }
    // A read of the routes fails now, and leaves the table alone.
    let (status, answer) = d.api_call("GET", "/v1/routes", None);
    assert_eq!(status, 500, "the routes cannot be read: {answer}");
    assert_eq!(d.get("steady.localhost", "/").status, 200);
    // The crasher's process dies; its instance is started again, and each change of
    // its state publishes a new table, from the routes as last read.
    let victims: Vec<i32> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/status"))
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find_map(|l| l.strip_prefix("Uid:"))
                        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
                })
                == Some(base + 2000)
        })
        .collect();
    assert!(!victims.is_empty(), "the crasher's processes");
    for pid in victims {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let now = crate::harness::container_processes(d.dir.path().to_str().unwrap());
        if now.iter().any(|p| !before.contains(p)) {
            break; // a new container: the crash and the start were both seen
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the instance was not started again"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(
        d.get("steady.localhost", "/").status,
        200,
        "the other app is still routed"
    );
}
