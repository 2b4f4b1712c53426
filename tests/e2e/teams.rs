//! Teams on one platform: users in spaces with roles, through the real CLI and API.
//! Two developers of two spaces and an auditor: nobody reaches what is not theirs,
//! the auditor reads without secrets, quotas hold, logins are limited and end.

use std::path::Path;

use crate::harness::{answering_app, eventually, Daemon};

/// The access token `paas login` saved in `home`.
fn token_of(home: &Path) -> String {
    let raw = std::fs::read_to_string(home.join("config.json")).unwrap();
    let config: serde_json::Value = serde_json::from_str(&raw).unwrap();
    config["token"].as_str().unwrap().to_string()
}

fn ok(out: std::process::Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn failed(out: std::process::Output, what: &str) -> String {
    assert!(!out.status.success(), "{what} succeeded");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Spaces `team-a` and `team-b`; alice develops in a, bob in b, carol audits a.
fn two_teams(d: &Daemon) {
    for space in ["team-a", "team-b"] {
        d.paas_ok(&["create-space", space]);
    }
    for (user, space, role) in [
        ("alice", "team-a", "developer"),
        ("bob", "team-b", "developer"),
        ("carol", "team-a", "auditor"),
    ] {
        d.paas_ok(&["create-user", user, &format!("{user}-password")]);
        d.paas_ok(&["set-space-role", user, space, role]);
    }
}

#[test]
fn two_teams_share_a_platform_and_neither_reaches_the_other() {
    let d = Daemon::start();
    two_teams(&d);
    let alice = d.login("alice", "alice-password");
    let bob = d.login("bob", "bob-password");
    let carol = d.login("carol", "carol-password");
    let as_alice = |args: &[&str]| ok(d.paas_as(alice.path(), args), &format!("{args:?}"));
    let app = answering_app("alpha here");
    let dir = app.path().to_str().unwrap();
    // Alice's one space is the one she works in, without `paas target -s`.
    as_alice(&[
        "push",
        "alpha",
        "-p",
        dir,
        "-b",
        "binary",
        "-c",
        "python3 server.py",
    ]);
    as_alice(&["set-env", "alpha", "SECRET", "s3cret-value"]);
    as_alice(&[
        "create-user-provided-service",
        "alpha-db",
        "-p",
        r#"{"password":"hunter2-value"}"#,
    ]);
    as_alice(&["bind-service", "alpha", "alpha-db"]);
    as_alice(&["run-task", "alpha", "echo done"]);
    let beta = answering_app("beta here");
    ok(
        d.paas_as(
            bob.path(),
            &[
                "push",
                "beta",
                "-p",
                beta.path().to_str().unwrap(),
                "-b",
                "binary",
                "-c",
                "python3 server.py",
            ],
        ),
        "bob's push",
    );
    let (b, c) = (token_of(bob.path()), token_of(carol.path()));

    // To bob, alice's app is one that does not exist: the same answer as a name
    // nobody uses, on every endpoint of an app.
    let (_, unknown) = d.api_as(Some(&b), "GET", "/v1/apps/nosuch", None);
    assert!(unknown.contains("app nosuch does not exist"), "{unknown}");
    for (method, path, body) in [
        ("GET", "/v1/apps/alpha", None),
        ("PUT", "/v1/apps/alpha/services/alpha-db", None),
        ("GET", "/v1/apps/alpha/env", None),
        ("PATCH", "/v1/apps/alpha/env", Some(r#"{"SECRET":"mine"}"#)),
        ("GET", "/v1/apps/alpha/system-env", None),
        ("GET", "/v1/apps/alpha/logs", None),
        ("GET", "/v1/apps/alpha/events", None),
        ("GET", "/v1/apps/alpha/droplet", None),
        ("GET", "/v1/apps/alpha/revisions", None),
        ("GET", "/v1/apps/alpha/tasks", None),
        ("POST", "/v1/apps/alpha/tasks", Some(r#"{"command":"id"}"#)),
        ("POST", "/v1/apps/alpha/exec", Some(r#"{"command":["id"]}"#)),
        ("POST", "/v1/apps/alpha/restart", None),
        ("POST", "/v1/apps/alpha/stop", None),
        ("POST", "/v1/apps/alpha/scale", Some(r#"{"instances":3}"#)),
        ("GET", "/v1/apps/alpha/routes", None),
        ("DELETE", "/v1/apps/alpha", None),
    ] {
        let (status, answer) = d.api_as(Some(&b), method, path, body);
        assert_eq!(status, 404, "{method} {path}: {answer}");
        assert!(
            answer.contains("app alpha does not exist"),
            "{method} {path}: {answer}"
        );
    }
    for (method, path) in [
        ("PATCH", "/v1/services/alpha-db"),
        ("DELETE", "/v1/services/alpha-db"),
    ] {
        let (status, answer) = d.api_as(Some(&b), method, path, Some("{}"));
        assert_eq!(status, 404, "{method} {path}: {answer}");
    }
    // Nor can bob bind alpha's service to his app, or take alpha's name.
    let (status, answer) = d.api_as(Some(&b), "PUT", "/v1/apps/beta/services/alpha-db", None);
    assert_eq!(status, 404, "{answer}");
    let (status, answer) = d.api_as(
        Some(&b),
        "PUT",
        "/v1/apps/alpha",
        Some(r#"{"instances":1,"memory":64}"#),
    );
    assert_eq!(status, 409, "{answer}");
    assert!(answer.contains("name-taken"), "{answer}");
    // What bob lists is his own.
    let apps = ok(d.paas_as(bob.path(), &["apps"]), "bob's apps");
    assert!(apps.contains("beta") && !apps.contains("alpha"), "{apps}");
    let services = ok(d.paas_as(bob.path(), &["services"]), "bob's services");
    assert!(!services.contains("alpha-db"), "{services}");
    let routes = ok(d.paas_as(bob.path(), &["routes"]), "bob's routes");
    assert!(!routes.contains("alpha."), "{routes}");
    // Alice's host is hers: bob cannot map a path of it to his app.
    let e = failed(
        d.paas_as(
            bob.path(),
            &[
                "map-route",
                "beta",
                "localhost",
                "--hostname",
                "alpha",
                "--path",
                "/login",
            ],
        ),
        "bob mapping alpha.localhost/login",
    );
    assert!(e.contains("belongs to another space"), "{e}");
    assert_eq!(d.get("alpha.localhost", "/login").body, "alpha here");

    // Carol, auditor of team-a, reads alpha but not its secrets, and changes nothing.
    let (status, answer) = d.api_as(Some(&c), "GET", "/v1/apps/alpha", None);
    assert_eq!(status, 200, "{answer}");
    for (method, path) in [
        ("GET", "/v1/apps/alpha/logs"),
        ("GET", "/v1/apps/alpha/events"),
        ("GET", "/v1/apps/alpha/tasks"),
    ] {
        let (status, answer) = d.api_as(Some(&c), method, path, None);
        assert_eq!(status, 200, "{method} {path}: {answer}");
    }
    for (method, path, body) in [
        ("GET", "/v1/apps/alpha/env", None),
        ("GET", "/v1/apps/alpha/system-env", None),
        ("GET", "/v1/apps/alpha/droplet", None),
        ("PATCH", "/v1/apps/alpha/env", Some(r#"{"SECRET":"mine"}"#)),
        ("POST", "/v1/apps/alpha/exec", Some(r#"{"command":["id"]}"#)),
        ("POST", "/v1/apps/alpha/restart", None),
        ("DELETE", "/v1/apps/alpha", None),
        ("DELETE", "/v1/services/alpha-db", None),
    ] {
        let (status, answer) = d.api_as(Some(&c), method, path, body);
        assert_eq!(status, 403, "{method} {path}: {answer}");
        assert!(
            answer.contains("developer role in space team-a"),
            "{answer}"
        );
    }
    let mut seen = String::new();
    for args in [
        &["apps", "--json"][..],
        &["app", "alpha", "--json"],
        &["services", "--json"],
        &["events", "alpha"],
        &["logs", "alpha", "--recent"],
    ] {
        seen += &ok(d.paas_as(carol.path(), args), &format!("carol's {args:?}"));
    }
    assert!(
        seen.contains("alpha") && seen.contains("alpha-db"),
        "{seen}"
    );
    assert!(
        !seen.contains("s3cret-value") && !seen.contains("hunter2-value"),
        "{seen}"
    );
    failed(d.paas_as(carol.path(), &["env", "alpha"]), "carol's env");

    // Who changed what, and from where: in the app's events, and in the audit trail of
    // its space, which bob does not see; never a value that was set.
    let events = ok(
        d.paas_as(carol.path(), &["events", "alpha"]),
        "carol's events",
    );
    assert!(
        events.contains("alice from 127.0.0.1: PATCH /v1/apps/alpha/env (200)"),
        "{events}"
    );
    let audit = ok(
        d.paas_as(carol.path(), &["audit", "--json"]),
        "carol's audit",
    );
    let entries: Vec<serde_json::Value> = serde_json::from_str(&audit).unwrap();
    assert!(
        entries.iter().any(|e| e["user"] == "alice"
            && e["action"] == "PUT /v1/apps/alpha/services/alpha-db"
            && e["space"] == "team-a"
            && e["address"] == "127.0.0.1"
            && e["status"] == 201),
        "{audit}"
    );
    assert!(entries.iter().all(|e| e["space"] == "team-a"), "{audit}");
    assert!(!audit.contains("s3cret-value") && !audit.contains("hunter2-value"));
    let theirs = ok(d.paas_as(bob.path(), &["audit", "--json"]), "bob's audit");
    assert!(
        !theirs.contains("alice") && theirs.contains("bob"),
        "{theirs}"
    );

    // Quotas: a push beyond team-b's memory is refused before anything is made.
    d.paas_ok(&["set-space-quota", "team-b", "-m", "256M", "-r", "5"]);
    let e = failed(
        d.paas_as(
            bob.path(),
            &[
                "push",
                "beta2",
                "-p",
                beta.path().to_str().unwrap(),
                "-b",
                "binary",
                "-m",
                "512M",
            ],
        ),
        "a push beyond the quota",
    );
    assert!(
        e.contains(
            "space team-b may use 256 MiB of memory; it uses 256 and this asks for 512 more"
        ),
        "{e}"
    );
    let (status, _) = d.api_call("GET", "/v1/apps/beta2", None);
    assert_eq!(status, 404, "the refused push made the app");
    let e = failed(
        d.paas_as(bob.path(), &["scale", "beta", "-i", "2"]),
        "a scale beyond the quota",
    );
    assert!(e.contains("may use 256 MiB of memory"), "{e}");
    // A stopped app counts for nothing, but what starts it again must fit: a restage
    // of a stopped app made bigger meanwhile is refused.
    ok(d.paas_as(bob.path(), &["stop", "beta"]), "bob's stop");
    let (status, answer) = d.api_as(
        Some(&b),
        "PUT",
        "/v1/apps/beta",
        Some(r#"{"instances":4,"memory":256}"#),
    );
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = d.api_as(Some(&b), "POST", "/v1/apps/beta/restage", None);
    assert_eq!(status, 422, "{answer}");
    assert!(answer.contains("quota-exceeded"), "{answer}");
    // A manager may lower the space's limits, not raise them.
    d.paas_ok(&["create-user", "mona", "mona-password"]);
    d.paas_ok(&["set-space-role", "mona", "team-b", "manager"]);
    let mona = d.login("mona", "mona-password");
    let e = failed(
        d.paas_as(mona.path(), &["set-space-quota", "team-b", "-m", "1G"]),
        "a manager raising her quota",
    );
    assert!(e.contains("may lower its limits"), "{e}");
    ok(
        d.paas_as(mona.path(), &["set-space-quota", "team-b", "-r", "4"]),
        "a manager lowering her quota",
    );
    // A deployment names a package uploaded to its app (or one of its releases'), not
    // any blob the platform holds: not alpha's droplet, whose hash is no secret.
    let (_, alpha) = d.api_call("GET", "/v1/apps/alpha", None);
    let alpha: serde_json::Value = serde_json::from_str(&alpha).unwrap();
    let droplet = alpha["droplet"].as_str().unwrap();
    let body = serde_json::json!({ "package": droplet, "start": false }).to_string();
    let (status, answer) = d.api_as(Some(&b), "POST", "/v1/apps/beta/deployments", Some(&body));
    assert!(
        answer.contains("package-not-found") && !answer.contains("staging"),
        "{status} {answer}"
    );

    // Alice's space has no quota: her scale goes through.
    as_alice(&["scale", "alpha", "-i", "2"]);

    // A followed stream lasts only while its caller may read it: taking alice's role
    // away ends her `paas logs` and `paas events --follow`.
    let follow = |args: &[&str]| {
        std::process::Command::new(crate::harness::bin("paas"))
            .args(args)
            .env("PAAS_HOME", alice.path())
            .env_remove("PAAS_API")
            .env_remove("PAAS_TOKEN")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut streams = [
        follow(&["logs", "alpha"]),
        follow(&["events", "alpha", "--follow"]),
    ];
    std::thread::sleep(std::time::Duration::from_secs(4));
    for s in streams.iter_mut() {
        assert!(s.try_wait().unwrap().is_none(), "a follow ended by itself");
    }
    d.paas_ok(&["unset-space-role", "alice", "team-a", "developer"]);
    let ended = eventually(30, || {
        streams.iter_mut().all(|s| s.try_wait().unwrap().is_some())
    });
    for s in streams.iter_mut() {
        let _ = s.kill();
        let _ = s.wait();
    }
    assert!(ended, "a follow outlived its caller's role");
}

#[test]
fn logins_are_limited_tokens_are_used_once_and_logout_ends_them() {
    let d = Daemon::start();
    d.paas_ok(&["create-user", "dave", "dave-password"]);
    d.paas_ok(&["create-user", "eve", "eve-password"]);
    let login = |user: &str, password: &str| {
        let body = serde_json::json!({"user": user, "password": password}).to_string();
        d.api_as(None, "POST", "/v1/login", Some(&body))
    };
    // Wrong passwords: five are answered, then the user is locked out for a while,
    // even with the right one.
    for _ in 0..5 {
        let (status, answer) = login("eve", "not-her-password");
        assert_eq!(status, 401, "{answer}");
        assert!(answer.contains("wrong user name or password"), "{answer}");
    }
    let (status, answer) = login("eve", "eve-password");
    assert_eq!(status, 429, "{answer}");
    assert!(answer.contains("too many failed logins"), "{answer}");
    // A user that does not exist is answered as a wrong password.
    let (status, answer) = login("nobody", "whatever-it-is");
    assert_eq!(status, 401, "{answer}");
    // Every failed login is in the audit trail, which only admins read whole.
    let audit = d.paas_ok(&["audit", "--json"]);
    let entries: Vec<serde_json::Value> = serde_json::from_str(&audit).unwrap();
    let failures = entries
        .iter()
        .filter(|e| e["action"] == "failed login" && e["user"] == "eve")
        .count();
    assert_eq!(failures, 5, "{audit}");

    let (status, answer) = login("dave", "dave-password");
    assert_eq!(status, 200, "{answer}");
    let grant: serde_json::Value = serde_json::from_str(&answer).unwrap();
    let (access, refresh) = (
        grant["access_token"].as_str().unwrap().to_string(),
        grant["refresh_token"].as_str().unwrap().to_string(),
    );
    let (status, me) = d.api_as(Some(&access), "GET", "/v1/user", None);
    assert_eq!(status, 200, "{me}");
    assert!(me.contains("\"name\":\"dave\""), "{me}");
    // A refresh token gives a new pair once; the old pair stops working.
    let body = serde_json::json!({ "refresh_token": refresh }).to_string();
    let (status, answer) = d.api_as(None, "POST", "/v1/token", Some(&body));
    assert_eq!(status, 200, "{answer}");
    let (status, _) = d.api_as(None, "POST", "/v1/token", Some(&body));
    assert_eq!(status, 401);
    let (status, _) = d.api_as(Some(&access), "GET", "/v1/user", None);
    assert_eq!(status, 401);
    // Only hashes are stored: neither the password nor a token is in the database.
    let mut db = Vec::new();
    for file in ["paas.db", "paas.db-wal"] {
        db.extend(std::fs::read(d.dir.path().join(file)).unwrap_or_default());
    }
    let db = String::from_utf8_lossy(&db);
    assert!(db.contains("$argon2id$"), "no password hash stored");
    assert!(!db.contains("dave-password") && !db.contains(&access) && !db.contains(&refresh));

    // `paas logout` ends the login on the API, not only on this machine.
    let home = d.login("dave", "dave-password");
    let token = token_of(home.path());
    let (status, _) = d.api_as(Some(&token), "GET", "/v1/user", None);
    assert_eq!(status, 200);
    ok(d.paas_as(home.path(), &["logout"]), "logout");
    let (status, answer) = d.api_as(Some(&token), "GET", "/v1/user", None);
    assert_eq!(status, 401, "{answer}");
    // A deleted user's logins end with them.
    let home = d.login("dave", "dave-password");
    d.paas_ok(&["delete-user", "dave"]);
    let (status, _) = d.api_as(Some(&token_of(home.path())), "GET", "/v1/user", None);
    assert_eq!(status, 401);
}
