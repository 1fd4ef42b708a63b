//! The [`HealthStore`] trait and the records that cross processes (documented on the trait,
//! since this module is private).

use std::{
    fmt,
    future::Future,
    pin::Pin,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};

use super::{
    push::{EventStream, OutageEvent},
    usage::UsageCount,
};

/// The future a [`HealthStore`] operation returns.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// A failed store operation: unreachable, timed out, or an unexpected answer.
///
/// The message is short and secret-free (a store scrubs its own credentials out of it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreError {
    message: String,
}

impl StoreError {
    /// An error with a short, secret-free message.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }

    /// An operation that did not finish within `after`.
    pub fn timeout(after: Duration) -> Self {
        Self::new(format!("timed out after {} ms", after.as_millis()))
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "health store: {}", self.message)
    }
}

impl std::error::Error for StoreError {}

/// One deployment's result in a [`SharedRound`]: the raw probe outcome, so every process
/// applies its own staleness, hysteresis and transient-error rules to it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SharedResult {
    /// The deployment's `model_info.id`.
    pub id: String,
    /// Whether the probe passed.
    pub healthy: bool,
    /// The status code of the answer, if one came (408 for a timeout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Why it failed: short and already scrubbed of every configured secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When the probe finished, in milliseconds since the Unix epoch (store clock).
    pub checked_at_ms: u64,
    /// How long the probe took, in milliseconds.
    pub latency_ms: u64,
    /// `Retry-After` of a 429, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

/// The results of one round, as the prober wrote them to the store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SharedRound {
    /// The fencing token of the lease the round ran under: a store keeps the round only if
    /// this is newer than the token of the results it holds.
    pub token: u64,
    /// The process id of the prober.
    pub checked_by: String,
    /// When the round started, in milliseconds since the Unix epoch (store clock).
    pub started_at_ms: u64,
    /// When the round was written, in milliseconds since the Unix epoch (store clock).
    pub written_at_ms: u64,
    /// One result per deployment probed.
    pub results: Vec<SharedResult>,
}

impl SharedRound {
    /// When the round was written.
    pub fn written_at(&self) -> SystemTime {
        from_unix_ms(self.written_at_ms)
    }
}

/// What a process reads from the store on each poll.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Observation {
    /// The latest round kept, if any (a store may let rounds expire).
    pub round: Option<SharedRound>,
    /// The token of the latest round ever kept (0: none); it outlives the round itself.
    pub written_token: u64,
    /// The process holding the probing lease, if any.
    pub lease_holder: Option<String>,
}

impl Observation {
    /// An observation (for [`HealthStore`] implementations).
    pub fn new(
        round: Option<SharedRound>,
        written_token: u64,
        lease_holder: Option<String>,
    ) -> Self {
        Self {
            round,
            written_token,
            lease_holder,
        }
    }
}

