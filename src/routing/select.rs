//! The routing decision as a pure, synchronous pipeline over one snapshot:
//!
//! 1. the route's deployments;
//! 2. health filter (when routing on health is enabled): drop those whose last check
//!    failed, unless that result is stale; if that would drop all of them, skip the filter
//!    for this request (never a total outage) and warn once per snapshot. With
//!    `panic_threshold_percent` set, the filter is skipped when fewer than that share of
//!    the route pass it instead (0: never), and the fallback of step 3 is off;
//! 3. cooldown, outlier ejection (and already-tried) filter, and the per-deployment limits: at
//!    `max_parallel_requests` in flight, at its `rpm`/`tpm` this minute (usage-based
//!    strategies), or a context window (`model_info.max_input_tokens`) below the request's
//!    [`RequestTokens`](crate::routing::RequestTokens) with `enable_pre_call_checks`; if every
//!    deployment that passed the health filter is so excluded, the health filter is
//!    bypassed after all (one that failed its check may still serve, and a request that
//!    can be served is never refused);
//! 4. the balancing strategy; the usage-based ones then count the request against the
//!    deployment's `rpm` in the same compare-and-swap that checks the limit.
//!
//! A route name found in `model_group_alias` (and not itself a group) resolves to its group.
//!
//! The clock is read lazily, at most once per decision, and only when the answer depends
//! on it: a route with no failed results and no cooldown history never reads it.

use std::{
    fmt,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::Duration,
};

use rand::{SeedableRng, rngs::SmallRng};

use crate::{
    balance::{self, Ctx, View},
    config::{Config, RoutingStrategy},
    deployment::{Deployment, DeploymentId},
    error::{NoDeploymentAvailable, UnknownRoute, UnsupportedRoute},
    health::{Entry, HealthSnapshot, HealthState, SnapshotCache},
    routing::table::{self, Candidates, Route, RouteMemo, RouteStates},
    stats::{minute_of, until_next_minute},
    time::{LazyNow, nanos_since},
};

/// The settings of one [`Picker`] that come from the config and do not change per request.
#[derive(Debug)]
pub(crate) struct PickSettings {
    pub(crate) tau_nanos: f64,
    pub(crate) buffer: f64,
    pub(crate) pre_call_checks: bool,
    /// `panic_threshold_percent`: `None` = LiteLLM's all-or-nothing bypass.
    pub(crate) panic_threshold: Option<f64>,
    /// `slow_start_window` in nanos; 0 = off.
    pub(crate) slow_start: u64,
    pub(crate) aliases: std::collections::HashMap<String, String>,
}

impl PickSettings {
    fn from_config(cfg: &Config) -> Self {
        let a = &cfg.router.routing_strategy_args;
        Self {
            tau_nanos: a.tau_nanos(),
            buffer: a.lowest_latency_buffer,
            pre_call_checks: cfg.router.enable_pre_call_checks,
            panic_threshold: cfg.router.panic_threshold_percent,
            slow_start: cfg
                .router
                .slow_start_window
                .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
            aliases: cfg
                .router
                .model_group_alias
                .iter()
                .map(|(a, g)| (a.clone(), g.clone()))
                .collect(),
        }
    }
}

/// What one request asks of the pipeline besides its route.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Ask<'a> {
    pub(crate) exclude: &'a [u32],
    /// The request's estimated input tokens, for pre-call checks.
    pub(crate) tokens: Option<u32>,
    /// The usage minute when known without a clock read (the state's kept minute);
    /// `None`: from the decision's time.
    pub(crate) minute: Option<u64>,
}

/// Why no deployment was picked.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PickError {
    /// No deployment serves the route.
    UnknownRoute(UnknownRoute),
    /// Every candidate is cooling down or was excluded.
    NoDeploymentAvailable(NoDeploymentAvailable),
    /// Every deployment of the route is unsupported and unroutable.
    Unsupported(UnsupportedRoute),
}

