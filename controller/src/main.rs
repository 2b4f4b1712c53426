//! `paasd`: the paas daemon. See the `paas_controller` crate for what it does.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;

/// The paas daemon: API, stager, runtime and router on one host.
///
/// At first start it creates the data folder with a self-signed TLS certificate for the
/// API (api-cert.pem) and an admin token (admin-token, mode 0600). Point the CLI at it:
///
///   paas login --api https://127.0.0.1:9443 --token "$(cat /var/lib/paas/admin-token)" --ca-cert /var/lib/paas/api-cert.pem
///
/// It must run as root: it makes namespaces, cgroups and network links for apps.
///
/// Its router (paas-router, next to paasd) and the apps' instances are processes of
/// their own: if paasd dies they go on serving, and the next paasd on the same data
/// folder takes them over. SIGTERM or Ctrl-C stops everything (after --drain-seconds);
/// SIGQUIT stops only paasd, for an upgrade in place: start the new binary after it.
#[derive(Debug, Parser)]
#[command(name = "paasd", version)]
struct Args {
    /// Where state lives: database, blobs, certificates, logs.
    #[arg(long, default_value = "/var/lib/paas", value_name = "DIR")]
    data_dir: PathBuf,
    /// Keep apps, releases, routes and every other record in this etcd cluster (v3 API,
    /// `http://HOST:PORT`, comma-separated or repeated) instead of the embedded SQLite
    /// database in --data-dir. Packages, droplets and logs stay in --data-dir.
    #[arg(long, value_delimiter = ',', value_name = "URL")]
    etcd_endpoints: Vec<String>,
    /// The address routers on other hosts reach this host's instances at: each running
    /// instance gets a port on it, published in the state store (--etcd-endpoints).
    /// Without it, only this host's router reaches them.
    #[arg(long, value_name = "IP")]
    advertise_address: Option<std::net::Ipv4Addr>,
    /// What this paasd does, any of `controller` (the API and orchestration), `cell`
    /// (runs instances) and `router` (routes app traffic on --http-listen and
    /// --https-listen). `cell` alone is a host that runs the instances the cluster's
    /// controllers place on it (needs --etcd-endpoints and --advertise-address); a
    /// controller without `cell` runs no instance and has its apps staged on a cell's
    /// host (needs --etcd-endpoints).
    #[arg(long, default_value = "controller,cell,router", value_name = "ROLES", value_parser = paas_controller::Roles::parse)]
    roles: paas_controller::Roles,
    /// In a cluster (--etcd-endpoints): the port on --advertise-address where this host
    /// serves droplets to the others, over TLS with the cluster's own certificate. 0
    /// takes any free port (the one taken is published in etcd).
    #[arg(long, default_value_t = paas_controller::peer::DEFAULT_PORT, value_name = "PORT")]
    peer_port: u16,
    /// Address of the HTTPS API.
    #[arg(long, default_value = "127.0.0.1:9443", value_name = "ADDR")]
    api_listen: SocketAddr,
    /// Address of the router, where apps answer.
    #[arg(long, default_value = "0.0.0.0:8080", value_name = "ADDR")]
    http_listen: SocketAddr,
    /// Address of the router's HTTPS, with a certificate per domain (`paas create-domain
    /// --cert`) and a self-signed one for DOMAIN and *.DOMAIN otherwise.
    #[arg(long, default_value = "0.0.0.0:8443", value_name = "ADDR")]
    https_listen: SocketAddr,
    /// A network of proxies in front of the router (e.g. a load balancer) whose
    /// X-Forwarded-For/-Proto/-Host headers are kept; repeatable. From others they are
    /// replaced.
    #[arg(long = "trusted-proxy", value_name = "CIDR", value_parser = paas_router::trust::Cidr::parse)]
    trusted_proxies: Vec<paas_router::trust::Cidr>,
    /// The most client connections the router holds open at once, HTTP and HTTPS
    /// together; more are closed at accept (plain HTTP gets a short 503 first).
    #[arg(long, default_value_t = 10_000, value_name = "N")]
    max_connections: usize,
    /// The most connections the router holds open at once from one client address; more
    /// are closed at accept. Trusted proxies (--trusted-proxy) are held to
    /// --max-connections only.
    #[arg(long, default_value_t = 1_000, value_name = "N")]
    max_connections_per_client: usize,
    /// Address of the router's /health and /metrics (Prometheus).
    #[arg(long, default_value = "127.0.0.1:9080", value_name = "ADDR")]
    admin_listen: SocketAddr,
    /// Apps answer at NAME.DOMAIN; with "localhost", at http://NAME.localhost:PORT.
    #[arg(long, default_value = "localhost")]
    domain: String,
    /// The IPv4 network instance addresses are taken from, a /31 per instance.
    #[arg(long, default_value = "10.244.0.0/16", value_name = "CIDR")]
    instance_cidr: String,
    /// A network that instances allowed outbound access may reach although it is
    /// private, link-local, carrier-grade NAT or a cloud metadata address (all refused
    /// otherwise), such as a database on the host's LAN; repeatable.
    #[arg(long = "outbound-allow", value_name = "CIDR")]
    outbound_allow: Vec<paas_egress::Ipv4Net>,
    /// A network that syslog drains (a bound service's `-l URL`) may reach although it
    /// is private, loopback, link-local, carrier-grade NAT, a cloud metadata address or
    /// this host's own (all refused otherwise, since the URL is a tenant's), such as a
    /// log server on the host's LAN; repeatable.
    #[arg(long = "drain-allow", value_name = "CIDR")]
    drain_allow: Vec<paas_egress::Ipv4Net>,
    /// A network route services (`paas bind-route-service`) may be reached in,
    /// although it is private, loopback, link-local, a cloud metadata address or this
    /// host's own (refused otherwise, as for drains); repeatable. The router checks
    /// their certificates against the host's CAs and those of SSL_CERT_FILE.
    #[arg(long = "route-service-allow", value_name = "CIDR")]
    route_service_allow: Vec<paas_egress::Ipv4Net>,
    /// This host is meant to route between its other networks (a gateway, or Docker on
    /// the same host): keep forwarding that traffic. Otherwise paasd drops it, because
    /// the IP forwarding it turns on for instances' outbound access would make the host
    /// a router for anyone on its networks.
    #[arg(long)]
    host_routes: bool,
    /// The paas-init binary [default: next to paasd].
    #[arg(long, value_name = "PATH")]
    init_path: Option<PathBuf>,
    /// Seconds a staging may take before it is stopped.
    #[arg(long, default_value_t = 900, value_name = "SECONDS")]
    staging_timeout: u64,
    /// Seconds an instance may take to pass its first health check.
    #[arg(long, default_value_t = 60, value_name = "SECONDS")]
    start_timeout: u64,
    /// Seconds an app may take to start answering a request; then the client gets 504.
    #[arg(long, default_value_t = 300, value_name = "SECONDS")]
    response_timeout: u64,
    /// On SIGTERM: seconds to keep serving while the router's /health already fails, so a
    /// load balancer in front stops sending traffic first.
    #[arg(long, default_value_t = 0, value_name = "SECONDS")]
    drain_seconds: u64,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Stacks apps are built and run on.
    #[command(subcommand)]
    Stack(StackCommand),
}

