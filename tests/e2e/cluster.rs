//! `scripts/cluster.sh`: the local cluster a person tries (hosts as network namespaces:
//! a three-member etcd, two controllers (the first with a cell of its own), two cells on
//! their own, two routers), brought up, used, broken and taken down as its own instructions
//! say, with the debug binaries. One test, as every scenario needs the same namespaces.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use crate::harness::{bin, container_processes, eventually, repo};

/// Instances of app hello in every scenario: one per cell.
const N: u64 = 3;

fn script(args: &[&str], data: &Path) -> std::process::Output {
    let bins = bin("paasd").parent().unwrap().to_path_buf();
    Command::new(repo().join("scripts/cluster.sh"))
        .args(args)
        .env("PAAS_BIN_DIR", bins)
        .env("PAAS_CLUSTER_DIR", data)
        .output()
        .expect("running scripts/cluster.sh")
}

/// The controller the CLI talks to.
#[derive(Clone, Copy)]
#[repr(u8)]
enum Ctl {
    One,
    Two,
}

/// `paas ARGS` against controller `ctl`, from its host, with the cluster's one token and
/// the one CA certificate that every controller's API certificate is issued by.
fn paas(ctl: Ctl, args: &[&str], data: &Path) -> String {
    let out = paas_command(ctl, args, data).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?} on controller {}: {}",
        ctl as u8 + 1,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn paas_command(ctl: Ctl, args: &[&str], data: &Path) -> Command {
    let (ns, api, folder) = match ctl {
        Ctl::One => ("paas-c-ctl", "https://10.98.0.21:9443", "paasd"),
        Ctl::Two => ("paas-c-ctl2", "https://10.98.0.22:9443", "paasd2"),
    };
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns])
        .arg(bin("paas"))
        .args(args)
        .env("PAAS_HOME", data.join(format!("home-{folder}")))
        .env("PAAS_API", api)
        .env(
            "PAAS_TOKEN",
            std::fs::read_to_string(data.join("paasd/admin-token"))
                .unwrap_or_default()
                .trim(),
        )
        // The first controller's: the cluster's API CA, which issued both certificates.
        .env("PAAS_CA_CERT", data.join("paasd/api-cert.pem"));
    c
}

