//! The direct path: HTTP/1.1 requests without a body, proxied without hyper.
//!
//! Most requests through a router are of this kind (GET, HEAD, DELETE, … on keep-alive
//! connections), and for them hyper's server and client cost more than the proxying
//! itself: a connection task on each side, a channel and a oneshot between them, and
//! bodies polled frame by frame. Profiled under `benches/router.sh`, the router spent
//! 7.6-8.7 µs of user time per request against HAProxy's 3.7-3.9, with the same four
//! socket calls and the same kernel time (13 µs).
//!
//! This path serves a request in its client connection's own task. It parses the head
//! with httparse, runs the same phases as every request ([`Router::pick`],
//! [`proxy::upstream_request_filter`], [`proxy::response_filter`]), writes the head to a
//! pooled raw connection to the instance, and passes the app's response back: the head
//! rewritten, the body byte for byte, followed by its framing (length, chunks, or the
//! connection's end) to know where it ends.
//!
//! Anything else hands the connection to hyper for the rest of its life, with the bytes
//! already read put back in front: HTTP/2's preface, HTTP/1.0, a request with a body or
//! `Expect`, an upgrade, and any head hyper must refuse (too large, malformed). So every
//! defence of the hyper path (the framing guard, 431, 400) still applies to them.

use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

use super::{unix_ms, unreachable, Conn, Picked, Router, Served};
use crate::framing::{ChunkedBody, ChunkedEnd};
use crate::pool::{self, SendError};
use crate::proxy::{self, Fault, ProxyError};

/// Headers a message may have, as hyper allows by default.
const MAX_HEADERS: usize = 100;
/// The largest response head the router takes from an app.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;
/// Room made in a buffer before each read.
const READ_SIZE: usize = 16 * 1024;

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
}

/// How an app's response body is framed.
enum Framing {
    /// No body: a response to HEAD, a 204 or a 304.
    Empty,
    /// This many bytes.
    Length(u64),
    Chunked(ChunkedBody),
    /// Until the app closes the connection.
    UntilClose,
}

