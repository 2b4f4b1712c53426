//! The platform's state store: a small key-value interface shaped like etcd's v3 API.
//!
//! Everything paas keeps (apps, releases, routes, and in a cluster cells, placements
//! and instance addresses) is written once against [`Kv`], and runs on either backend:
//! [`sqlite::SqliteKv`], the embedded default of a single host (as k3s's kine runs the
//! etcd API over SQLite), or [`etcd::EtcdKv`], a real etcd cluster. One conformance suite
//! (`tests/it`) runs against both, so a feature written on this interface behaves the
//! same on one host and on many.
//!
//! The interface is the part of etcd that the platform needs and no more: single-key
//! reads and prefix ranges at the current revision, transactions that compare
//! modification revisions (compare-and-swap, create-if-absent) and then put or delete,
//! watches of a prefix from a revision (history first, then live), and leases whose
//! keys vanish when they are not kept alive.
#![forbid(unsafe_code)]

use std::future::Future;
use std::time::Duration;

pub mod etcd;
mod mirror;
pub mod sqlite;

pub use mirror::{mirror, Mirrored};

/// A store-wide, strictly increasing version: every transaction that writes makes one.
pub type Revision = i64;

/// A lease: keys put with it are deleted when it expires or is revoked.
pub type LeaseId = i64;

/// A stored key and what is known of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Vec<u8>,
    /// The revision that created the key (kept across updates).
    pub create_revision: Revision,
    /// The revision of its last change.
    pub mod_revision: Revision,
    pub lease: Option<LeaseId>,
}

/// A condition of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Compare {
    /// The key was last changed at this revision; 0 means the key does not exist.
    ModRevision(String, Revision),
}

/// A write of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Put {
        key: String,
        value: Vec<u8>,
        lease: Option<LeaseId>,
    },
    Delete {
        key: String,
    },
}

/// If every comparison of `when` holds, the writes of `then`, else those of `otherwise`,
/// all at one new revision (or none, if the branch taken has no write).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Txn {
    pub when: Vec<Compare>,
    pub then: Vec<Op>,
    pub otherwise: Vec<Op>,
}

