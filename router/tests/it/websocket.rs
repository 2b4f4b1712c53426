//! WebSockets: the tunnel opens only after the app answers 101.

use std::net::SocketAddr;

use paas_router::{Backend, RouteTable, RouterConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::spawn_backend;

/// A backend that accepts upgrades when `accept`, then echoes every byte upper-cased;
/// otherwise answers 200 "no upgrade" and keeps speaking HTTP.
async fn ws_backend(accept: bool) -> SocketAddr {
    spawn_backend(move |mut s| async move {
            let mut buf = vec![0u8; 8192];
            loop {
                let mut head = Vec::new();
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = s.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    head.extend_from_slice(&buf[..n]);
                }
                let text = String::from_utf8_lossy(&head).into_owned();
                let lower = text.to_ascii_lowercase();
                if accept && lower.starts_with("get ") && lower.contains("upgrade: websocket") {
                    let key = text
                        .lines()
                        .find_map(|l| {
                            let (name, value) = l.split_once(':')?;
                            name.eq_ignore_ascii_case("sec-websocket-key")
                                .then(|| value.trim().to_string())
                        })
                        .unwrap_or_default();
                    let answer = format!(
                        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\nSec-WebSocket-Protocol: chat\r\n\r\n",
                        accept_for(&key)
                    );
                    s.write_all(answer.as_bytes()).await.unwrap();
                    loop {
                        let n = s.read(&mut buf).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        let up = buf[..n].to_ascii_uppercase();
                        s.write_all(&up).await.unwrap();
                    }
                }
                s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nno upgrade")
                    .await
                    .unwrap();
            }
    })
    .await
}

/// RFC 6455's `Sec-WebSocket-Accept` for `key`, as an app computes it.
fn accept_for(key: &str) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(key.as_bytes());
    ctx.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    let digest = ctx.finish();
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in digest.as_ref().chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            out.push(if i <= chunk.len() {
                alphabet[(n >> (18 - 6 * i) & 63) as usize] as char
            } else {
                '='
            });
        }
    }
    out
}

/// A router with `ws.localhost` routed to a [`ws_backend`] that accepts upgrades or not.
async fn ws_router(accept: bool) -> SocketAddr {
    ws_router_with(accept, RouterConfig::default()).await
}

/// [`ws_router`] with `config`.
async fn ws_router_with(accept: bool, config: RouterConfig) -> SocketAddr {
    let app = ws_backend(accept).await;
    let mut t = RouteTable::new();
    t.insert("ws.localhost", "ws", vec![Backend::new(app, 0)]);
    crate::router_with(config, t).await
}

const UPGRADE: &str = "GET /chat HTTP/1.1\r\nHost: ws.localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

