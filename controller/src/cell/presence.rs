//! The cell's presence in the state store, and the instances it reports there.
//!
//! One task owns the cell's lease: it grants it (a TTL of [`CELL_TTL`]) and writes the
//! cell's record and every instance's under it; a second one renews it every
//! [`KEEP_ALIVE_EVERY`], well inside the TTL. When the store says the lease is gone (it
//! expired while the store could not be reached), the task takes a new one and writes
//! everything again. Instance changes come to the task in order, on a channel, so the
//! store sees them in the order they happened and no instance's write waits on the
//! store. A cell that dies stops renewing: its records vanish within the TTL, which is
//! how routers and controllers on other hosts learn that it is gone.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use paas_api::state::{ActualInstance, CellPresence};
use paas_api::AppName;
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
    /// The store said this lease is gone (from the renewing task).
    LeaseLost(LeaseId),
    /// The cell runs what the controller placed on it (`assigned/CELL/`): after its lease
    /// was lost, it publishes again only the instances still placed on it. The others
    /// were placed elsewhere while it was away, and it is stopping them: routed again,
    /// they would be routed twice (Diego's "suspect" cell).
    PlacedOnly,
}

/// Keeps the cell's presence and its instances' records; see the module docs.
///
/// A write that fails is not lost: the records are written again, whole, at the next
/// tick (and a deletion that failed is tried again), so a record never keeps pointing
/// at a port its instance no longer holds. The lease is renewed by a task of its own,
/// so a slow write never keeps it from being renewed in time.
pub async fn run(
    store: Store,
    mut cell: CellPresence,
    sender: mpsc::UnboundedSender<Change>,
    mut changes: mpsc::UnboundedReceiver<Change>,
) {
    let mut actuals: HashMap<String, ActualInstance> = HashMap::new();
    // Instances no longer placed here, which are not published again (`PlacedOnly`).
    let mut withheld: HashSet<String> = HashSet::new();
    let mut placed_only = false;
    let mut lease: Option<LeaseId> = None;
    let (current, held) = tokio::sync::watch::channel(None);
    let renewing = tokio::spawn(renew(store.clone(), held, sender, cell.id.clone()));
    // Records to write again, and deletions to try again, at the next tick.
    let mut dirty = false;
    let mut undeleted: Vec<(AppName, String)> = Vec::new();
    let mut tick = tokio::time::interval(KEEP_ALIVE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                match lease {
                    None => {
                        if placed_only {
                            match store.assigned_ids(&cell.id).await {
                                Ok(placed) => withheld.extend(
                                    actuals.keys().filter(|id| !placed.contains(*id)).cloned(),
                                ),
                                Err(e) => {
                                    tracing::warn!(cell = %cell.id, "reading what is placed on the cell: {e}; trying again");
                                    continue;
                                }
                            }
                        }
                        lease = establish(&store, &mut cell, &actuals, &withheld).await;
                        dirty = false;
                    }
                    Some(l) if dirty => {
                        dirty = write_all(&store, &mut cell, &actuals, &withheld, l).await.is_err();
                    }
                    Some(_) => {}
                }
                if lease.is_some() {
                    let mut still = Vec::new();
                    for (app, id) in undeleted.drain(..) {
                        if store.delete_actual(&app, &id).await.is_err() {
                            still.push((app, id));
                        }
                    }
                    undeleted = still;
                }
                current.send_replace(lease);
            }
            change = changes.recv() => {
                let Some(change) = change else { break };
                match change {
                    Change::Put(id, actual) => {
                        let write = match lease {
                            Some(_) if withheld.contains(&id) => Ok(()),
                            Some(l) => store.put_actual(&id, &actual, l).await,
                            None => Ok(()),
                        };
                        actuals.insert(id, actual);
                        if let Err(e) = write {
                            tracing::warn!(cell = %cell.id, "reporting an instance: {e}; writing again");
                            dirty = true;
                        }
                    }
                    Change::Gone(id) => {
                        withheld.remove(&id);
                        if let Some(gone) = actuals.remove(&id) {
                            if lease.is_some() {
                                if let Err(e) = store.delete_actual(&gone.app, &id).await {
                                    tracing::warn!(cell = %cell.id, "reporting a stopped instance: {e}; trying again");
                                    undeleted.push((gone.app, id));
                                }
                            }
                        }
                    }
                    Change::LeaseLost(l) => {
                        if lease == Some(l) {
                            tracing::warn!(cell = %cell.id, "the cell's lease expired; taking a new one and reporting everything again");
                            lease = None;
                            current.send_replace(None);
                            tick.reset_immediately();
                        }
                        continue;
                    }
                    Change::PlacedOnly => {
                        placed_only = true;
                        continue;
                    }
                    Change::Leave(done) => {
                        if let Some(l) = lease {
                            let _ = store.revoke_lease(l).await;
                        }
                        let _ = done.send(());
                        break;
                    }
                }
                if let Some(l) = lease {
                    count(&mut cell, &actuals, &withheld);
                    if let Err(e) = store.put_cell(&cell, l).await {
                        tracing::warn!(cell = %cell.id, "reporting the cell: {e}; writing again");
                        dirty = true;
                    }
                }
            }
        }
    }
    renewing.abort();
}

/// Renews the lease `held` names every [`KEEP_ALIVE_EVERY`]; tells `owner` when the store
/// says it is gone.
async fn renew(
    store: Store,
    held: tokio::sync::watch::Receiver<Option<LeaseId>>,
    owner: mpsc::UnboundedSender<Change>,
    cell: String,
) {
    let mut tick = tokio::time::interval(KEEP_ALIVE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(lease) = *held.borrow() else {
            continue;
        };
        match store.keep_alive(lease).await {
            Ok(()) => {}
            Err(StoreError::Kv(paas_kv::KvError::NoLease(_))) => {
                let _ = owner.send(Change::LeaseLost(lease));
            }
            Err(e) => tracing::warn!(%cell, "renewing the cell's lease: {e}"),
        }
    }
}

/// Writes the cell and every instance under `lease`.
async fn write_all(
    store: &Store,
    cell: &mut CellPresence,
    actuals: &HashMap<String, ActualInstance>,
    withheld: &HashSet<String>,
    lease: LeaseId,
) -> Result<(), StoreError> {
    count(cell, actuals, withheld);
    store.put_cell(cell, lease).await?;
    for (id, actual) in actuals.iter().filter(|(id, _)| !withheld.contains(*id)) {
        store.put_actual(id, actual, lease).await?;
    }
    Ok(())
}

/// Takes a lease and writes the cell and every instance under it; `None` (to be tried
/// again at the next tick) when the store cannot be reached.
async fn establish(
    store: &Store,
    cell: &mut CellPresence,
    actuals: &HashMap<String, ActualInstance>,
    withheld: &HashSet<String>,
) -> Option<LeaseId> {
    let attempt = async {
        let lease = store.grant_lease(CELL_TTL).await?;
        write_all(store, cell, actuals, withheld, lease).await?;
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

/// Brings the cell's counts in line with its instances (the withheld ones are stopping).
fn count(
    cell: &mut CellPresence,
    actuals: &HashMap<String, ActualInstance>,
    withheld: &HashSet<String>,
) {
    let placed = || actuals.iter().filter(|(id, _)| !withheld.contains(*id));
    cell.instances = placed().count() as u32;
    cell.memory_used_bytes = placed().map(|(_, a)| a.memory_bytes).sum();
    cell.updated_ms = crate::logs::now_ms();
}
