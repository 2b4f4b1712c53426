//! The route table: host and path → the instances serving them. Immutable once built.
//!
//! A route is a host (`app.example.com`, or a wildcard `*.example.com`) and an optional
//! path prefix (`/api`). A request goes to the route whose host matches exactly, else to
//! the most specific wildcard; among that host's routes the longest path prefix that
//! matches on a segment boundary wins (`/api` takes `/api` and `/api/v1`, not `/apis`).

use crate::route_service::RouteService;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

pub use paas_api::Balance;

/// One instance that serves a route.
#[derive(Debug, Clone)]
pub struct Backend {
    pub addr: SocketAddr,
    pub index: u32,
    /// The `__VCAP_ID__` sticky-session value naming this instance: an opaque hash of
    /// its address, so the cookie reveals nothing of the network inside.
    pub sticky: Arc<str>,
    /// Requests under way to this instance, shared by every route (and every table
    /// snapshot) that leads to it.
    active: Arc<AtomicUsize>,
}

impl PartialEq for Backend {
    fn eq(&self, other: &Self) -> bool {
        (self.addr, self.index, &self.sticky) == (other.addr, other.index, &other.sticky)
    }
}

impl Eq for Backend {}

/// Counts one request under way to a backend until dropped.
#[derive(Debug)]
pub struct ActiveRequest(Arc<AtomicUsize>);

impl Drop for ActiveRequest {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
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
            sticky: Arc::from(format!("{h:016x}")),
            active: Arc::default(),
        }
    }

    /// Requests under way to this instance now.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    /// Counts a request to this instance until the returned guard is dropped.
    pub fn begin_request(&self) -> ActiveRequest {
        self.active.fetch_add(1, Ordering::Relaxed);
        ActiveRequest(Arc::clone(&self.active))
    }
}

/// The instances of one route and the round-robin position among them.
#[derive(Debug)]
pub struct Pool {
    /// Shared, so that a request names its app without copying the name.
    pub app: Arc<str>,
    pub backends: Vec<Backend>,
    pub balance: Balance,
    /// The largest request body the route takes, in bytes; `None` for no limit.
    pub max_body: Option<u64>,
    /// The route service requests go through first, if one is bound.
    pub route_service: Option<BoundService>,
    next: AtomicUsize,
}

/// A route's route service, or why the one bound cannot be used (its requests then
/// fail: a route service is never skipped).
pub type BoundService = Result<Arc<RouteService>, Arc<str>>;

/// How a route treats its requests.
#[derive(Debug, Clone, Default)]
pub struct RouteOptions {
    pub balance: Balance,
    /// The largest request body, in bytes; `None` for no limit.
    pub max_body: Option<u64>,
    pub route_service: Option<BoundService>,
}

impl Pool {
    /// The next instance in round-robin order, or `None` when there is none.
    pub fn pick(&self) -> Option<&Backend> {
        self.pick_where(|_| true)
    }

    /// The instance the route's balancing picks among those `usable` accepts: the next
    /// in round-robin order, or the one with the fewest requests under way (ties in
    /// round-robin order). If `usable` accepts none, the next one anyway (better a
    /// likely failure than a certain 503).
    pub fn pick_where(&self, usable: impl Fn(&Backend) -> bool) -> Option<&Backend> {
        let len = self.backends.len();
        if len == 0 {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let mut in_turn = (0..len).map(|i| &self.backends[(start + i) % len]);
        let chosen = match self.balance {
            Balance::RoundRobin => in_turn.find(|b| usable(b)),
            Balance::LeastConnections => in_turn
                .filter(|b| usable(b))
                // min_by_key keeps the first of equals: round-robin among the idlest.
                .min_by_key(|b| b.active()),
        };
        chosen.or_else(|| self.backends.get(start % len))
    }
}

/// The routes of one host, longest path prefix first (the root route, `""`, last).
#[derive(Debug, Default)]
struct HostRoutes {
    paths: Vec<(String, Pool)>,
}

impl HostRoutes {
    fn lookup(&self, path: &str) -> Option<&Pool> {
        self.paths
            .iter()
            .find(|(prefix, _)| path_has_prefix(path, prefix))
            .map(|(_, pool)| pool)
    }
}

/// Whether `path` is `prefix` or lies under it: `/api` has prefix `/api`, `/api/x` too,
/// `/apis` does not. The empty prefix (the root route) takes every path.
fn path_has_prefix(path: &str, prefix: &str) -> bool {
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/') || prefix.is_empty(),
        None => false,
    }
}

