//! [`HealthState`]: the published health of every deployment, read without locks.
//!
//! # Semantics
//!
//! * **One snapshot.** Deployments, routes and health results live in one immutable
//!   [`HealthSnapshot`] behind an [`ArcSwap`]. A writer builds a whole new snapshot and
//!   publishes it in one store, so a reader sees either the old state or the new one, never
//!   a mix. A request does exactly one `load()` and never locks or waits.
//! * **Writers.** The probe loop (or your own code) calls [`HealthState::record`] with the
//!   results of a round; concurrent writers are serialised by `ArcSwap::rcu`, so no result
//!   is lost. Each publication logs `health_check_routing_state_updated healthy=H unhealthy=U`
//!   at info level, as LiteLLM does.
//! * **Staleness.** A result older than `health_check_staleness_threshold` (default
//!   2 × interval) is treated as unknown, so a stalled probe loop cannot keep a deployment
//!   out of rotation forever.
//! * **Cooldown and load** are per-deployment atomics that survive publications.
//! * **Time** is tokio's [`Instant`], so tests drive it with `tokio::time::pause()`.
//!   Stale results are republished by a small watchdog task (see below), so in a
//!   paused-time test let the runtime run once after `advance` (`tokio::task::yield_now().await`)
//!   before asserting on staleness.
//! * **Staleness is an event.** Rather than reading the clock on every request, a task
//!   owned by the state republishes the snapshot when its next failed result goes stale;
//!   the request path trusts the lists of a snapshot so watched. The republication lands on
//!   tokio's first timer tick (1 ms) after the expiry, plus scheduling delay: a result may
//!   exclude its deployment that much longer than the threshold says (thresholds are minutes;
//!   the property tests model this). A state used outside any tokio runtime has no such task,
//!   and requests compare the clock themselves, exactly.

mod hooks;
mod snapshot;
mod watchdog;

use std::{sync::Arc, time::Duration};

use arc_swap::{ArcSwap, ArcSwapOption, Guard};
use tokio::time::Instant;

pub(crate) use hooks::Hooks;
pub(crate) use snapshot::{Entry, EntryCore};
pub use snapshot::{HealthRecord, HealthSnapshot, HealthSource, ProbeTier, Unsupported};

use crate::{
    config::Config,
    deployment::{Deployment, DeploymentId},
    secret::Scrubber,
    time::nanos_since,
};

/// The shared health of every deployment: cheap to clone (an `Arc`), safe to share
/// between the routing layer, the probe loop and the endpoints.
#[derive(Clone)]
pub struct HealthState {
    pub(crate) shared: Arc<Shared>,
}

/// What the request path derives from a snapshot (see [`HealthState::set_deriver`]): from
/// the new snapshot and the one it replaces (whose derived value it may share parts of).
pub(crate) type Deriver = Box<
    dyn Fn(&HealthSnapshot, Option<&HealthSnapshot>) -> Box<dyn std::any::Any + Send + Sync>
        + Send
        + Sync,
>;

/// A handle's own copy of the current snapshot (for a service that decides often): a
/// load compares the published pointer with the copy's and clones the new snapshot only
/// when one was published since (`arc_swap::Cache`), so a decision writes nothing
/// shared (no debt slot a writer scans, no reference count) and a writer publishing
/// back to back costs each reader one clone per publication, not per decision.
pub(crate) struct SnapshotCache {
    /// Made on the handle's second decision: a handle cloned per request (axum clones a
    /// service per request) decides once, from `HealthState::load`, and pays nothing for
    /// a copy it would not reuse.
    cache: Option<arc_swap::Cache<SnapshotOf, Arc<HealthSnapshot>>>,
    /// Whether the handle already made its one decision without the copy.
    decided_once: bool,
}

/// The snapshot pointer of one state, for [`SnapshotCache`].
struct SnapshotOf(Arc<Shared>);

impl std::ops::Deref for SnapshotOf {
    type Target = ArcSwap<HealthSnapshot>;
    fn deref(&self) -> &Self::Target {
        &self.0.snapshot
    }
}

