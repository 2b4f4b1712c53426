//! Spaces: making and deleting them, their members and roles, their quotas and what
//! they use.

use paas_api::auth::{
    check_label, CreateSpace, Quota, Role, SpaceInfo, SpaceMember, SpaceUsage, DEFAULT_SPACE,
};

use super::access::{space_not_found, Caller};
use super::accounts::{invalid, now, user_not_found};
use super::{Error, ErrorKind, Platform};
use crate::store::SpaceDoc;

impl Platform {
    /// Makes the default space if there is none: apps from before spaces are in it.
    pub async fn ensure_default_space(&self) -> Result<(), Error> {
        if self
            .store
            .space(DEFAULT_SPACE)
            .await
            .map_err(Error::internal)?
            .is_none()
        {
            let doc = SpaceDoc {
                name: DEFAULT_SPACE.into(),
                guid: crate::store::new_guid(),
                quota: Quota::default(),
                created_at: now(),
            };
            self.store
                .create_space(&doc)
                .await
                .map_err(Error::internal)?;
        }
        Ok(())
    }

    pub async fn create_space(&self, req: CreateSpace) -> Result<SpaceInfo, Error> {
        check_label("space", &req.name).map_err(invalid)?;
        let doc = SpaceDoc {
            name: req.name.clone(),
            guid: crate::store::new_guid(),
            quota: req.quota,
            created_at: now(),
        };
        if !self
            .store
            .create_space(&doc)
            .await
            .map_err(Error::internal)?
        {
            return Err(Error::new(
                ErrorKind::Conflict,
                "space-exists",
                format!("space {} exists", req.name),
                None,
            ));
        }
        self.space_info(doc).await
    }

    /// Deletes an empty space; one with apps or services is refused, so nothing is
    /// lost by a slip.
    pub async fn delete_space(&self, name: &str) -> Result<(), Error> {
        if name == DEFAULT_SPACE {
            return Err(Error::new(
                ErrorKind::Refused,
                "default-space",
                "the default space cannot be deleted",
                Some("apps made with the admin token without a space go there"),
            ));
        }
        let apps = self.store.apps().await.map_err(Error::internal)?;
        let services = self.store.services().await.map_err(Error::internal)?;
        let domains = self.store.domains().await.map_err(Error::internal)?;
        let routes = self.store.routes().await.map_err(Error::internal)?;
        let (a, s, d, r) = (
            apps.iter().filter(|a| a.space == name).count(),
            services.iter().filter(|s| s.space == name).count(),
            domains
                .iter()
                .filter(|d| d.space.as_deref() == Some(name))
                .count(),
            routes.iter().filter(|r| r.space() == name).count(),
        );
        // A space made again of its name would inherit what is left.
        if a + s + d + r > 0 {
            return Err(Error::new(
                ErrorKind::Refused,
                "space-not-empty",
                format!(
                    "space {name} still has {a} apps, {s} services, {d} private domains and {r} routes"
                ),
                Some("delete them first (`paas apps`, `paas services`, `paas domains`, `paas routes` in that space)"),
            ));
        }
        let deleted = self
            .store
            .delete_space(name)
            .await
            .map_err(Error::internal)?;
        self.access_cache.forget_callers();
        if deleted {
            Ok(())
        } else {
            Err(space_not_found(name))
        }
    }

    /// The spaces the caller has a role in (every space for an admin).
    pub async fn spaces(&self, caller: &Caller) -> Result<Vec<SpaceInfo>, Error> {
        let mut out = Vec::new();
        for doc in self.store.spaces().await.map_err(Error::internal)? {
            if caller.sees(&doc.name) {
                out.push(self.space_info(doc).await?);
            }
        }
        Ok(out)
    }

    pub async fn space(&self, name: &str) -> Result<SpaceInfo, Error> {
        let doc = self.space_doc(name).await?;
        self.space_info(doc).await
    }

    /// Space `name` as stored, or the error that says it does not exist.
    pub(super) async fn space_doc(&self, name: &str) -> Result<SpaceDoc, Error> {
        self.store
            .space(name)
            .await
            .map_err(Error::internal)?
            .ok_or_else(|| space_not_found(name))
    }

