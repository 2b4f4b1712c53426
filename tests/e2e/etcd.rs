//! paasd keeping its records in a real etcd (`--etcd-endpoints`): the app model written
//! once on the state store interface runs the same there as on the embedded SQLite.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use crate::harness::{bin, eventually, repo, Daemon};

/// An etcd cluster of `n` members on loopback ports of their own, each with its data in
/// a temporary folder; killed when dropped (and with this process, through `setpriv
/// --pdeathsig`). Members can be killed and started again on their data.
pub struct Etcd {
    members: Vec<Member>,
    _data: tempfile::TempDir,
    /// Every member's client URL, comma-separated, as `--etcd-endpoints` takes them.
    pub url: String,
}

struct Member {
    name: String,
    client: String,
    peer: String,
    child: Option<Child>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Etcd {
    /// One member.
    pub fn start() -> Etcd {
        Etcd::cluster(1)
    }

    /// `n` members, started together.
    pub fn cluster(n: usize) -> Etcd {
        let data = tempfile::tempdir().unwrap();
        let members: Vec<Member> = (0..n)
            .map(|i| Member {
                name: format!("m{i}"),
                client: format!("http://127.0.0.1:{}", free_port()),
                peer: format!("http://127.0.0.1:{}", free_port()),
                child: None,
            })
            .collect();
        let url = members
            .iter()
            .map(|m| m.client.clone())
            .collect::<Vec<_>>()
            .join(",");
        let mut etcd = Etcd {
            members,
            _data: data,
            url,
        };
        for i in 0..n {
            etcd.start_member(i);
        }
        assert!(
            eventually(60, || etcd.keys("/").is_some()),
            "etcd at {} did not answer within 60 s",
            etcd.url
        );
        etcd
    }

    fn start_member(&mut self, i: usize) {
        let cluster = self
            .members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer))
            .collect::<Vec<_>>()
            .join(",");
        let dir = self._data.path().join(&self.members[i].name);
        let m = &mut self.members[i];
        let child = Command::new("setpriv")
            .args(["--pdeathsig", "KILL", "etcd"])
            .arg("--data-dir")
            .arg(&dir)
            .args(["--name", &m.name])
            .args(["--listen-client-urls", &m.client])
            .args(["--advertise-client-urls", &m.client])
            .args(["--listen-peer-urls", &m.peer])
            .args(["--initial-advertise-peer-urls", &m.peer])
            .args(["--initial-cluster", &cluster])
            .args(["--initial-cluster-token", "paas-e2e"])
            .args(["--logger", "zap", "--log-level", "error"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting etcd: install etcd-server (scripts/install-deps.sh)");
        m.child = Some(child);
    }

    /// Kills member `i` (SIGKILL, as a crash would).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts member `i` again on its data.
    pub fn restart(&mut self, i: usize) {
        self.start_member(i);
    }

    /// The keys under `prefix`, read through a member's JSON gateway (`/v3/kv/range`);
    /// `None` when no member answers.
    pub fn keys(&self, prefix: &str) -> Option<Vec<String>> {
        self.members
            .iter()
            .filter(|m| m.child.is_some())
            .find_map(|m| keys_at(&m.client, prefix))
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}

fn keys_at(url: &str, prefix: &str) -> Option<Vec<String>> {
    keys_from(None, url, prefix)
}

/// The keys under `prefix` of the etcd at `url`, asked from network namespace `ns`.
pub fn keys_in(ns: &str, url: &str, prefix: &str) -> Option<Vec<String>> {
    keys_from(Some(ns), url, prefix)
}

fn keys_from(ns: Option<&str>, url: &str, prefix: &str) -> Option<Vec<String>> {
    let body = serde_json::json!({
        "key": base64(prefix.as_bytes()),
        "range_end": base64(&prefix_end(prefix.as_bytes())),
        "keys_only": true,
    });
    let answer = gateway(ns, url, "range", &body)?;
    let kvs = answer["kvs"].as_array().cloned().unwrap_or_default();
    Some(
        kvs.iter()
            .filter_map(|kv| kv["key"].as_str())
            .map(|k| String::from_utf8_lossy(&unbase64(k)).into_owned())
            .collect(),
    )
}

/// The keys and values under `prefix` of the etcd at `url`, asked from network
/// namespace `ns`.
pub fn values_in(ns: &str, url: &str, prefix: &str) -> Vec<(String, Vec<u8>)> {
    values_from(Some(ns), url, prefix)
}

/// The keys and values under `prefix` of the etcd at `url`.
fn values_at(url: &str, prefix: &str) -> Vec<(String, Vec<u8>)> {
    values_from(None, url, prefix)
}

fn values_from(ns: Option<&str>, url: &str, prefix: &str) -> Vec<(String, Vec<u8>)> {
    let body = serde_json::json!({
        "key": base64(prefix.as_bytes()),
        "range_end": base64(&prefix_end(prefix.as_bytes())),
    });
    let answer = gateway(ns, url, "range", &body).unwrap_or_default();
    answer["kvs"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|kv| {
            let text = |f: &str| unbase64(kv[f].as_str().unwrap_or_default());
            (
                String::from_utf8_lossy(&text("key")).into_owned(),
                text("value"),
            )
        })
        .collect()
}

/// Puts `value` at `key` in the etcd at `url`, from network namespace `ns`.
pub fn put_in(ns: &str, url: &str, key: &str, value: &[u8]) {
    let body = serde_json::json!({ "key": base64(key.as_bytes()), "value": base64(value) });
    assert!(
        gateway(Some(ns), url, "put", &body).is_some(),
        "putting {key}"
    );
}

/// Deletes `key` in the etcd at `url`, from network namespace `ns`.
pub fn delete_in(ns: &str, url: &str, key: &str) {
    let body = serde_json::json!({ "key": base64(key.as_bytes()) });
    assert!(
        gateway(Some(ns), url, "deleterange", &body).is_some(),
        "deleting {key}"
    );
}

/// One call of etcd's JSON gateway (`/v3/kv/CALL`), from network namespace `ns` if
/// given.
fn gateway(
    ns: Option<&str>,
    url: &str,
    call: &str,
    body: &serde_json::Value,
) -> Option<serde_json::Value> {
    let mut curl = match ns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, "curl"]);
            c
        }
        None => Command::new("curl"),
    };
    let out = curl
        .args(["-sS", "--max-time", "5", "-X", "POST", "-d"])
        .arg(body.to_string())
        .arg(format!("{url}/v3/kv/{call}"))
        .output()
        .ok()?;
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    answer.get("header")?;
    Some(answer)
}

