//! Request framing checked on the wire, before hyper parses a request.
//!
//! hyper's parser resolves two ambiguous framings itself, in ways RFC 9112 allows: with
//! both `Content-Length` and `Transfer-Encoding` it drops the length and reads the
//! chunked body; two equal `Content-Length`s count as one. The request then reaches the
//! router without a trace of either, so the router cannot refuse it. Such requests are
//! the raw material of request smuggling (CL.TE and TE.CL desync attacks, "HTTP Desync
//! Attacks", Kettle 2019; CVE-2019-16869 in Netty, CVE-2022-32213 in Node.js): a router
//! and an app that resolve them differently disagree on where a message ends.
//!
//! [`FramingGuard`] sits between the client's connection and hyper. It follows the
//! connection's messages (each head, then its body by length or chunk by chunk) and holds
//! every request head back until it has seen all of it. A head with an ambiguous framing
//! never reaches hyper: hyper reads end of input instead, finishes the responses already
//! under way, and shuts the connection down; the guard writes a `400` with
//! `X-Paas-Router-Error: bad_request` just before the shutdown, so the client learns why.
//!
//! What the guard does not understand (HTTP/2, an upgrade, a malformed chunk, a head
//! larger than the limit) it passes through untouched from then on: hyper refuses or
//! serves those itself.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

use crate::h1::{H2_PREFACE, MAX_HEADERS};

/// Where the guard is in the connection's stream of requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the start of a request head.
    Head,
    /// Inside a body with this many bytes left.
    Body(u64),
    /// Inside a chunked body.
    Chunked(Chunk),
    /// No more checking: HTTP/2, an upgraded connection, or something hyper will refuse.
    Passthrough,
}

/// Where a chunked body's parser is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// In the chunk-size line; `digits` seen so far, `size` their value; `ext` once past
    /// a `;` extension; `line` bytes of the line so far.
    Size {
        size: u64,
        digits: u8,
        ext: bool,
        line: u16,
    },
    /// Got the size line's CR.
    SizeLf {
        size: u64,
    },
    /// In a chunk's data.
    Data(u64),
    /// After a chunk's data: its CRLF.
    DataCr,
    DataLf,
    /// After the last chunk: trailer lines until an empty one. `empty` while the current
    /// line has no character yet.
    Trailer {
        empty: bool,
        cr: bool,
    },
}

/// The longest chunk-size line followed, extensions included. RFC 9112 (7.1.1) leaves
/// the limit to the recipient; without one, a sender makes a reader take in any number
/// of bytes for a body of a few (CVE-2023-39326 in Go's net/http, CVE-2024-22019 in
/// Node.js). A longer line is malformed here: a request passes to hyper, which has a
/// limit of its own, and an app's response is cut.
const MAX_CHUNK_LINE: u16 = 4096;

impl Chunk {
    /// The start of a chunk-size line.
    const SIZE_LINE: Chunk = Chunk::Size {
        size: 0,
        digits: 0,
        ext: false,
        line: 0,
    };
}

/// Follows a connection's stream of HTTP/1 requests: where each head and body ends, and
/// whether a head's framing is refused. [`FramingGuard`] runs one per connection; it is
/// public for the fuzz target.
#[derive(Debug)]
pub struct Follower {
    state: State,
    max_head: usize,
    refused: Option<&'static str>,
    /// Request heads followed so far: the guard times each one from when it waits for it.
    heads: u64,
}

impl Follower {
    /// `max_head`: a longer request head is passed on unchecked (hyper answers 431).
    pub fn new(max_head: usize) -> Self {
        Follower {
            state: State::Head,
            max_head,
            refused: None,
            heads: 0,
        }
    }