impl SnapshotCache {
    /// No copy yet.
    pub(crate) fn cold() -> Self {
        Self {
            cache: None,
            decided_once: false,
        }
    }

    /// `state`'s current snapshot from the copy, or `None` on a fresh handle's first
    /// decision (the caller loads it from `state` then).
    #[inline]
    pub(crate) fn get(&mut self, state: &HealthState) -> Option<&Arc<HealthSnapshot>> {
        if self.cache.is_none() && !self.decided_once {
            self.decided_once = true;
            return None;
        }
        Some(self.warm(state))
    }

    /// `state`'s current snapshot from the copy (made now if need be).
    #[inline]
    pub(crate) fn warm(&mut self, state: &HealthState) -> &Arc<HealthSnapshot> {
        self.cache
            .get_or_insert_with(|| arc_swap::Cache::new(SnapshotOf(Arc::clone(&state.shared))))
            .load()
    }
}

impl Clone for SnapshotCache {
    /// A clone starts without a copy.
    fn clone(&self) -> Self {
        Self::cold()
    }
}

impl std::fmt::Debug for SnapshotCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotCache").finish_non_exhaustive()
    }
}

/// The current usage minute as the staleness watchdog keeps it (see `watchdog.rs`), read
/// with one relaxed load instead of a clock read; shared by the state and its snapshots'
/// [`Owner`]s.
#[derive(Debug, Default)]
pub(crate) struct KeptMinute(std::sync::atomic::AtomicU64);

impl KeptMinute {
    /// The minute, while the watchdog keeps it.
    #[inline]
    pub(crate) fn get(&self) -> Option<u64> {
        // Stored plus one: 0 is "not kept".
        self.0
            .load(std::sync::atomic::Ordering::Relaxed)
            .checked_sub(1)
    }

    /// Keeps `minute`.
    pub(crate) fn set(&self, minute: u64) {
        self.0.store(
            minute.saturating_add(1),
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// Stops keeping it: readers read the clock.
    pub(crate) fn clear(&self) {
        self.0.store(0, std::sync::atomic::Ordering::Relaxed);
    }
}

/// What a deployment's entry holds of the state it belongs to, so that a request's answer
/// reaches the config and the state through the request's `Arc<EntryCore>` (no handle
/// cloned per request: that would write the state's reference count, a line every
/// thread's requests share). The state itself is weak (the state owns its entries); an
/// answer upgrades it only on its rare paths (a cooldown or an ejection entered).
pub(crate) struct Owner {
    pub(crate) config: Arc<Config>,
    /// The state's epoch (see `Shared::epoch`).
    pub(crate) epoch: Instant,
    shared: std::sync::Weak<Shared>,
    /// The state's kept minute (see `Shared::minute`), readable without upgrading `shared`.
    minute: Arc<KeptMinute>,
    /// Whether a successful answer only counts in its deployment's cooldown window: no
    /// traffic health, no tiered rounds, no outlier detection and no stream stall timer
    /// (see [`Config::success_counts_only`]).
    pub(crate) plain_success: bool,
}

impl Owner {
    /// The owner the entries of one snapshot share.
    fn new(
        config: &Arc<Config>,
        epoch: Instant,
        shared: std::sync::Weak<Shared>,
        minute: &Arc<KeptMinute>,
    ) -> Arc<Self> {
        Arc::new(Self {
            plain_success: config.success_counts_only(),
            config: Arc::clone(config),
            epoch,
            shared,
            minute: Arc::clone(minute),
        })
    }

    /// The state's current minute without a clock read, while its watchdog keeps it (see
    /// [`HealthState::minute`]).
    #[inline]
    pub(crate) fn minute(&self) -> Option<u64> {
        self.minute.get()
    }

    /// The state, unless every owner of it is gone.
    pub(crate) fn state(&self) -> Option<HealthState> {
        self.shared.upgrade().map(|shared| HealthState { shared })
    }

    /// The config of the state.
    pub(crate) fn config(&self) -> &Config {
        &self.config
    }

    /// The latency estimate's time constant (`latency_decay`), in nanos.
    pub(crate) fn tau_nanos(&self) -> f64 {
        self.config.router.routing_strategy_args.tau_nanos()
    }
}

impl std::fmt::Debug for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Owner").finish_non_exhaustive()
    }
}

