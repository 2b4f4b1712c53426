//! Route services (`paas bind-route-service`): a user-provided service with a
//! `route_service_url`, bound to a route, sees each of the route's requests before the
//! app does, as in Cloud Foundry. The router sends the request to the service, signed;
//! the service sends it on to the URL in `X-CF-Forwarded-Url` (back through the router),
//! and the router passes it to the app only with a valid signature (see the router's
//! `route_service` module).
//!
//! The binding is kept on the route itself ([`RouteServiceBinding`]), with the URL and
//! a key of its own, so a router following the store needs nothing of the services
//! (whose credentials must never reach it).

use paas_api::state::RouteServiceBinding;
use paas_api::Route;

use super::access::{Act, Caller};
use super::{Error, ErrorKind, Platform};
use crate::store::StoredRoute;

impl Platform {
    /// Binds service `service` to `route` as its route service, as `caller` (a developer
    /// of the route's space). `false` when it was bound already.
    pub async fn bind_route_service(
        &self,
        caller: &Caller,
        route: &Route,
        service: &str,
    ) -> Result<bool, Error> {
        let row = self.route_of(caller, route).await?;
        let doc = self.service_doc(service).await?;
        if doc.space != row.space() {
            return Err(Error::new(
                ErrorKind::NotFound,
                "no-such-service",
                format!("there is no service named {service:?} in the route's space"),
                Some("a route service must be in the same space as the route: see `paas services`"),
            ));
        }
        let Some(url) = doc.route_service_url.filter(|u| !u.is_empty()) else {
            return Err(Error::new(
                ErrorKind::Refused,
                "not-a-route-service",
                format!("service {service} has no route service URL"),
                Some(&format!(
                    "give it one: `paas update-user-provided-service {service} -r https://...`"
                )),
            ));
        };
        let mut already = false;
        self.store
            .update_route(route, |r| {
                match &r.route_service {
                    Some(b) if b.service == service => already = true,
                    Some(b) => return Err(bound_elsewhere(route, &b.service)),
                    None => {
                        r.route_service = Some(RouteServiceBinding {
                            service: service.to_string(),
                            url: url.clone(),
                            key: new_key(),
                        })
                    }
                }
                Ok(())
            })
            .await?
            .ok_or_else(|| no_route(route))?;
        if !already {
            self.reload_routes().await;
        }
        Ok(!already)
    }

    /// Unbinds service `service` from `route`: its requests go straight to the app again.
    pub async fn unbind_route_service(
        &self,
        caller: &Caller,
        route: &Route,
        service: &str,
    ) -> Result<(), Error> {
        self.route_of(caller, route).await?;
        self.store
            .update_route(route, |r| match &r.route_service {
                Some(b) if b.service == service => {
                    r.route_service = None;
                    Ok(())
                }
                _ => Err(Error::new(
                    ErrorKind::NotFound,
                    "route-service-not-bound",
                    format!("service {service} is not bound to route {route}"),
                    Some("see `paas routes`"),
                )),
            })
            .await?
            .ok_or_else(|| no_route(route))?;
        self.reload_routes().await;
        Ok(())
    }

    /// The routes `service` is bound to as their route service.
    pub(super) async fn routes_bound_to(&self, service: &str) -> Result<Vec<Route>, Error> {
        let rows = self.store.routes().await.map_err(Error::internal)?;
        Ok(rows
            .into_iter()
            .filter(|r| {
                r.route_service
                    .as_ref()
                    .is_some_and(|b| b.service == service)
            })
            .map(|r| r.route)
            .collect())
    }

    /// Points the routes `service` is bound to at its `url` now (changed by
    /// `update-user-provided-service -r`); at once, as cf does.
    pub(super) async fn follow_route_service_url(
        &self,
        service: &str,
        url: &str,
    ) -> Result<(), Error> {
        let routes = self.routes_bound_to(service).await?;
        for route in &routes {
            self.store
                .update_route(route, |r| {
                    if let Some(b) = r.route_service.as_mut().filter(|b| b.service == service) {
                        b.url = url.to_string();
                    }
                    Ok::<(), Error>(())
                })
                .await?;
        }
        if !routes.is_empty() {
            self.reload_routes().await;
        }
        Ok(())
    }

    /// Route `route`, if `caller` may change it (a developer of its space); to others
    /// it does not exist.
    async fn route_of(&self, caller: &Caller, route: &Route) -> Result<StoredRoute, Error> {
        let rows = self.store.routes().await.map_err(Error::internal)?;
        let row = rows
            .into_iter()
            .find(|r| &r.route == route)
            .ok_or_else(|| no_route(route))?;
        caller.check(Act::Develop, row.space(), || no_route(route))?;
        Ok(row)
    }
}

fn no_route(route: &Route) -> Error {
    Error::new(
        ErrorKind::NotFound,
        "route-not-found",
        format!("there is no route {route}"),
        Some("make it first with `paas map-route APP DOMAIN --hostname HOST`; see `paas routes`"),
    )
}

fn bound_elsewhere(route: &Route, other: &str) -> Error {
    Error::new(
        ErrorKind::Conflict,
        "route-service-bound",
        format!("route {route} already goes through route service {other}"),
        Some(&format!(
            "a route has one route service: unbind it first (`paas unbind-route-service DOMAIN {other} --hostname HOST`)"
        )),
    )
}

/// A route service binding's signing key: 32 random bytes, in hex.
fn new_key() -> String {
    let mut b = [0u8; 32];
    let _ = getrandom::fill(&mut b);
    hex::encode(b)
}
