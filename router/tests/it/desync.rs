//! Request smuggling and slow clients, spoken in raw bytes. Each hostile request carries
//! a second request behind it; the router must answer 400 (or 431), close the
//! connection, and never let either request reach the app.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use paas_router::{Backend, RouteTable, Router, RouterConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::spawn_backend;

/// A backend that counts the requests it is sent (by their request lines, so that a
/// chunked body's end is not taken for another request) and answers each.
async fn counting_backend() -> (SocketAddr, Arc<AtomicUsize>) {
    let seen = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&seen);
    let addr = spawn_backend(move |mut s| {
        let count = Arc::clone(&count);
        async move {
            let mut buf = vec![0u8; 65536];
            let mut n_total = Vec::new();
            while let Ok(n) = s.read(&mut buf).await {
                if n == 0 {
                    return;
                }
                n_total.extend_from_slice(&buf[..n]);
                let line = b" HTTP/1.1\r\n";
                while let Some(at) = n_total.windows(line.len()).position(|w| w == line) {
                    count.fetch_add(1, Ordering::SeqCst);
                    n_total.drain(..at + line.len());
                    let _ = s
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                        .await;
                }
            }
        }
    })
    .await;
    (addr, seen)
}

async fn router(backend: SocketAddr, config: RouterConfig) -> SocketAddr {
    let r = Arc::new(Router::with_config(config));
    let mut t = RouteTable::new();
    t.insert("app.localhost", "app", vec![Backend::new(backend, 0)]);
    r.update(t);
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(r.run(l, std::future::pending()));
    addr
}

/// Sends raw bytes and reads until the router closes the connection (or 5 s pass).
async fn exchange(router: SocketAddr, raw: &[u8]) -> String {
    let mut s = TcpStream::connect(router).await.unwrap();
    s.write_all(raw).await.unwrap();
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    assert!(
        read.is_ok(),
        "the router must close the connection; got so far: {}",
        String::from_utf8_lossy(&out)
    );
    String::from_utf8_lossy(&out).into_owned()
}

/// Responses in a byte stream: status lines at the start of a line.
fn responses(raw: &str) -> usize {
    raw.lines().filter(|l| l.starts_with("HTTP/1.1 ")).count()
}

const SMUGGLED: &str = "GET /smuggled HTTP/1.1\r\nHost: app.localhost\r\n\r\n";

