//! The listener: accepts connections and runs each request through the phases.
//!
//! HTTP/1.1 requests without a body or with a small one of known length go the direct
//! path ([`direct`]); the first request of a connection that does not (HTTP/2, an
//! upgrade, a chunked or large body, …) hands the connection to hyper for the rest of its
//! life.
//!
//! What a client may hold is bounded: connections in total and per client address
//! ([`caps`], at accept), a request head's size and time, HTTP/2 streams and resets per
//! connection, an HTTP/2 connection's time without a request
//! ([`RouterConfig::http2_idle_timeout`]), and WebSocket tunnels (how many, and their
//! time without a byte).

mod caps;
mod direct;
mod raw;

use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

use crate::framing::FramingGuard;
use crate::limit::{self, UpstreamBody};
use crate::ops::{AccessLog, AccessSink, IdleClose, Metrics};
use crate::pool::Pool;
use crate::pool::SendError;
use crate::proxy::{self, Body, Fault, ProxyError};
use crate::route_service::{self, RouteService};
use crate::table::{ActiveRequest, Backend, RouteTable};
use crate::tls;
use crate::trust::Cidr;
use crate::tunnel;
pub use raw::RawBody;

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
    /// The most client connections open at once, plain and TLS together; one more is
    /// closed at accept.
    pub max_connections: usize,
    /// The most connections open at once from one client address (trusted proxies
    /// excepted); one more is closed at accept.
    pub max_connections_per_client: usize,
    /// How long an HTTP/2 connection may stay without a request stream open (PINGs do
    /// not count); then it gets a GOAWAY and is closed.
    pub http2_idle_timeout: Duration,
    /// How long a WebSocket tunnel may carry no byte either way; then both of its
    /// connections are closed.
    pub websocket_idle_timeout: Duration,
    /// The most WebSocket tunnels open at once; one more is answered with 503.
    pub max_websockets: usize,
    /// Networks route services may be reached in although the egress rule refuses
    /// them (private, loopback, …): the operator's own services.
    pub route_service_allow: Vec<paas_egress::Ipv4Net>,
}

