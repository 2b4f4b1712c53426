//! Terminal escapes from a tenant's output, seen where a person sees them: `paas push`,
//! `paas logs` and `paas exec` run under a pseudo-terminal (util-linux `script`), and the
//! same commands piped. On a terminal the escapes arrive as visible text and never as
//! raw bytes (CVE-2021-25743 is kubectl's bug of this kind); piped, the output is
//! byte-exact, for scripts and files.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::harness::{bin, Daemon};

/// A script that prints, on stdout and (prefixed `err-`) on stderr, one line of what a
/// hostile app might: an OSC 52 clipboard write, an OSC 8 hyperlink, a screen clear and
/// a cursor move up, a window title, a DCS, a C1 CSI (U+009B), a carriage return that
/// overprints, and a right-to-left override (U+202E).
const PAYLOAD_SH: &str = r#"p='hostile:\033]52;c;aGFja2Vk\007|\033]8;;http://evil.example/\033\\link\033]8;;\033\\|\033[2J\033[1A|\033]0;pwned\007|\033P+q\033\\|\302\233|over\rwrite|\342\200\256|end\n'
printf "$p"
printf "err-$p" >&2
"#;

/// The payload line as the app printed it.
const RAW: &[u8] = b"hostile:\x1b]52;c;aGFja2Vk\x07|\x1b]8;;http://evil.example/\x1b\\link\x1b]8;;\x1b\\|\x1b[2J\x1b[1A|\x1b]0;pwned\x07|\x1bP+q\x1b\\|\xc2\x9b|over\rwrite|\xe2\x80\xae|end";

/// The payload line as a terminal should show it.
const SHOWN: &str = "hostile:^[]52;c;aGFja2Vk^G|^[]8;;http://evil.example/^[\\link^[]8;;^[\\|^[[2J^[[1A|^[]0;pwned^G|^[P+q^[\\|<U+009B>|over^Mwrite|<U+202E>|end";