/// The snapshot pointer of [`Shared`], aligned to a cache line (see `Shared::snapshot`).
#[repr(align(64))]
pub(crate) struct Published(ArcSwap<HealthSnapshot>);

impl std::ops::Deref for Published {
    type Target = ArcSwap<HealthSnapshot>;
    fn deref(&self) -> &ArcSwap<HealthSnapshot> {
        &self.0
    }
}

pub(crate) struct Shared {
    /// The published snapshot, on a cache line of its own: a publication writes it (and
    /// the other fields' writers, `retired` first, leave it alone), every decision reads it.
    pub(crate) snapshot: Published,
    /// The snapshot the last publication replaced, kept until the next one when others
    /// still held it: services hold their own copies (`SnapshotCache`) and let go of the
    /// old one when they see a new one, so without this the last of them to do so would
    /// free it (in a decision); the publisher frees it instead, one publication later.
    retired: ArcSwapOption<HealthSnapshot>,
    pub(crate) config: Arc<Config>,
    pub(crate) epoch: Instant,
    pub(crate) scrubber: Scrubber,
    /// What other modules hang off this state (sharing status, cooldown sink, ...).
    hooks: Hooks,
    /// Wakes the staleness watchdog (see `watchdog.rs`).
    watchdog: ArcSwapOption<tokio::sync::watch::Sender<()>>,
    /// The current usage minute plus one, kept by the watchdog while some picker counts
    /// usage or some routing service counts its answers, and the watchdog runs; 0 = not
    /// kept (read the clock). Shared with the snapshots' [`Owner`]s. See `watchdog.rs`.
    pub(crate) minute: Arc<KeptMinute>,
    /// Whether some picker of this state counts usage per minute (the watchdog then keeps
    /// [`minute`](Self::minute)).
    pub(crate) minute_wanted: std::sync::atomic::AtomicBool,
    /// Derives the request path's value for each new snapshot (its slot), installed once by
    /// `routing`; `health` calls it and does not interpret what it returns.
    deriver: std::sync::OnceLock<Deriver>,
    /// Dropped with the last owner: background tasks holding only a `Weak` watch it to end
    /// as soon as every owner is gone (see [`HealthState::closed`]).
    pub(crate) closed: tokio::sync::watch::Sender<()>,
}

impl HealthState {
    /// A state holding `config`'s deployments, none of them checked yet.
    pub fn new(config: Config) -> Self {
        let now = Instant::now();
        // Shared usage-based-routing-v2 counts wall-clock minutes (see `stats`).
        let epoch = crate::stats::minute_aligned_epoch(
            now,
            config.health.use_shared_health_check
                && config.router.routing_strategy == crate::config::RoutingStrategy::UsageBasedV2,
        );
        let staleness = config.health.staleness_threshold();
        let scrubber = config.scrubber();
        let config = Arc::new(config);
        let minute = Arc::new(KeptMinute::default());
        Self {
            shared: Arc::new_cyclic(|weak| Shared {
                snapshot: Published(ArcSwap::from_pointee(HealthSnapshot::build(
                    &config.deployments,
                    None,
                    epoch,
                    staleness,
                    now,
                    &Owner::new(&config, epoch, weak.clone(), &minute),
                ))),
                retired: ArcSwapOption::empty(),
                scrubber,
                config,
                epoch,
                watchdog: ArcSwapOption::empty(),
                minute,
                minute_wanted: std::sync::atomic::AtomicBool::new(false),
                hooks: Hooks::default(),
                deriver: std::sync::OnceLock::new(),
                closed: tokio::sync::watch::Sender::new(()),
            }),
        }
    }

