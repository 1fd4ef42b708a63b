//! LiteLLM's wider health surface through the gateway, over real sockets against local fake
//! upstreams: `/health/latest`, `/health/history`, `/health/backlog`,
//! `POST /health/test_connection`, `/v1/models?healthy_only`, `health_check_params` and
//! `background_health_check_model_groups`. Real time, short intervals, bounded waits.

use std::{net::SocketAddr, time::Duration};

use serde_json::{Value, json};
use thr_gateway::app;
use thr_testkit::{FakeLlm, Fault, Reply as UpReply, Upstream};
use tower_health_routing::{Config, ConfigBuilder, Deployment};

use crate::support::{self, Reply, Running, get, post_json, until};

const KEY_PREFIX: &str = "sk-planted-secret-";
const MASTER: &str = "sk-master-health-surface-0123456789";

/// A gateway with a 3 s upstream timeout.
async fn start(cfg: Config) -> Running {
    support::start_with(
        cfg,
        app::Options {
            upstream_timeout: Duration::from_secs(3),
            ..support::options()
        },
    )
    .await
}

fn deployment(route: &str, u: &FakeLlm) -> Deployment {
    Deployment::builder(route, "openai/gpt-4o-mini")
        .id(u.name.clone())
        .api_base(u.api_base())
        .api_key(format!("{KEY_PREFIX}{}", u.name))
        .health_check_timeout(Duration::from_millis(300))
        .build()
}

/// Background probes every 200 ms, a master key.
fn probed(ds: impl IntoIterator<Item = Deployment>) -> ConfigBuilder {
    Config::builder()
        .deployments(ds)
        .background_health_checks(true)
        .health_check_interval(Duration::from_millis(200))
        .master_key(MASTER)
}

