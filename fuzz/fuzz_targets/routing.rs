//! A script of operations against a real `RetryLayer` + `HealthRouting` stack and a
//! `Picker`, under paused time: health results of any age, requests with arbitrary route
//! names, header bytes, bodies and upstream answers, deployment-list changes and time
//! steps. Asserts no panic and the routing invariants:
//!
//! * every pick and every forwarded attempt is a member of the route, not excluded, not
//!   cooling down, and not a deployment the same request already tried;
//! * a request without a route fails with `MissingRoute`, an unknown one with `UnknownRoute`;
//! * `NoDeploymentAvailable` only when every member left is excluded, cooling down or
//!   (health filter on) failed its last check;
//! * no request stays counted in flight once its response is dropped.
#![no_main]

use std::{sync::Arc, time::Duration};

use arbitrary::Arbitrary;
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Response, StatusCode};
use libfuzzer_sys::fuzz_target;
use tokio::time::Instant;
use tower::{Layer, ServiceExt};
use tower_health_routing::{
    BoxError, Config, Deployment, DeploymentId, HealthRoutingLayer, HealthState, MissingRoute,
    ModelGroup, NoDeploymentAvailable, SelectedDeployment, UnknownRoute, config::RoutingStrategy,
    health::HealthRecord, retry::RetryLayer, routing::ExcludeDeployments, routing::FromHeader,
    routing::PickError, routing::Picker, routing::TriedDeployments,
};

const STRATEGIES: [RoutingStrategy; 5] = [
    RoutingStrategy::SimpleShuffle,
    RoutingStrategy::RoundRobin,
    RoutingStrategy::LeastBusy,
    RoutingStrategy::LatencyBased,
    RoutingStrategy::PowerOfTwoChoices,
];

#[derive(Arbitrary, Debug)]
enum RouteName {
    Known(u8),
    Any(String),
}

impl RouteName {
    fn name(&self) -> String {
        match self {
            Self::Known(k) => format!("r{}", k % 3),
            Self::Any(s) => s.clone(),
        }
    }
}

#[derive(Arbitrary, Debug)]
struct Dep {
    route: RouteName,
    id: Option<u8>,
    weight: Option<u8>,
    rpm: Option<u16>,
    own_cooldown_ms: Option<u16>,
}

#[derive(Arbitrary, Debug, Clone)]
enum Answer {
    Status(u16),
    RateLimited(u16, String),
    ConnectionError,
}

#[derive(Arbitrary, Debug)]
enum Op {
    Record {
        dep: u8,
        healthy: bool,
        age_ms: u32,
    },
    Send {
        route: Option<RouteName>,
        raw_header: Option<Vec<u8>>,
        answers: Vec<Answer>,
        exclude: Vec<u8>,
        body: Vec<u8>,
    },
    Pick {
        route: RouteName,
        exclude: Vec<u8>,
        strategy: u8,
        filter: bool,
        seed: u64,
    },
    Advance {
        ms: u16,
    },
    SetDeployments {
        keep: Vec<bool>,
    },
}

#[derive(Arbitrary, Debug)]
struct Script {
    deployments: Vec<Dep>,
    strategy: u8,
    health_routing: bool,
    allowed_fails: Option<u8>,
    cooldown_ms: u16,
    interval_s: u8,
    num_retries: u8,
    route_in_header: bool,
    ops: Vec<Op>,
}

/// What the inner service checks on each attempt it receives.
#[derive(Clone)]
struct Expect {
    members: Arc<Vec<DeploymentId>>,
    excluded: Arc<Vec<DeploymentId>>,
    answers: Arc<Vec<Answer>>,
    state: HealthState,
}

fn config(s: &Script) -> Option<Config> {
    let mut b = Config::builder()
        .health_check_interval(Duration::from_secs(u64::from(s.interval_s.max(1))))
        .enable_health_check_routing(s.health_routing)
        .cooldown_time(Duration::from_millis(u64::from(s.cooldown_ms)))
        .routing_strategy(STRATEGIES[usize::from(s.strategy) % STRATEGIES.len()])
        .num_retries(u32::from(s.num_retries % 4));
    if let Some(n) = s.allowed_fails {
        b = b.allowed_fails(u32::from(n % 4));
    }
    for (i, d) in s.deployments.iter().take(8).enumerate() {
        let mut db = Deployment::builder(d.route.name(), "openai/gpt-4o").id(d
            .id
            .map_or_else(|| format!("d{i}"), |k| format!("x{}", k % 6)));
        if let Some(w) = d.weight {
            db = db.weight(f64::from(w) / 4.0);
        }
        if let Some(r) = d.rpm {
            db = db.rpm(u64::from(r));
        }
        if let Some(c) = d.own_cooldown_ms {
            db = db.cooldown_time(Duration::from_millis(u64::from(c)));
        }
        b = b.deployment(db.build());
    }
    b.build().ok()
}

