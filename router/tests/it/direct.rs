//! The direct path (requests without a body, proxied without hyper): every response
//! framing passes through on one keep-alive connection, and a connection moves to hyper
//! at its first request that has a body.

use super::*;

/// A keep-alive backend that reads requests one after another (with a Content-Length
/// body, if any) and answers by path in each framing an app may use. Returns its address
/// and how many connections it accepted.
async fn framing_backend() -> (SocketAddr, Arc<AtomicUsize>) {
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&accepted);
    let addr = spawn_backend(move |mut s| {
        count.fetch_add(1, Ordering::SeqCst);
        async move {
            let mut got = Vec::new();
            loop {
                let Some((head, body)) = read_request(&mut s, &mut got).await else {
                    return;
                };
                let target = head.split(' ').nth(1).unwrap_or("");
                let path = target.split('?').next().unwrap_or("").to_string();
                let pieces: Vec<String> = match path.as_str() {
                    "/length" => vec!["HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello".into()],
                    // Chunks (with an extension and a trailer) in separate writes.
                    "/chunked" => vec![
                        "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5;x=y\r\nhel".into(),
                        "lo\r\n6\r\n world\r\n".into(),
                        "0\r\netag: 1\r\n\r\n".into(),
                    ],
                    "/head" => vec!["HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n".into()],
                    "/none" => vec!["HTTP/1.1 204 No Content\r\n\r\n".into()],
                    "/hints" => vec![
                        "HTTP/1.1 103 Early Hints\r\nlink: </a.css>\r\n\r\n".into(),
                        "HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nhinted".into(),
                    ],
                    "/post" => vec![format!(
                        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    )],
                    _ => vec!["HTTP/1.1 200 OK\r\n\r\nuntil the app closes".into()],
                };
                for p in &pieces {
                    if s.write_all(p.as_bytes()).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
                if path == "/close" {
                    return;
                }
            }
        }
    })
    .await;
    (addr, accepted)
}

/// `app.localhost` routed to the one instance at `app`.
fn app_table(app: SocketAddr) -> RouteTable {
    let mut t = RouteTable::new();
    t.insert("app.localhost", "app", vec![Backend::new(app, 0)]);
    t
}

#[tokio::test]
async fn every_response_framing_passes_through_on_one_connection_each_side() {
    let (app, accepted) = framing_backend().await;
    let r = router(app_table(app)).await;
    // Pipelined in one write: the router serves them in turn.
    let get = |method: &str, path: &str| {
        format!("{method} {path} HTTP/1.1\r\nHost: app.localhost\r\n\r\n")
    };
    let requests = [
        get("GET", "/length"),
        get("GET", "/chunked"),
        get("HEAD", "/head"),
        get("GET", "/none"),
        get("GET", "/hints"),
        get("GET", "/close"),
    ]
    .concat();
    let out = raw(r, &requests).await;
    let answers: Vec<&str> = out.split("HTTP/1.1 ").skip(1).collect();
    assert_eq!(answers.len(), 6, "{out}");
    assert!(
        answers.iter().all(|a| a.contains("\r\ndate: ")),
        "the app sent no Date: the router adds one (RFC 9110, 6.6.1): {out}"
    );
    assert!(
        answers[0].starts_with("200") && answers[0].ends_with("\r\n\r\nhello"),
        "{out}"
    );
    assert!(
        answers[1].contains("transfer-encoding: chunked\r\n")
            && answers[1]
                .ends_with("\r\n\r\n5;x=y\r\nhello\r\n6\r\n world\r\n0\r\netag: 1\r\n\r\n"),
        "{out}"
    );
    assert!(
        answers[2].contains("content-length: 5\r\n") && answers[2].ends_with("\r\n\r\n"),
        "a response to HEAD has no body: {out}"
    );
    assert!(answers[3].starts_with("204"), "{out}");
    assert!(
        answers[4].starts_with("200") && answers[4].ends_with("hinted"),
        "1xx answers are dropped: {out}"
    );
    assert!(
        answers[5].contains("connection: close\r\n")
            && answers[5].ends_with("\r\n\r\nuntil the app closes"),
        "a body that runs to the app's close closes the client's connection too: {out}"
    );
    // The answer to HEAD describes a 5-byte body: an app that sent it anyway, late,
    // would answer the next request with it, so that connection is not used again.
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        2,
        "one pooled connection to the app carried the requests up to the HEAD, a second the rest"
    );
}

