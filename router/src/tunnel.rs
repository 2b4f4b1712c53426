//! WebSockets: an `Upgrade: websocket` request goes to the instance on a connection of
//! its own; only when the app answers `101 Switching Protocols` does the router answer
//! 101 too and join the two connections byte for byte. Any other answer is passed back
//! as an ordinary response and no tunnel opens (so a client cannot smuggle requests
//! past the router by claiming an upgrade the app never agreed to).

use std::net::SocketAddr;

use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use crate::pool::{connect_tcp, SendError};
use crate::proxy::connection_tokens;

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

/// Puts back the two headers an upgrade needs after hop-by-hop headers were removed.
pub fn mark_upgrade(h: &mut HeaderMap) {
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
}

/// Sends the upgrade request `req` (headers already filtered) to `addr`. On 101 the
/// tunnel between `client` (the client side's pending upgrade) and the instance is
/// started; the response is returned either way.
pub async fn open(
    addr: SocketAddr,
    mut req: Request<Incoming>,
    client: hyper::upgrade::OnUpgrade,
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
