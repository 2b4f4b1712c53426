//! The embedded backend: the etcd-shaped interface over one SQLite database, as k3s's
//! kine does, so a single host needs no outside service.
//!
//! Every write is a row of an append-only log (`kv_log`): the key's current value is its
//! newest row, a deletion is a row too, and a transaction's rows share one revision. So
//! reads at the current revision, compare-and-swap on modification revisions and
//! watches replayed from any revision all come from one table. History is kept whole
//! back to the compaction revision; a watch from revision R reads the log from R, then
//! follows the commits of this process, which it is told of through a broadcast channel.
//!
//! Compaction, as etcd's auto-compaction does: once a minute, rows that a newer row of
//! their key replaced, and deletions, are removed when they are more than
//! [`KEEP_REVISIONS`] revisions old. The table then holds each live key once plus the
//! recent history, so ranges do not slow down as the platform ages. A watch from before
//! the compaction revision gets [`KvError::Compacted`], as from etcd.
//!
//! Leases are rows with a deadline; a task of the store revokes the expired ones (their
//! keys are deleted in one transaction), once a second, while the store lives.

use std::path::Path;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use tokio::sync::broadcast;

use crate::{Compare, Event, KeyValue, Kv, KvError, LeaseId, Op, Revision, Txn, TxnResult, Watch};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS kv_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    rev INTEGER NOT NULL,
    key TEXT NOT NULL,
    value BLOB NOT NULL,
    deleted INTEGER NOT NULL,
    create_rev INTEGER NOT NULL,
    lease INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS kv_log_key ON kv_log (key, id);
CREATE INDEX IF NOT EXISTS kv_log_rev ON kv_log (rev);
CREATE TABLE IF NOT EXISTS kv_meta (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
INSERT OR IGNORE INTO kv_meta (name, value) VALUES ('revision', 0);
INSERT OR IGNORE INTO kv_meta (name, value) VALUES ('compacted', 0);
CREATE TABLE IF NOT EXISTS kv_lease (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ttl_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL
);
";

/// How often expired leases are looked for.
const LEASE_SWEEP: Duration = Duration::from_millis(500);
/// How often the log is compacted.
const COMPACT_EVERY: Duration = Duration::from_secs(60);
/// The revisions of history compaction keeps.
pub const KEEP_REVISIONS: Revision = 10_000;

struct Inner {
    db: Mutex<Connection>,
    /// The events of each commit, in order, for live watches.
    commits: broadcast::Sender<Arc<Vec<Event>>>,
}

/// See the module docs. Cheap to clone: clones share one database connection.
#[derive(Clone)]
pub struct SqliteKv {
    inner: Arc<Inner>,
}

fn storage(e: impl std::fmt::Display) -> KvError {
    KvError::Storage(e.to_string())
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl SqliteKv {
    /// Opens (or creates) the store in the SQLite database at `path`, with the same
    /// durability as the rest of paasd (WAL, synchronous commits). Must be called inside
    /// a tokio runtime: the lease sweeper runs on it.
    pub fn open(path: &Path) -> Result<SqliteKv, KvError> {
        let db = Connection::open(path).map_err(storage)?;
        db.pragma_update(None, "journal_mode", "WAL")
            .map_err(storage)?;
        db.pragma_update(None, "synchronous", "FULL")
            .map_err(storage)?;
        db.busy_timeout(Duration::from_secs(5)).map_err(storage)?;
        db.execute_batch(SCHEMA).map_err(storage)?;
        let inner = Arc::new(Inner {
            db: Mutex::new(db),
            commits: broadcast::channel(1024).0,
        });
        tokio::spawn(sweep_leases(Arc::downgrade(&inner)));
        tokio::spawn(compact_now_and_then(Arc::downgrade(&inner)));
        Ok(SqliteKv { inner })
    }

    /// Removes the history at and before `revision`: rows a newer row of their key
    /// replaced, and deletions. Watches from `revision` or before then fail with
    /// [`KvError::Compacted`]. Returns how many rows went.
    pub async fn compact(&self, revision: Revision) -> Result<usize, KvError> {
        self.with_db(move |db| {
            let tx = db
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(storage)?;
            let done: Revision = tx
                .query_row(
                    "SELECT value FROM kv_meta WHERE name = 'compacted'",
                    [],
                    |r| r.get(0),
                )
                .map_err(storage)?;
            let revision = revision.min(current_revision(&tx).map_err(storage)?);
            if revision <= done {
                return Ok(0);
            }
            let replaced = tx
                .execute(
                    "DELETE FROM kv_log WHERE rev <= ?1
                     AND id NOT IN (SELECT MAX(id) FROM kv_log GROUP BY key)",
                    params![revision],
                )
                .map_err(storage)?;
            let deletions = tx
                .execute(
                    "DELETE FROM kv_log WHERE rev <= ?1 AND deleted = 1",
                    params![revision],
                )
                .map_err(storage)?;
            tx.execute(
                "UPDATE kv_meta SET value = ?1 WHERE name = 'compacted'",
                params![revision],
            )
            .map_err(storage)?;
            tx.commit().map_err(storage)?;
            Ok(replaced + deletions)
        })
        .await
    }

    /// Runs `f` on the connection on a blocking thread.
    async fn with_db<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, KvError> + Send + 'static,
    ) -> Result<T, KvError> {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            let mut db = inner.db.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut db)
        })
        .await
        .map_err(storage)?
    }

    /// Applies a transaction and tells live watches of its events.
    async fn apply(&self, txn: Txn) -> Result<TxnResult, KvError> {
        let inner = Arc::clone(&self.inner);
        let (result, events) = self.with_db(move |db| apply(db, &txn)).await?;
        if !events.is_empty() {
            // No receiver is not an error: nobody watches.
            let _ = inner.commits.send(Arc::new(events));
        }
        Ok(result)
    }
}

