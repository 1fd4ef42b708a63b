//! Outlier ejection (`router_settings.outlier_detection`) and the panic threshold
//! (`router_settings.panic_threshold_percent`), through the layer and the picker.
//! Time is paused.

use std::{collections::HashMap, time::Duration};

use crate::support::{Logs, Upstreams, config, request};
use tokio::time::{Instant, advance};
use tower::{Service, ServiceExt};
use tower_health_routing::{
    DeploymentId, HealthRoutingLayer, HealthState, NoDeploymentAvailable, config::OutlierDetection,
    health::HealthRecord, routing::Picker,
};

const ROUTE: &str = "gpt-4o";
const S: Duration = Duration::from_secs(1);

/// Ejection on `consecutive_failures` in a row, with cooldown kept out of the way.
fn od(consecutive: u32) -> OutlierDetection {
    let mut od = OutlierDetection::default();
    od.consecutive_failures = Some(consecutive);
    od.max_ejection_percent = 100.0;
    od
}

fn ejecting(n: usize, od: OutlierDetection) -> HealthState {
    HealthState::new(
        config(ROUTE, n)
            .allowed_fails(1_000_000)
            .outlier_detection(od)
            .build()
            .unwrap(),
    )
}

type Svc = tower_health_routing::HealthRouting<crate::support::BoxInner>;

fn service(state: &HealthState, up: &Upstreams, seed: u64) -> Svc {
    let layer = HealthRoutingLayer::from_state(state.clone()).with_seed(seed);
    tower::Layer::layer(&layer, up.service())
}

async fn send(svc: &mut Svc, n: usize) {
    for _ in 0..n {
        let _ = svc.ready().await.unwrap().call(request(ROUTE)).await;
    }
}

/// Sends until `cond` holds (at most 10 000 requests).
async fn send_until(svc: &mut Svc, mut cond: impl FnMut() -> bool) {
    for _ in 0..10_000 {
        if cond() {
            return;
        }
        send(svc, 1).await;
    }
    panic!("condition never held");
}

#[tokio::test(start_paused = true)]
async fn consecutive_failures_eject_for_base_ejection_time() {
    let state = ejecting(3, od(3));
    let up = Upstreams::new();
    up.set_status(0, 500);
    let mut svc = service(&state, &up, 1);
    send_until(&mut svc, || up.hits(0) == 2).await;
    assert_eq!(
        state.ejection_remaining("d0"),
        None,
        "two failures are not three"
    );
    send_until(&mut svc, || up.hits(0) == 3).await;
    assert_eq!(state.ejection_remaining("d0"), Some(30 * S));
    assert_eq!(state.ejections("d0"), 1);
    assert_eq!(
        state.cooldown_remaining("d0"),
        None,
        "cooldown is a separate rule"
    );
    send(&mut svc, 200).await;
    assert_eq!(up.hits(0), 3, "no traffic while ejected");
    advance(30 * S + Duration::from_millis(1)).await;
    up.set_status(0, 200);
    send(&mut svc, 100).await;
    assert!(up.hits(0) > 10, "back in rotation: {}", up.hits(0));
}

#[tokio::test(start_paused = true)]
async fn a_success_between_failures_resets_the_streak() {
    let state = ejecting(2, od(3));
    let up = Upstreams::new();
    let mut svc = service(&state, &up, 2);
    for round in 0..5 {
        up.set_status(0, 500);
        let start = up.hits(0);
        send_until(&mut svc, || up.hits(0) == start + 2).await;
        up.set_status(0, 200);
        send_until(&mut svc, || up.hits(0) == start + 3).await;
        assert_eq!(state.ejection_remaining("d0"), None, "round {round}");
    }
}

#[tokio::test(start_paused = true)]
async fn ejection_time_is_base_times_ejections_capped_by_max() {
    let mut o = od(1);
    o.base_ejection_time = 10 * S;
    o.max_ejection_time = 25 * S;
    o.interval = 60 * S;
    let state = ejecting(2, o);
    let up = Upstreams::new();
    up.set_status(0, 500);
    let mut svc = service(&state, &up, 3);
    let mut got = Vec::new();
    for n in 1..=4u64 {
        send_until(&mut svc, || up.hits(0) == n).await;
        let left = state.ejection_remaining("d0").expect("ejected");
        got.push(left.as_secs());
        advance(left + Duration::from_millis(1)).await;
    }
    assert_eq!(got, [10, 20, 25, 25]);
    assert_eq!(state.ejections("d0"), 4);
}

