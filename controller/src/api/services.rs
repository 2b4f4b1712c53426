//! `/v1/services...` and an app's bindings: user-provided service instances.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::Extension;
use http::{Response, Uri};
use paas_api::auth::DEFAULT_SPACE;
use paas_api::{AppName, ServiceRequest};

use super::body::{self, ApiBody};
use super::extract::{read_json, AppPath, NamePath};
use super::failure::Failure;
use super::{page, query};
use crate::platform::access::Caller;
use crate::platform::Platform;

/// The service instances the caller sees (in the space of `?space=`, if given), without
/// credentials.
pub async fn list(
    State(p): State<Arc<Platform>>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
) -> Result<Response<ApiBody>, Failure> {
    let space = query::param(uri.query().unwrap_or(""), "space");
    let services = p.services(&caller, space.as_deref()).await?;
    page::list(&services, uri.path(), uri.query().unwrap_or(""))
}

/// Creates one; answers 201 with it (without credentials).
/// In the space of `?space=` (else the default one).
pub async fn create(
    State(p): State<Arc<Platform>>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
    body: Body,
) -> Result<Response<ApiBody>, Failure> {
    let req: ServiceRequest = read_json(body).await?;
    let name = req.name.clone().unwrap_or_default();
    let space = query::param(uri.query().unwrap_or(""), "space")
        .unwrap_or_else(|| DEFAULT_SPACE.to_string());
    p.create_service(&caller, &space, req).await?;
    summary(&p, &name, 201).await
}

/// Changes what the body gives.
pub async fn update(
    State(p): State<Arc<Platform>>,
    NamePath(name): NamePath,
    body: Body,
) -> Result<Response<ApiBody>, Failure> {
    let req: ServiceRequest = read_json(body).await?;
    p.update_service(&name, req).await?;
    summary(&p, &name, 200).await
}

pub async fn delete(
    State(p): State<Arc<Platform>>,
    NamePath(name): NamePath,
) -> Result<Response<ApiBody>, Failure> {
    p.delete_service(&name).await?;
    Ok(body::empty(204))
}

/// Binds a service to an app: 201 if it was not bound yet, else 200.
pub async fn bind(
    State(p): State<Arc<Platform>>,
    Path((app, service)): Path<(String, String)>,
) -> Result<Response<ApiBody>, Failure> {
    let app = app_name(&app)?;
    let changed = p.set_binding(&app, &service, true).await?;
    summary(&p, &service, if changed { 201 } else { 200 }).await
}

/// Unbinds a service from an app.
pub async fn unbind(
    State(p): State<Arc<Platform>>,
    Path((app, service)): Path<(String, String)>,
) -> Result<Response<ApiBody>, Failure> {
    let app = app_name(&app)?;
    if !p.set_binding(&app, &service, false).await? {
        return Err(Failure::new(
            404,
            "not-bound",
            format!("app {app} is not bound to service {service}"),
            Some("see `paas services`"),
        ));
    }
    Ok(body::empty(204))
}

/// The environment the platform gives the app's instances from their next start:
/// `VCAP_SERVICES` with credentials, and `DATABASE_URL` if a bound service gives one.
pub async fn system_env(
    State(p): State<Arc<Platform>>,
    AppPath(app): AppPath,
) -> Result<Response<ApiBody>, Failure> {
    Ok(body::json(200, &p.system_env(&app).await?))
}

/// The one service of `name` (the caller may see it: a rule or the handler said so).
async fn summary(p: &Platform, name: &str, status: u16) -> Result<Response<ApiBody>, Failure> {
    let all = p.services(&Caller::bootstrap(None), None).await?;
    let one = all.iter().find(|s| s.name == name);
    Ok(body::json(status, &one))
}

fn app_name(raw: &str) -> Result<AppName, Failure> {
    AppName::parse(raw).map_err(|e| Failure::new(400, "invalid-name", e.to_string(), None))
}