/// A snapshot of every route. Build a new one to change anything.
#[derive(Debug, Default)]
pub struct RouteTable {
    exact: HashMap<String, HostRoutes>,
    /// Wildcard routes by the suffix they match, with its leading dot: `*.example.com`
    /// is kept as `.example.com`.
    wildcards: HashMap<String, HostRoutes>,
    /// Whether any route has a route service: only then does a request's path need
    /// to look (see the direct path).
    route_services: bool,
}

impl RouteTable {
    pub fn new() -> Self {
        Self::default()
    }

    /// Routes `host` to `backends` of `app`. A route with no backends is known but
    /// unavailable (503, not 404).
    pub fn insert(&mut self, host: &str, app: &str, backends: Vec<Backend>) {
        self.insert_route(host, "", app, backends);
    }

    /// Routes `host` (exact, or `*.suffix`) and the path prefix `path` (`""` for every
    /// path, else `/segment...` without a trailing slash) to `backends` of `app`,
    /// round-robin.
    pub fn insert_route(&mut self, host: &str, path: &str, app: &str, backends: Vec<Backend>) {
        self.insert_with(host, path, app, backends, RouteOptions::default());
    }

    /// As [`RouteTable::insert_route`], with the route's balancing and limits.
    pub fn insert_with(
        &mut self,
        host: &str,
        path: &str,
        app: &str,
        backends: Vec<Backend>,
        options: RouteOptions,
    ) {
        let host = host.to_ascii_lowercase();
        let routes = match host.strip_prefix('*') {
            Some(suffix) => self.wildcards.entry(suffix.to_string()).or_default(),
            None => self.exact.entry(host).or_default(),
        };
        let path = path.trim_end_matches('/').to_string();
        self.route_services |= options.route_service.is_some();
        let pool = Pool {
            app: Arc::from(app),
            backends,
            balance: options.balance,
            max_body: options.max_body,
            route_service: options.route_service,
            // Start each pool at a different place so that many routers (or a
            // restarted one) do not all send their first request to instance 0.
            next: AtomicUsize::new(random_start()),
        };
        match routes.paths.iter_mut().find(|(p, _)| *p == path) {
            Some(slot) => slot.1 = pool,
            None => {
                routes.paths.push((path, pool));
                routes
                    .paths
                    .sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
            }
        }
    }

    /// A table from the API's route list: its mapped routes, without backends whose
    /// address does not parse.
    pub fn from_entries(entries: &[paas_api::RouteEntry]) -> Self {
        let mut t = RouteTable::new();
        for e in entries {
            let Some(app) = &e.app else {
                continue;
            };
            let backends = e
                .backends
                .iter()
                .filter_map(|b| Some(Backend::new(b.addr.parse().ok()?, b.index)))
                .collect();
            let route_service = e.route_service_url.as_deref().map(|url| {
                RouteService::new(url, e.route_service_key.as_deref().unwrap_or(""))
                    .map(Arc::new)
                    .map_err(|why| {
                        tracing::warn!(host = %e.host, path = %e.path, "the route service {url} cannot be used: {why}");
                        Arc::from(format!("its route service {url} cannot be used: {why}"))
                    })
            });
            let options = RouteOptions {
                balance: e.balance,
                max_body: e.max_body_bytes,
                route_service,
            };
            t.insert_with(&e.host, &e.path, app, backends, options);
        }
        t
    }

    /// The pool serving `host` (normalised: lowercase, no port) and `path`: the exact
    /// host's routes, else the most specific wildcard's that has a route for `path`.
    pub fn lookup(&self, host: &str, path: &str) -> Option<&Pool> {
        if let Some(pool) = self.exact.get(host).and_then(|r| r.lookup(path)) {
            return Some(pool);
        }
        if self.wildcards.is_empty() {
            return None;
        }
        host.match_indices('.')
            .filter_map(|(i, _)| self.wildcards.get(&host[i..]))
            .find_map(|routes| routes.lookup(path))
    }

    /// The pool whose route service a request for `host` and `path` must pass, if
    /// any: found by the path as given, and by the path as an app would read it
    /// (`/%61dmin`, `//admin`, `/x/../admin;p` are `/admin`), so that no spelling of a
    /// path under a route with a service reaches the app past it.
    pub fn service_route(&self, host: &str, path: &str) -> Option<(&Pool, &BoundService)> {
        let read = crate::route_service::normalise_path(path);
        let with_service = |p: &str| {
            let pool = self.lookup(host, p)?;
            Some((pool, pool.route_service.as_ref()?))
        };
        let by_read = with_service(&read);
        by_read.or_else(|| with_service(path))
    }

    /// Whether any route has a route service.
    pub fn has_route_services(&self) -> bool {
        self.route_services
    }

