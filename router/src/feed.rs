//! The feed: how `paasd` drives a router process on its own host.
//!
//! On one host the router runs as a process of its own (`paas-router --feed SOCKET`),
//! so that traffic goes on, with the last route table it was given, while paasd is
//! killed, restarted or replaced by a new binary. paasd connects to the router's Unix
//! socket and sends it newline-delimited JSON ([`ToRouter`]): the whole route table and
//! the certificates whenever either changes, and `drain` and `stop` at a clean shutdown.
//! The router answers with a [`Hello`] and then sends its access log in batches
//! ([`FromRouter::Access`]). One feeder at a time: a new connection replaces the last.
//! While no paasd is connected, the router keeps serving what it was last given, and
//! access log lines are dropped (and counted) rather than queued without bound.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use paas_api::{CertificateEntry, RouteEntry};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use crate::{RouteTable, Router};

/// What paasd sends a router.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToRouter {
    /// The whole route table, replacing the last.
    Routes(Vec<RouteEntry>),
    /// Every certificate, replacing the last: the default one has `default` set.
    Certificates(Vec<CertificateEntry>),
    /// `/health` fails from now on, traffic is still served (a clean shutdown's drain).
    Drain,
    /// Answer `Synced` with this number once everything sent before it is applied.
    Sync(u64),
    /// Stop accepting, finish the requests under way, and exit.
    Stop,
}

/// What a router sends paasd.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FromRouter {
    Hello(Hello),
    /// Access log lines, for the apps' logs.
    Access(Vec<AccessLine>),
    /// Everything paasd sent before its `Sync` of this number is applied.
    Synced(u64),
}

/// The first line a router sends a new feeder.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Hello {
    pub pid: u32,
    pub version: String,
    /// Where it serves plain HTTP, HTTPS and `/health` and `/metrics`.
    pub http: String,
    pub https: String,
    pub admin: String,
    /// Whether it was given a route table yet (by any feeder).
    pub has_routes: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AccessLine {
    pub app: String,
    pub line: String,
    /// The response's status and the time until its head was ready (for the
    /// platform's per-app figures; absent from an older router).
    #[serde(default)]
    pub status: u16,
    #[serde(default)]
    pub micros: u64,
}

/// The longest line a router reads from paasd: a route table of many thousands of
/// routes. paasd bounds what it reads from a router far lower.
const MAX_FEED_LINE: usize = 256 << 20;
/// Access batches waiting to be sent to a slow feeder; more are dropped and counted.
const ACCESS_BATCHES: usize = 256;

/// Where a router's access log goes: to the connected feeder, if any.
#[derive(Default)]
pub struct AccessRelay {
    current: Mutex<Option<tokio::sync::mpsc::Sender<FromRouter>>>,
    dropped: AtomicU64,
}

impl AccessRelay {
    /// Hands a batch to the connected feeder; without one, or with a slow one, the
    /// batch is dropped and counted.
    pub fn send(&self, batch: &[crate::ops::AccessLog]) {
        let lines: Vec<AccessLine> = batch
            .iter()
            .filter_map(|e| {
                Some(AccessLine {
                    app: e.app.clone()?,
                    line: e.line(),
                    status: e.status,
                    micros: u64::try_from(e.duration.as_micros()).unwrap_or(u64::MAX),
                })
            })
            .collect();
        if lines.is_empty() {
            return;
        }
        let n = lines.len() as u64;
        let sent = self
            .current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .is_some_and(|tx| tx.try_send(FromRouter::Access(lines)).is_ok());
        if !sent {
            self.dropped.fetch_add(n, Ordering::Relaxed);
        }
    }
}

