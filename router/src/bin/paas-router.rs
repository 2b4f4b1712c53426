//! `paas-router`: the paas router on its own, for edge hosts. It takes its routes from
//! the platform's etcd (a watch: `paas_router::follow`), from a `paasd` (polling `GET
//! /v1/routes`) or from `--route` flags, and serves app traffic.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use paas_api::{CertificateEntry, Route, RouteBackend, RouteEntry};
use paas_router::{RouteTable, Router};

/// Routes HTTP traffic for paas apps, apart from paasd.
///
/// With --etcd-endpoints it follows the platform's routes and instances in etcd as they
/// change (cells on other hosts must run with --advertise-address); with --api it
/// follows one daemon's route table (polled every second); with --route it serves fixed
/// routes (for tests and benchmarks). --route may be given with either.
#[derive(Debug, Parser)]
#[command(name = "paas-router", version)]
struct Args {
    /// Where to listen for app traffic.
    #[arg(long, default_value = "0.0.0.0:8080", value_name = "ADDR")]
    listen: SocketAddr,
    /// Where to listen for HTTPS app traffic: with the daemon's certificates (--api), and
    /// --cert/--key as the default.
    #[arg(long, value_name = "ADDR")]
    https_listen: Option<SocketAddr>,
    /// The PEM certificate chain HTTPS serves (a wildcard one, *.DOMAIN, serves every app).
    #[arg(long, value_name = "FILE", requires = "key")]
    cert: Option<std::path::PathBuf>,
    /// The PEM private key of --cert.
    #[arg(long, value_name = "FILE", requires = "cert")]
    key: Option<std::path::PathBuf>,
    /// Where /health and /metrics (Prometheus) answer.
    #[arg(long, default_value = "127.0.0.1:8081", value_name = "ADDR")]
    admin_listen: SocketAddr,
    /// On SIGTERM or Ctrl-C: seconds to keep serving while /health already fails, so a
    /// load balancer in front stops sending traffic first.
    #[arg(long, default_value_t = 5, value_name = "SECONDS")]
    drain_seconds: u64,
    /// Print an access log line per request on stdout.
    #[arg(long)]
    access_log: bool,
    /// The most requests under way to one instance; more are answered with 503.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    max_requests_per_instance: usize,
    /// A network of proxies in front of this router (e.g. a load balancer) whose
    /// X-Forwarded-For/-Proto/-Host headers are kept; repeatable. From others they are
    /// replaced.
    #[arg(long = "trusted-proxy", value_name = "CIDR", value_parser = paas_router::trust::Cidr::parse)]
    trusted_proxies: Vec<paas_router::trust::Cidr>,
    /// A network route services (`paas bind-route-service`) may be reached in although
    /// it is private, loopback, link-local, carrier-grade NAT, a cloud metadata address
    /// or this host's own (all refused otherwise, since the URL is a tenant's);
    /// repeatable. Their certificates are checked against the host's CAs and those of
    /// the file SSL_CERT_FILE names.
    #[arg(long = "route-service-allow", value_name = "CIDR")]
    route_service_allow: Vec<paas_egress::Ipv4Net>,
    /// Seconds an app may take to start answering a request; then the client gets 504.
    #[arg(long, default_value_t = 300, value_name = "SECONDS")]
    response_timeout: u64,
    /// The most client connections open at once, HTTP and HTTPS together; more are
    /// closed at accept (plain HTTP gets a short 503 first).
    #[arg(long, default_value_t = 10_000, value_name = "N")]
    max_connections: usize,
    /// The most connections open at once from one client address; more are closed at
    /// accept. Trusted proxies (--trusted-proxy) are held to --max-connections only.
    #[arg(long, default_value_t = 1_000, value_name = "N")]
    max_connections_per_client: usize,
    /// Seconds an HTTP/2 connection may stay with no request open (PINGs do not count);
    /// then it gets a GOAWAY and is closed.
    #[arg(long, default_value_t = 60, value_name = "SECONDS")]
    http2_idle_timeout: u64,
    /// Seconds a WebSocket may pass no byte either way; then it is closed.
    #[arg(long, default_value_t = 300, value_name = "SECONDS")]
    websocket_idle_timeout: u64,
    /// The most WebSockets open at once; more are answered with 503.
    #[arg(long, default_value_t = 10_000, value_name = "N")]
    max_websockets: usize,
    /// Worker threads [default: one per core].
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// A fixed route: HOST[/PATH]=ADDR[,ADDR...], e.g. app.example.com=10.0.0.2:8080.
    #[arg(long = "route", value_name = "HOST=ADDRS")]
    routes: Vec<String>,
    /// The platform's etcd cluster (`http://HOST:2379`, comma-separated or repeated), to
    /// follow routes, instances and certificates from.
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "URL",
        conflicts_with = "api"
    )]
    etcd_endpoints: Vec<String>,
    /// The daemon's API, e.g. https://10.0.0.1:9443, to take routes from.
    #[arg(long, value_name = "URL", requires = "token")]
    api: Option<String>,
    /// A token for the API.
    #[arg(long, env = "PAAS_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The API's certificate (paasd's api-cert.pem).
    #[arg(long, value_name = "FILE")]
    ca_cert: Option<std::path::PathBuf>,
    /// Follow the paasd of this host through the Unix socket FILE, which the router
    /// makes: paasd starts its router this way, and it keeps routing with the last table
    /// while paasd is away. Started as root, it serves as nobody.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["api", "etcd_endpoints"])]
    feed: Option<std::path::PathBuf>,
}