/// A buildpack that always detects and prints the payload while it compiles, and an app
/// folder holding the payload script; the app prints it again when it starts.
fn hostile_app(d: &Daemon) -> (tempfile::TempDir, tempfile::TempDir) {
    let bp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(bp.path().join("bin")).unwrap();
    for (name, body) in [("detect", "exit 0"), ("compile", "bash \"$1/payload.sh\"")] {
        let p = bp.path().join("bin").join(name);
        std::fs::write(&p, format!("#!/bin/bash\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    d.paas_ok(&["create-buildpack", "hostile", bp.path().to_str().unwrap()]);
    let app = tempfile::tempdir().unwrap();
    std::fs::write(app.path().join("payload.sh"), PAYLOAD_SH).unwrap();
    (bp, app)
}

/// The push arguments for the hostile app in `dir`.
fn push_args<'a>(name: &'a str, dir: &'a Path) -> Vec<&'a str> {
    vec![
        "push",
        name,
        "-p",
        dir.to_str().unwrap(),
        "-b",
        "hostile",
        "-m",
        "64M",
        "-c",
        "bash payload.sh; exec python3 -m http.server $PORT",
    ]
}

/// `'arg'` for a POSIX shell.
fn quote(arg: &str) -> String {
    format!("'{}'", arg.replace('\'', r"'\''"))
}

/// Runs the CLI with stdout and stderr on a pseudo-terminal (its stdin is not one) and
/// returns what reached the terminal. Colour is off so that every ESC byte seen is one
/// the CLI passed on from the tenant.
fn paas_on_terminal(d: &Daemon, args: &[&str]) -> Vec<u8> {
    paas_on_terminal_with(d, args, "")
}

/// Like [`paas_on_terminal`], with `redirect` (e.g. `2>FILE`) added to the command line.
fn paas_on_terminal_with(d: &Daemon, args: &[&str], redirect: &str) -> Vec<u8> {
    let mut line = quote(bin("paas").to_str().unwrap());
    for a in args {
        line.push(' ');
        line.push_str(&quote(a));
    }
    line.push(' ');
    line.push_str(redirect);
    let out = d
        .as_cli(&mut Command::new("script"))
        .args(["-qec", &line, "/dev/null"])
        .env("NO_COLOR", "1")
        .env("SHELL", "/bin/sh")
        .output()
        .expect("running script (util-linux)");
    assert!(
        out.status.success(),
        "paas {args:?} on a terminal failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout)
    );
    out.stdout
}

/// Fails if `seen` holds a byte or character a terminal would act on rather than show:
/// ESC, BEL, another C0 control (a CR only as the terminal's own CR LF), DEL, a C1
/// control or a bidirectional override.
fn assert_inert(what: &str, seen: &[u8]) {
    let text = String::from_utf8_lossy(seen);
    let bad = text.char_indices().find(|&(i, c)| {
        let own_crlf = c == '\r' && text[i + 1..].starts_with('\n');
        (c.is_control() && c != '\n' && c != '\t' && !own_crlf)
            || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    });
    assert!(
        bad.is_none(),
        "{what}: {:?} reached the terminal raw at byte {}:\n{text:?}",
        bad.unwrap().1,
        bad.unwrap().0
    );
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The recent logs, piped, once they hold both payload lines (the app prints them as it
/// starts, so they are normally there when push returns).
fn recent_logs_with_payload(d: &Daemon, name: &str) -> Vec<u8> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = d.paas(&["logs", name, "--recent"]);
        assert!(out.status.success(), "{out:?}");
        let both = [b"OUT hostile:".as_slice(), b"ERR err-hostile:"]
            .iter()
            .all(|n| contains(&out.stdout, n) && contains(&out.stdout, b"[APP/PROC/WEB/0]"));
        if both || Instant::now() > deadline {
            return out.stdout;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn staging_and_app_escapes_reach_a_terminal_as_text_and_a_pipe_byte_exact() {
    let d = Daemon::start();
    let (_bp, app) = hostile_app(&d);

    // The staging log, as push streams it to stdout. Its stderr (where the upload's
    // progress bar draws itself with escapes of its own) goes to a file.
    let scratch = tempfile::tempdir().unwrap();
    let stderr = scratch.path().join("push-stderr");
    let redirect = format!("2>{}", quote(stderr.to_str().unwrap()));
    let push = paas_on_terminal_with(&d, &push_args("hostile", app.path()), &redirect);
    assert_inert("paas push", &push);
    let push = String::from_utf8_lossy(&push);
    assert!(
        push.contains(&format!("   {SHOWN}"))
            && push.contains(&format!("   err-{SHOWN}"))
            && push.contains("is running 1 instance(s)"),
        "push shows the staging payload as text:\n{push}"
    );

    // Piped, `paas logs` passes the app's bytes on as they are.
    let piped = recent_logs_with_payload(&d, "hostile");
    for stream in ["OUT ", "ERR err-"] {
        let line = [stream.as_bytes(), RAW, b"\n"].concat();
        assert!(
            contains(&piped, &line),
            "piped logs hold {stream}payload byte for byte:\n{:?}",
            String::from_utf8_lossy(&piped)
        );
    }
    assert!(
        contains(&piped, &[b"[STG] OUT ", RAW, b"\n"].concat()),
        "{}",
        String::from_utf8_lossy(&piped)
    );

    // On a terminal, every line (staging's and the app's) is shown, none acted on.
    let shown = paas_on_terminal(&d, &["logs", "hostile", "--recent"]);
    assert_inert("paas logs --recent", &shown);
    let shown = String::from_utf8_lossy(&shown);
    for source in [
        "[STG] OUT ",
        "[APP/PROC/WEB/0] OUT ",
        "[APP/PROC/WEB/0] ERR err-",
    ] {
        assert!(
            shown.contains(&format!("{source}{SHOWN}\r\n")),
            "the terminal shows {source}payload as text:\n{shown}"
        );
    }
}

#[test]
fn exec_output_reaches_a_terminal_as_text_and_a_pipe_byte_exact() {
    let d = Daemon::start();
    let (_bp, app) = hostile_app(&d);
    d.paas_ok(&push_args("execed", app.path()));
    let command = ["exec", "execed", "--", "bash", "/home/vcap/app/payload.sh"];

    let piped = d.paas(&command);
    assert!(piped.status.success(), "{piped:?}");
    // Compared as bytes; shown as text with escapes (`{:?}`) when they differ.
    assert_eq!(
        String::from_utf8_lossy(&piped.stdout),
        String::from_utf8_lossy(&[RAW, b"\n"].concat()),
        "piped stdout is byte-exact"
    );
    assert_eq!(
        String::from_utf8_lossy(&piped.stderr),
        String::from_utf8_lossy(&[b"err-", RAW, b"\n"].concat()),
        "piped stderr is byte-exact"
    );
    assert_eq!(piped.stdout, [RAW, b"\n"].concat());
    assert_eq!(piped.stderr, [b"err-", RAW, b"\n"].concat());

    let shown = paas_on_terminal(&d, &command);
    assert_inert("paas exec", &shown);
    let shown = String::from_utf8_lossy(&shown);
    assert!(
        shown.contains(&format!("{SHOWN}\r\n")) && shown.contains(&format!("err-{SHOWN}\r\n")),
        "the terminal shows the command's stdout and stderr as text:\n{shown}"
    );
}
