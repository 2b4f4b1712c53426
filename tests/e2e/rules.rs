//! Every route of the API × every role: the answer each role gets, from a real paasd.
//!
//! The table below has one row per route and the rule it is under; the test fails if a
//! route of `docs/openapi.yaml` (which the controller's own test ties to the routes it
//! serves) has no row, so a new endpoint cannot land without a rule checked here.
//! Requests carry bodies that do not parse (`[]`), so a request a role may make fails
//! in its handler (400), after the rule let it through, and changes nothing; the few
//! that would change something without a body act on things made again before each.

use crate::api_spec::documented;
use crate::harness::Daemon;

/// The rule of a route, as the roles meet it.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Rule {
    /// No token needed.
    Public,
    /// Any signed-in caller.
    SignedIn,
    /// Platform admins.
    Admin,
    /// Any role in the space of what the path names.
    Read,
    /// Developers of that space.
    Develop,
    /// Making or changing the app of the path: developers of its (or the named) space.
    Put,
    /// Managers of the space.
    Manage,
}

const ROLES: [&str; 6] = [
    "anonymous",
    "outsider",
    "auditor",
    "manager",
    "developer",
    "admin",
];

/// What `role` gets under `rule`: `None` is let through, `Some(status)` refused.
fn expected(rule: Rule, role: &str) -> Option<u16> {
    use Rule::*;
    match (rule, role) {
        (Public, _) => None,
        (_, "anonymous") => Some(401),
        (_, "admin") => None,
        (SignedIn, _) => None,
        (Admin, _) => Some(403),
        (Read, "outsider") | (Develop, "outsider") | (Manage, "outsider") => Some(404),
        (Put, "outsider") => Some(409),
        (Read, _) => None,
        (Develop | Put, "developer") => None,
        (Manage, "manager") => None,
        (Develop | Put | Manage, _) => Some(403),
    }
}