/// The first key past every key that starts with `prefix`, as etcd's range_end wants.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn unbase64(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let (mut n, mut bits) = (0u32, 0);
    for c in text.bytes().take_while(|c| *c != b'=') {
        let Some(v) = ALPHABET.iter().position(|a| *a == c) else {
            continue;
        };
        n = n << 6 | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((n >> bits) as u8);
        }
    }
    out
}

#[test]
fn base64_round_trips() {
    for s in ["", "a", "ab", "abc", "/paas/apps/\u{ff}"] {
        assert_eq!(unbase64(&base64(s.as_bytes())), s.as_bytes());
    }
    assert_eq!(base64(b"/paas/"), "L3BhYXMv");
}

#[test]
fn an_app_pushed_to_a_paasd_on_etcd_lives_in_etcd_and_comes_back_after_a_crash() {
    let etcd = Etcd::start();
    let mut d = Daemon::start_with(&["--etcd-endpoints", &etcd.url, "--peer-port", "0"]);
    let path = repo().join("examples/python-app");
    d.paas_ok(&["push", "kept", "-p", path.to_str().unwrap()]);
    d.paas_ok(&["set-env", "kept", "GREETING", "from-etcd"]);
    assert_eq!(d.get("kept.localhost", "/").status, 200);

    let apps = etcd.keys("/paas/apps/").unwrap();
    assert_eq!(apps, ["/paas/apps/kept"], "the app's record is in etcd");
    let routes = etcd.keys("/paas/routes/").unwrap();
    assert_eq!(routes, ["/paas/routes/kept.localhost"]);
    let releases = etcd.keys("/paas/releases/").unwrap();
    assert_eq!(releases.len(), 1, "one release: {releases:?}");
    assert!(
        !etcd.keys("/paas/events/").unwrap().is_empty(),
        "its events too"
    );

    d.crash_and_restart();
    let start = Instant::now();
    assert!(
        eventually(30, || d.get("kept.localhost", "/").status == 200),
        "the app answers again after paasd restarts on the same etcd"
    );
    eprintln!("app answered again {:?} after the restart", start.elapsed());
    let env = d.paas_ok(&["env", "kept"]);
    assert!(env.contains("from-etcd"), "its environment is kept: {env}");
    let apps = d.paas_ok(&["apps"]);
    assert!(apps.contains("kept"), "{apps}");
}

