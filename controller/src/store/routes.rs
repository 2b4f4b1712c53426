//! Routes and domains in the store.
//!
//! A route (`host` + `path`) exists on its own and is mapped to at most one app; an
//! unmapped route is kept (reserved) until it is deleted, as in Cloud Foundry. Domains
//! other than the platform's own are rows here, with the certificate HTTPS serves.

use paas_api::{AppName, Balance, Route};
use rusqlite::{params, OptionalExtension};

use super::{now, Store, StoreError};

/// The schema version once routes are stored; before it every app had the one route
/// `NAME.DOMAIN`, which [`Store::migrate_routes`] writes down.
const ROUTES_SCHEMA_VERSION: i64 = 1;

/// A stored route and the app it is mapped to, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteRow {
    pub route: Route,
    pub app: Option<AppName>,
    pub balance: Balance,
    /// The largest request body, in bytes; `None` for no limit.
    pub max_body: Option<u64>,
}

/// Changes to a route's settings; `None` leaves one as it is.
#[derive(Debug, Clone, Copy, Default)]
pub struct RouteSettings {
    pub balance: Option<Balance>,
    /// The largest request body in bytes; `Some(0)` removes the limit.
    pub max_body: Option<u64>,
}

/// A domain added with `create-domain`.
#[derive(Debug, Clone)]
pub struct Domain {
    pub name: String,
    pub cert_pem: Option<String>,
    pub key_pem: Option<String>,
}

/// Why a route could not be mapped.
#[derive(Debug, thiserror::Error)]
pub enum MapError {
    #[error("route {route} is mapped to app {owner}")]
    Taken { route: Route, owner: AppName },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<rusqlite::Error> for MapError {
    fn from(e: rusqlite::Error) -> Self {
        MapError::Store(e.into())
    }
}

impl Store {
    /// Brings a database from before routes were stored up to date: every existing app
    /// gets the route it answered at, `NAME.DOMAIN`. Runs once; later calls do nothing.
    pub fn migrate_routes(&self, domain: &str) -> Result<(), StoreError> {
        let mut db = self.db();
        let version: i64 = db.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version >= ROUTES_SCHEMA_VERSION {
            return Ok(());
        }
        let tx = db.transaction()?;
        tx.execute(
            "INSERT OR IGNORE INTO routes (host, path, app)
             SELECT name || '.' || ?1, '', name FROM apps",
            params![domain],
        )?;
        tx.pragma_update(None, "user_version", ROUTES_SCHEMA_VERSION)?;
        tx.commit()?;
        Ok(())
    }

