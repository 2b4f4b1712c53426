//! Routes and domains: `routes`, `map-route`, `unmap-route`, `delete-route`,
//! `bind-route-service`, `unbind-route-service`, `domains`, `create-domain`,
//! `delete-domain`, with Cloud Foundry's arguments.

use std::path::PathBuf;

use bytes::Bytes;
use http::Method;
use paas_api::{Balance, BindRouteService, CreateDomain, DomainInfo, MapRoute, Route, RouteEntry};

use super::apps::print_table;
use crate::client::{check, Client};
use crate::exit::{self, Failure};

#[derive(Debug, clap::Args)]
pub struct ListArgs {}

/// A route as cf names one: a domain, a host name under it, a path.
#[derive(Debug, clap::Args)]
pub struct RouteArgs {
    /// The domain, e.g. localhost or apps.example.com (see `paas domains`).
    domain: String,
    /// The host name under the domain; `*` makes a wildcard route. Without it the route
    /// is the domain itself.
    #[arg(long = "hostname", short = 'n', value_name = "HOST")]
    hostname: Option<String>,
    /// A path prefix, e.g. /api: requests under it go to this app.
    #[arg(long = "path", value_name = "PATH")]
    path: Option<String>,
}

impl RouteArgs {
    fn route(&self) -> Result<Route, Failure> {
        let host = match &self.hostname {
            Some(h) => format!("{h}.{}", self.domain),
            None => self.domain.clone(),
        };
        let path = match self.path.as_deref() {
            Some(p) if !p.starts_with('/') => format!("/{p}"),
            Some(p) => p.to_string(),
            None => String::new(),
        };
        Route::from_parts(&host, &path).map_err(|e| Failure::usage(e.to_string()))
    }
}

#[derive(Debug, clap::Args)]
pub struct MapArgs {
    /// The app.
    app: String,
    #[command(flatten)]
    route: RouteArgs,
}

#[derive(Debug, clap::Args)]
pub struct MapRouteArgs {
    #[command(flatten)]
    map: MapArgs,
    /// How the route spreads requests over the app's instances: round-robin (the
    /// default) or least-connections. Given for a mapped route, it changes it.
    #[arg(long, value_name = "HOW", value_parser = parse_balance)]
    balance: Option<Balance>,
    /// The largest request body the route takes, e.g. 10M (larger ones get 413); 0
    /// removes the limit. Given for a mapped route, it changes it.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    max_body: Option<u64>,
}

/// A byte count: `512`, `64K`, `10M`, `1G` (powers of 1024; a trailing B is allowed).
fn parse_size(s: &str) -> Result<u64, String> {
    let upper = s.trim().to_ascii_uppercase();
    let t = upper.strip_suffix('B').unwrap_or(&upper);
    let (digits, unit) = match t.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => t.split_at(i),
        None => (t, ""),
    };
    let scale: u64 = match unit {
        "" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        _ => 0,
    };
    digits
        .parse::<u64>()
        .ok()
        .filter(|_| scale > 0)
        .and_then(|n| n.checked_mul(scale))
        .ok_or_else(|| {
            format!("{s:?} is not a size: write bytes, or a number with K, M or G (e.g. 10M)")
        })
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_take_k_m_and_g() {
        assert_eq!(super::parse_size("0"), Ok(0));
        assert_eq!(super::parse_size("512"), Ok(512));
        assert_eq!(super::parse_size("1K"), Ok(1024));
        assert_eq!(super::parse_size("10mb"), Ok(10 << 20));
        assert_eq!(super::parse_size("2G"), Ok(2 << 30));
        assert!(super::parse_size("1T").is_err());
        assert!(super::parse_size("K").is_err());
        assert!(super::parse_size("-1").is_err());
    }
}

fn parse_balance(s: &str) -> Result<Balance, String> {
    Balance::parse(s)
}

#[derive(Debug, clap::Args)]
pub struct DeleteRouteArgs {
    #[command(flatten)]
    route: RouteArgs,
}

#[derive(Debug, clap::Args)]
pub struct RouteServiceArgs {
    /// The domain, e.g. localhost or apps.example.com (see `paas domains`).
    domain: String,
    /// The user-provided service made with `-r https://...`.
    service: String,
    /// The host name under the domain. Without it the route is the domain itself.
    #[arg(long = "hostname", short = 'n', value_name = "HOST")]
    hostname: Option<String>,
    /// The route's path prefix, e.g. /api.
    #[arg(long = "path", value_name = "PATH")]
    path: Option<String>,
}