#[test]
fn paasd_says_which_etcd_it_cannot_reach() {
    let data = tempfile::tempdir().unwrap();
    // Nothing listens on port 1 of loopback.
    let out = Command::new(bin("paasd"))
        .arg("--data-dir")
        .arg(data.path())
        .args(["--etcd-endpoints", "http://127.0.0.1:1"])
        .args([
            "--api-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
        ])
        .args([
            "--https-listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .env("PAASD_LOG", "error")
        .stdin(Stdio::null())
        .output()
        .expect("running paasd");
    assert!(
        !out.status.success(),
        "paasd must not start without its etcd"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("connecting to etcd at http://127.0.0.1:1 (--etcd-endpoints)"),
        "{err}"
    );
    // The router it started before it found etcd away is not left behind.
    let left = crate::harness::router_processes(data.path().to_str().unwrap());
    for pid in &left {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(*pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    assert!(
        left.is_empty(),
        "a paas-router outlived a paasd that did not start: {left:?}"
    );
}

#[test]
fn events_follow_hears_what_is_recorded_in_etcd() {
    let etcd = Etcd::start();
    crate::routes::events_follow_streams_each_event_of(&cell_on(&etcd));
}

/// The peer listener (blobs, log lines, exec and usage between hosts) answers only a
/// client that shows the cluster's token, which lives in etcd.
#[test]
fn the_peer_listener_answers_only_the_cluster_s_token() {
    let etcd = Etcd::start();
    let port = free_port().to_string();
    let _d = Daemon::start_with(&[
        "--etcd-endpoints",
        &etcd.url,
        "--advertise-address",
        "127.0.0.1",
        "--peer-port",
        &port,
    ]);
    let status = |auth: Option<&str>| {
        let mut curl = Command::new("curl");
        curl.args([
            "-sk",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "5",
        ]);
        if let Some(a) = auth {
            curl.args(["-H", &format!("Authorization: Bearer {a}")]);
        }
        let out = curl
            .arg(format!("https://127.0.0.1:{port}/usage"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(status(None), "401", "no token");
    assert_eq!(status(Some("0123456789abcdef")), "401", "a wrong token");
    let secret = values_at(&etcd.url, "/paas/cluster-secret");
    let secret: serde_json::Value = serde_json::from_slice(&secret[0].1).unwrap();
    let token = secret["token"].as_str().unwrap();
    assert_eq!(status(Some(token)), "200", "the cluster's token");
}

/// A paasd that keeps its records in `etcd` and publishes its instances on loopback, as
/// a cell on another host would on its advertised address.
fn cell_on(etcd: &Etcd) -> Daemon {
    Daemon::start_with(&[
        "--etcd-endpoints",
        &etcd.url,
        "--advertise-address",
        "127.0.0.1",
        "--peer-port",
        "0",
    ])
}

/// A process killed when dropped, so a failed test leaves none behind.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A `paas-router` that follows `etcd`; returns it with the address it serves on.
fn router_on(etcd: &Etcd) -> (Killed, std::net::SocketAddr) {
    let (router, at, _) = router_with(etcd, &[]);
    (router, at)
}

/// A `paas-router` that follows `etcd`, with `extra` flags; returns it with its ready
/// line's `listen=` address and the whole line.
fn router_with(etcd: &Etcd, extra: &[&str]) -> (Killed, std::net::SocketAddr, String) {
    use std::io::BufRead;
    let mut child = Command::new(bin("paas-router"))
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .args(["--drain-seconds", "0", "--etcd-endpoints", &etcd.url])
        .args(extra)
        .env("PAAS_ROUTER_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("starting paas-router");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("listen="))
        .unwrap_or_else(|| panic!("no listen= in {line:?}"))
        .parse()
        .unwrap();
    (Killed(child), addr, line)
}

#[test]
fn a_router_on_its_own_follows_etcd_to_the_cell_that_runs_each_instance() {
    let etcd = Etcd::start();
    let mut d = cell_on(&etcd);
    let (router, at) = router_on(&etcd);
    let path = repo().join("examples/python-app");
    d.paas_ok(&["push", "edge", "-p", path.to_str().unwrap(), "-i", "2"]);

    // Both instances, through the ports their cell publishes on its address.
    let mut seen = std::collections::BTreeSet::new();
    assert!(
        eventually(20, || {
            let r = crate::harness::get(at, "edge.localhost", "/");
            if r.status == 200 {
                let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
                seen.insert(v["instance_index"].as_u64().unwrap());
            }
            seen.len() == 2
        }),
        "the router on its own reaches both instances: saw {seen:?}"
    );

    let cells: serde_json::Value = serde_json::from_str(&d.paas_ok(&["cells", "--json"])).unwrap();
    let cells = cells.as_array().unwrap();
    assert_eq!(cells.len(), 1, "{cells:?}");
    assert_eq!(cells[0]["address"], "127.0.0.1");
    assert_eq!(cells[0]["instances"], 2);
    let cell = cells[0]["id"].as_str().unwrap().to_string();
    let app: serde_json::Value =
        serde_json::from_str(&d.paas_ok(&["app", "edge", "--json"])).unwrap();
    for i in app["instances"].as_array().unwrap() {
        assert_eq!(i["cell"], cell.as_str(), "each instance names its cell");
    }

    // A route change reaches it through the watch.
    let mapped = Instant::now();
    d.paas_ok(&["map-route", "edge", "localhost", "--hostname", "other"]);
    assert!(eventually(10, || crate::harness::get(
        at,
        "other.localhost",
        "/"
    )
    .status
        == 200));
    eprintln!(
        "a new route was served {:?} after map-route began",
        mapped.elapsed()
    );

    // The cell dies: its records go with its lease, and the router stops sending there.
    let killed = Instant::now();
    d.kill();
    assert!(
        eventually(15, || etcd
            .keys("/paas/cells/")
            .is_some_and(|k| k.is_empty())),
        "the dead cell's record expires"
    );
    assert!(
        eventually(5, || crate::harness::get(at, "edge.localhost", "/").status
            == 503),
        "no instance is routed once their cell is gone"
    );
    eprintln!(
        "the router stopped routing to the dead cell {:?} after the kill",
        killed.elapsed()
    );

    // It comes back: the same cell, its instances routed again.
    d.restart();
    assert!(
        eventually(30, || crate::harness::get(at, "edge.localhost", "/").status
            == 200),
        "the app is routed again once its cell is back"
    );
    assert_eq!(
        etcd.keys("/paas/cells/").unwrap(),
        [format!("/paas/cells/{cell}")]
    );
    drop(router);
}

/// Pushes the Python example as `name` with `instances` and waits until `router`
/// serves it.
fn push_and_route(d: &Daemon, at: std::net::SocketAddr, name: &str, instances: &str) {
    let path = repo().join("examples/python-app");
    d.paas_ok(&["push", name, "-p", path.to_str().unwrap(), "-i", instances]);
    let host = format!("{name}.localhost");
    assert!(
        eventually(20, || crate::harness::get(at, &host, "/").status == 200),
        "the router on its own serves {host}"
    );
}

#[test]
fn losing_one_of_three_etcd_members_stops_nothing() {
    let mut etcd = Etcd::cluster(3);
    let d = cell_on(&etcd);
    let (router, at) = router_on(&etcd);
    push_and_route(&d, at, "quorum", "1");

    etcd.kill(0);
    // Writes, pushes and the router's watch all go on through the other two.
    d.paas_ok(&["map-route", "quorum", "localhost", "--hostname", "still"]);
    assert!(
        eventually(15, || crate::harness::get(at, "still.localhost", "/")
            .status
            == 200),
        "a route mapped after the loss reaches the router"
    );
    push_and_route(&d, at, "after-loss", "1");
    assert_eq!(crate::harness::get(at, "quorum.localhost", "/").status, 200);
    drop(router);
}

#[test]
fn routers_and_instances_ride_out_etcd_being_down_and_converge_when_it_returns() {
    let mut etcd = Etcd::start();
    let d = cell_on(&etcd);
    let (router, at) = router_on(&etcd);
    push_and_route(&d, at, "steady", "2");

    etcd.kill(0);
    // Longer than the cells' lease: nothing expires while nobody can tell.
    let down = Instant::now();
    let mut failed = 0;
    let mut served = 0;
    while down.elapsed() < std::time::Duration::from_secs(6) {
        match crate::harness::get(at, "steady.localhost", "/").status {
            200 => served += 1,
            _ => failed += 1,
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(
        failed, 0,
        "every request served while etcd was down ({served} were)"
    );
    assert_eq!(
        d.get("steady.localhost", "/").status,
        200,
        "paasd's own router too"
    );

    etcd.restart(0);
    // Both sides converge: a change made now reaches the router.
    assert!(
        eventually(30, || d
            .paas(&["map-route", "steady", "localhost", "--hostname", "back"])
            .status
            .success()),
        "the API writes again once etcd is back"
    );
    assert!(
        eventually(15, || crate::harness::get(at, "back.localhost", "/").status
            == 200),
        "the router follows again"
    );
    assert!(
        eventually(15, || crate::harness::get(at, "steady.localhost", "/")
            .status
            == 200),
        "and still routes the app"
    );
    drop(router);
}

#[test]
fn a_router_on_its_own_serves_each_domain_s_certificate_from_etcd() {
    let etcd = Etcd::start();
    let d = cell_on(&etcd);
    let (_router, at, ready) = router_with(&etcd, &["--https-listen", "127.0.0.1:0"]);
    let port = ready
        .split_whitespace()
        .find_map(|w| w.strip_prefix("https="))
        .and_then(|a| a.rsplit(':').next())
        .unwrap()
        .to_string();
    push_and_route(&d, at, "secure", "1");
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = crate::harness::wildcard_cert(dir.path(), "etcd.test");
    d.paas_ok(&[
        "create-domain",
        "etcd.test",
        "--cert",
        cert.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
    ]);
    d.paas_ok(&["map-route", "secure", "etcd.test", "--hostname", "www"]);
    // Only a router that holds the certificate passes curl's check against it.
    let https_get =
        |host: &str, ca: &std::path::Path| crate::harness::https_status(&port, host, ca);
    assert!(
        eventually(15, || https_get("www.etcd.test", &cert) == "200"),
        "the domain's certificate and route over HTTPS: {}",
        https_get("www.etcd.test", &cert)
    );
    // Other names get the platform's own certificate, the one paasd made, from etcd
    // too: the handshake passes curl's check against it (and no route is "localhost").
    let platform_cert = d.dir.path().join("router-cert.pem");
    assert_eq!(https_get("localhost", &platform_cert), "404");
}
