//! Routes, `HOST[/PATH]`, and the domains they live under.
//!
//! A route's host is a DNS name (`myapp.example.com`) or a wildcard whose first label is
//! `*` (`*.example.com`); its path is empty or a prefix such as `/api`. Both are
//! validated here once, so the daemon, the CLI and the router agree on what a route is.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The longest path prefix a route may have.
pub const MAX_ROUTE_PATH_LEN: usize = 128;

/// A validated route: lowercase host, and a path prefix without a trailing slash.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "RouteWire", into = "RouteWire")]
pub struct Route {
    host: String,
    path: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("route {route:?} is invalid: {reason}; write it as HOST.DOMAIN or HOST.DOMAIN/PATH, for example \"myapp.example.com/api\"")]
pub struct RouteError {
    route: String,
    reason: String,
}

impl Route {
    /// Parses `host[/path]`, e.g. `shop.example.com/api` or `*.example.com`.
    pub fn parse(raw: &str) -> Result<Self, RouteError> {
        let (host, path) = match raw.find('/') {
            Some(i) => (&raw[..i], &raw[i..]),
            None => (raw, ""),
        };
        Route::new(host, path).map_err(|reason| RouteError {
            route: raw.chars().take(300).collect(),
            reason,
        })
    }

    /// A route from its parts; `path` is `""` or starts with `/`.
    pub fn from_parts(host: &str, path: &str) -> Result<Self, RouteError> {
        Route::new(host, path).map_err(|reason| RouteError {
            route: format!("{host}{path}").chars().take(300).collect(),
            reason,
        })
    }

    fn new(host: &str, path: &str) -> Result<Self, String> {
        let host = host.to_ascii_lowercase();
        check_host(&host)?;
        let path = path.trim_end_matches('/');
        check_path(path)?;
        Ok(Route {
            host,
            path: path.to_string(),
        })
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    /// `""` for every path, else a prefix such as `/api`.
    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn is_wildcard(&self) -> bool {
        self.host.starts_with("*.")
    }

    /// Whether the host is `domain` itself or lies under it.
    pub fn is_under(&self, domain: &str) -> bool {
        self.host == domain
            || self
                .host
                .strip_suffix(domain)
                .is_some_and(|rest| rest.ends_with('.'))
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.host, self.path)
    }
}

/// The wire form of a route: `{"host": "...", "path": "..."}`.
#[derive(Serialize, Deserialize)]
struct RouteWire {
    host: String,
    #[serde(default)]
    path: String,
}

impl TryFrom<RouteWire> for Route {
    type Error = RouteError;
    fn try_from(w: RouteWire) -> Result<Self, RouteError> {
        Route::from_parts(&w.host, &w.path)
    }
}

impl From<Route> for RouteWire {
    fn from(r: Route) -> Self {
        RouteWire {
            host: r.host,
            path: r.path,
        }
    }
}

/// Checks a lowercase DNS name, optionally with `*` as its first label (RFC 1123 labels,
/// 253 octets in all).
pub fn check_host(host: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err("the host is empty".into());
    }
    if host.len() > 253 {
        return Err("the host is longer than 253 characters".into());
    }
    let rest = host.strip_prefix("*.").unwrap_or(host);
    if rest.is_empty() {
        return Err("a wildcard needs a domain after \"*.\"".into());
    }
    for label in rest.split('.') {
        if label.is_empty() {
            return Err("the host has an empty label (\"..\" or a dot at an end)".into());
        }
        if label.len() > 63 {
            return Err(format!("the label {label:?} is longer than 63 characters"));
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
        {
            return Err(if c == '*' {
                "only the first label may be the wildcard *".into()
            } else {
                format!("the host has {c:?}; use letters, digits, '-' and '.'")
            });
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!("the label {label:?} starts or ends with '-'"));
        }
    }
    Ok(())
}

