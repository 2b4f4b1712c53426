//! hyper's requests without a body (every HTTP/2 GET, HEAD, DELETE, … and HTTP/1.1 ones
//! on a connection hyper serves) go to the app the direct path's way: the request head
//! in one write on a pooled raw connection, the response head parsed with httparse.
//! Only the response body is hyper's to send, so it is read here, as a hyper body.
//!
//! Through hyper's client, each such request crossed a channel to the connection's task
//! and a oneshot back, and was copied first in case it had to go again. Under callgrind
//! (h2load, 50 connections of 10 streams) a proxied HTTP/2 request took 67-68k user
//! instructions that way, and about 57k this way (with hop-by-hop headers found in one
//! pass, `proxy::strip_hop_by_hop`); HAProxy takes about 35k.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{Bytes, BytesMut};
use hyper::body::{Body, Frame, SizeHint};
use tokio::net::TcpStream;

use crate::framing::{ChunkedDecoder, Decoded};
use crate::h1::Framing;
use crate::pool::Pool;

/// Room made for an app's bytes before each read.
const APP_READ: usize = 16 * 1024;

/// How the rest of an app's response body is framed.
enum Rest {
    /// This many bytes (0: it has ended).
    Length(u64),
    Chunked(ChunkedDecoder),
    /// Until the app closes the connection.
    UntilClose,
    /// It has ended, or failed.
    Done,
}

/// An app's response body, read from its raw connection. Read to its end (and with
/// nothing after it), the connection goes back to the pool; dropped before that, or
/// after the app broke the framing, the connection is closed.
pub struct RawBody {
    stream: Option<TcpStream>,
    /// What was read of the app's bytes and not yet passed on.
    buf: BytesMut,
    rest: Rest,
    keep_alive: bool,
    back: (SocketAddr, Arc<Pool>),
}

impl RawBody {
    /// The body that follows a response head on `stream`: its first bytes, if any, in
    /// `buf`.
    pub(super) fn new(
        stream: TcpStream,
        buf: BytesMut,
        framing: Framing,
        keep_alive: bool,
        back: (SocketAddr, Arc<Pool>),
    ) -> Self {
        let rest = match framing {
            Framing::Empty => Rest::Length(0),
            Framing::Length(n) => Rest::Length(n),
            Framing::Chunked(_) => Rest::Chunked(ChunkedDecoder::default()),
            Framing::UntilClose => Rest::UntilClose,
        };
        let mut body = RawBody {
            stream: Some(stream),
            buf,
            rest,
            keep_alive,
            back,
        };
        if matches!(body.rest, Rest::Length(0)) {
            body.end();
        }
        body
    }

    /// The body has been read to its end: the connection goes back to the pool if the
    /// app keeps it open and sent nothing after the response.
    fn end(&mut self) {
        self.rest = Rest::Done;
        if let Some(stream) = self.stream.take() {
            if self.keep_alive && self.buf.is_empty() {
                self.back.1.checkin_stream(self.back.0, stream);
            }
        }
    }

    /// The body ends here, whole or not: the connection is closed.
    fn close(&mut self) {
        self.rest = Rest::Done;
        self.stream = None;
    }

    /// The body cannot go on: the connection is closed.
    fn fail(&mut self, e: io::Error) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        self.close();
        Poll::Ready(Some(Err(e)))
    }
}

impl Body for RawBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        loop {
            match &mut this.rest {
                Rest::Done => return Poll::Ready(None),
                Rest::Length(left) if !this.buf.is_empty() => {
                    let n = (*left).min(this.buf.len() as u64);
                    *left -= n;
                    let data = this.buf.split_to(n as usize).freeze();
                    if *left == 0 {
                        this.end();
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Rest::Length(_) => {}
                Rest::Chunked(decoder) => match decoder.decode(&mut this.buf) {
                    Decoded::Data(data) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                    Decoded::More => {}
                    Decoded::End(mut trailers) => {
                        this.end();
                        crate::proxy::trailer_filter(&mut trailers);
                        if trailers.is_empty() {
                            return Poll::Ready(None);
                        }
                        return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
                    }
                    Decoded::Malformed => {
                        return this.fail(invalid("the app's chunked body is malformed"))
                    }
                },
                Rest::UntilClose if !this.buf.is_empty() => {
                    let data = this.buf.split().freeze();
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Rest::UntilClose => {}
            }
            let Some(stream) = this.stream.as_mut() else {
                return Poll::Ready(None);
            };
            this.buf.reserve(APP_READ);
            // A poll read, not `try_read_buf`: a short read clears tokio's readiness, so
            // the pool can tell later whether the app has sent (or closed) anything.
            match ready!(tokio_util::io::poll_read_buf(
                Pin::new(stream),
                cx,
                &mut this.buf
            )) {
                Ok(0) if matches!(this.rest, Rest::UntilClose) => {
                    this.close();
                    return Poll::Ready(None);
                }
                Ok(0) => {
                    return this.fail(invalid(
                        "the app closed the connection before its response ended",
                    ))
                }
                Ok(_) => {}
                Err(e) => return this.fail(e),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.rest, Rest::Done)
    }

    fn size_hint(&self) -> SizeHint {
        match self.rest {
            Rest::Length(n) => SizeHint::with_exact(n),
            Rest::Done => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}

fn invalid(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why)
}