/// An app's response head, parsed and checked.
struct AppHead {
    resp: Response<()>,
    framing: Framing,
    /// Whether the app keeps the connection open after the response.
    keep_alive: bool,
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
            client: BytesMut::with_capacity(READ_SIZE),
            app: BytesMut::new(),
            out: Vec::new(),
        };
        let mut head_deadline = Deadline::new(self.config.header_read_timeout);
        let mut answer_deadline = Deadline::new(self.config.response_timeout);
        loop {
            // A whole request head (slowloris: it must come within the head timeout).
            head_deadline.start();
            let len = loop {
                match head_length(&bufs.client, self.config.max_header_bytes) {
                    Some(Some(len)) => break len,
                    Some(None) => {}
                    None => return Left::ToHyper(io, bufs.client.freeze()),
                }
                drain.idle.store(bufs.client.is_empty(), Ordering::Relaxed);
                if bufs.client.is_empty() && drain.closing() {
                    return Left::Closed;
                }
                bufs.client.reserve(READ_SIZE);
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
            let head = bufs.client.split_to(len).freeze();
            let Some(req) = direct_request(&head) else {
                let mut all = BytesMut::from(&head[..]);
                all.extend_from_slice(&bufs.client);
                return Left::ToHyper(io, all.freeze());
            };
            let keep_alive = self
                .exchange(&mut io, req, conn, drain, &mut bufs, &mut answer_deadline)
                .await;
            if !keep_alive {
                let _ = io.shutdown().await;
                return Left::Closed;
            }
        }
    }

    /// Serves one request and writes its answer to `io`; returns whether the connection
    /// can carry another.
    async fn exchange<IO>(
        &self,
        io: &mut IO,
        mut req: Request<()>,
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
            .forward(&mut req, conn, &mut served, bufs, deadline)
            .await;
        let (picked, mut stream, app_head) = match answer {
            Ok(a) => a,
            Err(e) => {
                let close = client_closes || drain.closing() || e.status == StatusCode::BAD_REQUEST;
                let body = e.body();
                let status = e.status.as_u16();
                let len = body.len() as u64;
                let head = self.refusal_head(e);
                let length = format!("content-length: {len}\r\n");
                write_response_head(&mut bufs.out, &head, length.as_bytes(), close);
                bufs.out.extend_from_slice(body.as_bytes());
                self.record(conn, served, status, Some(len), started.elapsed(), true);
                let written = write_all(io, &bufs.out).await;
                return written && !close;
            }
        };
        let AppHead {
            resp,
            framing,
            keep_alive,
        } = app_head;
        let close = client_closes || drain.closing() || matches!(framing, Framing::UntilClose);
        let bytes = resp
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse().ok());
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
        write_response_head(&mut bufs.out, &resp, framing_header, close);
        match relay_body(io, &mut stream, framing, bufs).await {
            Relayed::Whole if keep_alive => {
                self.pool.checkin_stream(picked.backend.addr, stream);
                !close
            }
            Relayed::Whole => !close,
            Relayed::Cut => false,
        }
    }

    /// Routes `req`, sends it to an instance and reads the response's head: the
    /// instance's connection comes back with it, the rest of the response in `bufs.app`.
    async fn forward(
        &self,
        req: &mut Request<()>,
        conn: &Conn,
        served: &mut Served,
        bufs: &mut Buffers,
        deadline: &mut Deadline,
    ) -> Result<(Picked, TcpStream, AppHead), ProxyError> {
        let mut picked = self.pick(req, served)?;
        let request_id =
            proxy::upstream_request_filter(req, &conn.client, conn.proto, conn.trusted, unix_ms());
        if served.logging {
            served.request_id = Some(request_id.clone());
        }
        write_request_head(&mut bufs.out, req);
        // Only such a request may reach the app twice without harm (RFC 9110, 9.2.2).
        let idempotent = req.method().is_idempotent();
        let head_only = req.method() == Method::HEAD;
        let mut tried = Vec::new();
        deadline.start();
        loop {
            let addr = picked.backend.addr;
            let sent = tokio::select! {
                biased;
                sent = self.send_head(addr, &bufs.out, &mut bufs.app, idempotent) => sent,
                () = deadline.passed() => return Err(self.too_slow(&picked)),
            };
            let e = match sent {
                Ok((stream, len)) => {
                    let head = bufs.app.split_to(len).freeze();
                    let parsed = app_head(&head, head_only).map_err(|why| {
                        let e = std::io::Error::new(std::io::ErrorKind::InvalidData, why);
                        unreachable(&picked.app, &picked.backend, &SendError::Exchange(e))
                    });
                    let mut app_head = parsed?;
                    proxy::response_filter(&mut app_head.resp, request_id, &picked.backend);
                    return Ok((picked, stream, app_head));
                }
                Err(e) => e,
            };
            let unreachable = unreachable(&picked.app, &picked.backend, &e);
            if !matches!(e, SendError::Connect(_)) {
                self.pool.eject(picked.backend.addr);
                return Err(unreachable);
            }
            if !self.try_elsewhere(&mut picked, req.uri().path(), &mut tried, served) {
                return Err(unreachable);
            }
        }
    }

    /// Writes `head` to the instance at `addr`, on a pooled connection or a new one, and
    /// reads until `app` holds a whole response head; returns the connection and the
    /// head's length. When the app closed a pooled connection under the request, it
    /// goes again on a new one if it did not go out, or is `idempotent`.
    async fn send_head(
        &self,
        addr: std::net::SocketAddr,
        head: &[u8],
        app: &mut BytesMut,
        idempotent: bool,
    ) -> Result<(TcpStream, usize), SendError> {
        app.clear();
        if let Some(mut stream) = self.pool.checkout_stream(addr) {
            match try_exchange(&mut stream, head, app).await {
                Ok(len) => return Ok((stream, len)),
                Err(Failure::Unsent(_)) => {}
                Err(Failure::NoAnswer(_)) if idempotent => {}
                Err(Failure::NoAnswer(e) | Failure::Bad(e)) => return Err(e),
            }
            app.clear();
        }
        let mut stream = pool::connect_tcp(addr).await?;
        match try_exchange(&mut stream, head, app).await {
            Ok(len) => Ok((stream, len)),
            Err(Failure::Unsent(e) | Failure::NoAnswer(e) | Failure::Bad(e)) => Err(e),
        }
    }

    /// The head of a router-made answer, logged when the app is at fault.
    fn refusal_head(&self, e: ProxyError) -> Response<()> {
        if e.fault == Fault::Upstream {
            tracing::info!(status = e.status.as_u16(), "{}", e.message);
        }
        e.head()
    }
}

