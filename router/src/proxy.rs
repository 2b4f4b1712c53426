//! The phases of one proxied request, each a small function with a default behaviour.

use std::net::SocketAddr;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri, Version};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};

use crate::host;
use crate::table::{Backend, RouteTable};

/// The body type of every response the router sends.
pub type Body = BoxBody<Bytes, hyper::Error>;

/// Whose fault a failed request was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The client sent something wrong or asked for something that does not exist.
    Downstream,
    /// The app could not be reached or misbehaved.
    Upstream,
}

/// A request the router answers itself.
#[derive(Debug, Clone)]
pub struct ProxyError {
    pub status: StatusCode,
    /// The `X-Paas-Router-Error` value, stable for scripts and dashboards.
    pub kind: &'static str,
    pub message: String,
    pub fault: Fault,
}

impl ProxyError {
    fn new(status: StatusCode, kind: &'static str, fault: Fault, message: String) -> Self {
        ProxyError {
            status,
            kind,
            message,
            fault,
        }
    }

    /// The response the client gets: the status, `X-Paas-Router-Error`, a short body.
    pub fn into_response(self) -> Response<Body> {
        let mut resp = Response::new(text_body(format!("{}\n", self.message)));
        *resp.status_mut() = self.status;
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        h.insert("x-paas-router-error", HeaderValue::from_static(self.kind));
        resp
    }
}

pub fn text_body(s: String) -> Body {
    Full::new(Bytes::from(s))
        .map_err(|never| match never {})
        .boxed()
}

/// Phase 1: which host does the request want? HTTP/1.1 must name one.
pub fn request_filter<B>(req: &Request<B>) -> Result<String, ProxyError> {
    let raw = match req.uri().authority() {
        Some(a) => Some(a.as_str().to_string()),
        None => match req.headers().get(header::HOST) {
            Some(v) => Some(
                v.to_str()
                    .map_err(|_| bad_request("the Host header is not valid text"))?
                    .to_string(),
            ),
            None => None,
        },
    };
    let Some(raw) = raw else {
        return if req.version() == Version::HTTP_10 {
            Err(ProxyError::new(
                StatusCode::NOT_FOUND,
                "unknown_route",
                Fault::Downstream,
                "no app is routed here: send a Host header naming the app".to_string(),
            ))
        } else {
            Err(bad_request("HTTP/1.1 requests must have a Host header"))
        };
    };
    host::normalise(&raw).ok_or_else(|| bad_request("the Host header is not a valid host name"))
}

fn bad_request(msg: &str) -> ProxyError {
    ProxyError::new(
        StatusCode::BAD_REQUEST,
        "bad_request",
        Fault::Downstream,
        format!("bad request: {msg}"),
    )
}

/// Phase 2: which instance serves it?
pub fn upstream_peer(table: &RouteTable, host: &str) -> Result<(String, Backend), ProxyError> {
    let pool = table.lookup(host).ok_or_else(|| {
        ProxyError::new(
            StatusCode::NOT_FOUND,
            "unknown_route",
            Fault::Downstream,
            format!("no app is routed at {host}: push one with `paas push NAME`"),
        )
    })?;
    let backend = pool.pick().ok_or_else(|| {
        ProxyError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_healthy_instance",
            Fault::Upstream,
            format!("app {} has no healthy instance right now", pool.app),
        )
    })?;
    Ok((pool.app.clone(), backend.clone()))
}

/// Headers that describe one connection, not the message, and so never cross a proxy
/// (RFC 9110 §7.6.1).
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
];

/// Removes hop-by-hop headers, including those the sender lists in `Connection`.
pub fn strip_hop_by_hop(h: &mut HeaderMap) {
    let named: Vec<HeaderName> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for n in named {
        h.remove(n);
    }
    for n in HOP_BY_HOP {
        h.remove(n);
    }
    h.remove(header::UPGRADE);
}

/// Phase 3: point the request at the instance and say who the client is.
/// Client-supplied forwarding headers are replaced, not trusted.
pub fn upstream_request_filter<B>(req: &mut Request<B>, client: SocketAddr, backend: &Backend) {
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".to_string());
    if let Ok(uri) = format!("http://{}{}", backend.addr, path).parse::<Uri>() {
        *req.uri_mut() = uri;
    }
    *req.version_mut() = Version::HTTP_11;
    let host = req.headers().get(header::HOST).cloned();
    let h = req.headers_mut();
    strip_hop_by_hop(h);
    if let Ok(v) = HeaderValue::from_str(&client.ip().to_string()) {
        h.insert("x-forwarded-for", v);
    }
    h.insert("x-forwarded-proto", HeaderValue::from_static("http"));
    if let Some(host) = host {
        h.insert("x-forwarded-host", host);
    }
}

/// Phase 4: the app's response, minus its hop-by-hop headers.
pub fn response_filter<B>(resp: &mut Response<B>) {
    // The client talks HTTP/1.1 to the router whatever the app speaks behind it.
    *resp.version_mut() = Version::HTTP_11;
    strip_hop_by_hop(resp.headers_mut());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_named_headers_are_removed() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("close, x-secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-kept"));
    }

    #[test]
    fn http11_without_host_is_a_bad_request() {
        let req = Request::builder().uri("/").body(()).unwrap();
        assert_eq!(
            request_filter(&req).unwrap_err().status,
            StatusCode::BAD_REQUEST
        );
        let req = Request::builder()
            .uri("/")
            .header("host", "App.Localhost:8080")
            .body(())
            .unwrap();
        assert_eq!(request_filter(&req).unwrap(), "app.localhost");
    }
}