    /// What its entries hold of it (see [`Owner`]): one `Arc` that every entry of a
    /// snapshot shares (8 bytes per entry, not the owner's 40).
    fn owner(&self) -> Arc<Owner> {
        Owner::new(
            &self.shared.config,
            self.shared.epoch,
            Arc::downgrade(&self.shared),
            &self.shared.minute,
        )
    }

    /// The config this state was built from.
    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    /// Removes every configured secret from `text` (for error messages and reasons).
    pub fn scrubber(&self) -> &Scrubber {
        &self.shared.scrubber
    }

    /// The current snapshot, as an owned `Arc` (for the request path, see [`load`](Self::load)).
    pub fn snapshot(&self) -> Arc<HealthSnapshot> {
        self.shared.snapshot.load_full()
    }

    /// The current snapshot, borrowed cheaply for a short time (one unit of work).
    pub fn load(&self) -> Guard<Arc<HealthSnapshot>> {
        self.shared.snapshot.load()
    }

    /// Publishes health results: one new snapshot in which each listed deployment has its
    /// new record and the others keep theirs. Ids not in the snapshot are ignored.
    pub fn record(&self, results: impl IntoIterator<Item = (DeploymentId, HealthRecord)>) {
        let results: Vec<_> = results.into_iter().collect();
        self.publish(|cur, now| cur.with_records(&results, now));
        let snap = self.load();
        crate::telemetry::record_health(
            results
                .iter()
                .filter_map(|(id, rec)| Some((&**snap.deployment(id.as_str())?, rec.healthy))),
        );
    }

    /// Marks deployments [`Unsupported`], once, at start-up: each is logged once at warn
    /// level with its reason, never probed, listed under `unsupported_endpoints` in
    /// `/health`, and, when not `routable`, never picked for traffic (a route left with
    /// none answers [`UnsupportedRoute`](crate::error::UnsupportedRoute)). A deployment
    /// marked twice keeps its first reason and is unroutable if either mark says so.
    pub fn mark_unsupported(&self, marks: impl IntoIterator<Item = (DeploymentId, Unsupported)>) {
        let snap = self.load();
        let marks: Vec<_> = marks
            .into_iter()
            .filter(|(id, _)| snap.entry_by_id(id.as_str()).is_some())
            .collect();
        if marks.is_empty() {
            return;
        }
        for (id, m) in &marks {
            if snap.unsupported(id.as_str()).is_none() {
                let d = snap.deployment(id.as_str());
                tracing::warn!(
                    model_id = %id,
                    route = d.map(|d| d.route()),
                    model = d.map(|d| d.params().model.as_str()),
                    routable = m.routable,
                    reason = %self.scrubber().scrub(&m.reason),
                    "deployment unsupported: it is never probed{}",
                    if m.routable { "" } else { " nor sent traffic" }
                );
            }
        }
        drop(snap);
        self.publish(|cur, now| cur.with_unsupported(&marks, now));
    }

    /// Replaces the deployment list; health and statistics of ids that stay are kept.
    pub fn set_deployments(&self, deployments: &[Deployment]) {
        let staleness = self.shared.config.health.staleness_threshold();
        let epoch = self.shared.epoch;
        let owner = self.owner();
        self.publish(|cur, now| {
            HealthSnapshot::build(deployments, Some(cur), epoch, staleness, now, &owner)
        });
    }

    /// Publishes `next(current)`, marked watched when the staleness watchdog runs.
    fn publish(&self, next: impl Fn(&HealthSnapshot, Instant) -> HealthSnapshot) {
        let watched = watchdog::ensure(&self.shared);
        let now = Instant::now();
        let replaced = self.shared.snapshot.rcu(|cur| {
            let mut snap = next(cur, now);
            if watched {
                snap.set_watched();
            }
            self.shared.derive(&snap, cur);
            snap
        });
        // Kept until the next publication only while someone else still holds it (a
        // service's snapshot copy, a decision in flight), so that the publisher, not a
        // decision, frees it; held by nobody else, it is freed here at once (a state no
        // service decides from keeps no second snapshot: at 100,000 deployments, 6 MiB).
        let still_held = Arc::strong_count(&replaced) > 1;
        drop(self.shared.retired.swap(still_held.then_some(replaced)));
        watchdog::notify(&self.shared);
        log_published(&self.load());
    }

