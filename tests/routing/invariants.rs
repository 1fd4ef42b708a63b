//! The routing invariants as properties, over generated deployments, health results,
//! cooldowns and instants, for every strategy, with the health filter on and off:
//!
//! * a pick is always a member of the route, and never one cooling down;
//! * the eligible set is exactly the pipeline's: the members minus those whose failed
//!   result is still fresh (a result exactly at the threshold is fresh, one nanosecond
//!   past it is stale and ignored) or, if that leaves none, every member (the bypass);
//!   then minus those cooling down. If that leaves none while a member that failed its
//!   check is not cooling down, the filter is bypassed after all and that member is
//!   picked: a deployment is returned whenever one of the route is not in cooldown (or
//!   excluded). Picking with the previous picks excluded enumerates first the filtered
//!   set, then the rest of the members not cooling down;
//! * staleness is exact when results are published, and takes effect later when the
//!   staleness watchdog runs: on the first millisecond tick after the result went stale
//!   (tokio's timer resolution); see `Model::lists_computed_at`;
//! * when nothing is eligible, `NoDeploymentAvailable::retry_after` is the time until the
//!   first candidate leaves its cooldown;
//! * a reader never sees a half-published snapshot.
//!
//! Cooldowns are entered the way production enters them: failing requests through
//! `HealthRouting` with `allowed_fails = 0`. Time is paused (a current-thread runtime
//! built with `start_paused` in each case). Set `PROPTEST_CASES` to run more cases.

mod publication;

use std::{collections::BTreeSet, time::Duration};

use proptest::{prelude::*, sample::Index};
use tokio::time::{Instant, advance};
use tower::{Layer, ServiceExt};
use tower_health_routing::{
    Config, Deployment, DeploymentId, HealthRoutingLayer, HealthState, NoDeploymentAvailable,
    config::RoutingStrategy, health::HealthRecord, routing::ExcludeDeployments, routing::PickError,
    routing::Picker,
};

const ROUTES: [&str; 3] = ["r0", "r1", "r2"];
const STRATEGIES: [RoutingStrategy; 5] = [
    RoutingStrategy::SimpleShuffle,
    RoutingStrategy::RoundRobin,
    RoutingStrategy::LeastBusy,
    RoutingStrategy::LatencyBased,
    RoutingStrategy::PowerOfTwoChoices,
];
const MAX_DEPLOYMENTS: usize = 8;
/// Cooldowns are entered between these instants (ms after the epoch)...
const COOLDOWN_FROM_MS: u64 = 100_000;
const COOLDOWN_TO_MS: u64 = 200_000;
/// ...and the first check happens at this instant or later, so that every generated
/// result age (at most 2 × 90 s) points after the epoch.
const CHECK_FROM_MS: u64 = 200_000;
const MS: u64 = 1_000_000;

fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[derive(Clone, Debug)]
struct Dep {
    route: usize,
    /// A second route listing the same deployment (same id, same params).
    alias: Option<usize>,
    weight: Option<f64>,
    rpm: Option<u64>,
    own_cooldown_ms: Option<u64>,
}

/// How old a deployment's last result is at the first check.
#[derive(Clone, Copy, Debug)]
enum Age {
    /// This many thousandths of 2 × the staleness threshold.
    Fraction(u64),
    AtThreshold,
    JustPastThreshold,
}

/// How far time moves between the first check and the second.
#[derive(Clone, Copy, Debug)]
enum Step {
    Millis(u64),
    /// To the last instant deployment `Index`'s result is fresh, plus 0 ns, 1 ns,
    /// 1 ms - 1 ns or 1 ms.
    StaleEdge(Index, u8),
    /// To the instant cooldown event `Index` ends (plus 0 or 1 ns).
    CooldownEdge(Index, bool),
}

#[derive(Clone, Debug)]
struct Case {
    deps: Vec<Dep>,
    interval_s: u64,
    staleness_extra_s: Option<u64>,
    cooldown_ms: u64,
    /// (deployment, ms after the epoch) of each failing request.
    failures: Vec<(Index, u64)>,
    /// Per deployment: its last result, if any: (healthy, age).
    results: Vec<Option<(bool, Age)>>,
    check_extra_ms: u64,
    step: Step,
    seed: u64,
}

fn dep() -> impl Strategy<Value = Dep> {
    (
        0..ROUTES.len(),
        prop::option::weighted(0.25, 0..ROUTES.len()),
        prop::option::weighted(0.3, prop::sample::select(vec![0.0, 0.5, 1.0, 4.0])),
        prop::option::weighted(0.2, 1..1_000u64),
        prop::option::weighted(0.3, 0..=120_000u64),
    )
        .prop_map(|(route, alias, weight, rpm, own_cooldown_ms)| Dep {
            route,
            alias: alias.filter(|&a| a != route),
            weight,
            rpm,
            own_cooldown_ms,
        })
}

