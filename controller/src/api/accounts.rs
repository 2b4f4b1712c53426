//! `/v1/login`, `/v1/token`, `/v1/logout`, `/v1/user...`, `/v1/users...` and
//! `/v1/spaces...`: logging in, users, spaces, their members and quotas.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::Extension;
use http::{Response, Uri};
use paas_api::auth::{
    ChangePassword, CreateSpace, CreateUser, LoginRequest, Quota, RefreshRequest, Role,
};

use super::body::{self, ApiBody};
use super::extract::{read_json, NamePath};
use super::failure::Failure;
use super::page;
use crate::platform::access::Caller;
use crate::platform::Platform;

pub async fn login(
    State(p): State<Arc<Platform>>,
    Extension(caller): Extension<Caller>,
    body: Body,
) -> Result<Response<ApiBody>, Failure> {
    let req: LoginRequest = read_json(body).await?;
    let grant = p.login(&req.user, req.password, caller.address).await?;
    Ok(body::json(200, &grant))
}

pub async fn refresh(
    State(p): State<Arc<Platform>>,
    body: Body,
) -> Result<Response<ApiBody>, Failure> {
    let req: RefreshRequest = read_json(body).await?;
    Ok(body::json(200, &p.refresh(&req.refresh_token).await?))
}

pub async fn logout(
    State(p): State<Arc<Platform>>,
    Extension(caller): Extension<Caller>,
) -> Result<Response<ApiBody>, Failure> {
    p.logout(&caller).await?;
    Ok(body::empty(204))
}

pub async fn whoami(
    State(p): State<Arc<Platform>>,
    Extension(caller): Extension<Caller>,
) -> Response<ApiBody> {
    body::json(200, &p.whoami(&caller).await)
}

pub async fn passwd(
    State(p): State<Arc<Platform>>,
    Extension(caller): Extension<Caller>,
    body: Body,
) -> Result<Response<ApiBody>, Failure> {
    let req: ChangePassword = read_json(body).await?;
    p.change_password(&caller, req.old_password, req.new_password)
        .await?;
    Ok(body::empty(204))
}

pub async fn users(State(p): State<Arc<Platform>>, uri: Uri) -> Result<Response<ApiBody>, Failure> {
    let users = p.users().await?;
    page::list(&users, uri.path(), uri.query().unwrap_or(""))
}

pub async fn create_user(
    State(p): State<Arc<Platform>>,
    body: Body,
) -> Result<Response<ApiBody>, Failure> {
    let req: CreateUser = read_json(body).await?;
    Ok(body::json(201, &p.create_user(req).await?))
}

pub async fn delete_user(
    State(p): State<Arc<Platform>>,
    NamePath(name): NamePath,
) -> Result<Response<ApiBody>, Failure> {
    p.delete_user(&name).await?;
    Ok(body::empty(204))
}

pub async fn spaces(
    State(p): State<Arc<Platform>>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
) -> Result<Response<ApiBody>, Failure> {
    let spaces = p.spaces(&caller).await?;
    page::list(&spaces, uri.path(), uri.query().unwrap_or(""))
}

pub async fn create_space(
    State(p): State<Arc<Platform>>,
    body: Body,
) -> Result<Response<ApiBody>, Failure> {
    let req: CreateSpace = read_json(body).await?;
    Ok(body::json(201, &p.create_space(req).await?))
}

pub async fn space(
    State(p): State<Arc<Platform>>,
    Path(space): Path<String>,
) -> Result<Response<ApiBody>, Failure> {
    Ok(body::json(200, &p.space(&space).await?))
}

pub async fn delete_space(
    State(p): State<Arc<Platform>>,
    Path(space): Path<String>,
) -> Result<Response<ApiBody>, Failure> {
    p.delete_space(&space).await?;
    Ok(body::empty(204))
}

pub async fn set_quota(
    State(p): State<Arc<Platform>>,
    Extension(caller): Extension<Caller>,
    Path(space): Path<String>,
    body: Body,
) -> Result<Response<ApiBody>, Failure> {
    let quota: Quota = read_json(body).await?;
    Ok(body::json(200, &p.set_quota(&caller, &space, quota).await?))
}

pub async fn space_users(
    State(p): State<Arc<Platform>>,
    Path(space): Path<String>,
    uri: Uri,
) -> Result<Response<ApiBody>, Failure> {
    let members = p.space_members(&space).await?;
    page::list(&members, uri.path(), uri.query().unwrap_or(""))
}

pub async fn set_role(
    State(p): State<Arc<Platform>>,
    Path((space, user, role)): Path<(String, String, String)>,
) -> Result<Response<ApiBody>, Failure> {
    p.set_role(&space, &user, parse_role(&role)?, true).await?;
    Ok(body::empty(204))
}

pub async fn unset_role(
    State(p): State<Arc<Platform>>,
    Path((space, user, role)): Path<(String, String, String)>,
) -> Result<Response<ApiBody>, Failure> {
    p.set_role(&space, &user, parse_role(&role)?, false).await?;
    Ok(body::empty(204))
}

/// The audit trail the caller may read (of `?space=` only, if given), oldest first.
pub async fn audit(
    State(p): State<Arc<Platform>>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
) -> Result<Response<ApiBody>, Failure> {
    let space = super::query::param(uri.query().unwrap_or(""), "space");
    let entries = p.audit_trail(&caller, space.as_deref()).await?;
    page::list(&entries, uri.path(), uri.query().unwrap_or(""))
}

fn parse_role(raw: &str) -> Result<Role, Failure> {
    raw.parse()
        .map_err(|e: String| Failure::new(400, "invalid-role", e, None))
}