/// Checks a route path: empty, or `/`-separated segments of URL-safe characters, with no
/// `.` or `..` segment (which would make two spellings of one route).
fn check_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Ok(());
    }
    if path.len() > MAX_ROUTE_PATH_LEN {
        return Err(format!(
            "the path is longer than {MAX_ROUTE_PATH_LEN} characters"
        ));
    }
    let Some(rest) = path.strip_prefix('/') else {
        return Err("the path must start with '/'".into());
    };
    for segment in rest.split('/') {
        if segment.is_empty() {
            return Err("the path has an empty segment (\"//\")".into());
        }
        if segment == "." || segment == ".." {
            return Err("the path has a \".\" or \"..\" segment".into());
        }
        if let Some(c) = segment
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || "-._~".contains(*c)))
        {
            return Err(format!(
                "the path has {c:?}; use letters, digits and - . _ ~"
            ));
        }
    }
    Ok(())
}

/// A domain routes can be made under, as `GET /v1/domains` lists it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DomainInfo {
    pub name: String,
    /// The platform's own domain (`paasd --domain`): always there, never deleted.
    pub default: bool,
    /// HTTPS is served for it with a certificate given by `create-domain --cert`.
    pub has_certificate: bool,
    /// The space it is private to; `None`: shared by every space.
    #[serde(default)]
    pub space: Option<String>,
}

/// `GET /v1/certificates`: what routers serve over HTTPS, private keys included, so a
/// `paas-router` on an edge host serves the same certificates as `paasd`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CertificateEntry {
    /// The domain it serves (and every name under it).
    pub domain: String,
    /// The certificate for names no other entry covers.
    pub default: bool,
    pub cert_pem: String,
    pub key_pem: String,
}

/// `POST /v1/domains`: a domain, and optionally the PEM certificate chain and key the
/// router serves for it over HTTPS (the certificate may be a wildcard, `*.DOMAIN`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreateDomain {
    pub name: String,
    /// The space it is private to; `None`: shared (admins only).
    #[serde(default)]
    pub space: Option<String>,
    #[serde(default)]
    pub cert_pem: Option<String>,
    #[serde(default)]
    pub key_pem: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hosts_paths_and_wildcards() {
        let r = Route::parse("Shop.Example.com/api/").unwrap();
        assert_eq!((r.host(), r.path()), ("shop.example.com", "/api"));
        assert_eq!(r.to_string(), "shop.example.com/api");
        let w = Route::parse("*.example.com").unwrap();
        assert!(w.is_wildcard());
        assert_eq!(w.path(), "");
        assert!(Route::parse("a.localhost/").unwrap().path().is_empty());
        assert!(r.is_under("example.com"));
        assert!(!r.is_under("ample.com"));
        assert!(Route::parse("example.com").unwrap().is_under("example.com"));
    }

    #[test]
    fn refuses_what_is_not_a_route() {
        for bad in [
            "", "/api", "a..b", ".a.b", "a.b.", "a.*.b", "*", "*.", "a_b.c", "-a.b", "a b.c",
            "a.b//x", "a.b/../x", "a.b/./x", "a.b/x?y", "a.b/x%2f",
        ] {
            let e = Route::parse(bad).unwrap_err().to_string();
            assert!(e.contains("HOST.DOMAIN"), "{bad:?}: {e}");
        }
        assert!(Route::parse(&format!("a.b/{}", "x".repeat(200))).is_err());
    }

    #[test]
    fn wire_form_is_host_and_path_and_is_checked() {
        let r = Route::parse("a.localhost/v1").unwrap();
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(json, r#"{"host":"a.localhost","path":"/v1"}"#);
        assert_eq!(serde_json::from_str::<Route>(&json).unwrap(), r);
        assert!(serde_json::from_str::<Route>(r#"{"host":"a..b"}"#).is_err());
        let bare: Route = serde_json::from_str(r#"{"host":"a.localhost"}"#).unwrap();
        assert_eq!(bare.path(), "");
    }
}
