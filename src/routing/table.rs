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

/// One route of the table: what stays the same while its members' health does (shared
/// between the tables of successive snapshots when it did not change, see [`build`]).
/// Aligned to a cache line: the `Arc`'s counts, written when a new table shares it, sit on
/// a line of their own, not on the one a decision reads first.
#[derive(Debug)]
#[repr(align(64))]
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
    /// Its place in [`RoutingTable::fresh_until`].
    pos: usize,
    pub(crate) state: Arc<RouteState>,
}

/// Every route, by name.
type Routes = HashMap<Arc<str>, Arc<Route>, RandomState>;

/// Every route, by name and by place: shared by successive tables while no route changed.
/// Aligned to a cache line, so that the `Arc`'s counts (written by every publication that
/// shares it, and again when that snapshot is dropped) share no line with `by_pos`, which
/// every decision reads.
#[derive(Debug)]
#[repr(align(64))]
struct TableRoutes {
    by_name: Routes,
    /// The same routes by their `pos` (for [`RouteMemo`]).
    by_pos: Box<[Option<Arc<Route>>]>,
}

/// Every route of one snapshot, as the balancer sees it.
///
/// A publication that changes no route's lists (a probe round confirming what was known)
/// shares the previous table's routes, so decisions keep reading memory they have in cache
/// rather than a fresh copy; only the instants below are the snapshot's own. Aligned to a
/// cache line: it is new with every snapshot, and a decision reads it whole.
#[derive(Debug)]
#[repr(align(64))]
pub(crate) struct RoutingTable {
    routes: Arc<TableRoutes>,
    /// Per route (by its `pos`): the earliest instant (nanos since epoch) at which one of
    /// its failed results goes stale, `u64::MAX` when none failed. Before it, the route's
    /// `healthy` list is exact.
    fresh_until: Box<[u64]>,
}

impl RoutingTable {
    /// The route named `name` (decisions resolve it through a [`RouteMemo`]).
    #[cfg(test)]
    pub(crate) fn route(&self, name: &str) -> Option<&Route> {
        self.routes.by_name.get(name).map(|r| &**r)
    }

    /// Until when `route`'s `healthy` list is exact (0, i.e. never, for a route of
    /// another table).
    pub(crate) fn fresh_until(&self, route: &Route) -> u64 {
        self.fresh_until.get(route.pos).copied().unwrap_or(0)
    }
}

/// A picker's memo of the last route it resolved by name: its place in the table. A
/// decision for the same route checks that place's name (one string compare) instead of
/// the hash look-up; no reference is held, so the memo costs nothing to clone or fill,
/// and a table where the place holds another route (the deployment list changed) just
/// misses.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct RouteMemo(Option<usize>);

impl RouteMemo {
    /// The route `name` resolves to in `tbl` (through `aliases` when it is no route).
    #[inline(always)]
    pub(crate) fn resolve<'t>(
        &mut self,
        tbl: &'t RoutingTable,
        name: &str,
        aliases: &std::collections::HashMap<String, String>,
    ) -> Option<&'t Route> {
        if let Some(r) = self
            .0
            .and_then(|pos| tbl.routes.by_pos.get(pos))
            .and_then(Option::as_deref)
            .filter(|r| *r.name == *name)
        {
            return Some(r);
        }
        let by_name = &tbl.routes.by_name;
        let r = by_name
            .get(name)
            .or_else(|| aliases.get(name).and_then(|g| by_name.get(g.as_str())))?;
        // An alias resolves to a route of another name: not remembered.
        if *r.name == *name {
            self.0 = Some(r.pos);
        }
        Some(r)
    }
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
    state.set_deriver(Box::new(move |snap, prev| {
        Box::new(build(snap, prev, &for_deriver))
    }));
    states
}

/// The table of `snap`: the one derived at publication, else built now (once).
#[inline]
pub(crate) fn get<'s>(snap: &'s HealthSnapshot, states: &RouteStates) -> &'s RoutingTable {
    let slot = snap
        .slot()
        .get_or_init(|| Box::new(build(snap, None, states)));
    match slot.downcast_ref::<RoutingTable>() {
        Some(t) => t,
        // Only this module fills the slot, always with a `RoutingTable`.
        None => unreachable!("a snapshot's slot holds its routing table"),
    }
}

