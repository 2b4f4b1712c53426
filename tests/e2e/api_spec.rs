//! `docs/openapi.yaml` against the API paasd really serves: every documented route is
//! served, and on a documented path every other method is not.

use crate::harness::{repo, Daemon};

const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];

/// (path, documented methods) from the OpenAPI document.
pub(crate) fn documented() -> Vec<(String, Vec<String>)> {
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
        let concrete = path
            .replace("{name}", "probe-name")
            .replace("{space}", "probe-space")
            .replace("{user}", "probe-user")
            .replace("{role}", "auditor")
            .replace("{service}", "probe-service")
            .replace("{sequence}", "1");
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

#[test]
fn lists_come_in_pages_that_the_cli_follows() {
    let d = Daemon::start();
    let settings = d.dir.path().join("settings.json");
    std::fs::write(&settings, r#"{"instances":1,"memory":64}"#).unwrap();
    // One more app than the default page holds.
    for i in 0..101 {
        let (status, body) = d.api_call("PUT", &format!("/v1/apps/app-{i:03}"), Some(&settings));
        assert_eq!(status, 201, "{body}");
    }
    let head = std::process::Command::new("curl")
        .args(["-sS", "-D", "-", "-o", "/dev/null", "--cacert"])
        .arg(d.cert())
        .args(["-H", &format!("Authorization: Bearer {}", d.token())])
        .arg(format!("{}/v1/apps?per_page=40&page=2", d.api))
        .output()
        .unwrap();
    let head = String::from_utf8_lossy(&head.stdout).to_ascii_lowercase();
    assert!(head.contains("x-total-count: 101"), "{head}");
    assert!(
        head.contains("link: </v1/apps?page=3&per_page=40>; rel=\"next\""),
        "{head}"
    );
    let (_, last) = d.api_call("GET", "/v1/apps?per_page=40&page=3", None);
    let last: Vec<serde_json::Value> = serde_json::from_str(&last).unwrap();
    assert_eq!(last.len(), 21);
    assert_eq!(last[20]["name"], "app-100");
    let (status, body) = d.api_call("GET", "/v1/apps?per_page=5000", None);
    assert_eq!(status, 400, "{body}");

    let all: Vec<serde_json::Value> =
        serde_json::from_str(&d.paas_ok(&["apps", "--json"])).unwrap();
    assert_eq!(all.len(), 101, "the CLI follows every page");
    let routes: Vec<serde_json::Value> =
        serde_json::from_str(&d.paas_ok(&["routes", "--json"])).unwrap();
    assert_eq!(routes.len(), 101);
}