    /// Why a head was refused, once one was; nothing is followed after it.
    pub fn refused(&self) -> Option<&'static str> {
        self.refused
    }

    /// Whether the next bytes start a request head.
    pub fn at_head(&self) -> bool {
        self.state == State::Head
    }

    /// Whether checking has stopped (HTTP/2, an upgrade, or something hyper refuses).
    pub fn passing_through(&self) -> bool {
        self.state == State::Passthrough
    }

    /// Follows `bytes`, which start where the last call's usable bytes ended. Returns how
    /// many of them may go on now; the rest is an incomplete request head, to be given
    /// again with what follows it, or a refused head.
    pub fn follow(&mut self, bytes: &[u8]) -> usize {
        if self.refused.is_some() {
            return 0;
        }
        let mut at = 0;
        while at < bytes.len() {
            match self.state {
                State::Passthrough => return bytes.len(),
                State::Body(left) => {
                    let n = left.min((bytes.len() - at) as u64);
                    at += n as usize;
                    self.state = if n == left {
                        State::Head
                    } else {
                        State::Body(left - n)
                    };
                }
                State::Chunked(chunk) => {
                    let (used, next) = follow_chunk(chunk, &bytes[at..]);
                    at += used;
                    self.state = next;
                }
                State::Head => match check_head(&bytes[at..], self.max_head) {
                    Head::Incomplete => return at,
                    Head::Pass => self.state = State::Passthrough,
                    Head::Refuse(why) => {
                        self.refused = Some(why);
                        return at;
                    }
                    Head::Complete { len, next } => {
                        at += len;
                        self.state = next;
                        self.heads += 1;
                    }
                },
            }
        }
        at
    }
}

/// An HTTP/1 connection whose request framings are checked before hyper reads them.
pub struct FramingGuard<T> {
    inner: T,
    follower: Follower,
    /// Bytes of a request head not yet complete, held back from hyper.
    held: Vec<u8>,
    /// Validated bytes waiting for hyper to read them.
    ready: Vec<u8>,
    /// Once a head was refused: how much of the `400` has been written.
    refusal_sent: usize,
    /// How long a request head may take to arrive, from when the guard starts waiting
    /// for it (slowloris).
    head_timeout: Duration,
    /// One timer per connection, reset for each head rather than made anew, and the
    /// head (by its number) it is running for.
    deadline: Pin<Box<Sleep>>,
    timed_head: Option<u64>,
}

impl<T> FramingGuard<T> {
    /// `max_head` is the largest request head hyper accepts: a longer one is passed on
    /// so that hyper answers it with 431. A head must have arrived `head_timeout` after
    /// the guard starts waiting for it, or the connection fails: hyper's own header
    /// timer cannot run while the head is held back here.
    pub fn new(inner: T, max_head: usize, head_timeout: Duration) -> Self {
        FramingGuard {
            inner,
            follower: Follower::new(max_head),
            held: Vec::new(),
            ready: Vec::new(),
            refusal_sent: 0,
            head_timeout,
            deadline: Box::pin(tokio::time::sleep(head_timeout)),
            timed_head: None,
        }
    }

    /// While the guard waits for a head: fails once the head took too long.
    fn check_deadline(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.follower.at_head() {
            return Poll::Pending;
        }
        let head = self.follower.heads;
        if self.timed_head != Some(head) {
            self.timed_head = Some(head);
            let at = tokio::time::Instant::now() + self.head_timeout;
            self.deadline.as_mut().reset(at);
        }
        ready!(self.deadline.as_mut().poll(cx));
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the request head did not arrive in time",
        )))
    }
}

/// What a request head at the start of the input turned out to be.
enum Head {
    /// Not all of it has arrived.
    Incomplete,
    /// Its framing is sound: `len` bytes, then the body as `next` says.
    Complete { len: usize, next: State },
    /// Something for hyper to handle (or refuse) itself from now on.
    Pass,
    /// An ambiguous framing: refused, for this reason.
    Refuse(&'static str),
}

fn check_head(input: &[u8], max_head: usize) -> Head {
    if input.starts_with(H2_PREFACE) || H2_PREFACE.starts_with(input) {
        // The HTTP/2 preface (h2c with prior knowledge), or the start of it.
        return if input.len() >= H2_PREFACE.len() {
            Head::Pass
        } else {
            Head::Incomplete
        };
    }
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(input) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if input.len() < max_head => return Head::Incomplete,
        // Too long, too many headers, or malformed: hyper answers 431 or 400.
        _ => return Head::Pass,
    };
    let mut lengths = 0;
    let mut length = None;
    let mut chunked = false;
    let mut upgrade = false;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            lengths += 1;
            length = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok());
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = true;
        } else if h.name.eq_ignore_ascii_case("upgrade") {
            upgrade = true;
        }
    }
    if lengths > 0 && chunked {
        return Head::Refuse("Content-Length and Transfer-Encoding together");
    }
    if lengths > 1 {
        return Head::Refuse("more than one Content-Length");
    }
    if upgrade || req.method == Some("CONNECT") {
        // Past this head the bytes may be another protocol; hyper and the tunnel decide.
        return Head::Pass;
    }
    let next = if chunked {
        // hyper refuses a Transfer-Encoding that does not end in chunked; a sound one is
        // followed chunk by chunk.
        State::Chunked(Chunk::SIZE_LINE)
    } else if lengths == 0 {
        State::Head
    } else {
        match length {
            Some(0) => State::Head,
            Some(n) => State::Body(n),
            // A length hyper will refuse.
            None => State::Passthrough,
        }
    };
    Head::Complete { len, next }
}

