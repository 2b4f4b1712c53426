//! HTTP/2 from clients ("prior knowledge" h2c here; over TLS with ALPN in tls.rs), while
//! apps keep speaking HTTP/1.1 behind the router.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use paas_router::{Backend, RouteTable};

/// Sends GET `uri` over HTTP/2 on `io`; returns status and body.
pub async fn h2_get<IO>(io: IO, uri: &str) -> (u16, String)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io))
            .await
            .expect("HTTP/2 handshake");
    tokio::spawn(conn);
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
