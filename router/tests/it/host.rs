//! The Host an app sees is the one the request was routed by (RFC 9112, 3.2 and 3.2.2;
//! RFC 9113, 8.3.1): an absolute-form target's authority, or HTTP/2's `:authority`,
//! wins over a Host header, and requests whose Host is ambiguous are refused.

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use paas_router::{Backend, RouteTable};
use tokio::io::AsyncWriteExt;

use crate::{raw, read_request, spawn_backend};

/// A backend that reads a request (and its Content-Length body) and answers with its
/// name and the request's head, then closes.
async fn echo_backend(name: &'static str) -> SocketAddr {
    spawn_backend(move |mut s| async move {
        let Some((head, _)) = read_request(&mut s, &mut Vec::new()).await else {
            return;
        };
        let body = format!("{name}\n{head}");
        let resp = format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = s.write_all(resp.as_bytes()).await;
    })
    .await
}

/// A router with `a.localhost` and `b.localhost` routed to two apps named after them.
async fn two_apps() -> SocketAddr {
    let mut t = RouteTable::new();
    t.insert(
        "a.localhost",
        "a",
        vec![Backend::new(echo_backend("a").await, 0)],
    );
    t.insert(
        "b.localhost",
        "b",
        vec![Backend::new(echo_backend("b").await, 0)],
    );
    crate::router(t).await
}

/// The `Host` header lines of the request head an app echoed back, lowercased.
fn hosts_seen(resp: &str) -> Vec<String> {
    crate::body_of_all(resp)
        .lines()
        .filter_map(|l| {
            let l = l.to_ascii_lowercase();
            l.strip_prefix("host:").map(|v| v.trim().to_string())
        })
        .collect()
}

// Before: app A served the request (routed by the target) but was sent `Host:
// b.localhost` and `X-Forwarded-Host: b.localhost`, on both paths.
#[tokio::test]
async fn an_absolute_form_target_routes_the_request_and_is_the_host_the_app_sees() {
    let r = two_apps().await;
    let requests = [
        // Without a body: the direct path.
        "GET http://a.localhost/p?q=1 HTTP/1.1\r\nHost: b.localhost\r\nConnection: close\r\n\r\n",
        // With one: hyper's path.
        "POST http://a.localhost/p?q=1 HTTP/1.1\r\nHost: b.localhost\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi",
    ];
    for request in requests {
        let resp = raw(r, request).await;
        assert!(resp.starts_with("HTTP/1.1 200"), "{request:?}: {resp}");
        let body = crate::body_of_all(&resp);
        assert!(body.starts_with("a\n"), "routed by the target: {resp}");
        let request_line = body.lines().nth(1).unwrap_or("");
        assert!(
            request_line.ends_with(" /p?q=1 HTTP/1.1"),
            "origin form towards the app: {resp}"
        );
        assert_eq!(
            hosts_seen(&resp),
            ["a.localhost"],
            "the app sees the Host it was routed by: {resp}"
        );
        assert!(
            !body.to_ascii_lowercase().contains("b.localhost"),
            "nothing of the ignored Host reaches the app: {resp}"
        );
    }
}

// Before: an absolute-form request with no Host or an invalid one was served.
#[tokio::test]
async fn ambiguous_or_invalid_host_headers_are_refused_with_400_on_both_paths() {
    let r = two_apps().await;
    let cases = [
        ("two Hosts, direct", "GET / HTTP/1.1\r\nHost: a.localhost\r\nHost: b.localhost\r\n\r\n"),
        ("two Hosts, hyper", "POST / HTTP/1.1\r\nHost: a.localhost\r\nHost: b.localhost\r\nContent-Length: 2\r\n\r\nhi"),
        ("two Hosts, absolute form", "GET http://a.localhost/ HTTP/1.1\r\nHost: a.localhost\r\nHost: b.localhost\r\n\r\n"),
        ("same Host twice", "GET / HTTP/1.1\r\nHost: a.localhost\r\nHost: a.localhost\r\n\r\n"),
        // RFC 9112, 3.2: 400 for an HTTP/1.1 request without a Host, or with an invalid
        // one, whatever the form of its target.
        ("absolute form, no Host", "GET http://a.localhost/ HTTP/1.1\r\n\r\n"),
        ("absolute form, invalid Host", "GET http://a.localhost/ HTTP/1.1\r\nHost: b localhost\r\n\r\n"),
        ("absolute form, invalid Host, hyper", "POST http://a.localhost/ HTTP/1.1\r\nHost: b/x\r\nContent-Length: 2\r\n\r\nhi"),
    ];
    for (name, request) in cases {
        let resp = raw(r, request).await;
        assert!(resp.starts_with("HTTP/1.1 400"), "{name}: {resp}");
        assert!(
            resp.contains("x-paas-router-error: bad_request"),
            "{name}: {resp}"
        );
        assert!(
            !resp.contains("\r\n\r\na\n") && !resp.contains("\r\n\r\nb\n"),
            "{name}: no app saw it: {resp}"
        );
    }
}

/// Sends GET `uri` over HTTP/2 (h2c) with `hosts` as Host headers; status and body.
async fn h2_get_with_hosts(r: SocketAddr, uri: &str, hosts: &[&str]) -> (u16, String) {
    let tcp = tokio::net::TcpStream::connect(r).await.unwrap();
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .expect("HTTP/2 handshake");
    tokio::spawn(conn);
    let mut req = http::Request::get(uri)
        .version(http::Version::HTTP_2)
        .body(Empty::<Bytes>::new())
        .unwrap();
    for h in hosts {
        req.headers_mut()
            .append(http::header::HOST, h.parse().unwrap());
    }
    let resp = send.send_request(req).await.expect("HTTP/2 request");
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

// Before: `:authority` a.localhost with `Host: b.localhost` reached app A, which was
// sent `Host: b.localhost`.
#[tokio::test]
async fn over_http2_a_host_that_differs_from_authority_is_refused() {
    let r = two_apps().await;
    // RFC 9113, 8.3.1: a Host naming another entity than :authority is malformed.
    let (status, body) = h2_get_with_hosts(r, "http://a.localhost/", &["b.localhost"]).await;
    assert_eq!(status, 400, "{body}");
    // RFC 9112, 3.2 (and 9110, 7.2): one Host at most.
    let (status, body) =
        h2_get_with_hosts(r, "http://a.localhost/", &["a.localhost", "a.localhost"]).await;
    assert_eq!(status, 400, "{body}");
    // A Host naming the same host (case and trailing dot aside) is fine, and the app
    // gets :authority as its one Host.
    let (status, body) = h2_get_with_hosts(r, "http://a.localhost/x", &["A.Localhost."]).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with("a\n"), "{body}");
    assert_eq!(
        hosts_seen(&format!("\r\n\r\n{body}")),
        ["a.localhost"],
        "{body}"
    );
    // No Host: :authority alone, as HTTP/2 clients send it.
    let (status, body) = h2_get_with_hosts(r, "http://b.localhost/", &[]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        hosts_seen(&format!("\r\n\r\n{body}")),
        ["b.localhost"],
        "{body}"
    );
}
