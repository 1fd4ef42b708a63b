//! The strategies and limits LiteLLM users rely on, through the layer: latency that
//! forgets (re-measures a recovered deployment, never starves one), usage-based with
//! `rpm`/`tpm` limits per minute, cost-based, `max_parallel_requests`,
//! `model_group_alias` and pre-call context-window checks. Time is paused.

use std::{
    collections::HashMap,
    convert::Infallible,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::Duration,
};

use crate::support::{Upstreams, config, deployments, request};
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, StreamBody};
use proptest::prelude::*;
use tokio::time::advance;
use tower::{Layer, ServiceExt};
use tower_health_routing::{
    BoxError, Config, Deployment, HealthRouting, HealthRoutingLayer, NoDeploymentAvailable,
    SelectedDeployment,
    config::{RoutingStrategy, RoutingStrategyArgs},
    routing::{RequestTokens, TokenUsage},
};

const ROUTE: &str = "gpt-4o";

fn layered<S>(cfg: Config, seed: u64, inner: S) -> HealthRouting<S> {
    HealthRoutingLayer::new(cfg).with_seed(seed).layer(inner)
}

/// Sends `n` requests one after another; how many each deployment got.
async fn send<S>(svc: &HealthRouting<S>, n: usize) -> HashMap<String, usize>
where
    HealthRouting<S>: tower::Service<
            Request<String>,
            Response = Response<tower_health_routing::routing::ResponseBody<String>>,
            Error = BoxError,
        > + Clone,
{
    let mut counts = HashMap::new();
    for _ in 0..n {
        let resp = svc.clone().oneshot(request(ROUTE)).await.unwrap();
        let id = resp.body().selected_deployment().unwrap().id().to_string();
        *counts.entry(id).or_default() += 1;
    }
    counts
}

fn hits(c: &HashMap<String, usize>, id: &str) -> usize {
    c.get(id).copied().unwrap_or(0)
}

fn latency_cfg(n: usize) -> tower_health_routing::ConfigBuilder {
    config(ROUTE, n)
        .routing_strategy(RoutingStrategy::LatencyBased)
        // No cooldown in the way of what these tests watch.
        .allowed_fails(1_000_000)
}

// === latency ===

#[tokio::test(start_paused = true)]
async fn latency_re_measures_a_recovered_deployment() {
    let up = Upstreams::new();
    up.set_delay(0, Duration::from_millis(500));
    up.set_delay(1, Duration::from_millis(20));
    let svc = layered(latency_cfg(2).build().unwrap(), 1, up.service());
    // Both measured once, then the fast one takes the traffic.
    let c = send(&svc, 50).await;
    assert_eq!(hits(&c, "d0"), 1, "{c:?}");
    // d0 recovers and is now the fastest. Its estimate (500 ms) decays while it gets no
    // traffic: after ~τ·ln(500/20) ≈ 32 s of requests it is the lowest and measured again.
    up.set_delay(0, Duration::from_millis(5));
    let before = up.hits(0);
    let mut n = 0;
    while up.hits(0) == before {
        svc.clone().oneshot(request(ROUTE)).await.unwrap();
        n += 1;
        assert!(n < 3_000, "d0 never re-measured: starved");
    }
    // Re-measured at 5 ms, it now takes (nearly) all of the traffic.
    let c = send(&svc, 200).await;
    assert!(hits(&c, "d0") >= 190, "{c:?}");
}

#[tokio::test(start_paused = true)]
async fn a_failure_counts_as_a_high_latency() {
    let up = Upstreams::new();
    up.set_delay(0, Duration::from_millis(10));
    up.set_delay(1, Duration::from_millis(50));
    let svc = layered(latency_cfg(2).build().unwrap(), 2, up.service());
    let c = send(&svc, 20).await;
    assert!(hits(&c, "d0") >= 19, "d0 is the fast one: {c:?}");
    // d0 fails fast (a 500 in 10 ms): counted as 30 s, so d1 takes over at once.
    up.set_status(0, 500);
    while up.hits(1) < 2 {
        svc.clone().oneshot(request(ROUTE)).await.unwrap();
    }
    up.set_status(0, 200);
    let c = send(&svc, 100).await;
    assert_eq!(hits(&c, "d0"), 0, "penalised, not back within 5 s: {c:?}");
}

