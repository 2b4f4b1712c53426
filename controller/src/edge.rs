//! This host's router, as paasd sees it: a process of its own (`paas-router --feed`),
//! so that app traffic goes on, with the last route table, while paasd is killed,
//! restarted or replaced by a new binary.
//!
//! At start paasd finds the router its last run left (the socket named in
//! `DATA/router/current`) or starts one, and feeds it ([`paas_router::feed`]) from a
//! task of its own: certificates and the whole route table whenever either changes,
//! once [`Edge::open`] says the table is whole (after the instances of paasd's last run
//! were taken over, so a restart never publishes a table without them). A router that
//! runs another binary or other settings than this paasd would start is told to stop
//! (it closes its listeners at once) and a new one takes the same ports as soon as they
//! are free. A router that dies is started again on the same ports. The router's access
//! log comes back over the same socket.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use paas_api::{CertificateEntry, RouteEntry};
use paas_router::feed::{read_line, AccessLine, FromRouter, Hello, ToRouter};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;
use tokio::sync::{mpsc, watch};

use crate::Config;

/// The longest line paasd reads from its router (an access batch): the router faces
/// every client and runs as nobody, so what it says is bounded and checked.
const MAX_ROUTER_LINE: usize = 4 << 20;
/// How long a router may take to answer on its socket once started.
const ROUTER_START: Duration = Duration::from_secs(10);

/// Where this host's router serves.
#[derive(Debug, Clone, Copy)]
pub struct RouterAddrs {
    pub http: SocketAddr,
    pub https: SocketAddr,
    pub admin: SocketAddr,
}

/// Where access log lines go (the apps' logs, as `RTR`).
pub type AccessSink = Arc<dyn Fn(&[AccessLine]) + Send + Sync>;

/// paasd's handle on this host's router, or on none (`--roles` without `router`).
pub struct Edge {
    routes: watch::Sender<Option<Arc<Vec<RouteEntry>>>>,
    certificates: watch::Sender<Option<Arc<Vec<CertificateEntry>>>>,
    open: watch::Sender<bool>,
    control: mpsc::UnboundedSender<ToRouter>,
    control_rx: Mutex<Option<mpsc::UnboundedReceiver<ToRouter>>>,
    addrs: Option<RouterAddrs>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// The last `Sync` asked for, and the last the router answered.
    sync_asked: std::sync::atomic::AtomicU64,
    synced: watch::Sender<u64>,
    /// The pid of the router this run started with nothing behind it yet (none was
    /// running): what a start that fails must not leave behind.
    fresh: Option<u32>,
    /// paasd did not start and stopped that router: it is not started again.
    given_up: std::sync::atomic::AtomicBool,
}

/// How long a change waits for the router to apply it before its answer goes out.
const SYNC_WAIT: Duration = Duration::from_secs(2);

impl Edge {
    /// No router on this host: what is published is kept and goes nowhere.
    pub fn none() -> Arc<Self> {
        Arc::new(Self::new(None))
    }

