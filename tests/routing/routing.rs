//! The routing pipeline, branch by branch, through the public API: health filter,
//! staleness, bypass, cooldown, strategies, and the errors. Time is paused.

use std::{collections::HashMap, time::Duration};

use crate::support::{Logs, Upstreams, config, request};
use tokio::time::{Instant, advance};
use tower::{Service, ServiceExt};
use tower_health_routing::{
    BoxError, Deployment, DeploymentId, HealthRoutingLayer, HealthState, MissingRoute,
    NoDeploymentAvailable, UnknownRoute, config::RoutingStrategy, health::HealthRecord,
    routing::Picker,
};

const ROUTE: &str = "gpt-4o";

fn mark(state: &HealthState, results: &[(&str, bool)]) {
    let now = Instant::now();
    state.record(results.iter().map(|(id, ok)| {
        let rec = if *ok {
            HealthRecord::healthy(now)
        } else {
            HealthRecord::unhealthy(now, "status 500", Some(500))
        };
        (DeploymentId::from(*id), rec)
    }));
}

/// How often each id is picked in `n` decisions.
fn picks(picker: &mut Picker, state: &HealthState, n: usize) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for _ in 0..n {
        let snap = state.load();
        let p = picker.pick(&snap, ROUTE, &[]).expect("a deployment");
        *counts.entry(p.deployment().id().to_string()).or_default() += 1;
    }
    counts
}

/// A state over `ds` with every other setting at its default.
fn state_of(ds: impl IntoIterator<Item = Deployment>) -> HealthState {
    HealthState::new(
        tower_health_routing::Config::builder()
            .deployments(ds)
            .build()
            .unwrap(),
    )
}

fn health_routed(n: usize) -> HealthState {
    HealthState::new(
        config(ROUTE, n)
            .enable_health_check_routing(true)
            .health_check_interval(Duration::from_secs(10))
            .build()
            .unwrap(),
    )
}

#[tokio::test(start_paused = true)]
async fn unhealthy_deployments_are_dropped() {
    let state = health_routed(3);
    mark(&state, &[("d0", true), ("d1", false), ("d2", true)]);
    let mut picker = Picker::new(state.clone()).with_seed(1);
    let c = picks(&mut picker, &state, 1000);
    assert_eq!(c.get("d1"), None, "{c:?}");
    assert!(c["d0"] > 300 && c["d2"] > 300, "{c:?}");
}

#[tokio::test(start_paused = true)]
async fn health_filter_is_off_when_routing_is_disabled() {
    let state = HealthState::new(config(ROUTE, 3).build().unwrap());
    mark(&state, &[("d1", false)]);
    let mut picker = Picker::new(state.clone()).with_seed(2);
    assert!(
        picks(&mut picker, &state, 300)
            .get("d1")
            .copied()
            .unwrap_or(0)
            > 50
    );
}

#[tokio::test(start_paused = true)]
async fn stale_failed_results_are_ignored_on_either_side_of_the_threshold() {
    // Interval 10 s, so the staleness threshold is 20 s.
    let state = health_routed(2);
    mark(&state, &[("d0", true), ("d1", false)]);
    let mut picker = Picker::new(state.clone()).with_seed(3);
    advance(Duration::from_secs(20)).await;
    assert_eq!(
        picks(&mut picker, &state, 200).get("d1"),
        None,
        "exactly at the threshold: still fresh"
    );
    advance(Duration::from_millis(1)).await;
    tokio::task::yield_now().await; // let the staleness watchdog republish
    assert!(
        picks(&mut picker, &state, 200)
            .get("d1")
            .copied()
            .unwrap_or(0)
            > 50,
        "past it: stale = unknown"
    );
    assert!(state.snapshot().is_stale("d1", Instant::now()));
    // A new failed result is fresh again.
    mark(&state, &[("d1", false)]);
    assert_eq!(picks(&mut picker, &state, 200).get("d1"), None);
}

#[tokio::test(start_paused = true)]
async fn a_custom_staleness_threshold_is_honoured() {
    let state = HealthState::new(
        config(ROUTE, 2)
            .enable_health_check_routing(true)
            .health_check_interval(Duration::from_secs(10))
            .health_check_staleness_threshold(Duration::from_secs(90))
            .build()
            .unwrap(),
    );
    mark(&state, &[("d1", false)]);
    let mut picker = Picker::new(state.clone()).with_seed(4);
    advance(Duration::from_secs(60)).await;
    assert_eq!(picks(&mut picker, &state, 100).get("d1"), None);
    advance(Duration::from_secs(31)).await;
    tokio::task::yield_now().await;
    assert!(picks(&mut picker, &state, 100).contains_key("d1"));
}

