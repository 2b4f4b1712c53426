//! Outbound network per app: off by default, on with `allow-outbound`; the host and the
//! link-local metadata range stay out of reach either way.
//!
//! "The world" is a network namespace this test makes, joined to the host by a veth pair
//! on 198.18.0.0/15 (RFC 2544's benchmarking range), with an HTTP server in it. No
//! traffic leaves the machine.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{repo, Daemon};

/// Worlds made by this test process so far (names and addresses are unique by it).
static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// A namespace with a web server at `server`, reachable from the host; removed on drop.
struct World {
    netns: String,
    server: Child,
    host_server: Child,
    ip: String,
    host_ip: String,
}

impl World {
    fn new() -> World {
        World::on("198.18")
    }

    /// A world whose /30 is `PREFIX.N.0/30` (`PREFIX` is two octets).
    fn on(prefix: &str) -> World {
        // Taken once: tests run in parallel, and two worlds on one network would each
        // get the other's traffic (a load and a later add let two take the same `n`).
        let k = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let n = (std::process::id() * 4 + k) % 200 + 20;
        World::at(
            &format!("{prefix}.{n}.2"),
            &format!("{prefix}.{n}.1"),
            30,
            k,
        )
    }

    /// A world at `ip`, joined to the host at `host_ip` on a `/len` link; `k` is unique
    /// per world within this test process.
    fn at(ip: &str, host_ip: &str, len: u8, k: u32) -> World {
        let pid = std::process::id();
        let netns = format!("paas-test-world-{pid}-{k}");
        let (host_if, ip, host_ip) = (
            format!("pwt{}x{k}", pid % 100_000),
            ip.to_string(),
            host_ip.to_string(),
        );
        let sh = |script: &str| {
            let ok = Command::new("sh")
                .arg("-c")
                .arg(script)
                .status()
                .unwrap()
                .success();
            assert!(ok, "{script}");
        };
        let _ = Command::new("ip")
            .args(["netns", "del", &netns])
            .stderr(Stdio::null())
            .status();
        sh(&format!(
            "ip netns add {netns} && ip link add {host_if} type veth peer name eth0 netns {netns} \
             && ip addr add {host_ip}/{len} dev {host_if} && ip link set {host_if} up \
             && ip -n {netns} addr add {ip}/{len} dev eth0 && ip -n {netns} link set eth0 up \
             && ip -n {netns} link set lo up && ip -n {netns} route add default via {host_ip}"
        ));
        let server = Command::new("ip")
            .args([
                "netns",
                "exec",
                &netns,
                "python3",
                "-m",
                "http.server",
                "8000",
            ])
            .args(["--bind", &ip])
            .current_dir("/tmp")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // A service on the host, listening on every address: instances must not reach it.
        let host_server = Command::new("python3")
            .args(["-m", "http.server", "8001", "--bind", "0.0.0.0"])
            .current_dir("/tmp")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let w = World {
            netns,
            server,
            host_server,
            ip,
            host_ip,
        };
        let end = Instant::now() + Duration::from_secs(20);
        while Instant::now() < end {
            let up = Command::new("curl")
                .args(["-s", "-o", "/dev/null", "--max-time", "1"])
                .arg(format!("http://{}:8000/", w.ip))
                .status()
                .unwrap()
                .success();
            if up {
                return w;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("the world's web server did not come up");
    }
}

impl Drop for World {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.host_server.kill();
        let _ = self.server.wait();
        let _ = self.host_server.wait();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.netns])
            .status();
    }
}

/// Whether instance 0 of `app` can fetch `url` (3 s at most).
fn can_fetch(d: &Daemon, app: &str, url: &str) -> bool {
    let code =
        format!("import urllib.request\nurllib.request.urlopen('{url}', timeout=3).read()\n");
    d.paas(&["exec", app, "--", "python3", "-c", &code])
        .status
        .success()
}

#[test]
fn outbound_access_is_off_until_allowed_and_never_reaches_the_host() {
    let world = World::new();
    let d = Daemon::start();
    let py = repo().join("examples/python-app");
    d.paas_ok(&["push", "caller", "-p", py.to_str().unwrap()]);
    let world_url = format!("http://{}:8000/", world.ip);
    let host_url = format!("http://{}:8001/", world.host_ip);
    let metadata_url = "http://169.254.169.254/latest/meta-data/";

    assert!(
        !can_fetch(&d, "caller", &world_url),
        "outbound is off by default"
    );
    assert!(d
        .paas_ok(&["app", "caller"])
        .contains("outbound:      denied"));

    let out = d.paas_ok(&["allow-outbound", "caller"]);
    assert!(out.contains("may open connections to the world"), "{out}");
    assert!(can_fetch(&d, "caller", &world_url), "outbound allowed");
    assert!(d
        .paas_ok(&["app", "caller"])
        .contains("outbound:      allowed"));
    assert!(
        !can_fetch(&d, "caller", &host_url),
        "the host is never reachable"
    );
    assert!(
        !can_fetch(&d, "caller", metadata_url),
        "nor is link-local metadata"
    );
    // A push keeps the access the app has.
    d.paas_ok(&["push", "caller", "-p", py.to_str().unwrap()]);
    assert!(can_fetch(&d, "caller", &world_url), "kept across a push");

    d.paas_ok(&["deny-outbound", "caller"]);
    assert!(!can_fetch(&d, "caller", &world_url), "outbound taken back");
}

