//! [`Shutdown`]: every task an instance starts (the commit loop, the fan-out subscribers and
//! sweep, the adapter bus watchdog, the presence tasks, the instruction listener, the send
//! checker, HTTP connections and their lingering closes, Redis Cluster renewals) is spawned
//! through it, so that shutdown can tell them all to stop and wait until they have. (Blocking
//! work, password hashes and image decodes, runs on Tokio's blocking pool and is awaited by the
//! request that started it.)

use std::future::Future;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The instance's background tasks and the signal that stops them. Cheap to clone.
#[derive(Clone, Default)]
pub struct Shutdown {
    /// Cancelled when the tasks are to stop.
    token: CancellationToken,
    /// Every task spawned here, so that [`Shutdown::stop`] can wait for them.
    tracker: TaskTracker,
}

impl Shutdown {
    pub fn new() -> Self {
        Self::default()
    }

    /// Spawns a long-running task that is dropped where it stands when shutdown begins.
    /// For loops whose every step may be abandoned (a subscriber, a periodic sweep).
    pub fn spawn_until_stopped<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let token = self.token.clone();
        self.tracker.spawn(async move {
            tokio::select! {
                _ = token.cancelled() => {}
                _ = task => {}
            }
        });
    }

    /// Spawns a task that runs to its end; shutdown waits for it. For work that must not be cut
    /// in half (a transaction and its acks), or that watches [`Shutdown::stopping`] itself.
    pub fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.tracker.spawn(task);
    }

    /// Resolves when shutdown begins.
    pub async fn stopping(&self) {
        self.token.cancelled().await
    }

    /// Tells every task to stop and waits until all of them have ended.
    pub async fn stop(&self) {
        self.token.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}
