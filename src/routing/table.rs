//! The routing table: what the balancer derives from one [`HealthSnapshot`] (each route's
//! candidate lists, their cumulative weights and cost order) and the per-route state that
//! outlives snapshots (round-robin cursor, bypass-warning dedupe, route metrics).
//!
//! `health` knows nothing of it: the table is built by a deriver this module installs on
//! the [`HealthState`] (called whenever a snapshot is published) and kept in the
//! snapshot's opaque slot, so a request still does one `ArcSwap` load and reads its
//! table from the snapshot it loaded. A snapshot published before the deriver was
//! installed gets its table on first use.

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed},
    },
};

use arc_swap::ArcSwap;
use foldhash::fast::RandomState;

use crate::{
    balance::CostTiers,
    config::RoutingStrategy,
    deployment::Deployment,
    health::{Entry, HealthSnapshot, HealthState},
};

/// How `simple-shuffle` weighs a route's deployments (LiteLLM's order: `weight`, `rpm`, `tpm`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WeightKind {
    Uniform,
    Weight,
    Rpm,
    Tpm,
}

impl WeightKind {
    fn for_members(entries: &[Entry], members: &[u32]) -> Self {
        let ps = || {
            members
                .iter()
                .map(|&i| entries[i as usize].deployment.params())
        };
        if ps().any(|p| p.weight.is_some()) {
            Self::Weight
        } else if ps().any(|p| p.rpm.is_some()) {
            Self::Rpm
        } else if ps().any(|p| p.tpm.is_some()) {
            Self::Tpm
        } else {
            Self::Uniform
        }
    }

    pub(crate) fn weight(self, d: &Deployment) -> f64 {
        let p = d.params();
        match self {
            Self::Uniform => 1.0,
            Self::Weight => p.weight.unwrap_or(0.0),
            Self::Rpm => p.rpm.unwrap_or(0) as f64,
            Self::Tpm => p.tpm.unwrap_or(0) as f64,
        }
    }
}

/// A candidate list and, when weighted, its cumulative weights (for O(log n) sampling).
#[derive(Debug, Default)]
pub(crate) struct Candidates {
    pub(crate) idx: Box<[u32]>,
    /// `None`: uniform. Else `cum[i]` = sum of weights of `idx[..=i]`, last > 0.
    pub(crate) cum: Option<Box<[f64]>>,
    /// The list by cost, for `cost-based-routing`; `None` for a list made for one
    /// decision (scanned instead).
    pub(crate) tiers: Option<CostTiers>,
}

impl Candidates {
    /// A list for one decision only: no cost order.
    pub(crate) fn new(idx: Box<[u32]>, entries: &[Entry], kind: WeightKind) -> Self {
        let cum = match kind {
            WeightKind::Uniform => None,
            kind => {
                let mut acc = 0.0;
                let cum: Box<[f64]> = idx
                    .iter()
                    .map(|&i| {
                        acc += kind.weight(&entries[i as usize].deployment);
                        acc
                    })
                    .collect();
                // All-zero weights: fall back to uniform, as LiteLLM does.
                (acc > 0.0).then_some(cum)
            }
        };
        Self {
            idx,
            cum,
            tiers: None,
        }
    }

    /// A list of the table: with its cost order, computed once per snapshot.
    fn ordered(idx: Box<[u32]>, entries: &[Entry], kind: WeightKind) -> Self {
        let mut c = Self::new(idx, entries, kind);
        c.tiers = Some(CostTiers::new(&c.idx, entries));
        c
    }
}

/// Mutable per-route state that outlives snapshots (round-robin position, warnings).
/// Aligned to 128 bytes: the round-robin cursor, written by every round-robin decision,
/// shares its cache lines with no other route's (false sharing).
#[derive(Debug)]
#[repr(align(128))]
pub(crate) struct RouteState {
    pub(crate) next: AtomicUsize,
    /// The snapshot version for which the bypass warning was last logged.
    pub(crate) bypass_warned: AtomicU64,
    /// The route's counters, keys built once (see `telemetry`).
    pub(crate) metrics: crate::telemetry::RouteMetrics,
}

impl RouteState {
    fn new(name: &Arc<str>) -> Self {
        Self {
            next: Default::default(),
            bypass_warned: Default::default(),
            metrics: crate::telemetry::RouteMetrics::new(name),
        }
    }
}

/// One route of the table.
#[derive(Debug)]
pub(crate) struct Route {
    pub(crate) name: Arc<str>,
    /// The routable members (all but the unroutable unsupported ones).
    pub(crate) all: Candidates,
    /// Set when every member is unroutable: why, naming each provider's reason.
    pub(crate) unsupported: Option<Arc<str>>,
    /// `all` minus the members whose last check failed and was fresh at publication.
    pub(crate) healthy: Candidates,
    pub(crate) weight_kind: WeightKind,
    /// Members whose last check failed and was fresh at publication.
    pub(crate) unhealthy: u32,
    /// Earliest instant (nanos since epoch) at which a failed result goes stale;
    /// `u64::MAX` when none failed. Before it, `healthy` is exact.
    pub(crate) fresh_until: u64,
    pub(crate) state: Arc<RouteState>,
}

