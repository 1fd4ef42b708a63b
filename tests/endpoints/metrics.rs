//! The library's metrics, recorded through the `metrics` facade into a recorder installed
//! by the test (thread-local, so tests run in parallel): per deployment the health gauge,
//! probe latency and probe outcomes by reason; per route decisions, bypasses and
//! no-deployment refusals; unknown routes; cooldowns. Labels are bounded and secret-free.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use crate::support::{
    Upstreams,
    endpoints::probes,
    request,
    script::{Script, Step},
    state_with,
};
use metrics_util::{
    CompositeKey,
    debugging::{DebugValue, DebuggingRecorder},
};
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};
use tower_health_routing::{
    Deployment, DeploymentId, HealthRoutingLayer, health::HealthRecord, probe::ProbeTarget,
    telemetry,
};

const BASE: &str = "http://127.0.0.1:9/v1";

/// `name{label=value,...}` -> value, for every metric recorded.
fn collect(
    snapshot: Vec<(
        CompositeKey,
        Option<metrics::Unit>,
        Option<metrics::SharedString>,
        DebugValue,
    )>,
) -> BTreeMap<String, DebugValue> {
    snapshot
        .into_iter()
        .map(|(k, _, _, v)| {
            let key = k.key();
            let labels: Vec<String> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            (format!("{}{{{}}}", key.name(), labels.join(",")), v)
        })
        .collect()
}

fn counter(m: &BTreeMap<String, DebugValue>, k: &str) -> u64 {
    match m.get(k) {
        Some(DebugValue::Counter(n)) => *n,
        other => panic!("no counter {k}: {other:?}\nall: {:#?}", m.keys()),
    }
}

fn gauge(m: &BTreeMap<String, DebugValue>, k: &str) -> f64 {
    match m.get(k) {
        Some(DebugValue::Gauge(v)) => v.into_inner(),
        other => panic!("no gauge {k}: {other:?}\nall: {:#?}", m.keys()),
    }
}

fn samples(m: &BTreeMap<String, DebugValue>, k: &str) -> Vec<f64> {
    match m.get(k) {
        Some(DebugValue::Histogram(v)) => v.iter().map(|x| x.into_inner()).collect(),
        other => panic!("no histogram {k}: {other:?}\nall: {:#?}", m.keys()),
    }
}

#[tokio::test(start_paused = true)]
async fn probes_record_health_latency_and_outcomes() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);

    let mut slow = Deployment::builder("r", "openai/m")
        .id("slow")
        .api_base(BASE);
    slow.info_mut().health_check_timeout = Some(Duration::from_secs(2));
    let ds = vec![
        Deployment::builder("r", "openai/m")
            .id("ok")
            .api_base(BASE)
            .api_key("sk-secret-1")
            .build(),
        Deployment::builder("r", "openai/m")
            .id("bad")
            .api_base(BASE)
            .build(),
        slow.build(),
    ];
    let state = state_with(ds, |b| b.allowed_fails(0));
    let script = Script::new(|id, _| match id {
        "ok" => Step::After(
            Duration::from_millis(250),
            tower_health_routing::probe::ProbeOutcome::healthy(),
        ),
        "bad" => Step::fail(503),
        _ => Step::Hang,
    });
    let probes = tower_health_routing::ProbeLoop::builder(&state)
        .prober(Arc::clone(&script) as Arc<dyn tower_health_routing::probe::Prober>)
        .feed_cooldown(true)
        .build()
        .unwrap();
    probes.run_round().await.expect("alive");
    probes.check_now(ProbeTarget::ModelId("ok".into())).await;

    let m = collect(snapshotter.snapshot().into_vec());
    let h = "tower_health_routing_deployment_healthy";
    assert_eq!(
        [
            gauge(&m, &format!("{h}{{route=r,model_id=ok}}")),
            gauge(&m, &format!("{h}{{route=r,model_id=bad}}")),
            gauge(&m, &format!("{h}{{route=r,model_id=slow}}"))
        ],
        [1.0, 0.0, 0.0]
    );
    let p = "tower_health_routing_probes_total";
    assert_eq!(
        counter(&m, &format!("{p}{{route=r,model_id=ok,reason=ok}}")),
        2,
        "background + on demand"
    );
    assert_eq!(
        counter(
            &m,
            &format!("{p}{{route=r,model_id=bad,reason=status_5xx}}")
        ),
        1
    );
    assert_eq!(
        counter(&m, &format!("{p}{{route=r,model_id=slow,reason=timeout}}")),
        1
    );
    let d = "tower_health_routing_probe_duration_seconds";
    assert_eq!(
        samples(&m, &format!("{d}{{route=r,model_id=ok}}")),
        [0.25, 0.25]
    );
    assert_eq!(samples(&m, &format!("{d}{{route=r,model_id=slow}}")), [2.0]);
    // Fed to cooldown (allowed_fails 0): the 503 and the timeout cool their deployments.
    let c = "tower_health_routing_cooldowns_total";
    assert_eq!(
        counter(&m, &format!("{c}{{route=r,model_id=bad,source=probe}}")),
        1
    );
    assert_eq!(
        counter(&m, &format!("{c}{{route=r,model_id=slow,source=probe}}")),
        1
    );
    assert_bounded(&m, &["r"], &["ok", "bad", "slow"]);
}

