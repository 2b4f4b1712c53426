//! The buildpack conformance suite: fixture buildpacks (`tests/fixtures/buildpacks`),
//! one per contract point of each dialect, each run through a real push.

use crate::harness::{repo, Daemon};

const FIXTURES: [&str; 15] = [
    "heroku-env",
    "heroku-sees-export",
    "heroku-fail-compile",
    "heroku-fail-release",
    "cf-supply",
    "cf-final",
    "cf-compile-final",
    "cf-fail-supply",
    "cf-fail-finalize",
    "cf-finalize-only",
    "cnb-web",
    "cnb-sees-build-env",
    "cnb-detect-error",
    "cnb-fail-build",
    "cnb-unmet-plan",
];

fn daemon_with_fixtures() -> Daemon {
    let d = Daemon::start();
    for name in FIXTURES {
        let path = repo().join("tests/fixtures/buildpacks").join(name);
        d.paas_ok(&["create-buildpack", name, path.to_str().unwrap()]);
    }
    d
}

fn app() -> String {
    repo()
        .join("tests/fixtures/conformance-app")
        .to_str()
        .unwrap()
        .to_string()
}

/// Pushes the conformance app with `-b` for each buildpack; returns the output.
fn push(d: &Daemon, name: &str, buildpacks: &[&str]) -> std::process::Output {
    let app = app();
    let mut args = vec!["push", name, "-p", &app];
    for b in buildpacks {
        args.extend(["-b", b]);
    }
    d.paas(&args)
}