/// Every route of one snapshot, as the balancer sees it.
#[derive(Debug)]
pub(crate) struct RoutingTable {
    pub(crate) routes: HashMap<Arc<str>, Route, RandomState>,
}

/// The per-route state of one [`HealthState`], by route name, shared by every table
/// derived from its snapshots (hung off the state's hooks).
#[derive(Debug, Default)]
pub(crate) struct RouteStates {
    by_name: ArcSwap<HashMap<Arc<str>, Arc<RouteState>, RandomState>>,
    /// Whether some picker of the state uses `latency-based-routing` (so responses are
    /// timed for it).
    latency: AtomicBool,
}

impl RouteStates {
    /// Notes a picker's strategy.
    pub(crate) fn note_strategy(&self, strategy: RoutingStrategy) {
        if strategy == RoutingStrategy::LatencyBased {
            self.latency.store(true, Relaxed);
        }
    }

    /// Whether some picker uses `latency-based-routing`.
    pub(crate) fn wants_latency(&self) -> bool {
        self.latency.load(Relaxed)
    }

    /// The state of each of `names`, created for the ones not seen yet.
    fn for_routes<'n>(
        &self,
        names: impl Iterator<Item = &'n Arc<str>> + Clone,
    ) -> Arc<HashMap<Arc<str>, Arc<RouteState>, RandomState>> {
        let cur = self.by_name.load_full();
        if names.clone().all(|n| cur.contains_key(n)) {
            return cur;
        }
        self.by_name.rcu(|cur| {
            let mut next = HashMap::clone(cur);
            for n in names.clone() {
                next.entry(Arc::clone(n))
                    .or_insert_with(|| Arc::new(RouteState::new(n)));
            }
            next
        });
        self.by_name.load_full()
    }
}

/// Installs the table's deriver on `state` (once per state) and returns its route states.
pub(crate) fn install(state: &HealthState) -> Arc<RouteStates> {
    let states = state.hooks().get_or_init(RouteStates::default);
    let for_deriver = Arc::clone(&states);
    state.set_deriver(Box::new(move |snap| Box::new(build(snap, &for_deriver))));
    states
}

/// The table of `snap`: the one derived at publication, else built now (once).
pub(crate) fn get<'s>(snap: &'s HealthSnapshot, states: &RouteStates) -> &'s RoutingTable {
    let slot = snap.slot().get_or_init(|| Box::new(build(snap, states)));
    match slot.downcast_ref::<RoutingTable>() {
        Some(t) => t,
        // Only this module fills the slot, always with a `RoutingTable`.
        None => unreachable!("a snapshot's slot holds its routing table"),
    }
}

fn build(snap: &HealthSnapshot, states: &RouteStates) -> RoutingTable {
    let states = states.for_routes(snap.routes.keys());
    let routes = snap
        .routes
        .iter()
        .map(|(name, r)| {
            let state = states
                .get(name)
                .map_or_else(|| Arc::new(RouteState::new(name)), Arc::clone);
            let route = build_route(Arc::clone(name), &r.members, snap, state);
            (Arc::clone(name), route)
        })
        .collect();
    RoutingTable { routes }
}

fn build_route(
    name: Arc<str>,
    members: &[u32],
    snap: &HealthSnapshot,
    state: Arc<RouteState>,
) -> Route {
    let entries = &snap.entries;
    let (staleness_nanos, now) = (snap.staleness_nanos, snap.built_at);
    let all: Box<[u32]> = members
        .iter()
        .copied()
        .filter(|&i| entries[i as usize].routable())
        .collect();
    let unsupported = (all.is_empty() && !members.is_empty()).then(|| {
        let mut why: Vec<&str> = members
            .iter()
            .filter_map(|&i| entries[i as usize].unsupported.as_ref())
            .map(|u| &*u.reason)
            .collect();
        why.sort_unstable();
        why.dedup();
        Arc::from(format!(
            "no deployment of model `{name}` can be served by this gateway: {}",
            why.join("; ")
        ))
    });
    let weight_kind = WeightKind::for_members(entries, &all);
    let mut fresh_until = u64::MAX;
    let mut unhealthy = 0;
    let healthy: Box<[u32]> = all
        .iter()
        .copied()
        .filter(|&i| {
            let e = &entries[i as usize];
            if e.failed_fresh(now, staleness_nanos) {
                unhealthy += 1;
                fresh_until = fresh_until.min(e.checked_nanos.saturating_add(staleness_nanos));
                false
            } else {
                true
            }
        })
        .collect();
    Route {
        name,
        unsupported,
        healthy: Candidates::ordered(healthy, entries, weight_kind),
        all: Candidates::ordered(all, entries, weight_kind),
        weight_kind,
        unhealthy,
        fresh_until,
        state,
    }
}