#[test]
fn staging_reaches_the_world_only_for_an_app_allowed_outbound() {
    use std::os::unix::fs::PermissionsExt;
    let world = World::new();
    let d = Daemon::start();
    // A buildpack whose compile downloads from the world, as `pip install` would.
    let bp = tempfile::tempdir().unwrap();
    std::fs::create_dir(bp.path().join("bin")).unwrap();
    let scripts = [
        ("detect", "#!/bin/sh\necho fetcher\n".to_string()),
        (
            "compile",
            format!(
                "#!/bin/sh\npython3 -c \"import urllib.request; urllib.request.urlopen('http://{}:8000/', timeout=3)\" \\\n  && echo downloaded || {{ echo 'cannot download'; exit 1; }}\n",
                world.ip
            ),
        ),
        (
            "release",
            "#!/bin/sh\necho '---'\necho 'default_process_types:'\necho '  web: python3 -m http.server $PORT'\n".to_string(),
        ),
    ];
    for (name, text) in scripts {
        let path = bp.path().join("bin").join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    d.paas_ok(&["create-buildpack", "fetcher", bp.path().to_str().unwrap()]);
    let app = tempfile::tempdir().unwrap();
    std::fs::write(app.path().join("index.html"), "hi").unwrap();
    let push = || {
        d.paas(&[
            "push",
            "fetch-app",
            "-p",
            app.path().to_str().unwrap(),
            "-b",
            "fetcher",
        ])
    };

    let out = push();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(4), "staging must fail: {text}");
    assert!(text.contains("cannot download"), "{text}");
    // The failure names what to do about it.
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("paas allow-outbound fetch-app"), "{err}");

    d.paas_ok(&["allow-outbound", "fetch-app"]);
    let out = push();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("downloaded"), "{text}");
}

#[test]
fn outbound_never_reaches_private_networks_unless_the_operator_lists_them() {
    // Before, only link-local and loopback were refused: an app allowed outbound
    // reached every private network the host could.
    let public = World::new();
    let private = World::on("172.30");
    let cgnat = World::on("100.64");
    let others = [World::on("10.77"), World::on("192.168")];
    let py = repo().join("examples/python-app");
    let url = |w: &World| format!("http://{}:8000/", w.ip);

    let d = Daemon::start();
    d.paas_ok(&["push", "caller", "-p", py.to_str().unwrap()]);
    d.paas_ok(&["allow-outbound", "caller"]);
    assert!(
        can_fetch(&d, "caller", &url(&public)),
        "the world is reachable"
    );
    assert!(
        !can_fetch(&d, "caller", &url(&private)),
        "a private network (RFC 1918) is not"
    );
    assert!(
        !can_fetch(&d, "caller", &url(&cgnat)),
        "nor carrier-grade NAT space (RFC 6598)"
    );
    for w in &others {
        assert!(!can_fetch(&d, "caller", &url(w)), "nor {}", w.ip);
    }

    // The operator may open a private network on purpose; only that one.
    let listed = format!("{}/30", private.ip);
    let d2 = Daemon::start_with(&["--outbound-allow", &listed]);
    d2.paas_ok(&["push", "caller", "-p", py.to_str().unwrap()]);
    d2.paas_ok(&["allow-outbound", "caller"]);
    assert!(
        can_fetch(&d2, "caller", &url(&private)),
        "{listed} is listed"
    );
    assert!(
        !can_fetch(&d2, "caller", &url(&cgnat)),
        "the others stay closed"
    );
    assert!(
        !can_fetch(&d, "caller", &url(&private)),
        "another daemon's list opens nothing for this one"
    );
}

#[test]
fn outbound_access_does_not_make_the_host_a_router_for_its_other_networks() {
    // Before: allow-outbound turned IP forwarding on and nothing else, so anyone on one
    // of the host's networks could route through it to another.
    let (a, b) = (World::new(), World::new());
    let d = Daemon::start();
    let py = repo().join("examples/python-app");
    d.paas_ok(&["push", "caller", "-p", py.to_str().unwrap()]);
    d.paas_ok(&["allow-outbound", "caller"]);
    let url = |w: &World| format!("http://{}:8000/", w.ip);
    assert!(
        can_fetch(&d, "caller", &url(&b)),
        "forwarding is on for instances"
    );
    let through_host = Command::new("ip")
        .args(["netns", "exec", &a.netns, "curl", "-s", "-o", "/dev/null"])
        .args(["--max-time", "3", &url(&b)])
        .status()
        .unwrap()
        .success();
    assert!(
        !through_host,
        "one of the host's networks reached another through it"
    );
}
