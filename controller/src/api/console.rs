//! The web console: a page and its script and styles, built into paasd and served at the
//! API's own address (`https://API/`), over the same TLS and with no other server.
//!
//! The console signs in with a user's password like `paas login` does, and keeps the
//! access token in a cookie the page's script cannot read (`HttpOnly`), sent only over
//! TLS (`Secure`) and only with requests the console itself makes (`SameSite=Strict`).
//! Its script then calls the same `/v1` API as the CLI: [`super::authorize`] takes the
//! cookie when a request has no bearer token, so a person sees and changes exactly what
//! their roles allow, through the same rules, audit trail and stream re-checks.
//!
//! The access token lasts an hour; a second cookie holds its refresh token, which the
//! page trades once for a new pair (`POST /console/session/refresh`) when the first has
//! expired, so a session lasts while it is used, and ends after [`IDLE_SIGN_OUT`]
//! without use or at sign-out (which revokes both tokens).
//!
//! A cookie is sent by the browser whoever made the page that asks, so every change made
//! with it must also carry the session's CSRF token in `X-Csrf-Token` (OWASP's
//! "synchronizer token", derived from the session so that no state is kept): a page of
//! another site cannot read it, and without it a change is refused with 403.

use std::net::IpAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Extension, Router};
use http::{header, HeaderMap, HeaderValue, Method, Response};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::body::{self, ApiBody};
use super::extract::read_json;
use super::failure::Failure;
use super::PeerAddr;
use crate::platform::Platform;

/// The cookie that holds a signed-in person's access token. The `__Host-` prefix makes
/// browsers refuse it unless it is `Secure`, for `/` and set by this very host, so an
/// app on a neighbouring name cannot plant one (RFC 6265bis, cookie prefixes).
pub const SESSION_COOKIE: &str = "__Host-paas_session";
/// The cookie that holds the session's refresh token (same attributes).
pub const REFRESH_COOKIE: &str = "__Host-paas_refresh";
/// A console session not used for this long is signed out: its refresh cookie
/// expires (each refresh sets it again).
const IDLE_SIGN_OUT: std::time::Duration = std::time::Duration::from_secs(8 * 3600);
/// The header a change made with the cookie carries its CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The console's files, built into the binary: it works offline, with no CDN.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "console.js",
        "text/javascript; charset=utf-8",
        include_str!("../../console/console.js"),
    ),
    (
        "console.css",
        "text/css; charset=utf-8",
        include_str!("../../console/console.css"),
    ),
];
const INDEX: &str = include_str!("../../console/index.html");

/// Only the console's own files run, and no other site may frame it (clickjacking).
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

pub fn router() -> Router<Arc<Platform>> {
    Router::new()
        .route("/", get(index))
        .route("/console/{asset}", get(asset))
        .route(
            "/console/session",
            get(session).post(sign_in).delete(sign_out),
        )
        .route("/console/session/refresh", post(refresh))
}

async fn index() -> Response<ApiBody> {
    page(INDEX, "text/html; charset=utf-8")
}

async fn asset(Path(name): Path<String>) -> Result<Response<ApiBody>, Failure> {
    let (_, content_type, text) = ASSETS
        .iter()
        .find(|(file, _, _)| *file == name)
        .ok_or_else(|| {
            Failure::new(
                404,
                "not_found",
                format!("the console has no file {name:?}"),
                Some("open the console at /"),
            )
        })?;
    Ok(page(text, content_type))
}