impl fmt::Display for PickError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownRoute(e) => e.fmt(f),
            Self::NoDeploymentAvailable(e) => e.fmt(f),
            Self::Unsupported(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for PickError {}

impl PickError {
    /// The inner named error, boxed, so callers downcast to [`UnknownRoute`] or
    /// [`NoDeploymentAvailable`] directly.
    pub fn into_box_error(self) -> crate::BoxError {
        match self {
            PickError::UnknownRoute(e) => Box::new(e),
            PickError::NoDeploymentAvailable(e) => Box::new(e),
            PickError::Unsupported(e) => Box::new(e),
        }
    }
}

/// One routing decision: a deployment borrowed from the snapshot it was picked from.
#[derive(Debug, Clone, Copy)]
pub struct Pick<'s> {
    pub(crate) entry: &'s Entry,
    pub(crate) route_len: usize,
    bypassed: bool,
}

impl<'s> Pick<'s> {
    /// The chosen deployment.
    pub fn deployment(&self) -> &'s Arc<Deployment> {
        &self.entry.deployment
    }

    /// Whether the health filter was skipped because every deployment of the route had failed its check.
    pub fn bypassed_health_filter(&self) -> bool {
        self.bypassed
    }
}

/// Seeds for per-service random number generators: deterministic from one base seed.
#[derive(Debug)]
pub(crate) struct SeedSource {
    base: u64,
    counter: AtomicU64,
}

impl SeedSource {
    pub(crate) fn new(base: Option<u64>) -> Arc<Self> {
        Arc::new(Self {
            base: base.unwrap_or_else(rand::random),
            counter: AtomicU64::new(0),
        })
    }

    fn rng(&self) -> SmallRng {
        let n = self.counter.fetch_add(1, Relaxed);
        SmallRng::seed_from_u64(self.base ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }
}

/// Makes routing decisions against a [`HealthState`]: the engine inside
/// [`HealthRouting`](crate::HealthRouting), public for integrations that are not tower services.
///
/// ```
/// use tower_health_routing::{Config, Deployment, HealthState, routing::Picker};
/// let cfg = Config::builder()
///     .deployment(Deployment::builder("gpt-4o", "openai/gpt-4o").api_base("http://127.0.0.1:9/v1").build())
///     .build()?;
/// let state = HealthState::new(cfg);
/// let mut picker = Picker::new(state.clone()).with_seed(7);
/// let snap = state.load();
/// let pick = picker.pick(&snap, "gpt-4o", &[]).expect("one deployment");
/// assert_eq!(pick.deployment().route(), "gpt-4o");
/// # Ok::<(), tower_health_routing::ConfigError>(())
/// ```
pub struct Picker {
    state: HealthState,
    seeds: Arc<SeedSource>,
    /// This picker's copy of the current snapshot, for [`pick_current`](Self::pick_current)
    /// and the service (see `health::SnapshotCache`).
    cache: SnapshotCache,
    d: Decider,
}

/// What one decision uses of its [`Picker`] (apart from the snapshot copy, so that a
/// decision can borrow that copy and these at once).
struct Decider {
    strategy: RoutingStrategy,
    health_filter: bool,
    settings: Arc<PickSettings>,
    /// The per-route state its routing tables share (see `table`).
    routes: Arc<RouteStates>,
    rng: SmallRng,
    /// The last route resolved (see `table::RouteMemo`).
    memo: RouteMemo,
}

impl Picker {
    /// A picker using the state's config: its routing strategy, and the health filter when
    /// `enable_health_check_routing` is on.
    pub fn new(state: HealthState) -> Self {
        let cfg = state.config();
        let (strategy, health_filter) = (cfg.router.routing_strategy, cfg.health.routing_enabled);
        let settings = Arc::new(PickSettings::from_config(cfg));
        let seeds = SeedSource::new(None);
        let rng = seeds.rng();
        let routes = table::install(&state);
        routes.note_strategy(strategy);
        if balance::counts_usage(strategy) {
            state.want_minute();
        }
        // The current snapshot may predate the deriver: give it its table now, not on a request.
        let _ = table::get(&state.load(), &routes);
        Self {
            cache: SnapshotCache::cold(),
            state,
            seeds,
            d: Decider {
                strategy,
                health_filter,
                settings,
                routes,
                rng,
                memo: RouteMemo::default(),
            },
        }
    }

    /// Makes every random choice from `seed` (this picker and its clones), for reproducible tests.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seeds = SeedSource::new(Some(seed));
        self.d.rng = self.seeds.rng();
        self
    }

