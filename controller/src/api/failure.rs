//! An error as the API answers it: an HTTP status and the error envelope.

use paas_api::ErrorBody;

use crate::platform::{Error, ErrorKind};

#[derive(Debug, Clone)]
pub struct Failure {
    pub status: u16,
    pub body: ErrorBody,
}

impl Failure {
    pub fn new(status: u16, code: &str, message: impl Into<String>, hint: Option<&str>) -> Self {
        Failure {
            status,
            body: ErrorBody {
                code: code.to_string(),
                message: message.into(),
                hint: hint.map(str::to_string),
            },
        }
    }

    pub fn internal(e: impl std::fmt::Display) -> Self {
        Error::internal(e).into()
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        let status = match e.kind {
            ErrorKind::Invalid => 400,
            ErrorKind::Unauthenticated => 401,
            ErrorKind::Forbidden => 403,
            ErrorKind::TooMany => 429,
            ErrorKind::NotFound => 404,
            ErrorKind::Conflict => 409,
            ErrorKind::Gone => 410,
            ErrorKind::Refused => 422,
            ErrorKind::InsufficientStorage => 507,
            ErrorKind::Internal => 500,
        };
        Failure {
            status,
            body: e.body,
        }
    }
}

impl axum::response::IntoResponse for Failure {
    fn into_response(self) -> axum::response::Response {
        super::body::failure(self).into_response()
    }
}
