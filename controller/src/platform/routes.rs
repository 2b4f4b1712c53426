//! Routes and domains: what users map, and the table the router is given.
//!
//! The route table is rebuilt from the stored routes and the live instances whenever
//! either changes, and published to the router as one new snapshot. The stored routes
//! are kept in memory as last read (`Platform::route_rows`), so that a change of
//! instances republishes without a read, and a failed read keeps the last good table.

use paas_api::{AppName, CertificateEntry, DomainInfo, Route, RouteBackend, RouteEntry};
use std::sync::Arc;

use paas_router::tls::Certificates;
use paas_router::RouteTable;

use super::{Error, ErrorKind, Platform};
use crate::store::{MapError, RouteSettings, StoreError, StoredDomain, StoredRoute};

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
            self.router
                .update(RouteTable::from_entries(&self.route_entries(rows)));
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
                self.router
                    .update(RouteTable::from_entries(&self.route_entries(newest)));
            }
            _ => {
                self.router.update(RouteTable::from_entries(&entries));
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
        app: &AppName,
        route: &Route,
        settings: RouteSettings,
    ) -> Result<bool, Error> {
        self.app_record(app).await?;
        self.check_domain_of(route).await?;
        let added = self
            .store
            .map_route(route, app, settings)
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

    /// Deletes `route`, unmapping it from its app first.
    pub async fn delete_route(&self, route: &Route) -> Result<(), Error> {
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

    /// The platform's domain first, then those added with `create-domain`.
    pub async fn domains(&self) -> Result<Vec<DomainInfo>, Error> {
        let added = self.store.domains().await.map_err(Error::internal)?;
        Ok(std::iter::once(DomainInfo {
            name: self.domain.clone(),
            default: true,
            // The self-signed one made at first start, or one put in its place.
            has_certificate: true,
        })
        .chain(added.into_iter().map(|d| DomainInfo {
            has_certificate: d.cert_pem.is_some(),
            name: d.name,
            default: false,
        }))
        .collect())
    }

    /// Adds a domain (or replaces its certificate). Returns false when it existed.
    pub async fn create_domain(&self, domain: StoredDomain) -> Result<bool, Error> {
        paas_api::check_host(&domain.name)
            .and_then(|()| {
                if domain.name.starts_with("*.") {
                    Err("give the domain itself; its routes may then be wildcards".into())
                } else {
                    Ok(())
                }
            })
            .map_err(|e| {
                Error::new(
                    ErrorKind::Refused,
                    "invalid-domain",
                    format!("domain {:?} is invalid: {e}", domain.name),
                    Some("give a DNS name such as apps.example.com"),
                )
            })?;
        if domain.name == self.domain {
            return Err(Error::new(
                ErrorKind::Conflict,
                "domain-exists",
                format!("{} is the platform's own domain", domain.name),
                None,
            ));
        }
        match (&domain.cert_pem, &domain.key_pem) {
            (Some(cert), Some(key)) => {
                paas_router::tls::certified_key(cert, key).map_err(|e| {
                    Error::new(
                        ErrorKind::Refused,
                        "invalid-certificate",
                        format!("the certificate for {} cannot be used: {e}", domain.name),
                        Some("give the PEM certificate chain with --cert and its private key with --key"),
                    )
                })?;
            }
            (None, None) => {}
            _ => {
                return Err(Error::new(
                    ErrorKind::Refused,
                    "invalid-certificate",
                    "a certificate needs its key, and a key its certificate",
                    Some("give both --cert and --key"),
                ))
            }
        }
        let added = self
            .store
            .put_domain(&domain)
            .await
            .map_err(Error::internal)?;
        self.refresh_certificates().await;
        Ok(added)
    }

    /// Every certificate the router serves, with its key: the default one first.
    pub async fn certificates(&self) -> Result<Vec<CertificateEntry>, Error> {
        let (cert, key) = &self.default_cert_pem;
        let default = CertificateEntry {
            domain: self.domain.clone(),
            default: true,
            cert_pem: cert.clone(),
            key_pem: key.clone(),
        };
        let added = self.store.domains().await.map_err(Error::internal)?;
        Ok(std::iter::once(default)
            .chain(added.into_iter().filter_map(|d| {
                Some(CertificateEntry {
                    cert_pem: d.cert_pem?,
                    key_pem: d.key_pem?,
                    domain: d.name,
                    default: false,
                })
            }))
            .collect())
    }

    /// Gives the router the certificates of every domain that has one, and the default.
    pub async fn refresh_certificates(&self) {
        let mut certs = Certificates::new(Some(Arc::clone(&self.default_cert)));
        match self.store.domains().await {
            Ok(domains) => {
                for d in domains {
                    let (Some(cert), Some(key)) = (&d.cert_pem, &d.key_pem) else {
                        continue;
                    };
                    match paas_router::tls::certified_key(cert, key) {
                        Ok(k) => certs.insert(&d.name, Arc::new(k)),
                        Err(e) => {
                            tracing::error!(domain = %d.name, "its certificate cannot be used: {e}")
                        }
                    }
                }
            }
            Err(e) => tracing::error!("reading domains: {e}"),
        }
        self.router.certificates().update(certs);
    }

    /// Deletes a domain that no route uses.
    pub async fn delete_domain(&self, name: &str) -> Result<(), Error> {
        if name == self.domain {
            return Err(Error::new(
                ErrorKind::Conflict,
                "domain-is-default",
                format!("{name} is the platform's own domain and cannot be deleted"),
                None,
            ));
        }
        let in_use: Vec<String> = self
            .store
            .routes()
            .await
            .map_err(Error::internal)?
            .into_iter()
            .filter(|r| r.route.is_under(name))
            .map(|r| r.route.to_string())
            .collect();
        if !in_use.is_empty() {
            return Err(Error::new(
                ErrorKind::Conflict,
                "domain-in-use",
                format!("domain {name} has routes: {}", in_use.join(", ")),
                Some("delete them first with `paas delete-route ROUTE`"),
            ));
        }
        if !self
            .store
            .delete_domain(name)
            .await
            .map_err(Error::internal)?
        {
            return Err(Error::new(
                ErrorKind::NotFound,
                "domain-not-found",
                format!("there is no domain {name}"),
                Some("see `paas domains`"),
            ));
        }
        self.refresh_certificates().await;
        Ok(())
    }

    /// Refuses a route outside every known domain: without this, anyone could claim
    /// traffic for a host the platform does not own.
    async fn check_domain_of(&self, route: &Route) -> Result<(), Error> {
        let known = self.domains().await?;
        if known.iter().any(|d| route.is_under(&d.name)) {
            return Ok(());
        }
        Err(Error::new(
            ErrorKind::Refused,
            "unknown-domain",
            format!("route {route} is not under any of the platform's domains"),
            Some(&format!(
                "use a host under {}, or add the domain with `paas create-domain DOMAIN`",
                known
                    .iter()
                    .map(|d| d.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        ))
    }
}
