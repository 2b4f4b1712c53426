//! The platform's own errors: what went wrong, in words for the person who meets it,
//! and of which kind. The API maps kinds to HTTP statuses (`api/failure.rs`); nothing
//! in the platform knows about HTTP.

use paas_api::{AppName, ErrorBody};

/// What kind of failure: what the caller can do about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request is malformed.
    Invalid,
    /// The caller did not say who they are, or their token is no longer good.
    Unauthenticated,
    /// The caller may see what it names but not do this with it.
    Forbidden,
    /// Too many tries in too short a time (failed logins).
    TooMany,
    /// What it names does not exist.
    NotFound,
    /// It clashes with what exists (a route another app holds, a name taken).
    Conflict,
    /// What it names existed but is no longer kept (a collected droplet).
    Gone,
    /// Well-formed, but refused as it stands (a disabled buildpack, a failed start).
    Refused,
    /// The platform failed; the caller did nothing wrong.
    Internal,
}

/// An error of the platform: its kind and the envelope users see (code, message, hint).
#[derive(Debug, Clone)]
pub struct Error {
    pub kind: ErrorKind,
    pub body: ErrorBody,
}

impl Error {
    pub fn new(
        kind: ErrorKind,
        code: &str,
        message: impl Into<String>,
        hint: Option<&str>,
    ) -> Self {
        Error {
            kind,
            body: ErrorBody {
                code: code.to_string(),
                message: message.into(),
                hint: hint.map(str::to_string),
            },
        }
    }

    /// A failure of the platform itself, logged here in full.
    pub fn internal(e: impl std::fmt::Display) -> Self {
        tracing::error!("internal error: {e}");
        Error::new(
            ErrorKind::Internal,
            "internal",
            format!("internal error: {e}"),
            Some("see paasd's log"),
        )
    }

    pub fn app_not_found(app: &AppName) -> Self {
        Error::new(
            ErrorKind::NotFound,
            "app-not-found",
            format!("app {app} does not exist"),
            Some("see `paas apps` for the apps there are"),
        )
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.body.message)
    }
}