/// Where processes share health results: the few atomic operations cross-process
/// coordination needs.
///
/// # Why a trait this small
///
/// Coordination (who probes this round, whose results win) lives in the probe loop, once;
/// a store only has to offer a lease, a fencing counter, a compare-on-write of results and
/// a set of cooldowns, each atomic on its own. [`MemoryStore`](super::MemoryStore) does it
/// with a lock in one process; `RedisStore` (feature `redis`) with `SET NX PX` and Lua
/// scripts across processes. The probe loop bounds every call with a timeout, and nothing
/// on the request path ever calls a store.
///
/// # What crosses processes
///
/// Only ids, statuses, wall-clock timestamps (milliseconds since the Unix epoch, in the
/// store's clock, [`HealthStore::now`]), process ids and short reasons that were scrubbed
/// of every configured secret. Never a key, a URL with credentials, or a request body.
///
/// Each operation is atomic on its own. Callers bound every call with a timeout, so an
/// implementation need not (but may) bound its own.
pub trait HealthStore: fmt::Debug + Send + Sync + 'static {
    /// A short name for status and logs (`memory`, `redis`).
    fn backend(&self) -> &'static str;

    /// The store's wall clock, in which every timestamp it holds is written. The default is
    /// the system clock; processes sharing a store across hosts need their clocks in sync
    /// (NTP) to well under the probe interval.
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }

    /// The latest round, the token of the latest round kept, and the lease holder, read
    /// together (atomically where the store can).
    fn observe(&self) -> StoreFuture<'_, Observation>;

    /// Takes the probing lease for `ttl` if nobody holds it **and** the latest round kept
    /// is still the one the caller saw (`seen`, a [`Observation::written_token`]). Returns
    /// the round's fencing token (from a counter that only grows), or `None`.
    fn acquire<'a>(
        &'a self,
        holder: &'a str,
        ttl: Duration,
        seen: u64,
    ) -> StoreFuture<'a, Option<u64>>;

    /// Extends the lease to `ttl` from now if `holder` still holds it.
    fn renew<'a>(&'a self, holder: &'a str, ttl: Duration) -> StoreFuture<'a, bool>;

    /// Gives the lease up if `holder` still holds it (compare-and-delete).
    fn release<'a>(&'a self, holder: &'a str) -> StoreFuture<'a, bool>;

    /// Keeps `round` for `keep_for` if its token is newer than the latest one kept;
    /// returns whether it was kept. A writer whose lease expired and was taken over thus
    /// cannot overwrite newer results.
    fn publish<'a>(&'a self, round: &'a SharedRound, keep_for: Duration) -> StoreFuture<'a, bool>;

    /// The deployments in cooldown: `(id, until)`, until in milliseconds since the Unix
    /// epoch (store clock). Entries may include some that already ended.
    fn cooldowns(&self) -> StoreFuture<'_, Vec<(String, u64)>>;

    /// Records that `id` is cooling down until `until_ms`; a later end wins over an earlier one.
    fn enter_cooldown<'a>(&'a self, id: &'a str, until_ms: u64) -> StoreFuture<'a, ()>;

    /// Checks the store answers; returns how long it took.
    fn ping(&self) -> StoreFuture<'_, Duration>;

    /// The deployments ejected by outlier detection, as [`cooldowns`](Self::cooldowns)
    /// lists those in cooldown. The default keeps none (a store without it shares
    /// ejections by [`push`](Self::push) only, if at all).
    fn ejections(&self) -> StoreFuture<'_, Vec<(String, u64)>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    /// Records that `id` is ejected until `until_ms`; a later end wins over an earlier one.
    /// The default keeps nothing.
    fn enter_ejection<'a>(&'a self, _id: &'a str, _until_ms: u64) -> StoreFuture<'a, ()> {
        Box::pin(async { Ok(()) })
    }

    /// Pushes `event` to every process [`subscribe`](Self::subscribe)d to this store
    /// (the sender's own subscription included: receivers skip their own events). The
    /// default pushes nothing: the others see the cooldown at their next poll.
    fn push<'a>(&'a self, _event: &'a OutageEvent) -> StoreFuture<'a, ()> {
        Box::pin(async { Ok(()) })
    }

    /// A stream of the events [`push`](Self::push)ed by any process, from now on; it ends
    /// when the connection behind it is lost (the caller subscribes again, and catches up
    /// on what it missed by polling). `None`: this store has no push channel (the default).
    fn subscribe(&self) -> StoreFuture<'_, Option<EventStream>> {
        Box::pin(async { Ok(None) })
    }

    /// Adds this process's usage `deltas` (requests and tokens since its last call) to the
    /// counts of wall-clock `minute` (minutes since the Unix epoch) and returns every
    /// process's totals for the same deployments, in the same order, for
    /// `usage-based-routing-v2` across processes. `None`: this store does not share usage
    /// (the default).
    fn exchange_usage<'a>(
        &'a self,
        _minute: u64,
        _deltas: &'a [UsageCount],
    ) -> StoreFuture<'a, Option<Vec<UsageCount>>> {
        Box::pin(async { Ok(None) })
    }
}

/// Milliseconds since the Unix epoch (0 before it).
pub(crate) fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The time `ms` milliseconds after the Unix epoch.
pub(crate) fn from_unix_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH
        .checked_add(Duration::from_millis(ms))
        .unwrap_or(UNIX_EPOCH)
}

/// Milliseconds, saturating.
pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
