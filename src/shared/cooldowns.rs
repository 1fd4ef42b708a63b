//! Shared cooldowns and ejections (opt-in): announce the ones this process enters, apply
//! those the others entered.
//!
//! The response future only `try_send`s an announcement on a bounded queue (see
//! `CooldownSink`); this side reads how long the cooldown (or ejection) lasts, pushes it
//! to the other processes ([`push`](super::push): Redis pub/sub, applied there within
//! milliseconds) and writes its end (wall clock) to the store. Every poll interval, and
//! whenever the push channel comes back, it reads the store's lists and applies what it
//! missed. A cooldown or ejection received from elsewhere is applied through the atomics
//! directly, never announced again, so nothing echoes; and each is applied once (by its
//! end), so one ended early here (a probe passed) is not put back by the next poll.

use std::{collections::HashMap, sync::Arc, sync::Weak, time::Duration};

use tokio::sync::mpsc;

use super::{
    Resolved,
    push::{self, Incoming, OutageEvent, OutageKind},
    store::{HealthStore, StoreError, unix_ms},
};
use crate::{
    cooldown::Announcement,
    health::{HealthState, Shared},
};

/// A remote cooldown is applied only if it ends at least this much later than the local one
/// (clock rounding would otherwise re-apply, and log, our own cooldowns read back).
const TOLERANCE: Duration = Duration::from_millis(50);

/// Events queued between the subscription and this task.
const EVENT_QUEUE: usize = 1024;

pub(crate) struct CooldownSync {
    store: Arc<dyn HealthStore>,
    cfg: Resolved,
    state: Weak<Shared>,
    me: Arc<str>,
    /// The latest end applied or announced here, per kind and deployment (wall ms).
    seen: HashMap<(OutageKind, String), u64>,
}

impl CooldownSync {
    pub(crate) fn new(
        store: Arc<dyn HealthStore>,
        cfg: Resolved,
        state: Weak<Shared>,
        me: Arc<str>,
    ) -> Self {
        Self {
            store,
            cfg,
            state,
            me,
            seen: HashMap::new(),
        }
    }

    /// Runs until the state is gone (never, without announcements: sharing is off).
    pub(crate) async fn run(mut self, announcements: Option<mpsc::Receiver<Announcement>>) {
        let Some(mut rx) = announcements else {
            return std::future::pending().await;
        };
        let (tx, mut events) = mpsc::channel(EVENT_QUEUE);
        let listener = push::listen(Arc::clone(&self.store), self.cfg.command, tx);
        tokio::pin!(listener);
        let mut listening = true;
        let mut tick = tokio::time::interval(self.cfg.poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                a = rx.recv() => match a {
                    Some(a) => self.announce(&a).await,
                    // The state (which holds the sender) is gone.
                    None => return,
                },
                inc = events.recv(), if listening => match inc {
                    Some(Incoming::Event(e)) => if !self.received(&e) { return },
                    Some(Incoming::Resubscribed) => if !self.pull().await { return },
                    None => listening = false,
                },
                () = &mut listener, if listening => listening = false,
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

    async fn announce(&mut self, a: &Announcement) {
        let kind = if a.ejection {
            OutageKind::Ejection
        } else {
            OutageKind::Cooldown
        };
        let id = a.id.as_str();
        let Some(remaining) = HealthState::upgrade(&self.state).and_then(|s| match kind {
            OutageKind::Ejection => s.ejection_remaining(id),
            _ => s.cooldown_remaining(id),
        }) else {
            return;
        };
        let until = unix_ms(self.store.now() + remaining);
        self.note(kind, id, until);
        // Push first (the others apply it at once), then keep it for the pollers.
        let event = OutageEvent::new(kind, id, until, a.class, &*self.me);
        if let Err(e) = self.call(self.store.push(&event)).await {
            tracing::debug!(model_id = id, error = %e, "health_check_shared_push_failed");
        }
        let write = match kind {
            OutageKind::Ejection => self.store.enter_ejection(id, until),
            _ => self.store.enter_cooldown(id, until),
        };
        match self.call(write).await {
            Ok(()) => {
                tracing::debug!(model_id = id, kind = ?kind, until_ms = until, "health_check_shared_cooldown_written")
            }
            Err(e) => {
                tracing::debug!(model_id = id, kind = ?kind, error = %e, "health_check_shared_cooldown_not_written")
            }
        }
    }

    /// Records that an outage of `id` ending at `until` is known here; `false` if one ending
    /// as late was already.
    fn note(&mut self, kind: OutageKind, id: &str, until: u64) -> bool {
        let e = self.seen.entry((kind, id.to_owned())).or_default();
        if until <= *e {
            return false;
        }
        *e = until;
        true
    }

    /// An event from the push channel; `false` once the state is gone.
    fn received(&mut self, e: &OutageEvent) -> bool {
        if e.from == *self.me {
            return true;
        }
        let Some(state) = HealthState::upgrade(&self.state) else {
            return false;
        };
        self.apply(&state, e.kind, &e.id, e.until_ms, "push", &e.class);
        true
    }

    /// Applies an outage entered elsewhere, once per end.
    fn apply(
        &mut self,
        state: &HealthState,
        kind: OutageKind,
        id: &str,
        until: u64,
        via: &'static str,
        class: &str,
    ) {
        let now_ms = unix_ms(self.store.now());
        let Some(left) = until.checked_sub(now_ms).filter(|ms| *ms > 0) else {
            return;
        };
        if !self.note(kind, id, until) {
            return;
        }
        let remote = Duration::from_millis(left);
        match kind {
            OutageKind::Ejection => {
                let local = state.ejection_remaining(id).unwrap_or_default();
                if remote > local + TOLERANCE && state.apply_remote_ejection(id, remote) {
                    tracing::info!(
                        model_id = id,
                        ejection_secs = remote.as_secs_f64(),
                        via,
                        class,
                        "health_check_shared_ejection_applied: ejected by another process"
                    );
                }
            }
            _ => {
                let local = state.cooldown_remaining(id).unwrap_or_default();
                if remote > local + TOLERANCE && state.apply_remote_cooldown(id, remote) {
                    tracing::info!(
                        model_id = id,
                        cooldown_secs = remote.as_secs_f64(),
                        via,
                        class,
                        "health_check_shared_cooldown_applied: cooled down by another process"
                    );
                }
            }
        }
    }

    /// Applies the store's cooldowns and ejections; `false` once the state is gone.
    async fn pull(&mut self) -> bool {
        let (cooldowns, ejections) = tokio::join!(
            self.call(self.store.cooldowns()),
            self.call(self.store.ejections())
        );
        let Some(state) = HealthState::upgrade(&self.state) else {
            return false;
        };
        let now_ms = unix_ms(self.store.now());
        self.seen.retain(|_, until| *until > now_ms);
        for (kind, list) in [
            (OutageKind::Cooldown, cooldowns),
            (OutageKind::Ejection, ejections),
        ] {
            let list = match list {
                Ok(l) => l,
                Err(e) => {
                    tracing::debug!(kind = ?kind, error = %e, "health_check_shared_cooldowns_unread");
                    continue;
                }
            };
            for (id, until) in list {
                self.apply(&state, kind, &id, until, "poll", "");
            }
        }
        true
    }
}