/// Polls `path` until `cond` holds on its JSON (bounded).
async fn until_json(addr: SocketAddr, path: &str, cond: impl Fn(&Value) -> bool) -> Value {
    let start = tokio::time::Instant::now();
    loop {
        let r = get(addr, path, Some(MASTER)).await;
        assert_eq!(r.status, 200, "{}", r.text());
        let v = r.expect_json();
        if cond(&v) {
            return v;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{path}: never got there: {v}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn sorted_keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
    k.sort();
    k
}

const RECORD_KEYS: &[&str] = &[
    "checked_at",
    "checked_by",
    "created_at",
    "details",
    "error_message",
    "health_check_id",
    "healthy_count",
    "model",
    "model_id",
    "model_name",
    "response_time_ms",
    "source",
    "status",
    "status_code",
    "unhealthy_count",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latest_and_history_follow_background_rounds_with_filters_limits_and_no_secret() {
    let (good, bad) = (
        FakeLlm::start("up-1").await.unwrap(),
        FakeLlm::start("up-2").await.unwrap(),
    );
    // up-2 answers 401 quoting the key it was sent: the planted secret reaches the prober.
    bad.control.set(Fault::Unauthorized);
    let cfg = probed([deployment("gpt-4o", &good), deployment("gpt-4o", &bad)])
        .build()
        .unwrap();
    let gw = start(cfg).await;

    let latest = until_json(gw.addr, "/health/latest", |v| v["total_models"] == 2).await;
    let checks = &latest["latest_health_checks"];
    assert_eq!(sorted_keys(checks), ["up-1", "up-2"]);
    assert_eq!(sorted_keys(&checks["up-1"]), RECORD_KEYS);
    let (ok, ko) = (&checks["up-1"], &checks["up-2"]);
    assert_eq!(
        (
            ok["status"].as_str(),
            ok["model_name"].as_str(),
            ok["model"].as_str()
        ),
        (Some("healthy"), Some("gpt-4o"), Some("openai/gpt-4o-mini"))
    );
    assert_eq!(
        (ok["healthy_count"].as_u64(), ok["unhealthy_count"].as_u64()),
        (Some(1), Some(0))
    );
    assert!(ok["error_message"].is_null());
    assert_eq!(ko["status"], "unhealthy");
    assert_eq!(ko["status_code"], 401);
    assert!(
        ko["error_message"].as_str().is_some_and(|e| !e.is_empty()),
        "{ko}"
    );
    assert_eq!(
        (ok["checked_by"].as_str(), ok["source"].as_str()),
        (Some("local"), Some("probe"))
    );
    let at = ok["checked_at"].as_str().unwrap();
    assert!(
        at.len() == 24 && at.ends_with('Z') && at.as_bytes()[10] == b'T',
        "{at}"
    );
    assert!(ok["response_time_ms"].as_f64().is_some_and(|ms| ms >= 0.0));

    // Three rounds or more: filters, order and paging.
    until_json(gw.addr, "/health/history?model=up-2", |v| {
        v["total_matching"].as_u64() >= Some(3)
    })
    .await;
    let h = get(
        gw.addr,
        "/health/history?status_filter=unhealthy",
        Some(MASTER),
    )
    .await
    .expect_json();
    assert_eq!(
        sorted_keys(&h),
        [
            "health_checks",
            "history_size",
            "limit",
            "offset",
            "total_matching",
            "total_records"
        ]
    );
    assert_eq!(
        (
            h["limit"].as_u64(),
            h["offset"].as_u64(),
            h["history_size"].as_u64()
        ),
        (Some(100), Some(0), Some(100))
    );
    let recs = h["health_checks"].as_array().unwrap();
    assert!(recs.len() >= 3);
    assert_eq!(h["total_records"].as_u64(), Some(recs.len() as u64));
    assert!(
        recs.iter()
            .all(|r| r["model_id"] == "up-2" && r["status"] == "unhealthy")
    );
    let times: Vec<&str> = recs
        .iter()
        .map(|r| r["checked_at"].as_str().unwrap())
        .collect();
    assert!(
        times.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {times:?}"
    );
    let healthy = get(
        gw.addr,
        "/health/history?status_filter=healthy&model=gpt-4o",
        Some(MASTER),
    )
    .await
    .expect_json();
    assert!(
        healthy["health_checks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["model_id"] == "up-1")
    );
    let page = get(
        gw.addr,
        "/health/history?model=up-2&limit=2&offset=1",
        Some(MASTER),
    )
    .await
    .expect_json();
    assert_eq!(
        (
            page["total_records"].as_u64(),
            page["limit"].as_u64(),
            page["offset"].as_u64()
        ),
        (Some(2), Some(2), Some(1))
    );
    assert!(page["total_matching"].as_u64() >= Some(3));
    let none = get(gw.addr, "/health/history?model=nobody", Some(MASTER))
        .await
        .expect_json();
    assert_eq!(none["total_records"], 0);

    // Out-of-range parameters: 400 naming the parameter, not echoing the value.
    for (q, name, value) in [
        ("limit=0", "limit", None),
        ("limit=1001", "limit", Some("1001")),
        ("limit=abc", "limit", Some("abc")),
        ("offset=-5", "offset", Some("-5")),
        (
            "status_filter=sk-guess-123",
            "status_filter",
            Some("sk-guess-123"),
        ),
    ] {
        let r = get(gw.addr, &format!("/health/history?{q}"), Some(MASTER)).await;
        assert_eq!(r.status, 400, "{q}: {}", r.text());
        assert!(r.text().contains(name), "{q}: {}", r.text());
        if let Some(v) = value {
            assert!(!r.text().contains(v), "{q} echoed: {}", r.text());
        }
    }

    // Auth like /health: no key, wrong key.
    for path in ["/health/latest", "/health/history", "/health/backlog"] {
        assert_eq!(get(gw.addr, path, None).await.status, 401, "{path}");
        assert_eq!(
            get(gw.addr, path, Some("sk-wrong")).await.status,
            401,
            "{path}"
        );
    }

    // The planted secrets appear in none of the new outputs.
    for path in [
        "/health/latest",
        "/health/history?limit=1000",
        "/health/backlog",
    ] {
        let text = get(gw.addr, path, Some(MASTER)).await.text();
        assert!(
            !text.contains(KEY_PREFIX) && !text.contains(MASTER),
            "{path}: {text}"
        );
    }
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_history_ring_keeps_the_configured_number_of_records() {
    let up = FakeLlm::start("up-1").await.unwrap();
    let mut b = probed([deployment("gpt-4o", &up)]);
    b.health_mut().history_size = 3;
    let gw = start(b.build().unwrap()).await;
    until(Duration::from_secs(5), || {
        up.control
            .requests
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 6
    })
    .await;
    // The sixth probe may still be in flight: wait for its record, then count.
    let h = until_json(gw.addr, "/health/history", |v| {
        v["history_size"] == 3 && v["total_matching"] == 3
    })
    .await;
    assert_eq!(h["health_checks"].as_array().unwrap().len(), 3);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backlog_counts_requests_in_flight() {
    let up = FakeLlm::start("up-1").await.unwrap();
    let cfg = Config::builder()
        .deployment(deployment("gpt-4o", &up))
        .master_key(MASTER)
        .build()
        .unwrap();
    let gw = start(cfg).await;
    let idle = get(gw.addr, "/health/backlog", Some(MASTER))
        .await
        .expect_json();
    assert_eq!(
        sorted_keys(&idle),
        [
            "admitted_requests",
            "deployments_at_max_parallel_requests",
            "in_flight_by_model_id",
            "in_flight_requests",
            "queued_requests",
            "rejected_requests"
        ]
    );
    assert_eq!(
        (
            idle["in_flight_requests"].as_u64(),
            idle["queued_requests"].as_u64()
        ),
        (Some(0), Some(0))
    );
    up.control.set(Fault::Hang);
    let addr = gw.addr;
    let pending = tokio::spawn(async move {
        let body = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]});
        post_json(addr, "/v1/chat/completions", body, Some(MASTER))
            .await
            .status
    });
    let busy = until_json(gw.addr, "/health/backlog", |v| v["in_flight_requests"] == 1).await;
    assert_eq!(busy["in_flight_by_model_id"]["up-1"], 1);
    assert_eq!(busy["admitted_requests"], 1);
    // The upstream timeout (3 s) ends it with a gateway error.
    assert!(pending.await.unwrap() >= 500);
    assert_eq!(gw.state.in_flight_total(), 0);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_can_list_only_routes_that_may_be_picked() {
    let (good, bad, unchecked) = (
        FakeLlm::start("up-1").await.unwrap(),
        FakeLlm::start("up-2").await.unwrap(),
        FakeLlm::start("up-3").await.unwrap(),
    );
    bad.control.set(Fault::Error500);
    let quiet = Deployment::builder("never-probed", "openai/gpt-4o-mini")
        .id(unchecked.name.clone())
        .api_base(unchecked.api_base())
        .disable_background_health_check(true)
        .build();
    let ds = || {
        [
            deployment("good", &good),
            deployment("bad", &bad),
            quiet.clone(),
        ]
    };
    let ids = |r: Reply| -> Vec<String> {
        r.expect_json()["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let gw = start(probed(ds()).build().unwrap()).await;
    until(Duration::from_secs(5), || {
        gw.state
            .snapshot()
            .health("up-2")
            .is_some_and(|h| !h.healthy)
    })
    .await;
    assert_eq!(
        ids(get(gw.addr, "/v1/models", Some(MASTER)).await),
        ["bad", "good", "never-probed"]
    );
    assert_eq!(
        ids(get(gw.addr, "/v1/models?healthy_only=true", Some(MASTER)).await),
        ["good", "never-probed"]
    );
    assert_eq!(
        ids(get(gw.addr, "/models?healthy_only=false", Some(MASTER)).await).len(),
        3
    );
    gw.shutdown().await;

    // Proxy-wide: every listing is filtered.
    let mut b = probed(ds());
    b.health_mut().model_list_healthy_only = true;
    let gw = start(b.build().unwrap()).await;
    until(Duration::from_secs(5), || {
        gw.state
            .snapshot()
            .health("up-2")
            .is_some_and(|h| !h.healthy)
    })
    .await;
    assert_eq!(
        ids(get(gw.addr, "/v1/models", Some(MASTER)).await),
        ["good", "never-probed"]
    );
    // A hidden route stays callable (presentation only).
    let body = json!({"model": "bad", "messages": [{"role": "user", "content": "hi"}]});
    assert_eq!(
        post_json(gw.addr, "/v1/chat/completions", body, Some(MASTER))
            .await
            .status,
        500
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_listed_model_groups_are_probed_in_the_background() {
    let (a, b) = (
        FakeLlm::start("up-1").await.unwrap(),
        FakeLlm::start("up-2").await.unwrap(),
    );
    let mut cfg = probed([deployment("a", &a), deployment("b", &b)]);
    cfg.health_mut().background_model_groups = Some(vec!["a".into(), "no-such-group".into()]);
    let gw = start(cfg.build().unwrap()).await;
    until(Duration::from_secs(5), || {
        a.control
            .requests
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 3
    })
    .await;
    assert_eq!(
        b.control
            .requests
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    assert!(
        gw.state.snapshot().health("up-2").is_none(),
        "b stays unchecked"
    );
    let latest = get(gw.addr, "/health/latest", Some(MASTER))
        .await
        .expect_json();
    assert_eq!(sorted_keys(&latest["latest_health_checks"]), ["up-1"]);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_connection_probes_the_body_s_deployment_and_keeps_nothing() {
    let (up, leaky) = (
        FakeLlm::start("up-1").await.unwrap(),
        FakeLlm::start("up-2").await.unwrap(),
    );
    leaky.control.set(Fault::Unauthorized); // echoes the key it gets
    let recorder = Upstream::start(|_| UpReply::ok());
    let cfg = Config::builder()
        .deployment(deployment("gpt-4o", &up))
        .master_key(MASTER)
        .build()
        .unwrap();
    let gw = start(cfg).await;
    let tc = |body: Value, key: Option<&'static str>| {
        post_json(gw.addr, "/health/test_connection", body, key)
    };

    // A configured route, tested as configured.
    let r = tc(
        json!({"litellm_params": {"model": "gpt-4o"}, "mode": "chat"}),
        Some(MASTER),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.expect_json();
    assert_eq!(v["status"], "success", "{v}");
    assert_eq!(
        (v["result"]["model"].as_str(), v["result"]["mode"].as_str()),
        (Some("openai/gpt-4o-mini"), Some("chat"))
    );
    assert!(!r.text().contains(KEY_PREFIX));
    // By id, as an embedding: the probe goes to /embeddings.
    let before = up
        .control
        .requests
        .load(std::sync::atomic::Ordering::Relaxed);
    let v = tc(json!({"litellm_params": {"model": "openai/gpt-4o-mini"}, "model_info": {"id": "up-1"}, "mode": "embedding"}), Some(MASTER)).await.expect_json();
    assert_eq!(
        (v["status"].as_str(), v["result"]["mode"].as_str()),
        (Some("success"), Some("embedding")),
        "{v}"
    );
    assert_eq!(
        up.control
            .requests
            .load(std::sync::atomic::Ordering::Relaxed),
        before + 1
    );

    // A deployment only the body describes; its key is echoed upstream and scrubbed here.
    let client_key = "sk-client-planted-987654321";
    let r = tc(json!({"litellm_params": {"model": "openai/x", "api_base": leaky.api_base(), "api_key": client_key}}), Some(MASTER)).await;
    let v = r.expect_json();
    assert_eq!(v["status"], "error", "{v}");
    assert!(v["result"]["error"].as_str().is_some(), "{v}");
    assert!(!r.text().contains(client_key), "{}", r.text());

    // Pointing a configured route elsewhere drops the configured key.
    let v = tc(
        json!({"litellm_params": {"model": "gpt-4o", "api_base": recorder.v1()}}),
        Some(MASTER),
    )
    .await
    .expect_json();
    assert_eq!(v["status"], "success", "{v}");
    let seen = recorder.only();
    assert!(
        seen.header("authorization")
            .is_none_or(|a| !a.contains(KEY_PREFIX)),
        "{:?}",
        seen.headers
    );

    // Refused: env references, bad shapes, no key.
    let r = tc(
        json!({"litellm_params": {"model": "openai/x", "api_key": "os.environ/HOME"}}),
        Some(MASTER),
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(
        r.text()
            .contains("Environment variable references are not permitted"),
        "{}",
        r.text()
    );
    assert_eq!(
        tc(json!({"litellm_params": "nope"}), Some(MASTER))
            .await
            .status,
        400
    );
    assert_eq!(
        tc(
            json!({"litellm_params": {"model": "gpt-4o"}, "mode": 7}),
            Some(MASTER)
        )
        .await
        .status,
        400
    );
    assert_eq!(
        tc(json!({"litellm_params": {"model": "gpt-4o"}}), None)
            .await
            .status,
        401
    );
    assert_eq!(
        tc(
            json!({"litellm_params": {"model": "gpt-4o"}}),
            Some("sk-wrong")
        )
        .await
        .status,
        401
    );
    assert_eq!(
        get(gw.addr, "/health/test_connection", Some(MASTER))
            .await
            .status,
        405
    );

    // Never stored: no history, no health result.
    let latest = get(gw.addr, "/health/latest", Some(MASTER))
        .await
        .expect_json();
    assert_eq!(latest["total_models"], 0, "{latest}");
    assert!(gw.state.snapshot().health("up-1").is_none());
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_check_params_reach_the_probe_body() {
    let recorder = Upstream::start(|_| UpReply::ok());
    let yaml = format!(
        r#"
model_list:
  - model_name: pegasus
    litellm_params:
      model: openai/pegasus-1
      api_base: {base}
      api_key: sk-planted-secret-yaml
    model_info:
      id: peg
      health_check_params:
        mediaSource: {{s3Location: {{uri: "s3://bucket/clip.mp4"}}}}
        max_tokens: 999
        api_base: http://127.0.0.1:9/elsewhere
general_settings:
  master_key: {MASTER}
"#,
        base = recorder.v1()
    );
    let gw = start(Config::from_yaml_str(&yaml).unwrap()).await;
    let r = get(gw.addr, "/health?model_id=peg", Some(MASTER)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let probe = recorder.only();
    assert_eq!(probe.path, "/v1/chat/completions");
    let body = probe.json();
    assert_eq!(
        body["mediaSource"]["s3Location"]["uri"],
        "s3://bucket/clip.mp4"
    );
    assert_eq!(body["max_tokens"], 16, "the probe's own knob wins: {body}");
    assert!(
        body.get("api_base").is_none(),
        "connection keys are not body fields: {body}"
    );
    assert_eq!(body["model"], "pegasus-1");
    gw.shutdown().await;
}
