//! `docs/openapi.yaml` against the API paasd really serves: every documented route is
//! served, and on a documented path every other method is not.

use crate::harness::{repo, Daemon};

const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];

/// (path, documented methods) from the OpenAPI document.
fn documented() -> Vec<(String, Vec<String>)> {
    let raw = std::fs::read_to_string(repo().join("docs/openapi.yaml")).unwrap();
    let doc: serde_json::Value = serde_yaml_ng::from_str(&raw).unwrap();
    doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(path, ops)| {
            let methods = ops
                .as_object()
                .unwrap()
                .keys()
                .filter(|k| METHODS.contains(&k.to_uppercase().as_str()))
                .map(|k| k.to_uppercase())
                .collect();
            (path.clone(), methods)
        })
        .collect()
}

fn no_such_route(body: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(body)
        .map(|v| v["code"] == "no-such-route")
        .unwrap_or(false)
}

#[test]
fn the_openapi_document_matches_the_routes_served() {
    let d = Daemon::start();
    let paths = documented();
    assert!(paths.len() >= 20, "{paths:?}");
    let body = d.dir.path().join("empty.json");
    std::fs::write(&body, "{}").unwrap();
    for (path, methods) in &paths {
        let concrete = path.replace("{name}", "probe-name");
        for m in METHODS {
            let (status, answer) = d.api_call(m, &concrete, Some(&body));
            let served = !no_such_route(&answer);
            assert_eq!(
                served,
                methods.iter().any(|x| x == m),
                "{m} {path}: answered {status} {answer}; documented methods: {methods:?}"
            );
        }
    }
    let (_, answer) = d.api_call("GET", "/v1/not-documented", None);
    assert!(no_such_route(&answer), "{answer}");
}