impl Default for RouterConfig {
    fn default() -> Self {
        RouterConfig {
            header_read_timeout: HEADER_READ_TIMEOUT,
            max_header_bytes: 64 * 1024,
            max_requests_per_instance: 1000,
            trusted_proxies: Vec::new(),
            response_timeout: Duration::from_secs(300),
            max_connections: 10_000,
            max_connections_per_client: 1_000,
            http2_idle_timeout: Duration::from_secs(60),
            websocket_idle_timeout: Duration::from_secs(300),
            max_websockets: 10_000,
            route_service_allow: Vec::new(),
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
    caps: Arc<caps::Caps>,
}

/// What is known of a client connection before its first request.
struct Conn {
    /// The client's address, as X-Forwarded-For sends it.
    client: HeaderValue,
    /// `http` or `https`, as X-Forwarded-Proto sends it.
    proto: &'static str,
    /// The client is a trusted proxy: its forwarding headers are kept.
    trusted: bool,
    /// Request streams under way, once hyper serves the connection.
    streams: Streams,
    /// The connection's place under the connection caps, given back when it closes
    /// (held by WebSocket tunnels too, since they hold the connection).
    _slot: caps::ConnSlot,
}

/// Request streams on a connection hyper serves, for its idle timeout.
#[derive(Default)]
struct Streams {
    /// Under way now: requests being answered, and tunnels they became.
    open: AtomicUsize,
    /// Begun so far, so that a stream that came and went between two looks of the
    /// idle timer counts as activity.
    begun: AtomicU64,
}

/// One request stream under way (or a tunnel it became), counted until dropped. It
/// holds the connection's [`Conn`], and so its place under the caps.
struct StreamGuard(Arc<Conn>);

impl StreamGuard {
    fn new(conn: &Arc<Conn>) -> Self {
        conn.streams.open.fetch_add(1, Ordering::Relaxed);
        conn.streams.begun.fetch_add(1, Ordering::Relaxed);
        StreamGuard(Arc::clone(conn))
    }

    /// Another guard on the same connection, for a tunnel that outlives its request.
    fn another(&self) -> Self {
        Self::new(&self.0)
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.streams.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A response body that keeps its request's stream counted until it is sent.
struct Tracked {
    body: Body,
    _stream: StreamGuard,
}

impl hyper::body::Body for Tracked {
    type Data = bytes::Bytes;
    type Error = proxy::BodyError;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<bytes::Bytes>, proxy::BodyError>>> {
        std::pin::Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

/// What a WebSocket request holds while its tunnel is made and open.
struct Upgrade {
    /// The client's side, once the router's answer has gone.
    client: hyper::upgrade::OnUpgrade,
    /// It came as an HTTP/2 extended CONNECT (RFC 8441).
    over_h2: bool,
    /// Its place under the tunnel cap.
    slot: caps::TunnelSlot,
    /// Its client connection's stream, kept counted while the tunnel is open.
    stream: StreamGuard,
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
        let metrics = Arc::new(Metrics::default());
        let caps = Arc::new(caps::Caps::new(
            config.max_connections,
            config.max_connections_per_client,
            config.max_websockets,
            Arc::clone(&metrics),
        ));
        Router {
            table: ArcSwap::from_pointee(RouteTable::new()),
            pool: Arc::new(Pool::default()),
            config,
            metrics,
            access: None,
            certs: Arc::default(),
            caps,
        }
    }

    /// Sends an access log entry for every request to `sink`, on the request's path.
    pub fn with_access_log(mut self, sink: AccessSink) -> Self {
        self.access = Some(sink);
        self
    }

    /// Hands every request's access log entry to `write`, in batches, on a thread of
    /// its own: a request only queues its entry (see [`crate::ops::access_queue`]).
    pub fn with_queued_access_log(
        self,
        capacity: usize,
        write: impl FnMut(&[AccessLog]) + Send + 'static,
    ) -> Self {
        let sink = crate::ops::access_queue(capacity, Arc::clone(&self.metrics), write);
        self.with_access_log(sink)
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
            let trusted = self
                .config
                .trusted_proxies
                .iter()
                .any(|n| n.contains(peer.ip()));
            // The caps, before a byte is read or a handshake made: a trusted proxy
            // speaks for many clients, so only the total holds it.
            let slot = match self.caps.admit(peer.ip(), !trusted) {
                Ok(slot) => slot,
                Err(cap) => {
                    self.metrics.refused_connection(cap);
                    tracing::debug!(%peer, ?cap, "connection refused: over its cap");
                    if tls.is_none() {
                        // One write that does not wait; then the close (the drop).
                        let _ = stream.try_write(caps::REFUSAL);
                    }
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let router = Arc::clone(&self);
            // X-Forwarded-For is the same for every request of a connection: made once.
            let conn = Conn {
                client: HeaderValue::from_str(&peer.ip().to_string())
                    .unwrap_or(HeaderValue::from_static("unknown")),
                proto: if tls.is_some() { "https" } else { "http" },
                trusted,
                streams: Streams::default(),
                _slot: slot,
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
        let idle_timeout = self.config.http2_idle_timeout;
        let metrics = Arc::clone(&self.metrics);
        let service_conn = Arc::clone(&conn);
        let service = hyper::service::service_fn(move |req| {
            let router = Arc::clone(&self);
            let stream = StreamGuard::new(&service_conn);
            async move {
                // Boxed: hyper spawns a task for each HTTP/2 stream, and tokio copies the
                // whole future into it and, when it ends, over it again. Unboxed, those
                // copies were 3 % of the router's CPU under h2load (`perf`).
                let resp = Box::pin(router.handle(req, &stream)).await;
                Ok::<_, Infallible>(resp.map(|body| Tracked {
                    body,
                    _stream: stream,
                }))
            }
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
            // Also what bounds a head's CONTINUATION frames (h2 counts them against it
            // since 0.4.4: the CONTINUATION floods of CVE-2024-27316 and kin).
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
        // hyper closes an HTTP/2 connection only when its PINGs go unanswered, and a
        // client answers them (or sends its own) while opening no stream at all: such a
        // connection would hold its place, its buffers and its task for ever. So a
        // connection with no stream open for the idle timeout gets a GOAWAY and is
        // closed (RFC 9113, 9.1: a server may close idle connections; 6.8: GOAWAY).
        // Only request streams count, never PINGs, SETTINGS or WINDOW_UPDATEs. Streams
        // reset en masse are bounded apart (Rapid Reset, above).
        let streams = &conn.streams;
        let idle = crate::tunnel::quiet_for(idle_timeout, || {
            (streams.open.load(Ordering::Relaxed) == 0)
                .then(|| streams.begun.load(Ordering::Relaxed))
        });
        tokio::pin!(idle);
        let result = tokio::select! {
            r = &mut served => r,
            () = closing_begins(&mut closing) => {
                served.as_mut().graceful_shutdown();
                served.await
            }
            () = &mut idle => {
                metrics.closed_idle(IdleClose::Connection);
                tracing::debug!(%peer, "closing a connection idle for {idle_timeout:?}");
                served.as_mut().graceful_shutdown();
                served.await
            }
        };
        if let Err(e) = result {
            tracing::debug!(%peer, "router connection ended: {e}");
        }
    }

    /// Answers one request that came through hyper, on `stream` of its connection.
    async fn handle(&self, req: Request<Incoming>, stream: &StreamGuard) -> Response<Body> {
        let conn: &Conn = &stream.0;
        let started = std::time::Instant::now();
        let mut served = Served::new(self.access.is_some(), &req);
        let (resp, router_made) = match self.proxy(req, stream, &mut served).await {
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
            sink(AccessLog {
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
    /// goes back to the client either way. Over HTTP/2 (an extended CONNECT) the app
    /// still gets the HTTP/1.1 handshake, and the client a 200 once the app switched.
    /// The tunnel is closed after [`RouterConfig::websocket_idle_timeout`] without a
    /// byte either way.
    async fn websocket(
        &self,
        mut req: Request<Incoming>,
        upgrade: Upgrade,
        backend: Backend,
        request_id: HeaderValue,
        app: &str,
    ) -> Result<Response<Body>, ProxyError> {
        let over_h2 = upgrade.over_h2;
        let accept = over_h2.then(|| tunnel::h1_handshake(&mut req));
        let (mut resp, pending) =
            tunnel::open(backend.addr, req, upgrade.client, accept.as_deref())
                .await
                .map_err(|e| {
                    if matches!(e, SendError::Connect(_)) {
                        self.pool.eject(backend.addr);
                    }
                    unreachable(app, &backend, &e)
                })?;
        if let Some(pending) = pending {
            // Joined once the answer has reached the client; holds its places under
            // the caps (and its connection's stream) until it closes.
            let idle = self.config.websocket_idle_timeout;
            let metrics = Arc::clone(&self.metrics);
            let held = (upgrade.slot, upgrade.stream);
            tokio::spawn(async move {
                if pending.join(idle).await == tunnel::Ended::Idle {
                    metrics.closed_idle(IdleClose::WebSocket);
                }
                drop(held);
            });
        }
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
        Ok(resp.map(Body::Unpooled))
    }

    async fn proxy(
        &self,
        mut req: Request<Incoming>,
        stream: &StreamGuard,
        served: &mut Served,
    ) -> Result<Response<Body>, ProxyError> {
        let conn: &Conn = &stream.0;
        let mut trusted = conn.trusted;
        if self.table.load().has_route_services() {
            match self.route_service_leg(&mut req, served)? {
                // Boxed, as is the WebSocket path below: the future of every request
                // served through hyper (a task for each HTTP/2 stream) is as large as its
                // largest branch, and is moved into its task's allocation.
                Leg::ToService(leg) => {
                    return Box::pin(self.to_route_service(req, leg, conn, served)).await
                }
                // What the route service sends on, it forwards for the client: its
                // X-Forwarded-* headers are kept and added to, as a trusted proxy's.
                Leg::CameBack => trusted = true,
                Leg::Direct => {}
            }
        }
        let mut picked = self.pick(&req, served)?;
        let started_ms = unix_ms();
        let over_h2 = tunnel::is_h2_websocket(&req);
        let websocket = over_h2 || tunnel::is_websocket(&req);
        // A tunnel holds a connection to the app (and, over HTTP/2, only a stream of
        // the client's): how many may be open at once is capped.
        let tunnel_slot = match websocket.then(|| self.caps.open_websocket()) {
            Some(None) => {
                return Err(ProxyError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "too_many_websockets",
                    Fault::Downstream,
                    format!(
                        "the router already has {} WebSockets open: try again later",
                        self.config.max_websockets
                    ),
                ))
            }
            Some(slot) => slot,
            None => None,
        };
        // Taken before the request is passed on: the client's side of a tunnel.
        let upgrade = tunnel_slot.map(|slot| Upgrade {
            client: hyper::upgrade::on(&mut req),
            over_h2,
            slot,
            stream: stream.another(),
        });
        let request_id =
            proxy::upstream_request_filter(&mut req, &conn.client, conn.proto, trusted, started_ms);
        if served.logging {
            served.request_id = Some(request_id.clone());
        }
        if let Some(upgrade) = upgrade {
            let backend = picked.backend.clone();
            return Box::pin(self.websocket(req, upgrade, backend, request_id, &picked.app)).await;
        }
        let max_body = picked.max_body;
        // A declared length over the limit is refused before the app sees anything.
        if let (Some(limit), Some(len)) =
            (max_body, hyper::body::Body::size_hint(req.body()).exact())
        {
            if len > limit {
                return Err(body_too_large(limit));
            }
        }
        // (A plain CONNECT's answer opens a tunnel: it stays with hyper's client.)
        if hyper::body::Body::is_end_stream(req.body()) && req.method() != Method::CONNECT {
            return self.proxy_bodiless(req, picked, request_id, served).await;
        }
        let mut req = req.map(|body| UpstreamBody::new(body, max_body));
        // A request is tried on another instance when nothing reached the app (the
        // connection could not be made), or when the app gave no answer to one that may
        // reach an app twice. The failing instance is skipped for a while.
        let mut tried = Vec::new();
        // One time limit for every try.
        let deadline = tokio::time::Instant::now() + self.config.response_timeout;
        let mut unanswered_retried = false;
        let mut resp = loop {
            let sent = tokio::time::timeout_at(deadline, self.pool.send(picked.backend.addr, req));
            let Ok(sent) = sent.await else {
                return Err(self.too_slow(&picked));
            };
            match sent {
                Ok(resp) => break resp,
                Err((e, back)) => {
                    // A body cut off at the route's limit is the client's doing.
                    if matches!(&e, SendError::Request(h) if limit::is_body_too_large(h)) {
                        return Err(body_too_large(max_body.unwrap_or(0)));
                    }
                    let unreachable = unreachable(&picked.app, &picked.backend, &e);
                    // A request the app saw and did not answer goes elsewhere once: a
                    // request that kills its instance must not take out every one.
                    let unanswered = matches!(e, SendError::Request(_));
                    let back = back.filter(|_| !(unanswered && unanswered_retried));
                    unanswered_retried |= unanswered;
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

impl Router {
    /// Sends a request without a body as the direct path does (`raw`): its head in one
    /// write on a pooled raw connection, the response head parsed with httparse, its body
    /// read by [`RawBody`].
    async fn proxy_bodiless(
        &self,
        mut req: Request<Incoming>,
        mut picked: Picked,
        request_id: HeaderValue,
        served: &mut Served,
    ) -> Result<Response<Body>, ProxyError> {
        // The app reads the body by what the head says, and there is none: a length the
        // client declared and did not send (an HTTP/2 HEADERS frame that ends its stream)
        // must not make the app wait for bytes, or read the next request as them.
        // Methods that give a body a meaning are sent with their length (RFC 9110, 8.6),
        // here none.
        let says_length = matches!(*req.method(), Method::POST | Method::PUT | Method::PATCH);
        let h = req.headers_mut();
        h.remove(http::header::CONTENT_LENGTH);
        h.remove(http::header::TRANSFER_ENCODING);
        if says_length {
            h.insert(http::header::CONTENT_LENGTH, HeaderValue::from_static("0"));
        }
        let mut head = Vec::with_capacity(1024);
        crate::h1::write_request_head(&mut head, &req);
        let mut app = bytes::BytesMut::new();
        let mut headers = http::HeaderMap::new();
        // One time limit for every try.
        let sent = tokio::time::timeout(
            self.config.response_timeout,
            self.exchange_head(&mut picked, &head, &req, served, &mut app, &mut headers),
        )
        .await;
        let Ok(sent) = sent else {
            return Err(self.too_slow(&picked));
        };
        let (stream, mut app_head) = sent?;
        proxy::response_filter(&mut app_head.resp, request_id, &picked.backend);
        let back = (picked.backend.addr, Arc::clone(&self.pool));
        let body = RawBody::new(stream, app, app_head.framing, app_head.keep_alive, back);
        Ok(app_head.resp.map(|()| Body::Raw(body, picked.active)))
    }
}

/// Where a request of a table with route services goes first.
enum Leg {
    /// Its route has no route service.
    Direct,
    /// It came back from its route's route service, signed: on to the app.
    CameBack,
    /// To its route's route service.
    ToService(ServiceLeg),
}

/// A request on its way to its route's route service.
struct ServiceLeg {
    service: Arc<RouteService>,
    /// The host and port the client named, and the path and query it asked for.
    authority: String,
    path_and_query: String,
    max_body: Option<u64>,
}

impl Router {
    /// Where `req` goes first ([`Leg`]). A signature that is there but not valid for
    /// it is refused (400), as gorouter does: sent to the service again it would loop.
    fn route_service_leg(
        &self,
        req: &mut Request<Incoming>,
        served: &mut Served,
    ) -> Result<Leg, ProxyError> {
        let host = proxy::request_filter(req)?;
        let table = self.table.load();
        let Some((pool, bound)) = table.service_route(&host, req.uri().path()) else {
            return Ok(Leg::Direct);
        };
        let service = bound.clone().map_err(|why| {
            ProxyError::new(
                StatusCode::BAD_GATEWAY,
                "route_service_unusable",
                Fault::Upstream,
                format!("the route of {host}: {why}"),
            )
        })?;
        let pq = req
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        match service.check(req.headers(), &host, &pq, unix_ms()) {
            route_service::Signature::Valid => {
                route_service::strip_signature(req.headers_mut());
                return Ok(Leg::CameBack);
            }
            route_service::Signature::Invalid(why) => {
                return Err(ProxyError::new(
                    StatusCode::BAD_REQUEST,
                    "route_service_signature_invalid",
                    Fault::Downstream,
                    format!(
                        "the request's route service signature is not valid for it ({why}): a route service must send the request on to X-CF-Forwarded-Url unchanged, with X-CF-Proxy-Signature and X-CF-Proxy-Metadata, within {} s",
                        route_service::SIGNATURE_LIFETIME.as_secs()
                    ),
                ))
            }
            route_service::Signature::Absent => {}
        }
        if tunnel::is_websocket(req) || tunnel::is_h2_websocket(req) {
            return Err(ProxyError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "route_service_websocket",
                Fault::Downstream,
                format!("the route of {host} goes through a route service, which does not carry WebSockets (as in Cloud Foundry)"),
            ));
        }
        if served.logging {
            served.host.clone_from(&host);
            served.app = Some(pool.app.to_string());
        }
        let authority = req
            .uri()
            .authority()
            .map(|a| a.as_str().to_string())
            .or_else(|| {
                req.headers()
                    .get(http::header::HOST)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
            })
            .unwrap_or(host);
        Ok(Leg::ToService(ServiceLeg {
            service,
            authority,
            path_and_query: pq,
            max_body: pool.max_body,
        }))
    }

    /// Sends `req` to its route's route service, signed, and passes its answer back.
    async fn to_route_service(
        &self,
        mut req: Request<Incoming>,
        leg: ServiceLeg,
        conn: &Conn,
        served: &mut Served,
    ) -> Result<Response<Body>, ProxyError> {
        if let (Some(limit), Some(len)) = (
            leg.max_body,
            hyper::body::Body::size_hint(req.body()).exact(),
        ) {
            if len > limit {
                return Err(body_too_large(limit));
            }
        }
        let now = unix_ms();
        let request_id =
            proxy::upstream_request_filter(&mut req, &conn.client, conn.proto, conn.trusted, now);
        if served.logging {
            served.request_id = Some(request_id.clone());
        }
        // The scheme the client used, as a trusted proxy in front may have said.
        let scheme = match req.headers().get(&proxy::X_FORWARDED_PROTO) {
            Some(v) if v == "https" => "https",
            _ => conn.proto,
        };
        let url = route_service::forwarded_url(scheme, &leg.authority, &leg.path_and_query);
        leg.service.address(&mut req, &url, now);
        let req = req.map(|body| UpstreamBody::new(body, leg.max_body));
        let mut resp = leg
            .service
            .send(
                req,
                &self.config.route_service_allow,
                self.config.response_timeout,
                self.config.max_requests_per_instance,
            )
            .await?;
        *resp.version_mut() = http::Version::HTTP_11;
        proxy::strip_hop_by_hop(resp.headers_mut());
        resp.headers_mut()
            .insert(proxy::X_REQUEST_ID.clone(), request_id);
        Ok(resp.map(Body::Unpooled))
    }
}

/// The answer to a request whose body is over its route's `limit`.
fn body_too_large(limit: u64) -> ProxyError {
    ProxyError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        Fault::Downstream,
        format!("the request body is larger than this route's limit of {limit} bytes"),
    )
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
