//! `usage-based-routing-v2` counters across processes.
//!
//! Every process counts requests and tokens per deployment and minute in its own atomics
//! (the request path never waits on the store). This task, one per probe loop with a
//! store, every [`usage_flush_interval`](super::SharingSettings::usage_flush_interval)
//! (200 ms by default):
//!
//! 1. takes each deployment's local counts for the current minute, less what it already
//!    added to the store for that minute: the deltas;
//! 2. adds them to the store's counts for the wall-clock minute and reads every process's
//!    totals back, in one batch ([`HealthStore::exchange_usage`]: one pipelined round trip
//!    to Redis, `HINCRBY` + `HMGET` on `{prefix}:usage:{minute}` with a 120 s expiry);
//! 3. stores, per deployment, the totals less this process's own share (what the others
//!    counted) in the minute-tagged slot the strategy and the `rpm`/`tpm` checks add to
//!    the local count (see `stats`).
//!
//! A decision thus sees the cluster's usage as of the last exchange plus its own requests
//! since: `rpm` and `tpm` limits hold across processes, overshooting by at most what the
//! others take in one flush period. Requests counted in the last flush period of a
//! minute by a process are not added to the store (the minute is over when they would
//! be). With the store down, each process counts alone, as without sharing; the others'
//! counts last read stay for the rest of their minute, and deltas kept while the store
//! was down are added once it is back (within the same minute).

use std::{collections::HashMap, sync::Arc, sync::Weak};

use serde::{Deserialize, Serialize};

use super::{
    Resolved,
    store::{HealthStore, StoreError, unix_ms},
};
use crate::{
    config::RoutingStrategy,
    health::{HealthState, Shared},
    stats::{MINUTE_NANOS, minute_of},
};

/// One deployment's requests and tokens in a minute (a delta, or a total).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct UsageCount {
    /// The deployment's `model_info.id`.
    pub id: String,
    /// Requests.
    pub requests: u64,
    /// Tokens (prompt + completion).
    pub tokens: u64,
}

impl UsageCount {
    /// A count (for [`HealthStore`] implementations and tests).
    pub fn new(id: impl Into<String>, requests: u64, tokens: u64) -> Self {
        Self {
            id: id.into(),
            requests,
            tokens,
        }
    }
}

/// Milliseconds in a minute.
const MINUTE_MS: u64 = 60_000;

pub(crate) struct UsageSync {
    store: Arc<dyn HealthStore>,
    cfg: Resolved,
    state: Weak<Shared>,
    /// Per deployment: the local minute and the counts already added to the store for it.
    flushed: HashMap<String, (u64, u64, u64)>,
    /// Whether the last exchange failed (logged once per outage).
    failing: bool,
}

impl UsageSync {
    pub(crate) fn new(store: Arc<dyn HealthStore>, cfg: Resolved, state: Weak<Shared>) -> Self {
        Self {
            store,
            cfg,
            state,
            flushed: HashMap::new(),
            failing: false,
        }
    }

    /// Runs until the state is gone; idles for ever unless the routing strategy is
    /// `usage-based-routing-v2` and the store shares usage.
    pub(crate) async fn run(mut self) {
        let shared = HealthState::upgrade(&self.state)
            .is_some_and(|s| s.config().router.routing_strategy == RoutingStrategy::UsageBasedV2);
        if !shared {
            return std::future::pending().await;
        }
        tracing::info!(
            backend = self.store.backend(),
            flush_ms = self.cfg.usage_flush.as_millis() as u64,
            "usage_based_routing_v2_shared: counters are exchanged with the store"
        );
        let mut tick = tokio::time::interval(self.cfg.usage_flush);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match self.exchange().await {
                Some(true) => {}
                Some(false) => {
                    tracing::info!(
                        backend = self.store.backend(),
                        "usage_based_routing_v2_local: this store does not share usage; counting locally"
                    );
                    return std::future::pending().await;
                }
                None => return,
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

    /// One exchange; `None` once the state is gone, `Some(false)` if the store does not
    /// share usage.
    async fn exchange(&mut self) -> Option<bool> {
        let state = HealthState::upgrade(&self.state)?;
        let snap = state.snapshot();
        let now = state.now_nanos();
        let wall = unix_ms(self.store.now());
        drop(state);
        let minute = minute_of(now);
        // The wall-clock minute this local minute is: the wall time of its start, to the
        // nearest minute (exact when the epoch is minute-aligned, see `stats`).
        let into_ms = (now % MINUTE_NANOS) / 1_000_000;
        let wall_minute = (wall.saturating_sub(into_ms) + MINUTE_MS / 2) / MINUTE_MS;
        let mut local = Vec::with_capacity(snap.entries.len());
        let deltas: Vec<UsageCount> = snap
            .entries
            .iter()
            .map(|e| {
                let id = e.deployment.id().as_str();
                let (r, t) = e.stats.local_usage_in(minute);
                local.push((r, t));
                let (fr, ft) = match self.flushed.get(id) {
                    Some(&(m, fr, ft)) if m == minute => (fr, ft),
                    _ => (0, 0),
                };
                UsageCount::new(id, r.saturating_sub(fr), t.saturating_sub(ft))
            })
            .collect();
        let totals = match self
            .call(self.store.exchange_usage(wall_minute, &deltas))
            .await
        {
            Ok(Some(t)) => t,
            Ok(None) => return Some(false),
            Err(e) => {
                if !std::mem::replace(&mut self.failing, true) {
                    tracing::warn!(
                        backend = self.store.backend(),
                        error = %e,
                        "usage_based_routing_v2_unshared: store unavailable; counting locally until it is back"
                    );
                }
                return Some(true);
            }
        };
        if std::mem::take(&mut self.failing) {
            tracing::info!(
                backend = self.store.backend(),
                "usage_based_routing_v2_shared_again"
            );
        }
        for ((e, (r, t)), total) in snap.entries.iter().zip(local).zip(totals) {
            if total.id != e.deployment.id().as_str() {
                continue;
            }
            self.flushed.insert(total.id.clone(), (minute, r, t));
            // Every count this process has for the minute is in the total now.
            e.stats.set_remote_usage(
                minute,
                total.requests.saturating_sub(r),
                total.tokens.saturating_sub(t),
            );
        }
        self.flushed.retain(|_, (m, _, _)| *m == minute);
        Some(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_serialize_plainly() {
        let c = UsageCount::new("d0", 2, 300);
        assert_eq!(
            serde_json::to_string(&c).unwrap(),
            r#"{"id":"d0","requests":2,"tokens":300}"#
        );
    }
}
