//! Routes and domains in the store.
//!
//! A route (`host` + `path`) exists on its own and is mapped to at most one app; an
//! unmapped route is kept (reserved) until it is deleted, as in Cloud Foundry. Domains
//! other than the platform's own are rows here, with the certificate HTTPS serves.
use paas_api::{AppName, Balance, Route};
use paas_kv::{Kv, Op};

use super::{decode, encode, guarded, keys, put, Store, StoreError, CAS_TRIES};

pub use paas_api::state::{StoredDomain, StoredRoute};

/// Changes to a route's settings; `None` leaves one as it is.
#[derive(Debug, Clone, Copy, Default)]
pub struct RouteSettings {
    pub balance: Option<Balance>,
    /// The largest request body in bytes; `Some(0)` removes the limit.
    pub max_body: Option<u64>,
}

/// Why a route could not be mapped.
#[derive(Debug, thiserror::Error)]
pub enum MapError {
    #[error("route {route} is mapped to app {owner}")]
    Taken { route: Route, owner: AppName },
    #[error("route {route} belongs to another space")]
    OtherSpace { route: Route },
    #[error(transparent)]
    Store(#[from] StoreError),
}

use paas_api::state::route_key;

impl Store {
    async fn route_row(&self, route: &Route) -> Result<Option<(StoredRoute, i64)>, StoreError> {
        match self.kv.get(&route_key(route)).await? {
            Some(kv) => Ok(Some((decode(&kv)?, kv.mod_revision))),
            None => Ok(None),
        }
    }

    /// Every route, mapped or not, ordered by host and path.
    pub async fn routes(&self) -> Result<Vec<StoredRoute>, StoreError> {
        Ok(self.routes_at().await?.0)
    }

    /// Every route, and the store's revision they were read at.
    pub async fn routes_at(&self) -> Result<(Vec<StoredRoute>, i64), StoreError> {
        let (kvs, revision) = self.kv.range(keys::ROUTES).await?;
        let mut rows = kvs
            .iter()
            .map(decode::<StoredRoute>)
            .collect::<Result<Vec<_>, _>>()?;
        rows.sort_by(|a, b| {
            (a.route.host(), a.route.path()).cmp(&(b.route.host(), b.route.path()))
        });
        Ok((rows, revision))
    }

    /// The routes mapped to `app`.
    pub async fn app_routes(&self, app: &AppName) -> Result<Vec<Route>, StoreError> {
        Ok(self
            .routes()
            .await?
            .into_iter()
            .filter(|r| r.app.as_ref() == Some(app))
            .map(|r| r.route)
            .collect())
    }

    /// Maps `route` to `app`, creating the route if it is new, and changes the settings
    /// `settings` gives. Returns false when it was mapped to `app` already; fails (and
    /// changes nothing) when another app holds it.
    pub async fn map_route(
        &self,
        route: &Route,
        app: &AppName,
        space: &str,
        settings: RouteSettings,
    ) -> Result<bool, MapError> {
        let key = route_key(route);
        for _ in 0..CAS_TRIES {
            let (mut row, revision) = match self.route_row(route).await? {
                Some(found) => found,
                None => (
                    StoredRoute {
                        route: route.clone(),
                        app: None,
                        balance: Balance::default(),
                        max_body: None,
                        space: Some(space.to_string()),
                        route_service: None,
                    },
                    0,
                ),
            };
            if row.space() != space {
                return Err(MapError::OtherSpace {
                    route: route.clone(),
                });
            }
            let already = match &row.app {
                Some(owner) if owner == app => true,
                Some(owner) => {
                    return Err(MapError::Taken {
                        route: route.clone(),
                        owner: owner.clone(),
                    })
                }
                // New, or kept from an earlier mapping: it is this app's now.
                None => false,
            };
            row.app = Some(app.clone());
            if let Some(b) = settings.balance {
                row.balance = b;
            }
            if let Some(n) = settings.max_body {
                // 0 removes the limit.
                row.max_body = (n > 0).then_some(n);
            }
            let txn = guarded(&key, revision, vec![put(key.clone(), encode(&row))]);
            if self.kv.txn(txn).await.map_err(StoreError::from)?.succeeded {
                return Ok(!already);
            }
        }
        Err(StoreError::Contended(format!("route {route}")).into())
    }

