//! Syslog drains: the log lines of an app sent on to the `syslog_drain_url` of each
//! service bound to it (`paas create-user-provided-service NAME -l URL`), as RFC 5424
//! messages, the way Cloud Foundry's syslog agent sends them.
//!
//! - `syslog://HOST:PORT` over TCP and `syslog-tls://HOST:PORT` over TLS (the host's CA
//!   bundle), each message framed by its length (octet counting, RFC 6587 §3.4.1);
//! - `https://HOST[:PORT]/PATH` and `http://…`: each message the body of a POST.
//!
//! The URL is the tenant's and the connection leaves from the host, which makes a drain
//! a server-side request forgery (CWE-918) waiting to happen: the networks the host
//! refuses instances' outbound traffic to (private, loopback, link-local, cloud
//! metadata, …, [`paas_runtime::network::egress_denied`]) and the host's own addresses
//! are refused here too, unless the operator allows a network (`paasd --drain-allow`).
//! The name is resolved once per connection and the address checked is the one
//! connected to, so a DNS answer that changes after the check (rebinding) does not
//! matter.
//!
//! A connection is made when a line is there to send. Lines wait in a queue of
//! [`QUEUE`] per drain; past it, a drain that is away or slow loses lines. Each failure
//! and each recovery (with the count of lines lost) is said once in the app's own log,
//! as source `LGR`, which is never drained itself.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use paas_api::{AppName, LogLine, LogStream};
use paas_runtime::network::Ipv4Net;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::logs::Logs;

/// Lines that wait per drain while it is slow or away, at most.
pub const QUEUE: usize = 1000;
/// Bytes of lines that wait per drain, at most: lines may be 16 KiB each.
pub const QUEUE_BYTES: usize = 1 << 20;
/// The most drains of one app: each holds a queue and a task.
pub const MAX_DRAINS: usize = 5;
/// How many times one line is tried before it is given up.
const TRIES: u32 = 3;
/// The log source of what the drains say about themselves.
pub const SOURCE: &str = "LGR";
/// How long a connection or a request may take.
const TIMEOUT: Duration = Duration::from_secs(10);
/// The longest wait between two tries to reach a drain.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Every app's drains on this host.
pub struct Drains {
    apps: Mutex<std::collections::HashMap<String, Vec<Drain>>>,
    allowed: Vec<Ipv4Net>,
}

/// One drain of one app: a queue and the task that empties it.
struct Drain {
    url: String,
    queue: mpsc::Sender<LogLine>,
    /// Bytes of lines in `queue`.
    queued: Arc<AtomicUsize>,
    lost: Arc<AtomicU64>,
    task: tokio::task::AbortHandle,
}

impl Drop for Drain {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Who a drain's messages are from: the syslog HOSTNAME (`SPACE.APP`, as Cloud
/// Foundry's `ORG.SPACE.APP`) and APP-NAME (the app's GUID).
#[derive(Debug, Clone)]
pub struct Sender {
    pub hostname: String,
    pub app_guid: String,
}

impl Drains {
    /// `allowed`: networks drains may reach although the rule refuses them.
    pub fn new(allowed: Vec<Ipv4Net>) -> Self {
        Drains {
            apps: Mutex::new(Default::default()),
            allowed,
        }
    }

    /// Makes `app`'s drains those of `urls`: a drain it keeps keeps its connection and
    /// queue. `logs` hears what the drains say about themselves. Call within a Tokio
    /// runtime.
    pub fn set(&self, app: &AppName, from: Sender, urls: &[String], logs: Weak<Logs>) {
        let mut apps = self.apps.lock().unwrap_or_else(|p| p.into_inner());
        let mut old = apps.remove(app.as_str()).unwrap_or_default();
        let mut now = Vec::new();
        for url in urls {
            if now.iter().any(|d: &Drain| &d.url == url) {
                continue;
            }
            if now.len() == MAX_DRAINS {
                tracing::warn!(%app, "more than {MAX_DRAINS} syslog drains: {url} is left out");
                if let Some(logs) = logs.upgrade() {
                    logs.append(
                        app,
                        SOURCE,
                        LogStream::Err,
                        &format!(
                            "syslog drain {url} is left out: an app drains to {MAX_DRAINS} at most"
                        ),
                    );
                }
                continue;
            }
            if let Some(i) = old.iter().position(|d| &d.url == url) {
                now.push(old.swap_remove(i));
                continue;
            }
            let (queue, rx) = mpsc::channel(QUEUE);
            let lost = Arc::new(AtomicU64::new(0));
            let queued = Arc::new(AtomicUsize::new(0));
            let run = Run {
                app: app.clone(),
                url: url.clone(),
                from: from.clone(),
                allowed: self.allowed.clone(),
                lost: Arc::clone(&lost),
                queued: Arc::clone(&queued),
                logs: logs.clone(),
            };
            let task = tokio::spawn(run.drain(rx)).abort_handle();
            now.push(Drain {
                url: url.clone(),
                queue,
                queued,
                lost,
                task,
            });
        }
        if !now.is_empty() {
            apps.insert(app.to_string(), now);
        }
    }

