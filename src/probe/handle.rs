//! [`ProbeHandle`]: the owner's side of a spawned probe loop.
//!
//! The split follows hyper-util's background tasks: the loop watches two signals, the
//! handle's explicit shutdown and the health state's own drop, and ends on either. Dropping
//! the handle only detaches the loop (so `let _ = probe.spawn();` does not stop it at once);
//! the loop then lives as long as the health state has an owner.

use tokio::{sync::oneshot, task::JoinHandle};

/// Controls a loop started with [`ProbeLoop::spawn`](super::ProbeLoop::spawn).
#[derive(Debug)]
#[must_use = "dropping the handle detaches the loop; keep it to shut the loop down"]
pub struct ProbeHandle {
    pub(crate) stop: oneshot::Sender<()>,
    pub(crate) task: JoinHandle<()>,
}

impl ProbeHandle {
    /// Stops the loop, mid-round or mid-sleep, and waits for its task to end (within
    /// milliseconds: every in-flight probe is dropped, none is awaited).
    pub async fn shutdown(self) {
        let _ = self.stop.send(());
        if let Err(e) = self.task.await
            && e.is_panic()
        {
            tracing::error!("the health probe loop panicked");
        }
    }

    /// Waits for the loop to end by itself (when every owner of the health state is gone).
    pub async fn join(self) {
        let _ = self.task.await;
    }

    /// Whether the loop's task has ended.
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }
}
