//! Slow start (`router_settings.slow_start_window`): a deployment back in rotation serves a
//! share that ramps from 10 % of its weight to all of it over the window. Time is paused.

use std::{collections::HashMap, time::Duration};

use crate::support::{Upstreams, config, request};
use tokio::time::{Instant, advance};
use tower::{Service, ServiceExt};
use tower_health_routing::{
    Config, DeploymentId, HealthRoutingLayer, HealthState,
    config::{OutlierDetection, RoutingStrategy},
    health::HealthRecord,
    routing::Picker,
};

const ROUTE: &str = "gpt-4o";
const WINDOW: Duration = Duration::from_secs(60);

fn record(state: &HealthState, id: &str, healthy: bool) {
    let now = Instant::now();
    let rec = if healthy {
        HealthRecord::healthy(now)
    } else {
        HealthRecord::unhealthy(now, "status 500", Some(500))
    };
    state.record([(DeploymentId::from(id), rec)]);
}

/// The share of `n` picks that went to `id`.
fn share(state: &HealthState, picker: &mut Picker, id: &str, n: usize) -> f64 {
    let mut counts: HashMap<String, usize> = HashMap::new();
    for _ in 0..n {
        let snap = state.load();
        let p = picker.pick(&snap, ROUTE, &[]).expect("never refused");
        *counts.entry(p.deployment().id().to_string()).or_default() += 1;
    }
    counts.get(id).copied().unwrap_or(0) as f64 / n as f64
}

fn state(window: Option<Duration>, strategy: RoutingStrategy) -> HealthState {
    let mut b = config(ROUTE, 2)
        .enable_health_check_routing(true)
        .health_check_interval(Duration::from_secs(10))
        .routing_strategy(strategy);
    if let Some(w) = window {
        b = b.slow_start_window(w);
    }
    HealthState::new(b.build().unwrap())
}

#[tokio::test(start_paused = true)]
async fn a_recovered_deployment_ramps_from_the_floor_to_its_full_weight() {
    let state = state(Some(WINDOW), RoutingStrategy::SimpleShuffle);
    record(&state, "d1", false);
    record(&state, "d1", true);
    let mut picker = Picker::new(state.clone()).with_seed(1);
    // Weights 1 and 0.1: d1 takes 0.1 / 1.1 ≈ 9 %.
    let s0 = share(&state, &mut picker, "d1", 4000);
    assert!((0.06..0.13).contains(&s0), "at the start: {s0}");
    // Half-way: 0.55 / 1.55 ≈ 35 %.
    advance(WINDOW / 2).await;
    let s1 = share(&state, &mut picker, "d1", 4000);
    assert!((0.30..0.41).contains(&s1), "half-way: {s1}");
    // After the window: an even split.
    advance(WINDOW / 2).await;
    let s2 = share(&state, &mut picker, "d1", 4000);
    assert!((0.45..0.55).contains(&s2), "after: {s2}");
}

#[tokio::test(start_paused = true)]
async fn off_by_default_a_recovered_deployment_takes_its_share_at_once() {
    let state = state(None, RoutingStrategy::SimpleShuffle);
    record(&state, "d1", false);
    record(&state, "d1", true);
    let mut picker = Picker::new(state.clone()).with_seed(2);
    let s = share(&state, &mut picker, "d1", 4000);
    assert!((0.45..0.55).contains(&s), "{s}");
}

#[tokio::test(start_paused = true)]
async fn a_deployment_never_out_is_not_ramped() {
    let state = state(Some(WINDOW), RoutingStrategy::SimpleShuffle);
    record(&state, "d1", true);
    let mut picker = Picker::new(state.clone()).with_seed(3);
    let s = share(&state, &mut picker, "d1", 4000);
    assert!((0.45..0.55).contains(&s), "{s}");
}

#[tokio::test(start_paused = true)]
async fn round_robin_is_biased_too() {
    let state = state(Some(WINDOW), RoutingStrategy::RoundRobin);
    record(&state, "d1", false);
    record(&state, "d1", true);
    let mut picker = Picker::new(state.clone()).with_seed(4);
    let s = share(&state, &mut picker, "d1", 4000);
    assert!(s < 0.2, "{s}");
}

#[tokio::test(start_paused = true)]
async fn a_ramping_deployment_alone_still_serves_every_request() {
    let cfg = Config::builder()
        .deployments(crate::support::deployments(ROUTE, 1))
        .enable_health_check_routing(true)
        .slow_start_window(WINDOW)
        .build()
        .unwrap();
    let state = HealthState::new(cfg);
    record(&state, "d0", false);
    record(&state, "d0", true);
    let mut picker = Picker::new(state.clone()).with_seed(5);
    assert_eq!(share(&state, &mut picker, "d0", 500), 1.0);
}

#[tokio::test(start_paused = true)]
async fn the_ramp_starts_when_an_ejection_ends() {
    let mut od = OutlierDetection::default();
    od.consecutive_failures = Some(1);
    od.max_ejection_percent = 100.0;
    od.base_ejection_time = Duration::from_secs(30);
    let cfg = config(ROUTE, 2)
        .allowed_fails(1_000_000)
        .outlier_detection(od)
        .slow_start_window(WINDOW)
        .build()
        .unwrap();
    let state = HealthState::new(cfg);
    let up = Upstreams::new();
    up.set_status(1, 500);
    let layer = HealthRoutingLayer::from_state(state.clone()).with_seed(6);
    let mut svc = tower::Layer::layer(&layer, up.service());
    while state.ejection_remaining("d1").is_none() {
        let _ = svc.ready().await.unwrap().call(request(ROUTE)).await;
    }
    up.set_status(1, 200);
    advance(Duration::from_secs(30)).await;
    assert_eq!(state.ejection_remaining("d1"), None);
    let before = up.hits(1);
    for _ in 0..2000 {
        let _ = svc.ready().await.unwrap().call(request(ROUTE)).await;
    }
    let s = (up.hits(1) - before) as f64 / 2000.0;
    assert!((0.05..0.14).contains(&s), "just back from ejection: {s}");
}

#[tokio::test(start_paused = true)]
async fn the_ramp_starts_when_a_cooldown_ends() {
    let cfg = config(ROUTE, 2)
        .cooldown_time(Duration::from_secs(5))
        .slow_start_window(WINDOW)
        .build()
        .unwrap();
    let state = HealthState::new(cfg);
    let up = Upstreams::new();
    up.set_status(1, 429);
    let layer = HealthRoutingLayer::from_state(state.clone()).with_seed(7);
    let mut svc = tower::Layer::layer(&layer, up.service());
    while state.cooldown_remaining("d1").is_none() {
        let _ = svc.ready().await.unwrap().call(request(ROUTE)).await;
    }
    up.set_status(1, 200);
    advance(Duration::from_secs(5)).await;
    let before = up.hits(1);
    for _ in 0..2000 {
        let _ = svc.ready().await.unwrap().call(request(ROUTE)).await;
    }
    let s = (up.hits(1) - before) as f64 / 2000.0;
    assert!((0.05..0.14).contains(&s), "just out of cooldown: {s}");
    advance(WINDOW).await;
    let before = up.hits(1);
    for _ in 0..2000 {
        let _ = svc.ready().await.unwrap().call(request(ROUTE)).await;
    }
    let s = (up.hits(1) - before) as f64 / 2000.0;
    assert!((0.44..0.56).contains(&s), "after the window: {s}");
}
