//! The HTTPS API, `/v1/...`, with bearer tokens and a rule for every route.
//!
//! The API is a tower service: [`router`] is the one table of routes (axum), and what
//! applies to every request is a layer around it, in the order a request meets them:
//! trailing slashes trimmed, a trace span, the JSON error envelope of
//! `paas_api::ErrorBody` for errors the layers answer themselves, a bound on the wait between body frames (a client that stalls an upload is cut off),
//! and the body limit of the largest upload. Each route then passes its own rule
//! ([`endpoints`], [`Access`]): who calls, from the bearer token (the admin token or a
//! user's access token, never logged), and whether they may do this to what the path
//! names.

mod accounts;
mod apps;
pub(crate) mod body;
mod console;
mod extract;
mod failure;
mod page;
pub(crate) mod query;
mod routes;
mod services;
mod streams;
pub(crate) mod tasks;
mod uploads;
mod watch;

pub(crate) use extract::read_json;
pub(crate) use streams::{dropped as streams_dropped, stream_exec, stream_logs, LogLines};

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{RawPathParams, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch, post, put, MethodRouter};
use axum::Router;
use http::Method;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tower::Layer;
use tower_http::normalize_path::NormalizePathLayer;

use self::failure::Failure;
use crate::platform::access::{Access, Act, Caller};
use crate::platform::Platform;

/// How long a client has for the TLS handshake and then for each request's headers.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a request body may go without a frame: an upload that stalls this long is
/// cut off instead of holding its connection and temp file open.
const BODY_STALL_TIMEOUT: Duration = Duration::from_secs(60);

/// One route of the API: a method and path, the rule it is under, and its handler.
pub struct Endpoint {
    pub method: Method,
    pub path: &'static str,
    pub access: Access,
    handler: MethodRouter<Arc<Platform>>,
}