#[tokio::test]
async fn a_body_of_known_length_stays_on_the_direct_path_a_chunked_one_moves_to_hyper() {
    let (app, accepted) = framing_backend().await;
    let r = router(app_table(app)).await;
    let big = "b".repeat(usize::try_from(paas_router::h1::MAX_DIRECT_BODY).unwrap() + 1);
    let requests = "GET /length HTTP/1.1\r\nHost: app.localhost\r\n\r\n\
         POST /post HTTP/1.1\r\nHost: app.localhost\r\nContent-Length: 4\r\n\r\nping\
         PUT /post HTTP/1.1\r\nHost: app.localhost\r\nContent-Length: 0\r\n\r\n\
         GET /length HTTP/1.1\r\nHost: app.localhost\r\n\r\n";
    // The body comes apart from its head, as a slow client sends it.
    let (head, body) = (
        "POST /post HTTP/1.1\r\nHost: app.localhost\r\nContent-Length: 5\r\nConnection: close\r\n\r\n",
        "p-o-n",
    );
    let out = raw_in_parts(r, &[requests, head, body]).await;
    let answers: Vec<&str> = out.split("HTTP/1.1 ").skip(1).collect();
    assert_eq!(answers.len(), 5, "{out}");
    assert!(answers[0].ends_with("hello"), "{out}");
    assert!(
        answers[1].ends_with("\r\n\r\nping"),
        "the body reached the app: {out}"
    );
    assert!(answers[2].contains("content-length: 0\r\n"), "{out}");
    assert!(answers[3].ends_with("hello"), "{out}");
    assert!(answers[4].ends_with("\r\n\r\np-o-n"), "{out}");
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "the direct path's pooled connection carried every request"
    );
    // A body over the direct path's limit goes to hyper (whose pool opens connections
    // of its own), and the connection stays with hyper. (Chunked bodies: see
    // `a_route_s_body_limit_refuses_larger_bodies_with_413`.)
    let requests = format!(
        "POST /post HTTP/1.1\r\nHost: app.localhost\r\nContent-Length: {}\r\n\r\n{big}\
         GET /length HTTP/1.1\r\nHost: app.localhost\r\nConnection: close\r\n\r\n",
        big.len()
    );
    let out = raw(r, &requests).await;
    let answers: Vec<&str> = out.split("HTTP/1.1 ").skip(1).collect();
    assert_eq!(answers.len(), 2, "{}", &out[..300.min(out.len())]);
    assert!(answers[0].ends_with(&big), "{}", &out[..300.min(out.len())]);
    assert!(
        answers[1].ends_with("hello"),
        "{}",
        &out[out.len().saturating_sub(300)..]
    );
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        2,
        "hyper's pool made a connection of its own"
    );
}

#[tokio::test]
async fn a_body_over_the_route_s_limit_is_refused_on_the_direct_path_and_the_connection_goes_on() {
    let (app, _) = framing_backend().await;
    let mut t = RouteTable::new();
    let limited = paas_router::RouteOptions {
        max_body: Some(3),
        ..Default::default()
    };
    t.insert_with(
        "app.localhost",
        "",
        "app",
        vec![Backend::new(app, 0)],
        limited,
    );
    let r = router(t).await;
    let out = raw(
        r,
        "POST /post HTTP/1.1\r\nHost: app.localhost\r\nContent-Length: 4\r\n\r\nping\
         POST /post HTTP/1.1\r\nHost: app.localhost\r\nContent-Length: 3\r\nConnection: close\r\n\r\npin",
    )
    .await;
    let answers: Vec<&str> = out.split("HTTP/1.1 ").skip(1).collect();
    assert_eq!(answers.len(), 2, "{out}");
    assert!(
        answers[0].starts_with("413") && answers[0].contains("x-paas-router-error: body_too_large"),
        "{out}"
    );
    assert!(
        answers[1].starts_with("200") && answers[1].ends_with("\r\n\r\npin"),
        "the refused body was skipped, not read as a request: {out}"
    );
}

