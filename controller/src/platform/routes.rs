//! Routes and domains: what users map, and the table the router is given.
//!
//! The route table is rebuilt from the stored routes and the live instances whenever
//! either changes, and published to the router as one new snapshot. The stored routes
//! are kept in memory as last read (`Platform::route_rows`), so that a change of
//! instances republishes without a read, and a failed read keeps the last good table.

use paas_api::{AppName, Route, RouteBackend, RouteEntry};
use std::sync::Arc;

use super::access::Caller;
use super::{Error, ErrorKind, Platform};
use crate::store::{MapError, RouteSettings, StoreError, StoredRoute};

/// The stored routes as last read, and the store revision they were read at.
pub(super) type RouteRows = Option<(Arc<Vec<StoredRoute>>, i64)>;

impl Platform {
    /// The app's default route, `NAME.DOMAIN`.
    pub fn default_route(&self, app: &AppName) -> Result<Route, Error> {
        Route::from_parts(&format!("{app}.{}", self.domain), "")
            .map_err(|e| Error::new(ErrorKind::Refused, "invalid-route", e.to_string(), None))
    }

    /// The URL a route answers at, through this host's router.
    pub fn route_url(&self, route: &Route) -> String {
        match self.router_port {
            80 => format!("http://{route}"),
            p => format!("http://{}:{p}{}", route.host(), route.path()),
        }
    }

    /// The URL of the app's first route that is not a wildcard, or `""` with none.
    pub async fn url(&self, app: &AppName) -> String {
        self.first_url(&self.store.app_routes(app).await.unwrap_or_default())
    }

    /// The URL of the first of `routes` that is not a wildcard, or `""` with none.
    pub fn first_url(&self, routes: &[Route]) -> String {
        routes
            .iter()
            .find(|r| !r.is_wildcard())
            .map(|r| self.route_url(r))
            .unwrap_or_default()
    }

    /// Waits (a little) until this host's router has applied every table published so
    /// far: a change is in effect when its request is answered.
    pub async fn router_synced(&self) {
        self.edge.sync().await;
    }

    pub fn router_url(&self) -> String {
        format!("http://{}:{}", self.domain, self.router_port)
    }

    /// Reads the stored routes again and publishes the table they make with the
    /// instances running now. When the routes cannot be read, the router keeps the
    /// routes it has: a store that fails for a moment must not take every app off the
    /// air (it answered 404 for all of them before).
    pub async fn reload_routes(&self) {
        if let Err(e) = self.routes().await {
            tracing::error!("reading routes: {e}; the router keeps the routes it has");
            self.refresh_routes();
        }
    }

    /// Publishes a route table built from the stored routes as last read and the
    /// instances running now (nothing before the routes were first read).
    pub fn refresh_routes(&self) {
        let rows = self.route_rows.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((rows, _)) = rows.as_ref() {
            // Built and published under the lock: tables go out in the order made.
            self.edge.publish_routes(self.route_entries(rows));
        }
    }

    /// Every stored route with the instances of its app that are running now, read
    /// fresh; the router is given the table they make.
    pub async fn routes(&self) -> Result<Vec<RouteEntry>, StoreError> {
        let (rows, revision) = self.store.routes_at().await?;
        let mut cached = self.route_rows.lock().unwrap_or_else(|p| p.into_inner());
        // Built and published under the lock, as in `refresh_routes`.
        let entries = self.route_entries(&rows);
        // A slower read that began earlier does not replace a newer one.
        match cached.as_ref() {
            Some((newest, seen)) if *seen > revision => {
                self.edge.publish_routes(self.route_entries(newest));
            }
            _ => {
                self.edge.publish_routes(entries.clone());
                *cached = Some((Arc::new(rows), revision));
            }
        }
        Ok(entries)
    }

