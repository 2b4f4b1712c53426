//! Caps on what clients hold open at once: connections, in total and per client
//! address, checked at accept; WebSocket tunnels, checked before one opens.
//!
//! A connection over a cap is closed before a byte of it is read, so a client (or a
//! botnet) holding connections open cannot starve the others of file descriptors and
//! memory. The per-client counts are a map under a mutex, touched once when a
//! connection is accepted and once when it closes, never per request; it has at most
//! one entry per open connection, so the total cap bounds it too. Clients are told
//! apart by address: an IPv6 client holding a whole prefix counts as many clients, and
//! only the total cap holds it. Trusted proxies (a load balancer in front) carry many
//! clients on their connections and are held to the total cap only.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use crate::ops::{ConnectionCap, Metrics};

/// What a plain HTTP connection over a cap is told before it is closed: a short 503
/// that HTTP/1 clients read (an HTTP/2 client sees a protocol error, then the close).
pub(super) const REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: text/plain; charset=utf-8\r\n\
x-paas-router-error: too_many_connections\r\n\
retry-after: 1\r\n\
content-length: 38\r\n\
connection: close\r\n\r\n\
too many connections: try again later\n";

/// The caps, and the per-client counts they check.
pub(super) struct Caps {
    max_total: usize,
    max_per_client: usize,
    max_websockets: usize,
    per_client: Mutex<HashMap<IpAddr, usize>>,
    /// Holds the open counts, which /metrics shows.
    metrics: Arc<Metrics>,
}

/// A connection counted against the caps until dropped.
pub(super) struct ConnSlot {
    caps: Arc<Caps>,
    /// The address counted against the per-client cap (none for a trusted proxy).
    client: Option<IpAddr>,
}

/// A WebSocket tunnel counted against its cap until dropped.
pub(super) struct TunnelSlot(Arc<Caps>);

impl Caps {
    pub(super) fn new(
        max_total: usize,
        max_per_client: usize,
        max_websockets: usize,
        metrics: Arc<Metrics>,
    ) -> Self {
        Caps {
            max_total,
            max_per_client,
            max_websockets,
            per_client: Mutex::default(),
            metrics,
        }
    }

    /// Counts a connection from `client` (`capped`: held to the per-client cap), or
    /// says which cap it is over.
    pub(super) fn admit(
        self: &Arc<Self>,
        client: IpAddr,
        capped: bool,
    ) -> Result<ConnSlot, ConnectionCap> {
        let open = &self.metrics.connections_open;
        if open.fetch_add(1, Ordering::Relaxed) >= self.max_total {
            open.fetch_sub(1, Ordering::Relaxed);
            return Err(ConnectionCap::Total);
        }
        // An IPv4 client reaching a dual-stack listener is one client either way.
        let client = client.to_canonical();
        if capped {
            let mut counts = self.per_client.lock().unwrap_or_else(|p| p.into_inner());
            let n = counts.entry(client).or_insert(0);
            if *n >= self.max_per_client {
                if *n == 0 {
                    counts.remove(&client);
                }
                drop(counts);
                open.fetch_sub(1, Ordering::Relaxed);
                return Err(ConnectionCap::PerClient);
            }
            *n += 1;
        }
        Ok(ConnSlot {
            caps: Arc::clone(self),
            client: capped.then_some(client),
        })
    }

    /// Counts a WebSocket tunnel, or `None` when as many as the cap allows are open.
    pub(super) fn open_websocket(self: &Arc<Self>) -> Option<TunnelSlot> {
        let open = &self.metrics.websockets_open;
        if open.fetch_add(1, Ordering::Relaxed) >= self.max_websockets {
            open.fetch_sub(1, Ordering::Relaxed);
            self.metrics.refused_websocket();
            return None;
        }
        Some(TunnelSlot(Arc::clone(self)))
    }
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        if let Some(client) = self.client {
            let mut counts = self
                .caps
                .per_client
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if let Some(n) = counts.get_mut(&client) {
                *n -= 1;
                if *n == 0 {
                    counts.remove(&client);
                }
            }
        }
        self.caps
            .metrics
            .connections_open
            .fetch_sub(1, Ordering::Relaxed);
    }
}

impl Drop for TunnelSlot {
    fn drop(&mut self) {
        self.0
            .metrics
            .websockets_open
            .fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_is_a_whole_response() {
        let text = std::str::from_utf8(REFUSAL).unwrap();
        let (_, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(text.contains(&format!("content-length: {}\r\n", body.len())));
    }

    #[test]
    fn caps_count_per_client_and_in_total_and_free_on_drop() {
        let caps = Arc::new(Caps::new(3, 2, 1, Arc::default()));
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let a1 = caps.admit(a, true).unwrap();
        let _a2 = caps.admit(a, true).unwrap();
        assert_eq!(caps.admit(a, true).err(), Some(ConnectionCap::PerClient));
        // The same client as an IPv4-mapped IPv6 address.
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(
            caps.admit(mapped, true).err(),
            Some(ConnectionCap::PerClient)
        );
        let _b1 = caps.admit(b, true).unwrap();
        assert_eq!(caps.admit(b, false).err(), Some(ConnectionCap::Total));
        drop(a1);
        let _a3 = caps.admit(a, true).unwrap();
        assert_eq!(caps.metrics.connections_open.load(Ordering::Relaxed), 3);
        let t = caps.open_websocket().unwrap();
        assert!(caps.open_websocket().is_none());
        drop(t);
        assert!(caps.open_websocket().is_some());
    }

    #[test]
    fn a_trusted_proxy_is_held_to_the_total_cap_only() {
        let caps = Arc::new(Caps::new(3, 1, 1, Arc::default()));
        let lb: IpAddr = "10.0.0.9".parse().unwrap();
        let held: Vec<_> = (0..3).map(|_| caps.admit(lb, false).unwrap()).collect();
        assert_eq!(caps.admit(lb, false).err(), Some(ConnectionCap::Total));
        drop(held);
        assert!(caps.per_client.lock().unwrap().is_empty());
    }
}
