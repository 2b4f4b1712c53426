//! Stacks: a Debian root filesystem built by `paasd stack build` (mmdebstrap, from this
//! host's apt sources), that apps are staged and run on instead of the host's `/usr`.

use std::process::Command;

use crate::harness::{bin, repo, Daemon};

#[test]
fn an_app_on_a_built_stack_sees_the_stack_s_usr_not_the_host_s() {
    // Built into the data folder before paasd starts, as an operator would.
    let data = tempfile::tempdir().unwrap();
    let built = Command::new(bin("paasd"))
        .arg("--data-dir")
        .arg(data.path())
        .args(["stack", "build"])
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "paasd stack build: {}",
        String::from_utf8_lossy(&built.stderr)
    );
    assert!(String::from_utf8_lossy(&built.stdout).contains("Built stack bookworm"));
    let d = Daemon::start_in(data, &[]);

    let listed: Vec<serde_json::Value> =
        serde_json::from_str(&d.paas_ok(&["stacks", "--json"])).unwrap();
    let names: Vec<&str> = listed.iter().filter_map(|s| s["name"].as_str()).collect();
    assert_eq!(names, ["host", "bookworm"]);
    assert_eq!(listed[1]["default"], true, "a built stack is the default");

    // The host has mmdebstrap (it built the stack); the stack has no such package.
    let host_only = "/usr/bin/mmdebstrap";
    assert!(std::path::Path::new(host_only).exists());
    let path = repo().join("examples/python-app");
    let path = path.to_str().unwrap();
    let staged = d.paas_ok(&["push", "on-stack", "-p", path]);
    assert!(staged.contains("Python: Python 3"), "{staged}");
    d.paas_ok(&["push", "on-host", "-p", path, "-s", "host"]);
    let probe = format!("echo $CF_STACK; test -e {host_only} && echo host-usr || echo stack-usr");
    assert_eq!(
        d.paas_ok(&["exec", "on-stack", "--", "sh", "-c", &probe])
            .trim(),
        "bookworm\nstack-usr"
    );
    assert_eq!(
        d.paas_ok(&["exec", "on-host", "--", "sh", "-c", &probe])
            .trim(),
        "host\nhost-usr"
    );
    assert_eq!(
        d.get("on-stack.localhost", "/").status,
        200,
        "it answers through the router"
    );

    // The stack is the app's, recorded in its settings; an unknown one is refused.
    let app: serde_json::Value =
        serde_json::from_str(&d.paas_ok(&["app", "on-stack", "--json"])).unwrap();
    assert_eq!(app["settings"]["stack"], "bookworm", "{app}");
    let out = d.paas(&["push", "on-stack", "-p", path, "-s", "cflinuxfs9"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("paas stacks"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
