//! The cell's presence in the state store, and the instances it reports there.
//!
//! One task owns the cell's lease: it grants it (a TTL of [`CELL_TTL`]), writes the
//! cell's record and every instance's under it, and renews it every
//! [`KEEP_ALIVE_EVERY`], well inside the TTL. When the store says the lease is gone (it
//! expired while the store could not be reached), the task takes a new one and writes
//! everything again. Instance changes come to the task in order, on a channel, so the
//! store sees them in the order they happened and no instance's write waits on the
//! store. A cell that dies stops renewing: its records vanish within the TTL, which is
//! how routers and controllers on other hosts learn that it is gone.

use std::collections::HashMap;
use std::time::Duration;

use paas_api::state::{ActualInstance, CellPresence};
use paas_kv::LeaseId;
use tokio::sync::mpsc;

use crate::store::{Store, StoreError};

/// How long the cell's records outlive its last renewal.
pub const CELL_TTL: Duration = Duration::from_secs(3);
/// How often the lease is renewed.
const KEEP_ALIVE_EVERY: Duration = Duration::from_secs(1);

/// A change of one instance, for the store.
pub enum Change {
    /// Instance `id` is now as described.
    Put(String, ActualInstance),
    /// Instance `id` stopped and is gone.
    Gone(String),
    /// Revoke the lease (every record goes at once) and end the task.
    Leave(tokio::sync::oneshot::Sender<()>),
}

/// Keeps the cell's presence and its instances' records; see the module docs.
pub async fn run(
    store: Store,
    mut cell: CellPresence,
    mut changes: mpsc::UnboundedReceiver<Change>,
) {
    let mut actuals: HashMap<String, ActualInstance> = HashMap::new();
    let mut lease: Option<LeaseId> = None;
    let mut tick = tokio::time::interval(KEEP_ALIVE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                match lease {
                    Some(l) => match store.keep_alive(l).await {
                        Ok(()) => {}
                        Err(StoreError::Kv(paas_kv::KvError::NoLease(_))) => {
                            tracing::warn!(cell = %cell.id, "the cell's lease expired; taking a new one and reporting everything again");
                            lease = None;
                            tick.reset_immediately();
                        }
                        Err(e) => tracing::warn!(cell = %cell.id, "renewing the cell's lease: {e}"),
                    },
                    None => {
                        lease = establish(&store, &mut cell, &actuals).await;
                    }
                }
            }
            change = changes.recv() => {
                let Some(change) = change else { return };
                let write = match change {
                    Change::Put(id, actual) => {
                        actuals.insert(id.clone(), actual);
                        Some(id)
                    }
                    Change::Gone(id) => {
                        if let (Some(gone), Some(_)) = (actuals.remove(&id), lease) {
                            if let Err(e) = store.delete_actual(&gone.app, &id).await {
                                tracing::warn!(cell = %cell.id, "reporting a stopped instance: {e}");
                            }
                        }
                        None
                    }
                    Change::Leave(done) => {
                        if let Some(l) = lease {
                            let _ = store.revoke_lease(l).await;
                        }
                        let _ = done.send(());
                        return;
                    }
                };
                let Some(l) = lease else { continue };
                if let Some(id) = write {
                    if let Err(e) = store.put_actual(&id, &actuals[&id], l).await {
                        tracing::warn!(cell = %cell.id, "reporting an instance: {e}");
                    }
                }
                count(&mut cell, &actuals);
                if let Err(e) = store.put_cell(&cell, l).await {
                    tracing::warn!(cell = %cell.id, "reporting the cell: {e}");
                }
            }
        }
    }
}

/// Takes a lease and writes the cell and every instance under it; `None` (to be tried
/// again at the next tick) when the store cannot be reached.
async fn establish(
    store: &Store,
    cell: &mut CellPresence,
    actuals: &HashMap<String, ActualInstance>,
) -> Option<LeaseId> {
    let attempt = async {
        let lease = store.grant_lease(CELL_TTL).await?;
        count(cell, actuals);
        store.put_cell(cell, lease).await?;
        for (id, actual) in actuals {
            store.put_actual(id, actual, lease).await?;
        }
        Ok::<_, StoreError>(lease)
    };
    match attempt.await {
        Ok(lease) => {
            tracing::info!(cell = %cell.id, address = %cell.address, "the cell is present in the state store");
            Some(lease)
        }
        Err(e) => {
            tracing::warn!(cell = %cell.id, "announcing the cell: {e}; trying again");
            None
        }
    }
}

/// Brings the cell's counts in line with its instances.
fn count(cell: &mut CellPresence, actuals: &HashMap<String, ActualInstance>) {
    cell.instances = actuals.len() as u32;
    cell.memory_used_bytes = actuals.values().map(|a| a.memory_bytes).sum();
    cell.updated_ms = crate::logs::now_ms();
}
