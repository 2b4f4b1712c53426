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
use std::sync::Arc;

use tokio::sync::{mpsc, Semaphore};

use super::failure::Failure;

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
    // Answers may hold secrets (env, a session): no browser keeps them on disk.
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// `data` as it is, of the given type.
pub fn bytes(status: u16, data: &'static [u8], content_type: &'static str) -> Response<ApiBody> {
    let mut r = Response::new(Full::new(Bytes::from_static(data)).boxed());
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
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

/// Bytes a streamed response holds for a client that reads slowly. Past that a sender
/// waits for room (so a slow client slows the command that prints, back to its pipe), or
/// drops what may be dropped and says so: paasd's memory does not grow with what a fast
/// printer writes for a slow reader. Counted in bytes, not lines, because a line may be
/// 16 KiB and its JSON several times that.
const STREAM_BACKLOG_BYTES: usize = 4 << 20;

/// A streamed body fed by a channel: one JSON document per line, sent as produced. The
/// channel itself is unbounded; what it may hold is bounded by `room`, which a sender
/// takes before it sends and the body gives back as the client takes each line.
pub struct NdjsonBody {
    rx: mpsc::UnboundedReceiver<Bytes>,
    room: Arc<Semaphore>,
}

impl Body for NdjsonBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.rx.poll_recv(cx).map(|o| {
            o.map(|b| {
                self.room.add_permits(cost(&b) as usize);
                Ok(Frame::data(b))
            })
        })
    }
}

impl Drop for NdjsonBody {
    fn drop(&mut self) {
        // The client has gone: senders waiting for room learn it at once.
        self.room.close();
    }
}

/// A sender of NDJSON lines and the response that streams them. The stream ends when
/// every sender is dropped; a send fails once the client has gone.
pub fn ndjson_stream() -> (NdjsonSender, Response<ApiBody>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let room = Arc::new(Semaphore::new(STREAM_BACKLOG_BYTES));
    let mut r = Response::new(
        NdjsonBody {
            rx,
            room: Arc::clone(&room),
        }
        .boxed(),
    );
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    (NdjsonSender { tx, room }, r)
}

#[derive(Clone)]
pub struct NdjsonSender {
    tx: mpsc::UnboundedSender<Bytes>,
    room: Arc<Semaphore>,
}

/// What [`NdjsonSender::try_send`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrySend {
    Sent,
    /// The client is behind: the line was not sent.
    Full,
    /// The client has gone.
    Gone,
}

fn line<T: Serialize>(value: &T) -> Bytes {
    let mut line = serde_json::to_vec(value).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

/// The room a line takes (a line larger than the whole backlog takes all of it).
fn cost(line: &Bytes) -> u32 {
    line.len().min(STREAM_BACKLOG_BYTES) as u32
}

impl NdjsonSender {
    /// Completes once the client has gone.
    pub async fn closed(&self) {
        self.tx.closed().await
    }

    /// Sends one line, waiting while the client is behind; `false` once it has gone.
    pub async fn send<T: Serialize>(&self, value: &T) -> bool {
        let line = line(value);
        match self.room.acquire_many(cost(&line)).await {
            Ok(permit) => {
                permit.forget();
                self.tx.send(line).is_ok()
            }
            Err(_) => false,
        }
    }

    /// Sends one line if the client has room for it now.
    pub fn try_send<T: Serialize>(&self, value: &T) -> TrySend {
        let line = line(value);
        match self.room.try_acquire_many(cost(&line)) {
            Ok(permit) => {
                permit.forget();
                match self.tx.send(line) {
                    Ok(()) => TrySend::Sent,
                    Err(_) => TrySend::Gone,
                }
            }
            Err(tokio::sync::TryAcquireError::NoPermits) => TrySend::Full,
            Err(tokio::sync::TryAcquireError::Closed) => TrySend::Gone,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // A client that never reads: a sender may put at most the backlog into the stream,
    // then it waits (or, trying, is told the stream is full).
    #[tokio::test]
    async fn a_stream_holds_no_more_than_its_backlog_for_a_client_that_does_not_read() {
        let (out, resp) = ndjson_stream();
        let big = "x".repeat(64 << 10);
        let mut sent = 0usize;
        while out.try_send(&big) == TrySend::Sent {
            sent += big.len();
            assert!(sent <= STREAM_BACKLOG_BYTES + (64 << 10));
        }
        assert!(sent >= STREAM_BACKLOG_BYTES - (128 << 10), "{sent}");
        let waiting = tokio::time::timeout(std::time::Duration::from_millis(50), out.send(&big));
        assert!(waiting.await.is_err(), "a send waits for room");
        drop(resp);
        assert!(
            !out.send(&big).await,
            "a send fails once the client has gone"
        );
        assert_eq!(out.try_send(&big), TrySend::Gone);
    }
}
