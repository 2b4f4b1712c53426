//! Scaling an app's process type: more or fewer instances are added or taken away, and
//! the instances that stay keep running untouched (as `cf scale -i`); new memory or disk
//! limits roll every instance over to them, as a restart does.

use std::sync::Arc;

use paas_api::{AppName, AppSettings, DeployEvent, ScaleRequest, WEB};
use tokio::sync::mpsc::UnboundedSender;

use super::{Error, ErrorKind, Placed, Platform};
use crate::store::{AppRecord, ProcessPlan, Release};

impl Platform {
    /// Applies `change` to `app`, reporting progress on `events` as a roll-out does.
    pub async fn scale(
        self: &Arc<Self>,
        app: &AppName,
        change: &ScaleRequest,
        events: &UnboundedSender<DeployEvent>,
    ) -> Result<(), Error> {
        let _held = self.lock_app(app).await?;
        let record = self.app_record(app).await?;
        let process = change.process.as_deref().unwrap_or(WEB);
        if let Some(release) = &record.release {
            let plans = release.processes(&record.settings);
            if !plans.iter().any(|p| p.process == process) {
                let known: Vec<&str> = plans.iter().map(|p| p.process.as_str()).collect();
                return Err(Error::new(
                    ErrorKind::NotFound,
                    "no-such-process",
                    format!(
                        "app {app} has no process type {process:?}; its types: {}",
                        known.join(", ")
                    ),
                    Some("process types come from the Procfile (or the buildpack, or the manifest's processes:)"),
                ));
            }
        }
        let before = record.settings.for_process(process);
        let settings = changed(&record.settings, process, change);
        let after = settings.for_process(process);
        let limits_change = (after.memory, after.disk) != (before.memory, before.disk);
        if !record.stopped {
            let release = record.release.as_ref();
            let more = super::quota::Demand::settings(
                Some((&record.settings, release)),
                (&settings, release),
            );
            self.check_quota(&record.space, more).await?;
        }
        let updated = self
            .store
            .put_app(app, &settings, &record.space)
            .await
            .map_err(Error::internal)?;
        let release = match (&updated.release, updated.stopped) {
            (Some(release), false) => release.clone(),
            // Nothing runs: the new settings apply at the next start.
            _ => {
                let _ = events.send(DeployEvent::Done {
                    url: self.url(app).await,
                    instances: 0,
                });
                return Ok(());
            }
        };
        if limits_change {
            let release = self.release_to_restart(&updated).await?;
            let rolled = self.roll_out(&updated, &release, "scale", events).await;
            if rolled.is_err() {
                // The old instances run on with the old limits: so say the settings.
                if let Err(e) = self
                    .store
                    .put_app(app, &record.settings, &record.space)
                    .await
                {
                    tracing::error!(%app, "putting the limits back after a failed scale: {e}");
                }
            }
            return rolled;
        }
        let (was, now) = (before.instances, after.instances);
        if now > was {
            let plan = release
                .processes(&updated.settings)
                .into_iter()
                .find(|p| p.process == process)
                .ok_or_else(|| Error::internal(format!("process type {process} vanished")))?;
            self.add_more(&updated, &release, &plan, was..now, events)
                .await?;
        } else if now < was {
            self.take_away(app, process, now).await;
        }
        if now != was {
            self.record_event(
                app,
                "scale",
                None,
                None,
                &format!("scaled {process} from {was} to {now} instance(s)"),
            )
            .await;
        }
        let _ = events.send(DeployEvent::Done {
            url: self.url(app).await,
            instances: self
                .instances_of(app)
                .iter()
                .filter(|i| i.process() == WEB)
                .count() as u32,
        });
        Ok(())
    }

    /// Starts the instances of `indices` of `plan` beside the running ones and routes
    /// each web one as it passes its health check. If one does not come up, the new
    /// ones are stopped and the process type is left with its earlier count.
    async fn add_more(
        self: &Arc<Self>,
        record: &AppRecord,
        release: &Release,
        plan: &ProcessPlan,
        indices: std::ops::Range<u32>,
        events: &UnboundedSender<DeployEvent>,
    ) -> Result<(), Error> {
        let app = &record.name;
        let _ = events.send(DeployEvent::Phase {
            phase: "starting".into(),
        });
        let running = self.instances_of(app);
        let was = indices.start;
        let fresh = self
            .start_instances(record, release, plan, indices, &running)
            .await?;
        let stays = format!("{} keeps its {was} instance(s)", plan.process);
        if let Err(failure) = self.bring_up(app, fresh, "", &stays).await {
            let back = ScaleRequest {
                process: Some(plan.process.clone()),
                instances: Some(was),
                ..Default::default()
            };
            if let Err(e) = self
                .store
                .put_app(
                    app,
                    &changed(&record.settings, &plan.process, &back),
                    &record.space,
                )
                .await
            {
                tracing::error!(%app, "putting the instance count back to {was}: {e}");
            }
            self.record_event(app, "scale-failed", None, None, &failure.body.message)
                .await;
            return Err(failure);
        }
        Ok(())
    }

    /// Takes the app's instances of `process` of index `from` and above out of the
    /// route table at once and stops them, after the drain, in the background.
    async fn take_away(self: &Arc<Self>, app: &AppName, process: &str, from: u32) {
        let gone: Vec<Placed> = self
            .instances_of(app)
            .into_iter()
            .filter(|i| i.process() == process && i.index() >= from)
            .collect();
        self.forget(app, &gone);
        for g in &gone {
            g.withdraw().await;
        }
        self.retire(gone);
    }

    /// The app's instances as the platform holds them now.
    pub(super) fn instances_of(&self, app: &AppName) -> Vec<Placed> {
        self.instances
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(app)
            .cloned()
            .unwrap_or_default()
    }
}

/// `settings` with `change` made to process type `process`.
fn changed(settings: &AppSettings, process: &str, change: &ScaleRequest) -> AppSettings {
    let mut settings = settings.clone();
    if process == WEB {
        settings.instances = change.instances.unwrap_or(settings.instances);
        settings.memory = change.memory.unwrap_or(settings.memory);
        settings.disk = change.disk.or(settings.disk);
        return settings;
    }
    let own = settings.processes.entry(process.to_string()).or_default();
    own.instances = change.instances.unwrap_or(own.instances);
    own.memory = change.memory.or(own.memory);
    own.disk = change.disk.or(own.disk);
    settings
}