    async fn space_info(&self, doc: SpaceDoc) -> Result<SpaceInfo, Error> {
        Ok(SpaceInfo {
            usage: self.space_usage(&doc.name).await?,
            name: doc.name,
            quota: doc.quota,
        })
    }

    /// Sets `space`'s quota as `caller`: an admin any, a manager of the space only
    /// lower limits (so a tenant cannot lift what bounds it).
    pub async fn set_quota(
        &self,
        caller: &Caller,
        space: &str,
        quota: Quota,
    ) -> Result<SpaceInfo, Error> {
        if !caller.admin {
            let now = self.space_doc(space).await?.quota;
            let lower = |new: Option<u64>, old: Option<u64>| match (new, old) {
                (None, Some(_)) => false,
                (Some(n), Some(o)) => n <= o,
                _ => true,
            };
            let wide = |v: Option<u32>| v.map(u64::from);
            let ok = lower(quota.memory_mb, now.memory_mb)
                && lower(wide(quota.instances), wide(now.instances))
                && lower(wide(quota.routes), wide(now.routes))
                && lower(wide(quota.services), wide(now.services))
                && lower(wide(quota.tasks), wide(now.tasks));
            if !ok {
                return Err(Error::new(
                    ErrorKind::Forbidden,
                    "forbidden",
                    format!(
                        "a manager of space {space} may lower its limits, not raise or remove them"
                    ),
                    Some("ask a platform admin to raise a limit"),
                ));
            }
        }
        let doc = self
            .store
            .update_space(space, |s| s.quota = quota.clone())
            .await
            .map_err(Error::internal)?
            .ok_or_else(|| space_not_found(space))?;
        self.space_info(doc).await
    }

    /// What a space's apps use: memory and instances as their settings ask (every
    /// process type of started apps), routes mapped to them, services, running tasks.
    pub async fn space_usage(&self, space: &str) -> Result<SpaceUsage, Error> {
        let apps = self.store.apps().await.map_err(Error::internal)?;
        let routes = self.store.routes().await.map_err(Error::internal)?;
        let services = self.store.services().await.map_err(Error::internal)?;
        let mut usage = SpaceUsage::default();
        for app in apps.iter().filter(|a| a.space == space) {
            if !app.stopped {
                let (m, i) = super::quota::demand(&app.settings, app.release.as_ref());
                usage.memory_mb += m;
                usage.instances += i;
            }
            usage.routes += routes
                .iter()
                .filter(|r| r.app.as_ref() == Some(&app.name))
                .count() as u32;
            let tasks = self.store.tasks(&app.name).await.map_err(Error::internal)?;
            for task in tasks.iter().filter(|t| t.state == "running") {
                usage.tasks += 1;
                usage.memory_mb += super::quota::task_memory(task.memory);
            }
        }
        usage.services = services.iter().filter(|s| s.space == space).count() as u32;
        Ok(usage)
    }

    /// The members of a space and their roles there.
    pub async fn space_members(&self, space: &str) -> Result<Vec<SpaceMember>, Error> {
        let users = self.store.users().await.map_err(Error::internal)?;
        Ok(users
            .into_iter()
            .filter_map(|u| {
                u.roles
                    .get(space)
                    .filter(|r| !r.is_empty())
                    .map(|r| SpaceMember {
                        user: u.name.clone(),
                        roles: r.clone(),
                    })
            })
            .collect())
    }

    /// Gives (`on`) or takes away a role of `user` in `space`.
    pub async fn set_role(
        &self,
        space: &str,
        user: &str,
        role: Role,
        on: bool,
    ) -> Result<(), Error> {
        self.space_doc(space).await?;
        let changed = self
            .store
            .update_user(user, |u| {
                let roles = u.roles.entry(space.to_string()).or_default();
                if on {
                    roles.insert(role);
                } else {
                    roles.remove(&role);
                }
                if roles.is_empty() {
                    u.roles.remove(space);
                }
            })
            .await
            .map_err(Error::internal)?;
        // After the write: a request read meanwhile does not keep the old roles.
        self.access_cache.forget_callers();
        changed.ok_or_else(|| user_not_found(user))
    }
}
