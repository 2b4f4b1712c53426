//! Keep-alive connections to instances: a small HTTP/1 pool per instance address, of
//! hyper client connections and of raw TCP connections for the direct path
//! (`server::direct`).
//!
//! A connection goes back to the pool once the app's response has been read to its
//! end, and is dropped after [`IDLE_TIMEOUT`] unused. The timeout is shorter than the
//! keep-alive of common app servers (Node's is 5 s), so the router closes an idle
//! connection before the app does and rarely sends a request down a connection the app
//! is closing (the well-known gorouter 502 race). When it happens anyway (an app with a
//! shorter keep-alive, or one that closes after some requests), a request that never
//! left goes again on a new connection, and so does an idempotent one without a body.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::{Body, Frame, Incoming};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::limit::UpstreamBody;

/// How long a pooled connection may sit idle.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(4);
/// How long a connection to an instance may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Idle connections kept per instance, set above the concurrency one instance commonly
/// sees: HTTP/2 clients keep many requests in flight each (50 connections of 10 streams
/// in `benches/router.sh`), and when more requests were under way than the pool could
/// keep, every burst closed the surplus and connected again (a tenth of HTTP/2 requests
/// paid a connect at a cap of 256). Connections idle past [`IDLE_TIMEOUT`] still go, so
/// the cap only bounds what a burst leaves behind for those seconds. HAProxy keeps idle
/// server connections without a cap by default (`pool-max-conn -1`).
const MAX_IDLE_PER_INSTANCE: usize = 1024;

/// Why a request did not get a response from the instance.
#[derive(Debug)]
pub enum SendError {
    /// No connection could be made: nothing reached the app, a retry is safe.
    Connect(std::io::Error),
    /// The request was sent (perhaps in part): the app may have seen it.
    Request(hyper::Error),
    /// The app answered a WebSocket handshake the router made with the wrong
    /// `Sec-WebSocket-Accept`.
    Handshake,
    /// On the direct path: the request was sent (perhaps in part), and no sound response
    /// head came back.
    Exchange(std::io::Error),
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Connect(e) => write!(f, "connecting: {e}"),
            SendError::Request(e) => write!(f, "{e}"),
            SendError::Exchange(e) => write!(f, "{e}"),
            SendError::Handshake => f.write_str(
                "it switched to WebSocket with a Sec-WebSocket-Accept that does not match the key",
            ),
        }
    }
}

/// Idle connections of one kind, by instance address, with when each went idle.
struct IdleList<C>(Mutex<HashMap<SocketAddr, Vec<(C, Instant)>>>);

impl<C> Default for IdleList<C> {
    fn default() -> Self {
        IdleList(Mutex::default())
    }
}

impl<C> IdleList<C> {
    /// The most recently idle connection to `addr` that is not too old and is `usable`;
    /// the others passed over are dropped.
    fn take(&self, addr: SocketAddr, usable: impl Fn(&C) -> bool) -> Option<C> {
        let mut idle = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let list = idle.get_mut(&addr)?;
        let now = Instant::now();
        while let Some((conn, since)) = list.pop() {
            if now.duration_since(since) < IDLE_TIMEOUT && usable(&conn) {
                return Some(conn);
            }
        }
        None
    }

    fn put(&self, addr: SocketAddr, conn: C) {
        let mut idle = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let list = idle.entry(addr).or_default();
        // Oldest first: those too old are a prefix. (One clock read, not one per
        // connection: this runs for every response.)
        let now = Instant::now();
        let stale = list.partition_point(|(_, since)| now.duration_since(*since) >= IDLE_TIMEOUT);
        list.drain(..stale);
        if list.len() < MAX_IDLE_PER_INSTANCE {
            list.push((conn, now));
        }
    }
}

/// How long an instance that refused a connection is skipped.
pub const EJECT_FOR: Duration = Duration::from_secs(5);

#[derive(Default)]
pub struct Pool {
    idle: IdleList<SendRequest<UpstreamBody>>,
    /// Raw connections for the direct path, idle between a response's end and the next
    /// request.
    streams: IdleList<TcpStream>,
    /// Instances that refused a connection, and until when to skip them.
    ejected: Mutex<HashMap<SocketAddr, Instant>>,
}

impl Pool {
    fn checkout(&self, addr: SocketAddr) -> Option<SendRequest<UpstreamBody>> {
        self.idle.take(addr, |sender| !sender.is_closed())
    }

    fn checkin(&self, addr: SocketAddr, sender: SendRequest<UpstreamBody>) {
        self.idle.put(addr, sender);
    }

    /// An idle raw connection to `addr` for the direct path. One the runtime has seen
    /// become readable is passed over: between responses an app sends nothing, so the
    /// app closed it (or broke the protocol). This costs no system call: tokio clears
    /// the readiness whenever a read drains the socket.
    pub fn checkout_stream(&self, addr: SocketAddr) -> Option<TcpStream> {
        self.streams.take(addr, |stream| {
            let mut cx = Context::from_waker(std::task::Waker::noop());
            stream.poll_read_ready(&mut cx).is_pending()
        })
    }

