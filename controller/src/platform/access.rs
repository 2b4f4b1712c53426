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

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

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

/// How long what a request found out about its token's user and about an app's space
/// is taken as true by the next ones. On this controller a change (logout, refresh, a
/// role, a deleted user or app) forgets it at once; another controller of a cluster
/// may go on accepting a revoked token, or a role taken away, for this long.
pub const CACHE_TTL: Duration = Duration::from_secs(2);
/// Entries kept at most; beyond, the cache starts afresh.
const CACHE_MAX: usize = 10_000;

/// Callers by token hash, and apps' spaces, as recently read: without it every request
/// reads the store three times more (`benches/auth.sh`).
#[derive(Default)]
pub struct AccessCache {
    /// Token hash → when read, the caller (address left out), the token's expiry.
    callers: Mutex<HashMap<String, (Instant, Caller, i64)>>,
    spaces: Mutex<HashMap<AppName, (Instant, String)>>,
}

impl AccessCache {
    pub fn caller(&self, hash: &str, now_secs: i64) -> Option<Caller> {
        let callers = self.callers.lock().unwrap_or_else(|p| p.into_inner());
        callers
            .get(hash)
            .filter(|(at, _, expires)| at.elapsed() < CACHE_TTL && *expires > now_secs)
            .map(|(_, c, _)| c.clone())
    }

    pub fn keep_caller(&self, hash: &str, caller: &Caller, expires: i64) {
        let mut callers = self.callers.lock().unwrap_or_else(|p| p.into_inner());
        if callers.len() >= CACHE_MAX {
            callers.clear();
        }
        callers.insert(hash.to_string(), (Instant::now(), caller.clone(), expires));
    }

