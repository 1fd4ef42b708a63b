//! The endpoints that report on the process rather than on deployments: readiness
//! details, shared status, `/health/services`, and the `cache` field of readiness.

use std::time::Duration;

use crate::support::{
    endpoints::{call_get, endpoints},
    script::Script,
    state_with,
};
use http::StatusCode;
use serde_json::json;
use tower_health_routing::{
    Config, Deployment, DeploymentId, HealthState, endpoints::HealthEndpoints, health::HealthRecord,
};

const BASE: &str = "http://127.0.0.1:9/v1";

fn three() -> Vec<Deployment> {
    (0..3)
        .map(|i| {
            Deployment::builder("a", "openai/gpt-4o")
                .id(format!("d{i}"))
                .api_base(BASE)
                .build()
        })
        .collect()
}

fn script() -> std::sync::Arc<Script> {
    Script::healthy()
}

#[tokio::test(start_paused = true)]
async fn readiness_reports_redis_as_cache_only_when_results_are_shared() {
    let yaml = |shared: bool| {
        format!(
            "model_list:\n  - model_name: a\n    litellm_params: {{model: openai/m, api_base: '{BASE}'}}\n\
             general_settings: {{use_shared_health_check: {shared}}}\n\
             router_settings: {{redis_url: 'redis://:pw@127.0.0.1:6379'}}\n"
        )
    };
    for (shared, cache) in [(true, json!("redis")), (false, json!(null))] {
        let state = HealthState::new(Config::from_yaml_str(&yaml(shared)).expect("config"));
        let a = call_get(
            &endpoints(&state, &Script::healthy()),
            "/health/readiness",
            &[],
        )
        .await;
        assert_eq!(a.json()["cache"], cache, "shared={shared}");
    }
}

#[tokio::test(start_paused = true)]
async fn readiness_details_and_shared_status() {
    let state = state_with(three(), |b| b);
    let ep = endpoints(&state, &script()).service(
        "redis",
        tower_health_routing::endpoints::service_check_fn(|| async { Ok(json!({})) }),
    );
    let body = call_get(&ep, "/health/readiness/details", &[]).await.json();
    assert_eq!(
        body["tower_health_routing_version"],
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(
        (&body["litellm_version"], &body["last_updated"]),
        (&json!(null), &json!(null))
    );
    assert_eq!(body["success_callbacks"], json!(["redis"]));
    assert_eq!(
        (&body["status"], &body["db"], &body["deployments"]),
        (&json!("healthy"), &json!("Not connected"), &json!(3))
    );
    state.record([(
        DeploymentId::from("d0"),
        HealthRecord::healthy(tokio::time::Instant::now()),
    )]);
    let body = call_get(&ep, "/health/readiness/details", &[]).await.json();
    assert!(
        body["last_updated"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')),
        "{body}"
    );
    assert_eq!(
        (&body["healthy_count"], &body["unchecked_count"]),
        (&json!(1), &json!(2))
    );

    let body = call_get(&ep, "/health/shared-status", &[]).await.json();
    assert_eq!(body["shared_health_check_enabled"], false);
    assert_eq!(
        (&body["mode"], &body["backend"]),
        (&json!("off"), &json!("memory"))
    );
    assert_eq!(body["process_id"].as_str().map(str::len), Some(16));
    assert!(body["detail"].as_str().unwrap().contains("in memory"));
    assert_eq!(
        (&body["lock_holder"], &body["results_age_seconds"]),
        (&json!(null), &json!(null))
    );
}

#[tokio::test(start_paused = true)]
async fn services_are_checked_by_name_within_a_timeout() {
    use tower_health_routing::endpoints::service_check_fn;
    let state = state_with(three(), |b| b);
    let ep: HealthEndpoints = endpoints(&state, &script())
        .service(
            "redis",
            service_check_fn(|| async { Ok(json!({"ping": "PONG"})) }),
        )
        .service(
            "sink",
            service_check_fn(|| async { Err("connection refused".to_owned()) }),
        )
        .service("slow", service_check_fn(std::future::pending))
        .service_timeout(Duration::from_secs(1));
    let a = call_get(&ep, "/health/services?service=redis", &[]).await;
    assert_eq!(
        (a.status, a.json()),
        (
            StatusCode::OK,
            json!({"status": "healthy", "service": "redis", "details": {"ping": "PONG"}})
        )
    );
    let a = call_get(&ep, "/health/services?service=sink", &[]).await;
    assert_eq!(
        (a.status, a.json()),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"status": "unhealthy", "service": "sink", "error": "connection refused"})
        )
    );
    let a = call_get(&ep, "/health/services?service=slow", &[]).await;
    assert_eq!(
        (a.status, a.json()["error"].as_str()),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Some("timed out after 1.000s")
        )
    );
    for uri in ["/health/services?service=datadog", "/health/services"] {
        let a = call_get(&ep, uri, &[]).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{uri}");
        let msg = a.json()["error"]["message"].as_str().unwrap().to_owned();
        assert!(msg.ends_with("known services: redis, sink, slow"), "{msg}");
    }
    let none = endpoints(&state, &script());
    let msg = call_get(&none, "/health/services?service=redis", &[])
        .await
        .json()["error"]["message"]
        .clone();
    assert_eq!(
        msg,
        "unknown service (query parameter `service`); no services are registered"
    );
}
