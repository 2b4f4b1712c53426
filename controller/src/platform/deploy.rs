//! A deployment: stage a package, record a release, start its instances, and only once
//! they all run, route them and stop the old ones. If staging fails or a new instance
//! does not come up, the old release keeps running untouched.

use std::sync::Arc;

use paas_api::{AppName, DeployEvent, RolloutRequest};
use paas_stager::Buildpack;
use tokio::sync::mpsc::UnboundedSender;

use super::{stop_all, Error, ErrorKind, Placed, Platform};
use crate::store::{AppRecord, Release, ReleaseConfig};

/// Revisions per app whose droplets are kept for rollbacks.
const KEPT_REVISIONS: usize = 5;

impl Platform {
    /// Deploys `package` to `app`, reporting progress on `events`. Without `start`, the
    /// staged release becomes current and the app is left stopped.
    pub async fn deploy(
        self: &Arc<Self>,
        app: &AppName,
        package: &str,
        start: bool,
        rollout: &RolloutRequest,
        events: &UnboundedSender<DeployEvent>,
    ) -> Result<(), Error> {
        let held = self.lock_app(app).await?;
        let record = self.app_record(app).await?;
        // Only a package uploaded to this app, or one of its releases': a blob's hash
        // (a droplet's, another space's package) does not give its bytes to anyone.
        let released = self
            .store
            .releases(app)
            .await
            .map_err(Error::internal)?
            .iter()
            .any(|r| r.package == package);
        if !(released || record.packages.iter().any(|p| p == package))
            || !self.has_blob(package).await
        {
            return Err(Error::new(
                ErrorKind::NotFound,
                "package-not-found",
                format!("package {package} was not uploaded"),
                Some("upload it first: POST /v1/apps/NAME/packages"),
            ));
        }
        self.refresh_buildpacks().await;
        let (buildpacks, detect) = self.choose_buildpacks(&record.settings.buildpacks)?;
        let _ = events.send(DeployEvent::Phase {
            phase: "staging".into(),
        });
        let staged = self
            .stage(&record, package, buildpacks, detect, events)
            .await?;
        let made = Release {
            version: 0,
            droplet: staged.droplet,
            package: package.to_string(),
            buildpack: staged.buildpack,
            start_command: staged.start_command,
            process_types: staged.process_types,
            config: Some(ReleaseConfig {
                env: record.env.clone(),
                command: record.settings.command.clone(),
            }),
            stack: Some(staged.stack),
        };
        let release = self
            .store
            .add_release(app, made)
            .await
            .map_err(Error::internal)?;
        if start {
            // Its droplet may run more process types than the one before (a Procfile's
            // worker): they must fit the space's quota too.
            let old = (!record.stopped).then_some((&record.settings, record.release.as_ref()));
            let more = super::quota::Demand::settings(old, (&record.settings, Some(&release)));
            self.check_quota(&record.space, more).await?;
        }
        self.release_phase(&record, &release, events).await?;
        if !start {
            self.store
                .set_release(app, &release)
                .await
                .map_err(Error::internal)?;
            self.stop_locked(app, "staged and left stopped (--no-start)")
                .await?;
            let _ = events.send(DeployEvent::Done {
                url: self.url(app).await,
                instances: 0,
            });
            return Ok(());
        }
        self.roll_out_as(&record, &release, "deploy", events, rollout, held)
            .await
            .map(drop)
    }

    /// Starts `release` with the app's current settings and, once every new instance
    /// passes its health check, routes them and stops the old ones; the app's current
    /// release becomes `release`. If a new instance fails, the old ones keep running and
    /// routed, and the failure is returned. Deploys, restarts, scaling and rollbacks all
    /// go through here. Call with the app's lock held.
    pub(super) async fn roll_out(
        self: &Arc<Self>,
        record: &AppRecord,
        release: &Release,
        what: &str,
        events: &UnboundedSender<DeployEvent>,
    ) -> Result<(), Error> {
        let app = &record.name;
        let _ = events.send(DeployEvent::Phase {
            phase: "starting".into(),
        });
        let fresh = self.start_release(record, release).await?;
        let up = self
            .bring_up(
                app,
                fresh,
                "of the new release ",
                "the previous release keeps running",
            )
            .await;
        let fresh = match up {
            Ok(fresh) => fresh,
            Err(failure) => return Err(self.failed(app, what, failure).await),
        };
        self.switch_to(record, release, &fresh, what, events).await
    }