/// Follows a chunked body through `bytes`: returns how many were used and the state
/// after them. A malformed chunk hands the connection to hyper, which refuses it.
fn follow_chunk(mut chunk: Chunk, bytes: &[u8]) -> (usize, State) {
    let mut at = 0;
    while at < bytes.len() {
        if let Chunk::Data(left) = chunk {
            let n = left.min((bytes.len() - at) as u64);
            at += n as usize;
            chunk = if n == left {
                Chunk::DataCr
            } else {
                Chunk::Data(left - n)
            };
            continue;
        }
        let b = bytes[at];
        at += 1;
        chunk = match chunk {
            Chunk::Size {
                size,
                digits,
                ext,
                line,
            } => {
                let line = line + 1;
                match (b, ext) {
                    (b'\r', _) if digits > 0 => Chunk::SizeLf { size },
                    _ if line > MAX_CHUNK_LINE => return (at, State::Passthrough),
                    (b';', _) if digits > 0 => Chunk::Size {
                        size,
                        digits,
                        ext: true,
                        line,
                    },
                    (_, true) if b != b'\n' => Chunk::Size {
                        size,
                        digits,
                        ext,
                        line,
                    },
                    (b' ' | b'\t', false) if digits > 0 => Chunk::Size {
                        size,
                        digits,
                        ext: true,
                        line,
                    },
                    (_, false) if b.is_ascii_hexdigit() && digits < 16 => Chunk::Size {
                        size: size << 4 | u64::from((b as char).to_digit(16).unwrap_or(0)),
                        digits: digits + 1,
                        ext,
                        line,
                    },
                    _ => return (at, State::Passthrough),
                }
            }
            Chunk::SizeLf { size } if b == b'\n' => {
                if size == 0 {
                    Chunk::Trailer {
                        empty: true,
                        cr: false,
                    }
                } else {
                    Chunk::Data(size)
                }
            }
            Chunk::DataCr if b == b'\r' => Chunk::DataLf,
            Chunk::DataLf if b == b'\n' => Chunk::SIZE_LINE,
            Chunk::Trailer { empty, cr: false } if b == b'\r' => Chunk::Trailer { empty, cr: true },
            Chunk::Trailer { empty, cr: true } if b == b'\n' => {
                if empty {
                    return (at, State::Head);
                }
                Chunk::Trailer {
                    empty: true,
                    cr: false,
                }
            }
            Chunk::Trailer { cr: false, .. } => Chunk::Trailer {
                empty: false,
                cr: false,
            },
            _ => return (at, State::Passthrough),
        };
    }
    (at, State::Chunked(chunk))
}

/// Follows one chunked body on its own: an app's response on the direct path
/// (`server::direct`), which passes the chunks on as they are and must know where they
/// end.
#[derive(Debug, Clone, Copy)]
pub struct ChunkedBody(Chunk);

/// Where a chunked body stands after some of its bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum ChunkedEnd {
    /// All the bytes belong to it and more are to come.
    More,
    /// It ended (last chunk and trailers) after this many of the bytes.
    Ended(usize),
    /// The bytes are not a chunked body.
    Malformed,
}

impl Default for ChunkedBody {
    fn default() -> Self {
        ChunkedBody(Chunk::SIZE_LINE)
    }
}

impl ChunkedBody {
    pub fn new() -> Self {
        Self::default()
    }

