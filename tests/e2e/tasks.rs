//! Tasks and the release phase through the CLI: one-off commands in containers of their
//! own from the app's droplet, their output in the app's logs, their ends recorded.

use crate::harness::{eventually, Daemon};

/// An app whose web process answers `version`, with `procfile` if given.
fn app_dir(version: &str, procfile: Option<&str>) -> tempfile::TempDir {
    let dir = crate::harness::answering_app(version);
    if let Some(p) = procfile {
        std::fs::write(dir.path().join("Procfile"), p).unwrap();
    }
    dir
}

fn tasks(d: &Daemon, app: &str) -> Vec<serde_json::Value> {
    let text = d.paas_ok(&["tasks", app, "--json"]);
    serde_json::from_str::<serde_json::Value>(&text)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// Waits until task `sequence` of `app` ended; returns it.
fn ended(d: &Daemon, app: &str, sequence: u64) -> serde_json::Value {
    let mut last = serde_json::Value::Null;
    let done = eventually(60, || {
        last = tasks(d, app)
            .into_iter()
            .find(|t| t["sequence"] == sequence)
            .unwrap_or_default();
        last["state"] != "running" && !last.is_null()
    });
    assert!(done, "task {sequence} did not end: {last}");
    last
}

#[test]
fn a_task_runs_once_with_the_app_s_env_and_its_end_is_recorded() {
    let d = Daemon::start();
    let dir = app_dir("web", None);
    let path = dir.path().to_str().unwrap();
    d.paas_ok(&[
        "push",
        "worky",
        "-p",
        path,
        "-b",
        "binary",
        "-c",
        "python3 server.py",
    ]);
    d.paas_ok(&["set-env", "worky", "GREETING", "hello"]);

    let out = d.paas_ok(&[
        "run-task",
        "worky",
        "echo task-says $GREETING from $PWD; ls server.py",
        "--name",
        "greet",
    ]);
    assert!(out.contains("Task 1 (greet)"), "{out}");
    let t = ended(&d, "worky", 1);
    assert_eq!(t["state"], "succeeded", "{t}");
    assert_eq!(t["exit_code"], 0, "{t}");
    let logs = d.paas_ok(&["logs", "worky", "--recent"]);
    assert!(
        logs.lines()
            .any(|l| l.contains("APP/TASK/greet")
                && l.contains("task-says hello from /home/vcap/app")),
        "{logs}"
    );
    assert!(
        logs.contains("APP/TASK/greet") && logs.contains("server.py"),
        "{logs}"
    );

    d.paas_ok(&["run-task", "worky", "echo about to fail; exit 3"]);
    let t = ended(&d, "worky", 2);
    assert_eq!(
        (t["state"].as_str(), t["exit_code"].as_i64()),
        (Some("failed"), Some(3)),
        "{t}"
    );
    assert_eq!(t["failure"], "exited with 3");
    assert_eq!(t["name"].as_str().unwrap().len(), 8, "a made-up name: {t}");

    d.paas_ok(&[
        "run-task",
        "worky",
        "sleep 600",
        "--name",
        "sleeper",
        "-m",
        "64M",
    ]);
    let running = tasks(&d, "worky");
    assert_eq!(running[2]["state"], "running", "{running:?}");
    assert_eq!(running[2]["memory"], 64);
    let out = d.paas_ok(&["terminate-task", "worky", "3"]);
    assert!(
        out.contains("Task 3 (sleeper) of app worky was terminated"),
        "{out}"
    );
    let t = ended(&d, "worky", 3);
    assert_eq!(t["failure"], "terminated", "{t}");
    let again = d.paas(&["terminate-task", "worky", "3"]);
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("has already ended"),
        "{again:?}"
    );
    let missing = d.paas(&["terminate-task", "worky", "9"]);
    assert!(String::from_utf8_lossy(&missing.stderr).contains("has no task 9"));

    let events = d.paas_ok(&["events", "worky"]);
    assert!(events.contains("task 1 (greet) succeeded"), "{events}");
    assert!(
        events.contains("task 3 (sleeper) failed: terminated"),
        "{events}"
    );
    assert_eq!(d.get("worky.localhost", "/").body, "web", "the app runs on");
    let bad = d.paas(&["run-task", "worky", "true", "--name", "no spaces"]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("is not allowed"));
}