#[tokio::test]
async fn an_app_that_answers_garbage_gets_502_and_the_client_keeps_its_connection() {
    let app = spawn_backend(|mut s| async move {
        let mut buf = [0u8; 4096];
        let _ = s.read(&mut buf).await;
        let _ = s.write_all(b"SSH-2.0-OpenSSH_9.2\r\n\r\n").await;
    })
    .await;
    let r = router(app_table(app)).await;
    let out = raw(
        r,
        "GET / HTTP/1.1\r\nHost: app.localhost\r\n\r\n\
         GET /x HTTP/1.1\r\nHost: nope.localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    let answers: Vec<&str> = out.split("HTTP/1.1 ").skip(1).collect();
    assert_eq!(answers.len(), 2, "{out}");
    assert!(answers[0].starts_with("502"), "{out}");
    assert!(
        answers[0].contains("x-paas-router-error: app_unreachable"),
        "{out}"
    );
    assert!(answers[0].contains("not valid HTTP/1.1"), "{out}");
    assert!(answers[1].starts_with("404"), "{out}");
    assert!(
        answers[1].contains("\r\ndate: "),
        "router-made answers have a Date: {out}"
    );
}

#[tokio::test]
async fn each_direct_request_gets_an_access_log_entry() {
    let (app, _) = framing_backend().await;
    let t = app_table(app);
    let lines = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink_lines = Arc::clone(&lines);
    let r = Arc::new(Router::new().with_access_log(Arc::new(
        move |e: paas_router::ops::AccessLog| {
            let entry = (e.app.clone(), e.instance, e.line());
            sink_lines.lock().unwrap().push(entry);
        },
    )));
    r.update(t);
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(r.run(l, std::future::pending()));
    let out = raw(
        addr,
        "GET /length?q=1 HTTP/1.1\r\nHost: app.localhost\r\nX-Request-Id: abc-123\r\n\r\n\
         GET /x HTTP/1.1\r\nHost: nope.localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(out.matches("HTTP/1.1 ").count(), 2, "{out}");
    let lines = lines.lock().unwrap().clone();
    assert_eq!(lines.len(), 2, "{lines:?}");
    let (app, instance, line) = &lines[0];
    assert_eq!((app.as_deref(), *instance), (Some("app"), Some(0)));
    assert!(
        line.starts_with("app.localhost - \"GET /length HTTP/1.1\" 200 5 ")
            && line.contains("vcap_request_id:\"abc-123\""),
        "{line}"
    );
    let (app, _, line) = &lines[1];
    assert_eq!(app, &None);
    assert!(line.contains("\"GET /x HTTP/1.1\" 404 "), "{line}");
}

#[tokio::test]
async fn a_slow_access_log_writer_never_holds_a_request_back() {
    // Before: paasd wrote each request's access log line, under a lock, before the
    // response went out; a slow log store slowed every request.
    let (app, _) = framing_backend().await;
    let (release, held) = std::sync::mpsc::channel::<()>();
    let written = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&written);
    // The size of the batch the writer is stuck with (it gathers what comes within
    // 20 ms of its first entry, so it may hold more than one).
    let stuck_with = Arc::new(AtomicUsize::new(0));
    let stuck = Arc::clone(&stuck_with);
    let held = std::sync::Mutex::new(held);
    let r = Arc::new(Router::new().with_queued_access_log(
        4,
        move |batch: &[paas_router::ops::AccessLog]| {
            let _ = stuck.compare_exchange(0, batch.len(), Ordering::SeqCst, Ordering::SeqCst);
            // The writer is stuck until the test lets it go.
            let _ = held.lock().unwrap().recv();
            counted.fetch_add(batch.len(), Ordering::SeqCst);
        },
    ));
    r.update(app_table(app));
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(Arc::clone(&r).run(l, std::future::pending()));
    let mut requests = String::new();
    for _ in 0..19 {
        requests.push_str("GET /length HTTP/1.1\r\nHost: app.localhost\r\n\r\n");
    }
    requests.push_str("GET /length HTTP/1.1\r\nHost: app.localhost\r\nConnection: close\r\n\r\n");
    let out = raw(addr, &requests).await;
    assert_eq!(
        out.matches("HTTP/1.1 200").count(),
        20,
        "every request answered"
    );
    let metrics = r.metrics().render(1);
    let dropped: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("paas_router_access_log_dropped_total "))
        .and_then(|v| v.trim().parse().ok())
        .expect("the dropped counter is exported");
    // Only the queue (4) and the batch the writer holds wait; the rest was dropped.
    let stuck_with = stuck_with.load(Ordering::SeqCst) as u64;
    assert!(dropped > 0, "nothing dropped: {metrics}");
    assert_eq!(
        dropped + 4 + stuck_with,
        20,
        "{dropped} dropped, {stuck_with} held by the writer: {metrics}"
    );
    for _ in 0..25 {
        let _ = release.send(());
    }
    eventually(
        "the waiting entries to be written",
        std::time::Duration::from_secs(30),
        || {
            let n = written.load(Ordering::SeqCst) as u64;
            async move { (n + dropped == 20).then_some(()) }
        },
    )
    .await;
}

