//! The platform's handle on an instance, wherever it runs.
//!
//! On a single host the platform asks this host's cell directly and holds the
//! [`Instance`] it supervises ([`Placed::Here`]). In a cluster it places each instance
//! on a cell through the state store (`assigned/CELL/INSTANCE`) and follows what the
//! cells report (`actual/`, `cells/`): an [`Assigned`] knows an instance only from
//! there, so it is the same whichever host runs it and whichever controller placed it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use paas_api::state::{self, ActualInstance, Assignment, CellPresence};
use paas_api::{AppName, InstanceSummary};
use paas_kv::Mirrored;
use tokio::sync::watch;

use super::background::Background;
use crate::cell::{Instance, InstanceState, LocalCell, STOP_GRACE};
use crate::store::Store;

/// An instance the platform runs, on this host or placed on a cell.
#[derive(Clone)]
pub enum Placed {
    Here(Arc<Instance>),
    Assigned(Arc<Assigned>),
}

impl Placed {
    pub fn id(&self) -> &str {
        match self {
            Placed::Here(i) => &i.id,
            Placed::Assigned(a) => &a.id,
        }
    }

    pub fn index(&self) -> u32 {
        match self {
            Placed::Here(i) => i.index,
            Placed::Assigned(a) => a.index,
        }
    }

    /// Its process type.
    pub fn process(&self) -> &str {
        match self {
            Placed::Here(i) => &i.process,
            Placed::Assigned(a) => &a.process,
        }
    }

    pub fn app(&self) -> &AppName {
        match self {
            Placed::Here(i) => &i.app,
            Placed::Assigned(a) => &a.app,
        }
    }

    /// The cell it was placed on; `None` for an instance of this host's own cell.
    pub fn cell(&self) -> Option<&str> {
        match self {
            Placed::Here(_) => None,
            Placed::Assigned(a) => Some(&a.cell),
        }
    }

    /// What the API reports about it: measured here if this host's cell runs it, else
    /// as its cell measured it (`usage`), else as the store has it (no usage).
    pub fn summary(&self, cell: &LocalCell, usage: &Usage) -> InstanceSummary {
        match self {
            Placed::Here(i) => i.summary(),
            Placed::Assigned(a) => match cell.assigned_instance(&a.id) {
                Some(i) => i.summary(),
                None => usage.get(&a.id).cloned().unwrap_or_else(|| a.summary()),
            },
        }
    }

    /// Where the router may send requests: only while it runs.
    pub fn routable_addr(&self) -> Option<SocketAddr> {
        match self {
            Placed::Here(i) => i.routable_addr(),
            Placed::Assigned(a) => a.routable_addr(),
        }
    }

    /// Waits until it first runs (`Ok`) or crashes, stops or cannot start (`Err`, why).
    pub async fn started(&self) -> Result<(), String> {
        match self {
            Placed::Here(i) => i.started().await,
            Placed::Assigned(a) => a.started().await,
        }
    }

    /// Takes it off its cell now (the cell drains and stops it), without waiting; a
    /// no-op for an instance of this host, which [`Placed::stop`] stops.
    pub async fn withdraw(&self) {
        if let Placed::Assigned(a) = self {
            a.withdraw().await;
        }
    }

    /// Stops it and waits until it is gone.
    pub async fn stop(&self) {
        match self {
            Placed::Here(i) => i.stop().await,
            Placed::Assigned(a) => a.stop().await,
        }
    }
}

/// Instances as the cells that run them measure them, by instance id.
pub type Usage = HashMap<String, InstanceSummary>;

/// What the cells of a cluster report, as this controller follows it.
#[derive(Default)]
pub struct ClusterView {
    actual: Mutex<HashMap<String, ActualInstance>>,
    cells: Mutex<HashMap<String, CellPresence>>,
    /// Bumped at every change, for those waiting on one.
    changed: watch::Sender<u64>,
}

