//! Roll-outs under way on a single host, at `rolling-out/APP`: written when one begins
//! and deleted when it ends, so one that paasd's death cut off is found at the next
//! start.

use paas_api::AppName;
use paas_kv::Kv;
use serde::{Deserialize, Serialize};

use super::{decode, encode, put, Store, StoreError};

const PREFIX: &str = "/paas/rolling-out/";

/// What was under way, and since when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollingOut {
    /// `deployment`, `restart`, `rollback`, `scale`.
    pub what: String,
    pub started_ms: u64,
}

impl Store {
    pub async fn begin_roll_out(&self, app: &AppName, doc: &RollingOut) -> Result<(), StoreError> {
        let txn = paas_kv::Txn {
            when: Vec::new(),
            then: vec![put(format!("{PREFIX}{app}"), encode(doc))],
            otherwise: Vec::new(),
        };
        self.kv.txn(txn).await?;
        Ok(())
    }

    pub async fn end_roll_out(&self, app: &AppName) -> Result<(), StoreError> {
        self.kv.delete(&format!("{PREFIX}{app}")).await?;
        Ok(())
    }

    /// Every roll-out recorded as under way, by app name.
    pub async fn roll_outs(&self) -> Result<Vec<(String, RollingOut)>, StoreError> {
        let (kvs, _) = self.kv.range(PREFIX).await?;
        kvs.iter()
            .map(|kv| Ok((kv.key[PREFIX.len()..].to_string(), decode(kv)?)))
            .collect()
    }
}