    fn new(addrs: Option<RouterAddrs>) -> Self {
        let (control, control_rx) = mpsc::unbounded_channel();
        Edge {
            routes: watch::channel(None).0,
            certificates: watch::channel(None).0,
            open: watch::channel(false).0,
            control,
            control_rx: Mutex::new(Some(control_rx)),
            addrs,
            task: Mutex::new(None),
            sync_asked: std::sync::atomic::AtomicU64::new(0),
            synced: watch::channel(0).0,
            fresh: None,
            given_up: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// A guard that stops the router this run started, if it did, unless disarmed once
    /// paasd's start has gone through: a paasd that fails to start (etcd unreachable,
    /// a bad flag found late) leaves no router behind. A router an earlier run left is
    /// never stopped so: traffic to its instances goes on.
    pub fn until_started(self: &Arc<Self>) -> FreshRouter {
        FreshRouter {
            armed: self.fresh.map(|pid| (pid, Arc::clone(self))),
        }
    }

    /// Waits (2 s at most) until the router has applied every table and certificate
    /// published so far, so that a change is in effect when its request is answered
    /// (`paas stop` returns, and the app answers 503). Without a router, at once.
    pub async fn sync(&self) {
        if self.addrs.is_none() || !*self.open.borrow() {
            return;
        }
        let n = self
            .sync_asked
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        if self.control.send(ToRouter::Sync(n)).is_err() {
            return;
        }
        let mut synced = self.synced.subscribe();
        let done = tokio::time::timeout(SYNC_WAIT, synced.wait_for(|s| *s >= n)).await;
        if done.is_err() {
            tracing::warn!(
                "the router did not apply a change within {} s",
                SYNC_WAIT.as_secs()
            );
        }
    }

    /// Finds the router paasd's last run left, or starts one, and feeds it from now on
    /// (what is published before [`Edge::open`] is held back).
    pub async fn start(cfg: &Config, access: AccessSink) -> anyhow::Result<Arc<Self>> {
        let dir = cfg.data_dir.join("router");
        crate::data_dir::create_private_dir(&dir)?;
        let launcher = Launcher {
            exe: cfg.router_exe.clone(),
            dir,
            cfg: cfg.clone(),
        };
        let mut fresh = None;
        let (conn, hello) = match launcher.find_running().await {
            Some((conn, hello, socket)) => {
                let addrs = hello_addrs(&hello)?;
                match launcher.is_current(&hello, &addrs) {
                    true => {
                        tracing::info!(
                            pid = hello.pid,
                            "the router of paasd's last run goes on serving"
                        );
                        (conn, hello)
                    }
                    false => {
                        tracing::info!(pid = hello.pid, "the running router is another binary or has other settings: replacing it on the same ports");
                        // It closes its listeners at once and finishes what it serves;
                        // the new one takes the ports as soon as they are free.
                        tokio::spawn(retire(conn, socket.clone()));
                        launcher.spawn_when_free(&addrs, &socket).await?
                    }
                }
            }
            None => {
                let spawned = launcher.spawn(None, None).await?;
                fresh = Some(spawned.1.pid);
                spawned
            }
        };
        let addrs = hello_addrs(&hello)?;
        let edge = Arc::new(Self {
            fresh,
            ..Self::new(Some(addrs))
        });
        let control = edge
            .control_rx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(control) = control {
            let task = tokio::spawn(feed(Arc::clone(&edge), launcher, conn, control, access));
            *edge.task.lock().unwrap_or_else(|p| p.into_inner()) = Some(task);
        }
        Ok(edge)
    }

    /// The router answered `Sync(n)`: everything sent before it is applied.
    fn note_synced(&self, n: u64) {
        self.synced.send_if_modified(|s| {
            let newer = n > *s;
            *s = (*s).max(n);
            newer
        });
    }

    /// Where the router serves, if this host has one.
    pub fn addrs(&self) -> Option<RouterAddrs> {
        self.addrs
    }

    /// Publishes a new route table.
    pub fn publish_routes(&self, entries: Vec<RouteEntry>) {
        self.routes.send_replace(Some(Arc::new(entries)));
    }

    /// Every route table published from now on.
    #[cfg(test)]
    pub fn follow_routes(&self) -> watch::Receiver<Option<Arc<Vec<RouteEntry>>>> {
        self.routes.subscribe()
    }

    /// Publishes the certificates (the default one has `default` set).
    pub fn publish_certificates(&self, entries: Vec<CertificateEntry>) {
        self.certificates.send_replace(Some(Arc::new(entries)));
    }

    /// The route table is whole: the router gets it, and every later one.
    pub fn open(&self) {
        self.open.send_replace(true);
    }

    /// `/health` fails from now on; traffic is still served.
    pub fn drain(&self) {
        let _ = self.control.send(ToRouter::Drain);
    }

    /// Stops the router (it finishes the requests under way) and waits a while for it.
    pub async fn stop(&self) {
        let _ = self.control.send(ToRouter::Stop);
        let task = self.task.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(task) = task {
            if tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .is_err()
            {
                tracing::warn!("the router is still finishing requests; paasd stops without it");
            }
        }
    }
}

/// One connection to a router: its messages in, paasd's out.
struct Conn {
    lines: BufReader<OwnedReadHalf>,
    write: OwnedWriteHalf,
}

impl Conn {
    async fn send(&mut self, msg: &ToRouter) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(msg).map_err(std::io::Error::other)?;
        line.push(b'\n');
        self.write.write_all(&line).await
    }

    /// The router's next message; `None` at the end of the connection.
    async fn next(&mut self) -> Option<FromRouter> {
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match read_line(&mut self.lines, &mut buf, MAX_ROUTER_LINE).await {
                Ok(true) => {}
                Ok(false) => return None,
                Err(e) => {
                    tracing::warn!("reading from the router: {e}");
                    return None;
                }
            }
            match serde_json::from_slice(&buf) {
                Ok(msg) => return Some(msg),
                Err(e) => tracing::warn!("a message from the router that does not parse: {e}"),
            }
        }
    }
}

