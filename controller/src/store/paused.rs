//! Canary deployments paused in a cluster, at `paused/APP`: the controller that holds
//! the pause (its canary instances and the app's lock are in its memory), so that any
//! other controller refuses changes of the app meanwhile and has it continued or
//! cancelled there.

use paas_api::AppName;
use paas_kv::Kv;
use serde::{Deserialize, Serialize};

use super::{decode, encode, put, Store, StoreError};

const PREFIX: &str = "/paas/paused/";

/// Where a paused deployment is held.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PausedAt {
    /// The holding controller's host (its cell id).
    pub host: String,
    /// Its peer listener, `IP:PORT`.
    pub peer: String,
}

impl Store {
    pub async fn set_paused(&self, app: &AppName, at: &PausedAt) -> Result<(), StoreError> {
        let txn = paas_kv::Txn {
            when: Vec::new(),
            then: vec![put(format!("{PREFIX}{app}"), encode(at))],
            otherwise: Vec::new(),
        };
        self.kv.txn(txn).await?;
        Ok(())
    }

    pub async fn clear_paused(&self, app: &AppName) -> Result<(), StoreError> {
        self.kv.delete(&format!("{PREFIX}{app}")).await?;
        Ok(())
    }

    /// Where `app`'s paused deployment is held, if one is recorded.
    pub async fn paused_at(&self, app: &AppName) -> Result<Option<PausedAt>, StoreError> {
        match self.kv.get(&format!("{PREFIX}{app}")).await? {
            Some(kv) => Ok(Some(decode(&kv)?)),
            None => Ok(None),
        }
    }
}
