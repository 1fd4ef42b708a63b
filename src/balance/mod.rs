//! Load-balancing strategies: pick one deployment among the candidates that survived the
//! health filter, skipping the ones that are not eligible (cooling down, or already tried).
//!
//! | strategy | picks | cost per decision |
//! |---|---|---|
//! | `simple-shuffle` | weighted random (`weight`, else `rpm`, else `tpm`, else uniform) | O(log n): samples, then checks eligibility |
//! | `round-robin` | the next one in turn | O(1) unless many are ineligible |
//! | `least-busy` | the fewest requests in flight | O(n) scan |
//! | `latency-based-routing` | the lowest decaying latency estimate (random within `lowest_latency_buffer`); unmeasured ones first | O(n) scan |
//! | `power-of-two-choices` | the less loaded of two random ones | O(1) |
//! | `usage-based-routing(-v2)` | the least used this minute (tokens, then requests); exact up to 4 candidates, the less used of two random ones above (a scan when both are at their limit) | O(1) |
//! | `cost-based-routing` | the lowest `input_cost_per_token + output_cost_per_token`, ties at random | O(1): samples the cheapest tier of an order kept per snapshot |
//!
//! The random strategies *sample* rather than scan: a pick is drawn from the precomputed
//! candidate list and checked; only after several ineligible draws do they fall back to a
//! scan of the eligible ones. Rejection sampling keeps the distribution exact (a draw is
//! a draw from the eligible set) while keeping the common case flat in route size.
//!
//! Randomness comes from a per-service [`SmallRng`](rand::rngs::SmallRng), seedable for
//! tests (see [`HealthRoutingLayer::with_seed`](crate::HealthRoutingLayer::with_seed)).

mod cost;
mod latency;
mod least_busy;
mod p2c;
mod round_robin;
pub(crate) mod shuffle;
mod usage;

use std::sync::atomic::AtomicUsize;

pub(crate) use cost::CostTiers;

use rand::Rng;

use crate::{config::RoutingStrategy, health::Entry};

/// How many random draws a sampling strategy makes before it scans.
const SAMPLE_TRIES: usize = 4;

/// A candidate list: entry indices and, when weighted, cumulative weights.
#[derive(Clone, Copy, Debug)]
pub(crate) struct View<'a> {
    pub(crate) idx: &'a [u32],
    pub(crate) cum: Option<&'a [f64]>,
    /// The list by cost, when precomputed (see [`CostTiers`]).
    pub(crate) tiers: Option<&'a CostTiers>,
}

impl View<'_> {
    /// The weight of position `i` (1 when uniform).
    fn weight(&self, i: usize) -> f64 {
        match self.cum {
            None => 1.0,
            Some(c) => c[i] - if i == 0 { 0.0 } else { c[i - 1] },
        }
    }
}

/// What a strategy may read besides the candidates: the route's round-robin cursor, the
/// time of the decision, and the latency knobs.
#[derive(Debug)]
pub(crate) struct Ctx<'a> {
    /// The route's round-robin cursor.
    pub(crate) next: &'a AtomicUsize,
    /// Nanoseconds since the state's epoch (read only for strategies that need it).
    pub(crate) now: u64,
    /// The usage minute of `now`.
    pub(crate) minute: u64,
    /// The latency estimate's time constant, in nanoseconds.
    pub(crate) tau_nanos: f64,
    /// `lowest_latency_buffer`.
    pub(crate) buffer: f64,
}

/// Whether `strategy` reads the clock for its decision.
pub(crate) fn needs_time(strategy: RoutingStrategy) -> bool {
    matches!(
        strategy,
        RoutingStrategy::LatencyBased | RoutingStrategy::UsageBased | RoutingStrategy::UsageBasedV2
    )
}

/// Whether `strategy` counts requests per minute and honours `rpm`/`tpm` limits.
pub(crate) fn counts_usage(strategy: RoutingStrategy) -> bool {
    matches!(
        strategy,
        RoutingStrategy::UsageBased | RoutingStrategy::UsageBasedV2
    )
}

/// Picks one eligible entry of `view`, or `None` when none is eligible.
pub(crate) fn pick<R: Rng + ?Sized>(
    strategy: RoutingStrategy,
    view: View<'_>,
    entries: &[Entry],
    ctx: &Ctx<'_>,
    rng: &mut R,
    eligible: &mut dyn FnMut(u32) -> bool,
) -> Option<u32> {
    if view.idx.is_empty() {
        return None;
    }
    match strategy {
        RoutingStrategy::SimpleShuffle => shuffle::pick(view, rng, eligible),
        RoutingStrategy::RoundRobin => round_robin::pick(view, ctx.next, eligible),
        RoutingStrategy::LeastBusy => least_busy::pick(view, entries, rng, eligible),
        RoutingStrategy::LatencyBased => latency::pick(view, entries, ctx, rng, eligible),
        RoutingStrategy::PowerOfTwoChoices => p2c::pick(view, entries, rng, eligible),
        RoutingStrategy::UsageBased | RoutingStrategy::UsageBasedV2 => {
            usage::pick(view, entries, ctx.minute, rng, eligible)
        }
        RoutingStrategy::CostBased => cost::pick(view, entries, rng, eligible),
    }
}

/// Scans every eligible entry, keeping one with the lowest `key`; ties are broken
/// uniformly at random (reservoir sampling over the tied ones).
fn scan_min_uniform<R: Rng + ?Sized, K: PartialOrd + Copy>(
    view: View<'_>,
    rng: &mut R,
    eligible: &mut dyn FnMut(u32) -> bool,
    key: impl Fn(u32) -> K,
) -> Option<u32> {
    let mut best: Option<(u32, K)> = None;
    let mut ties = 0u32;
    for &i in view.idx {
        if !eligible(i) {
            continue;
        }
        let k = key(i);
        match best {
            Some((_, b)) if k > b => {}
            Some((_, b)) if k == b => {
                ties += 1;
                if rng.random_range(0..ties) == 0 {
                    best = Some((i, k));
                }
            }
            _ => {
                best = Some((i, k));
                ties = 1;
            }
        }
    }
    best.map(|(i, _)| i)
}

/// Scans from a random start, keeping the eligible entry with the lowest `key`.
fn scan_min<R: Rng + ?Sized, K: PartialOrd>(
    view: View<'_>,
    rng: &mut R,
    eligible: &mut dyn FnMut(u32) -> bool,
    key: impl Fn(u32) -> K,
) -> Option<u32> {
    let n = view.idx.len();
    let start = rng.random_range(0..n);
    let mut best: Option<(u32, K)> = None;
    for k in 0..n {
        let i = view.idx[(start + k) % n];
        if !eligible(i) {
            continue;
        }
        let key = key(i);
        if best.as_ref().is_none_or(|(_, b)| key < *b) {
            best = Some((i, key));
        }
    }
    best.map(|(i, _)| i)
}