/// Connects to the router at `socket` and reads its hello.
async fn connect(socket: &Path) -> std::io::Result<(Conn, Hello)> {
    let stream = UnixStream::connect(socket).await?;
    let (read, write) = stream.into_split();
    let mut conn = Conn {
        lines: BufReader::new(read),
        write,
    };
    match tokio::time::timeout(Duration::from_secs(5), conn.next()).await {
        Ok(Some(FromRouter::Hello(hello))) => Ok((conn, hello)),
        Ok(_) => Err(std::io::Error::other("the router did not say hello")),
        Err(_) => Err(std::io::Error::other(
            "the router did not answer within 5 s",
        )),
    }
}

fn hello_addrs(hello: &Hello) -> anyhow::Result<RouterAddrs> {
    let parse = |what: &str, a: &str| -> anyhow::Result<SocketAddr> {
        a.parse()
            .with_context(|| format!("the router's {what} address {a:?}"))
    };
    Ok(RouterAddrs {
        http: parse("HTTP", &hello.http)?,
        https: parse("HTTPS", &hello.https)?,
        admin: parse("admin", &hello.admin)?,
    })
}

/// Starts routers as this paasd's settings say.
struct Launcher {
    exe: PathBuf,
    dir: PathBuf,
    cfg: Config,
}

impl Launcher {
    /// The router paasd's last run left, if it still answers, and its socket.
    async fn find_running(&self) -> Option<(Conn, Hello, PathBuf)> {
        let socket = PathBuf::from(
            std::fs::read_to_string(self.dir.join("current"))
                .ok()?
                .trim(),
        );
        let (conn, hello) = connect(&socket).await.ok()?;
        Some((conn, hello, socket))
    }

    /// Whether a running router runs this paasd's router binary with the settings it
    /// would start one with.
    fn is_current(&self, hello: &Hello, addrs: &RouterAddrs) -> bool {
        let exe = std::fs::read_link(format!("/proc/{}/exe", hello.pid)).ok();
        let own = std::fs::canonicalize(&self.exe).ok();
        let cmdline = std::fs::read(format!("/proc/{}/cmdline", hello.pid)).unwrap_or_default();
        let running: Vec<String> = cmdline
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .skip(1)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let wanted = self.args(Some(addrs));
        // Everything but the socket, which is new for each router, and the ports of
        // listeners paasd's settings leave to the system (port 0).
        let any_port = [
            ("--listen", self.cfg.http_listen),
            ("--https-listen", self.cfg.https_listen),
            ("--admin-listen", self.cfg.admin_listen),
        ];
        let settings = |args: &[String]| -> Vec<String> {
            let mut out = Vec::new();
            let mut it = args.iter();
            while let Some(a) = it.next() {
                if a == "--feed" {
                    it.next();
                    continue;
                }
                out.push(a.clone());
                if let Some((_, listen)) = any_port.iter().find(|(f, l)| f == a && l.port() == 0) {
                    it.next();
                    out.push(listen.to_string());
                }
            }
            out
        };
        exe.is_some() && exe == own && settings(&running) == settings(&wanted)
    }