    /// Uses `strategy` instead of the config's.
    pub fn with_strategy(mut self, strategy: RoutingStrategy) -> Self {
        self.d.strategy = strategy;
        self.d.routes.note_strategy(strategy);
        if balance::counts_usage(strategy) {
            self.state.want_minute();
        }
        self
    }

    /// Turns the health filter on or off, whatever the config says.
    pub fn with_health_filter(mut self, on: bool) -> Self {
        self.d.health_filter = on;
        self
    }

    /// The state it reads.
    pub fn state(&self) -> &HealthState {
        &self.state
    }

    /// Whether the deployments' latency estimates are read: some picker of this state
    /// uses `latency-based-routing`. Otherwise responses take no latency sample (no clock
    /// read, no `exp`).
    pub(crate) fn wants_latency(&self) -> bool {
        self.d.strategy == RoutingStrategy::LatencyBased || self.d.routes.wants_latency()
    }

    /// Whether a decision reads the request's [`RequestTokens`](crate::routing::RequestTokens)
    /// (`enable_pre_call_checks`); otherwise they are ignored, and need not be looked up.
    pub(crate) fn reads_tokens(&self) -> bool {
        self.d.settings.pre_call_checks
    }

    /// The strategy it applies.
    pub fn strategy(&self) -> RoutingStrategy {
        self.d.strategy
    }

    /// Picks a deployment of `route` from `snap`, skipping the ids in `exclude`.
    pub fn pick<'s>(
        &mut self,
        snap: &'s HealthSnapshot,
        route: &str,
        exclude: &[DeploymentId],
    ) -> Result<Pick<'s>, PickError> {
        self.pick_for(snap, route, exclude, None)
    }

    /// Like [`pick`](Self::pick), for a request of about `tokens` input tokens: with
    /// `enable_pre_call_checks`, deployments whose `model_info.max_input_tokens` is
    /// smaller are skipped.
    pub fn pick_for<'s>(
        &mut self,
        snap: &'s HealthSnapshot,
        route: &str,
        exclude: &[DeploymentId],
        tokens: Option<u32>,
    ) -> Result<Pick<'s>, PickError> {
        let epoch = snap.epoch;
        let mut now = LazyNow::new(|| nanos_since(epoch, tokio::time::Instant::now()));
        let minute = kept_minute(&self.state, snap, self.d.strategy);
        self.d
            .pick_at(snap, route, exclude, tokens, &mut now, minute)
    }

    /// Like [`pick`](Self::pick), from the state's current snapshot as this picker keeps
    /// a copy of it: the cheapest way to decide often. The copy is compared with the
    /// published snapshot and replaced only when a new one was published, so a decision
    /// writes nothing another thread reads (no `ArcSwap` debt slot, no reference count),
    /// and a publisher slows it by one snapshot clone per publication, not per decision.
    /// The pick borrows the picker (and the copy it came from).
    ///
    /// ```
    /// use tower_health_routing::{Config, Deployment, HealthState, routing::Picker};
    /// let cfg = Config::builder()
    ///     .deployment(Deployment::builder("gpt-4o", "openai/gpt-4o").api_base("http://127.0.0.1:9/v1").build())
    ///     .build()?;
    /// let mut picker = Picker::new(HealthState::new(cfg));
    /// let pick = picker.pick_current("gpt-4o", &[]).expect("one deployment");
    /// assert_eq!(pick.deployment().route(), "gpt-4o");
    /// # Ok::<(), tower_health_routing::ConfigError>(())
    /// ```
    pub fn pick_current(
        &mut self,
        route: &str,
        exclude: &[DeploymentId],
    ) -> Result<Pick<'_>, PickError> {
        let snap = self.cache.warm(&self.state);
        let epoch = snap.epoch;
        let mut now = LazyNow::new(|| nanos_since(epoch, tokio::time::Instant::now()));
        let minute = kept_minute(&self.state, snap, self.d.strategy);
        self.d.pick_at(snap, route, exclude, None, &mut now, minute)
    }

    /// `Decider::pick_at` from this picker's copy of the current snapshot (see
    /// [`pick_current`](Self::pick_current)), or, on a fresh clone's first decision, from
    /// `HealthState::load` (see `SnapshotCache`); `done` takes the result.
    #[inline]
    pub(crate) fn pick_current_with<F: FnMut() -> u64, R>(
        &mut self,
        route: &str,
        exclude: &[DeploymentId],
        tokens: Option<u32>,
        now: &mut LazyNow<F>,
        done: impl for<'s> FnOnce(Result<Pick<'s>, PickError>) -> R,
    ) -> R {
        let loaded;
        let snap: &HealthSnapshot = match self.cache.get(&self.state) {
            Some(snap) => snap,
            None => {
                loaded = self.state.load();
                &loaded
            }
        };
        done(self.d.pick_at(snap, route, exclude, tokens, now, None))
    }
}