    /// Adds `fresh` to the app's instances (each is routed once healthy) and waits
    /// until all of them run; if one does not, takes them all away and stops them, and
    /// answers why (`of_what`, `what_stays`: as [`wait_all_started`] words it).
    pub(super) async fn bring_up(
        &self,
        app: &AppName,
        fresh: Vec<Placed>,
        of_what: &str,
        what_stays: &str,
    ) -> Result<Vec<Placed>, Error> {
        self.add_instances(app, &fresh);
        if let Err(failure) = wait_all_started(&fresh, of_what, what_stays).await {
            self.forget(app, &fresh);
            stop_all(fresh).await;
            return Err(failure);
        }
        Ok(fresh)
    }

    /// Records that `what` (a deploy, a restart, …) of `app` failed; answers `failure`.
    pub(super) async fn failed(&self, app: &AppName, what: &str, failure: Error) -> Error {
        self.record_event(
            app,
            &format!("{what}-failed"),
            None,
            None,
            &failure.body.message,
        )
        .await;
        failure
    }

    /// Makes `release` the app's current one with `fresh` (running and healthy) as its
    /// only instances: the others leave the route table and stop after the drain.
    pub(super) async fn switch_to(
        self: &Arc<Self>,
        record: &AppRecord,
        release: &Release,
        fresh: &[Placed],
        what: &str,
        events: &UnboundedSender<DeployEvent>,
    ) -> Result<(), Error> {
        let app = &record.name;
        self.store
            .set_release(app, release)
            .await
            .map_err(Error::internal)?;
        self.store
            .set_stopped(app, false)
            .await
            .map_err(Error::internal)?;
        let old = self.replace_with(app, fresh);
        let description = format!(
            "release {} (droplet {}, {}) runs {} instance(s)",
            release.version,
            release.droplet.get(..12).unwrap_or(&release.droplet),
            release.buildpack,
            fresh.len()
        );
        self.record_event(app, what, None, None, &description).await;
        // Old instances leave the route table at once; their graceful stop (up to the
        // grace period) need not hold up the push. Droplets are collected after it, as
        // stopping instances still run on theirs.
        // Placements are taken off their cells while the app's lock is held, so the
        // leader's convergence never sees old and new of one index at once.
        for o in &old {
            o.withdraw().await;
        }
        self.retire(old);
        let _ = events.send(DeployEvent::Done {
            url: self.url(app).await,
            instances: fresh.len() as u32,
        });
        Ok(())
    }

    /// Stops `old` (already out of the route table) in the background, after the drain
    /// for those of this host, then collects droplets no release needs.
    pub(super) fn retire(self: &Arc<Self>, old: Vec<Placed>) {
        self.retiring
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(old.iter().cloned());
        let platform = Arc::clone(self);
        self.background.spawn(async move {
            // Requests this host's router sent before the switch finish on the old
            // instances. (A cell drains the instances placed on it itself, as routers
            // on other hosts drop them only when it unpublishes them.)
            if old.iter().any(|o| matches!(o, Placed::Here(_))) {
                tokio::time::sleep(crate::cell::DRAIN).await;
            }
            stop_all(old.clone()).await;
            platform
                .retiring
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .retain(|r| !old.iter().any(|o| o.id() == r.id()));
            platform.collect_droplets().await;
            let mut apps: Vec<AppName> = old.iter().map(|o| o.app().clone()).collect();
            apps.sort_by(|a, b| a.as_str().cmp(b.as_str()));
            apps.dedup();
            for app in apps {
                platform.prune_releases(&app).await;
            }
        });
    }

