//! The phases of one proxied request, each a small function with a default behaviour.

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri, Version};
use http_body_util::Full;

use crate::host;
use crate::table::{Backend, RouteTable};

/// The body of every response the router sends: the app's, streamed through, or a
/// short one the router makes. An enum rather than a boxed body: no allocation and no
/// dynamic call per response.
pub enum Body {
    /// The app's answer, counted as a request under way to its instance until sent.
    App(crate::pool::PooledBody, crate::table::ActiveRequest),
    /// The same, read from a raw pooled connection (a request without a body).
    Raw(crate::server::RawBody, crate::table::ActiveRequest),
    Local(Full<Bytes>),
    /// An answer on a connection of its own (not pooled): the app's to an upgrade, or
    /// a route service's.
    Unpooled(hyper::body::Incoming),
}

/// Why an app's response body could not be passed on.
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, BodyError>>> {
        match self.get_mut() {
            Body::App(b, _) => std::pin::Pin::new(b).poll_frame(cx).map_err(Into::into),
            Body::Raw(b, _) => std::pin::Pin::new(b).poll_frame(cx).map_err(Into::into),
            Body::Local(b) => std::pin::Pin::new(b)
                .poll_frame(cx)
                .map_err(|never| match never {}),
            Body::Unpooled(b) => std::pin::Pin::new(b).poll_frame(cx).map_err(Into::into),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::App(b, _) => b.is_end_stream(),
            Body::Raw(b, _) => b.is_end_stream(),
            Body::Local(b) => b.is_end_stream(),
            Body::Unpooled(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        match self {
            Body::App(b, _) => b.size_hint(),
            Body::Raw(b, _) => b.size_hint(),
            Body::Local(b) => b.size_hint(),
            Body::Unpooled(b) => b.size_hint(),
        }
    }
}

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
    pub fn new(status: StatusCode, kind: &'static str, fault: Fault, message: String) -> Self {
        ProxyError {
            status,
            kind,
            message,
            fault,
        }
    }

    /// The response the client gets: the status, `X-Paas-Router-Error`, a short body.
    pub fn into_response(self) -> Response<Body> {
        let head = self.head();
        head.map(|()| text_body(self.body()))
    }

    /// The head of the response the client gets, without its body's length.
    pub fn head(&self) -> Response<()> {
        let mut resp = Response::new(());
        *resp.status_mut() = self.status;
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        h.insert("x-paas-router-error", HeaderValue::from_static(self.kind));
        if self.status == StatusCode::BAD_REQUEST {
            // After a malformed request the connection's framing cannot be trusted: close
            // it rather than read what follows as a next request (request smuggling).
            h.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        resp
    }

    /// The short body of the response the client gets.
    pub fn body(&self) -> String {
        format!("{}\n", self.message)
    }
}

pub fn text_body(s: String) -> Body {
    Body::Local(Full::new(Bytes::from(s)))
}

/// Refuses the message framings that request-smuggling attacks use (CWE-444; the
/// CL.TE/TE.CL desyncs of "HTTP Desync Attacks", Kettle 2019): Content-Length with
/// Transfer-Encoding, more than one Content-Length, and any Transfer-Encoding whose last
/// coding is not exactly `chunked`.
pub fn framing_filter(h: &HeaderMap) -> Result<(), ProxyError> {
    let cl: Vec<&HeaderValue> = h.get_all(header::CONTENT_LENGTH).iter().collect();
    let te: Vec<&HeaderValue> = h.get_all(header::TRANSFER_ENCODING).iter().collect();
    if !cl.is_empty() && !te.is_empty() {
        return Err(bad_request("Content-Length and Transfer-Encoding together"));
    }
    if cl.len() > 1 || cl.iter().any(|v| v.as_bytes().contains(&b',')) {
        return Err(bad_request("more than one Content-Length"));
    }
    if !te.is_empty() {
        let codings: Vec<String> = te
            .iter()
            .map(|v| v.to_str().unwrap_or("\u{fffd}"))
            .flat_map(|v| v.split(','))
            .map(|c| c.trim().to_string())
            .collect();
        let tokens_ok = codings
            .iter()
            .all(|c| !c.is_empty() && c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
        let last_chunked = codings
            .last()
            .is_some_and(|c| c.eq_ignore_ascii_case("chunked"));
        let chunked_once = codings
            .iter()
            .filter(|c| c.eq_ignore_ascii_case("chunked"))
            .count()
            == 1;
        if !(tokens_ok && last_chunked && chunked_once) {
            return Err(bad_request(
                "Transfer-Encoding must end with a single chunked",
            ));
        }
    }
    Ok(())
}

/// Phase 1: which host does the request want? The request target's authority when it
/// has one (HTTP/1.1's absolute form, HTTP/2's `:authority`), else the Host header.
///
/// RFC 9112, 3.2: an HTTP/1.1 request without a Host, with more than one, or with an
/// invalid one is refused with 400, whatever the form of its target. RFC 9112, 3.2.2: a
/// proxy ignores the Host of an absolute-form request (and
/// [`upstream_request_filter`] replaces it with the target's authority). RFC 9113,
/// 8.3.1: over HTTP/2 a Host naming another host than `:authority` makes the request
/// malformed. So the host a request is routed by is the only one its app can see: a
/// client cannot reach app A while app A reads app B's name (in the links, redirects
/// and cache keys it builds from Host).
pub fn request_filter<B>(req: &Request<B>) -> Result<String, ProxyError> {
    framing_filter(req.headers())?;
    let mut hosts = req.headers().get_all(header::HOST).iter();
    let host_header = hosts.next();
    if hosts.next().is_some() {
        return Err(bad_request("more than one Host header"));
    }
    let host_header = match host_header {
        Some(v) => Some(
            v.to_str()
                .map_err(|_| bad_request("the Host header is not valid text"))?,
        ),
        None => None,
    };
    let invalid_host = || bad_request("the Host header is not a valid host name");
    let Some(authority) = req.uri().authority() else {
        // Origin form: the Host header names the host (the common case, kept short).
        return match host_header {
            Some(raw) => host::normalise(raw).ok_or_else(invalid_host),
            None if req.version() == Version::HTTP_10 => Err(ProxyError::new(
                StatusCode::NOT_FOUND,
                "unknown_route",
                Fault::Downstream,
                "no app is routed here: send a Host header naming the app".to_string(),
            )),
            None => Err(bad_request("HTTP/1.1 requests must have a Host header")),
        };
    };
    let target = host::normalise(authority.as_str())
        .ok_or_else(|| bad_request("the request target's host is not a valid host name"))?;
    match host_header {
        Some(raw) => {
            let named = host::normalise(raw).ok_or_else(invalid_host)?;
            let other_port = host::port(raw)
                .zip(authority.port_u16())
                .is_some_and(|(p, q)| p != q);
            if req.version() == Version::HTTP_2 && (named != target || other_port) {
                return Err(bad_request(
                    "the Host header names another host than :authority",
                ));
            }
        }
        None if req.version() == Version::HTTP_11 => {
            return Err(bad_request("HTTP/1.1 requests must have a Host header"));
        }
        None => {}
    }
    Ok(target)
}

fn bad_request(msg: &str) -> ProxyError {
    ProxyError::new(
        StatusCode::BAD_REQUEST,
        "bad_request",
        Fault::Downstream,
        format!("bad request: {msg}"),
    )
}

/// The request header that sends a request to one instance, `NAME:INDEX`, as gorouter's
/// `X-CF-APP-INSTANCE` does.
pub const APP_INSTANCE_HEADER: &str = "x-paas-app-instance";
/// The cookie naming the instance of a sticky session, as in Cloud Foundry.
pub const STICKY_COOKIE: &str = "__VCAP_ID__";

/// Phase 2: which instance serves it? In order: the one `X-Paas-App-Instance` names; the
/// one a `__VCAP_ID__` cookie names, while it is routed and `usable`; else the one the
/// route's balancing picks among those `usable`. Returns the app, the instance and the
/// route's body limit.
pub fn upstream_peer<B>(
    table: &RouteTable,
    host: &str,
    req: &Request<B>,
    usable: impl Fn(&Backend) -> bool,
) -> Result<(std::sync::Arc<str>, Backend, Option<u64>), ProxyError> {
    let pool = table.lookup(host, req.uri().path()).ok_or_else(|| {
        ProxyError::new(
            StatusCode::NOT_FOUND,
            "unknown_route",
            Fault::Downstream,
            format!("no app is routed at {host}: push one with `paas push NAME`"),
        )
    })?;
    if let Some(v) = req.headers().get(APP_INSTANCE_HEADER) {
        let wanted = v
            .to_str()
            .ok()
            .and_then(|v| v.rsplit_once(':'))
            .filter(|(app, _)| *app == &*pool.app)
            .and_then(|(_, i)| i.parse::<u32>().ok());
        let Some(index) = wanted else {
            return Err(bad_request(&format!(
                "{APP_INSTANCE_HEADER} must be {}:INDEX",
                pool.app
            )));
        };
        return match pool.backends.iter().find(|b| b.index == index) {
            Some(b) => Ok((pool.app.clone(), b.clone(), pool.max_body)),
            None => Err(ProxyError::new(
                StatusCode::NOT_FOUND,
                "unknown_instance",
                Fault::Downstream,
                format!("app {} has no running instance {index}", pool.app),
            )),
        };
    }
    if let Some(id) = sticky_cookie(req.headers()) {
        if let Some(b) = pool.backends.iter().find(|b| &*b.sticky == id && usable(b)) {
            return Ok((pool.app.clone(), b.clone(), pool.max_body));
        }
    }
    let backend = pool.pick_where(usable).ok_or_else(|| {
        ProxyError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_healthy_instance",
            Fault::Upstream,
            format!("app {} has no healthy instance right now", pool.app),
        )
    })?;
    Ok((pool.app.clone(), backend.clone(), pool.max_body))
}

/// The `__VCAP_ID__` value among the request's cookies.
fn sticky_cookie(h: &HeaderMap) -> Option<&str> {
    h.get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix(STICKY_COOKIE)?.strip_prefix('='))
}

