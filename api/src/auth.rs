//! Users, spaces and roles on the wire: logging in, tokens, space members and quotas.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::AppName;

/// The space every app from before spaces, and every app the bootstrap admin token
/// makes without naming one, belongs to.
pub const DEFAULT_SPACE: &str = "default";

/// The user the admin token of paasd's data folder acts as.
pub const BOOTSTRAP_ADMIN: &str = "admin";

/// Checks a space or user name: the rules of app names (DNS labels), so names read the
/// same everywhere.
pub fn check_label(kind: &str, name: &str) -> Result<(), String> {
    AppName::parse(name).map(|_| ()).map_err(|e| {
        let text = e.to_string();
        let reason = text
            .split_once(": ")
            .map_or(text.as_str(), |(_, r)| r)
            .split("; ")
            .next()
            .unwrap_or_default()
            .to_string();
        format!(
            "{kind} name {:?} is invalid: {reason}; use 1-63 lowercase letters, digits and '-', starting with a letter",
            name.chars().take(80).collect::<String>()
        )
    })
}

/// What a member may do in a space (as Cloud Foundry's space roles).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Manages the space's members and quota; reads everything but secrets.
    Manager,
    /// Pushes and manages apps, routes, services and tasks; sees secrets.
    Developer,
    /// Reads everything but secrets; changes nothing.
    Auditor,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Manager, Role::Developer, Role::Auditor];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Manager => "manager",
            Role::Developer => "developer",
            Role::Auditor => "auditor",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("{s:?} is not a role; use manager, developer or auditor"))
    }
}

/// `POST /v1/login`: a password for a pair of tokens.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoginRequest {
    pub user: String,
    pub password: String,
}

/// `POST /v1/token`: a refresh token for a new pair.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RefreshRequest {
    pub refresh_token: String,
}

/// What logging in or refreshing gives: a short-lived access token for requests and a
/// refresh token (used once) for the next pair.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenGrant {
    pub user: String,
    pub access_token: String,
    pub refresh_token: String,
    /// Seconds the access token is good for.
    pub expires_in: u64,
}

/// `POST /v1/users`: a new user, with a password or (none) only tokens an admin makes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreateUser {
    pub name: String,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub admin: bool,
}

/// `PUT /v1/user/password`: the caller's new password.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChangePassword {
    pub old_password: String,
    pub new_password: String,
}

/// What the API says about a user.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct UserInfo {
    pub name: String,
    pub admin: bool,
    /// Roles by space.
    #[serde(default)]
    pub spaces: BTreeMap<String, BTreeSet<Role>>,
}

/// The most a space may use at once; `None` is no limit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quota {
    /// Memory of all instances of all apps together, in MiB.
    #[serde(default)]
    pub memory_mb: Option<u64>,
    #[serde(default)]
    pub instances: Option<u32>,
    #[serde(default)]
    pub routes: Option<u32>,
    #[serde(default)]
    pub services: Option<u32>,
    /// Tasks running at once.
    #[serde(default)]
    pub tasks: Option<u32>,
}

/// `POST /v1/spaces`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreateSpace {
    pub name: String,
    #[serde(default)]
    pub quota: Quota,
}

/// What the API says about a space.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SpaceInfo {
    pub name: String,
    pub quota: Quota,
    /// What its apps use now, in the quota's terms.
    pub usage: SpaceUsage,
}

/// What a space's apps use, as its quota counts it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpaceUsage {
    pub memory_mb: u64,
    pub instances: u32,
    pub routes: u32,
    pub services: u32,
    pub tasks: u32,
}

/// One member of a space: `GET /v1/spaces/{space}/users`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SpaceMember {
    pub user: String,
    pub roles: BTreeSet<Role>,
}

/// One change made through the API, or one login: who, from where, when, what, and
/// how it was answered. Never a request's body, so never a secret.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AuditEntry {
    pub timestamp_ms: u64,
    pub user: String,
    #[serde(default)]
    pub address: Option<String>,
    /// The space it was made in; `None` for what belongs to no space (users, logins,
    /// shared domains, buildpacks).
    #[serde(default)]
    pub space: Option<String>,
    /// `METHOD /path?query`, or `login` / `failed login`.
    pub action: String,
    /// The HTTP status it was answered with.
    pub status: u16,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_follow_the_app_name_rules_and_say_what_they_name() {
        assert!(check_label("space", "team-a").is_ok());
        let e = check_label("space", "Team A").unwrap_err();
        assert!(
            e.starts_with("space name \"Team A\" is invalid: it has an uppercase letter"),
            "{e}"
        );
        assert!(check_label("user", "").unwrap_err().contains("it is empty"));
    }

    #[test]
    fn roles_parse_from_their_names_only() {
        assert_eq!("auditor".parse::<Role>(), Ok(Role::Auditor));
        assert!("admin".parse::<Role>().is_err());
    }
}