/// Writes `head` and reads a response head (past any 1xx) into `app`.
async fn try_exchange(
    stream: &mut TcpStream,
    head: &[u8],
    app: &mut BytesMut,
) -> Result<usize, Failure> {
    let exchange = |e: std::io::Error| SendError::Exchange(e);
    if let Err(e) = stream.write_all(head).await {
        return Err(Failure::Unsent(exchange(e)));
    }
    let mut got_any = false;
    loop {
        match response_head_length(app) {
            Ok(Some(len)) => return Ok(len),
            Ok(None) => {}
            Err(why) => {
                let e = std::io::Error::new(std::io::ErrorKind::InvalidData, why);
                return Err(Failure::Bad(exchange(e)));
            }
        }
        app.reserve(READ_SIZE);
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

/// The length of the request head at the start of `input`: `Some(None)` while it is
/// incomplete, `None` when hyper is to have the connection (HTTP/2's preface, a head
/// too large or malformed).
fn head_length(input: &[u8], max_head: usize) -> Option<Option<usize>> {
    const PREFACE: &[u8] = b"PRI * HTTP/2.0";
    if input.len() < PREFACE.len() && PREFACE.starts_with(input) {
        return Some(None);
    }
    if input.starts_with(PREFACE) {
        return None;
    }
    let mut headers = [const { MaybeUninit::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    match req.parse_with_uninit_headers(input, &mut headers) {
        Ok(httparse::Status::Complete(len)) if len <= max_head => Some(Some(len)),
        Ok(httparse::Status::Partial) if input.len() < max_head => Some(None),
        _ => None,
    }
}

/// The request in `head` (a whole head), if the direct path serves it: HTTP/1.1, no
/// body, no upgrade, no `Expect`, and every part valid for the `http` types.
fn direct_request(head: &Bytes) -> Option<Request<()>> {
    let mut headers = [const { MaybeUninit::uninit() }; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut []);
    parsed.parse_with_uninit_headers(head, &mut headers).ok()?;
    if parsed.version != Some(1) {
        return None;
    }
    let method = Method::from_bytes(parsed.method?.as_bytes()).ok()?;
    if method == Method::CONNECT {
        return None;
    }
    let uri = Uri::from_maybe_shared(head.slice_ref(parsed.path?.as_bytes())).ok()?;
    // Room for the forwarding headers the router adds, so the map does not grow.
    let mut map = HeaderMap::with_capacity(parsed.headers.len() + 6);
    for h in parsed.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes()).ok()?;
        if name == header::CONTENT_LENGTH
            || name == header::TRANSFER_ENCODING
            || name == header::UPGRADE
            || name == header::EXPECT
        {
            return None;
        }
        let value = HeaderValue::from_maybe_shared(head.slice_ref(h.value)).ok()?;
        map.append(name, value);
    }
    let mut req = Request::new(());
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    *req.version_mut() = Version::HTTP_11;
    *req.headers_mut() = map;
    Some(req)
}

/// The length of the response head at the start of `input`, skipping (and dropping)
/// any 1xx informational responses before it; `None` while incomplete.
fn response_head_length(input: &mut BytesMut) -> Result<Option<usize>, &'static str> {
    loop {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut headers);
        let len = match resp.parse(input) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) if input.len() < MAX_RESPONSE_HEAD => return Ok(None),
            Ok(httparse::Status::Partial) => return Err("its response head is too large"),
            Err(_) => return Err("its response is not valid HTTP/1.1"),
        };
        match resp.code {
            // It was asked for no upgrade.
            Some(101) => return Err("it switched protocols unasked"),
            Some(100..=199) => input.advance(len),
            _ => return Ok(Some(len)),
        }
    }
}