/// Whether the app's response starts a session: it sets a `JSESSIONID` cookie.
fn starts_session(h: &HeaderMap) -> bool {
    h.get_all(header::SET_COOKIE)
        .iter()
        .any(|v| v.as_bytes().starts_with(b"JSESSIONID="))
}

/// Headers that describe one connection, not the message, and so never cross a proxy
/// (RFC 9110 §7.6.1), with `Upgrade`, which does not either.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Whether a header of this name (in any case) is hop-by-hop. Most names differ from
/// each of the list in length, which is compared first.
fn is_hop_by_hop(name: &str) -> bool {
    HOP_BY_HOP.iter().any(|hop| name.eq_ignore_ascii_case(hop))
}

/// Removes hop-by-hop headers, including those the sender lists in `Connection`.
///
/// Most requests have none, and most app responses one or two (`Connection:
/// keep-alive`, and `Keep-Alive`): one pass over the names finds them, and only those
/// found are removed. (Nine removals, each hashing its name, cost a proxied HTTP/2
/// request about 3.6k instructions under callgrind.)
pub fn strip_hop_by_hop(h: &mut HeaderMap) {
    if !h.keys().any(|n| is_hop_by_hop(n.as_str())) {
        return;
    }
    // Headers a sender names in `Connection` come with a `Connection` header;
    // `keep-alive` and the like are removed below.
    let named: Vec<HeaderName> = connection_tokens(h)
        .filter(|t| !is_hop_by_hop(t))
        .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
        .collect();
    for n in named {
        h.remove(n);
    }
    while let Some(n) = h.keys().find(|n| is_hop_by_hop(n.as_str())).cloned() {
        h.remove(n);
    }
}

