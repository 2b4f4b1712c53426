//! Scaling an app: more or fewer instances are added or taken away, and the instances
//! that stay keep running untouched (as `cf scale -i`); new memory or disk limits roll
//! every instance over to them, as a restart does.

use std::sync::Arc;

use paas_api::{AppName, DeployEvent, ScaleRequest};
use tokio::sync::mpsc::UnboundedSender;

use super::{stop_all, Error, Placed, Platform};

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
        let mut settings = record.settings.clone();
        if let Some(n) = change.instances {
            settings.instances = n;
        }
        let limits_change = change.memory.is_some_and(|m| m != settings.memory)
            || change.disk.is_some_and(|d| Some(d) != settings.disk);
        settings.memory = change.memory.unwrap_or(settings.memory);
        settings.disk = change.disk.or(settings.disk);
        let was = record.settings.instances;
        let updated = self
            .store
            .put_app(app, &settings)
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
            return self.roll_out(&updated, &release, "scale", events).await;
        }
        let now = settings.instances;
        if now > was {
            self.add_more(&updated, &release, was..now, events).await?;
        } else if now < was {
            self.take_away(app, now).await;
        }
        if now != was {
            self.record_event(
                app,
                "scale",
                None,
                None,
                &format!("scaled from {was} to {now} instance(s)"),
            )
            .await;
        }
        let _ = events.send(DeployEvent::Done {
            url: self.url(app).await,
            instances: now,
        });
        Ok(())
    }

    /// Starts the instances of `indices` beside the running ones and routes each as it
    /// passes its health check. If one does not come up, the new ones are stopped and the
    /// app is left with its earlier count.
    async fn add_more(
        self: &Arc<Self>,
        record: &crate::store::AppRecord,
        release: &crate::store::Release,
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
            .start_instances(record, release, indices, &running)
            .await?;
        self.add_instances(app, &fresh);
        let stays = format!("the app keeps its {was} instance(s)");
        if let Err(failure) = super::deploy::wait_all_started(&fresh, "", &stays).await {
            self.forget(app, &fresh);
            stop_all(fresh).await;
            let mut settings = record.settings.clone();
            settings.instances = was;
            if let Err(e) = self.store.put_app(app, &settings).await {
                tracing::error!(%app, "putting the instance count back to {was}: {e}");
            }
            self.record_event(app, "scale-failed", None, None, &failure.body.message)
                .await;
            return Err(failure);
        }
        Ok(())
    }

    /// Takes the app's instances of index `from` and above out of the route table at
    /// once and stops them, after the drain, in the background.
    async fn take_away(self: &Arc<Self>, app: &AppName, from: u32) {
        let gone: Vec<Placed> = self
            .instances_of(app)
            .into_iter()
            .filter(|i| i.index() >= from)
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