/// The app's response in `head`, checked, with how its body is framed (RFC 9112, 6.3).
fn app_head(head: &Bytes, head_request: bool) -> Result<AppHead, &'static str> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Response::new(&mut headers);
    parsed
        .parse(head)
        .map_err(|_| "its response is not valid HTTP/1.1")?;
    let status = parsed
        .code
        .and_then(|c| StatusCode::from_u16(c).ok())
        .ok_or("its response has no valid status")?;
    // Room for X-Request-Id and a sticky session's cookie.
    let mut map = HeaderMap::with_capacity(parsed.headers.len() + 2);
    let mut length: Option<u64> = None;
    let mut lengths_differ = false;
    let mut chunked = None;
    for h in parsed.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes())
            .map_err(|_| "its response has an invalid header name")?;
        if name == header::CONTENT_LENGTH {
            let n = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or("its response has an invalid Content-Length")?;
            lengths_differ |= length.is_some_and(|l| l != n);
            length = Some(n);
        } else if name == header::TRANSFER_ENCODING {
            // Only the last coding counts: chunked, or the body runs to the close.
            chunked = Some(
                h.value
                    .rsplit(|b| *b == b',')
                    .next()
                    .is_some_and(|c| c.trim_ascii().eq_ignore_ascii_case(b"chunked")),
            );
        }
        let value = HeaderValue::from_maybe_shared(head.slice_ref(h.value))
            .map_err(|_| "its response has an invalid header value")?;
        map.append(name, value);
    }
    if lengths_differ {
        return Err("its response has differing Content-Lengths");
    }
    let closes = map
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("close"));
    let mut keep_alive = parsed.version == Some(1) && !closes;
    let no_body =
        head_request || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED;
    let framing = match (chunked, length) {
        _ if no_body => Framing::Empty,
        (Some(true), l) => {
            if l.is_some() {
                // Both: the chunks frame the body (RFC 9112, 6.3), the length goes, and
                // the connection is not trusted with another message.
                map.remove(header::CONTENT_LENGTH);
                keep_alive = false;
            }
            Framing::Chunked(ChunkedBody::new())
        }
        (Some(false), _) => {
            map.remove(header::CONTENT_LENGTH);
            Framing::UntilClose
        }
        (None, Some(n)) => Framing::Length(n),
        (None, None) => Framing::UntilClose,
    };
    if matches!(framing, Framing::UntilClose) {
        keep_alive = false;
    }
    let mut resp = Response::new(());
    *resp.status_mut() = status;
    *resp.headers_mut() = map;
    Ok(AppHead {
        resp,
        framing,
        keep_alive,
    })
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
        bufs.app.reserve(READ_SIZE);
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

/// The request line and headers of `req`, in origin form, into `out`.
fn write_request_head(out: &mut Vec<u8>, req: &Request<()>) {
    out.clear();
    out.extend_from_slice(req.method().as_str().as_bytes());
    out.push(b' ');
    let target = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    write_headers(out, req.headers());
    out.extend_from_slice(b"\r\n");
}

/// The status line and headers of `resp` into `out`, then the header lines in `framing`
/// (the body's length or coding), and `connection: close` when the connection ends
/// after it.
fn write_response_head(out: &mut Vec<u8>, resp: &Response<()>, framing: &[u8], close: bool) {
    out.clear();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(resp.status().as_str().as_bytes());
    out.push(b' ');
    let reason = resp.status().canonical_reason().unwrap_or("");
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\n");
    write_headers(out, resp.headers());
    out.extend_from_slice(framing);
    if close && !resp.headers().contains_key(header::CONNECTION) {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

fn write_headers(out: &mut Vec<u8>, headers: &HeaderMap) {
    for (name, value) in headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
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
