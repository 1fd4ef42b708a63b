//! Shared cooldowns (opt-in): announce the cooldowns this process enters, apply those the
//! others entered.
//!
//! The response future only `try_send`s the deployment id on a bounded queue (see
//! `HealthState::cooldown_entered`); this side reads how long the cooldown lasts and writes
//! its end (wall clock) to the store. Every poll interval it reads the store's list and
//! extends the local cooldown of each deployment that cools down longer elsewhere. A
//! cooldown read back from the store is applied through the atomics directly, never
//! announced again, so nothing echoes.

use std::{sync::Weak, time::Duration};

use tokio::sync::mpsc;

use super::{
    Resolved,
    store::{HealthStore, StoreError, unix_ms},
};
use crate::{
    deployment::DeploymentId,
    health::{HealthState, Shared},
};

/// A remote cooldown is applied only if it ends at least this much later than the local one
/// (clock rounding would otherwise re-apply, and log, our own cooldowns read back).
const TOLERANCE: Duration = Duration::from_millis(50);

pub(crate) struct CooldownSync {
    store: std::sync::Arc<dyn HealthStore>,
    cfg: Resolved,
    state: Weak<Shared>,
}

impl CooldownSync {
    pub(crate) fn new(
        store: std::sync::Arc<dyn HealthStore>,
        cfg: Resolved,
        state: Weak<Shared>,
    ) -> Self {
        Self { store, cfg, state }
    }

    /// Runs until the state is gone (never, without announcements: sharing is off).
    pub(crate) async fn run(self, announcements: Option<mpsc::Receiver<DeploymentId>>) {
        let Some(mut rx) = announcements else {
            return std::future::pending().await;
        };
        let mut tick = tokio::time::interval(self.cfg.poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                id = rx.recv() => match id {
                    Some(id) => self.announce(&id).await,
                    // The state (which holds the sender) is gone.
                    None => return,
                },
                _ = tick.tick() => if !self.pull().await { return },
            }
        }
    }

    async fn call<T>(
        &self,
        fut: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        tokio::time::timeout(self.cfg.command, fut)
            .await
            .unwrap_or_else(|_| Err(StoreError::timeout(self.cfg.command)))
    }

    async fn announce(&self, id: &DeploymentId) {
        let Some(remaining) =
            HealthState::upgrade(&self.state).and_then(|s| s.cooldown_remaining(id.as_str()))
        else {
            return;
        };
        let until = unix_ms(self.store.now() + remaining);
        match self
            .call(self.store.enter_cooldown(id.as_str(), until))
            .await
        {
            Ok(()) => {
                tracing::debug!(model_id = %id, until_ms = until, "health_check_shared_cooldown_written")
            }
            Err(e) => {
                tracing::debug!(model_id = %id, error = %e, "health_check_shared_cooldown_not_written")
            }
        }
    }

    /// Applies the store's cooldowns; `false` once the state is gone.
    async fn pull(&self) -> bool {
        let list = match self.call(self.store.cooldowns()).await {
            Ok(l) => l,
            Err(e) => {
                tracing::debug!(error = %e, "health_check_shared_cooldowns_unread");
                return true;
            }
        };
        let Some(state) = HealthState::upgrade(&self.state) else {
            return false;
        };
        let now_ms = unix_ms(self.store.now());
        for (id, until) in list {
            let Some(left) = until.checked_sub(now_ms).filter(|ms| *ms > 0) else {
                continue;
            };
            let remote = Duration::from_millis(left);
            let local = state.cooldown_remaining(&id).unwrap_or_default();
            if remote > local + TOLERANCE && state.apply_remote_cooldown(&id, remote) {
                tracing::info!(
                    model_id = %id,
                    cooldown_secs = remote.as_secs_f64(),
                    "health_check_shared_cooldown_applied: cooled down by another process"
                );
            }
        }
        true
    }
}