    /// The table entries of `rows`: a route of an app with no running instance has no
    /// backends (the router answers 503); an unmapped route is not routed at all (404).
    fn route_entries(&self, rows: &[StoredRoute]) -> Vec<RouteEntry> {
        let instances = self.instances.lock().unwrap_or_else(|p| p.into_inner());
        rows.iter()
            .map(|row| {
                let backends = row
                    .app
                    .as_ref()
                    .and_then(|app| instances.get(app))
                    .map(|list| {
                        list.iter()
                            .filter_map(|i| {
                                i.routable_addr().map(|addr| RouteBackend {
                                    addr: addr.to_string(),
                                    index: i.index(),
                                })
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                row.entry(backends)
            })
            .collect()
    }

    /// Maps `route` to `app`, creating it if new. Returns false when it was mapped
    /// already. The route's domain must be the platform's or one made with
    /// `create-domain`.
    pub async fn map_route(
        &self,
        caller: &Caller,
        app: &AppName,
        route: &Route,
        settings: RouteSettings,
    ) -> Result<bool, Error> {
        let record = self.app_record(app).await?;
        self.check_route_rules(caller, &record.space, route).await?;
        let known = self.store.routes().await.map_err(Error::internal)?;
        if !known
            .iter()
            .any(|r| &r.route == route && r.app.as_ref() == Some(app))
        {
            let more = super::quota::Demand {
                routes: 1,
                ..Default::default()
            };
            self.check_quota(&record.space, more).await?;
        }
        let added = self
            .store
            .map_route(route, app, &record.space, settings)
            .await
            .map_err(|e| match e {
                MapError::Taken { route, owner } => Error::new(
                    ErrorKind::Conflict,
                    "route-taken",
                    format!("route {route} is mapped to app {owner}"),
                    Some(&format!(
                        "choose another host or path, or unmap it from {owner} first (`paas unmap-route {owner} DOMAIN --hostname HOST`)"
                    )),
                ),
                MapError::OtherSpace { route } => Error::new(
                    ErrorKind::Conflict,
                    "route-taken",
                    format!("route {route} belongs to another space"),
                    Some("choose another host or path"),
                ),
                MapError::Store(e) => Error::internal(e),
            })?;
        if added || settings.balance.is_some() || settings.max_body.is_some() {
            self.reload_routes().await;
        }
        if added {
            self.record_event(app, "route-mapped", None, None, &route.to_string())
                .await;
        }
        Ok(added)
    }

    /// Unmaps `route` from `app`; the route itself stays reserved until deleted.
    pub async fn unmap_route(&self, app: &AppName, route: &Route) -> Result<(), Error> {
        self.app_record(app).await?;
        if !self
            .store
            .unmap_route(route, app)
            .await
            .map_err(Error::internal)?
        {
            return Err(Error::new(
                ErrorKind::NotFound,
                "route-not-mapped",
                format!("route {route} is not mapped to app {app}"),
                Some(&format!("see `paas routes` or `paas app {app}`")),
            ));
        }
        self.reload_routes().await;
        self.record_event(app, "route-unmapped", None, None, &route.to_string())
            .await;
        Ok(())
    }

    /// Deletes `route`, unmapping it from its app first, as `caller` (a developer of
    /// its space; to others it does not exist).
    pub async fn delete_route(&self, caller: &Caller, route: &Route) -> Result<(), Error> {
        let not_found = || {
            Error::new(
                ErrorKind::NotFound,
                "route-not-found",
                format!("there is no route {route}"),
                Some("see `paas routes`"),
            )
        };
        let rows = self.store.routes().await.map_err(Error::internal)?;
        let row = rows
            .iter()
            .find(|r| &r.route == route)
            .ok_or_else(not_found)?;
        caller.check(super::access::Act::Develop, row.space(), not_found)?;
        if !self
            .store
            .delete_route(route)
            .await
            .map_err(Error::internal)?
        {
            return Err(Error::new(
                ErrorKind::NotFound,
                "route-not-found",
                format!("there is no route {route}"),
                Some("see `paas routes`"),
            ));
        }
        self.reload_routes().await;
        Ok(())
    }
}