    /// Unmaps `route` from `app`, keeping the route. Returns false when it was not mapped
    /// to `app`.
    pub async fn unmap_route(&self, route: &Route, app: &AppName) -> Result<bool, StoreError> {
        let key = route_key(route);
        for _ in 0..CAS_TRIES {
            let Some((mut row, revision)) = self.route_row(route).await? else {
                return Ok(false);
            };
            if row.app.as_ref() != Some(app) {
                return Ok(false);
            }
            row.app = None;
            let txn = guarded(&key, revision, vec![put(key.clone(), encode(&row))]);
            if self.kv.txn(txn).await?.succeeded {
                return Ok(true);
            }
        }
        Err(StoreError::Contended(format!("route {route}")))
    }

    /// Changes route `route` with `change`, which may refuse (its error is returned, and
    /// nothing is written). `Ok(None)` when there is no such route.
    pub async fn update_route<E: From<StoreError>>(
        &self,
        route: &Route,
        mut change: impl FnMut(&mut StoredRoute) -> Result<(), E>,
    ) -> Result<Option<StoredRoute>, E> {
        let key = route_key(route);
        for _ in 0..CAS_TRIES {
            let Some((mut row, revision)) = self.route_row(route).await? else {
                return Ok(None);
            };
            change(&mut row)?;
            let txn = guarded(&key, revision, vec![put(key.clone(), encode(&row))]);
            if self.kv.txn(txn).await.map_err(StoreError::from)?.succeeded {
                return Ok(Some(row));
            }
        }
        Err(StoreError::Contended(format!("route {route}")).into())
    }

    /// Unmaps (or deletes, when `delete`) every route mapped to `app`.
    pub(super) async fn release_routes(
        &self,
        app: &AppName,
        delete: bool,
    ) -> Result<(), StoreError> {
        for route in self.app_routes(app).await? {
            if delete {
                self.delete_route_of(&route, Some(app)).await?;
            } else {
                self.unmap_route(&route, app).await?;
            }
        }
        Ok(())
    }

    /// Deletes `route`, mapped or not. Returns false when there was no such route.
    pub async fn delete_route(&self, route: &Route) -> Result<bool, StoreError> {
        self.delete_route_of(route, None).await
    }

    /// Deletes `route` if it is mapped to `owner` (any owner, or none, for `None`).
    async fn delete_route_of(
        &self,
        route: &Route,
        owner: Option<&AppName>,
    ) -> Result<bool, StoreError> {
        let key = route_key(route);
        for _ in 0..CAS_TRIES {
            let Some((row, revision)) = self.route_row(route).await? else {
                return Ok(false);
            };
            if owner.is_some() && row.app.as_ref() != owner {
                return Ok(false);
            }
            let txn = guarded(&key, revision, vec![Op::Delete { key: key.clone() }]);
            if self.kv.txn(txn).await?.succeeded {
                return Ok(true);
            }
        }
        Err(StoreError::Contended(format!("route {route}")))
    }

    /// The domains added with `create-domain`, by name.
    pub async fn domains(&self) -> Result<Vec<StoredDomain>, StoreError> {
        let (kvs, _) = self.kv.range(keys::DOMAINS).await?;
        kvs.iter().map(decode).collect()
    }

    /// Adds a domain, or replaces its certificate. Returns false when it existed.
    pub async fn put_domain(&self, d: &StoredDomain) -> Result<bool, StoreError> {
        let key = paas_api::state::domain_key(&d.name);
        let existed = self.kv.get(&key).await?.is_some();
        self.kv.put(&key, encode(d)).await?;
        Ok(!existed)
    }

    /// Makes `default` the certificate routers serve for names no domain covers, unless
    /// it is that already.
    pub async fn put_default_certificate(&self, default: &StoredDomain) -> Result<(), StoreError> {
        let key = paas_api::state::DEFAULT_CERTIFICATE;
        if let Some(kv) = self.kv.get(key).await? {
            if decode::<StoredDomain>(&kv).is_ok_and(|held| &held == default) {
                return Ok(());
            }
        }
        self.kv.put(key, encode(default)).await?;
        Ok(())
    }

