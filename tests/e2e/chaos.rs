//! paasd killed with SIGKILL at random moments while it works: nothing it acknowledged
//! is lost, every app comes back to what it was asked to be, and nothing is left
//! behind once the apps are deleted.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use crate::harness::{assert_containers_gone, container_processes, Daemon};

/// Rounds of one operation and one kill each.
const ROUNDS: u32 = 32;

/// What the test asked for and the CLI acknowledged.
#[derive(Debug, Default, Clone)]
struct Wanted {
    instances: u32,
    env: BTreeMap<String, String>,
    /// Extra hosts mapped under `localhost`.
    hosts: BTreeSet<String>,
    /// Revisions the app had at least, once acknowledged.
    revisions: usize,
    /// Log lines seen in its logs before a kill.
    logged: Vec<String>,
}

#[derive(Debug, Clone)]
enum Op {
    Push(String),
    Scale(String, u32),
    Restart(String),
    MapRoute(String, String),
    SetEnv(String, String, String),
    Delete(String),
}

/// A small, seeded random sequence: a failure can be replayed with `CHAOS_SEED`.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

fn app_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("server.py"),
        r#"import http.server, os
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = os.environ.get("CHAOS_COLOUR", "none").encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, fmt, *args):
        print(fmt % args, flush=True)
http.server.ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), H).serve_forever()
"#,
    )
    .unwrap();
    dir
}

fn args(op: &Op, dir: &str, wanted: &BTreeMap<String, Wanted>) -> Vec<String> {
    let s = |v: &[&str]| v.iter().map(|a| a.to_string()).collect::<Vec<_>>();
    match op {
        Op::Push(app) => {
            let i = wanted.get(app).map_or(1, |w| w.instances).to_string();
            s(&[
                "push",
                app,
                "-p",
                dir,
                "-b",
                "binary",
                "-c",
                "python3 server.py",
                "-i",
                &i,
                "-m",
                "64M",
                "-k",
                "128M",
            ])
        }
        Op::Scale(app, n) => s(&["scale", app, "-i", &n.to_string()]),
        Op::Restart(app) => s(&["restart", app]),
        Op::MapRoute(app, host) => s(&["map-route", app, "localhost", "--hostname", host]),
        Op::SetEnv(app, k, v) => s(&["set-env", app, k, v]),
        Op::Delete(app) => s(&["delete", app, "-f", "-r"]),
    }
}

/// The model after `op` was acknowledged.
fn apply(op: &Op, wanted: &mut BTreeMap<String, Wanted>) {
    match op {
        Op::Push(app) => {
            let w = wanted.entry(app.clone()).or_insert_with(|| Wanted {
                instances: 1,
                ..Wanted::default()
            });
            w.revisions += 1;
        }
        Op::Scale(app, n) => {
            if let Some(w) = wanted.get_mut(app) {
                w.instances = *n;
            }
        }
        Op::Restart(_) => {}
        Op::MapRoute(app, host) => {
            if let Some(w) = wanted.get_mut(app) {
                w.hosts.insert(host.clone());
            }
        }
        Op::SetEnv(app, k, v) => {
            if let Some(w) = wanted.get_mut(app) {
                w.env.insert(k.clone(), v.clone());
            }
        }
        Op::Delete(app) => {
            wanted.remove(app);
        }
    }
}

fn pick(rng: &mut Rng, round: u32, wanted: &BTreeMap<String, Wanted>) -> Op {
    let apps: Vec<&String> = wanted.keys().collect();
    if apps.is_empty() || (apps.len() < 3 && rng.below(3) == 0) {
        return Op::Push(format!("chaos-{round}"));
    }
    let app = apps[rng.below(apps.len() as u64) as usize].clone();
    match rng.below(7) {
        0 => Op::Push(app),
        1 => Op::Scale(app, 1 + rng.below(3) as u32),
        2 => Op::Restart(app),
        3 => Op::MapRoute(app.clone(), format!("{app}-r{round}")),
        4 | 5 => Op::SetEnv(app, "CHAOS_COLOUR".into(), format!("c{round}")),
        _ => Op::Delete(app),
    }
}

