//! Route services, as Cloud Foundry's gorouter has them: a route bound to a route
//! service (`paas bind-route-service`) has each request sent to the service first. The
//! router adds three headers:
//!
//! - `X-CF-Forwarded-Url`: the URL the client asked for;
//! - `X-CF-Proxy-Metadata`: when the router sent it (Unix milliseconds);
//! - `X-CF-Proxy-Signature`: an HMAC-SHA256 of both, under the binding's own key.
//!
//! The service does its work (authentication, rate limits, rewriting headers, …) and
//! sends the request on to `X-CF-Forwarded-Url` with the two proxy headers, which
//! brings it back through a router. Only a request whose signature is valid, less than
//! [`SIGNATURE_LIFETIME`] old, and made for this very host and path goes on to the
//! app; any other (a client that made up the headers, or replays a signature made for
//! another route) is sent to the route service again. So the service cannot be
//! bypassed, and a signature it saw opens no other route.
//!
//! The key is the binding's (made at `bind-route-service`, kept with the route): every
//! router of a platform checks what any of them signed, and nothing else is shared.
//!
//! The router connects to the service for the tenant: the address must pass the
//! platform's egress rule ([`paas_egress::resolve`], SSRF, CWE-918), over HTTPS checked
//! against the host's CAs (as cf requires `https://` route service URLs).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::header::{self, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri};
use paas_egress::{Endpoint, Ipv4Net};
use ring::hmac;

use crate::proxy::{Fault, ProxyError};

pub const FORWARDED_URL: HeaderName = HeaderName::from_static("x-cf-forwarded-url");
pub const PROXY_SIGNATURE: HeaderName = HeaderName::from_static("x-cf-proxy-signature");
pub const PROXY_METADATA: HeaderName = HeaderName::from_static("x-cf-proxy-metadata");

/// How long a signature opens the way to the app: time for the service to do its work.
pub const SIGNATURE_LIFETIME: Duration = Duration::from_secs(60);
/// How far a signature's time may lie ahead of this router's clock (another router of
/// the platform may have signed it).
const CLOCK_SKEW_MS: u64 = 5_000;
/// How long connecting to a route service (name, TCP, TLS) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A route's route service: where it is, and the key its requests are signed with.
pub struct RouteService {
    url: String,
    endpoint: Endpoint,
    key: hmac::Key,
    /// Requests under way to it.
    in_flight: AtomicUsize,
}

/// A request counted under way until dropped.
struct InFlight<'a>(&'a AtomicUsize);