impl ClusterView {
    fn bump(&self) {
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Follows `actual/` and `cells/` in the store; `on_change` runs after each change.
    pub fn follow(
        self: &Arc<Self>,
        store: &Store,
        background: &Background,
        on_change: Arc<dyn Fn() + Send + Sync>,
    ) {
        let (view, store_a, notify) = (Arc::clone(self), store.clone(), Arc::clone(&on_change));
        background.spawn_until_shutdown(async move {
            store_a
                .mirror(state::ACTUAL, |m| {
                    {
                        let mut map = view.actual.lock().unwrap_or_else(|p| p.into_inner());
                        apply(&mut map, m, |key| {
                            key.rsplit('/').next().map(str::to_string)
                        });
                    }
                    view.bump();
                    notify();
                })
                .await
        });
        let (view, store_c) = (Arc::clone(self), store.clone());
        background.spawn_until_shutdown(async move {
            store_c
                .mirror(state::CELLS, |m| {
                    {
                        let mut map = view.cells.lock().unwrap_or_else(|p| p.into_inner());
                        apply(&mut map, m, |key| {
                            key.strip_prefix(state::CELLS).map(str::to_string)
                        });
                    }
                    view.bump();
                    on_change();
                })
                .await
        });
    }

    fn actual(&self, id: &str) -> Option<ActualInstance> {
        self.actual
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    /// Where cell `id`'s host serves its peers, if it is up.
    pub fn peer_of(&self, id: &str) -> Option<String> {
        self.cells
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .and_then(|c| c.peer.clone())
    }

    fn has_cell(&self, id: &str) -> bool {
        self.cells
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(id)
    }
}

/// Applies a mirrored change to `map`, keyed by what `id_of` makes of each store key.
fn apply<T: serde::de::DeserializeOwned>(
    map: &mut HashMap<String, T>,
    m: Mirrored<'_>,
    id_of: impl Fn(&str) -> Option<String>,
) {
    let read = |kv: &paas_kv::KeyValue| -> Option<(String, T)> {
        let id = id_of(&kv.key)?;
        match serde_json::from_slice(&kv.value) {
            Ok(v) => Some((id, v)),
            Err(e) => {
                tracing::warn!(key = %kv.key, "ignoring a record the controller cannot read: {e}");
                None
            }
        }
    };
    match m {
        Mirrored::Reset(kvs) => *map = kvs.iter().filter_map(read).collect(),
        Mirrored::Put(kv) => {
            if let Some((id, v)) = read(kv) {
                map.insert(id, v);
            }
        }
        Mirrored::Delete(key) => {
            if let Some(id) = id_of(key) {
                map.remove(&id);
            }
        }
    }
}

/// The cell an instance needing `need` bytes of memory goes to: among the cells with
/// that much free, one that runs the fewest of its app's instances (`of_app`, by cell
/// id), then the one with the most free. Its memory is counted as taken.
pub fn pick_cell(
    cells: &mut [CellPresence],
    need: u64,
    of_app: impl Fn(&str) -> u32,
) -> Option<&mut CellPresence> {
    let free = |c: &CellPresence| c.memory_bytes.saturating_sub(c.memory_used_bytes);
    let cell = cells
        .iter_mut()
        .filter(|c| free(c) >= need)
        .min_by_key(|c| (of_app(&c.id), u64::MAX - free(c)))?;
    cell.memory_used_bytes += need;
    Some(cell)
}

/// An instance placed on a cell through the state store.
pub struct Assigned {
    pub id: String,
    pub app: AppName,
    pub process: String,
    pub index: u32,
    pub cell: String,
    /// How long it may take to report running: the app's health-check allowance, plus
    /// fetching and unpacking its droplet.
    start_within: Duration,
    view: Arc<ClusterView>,
    store: Store,
}

/// What fetching and unpacking a droplet on a cell may add to an instance's start.
const DROPLET_ALLOWANCE: Duration = Duration::from_secs(60);

impl Assigned {
    pub fn new(
        id: String,
        cell: String,
        a: &Assignment,
        start_timeout: Duration,
        view: &Arc<ClusterView>,
        store: &Store,
    ) -> Self {
        let start = a
            .settings
            .start_timeout_secs
            .map_or(start_timeout, |s| Duration::from_secs(s.into()));
        Assigned {
            id,
            app: a.app.clone(),
            process: a.process.clone(),
            index: a.index,
            cell,
            start_within: start + DROPLET_ALLOWANCE,
            view: Arc::clone(view),
            store: store.clone(),
        }
    }

    fn summary(&self) -> InstanceSummary {
        let actual = self.view.actual(&self.id);
        InstanceSummary {
            id: self.id.clone(),
            process: self.process.clone(),
            index: self.index,
            state: actual
                .as_ref()
                .map_or("starting", |a| a.state.as_str())
                .to_string(),
            since_ms: actual.as_ref().map_or(0, |a| a.since_ms),
            // Cells do not report usage yet: what it is given, not what it uses.
            memory_bytes: 0,
            cpu_percent: 0.0,
            cpu_ns: 0,
            disk_bytes: 0,
            cell: self.cell.clone(),
        }
    }

    fn routable_addr(&self) -> Option<SocketAddr> {
        let a = self.view.actual(&self.id)?;
        if a.state != InstanceState::Running.as_str() {
            return None;
        }
        a.address?.parse().ok()
    }

    async fn started(&self) -> Result<(), String> {
        let mut changed = self.view.changed.subscribe();
        let deadline = tokio::time::Instant::now() + self.start_within;
        let mut cell_seen = false;
        loop {
            match self.view.actual(&self.id) {
                Some(a) if a.state == InstanceState::Running.as_str() => return Ok(()),
                Some(a) if a.state == "crashed" => {
                    return Err(a.reason.unwrap_or_else(|| "crashed".to_string()))
                }
                _ => {}
            }
            if self.view.has_cell(&self.cell) {
                cell_seen = true;
            } else if cell_seen {
                return Err(format!("was lost with its cell {}", self.cell));
            }
            tokio::select! {
                r = changed.changed() => if r.is_err() {
                    return Err("was not followed any more".to_string());
                },
                _ = tokio::time::sleep_until(deadline) => return Err(format!(
                    "was not reported running by cell {} within {} s",
                    self.cell,
                    self.start_within.as_secs()
                )),
            }
        }
    }

    /// Takes it off its cell, and waits until the cell reports it gone (or is gone
    /// itself), at most the grace period and a little more.
    /// Deletes its placement, trying again for a few seconds if the store fails.
    async fn withdraw(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while let Err(e) = self.store.unassign(&self.cell, &self.id).await {
            tracing::warn!(app = %self.app, index = self.index, "taking an instance off cell {}: {e}", self.cell);
            if tokio::time::Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    async fn stop(&self) {
        let deadline = tokio::time::Instant::now() + STOP_GRACE + Duration::from_secs(5);
        self.withdraw().await;
        let mut changed = self.view.changed.subscribe();
        while self.view.actual(&self.id).is_some() && self.view.has_cell(&self.cell) {
            tokio::select! {
                r = changed.changed() => if r.is_err() { return },
                _ = tokio::time::sleep_until(deadline) => return,
            }
        }
    }
}