#[tokio::test(start_paused = true)]
async fn the_multiplier_decays_by_one_per_interval_back_in_rotation() {
    let mut o = od(1);
    o.base_ejection_time = 10 * S;
    o.interval = 5 * S;
    let state = ejecting(2, o);
    let up = Upstreams::new();
    up.set_status(0, 500);
    let mut svc = service(&state, &up, 4);
    for n in 1..=3u64 {
        send_until(&mut svc, || up.hits(0) == n).await;
        advance(state.ejection_remaining("d0").unwrap() + Duration::from_millis(1)).await;
    }
    assert_eq!(state.ejections("d0"), 3);
    // Two intervals back in rotation: 3 - 2 + 1 = the second multiplier.
    up.set_status(0, 200);
    advance(10 * S).await;
    up.set_status(0, 500);
    send_until(&mut svc, || state.ejection_remaining("d0").is_some()).await;
    assert_eq!(state.ejections("d0"), 2);
    assert_eq!(state.ejection_remaining("d0"), Some(20 * S));
}

#[tokio::test(start_paused = true)]
async fn max_ejection_percent_caps_how_much_of_a_route_is_out() {
    // One may always go; then only while fewer than the share are out.
    for (pct, want) in [(10.0, 1), (25.0, 1), (50.0, 2), (100.0, 4)] {
        let mut o = od(2);
        o.max_ejection_percent = pct;
        let state = ejecting(4, o);
        let up = Upstreams::new();
        for i in 0..4 {
            up.set_status(i, 500);
        }
        let mut svc = service(&state, &up, 5);
        send(&mut svc, 400).await;
        let out = (0..4)
            .filter(|i| state.ejection_remaining(&format!("d{i}")).is_some())
            .count();
        assert_eq!(out, want, "max_ejection_percent {pct}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_lone_deployment_is_never_ejected() {
    let state = ejecting(1, od(1));
    let up = Upstreams::new();
    up.set_status(0, 500);
    let mut svc = service(&state, &up, 6);
    send(&mut svc, 50).await;
    assert_eq!(up.hits(0), 50);
    assert_eq!(state.ejection_remaining("d0"), None);
}

#[tokio::test(start_paused = true)]
async fn failure_percentage_needs_minimum_requests_within_the_interval() {
    let mut o = OutlierDetection::default();
    o.consecutive_failures = None;
    o.failure_percentage = Some(50.0);
    o.minimum_requests = 20;
    o.interval = 10 * S;
    o.max_ejection_percent = 100.0;
    let state = ejecting(2, o);
    let up = Upstreams::new();
    up.set_status(0, 500);
    let mut svc = service(&state, &up, 7);
    send_until(&mut svc, || up.hits(0) == 19).await;
    assert_eq!(
        state.ejection_remaining("d0"),
        None,
        "19 requests < minimum_requests"
    );
    // A new interval: the window starts empty.
    advance(10 * S).await;
    send_until(&mut svc, || up.hits(0) == 38).await;
    assert_eq!(state.ejection_remaining("d0"), None, "19 in this interval");
    send_until(&mut svc, || up.hits(0) == 39).await;
    assert_eq!(state.ejection_remaining("d0"), Some(30 * S));
    assert_eq!(state.ejection_remaining("d1"), None, "d1 answers 200");
}

#[tokio::test(start_paused = true)]
async fn caller_faults_never_eject() {
    let state = ejecting(2, od(1));
    let up = Upstreams::new();
    up.set_status(0, 400);
    let mut svc = service(&state, &up, 8);
    send(&mut svc, 200).await;
    assert!(up.hits(0) > 50);
    assert_eq!(state.ejection_remaining("d0"), None);
}

#[tokio::test(start_paused = true)]
async fn an_ejection_is_logged_and_refusals_wait_for_the_first_return() {
    let (logs, _) = Logs::capture();
    let state = ejecting(2, od(1));
    let up = Upstreams::new();
    up.set_status(0, 500);
    up.set_status(1, 500);
    let mut svc = service(&state, &up, 9);
    send(&mut svc, 10).await;
    assert!(logs.count("deployment ejected") >= 1, "{}", logs.text());
    // 100 %: both are out; the refusal says when the first comes back.
    assert!(state.ejection_remaining("d0").is_some());
    assert!(state.ejection_remaining("d1").is_some());
    let err = svc
        .ready()
        .await
        .unwrap()
        .call(request(ROUTE))
        .await
        .unwrap_err();
    let e = err
        .downcast_ref::<NoDeploymentAvailable>()
        .expect("refused");
    assert!(
        e.retry_after() > Duration::from_secs(29),
        "{:?}",
        e.retry_after()
    );
}

// === panic threshold ===

fn mark(state: &HealthState, failed: &[&str]) {
    let now = Instant::now();
    state.record(failed.iter().map(|id| {
        (
            DeploymentId::from(*id),
            HealthRecord::unhealthy(now, "status 500", Some(500)),
        )
    }));
}

fn panicking(n: usize, pct: Option<f64>) -> HealthState {
    let mut b = config(ROUTE, n)
        .enable_health_check_routing(true)
        .health_check_interval(Duration::from_secs(10));
    if let Some(p) = pct {
        b = b.panic_threshold_percent(p);
    }
    HealthState::new(b.build().unwrap())
}

fn picks(state: &HealthState, n: usize) -> (HashMap<String, usize>, usize) {
    let mut picker = Picker::new(state.clone()).with_seed(11);
    let mut counts = HashMap::new();
    let mut bypassed = 0;
    for _ in 0..n {
        let snap = state.load();
        let p = picker.pick(&snap, ROUTE, &[]).expect("a deployment");
        bypassed += usize::from(p.bypassed_health_filter());
        *counts.entry(p.deployment().id().to_string()).or_default() += 1;
    }
    (counts, bypassed)
}

#[tokio::test(start_paused = true)]
async fn below_the_panic_threshold_every_deployment_serves() {
    // 1 of 4 failed: 75 % pass, below an 80 % threshold.
    let state = panicking(4, Some(80.0));
    mark(&state, &["d1"]);
    let (c, bypassed) = picks(&state, 1000);
    assert!(c.get("d1").copied().unwrap_or(0) > 150, "{c:?}");
    assert_eq!(bypassed, 1000);
    // At or above the threshold the filter holds.
    let state = panicking(4, Some(75.0));
    mark(&state, &["d1"]);
    let (c, bypassed) = picks(&state, 1000);
    assert_eq!(c.get("d1"), None, "{c:?}");
    assert_eq!(bypassed, 0);
}

#[tokio::test(start_paused = true)]
async fn without_a_threshold_the_bypass_is_all_or_nothing() {
    let state = panicking(4, None);
    mark(&state, &["d0", "d1", "d2"]);
    let (c, bypassed) = picks(&state, 300);
    assert_eq!(c.keys().collect::<Vec<_>>(), ["d3"], "{c:?}");
    assert_eq!(bypassed, 0);
    mark(&state, &["d3"]);
    let (_, bypassed) = picks(&state, 300);
    assert_eq!(bypassed, 300);
}

#[tokio::test(start_paused = true)]
async fn a_zero_threshold_never_bypasses() {
    let (logs, _) = Logs::capture();
    let state = panicking(2, Some(0.0));
    mark(&state, &["d0", "d1"]);
    let mut picker = Picker::new(state.clone()).with_seed(12);
    let snap = state.load();
    let err = picker.pick(&snap, ROUTE, &[]).unwrap_err();
    assert!(err.to_string().contains(ROUTE), "{err}");
    assert_eq!(logs.count("bypassing health filter"), 0, "{}", logs.text());
}

#[tokio::test(start_paused = true)]
async fn a_panic_is_logged_as_the_bypass_is() {
    let (logs, _) = Logs::capture();
    let state = panicking(4, Some(60.0));
    mark(&state, &["d0", "d1"]);
    let _ = picks(&state, 10);
    assert_eq!(
        logs.count("All deployments marked unhealthy by health checks, bypassing health filter"),
        1,
        "{}",
        logs.text()
    );
}
