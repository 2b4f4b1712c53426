//! `scripts/cluster.sh`: the local cluster a person tries, brought up, used and taken
//! down as its own instructions say (with the debug binaries).

use std::process::Command;

use crate::harness::{bin, container_processes, eventually, repo};

fn script(args: &[&str], data: &std::path::Path) -> std::process::Output {
    let bins = bin("paasd").parent().unwrap().to_path_buf();
    Command::new(repo().join("scripts/cluster.sh"))
        .args(args)
        .env("PAAS_BIN_DIR", bins)
        .env("PAAS_CLUSTER_DIR", data)
        .output()
        .expect("running scripts/cluster.sh")
}

fn in_ns(ns: &str, program: &std::path::Path, args: &[&str], data: &std::path::Path) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", ns])
        .arg(program)
        .args(args)
        .env("PAAS_HOME", data.join("home"))
        .env("PAAS_API", "https://10.98.0.21:9443")
        .env(
            "PAAS_TOKEN",
            std::fs::read_to_string(data.join("paasd/admin-token"))
                .unwrap_or_default()
                .trim(),
        )
        .env("PAAS_CA_CERT", data.join("paasd/api-cert.pem"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?} in {ns}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn status_through(router: &str, host: &str) -> String {
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            "paas-c-lan",
            "curl",
            "-s",
            "-o",
            "/dev/null",
        ])
        .args(["-w", "%{http_code}", "--max-time", "5", "-H"])
        .arg(format!("Host: {host}"))
        .arg(format!("http://{router}:8080/"))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_local_cluster_places_an_app_on_three_cells_serves_it_through_both_routers_and_goes_away_whole(
) {
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
    let path = repo().join("examples/python-app");
    in_ns(
        "paas-c-ctl",
        &bin("paas"),
        &["push", "hello", "-p", path.to_str().unwrap(), "-i", "3"],
        &data,
    );
    // One instance on each cell: the controller's host and the two cells on their own,
    // which fetched the droplet from the controller's host.
    let app: serde_json::Value = serde_json::from_str(&in_ns(
        "paas-c-ctl",
        &bin("paas"),
        &["app", "hello", "--json"],
        &data,
    ))
    .unwrap();
    let mut on: Vec<String> = app["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["cell"].as_str().unwrap().to_string())
        .collect();
    on.sort();
    on.dedup();
    assert_eq!(
        on.len(),
        3,
        "three instances on three distinct cells: {app}"
    );
    let cells = in_ns("paas-c-ctl", &bin("paas"), &["cells", "--json"], &data);
    for address in ["10.98.0.21", "10.98.0.41", "10.98.0.42"] {
        assert!(cells.contains(address), "a cell at {address}: {cells}");
    }
    // Every instance answers through a router, wherever it runs.
    let mut answered = std::collections::BTreeSet::new();
    for _ in 0..30 {
        let body = body_through("10.98.0.31", "hello.localhost");
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&body) {
            answered.insert(v["instance_index"].as_u64().unwrap_or(99));
        }
    }
    assert_eq!(
        answered.into_iter().collect::<Vec<_>>(),
        vec![0, 1, 2],
        "the router reaches the instance on each cell"
    );
    whatever_the_cell_logs_and_exec_reach_it(&data);
    // Every blob (the package too, which no cell fetches) is kept on two hosts at least.
    assert!(
        eventually(20, || {
            let keys = crate::etcd::keys_in(
                "paas-c-lan",
                "http://10.98.0.11:2379",
                "/paas/blob-holders/",
            )
            .unwrap_or_default();
            let mut per_blob = std::collections::BTreeMap::<String, u32>::new();
            for k in &keys {
                let sha = k.split('/').nth(3).unwrap_or_default().to_string();
                *per_blob.entry(sha).or_default() += 1;
            }
            per_blob.len() >= 2 && per_blob.values().all(|n| *n >= 2)
        }),
        "{:?}",
        crate::etcd::keys_in(
            "paas-c-lan",
            "http://10.98.0.11:2379",
            "/paas/blob-holders/"
        )
    );
    lose_a_cell_then_cut_one_off(&data);
    for router in ["10.98.0.31", "10.98.0.32"] {
        assert!(
            eventually(20, || status_through(router, "hello.localhost") == "200"),
            "the router at {router} serves the app"
        );
    }
    drop(guard);
    let namespaces = String::from_utf8_lossy(
        &Command::new("ip")
            .args(["netns", "list"])
            .output()
            .unwrap()
            .stdout,
    )
    .into_owned();
    assert!(!namespaces.contains("paas-c-"), "{namespaces}");
    assert!(!data.exists(), "its data is removed");
}

