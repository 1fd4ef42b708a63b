//! The health endpoints through `Service::call`: every path and query, both detail levels,
//! on-demand and background-served `/health`, readiness with and without
//! `min_healthy_percent`, health+json, and that nothing slow delays the fast paths.
//! Upstreams are scripted probers under paused time.

use std::{sync::Arc, time::Duration};

use crate::support::{
    endpoints::{call, call_get, endpoints, get, ids, keys, probes},
    script::{Script, Step},
    state_with,
};
use futures_util::FutureExt;
use http::StatusCode;
use serde_json::json;
use tower::Service;
use tower_health_routing::{
    Deployment, DeploymentId, HealthState, Mode, health::HealthRecord, probe::ProbeOutcome,
};

const BASE: &str = "http://127.0.0.1:9/v1";

/// d0 (route a, openai/gpt-4o), d1 (route a, azure/gpt-4o), d2 (route b, openai/mini,
/// probe timeout 2 s).
fn three() -> Vec<Deployment> {
    let mut d2 = Deployment::builder("b", "openai/mini")
        .id("d2")
        .api_base(BASE);
    d2.info_mut().health_check_timeout = Some(Duration::from_secs(2));
    vec![
        Deployment::builder("a", "openai/gpt-4o")
            .id("d0")
            .api_base(BASE)
            .build(),
        Deployment::builder("a", "azure/gpt-4o")
            .id("d1")
            .api_base("https://x.example/")
            .api_version("2024-06-01")
            .param("region_name", "eastus".into())
            .mode(Mode::Chat)
            .build(),
        d2.build(),
    ]
}

/// d0 passes, d1 answers 500, d2 hangs past its 2 s timeout.
fn script() -> Arc<Script> {
    Script::new(|id, _| match id {
        "d0" => Step::ok(),
        "d1" => Step::After(
            Duration::ZERO,
            ProbeOutcome::unhealthy("status 500: overloaded").with_status(500),
        ),
        _ => Step::Hang,
    })
}

fn state(details: bool) -> HealthState {
    state_with(three(), |b| b.health_check_details(details))
}

