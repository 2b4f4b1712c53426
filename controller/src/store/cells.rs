//! Cells and the instances they run, as the cells report them: documents under a cell's
//! lease (`paas_api::state`), so a cell that stops renewing it disappears, with its
//! instances, a few seconds later.

use std::time::Duration;

use paas_api::state::{self, ActualInstance, CellPresence};
use paas_api::AppName;
use paas_kv::{Kv, LeaseId, Op, Txn};

use super::{decode, encode, Store, StoreError};

fn leased(key: String, value: Vec<u8>, lease: LeaseId) -> Txn {
    Txn::just(Op::Put {
        key,
        value,
        lease: Some(lease),
    })
}

impl Store {
    /// A new lease of `ttl`; keys put with it vanish when it is not renewed in time.
    pub async fn grant_lease(&self, ttl: Duration) -> Result<LeaseId, StoreError> {
        Ok(self.kv.grant(ttl).await?)
    }

    pub async fn keep_alive(&self, lease: LeaseId) -> Result<(), StoreError> {
        Ok(self.kv.keep_alive(lease).await?)
    }

    /// Ends the lease now: its cell and instances are gone at once.
    pub async fn revoke_lease(&self, lease: LeaseId) -> Result<(), StoreError> {
        Ok(self.kv.revoke(lease).await?)
    }

    pub async fn put_cell(&self, cell: &CellPresence, lease: LeaseId) -> Result<(), StoreError> {
        let txn = leased(state::cell_key(&cell.id), encode(cell), lease);
        self.kv.txn(txn).await?;
        Ok(())
    }

    /// Every cell that is up, by id.
    pub async fn cells(&self) -> Result<Vec<CellPresence>, StoreError> {
        let (kvs, _) = self.kv.range(state::CELLS).await?;
        kvs.iter().map(decode).collect()
    }

    /// Records instance `id` as its cell sees it now.
    pub async fn put_actual(
        &self,
        id: &str,
        actual: &ActualInstance,
        lease: LeaseId,
    ) -> Result<(), StoreError> {
        let txn = leased(state::actual_key(&actual.app, id), encode(actual), lease);
        self.kv.txn(txn).await?;
        Ok(())
    }

    pub async fn delete_actual(&self, app: &AppName, id: &str) -> Result<(), StoreError> {
        self.kv.delete(&state::actual_key(app, id)).await?;
        Ok(())
    }

    /// Every instance any cell reports.
    pub async fn actuals(&self) -> Result<Vec<ActualInstance>, StoreError> {
        let (kvs, _) = self.kv.range(state::ACTUAL).await?;
        kvs.iter().map(decode).collect()
    }
}