    /// Deletes a domain. Returns false when there was no such domain.
    pub async fn delete_domain(&self, name: &str) -> Result<bool, StoreError> {
        let key = paas_api::state::domain_key(name);
        let Some(kv) = self.kv.get(&key).await? else {
            return Ok(false);
        };
        let txn = guarded(&key, kv.mod_revision, vec![Op::Delete { key: key.clone() }]);
        Ok(self.kv.txn(txn).await?.succeeded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use paas_api::auth::DEFAULT_SPACE;

    use crate::store::tests::store;

    async fn app(s: &Store, name: &str) -> AppName {
        let name = AppName::parse(name).unwrap();
        s.put_app(&name, &crate::store::tests::settings(1), "default")
            .await
            .unwrap();
        name
    }

    #[tokio::test]
    async fn a_route_is_mapped_to_one_app_and_survives_unmapping() {
        let (_d, s) = store().await;
        let (a, b) = (app(&s, "a").await, app(&s, "b").await);
        let r = Route::parse("shop.localhost/api").unwrap();
        assert!(s
            .map_route(&r, &a, DEFAULT_SPACE, RouteSettings::default())
            .await
            .unwrap());
        assert!(!s
            .map_route(&r, &a, DEFAULT_SPACE, RouteSettings::default())
            .await
            .unwrap());
        let e = s
            .map_route(&r, &b, DEFAULT_SPACE, RouteSettings::default())
            .await
            .unwrap_err();
        assert!(
            matches!(e, MapError::Taken { ref owner, .. } if owner == &a),
            "{e}"
        );
        assert!(s.unmap_route(&r, &a).await.unwrap());
        assert!(!s.unmap_route(&r, &a).await.unwrap());
        let rows = s.routes().await.unwrap();
        assert_eq!(
            rows,
            vec![StoredRoute {
                route: r.clone(),
                app: None,
                balance: Balance::RoundRobin,
                max_body: None,
                space: Some(DEFAULT_SPACE.into()),
                route_service: None,
            }]
        );
        // Kept, unmapped, it is still its space's: another space cannot take it.
        let e = s
            .map_route(&r, &b, "other", RouteSettings::default())
            .await
            .unwrap_err();
        assert!(matches!(e, MapError::OtherSpace { .. }), "{e}");
        let settings = RouteSettings {
            balance: Some(Balance::LeastConnections),
            max_body: Some(1024),
        };
        assert!(s.map_route(&r, &b, DEFAULT_SPACE, settings).await.unwrap());
        assert_eq!(
            s.routes().await.unwrap()[0].balance,
            Balance::LeastConnections
        );
        assert_eq!(s.routes().await.unwrap()[0].max_body, Some(1024));
        let clear = RouteSettings {
            max_body: Some(0),
            ..RouteSettings::default()
        };
        assert!(!s.map_route(&r, &b, DEFAULT_SPACE, clear).await.unwrap());
        assert_eq!(s.routes().await.unwrap()[0].max_body, None);
        assert_eq!(
            s.routes().await.unwrap()[0].balance,
            Balance::LeastConnections
        );
        assert!(s.delete_route(&r).await.unwrap());
        assert!(s.routes().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn deleting_an_app_unmaps_or_deletes_its_routes() {
        let (_d, s) = store().await;
        let (a, b) = (app(&s, "a").await, app(&s, "b").await);
        s.map_route(
            &Route::parse("a.localhost").unwrap(),
            &a,
            DEFAULT_SPACE,
            RouteSettings::default(),
        )
        .await
        .unwrap();
        s.map_route(
            &Route::parse("b.localhost").unwrap(),
            &b,
            DEFAULT_SPACE,
            RouteSettings::default(),
        )
        .await
        .unwrap();
        s.delete_app(&a, false).await.unwrap();
        s.delete_app(&b, true).await.unwrap();
        let rows = s.routes().await.unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].route.host(), "a.localhost");
        assert_eq!(rows[0].app, None);
    }

    #[tokio::test]
    async fn domains_are_added_replaced_and_deleted() {
        let (_d, s) = store().await;
        let d = StoredDomain {
            name: "example.com".into(),
            cert_pem: None,
            key_pem: None,
            space: None,
        };
        assert!(s.put_domain(&d).await.unwrap());
        assert!(!s
            .put_domain(&StoredDomain {
                cert_pem: Some("C".into()),
                key_pem: Some("K".into()),
                ..d.clone()
            })
            .await
            .unwrap());
        let all = s.domains().await.unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].cert_pem.as_deref(), Some("C"));
        assert!(s.delete_domain("example.com").await.unwrap());
        assert!(!s.delete_domain("example.com").await.unwrap());
    }
}