#[tokio::test(start_paused = true)]
async fn lowest_latency_buffer_spreads_over_the_nearly_fastest() {
    let up = Upstreams::new();
    up.set_delay(0, Duration::from_millis(20));
    up.set_delay(1, Duration::from_millis(24));
    up.set_delay(2, Duration::from_millis(200));
    let mut args = RoutingStrategyArgs::default();
    args.lowest_latency_buffer = 0.5;
    let cfg = latency_cfg(3).routing_strategy_args(args).build().unwrap();
    let svc = layered(cfg, 3, up.service());
    let c = send(&svc, 400).await;
    assert!(hits(&c, "d0") > 100 && hits(&c, "d1") > 100, "{c:?}");
    assert_eq!(hits(&c, "d2"), 1, "only its first measurement: {c:?}");
    // Without the buffer the fastest takes nearly everything; d1 is only re-measured
    // each time its estimate has decayed below d0's (τ·ln(24/20) ≈ 1.8 s of traffic).
    let up2 = Upstreams::new();
    up2.set_delay(0, Duration::from_millis(20));
    up2.set_delay(1, Duration::from_millis(24));
    let svc = layered(latency_cfg(2).build().unwrap(), 3, up2.service());
    let c = send(&svc, 100).await;
    assert!((1..=3).contains(&hits(&c, "d1")), "{c:?}");
}

/// A streaming body: headers at once, the first chunk after `ttft`.
fn stream_after(ttft: Duration) -> http_body_util::combinators::UnsyncBoxBody<Bytes, Infallible> {
    let s = futures_util::stream::once(async move {
        tokio::time::sleep(ttft).await;
        Ok::<_, Infallible>(http_body::Frame::data(Bytes::from_static(b"data: {}\n\n")))
    });
    StreamBody::new(s).boxed_unsync()
}

#[tokio::test(start_paused = true)]
async fn streams_are_measured_to_their_first_chunk() {
    // d0 answers its headers at once but its first token comes after 300 ms; d1 takes
    // 50 ms to its headers and streams at once. Time to headers would pick d0.
    let inner = tower::service_fn(|req: Request<String>| async move {
        let id = req
            .extensions()
            .get::<SelectedDeployment>()
            .unwrap()
            .id()
            .to_string();
        let body = if id == "d0" {
            stream_after(Duration::from_millis(300))
        } else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            stream_after(Duration::ZERO)
        };
        let mut resp = Response::new(body);
        resp.extensions_mut().insert(id);
        Ok::<_, Infallible>(resp)
    });
    let svc = layered(latency_cfg(2).build().unwrap(), 4, inner);
    let mut counts: HashMap<String, usize> = HashMap::new();
    for _ in 0..30 {
        let resp = svc.clone().oneshot(request(ROUTE)).await.unwrap();
        let id = resp.extensions().get::<String>().unwrap().clone();
        resp.into_body().collect().await.unwrap();
        *counts.entry(id).or_default() += 1;
    }
    assert_eq!(hits(&counts, "d0"), 1, "{counts:?}");
    assert_eq!(hits(&counts, "d1"), 29, "{counts:?}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(24)
    ))]

    /// No deployment that is healthy and not cooling down goes unpicked for ever under
    /// steady traffic, whatever the latencies, failures and buffer: each is picked within
    /// a bound of simulated time that follows from the decay (n · τ · (ln(max/min) + 1)).
    #[test]
    fn latency_never_starves_a_deployment(
        lat_ms in prop::collection::vec(5u64..200, 2..6),
        failing in prop::collection::vec(any::<bool>(), 6),
        buffer in prop::sample::select(vec![0.0, 0.1, 0.5]),
        seed in any::<u64>(),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(async {
            let n = lat_ms.len();
            let up = Upstreams::new();
            for (i, ms) in lat_ms.iter().enumerate() {
                up.set_delay(i, Duration::from_millis(*ms));
                if failing[i] && i > 0 {
                    up.set_status(i, 503);
                }
            }
            let mut args = RoutingStrategyArgs::default();
            args.lowest_latency_buffer = buffer;
            args.latency_decay = Duration::from_secs(1);
            args.latency_failure_penalty = Duration::from_secs(5);
            let cfg = latency_cfg(n).routing_strategy_args(args).build().unwrap();
            let svc = layered(cfg, seed, up.service());
            let max = 5_000f64; // the penalty, in ms
            let min = *lat_ms.iter().min().unwrap() as f64;
            let bound = Duration::from_secs_f64((n as f64).mul_add((max / min).ln() + 1.0, 5.0));
            let start = tokio::time::Instant::now();
            while start.elapsed() < bound && (0..n).any(|i| up.hits(i) == 0) {
                let _ = svc.clone().oneshot(request(ROUTE)).await;
            }
            for i in 0..n {
                prop_assert!(up.hits(i) > 0, "d{i} starved: latencies {lat_ms:?}, failing {failing:?}");
            }
            Ok(())
        })?;
    }
}

