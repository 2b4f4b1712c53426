//! The HTTPS API, `/v1/...`, with bearer-token authentication.
//!
//! The API is a tower service: [`router`] is the one table of routes (axum), and what
//! applies to every request is a layer around it, in the order a request meets them:
//! trailing slashes trimmed, a trace span, the JSON error envelope of
//! `paas_api::ErrorBody` for errors the layers answer themselves, the bearer token
//! (compared in constant time, never logged), a bound on the wait between body frames
//! (a client that stalls an upload is cut off), and the body limit of the largest
//! upload. A later rule (roles, quotas) is one more layer here.

mod apps;
pub(crate) mod body;
mod extract;
mod failure;
mod page;
pub(crate) mod query;
mod routes;
mod services;
mod streams;
mod tasks;
mod uploads;

pub(crate) use extract::read_json;
pub(crate) use streams::{dropped as streams_dropped, stream_exec, stream_logs, LogLines};

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tower::Layer;
use tower_http::normalize_path::NormalizePathLayer;

use self::failure::Failure;
use crate::platform::Platform;
use crate::secrets::constant_time_eq;

/// How long a client has for the TLS handshake and then for each request's headers.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a request body may go without a frame: an upload that stalls this long is
/// cut off instead of holding its connection and temp file open.
const BODY_STALL_TIMEOUT: Duration = Duration::from_secs(60);

/// Every route of the API, behind the layers of the module docs.
pub fn router(platform: Arc<Platform>, token: String) -> Router {
    let token = Arc::new(token);
    Router::new()
        .route("/v1/info", get(apps::info))
        .route("/v1/apps", get(apps::list))
        .route(
            "/v1/apps/{name}",
            get(apps::get_app).put(apps::put_app).delete(apps::delete),
        )
        .route(
            "/v1/apps/{name}/routes",
            get(routes::app_routes)
                .post(routes::map)
                .delete(routes::unmap),
        )
        .route("/v1/apps/{name}/packages", post(uploads::package))
        .route("/v1/apps/{name}/deployments", post(apps::deploy))
        .route("/v1/apps/{name}/restage", post(apps::restage))
        .route("/v1/apps/{name}/restart", post(apps::restart))
        .route("/v1/apps/{name}/start", post(apps::restart))
        .route("/v1/apps/{name}/rollback", post(apps::rollback))
        .route("/v1/apps/{name}/scale", post(apps::scale))
        .route("/v1/apps/{name}/stop", post(apps::stop))
        .route(
            "/v1/apps/{name}/deployment/continue",
            post(apps::continue_deployment),
        )
        .route(
            "/v1/apps/{name}/deployment/cancel",
            post(apps::cancel_deployment),
        )
        .route("/v1/apps/{name}/revisions", get(apps::revisions))
        .route("/v1/apps/{name}/droplet", get(apps::droplet))
        .route("/v1/apps/{name}/logs", get(apps::logs))
        .route("/v1/apps/{name}/events", get(apps::events))
        .route(
            "/v1/apps/{name}/env",
            get(apps::get_env).patch(apps::patch_env),
        )
        .route("/v1/apps/{name}/exec", post(apps::exec))
        .route("/v1/apps/{name}/tasks", get(tasks::list).post(tasks::run))
        .route(
            "/v1/apps/{name}/tasks/{sequence}/terminate",
            post(tasks::terminate),
        )
        .route("/v1/routes", get(routes::list).delete(routes::delete_route))
        .route("/v1/certificates", get(routes::certificates))
        .route("/v1/cells", get(apps::cells))
        .route("/v1/services", get(services::list).post(services::create))
        .route(
            "/v1/services/{name}",
            axum::routing::patch(services::update).delete(services::delete),
        )
        .route(
            "/v1/apps/{name}/services/{service}",
            put(services::bind).delete(services::unbind),
        )
        .route("/v1/apps/{name}/system-env", get(services::system_env))
        .route(
            "/v1/domains",
            get(routes::domains).post(routes::create_domain),
        )
        .route(
            "/v1/domains/{name}",
            axum::routing::delete(routes::delete_domain),
        )
        .route("/v1/resources/match", post(uploads::match_resources))
        .route("/v1/buildpacks", get(uploads::buildpacks))
        .route(
            "/v1/buildpacks/{name}",
            post(uploads::create_buildpack)
                .patch(uploads::update_buildpack)
                .delete(uploads::delete_buildpack),
        )
        .route("/v1/buildpacks/{name}/bits", put(uploads::buildpack_bits))
        .fallback(no_such_route)
        .method_not_allowed_fallback(no_such_route)
        .with_state(platform)
        // The last layer added is the first a request meets.
        .layer(tower_http::limit::RequestBodyLimitLayer::new(
            uploads::MAX_PACKAGE_BYTES as usize,
        ))
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
            BODY_STALL_TIMEOUT,
        ))
        .layer(middleware::from_fn_with_state(token, authenticate))
        .layer(middleware::map_response(envelope_bare_errors))
        .layer(tower_http::trace::TraceLayer::new_for_http())
}

/// Serves the API over TLS on `listener` until `shutdown` completes.
pub async fn run(
    service: Router,
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    shutdown: impl Future<Output = ()>,
) {
    // Outside the router: routing sees the path with its trailing slash trimmed.
    let service = NormalizePathLayer::trim_trailing_slash().layer(service);
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
        let service = service.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, "API TLS handshake failed: {e}");
                    return;
                }
                Err(_) => return,
            };
            let service =
                hyper_util::service::TowerToHyperService::new(tower::ServiceExt::map_request(
                    service,
                    |req: http::Request<hyper::body::Incoming>| req.map(axum::body::Body::new),
                ));
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

/// Lets through only requests with the admin bearer token.
async fn authenticate(State(token): State<Arc<String>>, req: Request, next: Next) -> Response {
    let presented = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if presented.is_some_and(|t| constant_time_eq(t.trim().as_bytes(), token.as_bytes())) {
        return next.run(req).await;
    }
    Failure::new(
        401,
        "unauthorised",
        "the request has no valid bearer token",
        Some("log in with `paas login --api URL --token TOKEN`; the admin token is in paasd's data folder (admin-token)"),
    )
    .into_response()
}

/// What no route serves: the envelope, so the CLI can tell a version mismatch.
async fn no_such_route(method: http::Method, uri: http::Uri) -> Failure {
    Failure::new(
        404,
        "no-such-route",
        format!(
            "the API has no route {method} {}",
            uri.path().chars().take(200).collect::<String>()
        ),
        Some("check that the CLI and paasd are the same version (`paas --version`)"),
    )
}

/// Errors answered by a layer (a body over the limit, a stalled upload) with no JSON
/// body of their own get the error envelope, like every other error of the API.
async fn envelope_bare_errors(resp: Response) -> Response {
    let status = resp.status();
    let has_json = resp
        .headers()
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || has_json {
        return resp;
    }
    let (code, message, hint) = match status.as_u16() {
        413 => (
            "too-large",
            "the request body is larger than the API takes".to_string(),
            Some("packages and buildpacks may be at most 512 MiB compressed"),
        ),
        408 => (
            "request-timeout",
            "the request body stopped arriving".to_string(),
            Some("try again"),
        ),
        _ => ("error", format!("the request failed ({status})"), None),
    };
    Failure::new(status.as_u16(), code, message, hint).into_response()
}