    /// After a change of tokens, users or roles.
    pub fn forget_callers(&self) {
        self.callers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    fn space(&self, app: &AppName) -> Option<String> {
        let spaces = self.spaces.lock().unwrap_or_else(|p| p.into_inner());
        spaces
            .get(app)
            .filter(|(at, _)| at.elapsed() < CACHE_TTL)
            .map(|(_, s)| s.clone())
    }

    fn keep_space(&self, app: &AppName, space: &str) {
        let mut spaces = self.spaces.lock().unwrap_or_else(|p| p.into_inner());
        if spaces.len() >= CACHE_MAX {
            spaces.clear();
        }
        spaces.insert(app.clone(), (Instant::now(), space.to_string()));
    }

    /// After the app was deleted: a new app of its name may be in another space.
    pub fn forget_app(&self, app: &AppName) {
        self.spaces
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(app);
    }
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
    /// route's host), with the space it acts in, where known (for the audit trail).
    pub async fn authorize(
        &self,
        caller: &Caller,
        access: Access,
        name: Option<&str>,
        space: Option<&str>,
    ) -> Result<Option<String>, Error> {
        let name = || name.unwrap_or_default().to_string();
        match access {
            // The space a query names is the caller's word only: recorded only where
            // they have a role (else their entry would land in another space's trail).
            Access::Public | Access::SignedIn => {
                Ok(space.filter(|s| caller.sees(s)).map(str::to_string))
            }
            Access::Admin if caller.admin => Ok(space.map(str::to_string)),
            Access::Admin => Err(Error::new(
                ErrorKind::Forbidden,
                "forbidden",
                "only platform admins may do this",
                Some("ask an admin of this platform (`paas users` lists them to admins)"),
            )),
            Access::App(act) => {
                // A name that is not an app's name is left to the handler (a 400).
                let Ok(app) = AppName::parse(&name()) else {
                    return Ok(None);
                };
                let space = self.app_space(&app).await?;
                match space {
                    Some(space) => caller
                        .check(act, &space, || Error::app_not_found(&app))
                        .map(|()| Some(space)),
                    None => Err(Error::app_not_found(&app)),
                }
            }
            Access::AppPut => {
                let Ok(app) = AppName::parse(&name()) else {
                    return Ok(None);
                };
                let space = match self.app_space(&app).await? {
                    Some(space) => {
                        caller.check(Act::Develop, &space, || name_taken("app", app.as_str()))?;
                        space
                    }
                    None => {
                        let space = space.unwrap_or(DEFAULT_SPACE).to_string();
                        self.space_exists(caller, &space).await?;
                        caller.check(Act::Develop, &space, || space_not_found(&space))?;
                        space
                    }
                };
                Ok(Some(space))
            }
            Access::Service(act) => {
                let name = name();
                let doc = self.store.service(&name).await.map_err(Error::internal)?;
                match doc {
                    Some(doc) => caller
                        .check(act, &doc.space, || service_not_found(&name))
                        .map(|()| Some(doc.space)),
                    None => Err(service_not_found(&name)),
                }
            }
            Access::Space(act) => {
                let space = space.unwrap_or_default();
                self.space_exists(caller, space).await?;
                caller
                    .check(act, space, || space_not_found(space))
                    .map(|()| Some(space.to_string()))
            }
        }
    }

    /// Records a change `caller` made (`action`, answered with `status`) in the audit
    /// trail and, for a change of an app that went through, in its events.
    pub async fn audit(
        &self,
        caller: &Caller,
        space: Option<String>,
        action: String,
        app: Option<&AppName>,
        status: u16,
    ) {
        let address = caller.address.map(|a| a.to_string());
        let entry = paas_api::auth::AuditEntry {
            timestamp_ms: crate::logs::now_ms(),
            user: caller.user.clone(),
            address: address.clone(),
            space,
            action: action.clone(),
            status,
        };
        if let Err(e) = self.store.add_audit(&entry).await {
            tracing::warn!("recording in the audit trail: {e}");
        }
        if let Some(app) = app.filter(|_| status < 400) {
            let from = address.map(|a| format!(" from {a}")).unwrap_or_default();
            let what = format!("{}{from}: {action} ({status})", caller.user);
            self.record_event(app, "request", None, None, &what).await;
        }
    }

    /// The audit trail as `caller` may read it (of `space` only, if given): a space's
    /// entries to its members, everything to admins.
    pub async fn audit_trail(
        &self,
        caller: &Caller,
        space: Option<&str>,
    ) -> Result<Vec<paas_api::auth::AuditEntry>, Error> {
        let mut entries = self.store.audit().await.map_err(Error::internal)?;
        entries.retain(|e| {
            let visible = match &e.space {
                Some(s) => caller.sees(s),
                None => caller.admin,
            };
            visible && space.is_none_or(|w| e.space.as_deref() == Some(w))
        });
        Ok(entries)
    }

    /// The GUID of app `app` as it is now, if it exists.
    pub async fn app_guid(&self, app: &AppName) -> Option<String> {
        self.store.app(app).await.ok().flatten().map(|a| a.guid)
    }

    /// Whether `caller` may still make a request under `access` about `app` (the one
    /// of GUID `guid` when the request began), read from the store, not the cache. A
    /// store that cannot be read says yes: a stream is not cut for a passing fault.
    pub async fn still_allowed(
        &self,
        caller: &Caller,
        access: Access,
        app: Option<&AppName>,
        guid: Option<&str>,
        space: Option<&str>,
    ) -> bool {
        let Some(hash) = caller.token_hash.clone() else {
            return true;
        };
        let fresh = match self.caller_by_hash(hash, caller.address).await {
            Ok(c) => c,
            Err(e) => return e.kind == ErrorKind::Internal,
        };
        if let (Some(app), Some(guid)) = (app, guid) {
            match self.store.app(app).await {
                Ok(Some(a)) if a.guid == guid => {}
                Ok(_) => return false,
                Err(_) => return true,
            }
        }
        match self
            .authorize(&fresh, access, app.map(AppName::as_str), space)
            .await
        {
            Ok(_) => true,
            Err(e) => e.kind == ErrorKind::Internal,
        }
    }

    /// Forgets the space of a deleted app.
    pub fn forget_app_space(&self, app: &AppName) {
        self.access_cache.forget_app(app);
    }

    /// The space app `app` is in; `None` if there is no such app.
    pub async fn app_space(&self, app: &AppName) -> Result<Option<String>, Error> {
        if let Some(space) = self.access_cache.space(app) {
            return Ok(Some(space));
        }
        let space = self
            .store
            .app(app)
            .await
            .map_err(Error::internal)?
            .map(|a| a.space);
        if let Some(space) = &space {
            self.access_cache.keep_space(app, space);
        }
        Ok(space)
    }

    /// Not found unless `space` exists and the caller sees it.
    pub(super) async fn space_exists(&self, caller: &Caller, space: &str) -> Result<(), Error> {
        self.space_doc(space).await?;
        if caller.sees(space) {
            Ok(())
        } else {
            Err(space_not_found(space))
        }
    }
}