impl RouteServiceArgs {
    fn route(&self) -> Result<Route, Failure> {
        RouteArgs {
            domain: self.domain.clone(),
            hostname: self.hostname.clone(),
            path: self.path.clone(),
        }
        .route()
    }
}

#[derive(Debug, clap::Args)]
pub struct CreateDomainArgs {
    /// The domain, e.g. apps.example.com. Its DNS should point at the router.
    domain: String,
    /// A PEM certificate chain the router serves for HTTPS under the domain (it may be
    /// a wildcard certificate, *.DOMAIN).
    #[arg(long, value_name = "FILE", requires = "key")]
    cert: Option<PathBuf>,
    /// The PEM private key of --cert.
    #[arg(long, value_name = "FILE", requires = "cert")]
    key: Option<PathBuf>,
    /// Make it private to this space (its managers may): only the space's apps get
    /// routes under it. Without it the domain is shared by every space (admins only).
    #[arg(long, short = 's', value_name = "SPACE")]
    space: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct DeleteDomainArgs {
    /// The domain to delete; it must have no routes left.
    domain: String,
}

pub async fn list(_: ListArgs, ctx: super::Ctx) -> Result<(), Failure> {
    let client = super::client(ctx)?;
    let routes: Vec<RouteEntry> = client.list(&client.in_space("/v1/routes")).await?;
    if ctx.json {
        return super::print_json(&routes);
    }
    if routes.is_empty() {
        println!("No routes: `paas push` maps NAME.DOMAIN, `paas map-route` maps others.");
        return Ok(());
    }
    let rows: Vec<[String; 6]> = routes
        .iter()
        .map(|r| {
            [
                r.host.clone(),
                if r.path.is_empty() {
                    "/".to_string()
                } else {
                    r.path.clone()
                },
                r.app.clone().unwrap_or_else(|| "-".into()),
                r.backends.len().to_string(),
                r.balance.as_str().to_string(),
                r.route_service_url.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    print_table(
        &[
            "host",
            "path",
            "app",
            "instances",
            "balance",
            "route service",
        ],
        &rows,
    );
    Ok(())
}

pub async fn map(args: MapRouteArgs, ctx: super::Ctx) -> Result<(), Failure> {
    let app = super::app_name(&args.map.app)?;
    let route = args.map.route.route()?;
    let settings = MapRoute {
        host: route.host().to_string(),
        path: route.path().to_string(),
        balance: args.balance,
        max_body_bytes: args.max_body,
    };
    let added: bool = map_route_with(&super::client(ctx)?, &app, &settings).await?;
    let mut how = args
        .balance
        .map(|b| format!(", balanced {}", b.as_str()))
        .unwrap_or_default();
    match args.max_body {
        Some(0) => how.push_str(", with no body limit"),
        Some(n) => how.push_str(&format!(", bodies up to {n} bytes")),
        None => {}
    }
    if added {
        println!("Mapped route {route} to app {app}{how}");
    } else {
        println!("Route {route} was mapped to app {app} already{how}");
    }
    Ok(())
}

/// Maps `route` to `app`; true when it was not mapped before.
pub async fn map_route(
    client: &Client,
    app: &paas_api::AppName,
    route: &Route,
) -> Result<bool, Failure> {
    let request = MapRoute {
        host: route.host().to_string(),
        path: route.path().to_string(),
        balance: None,
        max_body_bytes: None,
    };
    map_route_with(client, app, &request).await
}

/// Maps a route to `app` and changes the settings `request` gives; true when it was
/// not mapped before.
async fn map_route_with(
    client: &Client,
    app: &paas_api::AppName,
    request: &MapRoute,
) -> Result<bool, Failure> {
    let body = serde_json::to_vec(request).map_err(|e| Failure::general(e.to_string()))?;
    let resp = client
        .send(
            Method::POST,
            &format!("/v1/apps/{app}/routes"),
            Bytes::from(body),
            "application/json",
        )
        .await?;
    let resp = check(resp, exit::GENERAL).await?;
    Ok(resp.status() == http::StatusCode::CREATED)
}

pub async fn unmap(args: MapArgs, ctx: super::Ctx) -> Result<(), Failure> {
    let app = super::app_name(&args.app)?;
    let route = args.route.route()?;
    unmap_route(&super::client(ctx)?, &app, &route).await?;
    println!("Unmapped route {route} from app {app}; `paas delete-route` deletes it");
    Ok(())
}

pub async fn unmap_route(
    client: &Client,
    app: &paas_api::AppName,
    route: &Route,
) -> Result<(), Failure> {
    client
        .delete(&format!("/v1/apps/{app}/routes?{}", route_query(route)))
        .await
}

pub async fn delete(args: DeleteRouteArgs, ctx: super::Ctx) -> Result<(), Failure> {
    let route = args.route.route()?;
    super::client(ctx)?
        .delete(&format!("/v1/routes?{}", route_query(&route)))
        .await?;
    println!("Deleted route {route}");
    Ok(())
}

pub async fn bind_route_service(args: RouteServiceArgs, ctx: super::Ctx) -> Result<(), Failure> {
    let route = args.route()?;
    let body = serde_json::to_vec(&BindRouteService {
        service: args.service.clone(),
    })
    .map_err(|e| Failure::general(e.to_string()))?;
    let resp = super::client(ctx)?
        .send(
            Method::PUT,
            &format!("/v1/routes/route-service?{}", route_query(&route)),
            Bytes::from(body),
            "application/json",
        )
        .await?;
    let resp = check(resp, exit::GENERAL).await?;
    if resp.status() == http::StatusCode::CREATED {
        println!(
            "Bound route service {} to route {route}: its requests go through it first",
            args.service
        );
    } else {
        println!(
            "Route service {} was bound to route {route} already",
            args.service
        );
    }
    Ok(())
}

pub async fn unbind_route_service(args: RouteServiceArgs, ctx: super::Ctx) -> Result<(), Failure> {
    let route = args.route()?;
    super::client(ctx)?
        .delete(&format!(
            "/v1/routes/route-service?{}&service={}",
            route_query(&route),
            encode_query(&args.service)
        ))
        .await?;
    println!(
        "Unbound route service {} from route {route}: its requests go straight to the app",
        args.service
    );
    Ok(())
}

/// `s` for a query string: unreserved characters as they are, others %-encoded.
fn encode_query(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `host=H&path=P`: both are made of URL-safe characters only (see [`Route`]).
fn route_query(route: &Route) -> String {
    format!("host={}&path={}", route.host(), route.path())
}

pub async fn domains(_: ListArgs, ctx: super::Ctx) -> Result<(), Failure> {
    let domains: Vec<DomainInfo> = super::client(ctx)?.list("/v1/domains").await?;
    if ctx.json {
        return super::print_json(&domains);
    }
    let rows: Vec<[String; 3]> = domains
        .iter()
        .map(|d| {
            let kind = match (&d.space, d.default) {
                (_, true) => "default".to_string(),
                (Some(space), _) => format!("private to {space}"),
                (None, _) => "shared".to_string(),
            };
            [
                d.name.clone(),
                kind,
                if d.has_certificate { "yes" } else { "-" }.to_string(),
            ]
        })
        .collect();
    print_table(&["name", "kind", "certificate"], &rows);
    Ok(())
}

pub async fn create_domain(args: CreateDomainArgs, ctx: super::Ctx) -> Result<(), Failure> {
    let read = |p: &Option<PathBuf>| -> Result<Option<String>, Failure> {
        p.as_ref()
            .map(|p| {
                std::fs::read_to_string(p).map_err(|e| {
                    Failure::usage(format!("reading {}: {e}", p.display()))
                        .with_hint("give PEM files: --cert fullchain.pem --key privkey.pem")
                })
            })
            .transpose()
    };
    let request = CreateDomain {
        name: args.domain.to_ascii_lowercase(),
        cert_pem: read(&args.cert)?,
        key_pem: read(&args.key)?,
        space: args.space,
    };
    let info: Option<DomainInfo> = super::client(ctx)?
        .json(Method::POST, "/v1/domains", Some(&request))
        .await?;
    let tls = if info.is_some_and(|i| i.has_certificate) {
        " with its certificate for HTTPS"
    } else {
        ""
    };
    println!("Created domain {}{tls}", request.name);
    Ok(())
}

pub async fn delete_domain(args: DeleteDomainArgs, ctx: super::Ctx) -> Result<(), Failure> {
    let name = args.domain.to_ascii_lowercase();
    paas_api::check_host(&name)
        .map_err(|e| Failure::usage(format!("domain {name:?} is invalid: {e}")))?;
    super::client(ctx)?
        .delete(&format!("/v1/domains/{name}"))
        .await?;
    println!("Deleted domain {name}");
    Ok(())
}
