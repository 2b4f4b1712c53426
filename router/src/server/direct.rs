//! The direct path: HTTP/1.1 requests without a body or with a small one of known
//! length, proxied without hyper.
//!
//! Most requests through a router are of this kind (GET, HEAD, DELETE, form and API
//! POSTs, … on keep-alive connections), and for them hyper's server and client cost more
//! than the proxying itself: a connection task on each side, a channel and a oneshot
//! between them, and bodies polled frame by frame. Profiled under `benches/router.sh`,
//! the router spent 7.6-8.7 µs of user time per request against HAProxy's 3.7-3.9, with
//! the same four socket calls and the same kernel time (12-14 µs). On this path a
//! request costs about 27.7k user instructions under callgrind, HAProxy's 30.0k; a 1 KiB
//! POST took 23.9 µs of CPU against 31.8 through hyper (ARCHITECTURE.md).
//!
//! This path serves a request in its client connection's own task. It parses the head
//! with httparse, reads the whole body when there is one (at most
//! [`h1::MAX_DIRECT_BODY`], framed by `Content-Length`), runs the same phases as every
//! request ([`Router::pick`], the route's body limit, [`proxy::upstream_request_filter`],
//! [`proxy::response_filter`]), writes the head and body in one write to a pooled raw
//! connection to the instance, and passes the app's response back: the head
//! rewritten, the body byte for byte, followed by its framing (length, chunks, or the
//! connection's end) to know where it ends.
//!
//! Anything else hands the connection to hyper for the rest of its life, with the bytes
//! already read put back in front: HTTP/2's preface, HTTP/1.0, a chunked or larger body,
//! any framing that is not one plain `Content-Length`, `Expect`, an upgrade, and any
//! head hyper must refuse (too large, malformed). So every defence of the hyper path
//! (the framing guard, 431, 400) still applies to them.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http::header::HeaderMap;
use http::{Method, Request, StatusCode};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

use super::{
    body_too_large, content_length, log_refusal, unix_ms, unreachable, Conn, Picked, Router, Served,
};
use crate::framing::ChunkedEnd;
use crate::h1::{self, AppHead, Framing, RequestHead};
use crate::pool::{self, SendError};
use crate::proxy::{self, ProxyError};

/// Room made for a client's bytes before each read: a head rarely needs more (a larger
/// one grows the buffer read by read), and every open connection keeps this much.
const CLIENT_READ: usize = 4 * 1024;
/// Room made for an app's bytes before each read: bodies pass through here.
const APP_READ: usize = 16 * 1024;

/// How a connection left the direct path.
pub(super) enum Left<IO> {
    /// It is done with: closed by either side, failed, or drained.
    Closed,
    /// Its next request is for hyper: the connection, and what was read of it so far.
    ToHyper(IO, Bytes),
}

/// A connection's shutdown, shared by its direct path and the listener.
#[derive(Default)]
pub(super) struct Drain {
    /// The listener is shutting down: answer the request under way, then close.
    closing: AtomicBool,
    /// The direct path waits for a request of which no byte has come.
    idle: AtomicBool,
}

impl Drain {
    /// Starts draining; true when the connection is idle and may simply be dropped.
    pub(super) fn begin(&self) -> bool {
        self.closing.store(true, Ordering::Relaxed);
        self.idle.load(Ordering::Relaxed)
    }

    fn closing(&self) -> bool {
        self.closing.load(Ordering::Relaxed)
    }
}

/// A deadline that costs one clock read to move: its timer is re-armed only when it
/// fires before the deadline, so the many short waits of a busy connection do not each
/// register a timer with the runtime.
struct Deadline {
    limit: Duration,
    at: Instant,
    timer: Pin<Box<Sleep>>,
}

impl Deadline {
    fn new(limit: Duration) -> Self {
        let at = Instant::now() + limit;
        Deadline {
            limit,
            at,
            timer: Box::pin(tokio::time::sleep_until(at)),
        }
    }

    /// Starts the wait the deadline bounds: it passes `limit` from now.
    fn start(&mut self) {
        self.at = Instant::now() + self.limit;
    }

    /// Completes once the deadline has passed.
    async fn passed(&mut self) {
        loop {
            self.timer.as_mut().await;
            if Instant::now() >= self.at {
                return;
            }
            self.timer.as_mut().reset(self.at);
        }
    }
}

