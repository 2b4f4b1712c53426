//! A router that follows the state store (etcd) itself: routes, the instances cells
//! report, domain certificates and the platform's default one, read once and then kept by a watch, so a change
//! reaches the table as soon as the store has it, with no polling and no controller in
//! between.
//!
//! Each of the four prefixes it needs (`routes/`, `actual/`, `domains/`,
//! `default-certificate`) is read, then watched from just after the revision it was
//! read at, so no change is missed or applied twice, and nothing else of the store (apps
//! and their environments) ever reaches a router. When a watch ends (the store is down,
//! or no longer keeps the history asked for) the router keeps serving its last table and
//! starts over after a pause.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use paas_api::state::{self, ActualInstance, StoredDomain, StoredRoute};
use paas_api::{RouteBackend, RouteEntry};
use paas_kv::{Event, Kv, KvError};
use rustls::sign::CertifiedKey;

use crate::tls::Certificates;
use crate::{RouteTable, Router};

/// How long to wait before reading again after the store failed.
const RETRY: Duration = Duration::from_secs(1);

/// What the router knows of the store, by key.
#[derive(Default)]
struct View {
    routes: BTreeMap<String, StoredRoute>,
    actual: BTreeMap<String, ActualInstance>,
    domains: BTreeMap<String, StoredDomain>,
    /// The platform's own certificate, for names no domain's covers.
    default: Option<StoredDomain>,
}

impl View {
    /// Applies a put (`Some`) or a delete of `key`; true if it changes what is served.
    fn apply(&mut self, key: &str, value: Option<&[u8]>) -> Change {
        fn set<T: serde::de::DeserializeOwned>(
            map: &mut BTreeMap<String, T>,
            key: &str,
            value: Option<&[u8]>,
        ) {
            match value.map(serde_json::from_slice::<T>) {
                Some(Ok(v)) => {
                    map.insert(key.to_string(), v);
                }
                Some(Err(e)) => {
                    tracing::warn!(%key, "ignoring a record the router cannot read: {e}");
                    map.remove(key);
                }
                None => {
                    map.remove(key);
                }
            }
        }
        if key.starts_with(state::ROUTES) {
            set(&mut self.routes, key, value);
            Change::Routes
        } else if key.starts_with(state::ACTUAL) {
            set(&mut self.actual, key, value);
            Change::Routes
        } else if key.starts_with(state::DOMAINS) {
            set(&mut self.domains, key, value);
            Change::Certificates
        } else if key == state::DEFAULT_CERTIFICATE {
            self.default = value.and_then(|v| serde_json::from_slice(v).ok());
            Change::Certificates
        } else {
            Change::None
        }
    }

    /// The table: each route with the running instances of its app that have an address.
    fn entries(&self) -> Vec<RouteEntry> {
        self.routes
            .values()
            .map(|r| {
                let backends = r
                    .app
                    .as_ref()
                    .map(|app| {
                        self.actual
                            .values()
                            .filter(|a| &a.app == app && a.state == "running")
                            .filter_map(|a| {
                                a.address.as_ref().map(|addr| RouteBackend {
                                    addr: addr.clone(),
                                    index: a.index,
                                })
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                r.entry(backends)
            })
            .collect()
    }

    /// The domains' certificates; `fixed` (from --cert) is the default if given, else
    /// the platform's own.
    fn certificates(&self, fixed: Option<Arc<CertifiedKey>>) -> Certificates {
        let key = |d: &StoredDomain| {
            let (Some(cert), Some(key)) = (&d.cert_pem, &d.key_pem) else {
                return None;
            };
            match crate::tls::certified_key(cert, key) {
                Ok(k) => Some(Arc::new(k)),
                Err(e) => {
                    tracing::warn!(domain = %d.name, "its certificate cannot be used: {e}");
                    None
                }
            }
        };
        let default = fixed.or_else(|| self.default.as_ref().and_then(key));
        let mut certs = Certificates::new(default);
        for d in self.domains.values() {
            if let Some(k) = key(d) {
                certs.insert(&d.name, k);
            }
        }
        certs
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Change {
    None,
    Routes,
    Certificates,
}

/// Keeps `router`'s table and certificates in step with the store, forever. `fixed`
/// routes and the `default_cert` are kept whatever the store says.
pub async fn follow<K: Kv>(
    kv: K,
    router: Arc<Router>,
    fixed: Vec<RouteEntry>,
    default_cert: Option<Arc<CertifiedKey>>,
) {
    loop {
        if let Err(e) = follow_once(&kv, &router, &fixed, &default_cert).await {
            tracing::warn!(
                "following the state store: {e}; serving the last table, reading again in {}s",
                RETRY.as_secs()
            );
        }
        tokio::time::sleep(RETRY).await;
    }
}

async fn follow_once<K: Kv>(
    kv: &K,
    router: &Router,
    fixed: &[RouteEntry],
    default_cert: &Option<Arc<CertifiedKey>>,
) -> Result<(), KvError> {
    let mut view = View::default();
    // Each prefix read, then watched from just after the revision it was read at: no
    // change is missed or applied twice, and nothing else of the store (apps and their
    // environments) ever reaches a router.
    let (changes, mut next) = tokio::sync::mpsc::channel(1024);
    let mut followers = tokio::task::JoinSet::new();
    for prefix in [
        state::ROUTES,
        state::ACTUAL,
        state::DOMAINS,
        state::DEFAULT_CERTIFICATE,
    ] {
        let (kvs, revision) = kv.range(prefix).await?;
        for kv in kvs {
            view.apply(&kv.key, Some(&kv.value));
        }
        let mut watch = kv.watch(prefix, revision + 1).await?;
        let changes = changes.clone();
        followers.spawn(async move {
            while let Some(event) = watch.next().await {
                let failed = event.is_err();
                if changes.send(event).await.is_err() || failed {
                    return;
                }
            }
            let _ = changes
                .send(Err(KvError::Unavailable("a watch ended".into())))
                .await;
        });
    }
    drop(changes);
    let publish = |view: &View| {
        let mut entries = view.entries();
        entries.extend(fixed.iter().cloned());
        router.update(RouteTable::from_entries(&entries));
    };
    publish(&view);
    router
        .certificates()
        .update(view.certificates(default_cert.clone()));
    tracing::info!(
        routes = view.routes.len(),
        instances = view.actual.len(),
        "following the state store"
    );
    while let Some(event) = next.recv().await {
        let change = match event? {
            Event::Put(kv) => view.apply(&kv.key, Some(&kv.value)),
            Event::Delete { key, .. } => view.apply(&key, None),
        };
        match change {
            Change::Routes => publish(&view),
            Change::Certificates => router
                .certificates()
                .update(view.certificates(default_cert.clone())),
            Change::None => {}
        }
    }
    Err(KvError::Unavailable("the watches ended".into()))
}