/// The table of `snap`, sharing the routes of `prev`'s table that did not change.
///
/// Sharing needs the same deployments at the same places (a publication of health results
/// or marks, or a republication of stale results; not a new deployment list, whose weights,
/// costs and members may differ). A route is then the same when its routable and healthy
/// lists are: everything else in it follows from those and the deployments.
fn build(
    snap: &HealthSnapshot,
    prev: Option<&HealthSnapshot>,
    states: &RouteStates,
) -> RoutingTable {
    let prev = prev
        .filter(|p| same_deployments(p, snap))
        .and_then(|p| p.slot().get())
        .and_then(|t| t.downcast_ref::<RoutingTable>());
    let lists: Vec<(&Arc<str>, Lists)> = snap
        .routes
        .iter()
        .map(|(name, r)| (name, Lists::new(&r.members, snap)))
        .collect();
    // Routes keep their places in `fresh_until` from the table they share routes with.
    let prev = prev.filter(|t| {
        let by_name = &t.routes.by_name;
        by_name.len() == lists.len() && lists.iter().all(|(n, _)| by_name.contains_key(&***n))
    });
    let reused = |name: &str, l: &Lists| {
        prev.and_then(|t| t.routes.by_name.get(name))
            .filter(|r| *r.all.idx == *l.all && *r.healthy.idx == *l.healthy)
    };
    let mut fresh_until = vec![0; prev.map_or(lists.len(), |t| t.fresh_until.len())];
    if let Some(t) = prev
        && lists.iter().all(|(name, l)| reused(name, l).is_some())
    {
        // Nothing changed but the instants: share every route.
        for (name, l) in &lists {
            if let Some(f) = t
                .routes
                .by_name
                .get(&***name)
                .and_then(|r| fresh_until.get_mut(r.pos))
            {
                *f = l.fresh_until;
            }
        }
        return RoutingTable {
            routes: Arc::clone(&t.routes),
            fresh_until: fresh_until.into_boxed_slice(),
        };
    }
    let states = states.for_routes(snap.routes.keys());
    let routes: Routes = lists
        .into_iter()
        .enumerate()
        .map(|(i, (name, l))| {
            let old = prev.and_then(|t| t.routes.by_name.get(&**name));
            let pos = old.map_or(i, |r| r.pos);
            if let Some(f) = fresh_until.get_mut(pos) {
                *f = l.fresh_until;
            }
            let route = match reused(name, &l) {
                Some(r) => Arc::clone(r),
                None => {
                    let state = states
                        .get(name)
                        .map_or_else(|| Arc::new(RouteState::new(name)), Arc::clone);
                    Arc::new(build_route(Arc::clone(name), l, snap, state, pos))
                }
            };
            (Arc::clone(name), route)
        })
        .collect();
    let mut by_pos: Vec<Option<Arc<Route>>> = vec![None; fresh_until.len()];
    for r in routes.values() {
        if let Some(slot) = by_pos.get_mut(r.pos) {
            *slot = Some(Arc::clone(r));
        }
    }
    RoutingTable {
        routes: Arc::new(TableRoutes {
            by_name: routes,
            by_pos: by_pos.into(),
        }),
        fresh_until: fresh_until.into_boxed_slice(),
    }
}

/// Whether `a` and `b` hold the same deployments at the same places.
fn same_deployments(a: &HealthSnapshot, b: &HealthSnapshot) -> bool {
    // A publication of health results shares its entries.
    if Arc::ptr_eq(&a.entries, &b.entries) && a.routes.len() == b.routes.len() {
        return true;
    }
    a.entries.len() == b.entries.len()
        && a.routes.len() == b.routes.len()
        && a.entries
            .iter()
            .zip(b.entries.iter())
            .all(|(x, y)| Arc::ptr_eq(&x.deployment, &y.deployment))
}

/// A route's lists at one snapshot, before they become [`Candidates`].
struct Lists {
    all: Box<[u32]>,
    healthy: Box<[u32]>,
    unhealthy: u32,
    fresh_until: u64,
}