#[tokio::test(start_paused = true)]
async fn liveliness_is_constant_open_and_answers_get_and_head_only() {
    let state = state_with(three(), |b| b.master_key("sk-master"));
    let ep = endpoints(&state, &script());
    for path in [
        "/health/liveliness",
        "/health/liveness",
        "/health/liveliness/",
    ] {
        let a = call_get(&ep, path, &[]).await;
        assert_eq!(
            (a.status, a.text.as_str()),
            (StatusCode::OK, "\"I'm alive!\"")
        );
        assert_eq!(a.content_type(), "application/json");
    }
    let head = http::Request::head("/health/liveliness").body(()).unwrap();
    let a = call(&ep, head).await;
    assert_eq!((a.status, a.text.as_str()), (StatusCode::OK, ""));
    let post = http::Request::post("/health/liveliness").body(()).unwrap();
    let a = call(&ep, post).await;
    assert_eq!(a.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(a.headers["allow"], "GET, HEAD");
    let a = call_get(&ep, "/healthz", &[]).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert_eq!(a.json()["error"]["code"], "404");
}

#[tokio::test(start_paused = true)]
async fn on_demand_health_probes_every_call_and_publishes_nothing() {
    let (state, script) = (state(true), script());
    let ep = endpoints(&state, &script);
    let a = call_get(&ep, "/health", &[]).await;
    assert_eq!(a.status, StatusCode::OK);
    let body = a.json();
    assert_eq!(
        keys(&body),
        [
            "healthy_count",
            "healthy_endpoints",
            "unchecked_count",
            "unchecked_endpoints",
            "unhealthy_count",
            "unhealthy_endpoints",
            "unsupported_count",
            "unsupported_endpoints"
        ]
    );
    assert_eq!(
        body["healthy_endpoints"],
        json!([{"model": "openai/gpt-4o", "model_id": "d0", "api_base": BASE}])
    );
    assert_eq!(
        body["unhealthy_endpoints"],
        json!([
            {"model": "azure/gpt-4o", "model_id": "d1", "api_base": "https://x.example/",
             "api_version": "2024-06-01", "mode": "chat", "region_name": "eastus",
             "error": "status 500: overloaded", "exception_status": 500},
            {"model": "openai/mini", "model_id": "d2", "api_base": BASE,
             "error": "timeout", "exception_status": 408},
        ])
    );
    assert_eq!(
        (
            &body["healthy_count"],
            &body["unhealthy_count"],
            &body["unchecked_count"]
        ),
        (&json!(1), &json!(2), &json!(0))
    );
    assert_eq!(script.calls().len(), 3);
    call_get(&ep, "/health", &[]).await;
    assert_eq!(script.calls().len(), 6, "every call runs a round");
    assert!(state.snapshot().health("d0").is_none(), "nothing published");
}

#[tokio::test(start_paused = true)]
async fn narrowing_probes_only_the_match_and_answers_503_or_404() {
    let (state, script) = (state(true), script());
    let ep = endpoints(&state, &script);
    // By route name, by upstream model, by id.
    let a = call_get(&ep, "/health?model=a", &[]).await;
    assert_eq!(a.status, StatusCode::OK, "one of two is healthy");
    assert_eq!(
        (
            ids(&a.json(), "healthy_endpoints"),
            ids(&a.json(), "unhealthy_endpoints")
        ),
        (vec!["d0".to_owned()], vec!["d1".to_owned()])
    );
    let a = call_get(&ep, "/health?model=azure%2Fgpt-4o", &[]).await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "nothing healthy");
    assert_eq!(ids(&a.json(), "unhealthy_endpoints"), ["d1"]);
    assert_eq!(a.json()["unhealthy_count"], 1);
    let a = call_get(&ep, "/health?model_id=d0", &[]).await;
    assert_eq!(
        (a.status, ids(&a.json(), "healthy_endpoints")),
        (StatusCode::OK, vec!["d0".to_owned()])
    );
    // `model_id` wins over `model`.
    let a = call_get(&ep, "/health?model=a&model_id=d2", &[]).await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ids(&a.json(), "unhealthy_endpoints"), ["d2"]);
    let probed: Vec<String> = script.calls().into_iter().map(|(id, _)| id).collect();
    assert_eq!(probed, ["d0", "d1", "d1", "d0", "d2"], "only the matches");
    // Unknown targets are 404 and probe nothing.
    for uri in ["/health?model_id=nope", "/health?model=nope"] {
        let a = call_get(&ep, uri, &[]).await;
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{uri}");
        // Says what was wrong without quoting the input (no secret oracle).
        let msg = a.json()["error"]["message"].as_str().unwrap().to_owned();
        assert!(
            msg.starts_with("unknown model") && !msg.contains("nope"),
            "{msg}"
        );
    }
    assert_eq!(script.calls().len(), 5);
    let a = call_get(&ep, "/health?model=%zz", &[]).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
}

#[tokio::test(start_paused = true)]
async fn without_details_an_entry_is_model_id_and_status_only() {
    let ep = endpoints(&state(false), &script());
    let body = call_get(&ep, "/health", &[]).await.json();
    assert_eq!(
        body["healthy_endpoints"],
        json!([{"model": "openai/gpt-4o", "model_id": "d0"}])
    );
    assert_eq!(
        body["unhealthy_endpoints"],
        json!([
            {"model": "azure/gpt-4o", "model_id": "d1", "exception_status": 500},
            {"model": "openai/mini", "model_id": "d2", "exception_status": 408},
        ])
    );
}

#[tokio::test(start_paused = true)]
async fn api_base_never_shows_credentials_or_query() {
    let d = Deployment::builder("r", "openai/m")
        .id("x")
        // (Userinfo is refused by Config::validate: see tests/config/invalid.rs.)
        .api_base("https://host.example/v1?sig=abc")
        .build();
    let state = state_with(vec![d], |b| b);
    let body = call_get(&endpoints(&state, &Script::healthy()), "/health", &[])
        .await
        .json();
    assert_eq!(
        body["healthy_endpoints"][0]["api_base"],
        "https://host.example/v1"
    );
}

