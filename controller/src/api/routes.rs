//! `/v1/routes`, `/v1/apps/{name}/routes`, `/v1/domains` and `/v1/certificates`.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::Extension;
use http::{Response, Uri};
use paas_api::{BindRouteService, CreateDomain, MapRoute, Route};

use super::body::{self, ApiBody};
use super::extract::{read_json, AppPath, NamePath};
use super::failure::Failure;
use super::{page, query};
use crate::platform::access::Caller;
use crate::platform::Platform;
use crate::store::{RouteSettings, StoredDomain};

/// The routes of the spaces the caller sees (of `?space=` only, if given), with the
/// instances they reach.
pub async fn list(
    State(p): State<Arc<Platform>>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
) -> Result<Response<ApiBody>, Failure> {
    let mut routes = p.routes().await.map_err(Failure::internal)?;
    let spaces: std::collections::HashMap<String, String> = p
        .store
        .routes()
        .await
        .map_err(Failure::internal)?
        .into_iter()
        .map(|r| (r.route.to_string(), r.space().to_string()))
        .collect();
    let only = query::param(uri.query().unwrap_or(""), "space");
    routes.retain(|e| {
        let key = Route::from_parts(&e.host, &e.path).map(|r| r.to_string());
        let space = key.ok().and_then(|k| spaces.get(&k));
        space.is_some_and(|s| caller.sees(s) && only.as_ref().is_none_or(|o| o == s))
    });
    // A route service's signing key goes to routers (the admin token) only: a tenant
    // who had it could sign requests past their route service.
    if !caller.admin {
        for e in &mut routes {
            e.route_service_key = None;
        }
    }
    page::list(&routes, uri.path(), uri.query().unwrap_or(""))
}

/// `DELETE /v1/routes?host=H&path=P` deletes a route, mapped or not.
pub async fn delete_route(
    State(p): State<Arc<Platform>>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
) -> Result<Response<ApiBody>, Failure> {
    p.delete_route(&caller, &route_in_query(uri.query().unwrap_or(""))?)
        .await?;
    Ok(body::empty(204))
}

pub async fn app_routes(
    State(p): State<Arc<Platform>>,
    AppPath(app): AppPath,
    uri: Uri,
) -> Result<Response<ApiBody>, Failure> {
    p.app_record(&app).await?;
    let routes = p.store.app_routes(&app).await.map_err(Failure::internal)?;
    page::list(&routes, uri.path(), uri.query().unwrap_or(""))
}

/// `PUT /v1/routes/route-service?host=H&path=P` with `{"service": NAME}` binds the
/// service to the route as its route service: 201, or 200 when it was bound already.
pub async fn bind_route_service(
    State(p): State<Arc<Platform>>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
    body: Body,
) -> Result<Response<ApiBody>, Failure> {
    let route = route_in_query(uri.query().unwrap_or(""))?;
    let asked: BindRouteService = read_json(body).await?;
    let added = p
        .bind_route_service(&caller, &route, &asked.service)
        .await?;
    Ok(body::json(if added { 201 } else { 200 }, &route))
}

/// `DELETE /v1/routes/route-service?host=H&path=P&service=NAME` unbinds it.
pub async fn unbind_route_service(
    State(p): State<Arc<Platform>>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
) -> Result<Response<ApiBody>, Failure> {
    let q = uri.query().unwrap_or("");
    let route = route_in_query(q)?;
    let service = query::param(q, "service").ok_or_else(|| {
        Failure::new(
            400,
            "invalid-request",
            "name the service with &service=NAME",
            None,
        )
    })?;
    p.unbind_route_service(&caller, &route, &service).await?;
    Ok(body::empty(204))
}

/// Maps the route of the body to the app (creating it if new): 201 when it was not
/// mapped to it yet, 200 when it was.
pub async fn map(
    State(p): State<Arc<Platform>>,
    Extension(caller): Extension<Caller>,
    AppPath(app): AppPath,
    body: Body,
) -> Result<Response<ApiBody>, Failure> {
    let asked: MapRoute = read_json(body).await?;
    let route = Route::from_parts(&asked.host, &asked.path)
        .map_err(|e| Failure::new(400, "invalid-route", e.to_string(), None))?;
    let settings = RouteSettings {
        balance: asked.balance,
        max_body: asked.max_body_bytes,
    };
    let added = p.map_route(&caller, &app, &route, settings).await?;
    Ok(body::json(if added { 201 } else { 200 }, &route))
}

/// `DELETE ?host=H&path=P` unmaps a route from the app; the route stays reserved.
pub async fn unmap(
    State(p): State<Arc<Platform>>,
    AppPath(app): AppPath,
    uri: Uri,
) -> Result<Response<ApiBody>, Failure> {
    p.unmap_route(&app, &route_in_query(uri.query().unwrap_or(""))?)
        .await?;
    Ok(body::empty(204))
}

/// The shared domains and those private to the caller's spaces.
pub async fn domains(
    State(p): State<Arc<Platform>>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
) -> Result<Response<ApiBody>, Failure> {
    page::list(
        &p.domains(&caller).await?,
        uri.path(),
        uri.query().unwrap_or(""),
    )
}

/// Adds a domain (201), or replaces its certificate (200).
pub async fn create_domain(
    State(p): State<Arc<Platform>>,
    Extension(caller): Extension<Caller>,
    body: Body,
) -> Result<Response<ApiBody>, Failure> {
    let d: CreateDomain = read_json(body).await?;
    let name = d.name.to_ascii_lowercase();
    let added = p
        .create_domain(
            &caller,
            StoredDomain {
                name: name.clone(),
                cert_pem: d.cert_pem,
                key_pem: d.key_pem,
                space: d.space,
            },
        )
        .await?;
    let info = p
        .domains(&caller)
        .await?
        .into_iter()
        .find(|i| i.name == name);
    Ok(body::json(if added { 201 } else { 200 }, &info))
}

pub async fn delete_domain(
    State(p): State<Arc<Platform>>,
    Extension(caller): Extension<Caller>,
    NamePath(name): NamePath,
) -> Result<Response<ApiBody>, Failure> {
    let name = name.to_ascii_lowercase();
    paas_api::check_host(&name).map_err(|e| {
        Failure::new(
            400,
            "invalid-domain",
            format!("domain {name:?} is invalid: {e}"),
            None,
        )
    })?;
    p.delete_domain(&caller, &name).await?;
    Ok(body::empty(204))
}

/// Every certificate the routers serve, with its key, for routers on other hosts.
pub async fn certificates(
    State(p): State<Arc<Platform>>,
    uri: Uri,
) -> Result<Response<ApiBody>, Failure> {
    page::list(
        &p.certificates().await?,
        uri.path(),
        uri.query().unwrap_or(""),
    )
}

fn route_in_query(q: &str) -> Result<Route, Failure> {
    let host = query::param(q, "host").ok_or_else(|| {
        Failure::new(
            400,
            "invalid-request",
            "name the route with ?host=HOST (and &path=/PATH for a path route)",
            None,
        )
    })?;
    let path = query::param(q, "path").unwrap_or_default();
    Route::from_parts(&host, &path)
        .map_err(|e| Failure::new(400, "invalid-route", e.to_string(), None))
}