/// The tokens a message lists in its `Connection` headers, trimmed.
pub fn connection_tokens(h: &HeaderMap) -> impl Iterator<Item = &str> {
    h.get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
}

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_REQUEST_START: HeaderName = HeaderName::from_static("x-request-start");
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// A request id a client may send and have kept: 1 to 200 of `A-Za-z0-9-_.:`.
fn valid_request_id(v: &HeaderValue) -> bool {
    let b = v.as_bytes();
    !b.is_empty()
        && b.len() <= 200
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || b"-_.:".contains(c))
}

/// A W3C `traceparent` of version 00: `00-<32 hex>-<16 hex>-<2 hex>`, ids not all zero.
fn valid_traceparent(v: &HeaderValue) -> bool {
    let Ok(s) = v.to_str() else { return false };
    let parts: Vec<&str> = s.split('-').collect();
    let hex = |p: &str, n: usize| {
        p.len() == n
            && p.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    parts.len() == 4
        && parts[0] == "00"
        && hex(parts[1], 32)
        && hex(parts[2], 16)
        && hex(parts[3], 2)
        && parts[1].bytes().any(|b| b != b'0')
        && parts[2].bytes().any(|b| b != b'0')
}

thread_local! {
    /// A per-thread xorshift generator, seeded once from the OS: request and trace ids
    /// need to be unique, not secret, and a system call per request would cost more
    /// than the rest of the id.
    static RNG: std::cell::Cell<u64> = std::cell::Cell::new({
        let mut seed = [0u8; 8];
        let _ = getrandom::fill(&mut seed);
        u64::from_ne_bytes(seed) | 1
    });
}

pub(crate) fn next_random() -> u64 {
    RNG.with(|r| {
        let mut x = r.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        r.set(x);
        x
    })
}

/// Fills `out` with random lowercase hex digits. By table rather than `format!`, into a
/// buffer on the stack: this runs for every request (its id, its trace).
fn fill_hex(out: &mut [u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for digits in out.chunks_mut(16) {
        let v = next_random();
        for (i, d) in digits.iter_mut().enumerate() {
            *d = HEX[((v >> (i * 4)) & 0xf) as usize];
        }
    }
}

/// A new request id, shaped like a UUID: 8-4-4-4-12 hex digits.
fn new_request_id() -> HeaderValue {
    let mut id = [b'-'; 36];
    for digits in [0..8, 9..13, 14..18, 19..23, 24..36] {
        fill_hex(&mut id[digits]);
    }
    HeaderValue::from_bytes(&id).unwrap_or(HeaderValue::from_static("-"))
}

/// A new W3C trace: a random trace id and span id, sampled.
fn new_traceparent() -> HeaderValue {
    let mut tp = *b"00-00000000000000000000000000000000-0000000000000000-01";
    fill_hex(&mut tp[3..35]);
    fill_hex(&mut tp[36..52]);
    HeaderValue::from_bytes(&tp).unwrap_or(HeaderValue::from_static("-"))
}

/// A trusted proxy's X-Forwarded-For with `client` (that proxy) appended, or `client`
/// alone when it sent none.
fn forwarded_for_after(h: &HeaderMap, client: &HeaderValue) -> HeaderValue {
    let mut chain: Vec<&str> = h
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    if chain.is_empty() {
        return client.clone();
    }
    chain.extend(client.to_str().ok());
    HeaderValue::from_str(&chain.join(", ")).unwrap_or_else(|_| client.clone())
}

/// Phase 3: point the request at the instance and say who the client is. Forwarding
/// headers from a `trusted` proxy are kept (the client's address appended to
/// X-Forwarded-For); from anyone else they are replaced. Returns the request id, kept
/// from the client when valid and made otherwise, to echo in the response.
pub fn upstream_request_filter<B>(
    req: &mut Request<B>,
    client: &HeaderValue,
    proto: &'static str,
    trusted: bool,
    started_ms: u64,
) -> HeaderValue {
    // The app sees as Host the host the request was routed by (see
    // [`request_filter`]): a target's authority (absolute form, or HTTP/2's
    // `:authority`) replaces whatever Host the client sent (RFC 9112, 3.2.2: "A proxy
    // that forwards such a request MUST generate a new Host field value based on the
    // received request-target"; RFC 9113, 8.3.1).
    if let Some(v) = req
        .uri()
        .authority()
        .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    {
        req.headers_mut().insert(header::HOST, v);
    }
    // Origin form (`/path?query`) towards the app, whatever form the client used.
    let pq = req
        .uri()
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
    let mut parts = http::uri::Parts::default();
    parts.path_and_query = Some(pq);
    if let Ok(uri) = Uri::from_parts(parts) {
        *req.uri_mut() = uri;
    }
    *req.version_mut() = Version::HTTP_11;
    let host = req.headers().get(header::HOST).cloned();
    let h = req.headers_mut();
    strip_hop_by_hop(h);
    let xff = if trusted {
        forwarded_for_after(h, client)
    } else {
        client.clone()
    };
    h.insert(X_FORWARDED_FOR.clone(), xff);
    let proto_kept = trusted
        && h.get(&X_FORWARDED_PROTO)
            .is_some_and(|v| v == "http" || v == "https");
    if !proto_kept {
        h.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(proto));
    }
    if !(trusted && h.contains_key(&X_FORWARDED_HOST)) {
        if let Some(host) = host {
            h.insert(X_FORWARDED_HOST.clone(), host);
        } else {
            h.remove(&X_FORWARDED_HOST);
        }
    }
    h.insert(X_REQUEST_START.clone(), HeaderValue::from(started_ms));
    let id = match h.get(&X_REQUEST_ID) {
        Some(v) if valid_request_id(v) => v.clone(),
        _ => new_request_id(),
    };
    h.insert(X_REQUEST_ID.clone(), id.clone());
    if !h.get(&TRACEPARENT).is_some_and(valid_traceparent) {
        h.insert(TRACEPARENT.clone(), new_traceparent());
        h.remove("tracestate");
    }
    id
}

/// Phase 4: the app's response, minus its hop-by-hop headers.
pub fn response_filter<B>(resp: &mut Response<B>, request_id: HeaderValue, backend: &Backend) {
    // The client talks HTTP/1.1 to the router whatever the app speaks behind it.
    *resp.version_mut() = Version::HTTP_11;
    strip_hop_by_hop(resp.headers_mut());
    resp.headers_mut().insert(X_REQUEST_ID.clone(), request_id);
    // A sticky session: later requests with this cookie go to the same instance.
    if starts_session(resp.headers()) {
        if let Ok(v) = HeaderValue::from_str(&format!(
            "{STICKY_COOKIE}={}; Path=/; HttpOnly",
            backend.sticky
        )) {
            resp.headers_mut().append(header::SET_COOKIE, v);
        }
    }
}

/// Phase for the trailer fields of an app's chunked response passed on over HTTP/2:
/// fields that frame, route or describe a connection have no place in trailers (RFC
/// 9110, 6.5.1), and HTTP/2 refuses the connection-specific ones (RFC 9113, 8.2.2).
pub fn trailer_filter(trailers: &mut HeaderMap) {
    strip_hop_by_hop(trailers);
    trailers.remove(header::CONTENT_LENGTH);
    trailers.remove(header::HOST);
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
        // Tokens in any case; an app's usual `Connection: keep-alive` with `Keep-Alive`.
        let mut h = HeaderMap::new();
        h.append(header::CONNECTION, HeaderValue::from_static("Keep-Alive"));
        h.append(header::CONNECTION, HeaderValue::from_static("X-Secret, TE"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("2"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.keys().collect::<Vec<_>>(), [header::CONTENT_LENGTH]);
    }

    #[test]
    fn framings_used_for_smuggling_are_refused() {
        let h = |pairs: &[(&str, &str)]| {
            let mut m = HeaderMap::new();
            for (k, v) in pairs {
                m.append(
                    HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    HeaderValue::from_str(v).unwrap(),
                );
            }
            m
        };
        assert!(framing_filter(&h(&[("content-length", "5")])).is_ok());
        assert!(framing_filter(&h(&[("transfer-encoding", "chunked")])).is_ok());
        assert!(framing_filter(&h(&[("transfer-encoding", "gzip, chunked")])).is_ok());
        for bad in [
            &[("content-length", "5"), ("transfer-encoding", "chunked")][..],
            &[("content-length", "5"), ("content-length", "5")],
            &[("content-length", "5, 6")],
            &[("transfer-encoding", "chunked, identity")],
            &[("transfer-encoding", "xchunked")],
            &[("transfer-encoding", "chunked, chunked")],
            &[
                ("transfer-encoding", "chunked"),
                ("transfer-encoding", "identity"),
            ],
        ] {
            assert!(framing_filter(&h(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn request_ids_and_traceparents_are_checked() {
        assert!(valid_request_id(&HeaderValue::from_static("abc-123_x.y:z")));
        assert!(!valid_request_id(&HeaderValue::from_static("has space")));
        assert!(valid_traceparent(&HeaderValue::from_static(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        )));
        assert!(!valid_traceparent(&HeaderValue::from_static(
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01"
        )));
        assert!(!valid_traceparent(&HeaderValue::from_static("junk")));
        for _ in 0..100 {
            let id = new_request_id();
            assert!(valid_request_id(&id), "{id:?}");
            let b = id.as_bytes();
            assert!([8, 13, 18, 23].iter().all(|&i| b[i] == b'-'), "{id:?}");
            let tp = new_traceparent();
            assert!(valid_traceparent(&tp), "{tp:?}");
        }
        assert_ne!(new_request_id(), new_request_id());
    }

    fn request(version: Version, uri: &str, hosts: &[&str]) -> Request<()> {
        let mut req = Request::builder().version(version).uri(uri);
        for h in hosts {
            req = req.header(header::HOST, *h);
        }
        req.body(()).unwrap()
    }

    #[test]
    fn the_target_s_authority_routes_and_replaces_host() {
        let mut req = request(Version::HTTP_11, "http://A.localhost/p?q", &["b.localhost"]);
        assert_eq!(request_filter(&req).unwrap(), "a.localhost");
        let client = HeaderValue::from_static("10.0.0.1");
        upstream_request_filter(&mut req, &client, "http", false, 0);
        assert_eq!(req.uri(), "/p?q");
        let hosts: Vec<_> = req.headers().get_all(header::HOST).iter().collect();
        assert_eq!(hosts, ["A.localhost"]);
        assert_eq!(req.headers()["x-forwarded-host"], "A.localhost");
        // HTTP/1.0 needs no Host; HTTP/1.1 does, even with an absolute target.
        assert!(request_filter(&request(Version::HTTP_10, "http://a.localhost/", &[])).is_ok());
        assert!(request_filter(&request(Version::HTTP_11, "http://a.localhost/", &[])).is_err());
    }

    #[test]
    fn an_http2_host_must_name_what_authority_names() {
        let h2 = |uri: &str, hosts: &[&str]| request_filter(&request(Version::HTTP_2, uri, hosts));
        assert_eq!(h2("https://a.localhost/", &[]).unwrap(), "a.localhost");
        assert_eq!(
            h2("https://a.localhost/", &["A.localhost."]).unwrap(),
            "a.localhost"
        );
        // A port on one side only names the same host.
        assert!(h2("https://a.localhost:8443/", &["a.localhost"]).is_ok());
        for (uri, host) in [
            ("https://a.localhost/", "b.localhost"),
            ("https://a.localhost:8443/", "a.localhost:443"),
            ("https://a.localhost/", "a localhost"),
        ] {
            let e = h2(uri, &[host]).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{uri} {host}");
        }
        // Without :authority, Host names the host, as in HTTP/1.1.
        assert_eq!(h2("/", &["b.localhost"]).unwrap(), "b.localhost");
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