/// Buffers a connection keeps from request to request.
struct Buffers {
    /// What the client sent and is not yet served.
    client: BytesMut,
    /// What the app sent and is not yet passed on.
    app: BytesMut,
    /// A head (with the first bytes of its body) about to be written.
    out: Vec<u8>,
    /// Header maps of the last request and response, emptied, kept for their room.
    request_headers: HeaderMap,
    response_headers: HeaderMap,
}

/// Empties `used` into `keep`, for the next message's headers.
fn recycle(keep: &mut HeaderMap, used: &mut HeaderMap) {
    used.clear();
    *keep = std::mem::take(used);
}

/// How one exchange with the app went wrong.
enum Failure {
    /// The request did not go out.
    Unsent(SendError),
    /// It went out and nothing came back (the app may not have seen it).
    NoAnswer(SendError),
    /// Something came back that is not a sound response head.
    Bad(SendError),
}

impl Router {
    /// Serves `io`'s requests for as long as they are for the direct path.
    pub(super) async fn serve_direct<IO>(&self, mut io: IO, conn: &Conn, drain: &Drain) -> Left<IO>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let mut bufs = Buffers {
            client: BytesMut::with_capacity(CLIENT_READ),
            app: BytesMut::new(),
            out: Vec::new(),
            request_headers: HeaderMap::new(),
            response_headers: HeaderMap::new(),
        };
        let mut head_deadline = Deadline::new(self.config.header_read_timeout);
        let mut answer_deadline = Deadline::new(self.config.response_timeout);
        loop {
            // A whole request head (slowloris: it must come within the head timeout).
            head_deadline.start();
            let (mut req, body) = loop {
                let max_head = self.config.max_header_bytes;
                match h1::take_request(&mut bufs.client, max_head, &mut bufs.request_headers) {
                    RequestHead::Direct(req, body) => break (req, body),
                    RequestHead::Partial => {}
                    RequestHead::Hyper => return Left::ToHyper(io, bufs.client.freeze()),
                    RequestHead::HyperTaken(head) => {
                        let mut all = BytesMut::from(&head[..]);
                        all.extend_from_slice(&bufs.client);
                        return Left::ToHyper(io, all.freeze());
                    }
                }
                drain.idle.store(bufs.client.is_empty(), Ordering::Relaxed);
                if bufs.client.is_empty() && drain.closing() {
                    return Left::Closed;
                }
                bufs.client.reserve(CLIENT_READ);
                let read = tokio::select! {
                    biased;
                    read = io.read_buf(&mut bufs.client) => read,
                    () = head_deadline.passed() => return Left::Closed,
                };
                match read {
                    Ok(0) if bufs.client.is_empty() => return Left::Closed,
                    // A head cut short: hyper answers it.
                    Ok(0) => return Left::ToHyper(io, bufs.client.freeze()),
                    Ok(_) => {}
                    Err(_) => return Left::Closed,
                }
            };
            drain.idle.store(false, Ordering::Relaxed);
            if self.has_route_service(&req) {
                // Route services are served by the hyper path: the head goes back in
                // front of what follows it, as read (an absolute-form target as its
                // path, the host it named as the Host header).
                if let Some(v) = req
                    .uri()
                    .authority()
                    .and_then(|a| http::HeaderValue::from_str(a.as_str()).ok())
                {
                    req.headers_mut().insert(http::header::HOST, v);
                }
                let mut head = Vec::with_capacity(bufs.client.len() + 512);
                h1::write_request_head(&mut head, &req);
                head.extend_from_slice(&bufs.client);
                return Left::ToHyper(io, Bytes::from(head));
            }
            // The whole body, within the time an app has to answer; the app then has
            // that long again to start its answer. (No clock read when it has come.)
            if bufs.client.len() < body {
                answer_deadline.start();
            }
            while bufs.client.len() < body {
                bufs.client.reserve(body - bufs.client.len());
                let read = tokio::select! {
                    biased;
                    read = io.read_buf(&mut bufs.client) => read,
                    () = answer_deadline.passed() => return Left::Closed,
                };
                if !matches!(read, Ok(n) if n > 0) {
                    // The client went away with its body cut short.
                    return Left::Closed;
                }
            }
            let keep_alive = self
                .exchange(
                    &mut io,
                    req,
                    body,
                    conn,
                    drain,
                    &mut bufs,
                    &mut answer_deadline,
                )
                .await;
            bufs.client.advance(body);
            if !keep_alive {
                let _ = io.shutdown().await;
                return Left::Closed;
            }
        }
    }

    /// Whether `req`'s route has a route service (one lookup, only when some route of
    /// the table has one).
    fn has_route_service(&self, req: &Request<()>) -> bool {
        let table = self.table.load();
        if !table.has_route_services() {
            return false;
        }
        let Ok(host) = proxy::request_filter(req) else {
            return false;
        };
        table.service_route(&host, req.uri().path()).is_some()
    }

    /// Serves one request, whose `body` is the first bytes of `bufs.client`, and writes
    /// its answer to `io`; returns whether the connection can carry another.
    #[allow(clippy::too_many_arguments)]
    async fn exchange<IO>(
        &self,
        io: &mut IO,
        mut req: Request<()>,
        body: usize,
        conn: &Conn,
        drain: &Drain,
        bufs: &mut Buffers,
        deadline: &mut Deadline,
    ) -> bool
    where
        IO: AsyncWrite + Unpin,
    {
        let started = std::time::Instant::now();
        let mut served = Served::new(self.access.is_some(), &req);
        let client_closes =
            proxy::connection_tokens(req.headers()).any(|t| t.eq_ignore_ascii_case("close"));
        let answer = self
            .forward(&mut req, body, conn, &mut served, bufs, deadline)
            .await;
        recycle(&mut bufs.request_headers, req.headers_mut());
        let (picked, mut stream, app_head) = match answer {
            Ok(a) => a,
            Err(e) => {
                let close = client_closes || drain.closing() || e.status == StatusCode::BAD_REQUEST;
                let body = e.body();
                let status = e.status.as_u16();
                let len = body.len() as u64;
                log_refusal(&e);
                let head = e.head();
                let length = format!("content-length: {len}\r\n");
                h1::write_response_head(&mut bufs.out, &head, length.as_bytes(), close);
                bufs.out.extend_from_slice(body.as_bytes());
                self.record(conn, served, status, Some(len), started.elapsed(), true);
                let written = write_all(io, &bufs.out).await;
                return written && !close;
            }
        };
        let AppHead {
            mut resp,
            framing,
            keep_alive,
        } = app_head;
        let close = client_closes || drain.closing() || matches!(framing, Framing::UntilClose);
        let bytes = content_length(resp.headers());
        self.record(
            conn,
            served,
            resp.status().as_u16(),
            bytes,
            started.elapsed(),
            false,
        );
        // The chunks go on as the app framed them.
        let framing_header: &[u8] = match framing {
            Framing::Chunked(_) => b"transfer-encoding: chunked\r\n",
            _ => b"",
        };
        h1::write_response_head(&mut bufs.out, &resp, framing_header, close);
        recycle(&mut bufs.response_headers, resp.headers_mut());
        match relay_body(io, &mut stream, framing, bufs).await {
            Relayed::Whole if keep_alive => {
                self.pool.checkin_stream(picked.backend.addr, stream);
                !close
            }
            Relayed::Whole => !close,
            Relayed::Cut => false,
        }
    }

    /// Routes `req`, sends it with its `body` (the first bytes of `bufs.client`) to an
    /// instance and reads the response's head: the instance's connection comes back with
    /// it, the rest of the response in `bufs.app`.
    async fn forward(
        &self,
        req: &mut Request<()>,
        body: usize,
        conn: &Conn,
        served: &mut Served,
        bufs: &mut Buffers,
        deadline: &mut Deadline,
    ) -> Result<(Picked, TcpStream, AppHead), ProxyError> {
        let mut picked = self.pick(req, served)?;
        if let Some(limit) = picked.max_body.filter(|&limit| body as u64 > limit) {
            return Err(body_too_large(limit));
        }
        let request_id =
            proxy::upstream_request_filter(req, &conn.client, conn.proto, conn.trusted, unix_ms());
        if served.logging {
            served.request_id = Some(request_id.clone());
        }
        if body > 0 {
            // The app reads the body by the length the router read it by. The filter
            // drops what the client's Connection header names, Content-Length too if it
            // is named: the body would then reach the app as a request of its own
            // (request smuggling, RFC 9112 11.2).
            let length = http::HeaderValue::from(body);
            req.headers_mut()
                .insert(http::header::CONTENT_LENGTH, length);
        }
        h1::write_request_head(&mut bufs.out, req);
        bufs.out.extend_from_slice(&bufs.client[..body]);
        deadline.start();
        let sent = tokio::select! {
            biased;
            sent = self.exchange_head(&mut picked, &bufs.out, req, served, &mut bufs.app, &mut bufs.response_headers) => Some(sent),
            () = deadline.passed() => None,
        };
        match sent {
            Some(Ok((stream, mut app_head))) => {
                proxy::response_filter(&mut app_head.resp, request_id, &picked.backend);
                Ok((picked, stream, app_head))
            }
            Some(Err(e)) => Err(e),
            None => Err(self.too_slow(&picked)),
        }
    }

    /// Writes `head` (a request's head and its whole body, if any) to `picked`'s
    /// instance and reads the response's head: the instance's connection comes back
    /// with it, the rest of the response in `app`. A request that did not reach the app,
    /// or an idempotent one that got no answer (once), goes to another instance. Shared
    /// by the direct path and by hyper's for requests without a body.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn exchange_head<B>(
        &self,
        picked: &mut Picked,
        head: &[u8],
        req: &Request<B>,
        served: &mut Served,
        app: &mut BytesMut,
        headers: &mut HeaderMap,
    ) -> Result<(TcpStream, AppHead), ProxyError> {
        // Only such a request may reach the app twice without harm (RFC 9110, 9.2.2).
        let idempotent = req.method().is_idempotent();
        let head_only = req.method() == Method::HEAD;
        let mut tried = Vec::new();
        let mut unanswered_retried = false;
        loop {
            let addr = picked.backend.addr;
            let (e, elsewhere) = match self
                .send_head(addr, head, app, headers, idempotent, head_only)
                .await
            {
                Ok(answer) => return Ok(answer),
                // Nothing reached the app.
                Err(Failure::Unsent(e @ SendError::Connect(_))) => (e, true),
                // The app may have seen it, and no byte of an answer came: its instance
                // died or dropped the connection. Only a request that may reach an app
                // twice goes to another instance (as HAProxy's `retry-on empty-response`),
                // and only once: a request that kills its instance must not take out
                // every one.
                Err(Failure::Unsent(e) | Failure::NoAnswer(e)) => {
                    let again = idempotent && !unanswered_retried;
                    unanswered_retried = true;
                    (e, again)
                }
                Err(Failure::Bad(e)) => (e, false),
            };
            let unreachable = unreachable(&picked.app, &picked.backend, &e);
            if !elsewhere {
                self.pool.eject(picked.backend.addr);
                return Err(unreachable);
            }
            if !self.try_elsewhere(picked, req.uri().path(), &mut tried, served) {
                return Err(unreachable);
            }
        }
    }

    /// Writes `head` to the instance at `addr`, on a pooled connection or a new one, and
    /// reads the response's head (`head_only`: one to HEAD); returns the connection and
    /// the head, with what followed it in `app`. When the app closed a pooled connection
    /// under the request, it goes again on a new one if it did not go out, or is
    /// `idempotent`.
    #[allow(clippy::too_many_arguments)]
    async fn send_head(
        &self,
        addr: std::net::SocketAddr,
        head: &[u8],
        app: &mut BytesMut,
        headers: &mut HeaderMap,
        idempotent: bool,
        head_only: bool,
    ) -> Result<(TcpStream, AppHead), Failure> {
        app.clear();
        if let Some(mut stream) = self.pool.checkout_stream(addr) {
            match try_exchange(&mut stream, head, app, headers, head_only).await {
                Ok(resp) => return Ok((stream, resp)),
                Err(Failure::Unsent(_)) => {}
                Err(Failure::NoAnswer(_)) if idempotent => {}
                Err(e) => return Err(e),
            }
            app.clear();
        }
        let mut stream = pool::connect_tcp(addr).await.map_err(Failure::Unsent)?;
        let resp = try_exchange(&mut stream, head, app, headers, head_only).await?;
        Ok((stream, resp))
    }
}