/// GET / of hello through `router`, from the LAN: status and body.
fn through(router: &str) -> (String, String) {
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            "paas-c-lan",
            "curl",
            "-s",
            "--max-time",
            "5",
        ])
        .args(["-w", "\n%{http_code}", "-H", "Host: hello.localhost"])
        .arg(format!("http://{router}:8080/"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", ""));
    (status.to_string(), body.to_string())
}

/// The instance indexes that answer through `router` in `tries` requests.
fn answering(router: &str, tries: usize) -> BTreeSet<u64> {
    (0..tries)
        .filter_map(|_| {
            let (_, body) = through(router);
            let v: serde_json::Value = serde_json::from_str(&body).ok()?;
            v["instance_index"].as_u64()
        })
        .collect()
}

/// Each instance of app hello: index, state, cell.
fn instances(ctl: Ctl, data: &Path) -> Vec<(u64, String, String)> {
    let text = paas(ctl, &["app", "hello", "--json"], data);
    let app: serde_json::Value = serde_json::from_str(&text).unwrap();
    app["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["index"].as_u64().unwrap(),
                i["state"].as_str().unwrap().to_string(),
                i["cell"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The cells that are up: address, id, and how many instances each reports.
fn cells(ctl: Ctl, data: &Path) -> Vec<(String, String, u64)> {
    let text = paas(ctl, &["cells", "--json"], data);
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let list = v.as_array().or_else(|| v["resources"].as_array()).unwrap();
    list.iter()
        .map(|c| {
            (
                c["address"].as_str().unwrap().to_string(),
                c["id"].as_str().unwrap().to_string(),
                c["instances"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn cell_at(ctl: Ctl, data: &Path, address: &str) -> String {
    cells(ctl, data)
        .into_iter()
        .find(|(a, ..)| a == address)
        .unwrap_or_else(|| panic!("no cell at {address}"))
        .1
}

/// Every instance of hello runs, none on a cell of `not_on`, and the second router
/// reaches each of them.
fn all_run_elsewhere(ctl: Ctl, data: &Path, not_on: &[&str]) -> bool {
    let list = instances(ctl, data);
    let placed_well = list.len() == N as usize
        && list
            .iter()
            .all(|(_, state, cell)| state == "running" && !not_on.contains(&cell.as_str()));
    placed_well && answering("10.98.0.32", 30) == (0..N).collect()
}

#[test]
fn the_local_cluster_places_spreads_recovers_and_goes_away_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("cluster");
    let up = script(&["up"], &data);
    let guard = Down(data.clone());
    assert!(
        up.status.success(),
        "cluster.sh up: {}{}",
        String::from_utf8_lossy(&up.stdout),
        String::from_utf8_lossy(&up.stderr)
    );
    let data = data.as_path();
    let path = repo().join("examples/python-app");
    let path = path.to_str().unwrap();
    paas(Ctl::One, &["push", "hello", "-p", path, "-i", "3"], data);

    // One instance on each cell: the first controller's host and the two cells on their
    // own, which fetched the droplet from a host that keeps it. The second controller
    // has no cell role: nothing is placed on it.
    let on: BTreeSet<String> = instances(Ctl::One, data)
        .into_iter()
        .map(|(.., cell)| cell)
        .collect();
    assert_eq!(
        on.len(),
        3,
        "three instances on three distinct cells: {on:?}"
    );
    let listed = cells(Ctl::One, data);
    assert_eq!(listed.len(), 3, "{listed:?}");
    for address in ["10.98.0.21", "10.98.0.41", "10.98.0.42"] {
        assert!(
            listed.iter().any(|(a, ..)| a == address),
            "a cell at {address}: {listed:?}"
        );
    }
    // Every instance answers through each router, wherever it runs.
    for router in ["10.98.0.31", "10.98.0.32"] {
        assert_eq!(answering(router, 30), (0..N).collect(), "through {router}");
    }
    // The second controller sees what the first placed.
    let seen: BTreeSet<String> = instances(Ctl::Two, data)
        .into_iter()
        .map(|(.., cell)| cell)
        .collect();
    assert_eq!(seen, on, "both controllers see the same placements");

    logs_and_exec_reach_every_cell(data);
    tasks_run_on_cells_through_a_controller_without_one(data);
    a_canary_paused_by_one_controller_is_finished_through_the_other(data);
    a_buildpack_added_on_one_controller_stages_on_the_other(data);
    // Every blob (the package too, which no cell fetches) is kept on two hosts at least.
    let holders = || {
        crate::etcd::keys_in(
            "paas-c-lan",
            "http://10.98.0.11:2379",
            "/paas/blob-holders/",
        )
        .unwrap_or_default()
    };
    assert!(
        eventually(20, || {
            let mut per_blob = std::collections::BTreeMap::<String, u32>::new();
            for k in holders() {
                let sha = k.split('/').nth(3).unwrap_or_default().to_string();
                *per_blob.entry(sha).or_default() += 1;
            }
            per_blob.len() >= 2 && per_blob.values().all(|n| *n >= 2)
        }),
        "{:?}",
        holders()
    );

    the_leader_converges_placements_to_what_apps_want(data);
    lose_a_cell_then_cut_one_off(data);
    // Followed through the second controller (no cell: every line comes from a cell's
    // host), from before the first controller's cell is lost.
    let followed = data.join("followed.log");
    let mut follow = paas_command(Ctl::Two, &["logs", "hello"], data)
        .stdout(std::fs::File::create(&followed).unwrap())
        .spawn()
        .unwrap();
    let cell1 = cell_at(Ctl::Two, data, "10.98.0.41");
    assert!(
        !instances(Ctl::Two, data).iter().any(|(.., c)| *c == cell1),
        "cell 1 runs nothing of hello yet"
    );
    // The recent lines come first, from every host: wait until they are all printed.
    let printed = || std::fs::read_to_string(&followed).unwrap_or_default().len();
    assert!(
        eventually(20, || printed() > 0),
        "logs --follow printed nothing"
    );
    let mut seen = printed();
    while {
        std::thread::sleep(std::time::Duration::from_secs(2));
        let now = printed();
        std::mem::replace(&mut seen, now) != now
    } {}
    lose_the_first_controller_and_push_again_under_load(data, &followed, &cell1);
    let _ = follow.kill();
    let _ = follow.wait();

    drop(guard);
    let namespaces = crate::harness::netns_list();
    assert!(!namespaces.contains("paas-c-"), "{namespaces}");
    assert!(!data.exists(), "its data is removed");
}

/// Log lines of every instance reach `paas logs` through a controller, and `paas exec`
/// runs in an instance on a cell of another host.
fn logs_and_exec_reach_every_cell(data: &Path) {
    let logs = paas(Ctl::One, &["logs", "hello", "--recent"], data);
    for i in 0..N {
        assert!(
            logs.contains(&format!("[APP/PROC/WEB/{i}] OUT listening on port")),
            "instance {i}'s start is in the logs: {logs}"
        );
    }
    // Each instance's use, as the cell that runs it measures it.
    let app: serde_json::Value =
        serde_json::from_str(&paas(Ctl::One, &["app", "hello", "--json"], data)).unwrap();
    for i in app["instances"].as_array().unwrap() {
        assert!(i["memory_bytes"].as_u64().unwrap() > 0, "{i}");
    }
    let own = cell_at(Ctl::One, data, "10.98.0.21");
    let (index, ..) = instances(Ctl::One, data)
        .into_iter()
        .find(|(_, _, cell)| *cell != own)
        .expect("an instance on another host");
    let command = ["sh", "-c", "echo from $CF_INSTANCE_INDEX"];
    let index_text = index.to_string();
    let mut args = vec!["exec", "hello", "-i", &index_text, "--"];
    args.extend(command);
    let out = paas(Ctl::One, &args, data);
    assert!(out.contains(&format!("from {index}")), "{out}");
}

/// The second controller has no cell: its tasks run on a cell of another host, their
/// lines reach `paas logs`, `paas run` streams and exits as the task does, and the
/// other controller terminates a task it did not start.
fn tasks_run_on_cells_through_a_controller_without_one(data: &Path) {
    let tasks = |ctl| -> Vec<serde_json::Value> {
        serde_json::from_str(&paas(ctl, &["tasks", "hello", "--json"], data)).unwrap()
    };
    let named = |ctl, name: &str| tasks(ctl).into_iter().find(|t| t["name"] == name);
    paas(
        Ctl::Two,
        &[
            "run-task",
            "hello",
            "echo task-on-a-cell",
            "--name",
            "remote",
        ],
        data,
    );
    assert!(
        eventually(30, || named(Ctl::Two, "remote")
            .is_some_and(|t| t["state"] == "succeeded")),
        "{:?}",
        named(Ctl::Two, "remote")
    );
    let ids: Vec<String> = cells(Ctl::Two, data)
        .into_iter()
        .map(|(_, id, _)| id)
        .collect();
    let ran_on = named(Ctl::One, "remote").unwrap()["cell"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        ids.contains(&ran_on),
        "ran on a cell of the cluster: {ran_on} of {ids:?}"
    );
    assert!(
        eventually(10, || paas(Ctl::Two, &["logs", "hello", "--recent"], data)
            .contains("[APP/TASK/remote] OUT task-on-a-cell")),
        "the task's line, kept by its cell's host"
    );

    let out = paas_command(
        Ctl::Two,
        &["run", "hello", "--", "echo attached-out; exit 3"],
        data,
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "attached-out\n");

    paas(
        Ctl::Two,
        &["run-task", "hello", "sleep 600", "--name", "sleeper"],
        data,
    );
    let sequence = named(Ctl::One, "sleeper").unwrap()["sequence"].to_string();
    paas(Ctl::One, &["terminate-task", "hello", &sequence], data);
    assert!(
        eventually(20, || named(Ctl::Two, "sleeper")
            .is_some_and(
                |t| t["state"] == "failed" && t["failure"] == "terminated"
            )),
        "{:?}",
        named(Ctl::Two, "sleeper")
    );

    // The host of the task's cell records its end: it is known although the
    // controller that started it was killed meanwhile (and came back).
    paas(
        Ctl::Two,
        &[
            "run-task",
            "hello",
            "sleep 4; echo outlived",
            "--name",
            "outliver",
        ],
        data,
    );
    kill(data, "paasd2");
    let out = script(&["start-controller2"], data);
    assert!(out.status.success(), "{out:?}");
    assert!(
        eventually(30, || named(Ctl::One, "outliver")
            .is_some_and(|t| t["state"] == "succeeded")),
        "{:?}",
        named(Ctl::One, "outliver")
    );
}

/// A canary deployment paused through the first controller (which holds it: its canary
/// and the app's lock) is refused changes and finished through the second.
fn a_canary_paused_by_one_controller_is_finished_through_the_other(data: &Path) {
    let revision = |ctl| -> u64 {
        let v: serde_json::Value =
            serde_json::from_str(&paas(ctl, &["revisions", "hello", "--json"], data)).unwrap();
        let list = v
            .as_array()
            .or_else(|| v["resources"].as_array())
            .unwrap()
            .clone();
        list.iter()
            .find(|r| r["current"] == true)
            .and_then(|r| r["version"].as_u64())
            .unwrap()
    };
    let before = revision(Ctl::One);
    let path = repo().join("examples/python-app");
    let out = paas(
        Ctl::One,
        &[
            "push",
            "hello",
            "-p",
            path.to_str().unwrap(),
            "--strategy",
            "canary",
        ],
        data,
    );
    assert!(out.contains("paas continue-deployment hello"), "{out}");
    assert_eq!(
        instances(Ctl::Two, data).len() as u64,
        N + 1,
        "the canary beside the old ones"
    );
    let busy = paas_command(Ctl::Two, &["restart", "hello"], data)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&busy.stderr).contains("deployment of app hello is paused"),
        "refused at once on the other controller: {busy:?}"
    );
    let out = paas(Ctl::Two, &["continue-deployment", "hello"], data);
    assert!(out.contains("is running"), "{out}");
    assert!(revision(Ctl::Two) > before, "the new revision is current");
    assert!(
        eventually(20, || instances(Ctl::Two, data).len() as u64 == N),
        "{:?}",
        instances(Ctl::Two, data)
    );
    let none = paas_command(Ctl::Two, &["cancel-deployment", "hello"], data)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&none.stderr).contains("has no paused deployment"),
        "{none:?}"
    );
}

/// Placements no app wants (here one of a droplet hello never had, written into etcd by
/// hand, as a controller that died mid-deployment leaves them) are removed, and a
/// placement that goes missing is made again, by the leading controller.
fn the_leader_converges_placements_to_what_apps_want(data: &Path) {
    const ETCD: &str = "http://10.98.0.11:2379";
    let placed = crate::etcd::values_in("paas-c-lan", ETCD, "/paas/assigned/");
    let hello: Vec<_> = placed
        .iter()
        .filter(|(_, v)| {
            serde_json::from_slice::<serde_json::Value>(v).is_ok_and(|a| a["app"] == "hello")
        })
        .collect();
    assert_eq!(hello.len(), N as usize, "{placed:?}");
    let (key, value) = hello[0];
    let mut stray: serde_json::Value = serde_json::from_slice(value).unwrap();
    stray["droplet"] = serde_json::Value::String("0".repeat(64));
    stray["index"] = serde_json::Value::from(9);
    let cell_prefix = key.rsplit_once('/').unwrap().0;
    let stray_key = format!("{cell_prefix}/stray-by-hand");
    crate::etcd::put_in("paas-c-lan", ETCD, &stray_key, stray.to_string().as_bytes());
    crate::etcd::delete_in("paas-c-lan", ETCD, key);
    assert!(
        eventually(30, || {
            let keys =
                crate::etcd::keys_in("paas-c-lan", ETCD, "/paas/assigned/").unwrap_or_default();
            !keys.contains(&stray_key) && !keys.contains(key)
        }),
        "the stray placement is removed"
    );
    assert!(
        eventually(30, || all_run_elsewhere(Ctl::One, data, &[])),
        "the missing instance is placed again: {:?}",
        instances(Ctl::One, data)
    );
}

/// A custom buildpack added through the first controller is listed by the second, which
/// has a cell's host (it runs no cell itself) fetch its bits and stage with it.
fn a_buildpack_added_on_one_controller_stages_on_the_other(data: &Path) {
    let bp = repo().join("examples/custom-buildpack");
    let app = repo().join("examples/banner-app");
    paas(
        Ctl::One,
        &[
            "create-buildpack",
            "banner",
            bp.to_str().unwrap(),
            "--position",
            "1",
        ],
        data,
    );
    let list = paas(Ctl::Two, &["buildpacks"], data);
    assert!(list.contains("banner"), "{list}");
    let out = paas(
        Ctl::Two,
        &["push", "banner-demo", "-p", app.to_str().unwrap()],
        data,
    );
    assert!(out.contains("-----> Detected banner"), "{out}");
    // The second controller has no cell: a cell's host staged it, and keeps its cache.
    assert!(out.contains("staging on cell"), "{out}");
    assert!(!data.join("paasd2/caches/banner-demo").exists());
    assert!(
        ["paasd", "cell1", "cell2"]
            .iter()
            .any(|h| data.join(h).join("caches/banner-demo").exists()),
        "a cell's host keeps the build cache"
    );
    // Scaled out through the controller without a cell: the instance it has keeps
    // running, and the new ones go to the cells that run none of the app.
    let of_banner = || -> Vec<(String, String)> {
        let text = paas(Ctl::Two, &["app", "banner-demo", "--json"], data);
        let app: serde_json::Value = serde_json::from_str(&text).unwrap();
        let mut list: Vec<(String, String)> = app["instances"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                (
                    i["id"].as_str().unwrap().into(),
                    i["cell"].as_str().unwrap().into(),
                )
            })
            .collect();
        list.sort();
        list
    };
    let before = of_banner();
    assert_eq!(before.len(), 1, "{before:?}");
    paas(Ctl::Two, &["scale", "banner-demo", "-i", "3"], data);
    let after = of_banner();
    assert!(after.contains(&before[0]), "{after:?} keeps {before:?}");
    let cells: BTreeSet<&String> = after.iter().map(|(_, c)| c).collect();
    assert_eq!(cells.len(), 3, "one instance on each cell: {after:?}");
    paas(Ctl::Two, &["delete", "banner-demo", "-f"], data);
}

/// A cell's paasd is SIGKILLed: its instance runs again on the others. Another cell is
/// cut off the network: its instance runs again elsewhere, and when the cell is back it
/// stops the one it still ran and publishes nothing of it. The killed cell, started
/// again, runs nothing of hello and cleans up what its killed paasd left.
fn lose_a_cell_then_cut_one_off(data: &Path) {
    let cell1 = cell_at(Ctl::One, data, "10.98.0.41");
    let cell2 = cell_at(Ctl::One, data, "10.98.0.42");
    kill(data, "cell1");
    assert!(
        eventually(30, || all_run_elsewhere(Ctl::One, data, &[&cell1])),
        "the killed cell's instance runs again on another cell: {:?}",
        instances(Ctl::One, data)
    );

    // Cut cell2 off (its link to the bridge down) for longer than its lease.
    let link = |up: &str| {
        let ok = Command::new("ip")
            .args(["-n", "paas-c-lan", "link", "set", "c7-lan", up])
            .status()
            .unwrap()
            .success();
        assert!(ok, "setting cell2's link {up}");
    };
    link("down");
    let moved = eventually(30, || all_run_elsewhere(Ctl::One, data, &[&cell1, &cell2]));
    link("up");
    assert!(
        moved,
        "the cut-off cell's instance runs again on a cell that is left: {:?}",
        instances(Ctl::One, data)
    );
    assert!(
        eventually(30, || cells(Ctl::One, data)
            .iter()
            .any(|(_, id, n)| *id == cell2 && *n == 0)),
        "the cell that was cut off stops the instance that now runs elsewhere: {:?}",
        cells(Ctl::One, data)
    );
    assert!(
        all_run_elsewhere(Ctl::One, data, &[&cell1, &cell2]),
        "{:?}",
        instances(Ctl::One, data)
    );

    let cell1_dir = data.join("cell1");
    let cell1_dir = cell1_dir.to_str().unwrap();
    assert!(
        !container_processes(cell1_dir).is_empty(),
        "SIGKILL left cell1's container"
    );
    let out = script(&["start-cell", "1"], data);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        eventually(20, || cells(Ctl::One, data)
            .iter()
            .any(|(_, id, n)| *id == cell1 && *n == 0)),
        "{:?}",
        cells(Ctl::One, data)
    );
    assert!(container_processes(cell1_dir).is_empty());
}

/// The first controller (the leader: it started first) is SIGKILLed with its cell: the
/// second takes over, places its instances again (`logs --follow` on it, `followed`,
/// gets the new ones' lines, also from cell 1, which ran none when it began), and a push through it, made while
/// both routers are under load and one etcd member is down, fails no request. Then a
/// router is lost, and the other serves every instance.
fn lose_the_first_controller_and_push_again_under_load(data: &Path, followed: &Path, cell1: &str) {
    let first = cell_at(Ctl::Two, data, "10.98.0.21");
    // What the follow printed before: the recent lines, then what came since.
    let before = std::fs::read_to_string(followed).unwrap_or_default().len();
    kill(data, "paasd");
    assert!(
        eventually(30, || all_run_elsewhere(Ctl::Two, data, &[&first])),
        "the second controller leads and places the first one's instances again: {:?}",
        instances(Ctl::Two, data)
    );
    // An instance placed again on cell 1, which ran none of hello when `logs --follow`
    // began, is in the stream: the cells followed are looked for again. (Only the
    // instances placed again have started since, one per index.)
    let on_cell1: Vec<u64> = instances(Ctl::Two, data)
        .into_iter()
        .filter(|(.., c)| c == cell1)
        .map(|(i, ..)| i)
        .collect();
    assert!(!on_cell1.is_empty(), "{:?}", instances(Ctl::Two, data));
    assert!(
        eventually(20, || {
            let text = std::fs::read_to_string(followed).unwrap_or_default();
            let new = text.get(before..).unwrap_or_default();
            on_cell1
                .iter()
                .any(|i| new.contains(&format!("[APP/PROC/WEB/{i}] OUT listening on port")))
        }),
        "instances {on_cell1:?} on cell 1: {}",
        std::fs::read_to_string(followed).unwrap_or_default()
    );

    kill(data, "etcd3");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load: Vec<_> = ["10.98.0.31", "10.98.0.32"]
        .into_iter()
        .map(|router| {
            let stop = std::sync::Arc::clone(&stop);
            std::thread::spawn(move || {
                let (mut sent, mut failed) = (0u32, Vec::new());
                // Bounded: the push takes seconds; this stops after 5 minutes anyway.
                let end = std::time::Instant::now() + std::time::Duration::from_secs(300);
                while !stop.load(std::sync::atomic::Ordering::Relaxed)
                    && std::time::Instant::now() < end
                {
                    let (status, body) = through(router);
                    sent += 1;
                    if status != "200" {
                        failed.push(format!("{status} {body}"));
                    }
                }
                (router, sent, failed)
            })
        })
        .collect();
    let path = repo().join("examples/python-app");
    paas(
        Ctl::Two,
        &["push", "hello", "-p", path.to_str().unwrap(), "-i", "3"],
        data,
    );
    std::thread::sleep(std::time::Duration::from_secs(3));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in load {
        let (router, sent, failed) = t.join().unwrap();
        assert!(sent > 10, "{router} was asked {sent} times");
        assert!(
            failed.is_empty(),
            "a re-push fails no request through {router}: {} of {sent} failed: {failed:?}",
            failed.len()
        );
    }
    assert!(
        eventually(30, || all_run_elsewhere(Ctl::Two, data, &[&first])),
        "{:?}",
        instances(Ctl::Two, data)
    );
    let events = paas(Ctl::Two, &["events", "hello"], data);
    assert!(
        events.contains("reschedule"),
        "the leader recorded where lost instances went: {events}"
    );
    kill(data, "router1");
    assert!(
        all_run_elsewhere(Ctl::Two, data, &[&first]),
        "the other router serves every instance"
    );
}

/// SIGKILLs the process cluster.sh started as `name`.
fn kill(data: &Path, name: &str) {
    let pid = std::fs::read_to_string(data.join("pids").join(name)).unwrap();
    Command::new("kill")
        .args(["-KILL", pid.trim()])
        .status()
        .unwrap();
}

/// Takes the cluster down even when the test fails half-way.
struct Down(std::path::PathBuf);

impl Drop for Down {
    fn drop(&mut self) {
        let out = script(&["down"], &self.0);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