fn current_revision(db: &Connection) -> rusqlite::Result<Revision> {
    db.query_row(
        "SELECT value FROM kv_meta WHERE name = 'revision'",
        [],
        |r| r.get(0),
    )
}

/// The newest row of each live key in `[?1, ?2)`, in key order.
const RANGE_BETWEEN: &str = "SELECT l.key, l.value, l.create_rev, l.rev, l.lease, l.deleted
     FROM kv_log l
     JOIN (SELECT key, MAX(id) AS id FROM kv_log WHERE key >= ?1 AND key < ?2 GROUP BY key) n
     ON l.id = n.id
     WHERE l.deleted = 0 ORDER BY l.key";
/// The same from `?1` on, for a prefix that has no end.
const RANGE_FROM: &str = "SELECT l.key, l.value, l.create_rev, l.rev, l.lease, l.deleted
     FROM kv_log l
     JOIN (SELECT key, MAX(id) AS id FROM kv_log WHERE key >= ?1 GROUP BY key) n
     ON l.id = n.id
     WHERE l.deleted = 0 ORDER BY l.key";

/// The least key above every key that starts with `prefix`: etcd's range end, by
/// characters rather than bytes since keys are text (SQLite compares text bytewise, and
/// UTF-8's byte order is its characters' order). `None` when no key is above them all.
fn prefix_end(prefix: &str) -> Option<String> {
    let mut end = prefix.to_string();
    while let Some(last) = end.pop() {
        // The next character, over the surrogates, which are no characters.
        if let Some(next) = (last as u32 + 1..=char::MAX as u32).find_map(char::from_u32) {
            end.push(next);
            return Some(end);
        }
    }
    None
}

/// The newest row of `key`, if it exists and is not a deletion.
fn latest(db: &Connection, key: &str) -> rusqlite::Result<Option<KeyValue>> {
    db.query_row(
        "SELECT key, value, create_rev, rev, lease, deleted FROM kv_log
         WHERE key = ?1 ORDER BY id DESC LIMIT 1",
        params![key],
        |r| Ok((row_to_kv(r)?, r.get::<_, bool>(5)?)),
    )
    .optional()
    .map(|o| o.and_then(|(kv, deleted)| (!deleted).then_some(kv)))
}

