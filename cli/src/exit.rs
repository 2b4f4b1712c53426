//! How the CLI ends: a message for the person, and an exit code for scripts.

use std::io::Write;

use paas_api::ErrorBody;

pub const GENERAL: i32 = 1;
pub const USAGE: i32 = 2;
pub const UPLOAD: i32 = 3;
pub const STAGING: i32 = 4;
pub const START: i32 = 5;

/// A failed command: what to print and the exit code.
#[derive(Debug)]
pub struct Failure {
    pub code: i32,
    pub message: String,
    pub hint: Option<String>,
}

impl Failure {
    pub fn new(code: i32, message: impl Into<String>) -> Self {
        Failure {
            code,
            message: message.into(),
            hint: None,
        }
    }

    pub fn general(message: impl Into<String>) -> Self {
        Self::new(GENERAL, message)
    }

    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(USAGE, message)
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// An error the API returned.
    pub fn api(code: i32, body: ErrorBody) -> Self {
        Failure {
            code,
            message: body.message,
            hint: body.hint,
        }
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::general(format!("{e:#}"))
    }
}

/// Prints the failure and exits with its code. The message and hint may be the API's,
/// quoting a tenant's input or output: on a terminal they are neutralised.
pub fn fail(f: Failure) -> ! {
    let screen = crate::terminal::Screen::stderr();
    let mut err = std::io::stderr().lock();
    use crate::style::{stderr, Colour};
    let _ = writeln!(
        err,
        "{} {}",
        stderr("error:", Colour::Red),
        screen.text(&f.message)
    );
    if let Some(h) = f.hint {
        let _ = writeln!(err, "{} {}", stderr("hint:", Colour::Cyan), screen.text(&h));
    }
    std::process::exit(f.code)
}
