//! The shared probe loop: lease, probe, write, follow; or probe locally when the store is
//! away. See the [module docs](super) for the protocol; this file is its state machine.
//!
//! One task runs it: the coordination steps and the cooldown sync are two futures raced
//! in it against shutdown, so nothing outlives the loop. Shutdown releases a held lease
//! (bounded by the command timeout); an aborted task (a crash, for the others) does not,
//! and its lease simply expires.

use std::{convert::Infallible, future::Future, sync::Arc, time::Duration};

use tokio::{sync::mpsc, time::Instant};

use super::{
    SharedMode, SharedStatus, Sharing,
    cooldowns::CooldownSync,
    round::{age, to_report, to_shared},
    store::{HealthStore, Observation, StoreError},
    usage::UsageSync,
};
use crate::{
    cooldown::CooldownSink,
    health::HealthState,
    probe::{BoxFuture, Driver, Rounds},
};

/// Cooldown announcements queued between two writes; more are dropped (never awaited).
const COOLDOWN_QUEUE: usize = 1024;

impl Driver for Sharing {
    fn drive(&self, rounds: Rounds, shutdown: BoxFuture<()>) -> BoxFuture<()> {
        Box::pin(self.clone().run(rounds, shutdown))
    }
}

impl Sharing {
    /// The loop, until `shutdown` or the state's last owner goes.
    pub(crate) async fn run(self, inner: Rounds, shutdown: impl Future<Output = ()> + Send) {
        let Some(state) = HealthState::upgrade(inner.state()) else {
            return;
        };
        let me: Arc<str> = state.shared_status().process_id.as_str().into();
        let announcements = self.cfg.share_cooldowns.then(|| {
            let (tx, rx) = mpsc::channel(COOLDOWN_QUEUE);
            state
                .hooks()
                .get_or_init(CooldownSink::default)
                .set(Some(tx));
            rx
        });
        drop(state);
        tracing::info!(
            process_id = &*me,
            backend = self.store.backend(),
            interval_secs = self.cfg.interval.as_secs_f64(),
            lease_ms = self.cfg.lease.as_millis() as u64,
            poll_ms = self.cfg.poll.as_millis() as u64,
            share_cooldowns = self.cfg.share_cooldowns,
            "health_check_loop_started shared=true"
        );
        let sync = CooldownSync::new(
            Arc::clone(&self.store),
            self.cfg,
            inner.state().clone(),
            Arc::clone(&me),
        );
        let usage = UsageSync::new(Arc::clone(&self.store), self.cfg, inner.state().clone());
        let mut closed = inner.closed();
        let mut c = Coordinator::new(self, inner, me);
        tokio::pin!(shutdown);
        let why = tokio::select! {
            biased;
            () = &mut shutdown => "shutdown",
            _ = closed.changed() => "state_dropped",
            why = c.run() => why,
            () = sync.run(announcements) => "state_dropped",
            () = usage.run() => "state_dropped",
        };
        if c.leading {
            let released = c.call(c.store.release(&c.me)).await;
            tracing::debug!(released = ?released, "health_check_shared_lease_released_on_stop");
        }
        if let Some(state) = c.state() {
            if let Some(sink) = state.hooks().get::<CooldownSink>() {
                sink.set(None);
            }
            c.mode = SharedMode::Off;
            c.detail = Some("probe loop stopped".to_owned());
            c.publish_status(None);
        }
        tracing::info!(reason = why, "health_check_loop_stopped");
    }
}

/// The latest round seen in the store, for the status.
#[derive(Clone, Debug)]
struct Seen {
    token: u64,
    by: String,
    written_at_ms: u64,
}

struct Coordinator {
    store: Arc<dyn HealthStore>,
    cfg: super::Resolved,
    inner: Rounds,
    me: Arc<str>,
    mode: SharedMode,
    detail: Option<String>,
    /// Token of the latest round applied here (read, or written by this process).
    applied: Option<u64>,
    /// Start of the latest round known here (shared or local).
    last_round: Option<Instant>,
    /// Since when the next round is due and someone else holds the lease.
    waiting_since: Option<Instant>,
    /// Whether this process holds the lease (released on shutdown).
    leading: bool,
    seen: Option<Seen>,
}

