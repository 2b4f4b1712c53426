//! Roll-out strategies (`--strategy`), beside the default in `deploy.rs` (every new
//! instance healthy before any old one stops):
//!
//! - rolling: new instances start `max_in_flight` at a time; each batch replaces the old
//!   instances of its indices once it is healthy. If a batch fails, the old release is
//!   started again for the indices already replaced and the new instances are stopped:
//!   the app ends as it began.
//! - canary: one new web instance is routed beside the old ones and the deployment
//!   pauses, holding the app's lock (no other change, and in a cluster no convergence,
//!   touches the app meanwhile); `continue-deployment` rolls the rest out as `rolling`
//!   does, `cancel-deployment` stops the canary.
//!
//! A paused deployment lives in this controller's memory: a restart of paasd ends it
//! (the app comes back on its current release, the old one).

use std::collections::BTreeMap;
use std::sync::Arc;

use paas_api::{AppName, DeployEvent, RolloutRequest, Strategy, WEB};
use tokio::sync::mpsc::UnboundedSender;

use super::deploy::wait_all_started;
use super::{stop_all, AppLock, Error, ErrorKind, Placed, Platform};
use crate::store::{AppRecord, Release};

/// The most instances a rolling roll-out may start at once.
pub const MAX_IN_FLIGHT: u32 = 100;

/// A canary deployment waiting for `continue` or `cancel`.
pub(super) struct Paused {
    release: Release,
    canary: Vec<Placed>,
    max_in_flight: u32,
    what: String,
    /// The app's lock, held until the deployment goes on or is cancelled.
    held: AppLock,
}

impl Platform {
    /// Rolls `release` out as `rollout` says, holding the app's lock `held`; gives the
    /// lock back once done, or `None` when a paused canary keeps it.
    pub(super) async fn roll_out_as(
        self: &Arc<Self>,
        record: &AppRecord,
        release: &Release,
        what: &str,
        events: &UnboundedSender<DeployEvent>,
        rollout: &RolloutRequest,
        held: AppLock,
    ) -> Result<Option<AppLock>, Error> {
        let max = rollout.max_in_flight.unwrap_or(1);
        match rollout.strategy {
            None => self.roll_out(record, release, what, events).await?,
            Some(Strategy::Rolling) => {
                self.rolling(record, release, what, events, max, Vec::new())
                    .await?
            }
            Some(Strategy::Canary) => {
                self.canary(record, release, what, events, max, held)
                    .await?;
                return Ok(None);
            }
        }
        Ok(Some(held))
    }

    /// Refuses a change of `app` while a canary deployment of it is paused here.
    pub(super) fn not_paused(&self, app: &AppName) -> Result<(), Error> {
        if self
            .paused
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(app)
        {
            return Err(paused(app));
        }
        Ok(())
    }

    /// In a cluster, refuses a change of `app` while another controller holds a paused
    /// canary deployment of it (it holds the app's lock: waiting for it would hang).
    pub(super) async fn not_paused_elsewhere(&self, app: &AppName) -> Result<(), Error> {
        match self.paused_elsewhere(app).await? {
            Some(_) => Err(paused(app)),
            None => Ok(()),
        }
    }

    /// Records, in a cluster, that this controller holds `app`'s paused deployment.
    async fn note_paused(&self, app: &AppName) -> Result<(), Error> {
        let Some(cluster) = &self.cluster else {
            return Ok(());
        };
        let at = crate::store::PausedAt {
            host: self.cell.id().to_string(),
            peer: cluster.peers.addr().to_string(),
        };
        self.store
            .set_paused(app, &at)
            .await
            .map_err(Error::internal)
    }

    /// The peer address of the controller of the cluster that holds `app`'s paused
    /// deployment, if another one does. A record that is stale is dropped: this
    /// controller's own when it no longer holds the pause (it restarted), or any when
    /// the app's lock, which the holder keeps for the whole pause, is free (the holder
    /// died; the leader takes its canary back).
    async fn paused_elsewhere(&self, app: &AppName) -> Result<Option<String>, Error> {
        if self.cluster.is_none() {
            return Ok(None);
        }
        let Some(at) = self.store.paused_at(app).await.map_err(Error::internal)? else {
            return Ok(None);
        };
        let locked = self
            .store
            .is_held(&super::converge::app_lock_key(app))
            .await
            .map_err(Error::internal)?;
        if at.host != self.cell.id() && locked {
            return Ok(Some(at.peer));
        }
        if !self.holds_paused(app) {
            let _ = self.store.clear_paused(app).await;
        }
        Ok(None)
    }

