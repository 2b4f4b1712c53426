//! What the platform starts and does not wait for at once: replaced instances that
//! drain before they stop, a task's end to record, a blob to copy to a second host,
//! and in a cluster the loops that follow the store. Each runs in a task of
//! [`Background`], so a shutdown can end the loops and wait for the rest; nothing of
//! the platform's runs on after `Platform::shutdown` returns (or writes to a data
//! folder the next paasd already has).
//!
//! Not here: a client's own streams (logs, events, a task's terminal), which end with
//! its connection when the API server stops; the cell's supervisors, which the cell
//! stops with its instances; and roll-outs, which run under the caller's request and
//! are waited for by `inflight.rs`.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long a shutdown waits for background work before it leaves it cut off.
pub const SHUTDOWN_WAIT: Duration = Duration::from_secs(15);

#[derive(Default)]
pub struct Background {
    tasks: TaskTracker,
    stopping: CancellationToken,
}

impl Background {
    /// Runs `work`, which ends by itself; a shutdown waits for it.
    pub fn spawn(&self, work: impl Future<Output = ()> + Send + 'static) {
        self.tasks.spawn(work);
    }

    /// Runs `work`, which ends by itself unless shutdown comes first: then it is
    /// dropped at its next await (what it would still do, the shutdown does).
    pub fn spawn_until_shutdown(&self, work: impl Future<Output = ()> + Send + 'static) {
        let stopping = self.stopping.clone();
        self.tasks.spawn(async move {
            stopping.run_until_cancelled(work).await;
        });
    }

    /// Ends the work started with [`Background::spawn_until_shutdown`], and waits up
    /// to `limit` for the rest; answers whether everything ended.
    pub async fn shut_down(&self, limit: Duration) -> bool {
        self.stopping.cancel();
        self.tasks.close();
        let ended = tokio::time::timeout(limit, self.tasks.wait()).await.is_ok();
        if !ended {
            tracing::warn!(
                "stopping with {} background jobs of the platform still running",
                self.tasks.len()
            );
        }
        ended
    }
}