/// Writes `head` and reads the response's head (past any 1xx) through `app`.
async fn try_exchange(
    stream: &mut TcpStream,
    head: &[u8],
    app: &mut BytesMut,
    headers: &mut HeaderMap,
    head_only: bool,
) -> Result<AppHead, Failure> {
    let exchange = |e: std::io::Error| SendError::Exchange(e);
    // A request of which some bytes went out may have reached the app: only one that
    // failed at its first byte is unsent (a body makes a request more than one write).
    let mut written = 0;
    while written < head.len() {
        match stream.write(&head[written..]).await {
            Ok(n) if n > 0 => written += n,
            done => {
                let e = done
                    .err()
                    .unwrap_or_else(|| std::io::ErrorKind::WriteZero.into());
                return Err(if written == 0 {
                    Failure::Unsent(exchange(e))
                } else {
                    Failure::NoAnswer(exchange(e))
                });
            }
        }
    }
    let mut got_any = false;
    loop {
        match h1::take_response(app, head_only, headers) {
            Ok(Some(resp)) => return Ok(resp),
            Ok(None) => {}
            Err(why) => {
                let e = std::io::Error::new(std::io::ErrorKind::InvalidData, why);
                return Err(Failure::Bad(exchange(e)));
            }
        }
        app.reserve(APP_READ);
        match stream.read_buf(app).await {
            Ok(0) => {
                let e = std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the app closed the connection before it answered",
                );
                return Err(if got_any {
                    Failure::Bad(exchange(e))
                } else {
                    Failure::NoAnswer(exchange(e))
                });
            }
            Ok(_) => got_any = true,
            Err(e) if got_any => return Err(Failure::Bad(exchange(e))),
            Err(e) => return Err(Failure::NoAnswer(exchange(e))),
        }
    }
}

