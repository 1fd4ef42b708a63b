//! Traffic as a probe (`general_settings.health_check_skip_when_traffic_healthy`): a
//! deployment whose real traffic succeeded within the interval is not probed that round.
//! Paused time, a scripted prober, requests through the routing layer.

use std::{convert::Infallible, sync::Arc, time::Duration};

use crate::support::{
    endpoints::{call_get, endpoints},
    many, request,
    script::Script,
    state_with,
};
use http::{Request, Response, StatusCode};
use tokio::time::{Instant, advance};
use tower::{Service, ServiceExt};
use tower_health_routing::{
    HealthRoutingLayer, HealthState,
    health::HealthSource,
    probe::{ProbeLoop, Prober},
};

const BASE: &str = "http://127.0.0.1:9/v1";

/// Routes `a` (deployment `a-0`) and `b` (`b-0`), probed every 10 s.
fn state(skip: bool) -> HealthState {
    let mut ds = many("a", 1, BASE);
    ds.extend(many("b", 1, BASE));
    state_with(ds, |b| {
        b.health_check_interval(Duration::from_secs(10))
            .health_check_skip_when_traffic_healthy(skip)
    })
}

fn probes(state: &HealthState, script: &Arc<Script>) -> ProbeLoop {
    ProbeLoop::builder(state)
        .prober(Arc::clone(script) as Arc<dyn Prober>)
        .build()
        .expect("loop")
}

/// One request to `route`, answered with `status`.
async fn traffic(state: &HealthState, route: &str, status: u16) {
    let inner = tower::service_fn(move |_: Request<String>| async move {
        let mut r = Response::new(String::new());
        *r.status_mut() = StatusCode::from_u16(status).unwrap();
        Ok::<_, Infallible>(r)
    });
    let layer = HealthRoutingLayer::from_state(state.clone());
    let mut svc = tower::Layer::layer(&layer, inner);
    svc.ready()
        .await
        .unwrap()
        .call(request(route))
        .await
        .unwrap();
}

fn probed(script: &Script) -> Vec<String> {
    let mut ids: Vec<String> = script.calls().into_iter().map(|(id, _)| id).collect();
    ids.sort();
    ids
}

#[tokio::test(start_paused = true)]
async fn healthy_traffic_saves_the_probe_and_is_the_result() {
    let state = state(true);
    let script = Script::healthy();
    let probes = probes(&state, &script);
    advance(Duration::from_secs(3)).await;
    let served_at = Instant::now();
    traffic(&state, "a", 200).await;
    advance(Duration::from_secs(4)).await;
    probes.run_round().await.expect("alive");
    assert_eq!(probed(&script), ["b-0"], "a-0 answered traffic 4 s ago");
    let snap = state.load();
    let rec = snap.health("a-0").expect("a result");
    assert!(rec.healthy);
    assert_eq!(rec.source, HealthSource::Traffic);
    assert_eq!(
        rec.checked_at, served_at,
        "checked when the traffic was seen"
    );
    assert_eq!(snap.health("b-0").unwrap().source, HealthSource::Probe);
}

#[tokio::test(start_paused = true)]
async fn traffic_older_than_the_interval_does_not_count() {
    let state = state(true);
    let script = Script::healthy();
    let probes = probes(&state, &script);
    traffic(&state, "a", 200).await;
    advance(Duration::from_secs(11)).await;
    probes.run_round().await.expect("alive");
    assert_eq!(probed(&script), ["a-0", "b-0"]);
}

#[tokio::test(start_paused = true)]
async fn a_failure_after_the_success_means_probe() {
    let state = state(true);
    let script = Script::healthy();
    let probes = probes(&state, &script);
    traffic(&state, "a", 200).await;
    advance(Duration::from_secs(1)).await;
    traffic(&state, "a", 503).await;
    probes.run_round().await.expect("alive");
    assert_eq!(probed(&script), ["a-0", "b-0"]);
    // A caller's fault says nothing about the deployment: the success still stands.
    let state2 = self::state(true);
    let script2 = Script::healthy();
    let probes2 = self::probes(&state2, &script2);
    traffic(&state2, "a", 200).await;
    traffic(&state2, "a", 400).await;
    probes2.run_round().await.expect("alive");
    assert_eq!(probed(&script2), ["b-0"]);
}

#[tokio::test(start_paused = true)]
async fn off_by_default_every_deployment_is_probed() {
    let state = state(false);
    let script = Script::healthy();
    let probes = probes(&state, &script);
    traffic(&state, "a", 200).await;
    probes.run_round().await.expect("alive");
    assert_eq!(probed(&script), ["a-0", "b-0"]);
    assert_eq!(
        state.load().health("a-0").unwrap().source,
        HealthSource::Probe
    );
}

#[tokio::test(start_paused = true)]
async fn health_shows_the_traffic_evidence() {
    let mut ds = many("a", 1, BASE);
    ds.extend(many("b", 1, BASE));
    let state = state_with(ds, |b| {
        b.health_check_interval(Duration::from_secs(10))
            .health_check_skip_when_traffic_healthy(true)
            .background_health_checks(true)
    });
    let script = Script::healthy();
    traffic(&state, "a", 200).await;
    probes(&state, &script).run_round().await.expect("alive");
    let ep = endpoints(&state, &script);
    let body = call_get(&ep, "/health", &[]).await.json();
    let list = body["healthy_endpoints"].as_array().expect("list");
    let a = list.iter().find(|e| e["model_id"] == "a-0").expect("a-0");
    let b = list.iter().find(|e| e["model_id"] == "b-0").expect("b-0");
    assert_eq!(a["source"], "traffic", "{body}");
    let at = a["checked_at"].as_str().expect("checked_at");
    assert!(at.ends_with('Z') && at.contains('T'), "{at}");
    assert!(
        b.get("source").is_none(),
        "a probe keeps LiteLLM's shape: {b}"
    );
}