impl Txn {
    /// A transaction of one unconditional write.
    pub fn just(op: Op) -> Txn {
        Txn {
            then: vec![op],
            ..Txn::default()
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxnResult {
    /// Whether `when` held (and `then` was applied).
    pub succeeded: bool,
    /// The store's revision after the transaction.
    pub revision: Revision,
}

/// A change seen by a watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Put(KeyValue),
    Delete { key: String, mod_revision: Revision },
}

impl Event {
    pub fn key(&self) -> &str {
        match self {
            Event::Put(kv) => &kv.key,
            Event::Delete { key, .. } => key,
        }
    }

    pub fn revision(&self) -> Revision {
        match self {
            Event::Put(kv) => kv.mod_revision,
            Event::Delete { mod_revision, .. } => *mod_revision,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KvError {
    /// The store could not be reached or did not answer; the same call may work later.
    #[error("the state store is unavailable: {0}")]
    Unavailable(String),
    /// A watch asked for history the store no longer keeps.
    #[error("the state store no longer keeps changes from revision {0}: read the keys again and watch from now")]
    Compacted(Revision),
    #[error("lease {0} does not exist (it expired or was revoked)")]
    NoLease(LeaseId),
    /// The local database failed.
    #[error("the state database: {0}")]
    Storage(String),
    /// A request the store refuses as it stands (see [`check_txn`]).
    #[error("the state store refused the request: {0}")]
    Invalid(String),
}

/// The changes of a watch, in revision order: those from the revision asked for that
/// the store still keeps, then each new one as it is made.
pub struct Watch {
    rx: tokio::sync::mpsc::Receiver<Result<Event, KvError>>,
}

impl Watch {
    /// A watch fed by a task that sends into `rx`'s channel.
    pub fn from_channel(rx: tokio::sync::mpsc::Receiver<Result<Event, KvError>>) -> Self {
        Watch { rx }
    }

    /// The next change; `None` once the store has closed the watch.
    pub async fn next(&mut self) -> Option<Result<Event, KvError>> {
        self.rx.recv().await
    }
}

/// The store. See the crate docs.
pub trait Kv: Send + Sync {
    /// The key's value, if it exists.
    fn get(&self, key: &str) -> impl Future<Output = Result<Option<KeyValue>, KvError>> + Send;

    /// Every key that starts with `prefix`, in key order, and the revision they were
    /// read at.
    fn range(
        &self,
        prefix: &str,
    ) -> impl Future<Output = Result<(Vec<KeyValue>, Revision), KvError>> + Send;

    /// Runs `txn` atomically.
    fn txn(&self, txn: Txn) -> impl Future<Output = Result<TxnResult, KvError>> + Send;

    /// Changes of keys under `prefix` from revision `from` on (0: from now).
    fn watch(
        &self,
        prefix: &str,
        from: Revision,
    ) -> impl Future<Output = Result<Watch, KvError>> + Send;

    /// A new lease of `ttl` (whole seconds, at least one).
    fn grant(&self, ttl: Duration) -> impl Future<Output = Result<LeaseId, KvError>> + Send;

    /// Renews the lease for another TTL.
    fn keep_alive(&self, lease: LeaseId) -> impl Future<Output = Result<(), KvError>> + Send;

    /// Ends the lease now, deleting its keys.
    fn revoke(&self, lease: LeaseId) -> impl Future<Output = Result<(), KvError>> + Send;

    /// Puts `value` at `key`, whatever was there; returns the new revision.
    fn put(
        &self,
        key: &str,
        value: Vec<u8>,
    ) -> impl Future<Output = Result<Revision, KvError>> + Send {
        let op = Op::Put {
            key: key.to_string(),
            value,
            lease: None,
        };
        async move { Ok(self.txn(Txn::just(op)).await?.revision) }
    }

    /// Deletes `key` if it exists; returns the store's revision after.
    fn delete(&self, key: &str) -> impl Future<Output = Result<Revision, KvError>> + Send {
        let op = Op::Delete {
            key: key.to_string(),
        };
        async move { Ok(self.txn(Txn::just(op)).await?.revision) }
    }
}

/// The most writes one transaction may hold: etcd's default (`--max-txn-ops`).
pub const MAX_TXN_OPS: usize = 128;

/// Refuses what etcd refuses, so both backends take the same transactions: an empty
/// key, more than [`MAX_TXN_OPS`] writes in a branch, or one key written twice in one.
pub fn check_txn(txn: &Txn) -> Result<(), KvError> {
    for ops in [&txn.then, &txn.otherwise] {
        if ops.len() > MAX_TXN_OPS {
            return Err(KvError::Invalid(format!(
                "a transaction writes {} keys; at most {MAX_TXN_OPS} may be written at once",
                ops.len()
            )));
        }
        let mut keys = std::collections::HashSet::new();
        for op in ops.iter() {
            let key = match op {
                Op::Put { key, .. } | Op::Delete { key } => key,
            };
            if key.is_empty() {
                return Err(KvError::Invalid("a key may not be empty".into()));
            }
            if !keys.insert(key) {
                return Err(KvError::Invalid(format!(
                    "a transaction writes {key:?} twice"
                )));
            }
        }
    }
    Ok(())
}

/// Either backend, chosen at start: paasd holds one of these, so that the code above
/// the store is written once and not made generic over [`Kv`].
#[derive(Clone)]
pub enum Backend {
    Sqlite(sqlite::SqliteKv),
    /// Boxed: etcd's client is a few kilobytes, the SQLite handle one pointer.
    Etcd(Box<etcd::EtcdKv>),
}

impl Kv for Backend {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, KvError> {
        match self {
            Backend::Sqlite(kv) => kv.get(key).await,
            Backend::Etcd(kv) => kv.get(key).await,
        }
    }

    async fn range(&self, prefix: &str) -> Result<(Vec<KeyValue>, Revision), KvError> {
        match self {
            Backend::Sqlite(kv) => kv.range(prefix).await,
            Backend::Etcd(kv) => kv.range(prefix).await,
        }
    }

    async fn txn(&self, txn: Txn) -> Result<TxnResult, KvError> {
        match self {
            Backend::Sqlite(kv) => kv.txn(txn).await,
            Backend::Etcd(kv) => kv.txn(txn).await,
        }
    }

    async fn watch(&self, prefix: &str, from: Revision) -> Result<Watch, KvError> {
        match self {
            Backend::Sqlite(kv) => kv.watch(prefix, from).await,
            Backend::Etcd(kv) => kv.watch(prefix, from).await,
        }
    }

    async fn grant(&self, ttl: Duration) -> Result<LeaseId, KvError> {
        match self {
            Backend::Sqlite(kv) => kv.grant(ttl).await,
            Backend::Etcd(kv) => kv.grant(ttl).await,
        }
    }

    async fn keep_alive(&self, lease: LeaseId) -> Result<(), KvError> {
        match self {
            Backend::Sqlite(kv) => kv.keep_alive(lease).await,
            Backend::Etcd(kv) => kv.keep_alive(lease).await,
        }
    }

    async fn revoke(&self, lease: LeaseId) -> Result<(), KvError> {
        match self {
            Backend::Sqlite(kv) => kv.revoke(lease).await,
            Backend::Etcd(kv) => kv.revoke(lease).await,
        }
    }
}