    /// Follows `bytes`, which continue where the last call's ended.
    pub fn follow(&mut self, bytes: &[u8]) -> ChunkedEnd {
        match follow_chunk(self.0, bytes) {
            (n, State::Head) => ChunkedEnd::Ended(n),
            (_, State::Chunked(chunk)) => {
                self.0 = chunk;
                ChunkedEnd::More
            }
            _ => ChunkedEnd::Malformed,
        }
    }
}

/// The most bytes of trailer fields a decoded chunked body may end with.
const MAX_TRAILER: usize = 16 * 1024;

/// Decodes one chunked body: an app's response passed on over HTTP/2, which has no
/// chunks of its own (`server::raw`). It follows the chunks as [`ChunkedBody`] does and
/// gives their data, then the trailer fields.
#[derive(Debug, Default)]
pub struct ChunkedDecoder {
    chunk: ChunkedBody,
    /// The trailer section as read so far, its final CRLF included.
    trailer: Vec<u8>,
}

/// What a [`ChunkedDecoder`] found in the bytes it was given.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    /// The next bytes of the body's data.
    Data(bytes::Bytes),
    /// More bytes are needed.
    More,
    /// The body ended, with these trailer fields (usually none).
    End(http::HeaderMap),
    /// The bytes are not a chunked body.
    Malformed,
}

impl ChunkedDecoder {
    /// Takes what it can from the front of `buf`: data, or the chunks' framing.
    pub fn decode(&mut self, buf: &mut bytes::BytesMut) -> Decoded {
        loop {
            if let Chunk::Data(left) = self.chunk.0 {
                if buf.is_empty() {
                    return Decoded::More;
                }
                let n = left.min(buf.len() as u64);
                self.chunk.0 = if n == left {
                    Chunk::DataCr
                } else {
                    Chunk::Data(left - n)
                };
                return Decoded::Data(buf.split_to(n as usize).freeze());
            }
            // The framing between data, a byte at a time: a size line and a CRLF a chunk.
            let Some(&byte) = buf.first() else {
                return Decoded::More;
            };
            let in_trailer = matches!(self.chunk.0, Chunk::Trailer { .. });
            let state = follow_chunk(self.chunk.0, &buf[..1]).1;
            let _ = buf.split_to(1);
            if in_trailer {
                if self.trailer.len() == MAX_TRAILER {
                    return Decoded::Malformed;
                }
                self.trailer.push(byte);
            }
            match state {
                State::Chunked(next) => self.chunk.0 = next,
                State::Head => return self.trailer_fields(),
                _ => return Decoded::Malformed,
            }
        }
    }

    /// The trailer section, read to its empty line, as fields.
    fn trailer_fields(&self) -> Decoded {
        let mut fields = http::HeaderMap::new();
        if self.trailer.len() <= 2 {
            return Decoded::End(fields);
        }
        // Lines end with CRLF (httparse would also split at a bare LF), and the section
        // is parsed whole, to its empty line.
        let bare_lf = self
            .trailer
            .iter()
            .enumerate()
            .any(|(i, &b)| b == b'\n' && (i == 0 || self.trailer[i - 1] != b'\r'));
        let mut parsed = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let Ok(httparse::Status::Complete((len, parsed))) =
            httparse::parse_headers(&self.trailer, &mut parsed)
        else {
            return Decoded::Malformed;
        };
        if bare_lf || len != self.trailer.len() {
            return Decoded::Malformed;
        }
        for h in parsed {
            let (Ok(name), Ok(value)) = (
                http::HeaderName::from_bytes(h.name.as_bytes()),
                http::HeaderValue::from_bytes(h.value),
            ) else {
                return Decoded::Malformed;
            };
            fields.append(name, value);
        }
        Decoded::End(fields)
    }
}