/// Log lines of every instance reach `paas logs` through the controller, and `paas exec`
/// runs in an instance on a cell of another host.
fn whatever_the_cell_logs_and_exec_reach_it(data: &std::path::Path) {
    let logs = in_ns(
        "paas-c-ctl",
        &bin("paas"),
        &["logs", "hello", "--recent"],
        data,
    );
    for i in 0..3 {
        assert!(
            logs.contains(&format!("[APP/WEB/{i}] OUT listening on port")),
            "instance {i}'s start is in the logs: {logs}"
        );
    }
    let remote = cell_at(data, "10.98.0.41");
    let (index, ..) = instances(data)
        .into_iter()
        .find(|(_, _, cell)| *cell == remote)
        .expect("an instance on cell 1");
    let out = in_ns(
        "paas-c-ctl",
        &bin("paas"),
        &[
            "exec",
            "hello",
            "-i",
            &index.to_string(),
            "--",
            "sh",
            "-c",
            "echo from $CF_INSTANCE_INDEX",
        ],
        data,
    );
    assert!(out.contains(&format!("from {index}")), "{out}");
}

/// Each instance of app hello: index, state, cell.
fn instances(data: &std::path::Path) -> Vec<(u64, String, String)> {
    let text = in_ns(
        "paas-c-ctl",
        &bin("paas"),
        &["app", "hello", "--json"],
        data,
    );
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

/// The cells that are up: id by address, and how many instances each reports.
fn cells(data: &std::path::Path) -> Vec<(String, String, u64)> {
    let text = in_ns("paas-c-ctl", &bin("paas"), &["cells", "--json"], data);
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

fn cell_at(data: &std::path::Path, address: &str) -> String {
    cells(data)
        .into_iter()
        .find(|(a, ..)| a == address)
        .unwrap_or_else(|| panic!("no cell at {address}"))
        .1
}

/// Three instances of hello run, none on `not_on`, and a router reaches all three.
fn all_three_run_elsewhere(data: &std::path::Path, not_on: &[&str]) -> bool {
    let list = instances(data);
    let placed_well = list.len() == 3
        && list
            .iter()
            .all(|(_, state, cell)| state == "running" && !not_on.contains(&cell.as_str()));
    if !placed_well {
        return false;
    }
    let mut answered = std::collections::BTreeSet::new();
    for _ in 0..20 {
        let body = body_through("10.98.0.32", "hello.localhost");
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&body) {
            answered.insert(v["instance_index"].as_u64().unwrap_or(99));
        }
    }
    answered.into_iter().collect::<Vec<_>>() == vec![0, 1, 2]
}

/// A cell's paasd is SIGKILLed: its instance runs again on the others. Another cell is
/// cut off the network: its instance runs again elsewhere, and when the cell is back it
/// stops the one it still ran and publishes nothing of it.
fn lose_a_cell_then_cut_one_off(data: &std::path::Path) {
    let cell1 = cell_at(data, "10.98.0.41");
    let cell2 = cell_at(data, "10.98.0.42");
    let pid = std::fs::read_to_string(data.join("pids/cell1")).unwrap();
    Command::new("kill")
        .args(["-KILL", pid.trim()])
        .status()
        .unwrap();
    assert!(
        eventually(30, || all_three_run_elsewhere(data, &[&cell1])),
        "the killed cell's instance runs again on another cell: {:?}",
        instances(data)
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
    let moved = eventually(30, || all_three_run_elsewhere(data, &[&cell1, &cell2]));
    link("up");
    assert!(
        moved,
        "the cut-off cell's instance runs again on the cell that is left: {:?}",
        instances(data)
    );
    // Back on the network, cell2 runs nothing of hello any more, and says so.
    assert!(
        eventually(30, || cells(data)
            .iter()
            .any(|(_, id, n)| *id == cell2 && *n == 0)),
        "the cell that was cut off stops the instance that now runs elsewhere: {:?}",
        cells(data)
    );
    assert!(
        all_three_run_elsewhere(data, &[&cell1, &cell2]),
        "{:?}",
        instances(data)
    );

    // The killed cell, started again, runs nothing of hello: what it ran was placed
    // elsewhere, and the container its killed paasd left is cleaned up.
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
        eventually(20, || cells(data)
            .iter()
            .any(|(_, id, n)| *id == cell1 && *n == 0)),
        "{:?}",
        cells(data)
    );
    assert!(container_processes(cell1_dir).is_empty());
}

fn body_through(router: &str, host: &str) -> String {
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            "paas-c-lan",
            "curl",
            "-s",
            "--max-time",
            "5",
            "-H",
        ])
        .arg(format!("Host: {host}"))
        .arg(format!("http://{router}:8080/"))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
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
