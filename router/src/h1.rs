//! HTTP/1.1 heads on the wire, for the direct path (`server::direct`): request heads
//! parsed into `http` types, app response heads parsed and their body's framing found
//! (RFC 9112, 6.3), and heads written back out. Public for the fuzz target.

use std::mem::MaybeUninit;

use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};

use crate::framing::ChunkedBody;

/// Headers a message may have, as hyper allows by default.
pub const MAX_HEADERS: usize = 100;
/// How an HTTP/2 connection with prior knowledge starts.
pub const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0";
/// The largest response head the router takes from an app.
pub const MAX_RESPONSE_HEAD: usize = 64 * 1024;
/// The largest request body the direct path takes: it holds the whole body before the
/// request goes to the app (as nginx's `proxy_request_buffering` and HAProxy's
/// `http-buffer-request` do), so that a request whose instance cannot be reached can go
/// to another one. hyper streams larger ones, and may hold up to about 400 KiB of a
/// connection's bytes itself.
pub const MAX_DIRECT_BODY: u64 = 64 * 1024;

/// How an app's response body is framed.
pub enum Framing {
    /// No body: a response to HEAD, a 204 or a 304.
    Empty,
    /// This many bytes.
    Length(u64),
    Chunked(ChunkedBody),
    /// Until the app closes the connection.
    UntilClose,
}

/// An app's response head, parsed and checked.
pub struct AppHead {
    pub resp: Response<()>,
    pub framing: Framing,
    /// Whether the app keeps the connection open after the response.
    pub keep_alive: bool,
}

/// Where a part of a head lies in the buffer it was parsed from.
type Span = std::ops::Range<usize>;

/// The span of `part`, a slice of `base`.
fn span(base: &[u8], part: &[u8]) -> Span {
    let start = part.as_ptr() as usize - base.as_ptr() as usize;
    start..start + part.len()
}

/// Where a head's headers (name, value) lie in its buffer. The parse borrows the
/// buffer, so the head cannot be split off while the parsed parts are in hand: their
/// spans are kept, and taken as shared slices of the head (no copy) once it is split
/// off. One list per thread, reused: neither an allocation nor a large array to clear
/// per head.
struct HeaderSpans(Vec<(Span, Span)>);

thread_local! {
    static SPANS: std::cell::RefCell<HeaderSpans> =
        const { std::cell::RefCell::new(HeaderSpans(Vec::new())) };
}

impl HeaderSpans {
    /// Runs `f` on this thread's list, emptied.
    fn with<R>(f: impl FnOnce(&mut HeaderSpans) -> R) -> R {
        SPANS.with(|spans| {
            let mut spans = spans.borrow_mut();
            spans.0.clear();
            f(&mut spans)
        })
    }

    fn push(&mut self, base: &[u8], h: &httparse::Header<'_>) {
        self.0
            .push((span(base, h.name.as_bytes()), span(base, h.value)));
    }

    /// The headers in `map` (emptied first; a map used before keeps its room), with
    /// room for `extra` more, or `None` if a name or value is not valid for the `http`
    /// types.
    fn fill(&self, head: &Bytes, mut map: HeaderMap, extra: usize) -> Option<HeaderMap> {
        map.clear();
        map.reserve(self.0.len() + extra);
        for (name, value) in &self.0 {
            let name = HeaderName::from_bytes(&head[name.clone()]).ok()?;
            let value = HeaderValue::from_maybe_shared(head.slice(value.clone())).ok()?;
            map.append(name, value);
        }
        Some(map)
    }
}

/// A request head at the start of a connection's buffer.
pub enum RequestHead {
    /// Not all of it has come.
    Partial,
    /// A request the direct path serves, its head taken from the buffer, and the length
    /// of its body (at most [`MAX_DIRECT_BODY`]), whose bytes follow in the buffer or
    /// are still to come.
    Direct(Request<()>, usize),
    /// One for hyper (HTTP/2's preface, HTTP/1.0, a chunked or large body, an upgrade,
    /// `Expect`, a head too large or malformed); nothing was taken from the buffer.
    Hyper,
    /// One for hyper, found to be so once its head was taken: this head, then the rest
    /// of the buffer.
    HyperTaken(Bytes),
}