// A client that names Content-Length in its Connection header asks every proxy to drop
// it (hop-by-hop, RFC 9110 7.6.1). Were it dropped while the body went on, the app would
// read a POST without a body and then the body as a request of its own, one that passed
// no phase of the router (request smuggling, RFC 9112 11.2).
#[tokio::test]
async fn a_body_whose_length_the_client_calls_hop_by_hop_is_never_read_as_a_request() {
    let heads = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = Arc::clone(&heads);
    let app = spawn_backend(move |mut s| {
        let seen = Arc::clone(&seen);
        async move {
            let mut got = Vec::new();
            while let Some((head, body)) = read_request(&mut s, &mut got).await {
                seen.lock().unwrap().push(head);
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
                if s.write_all(answer.as_bytes()).await.is_err() {
                    return;
                }
            }
        }
    })
    .await;
    let r = router(app_table(app)).await;
    let smuggled =
        "GET /admin HTTP/1.1\r\nHost: app.localhost\r\nX-Forwarded-For: 127.0.0.1\r\n\r\n";
    let out = raw(
        r,
        &format!(
            "POST / HTTP/1.1\r\nHost: app.localhost\r\nConnection: content-length, close\r\n\
             Content-Length: {}\r\n\r\n{smuggled}",
            smuggled.len()
        ),
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(
        out.ends_with(smuggled),
        "the app got the body as a body: {out}"
    );
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let heads = heads.lock().unwrap().clone();
    assert_eq!(heads.len(), 1, "the app saw one request: {heads:?}");
    assert!(heads[0].starts_with("POST / "), "{heads:?}");
}

/// HTTP/2 requests without a body go to the app as the direct path sends them, and the
/// app's HTTP/1.1 framings are turned into HTTP/2's: chunks into DATA frames (their
/// trailer into trailers), a body that runs to the app's close into a stream that ends.
#[tokio::test]
async fn every_response_framing_reaches_an_http2_client_on_one_app_connection() {
    use http_body_util::{BodyExt, Empty};
    let (app, accepted) = framing_backend().await;
    let r = router(app_table(app)).await;
    let send = crate::h2::h2_client(TcpStream::connect(r).await.unwrap()).await;
    let get = |method: http::Method, path: &str| {
        let mut send = send.clone();
        let req = http::Request::builder()
            .method(method)
            .uri(format!("http://app.localhost{path}"))
            .version(http::Version::HTTP_2)
            .body(Empty::<bytes::Bytes>::new())
            .unwrap();
        async move {
            let resp = send.send_request(req).await.expect("HTTP/2 request");
            let status = resp.status().as_u16();
            let body = resp.into_body().collect().await.expect("the whole body");
            let trailers = body.trailers().cloned();
            let text = String::from_utf8_lossy(&body.to_bytes()).into_owned();
            (status, text, trailers)
        }
    };
    let (status, body, _) = get(http::Method::GET, "/length").await;
    assert_eq!((status, body.as_str()), (200, "hello"));
    let (status, body, trailers) = get(http::Method::GET, "/chunked").await;
    assert_eq!((status, body.as_str()), (200, "hello world"));
    let trailers = trailers.expect("the app's trailer field, as HTTP/2 trailers");
    assert_eq!(trailers.get("etag").map(|v| v.as_bytes()), Some(&b"1"[..]));
    let (status, body, _) = get(http::Method::HEAD, "/head").await;
    assert_eq!((status, body.as_str()), (200, ""));
    let (status, body, _) = get(http::Method::GET, "/none").await;
    assert_eq!((status, body.as_str()), (204, ""));
    let (status, body, _) = get(http::Method::GET, "/hints").await;
    assert_eq!((status, body.as_str()), (200, "hinted"));
    // The connection that answered HEAD with a 5-byte length is not used again (see
    // `every_response_framing_passes_through_on_one_connection_each_side`).
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        2,
        "a pooled connection to the app carried the requests before the HEAD, a second the rest"
    );
    let (status, body, _) = get(http::Method::GET, "/close").await;
    assert_eq!((status, body.as_str()), (200, "until the app closes"));
    // That connection is gone with the body: the next request needs a new one.
    let (status, body, _) = get(http::Method::GET, "/length").await;
    assert_eq!((status, body.as_str()), (200, "hello"));
    assert_eq!(accepted.load(Ordering::SeqCst), 3);
}