    /// Deletes the app's releases past its newest [`crate::store::KEPT_RELEASES`] (as
    /// Cloud Foundry keeps revisions), so its history, and what every deploy reads of it,
    /// stays bounded. A release goes only once its droplet is collected everywhere or a
    /// kept release shares it: a droplet is found for collection through its releases.
    pub(super) async fn prune_releases(&self, app: &AppName) {
        let past = match self.store.releases_past_kept(app).await {
            Ok(Some(past)) => past,
            Ok(None) => return,
            Err(e) => return tracing::warn!(app = %app, "reading old releases: {e}"),
        };
        let mut versions = Vec::new();
        for r in &past.releases {
            if past.kept_droplets.contains(&r.droplet) || !self.has_blob(&r.droplet).await {
                versions.push(r.version);
            }
        }
        if let Err(e) = self.store.delete_releases(&past, &versions).await {
            tracing::warn!(app = %app, "deleting old releases: {e}");
        }
    }

    /// Rolls the app over to `release` (its current one for a restart, an older one for a
    /// rollback) without staging.
    pub async fn restart(
        self: &Arc<Self>,
        app: &AppName,
        version: Option<i64>,
        rollout: &RolloutRequest,
        events: &UnboundedSender<DeployEvent>,
    ) -> Result<(), Error> {
        let held = self.lock_app(app).await?;
        let record = self.app_record(app).await?;
        let (release, what) = match version {
            None => (self.release_to_restart(&record).await?, "restart"),
            Some(v) => (
                self.store
                    .release(app, v)
                    .await
                    .map_err(Error::internal)?
                    .ok_or_else(|| {
                        Error::new(
                            ErrorKind::NotFound,
                            "no-such-revision",
                            format!("app {app} has no revision {v}"),
                            Some(&format!("see `paas revisions {app}`")),
                        )
                    })?,
                "rollback",
            ),
        };
        if !self.has_blob(&release.droplet).await {
            return Err(Error::new(
                ErrorKind::Gone,
                "droplet-collected",
                format!(
                    "the droplet of revision {} is no longer kept",
                    release.version
                ),
                Some("only the droplets of recent revisions are kept; push again instead"),
            ));
        }
        // As Heroku does: a rollback, or a restart that makes a new revision (its env or
        // start command changed), runs the release phase of what it rolls out; a plain
        // restart of the current revision does not.
        if Some(release.version) != record.release.as_ref().map(|r| r.version) {
            self.release_phase(&record, &release, events).await?;
        }
        let held = self
            .roll_out_as(&record, &release, what, events, rollout, held)
            .await?;
        // Still under the app's lock (a paused canary restores them when continued).
        if let (Some(_), Some(config), Some(_held)) = (version, &release.config, held) {
            // The app's own env and start command are the revision's again, so that
            // the next restart makes no new revision of them.
            self.store
                .restore_config(app, config)
                .await
                .map_err(Error::internal)?;
        }
        Ok(())
    }

    /// The release a restart runs: the current one, or, when the app's env or start
    /// command changed since it was made, a new revision of it with them.
    pub(super) async fn release_to_restart(&self, record: &AppRecord) -> Result<Release, Error> {
        let current = record
            .release
            .clone()
            .ok_or_else(|| never_staged(&record.name))?;
        let config = ReleaseConfig {
            env: record.env.clone(),
            command: record.settings.command.clone(),
        };
        match current.with_config(config) {
            None => Ok(current),
            Some(next) => self
                .store
                .add_release(&record.name, next)
                .await
                .map_err(Error::internal),
        }
    }

