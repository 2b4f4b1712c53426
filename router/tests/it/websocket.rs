//! WebSockets: the tunnel opens only after the app answers 101.

use std::net::SocketAddr;

use paas_router::{Backend, RouteTable};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A backend that accepts upgrades when `accept`, then echoes every byte upper-cased;
/// otherwise answers 200 "no upgrade" and keeps speaking HTTP.
async fn ws_backend(accept: bool) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = l.accept().await.unwrap();
            tokio::spawn(async move {
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
                    let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
                    if accept && text.contains("upgrade: websocket") {
                        s.write_all(
                            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: x\r\n\r\n",
                        )
                        .await
                        .unwrap();
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
            });
        }
    });
    addr
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
    let app = ws_backend(true).await;
    let mut t = RouteTable::new();
    t.insert("ws.localhost", "ws", vec![Backend::new(app, 0)]);
    let r = crate::router(t).await;
    let mut s = TcpStream::connect(r).await.unwrap();
    s.write_all(UPGRADE.as_bytes()).await.unwrap();
    let head = read_until(&mut s, "\r\n\r\n").await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let lower = head.to_ascii_lowercase();
    assert!(
        lower.contains("upgrade: websocket") && lower.contains("connection: upgrade"),
        "{head}"
    );
    assert!(lower.contains("sec-websocket-accept: x"), "{head}");
    for msg in ["hello", "again"] {
        s.write_all(msg.as_bytes()).await.unwrap();
        read_until(&mut s, &msg.to_ascii_uppercase()).await;
    }
}

#[tokio::test]
async fn no_tunnel_opens_when_the_app_does_not_switch_protocols() {
    let app = ws_backend(false).await;
    let mut t = RouteTable::new();
    t.insert("ws.localhost", "ws", vec![Backend::new(app, 0)]);
    let r = crate::router(t).await;
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
