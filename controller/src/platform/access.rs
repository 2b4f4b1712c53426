//! Who may do what: the caller of a request, and the rule each API route is under.
//!
//! Everything a tenant makes (apps with their routes, tasks, env, logs and droplets;
//! services) belongs to one space; a caller acts in a space by the roles they hold in
//! it. A caller with no role in a space is told that what they name there does not
//! exist (404, the same answer as for a name nobody uses), so names in other spaces
//! are not confirmed; a caller who may see it but not do what they ask is refused
//! (403). Names are global (an app's name is its host name under the platform's
//! domain), so making an app or a service of a name another space uses says only that
//! the name is taken.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use paas_api::auth::{Role, BOOTSTRAP_ADMIN, DEFAULT_SPACE};
use paas_api::AppName;

use super::{Error, ErrorKind, Platform};

/// Who sends a request, as their token says.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user: String,
    /// A platform admin: every space, users, domains, buildpacks and cells.
    pub admin: bool,
    pub roles: BTreeMap<String, BTreeSet<Role>>,
    /// Where the request came from, for the audit trail and login limits.
    pub address: Option<IpAddr>,
    /// The hash of the access token used (none for the admin token), so that logging
    /// out ends that login only.
    pub token_hash: Option<String>,
}

/// What a request does with what it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    /// Reads, secrets left out: every role.
    Read,
    /// Reads secrets (env, credentials, droplets) or changes: developers.
    Develop,
    /// Changes members and quota: managers.
    Manage,
}

/// The rule an API route is under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No token needed: logging in and refreshing tokens.
    Public,
    /// Any signed-in caller; what it lists is what the caller may see.
    SignedIn,
    /// The app of the path's `{name}`, in its space.
    App(Act),
    /// `PUT /v1/apps/{name}`: changing that app, or making it in the space the query
    /// names (`space=`, else `default`).
    AppPut,
    /// The service of the path's `{name}`, in its space.
    Service(Act),
    /// The space of the path's `{space}`.
    Space(Act),
    /// Platform admins only.
    Admin,
}

impl Caller {
    /// The bootstrap admin: the token in paasd's data folder.
    pub fn bootstrap(address: Option<IpAddr>) -> Self {
        Caller {
            user: BOOTSTRAP_ADMIN.to_string(),
            admin: true,
            roles: BTreeMap::new(),
            address,
            token_hash: None,
        }
    }

    /// Nobody yet: the caller of a route that needs no token (logging in).
    pub fn anonymous(address: Option<IpAddr>) -> Self {
        Caller {
            user: String::new(),
            admin: false,
            roles: BTreeMap::new(),
            address,
            token_hash: None,
        }
    }

    fn has(&self, space: &str, allowed: &[Role]) -> bool {
        self.admin
            || self
                .roles
                .get(space)
                .is_some_and(|r| r.iter().any(|role| allowed.contains(role)))
    }

    /// Any role in `space`: its apps and services are known to this caller.
    pub fn sees(&self, space: &str) -> bool {
        self.has(space, &Role::ALL)
    }

    pub fn may(&self, act: Act, space: &str) -> bool {
        match act {
            Act::Read => self.sees(space),
            Act::Develop => self.has(space, &[Role::Developer]),
            Act::Manage => self.has(space, &[Role::Manager]),
        }
    }

    /// `act` in `space`, or the error that says no: not found for a caller who does not
    /// see the space (`unseen` says what they asked for), refused for one who does.
    pub fn check(
        &self,
        act: Act,
        space: &str,
        unseen: impl FnOnce() -> Error,
    ) -> Result<(), Error> {
        if self.may(act, space) {
            return Ok(());
        }
        if !self.sees(space) {
            return Err(unseen());
        }
        Err(forbidden(act, space))
    }
}