/// The usage minute the state's watchdog keeps, when a decision with `strategy` on `snap`
/// needs it (a usage-based decision needs the minute, not the time; `None`: from the clock).
fn kept_minute(
    state: &HealthState,
    snap: &HealthSnapshot,
    strategy: RoutingStrategy,
) -> Option<u64> {
    (snap.watched && balance::counts_usage(strategy))
        .then(|| state.minute())
        .flatten()
}

impl Decider {
    /// [`Picker::pick_for`] with a clock read at most once, through `now` (the service
    /// reads it only when something needs the time, and keeps what was read for the
    /// answer), and with the usage minute when it knows that without a clock read
    /// (`None`: from the time).
    #[inline(always)]
    pub(crate) fn pick_at<'s, F: FnMut() -> u64>(
        &mut self,
        snap: &'s HealthSnapshot,
        route: &str,
        exclude: &[DeploymentId],
        tokens: Option<u32>,
        now: &mut LazyNow<F>,
        minute: Option<u64>,
    ) -> Result<Pick<'s>, PickError> {
        let tbl = table::get(snap, &self.routes);
        let r = self.memo.resolve(tbl, route, &self.settings.aliases);
        let Some(r) = r else {
            crate::telemetry::record_unknown_route();
            return Err(PickError::UnknownRoute(UnknownRoute {
                route: route.into(),
            }));
        };
        if let Some(reason) = &r.unsupported {
            r.state.metrics.refused();
            return Err(PickError::Unsupported(UnsupportedRoute {
                route: Arc::clone(&r.name),
                reason: Arc::clone(reason),
            }));
        }
        // Most requests exclude nothing: an empty collect allocates nothing either, but
        // is still a call of its own (25 instructions a request).
        let excluded: Vec<u32> = if exclude.is_empty() {
            Vec::new()
        } else {
            exclude
                .iter()
                .filter_map(|id| snap.index_of(id.as_str()))
                .collect()
        };
        let ask = Ask {
            exclude: &excluded,
            tokens: tokens.filter(|_| self.settings.pre_call_checks),
            minute,
        };
        // A watched snapshot's lists are trusted as they are (see `select`): its instants,
        // new with every snapshot, are not read at all then.
        let fresh_until = if snap.watched {
            u64::MAX
        } else {
            tbl.fresh_until(r)
        };
        match select(
            snap,
            r,
            fresh_until,
            self.strategy,
            self.health_filter,
            &self.settings,
            &mut self.rng,
            now,
            ask,
        ) {
            Ok((index, bypassed)) => {
                r.state.metrics.decided(bypassed);
                Ok(Pick {
                    entry: &snap.entries[index as usize],
                    route_len: r.all.idx.len(),
                    bypassed,
                })
            }
            Err(retry_after) => {
                r.state.metrics.refused();
                Err(PickError::NoDeploymentAvailable(NoDeploymentAvailable {
                    route: Arc::clone(&r.name),
                    retry_after,
                }))
            }
        }
    }
}

impl Clone for Picker {
    /// A clone draws a fresh random sequence from the same seed source.
    fn clone(&self) -> Self {
        Self {
            state: self.state.clone(),
            seeds: Arc::clone(&self.seeds),
            cache: self.cache.clone(),
            d: Decider {
                strategy: self.d.strategy,
                health_filter: self.d.health_filter,
                settings: Arc::clone(&self.d.settings),
                routes: Arc::clone(&self.d.routes),
                rng: self.seeds.rng(),
                memo: RouteMemo::default(),
            },
        }
    }
}

impl fmt::Debug for Picker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Picker")
            .field("strategy", &self.d.strategy)
            .field("health_filter", &self.d.health_filter)
            .finish_non_exhaustive()
    }
}