impl Lists {
    fn new(members: &[u32], snap: &HealthSnapshot) -> Self {
        let entries = &snap.entries;
        let (staleness_nanos, now) = (snap.staleness_nanos, snap.built_at);
        let all: Box<[u32]> = members
            .iter()
            .copied()
            .filter(|&i| entries[i as usize].routable())
            .collect();
        let mut fresh_until = u64::MAX;
        let mut unhealthy = 0;
        let healthy: Box<[u32]> = all
            .iter()
            .copied()
            .filter(|&i| {
                let c = &snap.checked[i as usize];
                if c.failed_fresh(now, staleness_nanos) {
                    unhealthy += 1;
                    fresh_until = fresh_until.min(c.checked_nanos.saturating_add(staleness_nanos));
                    false
                } else {
                    true
                }
            })
            .collect();
        Self {
            all,
            healthy,
            unhealthy,
            fresh_until,
        }
    }
}

fn build_route(
    name: Arc<str>,
    lists: Lists,
    snap: &HealthSnapshot,
    state: Arc<RouteState>,
    pos: usize,
) -> Route {
    let entries = &snap.entries;
    let members = snap.routes.get(&name).map_or(&[][..], |r| &r.members[..]);
    let Lists {
        all,
        healthy,
        unhealthy,
        fresh_until: _,
    } = lists;
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
    Route {
        name,
        unsupported,
        healthy: Candidates::ordered(healthy, entries, weight_kind),
        all: Candidates::ordered(all, entries, weight_kind),
        weight_kind,
        unhealthy,
        pos,
        state,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::{Config, Deployment, DeploymentId, health::HealthRecord};

    fn state(n: usize) -> (HealthState, Arc<RouteStates>) {
        let ds = (0..n).map(|i| {
            Deployment::builder("r", "openai/m")
                .id(format!("d{i}"))
                .build()
        });
        let cfg = Config::builder()
            .deployments(ds)
            .enable_health_check_routing(true)
            .health_check_interval(Duration::from_secs(3600))
            .build()
            .unwrap();
        let state = HealthState::new(cfg);
        let states = install(&state);
        (state, states)
    }

    fn record(state: &HealthState, failed: &[usize], n: usize) {
        let now = tokio::time::Instant::now();
        state.record((0..n).map(|i| {
            let rec = if failed.contains(&i) {
                HealthRecord::unhealthy(now, "status 500", Some(500))
            } else {
                HealthRecord::healthy(now)
            };
            (DeploymentId::new(format!("d{i}")), rec)
        }));
    }

    fn routes_of(state: &HealthState, states: &RouteStates) -> (Arc<TableRoutes>, Vec<u32>, u64) {
        let snap = state.load();
        let t = get(&snap, states);
        let r = t.route("r").unwrap();
        (
            Arc::clone(&t.routes),
            r.healthy.idx.to_vec(),
            t.fresh_until(r),
        )
    }

    #[test]
    fn a_publication_that_changes_no_list_shares_the_routes_and_a_change_rebuilds_them() {
        let (state, states) = state(4);
        record(&state, &[1], 4);
        let (a, healthy_a, fresh_a) = routes_of(&state, &states);
        assert_eq!(healthy_a, [0, 2, 3]);
        assert_ne!(fresh_a, u64::MAX, "a failed result bounds the list");
        // The same verdicts again: the same routes, shared.
        record(&state, &[1], 4);
        let (b, healthy_b, _) = routes_of(&state, &states);
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(healthy_b, healthy_a);
        // Another verdict: new lists.
        record(&state, &[2], 4);
        let (c, healthy_c, _) = routes_of(&state, &states);
        assert!(!Arc::ptr_eq(&b, &c));
        assert_eq!(healthy_c, [0, 1, 3]);
        // All healthy: nothing bounds the list.
        record(&state, &[], 4);
        let (_, healthy_d, fresh_d) = routes_of(&state, &states);
        assert_eq!(healthy_d, [0, 1, 2, 3]);
        assert_eq!(fresh_d, u64::MAX);
    }

    #[test]
    fn a_new_deployment_list_never_shares_the_old_routes() {
        let (state, states) = state(3);
        record(&state, &[], 3);
        let (a, _, _) = routes_of(&state, &states);
        let ds: Vec<Deployment> = (0..3)
            .map(|i| {
                Deployment::builder("r", "openai/m")
                    .id(format!("d{i}"))
                    .weight(if i == 0 { 5.0 } else { 1.0 })
                    .build()
            })
            .collect();
        state.set_deployments(&ds);
        let snap = state.load();
        let t = get(&snap, &states);
        assert!(!Arc::ptr_eq(&a, &t.routes));
        assert!(
            t.route("r").unwrap().all.cum.is_some(),
            "the new weights count"
        );
    }
}