fn main() {
    let args = Args::parse();
    settle_allocator(args.threads);
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PAAS_ROUTER_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Err(e) = run(args) {
        eprintln!("paas-router: {e}");
        std::process::exit(1);
    }
}

/// glibc's allocator as paasd has it (`paas_runtime::memory`): an arena per worker
/// thread and one for the main thread, the access log's writer and tokio's blocking
/// threads, where glibc would make up to eight per core and keep each one's free pages
/// (the main thread takes glibc's first arena and each worker the next one free, so no
/// two workers share one); blocks of 128 KiB and more mapped apart, so a big transient
/// leaves nothing resident; and the free pages handed back every 15 s (`run`). Called
/// before any other thread starts.
fn settle_allocator(threads: Option<usize>) {
    let workers = threads.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    let arenas = workers.max(1).saturating_add(1);
    paas_runtime::memory::settle_for_daemon(u32::try_from(arenas).unwrap_or(u32::MAX));
}

/// How often the router hands its allocator's free pages back, as paasd does at each
/// of its usage readings.
const TRIM_EVERY: Duration = Duration::from_secs(15);

fn fixed_routes(flags: &[String]) -> Result<Vec<RouteEntry>, String> {
    flags
        .iter()
        .map(|f| {
            let (route, addrs) = f
                .split_once('=')
                .ok_or_else(|| format!("--route {f:?}: write it as HOST[/PATH]=ADDR[,ADDR...]"))?;
            let route = Route::parse(route).map_err(|e| format!("--route {f:?}: {e}"))?;
            let backends = addrs
                .split(',')
                .enumerate()
                .map(|(i, a)| {
                    a.parse::<SocketAddr>()
                        .map(|addr| RouteBackend {
                            addr: addr.to_string(),
                            index: i as u32,
                        })
                        .map_err(|_| format!("--route {f:?}: {a:?} is not an IP:PORT address"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let host = route.host();
            Ok(RouteEntry {
                host: host.to_string(),
                path: route.path().to_string(),
                app: Some(host.split('.').next().unwrap_or(host).to_string()),
                balance: Default::default(),
                max_body_bytes: None,
                route_service_url: None,
                route_service_key: None,
                backends,
            })
        })
        .collect()
}

fn run(args: Args) -> Result<(), String> {
    let fixed = fixed_routes(&args.routes)?;
    let follows = args.api.is_some() || !args.etcd_endpoints.is_empty() || args.feed.is_some();
    if fixed.is_empty() && !follows {
        return Err(
            "no routes: give --etcd-endpoints URL to follow the platform's etcd, --api URL --token TOKEN to follow a paasd, --feed FILE to be fed by the paasd of this host, or --route HOST=ADDR"
                .into(),
        );
    }
    // One thread: a current-thread runtime, which skips the work-stealing machinery.
    let mut rt = match args.threads {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        Some(n) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n.max(1));
            b
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    let rt = rt.enable_all().build().map_err(|e| e.to_string())?;
    rt.block_on(async move {
        tokio::spawn(async {
            let mut every = tokio::time::interval(TRIM_EVERY);
            loop {
                every.tick().await;
                paas_runtime::memory::release_free_memory_and_report();
            }
        });
        let mut router = Router::with_config(paas_router::RouterConfig {
            max_requests_per_instance: args.max_requests_per_instance.max(1),
            trusted_proxies: args.trusted_proxies.clone(),
            response_timeout: Duration::from_secs(args.response_timeout.max(1)),
            max_connections: args.max_connections.max(1),
            max_connections_per_client: args.max_connections_per_client.max(1),
            http2_idle_timeout: Duration::from_secs(args.http2_idle_timeout.max(1)),
            websocket_idle_timeout: Duration::from_secs(args.websocket_idle_timeout.max(1)),
            max_websockets: args.max_websockets,
            route_service_allow: args.route_service_allow.clone(),
            ..Default::default()
        });
        let relay = Arc::new(paas_router::feed::AccessRelay::default());
        if args.feed.is_some() {
            let relay = Arc::clone(&relay);
            router = router.with_queued_access_log(
                paas_router::ops::ACCESS_QUEUE,
                move |batch: &[paas_router::ops::AccessLog]| relay.send(batch),
            );
        } else if args.access_log {
            router = router.with_queued_access_log(
                paas_router::ops::ACCESS_QUEUE,
                |batch: &[paas_router::ops::AccessLog]| {
                    use std::io::Write;
                    let mut out = std::io::stdout().lock();
                    for e in batch {
                        let _ = writeln!(out, "{}", e.line());
                    }
                    let _ = out.flush();
                },
            );
        }
        let router = Arc::new(router);
        router.update(RouteTable::from_entries(&fixed));
        // --cert/--key: the default certificate, whatever the daemon has.
        let fixed_cert = match (&args.cert, &args.key) {
            (Some(cert), Some(key)) => {
                let read = |p: &std::path::Path| {
                    std::fs::read_to_string(p).map_err(|e| format!("reading {}: {e}", p.display()))
                };
                let ck = paas_router::tls::certified_key(&read(cert)?, &read(key)?)
                    .map_err(|e| format!("--cert/--key: {e}"))?;
                Some(Arc::new(ck))
            }
            _ => None,
        };
        if args.https_listen.is_some() && fixed_cert.is_none() && !follows {
            return Err("--https-listen needs certificates: give --cert and --key, or --etcd-endpoints or --api to serve the platform's".into());
        }
        router
            .certificates()
            .update(paas_router::tls::Certificates::new(fixed_cert.clone()));
        if !args.etcd_endpoints.is_empty() {
            let kv = paas_kv::etcd::connect(&args.etcd_endpoints)
                .await
                .map_err(|e| {
                    format!(
                        "connecting to etcd at {} (--etcd-endpoints): {e}",
                        args.etcd_endpoints.join(",")
                    )
                })?;
            tokio::spawn(paas_router::follow::follow(
                kv,
                Arc::clone(&router),
                fixed.clone(),
                fixed_cert.clone(),
            ));
        }
        if let Some(api) = args.api {
            let tls = tls_config(args.ca_cert.as_deref())?;
            let token = args.token.unwrap_or_default();
            let source = Daemon { api, token, tls };
            tokio::spawn(follow(source, fixed, fixed_cert, Arc::clone(&router)));
        }
        let listener = listen(args.listen)?;
        let local = listener.local_addr().map_err(|e| e.to_string())?;
        let https = match args.https_listen {
            Some(addr) => Some(listen(addr)?),
            None => None,
        };
        let admin = listen(args.admin_listen)?;
        let admin_addr = admin.local_addr().map_err(|e| e.to_string())?;
        let fed = match &args.feed {
            Some(path) => {
                let hello = paas_router::feed::Hello {
                    pid: std::process::id(),
                    version: env!("CARGO_PKG_VERSION").to_string(),
                    http: local.to_string(),
                    https: match &https {
                        Some(l) => l.local_addr().map_err(|e| e.to_string())?.to_string(),
                        None => String::new(),
                    },
                    admin: admin_addr.to_string(),
                    has_routes: false,
                };
                let feed = feed_socket(path)?;
                // The CAs route services are checked against, read while they can be.
                if let Err(e) = paas_egress::tls_client_config() {
                    tracing::warn!("route services cannot be reached over HTTPS: {e}");
                }
                drop_privileges()?;
                Some(tokio::spawn(paas_router::feed::serve(
                    feed,
                    Arc::clone(&router),
                    Arc::clone(&relay),
                    hello,
                )))
            }
            None => None,
        };
        tokio::spawn(Arc::clone(&router).run_admin(admin, std::future::pending()));
        let https_addr = match &https {
            Some(l) => format!(" https={}", l.local_addr().map_err(|e| e.to_string())?),
            None => String::new(),
        };
        println!("paas-router ready listen={local}{https_addr} admin={admin_addr}");
        let metrics = router.metrics();
        let drain = Duration::from_secs(args.drain_seconds);
        // Draining: /health fails first, traffic is still served for the drain window,
        // then the listener closes.
        let (stop, stopping) = tokio::sync::watch::channel(false);
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let tls_task = https.map(|l| {
            let serve = Arc::clone(&router).run_tls(l, stopped(stopping.clone()));
            tokio::spawn(serve)
        });
        let plain_task = tokio::spawn(Arc::clone(&router).run(listener, stopped(stopping)));
        match fed {
            // paasd says when to stop, after its own drain.
            Some(fed) => tokio::select! {
                _ = fed => {}
                _ = terminated() => {}
            },
            None => terminated().await,
        }
        if !drain.is_zero() {
            tracing::info!("draining for {}s", drain.as_secs());
            metrics.begin_drain();
            tokio::time::sleep(drain).await;
        }
        // Listeners close; requests under way finish before the process exits.
        let _ = stop.send(true);
        let _ = plain_task.await;
        if let Some(t) = tls_task {
            t.await.map_err(|e| e.to_string())??;
        }
        Ok(())
    })
}

/// A listener on `addr`.
fn listen(addr: SocketAddr) -> Result<tokio::net::TcpListener, String> {
    let listener = std::net::TcpListener::bind(addr)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .map_err(|e| format!("listening on {addr}: {e}"))?;
    tokio::net::TcpListener::from_std(listener).map_err(|e| format!("listening on {addr}: {e}"))
}

/// The Unix socket paasd feeds this router through, made anew (a stale file of a
/// router that died is replaced), closed to everyone but root.
fn feed_socket(path: &std::path::Path) -> Result<tokio::net::UnixListener, String> {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::remove_file(path);
    let listener = tokio::net::UnixListener::bind(path)
        .map_err(|e| format!("listening on {}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("closing {} to others: {e}", path.display()))?;
    Ok(listener)
}

/// Started as root (by paasd), the router needs no privilege once its sockets are
/// open: it goes on as nobody, with no capabilities, so a flaw in the part of the
/// platform that parses every client's bytes does not hand out root.
fn drop_privileges() -> Result<(), String> {
    use nix::unistd::{getuid, setgid, setgroups, setuid, Gid, Uid};
    if !getuid().is_root() {
        return Ok(());
    }
    const NOBODY: u32 = 65534;
    setgroups(&[])
        .and_then(|()| setgid(Gid::from_raw(NOBODY)))
        .and_then(|()| setuid(Uid::from_raw(NOBODY)))
        .map_err(|e| format!("becoming nobody: {e}"))
}

/// Completes on SIGTERM or Ctrl-C.
async fn terminated() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

fn tls_config(ca: Option<&std::path::Path>) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    let ca = ca.ok_or("--api needs --ca-cert FILE (paasd's api-cert.pem)")?;
    let pem = std::fs::read(ca).map_err(|e| format!("reading {}: {e}", ca.display()))?;
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots
            .add(cert.map_err(|e| format!("{}: {e}", ca.display()))?)
            .map_err(|e| format!("{}: {e}", ca.display()))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

/// The daemon a router follows.
struct Daemon {
    api: String,
    token: String,
    tls: Arc<rustls::ClientConfig>,
}

/// Keeps the router's routes and certificates in step with the daemon's, polling every
/// second; `fixed` routes and the `fixed_cert` default are kept whatever it says.
async fn follow(
    daemon: Daemon,
    fixed: Vec<RouteEntry>,
    fixed_cert: Option<Arc<rustls::sign::CertifiedKey>>,
    router: Arc<Router>,
) {
    let mut last: Option<Vec<RouteEntry>> = None;
    let mut last_certs: Option<Vec<CertificateEntry>> = None;
    loop {
        match fetch_all::<RouteEntry>(&daemon, "/v1/routes?per_page=1000").await {
            Ok(mut routes) => {
                routes.extend(fixed.iter().cloned());
                if last.as_ref() != Some(&routes) {
                    tracing::info!(routes = routes.len(), "route table updated");
                    router.update(RouteTable::from_entries(&routes));
                    last = Some(routes);
                }
            }
            Err(e) => tracing::warn!("reading routes from {}: {e}", daemon.api),
        }
        match fetch_all::<CertificateEntry>(&daemon, "/v1/certificates?per_page=1000").await {
            Ok(certs) if last_certs.as_ref() != Some(&certs) => {
                router
                    .certificates()
                    .update(paas_router::tls::Certificates::from_entries(
                        &certs,
                        fixed_cert.clone(),
                    ));
                tracing::info!(certificates = certs.len(), "certificates updated");
                last_certs = Some(certs);
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("reading certificates from {}: {e}", daemon.api),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Every item of a list the daemon serves in pages, following each page's Link header.
async fn fetch_all<T: serde::de::DeserializeOwned>(
    daemon: &Daemon,
    first: &str,
) -> Result<Vec<T>, String> {
    use http_body_util::BodyExt;
    let api = &daemon.api;
    let uri: http::Uri = api.parse().map_err(|_| format!("{api} is not a URL"))?;
    let host = uri.host().ok_or("the API URL has no host")?.to_string();
    let port = uri.port_u16().unwrap_or(443);
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| e.to_string())?;
    let name = rustls::pki_types::ServerName::try_from(host.clone()).map_err(|e| e.to_string())?;
    let stream = tokio_rustls::TlsConnector::from(Arc::clone(&daemon.tls))
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let (mut send, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let mut all = Vec::new();
    let mut next = Some(first.to_string());
    while let Some(path) = next.take() {
        send.ready().await.map_err(|e| e.to_string())?;
        let req = http::Request::get(format!("{}{path}", api.trim_end_matches('/')))
            .header(http::header::HOST, format!("{host}:{port}"))
            .header(
                http::header::AUTHORIZATION,
                format!("Bearer {}", daemon.token),
            )
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .map_err(|e| e.to_string())?;
        let resp = send.send_request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status();
        next = resp
            .headers()
            .get(http::header::LINK)
            .and_then(|v| v.to_str().ok())
            .and_then(paas_api::next_page_link);
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        if !status.is_success() {
            return Err(format!(
                "the API answered {status}: {}",
                String::from_utf8_lossy(&body)
            ));
        }
        let page: Vec<T> = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
        if page.is_empty() {
            break;
        }
        all.extend(page);
    }
    Ok(all)
}