/// The answer to a refused head: it ends the connection.
fn refusal(why: &str) -> Vec<u8> {
    let body = format!("bad request: {why}\n");
    format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain; charset=utf-8\r\n\
         x-paas-router-error: bad_request\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

impl<T: AsyncRead + Unpin> AsyncRead for FramingGuard<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.ready.is_empty() {
                let n = this.ready.len().min(buf.remaining());
                buf.put_slice(&this.ready[..n]);
                this.ready.drain(..n);
                return Poll::Ready(Ok(()));
            }
            if this.follower.refused().is_some() {
                // hyper reads the end of input: it finishes what is under way, then
                // shuts the connection down, and the refusal goes out then.
                return Poll::Ready(Ok(()));
            }
            if this.held.is_empty() {
                // The common case: read straight into hyper's buffer and keep back only
                // an incomplete head at its end.
                let before = buf.filled().len();
                if Pin::new(&mut this.inner).poll_read(cx, buf)?.is_pending() {
                    return this.check_deadline(cx);
                }
                let filled = buf.filled().len();
                if filled == before {
                    return Poll::Ready(Ok(()));
                }
                let usable = this.follower.follow(&buf.filled()[before..filled]);
                if before + usable < filled {
                    this.held
                        .extend_from_slice(&buf.filled()[before + usable..filled]);
                    buf.set_filled(before + usable);
                }
                if usable > 0 {
                    return Poll::Ready(Ok(()));
                }
                continue;
            }
            // A head is incomplete: read more of it.
            let mut more = [0u8; 4096];
            let mut more_buf = ReadBuf::new(&mut more);
            if Pin::new(&mut this.inner)
                .poll_read(cx, &mut more_buf)?
                .is_pending()
            {
                return this.check_deadline(cx);
            }
            if more_buf.filled().is_empty() {
                // The client stopped half-way through a head: hyper sees the part and
                // the end of input.
                this.ready = std::mem::take(&mut this.held);
                continue;
            }
            this.held.extend_from_slice(more_buf.filled());
            let usable = this.follower.follow(&this.held);
            this.ready.extend_from_slice(&this.held[..usable]);
            this.held.drain(..usable);
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for FramingGuard<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(why) = this.follower.refused() {
            let answer = refusal(why);
            while this.refusal_sent < answer.len() {
                let rest = &answer[this.refusal_sent..];
                let n = ready!(Pin::new(&mut this.inner).poll_write(cx, rest))?;
                if n == 0 {
                    break;
                }
                this.refusal_sent += n;
            }
            ready!(Pin::new(&mut this.inner).poll_flush(cx))?;
        }
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn follow_all(input: &[u8]) -> (usize, State, bool) {
        let mut f = Follower::new(8192);
        let n = f.follow(input);
        (n, f.state, f.refused().is_some())
    }

    #[test]
    fn requests_and_bodies_are_followed_to_the_next_head() {
        let two = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhelloGET / HTTP/1.1\r\nHost: a\r\n\r\n";
        assert_eq!(follow_all(two), (two.len(), State::Head, false));
        let chunked = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n0\r\nT: 1\r\n\r\nGET";
        // The body is followed to its end; the next head is incomplete and held back.
        assert_eq!(follow_all(chunked), (chunked.len() - 3, State::Head, false));
    }

    #[test]
    fn a_body_split_anywhere_is_followed_the_same() {
        let msg = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\na\r\n0123456789\r\n0\r\n\r\n";
        for split in 60..msg.len() {
            let mut g = Follower::new(8192);
            let first = g.follow(&msg[..split]);
            assert_eq!(first, split, "split at {split}");
            assert_eq!(g.follow(&msg[split..]), msg.len() - split);
            assert_eq!(g.state, State::Head, "split at {split}");
        }
    }

    #[test]
    fn a_chunked_response_body_ends_where_its_trailers_do() {
        let body = b"5;x=y\r\nhello\r\n0\r\nEtag: 1\r\n\r\nHTTP/1.1 200";
        let end = body.len() - b"HTTP/1.1 200".len();
        for split in 0..end {
            let mut c = ChunkedBody::new();
            let first = c.follow(&body[..split]);
            let second = c.follow(&body[split..]);
            assert_eq!(
                (first, second),
                (ChunkedEnd::More, ChunkedEnd::Ended(end - split)),
                "split at {split}"
            );
        }
        assert_eq!(ChunkedBody::new().follow(b"zz\r\n"), ChunkedEnd::Malformed);
    }

    #[test]
    fn a_chunk_size_line_is_followed_up_to_its_limit_and_no_further() {
        // The line's length counts every byte before its CR: size, extensions, spaces.
        // (`line` never passes MAX_CHUNK_LINE + 1, so its u16 cannot overflow.)
        let body = |line_len: usize| {
            let ext = "e".repeat(line_len - 2);
            format!("1;{ext}\r\nx\r\n0\r\n\r\n").into_bytes()
        };
        let longest = body(usize::from(MAX_CHUNK_LINE));
        assert_eq!(
            ChunkedBody::new().follow(&longest),
            ChunkedEnd::Ended(longest.len())
        );
        // Fed a byte at a time, as a slow sender would, the count still holds.
        let mut c = ChunkedBody::new();
        let too_long = body(usize::from(MAX_CHUNK_LINE) + 1);
        let ends: Vec<ChunkedEnd> = too_long.chunks(1).map(|b| c.follow(b)).collect();
        assert!(ends.contains(&ChunkedEnd::Malformed), "{:?}", ends.last());
        // A request's chunked body with such a line is no longer followed: hyper refuses it.
        let mut f = Follower::new(8192);
        let head = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
        f.follow(&[&head[..], &too_long].concat());
        assert!(f.passing_through());
    }

    /// Decodes `parts` fed one after another: the data, how it ended, and how many
    /// bytes were left after its end.
    fn decode_parts(parts: &[&[u8]]) -> (Vec<u8>, Decoded, usize) {
        let mut d = ChunkedDecoder::default();
        let mut buf = bytes::BytesMut::new();
        let mut data = Vec::new();
        for (i, part) in parts.iter().enumerate() {
            buf.extend_from_slice(part);
            loop {
                match d.decode(&mut buf) {
                    Decoded::Data(b) => data.extend_from_slice(&b),
                    Decoded::More => break,
                    end => {
                        let unread: usize = parts[i + 1..].iter().map(|p| p.len()).sum();
                        return (data, end, buf.len() + unread);
                    }
                }
            }
        }
        (data, Decoded::More, buf.len())
    }

    #[test]
    fn a_chunked_body_split_anywhere_decodes_to_its_data_and_trailers() {
        let body = b"5;x=y\r\nhello\r\n6\r\n world\r\n0\r\nEtag: 1\r\nX-Sum: ab\r\n\r\nHTTP/1.1";
        let mut trailers = http::HeaderMap::new();
        trailers.insert("etag", http::HeaderValue::from_static("1"));
        trailers.insert("x-sum", http::HeaderValue::from_static("ab"));
        for split in 0..body.len() {
            let (data, end, left) = decode_parts(&[&body[..split], &body[split..]]);
            assert_eq!(
                (&data[..], end, left),
                (&b"hello world"[..], Decoded::End(trailers.clone()), 8),
                "split at {split}"
            );
        }
        let (data, end, _) = decode_parts(&[b"3\r\nabc\r\n0\r\n\r\n"]);
        assert_eq!(
            (&data[..], end),
            (&b"abc"[..], Decoded::End(http::HeaderMap::new()))
        );
    }

    #[test]
    fn a_malformed_chunked_body_stops_decoding() {
        for body in [
            &b"zz\r\n"[..],
            b"5\r\nhelloXX",
            b"5\nhello\r\n",
            b"0\r\nno colon\r\n\r\n",
            b"0\r\nx: a\ncontent-length: 9\r\n\r\n",
        ] {
            assert_eq!(decode_parts(&[body]).1, Decoded::Malformed, "{body:?}");
        }
        let huge = format!("0\r\nx: {}\r\n\r\n", "a".repeat(MAX_TRAILER));
        assert_eq!(decode_parts(&[huge.as_bytes()]).1, Decoded::Malformed);
    }

    #[test]
    fn ambiguous_framings_are_refused() {
        for head in [
            &b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n",
        ] {
            assert_eq!(follow_all(head), (0, State::Head, true));
        }
    }

    #[test]
    fn http2_upgrades_and_oversized_heads_pass_through() {
        assert_eq!(
            follow_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").1,
            State::Passthrough
        );
        assert_eq!(follow_all(b"PRI * HT"), (0, State::Head, false));
        let ws = b"GET /chat HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\nraw bytes";
        assert_eq!(follow_all(ws), (ws.len(), State::Passthrough, false));
        let mut g = Follower::new(64);
        let long = [b"GET / HTTP/1.1\r\nX: ".as_slice(), &[b'a'; 100]].concat();
        assert_eq!(g.follow(&long), long.len());
        assert_eq!(g.state, State::Passthrough);
    }
}