fn age() -> impl Strategy<Value = Age> {
    prop_oneof![
        4 => (0..=1_000u64).prop_map(Age::Fraction),
        1 => Just(Age::AtThreshold),
        1 => Just(Age::JustPastThreshold),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0..=200_000u64).prop_map(Step::Millis),
        (any::<Index>(), 0..4u8).prop_map(|(i, b)| Step::StaleEdge(i, b)),
        (any::<Index>(), any::<bool>()).prop_map(|(i, b)| Step::CooldownEdge(i, b)),
    ]
}

prop_compose! {
    fn case()(
        deps in prop::collection::vec(dep(), 1..=MAX_DEPLOYMENTS),
        interval_s in 1..=30u64,
        staleness_extra_s in prop::option::of(0..=60u64),
        cooldown_ms in 0..=120_000u64,
        failures in prop::collection::vec((any::<Index>(), COOLDOWN_FROM_MS..=COOLDOWN_TO_MS), 0..=8),
        results in prop::collection::vec(prop::option::weighted(0.8, (any::<bool>(), age())), MAX_DEPLOYMENTS),
        check_extra_ms in 0..=60_000u64,
        step in step(),
        seed in any::<u64>(),
    ) -> Case {
        Case { deps, interval_s, staleness_extra_s, cooldown_ms, failures, results, check_extra_ms, step, seed }
    }
}

/// What the test expects, kept apart from the crate: ids, routes, results, cooldowns.
struct Model {
    /// Route index -> member deployment indices.
    members: [Vec<usize>; 3],
    staleness_ns: u64,
    /// Per deployment: (healthy, checked at, ns after the epoch).
    results: Vec<Option<(bool, u64)>>,
    /// When the results were published, ns after the epoch.
    published: u64,
    /// Per deployment: end of its cooldown, ns after the epoch (0: none).
    cooling_until: Vec<u64>,
    /// Ends of the cooldowns the failures entered.
    cooldown_ends: Vec<u64>,
}

impl Model {
    /// Whether `d`'s failed result still excludes it at `now`: it does while it is not
    /// strictly older than the threshold at the instant the route lists were computed.
    fn fresh_failed(&self, d: usize, now: u64) -> bool {
        let at = self.lists_computed_at(now);
        self.results[d].is_some_and(|(ok, checked)| !ok && at - checked <= self.staleness_ns)
    }

    /// When the snapshot readers see at `now` computed its route lists, if time jumped
    /// from the publication straight to `now`. A snapshot's lists are exact when it is
    /// published. The staleness watchdog republishes it, with lists exact at the instant
    /// it runs, once its timer for the earliest expiry has fired; tokio's timers fire on
    /// the first millisecond tick after their deadline (ticks count from the runtime's
    /// start, which is the state's epoch here). Until then readers see the old lists.
    fn lists_computed_at(&self, now: u64) -> u64 {
        let first_expiry = self
            .results
            .iter()
            .flatten()
            .filter(|(ok, _)| !ok)
            .map(|(_, checked)| checked + self.staleness_ns)
            .filter(|&last_fresh| last_fresh >= self.published)
            .min();
        match first_expiry {
            Some(e) if now >= (e / MS + 1) * MS => now,
            _ => self.published,
        }
    }

    fn cooling(&self, d: usize, now: u64) -> bool {
        self.cooling_until[d] > now
    }

    /// The candidates after the health filter, and whether it was bypassed.
    fn candidates(&self, route: usize, filter: bool, now: u64) -> (Vec<usize>, bool) {
        let all = self.members[route].clone();
        if !filter {
            return (all, false);
        }
        let kept: Vec<usize> = all
            .iter()
            .copied()
            .filter(|&d| !self.fresh_failed(d, now))
            .collect();
        if kept.is_empty() {
            (all, true)
        } else {
            (kept, false)
        }
    }
}

fn id(d: usize) -> String {
    format!("d{d}")
}

fn config(case: &Case) -> Config {
    let mut b = Config::builder()
        .health_check_interval(Duration::from_secs(case.interval_s))
        .enable_health_check_routing(true)
        .allowed_fails(0)
        .cooldown_time(Duration::from_millis(case.cooldown_ms));
    if let Some(extra) = case.staleness_extra_s {
        b = b.health_check_staleness_threshold(Duration::from_secs(case.interval_s + extra));
    }
    for (i, d) in case.deps.iter().enumerate() {
        for route in std::iter::once(d.route).chain(d.alias) {
            let mut db = Deployment::builder(ROUTES[route], "openai/gpt-4o")
                .id(id(i))
                .api_base(format!("http://d{i}"));
            if let Some(w) = d.weight {
                db = db.weight(w);
            }
            if let Some(r) = d.rpm {
                db = db.rpm(r);
            }
            if let Some(c) = d.own_cooldown_ms {
                db = db.cooldown_time(Duration::from_millis(c));
            }
            b = b.deployment(db.build());
        }
    }
    b.build().expect("generated configs are valid")
}