impl<'a> InFlight<'a> {
    fn enter(count: &'a AtomicUsize, cap: usize) -> Option<Self> {
        let was = count.fetch_add(1, Ordering::Relaxed);
        let leg = InFlight(count);
        (was < cap).then_some(leg)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for RouteService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteService")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl RouteService {
    /// From a route table entry's URL and hex key; `Err` says what is wrong.
    pub fn new(url: &str, key_hex: &str) -> Result<RouteService, String> {
        let endpoint = Endpoint::parse(url, &[("https", 443)])?;
        let key = decode_hex(key_hex)
            .filter(|k| k.len() >= 16)
            .ok_or("its signing key is not 16 or more bytes of hex")?;
        Ok(RouteService {
            url: url.to_string(),
            endpoint,
            key: hmac::Key::new(hmac::HMAC_SHA256, &key),
            in_flight: AtomicUsize::new(0),
        })
    }

    /// The signature of `forwarded_url` sent at `sent_ms`, in hex.
    fn sign(&self, sent_ms: u64, forwarded_url: &str) -> String {
        let tag = hmac::sign(&self.key, signed_text(sent_ms, forwarded_url).as_bytes());
        encode_hex(tag.as_ref())
    }

    /// Whether `headers` carry a signature of this service's key, made at most
    /// [`SIGNATURE_LIFETIME`] before `now_ms`, for a URL of `host` (normalised) and
    /// `path_and_query`: a request that came back from the route service.
    pub fn check(
        &self,
        headers: &http::HeaderMap,
        host: &str,
        path_and_query: &str,
        now_ms: u64,
    ) -> Signature {
        let Some(signature) = headers.get(&PROXY_SIGNATURE) else {
            return Signature::Absent;
        };
        // Bytes, not visible ASCII only: a path may hold UTF-8.
        let text = |name: &HeaderName| {
            headers
                .get(name)
                .and_then(|v| std::str::from_utf8(v.as_bytes()).ok())
        };
        let (Some(url), Some(sent)) = (text(&FORWARDED_URL), text(&PROXY_METADATA)) else {
            return Signature::Invalid("X-CF-Forwarded-Url or X-CF-Proxy-Metadata is missing");
        };
        let (Ok(sent_ms), Some(tag)) = (
            sent.parse::<u64>(),
            std::str::from_utf8(signature.as_bytes())
                .ok()
                .and_then(decode_hex),
        ) else {
            return Signature::Invalid("it is not the router's");
        };
        if hmac::verify(&self.key, signed_text(sent_ms, url).as_bytes(), &tag).is_err() {
            return Signature::Invalid("it is not the router's");
        }
        if sent_ms > now_ms + CLOCK_SKEW_MS
            || now_ms.saturating_sub(sent_ms) > SIGNATURE_LIFETIME.as_millis() as u64
        {
            return Signature::Invalid("it has expired");
        }
        if !names(url, host, path_and_query) {
            return Signature::Invalid("it was made for another URL");
        }
        Signature::Valid
    }

    /// Turns `req` (already through the forwarding phase) into the request to the
    /// route service: its target and Host the service's, and the three headers, which
    /// replace any the client sent.
    pub fn address<B>(&self, req: &mut Request<B>, forwarded_url: &str, now_ms: u64) {
        let h = req.headers_mut();
        for (name, value) in [
            (FORWARDED_URL, forwarded_url.to_string()),
            (PROXY_METADATA, now_ms.to_string()),
            (PROXY_SIGNATURE, self.sign(now_ms, forwarded_url)),
        ] {
            if let Ok(v) = HeaderValue::from_str(&value) {
                h.insert(name, v);
            }
        }
        if let Ok(v) = HeaderValue::from_str(&self.endpoint.authority(443)) {
            h.insert(header::HOST, v);
        }
        if let Ok(uri) = self.endpoint.path.parse::<Uri>() {
            *req.uri_mut() = uri;
        }
    }

    /// Sends `req` to the route service on a connection of its own, within `timeout`
    /// for its answer to begin; `allowed`: networks the operator lets it reach although
    /// the egress rule refuses them.
    pub async fn send<B>(
        &self,
        req: Request<B>,
        allowed: &[Ipv4Net],
        timeout: Duration,
        cap: usize,
    ) -> Result<Response<hyper::body::Incoming>, ProxyError>
    where
        B: hyper::body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let fail = |why: String| {
            ProxyError::new(
                StatusCode::BAD_GATEWAY,
                "route_service_unreachable",
                Fault::Upstream,
                format!("the route service at {} cannot be reached: {why}", self.url),
            )
        };
        // A cap on the requests under way to it: a service that sends requests back
        // without their signature would have the router open legs without end.
        let _leg = InFlight::enter(&self.in_flight, cap).ok_or_else(|| {
            ProxyError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "route_service_at_capacity",
                Fault::Upstream,
                format!(
                    "the route service at {} already has {cap} requests under way",
                    self.url
                ),
            )
        })?;
        let e = &self.endpoint;
        let addr = paas_egress::resolve(&e.host, e.port, allowed, CONNECT_TIMEOUT)
            .await
            .map_err(|err| match err {
                paas_egress::ResolveError::Refused(what) => fail(format!(
                    "{what} where the router sends no requests (private, loopback, link-local, metadata or this host's own); use a public address, or ask the operator to allow the network (paasd --route-service-allow CIDR)"
                )),
                other => fail(other.to_string()),
            })?;
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(addr))
            .await
            .map_err(|_| {
                fail(format!(
                    "{addr} did not answer within {} s",
                    CONNECT_TIMEOUT.as_secs()
                ))
            })?
            .map_err(|err| fail(format!("connecting to {addr}: {err}")))?;
        let _ = tcp.set_nodelay(true);
        let tls = paas_egress::connect_tls(&e.host, tcp, CONNECT_TIMEOUT)
            .await
            .map_err(fail)?;
        let (mut send, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                .await
                .map_err(|err| fail(err.to_string()))?;
        tokio::spawn(conn);
        tokio::time::timeout(timeout, send.send_request(req))
            .await
            .map_err(|_| {
                ProxyError::new(
                    StatusCode::GATEWAY_TIMEOUT,
                    "route_service_timeout",
                    Fault::Upstream,
                    format!(
                        "the route service at {} did not answer within {} s",
                        self.url,
                        timeout.as_secs()
                    ),
                )
            })?
            .map_err(|err| fail(err.to_string()))
    }
}