fn json(d: &Daemon, args: &[&str]) -> serde_json::Value {
    serde_json::from_str(&d.paas_ok(args)).unwrap()
}

/// Every acknowledged thing is there, and every app converges to what it was asked.
fn check(d: &Daemon, wanted: &BTreeMap<String, Wanted>, round: u32) {
    let apps = json(d, &["apps", "--json"]);
    let names: BTreeSet<String> = apps
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap().to_string())
        .collect();
    let expected: BTreeSet<String> = wanted.keys().cloned().collect();
    assert_eq!(
        names, expected,
        "round {round}: the apps acknowledged are there"
    );
    for (app, w) in wanted {
        let env = json(d, &["env", app, "--json", "--reveal"]);
        for (k, v) in &w.env {
            assert_eq!(env[k], v.as_str(), "round {round}: {app}'s {k} is kept");
        }
        let revisions = json(d, &["revisions", app, "--json"]);
        let n = revisions.as_array().map_or(0, Vec::len);
        assert!(
            n >= w.revisions,
            "round {round}: {app} has {n} revisions, {} were acknowledged",
            w.revisions
        );
        let deadline = Instant::now() + Duration::from_secs(60);
        let (converged, last) = loop {
            let last = json(d, &["app", app, "--json"]);
            let running = last["instances"]
                .as_array()
                .map_or(0, |i| i.iter().filter(|i| i["state"] == "running").count());
            let routes: BTreeSet<String> = last["routes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r.as_str().unwrap().to_string())
                .collect();
            let hosts_there = w
                .hosts
                .iter()
                .all(|h| routes.contains(&format!("{h}.localhost")));
            if running == w.instances as usize
                && last["settings"]["instances"] == w.instances
                && hosts_there
                && d.get(&format!("{app}.localhost"), "/").status == 200
            {
                break (true, last);
            }
            if Instant::now() > deadline {
                break (false, last);
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        assert!(
            converged,
            "round {round}: {app} did not come back to {w:?}: {last}"
        );
        let logs = d.paas_ok(&["logs", app, "--recent"]);
        for line in &w.logged {
            assert!(
                logs.contains(line.as_str()),
                "round {round}: {app}'s log line {line} seen before a kill is lost"
            );
        }
    }
}

/// Writes a line to one app's logs through the router, and waits until paasd shows it.
fn log_a_line(d: &Daemon, app: &str, wanted: &mut BTreeMap<String, Wanted>, round: u32) {
    let path = format!("/logged-in-round-{round}");
    if d.get(&format!("{app}.localhost"), &path).status != 200 {
        return;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if d.paas_ok(&["logs", app, "--recent"]).contains(&path) {
            if let Some(w) = wanted.get_mut(app) {
                w.logged.push(path);
            }
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn paasd_killed_at_random_moments_loses_nothing_acknowledged_and_leaves_nothing_behind() {
    let seed = std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
                | 1
        });
    eprintln!("chaos: CHAOS_SEED={seed}");
    let mut rng = Rng(seed);
    let mut d = Daemon::start();
    let dir = app_dir();
    let dir_arg = dir.path().to_str().unwrap().to_string();
    let data = d.dir.path().to_str().unwrap().to_string();
    let mut wanted: BTreeMap<String, Wanted> = BTreeMap::new();
    let mut containers_seen: BTreeSet<String> = BTreeSet::new();
    let mut netns_seen: BTreeSet<String> = BTreeSet::new();
    let mut cut_off = 0;
    for round in 0..ROUNDS {
        let op = pick(&mut rng, round, &wanted);
        if let Some(app) = wanted.keys().next().cloned() {
            log_a_line(&d, &app, &mut wanted, round);
        }
        let cli_args = args(&op, &dir_arg, &wanted);
        let cli_args: Vec<&str> = cli_args.iter().map(String::as_str).collect();
        let child = d.paas_spawn(&cli_args);
        // Anywhere from before the request arrives to after the operation ended: a
        // push stages (a second or two), the others take tens of milliseconds.
        let within = if matches!(op, Op::Push(_)) { 2500 } else { 250 };
        std::thread::sleep(Duration::from_millis(rng.below(within)));
        record_containers(&d, &mut containers_seen, &mut netns_seen);
        d.kill();
        let out = child.wait_with_output().unwrap();
        d.restart();
        // Cut off: the operation goes again until it is acknowledged (each one is
        // idempotent), so the model knows what was asked.
        let done = out.status.success() || retry(&d, &op, &cli_args);
        assert!(done, "round {round}: {op:?} never succeeded");
        cut_off += u32::from(!out.status.success());
        apply(&op, &mut wanted);
        eprintln!(
            "chaos round {round}: {op:?} ({})",
            if out.status.success() {
                "done before the kill"
            } else {
                "cut off, done again"
            }
        );
        check(&d, &wanted, round);
    }
    eprintln!("chaos: {cut_off} of {ROUNDS} operations were cut off by the kill");
    for app in wanted.keys() {
        d.paas_ok(&["delete", app, "-f", "-r"]);
    }
    record_containers(&d, &mut containers_seen, &mut netns_seen);
    nothing_left(&d, &data, &containers_seen, &netns_seen);
}

/// The operation again, after paasd restarted: `true` once acknowledged.
fn retry(d: &Daemon, op: &Op, args: &[&str]) -> bool {
    for _ in 0..5 {
        let out = d.paas(args);
        if out.status.success() {
            return true;
        }
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        // A delete that went through before the kill finds nothing now.
        if matches!(op, Op::Delete(_)) && err.contains("does not exist") {
            return true;
        }
        eprintln!("chaos: {op:?} again failed: {err}");
        std::thread::sleep(Duration::from_millis(500));
    }
    false
}

/// Notes the containers and network namespaces that exist now.
fn record_containers(d: &Daemon, ids: &mut BTreeSet<String>, netns: &mut BTreeSet<String>) {
    let dir = d.dir.path().join("containers");
    for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        if let Ok(raw) = std::fs::read(e.path().join("state.json")) {
            if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&raw) {
                if let Some(ns) = v["address"][1].as_str() {
                    netns.insert(ns.to_string());
                }
            }
        }
        ids.insert(name);
    }
}

/// No process, cgroup, mount, loop device, network namespace, veth or nftables element
/// of any container the run made is left.
fn nothing_left(d: &Daemon, data: &str, ids: &BTreeSet<String>, netns: &BTreeSet<String>) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline && !container_processes(data).is_empty() {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        container_processes(data).is_empty(),
        "no container process is left: {:?}",
        container_processes(data)
    );
    let folders: Vec<_> = std::fs::read_dir(d.dir.path().join("containers"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| e.file_name())
        .collect();
    assert!(
        folders.is_empty(),
        "no container folder is left: {folders:?}"
    );
    assert_containers_gone(ids, netns);
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(&format!("{data}/containers/")),
        "a container mount is left: {}",
        mounts
            .lines()
            .filter(|l| l.contains(data))
            .collect::<Vec<_>>()
            .join("\n")
    );
    for e in std::fs::read_dir("/sys/block").unwrap().flatten() {
        let backing = e.path().join("loop/backing_file");
        if let Ok(file) = std::fs::read_to_string(&backing) {
            assert!(
                !file.contains(data),
                "loop device {:?} is left: {file}",
                e.file_name()
            );
        }
    }
    let nft = std::process::Command::new("nft")
        .args(["list", "set", "inet", "paas", "outbound"])
        .output()
        .unwrap();
    let pool = d.instance_prefix();
    assert!(
        !String::from_utf8_lossy(&nft.stdout).contains(&pool),
        "an outbound element of this paasd's pool {pool} is left"
    );
}
