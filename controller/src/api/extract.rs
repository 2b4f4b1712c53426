//! What handlers take from a request besides the platform: the app a path names, and
//! JSON bodies read within a limit.

use axum::body::Body;
use axum::extract::{FromRequestParts, Path};
use http::request::Parts;
use http_body_util::BodyExt;
use paas_api::AppName;
use serde::de::DeserializeOwned;

use super::failure::Failure;

/// The largest JSON request body.
pub const MAX_JSON_BYTES: usize = 1 << 20;

/// The app named by the `{name}` of the path, checked: a bad name is a 400.
pub struct AppPath(pub AppName);

impl<S: Send + Sync> FromRequestParts<S> for AppPath {
    type Rejection = Failure;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Failure> {
        let raw = NamePath::from_request_parts(parts, state).await?.0;
        AppName::parse(&raw)
            .map(AppPath)
            .map_err(|e| Failure::new(400, "invalid-name", e.to_string(), None))
    }
}

/// The `{name}` of the path as given (a domain, a buildpack), for its own check.
pub struct NamePath(pub String);

impl<S: Send + Sync> FromRequestParts<S> for NamePath {
    type Rejection = Failure;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Failure> {
        Path::<String>::from_request_parts(parts, state)
            .await
            .map(|Path(name)| NamePath(name))
            .map_err(|e| Failure::new(400, "invalid-name", e.body_text(), None))
    }
}

/// Reads a JSON request body of at most [`MAX_JSON_BYTES`].
pub async fn read_json<T: DeserializeOwned>(body: Body) -> Result<T, Failure> {
    read_json_up_to(body, MAX_JSON_BYTES).await
}

/// Reads a JSON request body of at most [`MAX_JSON_BYTES`]; an empty one is
/// `T::default()`.
pub async fn read_optional_json<T: DeserializeOwned + Default>(body: Body) -> Result<T, Failure> {
    let bytes = read_bytes(body, MAX_JSON_BYTES).await?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    parse(&bytes)
}

async fn read_bytes(body: Body, limit: usize) -> Result<bytes::Bytes, Failure> {
    Ok(http_body_util::Limited::new(body, limit)
        .collect()
        .await
        .map_err(|e| {
            Failure::new(
                400,
                "invalid-request",
                format!("reading the request body: {e}"),
                None,
            )
        })?
        .to_bytes())
}

fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Failure> {
    serde_json::from_slice(bytes).map_err(|e| {
        Failure::new(
            400,
            "invalid-request",
            format!("the request body is not valid: {e}"),
            None,
        )
    })
}

/// Reads a JSON request body of at most `limit` bytes.
pub async fn read_json_up_to<T: DeserializeOwned>(body: Body, limit: usize) -> Result<T, Failure> {
    parse(&read_bytes(body, limit).await?)
}
