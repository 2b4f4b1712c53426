//! The router against real backends on loopback.

mod desync;
mod direct;
mod fuzz;
mod h2;
mod host;
mod limits;
mod tls;
mod websocket;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use paas_router::{Backend, RouteTable, Router};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Listens on a loopback port and runs `handle` on every connection it accepts, until
/// the test ends.
pub async fn spawn_backend<F, Fut>(handle: F) -> SocketAddr
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(handle(s));
        }
    });
    addr
}

/// A backend that answers every request with its name and the request's head.
/// Reads the next request from `s` (its head, and a Content-Length body) into `got`,
/// which keeps what was read past it. Returns the head and body, or `None` once the
/// client has closed or failed.
pub async fn read_request(s: &mut TcpStream, got: &mut Vec<u8>) -> Option<(String, String)> {
    let mut buf = vec![0u8; 8192];
    let end = loop {
        if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    };
    let head = String::from_utf8_lossy(&got[..end]).into_owned();
    let length: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .unwrap_or(0);
    while got.len() < end + length {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    let body = String::from_utf8_lossy(&got[end..end + length]).into_owned();
    got.drain(..end + length);
    Some((head, body))
}

async fn backend(name: &'static str) -> SocketAddr {
    spawn_backend(move |mut s| async move {
        let mut buf = vec![0u8; 8192];
        let mut head = Vec::new();
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut buf).await.unwrap();
            if n == 0 {
                return;
            }
            head.extend_from_slice(&buf[..n]);
        }
        let body = format!("{name}\n{}", String::from_utf8_lossy(&head));
        let resp = format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        s.write_all(resp.as_bytes()).await.unwrap();
    })
    .await
}

async fn router(table: RouteTable) -> SocketAddr {
    router_with(paas_router::RouterConfig::default(), table).await
}

/// A router with `config` serving `table` on an ephemeral port, until the test ends.
async fn router_with(config: paas_router::RouterConfig, table: RouteTable) -> SocketAddr {
    let r = Arc::new(Router::with_config(config));
    r.update(table);
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(r.run(l, std::future::pending()));
    addr
}

/// Sends `request` on a new connection and reads until the router closes it: a router
/// that neither answers nor closes within 30 s fails the test rather than hanging it.
async fn raw(addr: SocketAddr, request: &str) -> String {
    raw_in_parts(addr, &[request]).await
}

/// As [`raw`], the request written in `parts`, 50 ms apart.
async fn raw_in_parts(addr: SocketAddr, parts: &[&str]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        s.write_all(part.as_bytes()).await.unwrap();
    }
    let mut out = String::new();
    let read = s.read_to_string(&mut out);
    tokio::time::timeout(std::time::Duration::from_secs(30), read)
        .await
        .unwrap_or_else(|_| panic!("no end of the answer within 30 s; so far: {out:?}"))
        .unwrap();
    out
}

#[tokio::test]
async fn routes_by_host_round_robin_and_404s_unknown_hosts() {
    let (a, b) = (backend("one").await, backend("two").await);
    let mut t = RouteTable::new();
    t.insert(
        "app.localhost",
        "app",
        vec![Backend::new(a, 0), Backend::new(b, 1)],
    );
    let r = router(t).await;
    let mut seen = Vec::new();
    for _ in 0..4 {
        let resp = raw(
            r,
            "GET /x HTTP/1.1\r\nHost: App.Localhost:8080\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
        seen.push(if resp.contains("\r\n\r\none\n") {
            "one"
        } else {
            "two"
        });
    }
    assert!(seen.contains(&"one") && seen.contains(&"two"), "{seen:?}");

    let resp = raw(
        r,
        "GET / HTTP/1.1\r\nHost: nope.localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 404"), "{resp}");
    assert!(
        resp.contains("x-paas-router-error: unknown_route"),
        "{resp}"
    );
    assert!(
        resp.contains("no app is routed at nope.localhost"),
        "{resp}"
    );
}

#[tokio::test]
async fn forwarded_headers_are_set_and_hop_by_hop_headers_dropped() {
    let a = backend("one").await;
    let mut t = RouteTable::new();
    t.insert("app.localhost", "app", vec![Backend::new(a, 0)]);
    let r = router(t).await;
    let resp = raw(
        r,
        "GET / HTTP/1.1\r\nHost: app.localhost\r\nX-Forwarded-For: 6.6.6.6\r\nConnection: close, x-drop-me\r\nX-Drop-Me: 1\r\n\r\n",
    )
    .await;
    let lower = resp.to_ascii_lowercase();
    assert!(lower.contains("x-forwarded-for: 127.0.0.1\r\n"), "{resp}");
    assert!(
        !lower.contains("6.6.6.6"),
        "client-supplied X-Forwarded-For is not trusted: {resp}"
    );
    assert!(!lower.contains("x-drop-me"), "{resp}");
    assert!(lower.contains("x-forwarded-host: app.localhost"), "{resp}");
}

