//! Tiered probes (`health_check_billed_every`), probe budgets
//! (`health_check_max_probes_per_minute`, per deployment, `health_check_max_cost_per_day`)
//! and the spread of a round's probes (`health_check_spread`, seeded).
//!
//! Paused time; the probes go over real HTTP to testkit upstreams on 127.0.0.1:0, which
//! count what they receive per path: `/v1/models` is the cheap tier, `/v1/chat/completions`
//! the billed one. The upstreams run on their own thread in real time. While a round's
//! sockets work, [`held`] keeps the paused clock still (a blocking task stops tokio's
//! auto-advance), so no probe timeout can fire while an upstream answers; time moves only
//! by `advance`.

use std::{
    convert::Infallible,
    num::{NonZeroU32, NonZeroUsize},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering::SeqCst},
    },
    time::Duration,
};

use crate::support::{
    Logs,
    endpoints::call_get,
    request, state_with,
    upstream::{Reply, Upstream},
};
use http::{Request, Response, StatusCode};
use tokio::time::{Instant, advance};
use tower::{Service, ServiceExt};
use tower_health_routing::{
    Deployment, HealthRoutingLayer, HealthState,
    endpoints::HealthEndpoints,
    health::ProbeTier,
    probe::{ProbeDefaults, ProbeLoop, RoundReport},
};

const CHEAP: &str = "/v1/models";
const BILLED: &str = "/v1/chat/completions";
const INTERVAL: Duration = Duration::from_secs(10);

/// Runs `f` with the paused clock held still: a blocking task in the current-thread test
/// runtime stops auto-advance until `f` is done (tokio's `test-util`).
pub(crate) async fn held<F: Future>(f: F) -> F::Output {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let hold = tokio::task::spawn_blocking(move || {
        let _ = rx.recv();
    });
    let out = f.await;
    drop(tx);
    hold.await.expect("hold");
    out
}

fn hits(up: &Upstream, path: &str) -> usize {
    up.requests().iter().filter(|r| r.path == path).count()
}

/// `n` deployments of route `r`, ids `r-{i}`, each at its own upstream.
fn deployments(n: usize, ups: &[Upstream]) -> Vec<Deployment> {
    (0..n)
        .map(|i| {
            Deployment::builder("r", "openai/gpt-4o")
                .id(format!("r-{i}"))
                .api_base(ups[i].v1())
                .health_check_timeout(Duration::from_secs(3600))
                .build()
        })
        .collect()
}

fn probes(state: &HealthState) -> ProbeLoop {
    ProbeLoop::builder(state)
        .defaults(ProbeDefaults::default())
        .seed(7)
        .build()
        .expect("loop")
}

async fn round(p: &ProbeLoop) -> RoundReport {
    held(p.run_round()).await.expect("state alive")
}

fn tier(state: &HealthState, id: &str) -> Option<ProbeTier> {
    state.load().health(id).and_then(|r| r.tier)
}

