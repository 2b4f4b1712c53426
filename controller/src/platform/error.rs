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
    /// The platform's disk (its data folder) is full: nothing was kept, and the same
    /// request works once space is freed.
    InsufficientStorage,
    /// The platform failed; the caller did nothing wrong.
    Internal,
}

/// An error of the platform: its kind and the envelope users see (code, message, hint).
#[derive(Debug, Clone)]
pub struct Error {
    pub kind: ErrorKind,
    pub body: ErrorBody,
}

/// A store failure met on the way is an internal error (or a full disk).
impl From<crate::store::StoreError> for Error {
    fn from(e: crate::store::StoreError) -> Self {
        Error::internal(e)
    }
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

    /// A failure of the platform itself, logged here in full. A full disk is told
    /// apart: the caller can do something about it.
    pub fn internal(e: impl std::fmt::Display) -> Self {
        let text = e.to_string();
        if is_disk_full(&text) {
            return Error::disk_full(&text);
        }
        tracing::error!("internal error: {e}");
        Error::new(
            ErrorKind::Internal,
            "internal",
            format!("internal error: {e}"),
            Some("see paasd's log"),
        )
    }

    /// The data folder's disk is full (or its quota used up).
    pub fn disk_full(what: &str) -> Self {
        tracing::error!("the data folder's disk is full: {what}");
        Error::new(
            ErrorKind::InsufficientStorage,
            "insufficient-storage",
            format!("the platform's disk is full, so nothing was kept: {what}"),
            Some("free space on the disk of paasd's data folder (--data-dir), then try again"),
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

/// Whether an error's text is the system's or SQLite's word for a full disk (ENOSPC,
/// EDQUOT, SQLITE_FULL). Errors cross several layers as text (blob writes, archive
/// checks, store transactions), so they are told apart where they all end up.
pub fn is_disk_full(text: &str) -> bool {
    const WORDS: [&str; 4] = [
        "No space left on device",
        "Disk quota exceeded",
        "database or disk is full",
        "(os error 28)",
    ];
    WORDS.iter().any(|w| text.contains(w))
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.body.message)
    }
}
