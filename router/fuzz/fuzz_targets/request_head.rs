//! Arbitrary bytes as a request head, parsed as the router's HTTP/1 server parses them
//! (httparse, under hyper), then through the router's own checks: framing, Host, route
//! lookup; as a connection's byte stream through the framing follower, whole and split
//! in two; and through the direct path's parsers (`h1`), as a request head and as an app's
//! response head, each written back out and parsed again; and as a message on the feed
//! between paasd and its router process (either way), written back out and parsed
//! again, a route table or certificates built from it. Any panic is a finding. Run with
//! `router/fuzz/run.sh`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use paas_router::framing::{ChunkedBody, ChunkedDecoder, ChunkedEnd, Decoded, Follower};
use paas_router::{h1, host, proxy, Backend, RouteTable};

/// Feeds `chunks` to a framing follower as the router's guard does (an incomplete head is
/// given again with what follows it): the bytes let through, why a head was refused, and
/// where the follower ended.
fn feed(chunks: &[&[u8]]) -> (usize, Option<&'static str>, bool, bool) {
    let mut f = Follower::new(8192);
    let mut held: Vec<u8> = Vec::new();
    let mut through = 0;
    for c in chunks {
        held.extend_from_slice(c);
        let n = f.follow(&held);
        assert!(n <= held.len());
        through += n;
        if f.refused().is_some() {
            break;
        }
        held.drain(..n);
    }
    (through, f.refused(), f.at_head(), f.passing_through())
}

/// Whether `out` is exactly one whole head, as httparse reads it.
fn one_whole_head(out: &[u8], request: bool) -> bool {
    let mut headers = [httparse::EMPTY_HEADER; 2 * h1::MAX_HEADERS];
    let parsed = if request {
        httparse::Request::new(&mut headers).parse(out)
    } else {
        httparse::Response::new(&mut headers).parse(out)
    };
    matches!(parsed, Ok(httparse::Status::Complete(n)) if n == out.len())
}

/// The direct path's parsers on `data`: what they take must write back out as a head.
fn direct_path(data: &[u8]) {
    let mut buf = bytes::BytesMut::from(data);
    match h1::take_request(&mut buf, 8192, &mut http::HeaderMap::new()) {
        h1::RequestHead::Direct(req, body) => {
            let mut out = Vec::new();
            h1::write_request_head(&mut out, &req);
            assert!(one_whole_head(&out, true), "{:?}", String::from_utf8_lossy(&out));
            // The one length the head declares is the body the direct path reads.
            let headers = req.headers();
            let lengths: Vec<_> = headers.get_all(http::header::CONTENT_LENGTH).iter().collect();
            assert!(lengths.len() <= 1 && !headers.contains_key(http::header::TRANSFER_ENCODING));
            let declared = lengths.first().map_or(Some(0), |v| v.to_str().ok()?.trim().parse().ok());
            assert_eq!(declared, Some(body));
            assert!(body as u64 <= h1::MAX_DIRECT_BODY);
        }
        h1::RequestHead::HyperTaken(head) => {
            // Nothing is lost on the way to hyper.
            assert_eq!([&head[..], &buf[..]].concat(), data);
        }
        h1::RequestHead::Partial | h1::RequestHead::Hyper => assert_eq!(&buf[..], data),
    }
    let mut buf = bytes::BytesMut::from(data);
    if let Ok(Some(app)) = h1::take_response(&mut buf, false, &mut http::HeaderMap::new()) {
        let mut out = Vec::new();
        h1::write_response_head(&mut out, &app.resp, b"", true);
        assert!(one_whole_head(&out, false), "{:?}", String::from_utf8_lossy(&out));
    }
}

/// Follows `chunks` as one chunked body: where it ended, counted from the start.
fn chunked(chunks: &[&[u8]]) -> Option<Result<usize, ()>> {
    let mut body = ChunkedBody::new();
    let mut before = 0;
    for c in chunks {
        match body.follow(c) {
            ChunkedEnd::More => before += c.len(),
            ChunkedEnd::Ended(n) => return Some(Ok(before + n)),
            ChunkedEnd::Malformed => return Some(Err(())),
        }
    }
    None
}