fn page(text: &'static str, content_type: &'static str) -> Response<ApiBody> {
    let mut r = body::bytes(200, text.as_bytes(), content_type);
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    // A new paasd may serve new files: the browser asks again each time.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

/// Who is signed in, and the CSRF token the page sends with each change.
#[derive(Serialize)]
struct Session {
    #[serde(flatten)]
    who: paas_api::auth::UserInfo,
    csrf: String,
}

impl Session {
    /// The session whose access token is `token`, if it is still good.
    async fn of(p: &Platform, token: &str, address: Option<IpAddr>) -> Result<Session, Failure> {
        let caller = p.caller(token, address).await?;
        Ok(Session {
            who: p.whoami(&caller).await,
            csrf: csrf_token(token),
        })
    }
}

/// The `Set-Cookie` value that gives the browser cookie `name` holding `token` for
/// `max_age` seconds (an empty token and 0 take it away).
fn cookie(name: &str, token: &str, max_age: u64) -> Result<HeaderValue, Failure> {
    HeaderValue::from_str(&format!(
        "{name}={token}; Path=/; Max-Age={max_age}; Secure; HttpOnly; SameSite=Strict"
    ))
    .map_err(Failure::internal)
}

/// The answer to a sign-in or a refresh: the session, and the cookies of its tokens.
async fn signed_in(
    p: &Platform,
    grant: &paas_api::auth::TokenGrant,
    address: Option<IpAddr>,
) -> Result<Response<ApiBody>, Failure> {
    let session = Session::of(p, &grant.access_token, address).await?;
    let mut r = body::json(200, &session);
    let h = r.headers_mut();
    h.append(
        header::SET_COOKIE,
        cookie(SESSION_COOKIE, &grant.access_token, grant.expires_in)?,
    );
    h.append(
        header::SET_COOKIE,
        cookie(
            REFRESH_COOKIE,
            &grant.refresh_token,
            IDLE_SIGN_OUT.as_secs(),
        )?,
    );
    Ok(r)
}

/// Refuses a sign-in or refresh another site's page asked for: a browser says where a
/// request came from (Fetch Metadata); a client that is not a browser says nothing.
fn from_the_console(headers: &HeaderMap, json: bool) -> Result<(), Failure> {
    let site = headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("none");
    if !json || !matches!(site, "same-origin" | "none") {
        return Err(Failure::new(
            403,
            "csrf",
            "a sign-in must come from the console's own page, as JSON",
            Some("sign in from the console at /"),
        ));
    }
    Ok(())
}

fn address(peer: Option<Extension<PeerAddr>>) -> Option<IpAddr> {
    peer.map(|Extension(PeerAddr(a))| a.ip())
}

async fn session(
    State(p): State<Arc<Platform>>,
    peer: Option<Extension<PeerAddr>>,
    headers: HeaderMap,
) -> Result<Response<ApiBody>, Failure> {
    let token = session_token(&headers).ok_or_else(signed_out)?;
    Ok(body::json(
        200,
        &Session::of(&p, token, address(peer)).await?,
    ))
}

async fn sign_in(
    State(p): State<Arc<Platform>>,
    peer: Option<Extension<PeerAddr>>,
    headers: HeaderMap,
    req: Body,
) -> Result<Response<ApiBody>, Failure> {
    // Login CSRF: another site's form could sign the browser in as someone else. A
    // form cannot send JSON's content type without a preflight the API does not
    // answer, and a browser says where a request came from (Fetch Metadata).
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    from_the_console(&headers, json)?;
    let address = address(peer);
    let login: paas_api::auth::LoginRequest = read_json(req).await?;
    let grant = p.login(&login.user, login.password, address).await?;
    signed_in(&p, &grant, address).await
}

/// Trades the refresh cookie (once) for a new pair of tokens, when the access token
/// has expired.
async fn refresh(
    State(p): State<Arc<Platform>>,
    peer: Option<Extension<PeerAddr>>,
    headers: HeaderMap,
) -> Result<Response<ApiBody>, Failure> {
    from_the_console(&headers, true)?;
    let token = cookie_value(&headers, REFRESH_COOKIE).ok_or_else(signed_out)?;
    let grant = p.refresh(token).await?;
    signed_in(&p, &grant, address(peer)).await
}

async fn sign_out(
    State(p): State<Arc<Platform>>,
    peer: Option<Extension<PeerAddr>>,
    headers: HeaderMap,
) -> Result<Response<ApiBody>, Failure> {
    if let Some(token) = session_token(&headers) {
        check_csrf(&Method::DELETE, &headers, token)?;
        if let Ok(caller) = p.caller(token, address(peer)).await {
            p.logout(&caller).await?;
        }
    } else if let Some(refresh) = cookie_value(&headers, REFRESH_COOKIE) {
        // Its access token has expired: the refresh token is revoked on its own.
        from_the_console(&headers, true)?;
        p.revoke(refresh).await?;
    }
    let mut r = body::empty(204);
    let h = r.headers_mut();
    h.append(header::SET_COOKIE, cookie(SESSION_COOKIE, "", 0)?);
    h.append(header::SET_COOKIE, cookie(REFRESH_COOKIE, "", 0)?);
    Ok(r)
}

fn signed_out() -> Failure {
    Failure::new(
        401,
        "unauthorised",
        "not signed in",
        Some("sign in with your paas user name and password"),
    )
}

/// The access token in the request's session cookie, if it has exactly one.
pub fn session_token(headers: &HeaderMap) -> Option<&str> {
    cookie_value(headers, SESSION_COOKIE)
}

/// The value of the request's cookie `wanted`, if it has exactly one (a second may
/// have been planted beside the real one: then neither is taken).
fn cookie_value<'a>(headers: &'a HeaderMap, wanted: &str) -> Option<&'a str> {
    let mut found = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(name, _)| *name == wanted)
        .map(|(_, value)| value);
    match (found.next(), found.next()) {
        (Some(token), None) if !token.is_empty() => Some(token),
        _ => None,
    }
}

