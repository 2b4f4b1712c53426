//! What `push` (and the other commands that roll an app out) tell the person running
//! them: lines of text, or with `--json` one JSON event per line for scripts.
//!
//! The text holds the staging log, which a tenant's buildpack or build scripts write: on
//! a terminal it is neutralised ([`crate::terminal`]); piped, and as JSON, it is not.

use std::io::Write;

use paas_api::DeployEvent;
use serde::Serialize;

use crate::terminal::Screen;

/// The events of a push before the deployment's own ([`DeployEvent`]s, printed as the
/// API sends them).
#[derive(Debug, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum PushEvent<'a> {
    Pushing {
        app: &'a str,
        path: String,
    },
    Uploading {
        files: u64,
        files_sent: u64,
        bytes: u64,
        bytes_sent: u64,
        package_bytes: u64,
    },
    RouteMapped {
        route: String,
    },
    RouteUnmapped {
        route: String,
    },
}

#[derive(Debug, Clone, Copy)]
pub struct Reporter {
    pub json: bool,
}

impl Reporter {
    /// Prints `event` as JSON, or `text` for a person.
    pub fn say(&self, event: &PushEvent<'_>, text: impl FnOnce() -> String) {
        if self.json {
            self.line(&serde_json::to_string(event).unwrap_or_default());
        } else {
            self.text(&text());
        }
    }

    /// Prints a deployment event as JSON, or `text` (if any) for a person.
    pub fn deploy(&self, event: &DeployEvent, text: Option<String>) {
        if self.json {
            self.line(&serde_json::to_string(event).unwrap_or_default());
        } else if let Some(t) = text {
            self.text(&t);
        }
    }

    /// Text for a person, which may quote a tenant: neutralised on a terminal.
    fn text(&self, s: &str) {
        self.line(&Screen::stdout().text(s));
    }

    fn line(&self, s: &str) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{s}").and_then(|()| out.flush());
    }
}