const TABLE: &[(&str, &str, Rule)] = &[
    ("POST", "/v1/login", Rule::Public),
    ("POST", "/v1/token", Rule::Public),
    ("GET", "/v1/user", Rule::SignedIn),
    ("PUT", "/v1/user/password", Rule::SignedIn),
    ("GET", "/v1/users", Rule::Admin),
    ("POST", "/v1/users", Rule::Admin),
    ("DELETE", "/v1/users/{name}", Rule::Admin),
    ("GET", "/v1/spaces", Rule::SignedIn),
    ("POST", "/v1/spaces", Rule::Admin),
    ("GET", "/v1/spaces/{space}", Rule::Read),
    ("DELETE", "/v1/spaces/{space}", Rule::Admin),
    ("PUT", "/v1/spaces/{space}/quota", Rule::Manage),
    ("GET", "/v1/spaces/{space}/users", Rule::Read),
    (
        "PUT",
        "/v1/spaces/{space}/users/{user}/roles/{role}",
        Rule::Manage,
    ),
    (
        "DELETE",
        "/v1/spaces/{space}/users/{user}/roles/{role}",
        Rule::Manage,
    ),
    ("GET", "/v1/audit", Rule::SignedIn),
    ("GET", "/v1/info", Rule::SignedIn),
    ("GET", "/v1/apps", Rule::SignedIn),
    ("GET", "/v1/apps/{name}", Rule::Read),
    ("PUT", "/v1/apps/{name}", Rule::Put),
    ("DELETE", "/v1/apps/{name}", Rule::Develop),
    ("GET", "/v1/apps/{name}/routes", Rule::Read),
    ("POST", "/v1/apps/{name}/routes", Rule::Develop),
    ("DELETE", "/v1/apps/{name}/routes", Rule::Develop),
    ("POST", "/v1/apps/{name}/packages", Rule::Develop),
    ("POST", "/v1/apps/{name}/deployments", Rule::Develop),
    ("POST", "/v1/apps/{name}/restage", Rule::Develop),
    ("POST", "/v1/apps/{name}/restart", Rule::Develop),
    ("POST", "/v1/apps/{name}/start", Rule::Develop),
    ("POST", "/v1/apps/{name}/rollback", Rule::Develop),
    ("POST", "/v1/apps/{name}/scale", Rule::Develop),
    ("POST", "/v1/apps/{name}/stop", Rule::Develop),
    ("POST", "/v1/apps/{name}/deployment/continue", Rule::Develop),
    ("POST", "/v1/apps/{name}/deployment/cancel", Rule::Develop),
    ("GET", "/v1/apps/{name}/revisions", Rule::Read),
    ("GET", "/v1/apps/{name}/droplet", Rule::Develop),
    ("GET", "/v1/apps/{name}/logs", Rule::Read),
    ("GET", "/v1/apps/{name}/events", Rule::Read),
    ("GET", "/v1/apps/{name}/traffic", Rule::Read),
    ("GET", "/v1/apps/{name}/usage", Rule::Read),
    ("GET", "/v1/apps/{name}/env", Rule::Develop),
    ("PATCH", "/v1/apps/{name}/env", Rule::Develop),
    ("POST", "/v1/apps/{name}/exec", Rule::Develop),
    ("GET", "/v1/apps/{name}/tasks", Rule::Read),
    ("POST", "/v1/apps/{name}/tasks", Rule::Develop),
    (
        "POST",
        "/v1/apps/{name}/tasks/{sequence}/terminate",
        Rule::Develop,
    ),
    (
        "POST",
        "/v1/apps/{name}/tasks/{sequence}/resize",
        Rule::Develop,
    ),
    ("PUT", "/v1/apps/{name}/services/{service}", Rule::Develop),
    (
        "DELETE",
        "/v1/apps/{name}/services/{service}",
        Rule::Develop,
    ),
    ("GET", "/v1/apps/{name}/system-env", Rule::Develop),
    ("GET", "/v1/routes", Rule::SignedIn),
    ("DELETE", "/v1/routes", Rule::SignedIn),
    ("PUT", "/v1/routes/route-service", Rule::SignedIn),
    ("GET", "/v1/stacks", Rule::SignedIn),
    ("DELETE", "/v1/routes/route-service", Rule::SignedIn),
    ("GET", "/v1/certificates", Rule::Admin),
    ("GET", "/v1/cells", Rule::Admin),
    ("GET", "/v1/services", Rule::SignedIn),
    ("POST", "/v1/services", Rule::SignedIn),
    ("PATCH", "/v1/services/{name}", Rule::Develop),
    ("DELETE", "/v1/services/{name}", Rule::Develop),
    ("GET", "/v1/domains", Rule::SignedIn),
    ("POST", "/v1/domains", Rule::SignedIn),
    ("DELETE", "/v1/domains/{name}", Rule::SignedIn),
    ("POST", "/v1/resources/match", Rule::SignedIn),
    ("GET", "/v1/buildpacks", Rule::SignedIn),
    ("POST", "/v1/buildpacks/{name}", Rule::Admin),
    ("PATCH", "/v1/buildpacks/{name}", Rule::Admin),
    ("DELETE", "/v1/buildpacks/{name}", Rule::Admin),
    ("PUT", "/v1/buildpacks/{name}/bits", Rule::Admin),
    // Last: it ends the login of the token it is sent with.
    ("POST", "/v1/logout", Rule::SignedIn),
];

/// The error codes a rule answers with when it refuses (besides 401 and 403).
const REFUSALS: [&str; 4] = [
    "app-not-found",
    "space-not-found",
    "service-not-found",
    "name-taken",
];

