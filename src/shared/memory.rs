//! [`MemoryStore`]: the [`HealthStore`] of one process (documented on the type).

use std::{
    collections::HashMap,
    sync::atomic::{AtomicBool, Ordering::Relaxed},
    time::{Duration, SystemTime},
};

use tokio::{sync::Mutex, time::Instant};

use std::sync::Arc;

use futures_util::StreamExt as _;

use super::{
    push::{EventStream, OutageEvent},
    store::{HealthStore, Observation, SharedRound, StoreError, StoreFuture, unix_ms},
    usage::UsageCount,
};

/// Events a slow subscriber may lag behind by before it misses some (it catches up by polling).
const EVENT_BACKLOG: usize = 1024;

/// A [`HealthStore`] in memory, for loops in one process.
///
/// Without any store a probe loop probes on its own, which is the default. A
/// `MemoryStore` shared by several loops in one process (several layers in one binary, or
/// tests) makes them coordinate exactly as Redis makes processes coordinate: same lease,
/// same fencing, same cooldown and ejection sharing (pushed, too), same usage counters.
/// Its clock follows tokio's, so paused-time tests
/// drive leases, staleness and takeovers without sleeping.
///
/// Its lock is held only inside each operation, never across an `await` of anything
/// else, and never on the request path.
pub struct MemoryStore {
    inner: Mutex<Mem>,
    /// Wall time at `anchor`; [`now`](HealthStore::now) moves with tokio's clock from there.
    anchor_wall: SystemTime,
    anchor: Instant,
    reachable: Arc<AtomicBool>,
    events: tokio::sync::broadcast::Sender<OutageEvent>,
}

#[derive(Default)]
struct Mem {
    lease: Option<(String, Instant)>,
    fence: u64,
    written: u64,
    round: Option<(SharedRound, Instant)>,
    cooldowns: HashMap<String, u64>,
    ejections: HashMap<String, u64>,
    /// (minute, id) -> (requests, tokens).
    usage: HashMap<(u64, String), (u64, u64)>,
}

impl Mem {
    fn lease_holder(&mut self, now: Instant) -> Option<&str> {
        if self.lease.as_ref().is_some_and(|(_, until)| *until <= now) {
            self.lease = None;
        }
        self.lease.as_ref().map(|(h, _)| h.as_str())
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self {
            inner: Mutex::new(Mem::default()),
            anchor_wall: SystemTime::now(),
            anchor: Instant::now(),
            reachable: Arc::new(AtomicBool::new(true)),
            events: tokio::sync::broadcast::Sender::new(EVENT_BACKLOG),
        }
    }

    /// Makes every operation fail (`false`) or work again (`true`), as an unreachable
    /// Redis would: to try out, or test, the fallback to local probing. Subscriptions end
    /// at their next event while unreachable.
    pub fn set_reachable(&self, on: bool) {
        self.reachable.store(on, Relaxed);
    }

    fn op<'a, T: Send + 'a>(
        &'a self,
        f: impl FnOnce(&mut Mem, Instant) -> T + Send + 'a,
    ) -> StoreFuture<'a, T> {
        Box::pin(async move {
            if !self.reachable.load(Relaxed) {
                return Err(StoreError::new("memory store set unreachable"));
            }
            let mut mem = self.inner.lock().await;
            Ok(f(&mut mem, Instant::now()))
        })
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("reachable", &self.reachable.load(Relaxed))
            .finish_non_exhaustive()
    }
}