impl Coordinator {
    fn new(sharing: Sharing, inner: Rounds, me: Arc<str>) -> Self {
        Self {
            store: sharing.store,
            cfg: sharing.cfg,
            inner,
            me,
            mode: SharedMode::On,
            detail: None,
            applied: None,
            last_round: None,
            waiting_since: None,
            leading: false,
            seen: None,
        }
    }

    fn state(&self) -> Option<HealthState> {
        HealthState::upgrade(self.inner.state())
    }

    /// A store call, bounded by the command timeout.
    async fn call<T>(
        &self,
        fut: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        tokio::time::timeout(self.cfg.command, fut)
            .await
            .unwrap_or_else(|_| Err(StoreError::timeout(self.cfg.command)))
    }

    /// When the next round is due: an interval after the latest one started.
    fn due(&self, now: Instant) -> Instant {
        self.last_round
            .and_then(|t| t.checked_add(self.cfg.interval))
            .unwrap_or(now)
    }

    fn saw_round_at(&mut self, started: Instant) {
        self.last_round = Some(self.last_round.map_or(started, |t| t.max(started)));
    }

    async fn run(&mut self) -> &'static str {
        loop {
            let Some(wait) = self.step().await else {
                return "state_dropped";
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// One poll and what it calls for; returns how long to wait before the next one,
    /// `None` once the state is gone.
    async fn step(&mut self) -> Option<Duration> {
        let obs = match self.call(self.store.observe()).await {
            Ok(o) => o,
            Err(e) => return self.degraded(e).await,
        };
        if self.mode == SharedMode::Degraded {
            tracing::info!(
                backend = self.store.backend(),
                "health_check_shared_rejoined: the store answers again; sharing rounds"
            );
        }
        self.mode = SharedMode::On;
        self.detail = None;
        self.follow(&obs).await?;
        let now = Instant::now();
        let due = self.due(now);
        if now < due {
            self.waiting_since = None;
            self.publish_status(obs.lease_holder);
            return Some(self.cfg.poll.min(due - now));
        }
        let mut holder = obs.lease_holder;
        if holder.as_deref() == Some(&*self.me) {
            // Ours, outliving its round (its release timed out): free it rather than wait.
            if let Ok(true) = self.call(self.store.release(&self.me)).await {
                holder = None;
            }
        }
        if holder.is_none() {
            let acquired = self
                .store
                .acquire(&self.me, self.cfg.lease, obs.written_token);
            match self.call(acquired).await {
                Ok(Some(token)) => {
                    self.lead(token).await?;
                    return Some(Duration::ZERO);
                }
                Ok(None) => {}
                Err(e) => return self.degraded(e).await,
            }
        }
        let since = *self.waiting_since.get_or_insert(now);
        if now.saturating_duration_since(since) >= self.cfg.takeover {
            tracing::warn!(
                lease_holder = ?holder,
                waited_ms = now.saturating_duration_since(since).as_millis() as u64,
                "health_check_shared_takeover: no new shared round; probing locally"
            );
            self.waiting_since = None;
            self.local_round().await?;
        }
        self.publish_status(holder);
        Some(self.cfg.poll)
    }

    /// Applies the observed round if it is newer than the last one applied here.
    async fn follow(&mut self, obs: &Observation) -> Option<()> {
        if self.applied.is_some_and(|a| obs.written_token < a) {
            tracing::info!(
                written_token = obs.written_token,
                applied = self.applied,
                "health_check_shared_store_reset: the store's token went back; following it from now"
            );
            self.applied = None;
        }
        let Some(round) = &obs.round else {
            return Some(());
        };
        self.seen = Some(Seen {
            token: round.token,
            by: round.checked_by.clone(),
            written_at_ms: round.written_at_ms,
        });
        if self.applied.is_some_and(|a| round.token <= a) {
            return Some(());
        }
        let (now, wall) = (Instant::now(), self.store.now());
        let report = to_report(round, &self.state()?, now, wall);
        self.inner.apply_round(&report).await?;
        self.applied = Some(round.token);
        if let Some(started) = now.checked_sub(age(round.started_at_ms, wall)) {
            self.saw_round_at(started);
        }
        tracing::debug!(
            token = round.token,
            checked_by = %round.checked_by,
            age_ms = age(round.written_at_ms, wall).as_millis() as u64,
            results = report.results.len(),
            "health_check_shared_round_applied"
        );
        Some(())
    }

    /// Probes a round under the lease `token`, renewing it meanwhile, then writes the
    /// results (fenced) and releases the lease.
    async fn lead(&mut self, token: u64) -> Option<()> {
        self.leading = true;
        self.waiting_since = None;
        self.publish_status(Some(self.me.to_string()));
        tracing::debug!(token, "health_check_shared_lease_acquired");
        let started = Instant::now();
        let report = {
            let renewer = self.keep_lease();
            tokio::select! {
                report = self.inner.probe_round() => report,
                never = renewer => match never {},
            }
        };
        let Some(mut report) = report else {
            self.leading = false;
            return None;
        };
        // Probed here under the lease: the history names this process.
        report.checked_by = Some(Arc::clone(&self.me));
        self.inner.apply_round(&report).await?;
        self.saw_round_at(started);
        let round = to_shared(
            &report,
            token,
            &self.me,
            &self.state()?,
            Instant::now(),
            self.store.now(),
        );
        match self
            .call(self.store.publish(&round, self.cfg.keep_results))
            .await
        {
            Ok(true) => {
                self.applied = Some(self.applied.map_or(token, |a| a.max(token)));
                self.seen = Some(Seen {
                    token,
                    by: self.me.to_string(),
                    written_at_ms: round.written_at_ms,
                });
            }
            Ok(false) => tracing::info!(
                token,
                "health_check_shared_round_fenced: a newer round was written meanwhile; these results stay local"
            ),
            Err(e) => tracing::warn!(
                token,
                error = %e,
                "health_check_shared_write_failed: these results stay local"
            ),
        }
        if let Err(e) = self.call(self.store.release(&self.me)).await {
            tracing::debug!(error = %e, "health_check_shared_release_failed: the lease will expire");
        }
        self.leading = false;
        Some(())
    }

    /// Renews the lease every third of its TTL, forever (raced against the round).
    async fn keep_lease(&self) -> Infallible {
        let mut tick =
            tokio::time::interval_at(Instant::now() + self.cfg.renew_every, self.cfg.renew_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut held = true;
        loop {
            tick.tick().await;
            match self.call(self.store.renew(&self.me, self.cfg.lease)).await {
                Ok(true) => held = true,
                Ok(false) if held => {
                    held = false;
                    tracing::warn!(
                        "health_check_shared_lease_lost: still probing; the write is fenced if another round was written"
                    );
                }
                Ok(false) => {}
                Err(e) => tracing::debug!(error = %e, "health_check_shared_renew_failed"),
            }
        }
    }

    async fn local_round(&mut self) -> Option<()> {
        let started = Instant::now();
        self.inner.background_round().await?;
        self.saw_round_at(started);
        Some(())
    }

    /// The store failed: probe on the local schedule until it answers again.
    async fn degraded(&mut self, e: StoreError) -> Option<Duration> {
        if self.mode != SharedMode::Degraded {
            tracing::warn!(
                backend = self.store.backend(),
                error = %e,
                "health_check_shared_degraded: store unavailable; probing locally until it is back"
            );
        }
        self.mode = SharedMode::Degraded;
        self.detail = Some(format!(
            "{} unavailable: {}",
            self.store.backend(),
            e.message()
        ));
        self.waiting_since = None;
        self.publish_status(None);
        let now = Instant::now();
        if now >= self.due(now) {
            self.local_round().await?;
        }
        let now = Instant::now();
        Some(
            self.cfg
                .poll
                .min(self.due(now).saturating_duration_since(now)),
        )
    }

    fn publish_status(&self, lease_holder: Option<String>) {
        let Some(state) = self.state() else { return };
        let seen = self.seen.as_ref();
        let status = SharedStatus {
            mode: self.mode,
            backend: self.store.backend(),
            process_id: self.me.to_string(),
            lease_holder,
            results_written_at: seen.map(|s| super::store::from_unix_ms(s.written_at_ms)),
            last_checked_by: seen.map(|s| s.by.clone()),
            fencing_token: seen.map(|s| s.token),
            detail: self.detail.clone(),
        };
        if *state.shared_status() != status {
            state.set_shared_status(status);
        }
    }
}