/// The pipeline. Returns the entry index and whether the health filter was bypassed, or
/// the time until the first candidate can take a request again (leaves its cooldown, or
/// its minute turns).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(crate) fn select<R: rand::Rng + ?Sized, F: FnMut() -> u64>(
    snap: &HealthSnapshot,
    route: &Route,
    fresh_until: u64,
    strategy: RoutingStrategy,
    health_filter: bool,
    settings: &PickSettings,
    rng: &mut R,
    now: &mut LazyNow<F>,
    ask: Ask<'_>,
) -> Result<(u32, bool), Duration> {
    let recomputed: Candidates;
    let mut bypassed = false;
    let cands: &Candidates = if !health_filter || route.unhealthy == 0 {
        &route.all
    } else {
        // A watched snapshot is republished when a result goes stale: trust its lists.
        let healthy = if snap.watched || now.get() <= fresh_until {
            &route.healthy
        } else {
            recomputed = fresh_candidates(snap, route, now.get());
            &recomputed
        };
        if panics(
            settings.panic_threshold,
            healthy.idx.len(),
            route.all.idx.len(),
        ) {
            bypassed = true;
            warn_bypass(snap, route);
            &route.all
        } else {
            healthy
        }
    };
    let usage = balance::counts_usage(strategy);
    let t = if balance::needs_time(strategy) && (!usage || ask.minute.is_none()) {
        now.get()
    } else {
        now.peek().unwrap_or(0)
    };
    // Only the usage-based strategies read the minute (their limits, their counts).
    let minute = match ask.minute {
        _ if !usage => 0,
        Some(m) if now.peek().is_none() => m,
        _ => minute_of(t),
    };
    let ctx = Ctx {
        next: &route.state.next,
        now: t,
        minute,
        tau_nanos: settings.tau_nanos,
        buffer: settings.buffer,
    };
    let entries = &snap.entries;
    if !usage && settings.slow_start == 0 && ask.exclude.is_empty() {
        // The usual decision: no usage counting (no limit can be lost to a race), no slow
        // start, nothing excluded: one pick (or the fallback past the health filter),
        // with the same eligibility as the loop below but none of its bookkeeping.
        let mut eligible =
            |i: u32| available(&entries[i as usize], false, ctx.minute, ask.tokens, now);
        let picked = pick_or_bypass(
            snap,
            route,
            cands,
            bypassed,
            strategy,
            settings,
            &ctx,
            rng,
            &mut eligible,
        );
        return match picked {
            Some(p) => Ok(p),
            None => refuse(
                snap,
                route,
                fresh_until,
                strategy,
                health_filter,
                settings,
                rng,
                now,
                ask,
                minute,
            ),
        };
    }
    // Deployments whose rpm was reached between the eligibility check and the count.
    let mut lost: [u32; 4] = [u32::MAX; 4];
    // Slow start: a deployment back in rotation is declined with probability 1 - its
    // factor each time it is drawn (so it serves about its ramped share); a decision that
    // declined one and found nothing else runs again without slow start, never refusing.
    let mut salt: u64 = if settings.slow_start > 0 {
        rng.random()
    } else {
        0
    };
    let mut ramp = settings.slow_start;
    let mut declined = false;
    let mut lost_n = 0;
    while lost_n <= lost.len() {
        let mut eligible = |i: u32| {
            if ask.exclude.contains(&i) || lost[..lost_n].contains(&i) {
                return false;
            }
            let e = &entries[i as usize];
            let ok = available(e, usage, ctx.minute, ask.tokens, now);
            if !ok || ramp == 0 {
                return ok;
            }
            let f = e.stats.slow_start_factor(ramp, now);
            if f >= 1.0 {
                return true;
            }
            salt = crate::ejection::mix(salt);
            let keep = (salt >> 11) as f64 / (1u64 << 53) as f64 <= f;
            declined |= !keep;
            keep
        };
        let picked = pick_or_bypass(
            snap,
            route,
            cands,
            bypassed,
            strategy,
            settings,
            &ctx,
            rng,
            &mut eligible,
        );
        let Some((i, bypassed)) = picked else {
            if std::mem::take(&mut declined) {
                ramp = 0;
                continue;
            }
            break;
        };
        if !usage
            || entries[i as usize]
                .stats
                .try_count_request(minute, entries[i as usize].limits.rpm())
        {
            return Ok((i, bypassed));
        }
        // Another request took its last slot this minute: pick again without it.
        if lost_n == lost.len() {
            break;
        }
        lost[lost_n] = i;
        lost_n += 1;
    }
    refuse(
        snap,
        route,
        fresh_until,
        strategy,
        health_filter,
        settings,
        rng,
        now,
        ask,
        minute,
    )
}