/// Decodes `data` as one chunked body, as HTTP/2 clients get an app's: it ends where
/// the follower says it does (or is refused where the follower refuses it, or is cut off
/// at a trailer the decoder finds malformed), and its data are the chunks' bytes.
fn decoded_agrees(data: &[u8]) {
    let mut d = ChunkedDecoder::default();
    let mut buf = bytes::BytesMut::from(data);
    let mut got = 0usize;
    let end = loop {
        match d.decode(&mut buf) {
            Decoded::Data(b) => got += b.len(),
            Decoded::More => break None,
            Decoded::End(_) => break Some(Ok(data.len() - buf.len())),
            Decoded::Malformed => break Some(Err(())),
        }
    };
    match (chunked(&[data]), end) {
        (a, b) if a == b => {}
        // A trailer section the follower passes and httparse does not.
        (Some(Ok(_)), Some(Err(()))) => {}
        (a, b) => panic!("follower {a:?}, decoder {b:?}"),
    }
    assert!(got <= data.len());
}

/// The bytes as a feed message: one that parses is written out and parses to the same;
/// route tables and certificates are built from it as the router builds them.
fn feed_message(data: &[u8]) {
    use paas_router::feed::{FromRouter, ToRouter};
    if let Ok(msg) = serde_json::from_slice::<ToRouter>(data) {
        let out = serde_json::to_string(&msg).expect("a message is written out");
        let again: ToRouter = serde_json::from_str(&out).expect("and parses again");
        assert_eq!(serde_json::to_string(&again).unwrap(), out);
        match msg {
            ToRouter::Routes(entries) => {
                let _ = RouteTable::from_entries(&entries);
            }
            ToRouter::Certificates(entries) => {
                let _ = paas_router::tls::Certificates::from_entries(&entries, None);
            }
            ToRouter::Drain | ToRouter::Stop | ToRouter::Sync(_) => {}
        }
    }
    if let Ok(msg) = serde_json::from_slice::<FromRouter>(data) {
        let out = serde_json::to_string(&msg).expect("a message is written out");
        let again: FromRouter = serde_json::from_str(&out).expect("and parses again");
        assert_eq!(serde_json::to_string(&again).unwrap(), out);
    }
}

fuzz_target!(|data: &[u8]| {
    feed_message(data);
    // However the bytes arrive (split where the first byte says), the framing follower
    // lets the same bytes through and refuses the same heads, and a chunked body ends at
    // the same byte.
    let split = data.first().map_or(0, |&b| usize::from(b)) % (data.len() + 1);
    assert_eq!(feed(&[data]), feed(&[&data[..split], &data[split..]]));
    assert_eq!(chunked(&[data]), chunked(&[&data[..split], &data[split..]]));
    decoded_agrees(data);
    direct_path(data);

    if let Ok(text) = std::str::from_utf8(data) {
        if let Some(h) = host::normalise(text) {
            assert_eq!(h.to_ascii_lowercase(), h);
            assert!(!h.is_empty() && !h.ends_with('.'));
        }
    }
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut parsed = httparse::Request::new(&mut headers);
    let Ok(httparse::Status::Complete(_)) = parsed.parse(data) else {
        return;
    };
    let mut builder = http::Request::builder()
        .method(parsed.method.unwrap_or("GET"))
        .uri(parsed.path.unwrap_or("/"))
        .version(if parsed.version == Some(0) {
            http::Version::HTTP_10
        } else {
            http::Version::HTTP_11
        });
    for h in parsed.headers.iter() {
        builder = builder.header(h.name, h.value);
    }
    let Ok(req) = builder.body(()) else {
        return;
    };
    let Ok(host) = proxy::request_filter(&req) else {
        return;
    };
    let mut table = RouteTable::new();
    let app = Backend::new(std::net::SocketAddr::from(([10, 0, 0, 1], 8080)), 0);
    table.insert("app.localhost", "app", vec![app.clone()]);
    table.insert_route("*.localhost", "/api", "api", vec![app]);
    let _ = proxy::upstream_peer(&table, &host, &req, |_| true);
});
