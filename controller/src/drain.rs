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
//! metadata, …, [`paas_egress::egress_denied`]) and the host's own addresses
//! are refused here too, unless the operator allows a network (`paasd --drain-allow`).
//! The name is resolved once per connection and the address checked is the one
//! connected to, so a DNS answer that changes after the check (rebinding) does not
//! matter.
//!
//! A connection is made when a line is there to send. Lines wait in a queue of
//! [`QUEUE`] per drain; past it, a drain that is away or slow loses lines. Each failure
//! and each recovery (with the count of lines lost) is said once in the app's own log,
//! as source `LGR`, which is never drained itself.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use paas_api::{AppName, LogLine, LogStream};
use paas_egress::Ipv4Net;
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
        let schemes = [
            ("syslog", 514),
            ("syslog-tls", 6514),
            ("http", 80),
            ("https", 443),
        ];
        let e = paas_egress::Endpoint::parse(url, &schemes)?;
        let scheme = match e.scheme.as_str() {
            "syslog" => Scheme::Syslog,
            "syslog-tls" => Scheme::SyslogTls,
            "http" => Scheme::Http,
            _ => Scheme::Https,
        };
        Ok(Target {
            scheme,
            host: e.host,
            port: e.port,
            path: e.path,
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
                Box::new(paas_egress::connect_tls(&self.host, tcp, TIMEOUT).await?)
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
        paas_egress::resolve(&self.host, self.port, allowed, TIMEOUT)
            .await
            .map_err(|e| match e {
                paas_egress::ResolveError::Refused(what) => format!(
                    "{what} where the platform sends no logs (private, loopback, link-local, metadata or this host's own); use a public address, or ask the operator to allow the network (paasd --drain-allow CIDR)"
                ),
                other => other.to_string(),
            })
    }
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
}