#[tokio::test(start_paused = true)]
async fn all_unhealthy_bypasses_the_filter_and_warns_once_per_snapshot() {
    let state = health_routed(3);
    mark(&state, &[("d0", false), ("d1", false), ("d2", false)]);
    let (logs, _g) = Logs::capture();
    let mut picker = Picker::new(state.clone()).with_seed(5);
    let snap = state.load();
    for _ in 0..50 {
        let p = picker.pick(&snap, ROUTE, &[]).expect("the bypass serves");
        assert!(p.bypassed_health_filter());
    }
    drop(snap);
    let warning = "All deployments marked unhealthy by health checks, bypassing health filter";
    assert_eq!(logs.count(warning), 1, "{}", logs.text());
    mark(&state, &[("d0", false)]);
    let snap = state.load();
    picker.pick(&snap, ROUTE, &[]).unwrap();
    assert_eq!(logs.count(warning), 2, "a new snapshot warns again");
    assert!(logs.text().contains("WARN"));
}

#[tokio::test(start_paused = true)]
async fn cooldown_still_applies_after_a_bypass() {
    let state = health_routed(3);
    mark(&state, &[("d0", false), ("d1", false), ("d2", false)]);
    let up = Upstreams::new();
    up.set_status(1, 429);
    let mut svc = HealthRoutingLayer::from_state(state.clone())
        .with_seed(6)
        .layer_service(up.service());
    // Requests until d1 has answered 429 once (and so entered cooldown).
    while up.hits(1) == 0 {
        let _ = svc.ready().await.unwrap().call(request(ROUTE)).await;
    }
    assert!(state.cooldown_remaining("d1").is_some());
    let before = up.hits(1);
    for _ in 0..200 {
        let resp = svc
            .ready()
            .await
            .unwrap()
            .call(request(ROUTE))
            .await
            .unwrap();
        assert_ne!(resp.into_body().into_inner(), "d1");
    }
    assert_eq!(up.hits(1), before);
}

#[tokio::test(start_paused = true)]
async fn cooldown_is_entered_on_429_and_left_after_cooldown_time() {
    let state = HealthState::new(
        config(ROUTE, 2)
            .cooldown_time(Duration::from_secs(5))
            .build()
            .unwrap(),
    );
    let up = Upstreams::new();
    up.set_status(0, 429);
    let mut svc = HealthRoutingLayer::from_state(state.clone())
        .with_seed(7)
        .layer_service(up.service());
    while up.hits(0) == 0 {
        let _ = svc.ready().await.unwrap().call(request(ROUTE)).await;
    }
    let left = state.cooldown_remaining("d0").expect("in cooldown");
    assert_eq!(left, Duration::from_secs(5));
    up.set_status(0, 200);
    for _ in 0..50 {
        svc.ready()
            .await
            .unwrap()
            .call(request(ROUTE))
            .await
            .unwrap();
    }
    assert_eq!(up.hits(0), 1, "no traffic while cooling down");
    advance(Duration::from_secs(5) + Duration::from_millis(1)).await;
    assert_eq!(state.cooldown_remaining("d0"), None);
    for _ in 0..50 {
        svc.ready()
            .await
            .unwrap()
            .call(request(ROUTE))
            .await
            .unwrap();
    }
    assert!(up.hits(0) > 5, "back in rotation: {}", up.hits(0));
}

#[tokio::test(start_paused = true)]
async fn retry_after_extends_the_cooldown() {
    let state = HealthState::new(config(ROUTE, 2).build().unwrap());
    let up = Upstreams::new();
    up.set_status(0, 429);
    up.set_retry_after(0, 30);
    let mut svc = HealthRoutingLayer::from_state(state.clone())
        .with_seed(8)
        .layer_service(up.service());
    while up.hits(0) == 0 {
        let _ = svc.ready().await.unwrap().call(request(ROUTE)).await;
    }
    assert_eq!(
        state.cooldown_remaining("d0"),
        Some(Duration::from_secs(30))
    );
}