    /// Makes each backend share the request count of the same instance in `old`, so
    /// counts carry over when a new snapshot replaces it.
    pub fn carry_counts_from(&mut self, old: &RouteTable) {
        // One counter per instance: the old table's, else the first new one met, so
        // several routes to one instance share it too.
        let mut counts: HashMap<SocketAddr, Arc<AtomicUsize>> = old
            .pools()
            .flat_map(|p| p.backends.iter())
            .map(|b| (b.addr, Arc::clone(&b.active)))
            .collect();
        for routes in self.exact.values_mut().chain(self.wildcards.values_mut()) {
            for (_, pool) in &mut routes.paths {
                for b in &mut pool.backends {
                    let count = counts
                        .entry(b.addr)
                        .or_insert_with(|| Arc::clone(&b.active));
                    b.active = Arc::clone(count);
                }
            }
        }
    }

    fn pools(&self) -> impl Iterator<Item = &Pool> {
        self.exact
            .values()
            .chain(self.wildcards.values())
            .flat_map(|r| r.paths.iter().map(|(_, p)| p))
    }

    /// How many routes (host and path pairs) the table holds.
    pub fn len(&self) -> usize {
        self.pools().count()
    }

    pub fn is_empty(&self) -> bool {
        self.pools().next().is_none()
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
        let pool = t.lookup("app.localhost", "/").unwrap();
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
        let pool = t.lookup("a.localhost", "/").unwrap();
        for _ in 0..6 {
            assert_ne!(pool.pick_where(|b| b.index != 1).unwrap().index, 1);
        }
        assert!(pool.pick_where(|_| false).is_some());
        assert_ne!(b(0).sticky, b(1).sticky);
        assert_eq!(b(0).sticky.len(), 16);
    }

    fn table(routes: &[(&str, &str, &str)]) -> RouteTable {
        let mut t = RouteTable::new();
        for (host, path, app) in routes {
            t.insert_route(host, path, app, vec![]);
        }
        t
    }

    fn app_at<'a>(t: &'a RouteTable, host: &str, path: &str) -> Option<&'a str> {
        t.lookup(host, path).map(|p| &*p.app)
    }

    #[test]
    fn longest_path_prefix_wins_on_segment_boundaries() {
        let t = table(&[
            ("shop.localhost", "", "web"),
            ("shop.localhost", "/api", "api"),
            ("shop.localhost", "/api/v2", "api2"),
        ]);
        assert_eq!(app_at(&t, "shop.localhost", "/"), Some("web"));
        assert_eq!(app_at(&t, "shop.localhost", "/api"), Some("api"));
        assert_eq!(app_at(&t, "shop.localhost", "/api/users"), Some("api"));
        assert_eq!(app_at(&t, "shop.localhost", "/apis"), Some("web"));
        assert_eq!(app_at(&t, "shop.localhost", "/api/v2/x"), Some("api2"));
        assert_eq!(app_at(&t, "shop.localhost", "/api/v20"), Some("api"));
        assert_eq!(t.len(), 3);
        let only_api = table(&[("x.localhost", "/api", "api")]);
        assert_eq!(app_at(&only_api, "x.localhost", "/"), None);
    }

    #[test]
    fn exact_hosts_beat_wildcards_and_deeper_wildcards_beat_shallower() {
        let t = table(&[
            ("*.example.com", "", "any"),
            ("*.eu.example.com", "", "eu"),
            ("www.example.com", "", "www"),
            ("api.example.com", "/v1", "v1"),
        ]);
        assert_eq!(app_at(&t, "www.example.com", "/"), Some("www"));
        assert_eq!(app_at(&t, "shop.example.com", "/"), Some("any"));
        assert_eq!(app_at(&t, "a.b.example.com", "/"), Some("any"));
        assert_eq!(app_at(&t, "shop.eu.example.com", "/"), Some("eu"));
        assert_eq!(app_at(&t, "example.com", "/"), None);
        // The exact host has no route for this path: the wildcard takes it.
        assert_eq!(app_at(&t, "api.example.com", "/"), Some("any"));
        assert_eq!(app_at(&t, "api.example.com", "/v1/x"), Some("v1"));
    }

    #[test]
    fn inserting_a_route_again_replaces_it() {
        let mut t = table(&[("a.localhost", "/x/", "old")]);
        t.insert_route("A.localhost", "/x", "new", vec![]);
        assert_eq!(t.len(), 1);
        assert_eq!(app_at(&t, "a.localhost", "/x"), Some("new"));
    }

    const LEAST: RouteOptions = RouteOptions {
        balance: Balance::LeastConnections,
        max_body: None,
        route_service: None,
    };

    #[test]
    fn least_connections_picks_the_idlest_and_counts_carry_over() {
        let b = |i: u32| Backend::new(SocketAddr::from(([10, 0, 0, i as u8], 8080)), i);
        let mut t = RouteTable::new();
        t.insert_with("a.localhost", "", "a", vec![b(0), b(1), b(2)], LEAST);
        let pool = t.lookup("a.localhost", "/").unwrap();
        let busy: Vec<ActiveRequest> = [0, 0, 2]
            .iter()
            .map(|&i| pool.backends[i].begin_request())
            .collect();
        for _ in 0..5 {
            assert_eq!(pool.pick().unwrap().index, 1);
        }
        assert_eq!(pool.backends[0].active(), 2);
        // A new snapshot of the same instances keeps their counts.
        let mut next = RouteTable::new();
        next.insert_with("a.localhost", "", "a", vec![b(0), b(1), b(2)], LEAST);
        next.insert_route("other.localhost", "", "a", vec![b(0)]);
        next.carry_counts_from(&t);
        assert_eq!(
            next.lookup("a.localhost", "/").unwrap().backends[0].active(),
            2
        );
        assert_eq!(
            next.lookup("other.localhost", "/").unwrap().backends[0].active(),
            2
        );
        drop(busy);
        assert_eq!(
            next.lookup("a.localhost", "/").unwrap().backends[0].active(),
            0
        );
    }

    #[test]
    fn empty_pool_picks_nothing() {
        let mut t = RouteTable::new();
        t.insert("a.localhost", "a", vec![]);
        assert!(t.lookup("a.localhost", "/").unwrap().pick().is_none());
        assert!(t.lookup("b.localhost", "/").is_none());
    }
}