/// A pick from `cands` (`bypassed`: the health filter was skipped to get them); if
/// nothing there is eligible and `cands` passed the health filter, a pick from the whole
/// route (with LiteLLM's all-or-nothing bypass, not with a panic threshold).
///
/// Inlined, with `simple-shuffle` (the default) dispatched statically: the usual decision
/// draws and checks its pick within [`select`], without a call per step.
#[allow(clippy::too_many_arguments)]
#[inline]
fn pick_or_bypass<R: rand::Rng + ?Sized, E: FnMut(u32) -> bool>(
    snap: &HealthSnapshot,
    route: &Route,
    cands: &Candidates,
    bypassed: bool,
    strategy: RoutingStrategy,
    settings: &PickSettings,
    ctx: &Ctx<'_>,
    rng: &mut R,
    eligible: &mut E,
) -> Option<(u32, bool)> {
    let picked = if strategy == RoutingStrategy::SimpleShuffle {
        balance::shuffle::pick(view(cands), rng, eligible)
    } else {
        balance::pick(strategy, view(cands), &snap.entries, ctx, rng, eligible)
    };
    match picked {
        Some(i) => Some((i, bypassed)),
        None => bypass(snap, route, cands, strategy, settings, ctx, rng, eligible),
    }
}

/// [`pick_or_bypass`] when nothing in `cands` was eligible: a pick from the whole route
/// if `cands` passed the health filter (and no panic threshold is set).
#[allow(clippy::too_many_arguments)]
#[inline(never)]
fn bypass<R: rand::Rng + ?Sized>(
    snap: &HealthSnapshot,
    route: &Route,
    cands: &Candidates,
    strategy: RoutingStrategy,
    settings: &PickSettings,
    ctx: &Ctx<'_>,
    rng: &mut R,
    eligible: &mut dyn FnMut(u32) -> bool,
) -> Option<(u32, bool)> {
    if settings.panic_threshold.is_some() || std::ptr::eq(cands, &route.all) {
        return None;
    }
    // Every deployment that passed the health filter is cooling down (or excluded,
    // or at a limit). One that failed its check may still serve: bypass the filter
    // rather than refuse a request that could be served. Cooldown still applies.
    let picked = balance::pick(
        strategy,
        view(&route.all),
        &snap.entries,
        ctx,
        rng,
        eligible,
    )
    .map(|i| (i, true));
    if picked.is_some() {
        warn_bypass(snap, route);
    }
    picked
}

/// What [`select`] answers when no candidate could take the request in the usage
/// `minute` it decided in: a decision again in the clock's minute if that one lagged
/// (usage-based), else the time until the first one can (leaves its cooldown, or its
/// minute turns).
#[allow(clippy::too_many_arguments)]
fn refuse<R: rand::Rng + ?Sized, F: FnMut() -> u64>(
    snap: &HealthSnapshot,
    route: &Route,
    fresh_until: u64,
    strategy: RoutingStrategy,
    health_filter: bool,
    settings: &PickSettings,
    rng: &mut R,
    now: &mut LazyNow<F>,
    ask: Ask<'_>,
    minute: u64,
) -> Result<(u32, bool), Duration> {
    let usage = balance::counts_usage(strategy);
    let entries = &snap.entries;
    let t = now.get();
    if usage && minute != minute_of(t) {
        // The kept minute lagged the clock's (its timer had not fired yet): decide again
        // in the clock's minute before refusing anyone.
        let ask = Ask {
            minute: None,
            ..ask
        };
        return select(
            snap,
            route,
            fresh_until,
            strategy,
            health_filter,
            settings,
            rng,
            now,
            ask,
        );
    }
    let wait = route
        .all
        .idx
        .iter()
        .filter(|i| !ask.exclude.contains(i))
        .filter_map(|&i| {
            let e = &entries[i as usize];
            // Out until the later of its cooldown and its ejection.
            let cool = e
                .stats
                .cooldown
                .remaining(t)
                .max(e.stats.ejection.remaining(t));
            if !fits(e, ask.tokens) {
                return None; // its window will not grow
            }
            let limited = usage && !within_usage(e, minute_of(t));
            match (cool, limited) {
                (c, true) => Some(c.unwrap_or_default().max(until_next_minute(t))),
                (c, false) => c,
            }
        })
        .min();
    Err(wait.unwrap_or(Duration::ZERO))
}