/// Every route of the API, each under its rule ([`Access`]): a route cannot be added
/// without one, and the API's tests check each rule for every role.
pub fn endpoints() -> Vec<Endpoint> {
    use Access::{Admin, App, AppPut, Public, Service, SignedIn, Space};
    use Act::{Develop, Manage, Read};
    let e = |method: Method, path, access, handler| Endpoint {
        method,
        path,
        access,
        handler,
    };
    vec![
        e(Method::POST, "/v1/login", Public, post(accounts::login)),
        e(Method::POST, "/v1/token", Public, post(accounts::refresh)),
        e(Method::POST, "/v1/logout", SignedIn, post(accounts::logout)),
        e(Method::GET, "/v1/user", SignedIn, get(accounts::whoami)),
        e(
            Method::PUT,
            "/v1/user/password",
            SignedIn,
            put(accounts::passwd),
        ),
        e(Method::GET, "/v1/users", Admin, get(accounts::users)),
        e(
            Method::POST,
            "/v1/users",
            Admin,
            post(accounts::create_user),
        ),
        e(
            Method::DELETE,
            "/v1/users/{name}",
            Admin,
            delete(accounts::delete_user),
        ),
        e(Method::GET, "/v1/spaces", SignedIn, get(accounts::spaces)),
        e(
            Method::POST,
            "/v1/spaces",
            Admin,
            post(accounts::create_space),
        ),
        e(
            Method::GET,
            "/v1/spaces/{space}",
            Space(Read),
            get(accounts::space),
        ),
        e(
            Method::DELETE,
            "/v1/spaces/{space}",
            Admin,
            delete(accounts::delete_space),
        ),
        e(
            Method::PUT,
            "/v1/spaces/{space}/quota",
            Space(Manage),
            put(accounts::set_quota),
        ),
        e(
            Method::GET,
            "/v1/spaces/{space}/users",
            Space(Read),
            get(accounts::space_users),
        ),
        e(
            Method::PUT,
            "/v1/spaces/{space}/users/{user}/roles/{role}",
            Space(Manage),
            put(accounts::set_role),
        ),
        e(
            Method::DELETE,
            "/v1/spaces/{space}/users/{user}/roles/{role}",
            Space(Manage),
            delete(accounts::unset_role),
        ),
        e(Method::GET, "/v1/audit", SignedIn, get(accounts::audit)),
        e(Method::GET, "/v1/info", SignedIn, get(apps::info)),
        e(Method::GET, "/v1/apps", SignedIn, get(apps::list)),
        e(
            Method::GET,
            "/v1/apps/{name}",
            App(Read),
            get(apps::get_app),
        ),
        e(Method::PUT, "/v1/apps/{name}", AppPut, put(apps::put_app)),
        e(
            Method::DELETE,
            "/v1/apps/{name}",
            App(Develop),
            delete(apps::delete),
        ),
        e(
            Method::GET,
            "/v1/apps/{name}/routes",
            App(Read),
            get(routes::app_routes),
        ),
        e(
            Method::POST,
            "/v1/apps/{name}/routes",
            App(Develop),
            post(routes::map),
        ),
        e(
            Method::DELETE,
            "/v1/apps/{name}/routes",
            App(Develop),
            delete(routes::unmap),
        ),
        e(
            Method::POST,
            "/v1/apps/{name}/packages",
            App(Develop),
            post(uploads::package),
        ),
        e(
            Method::POST,
            "/v1/apps/{name}/deployments",
            App(Develop),
            post(apps::deploy),
        ),
        e(
            Method::POST,
            "/v1/apps/{name}/restage",
            App(Develop),
            post(apps::restage),
        ),
        e(
            Method::POST,
            "/v1/apps/{name}/restart",
            App(Develop),
            post(apps::restart),
        ),
        e(
            Method::POST,
            "/v1/apps/{name}/start",
            App(Develop),
            post(apps::restart),
        ),
        e(
            Method::POST,
            "/v1/apps/{name}/rollback",
            App(Develop),
            post(apps::rollback),
        ),
        e(
            Method::POST,
            "/v1/apps/{name}/scale",
            App(Develop),
            post(apps::scale),
        ),
        e(
            Method::POST,
            "/v1/apps/{name}/stop",
            App(Develop),
            post(apps::stop),
        ),
        e(
            Method::POST,
            "/v1/apps/{name}/deployment/continue",
            App(Develop),
            post(apps::continue_deployment),
        ),
        e(
            Method::POST,
            "/v1/apps/{name}/deployment/cancel",
            App(Develop),
            post(apps::cancel_deployment),
        ),
        e(
            Method::GET,
            "/v1/apps/{name}/revisions",
            App(Read),
            get(apps::revisions),
        ),
        // A droplet holds the app's code and whatever secrets staging baked in.
        e(
            Method::GET,
            "/v1/apps/{name}/droplet",
            App(Develop),
            get(apps::droplet),
        ),
        e(
            Method::GET,
            "/v1/apps/{name}/logs",
            App(Read),
            get(apps::logs),
        ),
        e(
            Method::GET,
            "/v1/apps/{name}/events",
            App(Read),
            get(apps::events),
        ),
        e(
            Method::GET,
            "/v1/apps/{name}/traffic",
            App(Read),
            get(apps::traffic),
        ),
        e(
            Method::GET,
            "/v1/apps/{name}/usage",
            App(Read),
            get(apps::usage),
        ),
        e(
            Method::GET,
            "/v1/apps/{name}/env",
            App(Develop),
            get(apps::get_env),
        ),
        e(
            Method::PATCH,
            "/v1/apps/{name}/env",
            App(Develop),
            patch(apps::patch_env),
        ),
        e(
            Method::POST,
            "/v1/apps/{name}/exec",
            App(Develop),
            post(apps::exec),
        ),
        e(
            Method::GET,
            "/v1/apps/{name}/tasks",
            App(Read),
            get(tasks::list),
        ),
        e(
            Method::POST,
            "/v1/apps/{name}/tasks",
            App(Develop),
            post(tasks::run),
        ),
        e(
            Method::POST,
            "/v1/apps/{name}/tasks/{sequence}/terminate",
            App(Develop),
            post(tasks::terminate),
        ),
        e(
            Method::POST,
            "/v1/apps/{name}/tasks/{sequence}/resize",
            App(Develop),
            post(tasks::resize),
        ),
        e(
            Method::PUT,
            "/v1/apps/{name}/services/{service}",
            App(Develop),
            put(services::bind),
        ),
        e(
            Method::DELETE,
            "/v1/apps/{name}/services/{service}",
            App(Develop),
            delete(services::unbind),
        ),
        e(
            Method::GET,
            "/v1/apps/{name}/system-env",
            App(Develop),
            get(services::system_env),
        ),
        e(Method::GET, "/v1/routes", SignedIn, get(routes::list)),
        // The route's space is checked by the handler (it is named in the query).
        e(
            Method::DELETE,
            "/v1/routes",
            SignedIn,
            delete(routes::delete_route),
        ),
        // The route's and the service's spaces are checked by the handler.
        e(
            Method::PUT,
            "/v1/routes/route-service",
            SignedIn,
            put(routes::bind_route_service),
        ),
        e(
            Method::DELETE,
            "/v1/routes/route-service",
            SignedIn,
            delete(routes::unbind_route_service),
        ),
        // Private keys: only routers (with the admin token) and admins read them.
        e(
            Method::GET,
            "/v1/certificates",
            Admin,
            get(routes::certificates),
        ),
        e(Method::GET, "/v1/cells", Admin, get(apps::cells)),
        e(Method::GET, "/v1/services", SignedIn, get(services::list)),
        // The space is in the query; the handler checks it.
        e(
            Method::POST,
            "/v1/services",
            SignedIn,
            post(services::create),
        ),
        e(
            Method::PATCH,
            "/v1/services/{name}",
            Service(Develop),
            patch(services::update),
        ),
        e(
            Method::DELETE,
            "/v1/services/{name}",
            Service(Develop),
            delete(services::delete),
        ),
        e(Method::GET, "/v1/domains", SignedIn, get(routes::domains)),
        // Shared domains are an admin's, private ones their space's managers': the
        // handler checks which (the space is in the body, or the stored domain).
        e(
            Method::POST,
            "/v1/domains",
            SignedIn,
            post(routes::create_domain),
        ),
        e(
            Method::DELETE,
            "/v1/domains/{name}",
            SignedIn,
            delete(routes::delete_domain),
        ),
        e(
            Method::POST,
            "/v1/resources/match",
            SignedIn,
            post(uploads::match_resources),
        ),
        e(
            Method::GET,
            "/v1/buildpacks",
            SignedIn,
            get(uploads::buildpacks),
        ),
        e(Method::GET, "/v1/stacks", SignedIn, get(uploads::stacks)),
        e(
            Method::POST,
            "/v1/buildpacks/{name}",
            Admin,
            post(uploads::create_buildpack),
        ),
        e(
            Method::PATCH,
            "/v1/buildpacks/{name}",
            Admin,
            patch(uploads::update_buildpack),
        ),
        e(
            Method::DELETE,
            "/v1/buildpacks/{name}",
            Admin,
            delete(uploads::delete_buildpack),
        ),
        e(
            Method::PUT,
            "/v1/buildpacks/{name}/bits",
            Admin,
            put(uploads::buildpack_bits),
        ),
    ]
}

