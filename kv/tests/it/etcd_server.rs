//! One real etcd for this test binary: Debian's `etcd-server`, on loopback ports of its
//! own, in a data folder under the temp folder. It is started by the first check that
//! needs it and ends with the test process (`setpriv --pdeathsig`, from a thread that
//! lives as long as the process).

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use paas_kv::etcd::EtcdKv;
use paas_kv::Kv;

static ENDPOINT: OnceLock<String> = OnceLock::new();

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Data folders of earlier runs whose process is gone.
fn remove_stale_data() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(pid) = name.strip_prefix("paas-kv-etcd-") {
            if !PathBuf::from(format!("/proc/{pid}")).exists() {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}

fn endpoint() -> &'static str {
    ENDPOINT.get_or_init(|| {
        remove_stale_data();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let dir = std::env::temp_dir().join(format!("paas-kv-etcd-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            let (client, peer) = (free_port(), free_port());
            let client_url = format!("http://127.0.0.1:{client}");
            let peer_url = format!("http://127.0.0.1:{peer}");
            let child = Command::new("setpriv")
                .args(["--pdeathsig", "KILL", "etcd"])
                .arg("--data-dir")
                .arg(&dir)
                .args(["--name", "test"])
                .args(["--listen-client-urls", &client_url])
                .args(["--advertise-client-urls", &client_url])
                .args(["--listen-peer-urls", &peer_url])
                .args(["--initial-advertise-peer-urls", &peer_url])
                .args(["--initial-cluster", &format!("test={peer_url}")])
                .args(["--logger", "zap", "--log-level", "error"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn();
            let mut child = match child {
                Ok(c) => c,
                Err(e) => {
                    let _ = tx.send(Err(format!(
                        "starting etcd: {e}: install etcd-server (scripts/install-deps.sh)"
                    )));
                    return;
                }
            };
            let _ = tx.send(Ok(client_url));
            // Lives until etcd ends, which is when this process does.
            let _ = child.wait();
        });
        rx.recv().unwrap().unwrap_or_else(|e| panic!("{e}"))
    })
}

/// A client of the shared etcd, once it answers (within 60 s).
pub async fn client() -> EtcdKv {
    let url = endpoint().to_string();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let last = match paas_kv::etcd::connect(std::slice::from_ref(&url)).await {
            Ok(kv) => match kv.get("t/ping").await {
                Ok(_) => return kv,
                Err(e) => e.to_string(),
            },
            Err(e) => e.to_string(),
        };
        assert!(
            tokio::time::Instant::now() < deadline,
            "etcd at {url} did not answer within 60 s: {last}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
