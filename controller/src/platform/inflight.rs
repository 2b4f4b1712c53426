//! Roll-outs under way (deployments, restarts, rollbacks, scales, canary steps) run in
//! tasks of their own, so a client that leaves does not cut one off half-way. A clean
//! shutdown waits a while for them ([`SHUTDOWN_WAIT`]); on a single host each is also
//! recorded in the store while it runs, so one that paasd's death (or that wait) cut off
//! is said at the next start, in the app's events and logs, instead of passing
//! silently. (In a cluster the app's lock and the leader's convergence put an
//! unfinished change right.)

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use paas_api::AppName;
use tokio::sync::Notify;

use super::{Error, Platform};
use crate::store::RollingOut;

/// How long a clean shutdown waits for roll-outs under way.
pub const SHUTDOWN_WAIT: Duration = Duration::from_secs(10);

/// How many roll-outs run now, and a bell for when one ends.
#[derive(Default)]
pub struct InFlight {
    running: AtomicUsize,
    ended: Notify,
}

impl Platform {
    /// Runs `work`, a roll-out of `app` (`what`: deployment, restart, ...), recorded as
    /// under way while it runs.
    pub async fn run_roll_out(
        &self,
        app: &AppName,
        what: &str,
        work: impl Future<Output = Result<(), Error>>,
    ) -> Result<(), Error> {
        self.in_flight.running.fetch_add(1, Ordering::SeqCst);
        let record = self.cluster.is_none();
        if record {
            let doc = RollingOut {
                what: what.to_string(),
                started_ms: crate::logs::now_ms(),
            };
            if let Err(e) = self.store.begin_roll_out(app, &doc).await {
                tracing::warn!(%app, "recording a roll-out under way: {e}");
            }
        }
        let result = work.await;
        if record {
            if let Err(e) = self.store.end_roll_out(app).await {
                tracing::warn!(%app, "recording the end of a roll-out: {e}");
            }
        }
        self.in_flight.running.fetch_sub(1, Ordering::SeqCst);
        self.in_flight.ended.notify_waiters();
        result
    }

    /// Waits until no roll-out runs, or `limit` passed; answers how many still run.
    pub async fn wait_for_roll_outs(&self, limit: Duration) -> usize {
        let waited = tokio::time::timeout(limit, async {
            loop {
                let ended = self.in_flight.ended.notified();
                if self.in_flight.running.load(Ordering::SeqCst) == 0 {
                    return;
                }
                ended.await;
            }
        })
        .await;
        if waited.is_err() {
            tracing::warn!(
                "stopping with roll-outs under way: they are said to be cut off at the next start"
            );
        }
        self.in_flight.running.load(Ordering::SeqCst)
    }

    /// Says, for each roll-out recorded as under way when paasd last stopped, that it
    /// was cut off, and forgets it. The app runs what it ran before the roll-out (or,
    /// if the roll-out had made a new release current, that one): restore starts it.
    pub(super) async fn report_cut_off_roll_outs(&self) {
        let found = match self.store.roll_outs().await {
            Ok(f) => f,
            Err(e) => {
                tracing::error!("reading roll-outs that were under way: {e}");
                return;
            }
        };
        for (name, doc) in found {
            let Ok(app) = AppName::parse(&name) else {
                continue;
            };
            let since = paas_api::format_timestamp_ms(doc.started_ms);
            self.record_event(
                &app,
                "interrupted",
                None,
                None,
                &format!(
                    "the {} begun at {since} was cut off when paasd stopped; run it again (`paas push`, `paas restart`, ...)",
                    doc.what
                ),
            )
            .await;
            let _ = self.store.end_roll_out(&app).await;
        }
    }
}
