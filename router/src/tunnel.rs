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

use std::net::SocketAddr;

use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

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

/// Sends the upgrade request `req` (headers already filtered) to `addr`. On 101 (with
/// `accept` as its `Sec-WebSocket-Accept`, when the router made the key) the tunnel
/// between `client` (the client side's pending upgrade) and the instance is started; the
/// response is returned either way.
pub async fn open(
    addr: SocketAddr,
    mut req: Request<Incoming>,
    client: hyper::upgrade::OnUpgrade,
    accept: Option<&str>,
) -> Result<Response<Incoming>, SendError> {
    mark_upgrade(req.headers_mut());
    let stream = connect_tcp(addr).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(SendError::Request)?;
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    let mut resp = sender.send_request(req).await.map_err(SendError::Request)?;
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        let answered = resp.headers().get(header::SEC_WEBSOCKET_ACCEPT);
        if accept.is_some_and(|a| answered.is_none_or(|v| v.as_bytes() != a.as_bytes())) {
            return Err(SendError::Handshake);
        }
        let app = hyper::upgrade::on(&mut resp);
        tokio::spawn(async move {
            let (Ok(client), Ok(app)) = (client.await, app.await) else {
                return;
            };
            let (mut client, mut app) = (TokioIo::new(client), TokioIo::new(app));
            let _ = tokio::io::copy_bidirectional(&mut client, &mut app).await;
        });
    }
    Ok(resp)
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
