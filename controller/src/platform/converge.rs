//! In a cluster, one controller leads (an etcd election: whoever holds the `leader` key
//! under its lease) and converges: the instances placed on a cell that is gone (its
//! presence expired with its lease) are placed again on the cells that are up, the same
//! index of the same release, each on the cell that runs the fewest of its app. The
//! replacement and the removal of the lost placement are one transaction, so an
//! instance is never placed twice nor lost between the two. A cell that comes back
//! finds those placements gone and stops what it still ran of them (`cell/presence.rs`
//! keeps them unpublished meanwhile).
//!
//! A placement whose cell is gone and that is not of the app's current release (a
//! deployment under way, or one that failed) is only removed: the deployment that made
//! it sees it lost and fails clearly, and the old instances keep running.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use paas_api::state::CellPresence;

use super::Platform;
use crate::cell::presence::CELL_TTL;

/// How long the leader's records outlive its last renewal.
const LEADER_TTL: Duration = Duration::from_secs(3);
/// How often the leader renews its lease and converges, and others try to lead.
const TICK: Duration = Duration::from_millis(500);

impl Platform {
    /// Takes part in the election and, while leading, converges; runs forever.
    pub(super) async fn lead(self: Arc<Self>, me: String) {
        loop {
            match self.hold_leadership(&me).await {
                Ok(()) => {}
                Err(e) => tracing::warn!("leading the cluster: {e}"),
            }
            tokio::time::sleep(TICK).await;
        }
    }

    /// Tries to become the leader; while it is, renews its lease and converges. Returns
    /// when it is not (or no longer) the leader.
    async fn hold_leadership(&self, me: &str) -> Result<(), crate::store::StoreError> {
        if self.store.leader().await?.is_some() {
            return Ok(());
        }
        let lease = self.store.grant_lease(LEADER_TTL).await?;
        if !self.store.try_lead(me, lease).await? {
            let _ = self.store.revoke_lease(lease).await;
            return Ok(());
        }
        tracing::info!(controller = %me, "this controller leads the cluster: it converges");
        // Cells that were away while no controller led get a lease's time to come back
        // before their instances are placed elsewhere.
        let settle = tokio::time::Instant::now() + CELL_TTL;
        loop {
            tokio::time::sleep(TICK).await;
            if let Err(e) = self.store.keep_alive(lease).await {
                tracing::warn!("renewing the leader's lease: {e}; leading no more");
                return Ok(());
            }
            if tokio::time::Instant::now() >= settle {
                if let Err(e) = self.converge().await {
                    tracing::warn!("converging: {e}");
                }
            }
        }
    }

    /// Places again the instances whose cell is gone. See the module docs.
    async fn converge(&self) -> Result<(), crate::store::StoreError> {
        let mut cells: Vec<CellPresence> = self.store.cells().await?;
        let placed = self.store.assignments().await?;
        let lost: Vec<_> = placed
            .iter()
            .filter(|(cell, ..)| !cells.iter().any(|c| c.id == *cell))
            .collect();
        if lost.is_empty() {
            return Ok(());
        }
        // Instances of each app per cell, as placed.
        let mut per_cell: HashMap<(String, String), u32> = HashMap::new();
        for (cell, _, a) in &placed {
            *per_cell
                .entry((a.app.to_string(), cell.clone()))
                .or_default() += 1;
        }
        for (from, id, a) in lost {
            let current = self.store.app(&a.app).await?.filter(|app| !app.stopped);
            let of_current_release = current
                .as_ref()
                .and_then(|app| app.release.as_ref())
                .is_some_and(|r| r.droplet == a.droplet);
            if !of_current_release {
                tracing::info!(app = %a.app, index = a.index, cell = %from, "removing a placement on a lost cell: it is not of the app's current release");
                self.store.unassign(from, id).await?;
                continue;
            }
            let need = a.settings.memory.bytes();
            let free = |c: &CellPresence| c.memory_bytes.saturating_sub(c.memory_used_bytes);
            let Some(to) = cells
                .iter_mut()
                .filter(|c| free(c) >= need)
                .min_by_key(|c| {
                    (
                        per_cell
                            .get(&(a.app.to_string(), c.id.clone()))
                            .copied()
                            .unwrap_or(0),
                        u64::MAX - free(c),
                    )
                })
            else {
                tracing::warn!(app = %a.app, index = a.index, cell = %from, "an instance of a lost cell has nowhere to run: no cell that is up has {} MiB free", need >> 20);
                continue;
            };
            to.memory_used_bytes += need;
            *per_cell
                .entry((a.app.to_string(), to.id.clone()))
                .or_default() += 1;
            let new_id = crate::store::new_guid();
            self.store
                .replace_assignment(from, id, &to.id, &new_id, a)
                .await?;
            let to = to.id.clone();
            tracing::info!(app = %a.app, index = a.index, lost = %from, %to, "placed an instance of a lost cell again");
            self.record_event(
                &a.app,
                "reschedule",
                Some(a.index),
                None,
                &format!("cell {from} was lost; the instance runs again on cell {to}"),
            )
            .await;
        }
        Ok(())
    }
}
