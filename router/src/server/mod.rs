//! The listener: accepts connections and runs each request through the phases.
//!
//! HTTP/1.1 requests without a body go the direct path ([`direct`]); the first request of
//! a connection that does not (HTTP/2, an upgrade, a body, …) hands the connection to
//! hyper for the rest of its life.

mod direct;

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use http::{HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

use crate::framing::FramingGuard;
use crate::limit::{self, UpstreamBody};
use crate::ops::{AccessLog, AccessSink, Metrics};
use crate::pool::Pool;
use crate::pool::SendError;
use crate::proxy::{self, Body, Fault, ProxyError};
use crate::table::{ActiveRequest, Backend, RouteTable};
use crate::tls;
use crate::trust::Cidr;
use crate::tunnel;

/// The most instances one request is tried on.
const MAX_TRIES: usize = 3;
/// How long a client may take to send a request's headers (slowloris defence).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Streams an HTTP/2 client may have open at once on one connection.
const H2_MAX_STREAMS: u32 = 128;
/// Streams an HTTP/2 connection may reset (or make the router reset) before it is closed.
const H2_MAX_RESETS: usize = 50;
/// The longest a shutdown waits for requests under way to finish.
const DRAIN_LIMIT: Duration = Duration::from_secs(30);

/// Limits a router holds clients to, and whom it trusts.
#[derive(Debug, Clone)]
pub struct RouterConfig {
    /// How long a client may take to send a request's headers (slowloris defence).
    pub header_read_timeout: Duration,
    /// The most bytes a request's head may take; more is answered with 431.
    pub max_header_bytes: usize,
    /// The most requests under way to one instance; more are answered with 503.
    pub max_requests_per_instance: usize,
    /// Networks of proxies in front of the router whose `X-Forwarded-*` headers are
    /// kept (and added to); from anyone else they are replaced.
    pub trusted_proxies: Vec<Cidr>,
    /// How long an app may take to start its response once the request reached it;
    /// then the client gets 504.
    pub response_timeout: Duration,
}

impl Default for RouterConfig {
    fn default() -> Self {
        RouterConfig {
            header_read_timeout: HEADER_READ_TIMEOUT,
            max_header_bytes: 64 * 1024,
            max_requests_per_instance: 1000,
            trusted_proxies: Vec::new(),
            response_timeout: Duration::from_secs(300),
        }
    }
}

/// The router: a route table snapshot and a pooled client to the instances.
pub struct Router {
    table: ArcSwap<RouteTable>,
    pool: Arc<Pool>,
    config: RouterConfig,
    metrics: Arc<Metrics>,
    access: Option<AccessSink>,
    certs: Arc<tls::CertResolver>,
}

/// What is known of a client connection before its first request.
struct Conn {
    /// The client's address, as X-Forwarded-For sends it.
    client: HeaderValue,
    /// `http` or `https`, as X-Forwarded-Proto sends it.
    proto: &'static str,
    /// The client is a trusted proxy: its forwarding headers are kept.
    trusted: bool,
}

/// What a request turned out to be, filled in as the phases learn it, for the log.
#[derive(Default)]
struct Served {
    /// Whether anything is logged: the other fields are filled in only then.
    logging: bool,
    method: String,
    path: String,
    host: String,
    app: Option<String>,
    instance: Option<u32>,
    request_id: Option<HeaderValue>,
}

impl Served {
    /// What the log will need of a request; only copied when there is a log, since this
    /// is the hot path of every request.
    fn new<B>(logging: bool, req: &Request<B>) -> Self {
        let mut served = Served {
            logging,
            ..Served::default()
        };
        if logging {
            served.method = req.method().to_string();
            served.path = req.uri().path().to_string();
        }
        served
    }
}

/// The instance a request goes to, counted as under way there, and what was looked up
/// on the way.
struct Picked {
    /// The table snapshot the request was routed on: retries use the same.
    table: arc_swap::Guard<Arc<RouteTable>>,
    host: String,
    app: Arc<str>,
    backend: Backend,
    /// The route's request body limit.
    max_body: Option<u64>,
    active: ActiveRequest,
}

impl Default for Router {
    fn default() -> Self {
        Self::new()
    }
}

impl Router {
    pub fn new() -> Self {
        Self::with_config(RouterConfig::default())
    }

    pub fn with_config(config: RouterConfig) -> Self {
        Router {
            table: ArcSwap::from_pointee(RouteTable::new()),
            pool: Arc::new(Pool::default()),
            config,
            metrics: Arc::new(Metrics::default()),
            access: None,
            certs: Arc::default(),
        }
    }

    /// Sends an access log entry for every request to `sink`.
    pub fn with_access_log(mut self, sink: AccessSink) -> Self {
        self.access = Some(sink);
        self
    }

    pub fn metrics(&self) -> Arc<Metrics> {
        Arc::clone(&self.metrics)
    }

    /// Routes in the current table.
    pub fn route_count(&self) -> usize {
        self.table.load().len()
    }

    /// Serves `/health` and `/metrics` on `listener` until `shutdown`.
    pub async fn run_admin(
        self: Arc<Self>,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) {
        let router = Arc::clone(&self);
        crate::ops::run_admin(
            listener,
            self.metrics(),
            move || router.route_count(),
            shutdown,
        )
        .await
    }

    /// Publishes a new route table; requests already in flight finish on the old one.
    pub fn update(&self, mut table: RouteTable) {
        table.carry_counts_from(&self.table.load());
        self.table.store(Arc::new(table));
    }

    /// Serves HTTP on `listener` until `shutdown` completes, then waits for the requests
    /// under way.
    pub async fn run(self: Arc<Self>, listener: TcpListener, shutdown: impl Future<Output = ()>) {
        self.accept_loop(listener, None, shutdown).await
    }

    /// Serves HTTPS on `listener` until `shutdown` completes, with certificates from
    /// [`Router::certificates`] chosen by SNI.
    pub async fn run_tls(
        self: Arc<Self>,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), String> {
        let config = tls::server_config(Arc::clone(&self.certs))?;
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        self.accept_loop(listener, Some(acceptor), shutdown).await;
        Ok(())
    }

    /// The certificates the HTTPS listener serves; update them at any time.
    pub fn certificates(&self) -> &tls::CertResolver {
        &self.certs
    }

    /// Accepts connections until `shutdown`; then stops accepting, lets every open
    /// connection finish the request it is serving (idle keep-alive connections close at
    /// once), and returns when all are closed or [`DRAIN_LIMIT`] has passed.
    async fn accept_loop(
        self: Arc<Self>,
        listener: TcpListener,
        tls: Option<tokio_rustls::TlsAcceptor>,
        shutdown: impl Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        let (closing_tx, closing) = tokio::sync::watch::channel(false);
        // Every connection holds a clone of `open`; `all_closed` ends when none is left.
        let (open, mut all_closed) = tokio::sync::mpsc::channel::<()>(1);
        loop {
            let (stream, peer) = tokio::select! {
                _ = &mut shutdown => {
                    drop(listener);
                    let _ = closing_tx.send(true);
                    drop(open);
                    let _ = tokio::time::timeout(DRAIN_LIMIT, all_closed.recv()).await;
                    return;
                }
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: wait, do not spin.
                        tracing::warn!("router accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let _ = stream.set_nodelay(true);
            let router = Arc::clone(&self);
            // X-Forwarded-For is the same for every request of a connection: made once.
            let conn = Conn {
                client: HeaderValue::from_str(&peer.ip().to_string())
                    .unwrap_or(HeaderValue::from_static("unknown")),
                proto: if tls.is_some() { "https" } else { "http" },
                trusted: self
                    .config
                    .trusted_proxies
                    .iter()
                    .any(|n| n.contains(peer.ip())),
            };
            let tls = tls.clone();
            let (open, closing) = (open.clone(), closing.clone());
            tokio::spawn(async move {
                let timeout = router.config.header_read_timeout;
                match tls {
                    None => router.serve(stream, conn, peer, closing).await,
                    // The handshake gets the same time as a request's headers: a client
                    // that stalls in it (slowloris over TLS) is dropped.
                    Some(acceptor) => {
                        match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
                            Ok(Ok(s)) => router.serve(s, conn, peer, closing).await,
                            Ok(Err(e)) => tracing::debug!(%peer, "TLS handshake failed: {e}"),
                            Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                        }
                    }
                }
                drop(open);
            });
        }
    }

    /// Serves the requests of one connection (plain or TLS), its request framing checked
    /// on the wire first; once `closing` turns true, finishes the request under way and
    /// closes.
    async fn serve<IO>(
        self: Arc<Self>,
        io: IO,
        conn: Conn,
        peer: std::net::SocketAddr,
        mut closing: tokio::sync::watch::Receiver<bool>,
    ) where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let drain = direct::Drain::default();
        let left = {
            let served = self.serve_direct(io, &conn, &drain);
            tokio::pin!(served);
            tokio::select! {
                left = &mut served => left,
                () = closing_begins(&mut closing) => {
                    // Finish the request under way, if any, and close.
                    if drain.begin() {
                        direct::Left::Closed
                    } else {
                        served.await
                    }
                }
            }
        };
        let direct::Left::ToHyper(io, read) = left else {
            return;
        };
        let max_header_bytes = self.config.max_header_bytes;
        let io = TokioIo::new(FramingGuard::new(
            direct::Replay::new(read, io),
            max_header_bytes,
            self.config.header_read_timeout,
        ));
        let conn = Arc::new(conn);
        let service = hyper::service::service_fn(move |req| {
            let router = Arc::clone(&self);
            let conn = Arc::clone(&conn);
            async move { Ok::<_, Infallible>(router.handle(req, &conn).await) }
        });
        // HTTP/1.1, or HTTP/2 when the client opens with its preface (after ALPN "h2"
        // over TLS, or "prior knowledge" h2c in the clear).
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            // The FramingGuard times request heads (it holds them back from hyper).
            .header_read_timeout(None)
            .max_buf_size(max_header_bytes)
            // A client that shuts its sending side after the request still gets the
            // answer (hyper would drop a request still under way at that EOF).
            .half_close(true);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(H2_MAX_STREAMS)
            .max_header_list_size(max_header_bytes as u32)
            // Rapid Reset (CVE-2023-44487) and MadeYouReset (CVE-2025-8671): a client
            // that makes the router reset streams en masse loses its connection.
            .max_pending_accept_reset_streams(H2_MAX_RESETS)
            .max_local_error_reset_streams(H2_MAX_RESETS)
            // WebSockets over HTTP/2 (RFC 8441).
            .enable_connect_protocol()
            .keep_alive_interval(Some(Duration::from_secs(20)));
        let served = builder.serve_connection_with_upgrades(io, service);
        tokio::pin!(served);
        let result = tokio::select! {
            r = &mut served => r,
            () = closing_begins(&mut closing) => {
                served.as_mut().graceful_shutdown();
                served.await
            }
        };
        if let Err(e) = result {
            tracing::debug!(%peer, "router connection ended: {e}");
        }
    }

    async fn handle(&self, req: Request<Incoming>, conn: &Conn) -> Response<Body> {
        let started = std::time::Instant::now();
        let mut served = Served::new(self.access.is_some(), &req);
        let (resp, router_made) = match self.proxy(req, conn, &mut served).await {
            Ok(resp) => (resp, false),
            Err(e) => {
                log_refusal(&e);
                (e.into_response(), true)
            }
        };
        let bytes = content_length(resp.headers());
        let status = resp.status().as_u16();
        self.record(conn, served, status, bytes, started.elapsed(), router_made);
        resp
    }

    /// Counts a request's answer (`bytes` long, ready after `duration`) in the metrics and
    /// writes its access log entry.
    fn record(
        &self,
        conn: &Conn,
        served: Served,
        status: u16,
        bytes: Option<u64>,
        duration: Duration,
        router_made: bool,
    ) {
        self.metrics.observe(status, duration, router_made);
        if let Some(sink) = &self.access {
            sink(&AccessLog {
                host: served.host,
                app: served.app,
                instance: served.instance,
                method: served.method,
                path: served.path,
                status,
                bytes,
                duration,
                request_id: served
                    .request_id
                    .as_ref()
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-")
                    .to_string(),
                client: conn.client.to_str().unwrap_or("-").to_string(),
            });
        }
    }

    /// Whether `b` may take another request: under its cap and not ejected.
    fn usable(&self, b: &Backend) -> bool {
        b.active() < self.config.max_requests_per_instance && !self.pool.is_ejected(b.addr)
    }

    /// Phases 1 and 2 (which host, which instance), for a request of either path.
    fn pick<B>(&self, req: &Request<B>, served: &mut Served) -> Result<Picked, ProxyError> {
        let host = proxy::request_filter(req)?;
        if served.logging {
            served.host.clone_from(&host);
        }
        let table = self.table.load();
        let (app, backend, max_body) =
            proxy::upstream_peer(&table, &host, req, |b| self.usable(b))?;
        if served.logging {
            served.app = Some(app.to_string());
        }
        served.instance = Some(backend.index);
        // A cap per instance, so one slow instance cannot hold every connection the
        // router has (and a flood to one app cannot starve the others).
        let cap = self.config.max_requests_per_instance;
        if backend.active() >= cap {
            return Err(ProxyError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "instance_at_capacity",
                Fault::Upstream,
                format!(
                    "app {app} instance {} already has {cap} requests under way",
                    backend.index
                ),
            ));
        }
        let active = backend.begin_request();
        Ok(Picked {
            table,
            host,
            app,
            backend,
            max_body,
            active,
        })
    }

    /// After `picked`'s instance could not be reached: ejects it and moves `picked` to
    /// another usable instance of the route not yet `tried`. `false` when there is none
    /// or the request has had its tries.
    fn try_elsewhere(
        &self,
        picked: &mut Picked,
        path: &str,
        tried: &mut Vec<std::net::SocketAddr>,
        served: &mut Served,
    ) -> bool {
        self.pool.eject(picked.backend.addr);
        if tried.is_empty() {
            tried.push(picked.backend.addr);
        }
        if tried.len() >= MAX_TRIES {
            return false;
        }
        let next = picked
            .table
            .lookup(&picked.host, path)
            .and_then(|p| p.pick_where(|b| !tried.contains(&b.addr) && self.usable(b)))
            .filter(|b| !tried.contains(&b.addr))
            .cloned();
        let Some(next) = next else { return false };
        picked.active = next.begin_request();
        picked.backend = next;
        served.instance = Some(picked.backend.index);
        tried.push(picked.backend.addr);
        true
    }

    /// The 504 for an app that did not answer in time.
    fn too_slow(&self, picked: &Picked) -> ProxyError {
        ProxyError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "app_timeout",
            Fault::Upstream,
            format!(
                "app {} instance {} did not answer within {} s",
                picked.app,
                picked.backend.index,
                self.config.response_timeout.as_secs()
            ),
        )
    }

    /// Opens a WebSocket tunnel to `backend` if the app agrees (101); the app's answer
    /// goes back to the client either way. `over_h2` for a WebSocket that came as an
    /// HTTP/2 extended CONNECT: the app still gets the HTTP/1.1 handshake, and the
    /// client a 200 once the app switched.
    async fn websocket(
        &self,
        mut req: Request<Incoming>,
        client: hyper::upgrade::OnUpgrade,
        over_h2: bool,
        backend: Backend,
        request_id: HeaderValue,
        app: &str,
    ) -> Result<Response<Body>, ProxyError> {
        let accept = over_h2.then(|| tunnel::h1_handshake(&mut req));
        let mut resp = tunnel::open(backend.addr, req, client, accept.as_deref())
            .await
            .map_err(|e| {
                if matches!(e, SendError::Connect(_)) {
                    self.pool.eject(backend.addr);
                }
                unreachable(app, &backend, &e)
            })?;
        let switching = resp.status() == StatusCode::SWITCHING_PROTOCOLS;
        // Over HTTP/2 any 2xx means "switched", so an app's 200 cannot pass as it does
        // for HTTP/1.1 clients.
        if over_h2 && !switching && resp.status().is_success() {
            return Err(ProxyError::new(
                StatusCode::BAD_GATEWAY,
                "websocket_not_accepted",
                Fault::Upstream,
                format!(
                    "app {app} instance {} answered a WebSocket handshake with {}, not 101",
                    backend.index,
                    resp.status().as_u16()
                ),
            ));
        }
        proxy::response_filter(&mut resp, request_id, &backend);
        if switching && over_h2 {
            tunnel::h2_answer(&mut resp);
        } else if switching {
            tunnel::mark_upgrade(resp.headers_mut());
        }
        Ok(resp.map(Body::Upgrade))
    }

    async fn proxy(
        &self,
        mut req: Request<Incoming>,
        conn: &Conn,
        served: &mut Served,
    ) -> Result<Response<Body>, ProxyError> {
        let mut picked = self.pick(&req, served)?;
        let started_ms = unix_ms();
        let over_h2 = tunnel::is_h2_websocket(&req);
        let websocket = over_h2 || tunnel::is_websocket(&req);
        // Taken before the request is passed on: the client's side of a tunnel.
        let client_upgrade = websocket.then(|| hyper::upgrade::on(&mut req));
        let request_id = proxy::upstream_request_filter(
            &mut req,
            &conn.client,
            conn.proto,
            conn.trusted,
            started_ms,
        );
        if served.logging {
            served.request_id = Some(request_id.clone());
        }
        if let Some(client_upgrade) = client_upgrade {
            let backend = picked.backend.clone();
            return self
                .websocket(
                    req,
                    client_upgrade,
                    over_h2,
                    backend,
                    request_id,
                    &picked.app,
                )
                .await;
        }
        let max_body = picked.max_body;
        let too_large = |limit: u64| {
            ProxyError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                Fault::Downstream,
                format!("the request body is larger than this route's limit of {limit} bytes"),
            )
        };
        // A declared length over the limit is refused before the app sees anything.
        if let (Some(limit), Some(len)) =
            (max_body, hyper::body::Body::size_hint(req.body()).exact())
        {
            if len > limit {
                return Err(too_large(limit));
            }
        }
        let mut req = req.map(|body| UpstreamBody::new(body, max_body));
        // A request is tried on another instance only when nothing reached the app: the
        // connection could not be made. The failing instance is skipped for a while.
        let mut tried = Vec::new();
        let timeout = self.config.response_timeout;
        let mut resp = loop {
            let sent = tokio::time::timeout(timeout, self.pool.send(picked.backend.addr, req));
            let Ok(sent) = sent.await else {
                return Err(self.too_slow(&picked));
            };
            match sent {
                Ok(resp) => break resp,
                Err((e, back)) => {
                    // A body cut off at the route's limit is the client's doing.
                    if matches!(&e, SendError::Request(h) if limit::is_body_too_large(h)) {
                        return Err(too_large(max_body.unwrap_or(0)));
                    }
                    let unreachable = unreachable(&picked.app, &picked.backend, &e);
                    let Some(again) = back else {
                        self.pool.eject(picked.backend.addr);
                        return Err(unreachable);
                    };
                    if !self.try_elsewhere(&mut picked, again.uri().path(), &mut tried, served) {
                        return Err(unreachable);
                    }
                    req = again;
                }
            }
        };
        proxy::response_filter(&mut resp, request_id, &picked.backend);
        // The request counts as under way until its response body is sent.
        Ok(resp.map(|body| Body::App(body, picked.active)))
    }
}

/// A response's Content-Length, for the access log.
fn content_length(h: &http::HeaderMap) -> Option<u64> {
    h.get(http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// Logs a refusal the app caused (a client's own mistakes are only counted).
fn log_refusal(e: &ProxyError) {
    if e.fault == Fault::Upstream {
        tracing::info!(status = e.status.as_u16(), "{}", e.message);
    }
}

/// Waits until `closing` turns true (or its sender is gone).
async fn closing_begins(closing: &mut tokio::sync::watch::Receiver<bool>) {
    while !*closing.borrow_and_update() {
        if closing.changed().await.is_err() {
            return;
        }
    }
}

/// Now, in milliseconds since the Unix epoch, as X-Request-Start sends it.
fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The 502 for an instance that could not be reached.
fn unreachable(app: &str, backend: &Backend, e: &SendError) -> ProxyError {
    ProxyError::new(
        StatusCode::BAD_GATEWAY,
        "app_unreachable",
        Fault::Upstream,
        format!(
            "app {app} instance {} could not be reached: {e}",
            backend.index
        ),
    )
}
