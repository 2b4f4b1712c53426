//! Connections bounded: caps in total and per client address, enforced at accept, and
//! HTTP/2 connections closed once idle even while their client keeps pinging.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use paas_router::{Backend, RouteTable, Router, RouterConfig};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

use crate::{eventually, session_backend};

/// A router with `config` serving `app.localhost` (a keep-alive app answering "app"):
/// its address and the router, for its metrics.
async fn capped_router(config: RouterConfig) -> (SocketAddr, Arc<Router>) {
    let app = session_backend("app").await;
    let mut t = RouteTable::new();
    t.insert("app.localhost", "app", vec![Backend::new(app, 0)]);
    let r = Arc::new(Router::with_config(config));
    r.update(t);
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(Arc::clone(&r).run(l, std::future::pending()));
    (addr, r)
}

/// Sends a keep-alive GET on `s` and reads its answer (a Content-Length body); an error
/// if the router closed the connection first (with what it said, if anything).
async fn get_on(s: &mut TcpStream) -> Result<String, String> {
    let req = b"GET / HTTP/1.1\r\nHost: app.localhost\r\n\r\n";
    if let Err(e) = s.write_all(req).await {
        return Err(format!("write: {e}"));
    }
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&got).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")?
                        .parse()
                        .ok()
                })
                .unwrap_or(0);
            if body.len() >= len {
                return Ok(text);
            }
        }
        let read = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await;
        match read {
            Ok(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
            _ => return Err(String::from_utf8_lossy(&got).into_owned()),
        }
    }
}

/// Connects and reads what the router says before it closes (it sends nothing first):
/// the answer of a refused connection.
async fn refused(addr: SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    assert!(
        read.is_ok(),
        "a connection over the cap must be closed at once; it was still open after 5 s"
    );
    String::from_utf8_lossy(&out).into_owned()
}

