//! Streams last only as long as their caller may still read them.
//!
//! A followed log or event stream, an exec or an attached task can outlive what let it
//! start: a logout, a role taken away, a user or the app deleted (and another app of
//! its name made, perhaps in another space). Every NDJSON answer to a caller with a
//! token is watched: every [`EVERY`] its rule is checked again against the store (not
//! the access cache) and the app it named must be the same app; the stream ends when
//! either fails.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::response::Response;
use hyper::body::Frame;
use tokio::sync::oneshot;

use crate::platform::access::{Access, Caller};
use crate::platform::Platform;

/// How often a stream's caller is checked again.
pub const EVERY: Duration = Duration::from_secs(3);

/// `resp`, ended early if `caller` may no longer make the request it answers.
pub async fn watched(
    platform: Arc<Platform>,
    caller: Caller,
    access: Access,
    name: Option<String>,
    space: Option<String>,
    resp: Response,
) -> Response {
    let streams = resp
        .headers()
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/x-ndjson"));
    if !streams || caller.token_hash.is_none() {
        return resp;
    }
    // The app the stream is about, as it is now: a new app of its name is another.
    let app = name.and_then(|n| paas_api::AppName::parse(&n).ok());
    let guid = match &app {
        Some(a) => platform.app_guid(a).await,
        None => None,
    };
    let (stop, stopped) = oneshot::channel();
    tokio::spawn(async move {
        let mut stop = stop;
        loop {
            tokio::select! {
                () = stop.closed() => return,
                () = tokio::time::sleep(EVERY) => {}
            }
            let still = platform
                .still_allowed(
                    &caller,
                    access,
                    app.as_ref(),
                    guid.as_deref(),
                    space.as_deref(),
                )
                .await;
            if !still {
                tracing::info!(user = %caller.user, "a stream ended: its caller may no longer read it");
                let _ = stop.send(());
                return;
            }
        }
    });
    resp.map(|body| {
        Body::new(Guarded {
            inner: body,
            stopped: Some(stopped),
        })
    })
}

struct Guarded {
    inner: Body,
    /// Fires when the stream must end; `None` once its watcher is gone.
    stopped: Option<oneshot::Receiver<()>>,
}

impl HttpBody for Guarded {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        if let Some(stopped) = self.stopped.as_mut() {
            match Pin::new(stopped).poll(cx) {
                Poll::Ready(Ok(())) => return Poll::Ready(None),
                Poll::Ready(Err(_)) => self.stopped = None,
                Poll::Pending => {}
            }
        }
        Pin::new(&mut self.inner).poll_frame(cx)
    }
}