    /// Installs the function that derives the request path's value of every snapshot
    /// published from now on (the first one installed stays; returns whether it was this
    /// one). Snapshots published before get theirs on first use.
    pub(crate) fn set_deriver(&self, deriver: Deriver) -> bool {
        self.shared.deriver.set(deriver).is_ok()
    }

    /// What other modules hang off this state; see [`Hooks`].
    pub(crate) fn hooks(&self) -> &Hooks {
        &self.shared.hooks
    }

    /// Applies a cooldown entered in another process: `id` cools down for `remaining` from
    /// now, unless it already does for longer. Returns whether anything changed.
    pub(crate) fn apply_remote_cooldown(&self, id: &str, remaining: Duration) -> bool {
        let snap = self.load();
        let Some(e) = snap.entry_by_id(id) else {
            return false;
        };
        let until = self
            .now_nanos()
            .saturating_add(u64::try_from(remaining.as_nanos()).unwrap_or(u64::MAX));
        e.stats.cooldown.extend_until(until)
    }

    /// Applies an outlier ejection entered in another process: `id` is ejected for
    /// `remaining` from now, unless it already is for longer, and only while this
    /// process's view of the route leaves room for it under `max_ejection_percent` (a
    /// deployment already ejected here is always extended). Returns whether anything
    /// changed; `false` without `router_settings.outlier_detection`.
    pub(crate) fn apply_remote_ejection(&self, id: &str, remaining: Duration) -> bool {
        let Some(od) = &self.shared.config.router.outlier_detection else {
            return false;
        };
        let snap = self.load();
        let Some(e) = snap.entry_by_id(id) else {
            return false;
        };
        let now = self.now_nanos();
        if e.stats.ejection.remaining(now).is_none() {
            let (len, out) = snap.ejected_in(e.deployment.route(), now);
            if !crate::ejection::room_for_one_more(od, len, out) {
                return false;
            }
        }
        let until = now.saturating_add(u64::try_from(remaining.as_nanos()).unwrap_or(u64::MAX));
        e.stats.ejection.extend_until(until)
    }

    /// How long `id` stays in cooldown from now; `None` when it is not cooling down.
    pub fn cooldown_remaining(&self, id: &str) -> Option<Duration> {
        let snap = self.load();
        let e = snap.entry_by_id(id)?;
        let now = nanos_since(self.shared.epoch, Instant::now());
        e.stats.cooldown.remaining(now)
    }

    /// How long `id` stays ejected by outlier detection from now; `None` when it is not
    /// ejected (see `router_settings.outlier_detection`).
    pub fn ejection_remaining(&self, id: &str) -> Option<Duration> {
        let snap = self.load();
        let e = snap.entry_by_id(id)?;
        e.stats.ejection.remaining(self.now_nanos())
    }

    /// The multiplier of `id`'s last ejection: how many times it was ejected, less one for
    /// every `interval` it spent back in rotation before that ejection (`0`: never ejected,
    /// or an unknown id).
    pub fn ejections(&self, id: &str) -> u32 {
        self.load()
            .entry_by_id(id)
            .map_or(0, |e| e.stats.ejection.ejections())
    }

    /// `id`'s usage this minute, `(requests, tokens)`, as `usage-based-routing` reads it:
    /// this process's counts plus, when `usage-based-routing-v2` shares them through a
    /// store, the other processes' as of the last exchange (`(0, 0)` for an unknown id).
    pub fn usage_this_minute(&self, id: &str) -> (u64, u64) {
        let minute = crate::stats::minute_of(self.now_nanos());
        self.load().entry_by_id(id).map_or((0, 0), |e| {
            (e.stats.requests_in(minute), e.stats.tokens_in(minute))
        })
    }