fn members(current: &[Deployment], route: &str) -> Vec<DeploymentId> {
    let mut m: Vec<DeploymentId> = current
        .iter()
        .filter(|d| d.route() == route)
        .map(|d| d.id().clone())
        .collect();
    m.dedup();
    m
}

fn ids(all: &[Deployment], picks: &[u8]) -> Vec<DeploymentId> {
    if all.is_empty() {
        return Vec::new();
    }
    picks
        .iter()
        .map(|&k| all[usize::from(k) % all.len()].id().clone())
        .collect()
}

/// `NoDeploymentAvailable` is justified: every member left is excluded, cooling down,
/// or (with the health filter) failed its last check.
fn justified(
    state: &HealthState,
    members: &[DeploymentId],
    excluded: &[DeploymentId],
    filter: bool,
) -> bool {
    let snap = state.load();
    members.iter().all(|m| {
        excluded.contains(m)
            || state.cooldown_remaining(m.as_str()).is_some()
            || (filter && snap.health(m.as_str()).is_some_and(|h| !h.healthy))
    })
}

/// The inner service: checks the attempt, then answers as scripted.
async fn upstream(req: Request<Bytes>) -> Result<Response<Bytes>, BoxError> {
    let exp = req
        .extensions()
        .get::<Expect>()
        .expect("the script attaches Expect")
        .clone();
    let chosen = req
        .extensions()
        .get::<SelectedDeployment>()
        .expect("routing attaches the deployment");
    let id = chosen.id().clone();
    assert!(exp.members.contains(&id), "{id} is not in the route");
    assert!(!exp.excluded.contains(&id), "{id} was excluded");
    let tried = req
        .extensions()
        .get::<TriedDeployments>()
        .expect("the retry layer attaches it")
        .ids();
    assert_eq!(
        tried.iter().filter(|t| **t == id).count(),
        1,
        "{id} tried twice: {tried:?}"
    );
    // Cooling down now would mean it was picked while cooling (the clock has not moved).
    assert!(
        exp.state.cooldown_remaining(id.as_str()).is_none(),
        "{id} picked while cooling down"
    );
    let attempt = tried.len() - 1;
    let answer = exp
        .answers
        .get(attempt)
        .cloned()
        .unwrap_or(Answer::Status(200));
    let mut resp = Response::new(Bytes::from(id.to_string()));
    match answer {
        Answer::Status(s) => {
            *resp.status_mut() = StatusCode::from_u16(100 + s % 500).expect("100..600")
        }
        Answer::RateLimited(secs, text) => {
            *resp.status_mut() = StatusCode::TOO_MANY_REQUESTS;
            let v = if secs % 2 == 0 {
                (secs % 20).to_string()
            } else {
                text
            };
            if let Ok(v) = HeaderValue::from_str(&v) {
                resp.headers_mut().insert(http::header::RETRY_AFTER, v);
            }
        }
        Answer::ConnectionError => {
            return Err(Box::new(std::io::Error::other("connection refused")));
        }
    }
    Ok(resp)
}