/// Whether the health filter is skipped with `healthy` of `all` passing it: below the panic
/// threshold when one is set, else (LiteLLM) only when none passes.
fn panics(threshold: Option<f64>, healthy: usize, all: usize) -> bool {
    match threshold {
        None => healthy == 0,
        Some(pct) => (healthy as f64) * 100.0 < pct * all as f64,
    }
}

fn view(c: &Candidates) -> View<'_> {
    View {
        idx: &c.idx,
        cum: c.cum.as_deref(),
        tiers: c.tiers.as_ref(),
    }
}

/// Whether `e` may take this request: within its limits ([`within_limits`]) and neither
/// cooling down nor ejected at `now`.
#[inline]
fn available<F: FnMut() -> u64>(
    e: &Entry,
    usage: bool,
    minute: u64,
    tokens: Option<u32>,
    now: &mut crate::time::LazyNow<F>,
) -> bool {
    within_limits(e, usage, minute, tokens)
        && e.stats.cooldown.is_available(now)
        && e.stats.ejection.is_available(now)
}

/// `max_parallel_requests`, `rpm`/`tpm` (when `usage`), and the context window.
#[inline]
fn within_limits(e: &Entry, usage: bool, minute: u64, tokens: Option<u32>) -> bool {
    if e.limits
        .max_parallel()
        .is_some_and(|m| e.stats.in_flight() >= m)
    {
        return false;
    }
    if usage && !within_usage(e, minute) {
        return false;
    }
    fits(e, tokens)
}

/// Below its `rpm` and `tpm` this minute.
fn within_usage(e: &Entry, minute: u64) -> bool {
    let l = &e.limits;
    l.rpm().is_none_or(|l| e.stats.requests_in(minute) < l)
        && l.tpm().is_none_or(|l| e.stats.tokens_in(minute) < l)
}

/// The request's estimated tokens fit the deployment's `max_input_tokens`.
fn fits(e: &Entry, tokens: Option<u32>) -> bool {
    match (tokens, e.limits.max_input_tokens()) {
        (Some(t), Some(max)) => t <= max,
        _ => true,
    }
}

/// The route's members minus those with a failed result that is still fresh at `now`.
fn fresh_candidates(snap: &HealthSnapshot, route: &Route, now: u64) -> Candidates {
    let idx: Box<[u32]> = route
        .all
        .idx
        .iter()
        .copied()
        .filter(|&i| !snap.checked[i as usize].failed_fresh(now, snap.staleness_nanos))
        .collect();
    Candidates::new(idx, &snap.entries, route.weight_kind)
}

