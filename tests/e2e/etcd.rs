//! paasd keeping its records in a real etcd (`--etcd-endpoints`): the app model written
//! once on the state store interface runs the same there as on the embedded SQLite.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use crate::harness::{bin, eventually, repo, Daemon};

/// One etcd member on loopback ports of its own, with its data in a temporary folder;
/// killed when dropped (and with this process, through `setpriv --pdeathsig`).
pub struct Etcd {
    child: Child,
    _data: tempfile::TempDir,
    pub url: String,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Etcd {
    pub fn start() -> Etcd {
        let data = tempfile::tempdir().unwrap();
        let url = format!("http://127.0.0.1:{}", free_port());
        let peer = format!("http://127.0.0.1:{}", free_port());
        let child = Command::new("setpriv")
            .args(["--pdeathsig", "KILL", "etcd"])
            .arg("--data-dir")
            .arg(data.path())
            .args(["--name", "e2e"])
            .args(["--listen-client-urls", &url])
            .args(["--advertise-client-urls", &url])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("e2e={peer}")])
            .args(["--logger", "zap", "--log-level", "error"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting etcd: install etcd-server (scripts/install-deps.sh)");
        let etcd = Etcd {
            child,
            _data: data,
            url,
        };
        assert!(
            eventually(60, || etcd.keys("/").is_some()),
            "etcd at {} did not answer within 60 s",
            etcd.url
        );
        etcd
    }

    /// The keys under `prefix`, read through etcd's own JSON gateway (`/v3/kv/range`);
    /// `None` when etcd does not answer.
    pub fn keys(&self, prefix: &str) -> Option<Vec<String>> {
        let body = serde_json::json!({
            "key": base64(prefix.as_bytes()),
            "range_end": base64(&prefix_end(prefix.as_bytes())),
            "keys_only": true,
        });
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "5", "-X", "POST", "-d"])
            .arg(body.to_string())
            .arg(format!("{}/v3/kv/range", self.url))
            .output()
            .ok()?;
        let answer: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        answer.get("header")?;
        let kvs = answer["kvs"].as_array().cloned().unwrap_or_default();
        Some(
            kvs.iter()
                .filter_map(|kv| kv["key"].as_str())
                .map(|k| String::from_utf8_lossy(&unbase64(k)).into_owned())
                .collect(),
        )
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The first key past every key that starts with `prefix`, as etcd's range_end wants.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn unbase64(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let (mut n, mut bits) = (0u32, 0);
    for c in text.bytes().take_while(|c| *c != b'=') {
        let Some(v) = ALPHABET.iter().position(|a| *a == c) else {
            continue;
        };
        n = n << 6 | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((n >> bits) as u8);
        }
    }
    out
}

#[test]
fn base64_round_trips() {
    for s in ["", "a", "ab", "abc", "/paas/apps/\u{ff}"] {
        assert_eq!(unbase64(&base64(s.as_bytes())), s.as_bytes());
    }
    assert_eq!(base64(b"/paas/"), "L3BhYXMv");
}

#[test]
fn an_app_pushed_to_a_paasd_on_etcd_lives_in_etcd_and_comes_back_after_a_crash() {
    let etcd = Etcd::start();
    let mut d = Daemon::start_with(&["--etcd-endpoints", &etcd.url]);
    let path = repo().join("examples/python-app");
    d.paas_ok(&["push", "kept", "-p", path.to_str().unwrap()]);
    d.paas_ok(&["set-env", "kept", "GREETING", "from-etcd"]);
    assert_eq!(d.get("kept.localhost", "/").status, 200);

    let apps = etcd.keys("/paas/apps/").unwrap();
    assert_eq!(apps, ["/paas/apps/kept"], "the app's record is in etcd");
    let routes = etcd.keys("/paas/routes/").unwrap();
    assert_eq!(routes, ["/paas/routes/kept.localhost"]);
    let releases = etcd.keys("/paas/releases/").unwrap();
    assert_eq!(releases.len(), 1, "one release: {releases:?}");
    assert!(
        !etcd.keys("/paas/events/").unwrap().is_empty(),
        "its events too"
    );

    d.crash_and_restart();
    let start = Instant::now();
    assert!(
        eventually(30, || d.get("kept.localhost", "/").status == 200),
        "the app answers again after paasd restarts on the same etcd"
    );
    eprintln!("app answered again {:?} after the restart", start.elapsed());
    let env = d.paas_ok(&["env", "kept"]);
    assert!(env.contains("from-etcd"), "its environment is kept: {env}");
    let apps = d.paas_ok(&["apps"]);
    assert!(apps.contains("kept"), "{apps}");
}

#[test]
fn paasd_says_which_etcd_it_cannot_reach() {
    let data = tempfile::tempdir().unwrap();
    // Nothing listens on port 1 of loopback.
    let out = Command::new(bin("paasd"))
        .arg("--data-dir")
        .arg(data.path())
        .args(["--etcd-endpoints", "http://127.0.0.1:1"])
        .args([
            "--api-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
        ])
        .args([
            "--https-listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .env("PAASD_LOG", "error")
        .stdin(Stdio::null())
        .output()
        .expect("running paasd");
    assert!(
        !out.status.success(),
        "paasd must not start without its etcd"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("connecting to etcd at http://127.0.0.1:1 (--etcd-endpoints)"),
        "{err}"
    );
}
