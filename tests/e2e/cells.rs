//! The cell of a single host (no etcd): it announces itself and its instances in the
//! embedded state store, as cells of a cluster do in etcd.

use crate::harness::{eventually, repo, Daemon};

fn cells(d: &Daemon) -> Vec<serde_json::Value> {
    let out = d.paas_ok(&["cells", "--json"]);
    serde_json::from_str::<serde_json::Value>(&out)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn a_single_host_lists_its_cell_with_the_instances_it_runs() {
    let d = Daemon::start();
    let path = repo().join("examples/python-app");
    d.paas_ok(&[
        "push",
        "counted",
        "-p",
        path.to_str().unwrap(),
        "-i",
        "2",
        "-m",
        "128M",
    ]);
    assert!(
        eventually(10, || cells(&d)
            .first()
            .is_some_and(|c| c["instances"] == 2)),
        "{:?}",
        cells(&d)
    );
    let cell = cells(&d).remove(0);
    assert_eq!(cell["memory_used_bytes"], 2 * 128 * 1024 * 1024);
    assert_eq!(cell["address"], "127.0.0.1");
    let app: serde_json::Value =
        serde_json::from_str(&d.paas_ok(&["app", "counted", "--json"])).unwrap();
    for i in app["instances"].as_array().unwrap() {
        assert_eq!(i["cell"], cell["id"]);
    }
    let table = d.paas_ok(&["cells"]);
    assert!(table.contains(cell["id"].as_str().unwrap()), "{table}");

    d.paas_ok(&["stop", "counted"]);
    assert!(
        eventually(10, || cells(&d)
            .first()
            .is_some_and(|c| c["instances"] == 0)),
        "a stopped app's instances leave the cell's count: {:?}",
        cells(&d)
    );
}