fn row_to_kv(r: &rusqlite::Row<'_>) -> rusqlite::Result<KeyValue> {
    let lease: i64 = r.get(4)?;
    Ok(KeyValue {
        key: r.get(0)?,
        value: r.get(1)?,
        create_revision: r.get(2)?,
        mod_revision: r.get(3)?,
        lease: (lease != 0).then_some(lease),
    })
}

fn apply(db: &mut Connection, txn: &Txn) -> Result<(TxnResult, Vec<Event>), KvError> {
    crate::check_txn(txn)?;
    let tx = db
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(storage)?;
    let mut succeeded = true;
    for c in &txn.when {
        let Compare::ModRevision(key, want) = c;
        let have = latest(&tx, key)
            .map_err(storage)?
            .map_or(0, |kv| kv.mod_revision);
        if have != *want {
            succeeded = false;
            break;
        }
    }
    let ops = if succeeded { &txn.then } else { &txn.otherwise };
    let mut revision = current_revision(&tx).map_err(storage)?;
    let mut events = Vec::new();
    if !ops.is_empty() {
        let rev = revision + 1;
        for op in ops {
            match op {
                Op::Put { key, value, lease } => {
                    if let Some(id) = lease {
                        let exists: bool = tx
                            .query_row(
                                "SELECT COUNT(*) > 0 FROM kv_lease WHERE id = ?1",
                                params![id],
                                |r| r.get(0),
                            )
                            .map_err(storage)?;
                        if !exists {
                            return Err(KvError::NoLease(*id));
                        }
                    }
                    let create = latest(&tx, key)
                        .map_err(storage)?
                        .map_or(rev, |kv| kv.create_revision);
                    tx.execute(
                        "INSERT INTO kv_log (rev, key, value, deleted, create_rev, lease)
                         VALUES (?1, ?2, ?3, 0, ?4, ?5)",
                        params![rev, key, value, create, lease.unwrap_or(0)],
                    )
                    .map_err(storage)?;
                    events.push(Event::Put(KeyValue {
                        key: key.clone(),
                        value: value.clone(),
                        create_revision: create,
                        mod_revision: rev,
                        lease: *lease,
                    }));
                }
                Op::Delete { key } => {
                    if let Some(old) = latest(&tx, key).map_err(storage)? {
                        tx.execute(
                            "INSERT INTO kv_log (rev, key, value, deleted, create_rev, lease)
                             VALUES (?1, ?2, x'', 1, ?3, 0)",
                            params![rev, key, old.create_revision],
                        )
                        .map_err(storage)?;
                        events.push(Event::Delete {
                            key: key.clone(),
                            mod_revision: rev,
                        });
                    }
                }
            }
        }
        // As in etcd, deleting keys that do not exist writes nothing and makes no
        // revision.
        if !events.is_empty() {
            revision = rev;
            tx.execute(
                "UPDATE kv_meta SET value = ?1 WHERE name = 'revision'",
                params![rev],
            )
            .map_err(storage)?;
        }
    }
    tx.commit().map_err(storage)?;
    Ok((
        TxnResult {
            succeeded,
            revision,
        },
        events,
    ))
}

/// The log rows under `prefix` from revision `from` on, as events, in order.
fn history(db: &Connection, prefix: &str, from: Revision) -> rusqlite::Result<Vec<Event>> {
    let mut stmt = db.prepare(
        "SELECT key, value, create_rev, rev, lease, deleted FROM kv_log
         WHERE rev >= ?1 AND substr(key, 1, length(?2)) = ?2 ORDER BY id",
    )?;
    let rows = stmt.query_map(params![from, prefix], |r| {
        let kv = row_to_kv(r)?;
        Ok(if r.get::<_, bool>(5)? {
            Event::Delete {
                key: kv.key,
                mod_revision: kv.mod_revision,
            }
        } else {
            Event::Put(kv)
        })
    })?;
    rows.collect()
}