/// Every route of the API, behind the layers of the module docs.
pub fn router(platform: Arc<Platform>) -> Router {
    let mut router = Router::new();
    for endpoint in endpoints() {
        let rule = (Arc::clone(&platform), endpoint.access);
        router = router.route(
            endpoint.path,
            endpoint
                .handler
                .layer(middleware::from_fn_with_state(rule, authorize)),
        );
    }
    router
        .merge(console::router())
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
        .layer(middleware::map_response(envelope_bare_errors))
        .layer(tower_http::trace::TraceLayer::new_for_http())
}

/// How long a stopping API waits for the requests under way (a followed stream of logs
/// never ends by itself).
const API_DRAIN: Duration = Duration::from_secs(5);

/// Serves the API over TLS on `listener` until `shutdown` completes; then stops
/// accepting, lets each connection finish the request it serves (keep-alive ones close)
/// and returns once all are closed or [`API_DRAIN`] has passed.
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
    let (closing_tx, closing) = tokio::sync::watch::channel(false);
    // Every connection holds a clone of `open`; `all_closed` ends when none is left.
    let (open, mut all_closed) = tokio::sync::mpsc::channel::<()>(1);
    loop {
        let (tcp, peer) = tokio::select! {
            _ = &mut shutdown => {
                drop(listener);
                let _ = closing_tx.send(true);
                drop(open);
                let _ = tokio::time::timeout(API_DRAIN, all_closed.recv()).await;
                return;
            }
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
        let (held, mut closing) = (open.clone(), closing.clone());
        tokio::spawn(async move {
            let _held = held;
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
                    move |req: http::Request<hyper::body::Incoming>| {
                        let mut req = req.map(axum::body::Body::new);
                        req.extensions_mut().insert(PeerAddr(peer));
                        req
                    },
                ));
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HANDSHAKE_TIMEOUT)
                .serve_connection(TokioIo::new(tls), service);
            tokio::pin!(conn);
            let ended = tokio::select! {
                ended = conn.as_mut() => ended,
                // Only ever set to true.
                _ = closing.changed() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = ended {
                tracing::debug!(%peer, "API connection ended: {e}");
            }
        });
    }
}

/// Where a request came from (the TCP peer), for the audit trail and login limits.
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub std::net::SocketAddr);