/// Makes again, as the admin, what a request let through may have taken away.
fn renew(d: &Daemon) {
    let admin = d.token();
    let call = |method: &str, path: &str, body: &str| {
        let (status, answer) = d.api_as(Some(&admin), method, path, Some(body));
        assert!(
            status < 300 || status == 409,
            "{method} {path}: {status} {answer}"
        );
    };
    let settings = r#"{"instances":1,"memory":64}"#;
    call(
        "PUT",
        "/v1/apps/alpha?space=space-a&default-route=false",
        settings,
    );
    call(
        "PUT",
        "/v1/apps/doomed?space=space-a&default-route=false",
        settings,
    );
    call(
        "POST",
        "/v1/services?space=space-a",
        r#"{"name":"svc","credentials":{}}"#,
    );
    call("PUT", "/v1/apps/alpha/services/svc", "");
    call(
        "POST",
        "/v1/users",
        r#"{"name":"victim","password":"victim-password"}"#,
    );
}

#[test]
fn every_route_answers_every_role_as_its_rule_says() {
    // Every documented route has a row, and every row a documented route.
    let mut routes: Vec<(String, String)> = documented()
        .into_iter()
        .flat_map(|(path, methods)| methods.into_iter().map(move |m| (m, path.clone())))
        .collect();
    routes.sort();
    let mut rows: Vec<(String, String)> = TABLE
        .iter()
        .map(|(m, p, _)| (m.to_string(), p.to_string()))
        .collect();
    rows.sort();
    assert_eq!(
        rows, routes,
        "the table and docs/openapi.yaml list different routes"
    );

    let d = Daemon::start();
    let admin = d.token();
    for space in ["space-a", "space-b"] {
        d.paas_ok(&["create-space", space]);
    }
    for (user, space, role) in [
        ("manager", "space-a", "manager"),
        ("developer", "space-a", "developer"),
        ("auditor", "space-a", "auditor"),
        ("outsider", "space-b", "developer"),
    ] {
        d.paas_ok(&["create-user", user, &format!("{user}-password")]);
        d.paas_ok(&["set-space-role", user, space, role]);
    }
    let token = |role: &str| -> Option<String> {
        match role {
            "anonymous" => None,
            "admin" => Some(admin.clone()),
            user => {
                let body =
                    serde_json::json!({"user": user, "password": format!("{user}-password")});
                let (status, answer) = d.api_as(None, "POST", "/v1/login", Some(&body.to_string()));
                assert_eq!(status, 200, "{answer}");
                let grant: serde_json::Value = serde_json::from_str(&answer).unwrap();
                Some(grant["access_token"].as_str().unwrap().to_string())
            }
        }
    };
    let tokens: Vec<(&str, Option<String>)> = ROLES.iter().map(|r| (*r, token(r))).collect();
    renew(&d);

    let mut wrong = Vec::new();
    for (method, path, rule) in TABLE {
        let name = match *path {
            p if p.starts_with("/v1/users/") => "victim",
            p if p.starts_with("/v1/services/") => "svc",
            p if p.starts_with("/v1/buildpacks/") => "nosuch-buildpack",
            p if p.starts_with("/v1/domains/") => "nosuch.example",
            "/v1/apps/{name}" if *method == "DELETE" => "doomed",
            _ => "alpha",
        };
        let concrete = path
            .replace("{name}", name)
            .replace("{space}", "space-a")
            .replace("{user}", "ghost")
            .replace("{role}", "auditor")
            .replace("{service}", "svc")
            .replace("{sequence}", "1");
        for (role, token) in &tokens {
            let (status, answer) = d.api_as(token.as_deref(), method, &concrete, Some("[]"));
            let code = serde_json::from_str::<serde_json::Value>(&answer)
                .ok()
                .and_then(|v| v["code"].as_str().map(str::to_string))
                .unwrap_or_default();
            let refused = matches!(status, 401 | 403 | 429) || REFUSALS.contains(&code.as_str());
            let got = refused.then_some(status);
            if got != expected(*rule, role) {
                wrong.push(format!(
                    "{method} {path} as {role}: expected {:?}, got {status} {answer}",
                    expected(*rule, role)
                ));
            }
            if *method != "GET" {
                renew(&d);
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