fn paused_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a runtime")
}

async fn advance_to(epoch: Instant, at_ns: u64) {
    let target = epoch + Duration::from_nanos(at_ns);
    let now = Instant::now();
    if target > now {
        advance(target - now).await;
    }
    // Let the staleness watchdog republish what went stale.
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert_eq!(Instant::now(), target.max(now));
}

fn ns_since(epoch: Instant) -> u64 {
    u64::try_from((Instant::now() - epoch).as_nanos()).unwrap()
}

/// Every strategy, filter on and off, every route: the picks match the model at `now`.
fn check_selection(
    state: &HealthState,
    model: &Model,
    epoch: Instant,
    seed: u64,
) -> Result<(), TestCaseError> {
    let now = ns_since(epoch);
    for filter in [false, true] {
        for (si, strategy) in STRATEGIES.into_iter().enumerate() {
            let mut picker = Picker::new(state.clone())
                .with_strategy(strategy)
                .with_health_filter(filter)
                .with_seed(seed ^ si as u64);
            let snap = state.load();
            for (r, name) in ROUTES.iter().enumerate() {
                let ctx = format!("{strategy}, filter {filter}, route {name}, now {now} ns");
                if model.members[r].is_empty() {
                    let err = picker.pick(&snap, name, &[]).map(|_| ()).unwrap_err();
                    prop_assert!(matches!(err, PickError::UnknownRoute(_)), "{ctx}: {err}");
                    continue;
                }
                let (cands, bypass) = model.candidates(r, filter, now);
                let not_cooling = |ds: &[usize]| -> BTreeSet<usize> {
                    ds.iter()
                        .copied()
                        .filter(|&d| !model.cooling(d, now))
                        .collect()
                };
                let filtered_set = not_cooling(&cands);
                // The filter really removed someone: the fallback may reach the others.
                let narrowed = filter && !bypass && cands.len() < model.members[r].len();
                let everyone = not_cooling(&model.members[r]);
                let eligible: BTreeSet<usize> = if narrowed {
                    everyone.clone()
                } else {
                    filtered_set.clone()
                };
                let mut excluded: Vec<usize> = Vec::new();
                loop {
                    let ids: Vec<DeploymentId> =
                        excluded.iter().map(|&d| DeploymentId::new(id(d))).collect();
                    let left_filtered: Vec<usize> = filtered_set
                        .iter()
                        .copied()
                        .filter(|d| !excluded.contains(d))
                        .collect();
                    let (left, expect_bypass) = if !left_filtered.is_empty() || !narrowed {
                        (left_filtered, bypass)
                    } else {
                        (
                            everyone
                                .iter()
                                .copied()
                                .filter(|d| !excluded.contains(d))
                                .collect(),
                            true,
                        )
                    };
                    match picker.pick(&snap, name, &ids) {
                        Ok(p) => {
                            let got: usize = p.deployment().id().as_str()[1..].parse().unwrap();
                            prop_assert!(
                                model.members[r].contains(&got),
                                "{ctx}: d{got} is not in the route"
                            );
                            prop_assert!(!model.cooling(got, now), "{ctx}: d{got} is cooling down");
                            prop_assert!(
                                left.contains(&got),
                                "{ctx}: d{got} picked, eligible were {left:?}"
                            );
                            prop_assert_eq!(p.bypassed_health_filter(), expect_bypass, "{}", ctx);
                            excluded.push(got);
                        }
                        Err(PickError::NoDeploymentAvailable(e)) => {
                            prop_assert!(left.is_empty(), "{ctx}: none picked of {left:?}");
                            prop_assert!(
                                everyone.iter().all(|d| excluded.contains(d)),
                                "{ctx}: refused while a member was not cooling down"
                            );
                            prop_assert_eq!(e.route(), *name);
                            let first_back = model.members[r]
                                .iter()
                                .filter(|d| !excluded.contains(d))
                                .filter(|&&d| model.cooling(d, now))
                                .map(|&d| model.cooling_until[d] - now)
                                .min()
                                .unwrap_or(0);
                            prop_assert_eq!(
                                e.retry_after(),
                                Duration::from_nanos(first_back),
                                "{}",
                                ctx
                            );
                            break;
                        }
                        Err(e) => prop_assert!(false, "{ctx}: {e}"),
                    }
                }
                let picked: BTreeSet<usize> = excluded.into_iter().collect();
                prop_assert_eq!(&picked, &eligible, "{}: enumerated vs eligible", ctx);
            }
        }
    }
    Ok(())
}