/// Property tests: the table answers as a plain scan over every route would.
#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    /// The reference: every exact route of the host, longest prefix first; else the
    /// wildcards from the most specific suffix down.
    fn scan<'a>(routes: &'a [(String, String, String)], host: &str, path: &str) -> Option<&'a str> {
        let best = |candidates: Vec<&'a (String, String, String)>| {
            candidates
                .into_iter()
                .filter(|(_, p, _)| p.is_empty() || path == p || path.starts_with(&format!("{p}/")))
                .max_by_key(|(_, p, _)| p.len())
                .map(|(_, _, app)| app.as_str())
        };
        let last_of = |h: &str, p: &str| {
            routes
                .iter()
                .rev()
                .find(|(rh, rp, _)| rh == h && rp == p)
                .map(|r| r as *const _)
        };
        // Later inserts replace earlier ones of the same host and path.
        let live: Vec<&(String, String, String)> = routes
            .iter()
            .filter(|r| last_of(&r.0, &r.1) == Some(*r as *const _))
            .collect();
        let exact = live.iter().copied().filter(|(h, _, _)| h == host).collect();
        if let Some(app) = best(exact) {
            return Some(app);
        }
        let mut suffixes: Vec<&str> = host.match_indices('.').map(|(i, _)| &host[i..]).collect();
        suffixes.sort_by_key(|s| std::cmp::Reverse(s.len()));
        suffixes.into_iter().find_map(|suffix| {
            best(
                live.iter()
                    .copied()
                    .filter(|(h, _, _)| h.strip_prefix('*') == Some(suffix))
                    .collect(),
            )
        })
    }

    fn host() -> impl Strategy<Value = String> {
        prop::collection::vec(prop::sample::select(vec!["a", "b", "eu", "shop"]), 1..4)
            .prop_map(|labels| format!("{}.example.com", labels.join(".")))
    }

    fn route_host() -> impl Strategy<Value = String> {
        prop_oneof![
            host(),
            host().prop_map(|h| format!("*.{}", h.split_once('.').map_or("", |(_, r)| r))),
            Just("*.example.com".to_string()),
        ]
    }

    fn path() -> impl Strategy<Value = String> {
        prop::collection::vec(prop::sample::select(vec!["api", "v1", "apis", "x"]), 0..3)
            .prop_map(|segs| segs.iter().map(|s| format!("/{s}")).collect())
    }

    proptest! {
        #[test]
        fn lookup_agrees_with_a_scan_of_every_route(
            routes in prop::collection::vec((route_host(), path(), "[a-z]{1,3}"), 0..12),
            host in host(),
            path in path(),
            trailing in any::<bool>(),
        ) {
            let mut t = RouteTable::new();
            for (h, p, app) in &routes {
                t.insert_route(h, p, app, vec![]);
            }
            let asked = if trailing { format!("{path}/") } else { path.clone() };
            let want = scan(&routes, &host, &asked);
            prop_assert_eq!(t.lookup(&host, &asked).map(|p| &*p.app), want);
        }
    }
}