// === usage ===

fn usage_cfg(ds: Vec<Deployment>) -> Config {
    Config::builder()
        .deployments(ds)
        .routing_strategy(RoutingStrategy::UsageBasedV2)
        .build()
        .unwrap()
}

fn dep(i: usize) -> tower_health_routing::DeploymentBuilder {
    Deployment::builder(ROUTE, "openai/gpt-4o")
        .id(format!("d{i}"))
        .api_base(format!("http://d{i}"))
}

#[tokio::test(start_paused = true)]
async fn usage_based_spreads_by_least_used() {
    for strategy in [RoutingStrategy::UsageBased, RoutingStrategy::UsageBasedV2] {
        let cfg = Config::builder()
            .deployments(deployments(ROUTE, 2))
            .routing_strategy(strategy)
            .build()
            .unwrap();
        let svc = layered(cfg, 5, Upstreams::new().service());
        let c = send(&svc, 10).await;
        assert_eq!(
            (hits(&c, "d0"), hits(&c, "d1")),
            (5, 5),
            "{strategy}: {c:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_deployment_at_its_rpm_gets_no_more_that_minute() {
    let cfg = usage_cfg(vec![dep(0).rpm(3).build(), dep(1).rpm(100).build()]);
    let svc = layered(cfg, 6, Upstreams::new().service());
    let c = send(&svc, 20).await;
    assert_eq!((hits(&c, "d0"), hits(&c, "d1")), (3, 17), "{c:?}");
    // Still the same minute: nothing more for d0.
    advance(Duration::from_secs(50)).await;
    let c = send(&svc, 5).await;
    assert_eq!(hits(&c, "d0"), 0, "{c:?}");
    // The next minute: d0 has room again (and is the least used).
    advance(Duration::from_secs(10)).await;
    let c = send(&svc, 2).await;
    assert_eq!(hits(&c, "d0"), 1, "{c:?}");
}

#[tokio::test(start_paused = true)]
async fn every_deployment_at_its_limit_is_refused_until_the_next_minute() {
    let cfg = usage_cfg(vec![dep(0).rpm(1).build(), dep(1).rpm(1).build()]);
    let svc = layered(cfg, 7, Upstreams::new().service());
    advance(Duration::from_secs(15)).await;
    send(&svc, 2).await;
    let err = svc.clone().oneshot(request(ROUTE)).await.unwrap_err();
    let e = err
        .downcast_ref::<NoDeploymentAvailable>()
        .expect("named error");
    assert_eq!(e.retry_after(), Duration::from_secs(45));
    advance(Duration::from_secs(45)).await;
    svc.clone()
        .oneshot(request(ROUTE))
        .await
        .expect("a new minute");
}

#[tokio::test(start_paused = true)]
async fn a_large_route_samples_yet_finds_the_last_deployment_with_room() {
    // Above 4 candidates the strategy samples two; once most are at their limit both
    // samples often are, and the scan still finds the ones with room: every deployment
    // serves exactly its rpm, then the route is refused until the next minute.
    let n = 16; // as many as the test upstreams
    let cfg = usage_cfg((0..n).map(|i| dep(i).rpm(2).build()).collect());
    let svc = layered(cfg, 8, Upstreams::new().service());
    advance(Duration::from_secs(20)).await;
    let c = send(&svc, 2 * n).await;
    for i in 0..n {
        assert_eq!(hits(&c, &format!("d{i}")), 2, "d{i}: {c:?}");
    }
    let err = svc.clone().oneshot(request(ROUTE)).await.unwrap_err();
    let e = err
        .downcast_ref::<NoDeploymentAvailable>()
        .expect("named error");
    assert_eq!(e.retry_after(), Duration::from_secs(40));
}

#[tokio::test(start_paused = true)]
async fn a_large_route_spreads_by_usage() {
    // Two random candidates, the less used wins: no deployment of a large route runs far
    // ahead of the others.
    let n = 16;
    let cfg = usage_cfg((0..n).map(|i| dep(i).build()).collect());
    let svc = layered(cfg, 9, Upstreams::new().service());
    let c = send(&svc, 20 * n).await;
    let counts: Vec<usize> = (0..n).map(|i| hits(&c, &format!("d{i}"))).collect();
    let (lo, hi) = (*counts.iter().min().unwrap(), *counts.iter().max().unwrap());
    assert!(lo >= 14 && hi <= 26, "uneven spread: {counts:?}");
}

#[tokio::test(start_paused = true)]
async fn tpm_counts_tokens_reported_by_the_forwarder() {
    // d0 reports its tokens through the SelectedDeployment handle (as a stream's last
    // chunk would), d1 through a TokenUsage response extension. 600 tokens per answer.
    let inner = tower::service_fn(|req: Request<String>| async move {
        let chosen = req
            .extensions()
            .get::<SelectedDeployment>()
            .unwrap()
            .clone();
        let mut resp = Response::new(chosen.id().to_string());
        if chosen.id().as_str() == "d0" {
            chosen.record_tokens(600);
        } else {
            resp.extensions_mut().insert(TokenUsage {
                prompt_tokens: 500,
                completion_tokens: 100,
            });
        }
        Ok::<_, Infallible>(resp)
    });
    let cfg = usage_cfg(vec![dep(0).tpm(1000).build(), dep(1).tpm(1000).build()]);
    let svc = layered(cfg, 8, inner);
    // Two each reach 1200 >= 1000 tokens: both are then at their tpm.
    let c = send(&svc, 4).await;
    assert_eq!((hits(&c, "d0"), hits(&c, "d1")), (2, 2), "{c:?}");
    let err = svc.clone().oneshot(request(ROUTE)).await.unwrap_err();
    assert!(err.is::<NoDeploymentAvailable>(), "{err}");
    advance(Duration::from_secs(60)).await;
    svc.clone()
        .oneshot(request(ROUTE))
        .await
        .expect("tokens reset each minute");
}

// === cost ===

#[tokio::test(start_paused = true)]
async fn cost_based_picks_the_cheapest_and_shuffles_ties() {
    let cfg = Config::builder()
        .deployment(dep(0).cost_per_token(1e-5, 3e-5).build())
        .deployment(dep(1).cost_per_token(1e-6, 2e-6).build())
        .deployment(dep(2).cost_per_token(2e-6, 1e-6).build())
        .deployment(dep(3).build()) // unknown cost: LiteLLM's 5.0, last
        .routing_strategy(RoutingStrategy::CostBased)
        .allowed_fails(0)
        .build()
        .unwrap();
    let up = Upstreams::new();
    let svc = layered(cfg, 9, up.service());
    let c = send(&svc, 200).await;
    assert_eq!(hits(&c, "d0") + hits(&c, "d3"), 0, "{c:?}");
    assert!(
        hits(&c, "d1") > 60 && hits(&c, "d2") > 60,
        "ties shuffled: {c:?}"
    );
}

#[test]
fn cost_is_read_from_model_info_and_litellm_params_wins() {
    let cfg = Config::from_yaml_str(
        r#"
model_list:
  - model_name: m
    litellm_params: { model: openai/a, input_cost_per_token: 0.000001, output_cost_per_token: 0.000002 }
    model_info: { input_cost_per_token: 1.0, output_cost_per_token: 1.0 }
  - model_name: m
    litellm_params: { model: openai/b }
    model_info: { input_cost_per_token: 0.00001, output_cost_per_token: 0.00002 }
router_settings:
  routing_strategy: cost-based-routing
"#,
    )
    .unwrap();
    assert_eq!(cfg.router.routing_strategy, RoutingStrategy::CostBased);
    let c: Vec<f64> = cfg
        .deployments
        .iter()
        .map(Deployment::cost_per_token)
        .collect();
    assert!(
        (c[0] - 3e-6).abs() < 1e-12 && (c[1] - 3e-5).abs() < 1e-12,
        "{c:?}"
    );
}

// === limits ===

#[tokio::test(start_paused = true)]
async fn max_parallel_requests_skips_a_busy_deployment() {
    let cfg = Config::builder()
        .deployment(dep(0).max_parallel_requests(1).build())
        .deployment(dep(1).build())
        .build()
        .unwrap();
    let svc = layered(cfg, 10, Upstreams::new().service());
    // Hold one response of d0 open: its body keeps the request in flight.
    let held = loop {
        let resp = svc.clone().oneshot(request(ROUTE)).await.unwrap();
        if resp.body().selected_deployment().unwrap().id().as_str() == "d0" {
            break resp;
        }
    };
    let c = send(&svc, 40).await;
    assert_eq!(hits(&c, "d0"), 0, "d0 is at max_parallel_requests: {c:?}");
    drop(held);
    let c = send(&svc, 40).await;
    assert!(hits(&c, "d0") > 5, "free again: {c:?}");
}

#[tokio::test(start_paused = true)]
async fn a_group_alias_routes_to_its_group() {
    let cfg = config(ROUTE, 2)
        .model_group_alias("gpt4", ROUTE)
        .build()
        .unwrap();
    let svc = layered(cfg, 11, Upstreams::new().service());
    let resp = svc.clone().oneshot(request("gpt4")).await.unwrap();
    assert_eq!(resp.body().selected_deployment().unwrap().route(), ROUTE);
    let err = svc.oneshot(request("gpt5")).await.unwrap_err();
    assert!(err.is::<tower_health_routing::UnknownRoute>());
}

#[tokio::test(start_paused = true)]
async fn pre_call_checks_skip_deployments_whose_window_is_too_small() {
    let ds = || {
        vec![
            dep(0).max_input_tokens(1_000).build(),
            dep(1).max_input_tokens(8_000).build(),
        ]
    };
    let on = Config::builder()
        .deployments(ds())
        .enable_pre_call_checks(true)
        .build()
        .unwrap();
    let svc = layered(on, 12, Upstreams::new().service());
    let sized = |t: u32| {
        let mut r = request(ROUTE);
        r.extensions_mut().insert(RequestTokens(t));
        r
    };
    let served = Arc::new(AtomicU64::new(0));
    for _ in 0..30 {
        let resp = svc.clone().oneshot(sized(5_000)).await.unwrap();
        assert_eq!(
            resp.body().selected_deployment().unwrap().id().as_str(),
            "d1"
        );
        served.fetch_add(1, Relaxed);
    }
    let err = svc.clone().oneshot(sized(9_000)).await.unwrap_err();
    assert!(err.is::<NoDeploymentAvailable>(), "{err}");
    let mut small = HashMap::<String, usize>::new();
    for _ in 0..40 {
        let resp = svc.clone().oneshot(sized(500)).await.unwrap();
        *small
            .entry(resp.body().selected_deployment().unwrap().id().to_string())
            .or_default() += 1;
    }
    assert!(
        hits(&small, "d0") > 5 && hits(&small, "d1") > 5,
        "{small:?}"
    );
    // Without enable_pre_call_checks the estimate is ignored.
    let off = Config::builder().deployments(ds()).build().unwrap();
    let svc = layered(off, 12, Upstreams::new().service());
    let mut seen_d0 = false;
    for _ in 0..40 {
        let resp = svc.clone().oneshot(sized(5_000)).await.unwrap();
        seen_d0 |= resp.body().selected_deployment().unwrap().id().as_str() == "d0";
    }
    assert!(seen_d0);
}

#[test]
fn routing_settings_parse_with_litellms_names() {
    let cfg = Config::from_yaml_str(
        r#"
model_list:
  - model_name: a
    rpm: 7
    litellm_params: { model: openai/a, tpm: 9000, max_parallel_requests: 4 }
    model_info: { max_input_tokens: 128000 }
  - model_name: b
    litellm_params: { model: openai/b, rpm: 3 }
    tpm: 5
router_settings:
  routing_strategy: usage-based-routing-v2
  routing_strategy_args: { lowest_latency_buffer: 0.25, ttl: 3600 }
  fallbacks: [{ a: [b] }]
  default_fallbacks: [b]
  context_window_fallbacks: [{ a: [b] }]
  content_policy_fallbacks: [{ a: [b] }]
  model_group_alias: { gpt4: a, hidden-one: { model: b, hidden: true } }
  enable_pre_call_checks: true
"#,
    )
    .unwrap();
    let r = &cfg.router;
    assert_eq!(r.routing_strategy, RoutingStrategy::UsageBasedV2);
    assert_eq!(r.routing_strategy_args.lowest_latency_buffer, 0.25);
    assert_eq!(r.fallbacks.general["a"], ["b"]);
    assert_eq!(r.fallbacks.default, ["b"]);
    assert_eq!(r.fallbacks.context_window["a"], ["b"]);
    assert_eq!(r.fallbacks.content_policy["a"], ["b"]);
    assert_eq!(r.model_group_alias["gpt4"], "a");
    assert_eq!(r.model_group_alias["hidden-one"], "b");
    assert!(r.enable_pre_call_checks);
    let (a, b) = (&cfg.deployments[0], &cfg.deployments[1]);
    assert_eq!((a.params().rpm, a.params().tpm), (Some(7), Some(9000)));
    assert_eq!(a.params().max_parallel_requests, Some(4));
    assert_eq!(a.info().max_input_tokens, Some(128_000));
    assert_eq!((b.params().rpm, b.params().tpm), (Some(3), Some(5)));
    for (yaml, field) in [
        (
            "router_settings: { fallbacks: [a] }",
            "router_settings.fallbacks[0]",
        ),
        (
            "router_settings: { fallbacks: [{ a: [1] }] }",
            "router_settings.fallbacks[0].a[0]",
        ),
        (
            "router_settings: { model_group_alias: [a] }",
            "router_settings.model_group_alias",
        ),
        (
            "router_settings: { routing_strategy_args: { lowest_latency_buffer: -1 } }",
            "router_settings.routing_strategy_args.lowest_latency_buffer",
        ),
        (
            "model_list: [{ model_name: a, litellm_params: { model: m, max_parallel_requests: 0 } }]",
            "model_list[0].litellm_params.max_parallel_requests",
        ),
        (
            "model_list: [{ model_name: a, litellm_params: { model: m, input_cost_per_token: -1 } }]",
            "model_list[0].litellm_params.input_cost_per_token",
        ),
    ] {
        let e = Config::from_yaml_str(yaml).unwrap_err();
        assert_eq!(e.field(), field, "{yaml}: {e}");
    }
}