fn text(o: &std::process::Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// The running app's view of itself: its argv and environment.
fn runtime_view(d: &Daemon, name: &str) -> serde_json::Value {
    let resp = d.get(&format!("{name}.localhost"), "/");
    assert_eq!(resp.status, 200, "{resp:?}");
    serde_json::from_str(&resp.body).unwrap()
}

#[test]
fn dialects_list_and_heroku_contract() {
    let d = daemon_with_fixtures();
    let list = d.paas_ok(&["buildpacks"]);
    for (name, dialect) in [
        ("heroku-env", "heroku"),
        ("cf-supply", "cloud-foundry"),
        ("cnb-web", "cloud-native"),
    ] {
        let line = list
            .lines()
            .find(|l| l.contains(name))
            .unwrap_or_else(|| panic!("{list}"));
        assert!(line.contains(dialect), "{line}");
    }
    assert!(push(&d, "heroku", &["heroku-env"]).status.success());
    d.paas_ok(&["set-env", "heroku", "GREETING", "hello-env-dir"]);
    let o = push(&d, "heroku", &["heroku-env", "heroku-sees-export"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    assert!(
        out.contains("GREETING from ENV_DIR: hello-env-dir"),
        "{out}"
    );
    assert!(
        out.contains("heroku-sees-export: HEROKU_EXPORTED=from-heroku-export"),
        "{out}"
    );
    let view = runtime_view(&d, "heroku");
    assert_eq!(view["env"]["HEROKU_PROFILE_VAR"], "from-heroku-profile-d");
    assert_eq!(
        view["env"]["GREETING"], "hello-env-dir",
        "the app's own variable wins"
    );
    assert_eq!(view["env"]["RELEASE_DEFAULT"], "from-release-config-vars");
    assert_eq!(
        view["argv"][0], "heroku-last",
        "the last buildpack's release wins"
    );
}

#[test]
fn cloud_foundry_contract() {
    let d = daemon_with_fixtures();
    let o = push(&d, "cf", &["cf-supply", "cf-final"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    assert!(out.contains("cf-supply supplying into deps/0"), "{out}");
    assert!(
        out.contains("cf-final finalizing (idx 1); supplied: 0 1"),
        "{out}"
    );
    assert!(out.contains("found 0/config.yml"), "{out}");
    let view = runtime_view(&d, "cf");
    assert_eq!(view["argv"][0], "cf", "launch.yml's web process");
    assert_eq!(view["cf_tool"], "cf-tool-ran", "deps/0/bin is on PATH");
    assert_eq!(view["env"]["CF_DEPS_VAR"], "from-cf-deps-env");
    assert_eq!(view["env"]["CF_DEPS_PROFILE"], "from-cf-deps-profile-d");
    assert_eq!(view["env"]["CF_FINAL_PROFILE"], "from-cf-profile-dir");

    let o = push(&d, "cf-old", &["cf-supply", "cf-compile-final"]);
    let (out, err) = text(&o);
    assert!(
        !o.status.success(),
        "no start command: cf-compile-final has no release"
    );
    assert!(
        out.contains("cf-compile-final compile with 2 arguments"),
        "{out}\n{err}"
    );
}

#[test]
fn cloud_native_contract() {
    let d = daemon_with_fixtures();
    let first = push(&d, "cnb", &["cnb-web"]);
    assert!(first.status.success(), "{:?}", text(&first));
    assert!(!text(&first).0.contains("restored from the cache"));
    d.paas_ok(&["set-env", "cnb", "GREETING", "hello-platform"]);
    let o = push(&d, "cnb", &["cnb-web", "cnb-sees-build-env"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    assert!(
        out.contains("plan entries: 1") && out.contains("plan metadata arrived"),
        "{out}"
    );
    assert!(
        out.contains("platform env GREETING=hello-platform"),
        "{out}"
    );
    assert!(
        out.contains(
            "CNB_BUILD_ONLY=from-cnb-build-env serve=/home/vcap/layers/cnb-web/runtime/bin/serve"
        ),
        "{out}"
    );
    let view = runtime_view(&d, "cnb");
    assert_eq!(
        view["argv"],
        serde_json::json!(["cnb", "$NOT_EXPANDED"]),
        "launch.toml's web process, no shell"
    );
    assert_eq!(view["env"]["CNB_OVERRIDE"], "from-cnb-override");
    assert_eq!(
        view["env"]["CNB_LIST"], "base,first",
        "default, then append with its delimiter"
    );
    assert!(
        view["env"].get("CNB_BUILD_ONLY").is_none(),
        "env.build stays at build"
    );
    assert!(
        out.contains("runtime layer restored from the cache"),
        "the cache layer of the first build: {out}"
    );
    // launch.toml's other process type runs beside web, unrouted, with the launch env.
    let worked = crate::harness::eventually(20, || {
        d.paas_ok(&["logs", "cnb", "--recent"])
            .contains("[APP/PROC/WORKER/0] OUT cnb worker from-cnb-override tick")
    });
    assert!(worked, "{}", d.paas_ok(&["logs", "cnb", "--recent"]));
    assert!(
        d.paas_ok(&["app", "cnb"])
            .contains("type worker: 1/1 running"),
        "{}",
        d.paas_ok(&["app", "cnb"])
    );
}

#[test]
fn one_push_mixes_all_three_dialects() {
    let d = daemon_with_fixtures();
    let o = push(&d, "mixed", &["cf-supply", "heroku-env", "cnb-web"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    for step in [
        "Running cf-supply (supply)",
        "Running heroku-env (compile)",
        "Running cnb-web (build)",
    ] {
        assert!(out.contains(step), "{step}: {out}");
    }
    let view = runtime_view(&d, "mixed");
    assert_eq!(view["argv"][0], "cnb");
    assert_eq!(view["cf_tool"], "cf-tool-ran");
    assert_eq!(view["env"]["HEROKU_PROFILE_VAR"], "from-heroku-profile-d");
    assert_eq!(view["env"]["CNB_OVERRIDE"], "from-cnb-override");
}

#[test]
fn every_failure_keeps_its_cf_exit_code_and_names_the_buildpack_and_step() {
    let d = daemon_with_fixtures();
    for (bps, code, needle) in [
        (
            vec!["heroku-fail-compile"],
            223,
            "buildpack heroku-fail-compile failed to compile (exited with status 7)",
        ),
        (
            vec!["heroku-fail-release"],
            224,
            "buildpack heroku-fail-release failed to release (exited with status 9)",
        ),
        (
            vec!["cf-fail-supply", "cf-final"],
            225,
            "buildpack cf-fail-supply failed to supply (exited with status 5)",
        ),
        (
            vec!["cf-supply", "cf-fail-finalize"],
            226,
            "buildpack cf-fail-finalize failed to finalize (exited with status 6)",
        ),
        (
            vec!["cnb-detect-error"],
            222,
            "buildpack cnb-detect-error failed to detect (exited with status 3)",
        ),
        (
            vec!["cnb-fail-build"],
            223,
            "buildpack cnb-fail-build failed to build (exited with status 4)",
        ),
        (
            vec!["cnb-unmet-plan"],
            222,
            "no buildpack of the group provides \"nobody-provides-this\"",
        ),
        (
            vec!["cf-finalize-only", "heroku-env"],
            0,
            "buildpack cf-finalize-only cannot run before other buildpacks",
        ),
    ] {
        let o = push(&d, "failing", &bps);
        let (out, err) = text(&o);
        assert_eq!(o.status.code(), Some(4), "{bps:?}: {out}\n{err}");
        assert!(err.contains(needle), "{bps:?}: {err}");
        if code != 0 {
            assert!(err.contains(&format!("(code {code})")), "{bps:?}: {err}");
        }
        let json = d.api_call("GET", "/v1/apps/failing", None).1;
        assert!(
            json.contains("\"state\":\"pending\""),
            "nothing was released: {json}"
        );
    }
}