/// The part of a router process that follows its feeder: serves `listener` until a
/// feeder says `stop` (then returns, so the caller stops the router), applying what
/// each feeder sends to `router`.
pub async fn serve(
    listener: UnixListener,
    router: Arc<Router>,
    relay: Arc<AccessRelay>,
    mut hello: Hello,
) {
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let mut feeder: Option<tokio::task::JoinHandle<()>> = None;
    let has_routes = Arc::new(std::sync::atomic::AtomicBool::new(false));
    loop {
        let stream = tokio::select! {
            // Only ever set to true.
            _ = stop_rx.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!("accepting a feeder: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        // Only root may feed the router (the socket lies in paasd's root-only data
        // folder, and this is checked again here).
        match stream.peer_cred() {
            Ok(c) if c.uid() == 0 => {}
            _ => {
                tracing::warn!("refused a feeder that is not root");
                continue;
            }
        }
        if let Some(old) = feeder.take() {
            old.abort();
        }
        let dropped = relay.dropped.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            tracing::warn!("{dropped} access log lines were dropped while no paasd took them");
        }
        hello.has_routes = has_routes.load(Ordering::Relaxed);
        let (tx, rx) = tokio::sync::mpsc::channel(ACCESS_BATCHES);
        *relay.current.lock().unwrap_or_else(|p| p.into_inner()) = Some(tx.clone());
        feeder = Some(tokio::spawn(follow_feeder(
            stream,
            Arc::clone(&router),
            hello.clone(),
            (tx, rx),
            stop_tx.clone(),
            Arc::clone(&has_routes),
        )));
    }
    *relay.current.lock().unwrap_or_else(|p| p.into_inner()) = None;
}

/// One feeder's connection: the hello, then its messages in, access batches and sync
/// answers out.
async fn follow_feeder(
    stream: UnixStream,
    router: Arc<Router>,
    hello: Hello,
    (replies, mut out): (
        tokio::sync::mpsc::Sender<FromRouter>,
        tokio::sync::mpsc::Receiver<FromRouter>,
    ),
    stop: tokio::sync::watch::Sender<bool>,
    has_routes: Arc<std::sync::atomic::AtomicBool>,
) {
    let (read, mut write) = stream.into_split();
    let mut first = serde_json::to_vec(&FromRouter::Hello(hello)).unwrap_or_default();
    first.push(b'\n');
    if write.write_all(&first).await.is_err() {
        return;
    }
    let writer = tokio::spawn(async move {
        while let Some(msg) = out.recv().await {
            let mut line = serde_json::to_vec(&msg).unwrap_or_default();
            line.push(b'\n');
            if write.write_all(&line).await.is_err() {
                return;
            }
        }
    });
    let mut lines = BufReader::new(read);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match read_line(&mut lines, &mut buf, MAX_FEED_LINE).await {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                tracing::warn!("reading from paasd: {e}");
                break;
            }
        }
        match serde_json::from_slice::<ToRouter>(&buf) {
            Ok(ToRouter::Routes(entries)) => {
                tracing::debug!(routes = entries.len(), "route table from paasd");
                router.update(RouteTable::from_entries(&entries));
                has_routes.store(true, Ordering::Relaxed);
            }
            Ok(ToRouter::Certificates(entries)) => {
                router
                    .certificates()
                    .update(crate::tls::Certificates::from_entries(&entries, None));
            }
            Ok(ToRouter::Drain) => router.metrics().begin_drain(),
            // Messages are applied in order: all before this one are in effect.
            Ok(ToRouter::Sync(n)) => {
                let _ = replies.send(FromRouter::Synced(n)).await;
            }
            Ok(ToRouter::Stop) => {
                let _ = stop.send(true);
                break;
            }
            Err(e) => tracing::warn!("a message from paasd that does not parse: {e}"),
        }
    }
    writer.abort();
}

/// Reads one `\n`-terminated line (without it) into `buf`; `Ok(false)` at the end of
/// the stream. A line longer than `max` is an error, so a peer cannot make the reader
/// hold an unbounded line.
pub async fn read_line<R: tokio::io::AsyncBufRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<bool> {
    loop {
        let available = r.fill_buf().await?;
        if available.is_empty() {
            return Ok(!buf.is_empty());
        }
        let (take, done) = match available.iter().position(|b| *b == b'\n') {
            Some(i) => (i + 1, true),
            None => (available.len(), false),
        };
        let end = if done { take - 1 } else { take };
        buf.extend_from_slice(&available[..end]);
        r.consume(take);
        if buf.len() > max {
            return Err(std::io::Error::other(format!(
                "a line longer than {max} bytes"
            )));
        }
        if done {
            return Ok(true);
        }
    }
}