#[tokio::test]
async fn smuggling_framings_are_refused_and_the_connection_closed() {
    let cases: Vec<(&str, String)> = vec![
        // Framings hyper would resolve by itself (it drops the length, or counts two equal
        // lengths as one): refused on the wire before hyper reads them (framing.rs).
        ("CL.TE", format!("POST / HTTP/1.1\r\nHost: app.localhost\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{SMUGGLED}")),
        ("TE.CL", format!("POST / HTTP/1.1\r\nHost: app.localhost\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n5c\r\n{SMUGGLED}\r\n0\r\n\r\n")),
        ("duplicate CL", format!("POST / HTTP/1.1\r\nHost: app.localhost\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello{SMUGGLED}")),
        ("differing CL", format!("POST / HTTP/1.1\r\nHost: app.localhost\r\nContent-Length: 5\r\nContent-Length: 47\r\n\r\nhello{SMUGGLED}")),
        ("CL list", format!("POST / HTTP/1.1\r\nHost: app.localhost\r\nContent-Length: 5, 47\r\n\r\nhello{SMUGGLED}")),
        ("TE not chunked", format!("POST / HTTP/1.1\r\nHost: app.localhost\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n{SMUGGLED}")),
        ("TE chunked then identity", format!("POST / HTTP/1.1\r\nHost: app.localhost\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n{SMUGGLED}")),
        ("TE twice", format!("POST / HTTP/1.1\r\nHost: app.localhost\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n{SMUGGLED}")),
        ("TE space before colon", format!("POST / HTTP/1.1\r\nHost: app.localhost\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n{SMUGGLED}")),
        ("TE vertical tab", format!("POST / HTTP/1.1\r\nHost: app.localhost\r\nTransfer-Encoding:\x0bchunked\r\n\r\n0\r\n\r\n{SMUGGLED}")),
        ("no Host", format!("GET / HTTP/1.1\r\n\r\n{SMUGGLED}")),
        ("two Hosts", format!("GET / HTTP/1.1\r\nHost: app.localhost\r\nHost: other.localhost\r\n\r\n{SMUGGLED}")),
        ("invalid Host", format!("GET / HTTP/1.1\r\nHost: app localhost\r\n\r\n{SMUGGLED}")),
    ];
    let (backend, seen) = counting_backend().await;
    let r = router(backend, RouterConfig::default()).await;
    for (name, raw) in cases {
        let resp = exchange(r, raw.as_bytes()).await;
        assert!(resp.starts_with("HTTP/1.1 400"), "{name}: {resp}");
        assert_eq!(
            responses(&resp),
            1,
            "{name}: only one response, then close: {resp}"
        );
        assert_eq!(
            seen.load(Ordering::SeqCst),
            0,
            "{name}: nothing reached the app"
        );
    }
    // A sound request, then a smuggling one on the same connection: the first is
    // answered, then the second is refused and the connection closed.
    let before = seen.load(Ordering::SeqCst);
    let pipelined = format!(
        "POST / HTTP/1.1\r\nHost: app.localhost\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nPOST / HTTP/1.1\r\nHost: app.localhost\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{SMUGGLED}"
    );
    let resp = exchange(r, pipelined.as_bytes()).await;
    // The app's body ("ok") ends without a newline: count status lines anywhere.
    assert_eq!(resp.matches("HTTP/1.1 ").count(), 2, "{resp}");
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let second = &resp[resp.rfind("HTTP/1.1 ").unwrap()..];
    assert!(second.starts_with("HTTP/1.1 400"), "{resp}");
    assert!(
        second
            .to_ascii_lowercase()
            .contains("x-paas-router-error: bad_request"),
        "{resp}"
    );
    assert_eq!(
        seen.load(Ordering::SeqCst),
        before + 1,
        "only the sound request reached the app"
    );
    // The same router still serves a well-formed request.
    let ok = exchange(
        r,
        b"GET / HTTP/1.1\r\nHost: app.localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    assert_eq!(seen.load(Ordering::SeqCst), before + 2);
}

#[tokio::test]
async fn oversized_heads_get_431() {
    let (backend, seen) = counting_backend().await;
    let r = router(
        backend,
        RouterConfig {
            max_header_bytes: 16 * 1024,
            ..RouterConfig::default()
        },
    )
    .await;
    let raw = format!(
        "GET / HTTP/1.1\r\nHost: app.localhost\r\nX-Big: {}\r\n\r\n",
        "a".repeat(32 * 1024)
    );
    let resp = exchange(r, raw.as_bytes()).await;
    assert!(resp.starts_with("HTTP/1.1 431"), "{resp}");
    assert_eq!(seen.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_client_that_sends_its_headers_too_slowly_is_cut_off() {
    let (backend, seen) = counting_backend().await;
    let r = router(
        backend,
        RouterConfig {
            header_read_timeout: Duration::from_millis(500),
            ..RouterConfig::default()
        },
    )
    .await;
    let mut s = TcpStream::connect(r).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: app.localhost\r\n")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .expect("closed by the router")
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "not before the timeout"
    );
    assert_eq!(seen.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn request_ids_are_kept_or_made_and_echoed() {
    let (backend, _) = counting_backend().await;
    let r = router(backend, RouterConfig::default()).await;
    let resp = exchange(r, b"GET / HTTP/1.1\r\nHost: app.localhost\r\nX-Request-Id: abc-123\r\nConnection: close\r\n\r\n").await;
    assert!(
        resp.to_ascii_lowercase()
            .contains("x-request-id: abc-123\r\n"),
        "{resp}"
    );
    let resp = exchange(r, b"GET / HTTP/1.1\r\nHost: app.localhost\r\nX-Request-Id: bad id!\r\nConnection: close\r\n\r\n").await;
    let id = resp
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("x-request-id: ")
                .map(str::to_string)
        })
        .unwrap();
    assert_eq!(id.len(), 36, "a new UUID-shaped id: {id}");
}