/// Compacts the log every [`COMPACT_EVERY`], keeping [`KEEP_REVISIONS`], until the
/// store is dropped.
async fn compact_now_and_then(inner: Weak<Inner>) {
    loop {
        tokio::time::sleep(COMPACT_EVERY).await;
        let Some(inner) = inner.upgrade() else { return };
        let kv = SqliteKv { inner };
        let now = match kv.with_db(|db| current_revision(db).map_err(storage)).await {
            Ok(now) => now,
            Err(e) => {
                tracing::warn!("compacting the state log: {e}");
                continue;
            }
        };
        if now > KEEP_REVISIONS {
            match kv.compact(now - KEEP_REVISIONS).await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(rows = n, "compacted the state log"),
                Err(e) => tracing::warn!("compacting the state log: {e}"),
            }
        }
    }
}

/// Revokes expired leases until the store is dropped.
async fn sweep_leases(inner: Weak<Inner>) {
    loop {
        tokio::time::sleep(LEASE_SWEEP).await;
        let Some(inner) = inner.upgrade() else { return };
        let kv = SqliteKv { inner };
        let expired = kv
            .with_db(|db| {
                let mut stmt = db
                    .prepare("SELECT id FROM kv_lease WHERE expires_ms <= ?1")
                    .map_err(storage)?;
                let ids = stmt
                    .query_map(params![now_ms()], |r| r.get::<_, i64>(0))
                    .map_err(storage)?
                    .collect::<rusqlite::Result<Vec<i64>>>()
                    .map_err(storage)?;
                Ok(ids)
            })
            .await;
        match expired {
            Ok(ids) => {
                for id in ids {
                    if let Err(e) = kv.revoke(id).await {
                        tracing::warn!(lease = id, "revoking an expired lease: {e}");
                    }
                }
            }
            Err(e) => tracing::warn!("looking for expired leases: {e}"),
        }
    }
}

impl Kv for SqliteKv {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, KvError> {
        let key = key.to_string();
        self.with_db(move |db| latest(db, &key).map_err(storage))
            .await
    }

    async fn range(&self, prefix: &str) -> Result<(Vec<KeyValue>, Revision), KvError> {
        let prefix = prefix.to_string();
        self.with_db(move |db| {
            let tx = db.transaction().map_err(storage)?;
            let rows = {
                // Bounded on both sides, so SQLite reads only the prefix's part of the
                // key index, not the whole log (3 ms for a few keys among 23,000 rows
                // with `substr(key, ...) = prefix`; 0.06 ms so).
                let end = prefix_end(&prefix);
                let mut stmt = tx
                    .prepare(if end.is_some() {
                        RANGE_BETWEEN
                    } else {
                        RANGE_FROM
                    })
                    .map_err(storage)?;
                let rows = match &end {
                    Some(end) => stmt.query_map(params![prefix, end], row_to_kv),
                    None => stmt.query_map(params![prefix], row_to_kv),
                }
                .map_err(storage)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(storage)?;
                rows
            };
            let rev = current_revision(&tx).map_err(storage)?;
            Ok((rows, rev))
        })
        .await
    }

    async fn txn(&self, txn: Txn) -> Result<TxnResult, KvError> {
        self.apply(txn).await
    }