/// How passing a body on ended.
enum Relayed {
    /// All of it went to the client, and nothing of the app's followed it.
    Whole,
    /// Either side failed or broke the framing: both connections are done.
    Cut,
}

/// Writes `bufs.out` (a response head) to the client, then the body that follows in
/// `bufs.app` and `app`, as far as `framing` says it goes.
async fn relay_body<IO>(
    client: &mut IO,
    app: &mut TcpStream,
    mut framing: Framing,
    bufs: &mut Buffers,
) -> Relayed
where
    IO: AsyncWrite + Unpin,
{
    loop {
        let (take, done) = match &mut framing {
            Framing::Empty => (0, true),
            Framing::Length(left) => {
                let n = (*left).min(bufs.app.len() as u64);
                *left -= n;
                (n as usize, *left == 0)
            }
            Framing::Chunked(chunks) => match chunks.follow(&bufs.app) {
                ChunkedEnd::More => (bufs.app.len(), false),
                ChunkedEnd::Ended(n) => (n, true),
                ChunkedEnd::Malformed => return Relayed::Cut,
            },
            Framing::UntilClose => (bufs.app.len(), false),
        };
        // The head and the first of the body go out in one write.
        let written = if bufs.out.is_empty() {
            write_all(client, &bufs.app[..take]).await
        } else {
            bufs.out.extend_from_slice(&bufs.app[..take]);
            let w = write_all(client, &bufs.out).await;
            bufs.out.clear();
            w
        };
        bufs.app.advance(take);
        if !written {
            return Relayed::Cut;
        }
        if done {
            // Bytes after the response: the app broke the protocol.
            return if bufs.app.is_empty() {
                Relayed::Whole
            } else {
                Relayed::Cut
            };
        }
        bufs.app.reserve(APP_READ);
        match app.read_buf(&mut bufs.app).await {
            Ok(0) if matches!(framing, Framing::UntilClose) => return Relayed::Whole,
            Ok(0) | Err(_) => return Relayed::Cut,
            Ok(_) => {}
        }
    }
}

/// Writes all of `bytes` to `io` and flushes it; false when the peer is gone.
async fn write_all<IO: AsyncWrite + Unpin>(io: &mut IO, bytes: &[u8]) -> bool {
    io.write_all(bytes).await.is_ok() && io.flush().await.is_ok()
}

/// A connection with bytes already read from it put back in front: how a connection the
/// direct path read from goes to hyper.
pub(super) struct Replay<IO> {
    first: Bytes,
    io: IO,
}

impl<IO> Replay<IO> {
    pub(super) fn new(first: Bytes, io: IO) -> Self {
        Replay { first, io }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Replay<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.first.is_empty() {
            return Pin::new(&mut this.io).poll_read(cx, buf);
        }
        let n = this.first.len().min(buf.remaining());
        buf.put_slice(&this.first[..n]);
        this.first.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Replay<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}