#[tokio::test]
async fn missing_host_is_400_and_dead_instance_is_502_and_no_instance_is_503() {
    let dead = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    let mut t = RouteTable::new();
    t.insert("dead.localhost", "dead", vec![Backend::new(dead, 0)]);
    t.insert("idle.localhost", "idle", vec![]);
    let r = router(t).await;
    let resp = raw(r, "GET / HTTP/1.1\r\nConnection: close\r\n\r\n").await;
    assert!(resp.starts_with("HTTP/1.1 400"), "{resp}");
    let resp = raw(
        r,
        "GET / HTTP/1.1\r\nHost: dead.localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 502"), "{resp}");
    assert!(
        resp.contains("x-paas-router-error: app_unreachable"),
        "{resp}"
    );
    let resp = raw(
        r,
        "GET / HTTP/1.1\r\nHost: idle.localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 503"), "{resp}");
}

/// A backend that answers with its name, and sets a JSESSIONID when asked for /login.
async fn session_backend(name: &'static str) -> SocketAddr {
    spawn_backend(move |mut s| async move {
        let mut buf = vec![0u8; 8192];
        let mut head = Vec::new();
        loop {
            let n = s.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                return;
            }
            head.extend_from_slice(&buf[..n]);
            if head.windows(4).any(|w| w == b"\r\n\r\n") {
                let login = head.starts_with(b"GET /login");
                head.clear();
                let cookie = if login {
                    "set-cookie: JSESSIONID=abc\r\n"
                } else {
                    ""
                };
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n{cookie}\r\n{name}",
                    name.len()
                );
                if s.write_all(resp.as_bytes()).await.is_err() {
                    return;
                }
            }
        }
    })
    .await
}

fn body_of(resp: &str) -> &str {
    resp.split("\r\n\r\n").nth(1).unwrap_or("")
}

/// Everything after a response's head (a body may hold blank lines of its own).
fn body_of_all(resp: &str) -> &str {
    resp.split_once("\r\n\r\n").map_or("", |(_, body)| body)
}