#[tokio::test(start_paused = true)]
async fn routing_records_decisions_bypasses_refusals_and_cooldowns() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);

    // Route "r": d0, d1, both failed their check (so every request bypasses the filter);
    // route "solo": d2, which a failed request cools down (allowed_fails 0).
    let mut ds = crate::support::deployments("r", 2);
    ds.push(
        Deployment::builder("solo", "openai/gpt-4o")
            .id("d2")
            .api_base("http://d2")
            .build(),
    );
    let state = state_with(ds, |b| b.enable_health_check_routing(true).allowed_fails(0));
    let now = Instant::now();
    state.record(["d0", "d1"].map(|id| {
        (
            DeploymentId::from(id),
            HealthRecord::unhealthy(now, "down", Some(500)),
        )
    }));
    let upstreams = Upstreams::new();
    upstreams.set_status(2, 500);
    let mut svc = HealthRoutingLayer::from_state(state.clone())
        .with_seed(1)
        .layer(upstreams.service());
    for _ in 0..3 {
        svc.ready().await.unwrap().call(request("r")).await.unwrap();
    }
    svc.ready()
        .await
        .unwrap()
        .call(request("solo"))
        .await
        .unwrap();
    let refused = svc
        .ready()
        .await
        .unwrap()
        .call(request("solo"))
        .await
        .unwrap_err();
    assert!(refused.is::<tower_health_routing::NoDeploymentAvailable>());
    assert!(
        svc.ready()
            .await
            .unwrap()
            .call(request("no-such-route"))
            .await
            .is_err()
    );

    let m = collect(snapshotter.snapshot().into_vec());
    assert_eq!(
        counter(&m, "tower_health_routing_routing_decisions_total{route=r}"),
        3
    );
    assert_eq!(
        counter(
            &m,
            "tower_health_routing_health_filter_bypasses_total{route=r}"
        ),
        3
    );
    assert_eq!(
        counter(
            &m,
            "tower_health_routing_routing_decisions_total{route=solo}"
        ),
        1
    );
    assert_eq!(
        counter(
            &m,
            "tower_health_routing_no_deployment_available_total{route=solo}"
        ),
        1
    );
    assert_eq!(counter(&m, "tower_health_routing_unknown_route_total{}"), 1);
    assert_eq!(
        counter(
            &m,
            "tower_health_routing_cooldowns_total{route=solo,model_id=d2,source=request}"
        ),
        1
    );
    assert_eq!(
        gauge(
            &m,
            "tower_health_routing_deployment_healthy{route=r,model_id=d0}"
        ),
        0.0
    );
    assert_bounded(&m, &["r", "solo"], &["d0", "d1", "d2"]);
}

/// Every label is one of the known keys, with a configured or fixed value.
fn assert_bounded(m: &BTreeMap<String, DebugValue>, routes: &[&str], ids: &[&str]) {
    for k in m.keys() {
        let inner = &k[k.find('{').unwrap() + 1..k.len() - 1];
        for label in inner.split(',').filter(|l| !l.is_empty()) {
            let (key, value) = label.split_once('=').unwrap();
            let ok = match key {
                "route" => routes.contains(&value),
                "model_id" => ids.contains(&value),
                "reason" => telemetry::PROBE_REASONS.contains(&value),
                "source" => ["request", "probe"].contains(&value),
                _ => false,
            };
            assert!(ok, "unexpected label {label} in {k}");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn the_prometheus_exporter_renders_them() {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let _local = metrics::set_default_local_recorder(&recorder);
    telemetry::describe();
    let state = state_with(crate::support::deployments("r", 1), |b| b);
    probes(&state, &Script::healthy())
        .run_round()
        .await
        .expect("alive");
    let mut svc = HealthRoutingLayer::from_state(state).layer(Upstreams::new().service());
    svc.ready().await.unwrap().call(request("r")).await.unwrap();
    let text = handle.render();
    for line in [
        "# HELP tower_health_routing_probes_total Health probes, by outcome reason",
        "tower_health_routing_probes_total{route=\"r\",model_id=\"d0\",reason=\"ok\"} 1",
        "tower_health_routing_deployment_healthy{route=\"r\",model_id=\"d0\"} 1",
        "tower_health_routing_routing_decisions_total{route=\"r\"} 1",
        "tower_health_routing_probe_duration_seconds_count{route=\"r\",model_id=\"d0\"} 1",
    ] {
        assert!(text.contains(line), "missing `{line}` in:\n{text}");
    }
}