    /// Deletes the droplets (blob and unpacked folder) that only releases older than the
    /// last [`KEPT_REVISIONS`] of their app use, and returns them. Each is collected
    /// once: its releases stay until it is collected everywhere
    /// ([`Platform::prune_releases`]), so a droplet whose blob this host no longer has
    /// was collected before (or never kept here), and is passed over.
    pub(super) async fn collect_droplets(&self) -> Vec<String> {
        let list = match self.store.unneeded_droplets(KEPT_REVISIONS).await {
            Ok(list) => list,
            Err(e) => {
                tracing::warn!("finding old droplets: {e}");
                return Vec::new();
            }
        };
        let mut collected = Vec::new();
        for sha in list.into_iter().filter(|sha| self.blobs.exists(sha)) {
            self.cell.forget_droplet(&sha);
            if let Some(peers) = self.peers() {
                peers.forget(&sha).await;
            }
            // Last: while the blob is there, a collection cut short is done again.
            let _ = std::fs::remove_file(self.blobs.path(&sha));
            tracing::info!(droplet = %sha, "collected an old droplet");
            collected.push(sha);
        }
        collected
    }

    /// Stops every instance and keeps the app stopped, also across restarts of paasd.
    pub async fn stop_app(self: &Arc<Self>, app: &AppName) -> Result<(), Error> {
        let _held = self.lock_app(app).await?;
        self.app_record(app).await?;
        self.stop_locked(app, "stopped by request").await
    }

    /// Stops the app's instances and marks it stopped. Call with the app's lock held.
    async fn stop_locked(&self, app: &AppName, why: &str) -> Result<(), Error> {
        self.store
            .set_stopped(app, true)
            .await
            .map_err(Error::internal)?;
        let old = self
            .instances
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(app.clone(), Vec::new())
            .unwrap_or_default();
        self.refresh_routes();
        stop_all(old).await;
        self.record_event(app, "stop", None, None, why).await;
        Ok(())
    }

    /// Buildpacks for a staging: the named ones in order, or every enabled one to detect.
    fn choose_buildpacks(
        &self,
        names: &[paas_api::BuildpackName],
    ) -> Result<(Vec<Buildpack>, bool), Error> {
        if names.is_empty() {
            return Ok((self.buildpacks.for_detection(), true));
        }
        Ok((self.buildpacks.by_names(names)?, false))
    }

    /// Drops `gone` from the app's instance list.
    pub(super) fn forget(&self, app: &AppName, gone: &[Placed]) {
        let mut map = self.instances.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(list) = map.get_mut(app) {
            list.retain(|i| !gone.iter().any(|g| g.id() == i.id()));
        }
        drop(map);
        self.refresh_routes();
    }

    /// Makes `fresh` the app's only instances; returns the ones they replace.
    fn replace_with(&self, app: &AppName, fresh: &[Placed]) -> Vec<Placed> {
        let mut map = self.instances.lock().unwrap_or_else(|p| p.into_inner());
        let list = map.entry(app.clone()).or_default();
        let old: Vec<Placed> = list
            .iter()
            .filter(|i| !fresh.iter().any(|f| f.id() == i.id()))
            .cloned()
            .collect();
        *list = fresh.to_vec();
        drop(map);
        self.refresh_routes();
        old
    }
}

/// Waits until every one of `fresh` runs; else the error says which did not, how
/// (`instance N of the new release crashed …`), and then `what_stays`.
pub(super) async fn wait_all_started(
    fresh: &[Placed],
    of_what: &str,
    what_stays: &str,
) -> Result<(), Error> {
    for inst in fresh {
        if let Err(why) = inst.started().await {
            return Err(Error::new(
                ErrorKind::Refused,
                "start-failed",
                format!("instance {} {of_what}{why}; {what_stays}", inst.index()),
                Some(&format!("see `paas logs {} --recent`", inst.app())),
            ));
        }
    }
    Ok(())
}

fn never_staged(app: &AppName) -> Error {
    Error::new(
        ErrorKind::Refused,
        "never-staged",
        format!("app {app} has never been staged"),
        Some(&format!("push it first: `paas push {app}`")),
    )
}
