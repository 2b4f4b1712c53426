//! The CLI's own texts, checked against golden files in `cli/tests/golden/`. After an
//! intended change, refresh them with `UPDATE_GOLDEN=1 cargo test -p paas-cli`.

use std::path::Path;
use std::process::Command;

fn paas(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_paas"))
        .args(args)
        .env("PAAS_HOME", "/nonexistent/paas-home")
        .env_remove("PAAS_API")
        .env_remove("PAAS_TOKEN")
        .output()
        .expect("running paas");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn golden(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("{} is missing: run with UPDATE_GOLDEN=1", path.display()));
    assert_eq!(
        actual, expected,
        "{name} changed; if on purpose, run with UPDATE_GOLDEN=1"
    );
}

#[test]
fn help_texts_match_their_golden_files() {
    for (name, args) in [
        ("help.txt", vec!["--help"]),
        ("push-help.txt", vec!["push", "--help"]),
        ("scale-help.txt", vec!["scale", "--help"]),
        (
            "create-buildpack-help.txt",
            vec!["create-buildpack", "--help"],
        ),
    ] {
        let (code, out, _) = paas(&args);
        assert_eq!(code, Some(0), "{args:?}");
        golden(name, &out);
    }
}

#[test]
fn usage_errors_exit_2_and_say_what_to_do() {
    let (code, _, err) = paas(&["push", "My_App"]);
    assert_eq!(code, Some(2));
    golden("invalid-name.txt", &err);
    let (code, _, err) = paas(&["push", "ok-name", "-m", "lots"]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("size \"lots\" is invalid: write a whole number with a unit"),
        "{err}"
    );
    let (code, _, err) = paas(&["apps"]);
    assert_eq!(code, Some(1));
    golden("not-logged-in.txt", &err);
}

#[test]
fn switching_space_is_refused_when_the_environment_names_the_target() {
    let out = Command::new(env!("CARGO_BIN_EXE_paas"))
        .args(["target", "-s", "other"])
        .env("PAAS_HOME", "/nonexistent/paas-home")
        .env("PAAS_API", "https://127.0.0.1:1")
        .env("PAAS_TOKEN", "t")
        .output()
        .expect("running paas");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0));
    assert!(stderr.contains("set PAAS_SPACE=other instead"), "{stderr}");
}
