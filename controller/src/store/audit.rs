//! The audit trail: a ring of the last [`AUDIT_KEPT`] changes and logins at
//! `audit/SLOT`, numbered by `audit-seq`, as an app's events are kept.

use paas_api::auth::AuditEntry;
use paas_kv::Kv;
use serde::{Deserialize, Serialize};

use super::{decode, encode, guarded, put, Store, StoreError, CAS_TRIES};

/// Entries kept; older ones are overwritten as new ones arrive.
pub const AUDIT_KEPT: u64 = 10_000;
const PREFIX: &str = "/paas/audit/";
const SEQ: &str = "/paas/audit-seq";

#[derive(Debug, Serialize, Deserialize)]
struct AuditDoc {
    seq: u64,
    #[serde(flatten)]
    entry: AuditEntry,
}

impl Store {
    pub async fn add_audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        for _ in 0..CAS_TRIES {
            let (seq, revision) = match self.kv.get(SEQ).await? {
                Some(kv) => (decode::<u64>(&kv)?, kv.mod_revision),
                None => (0, 0),
            };
            let doc = AuditDoc {
                seq,
                entry: entry.clone(),
            };
            let ops = vec![
                put(SEQ.to_string(), encode(&(seq + 1))),
                put(format!("{PREFIX}{:05}", seq % AUDIT_KEPT), encode(&doc)),
            ];
            if self.kv.txn(guarded(SEQ, revision, ops)).await?.succeeded {
                return Ok(());
            }
        }
        Err(StoreError::Contended("the audit trail".into()))
    }

    /// The audit trail, oldest first.
    pub async fn audit(&self) -> Result<Vec<AuditEntry>, StoreError> {
        let (kvs, _) = self.kv.range(PREFIX).await?;
        let mut docs = kvs
            .iter()
            .map(decode::<AuditDoc>)
            .collect::<Result<Vec<_>, _>>()?;
        docs.sort_by_key(|d| d.seq);
        Ok(docs.into_iter().map(|d| d.entry).collect())
    }
}