async fn run(script: Script) {
    let Some(cfg) = config(&script) else { return };
    let all: Vec<Deployment> = cfg.deployments.clone();
    let filter_on = cfg.health.routing_enabled;
    let retry = RetryLayer::new(&cfg);
    let layer = HealthRoutingLayer::new(cfg).with_seed(7).with_response_extension();
    let state = layer.state().clone();
    let inner = tower::service_fn(upstream);
    let header = HeaderName::from_static("x-model");
    let by_header = retry.layer(
        layer
            .clone()
            .with_extractor(FromHeader::new(header.clone()))
            .layer(inner),
    );
    let by_extension = retry.layer(layer.layer(inner));
    let mut current = all.clone();

    for op in script.ops.into_iter().take(64) {
        match op {
            Op::Record {
                dep,
                healthy,
                age_ms,
            } => {
                if all.is_empty() {
                    continue;
                }
                let now = Instant::now();
                let at = now
                    .checked_sub(Duration::from_millis(u64::from(age_ms)))
                    .unwrap_or(now);
                let rec = if healthy {
                    HealthRecord::healthy(at)
                } else {
                    HealthRecord::unhealthy(at, "status 500", Some(500))
                };
                state.record([(all[usize::from(dep) % all.len()].id().clone(), rec)]);
            }
            Op::Advance { ms } => {
                tokio::time::advance(Duration::from_millis(u64::from(ms))).await;
                tokio::task::yield_now().await;
            }
            Op::SetDeployments { keep } => {
                current = all
                    .iter()
                    .zip(keep.iter().chain(std::iter::repeat(&true)))
                    .filter(|(_, k)| **k)
                    .map(|(d, _)| d.clone())
                    .collect();
                state.set_deployments(&current);
            }
            Op::Pick {
                route,
                exclude,
                strategy,
                filter,
                seed,
            } => {
                let route = route.name();
                let excluded = ids(&all, &exclude);
                let mut picker = Picker::new(state.clone())
                    .with_strategy(STRATEGIES[usize::from(strategy) % STRATEGIES.len()])
                    .with_health_filter(filter)
                    .with_seed(seed);
                let snap = state.load();
                let m = members(&current, &route);
                match picker.pick(&snap, &route, &excluded) {
                    Ok(p) => {
                        let id = p.deployment().id();
                        assert!(m.contains(id), "pick {id} outside route {route:?}");
                        assert!(!excluded.contains(id), "pick {id} was excluded");
                        assert!(
                            state.cooldown_remaining(id.as_str()).is_none(),
                            "pick {id} is cooling down"
                        );
                    }
                    Err(PickError::UnknownRoute(_)) => {
                        assert!(m.is_empty(), "route {route:?} has members")
                    }
                    Err(PickError::NoDeploymentAvailable(_)) => {
                        assert!(!m.is_empty());
                        assert!(
                            justified(&state, &m, &excluded, filter),
                            "no pick in {route:?} with {m:?}"
                        );
                    }
                    Err(e) => panic!("unexpected {e}"),
                }
            }
            Op::Send {
                route,
                raw_header,
                answers,
                exclude,
                body,
            } => {
                let excluded = ids(&all, &exclude);
                let mut req = Request::new(Bytes::from(body));
                let asked: Option<String> = if script.route_in_header {
                    let v = match (&route, raw_header) {
                        (_, Some(raw)) => HeaderValue::from_bytes(&raw).ok(),
                        (Some(r), None) => HeaderValue::from_str(&r.name()).ok(),
                        (None, None) => None,
                    };
                    v.and_then(|v| {
                        let s = v.to_str().ok().map(str::to_owned);
                        req.headers_mut().insert(header.clone(), v);
                        s
                    })
                } else {
                    route.map(|r| {
                        let n = r.name();
                        req.extensions_mut().insert(ModelGroup::new(n.clone()));
                        n
                    })
                };
                let m = asked
                    .as_deref()
                    .map(|r| members(&current, r))
                    .unwrap_or_default();
                req.extensions_mut()
                    .insert(ExcludeDeployments(excluded.clone()));
                req.extensions_mut().insert(Expect {
                    members: Arc::new(m.clone()),
                    excluded: Arc::new(excluded.clone()),
                    answers: Arc::new(answers),
                    state: state.clone(),
                });
                let res = if script.route_in_header {
                    by_header.clone().oneshot(req).await
                } else {
                    by_extension.clone().oneshot(req).await
                };
                match (&asked, res) {
                    (None, res) => assert!(res.is_err_and(|e| e.is::<MissingRoute>())),
                    (Some(r), Err(e)) if e.is::<UnknownRoute>() => {
                        assert!(m.is_empty(), "{r:?} has members")
                    }
                    (Some(r), Err(e)) if e.is::<NoDeploymentAvailable>() => {
                        assert!(
                            justified(&state, &m, &excluded, filter_on),
                            "no deployment for {r:?}: {m:?}"
                        );
                    }
                    (Some(_), Err(e)) => assert!(e.is::<std::io::Error>(), "unexpected error {e}"),
                    (Some(r), Ok(resp)) => {
                        let id = resp
                            .extensions()
                            .get::<SelectedDeployment>()
                            .expect("named")
                            .id()
                            .clone();
                        assert!(m.contains(&id) && !excluded.contains(&id), "{id} for {r:?}");
                    }
                }
                for d in &all {
                    assert_eq!(
                        state.in_flight(d.id().as_str()),
                        0,
                        "{} still in flight",
                        d.id()
                    );
                }
            }
        }
    }
}

fuzz_target!(|script: Script| {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a runtime");
    rt.block_on(run(script));
});
