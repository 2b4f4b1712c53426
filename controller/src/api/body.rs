//! Response bodies: JSON documents, error envelopes and NDJSON streams.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame};
use serde::Serialize;
use tokio::sync::mpsc;

use crate::platform::Failure;

pub type ApiBody = BoxBody<Bytes, Infallible>;

pub fn json<T: Serialize>(status: u16, value: &T) -> Response<ApiBody> {
    let mut bytes = serde_json::to_vec(value).unwrap_or_default();
    bytes.push(b'\n');
    let mut r = Response::new(Full::new(Bytes::from(bytes)).boxed());
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

pub fn failure(f: Failure) -> Response<ApiBody> {
    json(f.status, &f.body)
}

pub fn empty(status: u16) -> Response<ApiBody> {
    let mut r = Response::new(Full::new(Bytes::new()).boxed());
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::NO_CONTENT);
    r
}

/// A file streamed in chunks, so a large blob never sits in memory whole.
pub struct FileBody {
    file: tokio::fs::File,
    buf: Vec<u8>,
}

impl Body for FileBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = &mut *self;
        let mut read = tokio::io::ReadBuf::new(&mut this.buf);
        match tokio::io::AsyncRead::poll_read(Pin::new(&mut this.file), cx, &mut read) {
            Poll::Pending => Poll::Pending,
            // A read error ends the body early; the client sees a short download.
            Poll::Ready(Err(_)) => Poll::Ready(None),
            Poll::Ready(Ok(())) if read.filled().is_empty() => Poll::Ready(None),
            Poll::Ready(Ok(())) => {
                Poll::Ready(Some(Ok(Frame::data(Bytes::copy_from_slice(read.filled())))))
            }
        }
    }
}

pub fn file(file: tokio::fs::File, content_type: &'static str) -> Response<ApiBody> {
    let mut r = Response::new(
        FileBody {
            file,
            buf: vec![0; 256 * 1024],
        }
        .boxed(),
    );
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// A streamed body fed by a channel: one JSON document per line, sent as produced.
pub struct NdjsonBody {
    rx: mpsc::UnboundedReceiver<Bytes>,
}

impl Body for NdjsonBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.rx.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
    }
}

/// A sender of NDJSON lines and the response that streams them. The stream ends when
/// every sender is dropped; a send fails once the client has gone.
pub fn ndjson_stream() -> (NdjsonSender, Response<ApiBody>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let mut r = Response::new(NdjsonBody { rx }.boxed());
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    (NdjsonSender { tx }, r)
}

#[derive(Clone)]
pub struct NdjsonSender {
    tx: mpsc::UnboundedSender<Bytes>,
}

impl NdjsonSender {
    /// Completes once the client has gone.
    pub async fn closed(&self) {
        self.tx.closed().await
    }

    /// Sends one line; `false` once the client has gone.
    pub fn send<T: Serialize>(&self, value: &T) -> bool {
        let mut line = serde_json::to_vec(value).unwrap_or_default();
        line.push(b'\n');
        self.tx.send(Bytes::from(line)).is_ok()
    }
}