#[tokio::test(start_paused = true)]
async fn a_lone_deployment_is_not_cooled_down_by_a_429() {
    let state = HealthState::new(config(ROUTE, 1).build().unwrap());
    let up = Upstreams::new();
    up.set_status(0, 429);
    let mut svc = HealthRoutingLayer::from_state(state.clone()).layer_service(up.service());
    for _ in 0..20 {
        let resp = svc
            .ready()
            .await
            .unwrap()
            .call(request(ROUTE))
            .await
            .unwrap();
        assert_eq!(resp.status(), 429, "the upstream's answer passes through");
    }
    assert_eq!(state.cooldown_remaining("d0"), None);
    assert_eq!(up.hits(0), 20);
}

#[tokio::test(start_paused = true)]
async fn every_deployment_cooling_down_is_a_named_error_with_retry_after() {
    let state = HealthState::new(
        config(ROUTE, 2)
            .allowed_fails(0)
            .cooldown_time(Duration::from_secs(10))
            .build()
            .unwrap(),
    );
    let up = Upstreams::new();
    up.set_status(0, 500);
    up.set_status(1, 503);
    let mut svc = HealthRoutingLayer::from_state(state.clone())
        .with_seed(9)
        .layer_service(up.service());
    svc.ready()
        .await
        .unwrap()
        .call(request(ROUTE))
        .await
        .unwrap();
    advance(Duration::from_secs(2)).await;
    svc.ready()
        .await
        .unwrap()
        .call(request(ROUTE))
        .await
        .unwrap();
    let err: BoxError = svc
        .ready()
        .await
        .unwrap()
        .call(request(ROUTE))
        .await
        .unwrap_err();
    let e = err
        .downcast_ref::<NoDeploymentAvailable>()
        .expect("named error");
    assert_eq!(e.route(), ROUTE);
    assert_eq!(
        e.retry_after(),
        Duration::from_secs(8),
        "the first one back: cooled 2 s earlier"
    );
    assert!(e.to_string().contains("gpt-4o"));
}

#[tokio::test(start_paused = true)]
async fn inner_errors_count_as_failures() {
    let state = HealthState::new(config(ROUTE, 2).allowed_fails(0).build().unwrap());
    let mut svc = HealthRoutingLayer::from_state(state.clone())
        .with_seed(10)
        .layer_service(tower::service_fn(|_req: http::Request<String>| async {
            Err::<http::Response<String>, _>(std::io::Error::other("connection refused"))
        }));
    let err = svc
        .ready()
        .await
        .unwrap()
        .call(request(ROUTE))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("connection refused"),
        "the inner error passes through"
    );
    let cooled = ["d0", "d1"]
        .iter()
        .filter(|id| state.cooldown_remaining(id).is_some())
        .count();
    assert_eq!(cooled, 1);
}

#[tokio::test(start_paused = true)]
async fn client_errors_do_not_cool_down() {
    let state = HealthState::new(config(ROUTE, 2).allowed_fails(0).build().unwrap());
    let up = Upstreams::new();
    up.set_status(0, 400);
    up.set_status(1, 422);
    let mut svc = HealthRoutingLayer::from_state(state.clone()).layer_service(up.service());
    for _ in 0..20 {
        svc.ready()
            .await
            .unwrap()
            .call(request(ROUTE))
            .await
            .unwrap();
    }
    assert_eq!(
        (
            state.cooldown_remaining("d0"),
            state.cooldown_remaining("d1")
        ),
        (None, None)
    );
}

#[tokio::test]
async fn unknown_and_missing_routes_are_named_errors() {
    let svc = HealthRoutingLayer::new(config(ROUTE, 1).build().unwrap())
        .layer_service(Upstreams::new().service());
    let err = svc.clone().oneshot(request("nope")).await.unwrap_err();
    assert_eq!(err.downcast_ref::<UnknownRoute>().unwrap().route(), "nope");
    let err = svc
        .oneshot(http::Request::new(String::new()))
        .await
        .unwrap_err();
    assert!(err.is::<MissingRoute>());
}