    /// Hands `line` to each of `app`'s drains; a full queue loses it (counted).
    pub fn send(&self, app: &AppName, line: &LogLine) {
        if line.source == SOURCE {
            return;
        }
        let apps = self.apps.lock().unwrap_or_else(|p| p.into_inner());
        for d in apps.get(app.as_str()).into_iter().flatten() {
            let bytes = line.line.len();
            if d.queued.load(Ordering::Relaxed) + bytes > QUEUE_BYTES {
                d.lost.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            d.queued.fetch_add(bytes, Ordering::Relaxed);
            if d.queue.try_send(line.clone()).is_err() {
                d.queued.fetch_sub(bytes, Ordering::Relaxed);
                d.lost.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Ends `app`'s drains.
    pub fn remove(&self, app: &AppName) {
        self.apps
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(app.as_str());
    }
}

/// What one drain's task needs.
struct Run {
    app: AppName,
    url: String,
    from: Sender,
    allowed: Vec<Ipv4Net>,
    lost: Arc<AtomicU64>,
    queued: Arc<AtomicUsize>,
    logs: Weak<Logs>,
}

impl Run {
    /// Sends what comes on `rx`, reconnecting with a growing pause after a failure (of
    /// the connection or of a send: the pause only shrinks back once a line went
    /// through). A line that fails [`TRIES`] times is given up.
    async fn drain(self, mut rx: mpsc::Receiver<LogLine>) {
        let target = match Target::parse(&self.url) {
            Ok(t) => t,
            Err(e) => {
                self.say(&format!("syslog drain {}: {e}", self.url));
                return;
            }
        };
        let (mut backoff, mut failing) = (Duration::from_secs(1), false);
        let mut pending: Option<(LogLine, u32)> = None;
        loop {
            let (line, tries) = match pending.take() {
                Some(p) => p,
                None => match rx.recv().await {
                    Some(l) => {
                        self.queued.fetch_sub(l.line.len(), Ordering::Relaxed);
                        (l, 0)
                    }
                    None => return,
                },
            };
            let mut conn = match target.connect(&self.allowed).await {
                Ok(c) => c,
                Err(e) => {
                    if !failing {
                        self.say(&format!(
                            "syslog drain {} cannot be reached: {e}; lines past the {} KiB that wait are lost until it can",
                            self.url,
                            QUEUE_BYTES >> 10
                        ));
                        failing = true;
                    }
                    pending = self.again(line, tries);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            };
            let mut next = Some((line, tries));
            while let Some((line, tries)) = next.take() {
                let message = format_message(&self.from, &line);
                if let Err(e) = conn.send(&message).await {
                    if !failing {
                        self.say(&format!(
                            "syslog drain {} failed: {e}; trying again",
                            self.url
                        ));
                        failing = true;
                    }
                    pending = self.again(line, tries);
                    break;
                }
                if failing {
                    let lost = self.lost.swap(0, Ordering::Relaxed);
                    self.say(&format!(
                        "syslog drain {} takes lines again; {lost} were lost meanwhile",
                        self.url
                    ));
                    failing = false;
                }
                backoff = Duration::from_secs(1);
                next = match rx.recv().await {
                    Some(l) => {
                        self.queued.fetch_sub(l.line.len(), Ordering::Relaxed);
                        Some((l, 0))
                    }
                    None => return,
                };
            }
            if pending.is_some() || failing {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }

    /// `line` to try once more, unless it has failed [`TRIES`] times (then it is lost).
    fn again(&self, line: LogLine, tries: u32) -> Option<(LogLine, u32)> {
        if tries + 1 >= TRIES {
            self.lost.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some((line, tries + 1))
    }

    fn say(&self, what: &str) {
        tracing::warn!(app = %self.app, "{what}");
        if let Some(logs) = self.logs.upgrade() {
            logs.append(&self.app, SOURCE, LogStream::Err, what);
        }
    }
}

/// An RFC 5424 message: facility user, severity info for stdout and error for
/// stderr; PROCID the log source in brackets, as Cloud Foundry writes it.
pub fn format_message(from: &Sender, line: &LogLine) -> String {
    let priority = match line.stream {
        LogStream::Out => 14,
        LogStream::Err => 11,
    };
    format!(
        "<{priority}>1 {} {} {} [{}] - - {}",
        paas_api::format_timestamp_ms(line.timestamp_ms),
        from.hostname,
        from.app_guid,
        line.source,
        line.line.trim_end_matches(['\n', '\r'])
    )
}

/// Where a drain URL points.
#[derive(Debug, Clone, PartialEq)]
struct Target {
    scheme: Scheme,
    host: String,
    port: u16,
    /// For http(s): the path and query.
    path: String,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Scheme {
    Syslog,
    SyslogTls,
    Http,
    Https,
}

impl Target {
    fn parse(url: &str) -> Result<Target, String> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or("the URL has no scheme; write syslog://HOST:PORT")?;
        let (scheme, default_port) = match scheme {
            "syslog" => (Scheme::Syslog, 514),
            "syslog-tls" => (Scheme::SyslogTls, 6514),
            "http" => (Scheme::Http, 80),
            "https" => (Scheme::Https, 443),
            other => {
                return Err(format!(
                    "{other}:// drains are not supported; use syslog://, syslog-tls:// or https://"
                ))
            }
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.contains('@') {
            return Err("a user or password in a drain URL is not supported".into());
        }
        let (host, port) = match authority.strip_prefix('[') {
            Some(v6) => {
                let (host, after) = v6.split_once(']').ok_or("an IPv6 host lacks its `]`")?;
                (host, after.strip_prefix(':'))
            }
            None => match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            },
        };
        if host.is_empty() {
            return Err("the URL names no host".into());
        }
        let port = match port {
            Some(p) => p.parse().map_err(|_| format!("{p:?} is not a port"))?,
            None => default_port,
        };
        let path = if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_string()
        };
        Ok(Target {
            scheme,
            host: host.to_string(),
            port,
            path,
        })
    }

    /// Resolves the host, checks the address and connects to it.
    async fn connect(&self, allowed: &[Ipv4Net]) -> Result<Connection, String> {
        let addr = self.resolve(allowed).await?;
        let tcp = tokio::time::timeout(TIMEOUT, tokio::net::TcpStream::connect(addr))
            .await
            .map_err(|_| format!("{addr} did not answer within {} s", TIMEOUT.as_secs()))?
            .map_err(|e| format!("connecting to {addr}: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let stream: Box<dyn Stream> = match self.scheme {
            Scheme::Syslog | Scheme::Http => Box::new(tcp),
            Scheme::SyslogTls | Scheme::Https => {
                let config = tls_config()?;
                let name = rustls::pki_types::ServerName::try_from(self.host.clone())
                    .map_err(|e| format!("{}: {e}", self.host))?;
                let tls = tokio::time::timeout(
                    TIMEOUT,
                    tokio_rustls::TlsConnector::from(config).connect(name, tcp),
                )
                .await
                .map_err(|_| {
                    format!(
                        "no TLS handshake with {addr} within {} s",
                        TIMEOUT.as_secs()
                    )
                })?
                .map_err(|e| format!("TLS with {addr}: {e}"))?;
                Box::new(tls)
            }
        };
        Ok(match self.scheme {
            Scheme::Syslog | Scheme::SyslogTls => Connection::Framed(stream),
            Scheme::Http | Scheme::Https => {
                let (send, conn) =
                    hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                        .await
                        .map_err(|e| format!("HTTP with {addr}: {e}"))?;
                tokio::spawn(conn);
                let host = match self.port {
                    80 | 443 => self.host.clone(),
                    p => format!("{}:{p}", self.host),
                };
                Connection::Posts {
                    send,
                    host,
                    path: self.path.clone(),
                }
            }
        })
    }

    /// The first address of the host that the rule lets drains reach.
    async fn resolve(&self, allowed: &[Ipv4Net]) -> Result<SocketAddr, String> {
        let addrs: Vec<SocketAddr> = tokio::time::timeout(
            TIMEOUT,
            tokio::net::lookup_host((self.host.as_str(), self.port)),
        )
        .await
        .map_err(|_| format!("resolving {} took over {} s", self.host, TIMEOUT.as_secs()))?
        .map_err(|e| format!("resolving {}: {e}", self.host))?
        .collect();
        let own = host_addresses();
        addrs
            .iter()
            .find(|a| permitted(a.ip(), allowed, &own))
            .copied()
            .ok_or_else(|| {
                let ips: Vec<String> = addrs.iter().map(|a| a.ip().to_string()).collect();
                let what = if ips == [self.host.trim_matches(['[', ']'])] {
                    format!("{} is an address", self.host)
                } else {
                    format!("{} resolves to {}, addresses", self.host, ips.join(", "))
                };
                format!(
                    "{what} where the platform sends no logs (private, loopback, link-local, metadata or this host's own); use a public address, or ask the operator to allow the network (paasd --drain-allow CIDR)"
                )
            })
    }
}

/// Whether a drain may connect to `ip`. An IPv6 address that carries an IPv4 one (mapped,
/// compatible, NAT64 or 6to4) is judged as that IPv4 address, since that is what it
/// reaches.
fn permitted(ip: IpAddr, allowed: &[Ipv4Net], own: &[IpAddr]) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => embedded_v4(v6).map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    if let IpAddr::V4(v4) = ip {
        if allowed.iter().any(|n| n.contains(v4)) {
            return true;
        }
    }
    let own_v4 = |o: &IpAddr| match o {
        IpAddr::V6(v6) => embedded_v4(*v6).map_or(*o, IpAddr::V4),
        v4 => *v4,
    };
    !paas_runtime::network::egress_denied(ip)
        && !own.iter().any(|o| own_v4(o) == ip)
        && !ip.is_unspecified()
}

/// The IPv4 address an IPv6 one carries: IPv4-mapped (`::ffff:a.b.c.d`), IPv4-compatible
/// (`::a.b.c.d`), NAT64 (`64:ff9b::/96`, RFC 6052; `64:ff9b:1::/48`, RFC 8215) or 6to4
/// (`2002:AABB:CCDD::/48`, RFC 3056).
fn embedded_v4(v6: std::net::Ipv6Addr) -> Option<std::net::Ipv4Addr> {
    let s = v6.segments();
    let last32 =
        || std::net::Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    match s {
        [0, 0, 0, 0, 0, 0xffff, ..] => Some(last32()),
        [0, 0, 0, 0, 0, 0, hi, _] if hi != 0 => Some(last32()),
        [0x64, 0xff9b, 0, 0, 0, 0, ..] => Some(last32()),
        [0x64, 0xff9b, 1, ..] => Some(last32()),
        [0x2002, a, b, ..] => Some(std::net::Ipv4Addr::new(
            (a >> 8) as u8,
            a as u8,
            (b >> 8) as u8,
            b as u8,
        )),
        _ => None,
    }
}

/// The addresses of this host's interfaces.
fn host_addresses() -> Vec<IpAddr> {
    let Ok(list) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    list.filter_map(|i| {
        let a = i.address?;
        a.as_sockaddr_in()
            .map(|s| IpAddr::V4(s.ip()))
            .or_else(|| a.as_sockaddr_in6().map(|s| IpAddr::V6(s.ip())))
    })
    .collect()
}

/// TLS as a client of the world: the host's CA bundle.
fn tls_config() -> Result<Arc<rustls::ClientConfig>, String> {
    static CONFIG: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            const BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
            let pem = std::fs::read(BUNDLE).map_err(|e| {
                format!("reading the host's CA bundle {BUNDLE}: {e} (install ca-certificates)")
            })?;
            let mut roots = rustls::RootCertStore::empty();
            for cert in rustls_pemfile::certs(&mut pem.as_slice()).flatten() {
                let _ = roots.add(cert);
            }
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| e.to_string())?
                .with_root_certificates(roots)
                .with_no_client_auth();
            Ok(Arc::new(config))
        })
        .clone()
}

trait Stream: tokio::io::AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// An open drain.
enum Connection {
    Framed(Box<dyn Stream>),
    Posts {
        send: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
        host: String,
        path: String,
    },
}

impl Connection {
    async fn send(&mut self, message: &str) -> Result<(), String> {
        match self {
            Connection::Framed(stream) => {
                let frame = format!("{} {message}", message.len());
                tokio::time::timeout(TIMEOUT, async {
                    stream.write_all(frame.as_bytes()).await?;
                    stream.flush().await
                })
                .await
                .map_err(|_| "it took no data for 10 s".to_string())?
                .map_err(|e| e.to_string())
            }
            Connection::Posts { send, host, path } => {
                let req = http::Request::post(path.as_str())
                    .header(http::header::HOST, host.as_str())
                    .header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")
                    .body(Full::new(Bytes::from(message.to_string())))
                    .map_err(|e| e.to_string())?;
                let answer = tokio::time::timeout(TIMEOUT, async {
                    send.ready().await?;
                    let resp = send.send_request(req).await?;
                    let status = resp.status();
                    // Read to its end (the connection is reused) and thrown away as it
                    // comes: a hostile drain's answer may be endless.
                    let mut body = resp.into_body();
                    while let Some(frame) = body.frame().await {
                        frame?;
                    }
                    Ok::<_, hyper::Error>(status)
                })
                .await
                .map_err(|_| "it did not answer within 10 s".to_string())?
                .map_err(|e| e.to_string())?;
                if !answer.is_success() {
                    return Err(format!("it answered {answer}"));
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drain_urls_parse_with_their_default_ports() {
        let t = Target::parse("syslog://logs.example.com").unwrap();
        assert_eq!(
            (t.scheme, t.host.as_str(), t.port),
            (Scheme::Syslog, "logs.example.com", 514)
        );
        let t = Target::parse("syslog-tls://[2001:db8::1]:6000").unwrap();
        assert_eq!(
            (t.scheme, t.host.as_str(), t.port),
            (Scheme::SyslogTls, "2001:db8::1", 6000)
        );
        let t = Target::parse("https://drain.example.com/in?token=x").unwrap();
        assert_eq!((t.port, t.path.as_str()), (443, "/in?token=x"));
        assert!(Target::parse("ftp://x").is_err());
        assert!(Target::parse("syslog://user:pw@x:1").is_err());
        assert!(Target::parse("syslog://x:port").is_err());
        assert!(Target::parse("syslog://:514").is_err());
    }

    #[test]
    fn messages_are_rfc5424_with_the_source_as_procid() {
        let from = Sender {
            hostname: "team-a.shop".into(),
            app_guid: "6f1c".into(),
        };
        let line = LogLine {
            timestamp_ms: 1_764_633_600_123,
            source: "APP/PROC/WEB/0".into(),
            stream: LogStream::Err,
            line: "boom\n".into(),
        };
        assert_eq!(
            format_message(&from, &line),
            "<11>1 2025-12-02T00:00:00.123Z team-a.shop 6f1c [APP/PROC/WEB/0] - - boom"
        );
    }

    #[test]
    fn the_host_s_neighbourhood_is_refused_unless_allowed() {
        let own: Vec<IpAddr> = vec!["203.0.113.7".parse().unwrap()];
        let allowed: Vec<Ipv4Net> = vec!["127.0.0.1/32".parse().unwrap()];
        assert!(!permitted("127.0.0.1".parse().unwrap(), &[], &own));
        assert!(!permitted(
            "169.254.169.254".parse().unwrap(),
            &allowed,
            &own
        ));
        assert!(
            !permitted("203.0.113.7".parse().unwrap(), &[], &own),
            "the host's own"
        );
        assert!(!permitted("::ffff:10.0.0.1".parse().unwrap(), &[], &own));
        assert!(permitted("127.0.0.1".parse().unwrap(), &allowed, &own));
        assert!(permitted("198.51.100.1".parse().unwrap(), &[], &own));
        // IPv6 forms of refused IPv4 addresses are refused too.
        for v6 in [
            "::ffff:203.0.113.7",
            "::127.0.0.1",
            "64:ff9b::a00:5",
            "64:ff9b:1::7f00:1",
            "2002:a00:5::1",
            "2002:cb00:7107::1",
        ] {
            assert!(!permitted(v6.parse().unwrap(), &[], &own), "{v6}");
        }
        assert!(
            permitted("64:ff9b::c633:6401".parse().unwrap(), &[], &own),
            "NAT64 of 198.51.100.1"
        );
    }
}