/// An app that breaks its chunked framing mid-body: the client's stream fails rather
/// than ending as if whole, and the app's connection is not used again. An app's
/// trailer fields that HTTP/2 forbids are dropped, not passed on to fail the stream.
#[tokio::test]
async fn a_malformed_chunked_body_fails_the_http2_stream_and_bad_trailer_fields_are_dropped() {
    use http_body_util::{BodyExt, Empty};
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&accepted);
    let app = spawn_backend(move |mut s| {
        count.fetch_add(1, Ordering::SeqCst);
        async move {
            let mut got = Vec::new();
            while let Some((head, _)) = read_request(&mut s, &mut got).await {
                let answer = if head.starts_with("GET /bad ") {
                    "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n"
                } else if head.starts_with("GET /trailers ") {
                    "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\
                     connection: close\r\ncontent-length: 9\r\netag: 1\r\n\r\n"
                } else {
                    "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
                };
                if s.write_all(answer.as_bytes()).await.is_err() {
                    return;
                }
            }
        }
    })
    .await;
    let r = router(app_table(app)).await;
    let mut send = crate::h2::h2_client(TcpStream::connect(r).await.unwrap()).await;
    let req = |path: &str| {
        http::Request::get(format!("http://app.localhost{path}"))
            .version(http::Version::HTTP_2)
            .body(Empty::<bytes::Bytes>::new())
            .unwrap()
    };
    // The stream is reset: before its head reaches the client or after it.
    let bad = match send.send_request(req("/bad")).await {
        Ok(resp) => resp.into_body().collect().await.map(|b| b.to_bytes()),
        Err(e) => Err(e),
    };
    assert!(
        bad.is_err(),
        "a body cut by a framing error must not end as if whole: {bad:?}"
    );
    let resp = send.send_request(req("/good")).await.expect("a response");
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"ok");
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        2,
        "the broken connection was closed, not pooled"
    );
    // Trailer fields that frame a message or describe a connection are not passed on
    // (RFC 9110, 6.5.1; HTTP/2 clients refuse connection-specific ones, RFC 9113, 8.2.2).
    let resp = send
        .send_request(req("/trailers"))
        .await
        .expect("a response");
    let body = resp.into_body().collect().await.expect("the whole body");
    let trailers = body.trailers().cloned().expect("the app's trailers");
    assert_eq!(trailers.len(), 1, "{trailers:?}");
    assert_eq!(trailers.get("etag").map(|v| v.as_bytes()), Some(&b"1"[..]));
    assert_eq!(&body.to_bytes()[..], b"ok");
}