    /// The router's flags: this paasd's router settings, on the ports `taken` (those
    /// of a router it replaces, or of one that died) where paasd's own say 0.
    fn args(&self, taken: Option<&RouterAddrs>) -> Vec<String> {
        let cfg = &self.cfg;
        let port = |wanted: SocketAddr, taken: Option<SocketAddr>| match (wanted.port(), taken) {
            (0, Some(t)) => SocketAddr::new(wanted.ip(), t.port()),
            _ => wanted,
        };
        let mut args = vec![
            "--listen".to_string(),
            port(cfg.http_listen, taken.map(|t| t.http)).to_string(),
            "--https-listen".to_string(),
            port(cfg.https_listen, taken.map(|t| t.https)).to_string(),
            "--admin-listen".to_string(),
            port(cfg.admin_listen, taken.map(|t| t.admin)).to_string(),
            "--drain-seconds".to_string(),
            "0".to_string(),
            "--response-timeout".to_string(),
            cfg.response_timeout.as_secs().max(1).to_string(),
            "--max-connections".to_string(),
            cfg.max_connections.to_string(),
            "--max-connections-per-client".to_string(),
            cfg.max_connections_per_client.to_string(),
        ];
        for proxy in &cfg.trusted_proxies {
            args.push("--trusted-proxy".to_string());
            args.push(proxy.to_string());
        }
        for net in &cfg.route_service_allow {
            args.push("--route-service-allow".to_string());
            args.push(net.to_string());
        }
        args
    }