#[tokio::test]
async fn weighted_shuffle_follows_weights() {
    let ds = [1.0, 2.0, 7.0].iter().enumerate().map(|(i, w)| {
        Deployment::builder(ROUTE, "openai/gpt-4o")
            .id(format!("d{i}"))
            .weight(*w)
            .build()
    });
    let state = state_of(ds);
    let mut picker = Picker::new(state.clone()).with_seed(11);
    let c = picks(&mut picker, &state, 10_000);
    for (id, expect) in [("d0", 1_000.0), ("d1", 2_000.0), ("d2", 7_000.0)] {
        let got = c[id] as f64;
        assert!(
            (got - expect).abs() / expect < 0.08,
            "{id}: {got} vs {expect}"
        );
    }
}

#[tokio::test]
async fn rpm_weighs_when_no_weight_is_given_and_uniform_otherwise() {
    let ds = [100, 300].iter().enumerate().map(|(i, rpm)| {
        Deployment::builder(ROUTE, "openai/gpt-4o")
            .id(format!("d{i}"))
            .rpm(*rpm)
            .build()
    });
    let state = state_of(ds);
    let c = picks(
        &mut Picker::new(state.clone()).with_seed(12),
        &state,
        10_000,
    );
    assert!((c["d1"] as f64 / 7_500.0 - 1.0).abs() < 0.05, "{c:?}");
    let state = HealthState::new(config(ROUTE, 4).build().unwrap());
    let c = picks(
        &mut Picker::new(state.clone()).with_seed(13),
        &state,
        10_000,
    );
    assert!(
        c.values().all(|&n| (n as f64 / 2_500.0 - 1.0).abs() < 0.08),
        "{c:?}"
    );
}