/// Takes the request head at the start of `buf` if the direct path serves it: HTTP/1.1,
/// no body or one framed by a single `Content-Length` of at most [`MAX_DIRECT_BODY`],
/// no upgrade, no `Expect`, at most `max_head` bytes, and every part valid for the `http`
/// types. Any other framing goes to hyper, which refuses what could smuggle a request
/// past the app (RFC 9112, 6.3 and 11.2: both `Transfer-Encoding` and
/// `Content-Length`, differing lengths, a list). Its headers go into a map taken from
/// `headers`, to reuse one (its room is kept across requests: a new map per request
/// costs two allocations).
pub fn take_request(buf: &mut BytesMut, max_head: usize, headers: &mut HeaderMap) -> RequestHead {
    if buf.len() < H2_PREFACE.len() && H2_PREFACE.starts_with(buf) {
        return RequestHead::Partial;
    }
    if buf.starts_with(H2_PREFACE) {
        return RequestHead::Hyper;
    }
    HeaderSpans::with(|spans| take_request_with(buf, max_head, spans, headers))
}

fn take_request_with(
    buf: &mut BytesMut,
    max_head: usize,
    spans: &mut HeaderSpans,
    headers: &mut HeaderMap,
) -> RequestHead {
    let mut parsed_headers = [const { MaybeUninit::uninit() }; MAX_HEADERS];
    let (len, method, path, body) = {
        let mut parsed = httparse::Request::new(&mut []);
        let len = match parsed.parse_with_uninit_headers(buf, &mut parsed_headers) {
            Ok(httparse::Status::Complete(len)) if len <= max_head => len,
            Ok(httparse::Status::Partial) if buf.len() < max_head => return RequestHead::Partial,
            _ => return RequestHead::Hyper,
        };
        let method = parsed
            .method
            .and_then(|m| Method::from_bytes(m.as_bytes()).ok());
        let (Some(method), Some(path), Some(1)) = (method, parsed.path, parsed.version) else {
            return RequestHead::Hyper;
        };
        if method == Method::CONNECT {
            return RequestHead::Hyper;
        }
        let mut body = None;
        for h in parsed.headers.iter() {
            if h.name.eq_ignore_ascii_case("content-length") {
                match (body, direct_body_length(h.value)) {
                    (None, Some(n)) => body = Some(n),
                    // A second one, or one the direct path does not take.
                    _ => return RequestHead::Hyper,
                }
            }
            let chunked_or_upgrade = ["transfer-encoding", "upgrade", "expect"]
                .iter()
                .any(|n| h.name.eq_ignore_ascii_case(n));
            if chunked_or_upgrade {
                return RequestHead::Hyper;
            }
            spans.push(buf, h);
        }
        (len, method, span(buf, path.as_bytes()), body.unwrap_or(0))
    };
    let head = buf.split_to(len).freeze();
    let uri = Uri::from_maybe_shared(head.slice(path)).ok();
    // Room for the forwarding headers the router adds, so the map does not grow.
    let (Some(uri), Some(map)) = (uri, spans.fill(&head, std::mem::take(headers), 6)) else {
        return RequestHead::HyperTaken(head);
    };
    let mut req = Request::new(());
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    *req.version_mut() = Version::HTTP_11;
    *req.headers_mut() = map;
    RequestHead::Direct(req, body)
}

/// A `Content-Length` value the direct path takes: digits only (RFC 9110, 8.6), at most
/// [`MAX_DIRECT_BODY`].
fn direct_body_length(value: &[u8]) -> Option<usize> {
    let digits = value.trim_ascii();
    // Seven digits hold every length the path takes, and cannot overflow.
    if digits.is_empty() || digits.len() > 7 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = digits
        .iter()
        .fold(0usize, |n, d| n * 10 + usize::from(d - b'0'));
    (n as u64 <= MAX_DIRECT_BODY).then_some(n)
}