    /// Every route, mapped or not, ordered by host and path.
    pub fn routes(&self) -> Result<Vec<RouteRow>, StoreError> {
        let db = self.db();
        let mut stmt = db
            .prepare("SELECT host, path, app, balance, max_body FROM routes ORDER BY host, path")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Option<String>>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, Option<i64>>(4)?,
            ))
        })?;
        rows.map(|row| {
            let (host, path, app, balance, max_body) = row?;
            let corrupt = |detail: String| StoreError::Corrupt {
                app: app.clone().unwrap_or_default(),
                detail,
            };
            let route = Route::from_parts(&host, &path).map_err(|e| corrupt(e.to_string()))?;
            let app = app
                .as_deref()
                .map(AppName::parse)
                .transpose()
                .map_err(|e| corrupt(e.to_string()))?;
            let balance = Balance::parse(&balance).map_err(corrupt)?;
            Ok(RouteRow {
                route,
                app,
                balance,
                max_body: max_body.and_then(|n| u64::try_from(n).ok()),
            })
        })
        .collect()
    }

    /// The routes mapped to `app`.
    pub fn app_routes(&self, app: &AppName) -> Result<Vec<Route>, StoreError> {
        let db = self.db();
        let mut stmt =
            db.prepare("SELECT host, path FROM routes WHERE app = ?1 ORDER BY host, path")?;
        let rows = stmt.query_map(params![app.as_str()], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })?;
        rows.map(|row| {
            let (host, path) = row?;
            Route::from_parts(&host, &path).map_err(|e| StoreError::Corrupt {
                app: app.to_string(),
                detail: e.to_string(),
            })
        })
        .collect()
    }

    /// Maps `route` to `app`, creating the route if it is new, and changes the settings
    /// `settings` gives. Returns false when it was mapped to `app` already; fails (and
    /// changes nothing) when another app holds it.
    pub fn map_route(
        &self,
        route: &Route,
        app: &AppName,
        settings: RouteSettings,
    ) -> Result<bool, MapError> {
        let mut db = self.db();
        let tx = db.transaction()?;
        let owner: Option<Option<String>> = tx
            .query_row(
                "SELECT app FROM routes WHERE host = ?1 AND path = ?2",
                params![route.host(), route.path()],
                |r| r.get(0),
            )
            .optional()?;
        let already = match owner {
            Some(Some(o)) if o == app.as_str() => true,
            Some(Some(o)) => {
                let owner = AppName::parse(&o).map_err(|e| StoreError::Corrupt {
                    app: o.clone(),
                    detail: e.to_string(),
                })?;
                return Err(MapError::Taken {
                    route: route.clone(),
                    owner,
                });
            }
            // Kept from an earlier mapping: it is this app's now.
            Some(None) => {
                tx.execute(
                    "UPDATE routes SET app = ?3 WHERE host = ?1 AND path = ?2",
                    params![route.host(), route.path(), app.as_str()],
                )?;
                false
            }
            None => {
                tx.execute(
                    "INSERT INTO routes (host, path, app) VALUES (?1, ?2, ?3)",
                    params![route.host(), route.path(), app.as_str()],
                )?;
                false
            }
        };
        if let Some(b) = settings.balance {
            tx.execute(
                "UPDATE routes SET balance = ?3 WHERE host = ?1 AND path = ?2",
                params![route.host(), route.path(), b.as_str()],
            )?;
        }
        if let Some(n) = settings.max_body {
            // 0 removes the limit.
            let limit = (n > 0).then(|| i64::try_from(n).unwrap_or(i64::MAX));
            tx.execute(
                "UPDATE routes SET max_body = ?3 WHERE host = ?1 AND path = ?2",
                params![route.host(), route.path(), limit],
            )?;
        }
        tx.commit()?;
        Ok(!already)
    }

    /// Unmaps `route` from `app`, keeping the route. Returns false when it was not mapped
    /// to `app`.
    pub fn unmap_route(&self, route: &Route, app: &AppName) -> Result<bool, StoreError> {
        let n = self.db().execute(
            "UPDATE routes SET app = NULL WHERE host = ?1 AND path = ?2 AND app = ?3",
            params![route.host(), route.path(), app.as_str()],
        )?;
        Ok(n > 0)
    }

    /// Deletes `route`, mapped or not. Returns false when there was no such route.
    pub fn delete_route(&self, route: &Route) -> Result<bool, StoreError> {
        let n = self.db().execute(
            "DELETE FROM routes WHERE host = ?1 AND path = ?2",
            params![route.host(), route.path()],
        )?;
        Ok(n > 0)
    }

    /// The domains added with `create-domain`, by name.
    pub fn domains(&self) -> Result<Vec<Domain>, StoreError> {
        let db = self.db();
        let mut stmt = db.prepare("SELECT name, cert_pem, key_pem FROM domains ORDER BY name")?;
        let rows = stmt.query_map([], |r| {
            Ok(Domain {
                name: r.get(0)?,
                cert_pem: r.get(1)?,
                key_pem: r.get(2)?,
            })
        })?;
        rows.collect::<Result<_, _>>().map_err(StoreError::from)
    }

    /// Adds a domain, or replaces its certificate. Returns false when it existed.
    pub fn put_domain(&self, d: &Domain) -> Result<bool, StoreError> {
        let mut db = self.db();
        let tx = db.transaction()?;
        let existed = tx
            .query_row(
                "SELECT 1 FROM domains WHERE name = ?1",
                params![d.name],
                |_| Ok(()),
            )
            .optional()?
            .is_some();
        tx.execute(
            "INSERT INTO domains (name, cert_pem, key_pem, created_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(name) DO UPDATE SET cert_pem = excluded.cert_pem, key_pem = excluded.key_pem",
            params![d.name, d.cert_pem, d.key_pem, now()],
        )?;
        tx.commit()?;
        Ok(!existed)
    }

    /// Deletes a domain. Returns false when there was no such domain.
    pub fn delete_domain(&self, name: &str) -> Result<bool, StoreError> {
        let n = self
            .db()
            .execute("DELETE FROM domains WHERE name = ?1", params![name])?;
        Ok(n > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("paas.db")).unwrap();
        (dir, s)
    }

    fn app(s: &Store, name: &str) -> AppName {
        let name = AppName::parse(name).unwrap();
        s.put_app(&name, &crate::store::tests::settings(1)).unwrap();
        name
    }

    #[test]
    fn migration_gives_existing_apps_their_old_route_once() {
        let (_d, s) = store();
        let a = app(&s, "old-app");
        s.migrate_routes("localhost").unwrap();
        assert_eq!(
            s.app_routes(&a).unwrap(),
            vec![Route::parse("old-app.localhost").unwrap()]
        );
        s.unmap_route(&Route::parse("old-app.localhost").unwrap(), &a)
            .unwrap();
        s.migrate_routes("localhost").unwrap();
        assert!(s.app_routes(&a).unwrap().is_empty(), "ran twice");
    }

    #[test]
    fn a_route_is_mapped_to_one_app_and_survives_unmapping() {
        let (_d, s) = store();
        let (a, b) = (app(&s, "a"), app(&s, "b"));
        let r = Route::parse("shop.localhost/api").unwrap();
        assert!(s.map_route(&r, &a, RouteSettings::default()).unwrap());
        assert!(!s.map_route(&r, &a, RouteSettings::default()).unwrap());
        let e = s.map_route(&r, &b, RouteSettings::default()).unwrap_err();
        assert!(
            matches!(e, MapError::Taken { ref owner, .. } if owner == &a),
            "{e}"
        );
        assert!(s.unmap_route(&r, &a).unwrap());
        assert!(!s.unmap_route(&r, &a).unwrap());
        let rows = s.routes().unwrap();
        assert_eq!(
            rows,
            vec![RouteRow {
                route: r.clone(),
                app: None,
                balance: Balance::RoundRobin,
                max_body: None,
            }]
        );
        let settings = RouteSettings {
            balance: Some(Balance::LeastConnections),
            max_body: Some(1024),
        };
        assert!(s.map_route(&r, &b, settings).unwrap());
        assert_eq!(s.routes().unwrap()[0].balance, Balance::LeastConnections);
        assert_eq!(s.routes().unwrap()[0].max_body, Some(1024));
        let clear = RouteSettings {
            max_body: Some(0),
            ..RouteSettings::default()
        };
        assert!(!s.map_route(&r, &b, clear).unwrap());
        assert_eq!(s.routes().unwrap()[0].max_body, None);
        assert_eq!(s.routes().unwrap()[0].balance, Balance::LeastConnections);
        assert!(s.delete_route(&r).unwrap());
        assert!(s.routes().unwrap().is_empty());
    }

    #[test]
    fn deleting_an_app_unmaps_or_deletes_its_routes() {
        let (_d, s) = store();
        let (a, b) = (app(&s, "a"), app(&s, "b"));
        s.map_route(
            &Route::parse("a.localhost").unwrap(),
            &a,
            RouteSettings::default(),
        )
        .unwrap();
        s.map_route(
            &Route::parse("b.localhost").unwrap(),
            &b,
            RouteSettings::default(),
        )
        .unwrap();
        s.delete_app(&a, false).unwrap();
        s.delete_app(&b, true).unwrap();
        let rows = s.routes().unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].route.host(), "a.localhost");
        assert_eq!(rows[0].app, None);
    }

    #[test]
    fn domains_are_added_replaced_and_deleted() {
        let (_d, s) = store();
        let d = Domain {
            name: "example.com".into(),
            cert_pem: None,
            key_pem: None,
        };
        assert!(s.put_domain(&d).unwrap());
        assert!(!s
            .put_domain(&Domain {
                cert_pem: Some("C".into()),
                key_pem: Some("K".into()),
                ..d.clone()
            })
            .unwrap());
        let all = s.domains().unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].cert_pem.as_deref(), Some("C"));
        assert!(s.delete_domain("example.com").unwrap());
        assert!(!s.delete_domain("example.com").unwrap());
    }
}