/// What a request says of having been through the route service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signature {
    /// Nothing: it goes to the service.
    Absent,
    /// It came back from the service, for this URL, in time.
    Valid,
    /// A signature that does not open this URL: why.
    Invalid(&'static str),
}

/// `path` as an app reads it, for deciding which route it lies under: each segment
/// without its `;parameters` and with percent-encoded unreserved characters decoded
/// (RFC 3986, 6.2.2.2), empty and `.` segments dropped, `..` taking the one before
/// (RFC 3986, 5.2.4).
pub fn normalise_path(path: &str) -> String {
    let mut segments: Vec<String> = Vec::new();
    for raw in path.split('/') {
        let raw = raw.split(';').next().unwrap_or("");
        let segment = decode_unreserved(raw);
        match segment.as_str() {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            _ => segments.push(segment),
        }
    }
    format!("/{}", segments.join("/"))
}

/// `s` with each `%XX` that encodes an unreserved character (letters, digits, `-._~`)
/// decoded; other escapes are kept.
fn decode_unreserved(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let decoded = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .filter(|c| c.is_ascii_alphanumeric() || b"-._~".contains(c));
            if let Some(c) = decoded {
                out.push(c as char);
                i += 3;
                continue;
            }
        }
        let ch = s[i..].chars().next().unwrap_or('\u{fffd}');
        out.push(ch);
        i += ch.len_utf8().max(1);
    }
    out
}

/// Removes the signature headers, so that the app never sees a signature.
pub fn strip_signature(h: &mut http::HeaderMap) {
    h.remove(PROXY_SIGNATURE);
    h.remove(PROXY_METADATA);
}

/// What the signature covers: the time, then the URL.
fn signed_text(sent_ms: u64, url: &str) -> String {
    format!("{sent_ms}\n{url}")
}

