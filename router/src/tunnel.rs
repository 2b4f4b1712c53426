//! WebSockets: an `Upgrade: websocket` request goes to the instance on a connection of
//! its own; only when the app answers `101 Switching Protocols` does the router answer
//! 101 too and join the two connections byte for byte. Any other answer is passed back
//! as an ordinary response and no tunnel opens (so a client cannot smuggle requests
//! past the router by claiming an upgrade the app never agreed to).
//!
//! Over HTTP/2 a WebSocket is an extended CONNECT with `:protocol websocket` (RFC 8441)
//! on one stream. Apps speak HTTP/1.1, so the router turns it into the HTTP/1.1
//! handshake (GET with a `Sec-WebSocket-Key` of its own, whose answer it checks) and,
//! once the app switches, answers the client 200 and joins the stream to the app's
//! connection.
//!
//! A tunnel is bounded like the connections it joins: it is closed after a while with
//! no byte either way ([`Pending::join`]), and the server caps how many are open at
//! once.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::pool::{connect_tcp, SendError};
use crate::proxy::{connection_tokens, next_random};

/// Whether the request asks to become a WebSocket: GET with `Connection: upgrade` and
/// `Upgrade: websocket`.
pub fn is_websocket<B>(req: &Request<B>) -> bool {
    req.method() == Method::GET
        && connection_tokens(req.headers()).any(|t| t.eq_ignore_ascii_case("upgrade"))
        && req
            .headers()
            .get(header::UPGRADE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("websocket"))
}

/// Whether the request is a WebSocket over HTTP/2 (RFC 8441): an extended CONNECT whose
/// `:protocol` is `websocket`.
pub fn is_h2_websocket<B>(req: &Request<B>) -> bool {
    req.method() == Method::CONNECT
        && req.version() == Version::HTTP_2
        && req
            .extensions()
            .get::<hyper::ext::Protocol>()
            .is_some_and(|p| p.as_str().eq_ignore_ascii_case("websocket"))
}

/// Turns an HTTP/2 WebSocket request (already filtered into an HTTP/1.1 request to the
/// app) into the HTTP/1.1 handshake: GET, with a new `Sec-WebSocket-Key`. Returns the
/// `Sec-WebSocket-Accept` the app must answer with.
pub fn h1_handshake<B>(req: &mut Request<B>) -> String {
    *req.method_mut() = Method::GET;
    req.extensions_mut().remove::<hyper::ext::Protocol>();
    // A key only has to differ between handshakes: the generator of request ids will do.
    let nonce = [next_random().to_le_bytes(), next_random().to_le_bytes()].concat();
    let key = base64(&nonce);
    let h = req.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&key) {
        h.insert(header::SEC_WEBSOCKET_KEY, v);
    }
    h.entry(header::SEC_WEBSOCKET_VERSION)
        .or_insert(HeaderValue::from_static("13"));
    accept_for(&key)
}

/// `Sec-WebSocket-Accept` for `key`: base64 of the SHA-1 of the key and RFC 6455's GUID.
fn accept_for(key: &str) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(key.as_bytes());
    ctx.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    base64(ctx.finish().as_ref())
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Makes the app's 101 into the answer an HTTP/2 client expects: 200, without the
/// HTTP/1.1 handshake headers (subprotocol and extensions stay).
pub fn h2_answer<B>(resp: &mut Response<B>) {
    *resp.status_mut() = StatusCode::OK;
    let h = resp.headers_mut();
    for name in [
        header::SEC_WEBSOCKET_ACCEPT,
        header::UPGRADE,
        header::CONNECTION,
        header::CONTENT_LENGTH,
    ] {
        h.remove(name);
    }
}

/// Puts back the two headers an upgrade needs after hop-by-hop headers were removed.
pub fn mark_upgrade(h: &mut HeaderMap) {
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
}

/// The two sides of a tunnel the app agreed to, not yet joined.
pub struct Pending {
    client: hyper::upgrade::OnUpgrade,
    app: hyper::upgrade::OnUpgrade,
}

/// How a tunnel ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// A side closed or failed (or never finished upgrading).
    Closed,
    /// No byte went either way for the idle timeout: the router closed both sides.
    Idle,
}