fn run_case(case: Case) -> Result<(), TestCaseError> {
    paused_runtime().block_on(async move {
        let cfg = config(&case);
        let staleness_ns = u64::try_from(cfg.health.staleness_threshold().as_nanos()).unwrap();
        let n = case.deps.len();
        // The state's epoch is the instant it is made; time is paused, so this is it.
        let epoch = Instant::now();
        let state = HealthState::new(cfg);
        let mut members: [Vec<usize>; 3] = Default::default();
        for (i, d) in case.deps.iter().enumerate() {
            for r in std::iter::once(d.route).chain(d.alias) {
                members[r].push(i);
            }
        }
        let mut model = Model {
            members,
            staleness_ns,
            results: vec![None; n],
            published: 0,
            cooling_until: vec![0; n],
            cooldown_ends: Vec::new(),
        };

        // Cooldowns: one failing request per event, forced to its deployment.
        let svc = HealthRoutingLayer::from_state(state.clone()).layer(tower::service_fn(
            |_req: http::Request<String>| async {
                let mut resp = http::Response::new(String::new());
                *resp.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
                Ok::<_, std::convert::Infallible>(resp)
            },
        ));
        let mut failures: Vec<(usize, u64)> = case
            .failures
            .iter()
            .map(|(d, at)| (d.index(n), at * MS))
            .collect();
        failures.sort_by_key(|&(_, at)| at);
        for (d, at) in failures {
            advance_to(epoch, at).await;
            let route = case.deps[d].route;
            let others: Vec<DeploymentId> = model.members[route]
                .iter()
                .filter(|&&o| o != d)
                .map(|&o| DeploymentId::new(id(o)))
                .collect();
            let mut req = crate::support::request(ROUTES[route]);
            req.extensions_mut().insert(ExcludeDeployments(others));
            let res = svc.clone().oneshot(req).await;
            if model.cooling(d, at) {
                let err = res.map(|_| ()).unwrap_err();
                let e = err.downcast_ref::<NoDeploymentAvailable>();
                prop_assert!(e.is_some(), "d{d} cooling at {at}: {err}");
                prop_assert_eq!(
                    e.unwrap().retry_after(),
                    Duration::from_nanos(model.cooling_until[d] - at)
                );
            } else {
                prop_assert_eq!(res.map(|r| r.status().as_u16()).ok(), Some(500));
                let own = case.deps[d].own_cooldown_ms.unwrap_or(case.cooldown_ms);
                model.cooling_until[d] = (at + own * MS).max(1);
                model.cooldown_ends.push(model.cooling_until[d]);
            }
        }

        // Health results of chosen ages at the first check.
        let first = (CHECK_FROM_MS + case.check_extra_ms) * MS;
        advance_to(epoch, first).await;
        let mut records = Vec::new();
        for (d, res) in case.results.iter().take(n).enumerate() {
            let Some((healthy, age)) = *res else { continue };
            let age_ns = match age {
                Age::Fraction(f) => staleness_ns.saturating_mul(2) / 1_000 * f,
                Age::AtThreshold => staleness_ns,
                Age::JustPastThreshold => staleness_ns + 1,
            };
            let at = first - age_ns;
            model.results[d] = Some((healthy, at));
            let checked_at = epoch + Duration::from_nanos(at);
            records.push((
                DeploymentId::new(id(d)),
                if healthy {
                    HealthRecord::healthy(checked_at)
                } else {
                    HealthRecord::unhealthy(checked_at, "status 500", Some(500))
                },
            ));
        }
        state.record(records);
        model.published = first;
        check_selection(&state, &model, epoch, case.seed)?;

        // Time moves on: results go stale, cooldowns end.
        let second = match case.step {
            Step::Millis(ms) => first + ms * MS,
            Step::StaleEdge(i, plus) => match model.results[i.index(n)] {
                Some((_, at)) if at + staleness_ns >= first => {
                    at + staleness_ns + [0, 1, MS - 1, MS][usize::from(plus)]
                }
                _ => first,
            },
            Step::CooldownEdge(i, plus) if !model.cooldown_ends.is_empty() => {
                let end = model.cooldown_ends[i.index(model.cooldown_ends.len())];
                end.max(first) + u64::from(plus)
            }
            Step::CooldownEdge(..) => first,
        };
        advance_to(epoch, second).await;
        check_selection(&state, &model, epoch, case.seed.rotate_left(1))
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(256)))]

    #[test]
    fn selection_follows_the_pipeline_for_any_state_and_time(case in case()) {
        run_case(case)?;
    }
}