/// Whether `url` (`scheme://authority/path?query`) names `host` (normalised) and
/// `path_and_query`: the scheme and port may differ (a service may come back over
/// either scheme), the rest may not.
fn names(url: &str, host: &str, path_and_query: &str) -> bool {
    let Some((_, rest)) = url.split_once("://") else {
        return false;
    };
    let (authority, pq) = match rest.find(['/', '?']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    crate::host::normalise(authority).is_some_and(|h| h == host) && pq == path_and_query
}

/// The URL the client asked for, as the route service is told it.
pub fn forwarded_url(scheme: &str, authority: &str, path_and_query: &str) -> String {
    format!("{scheme}://{authority}{path_and_query}")
}

fn encode_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || s.len() > 256 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    fn ok(rs: &RouteService, h: &http::HeaderMap, host: &str, pq: &str, now: u64) -> bool {
        rs.check(h, host, pq, now) == Signature::Valid
    }

    #[test]
    fn paths_are_read_as_an_app_reads_them() {
        for (given, read) in [
            ("/admin", "/admin"),
            ("/%61dmin", "/admin"),
            ("//admin", "/admin"),
            ("/admin;jsessionid=1/x", "/admin/x"),
            ("/x/../admin", "/admin"),
            ("/./admin/.", "/admin"),
            ("/../../admin", "/admin"),
            ("/a%2Fb", "/a%2Fb"),
            ("/%e2%82", "/%e2%82"),
            ("/caf\u{e9}", "/caf\u{e9}"),
            ("", "/"),
        ] {
            assert_eq!(normalise_path(given), read, "{given}");
        }
    }

    #[test]
    fn a_signature_for_a_utf8_path_checks() {
        let rs = RouteService::new("https://rs.example.com", KEY).unwrap();
        let h = signed(&rs, "http://shop.example.com/caf\u{e9}", 5);
        assert!(ok(&rs, &h, "shop.example.com", "/caf\u{e9}", 5));
    }

    fn signed(rs: &RouteService, url: &str, at: u64) -> http::HeaderMap {
        let mut req = Request::new(());
        rs.address(&mut req, url, at);
        req.headers().clone()
    }

    #[test]
    fn a_signature_opens_only_its_own_url_for_a_minute() {
        let rs = RouteService::new("https://rs.example.com/check", KEY).unwrap();
        let h = signed(&rs, "http://shop.example.com:8080/cart?x=1", 1_000_000);
        assert!(ok(&rs, &h, "shop.example.com", "/cart?x=1", 1_000_500));
        // Over the other scheme, without the port: the same host and path.
        assert!(ok(&rs, &h, "shop.example.com", "/cart?x=1", 1_059_000));
        assert!(
            !ok(&rs, &h, "shop.example.com", "/cart?x=1", 1_061_000),
            "expired"
        );
        assert!(
            !ok(&rs, &h, "shop.example.com", "/cart?x=2", 1_000_500),
            "other query"
        );
        assert!(
            !ok(&rs, &h, "admin.example.com", "/cart?x=1", 1_000_500),
            "other host"
        );
        // Another binding's key does not check it.
        let other =
            RouteService::new("https://rs.example.com/check", &KEY.replace('0', "1")).unwrap();
        assert!(!ok(&other, &h, "shop.example.com", "/cart?x=1", 1_000_500));
    }

    #[test]
    fn made_up_or_altered_headers_do_not_pass() {
        let rs = RouteService::new("https://rs.example.com", KEY).unwrap();
        let good = signed(&rs, "http://shop.example.com/", 5_000);
        let mut h = good.clone();
        h.insert(
            FORWARDED_URL,
            HeaderValue::from_static("http://admin.example.com/"),
        );
        assert!(!ok(&rs, &h, "admin.example.com", "/", 5_000), "URL swapped");
        let mut h = good.clone();
        h.insert(PROXY_METADATA, HeaderValue::from_static("6000"));
        assert!(!ok(&rs, &h, "shop.example.com", "/", 6_000), "time moved");
        let mut h = good.clone();
        h.insert(PROXY_SIGNATURE, HeaderValue::from_static("00"));
        assert!(
            !ok(&rs, &h, "shop.example.com", "/", 5_000),
            "signature made up"
        );
        let mut h = good.clone();
        h.remove(PROXY_SIGNATURE);
        assert!(!ok(&rs, &h, "shop.example.com", "/", 5_000), "no signature");
        assert!(ok(&rs, &good, "shop.example.com", "/", 5_000));
    }

    #[test]
    fn the_request_is_pointed_at_the_service() {
        let rs = RouteService::new("https://rs.example.com:8443/in?a=b", KEY).unwrap();
        let mut req = Request::new(());
        req.headers_mut()
            .insert(PROXY_SIGNATURE, HeaderValue::from_static("forged"));
        rs.address(&mut req, "http://shop.example.com/", 1);
        assert_eq!(req.uri(), "/in?a=b");
        assert_eq!(req.headers()[header::HOST], "rs.example.com:8443");
        assert_ne!(req.headers()[PROXY_SIGNATURE], "forged");
        assert!(
            RouteService::new("http://rs.example.com", KEY).is_err(),
            "https only"
        );
        assert!(RouteService::new("https://rs.example.com", "abc").is_err());
    }
}