/// Polls `check` until it gives `Some`, every 20 ms, for at most `within`; panics with
/// `what` after that.
pub async fn eventually<T, F, Fut>(what: &str, within: std::time::Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not within {within:?}: {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn requests_to_a_dead_instance_are_retried_on_a_live_one_and_it_is_skipped() {
    let live = session_backend("live").await;
    let dead = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let mut t = RouteTable::new();
    t.insert(
        "app.localhost",
        "app",
        vec![Backend::new(dead, 0), Backend::new(live, 1)],
    );
    let r = router(t).await;
    for _ in 0..6 {
        let resp = raw(
            r,
            "GET / HTTP/1.1\r\nHost: app.localhost\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
        assert_eq!(body_of(&resp), "live");
    }
}

/// A backend that answers the first request of each connection, keeps the connection
/// open (no `Connection: close`), then reads the next request and closes without an
/// answer: an app closing an idle keep-alive connection just as the router reuses it.
/// Returns its address and how many requests it was sent.
async fn closing_backend() -> (SocketAddr, Arc<AtomicUsize>) {
    let seen = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&seen);
    let addr = spawn_backend(move |mut s| {
        let count = Arc::clone(&count);
        async move {
            let mut buf = vec![0u8; 8192];
            for answer in [true, false] {
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                count.fetch_add(1, Ordering::SeqCst);
                if answer {
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

#[tokio::test]
async fn an_idempotent_request_on_a_connection_the_app_closed_goes_again_on_a_new_one() {
    let (app, seen) = closing_backend().await;
    let mut t = RouteTable::new();
    t.insert("app.localhost", "app", vec![Backend::new(app, 0)]);
    let r = router(t).await;
    let get = "GET / HTTP/1.1\r\nHost: app.localhost\r\nConnection: close\r\n\r\n";
    assert!(raw(r, get).await.starts_with("HTTP/1.1 200"));
    // The pooled connection is reused, the app closes it: the GET goes again.
    let resp = raw(r, get).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert_eq!(seen.load(Ordering::SeqCst), 3, "the app saw the GET twice");
    // A POST may not reach the app twice: it goes on the pooled connection the last
    // GET left, which the app closes under it, and is not sent again.
    let post = "POST / HTTP/1.1\r\nHost: app.localhost\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi";
    let resp = raw(r, post).await;
    assert!(resp.starts_with("HTTP/1.1 502"), "{resp}");
    assert_eq!(seen.load(Ordering::SeqCst), 4, "the app saw the POST once");
    // The next one goes on a new connection.
    assert!(raw(r, post).await.starts_with("HTTP/1.1 200"));
    assert_eq!(seen.load(Ordering::SeqCst), 5);
}

/// A backend that reads each request's head and closes the connection without a word,
/// as an instance whose host dies under the request. Returns its address and how many
/// requests it was sent.
async fn vanishing_backend() -> (SocketAddr, Arc<AtomicUsize>) {
    let seen = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&seen);
    let addr = spawn_backend(move |mut s| {
        let count = Arc::clone(&count);
        async move {
            let mut got = Vec::new();
            if read_request(&mut s, &mut got).await.is_some() {
                count.fetch_add(1, Ordering::SeqCst);
            }
        }
    })
    .await;
    (addr, seen)
}

#[tokio::test]
async fn an_idempotent_request_the_instance_never_answered_goes_to_another_one() {
    let (gone, seen) = vanishing_backend().await;
    let live = backend("live").await;
    // Each request asks for the vanishing instance by its sticky-session cookie, so
    // that it goes there first, and goes through a router of its own, which has not
    // yet set that instance aside.
    let cookie = format!("Cookie: __VCAP_ID__={}\r\n", Backend::new(gone, 0).sticky);
    let router_for_one = || {
        let mut t = RouteTable::new();
        t.insert(
            "app.localhost",
            "app",
            vec![Backend::new(gone, 0), Backend::new(live, 1)],
        );
        router(t)
    };
    // The direct path (HTTP/1.1 without a body) and hyper's (HTTP/1.0).
    for get in [
        format!("GET / HTTP/1.1\r\nHost: app.localhost\r\n{cookie}Connection: close\r\n\r\n"),
        format!("GET / HTTP/1.0\r\nHost: app.localhost\r\n{cookie}\r\n"),
    ] {
        let resp = raw(router_for_one().await, &get).await;
        assert!(resp.contains(" 200 OK\r\n"), "{get:?}: {resp}");
        assert!(body_of(&resp).starts_with("live"), "{resp}");
    }
    assert_eq!(
        seen.load(Ordering::SeqCst),
        2,
        "each GET reached the first instance"
    );
    // A POST may have done its work before the instance died: not sent twice.
    let post = format!("POST / HTTP/1.1\r\nHost: app.localhost\r\n{cookie}Content-Length: 2\r\nConnection: close\r\n\r\nhi");
    let resp = raw(router_for_one().await, &post).await;
    assert!(resp.starts_with("HTTP/1.1 502"), "{resp}");
    assert_eq!(seen.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_request_no_instance_answers_goes_to_a_second_one_only() {
    let (a, seen_a) = vanishing_backend().await;
    let (b, seen_b) = vanishing_backend().await;
    let (c, seen_c) = vanishing_backend().await;
    let cookie = format!("Cookie: __VCAP_ID__={}\r\n", Backend::new(a, 0).sticky);
    // A router for each request, which has set no instance aside yet.
    let router_for_one = || {
        let mut t = RouteTable::new();
        t.insert(
            "app.localhost",
            "app",
            vec![Backend::new(a, 0), Backend::new(b, 1), Backend::new(c, 2)],
        );
        router(t)
    };
    for get in [
        format!("GET / HTTP/1.1\r\nHost: app.localhost\r\n{cookie}Connection: close\r\n\r\n"),
        format!("GET / HTTP/1.0\r\nHost: app.localhost\r\n{cookie}\r\n"),
    ] {
        for s in [&seen_a, &seen_b, &seen_c] {
            s.store(0, Ordering::SeqCst);
        }
        let resp = raw(router_for_one().await, &get).await;
        assert!(resp.contains(" 502 "), "{get:?}: {resp}");
        let seen: usize = [&seen_a, &seen_b, &seen_c]
            .iter()
            .map(|s| s.load(Ordering::SeqCst))
            .sum();
        assert_eq!(seen, 2, "{get:?}: one instance and one more, not all three");
    }
}

#[tokio::test]
async fn sticky_sessions_follow_vcap_id_and_the_instance_header_picks_one() {
    let (a, b) = (session_backend("one").await, session_backend("two").await);
    let mut t = RouteTable::new();
    t.insert(
        "app.localhost",
        "app",
        vec![Backend::new(a, 0), Backend::new(b, 1)],
    );
    let r = router(t).await;
    let login = raw(
        r,
        "GET /login HTTP/1.1\r\nHost: app.localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    let cookie = login
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: __VCAP_ID__="))
        .map(|v| v.split(';').next().unwrap().to_string())
        .unwrap_or_else(|| panic!("no sticky cookie: {login}"));
    let first = body_of(&login).to_string();
    for _ in 0..6 {
        let req = format!("GET / HTTP/1.1\r\nHost: app.localhost\r\nCookie: a=b; __VCAP_ID__={cookie}\r\nConnection: close\r\n\r\n");
        assert_eq!(
            body_of(&raw(r, &req).await),
            first,
            "the session stays on its instance"
        );
    }
    for (index, name) in [(0, "one"), (1, "two"), (1, "two")] {
        let req = format!("GET / HTTP/1.1\r\nHost: app.localhost\r\nX-Paas-App-Instance: app:{index}\r\nConnection: close\r\n\r\n");
        assert_eq!(body_of(&raw(r, &req).await), name);
    }
    let resp = raw(r, "GET / HTTP/1.1\r\nHost: app.localhost\r\nX-Paas-App-Instance: app:7\r\nConnection: close\r\n\r\n").await;
    assert!(
        resp.starts_with("HTTP/1.1 404") && resp.contains("unknown_instance"),
        "{resp}"
    );
    let resp = raw(r, "GET / HTTP/1.1\r\nHost: app.localhost\r\nX-Paas-App-Instance: other:0\r\nConnection: close\r\n\r\n").await;
    assert!(resp.starts_with("HTTP/1.1 400"), "{resp}");
}

/// A backend that waits `delay` before it answers.
async fn slow_backend(delay: std::time::Duration) -> SocketAddr {
    spawn_backend(move |mut s| async move {
        let mut buf = vec![0u8; 8192];
        let _ = s.read(&mut buf).await;
        tokio::time::sleep(delay).await;
        let _ = s
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nslow")
            .await;
    })
    .await
}

#[tokio::test]
async fn shutdown_stops_accepting_but_finishes_requests_under_way() {
    let slow = slow_backend(std::time::Duration::from_millis(800)).await;
    let mut t = RouteTable::new();
    t.insert("slow.localhost", "slow", vec![Backend::new(slow, 0)]);
    let r = Arc::new(Router::new());
    r.update(t);
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(r.run(l, async move {
        let _ = stopped.await;
    }));
    // An idle keep-alive connection, and a request under way when the shutdown comes.
    let idle = TcpStream::connect(addr).await.unwrap();
    let under_way = tokio::spawn(raw(addr, "GET / HTTP/1.1\r\nHost: slow.localhost\r\n\r\n"));
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    stop.send(()).unwrap();
    let answer = tokio::time::timeout(std::time::Duration::from_secs(10), under_way)
        .await
        .expect("the request under way was not finished")
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("slow"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "the connection is closed after its last response: {answer}"
    );
    tokio::time::timeout(std::time::Duration::from_secs(10), serving)
        .await
        .expect("run did not return once every connection had closed")
        .unwrap();
    assert!(TcpStream::connect(addr).await.is_err(), "still accepting");
    drop(idle);
}

#[tokio::test]
async fn an_instance_at_its_request_cap_gets_no_more_and_least_connections_goes_around_it() {
    let slow = slow_backend(std::time::Duration::from_millis(800)).await;
    let fast = backend("fast").await;
    let mut t = RouteTable::new();
    t.insert("capped.localhost", "capped", vec![Backend::new(slow, 0)]);
    t.insert_with(
        "lc.localhost",
        "",
        "lc",
        vec![Backend::new(slow, 0), Backend::new(fast, 1)],
        paas_router::RouteOptions {
            balance: paas_router::table::Balance::LeastConnections,
            ..Default::default()
        },
    );
    let addr = router_with(
        paas_router::RouterConfig {
            max_requests_per_instance: 1,
            ..Default::default()
        },
        t,
    )
    .await;
    let get = |host: &'static str| async move {
        let request = format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        raw(addr, &request).await
    };
    let first = tokio::spawn(get("capped.localhost"));
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let second = get("capped.localhost").await;
    assert!(second.starts_with("HTTP/1.1 503"), "{second}");
    assert!(
        second.contains("x-paas-router-error: instance_at_capacity"),
        "{second}"
    );
    // The slow instance is busy: least-connections sends everything to the other.
    for _ in 0..4 {
        let resp = get("lc.localhost").await;
        assert!(resp.contains("\r\n\r\nfast\n"), "{resp}");
    }
    assert!(first.await.unwrap().starts_with("HTTP/1.1 200"));
    // Its request done, the capped instance takes requests again.
    assert!(get("capped.localhost").await.starts_with("HTTP/1.1 200"));
}

/// A backend that reads a chunked body to its end before it answers "got it".
async fn body_reading_backend() -> SocketAddr {
    spawn_backend(move |mut s| async move {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while !got.windows(5).any(|w| w == b"0\r\n\r\n") {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        let _ = s
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\ngot it")
            .await;
    })
    .await
}

#[tokio::test]
async fn a_route_s_body_limit_refuses_larger_bodies_with_413() {
    let app = body_reading_backend().await;
    let mut t = RouteTable::new();
    let limited = paas_router::RouteOptions {
        max_body: Some(10),
        ..Default::default()
    };
    t.insert_with(
        "up.localhost",
        "",
        "up",
        vec![Backend::new(app, 0)],
        limited,
    );
    let r = router(t).await;
    let post = |headers: &str, body: &str| {
        format!("POST / HTTP/1.1\r\nHost: up.localhost\r\nConnection: close\r\n{headers}\r\n{body}")
    };
    // Declared too long: refused before the app sees it.
    let resp = raw(r, &post("Content-Length: 20\r\n", "01234567890123456789")).await;
    assert!(resp.starts_with("HTTP/1.1 413"), "{resp}");
    assert!(
        resp.contains("x-paas-router-error: body_too_large"),
        "{resp}"
    );
    // Chunked, within the limit: passes.
    let small = "5\r\nhello\r\n0\r\n\r\n";
    let resp = raw(r, &post("Transfer-Encoding: chunked\r\n", small)).await;
    assert!(
        resp.starts_with("HTTP/1.1 200") && resp.ends_with("got it"),
        "{resp}"
    );
    // Chunked, growing past the limit: cut off, 413.
    let big = "8\r\n01234567\r\n8\r\n89abcdef\r\n0\r\n\r\n";
    let resp = raw(r, &post("Transfer-Encoding: chunked\r\n", big)).await;
    assert!(resp.starts_with("HTTP/1.1 413"), "{resp}");
}

#[tokio::test]
async fn forwarded_headers_from_a_trusted_proxy_are_kept_and_extended() {
    let a = backend("one").await;
    let mut t = RouteTable::new();
    t.insert("app.localhost", "app", vec![Backend::new(a, 0)]);
    let addr = router_with(
        paas_router::RouterConfig {
            trusted_proxies: vec![paas_router::trust::Cidr::parse("127.0.0.0/8").unwrap()],
            ..Default::default()
        },
        t,
    )
    .await;
    let resp = raw(
        addr,
        "GET / HTTP/1.1\r\nHost: app.localhost\r\nX-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: shop.example.com\r\nConnection: close\r\n\r\n",
    )
    .await
    .to_ascii_lowercase();
    assert!(
        resp.contains("x-forwarded-for: 6.6.6.6, 127.0.0.1\r\n"),
        "{resp}"
    );
    assert!(resp.contains("x-forwarded-proto: https\r\n"), "{resp}");
    assert!(
        resp.contains("x-forwarded-host: shop.example.com\r\n"),
        "{resp}"
    );
}

#[tokio::test]
async fn an_app_that_does_not_answer_in_time_gets_504() {
    let slow = slow_backend(std::time::Duration::from_millis(1500)).await;
    let mut t = RouteTable::new();
    t.insert("slow.localhost", "slow", vec![Backend::new(slow, 0)]);
    let addr = router_with(
        paas_router::RouterConfig {
            response_timeout: std::time::Duration::from_millis(200),
            ..Default::default()
        },
        t,
    )
    .await;
    let resp = raw(
        addr,
        "GET / HTTP/1.1\r\nHost: slow.localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 504"), "{resp}");
    assert!(resp.contains("x-paas-router-error: app_timeout"), "{resp}");
}
