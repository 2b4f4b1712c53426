//! What `paasd` is told at start.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Config {
    /// Everything the daemon keeps: database, blobs, certificates, logs.
    pub data_dir: PathBuf,
    /// The etcd cluster that holds the platform's records; empty for the embedded
    /// SQLite database in `data_dir`.
    pub etcd_endpoints: Vec<String>,
    /// Where other hosts reach this host's instances (through a port per instance);
    /// `None`: only this host's router reaches them.
    pub advertise_address: Option<std::net::Ipv4Addr>,
    /// Where, on the advertised address, this host serves blobs to the others of its
    /// cluster (0: any free port; the one taken is published).
    pub peer_port: u16,
    /// What this host does.
    pub roles: Roles,
    pub api_listen: SocketAddr,
    /// Where the router listens for app traffic.
    pub http_listen: SocketAddr,
    /// Where the router listens for HTTPS app traffic.
    pub https_listen: SocketAddr,
    /// Proxies in front of the router whose forwarding headers are kept.
    pub trusted_proxies: Vec<paas_router::trust::Cidr>,
    /// The most client connections the router holds open at once, HTTP and HTTPS.
    pub max_connections: usize,
    /// The most connections the router holds open at once from one client address
    /// (trusted proxies excepted).
    pub max_connections_per_client: usize,
    /// Where the router's `/health` and `/metrics` answer.
    pub admin_listen: SocketAddr,
    /// Apps answer at `NAME.DOMAIN`.
    pub domain: String,
    /// The pool instance addresses come from.
    pub instance_cidr: String,
    /// Networks instances with outbound access may reach although they are private.
    pub outbound_allow: Vec<paas_egress::Ipv4Net>,
    /// Networks syslog drains may reach although they are private (or loopback, …).
    pub drain_allow: Vec<paas_egress::Ipv4Net>,
    /// Networks the router may reach route services in although they are private.
    pub route_service_allow: Vec<paas_egress::Ipv4Net>,
    /// The host routes between its other networks: leave that traffic alone.
    pub host_routes: bool,
    /// The `paas-init` binary.
    pub init_exe: PathBuf,
    /// The `paas-router` binary, which paasd runs as this host's router.
    pub router_exe: PathBuf,
    /// How long one staging may take.
    pub staging_timeout: Duration,
    /// How long an instance may take to pass its first health check.
    pub start_timeout: Duration,
    /// How long an app may take to start answering a request (then 504).
    pub response_timeout: Duration,
    /// How long to keep serving, with /health failing, after a stop is asked for.
    pub drain: Duration,
}

/// What one paasd does (`--roles`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roles {
    /// The API and orchestration.
    pub controller: bool,
    /// Runs instances: on one host every instance; in a cluster those placed on it.
    pub cell: bool,
    /// The router, fed by this controller.
    pub router: bool,
}

impl Roles {
    /// Every role: a whole platform on one host (the default).
    pub const ALL: Roles = Roles {
        controller: true,
        cell: true,
        router: true,
    };

    /// A cell on its own.
    pub fn cell_alone(&self) -> bool {
        self.cell && !self.controller
    }

    /// Reads `--roles`: a comma-separated list of `controller`, `cell` and `router`.
    pub fn parse(text: &str) -> Result<Roles, String> {
        let mut roles = Roles {
            controller: false,
            cell: false,
            router: false,
        };
        for r in text.split(',').map(str::trim) {
            match r {
                "controller" => roles.controller = true,
                "cell" => roles.cell = true,
                "router" => roles.router = true,
                _ => {
                    return Err(format!(
                        "unknown role {r:?}: roles are controller, cell and router"
                    ))
                }
            }
        }
        if roles.router && !roles.controller {
            return Err(format!(
                "--roles {text}: a router without a controller follows etcd on its own: run paas-router --etcd-endpoints"
            ));
        }
        if !roles.controller && !roles.cell {
            return Err("--roles: give controller, cell, or both".to_string());
        }
        Ok(roles)
    }
}

#[cfg(test)]
mod tests {
    use super::Roles;

    #[test]
    fn roles_are_read_in_any_order_and_nonsense_is_refused() {
        assert_eq!(Roles::parse("router,cell,controller"), Ok(Roles::ALL));
        let cell = Roles::parse("cell").unwrap();
        assert!(cell.cell_alone());
        let control = Roles::parse("controller, router").unwrap();
        assert!(control.controller && control.router && !control.cell);
        assert!(Roles::parse("router").unwrap_err().contains("paas-router"));
        assert!(Roles::parse("cell,router").is_err());
        assert!(Roles::parse("controler")
            .unwrap_err()
            .contains("unknown role"));
        assert!(Roles::parse("").is_err());
    }
}
