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
    pub outbound_allow: Vec<paas_runtime::network::Ipv4Net>,
    /// The host routes between its other networks: leave that traffic alone.
    pub host_routes: bool,
    /// The `paas-init` binary.
    pub init_exe: PathBuf,
    /// How long one staging may take.
    pub staging_timeout: Duration,
    /// How long an instance may take to pass its first health check.
    pub start_timeout: Duration,
    /// How long an app may take to start answering a request (then 504).
    pub response_timeout: Duration,
    /// How long to keep serving, with /health failing, after a stop is asked for.
    pub drain: Duration,
}

/// What one paasd does in a cluster (`--roles`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Roles {
    /// The API and orchestration, a cell and a router: a whole platform (the default).
    All,
    /// Only a cell: runs the instances placed on it (`--etcd-endpoints` required).
    Cell,
}

impl Roles {
    /// Reads `--roles`: a comma-separated list of `controller`, `cell` and `router`.
    pub fn parse(text: &str) -> Result<Roles, String> {
        let mut set: Vec<&str> = text.split(',').map(str::trim).collect();
        set.sort_unstable();
        set.dedup();
        for r in &set {
            if !["cell", "controller", "router"].contains(r) {
                return Err(format!(
                    "unknown role {r:?}: roles are controller, cell and router"
                ));
            }
        }
        match set.as_slice() {
            ["cell", "controller", "router"] => Ok(Roles::All),
            ["cell"] => Ok(Roles::Cell),
            _ => Err(format!(
                "--roles {text}: a paasd runs all three roles, or only `cell`; for a router on its own, run paas-router --etcd-endpoints"
            )),
        }
    }
}