/// A Content-Length value: digits only (RFC 9110, 8.6), with optional whitespace around
/// them; `parse` alone would also take a leading `+`.
fn content_length_value(value: &[u8]) -> Option<u64> {
    let value = value.trim_ascii();
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(value).ok()?.parse().ok()
}

/// Takes the app's response head at the start of `buf`, dropping any 1xx informational
/// responses before it, and checks it; `None` while incomplete. `head_request`: the
/// response answers HEAD, so it has no body whatever it says. Its headers go into
/// `headers`, a map to reuse, as for [`take_request`].
pub fn take_response(
    buf: &mut BytesMut,
    head_request: bool,
    headers: &mut HeaderMap,
) -> Result<Option<AppHead>, &'static str> {
    HeaderSpans::with(|spans| take_response_with(buf, head_request, spans, headers))
}

fn take_response_with(
    buf: &mut BytesMut,
    head_request: bool,
    spans: &mut HeaderSpans,
    headers: &mut HeaderMap,
) -> Result<Option<AppHead>, &'static str> {
    let (len, status, http11, length, chunked) = loop {
        let mut headers = [const { MaybeUninit::uninit() }; MAX_HEADERS];
        let mut parsed = httparse::Response::new(&mut []);
        let parse = httparse::ParserConfig::default().parse_response_with_uninit_headers(
            &mut parsed,
            buf,
            &mut headers,
        );
        let len = match parse {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) if buf.len() < MAX_RESPONSE_HEAD => return Ok(None),
            Ok(httparse::Status::Partial) => return Err("its response head is too large"),
            Err(_) => return Err("its response is not valid HTTP/1.1"),
        };
        let status = parsed
            .code
            .and_then(|c| StatusCode::from_u16(c).ok())
            .ok_or("its response has no valid status")?;
        if status == StatusCode::SWITCHING_PROTOCOLS {
            // It was asked for no upgrade.
            return Err("it switched protocols unasked");
        }
        if status.is_informational() {
            buf.advance(len);
            continue;
        }
        let mut length: Option<u64> = None;
        let mut repeated_length = false;
        let mut chunked = None;
        for h in parsed.headers.iter() {
            if h.name.eq_ignore_ascii_case("content-length") {
                // A list of one value repeated ("3, 3"), like a repeated field, counts as
                // that value and goes on as one field (RFC 9110, 8.6); differing values
                // are refused.
                for value in h.value.split(|b| *b == b',') {
                    let n = content_length_value(value)
                        .ok_or("its response has an invalid Content-Length")?;
                    if length.is_some_and(|l| l != n) {
                        return Err("its response has differing Content-Lengths");
                    }
                    repeated_length |= length.is_some();
                    length = Some(n);
                }
            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                // Only the last coding counts: chunked, or the body runs to the close.
                let last = h.value.rsplit(|b| *b == b',').next().unwrap_or_default();
                chunked = Some(last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
            }
            spans.push(buf, h);
        }
        if parsed.version == Some(0) && chunked.is_some() {
            // HTTP/1.0 has no Transfer-Encoding: its framing is faulty (RFC 9112, 6.1),
            // whatever else the head says.
            return Err("its HTTP/1.0 response has a Transfer-Encoding");
        }
        break (
            len,
            status,
            parsed.version == Some(1),
            (length, repeated_length),
            chunked,
        );
    };
    let (length, repeated_length) = length;
    let head = buf.split_to(len).freeze();
    // Room for X-Request-Id and a sticky session's cookie.
    let mut map = spans
        .fill(&head, std::mem::take(headers), 2)
        .ok_or("its response has an invalid header")?;
    let closes = crate::proxy::connection_tokens(&map).any(|t| t.eq_ignore_ascii_case("close"));
    let mut keep_alive = http11 && !closes;
    let no_body =
        head_request || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED;
    if no_body && length.is_some_and(|n| n > 0) {
        // An app that sends the body it describes anyway (to HEAD, or with a 204 or
        // 304) may send it in a later segment, after the connection went back to the
        // pool: the next request would read it as its answer. Such a connection is not
        // used again.
        keep_alive = false;
    }
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
        (None, Some(n)) => {
            if repeated_length {
                map.insert(header::CONTENT_LENGTH, n.into());
            }
            Framing::Length(n)
        }
        (None, None) => Framing::UntilClose,
    };
    if matches!(framing, Framing::UntilClose) {
        keep_alive = false;
    }
    let mut resp = Response::new(());
    *resp.status_mut() = status;
    *resp.headers_mut() = map;
    Ok(Some(AppHead {
        resp,
        framing,
        keep_alive,
    }))
}