pub fn forbidden(act: Act, space: &str) -> Error {
    let (what, role) = match act {
        Act::Read => ("read", "any role"),
        Act::Develop => ("change it or read its secrets", "the developer role"),
        Act::Manage => ("manage its members and quota", "the manager role"),
    };
    Error::new(
        ErrorKind::Forbidden,
        "forbidden",
        format!("you may not {what} in space {space}"),
        Some(&format!(
            "that takes {role} in space {space}; ask one of its managers (`paas space-users {space}`)"
        )),
    )
}

pub fn space_not_found(space: &str) -> Error {
    Error::new(
        ErrorKind::NotFound,
        "space-not-found",
        format!("space {space} does not exist"),
        Some("see `paas spaces` for the spaces you are in"),
    )
}

pub fn service_not_found(name: &str) -> Error {
    Error::new(
        ErrorKind::NotFound,
        "service-not-found",
        format!("service {name} does not exist"),
        Some("see `paas services`"),
    )
}

fn name_taken(kind: &str, name: &str) -> Error {
    Error::new(
        ErrorKind::Conflict,
        "name-taken",
        format!("the {kind} name {name} is taken"),
        Some(&format!(
            "{kind} names are shared by every space on this platform: choose another"
        )),
    )
}

impl Platform {
    /// Whether `caller` may make the request a route under `access` answers: `name` is
    /// the path's `{name}`, `space` its `{space}` or else the space the query names.
    /// `Ok` lets it through to its handler, which may check more (what a list shows, a
    /// route's host).
    pub async fn authorize(
        &self,
        caller: &Caller,
        access: Access,
        name: Option<&str>,
        space: Option<&str>,
    ) -> Result<(), Error> {
        let name = || name.unwrap_or_default().to_string();
        match access {
            Access::Public | Access::SignedIn => Ok(()),
            Access::Admin if caller.admin => Ok(()),
            Access::Admin => Err(Error::new(
                ErrorKind::Forbidden,
                "forbidden",
                "only platform admins may do this",
                Some("ask an admin of this platform (`paas users` lists them to admins)"),
            )),
            Access::App(act) => {
                // A name that is not an app's name is left to the handler (a 400).
                let Ok(app) = AppName::parse(&name()) else {
                    return Ok(());
                };
                let space = self.app_space(&app).await?;
                match space {
                    Some(space) => caller.check(act, &space, || Error::app_not_found(&app)),
                    None => Err(Error::app_not_found(&app)),
                }
            }
            Access::AppPut => {
                let Ok(app) = AppName::parse(&name()) else {
                    return Ok(());
                };
                match self.app_space(&app).await? {
                    Some(space) => {
                        caller.check(Act::Develop, &space, || name_taken("app", app.as_str()))
                    }
                    None => {
                        let space = space.unwrap_or(DEFAULT_SPACE).to_string();
                        self.space_exists(caller, &space).await?;
                        caller.check(Act::Develop, &space, || space_not_found(&space))
                    }
                }
            }
            Access::Service(act) => {
                let name = name();
                let doc = self.store.service(&name).await.map_err(Error::internal)?;
                match doc {
                    Some(doc) => caller.check(act, &doc.space, || service_not_found(&name)),
                    None => Err(service_not_found(&name)),
                }
            }
            Access::Space(act) => {
                let space = space.unwrap_or_default();
                self.space_exists(caller, space).await?;
                caller.check(act, space, || space_not_found(space))
            }
        }
    }

    /// The space app `app` is in; `None` if there is no such app.
    pub async fn app_space(&self, app: &AppName) -> Result<Option<String>, Error> {
        Ok(self
            .store
            .app(app)
            .await
            .map_err(Error::internal)?
            .map(|a| a.space))
    }

    /// Not found unless `space` exists and the caller sees it.
    async fn space_exists(&self, caller: &Caller, space: &str) -> Result<(), Error> {
        let exists = self
            .store
            .space(space)
            .await
            .map_err(Error::internal)?
            .is_some();
        if exists && caller.sees(space) {
            Ok(())
        } else {
            Err(space_not_found(space))
        }
    }
}