#[derive(Debug, clap::Subcommand)]
enum StackCommand {
    /// Build a stack: a Debian root filesystem (mmdebstrap, from this host's apt
    /// sources) that apps are built and run on, kept under --data-dir/stacks. A running
    /// paasd offers it from its next start; new apps get it by default.
    Build {
        /// Its name, as `paas push -s NAME` and CF_STACK say it.
        #[arg(long, default_value = paas_controller::stacks::DEFAULT_NAME)]
        name: String,
        /// The Debian packages it holds (comma-separated) [default: shells, CA
        /// certificates, curl, python3 with pip and venv, nodejs, nginx, Go, PHP-FPM,
        /// tzdata and common libraries].
        #[arg(long, value_delimiter = ',', value_name = "PACKAGES")]
        packages: Vec<String>,
    },
    /// List the stacks built here.
    List,
}

/// `paasd stack ...`.
fn stack_command(data_dir: &std::path::Path, command: StackCommand) -> anyhow::Result<()> {
    let dir = data_dir.join("stacks");
    match command {
        StackCommand::Build { name, packages } => {
            let packages = if packages.is_empty() {
                paas_controller::stacks::DEFAULT_PACKAGES
                    .iter()
                    .map(|p| p.to_string())
                    .collect()
            } else {
                packages
            };
            eprintln!(
                "Building stack {name} from Debian {} ({} packages and what they need)...",
                paas_controller::stacks::SUITE,
                packages.len()
            );
            let built = paas_controller::stacks::build(&dir, &name, &packages)?;
            println!(
                "Built stack {} ({} packages, id {}); paasd offers it from its next start",
                built.name,
                built.packages.len(),
                &built.id[..12]
            );
        }
        StackCommand::List => {
            println!("host (this host's own userland)");
            for s in paas_controller::stacks::current(&dir) {
                println!(
                    "{} (Debian {}, {} packages, id {})",
                    s.name,
                    s.suite,
                    s.packages.len(),
                    &s.id[..12.min(s.id.len())]
                );
            }
        }
    }
    Ok(())
}

