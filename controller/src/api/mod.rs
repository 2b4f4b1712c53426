//! The HTTPS API, `/v1/...`, with bearer-token authentication.
//!
//! Every request but the TLS handshake is authenticated; the token is compared in
//! constant time and never logged. Errors are the JSON envelope of `paas_api::ErrorBody`.

mod body;
mod handlers;
mod page;
mod query;
mod routes;

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use crate::platform::{Failure, Platform};
use crate::secrets::constant_time_eq;
use body::ApiBody;

/// How long a client has for the TLS handshake and then for each request's headers.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Api {
    platform: Arc<Platform>,
    token: String,
}

impl Api {
    pub fn new(platform: Arc<Platform>, token: String) -> Arc<Self> {
        Arc::new(Api { platform, token })
    }

    /// Serves the API on `listener` until `shutdown` completes.
    pub async fn run(
        self: Arc<Self>,
        listener: TcpListener,
        tls: Arc<rustls::ServerConfig>,
        shutdown: impl Future<Output = ()>,
    ) {
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        tokio::pin!(shutdown);
        loop {
            let (tcp, peer) = tokio::select! {
                _ = &mut shutdown => return,
                a = listener.accept() => match a {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!("API accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let api = Arc::clone(&self);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await
                {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, "API TLS handshake failed: {e}");
                        return;
                    }
                    Err(_) => return,
                };
                let service = hyper::service::service_fn(move |req| {
                    let api = Arc::clone(&api);
                    async move { Ok::<_, Infallible>(api.handle(req).await) }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HANDSHAKE_TIMEOUT)
                    .serve_connection(TokioIo::new(tls), service);
                if let Err(e) = conn.await {
                    tracing::debug!(%peer, "API connection ended: {e}");
                }
            });
        }
    }

    async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<ApiBody> {
        if !self.authorised(&req) {
            return body::failure(Failure::new(
                401,
                "unauthorised",
                "the request has no valid bearer token",
                Some("log in with `paas login --api URL --token TOKEN`; the admin token is in paasd's data folder (admin-token)"),
            ));
        }
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let resp = handlers::route(&self.platform, req).await;
        tracing::debug!(%method, %path, status = resp.status().as_u16(), "API request");
        resp
    }

    fn authorised<B>(&self, req: &Request<B>) -> bool {
        req.headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|t| constant_time_eq(t.trim().as_bytes(), self.token.as_bytes()))
    }
}