    async fn watch(&self, prefix: &str, from: Revision) -> Result<Watch, KvError> {
        // Subscribe before reading history, so no commit falls between the two; commits
        // both read and received are passed over by revision.
        let mut live = self.inner.commits.subscribe();
        let prefix_owned = prefix.to_string();
        let (past, now, compacted) = self
            .with_db(move |db| {
                let now = current_revision(db).map_err(storage)?;
                let compacted: Revision = db
                    .query_row(
                        "SELECT value FROM kv_meta WHERE name = 'compacted'",
                        [],
                        |r| r.get(0),
                    )
                    .map_err(storage)?;
                let past = if from > compacted {
                    history(db, &prefix_owned, from).map_err(storage)?
                } else {
                    Vec::new()
                };
                Ok((past, now, compacted))
            })
            .await?;
        let (tx, rx) = tokio::sync::mpsc::channel(1024);
        if from > 0 && from <= compacted {
            // As etcd: the watch is made, and ends at once saying from where history
            // is kept.
            let _ = tx.try_send(Err(KvError::Compacted(compacted + 1)));
            return Ok(Watch::from_channel(rx));
        }
        let prefix = prefix.to_string();
        tokio::spawn(async move {
            for e in past {
                if tx.send(Ok(e)).await.is_err() {
                    return;
                }
            }
            loop {
                match live.recv().await {
                    Ok(events) => {
                        for e in events.iter() {
                            let wanted = e.revision() > now && e.key().starts_with(&prefix);
                            if wanted && tx.send(Ok(e.clone())).await.is_err() {
                                return;
                            }
                        }
                    }
                    // The watcher fell too far behind to be told every change: it must
                    // read again, as after an etcd compaction.
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        let _ = tx.send(Err(KvError::Compacted(now))).await;
                        return;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        Ok(Watch::from_channel(rx))
    }

    async fn grant(&self, ttl: Duration) -> Result<LeaseId, KvError> {
        let ttl_ms = ttl.as_millis().max(1000) as i64;
        self.with_db(move |db| {
            db.execute(
                "INSERT INTO kv_lease (ttl_ms, expires_ms) VALUES (?1, ?2)",
                params![ttl_ms, now_ms() + ttl_ms],
            )
            .map_err(storage)?;
            Ok(db.last_insert_rowid())
        })
        .await
    }

    async fn keep_alive(&self, lease: LeaseId) -> Result<(), KvError> {
        self.with_db(move |db| {
            let n = db
                .execute(
                    "UPDATE kv_lease SET expires_ms = ?1 + ttl_ms WHERE id = ?2",
                    params![now_ms(), lease],
                )
                .map_err(storage)?;
            if n == 0 {
                return Err(KvError::NoLease(lease));
            }
            Ok(())
        })
        .await
    }

    async fn revoke(&self, lease: LeaseId) -> Result<(), KvError> {
        // The lease's keys: the keys whose newest row is a put with this lease.
        let keys = self
            .with_db(move |db| {
                let n = db
                    .execute("DELETE FROM kv_lease WHERE id = ?1", params![lease])
                    .map_err(storage)?;
                if n == 0 {
                    return Err(KvError::NoLease(lease));
                }
                let mut stmt = db
                    .prepare(
                        "SELECT l.key FROM kv_log l
                         JOIN (SELECT key, MAX(id) AS id FROM kv_log GROUP BY key) n
                         ON l.id = n.id
                         WHERE l.deleted = 0 AND l.lease = ?1",
                    )
                    .map_err(storage)?;
                let keys = stmt
                    .query_map(params![lease], |r| r.get::<_, String>(0))
                    .map_err(storage)?
                    .collect::<rusqlite::Result<Vec<_>>>()
                    .map_err(storage)?;
                Ok(keys)
            })
            .await?;
        if !keys.is_empty() {
            self.apply(Txn {
                then: keys.into_iter().map(|key| Op::Delete { key }).collect(),
                ..Txn::default()
            })
            .await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::prefix_end;

    #[test]
    fn a_prefix_ends_at_its_last_character_moved_one_up() {
        assert_eq!(prefix_end("/paas/apps/").as_deref(), Some("/paas/apps0"));
        assert_eq!(prefix_end("a\u{d7ff}").as_deref(), Some("a\u{e000}"));
        assert_eq!(prefix_end("a\u{10ffff}").as_deref(), Some("b"));
        assert_eq!(prefix_end("\u{10ffff}"), None);
        assert_eq!(prefix_end(""), None);
    }
}
