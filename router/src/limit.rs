//! A route's request body limit: a body that grows past it is cut off on its way to the
//! app, and the client is told 413 if the app has not answered yet.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body of a request on its way to an instance, counted against the route's limit.
pub struct UpstreamBody {
    /// `None` for a body-less copy made to send a request again.
    inner: Option<Incoming>,
    /// Bytes still allowed; `None` for no limit.
    remaining: Option<u64>,
}

impl UpstreamBody {
    /// `inner` with at most `limit` bytes.
    pub fn new(inner: Incoming, limit: Option<u64>) -> Self {
        UpstreamBody {
            inner: Some(inner),
            remaining: limit,
        }
    }

    /// No body at all.
    pub fn empty() -> Self {
        UpstreamBody {
            inner: None,
            remaining: None,
        }
    }
}

/// The error a body over its route's limit ends with; hyper hands it back as the cause
/// of the failed send, which is how the router tells it from an unreachable app.
#[derive(Debug)]
pub struct BodyTooLarge;

impl std::fmt::Display for BodyTooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the request body is over the route's limit")
    }
}

impl std::error::Error for BodyTooLarge {}

/// Whether a failed send failed because the request body passed its limit.
pub fn is_body_too_large(e: &hyper::Error) -> bool {
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        if c.is::<BodyTooLarge>() {
            return true;
        }
        cause = c.source();
    }
    false
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        match Pin::new(inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(left), Some(data)) = (this.remaining.as_mut(), frame.data_ref()) {
                    let n = data.len() as u64;
                    if n > *left {
                        return Poll::Ready(Some(Err(Box::new(BodyTooLarge))));
                    }
                    *left -= n;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Incoming::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or(SizeHint::with_exact(0), Incoming::size_hint)
    }
}