#[test]
fn the_release_phase_runs_before_the_roll_out_and_a_failing_one_keeps_the_old_release() {
    let d = Daemon::start();
    let v1 = app_dir(
        "v1",
        Some("web: python3 server.py\nrelease: echo migrating to v1 with $GREETING\n"),
    );
    d.paas_ok(&[
        "push",
        "migrator",
        "-p",
        v1.path().to_str().unwrap(),
        "-b",
        "binary",
        "--no-start",
    ]);
    d.paas_ok(&["set-env", "migrator", "GREETING", "care"]);
    let out = d.paas_ok(&[
        "push",
        "migrator",
        "-p",
        v1.path().to_str().unwrap(),
        "-b",
        "binary",
    ]);
    assert!(
        out.contains("migrating to v1 with care"),
        "streamed into the push: {out}"
    );
    assert_eq!(d.get("migrator.localhost", "/").body, "v1");
    let logs = d.paas_ok(&["logs", "migrator", "--recent"]);
    assert!(
        logs.lines()
            .any(|l| l.contains("APP/TASK/release") && l.contains("migrating to v1")),
        "{logs}"
    );

    let v2 = app_dir(
        "v2",
        Some("web: python3 server.py\nrelease: echo migration breaks; exit 4\n"),
    );
    let out = d.paas(&[
        "push",
        "migrator",
        "-p",
        v2.path().to_str().unwrap(),
        "-b",
        "binary",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("the release phase") && err.contains("exited with 4"),
        "{err}"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("migration breaks"));
    assert_eq!(
        d.get("migrator.localhost", "/").body,
        "v1",
        "the old release serves"
    );
    let list = tasks(&d, "migrator");
    let states: Vec<&str> = list.iter().map(|t| t["state"].as_str().unwrap()).collect();
    assert_eq!(states, ["succeeded", "succeeded", "failed"], "{list:?}");

    // A restart with a changed env makes a revision, and runs its release phase with it,
    // as Heroku does; a plain restart does not.
    d.paas_ok(&["set-env", "migrator", "GREETING", "again"]);
    let out = d.paas_ok(&["restart", "migrator"]);
    assert!(out.contains("migrating to v1 with again"), "{out}");
    let out = d.paas_ok(&["restart", "migrator"]);
    assert!(!out.contains("migrating"), "a plain restart: {out}");
    // A rollback runs the release phase of the revision it restores, with its env.
    let out = d.paas_ok(&["rollback", "migrator", "--version", "2"]);
    assert!(out.contains("migrating to v1 with care"), "{out}");
    assert_eq!(tasks(&d, "migrator").len(), 5);
    let v2_revision = "3";
    let out = d.paas(&["rollback", "migrator", "--version", v2_revision]);
    assert!(
        !out.status.success(),
        "a failing release phase stops a rollback"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("the release phase"),
        "{out:?}"
    );
    let env = d.paas_ok(&["env", "migrator"]);
    assert!(
        env.contains("care"),
        "the rollback that failed changed nothing: {env}"
    );
}

#[test]
fn paas_run_streams_a_task_s_output_returns_its_exit_code_and_ends_it_when_left() {
    let d = Daemon::start();
    let dir = app_dir("web", None);
    let path = dir.path().to_str().unwrap();
    d.paas_ok(&[
        "push",
        "runner",
        "-p",
        path,
        "-b",
        "binary",
        "-c",
        "python3 server.py",
    ]);

    let out = d.paas(&[
        "run",
        "runner",
        "--",
        "echo out-line; echo err-line >&2; exit 5",
    ]);
    assert_eq!(out.status.code(), Some(5), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out-line\n");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("err-line"),
        "{out:?}"
    );
    let out = d.paas(&["run", "runner", "--", "echo", "two  words", "$HOME"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "two  words $HOME\n",
        "quoted word by word"
    );

    // Input goes through as it is typed, and its end is the task's end of file.
    let mut talk = d
        .as_cli(&mut std::process::Command::new(crate::harness::bin("paas")))
        .args([
            "run",
            "runner",
            "--",
            "while read l; do echo heard:$l; done; echo done",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = talk.stdin.take().unwrap();
    let mut output = std::io::BufReader::new(talk.stdout.take().unwrap());
    for word in ["first", "second"] {
        use std::io::{BufRead, Write};
        writeln!(input, "{word}").unwrap();
        input.flush().unwrap();
        let mut line = String::new();
        output.read_line(&mut line).unwrap();
        assert_eq!(
            line,
            format!("heard:{word}\n"),
            "an answer before the input ends"
        );
    }
    drop(input);
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut output, &mut rest).unwrap();
    assert_eq!(rest, "done\n");
    assert!(talk.wait().unwrap().success());

    // A client that leaves ends its task.
    let mut left = d.paas_spawn(&["run", "runner", "--name", "left", "--", "sleep 600"]);
    assert!(eventually(20, || tasks(&d, "runner")
        .iter()
        .any(|t| t["name"] == "left" && t["state"] == "running")));
    left.kill().unwrap();
    let _ = left.wait();
    let t = ended(&d, "runner", 4);
    assert_eq!(
        (t["name"].as_str(), t["failure"].as_str()),
        (Some("left"), Some("terminated")),
        "{t}"
    );
    let list = tasks(&d, "runner");
    assert_eq!(list[0]["exit_code"], 5);
    assert_eq!(list[1]["state"], "succeeded");
}

#[test]
fn deleting_an_app_ends_its_running_tasks() {
    let d = Daemon::start();
    let dir = app_dir("web", None);
    let path = dir.path().to_str().unwrap();
    d.paas_ok(&[
        "push",
        "doomed",
        "-p",
        path,
        "-b",
        "binary",
        "-c",
        "python3 server.py",
    ]);
    d.paas_ok(&["run-task", "doomed", "sleep 600", "--name", "long"]);
    let data = d.dir.path().to_str().unwrap().to_string();
    assert!(
        crate::harness::container_processes(&data).len() >= 2,
        "the app and its task"
    );
    d.paas_ok(&["delete", "doomed", "-f"]);
    assert!(
        eventually(30, || crate::harness::container_processes(&data).is_empty()),
        "left running: {:?}",
        crate::harness::container_processes(&data)
    );
}

#[test]
fn paas_run_from_a_terminal_gives_the_task_a_terminal_of_its_own() {
    let d = Daemon::start();
    let dir = app_dir("web", None);
    d.paas_ok(&[
        "push",
        "termy",
        "-p",
        dir.path().to_str().unwrap(),
        "-b",
        "binary",
        "-c",
        "python3 server.py",
    ]);
    // `script` runs paas on a pty of its own, as a person's terminal would be.
    let paas = crate::harness::bin("paas");
    let command = format!(
        "stty rows 33 cols 101; {} run termy -- 'tty; stty size; test -t 0 && echo stdin-is-a-tty; read l; echo got:$l; exit 4'",
        paas.display()
    );
    let mut session = d
        .as_cli(&mut std::process::Command::new("script"))
        .args(["-q", "-e", "-c", &command, "/dev/null"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut keys = session.stdin.take().unwrap();
    std::io::Write::write_all(&mut keys, b"typed\n").unwrap();
    // Kept open until the session ends: its end would be a Ctrl-D for the task.
    let began = std::time::Instant::now();
    let status = loop {
        if let Some(s) = session.try_wait().unwrap() {
            break s;
        }
        if began.elapsed() > std::time::Duration::from_secs(60) {
            let _ = session.kill();
            panic!("the session did not end within 60 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    drop(keys);
    let mut shown = String::new();
    std::io::Read::read_to_string(&mut session.stdout.take().unwrap(), &mut shown).unwrap();
    let lines: Vec<&str> = shown.lines().map(|l| l.trim_end_matches('\r')).collect();
    assert_eq!(status.code(), Some(4), "the task's exit code: {shown:?}");
    assert!(lines.contains(&"/dev/pts/0"), "its own pty: {shown:?}");
    assert!(
        lines.contains(&"33 101"),
        "the person's terminal size: {shown:?}"
    );
    assert!(lines.contains(&"stdin-is-a-tty"), "{shown:?}");
    assert!(lines.contains(&"got:typed"), "{shown:?}");

    // The person's terminal resized: so is the task's (SIGWINCH reaches paas, which
    // tells the API). Without job control, the background paas is in the pty's
    // foreground process group, and takes the pty as its input explicitly.
    let command = format!(
        "stty rows 33 cols 101; {} run termy -- 'stty size; sleep 3; stty size' </dev/tty & sleep 1.5; stty rows 40 cols 120; wait",
        paas.display()
    );
    let out = d
        .as_cli(&mut std::process::Command::new("script"))
        .args(["-q", "-e", "-c", &command, "/dev/null"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    let sizes: Vec<&str> = shown
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| l.contains(' ') && l.split(' ').all(|w| w.parse::<u16>().is_ok()))
        .collect();
    assert_eq!(sizes, ["33 101", "40 120"], "{shown:?}");

    // Without a terminal, or with --no-tty, pipes as before.
    let out = d.paas(&["run", "termy", "--", "test -t 0 || echo pipes"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "pipes\n", "{out:?}");
    let tasks = tasks(&d, "termy");
    assert_eq!(tasks.len(), 3, "{tasks:?}");
    assert_eq!(tasks[0]["exit_code"], 4);
}