// Before: every connection was accepted and served, however many one client held.
#[tokio::test]
async fn a_client_over_its_connection_cap_is_refused_until_one_of_its_connections_closes() {
    let (addr, router) = capped_router(RouterConfig {
        max_connections_per_client: 2,
        ..Default::default()
    })
    .await;
    let mut first = TcpStream::connect(addr).await.unwrap();
    let mut second = TcpStream::connect(addr).await.unwrap();
    for s in [&mut first, &mut second] {
        let resp = get_on(s).await.unwrap();
        assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    }
    // A third from the same address: a short 503 and a close, before any request.
    let third = refused(addr).await;
    assert!(third.starts_with("HTTP/1.1 503"), "{third:?}");
    assert!(
        third.contains("x-paas-router-error: too_many_connections"),
        "{third}"
    );
    assert!(third.contains("connection: close"), "{third}");
    // The first two still work.
    for s in [&mut first, &mut second] {
        let resp = get_on(s).await.unwrap();
        assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    }
    let metrics = router.metrics().render(1);
    assert!(
        metrics.contains("paas_router_connections_refused_total{limit=\"per_client\"} 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("paas_router_connections_open 2\n"),
        "{metrics}"
    );
    // Once one closes, a new one is accepted (when the router has seen the close).
    drop(first);
    let resp = eventually(
        "a new connection accepted",
        Duration::from_secs(5),
        || async {
            let mut s = TcpStream::connect(addr).await.ok()?;
            get_on(&mut s).await.ok()
        },
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let resp = get_on(&mut second).await.unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
}

// Before: no total cap either.
#[tokio::test]
async fn connections_over_the_total_cap_are_refused() {
    let (addr, router) = capped_router(RouterConfig {
        max_connections: 2,
        ..Default::default()
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        assert!(get_on(&mut s).await.unwrap().starts_with("HTTP/1.1 200"));
        held.push(s);
    }
    let third = refused(addr).await;
    assert!(third.starts_with("HTTP/1.1 503"), "{third:?}");
    let metrics = router.metrics().render(1);
    assert!(
        metrics.contains("paas_router_connections_refused_total{limit=\"total\"} 1\n"),
        "{metrics}"
    );
    for s in &mut held {
        assert!(get_on(s).await.unwrap().starts_with("HTTP/1.1 200"));
    }
    held.pop();
    eventually(
        "a new connection accepted",
        Duration::from_secs(5),
        || async {
            let mut s = TcpStream::connect(addr).await.ok()?;
            get_on(&mut s).await.ok()
        },
    )
    .await;
}

/// A connection that counts the bytes written to it.
struct Counting {
    io: TcpStream,
    written: Arc<AtomicUsize>,
}

impl AsyncRead for Counting {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counting {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.io).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = written {
            this.written.fetch_add(n, Ordering::SeqCst);
        }
        written
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// An HTTP/2 (h2c) client connection to `addr` that PINGs every 100 ms, idle or not:
/// the request sender, the connection's task (ends when the connection does), and the
/// bytes the client wrote.
async fn pinging_h2_client(
    addr: SocketAddr,
) -> (
    hyper::client::conn::http2::SendRequest<Empty<Bytes>>,
    tokio::task::JoinHandle<Result<(), hyper::Error>>,
    Arc<AtomicUsize>,
) {
    let written = Arc::new(AtomicUsize::new(0));
    let io = Counting {
        io: TcpStream::connect(addr).await.unwrap(),
        written: Arc::clone(&written),
    };
    let (send, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .keep_alive_interval(Duration::from_millis(100))
        .keep_alive_timeout(Duration::from_secs(5))
        .keep_alive_while_idle(true)
        .handshake(TokioIo::new(io))
        .await
        .expect("HTTP/2 handshake");
    (send, tokio::spawn(conn), written)
}

// Before: hyper does not count a PING as a request, but has no idle timeout for HTTP/2
// at all: the connection stayed open for as long as the client liked.
#[tokio::test]
async fn an_http2_connection_that_only_pings_is_closed_after_its_idle_timeout() {
    let (addr, _router) = capped_router(RouterConfig {
        http2_idle_timeout: Duration::from_millis(600),
        ..Default::default()
    })
    .await;
    let started = std::time::Instant::now();
    let (send, conn, written) = pinging_h2_client(addr).await;
    let after_handshake = written.load(Ordering::SeqCst);
    let ended = tokio::time::timeout(Duration::from_secs(10), conn)
        .await
        .expect("the connection was still open after 10 s of pings and no request")
        .unwrap();
    assert!(ended.is_ok(), "a GOAWAY and a clean close: {ended:?}");
    let lasted = started.elapsed();
    assert!(
        lasted >= Duration::from_millis(500),
        "closed after {lasted:?}, before the timeout"
    );
    // PING frames are 17 bytes: the client pinged all along.
    let pinged = written.load(Ordering::SeqCst) - after_handshake;
    assert!(
        pinged >= 3 * 17,
        "the client wrote only {pinged} bytes after its handshake"
    );
    drop(send);
}

// A guard against an idle timeout that counts time rather than open streams.
#[tokio::test]
async fn an_http2_request_longer_than_the_idle_timeout_is_answered() {
    let slow = crate::slow_backend(Duration::from_millis(1500)).await;
    let mut t = RouteTable::new();
    t.insert("slow.localhost", "slow", vec![Backend::new(slow, 0)]);
    let addr = crate::router_with(
        RouterConfig {
            http2_idle_timeout: Duration::from_millis(500),
            ..Default::default()
        },
        t,
    )
    .await;
    let (mut send, conn, _) = pinging_h2_client(addr).await;
    let req = http::Request::get("http://slow.localhost/")
        .version(http::Version::HTTP_2)
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = send.send_request(req).await.expect("an answer");
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"slow");
    // Idle from then on: closed.
    let ended = tokio::time::timeout(Duration::from_secs(10), conn)
        .await
        .expect("closed once idle")
        .unwrap();
    assert!(ended.is_ok(), "a GOAWAY and a clean close: {ended:?}");
}