#[tokio::test]
async fn seeded_pickers_repeat_their_choices() {
    let state = HealthState::new(config(ROUTE, 8).build().unwrap());
    let seq = |seed| {
        let mut p = Picker::new(state.clone()).with_seed(seed);
        let snap = state.load();
        (0..32)
            .map(|_| {
                p.pick(&snap, ROUTE, &[])
                    .unwrap()
                    .deployment()
                    .id()
                    .to_string()
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(seq(42), seq(42));
    assert_ne!(seq(42), seq(43));
}

#[tokio::test]
async fn round_robin_takes_turns() {
    let state = HealthState::new(
        config(ROUTE, 3)
            .routing_strategy(RoutingStrategy::RoundRobin)
            .build()
            .unwrap(),
    );
    let mut p = Picker::new(state.clone());
    let snap = state.load();
    let ids: Vec<String> = (0..6)
        .map(|_| {
            p.pick(&snap, ROUTE, &[])
                .unwrap()
                .deployment()
                .id()
                .to_string()
        })
        .collect();
    assert_eq!(ids, ["d0", "d1", "d2", "d0", "d1", "d2"]);
}

#[tokio::test]
async fn excluded_deployments_are_skipped() {
    let state = HealthState::new(config(ROUTE, 3).build().unwrap());
    let mut p = Picker::new(state.clone()).with_seed(14);
    let snap = state.load();
    let exclude = [DeploymentId::from("d0"), DeploymentId::from("d2")];
    for _ in 0..100 {
        assert_eq!(
            p.pick(&snap, ROUTE, &exclude)
                .unwrap()
                .deployment()
                .id()
                .as_str(),
            "d1"
        );
    }
    let all = [
        DeploymentId::from("d0"),
        DeploymentId::from("d1"),
        DeploymentId::from("d2"),
    ];
    assert!(p.pick(&snap, ROUTE, &all).is_err());
}

/// Sends one request per deployment that stays in flight (its upstream sleeps), so the
/// in-flight counts differ; then checks where the next requests go.
#[tokio::test(start_paused = true)]
async fn least_busy_and_p2c_prefer_idle_deployments() {
    for strategy in [
        RoutingStrategy::LeastBusy,
        RoutingStrategy::PowerOfTwoChoices,
    ] {
        let state = HealthState::new(config(ROUTE, 2).routing_strategy(strategy).build().unwrap());
        let up = Upstreams::new();
        up.set_delay(0, Duration::from_secs(60));
        let layer = HealthRoutingLayer::from_state(state.clone()).with_seed(15);
        let svc = layer.layer_service(up.service());
        // Park three requests on d0 (only d0 is available while d1 is excluded).
        let mut parked = Vec::new();
        for _ in 0..3 {
            let mut req = request(ROUTE);
            req.extensions_mut()
                .insert(tower_health_routing::routing::ExcludeDeployments(vec![
                    "d1".into(),
                ]));
            parked.push(tokio::spawn(svc.clone().oneshot(req)));
        }
        tokio::task::yield_now().await;
        assert_eq!(state.in_flight("d0"), 3);
        for _ in 0..20 {
            let resp = svc.clone().oneshot(request(ROUTE)).await.unwrap();
            assert_eq!(resp.into_body().into_inner(), "d1", "{strategy}");
        }
        advance(Duration::from_secs(61)).await;
        for p in parked {
            drop(p.await.unwrap().unwrap());
        }
        assert_eq!(
            state.in_flight("d0"),
            0,
            "guards released with the responses"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn latency_based_prefers_the_fast_deployment() {
    let state = HealthState::new(
        config(ROUTE, 3)
            .routing_strategy(RoutingStrategy::LatencyBased)
            .build()
            .unwrap(),
    );
    let up = Upstreams::new();
    up.set_delay(0, Duration::from_millis(300));
    up.set_delay(1, Duration::from_millis(20));
    up.set_delay(2, Duration::from_millis(100));
    let svc = HealthRoutingLayer::from_state(state.clone())
        .with_seed(16)
        .layer_service(up.service());
    for _ in 0..50 {
        svc.clone().oneshot(request(ROUTE)).await.unwrap();
    }
    // Each is measured once (unmeasured ones go first), then the fast one takes the rest.
    assert_eq!((up.hits(0), up.hits(2)), (1, 1));
    assert_eq!(up.hits(1), 48);
}

trait LayerExt {
    fn layer_service<S>(&self, s: S) -> tower_health_routing::HealthRouting<S>;
}

impl LayerExt for HealthRoutingLayer {
    fn layer_service<S>(&self, s: S) -> tower_health_routing::HealthRouting<S> {
        tower::Layer::layer(self, s)
    }
}

#[tokio::test]
async fn tried_deployments_send_each_clone_elsewhere_and_responses_name_the_deployment() {
    let state = HealthState::new(config(ROUTE, 3).build().unwrap());
    let svc = HealthRoutingLayer::from_state(state)
        .with_response_extension()
        .with_seed(17)
        .layer_service(Upstreams::new().service());
    let mut req = request(ROUTE);
    let tried = tower_health_routing::routing::TriedDeployments::new();
    req.extensions_mut().insert(tried.clone());
    let mut seen = Vec::new();
    for _ in 0..3 {
        let mut again = http::Request::new(String::new());
        *again.extensions_mut() = req.extensions().clone();
        let resp = svc.clone().oneshot(again).await.unwrap();
        let chosen = resp
            .extensions()
            .get::<tower_health_routing::SelectedDeployment>()
            .expect("on the response too");
        assert_eq!(chosen.id().as_str(), resp.body().get_ref());
        seen.push(chosen.id().to_string());
    }
    seen.sort();
    assert_eq!(
        seen,
        ["d0", "d1", "d2"],
        "each attempt went to a new deployment"
    );
    assert_eq!(tried.ids().len(), 3);
    let err = svc.oneshot(req).await.unwrap_err();
    assert!(err.is::<NoDeploymentAvailable>(), "all tried: {err}");
}

#[tokio::test]
async fn responses_name_their_deployment_through_the_body_and_carry_no_extension_by_default() {
    let state = HealthState::new(config(ROUTE, 3).build().unwrap());
    let svc = HealthRoutingLayer::from_state(state)
        .with_seed(3)
        .layer_service(Upstreams::new().service());
    for _ in 0..6 {
        let mut resp = svc.clone().oneshot(request(ROUTE)).await.unwrap();
        assert!(
            resp.extensions()
                .get::<tower_health_routing::SelectedDeployment>()
                .is_none(),
            "no response extension unless asked for"
        );
        // The upstream answers with the id it was sent: the body names the same one,
        // before and after the body ends.
        let chosen = resp
            .body()
            .selected_deployment()
            .expect("routed")
            .id()
            .to_string();
        assert_eq!(chosen, *resp.body().get_ref());
        while let Some(frame) = std::future::poll_fn(|cx| {
            http_body::Body::poll_frame(std::pin::Pin::new(resp.body_mut()), cx)
        })
        .await
        {
            frame.unwrap();
        }
        assert_eq!(
            resp.body()
                .selected_deployment()
                .map(|d| d.id().to_string()),
            Some(chosen)
        );
    }
}