    /// Starts the canary: one new web instance, routed beside the old ones once healthy;
    /// then pauses.
    async fn canary(
        self: &Arc<Self>,
        record: &AppRecord,
        release: &Release,
        what: &str,
        events: &UnboundedSender<DeployEvent>,
        max_in_flight: u32,
        held: AppLock,
    ) -> Result<(), Error> {
        let app = &record.name;
        let _ = events.send(DeployEvent::Phase {
            phase: "canary".into(),
        });
        let web = release
            .processes(&record.settings)
            .into_iter()
            .find(|p| p.process == WEB)
            .ok_or_else(|| Error::internal("a release without a web process"))?;
        let canary = self
            .start_instances(record, release, &web, 0..1, &self.instances_of(app))
            .await?;
        let up = self
            .bring_up(
                app,
                canary,
                "(the canary) of the new release ",
                "the previous release keeps running",
            )
            .await;
        let canary = match up {
            Ok(canary) => canary,
            Err(failure) => return Err(self.failed(app, what, failure).await),
        };
        let message = format!(
            "A canary of release {} of app {app} runs beside its {} previous instance(s); finish the deployment with `paas continue-deployment {app}`, or take it back with `paas cancel-deployment {app}`",
            release.version,
            self.instances_of(app).len() - 1
        );
        self.record_event(
            app,
            "canary",
            Some(0),
            None,
            &format!(
                "release {} runs a canary instance; the deployment is paused",
                release.version
            ),
        )
        .await;
        self.paused
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                app.clone(),
                Paused {
                    release: release.clone(),
                    canary,
                    max_in_flight,
                    what: what.to_string(),
                    held,
                },
            );
        self.note_paused(app).await?;
        let _ = events.send(DeployEvent::Paused { message });
        Ok(())
    }

    /// Finishes a paused canary deployment: the rest rolls out as `rolling` does. In a
    /// cluster, the controller that holds it does so.
    pub async fn continue_deployment(
        self: &Arc<Self>,
        app: &AppName,
        events: &UnboundedSender<DeployEvent>,
    ) -> Result<(), Error> {
        if !self.holds_paused(app) {
            if let Some(peer) = self.paused_elsewhere(app).await? {
                return self.continue_there(app, &peer, events).await;
            }
        }
        let paused = self.take_paused(app)?;
        let Paused {
            release,
            canary,
            max_in_flight,
            what,
            held,
        } = paused;
        // As it is now: its settings may have changed during the pause.
        let record = match self.app_record(app).await {
            Ok(r) => r,
            Err(e) => {
                self.forget(app, &canary);
                stop_all(canary).await;
                return Err(e);
            }
        };
        let done = self
            .rolling(&record, &release, &what, events, max_in_flight, canary)
            .await;
        if let (Ok(()), "rollback", Some(config)) = (&done, what.as_str(), &release.config) {
            // As a rollback without a canary does: the app's env and start command
            // are the revision's again.
            self.store
                .restore_config(&record.name, config)
                .await
                .map_err(Error::internal)?;
        }
        drop(held);
        done
    }

    /// Takes a paused canary deployment back: the canary stops, the old release runs on.
    /// In a cluster, the controller that holds it does so.
    pub async fn cancel_deployment(self: &Arc<Self>, app: &AppName) -> Result<(), Error> {
        if !self.holds_paused(app) {
            if let Some(peer) = self.paused_elsewhere(app).await? {
                let cluster = self
                    .cluster
                    .as_ref()
                    .ok_or_else(|| Error::internal("not a cluster"))?;
                return cluster
                    .peers
                    .cancel_deployment(&peer, app)
                    .await
                    .map_err(|e| holder_unreachable(app, &peer, &e));
            }
        }
        let paused = self.take_paused(app)?;
        self.forget(app, &paused.canary);
        stop_all(paused.canary).await;
        self.record_event(
            app,
            "deployment-cancelled",
            None,
            None,
            &format!(
                "the canary of release {} is stopped; the previous release runs on",
                paused.release.version
            ),
        )
        .await;
        drop(paused.held);
        Ok(())
    }

    fn holds_paused(&self, app: &AppName) -> bool {
        self.paused
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(app)
    }

    /// Has the controller at `peer`, which holds `app`'s paused deployment, finish it;
    /// its events come here.
    async fn continue_there(
        &self,
        app: &AppName,
        peer: &str,
        events: &UnboundedSender<DeployEvent>,
    ) -> Result<(), Error> {
        let cluster = self
            .cluster
            .as_ref()
            .ok_or_else(|| Error::internal("not a cluster"))?;
        let mut there = cluster
            .peers
            .continue_deployment(peer, app)
            .await
            .map_err(|e| holder_unreachable(app, peer, &e))?;
        while let Some(event) = there.recv().await {
            if let DeployEvent::Failed { error } = event {
                return Err(Error {
                    kind: ErrorKind::Refused,
                    body: error,
                });
            }
            let _ = events.send(event);
        }
        Ok(())
    }

    fn take_paused(&self, app: &AppName) -> Result<Paused, Error> {
        let taken = self
            .paused
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(app);
        if taken.is_some() && self.cluster.is_some() {
            let (store, app) = (self.store.clone(), app.clone());
            self.background.spawn(async move {
                if let Err(e) = store.clear_paused(&app).await {
                    tracing::warn!(%app, "clearing the record of a paused deployment: {e}");
                }
            });
        }
        taken.ok_or_else(|| {
            Error::new(
                ErrorKind::NotFound,
                "no-paused-deployment",
                format!("app {app} has no paused deployment"),
                Some("a canary deployment (`--strategy canary`) pauses; see `paas events`"),
            )
        })
    }

    /// Replaces the app's instances with `release`'s, `max_in_flight` at a time, process
    /// type by type; `started` are new web instances already running (a canary: its
    /// index 0). If a batch fails, the app is put back as it was.
    async fn rolling(
        self: &Arc<Self>,
        record: &AppRecord,
        release: &Release,
        what: &str,
        events: &UnboundedSender<DeployEvent>,
        max_in_flight: u32,
        started: Vec<Placed>,
    ) -> Result<(), Error> {
        let app = &record.name;
        let _ = events.send(DeployEvent::Phase {
            phase: "starting".into(),
        });
        let max = max_in_flight.clamp(1, MAX_IN_FLIGHT);
        let old: Vec<Placed> = self
            .instances_of(app)
            .into_iter()
            .filter(|i| !started.iter().any(|s| s.id() == i.id()))
            .collect();
        let mut fresh = Vec::new();
        let mut replaced = Vec::new();
        let mut seed = started;
        for plan in release.processes(&record.settings) {
            let count = plan.settings.instances;
            let mut from = 0;
            if plan.process == WEB && !seed.is_empty() {
                let n = seed.len() as u32;
                fresh.append(&mut seed);
                replaced.extend(self.replace_old(app, &old, WEB, 0..n).await);
                from = n;
            }
            while from < count {
                let to = (from + max).min(count);
                let batch = match self
                    .start_instances(record, release, &plan, from..to, &self.instances_of(app))
                    .await
                {
                    Ok(b) => b,
                    Err(e) => return Err(self.put_back(record, fresh, replaced, what, e).await),
                };
                let up = self
                    .bring_up(
                        app,
                        batch,
                        "of the new release ",
                        "the previous release runs again",
                    )
                    .await;
                match up {
                    Ok(batch) => fresh.extend(batch),
                    Err(e) => return Err(self.put_back(record, fresh, replaced, what, e).await),
                }
                replaced.extend(self.replace_old(app, &old, &plan.process, from..to).await);
                from = to;
            }
        }
        self.switch_to(record, release, &fresh, what, events).await
    }

    /// Takes the old instances of `process` with indices in `indices` out of the route
    /// table and stops them (after the drain); returns them.
    async fn replace_old(
        self: &Arc<Self>,
        app: &AppName,
        old: &[Placed],
        process: &str,
        indices: std::ops::Range<u32>,
    ) -> Vec<Placed> {
        let gone: Vec<Placed> = old
            .iter()
            .filter(|o| o.process() == process && indices.contains(&o.index()))
            .cloned()
            .collect();
        self.forget(app, &gone);
        for g in &gone {
            g.withdraw().await;
        }
        self.retire(gone.clone());
        gone
    }

    /// After a failed rolling batch: starts the app's current release again for the
    /// instances already `replaced`, then stops the `fresh` ones; answers with `failure`.
    async fn put_back(
        self: &Arc<Self>,
        record: &AppRecord,
        fresh: Vec<Placed>,
        replaced: Vec<Placed>,
        what: &str,
        failure: Error,
    ) -> Error {
        let app = &record.name;
        if let (Some(previous), false) = (&record.release, replaced.is_empty()) {
            // Indices replaced, by type: always 0..N of each, as batches go up from 0.
            let mut counts: BTreeMap<String, u32> = BTreeMap::new();
            for r in &replaced {
                let n = counts.entry(r.process().to_string()).or_default();
                *n = (*n).max(r.index() + 1);
            }
            for plan in previous.processes(&record.settings) {
                let Some(&n) = counts.get(&plan.process) else {
                    continue;
                };
                match self
                    .start_instances(record, previous, &plan, 0..n, &self.instances_of(app))
                    .await
                {
                    Ok(back) => {
                        self.add_instances(app, &back);
                        if let Err(e) =
                            wait_all_started(&back, "of the previous release ", "").await
                        {
                            tracing::error!(%app, "putting the previous release back: {}", e.body.message);
                        }
                    }
                    Err(e) => {
                        tracing::error!(%app, "putting the previous release back: {}", e.body.message)
                    }
                }
            }
        }
        self.forget(app, &fresh);
        stop_all(fresh).await;
        self.failed(app, what, failure).await
    }
}

fn paused(app: &AppName) -> Error {
    Error::new(
        ErrorKind::Conflict,
        "deployment-paused",
        format!("a canary deployment of app {app} is paused"),
        Some(&format!(
            "finish it with `paas continue-deployment {app}` or take it back with `paas cancel-deployment {app}`"
        )),
    )
}

fn holder_unreachable(app: &AppName, peer: &str, e: &anyhow::Error) -> Error {
    Error::new(
        ErrorKind::Internal,
        "controller-unreachable",
        format!("the controller at {peer} holds app {app}'s paused deployment and could not be reached: {e:#}"),
        Some("try again; if that controller is gone, the app's lock expires and the canary is taken back"),
    )
}
