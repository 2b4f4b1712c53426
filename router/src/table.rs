//! The route table: host → the instances serving it. Immutable once built.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

/// One instance that serves a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    pub addr: SocketAddr,
    pub index: u32,
    /// The `__VCAP_ID__` sticky-session value naming this instance: an opaque hash of
    /// its address, so the cookie reveals nothing of the network inside.
    pub sticky: String,
}

impl Backend {
    pub fn new(addr: SocketAddr, index: u32) -> Self {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in addr.to_string().bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        Backend {
            addr,
            index,
            sticky: format!("{h:016x}"),
        }
    }
}

/// The instances of one route and the round-robin position among them.
#[derive(Debug)]
pub struct Pool {
    pub app: String,
    pub backends: Vec<Backend>,
    next: AtomicUsize,
}

impl Pool {
    /// The next instance in round-robin order, or `None` when there is none.
    pub fn pick(&self) -> Option<&Backend> {
        self.pick_where(|_| true)
    }

    /// The next instance in round-robin order that `usable` accepts; if it accepts none,
    /// the next one anyway (better a likely failure than a certain 503).
    pub fn pick_where(&self, usable: impl Fn(&Backend) -> bool) -> Option<&Backend> {
        let len = self.backends.len();
        if len == 0 {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..len)
            .map(|i| &self.backends[(start + i) % len])
            .find(|b| usable(b))
            .or_else(|| self.backends.get(start % len))
    }
}

/// A snapshot of every route. Build a new one to change anything.
#[derive(Debug, Default)]
pub struct RouteTable {
    hosts: HashMap<String, Pool>,
}

impl RouteTable {
    pub fn new() -> Self {
        Self::default()
    }

    /// Routes `host` (already lowercase) to `backends` of `app`. A route with no
    /// backends is known but unavailable (503, not 404).
    pub fn insert(&mut self, host: &str, app: &str, backends: Vec<Backend>) {
        self.hosts.insert(
            host.to_ascii_lowercase(),
            Pool {
                app: app.to_string(),
                backends,
                // Start each pool at a different place so that many routers (or a
                // restarted one) do not all send their first request to instance 0.
                next: AtomicUsize::new(random_start()),
            },
        );
    }

    /// A table from the API's route list; backends whose address does not parse are
    /// left out.
    pub fn from_entries(entries: &[paas_api::RouteEntry]) -> Self {
        let mut t = RouteTable::new();
        for e in entries {
            let backends = e
                .backends
                .iter()
                .filter_map(|b| Some(Backend::new(b.addr.parse().ok()?, b.index)))
                .collect();
            t.insert(&e.host, &e.app, backends);
        }
        t
    }

    pub fn lookup(&self, host: &str) -> Option<&Pool> {
        self.hosts.get(host)
    }

    pub fn len(&self) -> usize {
        self.hosts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }
}

fn random_start() -> usize {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u8(0);
    h.finish() as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_robin_visits_every_backend_in_turn() {
        let mut t = RouteTable::new();
        let b = |i: u32| Backend::new(SocketAddr::from(([10, 0, 0, i as u8], 8080)), i);
        t.insert("App.localhost", "app", vec![b(0), b(1), b(2)]);
        let pool = t.lookup("app.localhost").unwrap();
        let picks: Vec<u32> = (0..6).map(|_| pool.pick().unwrap().index).collect();
        for i in 0..3 {
            assert_eq!(picks.iter().filter(|&&p| p == i).count(), 2, "{picks:?}");
        }
        assert_eq!(picks[0], picks[3]);
    }

    #[test]
    fn picking_skips_unusable_backends_unless_all_are() {
        let mut t = RouteTable::new();
        let b = |i: u32| Backend::new(SocketAddr::from(([10, 0, 0, i as u8], 8080)), i);
        t.insert("a.localhost", "a", vec![b(0), b(1), b(2)]);
        let pool = t.lookup("a.localhost").unwrap();
        for _ in 0..6 {
            assert_ne!(pool.pick_where(|b| b.index != 1).unwrap().index, 1);
        }
        assert!(pool.pick_where(|_| false).is_some());
        assert_ne!(b(0).sticky, b(1).sticky);
        assert_eq!(b(0).sticky.len(), 16);
    }

    #[test]
    fn empty_pool_picks_nothing() {
        let mut t = RouteTable::new();
        t.insert("a.localhost", "a", vec![]);
        assert!(t.lookup("a.localhost").unwrap().pick().is_none());
        assert!(t.lookup("b.localhost").is_none());
    }
}