/// Warns once per route and snapshot; later bypasses of the same snapshot log at debug.
fn warn_bypass(snap: &HealthSnapshot, route: &Route) {
    let v = snap.version();
    if route.state.bypass_warned.load(Relaxed) != v
        && route.state.bypass_warned.swap(v, Relaxed) != v
    {
        tracing::warn!(route = %route.name, "All deployments marked unhealthy by health checks, bypassing health filter");
    } else {
        tracing::debug!(route = %route.name, "bypassing health filter (all deployments unhealthy)");
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::time::{Instant, advance};

    use super::{PickError, Picker};
    use crate::{
        Config, Deployment, DeploymentId, HealthState, config::RoutingStrategy,
        health::HealthRecord,
    };

    fn usage_state(rpm: u64) -> HealthState {
        let d = Deployment::builder("r", "openai/m")
            .id("d0")
            .rpm(rpm)
            .build();
        HealthState::new(
            Config::builder()
                .deployments([d])
                .routing_strategy(RoutingStrategy::UsageBasedV2)
                .build()
                .unwrap(),
        )
    }

    /// Publishes a result, which starts the watchdog, and lets it run once.
    async fn watch(state: &HealthState) {
        state.record([(
            DeploymentId::new("d0"),
            HealthRecord::healthy(Instant::now()),
        )]);
        tokio::task::yield_now().await;
    }

    #[test]
    fn the_watchdog_keeps_the_minute_while_its_runtime_runs() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        let state = usage_state(10);
        rt.block_on(async {
            assert_eq!(state.minute(), None, "not kept before anyone asks");
            let _picker = Picker::new(state.clone());
            watch(&state).await;
            assert_eq!(state.minute(), Some(0));
            advance(Duration::from_secs(61)).await;
            tokio::task::yield_now().await;
            assert_eq!(state.minute(), Some(1), "the minute turned");
        });
        drop(rt);
        assert_eq!(
            state.minute(),
            None,
            "no runtime, no kept minute: read the clock"
        );
    }

    #[test]
    fn the_remembered_route_follows_a_new_deployment_list_and_new_verdicts() {
        let d = |id: &str| Deployment::builder("r", "openai/m").id(id).build();
        let state = HealthState::new(
            Config::builder()
                .deployments([d("a"), d("b")])
                .enable_health_check_routing(true)
                .model_group_alias("alias", "r")
                .build()
                .unwrap(),
        );
        let mut picker = Picker::new(state.clone()).with_seed(3);
        let picked = |picker: &mut Picker, route: &str| {
            picker
                .pick(&state.load(), route, &[])
                .map(|p| p.deployment().id().as_str().to_owned())
        };
        assert!(picked(&mut picker, "r").is_ok());
        // New verdicts: `a` failed its check, so the route's lists (and its table) change.
        state.record([(
            DeploymentId::new("a"),
            HealthRecord::unhealthy(Instant::now(), "status 500", Some(500)),
        )]);
        for _ in 0..20 {
            assert_eq!(picked(&mut picker, "r").unwrap(), "b");
            assert_eq!(picked(&mut picker, "alias").unwrap(), "b");
        }
        // A new deployment list: only `c` serves the route now.
        state.set_deployments(&[d("c")]);
        for _ in 0..5 {
            assert_eq!(picked(&mut picker, "r").unwrap(), "c");
            assert_eq!(picked(&mut picker, "alias").unwrap(), "c");
        }
        assert!(matches!(
            picked(&mut picker, "other"),
            Err(PickError::UnknownRoute(_))
        ));
        assert_eq!(picked(&mut picker, "r").unwrap(), "c");
    }

    #[test]
    fn pick_current_decides_on_each_newly_published_snapshot() {
        let d = |id: &str| Deployment::builder("r", "openai/m").id(id).build();
        let state = HealthState::new(
            Config::builder()
                .deployments([d("a"), d("b")])
                .enable_health_check_routing(true)
                .build()
                .unwrap(),
        );
        let mut picker = Picker::new(state.clone()).with_seed(5);
        let current = |picker: &mut Picker| {
            picker
                .pick_current("r", &[])
                .map(|p| p.deployment().id().as_str().to_owned())
                .unwrap()
        };
        let _ = current(&mut picker);
        for (bad, good) in [("a", "b"), ("b", "a")] {
            let now = Instant::now();
            state.record([
                (
                    DeploymentId::new(bad),
                    HealthRecord::unhealthy(now, "status 500", Some(500)),
                ),
                (DeploymentId::new(good), HealthRecord::healthy(now)),
            ]);
            for _ in 0..20 {
                assert_eq!(current(&mut picker), good);
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_lagging_kept_minute_never_refuses_what_the_clock_s_minute_has_room_for() {
        let state = usage_state(1);
        let mut picker = Picker::new(state.clone());
        watch(&state).await;
        assert!(picker.pick(&state.load(), "r", &[]).is_ok());
        assert!(matches!(
            picker.pick(&state.load(), "r", &[]),
            Err(PickError::NoDeploymentAvailable(_))
        ));
        // The next minute, before the watchdog's timer has turned the kept minute.
        advance(Duration::from_secs(60)).await;
        state.shared.minute.set(0);
        assert!(
            picker.pick(&state.load(), "r", &[]).is_ok(),
            "the clock's minute has room"
        );
        // That request counted in the clock's minute, which the lagging one cannot undo.
        match picker.pick(&state.load(), "r", &[]) {
            Err(PickError::NoDeploymentAvailable(e)) => {
                assert_eq!(e.retry_after(), Duration::from_secs(60));
            }
            other => panic!("expected a refusal until the next minute, got {other:?}"),
        }
    }
}
