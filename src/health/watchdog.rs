//! Staleness as an event, not a per-request clock read.
//!
//! A failed result stops excluding its deployment once it is older than the staleness
//! threshold. Checking that on every request costs a clock read (~20 ns, as much as the
//! rest of the decision). Instead, a small task owned by the [`HealthState`](super::HealthState)
//! sleeps until the snapshot's next expiry and then republishes it with the route lists
//! recomputed. Snapshots published while the task is alive are marked *watched*, and the
//! request path trusts their lists as they are.
//!
//! Without a tokio runtime to host the task (a state fed from synchronous code), snapshots
//! are unwatched and the request path falls back to comparing the clock itself: the result
//! is the same either way, only the cost differs.
//!
//! The same task keeps the state's usage minute (`HealthState::minute`) for
//! `usage-based-routing` pickers, so their decisions read an atomic instead of the clock:
//! it stores the minute each time it wakes and sleeps until the next one starts. When the
//! task ends the minute is cleared and decisions read the clock again.
//!
//! The task holds only a `Weak` to the state and ends when the state is dropped (its
//! `watch::Sender` goes with it) or when its runtime shuts down (the next publication
//! notices the closed channel and starts a new one).

use std::{
    sync::{Arc, Weak, atomic::Ordering::Relaxed},
    time::Duration,
};

use tokio::{sync::watch, time::Instant};
use tracing::Instrument;

use super::Shared;
use crate::{
    stats::{MINUTE_NANOS, minute_of},
    time::nanos_since,
};

/// Makes sure a live watchdog serves `shared`; returns whether one does.
pub(super) fn ensure(shared: &Arc<Shared>) -> bool {
    if shared
        .watchdog
        .load()
        .as_ref()
        .is_some_and(|tx| !tx.is_closed())
    {
        return true;
    }
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
        return false;
    };
    let (tx, rx) = watch::channel(());
    let span = tracing::debug_span!("health_staleness_watchdog");
    drop(handle.spawn(run(Arc::downgrade(shared), rx).instrument(span)));
    shared.watchdog.store(Some(Arc::new(tx)));
    true
}

/// Tells the watchdog that a new snapshot (with a new next expiry) was published.
pub(super) fn notify(shared: &Shared) {
    if let Some(tx) = shared.watchdog.load().as_ref() {
        tx.send_replace(());
    }
}

/// Clears the kept minute when the task ends (returns, or is dropped with its runtime).
struct ClearMinute(Weak<Shared>);

impl Drop for ClearMinute {
    fn drop(&mut self) {
        if let Some(shared) = self.0.upgrade() {
            shared.minute.clear();
        }
    }
}

async fn run(weak: Weak<Shared>, mut rx: watch::Receiver<()>) {
    let _clear = ClearMinute(weak.clone());
    loop {
        rx.borrow_and_update();
        let (deadline, minute_ends) = {
            let Some(shared) = weak.upgrade() else { return };
            let next = shared.snapshot.load().next_expiry();
            // Stale means strictly older than the threshold: wake one nanosecond after.
            let deadline = (next != u64::MAX)
                .then(|| shared.epoch + Duration::from_nanos(next) + Duration::from_nanos(1));
            let minute_ends = shared.minute_wanted.load(Relaxed).then(|| {
                let t = nanos_since(shared.epoch, Instant::now());
                shared.minute.set(minute_of(t));
                shared.epoch + Duration::from_nanos((t / MINUTE_NANOS + 1) * MINUTE_NANOS)
            });
            (deadline, minute_ends)
        };
        let expiry = async {
            match deadline {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        let minute_turns = async {
            match minute_ends {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            changed = rx.changed() => if changed.is_err() { return },
            () = minute_turns => {} // the loop stores the new minute
            () = expiry => {
                let Some(shared) = weak.upgrade() else { return };
                let now = Instant::now();
                shared.snapshot.rcu(|cur| {
                    let mut next = cur.expired(now);
                    next.set_watched();
                    shared.derive(&next, cur);
                    next
                });
                tracing::info!("health check results went stale; their deployments are eligible again");
            }
        }
    }
}
