//! Routes and domains: what users map, and the table the router is given.
//!
//! The route table is rebuilt from the stored routes and the live instances whenever
//! either changes, and published to the router as one new snapshot.

use paas_api::{AppName, CertificateEntry, DomainInfo, Route, RouteBackend, RouteEntry};
use std::sync::Arc;

use paas_router::tls::Certificates;
use paas_router::RouteTable;

use super::{Failure, Platform};
use crate::store::{Domain, MapError, RouteSettings, StoreError};

impl Platform {
    /// The app's default route, `NAME.DOMAIN`.
    pub fn default_route(&self, app: &AppName) -> Result<Route, Failure> {
        Route::from_parts(&format!("{app}.{}", self.domain), "")
            .map_err(|e| Failure::new(422, "invalid-route", e.to_string(), None))
    }

    /// The URL a route answers at, through this host's router.
    pub fn route_url(&self, route: &Route) -> String {
        match self.router_port {
            80 => format!("http://{route}"),
            p => format!("http://{}:{p}{}", route.host(), route.path()),
        }
    }

    /// The URL of the app's first route that is not a wildcard, or `""` with none.
    pub fn url(&self, app: &AppName) -> String {
        self.first_url(&self.store.app_routes(app).unwrap_or_default())
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

    /// Publishes a route table built from the stored routes and the instances running now.
    ///
    /// When the routes cannot be read, the router keeps the table it has: a store that
    /// fails for a moment must not take every app off the air (it answered 404 for all
    /// of them before).
    pub fn refresh_routes(&self) {
        match self.routes() {
            Ok(entries) => self.router.update(RouteTable::from_entries(&entries)),
            Err(e) => tracing::error!("reading routes: {e}; the router keeps its last table"),
        }
    }

    /// Every route with the instances of its app that are running now. A route of an app
    /// with no running instance has no backends (the router answers 503); an unmapped
    /// route is not routed at all (404).
    pub fn routes(&self) -> Result<Vec<RouteEntry>, StoreError> {
        let rows = self.store.routes()?;
        let instances = self.instances.lock().unwrap_or_else(|p| p.into_inner());
        Ok(rows
            .into_iter()
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
                                    index: i.index,
                                })
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                RouteEntry {
                    host: row.route.host().to_string(),
                    path: row.route.path().to_string(),
                    app: row.app.map(|a| a.to_string()),
                    balance: row.balance,
                    max_body_bytes: row.max_body,
                    backends,
                }
            })
            .collect())
    }

    /// Maps `route` to `app`, creating it if new. Returns false when it was mapped
    /// already. The route's domain must be the platform's or one made with
    /// `create-domain`.
    pub fn map_route(
        &self,
        app: &AppName,
        route: &Route,
        settings: RouteSettings,
    ) -> Result<bool, Failure> {
        self.app_record(app)?;
        self.check_domain_of(route)?;
        let added = self
            .store
            .map_route(route, app, settings)
            .map_err(|e| match e {
                MapError::Taken { route, owner } => Failure::new(
                    409,
                    "route-taken",
                    format!("route {route} is mapped to app {owner}"),
                    Some(&format!(
                        "choose another host or path, or unmap it from {owner} first (`paas unmap-route {owner} DOMAIN --hostname HOST`)"
                    )),
                ),
                MapError::Store(e) => Failure::internal(e),
            })?;
        if added || settings.balance.is_some() || settings.max_body.is_some() {
            self.refresh_routes();
        }
        if added {
            self.record_event(app, "route-mapped", None, None, &route.to_string());
        }
        Ok(added)
    }

    /// Unmaps `route` from `app`; the route itself stays reserved until deleted.
    pub fn unmap_route(&self, app: &AppName, route: &Route) -> Result<(), Failure> {
        self.app_record(app)?;
        if !self
            .store
            .unmap_route(route, app)
            .map_err(Failure::internal)?
        {
            return Err(Failure::new(
                404,
                "route-not-mapped",
                format!("route {route} is not mapped to app {app}"),
                Some(&format!("see `paas routes` or `paas app {app}`")),
            ));
        }
        self.refresh_routes();
        self.record_event(app, "route-unmapped", None, None, &route.to_string());
        Ok(())
    }

    /// Deletes `route`, unmapping it from its app first.
    pub fn delete_route(&self, route: &Route) -> Result<(), Failure> {
        if !self.store.delete_route(route).map_err(Failure::internal)? {
            return Err(Failure::new(
                404,
                "route-not-found",
                format!("there is no route {route}"),
                Some("see `paas routes`"),
            ));
        }
        self.refresh_routes();
        Ok(())
    }

    /// The platform's domain first, then those added with `create-domain`.
    pub fn domains(&self) -> Result<Vec<DomainInfo>, Failure> {
        let added = self.store.domains().map_err(Failure::internal)?;
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
    pub fn create_domain(&self, domain: Domain) -> Result<bool, Failure> {
        paas_api::check_host(&domain.name)
            .and_then(|()| {
                if domain.name.starts_with("*.") {
                    Err("give the domain itself; its routes may then be wildcards".into())
                } else {
                    Ok(())
                }
            })
            .map_err(|e| {
                Failure::new(
                    422,
                    "invalid-domain",
                    format!("domain {:?} is invalid: {e}", domain.name),
                    Some("give a DNS name such as apps.example.com"),
                )
            })?;
        if domain.name == self.domain {
            return Err(Failure::new(
                409,
                "domain-exists",
                format!("{} is the platform's own domain", domain.name),
                None,
            ));
        }
        match (&domain.cert_pem, &domain.key_pem) {
            (Some(cert), Some(key)) => {
                paas_router::tls::certified_key(cert, key).map_err(|e| {
                    Failure::new(
                        422,
                        "invalid-certificate",
                        format!("the certificate for {} cannot be used: {e}", domain.name),
                        Some("give the PEM certificate chain with --cert and its private key with --key"),
                    )
                })?;
            }
            (None, None) => {}
            _ => {
                return Err(Failure::new(
                    422,
                    "invalid-certificate",
                    "a certificate needs its key, and a key its certificate",
                    Some("give both --cert and --key"),
                ))
            }
        }
        let added = self.store.put_domain(&domain).map_err(Failure::internal)?;
        self.refresh_certificates();
        Ok(added)
    }

    /// Every certificate the router serves, with its key: the default one first.
    pub fn certificates(&self) -> Result<Vec<CertificateEntry>, Failure> {
        let (cert, key) = &self.default_cert_pem;
        let default = CertificateEntry {
            domain: self.domain.clone(),
            default: true,
            cert_pem: cert.clone(),
            key_pem: key.clone(),
        };
        let added = self.store.domains().map_err(Failure::internal)?;
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
    pub fn refresh_certificates(&self) {
        let mut certs = Certificates::new(Some(Arc::clone(&self.default_cert)));
        match self.store.domains() {
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
    pub fn delete_domain(&self, name: &str) -> Result<(), Failure> {
        if name == self.domain {
            return Err(Failure::new(
                409,
                "domain-is-default",
                format!("{name} is the platform's own domain and cannot be deleted"),
                None,
            ));
        }
        let in_use: Vec<String> = self
            .store
            .routes()
            .map_err(Failure::internal)?
            .into_iter()
            .filter(|r| r.route.is_under(name))
            .map(|r| r.route.to_string())
            .collect();
        if !in_use.is_empty() {
            return Err(Failure::new(
                409,
                "domain-in-use",
                format!("domain {name} has routes: {}", in_use.join(", ")),
                Some("delete them first with `paas delete-route ROUTE`"),
            ));
        }
        if !self.store.delete_domain(name).map_err(Failure::internal)? {
            return Err(Failure::new(
                404,
                "domain-not-found",
                format!("there is no domain {name}"),
                Some("see `paas domains`"),
            ));
        }
        self.refresh_certificates();
        Ok(())
    }

    /// Refuses a route outside every known domain: without this, anyone could claim
    /// traffic for a host the platform does not own.
    fn check_domain_of(&self, route: &Route) -> Result<(), Failure> {
        let known = self.domains()?;
        if known.iter().any(|d| route.is_under(&d.name)) {
            return Ok(());
        }
        Err(Failure::new(
            422,
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
