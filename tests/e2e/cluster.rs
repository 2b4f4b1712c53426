//! `scripts/cluster.sh`: the local cluster a person tries, brought up, used and taken
//! down as its own instructions say (with the debug binaries).

use std::process::Command;

use crate::harness::{bin, eventually, repo};

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