/// Finds who calls (from the bearer token, or the console's cookie) and lets the
/// request through only if the route's rule allows it; the handler finds the caller in
/// the request's extensions.
async fn authorize(
    State((platform, access)): State<(Arc<Platform>, Access)>,
    params: RawPathParams,
    mut req: Request,
    next: Next,
) -> Response {
    let address = req.extensions().get::<PeerAddr>().map(|a| a.0.ip());
    let bearer = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if access == Access::Public {
        req.extensions_mut().insert(Caller::anonymous(address));
        return next.run(req).await;
    }
    // Without a bearer token, the web console's session cookie, whose changes must
    // carry its CSRF token.
    let token = match bearer {
        Some(token) => Some(token),
        None => match console::session_token(req.headers()) {
            Some(token) => match console::check_csrf(req.method(), req.headers(), token) {
                Ok(()) => Some(token),
                Err(refused) => return refused.into_response(),
            },
            None => None,
        },
    };
    let caller = match token {
        Some(token) => platform.caller(token, address).await,
        None => Err(crate::platform::Error::new(
            crate::platform::ErrorKind::Unauthenticated,
            "unauthorised",
            "the request has no bearer token",
            Some("log in with `paas login -a URL -u USER`, or with an admin token: `paas login --api URL --token TOKEN`"),
        )),
    };
    let caller = match caller {
        Ok(c) => c,
        Err(e) => return Failure::from(e).into_response(),
    };
    let param = |key: &str| {
        params
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.to_string())
    };
    let space = param("space").or_else(|| query::param(req.uri().query().unwrap_or(""), "space"));
    let name = param("name");
    let space = match platform
        .authorize(&caller, access, name.as_deref(), space.as_deref())
        .await
    {
        Ok(space) => space,
        Err(e) => {
            tracing::info!(user = %caller.user, address = ?caller.address, method = %req.method(), path = %req.uri().path(), "refused: {e}");
            return Failure::from(e).into_response();
        }
    };
    // Every change is recorded with who made it; reads are not.
    let reading = matches!(*req.method(), Method::GET | Method::HEAD);
    let change = (!reading && access != Access::Public).then(|| {
        let app = match access {
            Access::App(_) | Access::AppPut => name
                .as_deref()
                .and_then(|n| paas_api::AppName::parse(n).ok()),
            _ => None,
        };
        let target = req.uri().path_and_query().map_or("", |p| p.as_str());
        let action = format!("{} {target}", req.method())
            .chars()
            .take(300)
            .collect::<String>();
        (action, app)
    });
    req.extensions_mut().insert(caller.clone());
    let resp = next.run(req).await;
    if change.is_some() {
        // A change is in effect at the router when its answer goes out.
        platform.router_synced().await;
    }
    if let Some((action, app)) = change {
        platform
            .audit(
                &caller,
                space.clone(),
                action,
                app.as_ref(),
                resp.status().as_u16(),
            )
            .await;
    }
    watch::watched(platform, caller, access, name, space, resp).await
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// Every route is under a rule (an [`Endpoint`] cannot be made without one), and the
    /// API's document lists exactly the routes served: the e2e test of every route's
    /// rule for every role walks that document, so a route added here without a row
    /// there fails.
    #[test]
    fn every_route_is_documented_and_every_documented_route_is_served() {
        let raw =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.yaml"))
                .unwrap();
        let doc: serde_json::Value = serde_yaml_ng::from_str(&raw).unwrap();
        let documented: BTreeSet<(String, String)> = doc["paths"]
            .as_object()
            .unwrap()
            .iter()
            .flat_map(|(path, ops)| {
                ops.as_object()
                    .unwrap()
                    .keys()
                    .filter(|k| ["get", "post", "put", "patch", "delete"].contains(&k.as_str()))
                    .map(|k| (k.to_uppercase(), path.clone()))
                    .collect::<Vec<_>>()
            })
            .collect();
        let served: BTreeSet<(String, String)> = endpoints()
            .iter()
            .map(|e| (e.method.to_string(), e.path.to_string()))
            .collect();
        assert_eq!(
            served.difference(&documented).collect::<Vec<_>>(),
            Vec::<&(String, String)>::new(),
            "served but not in docs/openapi.yaml"
        );
        assert_eq!(
            documented.difference(&served).collect::<Vec<_>>(),
            Vec::<&(String, String)>::new(),
            "in docs/openapi.yaml but not served"
        );
        assert_eq!(served.len(), endpoints().len(), "a route is listed twice");
    }
}
