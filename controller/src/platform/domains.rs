//! Domains: the platform's own, shared ones an admin adds, and ones private to a space;
//! their certificates; and the rules a route's host must follow to be made.
//!
//! A space may not take traffic meant for another: a route must lie under a known
//! domain, not under another space's private domain; a host under a shared domain
//! belongs to the space that first made a route with it (so nobody maps
//! `victim.DOMAIN/login` to an app of theirs); a wildcard route under a shared domain,
//! which would catch every host nobody has claimed yet, is for admins only. A domain
//! that is a parent of the platform's domain or of another space's domain is refused:
//! its wildcard routes and certificate would cover names that are not its space's.

use paas_api::{CertificateEntry, DomainInfo, Route};

use super::access::{Act, Caller};
use super::{Error, ErrorKind, Platform};
use crate::store::StoredDomain;

impl Platform {
    /// The platform's domain first, then those added with `create-domain` that
    /// `caller` may use: the shared ones and those private to a space of theirs.
    pub async fn domains(&self, caller: &Caller) -> Result<Vec<DomainInfo>, Error> {
        let added = self.store.domains().await.map_err(Error::internal)?;
        Ok(std::iter::once(DomainInfo {
            name: self.domain.clone(),
            default: true,
            // The self-signed one made at first start, or one put in its place.
            has_certificate: true,
            space: None,
        })
        .chain(
            added
                .into_iter()
                .filter(|d| d.space.as_deref().is_none_or(|s| caller.sees(s)))
                .map(|d| DomainInfo {
                    has_certificate: d.cert_pem.is_some(),
                    name: d.name,
                    default: false,
                    space: d.space,
                }),
        )
        .collect())
    }

    /// Whether `caller` may add, change or delete `domain`: an admin a shared one, a
    /// manager of its space a private one.
    fn may_own(&self, caller: &Caller, domain: &StoredDomain) -> Result<(), Error> {
        match &domain.space {
            None if caller.admin => Ok(()),
            None => Err(Error::new(
                ErrorKind::Forbidden,
                "forbidden",
                format!("only platform admins may change the shared domain {}", domain.name),
                Some("a manager of a space may add a domain private to it: `paas create-domain DOMAIN --space SPACE`"),
            )),
            Some(space) => caller.check(Act::Manage, space, || domain_not_found(&domain.name)),
        }
    }

    /// Adds a domain (or replaces its certificate), shared or private to a space, as
    /// `caller`. Returns false when it existed.
    pub async fn create_domain(
        &self,
        caller: &Caller,
        domain: StoredDomain,
    ) -> Result<bool, Error> {
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
        if let Some(space) = &domain.space {
            // One answer for a space that does not exist and one the caller is not in.
            self.space_exists(caller, space).await?;
        }
        self.may_own(caller, &domain)?;
        let existing = self.store.domains().await.map_err(Error::internal)?;
        if let Some(same) = existing.iter().find(|d| d.name == domain.name) {
            // Its certificate is changed by whoever owns it, and it stays whose it is.
            if same.space != domain.space {
                return Err(Error::new(
                    ErrorKind::Conflict,
                    "domain-taken",
                    format!("domain {} exists and is not this space's", domain.name),
                    Some("choose another domain"),
                ));
            }
            self.may_own(caller, same)?;
        }
        let covers = |parent: &str, child: &str| child.ends_with(&format!(".{parent}"));
        if covers(&domain.name, &self.domain) {
            return Err(Error::new(
                ErrorKind::Refused,
                "domain-covers-platform",
                format!(
                    "{} is a parent of the platform's domain {}",
                    domain.name, self.domain
                ),
                Some("add a domain that is not above the platform's"),
            ));
        }
        // Over or under another space's private domain, or (for a private one) over
        // or under a shared one: its routes would take names that are not its own.
        let clash = existing.iter().find(|d| {
            d.name != domain.name
                && d.space != domain.space
                && (d.space.is_some() || domain.space.is_some())
                && (covers(&domain.name, &d.name) || covers(&d.name, &domain.name))
        });
        let under_platform = domain.space.is_some() && covers(&self.domain, &domain.name);
        if clash.is_some() || under_platform {
            return Err(Error::new(
                ErrorKind::Refused,
                "domain-overlaps",
                format!(
                    "{} lies over or under a domain of another space or of the platform",
                    domain.name
                ),
                Some("add a domain no other space's or shared domain lies over or under"),
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
        match self.certificates().await {
            Ok(entries) => self.edge.publish_certificates(entries),
            Err(e) => tracing::error!("reading domains: {}", e.body.message),
        }
    }

    /// Deletes a domain that no route uses, as `caller`.
    pub async fn delete_domain(&self, caller: &Caller, name: &str) -> Result<(), Error> {
        if name == self.domain {
            return Err(Error::new(
                ErrorKind::Conflict,
                "domain-is-default",
                format!("{name} is the platform's own domain and cannot be deleted"),
                None,
            ));
        }
        let existing = self.store.domains().await.map_err(Error::internal)?;
        let Some(domain) = existing.iter().find(|d| d.name == name) else {
            return Err(domain_not_found(name));
        };
        self.may_own(caller, domain)?;
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
            return Err(domain_not_found(name));
        }
        self.refresh_certificates().await;
        Ok(())
    }

    /// Refuses a route `space` (as `caller`) may not make: outside every domain it may
    /// use (without this, anyone could claim traffic for a host the platform does not
    /// own), under another space's private domain, a wildcard under a shared domain
    /// unless an admin asks, or a host of a shared domain another space has routes on.
    pub(super) async fn check_route_rules(
        &self,
        caller: &Caller,
        space: &str,
        route: &Route,
    ) -> Result<(), Error> {
        let mut usable = self.domains(caller).await?;
        usable.retain(|d| d.space.as_deref().is_none_or(|s| s == space));
        // The most specific domain the route lies under says whose it is.
        let all = self.domains(&Caller::bootstrap(None)).await?;
        let owner = all
            .iter()
            .filter(|d| route.is_under(&d.name))
            .max_by_key(|d| d.name.len());
        let Some(owner) = owner.filter(|o| usable.iter().any(|u| u.name == o.name)) else {
            return Err(Error::new(
                ErrorKind::Refused,
                "unknown-domain",
                format!("route {route} is not under any domain this space may use"),
                Some(&format!(
                    "use a host under {}, or add a domain private to the space with `paas create-domain DOMAIN --space {space}`",
                    usable
                        .iter()
                        .map(|d| d.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            ));
        };
        if owner.space.is_some() {
            return Ok(());
        }
        if route.is_wildcard() && !caller.admin {
            return Err(Error::new(
                ErrorKind::Forbidden,
                "forbidden",
                format!("a wildcard route under the shared domain {} is for admins only", owner.name),
                Some("it would take every host under it that nobody has claimed; map a host of your own, or a wildcard under a domain private to your space"),
            ));
        }
        let routes = self.store.routes().await.map_err(Error::internal)?;
        let theirs = routes
            .iter()
            .find(|r| r.route.host() == route.host() && r.space() != space);
        if theirs.is_some() {
            return Err(Error::new(
                ErrorKind::Conflict,
                "host-taken",
                format!("the host {} belongs to another space", route.host()),
                Some("routes on a host of a shared domain are made by the space that made its first route: choose another host"),
            ));
        }
        Ok(())
    }
}

fn domain_not_found(name: &str) -> Error {
    Error::new(
        ErrorKind::NotFound,
        "domain-not-found",
        format!("there is no domain {name}"),
        Some("see `paas domains`"),
    )
}