/// The CSRF token of the session whose access token is `token`: only a page that was
/// told it (by `/console/session`, which only the console's own origin can read) has it.
pub fn csrf_token(token: &str) -> String {
    let digest = Sha256::new()
        .chain_update(b"paas console csrf\0")
        .chain_update(token.as_bytes())
        .finalize();
    hex::encode(&digest[..16])
}

/// A request made with the session cookie that changes anything must carry the
/// session's CSRF token; reads need none (they change nothing, and another site cannot
/// read their answers).
pub fn check_csrf(method: &Method, headers: &HeaderMap, token: &str) -> Result<(), Failure> {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(());
    }
    let sent = headers
        .get(CSRF_HEADER)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    if crate::secrets::constant_time_eq(sent, csrf_token(token).as_bytes()) {
        Ok(())
    } else {
        Err(Failure::new(
            403,
            "csrf",
            "this change was made with the console's cookie but without its CSRF token",
            Some("make changes from the console's own page, or use the API with a bearer token"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let h = with(&[("cookie", "a=1; __Host-paas_session=tok; b=2")]);
        assert_eq!(session_token(&h), Some("tok"));
        let empty = with(&[("cookie", "__Host-paas_session=")]);
        assert_eq!(session_token(&empty), None);
        // Without the prefix, a cookie another site could have set is not taken.
        assert_eq!(session_token(&with(&[("cookie", "paas_session=t")])), None);
        // Two (one planted beside the real one): neither is taken.
        let two = with(&[("cookie", "__Host-paas_session=a; __Host-paas_session=b")]);
        assert_eq!(session_token(&two), None);
        assert_eq!(session_token(&HeaderMap::new()), None);
    }

    #[test]
    fn a_change_needs_the_csrf_token_of_its_own_session() {
        let right = csrf_token("tok");
        assert_ne!(right, csrf_token("other"));
        assert!(check_csrf(&Method::GET, &HeaderMap::new(), "tok").is_ok());
        assert!(check_csrf(&Method::POST, &HeaderMap::new(), "tok").is_err());
        let other = csrf_token("other");
        let h = with(&[(CSRF_HEADER, &other)]);
        assert!(check_csrf(&Method::POST, &h, "tok").is_err());
        let h = with(&[(CSRF_HEADER, &right)]);
        assert!(check_csrf(&Method::DELETE, &h, "tok").is_ok());
    }
}
