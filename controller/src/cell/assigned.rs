//! The instances the controller placed on this cell (`assigned/CELL/INSTANCE` in the
//! state store): the cell follows its own prefix and runs each instance for as long as
//! its key is there, fetching the droplet from a host that keeps it when it has none.
//!
//! An assignment never changes: a new release or a new index is a new instance with a
//! new key, and deleting the key stops the instance. After the store was away, the keys
//! are read again whole: instances whose keys are gone stop, new ones start, the others
//! run on untouched.

use std::collections::HashMap;
use std::sync::Arc;

use paas_api::state::{self, ActualInstance, Assignment};
use paas_kv::Mirrored;
use paas_runtime::IdMap;
use tokio::sync::{mpsc, watch};

use super::presence::Change;
use super::{InstanceSpec, LocalCell, Reporter};
use crate::peer::Peers;
use crate::store::Store;

/// What the follower learns, owned, so the store's callback only sends it on.
enum Learned {
    All(Vec<(String, Assignment)>),
    Put(String, Box<Assignment>),
    Gone(String),
}

/// Runs what is assigned to `cell` until the task is aborted.
pub(super) async fn follow(
    cell: Arc<LocalCell>,
    store: Store,
    peers: Arc<Peers>,
    reporter: Arc<dyn Reporter>,
) {
    let prefix = state::assigned_prefix(cell.id());
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mirror = {
        let prefix = prefix.clone();
        let store = store.clone();
        tokio::spawn(async move {
            store
                .mirror(&prefix, |m| {
                    let learned = match m {
                        Mirrored::Reset(kvs) => Learned::All(
                            kvs.iter()
                                .filter_map(|kv| read(&prefix, &kv.key, &kv.value))
                                .collect(),
                        ),
                        Mirrored::Put(kv) => match read(&prefix, &kv.key, &kv.value) {
                            Some((id, a)) => Learned::Put(id, Box::new(a)),
                            None => return,
                        },
                        Mirrored::Delete(key) => match key.strip_prefix(prefix.as_str()) {
                            Some(id) => Learned::Gone(id.to_string()),
                            None => return,
                        },
                    };
                    let _ = tx.send(learned);
                })
                .await
        })
    };
    // Each running assignment's stop switch.
    let mut running: HashMap<String, watch::Sender<bool>> = HashMap::new();
    let start = |running: &mut HashMap<String, watch::Sender<bool>>, id: String, a: Assignment| {
        if running.contains_key(&id) {
            return;
        }
        let (stop, stopped) = watch::channel(false);
        running.insert(id.clone(), stop);
        tokio::spawn(run_one(
            Arc::clone(&cell),
            Arc::clone(&peers),
            Arc::clone(&reporter),
            id,
            a,
            stopped,
        ));
    };
    while let Some(learned) = rx.recv().await {
        match learned {
            Learned::All(list) => {
                running.retain(|id, stop| {
                    let keep = list.iter().any(|(i, _)| i == id);
                    if !keep {
                        let _ = stop.send(true);
                    }
                    keep
                });
                for (id, a) in list {
                    start(&mut running, id, a);
                }
            }
            Learned::Put(id, a) => start(&mut running, id, *a),
            Learned::Gone(id) => {
                if let Some(stop) = running.remove(&id) {
                    let _ = stop.send(true);
                }
            }
        }
    }
    mirror.abort();
}

fn read(prefix: &str, key: &str, value: &[u8]) -> Option<(String, Assignment)> {
    let id = key.strip_prefix(prefix)?;
    match serde_json::from_slice(value) {
        Ok(a) => Some((id.to_string(), a)),
        Err(e) => {
            tracing::warn!(%key, "ignoring an assignment this cell cannot read: {e}");
            None
        }
    }
}

/// Runs one assigned instance until `stopped` turns true.
async fn run_one(
    cell: Arc<LocalCell>,
    peers: Arc<Peers>,
    reporter: Arc<dyn Reporter>,
    id: String,
    a: Assignment,
    mut stopped: watch::Receiver<bool>,
) {
    reporter.drains(&a.app, &a.app_guid, &a.drains);
    let ids = IdMap {
        host_base: a.id_base,
        size: IdMap::SIZE,
    };
    let ready = async {
        let blob = peers.blob(&a.droplet).await?;
        cell.droplet_dir(&a.droplet, &blob, ids).await
    };
    let droplet_dir = tokio::select! {
        r = ready => r,
        _ = stopped.wait_for(|s| *s) => return,
    };
    let droplet_dir = match droplet_dir {
        Ok(d) => d,
        Err(e) => {
            let why = format!(
                "its droplet could not be readied on cell {}: {e:#}",
                cell.id()
            );
            tracing::warn!(app = %a.app, index = a.index, "{why}");
            cell.report(Change::Put(
                id.clone(),
                ActualInstance {
                    app: a.app.clone(),
                    process: a.process.clone(),
                    index: a.index,
                    cell: cell.id().to_string(),
                    state: "crashed".to_string(),
                    address: None,
                    since_ms: crate::logs::now_ms(),
                    memory_bytes: 0,
                    reason: Some(why),
                },
            ));
            let _ = stopped.wait_for(|s| *s).await;
            cell.report(Change::Gone(id));
            return;
        }
    };
    let inst = cell.run(
        reporter,
        InstanceSpec {
            id: id.clone(),
            app: a.app,
            app_guid: a.app_guid,
            process: a.process,
            index: a.index,
            settings: a.settings,
            start_command: a.start_command,
            droplet_dir,
            env: a.env,
            system_env: a.system_env,
            id_map: ids,
            uris: a.uris,
            drain: super::DRAIN,
            stdin: false,
            tty: None,
        },
    );
    cell.assigned
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(id.clone(), Arc::clone(&inst));
    let _ = stopped.wait_for(|s| *s).await;
    inst.stop().await;
    cell.assigned
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&id);
}