    /// Requests now in flight to `id` (`0` for an unknown id).
    pub fn in_flight(&self, id: &str) -> u32 {
        self.load()
            .entry_by_id(id)
            .map_or(0, |e| e.stats.in_flight())
    }

    /// The routes (sorted) with at least one deployment that may be picked now: its last
    /// check passed, or it was never checked, or its failed result is stale; and it is not
    /// cooling down. What `/v1/models?healthy_only=true` lists (LiteLLM's
    /// `healthy_model_filter`: a route is hidden only when every deployment is known bad).
    /// It reads the clock once; not for the request path.
    pub fn pickable_routes(&self) -> Vec<String> {
        let snap = self.load();
        let now = self.now_nanos();
        let mut v: Vec<String> = snap
            .routes
            .keys()
            .filter(|name| {
                snap.routable_indices(name).any(|i| {
                    !snap.checked[i as usize].failed_fresh(now, snap.staleness_nanos)
                        && snap.entries[i as usize]
                            .stats
                            .cooldown
                            .remaining(now)
                            .is_none()
                })
            })
            .map(|name| name.to_string())
            .collect();
        v.sort_unstable();
        v
    }

    /// Requests now in flight, summed over every deployment.
    pub fn in_flight_total(&self) -> u64 {
        self.load()
            .entries
            .iter()
            .map(|e| u64::from(e.stats.in_flight()))
            .sum()
    }

    /// Whether this and `other` are the same state.
    pub fn ptr_eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }

    /// Nanoseconds since this state's epoch (the time base of cooldowns and results).
    pub(crate) fn now_nanos(&self) -> u64 {
        nanos_since(self.shared.epoch, Instant::now())
    }

    /// The current usage minute (see [`crate::stats::minute_of`]) without a clock read,
    /// while the watchdog keeps it (after [`want_minute`](Self::want_minute), inside a
    /// runtime). It turns when the watchdog's timer fires, a timer tick after the minute
    /// does; `None` when not kept.
    pub(crate) fn minute(&self) -> Option<u64> {
        self.shared.minute.get()
    }

    /// Asks the watchdog to keep [`minute`](Self::minute) (a picker counting usage, a
    /// routing service counting its answers).
    pub(crate) fn want_minute(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        if !self.shared.minute_wanted.swap(true, Relaxed) {
            watchdog::notify(&self.shared);
        }
    }

    pub(crate) fn downgrade(&self) -> std::sync::Weak<Shared> {
        Arc::downgrade(&self.shared)
    }

    /// The state behind `weak`, if any owner still holds it.
    pub(crate) fn upgrade(weak: &std::sync::Weak<Shared>) -> Option<Self> {
        weak.upgrade().map(|shared| Self { shared })
    }

    /// A receiver whose `changed()` fails once every owner of this state is gone.
    pub(crate) fn closed(&self) -> tokio::sync::watch::Receiver<()> {
        self.shared.closed.subscribe()
    }
}

impl Shared {
    /// Fills the slot of a snapshot about to replace `prev`, when a deriver is installed.
    pub(crate) fn derive(&self, snap: &HealthSnapshot, prev: &HealthSnapshot) {
        if let Some(d) = self.deriver.get() {
            let _ = snap.slot().set(d(snap, Some(prev)));
        }
    }
}

fn log_published(cur: &HealthSnapshot) {
    let (healthy, unhealthy) = (cur.healthy_count(), cur.unhealthy_count());
    tracing::info!(
        healthy,
        unhealthy,
        version = cur.version(),
        "health_check_routing_state_updated healthy={healthy} unhealthy={unhealthy}"
    );
}

impl std::fmt::Debug for HealthState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HealthState")
            .field("snapshot", &**self.load())
            .finish_non_exhaustive()
    }
}
