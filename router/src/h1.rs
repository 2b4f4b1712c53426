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
/// The largest response head the router takes from an app.
pub const MAX_RESPONSE_HEAD: usize = 64 * 1024;

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

/// The length of the request head at the start of `input`: `Some(None)` while it is
/// incomplete, `None` when hyper is to have the connection (HTTP/2's preface, a head
/// too large or malformed).
pub fn head_length(input: &[u8], max_head: usize) -> Option<Option<usize>> {
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
pub fn direct_request(head: &Bytes) -> Option<Request<()>> {
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
pub fn response_head_length(input: &mut BytesMut) -> Result<Option<usize>, &'static str> {
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
pub fn app_head(head: &Bytes, head_request: bool) -> Result<AppHead, &'static str> {
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

/// The request line and headers of `req`, in origin form, into `out`.
pub fn write_request_head(out: &mut Vec<u8>, req: &Request<()>) {
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

pub fn write_headers(out: &mut Vec<u8>, headers: &HeaderMap) {
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
pub fn http_date(with: impl FnOnce(&str)) {
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
