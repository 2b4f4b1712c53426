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
//!
//! Every few seconds the leader also compares, for each app no controller is changing,
//! what it should run with what is placed ([`Platform::converge_desired`]): that is how
//! the placements of a controller that died in the middle of a change are cleaned up.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use paas_api::state::CellPresence;

use super::placed::pick_cell;
use super::Platform;
use crate::cell::presence::CELL_TTL;

/// How long the leader's records outlive its last renewal.
const LEADER_TTL: Duration = Duration::from_secs(3);
/// How often the leader renews its lease and places again what lost cells ran, and
/// others try to lead.
const TICK: Duration = Duration::from_millis(500);
/// Every how many ticks the leader compares what each app should run with what is
/// placed (a fuller, slower pass: it reads every app).
const DESIRED_EVERY: u32 = 10;

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
        let mut ticks: u32 = 0;
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
                ticks += 1;
                if ticks.is_multiple_of(DESIRED_EVERY) {
                    if let Err(e) = self.converge_desired().await {
                        tracing::warn!("converging: {e}");
                    }
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
        let mut per_cell = per_app_and_cell(&placed);
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
            let app = a.app.to_string();
            let Some(to) = pick_cell(&mut cells, a.settings.memory.bytes(), |c| {
                per_cell
                    .get(&(app.clone(), c.to_string()))
                    .copied()
                    .unwrap_or(0)
            }) else {
                tracing::warn!(app = %a.app, index = a.index, cell = %from, "an instance of a lost cell has nowhere to run: no cell that is up has {} MiB free", a.settings.memory.bytes() >> 20);
                continue;
            };
            let to = to.id.clone();
            *per_cell.entry((app, to.clone())).or_default() += 1;
            let new_id = crate::store::new_guid();
            self.store
                .replace_assignment(from, id, &to, &new_id, a)
                .await?;
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

    /// Brings what is placed in line with what each app should run, for the apps no
    /// controller is changing now (whose lock is free): one instance of each index of
    /// its current release while it is started, and nothing else. Placements a
    /// controller left behind when it died in the middle of a deployment, a stop or a
    /// deletion are removed; missing ones (no cell had room, or the app comes from a
    /// paasd before clusters) are placed.
    async fn converge_desired(&self) -> Result<(), crate::store::StoreError> {
        let mut cells: Vec<CellPresence> = self.store.cells().await?;
        let placed = self.store.assignments().await?;
        let apps = self.store.apps().await?;
        let mut per_cell = per_app_and_cell(&placed);
        for (cell, id, a) in &placed {
            if !apps.iter().any(|app| app.name == a.app) {
                tracing::info!(app = %a.app, index = a.index, %cell, "removing a placement of an app that no longer exists");
                self.store.unassign(cell, id).await?;
            }
        }
        for app in &apps {
            if self.store.is_held(&app_lock_key(&app.name)).await? {
                continue;
            }
            let wanted = match (&app.release, app.stopped) {
                (Some(r), false) => Some(r),
                _ => None,
            };
            // Instances wanted of each process type.
            let plans = wanted.map_or_else(Vec::new, |r| r.processes(&app.settings));
            let desired = |process: &str| {
                plans
                    .iter()
                    .find(|p| p.process == process)
                    .map_or(0, |p| p.settings.instances)
            };
            let mut have: HashMap<(String, u32), ()> = HashMap::new();
            for (cell, id, a) in placed.iter().filter(|(_, _, a)| a.app == app.name) {
                let current = wanted.is_some_and(|r| r.droplet == a.droplet)
                    && a.index < desired(&a.process)
                    && have.insert((a.process.clone(), a.index), ()).is_none();
                if !current {
                    tracing::info!(app = %a.app, process = %a.process, index = a.index, %cell, "removing a placement the app does not want (an old release, a stopped app, or a second of its index)");
                    self.store.unassign(cell, id).await?;
                }
            }
            let Some(release) = wanted else { continue };
            for plan in &plans {
                let count = plan.settings.instances;
                let missing: Vec<u32> = (0..count)
                    .filter(|i| !have.contains_key(&(plan.process.clone(), *i)))
                    .collect();
                if !missing.is_empty() {
                    self.place_missing(app, release, plan, missing, &mut cells, &mut per_cell)
                        .await?;
                }
            }
        }
        Ok(())
    }

    /// Places instances `missing` of process type `plan` of `app`, each on the cell
    /// with room that runs the fewest of the app.
    async fn place_missing(
        &self,
        app: &crate::store::AppRecord,
        release: &crate::store::Release,
        plan: &crate::store::ProcessPlan,
        missing: Vec<u32>,
        cells: &mut [CellPresence],
        per_cell: &mut HashMap<(String, String), u32>,
    ) -> Result<(), crate::store::StoreError> {
        let base = match self.assignment(app, release, plan).await {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(app = %app.name, "placing missing instances: {}", e.body.message);
                return Ok(());
            }
        };
        let name = app.name.to_string();
        for index in missing {
            let Some(to) = pick_cell(cells, base.settings.memory.bytes(), |c| {
                per_cell
                    .get(&(name.clone(), c.to_string()))
                    .copied()
                    .unwrap_or(0)
            }) else {
                tracing::warn!(app = %app.name, index, "a missing instance has nowhere to run: no cell has {} MiB free", base.settings.memory.bytes() >> 20);
                break;
            };
            let to = to.id.clone();
            *per_cell.entry((name.clone(), to.clone())).or_default() += 1;
            let a = paas_api::state::Assignment {
                index,
                ..base.clone()
            };
            self.store
                .assign(&to, &crate::store::new_guid(), &a)
                .await?;
            tracing::info!(app = %app.name, process = %plan.process, index, cell = %to, "placed a missing instance");
        }
        Ok(())
    }
}

/// How many instances of each app each cell runs, by (app, cell).
fn per_app_and_cell(
    placed: &[(String, String, paas_api::state::Assignment)],
) -> HashMap<(String, String), u32> {
    let mut per_cell = HashMap::new();
    for (cell, _, a) in placed {
        *per_cell
            .entry((a.app.to_string(), cell.clone()))
            .or_default() += 1;
    }
    per_cell
}

/// The lock a controller holds while it changes an app.
pub(super) fn app_lock_key(app: &paas_api::AppName) -> String {
    format!("{}{app}", paas_api::state::APP_LOCKS)
}