#[tokio::test(start_paused = true)]
async fn background_mode_answers_from_published_results_without_probing() {
    let mut ds = three();
    ds.push(
        Deployment::builder("b", "openai/skip")
            .id("d3")
            .api_base(BASE)
            .disable_background_health_check(true)
            .build(),
    );
    let state = state_with(ds, |b| b.background_health_checks(true));
    let script = Script::new(|id, _| {
        if id == "d1" {
            Step::fail(503)
        } else {
            Step::ok()
        }
    });
    let ep = endpoints(&state, &script);
    // Before the first round: nothing is known; d3 is excluded from background checks.
    let a = call_get(&ep, "/health", &[]).await;
    assert_eq!(a.status, StatusCode::OK);
    let body = a.json();
    assert_eq!(ids(&body, "unchecked_endpoints"), ["d0", "d1", "d2"]);
    assert_eq!(
        (
            &body["healthy_count"],
            &body["unhealthy_count"],
            &body["unchecked_count"]
        ),
        (&json!(0), &json!(0), &json!(3))
    );
    assert_eq!(
        body["unchecked_endpoints"][0],
        json!({"model": "openai/gpt-4o", "model_id": "d0", "api_base": BASE})
    );
    let a = call_get(&ep, "/health?model_id=d0", &[]).await;
    assert_eq!(
        a.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "not known healthy yet"
    );
    assert!(script.calls().is_empty(), "no upstream call");
    // After a background round: its published results.
    probes(&state, &script).run_round().await.expect("alive");
    let n = script.calls().len();
    let body = call_get(&ep, "/health", &[]).await.json();
    assert_eq!(ids(&body, "healthy_endpoints"), ["d0", "d2"]);
    assert_eq!(ids(&body, "unhealthy_endpoints"), ["d1"]);
    assert_eq!(body["unhealthy_endpoints"][0]["exception_status"], 503);
    assert_eq!(body["unchecked_count"], 0);
    let a = call_get(&ep, "/health?model_id=d3", &[]).await;
    assert_eq!(
        a.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "known, never listed"
    );
    assert_eq!(a.json()["healthy_count"], 0);
    assert_eq!(script.calls().len(), n, "still no upstream call");
}

#[tokio::test(start_paused = true)]
async fn readiness_is_open_and_follows_min_healthy_percent() {
    let state = state_with(three(), |b| {
        b.master_key("sk-master")
            .health_check_interval(Duration::from_secs(10))
    });
    let plain = endpoints(&state, &script());
    let strict = endpoints(&state, &script())
        .min_healthy_percent(50.0)
        .unwrap();
    let ok = json!({"status": "healthy", "db": "Not connected", "cache": null});
    for ep in [&plain, &strict] {
        let a = call_get(ep, "/health/readiness", &[]).await;
        assert_eq!(
            (a.status, a.json()),
            (StatusCode::OK, ok.clone()),
            "unknown counts as eligible"
        );
    }
    let now = tokio::time::Instant::now();
    state.record(["d0", "d1"].map(|id| {
        (
            DeploymentId::from(id),
            HealthRecord::unhealthy(now, "down", Some(500)),
        )
    }));
    let a = call_get(&plain, "/health/readiness", &[]).await;
    assert_eq!((a.status, a.json()), (StatusCode::OK, ok.clone()));
    let hj = call_get(
        &plain,
        "/health/readiness",
        &[("accept", "application/health+json")],
    )
    .await;
    assert_eq!(
        (hj.status, hj.json()["status"].as_str()),
        (StatusCode::OK, Some("warn")),
        "some excluded, none required"
    );
    let a = call_get(&strict, "/health/readiness", &[]).await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    let body = a.json();
    assert_eq!(body["status"], "unhealthy");
    assert_eq!(
        body["error"],
        "1 of 3 deployments healthy (33.3%), below min_healthy_percent (50%)"
    );
    let hj = call_get(
        &strict,
        "/health/readiness",
        &[("accept", "application/health+json")],
    )
    .await;
    assert_eq!(
        (hj.status, hj.content_type()),
        (StatusCode::SERVICE_UNAVAILABLE, "application/health+json")
    );
    assert_eq!(hj.json()["status"], "fail");
    assert_eq!(hj.json()["checks"]["deployment:d1"][0]["status"], "fail");
    assert_eq!(
        hj.json()["checks"]["deployment:d2"][0]["status"],
        "pass",
        "not checked: eligible"
    );
    // Failed results go stale after 2 × interval: eligible again, ready again.
    tokio::time::advance(Duration::from_secs(21)).await;
    let a = call_get(&strict, "/health/readiness", &[]).await;
    assert_eq!((a.status, a.json()), (StatusCode::OK, ok));
    let hj = call_get(
        &strict,
        "/health/readiness",
        &[("accept", "application/health+json")],
    )
    .await;
    assert_eq!(
        (hj.status, hj.json()["status"].as_str()),
        (StatusCode::OK, Some("pass"))
    );
}