    /// Starts a router (on the ports of `taken`, where paasd's settings say 0) and
    /// connects to it. The sockets of other routers are removed, but for `retiring`'s.
    async fn spawn(
        &self,
        taken: Option<&RouterAddrs>,
        retiring: Option<&Path>,
    ) -> anyhow::Result<(Conn, Hello)> {
        anyhow::ensure!(
            self.exe.is_file(),
            "{} is missing: build it with `cargo build --workspace` (paasd runs its router as that process)",
            self.exe.display()
        );
        let mut suffix = [0u8; 6];
        getrandom::fill(&mut suffix).map_err(|e| anyhow::anyhow!("random bytes: {e}"))?;
        let socket = self.dir.join(format!("feed-{}.sock", hex::encode(suffix)));
        let log_path = self.dir.join("router.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("opening {}", log_path.display()))?;
        let mut command = tokio::process::Command::new(&self.exe);
        command.args(self.args(taken)).arg("--feed").arg(&socket);
        let mut child = command
            .env_clear()
            .env(
                "PAAS_ROUTER_LOG",
                std::env::var("PAASD_LOG").unwrap_or_else(|_| "info".into()),
            )
            // A private CA route services' certificates may be issued by.
            .envs(std::env::var_os("SSL_CERT_FILE").map(|f| ("SSL_CERT_FILE", f)))
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            // Its own process group: a Ctrl-C meant for paasd does not reach it, and it
            // outlives paasd.
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {}", self.exe.display()))?;
        let began = std::time::Instant::now();
        let connected = loop {
            if let Ok(Some(status)) = child.try_wait() {
                let tail = tail_of(&log_path);
                anyhow::bail!("the router exited at start ({status}): {tail}");
            }
            match connect(&socket).await {
                Ok(c) => break c,
                Err(e) if began.elapsed() > ROUTER_START => {
                    let _ = child.start_kill();
                    anyhow::bail!(
                        "the router did not answer on {} within {} s: {e}",
                        socket.display(),
                        ROUTER_START.as_secs()
                    );
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        // The child is not waited for here: it outlives paasd, and tokio reaps it if it
        // ends first.
        drop(child);
        let current = self.dir.join("current");
        let tmp = self.dir.join("current.tmp");
        std::fs::write(&tmp, socket.to_string_lossy().as_bytes())
            .and_then(|()| std::fs::rename(&tmp, &current))
            .with_context(|| format!("writing {}", current.display()))?;
        self.remove_other_sockets(&[Some(socket.as_path()), retiring]);
        tracing::info!(pid = connected.1.pid, "started the router");
        Ok(connected)
    }

    /// Starts a router on the ports of one that is stopping, as soon as they are free
    /// (10 s at most).
    async fn spawn_when_free(
        &self,
        taken: &RouterAddrs,
        retiring: &Path,
    ) -> anyhow::Result<(Conn, Hello)> {
        let began = std::time::Instant::now();
        loop {
            match self.spawn(Some(taken), Some(retiring)).await {
                Ok(c) => return Ok(c),
                Err(e) if began.elapsed() < ROUTER_START && format!("{e:#}").contains("in use") => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Removes the sockets of routers that are gone (a router running as nobody cannot
    /// remove its own from paasd's folder), all but `keep`. They are not probed: a
    /// router takes a connection for its new feeder.
    fn remove_other_sockets(&self, keep: &[Option<&Path>]) {
        for e in std::fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            let path = e.path();
            let is_socket = path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("feed-") && n.ends_with(".sock"));
            if is_socket && !keep.contains(&Some(path.as_path())) {
                let _ = std::fs::remove_file(&path);
            }
        }
    }
}

/// The last lines of the router's log, for an error that says why it did not start.
fn tail_of(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().rev().take(3).collect();
    lines.into_iter().rev().collect::<Vec<_>>().join(" / ")
}

/// Tells a replaced router to stop (it closes its listeners at once, and finishes
/// what it serves), waits for it to go, and removes its socket.
async fn retire(mut conn: Conn, socket: PathBuf) {
    if conn.send(&ToRouter::Stop).await.is_ok() {
        let _ = tokio::time::timeout(Duration::from_secs(60), async {
            while conn.next().await.is_some() {}
        })
        .await;
    }
    let _ = std::fs::remove_file(socket);
}

/// Feeds the router, starting it again if it dies, until paasd stops it.
async fn feed(
    edge: Arc<Edge>,
    launcher: Launcher,
    mut conn: Conn,
    mut control: mpsc::UnboundedReceiver<ToRouter>,
    access: AccessSink,
) {
    let mut open = edge.open.subscribe();
    let mut routes = edge.routes.subscribe();
    let mut certificates = edge.certificates.subscribe();
    let addrs = edge.addrs;
    // Until the table is whole, only the router's access log is taken.
    loop {
        if *open.borrow_and_update() {
            break;
        }
        tokio::select! {
            _ = open.changed() => continue,
            msg = conn.next() => match msg {
                Some(FromRouter::Access(lines)) => access(&lines),
                Some(FromRouter::Synced(n)) => edge.note_synced(n),
                Some(FromRouter::Hello(_)) => {}
                None => match respawn(&edge, &launcher, addrs.as_ref()).await {
                    Some(c) => conn = c,
                    None => return,
                },
            },
        }
    }
    loop {
        // A new connection gets everything, an old one what changed.
        let sent = match send_latest(&mut conn, &mut certificates, ToRouter::Certificates).await {
            Ok(()) => send_latest(&mut conn, &mut routes, ToRouter::Routes).await,
            Err(e) => Err(e),
        };
        let ended = match sent {
            Err(_) => true,
            Ok(()) => loop {
                tokio::select! {
                    Ok(()) = certificates.changed() => {
                        if send_latest(&mut conn, &mut certificates, ToRouter::Certificates).await.is_err() {
                            break true;
                        }
                    }
                    Ok(()) = routes.changed() => {
                        if send_latest(&mut conn, &mut routes, ToRouter::Routes).await.is_err() {
                            break true;
                        }
                    }
                    msg = control.recv() => match msg {
                        Some(ToRouter::Stop) | None => {
                            let _ = conn.send(&ToRouter::Stop).await;
                            // Its last access lines, until it has gone.
                            while let Some(msg) = conn.next().await {
                                if let FromRouter::Access(lines) = msg {
                                    access(&lines);
                                }
                            }
                            return;
                        }
                        Some(other) => {
                            // A sync answers for every change published before it:
                            // what the watches hold goes out first.
                            if matches!(other, ToRouter::Sync(_)) {
                                let certs_new = certificates.has_changed().unwrap_or(false);
                                if certs_new && send_latest(&mut conn, &mut certificates, ToRouter::Certificates).await.is_err() {
                                    break true;
                                }
                                let routes_new = routes.has_changed().unwrap_or(false);
                                if routes_new && send_latest(&mut conn, &mut routes, ToRouter::Routes).await.is_err() {
                                    break true;
                                }
                            }
                            if conn.send(&other).await.is_err() {
                                break true;
                            }
                        }
                    },
                    msg = conn.next() => match msg {
                        Some(FromRouter::Access(lines)) => access(&lines),
                        Some(FromRouter::Synced(n)) => edge.note_synced(n),
                        Some(FromRouter::Hello(_)) => {}
                        None => break true,
                    },
                }
            },
        };
        if ended {
            match respawn(&edge, &launcher, addrs.as_ref()).await {
                Some(c) => {
                    conn = c;
                    certificates.mark_changed();
                    routes.mark_changed();
                }
                None => return,
            }
        }
    }
}

/// Sends what `latest` holds now (if anything was published), wrapped by `message`,
/// and marks it seen.
async fn send_latest<T: Clone>(
    conn: &mut Conn,
    latest: &mut watch::Receiver<Option<Arc<Vec<T>>>>,
    message: fn(Vec<T>) -> ToRouter,
) -> std::io::Result<()> {
    let value = latest.borrow_and_update().clone();
    match value {
        Some(v) => conn.send(&message(v.to_vec())).await,
        None => Ok(()),
    }
}

/// Starts the router again after it died, on the same ports, trying every second;
/// `None` when paasd did not start and stopped it ([`FreshRouter`]).
async fn respawn(edge: &Edge, launcher: &Launcher, addrs: Option<&RouterAddrs>) -> Option<Conn> {
    if edge.given_up.load(std::sync::atomic::Ordering::SeqCst) {
        return None;
    }
    tracing::error!("the router ended: starting it again on the same ports");
    for attempt in 1..=u32::MAX {
        match launcher.spawn(addrs, None).await {
            Ok((conn, _)) => return Some(conn),
            Err(e) => {
                if attempt == 1 || attempt % 60 == 0 {
                    tracing::error!("starting the router again: {e:#}");
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
    None
}

/// See [`Edge::until_started`].
pub struct FreshRouter {
    /// The router's pid, and the edge that would start it again if it died.
    armed: Option<(u32, Arc<Edge>)>,
}

impl FreshRouter {
    /// paasd started: the router stays.
    pub fn disarm(mut self) {
        self.armed = None;
    }
}

impl Drop for FreshRouter {
    fn drop(&mut self) {
        let Some((pid, edge)) = self.armed.take() else {
            return;
        };
        let Ok(pid) = i32::try_from(pid) else { return };
        tracing::info!(pid, "paasd did not start: stopping the router it started");
        // Told before the kill, so that the feed does not start it again.
        edge.given_up
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let pid = nix::unistd::Pid::from_raw(pid);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        // Gone before paasd exits, so that whoever started paasd finds nothing of it
        // left: reaped if it is paasd's child, else waited for (2 s at most) until the
        // kernel has torn it down (a zombie's command line reads empty).
        let _ = nix::sys::wait::waitpid(pid, None);
        for _ in 0..200 {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if cmdline.is_empty() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}
