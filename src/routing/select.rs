//! The routing decision as a pure, synchronous pipeline over one snapshot:
//!
//! 1. the route's deployments;
//! 2. health filter (when routing on health is enabled): drop those whose last check
//!    failed, unless that result is stale; if that would drop all of them, skip the filter
//!    for this request (never a total outage) and warn once per snapshot;
//! 3. cooldown (and already-tried) filter; if every deployment that passed the health
//!    filter is cooling down, the filter is bypassed after all (one that failed its check
//!    may still serve, and a request that can be served is never refused);
//! 4. the balancing strategy.
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
    balance::{self, View},
    config::RoutingStrategy,
    deployment::{Deployment, DeploymentId},
    error::{NoDeploymentAvailable, UnknownRoute},
    health::{Candidates, Entry, HealthSnapshot, HealthState, Route},
    time::{LazyNow, nanos_since},
};

/// Why no deployment was picked.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PickError {
    /// No deployment serves the route.
    UnknownRoute(UnknownRoute),
    /// Every candidate is cooling down or was excluded.
    NoDeploymentAvailable(NoDeploymentAvailable),
}

impl fmt::Display for PickError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownRoute(e) => e.fmt(f),
            Self::NoDeploymentAvailable(e) => e.fmt(f),
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
    strategy: RoutingStrategy,
    health_filter: bool,
    seeds: Arc<SeedSource>,
    rng: SmallRng,
}

impl Picker {
    /// A picker using the state's config: its routing strategy, and the health filter when
    /// `enable_health_check_routing` is on.
    pub fn new(state: HealthState) -> Self {
        let cfg = state.config();
        let (strategy, health_filter) = (cfg.router.routing_strategy, cfg.health.routing_enabled);
        let seeds = SeedSource::new(None);
        let rng = seeds.rng();
        Self {
            state,
            strategy,
            health_filter,
            seeds,
            rng,
        }
    }

    /// Makes every random choice from `seed` (this picker and its clones), for reproducible tests.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seeds = SeedSource::new(Some(seed));
        self.rng = self.seeds.rng();
        self
    }

    /// Uses `strategy` instead of the config's.
    pub fn with_strategy(mut self, strategy: RoutingStrategy) -> Self {
        self.strategy = strategy;
        self
    }

    /// Turns the health filter on or off, whatever the config says.
    pub fn with_health_filter(mut self, on: bool) -> Self {
        self.health_filter = on;
        self
    }

    /// The state it reads.
    pub fn state(&self) -> &HealthState {
        &self.state
    }

    /// Picks a deployment of `route` from `snap`, skipping the ids in `exclude`.
    pub fn pick<'s>(
        &mut self,
        snap: &'s HealthSnapshot,
        route: &str,
        exclude: &[DeploymentId],
    ) -> Result<Pick<'s>, PickError> {
        let Some(r) = snap.routes.get(route) else {
            crate::telemetry::record_unknown_route();
            return Err(PickError::UnknownRoute(UnknownRoute {
                route: route.into(),
            }));
        };
        let excluded: Vec<u32> = exclude
            .iter()
            .filter_map(|id| snap.index_of(id.as_str()))
            .collect();
        let epoch = snap.epoch;
        let mut now = LazyNow::new(|| nanos_since(epoch, tokio::time::Instant::now()));
        match select(
            snap,
            r,
            self.strategy,
            self.health_filter,
            &mut self.rng,
            &mut now,
            &excluded,
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
            strategy: self.strategy,
            health_filter: self.health_filter,
            seeds: Arc::clone(&self.seeds),
            rng: self.seeds.rng(),
        }
    }
}

impl fmt::Debug for Picker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Picker")
            .field("strategy", &self.strategy)
            .field("health_filter", &self.health_filter)
            .finish_non_exhaustive()
    }
}

/// The pipeline. Returns the entry index and whether the health filter was bypassed, or
/// the time until the first candidate leaves its cooldown.
pub(crate) fn select<R: rand::Rng + ?Sized, F: FnMut() -> u64>(
    snap: &HealthSnapshot,
    route: &Route,
    strategy: RoutingStrategy,
    health_filter: bool,
    rng: &mut R,
    now: &mut LazyNow<F>,
    exclude: &[u32],
) -> Result<(u32, bool), Duration> {
    let recomputed: Candidates;
    let mut bypassed = false;
    let cands: &Candidates = if !health_filter || route.unhealthy == 0 {
        &route.all
    } else {
        // A watched snapshot is republished when a result goes stale: trust its lists.
        let healthy = if snap.watched || now.get() <= route.fresh_until {
            &route.healthy
        } else {
            recomputed = fresh_candidates(snap, route, now.get());
            &recomputed
        };
        if healthy.idx.is_empty() {
            bypassed = true;
            warn_bypass(snap, route);
            &route.all
        } else {
            healthy
        }
    };
    let view = View {
        idx: &cands.idx,
        cum: cands.cum.as_deref(),
    };
    let entries = &snap.entries;
    let mut eligible = |i: u32| {
        if exclude.contains(&i) {
            return false;
        }
        entries[i as usize].stats.cooldown.is_available(now)
    };
    if let Some(i) = balance::pick(
        strategy,
        view,
        entries,
        &route.state.next,
        rng,
        &mut eligible,
    ) {
        return Ok((i, bypassed));
    }
    // Every deployment that passed the health filter is cooling down (or excluded). One
    // that failed its check may still serve: bypass the filter rather than refuse a
    // request that could be served. Cooldown still applies.
    let filtered = !std::ptr::eq(cands, &route.all);
    if filtered {
        let all = View {
            idx: &route.all.idx,
            cum: route.all.cum.as_deref(),
        };
        if let Some(i) = balance::pick(
            strategy,
            all,
            entries,
            &route.state.next,
            rng,
            &mut eligible,
        ) {
            warn_bypass(snap, route);
            return Ok((i, true));
        }
    }
    let t = now.get();
    let wait = route
        .all
        .idx
        .iter()
        .filter(|i| !exclude.contains(i))
        .filter_map(|&i| entries[i as usize].stats.cooldown.remaining(t))
        .min();
    Err(wait.unwrap_or(Duration::ZERO))
}

/// The route's members minus those with a failed result that is still fresh at `now`.
fn fresh_candidates(snap: &HealthSnapshot, route: &Route, now: u64) -> Candidates {
    let idx: Box<[u32]> = route
        .all
        .idx
        .iter()
        .copied()
        .filter(|&i| !snap.entries[i as usize].failed_fresh(now, snap.staleness_nanos))
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