async fn read_until(s: &mut TcpStream, want: &str) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while !String::from_utf8_lossy(&got).contains(want) {
        let n = tokio::time::timeout_at(deadline, s.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("no {want:?} in {:?}", String::from_utf8_lossy(&got)))
            .unwrap();
        assert!(
            n > 0,
            "closed before {want:?}: {:?}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test]
async fn a_websocket_tunnel_carries_bytes_both_ways_after_101() {
    let r = ws_router(true).await;
    let mut s = TcpStream::connect(r).await.unwrap();
    s.write_all(UPGRADE.as_bytes()).await.unwrap();
    let head = read_until(&mut s, "\r\n\r\n").await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let lower = head.to_ascii_lowercase();
    assert!(
        lower.contains("upgrade: websocket") && lower.contains("connection: upgrade"),
        "{head}"
    );
    assert!(
        lower.contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
        "the app's answer to the client's own key passes through: {head}"
    );
    for msg in ["hello", "again"] {
        s.write_all(msg.as_bytes()).await.unwrap();
        read_until(&mut s, &msg.to_ascii_uppercase()).await;
    }
}

#[tokio::test]
async fn no_tunnel_opens_when_the_app_does_not_switch_protocols() {
    let r = ws_router(false).await;
    let mut s = TcpStream::connect(r).await.unwrap();
    s.write_all(UPGRADE.as_bytes()).await.unwrap();
    let first = read_until(&mut s, "no upgrade").await;
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    // The connection still speaks HTTP to the router: the next bytes are a request it
    // parses and routes, not raw bytes tunnelled to the app.
    s.write_all(b"GET /next HTTP/1.1\r\nHost: nowhere.localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let second = read_until(&mut s, "x-paas-router-error").await;
    assert!(second.contains("HTTP/1.1 404"), "{second}");
}

/// Opens an HTTP/2 connection (h2c) to the router and sends an extended CONNECT for a
/// WebSocket (RFC 8441) to `ws.localhost/chat`.
async fn h2_websocket(r: SocketAddr) -> http::Response<hyper::body::Incoming> {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let tcp = TcpStream::connect(r).await.unwrap();
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .expect("HTTP/2 handshake");
    tokio::spawn(conn);
    let mut req = http::Request::builder()
        .method(http::Method::CONNECT)
        .uri("http://ws.localhost/chat")
        .version(http::Version::HTTP_2)
        .header("sec-websocket-version", "13")
        .header("sec-websocket-protocol", "chat")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    req.extensions_mut()
        .insert(hyper::ext::Protocol::from_static("websocket"));
    // The router's SETTINGS (which allow extended CONNECT) may still be on their way.
    for _ in 0..50 {
        match send.send_request(req.clone_without_body()).await {
            Ok(resp) => return resp,
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
        }
    }
    panic!("the router never accepted an extended CONNECT");
}

trait CloneWithoutBody {
    fn clone_without_body(&self) -> Self;
}

impl CloneWithoutBody for http::Request<http_body_util::Empty<bytes::Bytes>> {
    fn clone_without_body(&self) -> Self {
        let mut req = http::Request::builder()
            .method(self.method().clone())
            .uri(self.uri().clone())
            .version(self.version())
            .body(http_body_util::Empty::new())
            .unwrap();
        *req.headers_mut() = self.headers().clone();
        if let Some(p) = self.extensions().get::<hyper::ext::Protocol>() {
            req.extensions_mut().insert(p.clone());
        }
        req
    }
}

#[tokio::test]
async fn a_websocket_over_http2_reaches_an_http1_app() {
    let r = ws_router(true).await;
    let mut resp = h2_websocket(r).await;
    assert_eq!(resp.status(), 200, "{:?}", resp.headers());
    assert_eq!(
        resp.headers().get("sec-websocket-protocol").unwrap(),
        "chat",
        "the app's subprotocol reaches the client"
    );
    assert!(resp.headers().get("sec-websocket-accept").is_none());
    let upgraded = hyper::upgrade::on(&mut resp)
        .await
        .expect("the stream tunnels");
    let mut io = hyper_util::rt::TokioIo::new(upgraded);
    for msg in ["hello", "again"] {
        io.write_all(msg.as_bytes()).await.unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 64];
        while !String::from_utf8_lossy(&got).contains(&msg.to_ascii_uppercase()) {
            let n = tokio::time::timeout(std::time::Duration::from_secs(10), io.read(&mut buf))
                .await
                .expect("an echo within 10 s")
                .unwrap();
            assert!(n > 0, "closed before the echo of {msg}");
            got.extend_from_slice(&buf[..n]);
        }
    }
}

#[tokio::test]
async fn an_app_that_does_not_switch_fails_an_http2_websocket_with_502() {
    let r = ws_router(false).await;
    let resp = h2_websocket(r).await;
    assert_eq!(resp.status(), 502);
    assert_eq!(
        resp.headers().get("x-paas-router-error").unwrap(),
        "websocket_not_accepted"
    );
}

/// Opens a WebSocket tunnel over HTTP/1.1 to `ws.localhost` on a new connection; the
/// connection and the router's answer's head.
async fn upgrade(r: SocketAddr) -> (TcpStream, String) {
    let mut s = TcpStream::connect(r).await.unwrap();
    s.write_all(UPGRADE.as_bytes()).await.unwrap();
    let head = read_until(&mut s, "\r\n\r\n").await;
    (s, head)
}

// Before: a tunnel stayed open for as long as neither side closed it.
#[tokio::test]
async fn a_websocket_tunnel_with_no_bytes_either_way_is_closed_after_its_idle_timeout() {
    let idle = std::time::Duration::from_millis(600);
    let r = ws_router_with(
        true,
        RouterConfig {
            websocket_idle_timeout: idle,
            ..Default::default()
        },
    )
    .await;
    let (mut s, head) = upgrade(r).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    // Bytes now and then keep it open well past the timeout.
    for i in 0..8 {
        tokio::time::sleep(idle / 3).await;
        let msg = format!("ping{i}");
        s.write_all(msg.as_bytes()).await.unwrap();
        read_until(&mut s, &msg.to_ascii_uppercase()).await;
    }
    // Then silence: the router closes the tunnel.
    let quiet = std::time::Instant::now();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(std::time::Duration::from_secs(10), s.read(&mut buf))
        .await
        .expect("the tunnel was still open after 10 s without a byte")
        .unwrap_or(0);
    assert_eq!(n, 0, "{:?}", String::from_utf8_lossy(&buf[..n]));
    let after = quiet.elapsed();
    assert!(
        after >= idle * 4 / 5,
        "closed after {after:?}, before the timeout"
    );
}

// Before: tunnels were bounded by nothing (each holds a connection to the app).
#[tokio::test]
async fn websockets_over_the_cap_are_refused_with_503_until_one_closes() {
    let r = ws_router_with(
        true,
        RouterConfig {
            max_websockets: 1,
            ..Default::default()
        },
    )
    .await;
    let (mut first, head) = upgrade(r).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let (_, head) = upgrade(r).await;
    assert!(head.starts_with("HTTP/1.1 503"), "{head}");
    assert!(
        head.contains("x-paas-router-error: too_many_websockets"),
        "{head}"
    );
    // Over HTTP/2 as well.
    let resp = h2_websocket(r).await;
    assert_eq!(resp.status(), 503);
    assert_eq!(
        resp.headers().get("x-paas-router-error").unwrap(),
        "too_many_websockets"
    );
    // The open one still carries bytes.
    first.write_all(b"hello").await.unwrap();
    read_until(&mut first, "HELLO").await;
    // Once it closes, a new one opens.
    drop(first);
    crate::eventually(
        "a WebSocket opened after the first closed",
        std::time::Duration::from_secs(5),
        || async {
            let (_, head) = upgrade(r).await;
            head.starts_with("HTTP/1.1 101").then_some(())
        },
    )
    .await;
}