/// The request line and headers of `req`, in origin form, into `out`.
pub fn write_request_head<B>(out: &mut Vec<u8>, req: &Request<B>) {
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
pub fn write_response_head(out: &mut Vec<u8>, resp: &Response<()>, framing: &[u8], close: bool) {
    out.clear();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(resp.status().as_str().as_bytes());
    out.push(b' ');
    let reason = resp.status().canonical_reason().unwrap_or("");
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\n");
    write_headers(out, resp.headers());
    if !resp.headers().contains_key(header::DATE) {
        // A proxy adds the Date a response lacks (RFC 9110, 6.6.1), as hyper does.
        out.extend_from_slice(b"date: ");
        http_date(|d| out.extend_from_slice(d.as_bytes()));
        out.extend_from_slice(b"\r\n");
    }
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

thread_local! {
    /// The current second's HTTP-date, made once a second rather than per response.
    static DATE: std::cell::RefCell<(u64, String)> = const { std::cell::RefCell::new((0, String::new())) };
}

/// Calls `with` on the current time as an HTTP-date (`Sun, 06 Nov 1994 08:49:37 GMT`).
fn http_date(with: impl FnOnce(&str)) {
    let now = std::time::SystemTime::now();
    let secs = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    DATE.with(|cell| {
        let mut cached = cell.borrow_mut();
        if cached.0 != secs || cached.1.is_empty() {
            *cached = (secs, httpdate::fmt_http_date(now));
        }
        with(&cached.1);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(head: &str) -> Result<Option<AppHead>, &'static str> {
        take_response(&mut BytesMut::from(head), false, &mut HeaderMap::new())
    }

    #[test]
    fn a_content_length_repeated_with_one_value_is_that_length_sent_once() {
        for head in [
            "HTTP/1.1 200 OK\r\ncontent-length: 3, 3\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: 3\r\ncontent-length: 3\r\n\r\n",
        ] {
            let app = response(head).unwrap().unwrap();
            assert!(matches!(app.framing, Framing::Length(3)), "{head:?}");
            let sent: Vec<_> = app
                .resp
                .headers()
                .get_all(header::CONTENT_LENGTH)
                .iter()
                .collect();
            assert_eq!(sent, ["3"], "{head:?}");
        }
        for (head, why) in [
            (
                "content-length: 3, 4",
                "its response has differing Content-Lengths",
            ),
            (
                "content-length: 3, ",
                "its response has an invalid Content-Length",
            ),
            (
                "content-length: +3",
                "its response has an invalid Content-Length",
            ),
        ] {
            let head = format!("HTTP/1.1 200 OK\r\n{head}\r\n\r\n");
            assert_eq!(response(&head).err(), Some(why), "{head:?}");
        }
    }

    #[test]
    fn an_http_1_0_response_with_a_transfer_encoding_is_refused() {
        for coding in ["chunked", "gzip"] {
            let head = format!(
                "HTTP/1.0 200 OK\r\ntransfer-encoding: {coding}\r\ncontent-length: 2\r\n\r\n"
            );
            assert_eq!(
                response(&head).err(),
                Some("its HTTP/1.0 response has a Transfer-Encoding"),
                "{head:?}"
            );
        }
        let plain = response("HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\n").unwrap();
        assert!(matches!(plain.unwrap().framing, Framing::Length(2)));
    }
}