/// glibc arenas paasd's allocator may use (`paas_runtime::memory::settle_for_daemon`):
/// its tokio workers and blocking threads share them.
const MALLOC_ARENAS: u32 = 2;

fn main() {
    paas_runtime::memory::settle_for_daemon(MALLOC_ARENAS);
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PAASD_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Err(e) = real_main(Args::parse()) {
        eprintln!("paasd: {e:#}");
        std::process::exit(1);
    }
}

/// Raises the open-file limit to the hard one: the router's connection caps (10 000 by
/// default) mean nothing if the daemon runs out of descriptors first, and the stager,
/// containers and database share them. Containers get their own limit.
fn raise_open_file_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => {
            if let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
                tracing::warn!("raising the open-file limit from {soft} to {hard}: {e}");
            }
        }
        Ok(_) => {}
        Err(e) => tracing::warn!("reading the open-file limit: {e}"),
    }
}

fn real_main(args: Args) -> anyhow::Result<()> {
    if let Some(Command::Stack(command)) = args.command {
        return stack_command(&args.data_dir, command);
    }
    raise_open_file_limit();
    let init_exe = match args.init_path {
        Some(p) => p,
        None => std::env::current_exe()
            .context("finding paasd's own path")?
            .with_file_name("paas-init"),
    };
    anyhow::ensure!(
        init_exe.is_file(),
        "{} is missing: build it with `cargo build --workspace`, or give --init-path",
        init_exe.display()
    );
    let router_exe = std::env::current_exe()
        .context("finding paasd's own path")?
        .with_file_name("paas-router");
    anyhow::ensure!(
        nix::unistd::geteuid().is_root(),
        "paasd must run as root: it creates namespaces, cgroups and network links for apps"
    );
    let domain = args.domain.trim_end_matches('.').to_ascii_lowercase();
    anyhow::ensure!(
        paas_router::host::normalise(&domain).as_deref() == Some(domain.as_str()),
        "--domain {:?} is not a valid domain name",
        args.domain
    );
    let cfg = paas_controller::Config {
        data_dir: args.data_dir,
        etcd_endpoints: args.etcd_endpoints,
        advertise_address: args.advertise_address,
        peer_port: args.peer_port,
        roles: args.roles,
        api_listen: args.api_listen,
        http_listen: args.http_listen,
        https_listen: args.https_listen,
        trusted_proxies: args.trusted_proxies,
        max_connections: args.max_connections.max(1),
        max_connections_per_client: args.max_connections_per_client.max(1),
        admin_listen: args.admin_listen,
        domain,
        instance_cidr: args.instance_cidr,
        outbound_allow: args.outbound_allow,
        drain_allow: args.drain_allow,
        route_service_allow: args.route_service_allow,
        host_routes: args.host_routes,
        router_exe,
        init_exe,
        staging_timeout: Duration::from_secs(args.staging_timeout),
        start_timeout: Duration::from_secs(args.start_timeout),
        response_timeout: Duration::from_secs(args.response_timeout.max(1)),
        drain: Duration::from_secs(args.drain_seconds),
    };
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    rt.block_on(paas_controller::run(cfg, shutdown_signal()))
}

/// SIGTERM and Ctrl-C stop everything; SIGQUIT hands over to the next paasd.
async fn shutdown_signal() -> paas_controller::Stop {
    use paas_controller::Stop;
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut quit)) =
        (signal(SignalKind::terminate()), signal(SignalKind::quit()))
    else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => Stop::Everything,
        _ = tokio::signal::ctrl_c() => Stop::Everything,
        _ = quit.recv() => Stop::HandOver,
    }
}