#[test]
fn min_healthy_percent_must_be_a_percentage() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _g = rt.enter();
    let state = state_with(three(), |b| b);
    for bad in [-1.0, 100.5, f64::NAN, f64::INFINITY] {
        let e = endpoints(&state, &script())
            .min_healthy_percent(bad)
            .unwrap_err();
        assert_eq!(e.field(), "endpoints.min_healthy_percent", "{bad}");
    }
    assert!(
        endpoints(&state, &script())
            .min_healthy_percent(100.0)
            .is_ok()
    );
}

#[tokio::test(start_paused = true)]
async fn health_json_on_health() {
    let ep = endpoints(&state(true), &script());
    let hj = [("accept", "application/health+json")];
    let a = call_get(&ep, "/health", &hj).await;
    assert_eq!(
        (a.status, a.content_type()),
        (StatusCode::OK, "application/health+json")
    );
    let body = a.json();
    assert_eq!(body["status"], "warn");
    assert_eq!(
        keys(&body["checks"]),
        ["deployment:d0", "deployment:d1", "deployment:d2"]
    );
    let d1 = &body["checks"]["deployment:d1"][0];
    assert_eq!(
        (
            &d1["componentId"],
            &d1["componentType"],
            &d1["status"],
            &d1["output"]
        ),
        (
            &json!("d1"),
            &json!("component"),
            &json!("fail"),
            &json!("status 500: overloaded")
        )
    );
    assert!(d1["time"].as_str().unwrap().ends_with('Z'));
    let a = call_get(&ep, "/health?model_id=d0", &hj).await;
    assert_eq!(
        (a.status, a.json()["status"].as_str()),
        (StatusCode::OK, Some("pass"))
    );
    let a = call_get(&ep, "/health?model_id=d1", &hj).await;
    assert_eq!(
        (a.status, a.json()["status"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("fail"))
    );
}

#[tokio::test(start_paused = true)]
async fn a_hanging_upstream_never_delays_liveliness_or_readiness() {
    let state = state_with(three(), |b| b);
    let hang = Script::new(|_, _| Step::Hang);
    let mut ep = endpoints(&state, &hang).min_healthy_percent(10.0).unwrap();
    let mut health = Service::call(&mut ep, get("/health", &[]));
    assert!((&mut health).now_or_never().is_none(), "the round hangs");
    for path in [
        "/health/liveliness",
        "/health/readiness",
        "/health/readiness/details",
        "/health/shared-status",
    ] {
        let fut = Service::call(&mut ep, get(path, &[]));
        let resp = fut
            .now_or_never()
            .expect("answered at the first poll")
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
    }
    // The round itself is bounded by the per-probe timeout (60 s by default).
    let resp = health.await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(hang.live(), 0);
}
