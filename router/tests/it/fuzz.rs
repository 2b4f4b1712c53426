//! Randomised ("fuzz") tests of what clients control: Host values and whole request
//! heads, thrown at the real parser and router. Every input must end in a well-formed
//! answer or a closed connection, never a hang or a crash, and the router keeps serving.
//! (The libFuzzer target, router/fuzz/run.sh, throws far more inputs at the parsers alone.)

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use paas_router::{host, Backend, RouteTable, Router};
use proptest::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

proptest! {
    #[test]
    fn host_normalisation_never_panics_and_keeps_its_promises(raw in any::<String>()) {
        if let Some(h) = host::normalise(&raw) {
            prop_assert!(!h.is_empty() && h.len() <= 255);
            prop_assert_eq!(h.to_ascii_lowercase(), h.clone());
            if !h.starts_with('[') {
                prop_assert!(!h.ends_with('.') && !h.contains(':') && !h.contains(".."));
                prop_assert!(h.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b)));
            }
        }
    }

    #[test]
    fn host_like_strings_survive_case_port_and_trailing_dot(
        labels in prop::collection::vec("[a-zA-Z0-9-]{1,10}", 1..4),
        port in prop::option::of(1u16..),
        dot in any::<bool>(),
    ) {
        let name = labels.join(".");
        let raw = format!(
            "{name}{}{}",
            if dot { "." } else { "" },
            port.map(|p| format!(":{p}")).unwrap_or_default()
        );
        prop_assert_eq!(host::normalise(&raw), Some(name.to_ascii_lowercase()));
    }
}

/// Pieces request heads are made of: valid ones, and the ones attacks use.
fn piece() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("GET / HTTP/1.1\r\n".to_string()),
        Just("POST /x HTTP/1.1\r\n".to_string()),
        Just("GET http://app.localhost/abs HTTP/1.1\r\n".to_string()),
        Just("GET / HTTP/1.0\r\n".to_string()),
        Just("Host: app.localhost\r\n".to_string()),
        Just("Host: APP.localhost.:80\r\n".to_string()),
        Just("Host: app.localhost\r\nHost: other.localhost\r\n".to_string()),
        Just("Host: [::1]\r\n".to_string()),
        Just("Host: a b\r\n".to_string()),
        Just("Content-Length: 5\r\n".to_string()),
        Just("Content-Length: 5, 5\r\n".to_string()),
        Just("Content-Length: -1\r\n".to_string()),
        Just("Transfer-Encoding: chunked\r\n".to_string()),
        Just("Transfer-Encoding: gzip, chunked\r\n".to_string()),
        Just("Transfer-Encoding: chunked, identity\r\n".to_string()),
        Just("Transfer-Encoding : chunked\r\n".to_string()),
        Just(" folded: line\r\n".to_string()),
        Just("Connection: close, host\r\n".to_string()),
        Just("Upgrade: websocket\r\nConnection: upgrade\r\n".to_string()),
        Just("X-Paas-App-Instance: app:0\r\n".to_string()),
        Just("X-Paas-App-Instance: app:99999999999\r\n".to_string()),
        Just("\r\n".to_string()),
        Just("0\r\n\r\n".to_string()),
        Just("hello".to_string()),
        "[ -~]{0,40}\r\n",
        prop::collection::vec(any::<u8>(), 0..40)
            .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
    ]
}

/// One router (and app) for every case, on a runtime of its own.
fn router() -> &'static (tokio::runtime::Runtime, SocketAddr) {
    static ROUTER: OnceLock<(tokio::runtime::Runtime, SocketAddr)> = OnceLock::new();
    ROUTER.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let addr = rt.block_on(async {
            let app = crate::backend("app").await;
            let mut t = RouteTable::new();
            t.insert("app.localhost", "app", vec![Backend::new(app, 0)]);
            let r = std::sync::Arc::new(Router::new());
            r.update(t);
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = l.local_addr().unwrap();
            tokio::spawn(r.run(l, std::future::pending()));
            addr
        });
        (rt, addr)
    })
}

/// Sends `bytes`, closes the sending side, and reads what comes back (bounded).
fn exchange(bytes: &[u8]) -> Vec<u8> {
    let (rt, addr) = router();
    rt.block_on(async {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let _ = s.write_all(bytes).await;
        let _ = s.shutdown().await;
        let mut out = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(15), s.read_to_end(&mut out)).await;
        assert!(
            read.is_ok(),
            "the router neither answered nor closed within 15 s"
        );
        out
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn any_request_head_gets_a_well_formed_answer_or_a_close(
        pieces in prop::collection::vec(piece(), 0..8),
    ) {
        let head = pieces.concat();
        let answer = exchange(head.as_bytes());
        if !answer.is_empty() {
            let text = String::from_utf8_lossy(&answer);
            let status = text.get(..12).unwrap_or("");
            prop_assert!(
                (status.starts_with("HTTP/1.1 ") || status.starts_with("HTTP/1.0 "))
                    && status[9..12].bytes().all(|b| b.is_ascii_digit()),
                "{head:?} got {text:?}"
            );
            // The app is reached only by a request that names it.
            if text.contains("\r\n\r\napp\n") {
                prop_assert!(head.to_ascii_lowercase().contains("app.localhost"), "{head:?}");
            }
        }
    }
}

#[test]
fn the_router_still_serves_after_the_random_heads() {
    let answer = exchange(b"GET / HTTP/1.1\r\nHost: app.localhost\r\nConnection: close\r\n\r\n");
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"));
}
