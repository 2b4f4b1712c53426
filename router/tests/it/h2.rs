//! HTTP/2 from clients ("prior knowledge" h2c here; over TLS with ALPN in tls.rs), while
//! apps keep speaking HTTP/1.1 behind the router.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use paas_router::{Backend, RouteTable};

/// An HTTP/2 client on `io` ("prior knowledge" over TCP, or after ALPN over TLS); its
/// connection runs in a task of its own.
pub async fn h2_client<IO>(io: IO) -> hyper::client::conn::http2::SendRequest<Empty<Bytes>>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io))
            .await
            .expect("HTTP/2 handshake");
    tokio::spawn(conn);
    send
}

/// Sends GET `uri` over HTTP/2 on `io`; returns status and body.
pub async fn h2_get<IO>(io: IO, uri: &str) -> (u16, String)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let mut send = h2_client(io).await;
    let req = http::Request::get(uri)
        .version(http::Version::HTTP_2)
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = send.send_request(req).await.expect("HTTP/2 request");
    assert_eq!(resp.version(), http::Version::HTTP_2);
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn h2c_with_prior_knowledge_reaches_an_http1_app() {
    let app = crate::backend("one").await;
    let mut t = RouteTable::new();
    t.insert("app.localhost", "app", vec![Backend::new(app, 0)]);
    let r = crate::router(t).await;
    let tcp = tokio::net::TcpStream::connect(r).await.unwrap();
    let (status, body) = h2_get(tcp, "http://app.localhost/x?y=1").await;
    assert_eq!(status, 200, "{body}");
    let lower = body.to_ascii_lowercase();
    assert!(lower.starts_with("one\nget /x?y=1 http/1.1\r\n"), "{body}");
    assert!(lower.contains("host: app.localhost\r\n"), "{body}");
    // Unknown hosts are refused the same way over HTTP/2.
    let tcp = tokio::net::TcpStream::connect(r).await.unwrap();
    assert_eq!(h2_get(tcp, "http://nope.localhost/").await.0, 404);
}

/// HTTP/2 clients keep many requests in flight each, so one instance may have hundreds
/// under way at once. Every connection such a burst opened to the instance is kept for
/// the next burst. Before, the pool kept 256 per instance and closed the rest, and every
/// burst connected again for them: under `benches/router.sh`'s 500 streams, one HTTP/2
/// request in ten paid a new connection.
#[tokio::test]
async fn a_burst_of_streams_leaves_every_connection_it_opened_for_the_next() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use tokio::io::AsyncWriteExt;
    // Over the old cap of 256, in three client connections (128 streams each at most).
    const BURST: usize = 300;
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&accepted);
    // Each burst's requests are all under way at the app before any is answered.
    let all_in = Arc::new(tokio::sync::Barrier::new(BURST));
    let app = crate::spawn_backend(move |mut s| {
        count.fetch_add(1, Ordering::SeqCst);
        let all_in = Arc::clone(&all_in);
        async move {
            let mut got = Vec::new();
            while crate::read_request(&mut s, &mut got).await.is_some() {
                all_in.wait().await;
                let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                if s.write_all(ok).await.is_err() {
                    return;
                }
            }
        }
    })
    .await;
    let mut t = RouteTable::new();
    t.insert("app.localhost", "app", vec![Backend::new(app, 0)]);
    let r = crate::router(t).await;
    let mut clients = Vec::new();
    for _ in 0..3 {
        let tcp = tokio::net::TcpStream::connect(r).await.unwrap();
        clients.push(h2_client(tcp).await);
    }
    for burst in 1..=2 {
        let mut requests = tokio::task::JoinSet::new();
        for i in 0..BURST {
            let mut send = clients[i % clients.len()].clone();
            requests.spawn(async move {
                let req = http::Request::get("http://app.localhost/")
                    .version(http::Version::HTTP_2)
                    .body(Empty::<Bytes>::new())
                    .unwrap();
                let resp = send.send_request(req).await.expect("HTTP/2 request");
                let status = resp.status().as_u16();
                // Read to its end: only then does the app's connection go back to the pool.
                let body = resp.into_body().collect().await.unwrap().to_bytes();
                (status, body)
            });
        }
        let answered = tokio::time::timeout(std::time::Duration::from_secs(30), async {
            while let Some(answer) = requests.join_next().await {
                let (status, body) = answer.unwrap();
                assert_eq!((status, &body[..]), (200, &b"ok"[..]));
            }
        })
        .await;
        assert!(
            answered.is_ok(),
            "burst {burst}: not all {BURST} requests reached the app at once"
        );
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        BURST,
        "the second burst should reuse the first one's connections to the app"
    );
}
