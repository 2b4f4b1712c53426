//! `/v1/routes`, `/v1/apps/{name}/routes` and `/v1/domains`.

use http::{Method, Request, Response};
use hyper::body::Incoming;
use paas_api::{AppName, CreateDomain, MapRoute, Route};

use super::body::{self, ApiBody};
use super::handlers::read_json;
use super::{page, query};
use crate::platform::{Failure, Platform};
use crate::store::{Domain, RouteSettings};

/// `GET /v1/routes` lists mapped routes with their instances; `DELETE
/// /v1/routes?host=H&path=P` deletes one.
pub async fn routes(
    p: &Platform,
    method: &Method,
    path: &str,
    q: &str,
) -> Result<Response<ApiBody>, Failure> {
    match *method {
        Method::GET => page::list(&p.routes().await.map_err(Failure::internal)?, path, q),
        Method::DELETE => {
            p.delete_route(&route_in_query(q)?).await?;
            Ok(body::empty(204))
        }
        _ => Err(super::handlers::not_found(method, "/v1/routes")),
    }
}

/// `GET` an app's routes, `POST` a route to map it, `DELETE ?host=H&path=P` to unmap one.
pub async fn app_routes(
    p: &Platform,
    app: &AppName,
    method: &Method,
    path: &str,
    q: &str,
    req: Request<Incoming>,
) -> Result<Response<ApiBody>, Failure> {
    match *method {
        Method::GET => {
            p.app_record(app).await?;
            let routes = p.store.app_routes(app).await.map_err(Failure::internal)?;
            page::list(&routes, path, q)
        }
        Method::POST => {
            let asked: MapRoute = read_json(req).await?;
            let route = Route::from_parts(&asked.host, &asked.path)
                .map_err(|e| Failure::new(400, "invalid-route", e.to_string(), None))?;
            let settings = RouteSettings {
                balance: asked.balance,
                max_body: asked.max_body_bytes,
            };
            let added = p.map_route(app, &route, settings).await?;
            Ok(body::json(if added { 201 } else { 200 }, &route))
        }
        Method::DELETE => {
            p.unmap_route(app, &route_in_query(q)?).await?;
            Ok(body::empty(204))
        }
        _ => Err(super::handlers::not_found(
            method,
            &format!("/v1/apps/{app}/routes"),
        )),
    }
}

/// `GET /v1/domains`, `POST /v1/domains`, `DELETE /v1/domains/{name}`.
pub async fn domains(
    p: &Platform,
    method: &Method,
    rest: &[&str],
    path: &str,
    q: &str,
    req: Request<Incoming>,
) -> Result<Response<ApiBody>, Failure> {
    match (method, rest) {
        (&Method::GET, []) => page::list(&p.domains().await?, path, q),
        (&Method::POST, []) => {
            let d: CreateDomain = read_json(req).await?;
            let name = d.name.to_ascii_lowercase();
            let added = p
                .create_domain(Domain {
                    name: name.clone(),
                    cert_pem: d.cert_pem,
                    key_pem: d.key_pem,
                })
                .await?;
            let info = p.domains().await?.into_iter().find(|i| i.name == name);
            Ok(body::json(if added { 201 } else { 200 }, &info))
        }
        (&Method::DELETE, [name]) => {
            p.delete_domain(&name.to_ascii_lowercase()).await?;
            Ok(body::empty(204))
        }
        _ => Err(super::handlers::not_found(method, "/v1/domains")),
    }
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
