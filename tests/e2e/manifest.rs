//! `paas push` with a Cloud Foundry manifest: several apps, variables, flags over it.

use crate::harness::{repo, Daemon};

#[test]
fn a_manifest_pushes_its_apps_with_variables_and_flags_win() {
    let d = Daemon::start();
    let dir = tempfile::tempdir().unwrap();
    let py = repo().join("examples/python-app");
    let site = repo().join("examples/static-site");
    std::fs::write(
        dir.path().join("manifest.yml"),
        format!(
            "---\napplications:\n\
             - name: from-manifest\n  path: {py}\n  instances: ((count))\n  memory: 128M\n  env:\n    GREETING: ((greeting))\n  routes:\n  - route: fm.localhost\n  - route: fm.localhost/v2\n\
             - name: second-app\n  path: {site}\n  buildpacks: [staticfile]\n",
            py = py.display(),
            site = site.display()
        ),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("vars.yml"),
        "greeting: hello from a vars file\n",
    )
    .unwrap();

    let out = d.paas_in(
        dir.path(),
        &["push", "--vars-file", "vars.yml", "--var", "count=2"],
    );
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    // Listed routes are mapped instead of NAME.DOMAIN.
    assert_eq!(d.get("from-manifest.localhost", "/").status, 404);
    let r = d.get("fm.localhost", "/v2/x");
    assert!(r.status == 200 && r.body.contains("/v2/x"), "{r:?}");
    assert!(
        stdout.contains("App from-manifest is running 2 instance(s)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("App second-app is running 1 instance(s)"),
        "{stdout}"
    );
    let env = d.paas_ok(&["env", "from-manifest"]);
    assert!(env.contains("GREETING: hello from a vars file"), "{env}");
    let app = d.paas_ok(&["app", "from-manifest"]);
    assert!(app.contains("memory:        128M"), "{app}");

    // Flags win over the manifest for the app named.
    let out = d.paas_in(
        dir.path(),
        &[
            "push",
            "from-manifest",
            "-i",
            "1",
            "--var",
            "count=2",
            "--vars-file",
            "vars.yml",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("running 1 instance(s)"));

    let out = d.paas_in(dir.path(), &["push"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 5: ((count)) has no value"), "{err}");
    let out = d.paas_in(
        dir.path(),
        &[
            "push",
            "nope",
            "--var",
            "count=1",
            "--vars-file",
            "vars.yml",
        ],
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("the manifest has no app named nope"));
}

#[test]
fn push_plan_changes_nothing_and_json_reports_events() {
    let d = Daemon::start();
    let site = repo().join("examples/static-site");
    let site = site.to_str().unwrap();

    // A plan for a new app: it would be created and routed; nothing is.
    let plan = d.paas_ok(&["push", "planned", "-p", site, "--plan"]);
    for want in [
        "Plan for app planned (nothing was changed)",
        "create the app",
        "map route planned.localhost",
        "then stage it and roll out 1 instance(s)",
    ] {
        assert!(plan.contains(want), "{want:?} in\n{plan}");
    }
    assert!(
        !d.paas(&["app", "planned"]).status.success(),
        "--plan made the app"
    );
    assert_eq!(d.get("planned.localhost", "/").status, 404);

    // --json: one JSON event per line, ending with done.
    let out = d.paas_ok(&["push", "planned", "-p", site, "--json"]);
    let events: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect();
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["event"].as_str()).collect();
    assert_eq!(kinds.first(), Some(&"pushing"), "{kinds:?}");
    for want in ["uploading", "phase", "log", "done"] {
        assert!(kinds.contains(&want), "{want} in {kinds:?}");
    }
    assert_eq!(kinds.last(), Some(&"done"));
    let up = events.iter().find(|e| e["event"] == "uploading").unwrap();
    assert!(up["files"].as_u64().unwrap() > 0, "{up}");

    // A plan for a change names only what changes; files already held are not sent.
    let plan = d.paas_ok(&["push", "planned", "-p", site, "-i", "2", "--plan", "--json"]);
    let p: serde_json::Value = serde_json::from_str(plan.trim()).unwrap();
    assert_eq!(p["create"], false);
    assert_eq!(p["settings"], serde_json::json!(["instances: 1 → 2"]));
    assert_eq!(p["files_sent"], 0, "{p}");
    assert_eq!(p["map_routes"], serde_json::json!([]));
    let app: serde_json::Value =
        serde_json::from_str(&d.paas_ok(&["app", "planned", "--json"])).unwrap();
    assert_eq!(
        app["settings"]["instances"], 1,
        "--plan changed the settings"
    );
}