/// Sends the upgrade request `req` (headers already filtered) to `addr`. On 101 (with
/// `accept` as its `Sec-WebSocket-Accept`, when the router made the key) the tunnel
/// between `client` (the client side's pending upgrade) and the instance is returned,
/// for the caller to [`Pending::join`] once the response is on its way; the response is
/// returned either way.
pub async fn open(
    addr: SocketAddr,
    mut req: Request<Incoming>,
    client: hyper::upgrade::OnUpgrade,
    accept: Option<&str>,
) -> Result<(Response<Incoming>, Option<Pending>), SendError> {
    mark_upgrade(req.headers_mut());
    let stream = connect_tcp(addr).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(SendError::Request)?;
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    let mut resp = sender.send_request(req).await.map_err(SendError::Request)?;
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        return Ok((resp, None));
    }
    let answered = resp.headers().get(header::SEC_WEBSOCKET_ACCEPT);
    if accept.is_some_and(|a| answered.is_none_or(|v| v.as_bytes() != a.as_bytes())) {
        return Err(SendError::Handshake);
    }
    let app = hyper::upgrade::on(&mut resp);
    Ok((resp, Some(Pending { client, app })))
}

impl Pending {
    /// Waits for both sides to finish upgrading, then passes bytes both ways until
    /// either side closes, or until no byte has gone either way for `idle` (then both
    /// are closed). An open tunnel holds two connections (the client's, or its HTTP/2
    /// stream, and the app's) and wakes nothing while quiet, so without this bound a
    /// tunnel forgotten by both ends, or held open on purpose, would be held for ever.
    pub async fn join(self, idle: Duration) -> Ended {
        let (Ok(client), Ok(app)) = (self.client.await, self.app.await) else {
            return Ended::Closed;
        };
        // Reads that brought bytes, either way: the watch below looks for a change.
        let moved = AtomicU64::new(0);
        let mut client = Watched {
            io: TokioIo::new(client),
            moved: &moved,
        };
        let mut app = Watched {
            io: TokioIo::new(app),
            moved: &moved,
        };
        let copy = tokio::io::copy_bidirectional(&mut client, &mut app);
        tokio::select! {
            _ = copy => Ended::Closed,
            () = quiet_for(idle, || Some(moved.load(Ordering::Relaxed))) => Ended::Idle,
        }
    }
}

/// Completes once `activity` has shown none for `idle`: it gives `None` while something
/// is under way, else a count that moves with each new piece of work. It is looked at
/// every quarter of `idle` (nothing is timed per byte or per request), so the end comes
/// between `idle` and 1.25 × `idle` after the last activity.
pub(crate) async fn quiet_for(idle: Duration, mut activity: impl FnMut() -> Option<u64>) {
    let tick = (idle / 4).max(Duration::from_millis(10));
    let mut seen = activity();
    let mut quiet_since = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(tick).await;
        let now = activity();
        if now.is_none() || now != seen {
            seen = now;
            quiet_since = tokio::time::Instant::now();
        } else if quiet_since.elapsed() >= idle {
            return;
        }
    }
}

/// One side of a tunnel, counting the reads that bring bytes into `moved`.
struct Watched<'a, IO> {
    io: IO,
    moved: &'a AtomicU64,
}

impl<IO: AsyncRead + Unpin> AsyncRead for Watched<'_, IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let read = Pin::new(&mut this.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.moved.fetch_add(1, Ordering::Relaxed);
        }
        read
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Watched<'_, IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_is_computed_as_rfc_6455_shows() {
        // RFC 6455, section 1.3.
        assert_eq!(
            accept_for("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        assert_eq!(base64(b"the sample nonce"), "dGhlIHNhbXBsZSBub25jZQ==");
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(base64(b"a"), "YQ==");
    }

    #[test]
    fn only_a_get_with_both_headers_is_a_websocket() {
        let req = |m: Method, conn: &str, up: &str| {
            Request::builder()
                .method(m)
                .header(header::CONNECTION, conn)
                .header(header::UPGRADE, up)
                .body(())
                .unwrap()
        };
        assert!(is_websocket(&req(
            Method::GET,
            "keep-alive, Upgrade",
            "WebSocket"
        )));
        assert!(!is_websocket(&req(Method::POST, "upgrade", "websocket")));
        assert!(!is_websocket(&req(Method::GET, "keep-alive", "websocket")));
        assert!(!is_websocket(&req(Method::GET, "upgrade", "h2c")));
    }
}