impl HealthStore for MemoryStore {
    fn backend(&self) -> &'static str {
        "memory"
    }

    fn now(&self) -> SystemTime {
        self.anchor_wall + self.anchor.elapsed()
    }

    fn observe(&self) -> StoreFuture<'_, Observation> {
        self.op(|m, now| {
            if m.round.as_ref().is_some_and(|(_, until)| *until <= now) {
                m.round = None;
            }
            Observation::new(
                m.round.as_ref().map(|(r, _)| r.clone()),
                m.written,
                m.lease_holder(now).map(str::to_owned),
            )
        })
    }

    fn acquire<'a>(
        &'a self,
        holder: &'a str,
        ttl: Duration,
        seen: u64,
    ) -> StoreFuture<'a, Option<u64>> {
        self.op(move |m, now| {
            if m.lease_holder(now).is_some() || m.written != seen {
                return None;
            }
            m.lease = Some((holder.to_owned(), now + ttl));
            m.fence = m.fence.max(m.written) + 1;
            Some(m.fence)
        })
    }

    fn renew<'a>(&'a self, holder: &'a str, ttl: Duration) -> StoreFuture<'a, bool> {
        self.op(move |m, now| {
            if m.lease_holder(now) != Some(holder) {
                return false;
            }
            m.lease = Some((holder.to_owned(), now + ttl));
            true
        })
    }

    fn release<'a>(&'a self, holder: &'a str) -> StoreFuture<'a, bool> {
        self.op(move |m, now| {
            if m.lease_holder(now) != Some(holder) {
                return false;
            }
            m.lease = None;
            true
        })
    }

    fn publish<'a>(&'a self, round: &'a SharedRound, keep_for: Duration) -> StoreFuture<'a, bool> {
        self.op(move |m, now| {
            if round.token <= m.written {
                return false;
            }
            m.written = round.token;
            m.round = Some((round.clone(), now + keep_for));
            true
        })
    }

    fn cooldowns(&self) -> StoreFuture<'_, Vec<(String, u64)>> {
        let now_ms = unix_ms(self.now());
        self.op(move |m, _| {
            m.cooldowns.retain(|_, until| *until > now_ms);
            m.cooldowns.iter().map(|(k, v)| (k.clone(), *v)).collect()
        })
    }

    fn enter_cooldown<'a>(&'a self, id: &'a str, until_ms: u64) -> StoreFuture<'a, ()> {
        self.op(move |m, _| {
            let e = m.cooldowns.entry(id.to_owned()).or_default();
            *e = (*e).max(until_ms);
        })
    }

    fn ping(&self) -> StoreFuture<'_, Duration> {
        self.op(|_, _| Duration::ZERO)
    }

    fn ejections(&self) -> StoreFuture<'_, Vec<(String, u64)>> {
        let now_ms = unix_ms(self.now());
        self.op(move |m, _| {
            m.ejections.retain(|_, until| *until > now_ms);
            m.ejections.iter().map(|(k, v)| (k.clone(), *v)).collect()
        })
    }

    fn enter_ejection<'a>(&'a self, id: &'a str, until_ms: u64) -> StoreFuture<'a, ()> {
        self.op(move |m, _| {
            let e = m.ejections.entry(id.to_owned()).or_default();
            *e = (*e).max(until_ms);
        })
    }

    fn push<'a>(&'a self, event: &'a OutageEvent) -> StoreFuture<'a, ()> {
        self.op(move |_, _| {
            // No subscriber is no error (as a Redis PUBLISH to nobody).
            let _ = self.events.send(event.clone());
        })
    }

    fn subscribe(&self) -> StoreFuture<'_, Option<EventStream>> {
        self.op(|_, _| {
            let rx = self.events.subscribe();
            let reachable = Arc::clone(&self.reachable);
            let stream = futures_util::stream::unfold(rx, move |mut rx| {
                let reachable = Arc::clone(&reachable);
                async move {
                    loop {
                        match rx.recv().await {
                            Ok(e) if reachable.load(Relaxed) => return Some((e, rx)),
                            Ok(_) => return None,
                            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                            Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                        }
                    }
                }
            });
            Some(stream.boxed())
        })
    }

    fn exchange_usage<'a>(
        &'a self,
        minute: u64,
        deltas: &'a [UsageCount],
    ) -> StoreFuture<'a, Option<Vec<UsageCount>>> {
        self.op(move |m, _| {
            // Two minutes are kept, as Redis keeps each for 120 s.
            m.usage.retain(|(k, _), _| k + 1 >= minute);
            let totals = deltas
                .iter()
                .map(|d| {
                    let c = m.usage.entry((minute, d.id.clone())).or_default();
                    c.0 += d.requests;
                    c.1 += d.tokens;
                    UsageCount::new(d.id.clone(), c.0, c.1)
                })
                .collect();
            Some(totals)
        })
    }
}