#[tokio::test(start_paused = true)]
async fn a_failed_cheap_tier_is_unhealthy_without_a_billed_request() {
    let up = Upstream::start(|r| {
        if r.path == CHEAP {
            Reply::status(503, r#"{"error":{"message":"down"}}"#)
        } else {
            Reply::ok()
        }
    });
    let ups = [up];
    let state = state_with(deployments(1, &ups), |b| {
        b.health_check_interval(INTERVAL)
            .health_check_billed_every(NonZeroU32::new(3).unwrap())
    });
    let p = probes(&state);
    round(&p).await;
    let rec = state.load().health("r-0").cloned().expect("a result");
    assert!(!rec.healthy);
    assert_eq!(rec.tier, Some(ProbeTier::Cheap));
    assert_eq!((hits(&ups[0], CHEAP), hits(&ups[0], BILLED)), (1, 0));
}

#[tokio::test(start_paused = true)]
async fn billed_only_every_n_rounds() {
    let ups = [Upstream::ok()];
    let state = state_with(deployments(1, &ups), |b| {
        b.health_check_interval(INTERVAL)
            .health_check_billed_every(NonZeroU32::new(3).unwrap())
    });
    let p = probes(&state);
    let mut tiers = Vec::new();
    for _ in 0..7 {
        round(&p).await;
        tiers.push(tier(&state, "r-0").expect("tiered"));
        advance(INTERVAL).await;
    }
    use ProbeTier::{Billed as B, Cheap as C};
    assert_eq!(tiers, [B, C, C, B, C, C, B]);
    assert_eq!((hits(&ups[0], CHEAP), hits(&ups[0], BILLED)), (7, 3));
    assert!(state.load().health("r-0").unwrap().healthy);
}

#[tokio::test(start_paused = true)]
async fn the_default_bills_every_round_with_no_cheap_tier() {
    let ups = [Upstream::ok()];
    let state = state_with(deployments(1, &ups), |b| b.health_check_interval(INTERVAL));
    let p = probes(&state);
    for _ in 0..3 {
        round(&p).await;
        advance(INTERVAL).await;
    }
    assert_eq!((hits(&ups[0], CHEAP), hits(&ups[0], BILLED)), (0, 3));
    assert_eq!(tier(&state, "r-0"), None, "untiered records carry no tier");
}

#[tokio::test(start_paused = true)]
async fn a_cheap_recovery_bills_at_once() {
    let down = Arc::new(AtomicBool::new(false));
    let d2 = Arc::clone(&down);
    let ups = [Upstream::start(move |r| {
        if r.path == CHEAP && d2.load(SeqCst) {
            Reply::status(502, "bad gateway")
        } else {
            Reply::ok()
        }
    })];
    let state = state_with(deployments(1, &ups), |b| {
        b.health_check_interval(INTERVAL)
            .health_check_billed_every(NonZeroU32::new(10).unwrap())
    });
    let p = probes(&state);
    round(&p).await; // first round: billed
    advance(INTERVAL).await;
    down.store(true, SeqCst);
    round(&p).await; // cheap fails: unhealthy, nothing billed
    assert!(!state.load().health("r-0").unwrap().healthy);
    assert_eq!(hits(&ups[0], BILLED), 1);
    advance(INTERVAL).await;
    down.store(false, SeqCst);
    round(&p).await; // cheap passes again: billed at once, though not due for 8 rounds
    assert_eq!(hits(&ups[0], BILLED), 2);
    assert_eq!(tier(&state, "r-0"), Some(ProbeTier::Billed));
    assert!(state.load().health("r-0").unwrap().healthy);
    advance(INTERVAL).await;
    round(&p).await; // nothing changed: cheap only
    assert_eq!((hits(&ups[0], CHEAP), hits(&ups[0], BILLED)), (4, 2));
}

/// One request through the routing layer to route `r`, answered `status` in-process.
async fn traffic(state: &HealthState, status: u16) {
    let inner = tower::service_fn(move |_: Request<String>| async move {
        let mut r = Response::new(String::new());
        *r.status_mut() = StatusCode::from_u16(status).unwrap();
        Ok::<_, Infallible>(r)
    });
    let layer = HealthRoutingLayer::from_state(state.clone());
    let mut svc = tower::Layer::layer(&layer, inner);
    svc.ready().await.unwrap().call(request("r")).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_traffic_failure_bills_at_once() {
    let ups = [Upstream::ok()];
    let state = state_with(deployments(1, &ups), |b| {
        b.health_check_interval(INTERVAL)
            .health_check_billed_every(NonZeroU32::new(10).unwrap())
    });
    let p = probes(&state);
    round(&p).await;
    advance(INTERVAL).await;
    round(&p).await;
    assert_eq!(hits(&ups[0], BILLED), 1, "second round: cheap only");
    advance(Duration::from_secs(2)).await;
    traffic(&state, 503).await;
    advance(Duration::from_secs(8)).await;
    round(&p).await;
    assert_eq!(
        hits(&ups[0], BILLED),
        2,
        "the traffic failure called for a billed probe"
    );
    assert_eq!(tier(&state, "r-0"), Some(ProbeTier::Billed));
}

fn endpoints(state: &HealthState, p: &ProbeLoop) -> HealthEndpoints {
    HealthEndpoints::new(state.clone(), p.clone())
}

#[tokio::test(start_paused = true)]
async fn the_per_minute_budget_skips_billed_probes_and_says_so() {
    let (logs, ()) = Logs::capture();
    let ups: Vec<Upstream> = (0..5).map(|_| Upstream::ok()).collect();
    let state = state_with(deployments(5, &ups), |b| {
        b.health_check_interval(INTERVAL)
            .background_health_checks(true)
            .health_check_max_probes_per_minute(NonZeroU32::new(2).unwrap())
    });
    let p = probes(&state);
    let billed = || ups.iter().map(|u| hits(u, BILLED)).sum::<usize>();
    let cheap = || ups.iter().map(|u| hits(u, CHEAP)).sum::<usize>();
    round(&p).await;
    assert_eq!((cheap(), billed()), (5, 2));
    // Refused with no earlier state: their cheap pass is published.
    let snap = state.load();
    let tiers: Vec<_> = (0..5)
        .map(|i| snap.health(&format!("r-{i}")).and_then(|r| r.tier))
        .collect();
    assert_eq!(
        tiers
            .iter()
            .filter(|t| **t == Some(ProbeTier::Billed))
            .count(),
        2
    );
    assert_eq!(
        tiers
            .iter()
            .filter(|t| **t == Some(ProbeTier::Cheap))
            .count(),
        3
    );
    drop(snap);
    let body = call_get(&endpoints(&state, &p), "/health", &[])
        .await
        .json();
    let b = &body["probe_budget"];
    assert_eq!(b["spent"], true, "{body}");
    assert_eq!(
        b["limit"],
        "general_settings.health_check_max_probes_per_minute"
    );
    assert!(b["until"].as_str().is_some_and(|u| u.ends_with('Z')), "{b}");
    assert_eq!(b["billed_probes_this_minute"], 2);
    assert_eq!(b["skipped"].as_array().map(Vec::len), Some(3), "{b}");
    let entries = body["healthy_endpoints"].as_array().unwrap();
    assert!(entries.iter().all(|e| e["tier"].is_string()), "{body}");
    // Still the same minute: nothing billed, one warning in all.
    for _ in 0..3 {
        advance(INTERVAL).await;
        round(&p).await;
    }
    assert_eq!((cheap(), billed()), (20, 2));
    assert_eq!(logs.count("probe budget spent"), 1, "{}", logs.text());
    // The next minute: two more, those never billed first.
    advance(Duration::from_secs(30)).await;
    let before: Vec<usize> = ups.iter().map(|u| hits(u, BILLED)).collect();
    round(&p).await;
    assert_eq!(billed(), 4);
    let newly: Vec<usize> = (0..5)
        .filter(|i| hits(&ups[*i], BILLED) > before[*i])
        .collect();
    assert!(
        newly.iter().all(|i| before[*i] == 0),
        "never-billed first: {newly:?}"
    );
    assert_eq!(logs.count("probe budget spent"), 2, "one per exhaustion");
}

#[tokio::test(start_paused = true)]
async fn a_deployments_own_budget_limits_only_it() {
    let ups: Vec<Upstream> = (0..2).map(|_| Upstream::ok()).collect();
    let mut ds = deployments(2, &ups);
    ds[0] = Deployment::builder("r", "openai/gpt-4o")
        .id("r-0")
        .api_base(ups[0].v1())
        .health_check_timeout(Duration::from_secs(3600))
        .health_check_max_probes_per_minute(1)
        .build();
    let state = state_with(ds, |b| b.health_check_interval(INTERVAL));
    let p = probes(&state);
    for _ in 0..4 {
        round(&p).await;
        advance(INTERVAL).await;
    }
    assert_eq!(hits(&ups[0], BILLED), 1, "r-0: one billed probe a minute");
    assert_eq!(hits(&ups[1], BILLED), 4, "r-1: no limit of its own");
    assert_eq!(hits(&ups[0], CHEAP), 4, "the cheap tier still runs");
    let st = p.budget_status().expect("a budget is configured");
    assert!(!st.spent, "no global budget is spent");
    assert_eq!(st.skipped.len(), 1);
    assert_eq!(st.skipped[0].model_id.as_str(), "r-0");
    assert_eq!(
        st.skipped[0].limit,
        "model_info.health_check_max_probes_per_minute"
    );
    advance(Duration::from_secs(30)).await;
    round(&p).await;
    assert_eq!(hits(&ups[0], BILLED), 2, "its minute is over");
}

#[tokio::test(start_paused = true)]
async fn the_daily_cost_budget_stops_billing_until_the_day_is_over() {
    let ups = [Upstream::ok()];
    // A chat probe: 5 prompt tokens × 0.01 + 16 max_tokens × 0.1 = 1.65.
    let d = Deployment::builder("r", "openai/gpt-4o")
        .id("r-0")
        .api_base(ups[0].v1())
        .health_check_timeout(Duration::from_secs(3600))
        .cost_per_token(0.01, 0.1)
        .build();
    let state = state_with(vec![d], |b| {
        b.health_check_interval(Duration::from_secs(3600))
            .health_check_max_cost_per_day(4.0)
    });
    let p = probes(&state);
    for _ in 0..5 {
        round(&p).await;
        advance(Duration::from_secs(3600)).await;
    }
    assert_eq!(
        hits(&ups[0], BILLED),
        2,
        "2 × 1.65 fits in 4.0, a third does not"
    );
    let st = p.budget_status().unwrap();
    assert!(st.spent);
    assert_eq!(
        st.limit,
        Some("general_settings.health_check_max_cost_per_day")
    );
    assert!((st.cost_today - 3.3).abs() < 1e-9, "{}", st.cost_today);
    // The day (opened by the first billed probe) ends; billing resumes.
    advance(Duration::from_secs(19 * 3600)).await;
    round(&p).await;
    assert_eq!(hits(&ups[0], BILLED), 3);
    assert!(!p.budget_status().unwrap().spent);
}

/// The start instants of a round's probes, offset from the round's start: the round runs on
/// its own task while the clock is advanced by hand in 100 ms steps (held still otherwise).
async fn starts(seed: u64, n: usize, spread: f64) -> Vec<Duration> {
    let ups: Vec<Upstream> = (0..n).map(|_| Upstream::ok()).collect();
    let state = state_with(deployments(n, &ups), |b| {
        b.health_check_interval(Duration::from_secs(60))
            .health_check_spread(spread)
            .health_check_concurrency(NonZeroUsize::new(n).unwrap())
    });
    let p = ProbeLoop::builder(&state)
        .defaults(ProbeDefaults::default())
        .seed(seed)
        .build()
        .expect("loop");
    let report = held(async {
        let task = tokio::spawn({
            let p = p.clone();
            async move { p.run_round().await }
        });
        let t0 = Instant::now();
        while !task.is_finished() && t0.elapsed() < Duration::from_secs(60) {
            advance(Duration::from_millis(100)).await;
        }
        task.await.expect("round").expect("alive")
    })
    .await;
    assert_eq!(ups.iter().map(|u| hits(u, BILLED)).sum::<usize>(), n);
    let mut v: Vec<Duration> = report
        .results
        .iter()
        .map(|r| (r.checked_at - r.latency).saturating_duration_since(report.started_at))
        .collect();
    v.sort();
    v
}

#[tokio::test(start_paused = true)]
async fn probes_spread_over_the_interval_reproducibly() {
    let a = starts(42, 12, 0.5).await;
    assert_eq!(a.len(), 12);
    let distinct: std::collections::BTreeSet<_> = a.iter().collect();
    assert!(distinct.len() >= 8, "not all at once: {a:?}");
    assert!(
        a.iter().all(|d| *d < Duration::from_secs(30)),
        "all within spread × interval = 30 s: {a:?}"
    );
    assert!(
        a[a.len() - 1] - a[0] > Duration::from_secs(10),
        "spread out: {a:?}"
    );
    assert_eq!(
        starts(42, 12, 0.5).await,
        a,
        "the same seed, the same schedule"
    );
    assert_ne!(
        starts(43, 12, 0.5).await,
        a,
        "another seed, another schedule"
    );
    let at_once = starts(42, 12, 0.0).await;
    assert!(at_once.iter().all(|d| d.is_zero()), "spread 0: {at_once:?}");
}

#[tokio::test(start_paused = true)]
async fn the_cheap_tier_per_provider() {
    let up = Upstream::ok();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_base = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let mk = |id: &str, model: &str, base: String| {
        Deployment::builder("r", model)
            .id(id)
            .api_base(base)
            .api_key("sk-cheap-key-123456")
            .health_check_timeout(Duration::from_secs(3600))
            .build()
    };
    let ds = vec![
        mk("anthropic", "anthropic/claude-3-5-haiku", up.base()),
        mk("azure", "azure/gpt-4o", up.base()),
        mk("perplexity", "perplexity/sonar", up.base()),
        mk("gone", "perplexity/sonar", closed_base),
    ];
    let state = state_with(ds, |b| {
        b.health_check_interval(INTERVAL)
            .health_check_billed_every(NonZeroU32::new(2).unwrap())
    });
    let p = probes(&state);
    round(&p).await; // billed
    let before = up.count();
    advance(INTERVAL).await;
    round(&p).await; // cheap only
    let cheap: Vec<_> = up.requests()[before..].to_vec();
    let anthropic = cheap
        .iter()
        .find(|r| r.path == "/v1/models")
        .expect("anthropic lists its models");
    assert_eq!(anthropic.method, http::Method::GET);
    assert_eq!(anthropic.header("x-api-key"), Some("sk-cheap-key-123456"));
    assert_eq!(anthropic.header("anthropic-version"), Some("2023-06-01"));
    let azure = cheap
        .iter()
        .find(|r| r.path == "/openai/models")
        .expect("azure lists its models");
    assert!(
        azure
            .query
            .as_deref()
            .is_some_and(|q| q.starts_with("api-version="))
    );
    assert_eq!(azure.header("api-key"), Some("sk-cheap-key-123456"));
    assert_eq!(
        cheap.len(),
        2,
        "perplexity's cheap tier is a connect: {cheap:#?}"
    );
    let snap = state.load();
    for id in ["anthropic", "azure", "perplexity"] {
        let r = snap.health(id).expect(id);
        assert!(r.healthy && r.tier == Some(ProbeTier::Cheap), "{id}: {r:?}");
    }
    let gone = snap.health("gone").unwrap();
    assert!(
        !gone.healthy && gone.tier == Some(ProbeTier::Cheap),
        "{gone:?}"
    );
    assert!(
        gone.reason
            .as_deref()
            .is_some_and(|r| r.starts_with("connect")),
        "{gone:?}"
    );
}