    /// Keeps `stream`, whose last response was read to its end, for the next request.
    pub fn checkin_stream(&self, addr: SocketAddr, stream: TcpStream) {
        self.streams.put(addr, stream);
    }

    async fn connect(addr: SocketAddr) -> Result<SendRequest<UpstreamBody>, SendError> {
        let stream = connect_tcp(addr).await?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(SendError::Request)?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(sender)
    }

    /// Skips `addr` for [`EJECT_FOR`].
    pub fn eject(&self, addr: SocketAddr) {
        let mut e = self.ejected.lock().unwrap_or_else(|p| p.into_inner());
        e.retain(|_, until| *until > Instant::now());
        e.insert(addr, Instant::now() + EJECT_FOR);
    }

    pub fn is_ejected(&self, addr: SocketAddr) -> bool {
        let e = self.ejected.lock().unwrap_or_else(|p| p.into_inner());
        e.get(&addr).is_some_and(|until| *until > Instant::now())
    }

    /// Sends `req` to the instance at `addr` on a pooled or new connection. When no
    /// connection could be made, the request comes back untouched, to try elsewhere;
    /// when the instance gave no answer, a copy comes back if the request may reach an
    /// app twice (idempotent, without a body).
    pub async fn send(
        self: &Arc<Self>,
        addr: SocketAddr,
        req: Request<UpstreamBody>,
    ) -> Result<Response<PooledBody>, (SendError, Option<Request<UpstreamBody>>)> {
        // A pooled connection may still be finishing its last message; waiting for it is
        // cheap. One that turns out closed is replaced by a new connection.
        let (mut sender, reused) = loop {
            match self.checkout(addr) {
                Some(mut s) => {
                    if s.ready().await.is_ok() {
                        break (s, true);
                    }
                }
                None => match Self::connect(addr).await {
                    Ok(s) => break (s, false),
                    Err(e) => return Err((e, Some(req))),
                },
            }
        };
        let mut again = bodiless_copy(&req);
        let resp = match sender.try_send_request(req).await {
            Ok(resp) => resp,
            Err(mut e) => {
                let unsent = e.take_message();
                let error = e.into_error();
                // On a reused connection the app may have closed it as the request went
                // out: the same instance gets it again on a new connection.
                // Otherwise it may go elsewhere if it never left, or may reach an app
                // twice and got no answer (an answer that is not HTTP is an answer).
                if error.is_parse() {
                    again = None;
                }
                let Some(req) = unsent.or_else(|| again.take()) else {
                    return Err((SendError::Request(error), None));
                };
                if !reused {
                    return Err((SendError::Request(error), Some(req)));
                }
                again = bodiless_copy(&req);
                sender = match Self::connect(addr).await {
                    Ok(s) => s,
                    Err(e) => return Err((e, Some(req))),
                };
                sender.send_request(req).await.map_err(|e| {
                    let again = again.filter(|_| !e.is_parse());
                    (SendError::Request(e), again)
                })?
            }
        };
        Ok(resp.map(|body| PooledBody {
            body,
            back: Some((sender, addr, Arc::clone(self))),
        }))
    }
}

/// A copy of `req` to send again, if it is idempotent (RFC 9110, 9.2.2) and has no body:
/// only such a request may reach the app twice without harm.
fn bodiless_copy(req: &Request<UpstreamBody>) -> Option<Request<UpstreamBody>> {
    if !req.method().is_idempotent() || !req.body().is_end_stream() {
        return None;
    }
    let mut copy = Request::new(UpstreamBody::empty());
    *copy.method_mut() = req.method().clone();
    *copy.uri_mut() = req.uri().clone();
    *copy.version_mut() = req.version();
    *copy.headers_mut() = req.headers().clone();
    Some(copy)
}

/// A TCP connection to an instance, given at most [`CONNECT_TIMEOUT`], without Nagle's
/// delay.
pub async fn connect_tcp(addr: SocketAddr) -> Result<TcpStream, SendError> {
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|_| {
            SendError::Connect(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "timed out",
            ))
        })?
        .map_err(SendError::Connect)?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// An instance's response body; when read to the end, its connection returns to the pool.
pub struct PooledBody {
    body: Incoming,
    back: Option<(SendRequest<UpstreamBody>, SocketAddr, Arc<Pool>)>,
}

impl PooledBody {
    /// Returns the connection to the pool: the message has been read to its end. (It is
    /// idle once hyper's connection task has seen that end too; checkout waits for it.)
    fn release(&mut self) {
        if let Some((sender, addr, pool)) = self.back.take() {
            pool.checkin(addr, sender);
        }
    }
}

impl Drop for PooledBody {
    fn drop(&mut self) {
        // A server stops polling once `is_end_stream` says so; a body dropped before its
        // end leaves the connection mid-message, and it is closed instead.
        if self.body.is_end_stream() {
            self.release();
        }
    }
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) || self.body.is_end_stream() {
            self.release();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}
