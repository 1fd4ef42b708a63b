//! Master-key protection of the health endpoints: missing, wrong and right keys in every
//! header form LiteLLM accepts, which paths are open, and who sees `api_base`.

use crate::support::{
    endpoints::{call_get, endpoints},
    script::Script,
    state_with,
};
use http::StatusCode;
use serde_json::json;
use tower_health_routing::Deployment;

const KEY: &str = "sk-master-4242";
const PROTECTED: &[&str] = &[
    "/health",
    "/health?model=r",
    "/health/readiness/details",
    "/health/shared-status",
    "/health/services?service=redis",
];

fn deployments() -> Vec<Deployment> {
    vec![
        Deployment::builder("r", "openai/m")
            .id("d0")
            .api_base("http://127.0.0.1:9/v1")
            .api_version("v1")
            .build(),
    ]
}

fn service_ok() -> impl tower_health_routing::endpoints::ServiceCheck {
    tower_health_routing::endpoints::service_check_fn(|| async { Ok(json!({})) })
}

#[tokio::test(start_paused = true)]
async fn protected_paths_need_the_master_key() {
    let state = state_with(deployments(), |b| b.master_key(KEY));
    let ep = endpoints(&state, &Script::healthy()).service("redis", service_ok());
    let wrong = format!("Bearer {KEY}x");
    for path in PROTECTED {
        for headers in [
            vec![],
            vec![("authorization", wrong.as_str())],
            vec![("authorization", KEY)], // no scheme
            vec![("x-litellm-api-key", "sk-other")],
            vec![("api-key", "")],
        ] {
            let a = call_get(&ep, path, &headers).await;
            assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{path} {headers:?}");
            assert_eq!(a.headers["www-authenticate"], "Bearer");
            let body = a.json();
            assert_eq!(
                (&body["error"]["type"], &body["error"]["code"]),
                (&json!("auth_error"), &json!("401"))
            );
            assert!(
                !a.text.contains("sk-other") && !a.text.contains(KEY),
                "never echoed: {}",
                a.text
            );
        }
        let bearer = format!("Bearer {KEY}");
        for headers in [
            [("authorization", bearer.as_str())],
            [("x-litellm-api-key", KEY)],
            [("x-litellm-api-key", bearer.as_str())],
            [("api-key", KEY)],
        ] {
            let a = call_get(&ep, path, &headers).await;
            assert_eq!(a.status, StatusCode::OK, "{path} {headers:?}: {}", a.text);
        }
    }
    for open in [
        "/health/liveliness",
        "/health/liveness",
        "/health/readiness",
    ] {
        assert_eq!(
            call_get(&ep, open, &[]).await.status,
            StatusCode::OK,
            "{open}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn api_base_is_shown_to_admins_only() {
    // With a master key, every caller who gets an answer is an admin.
    let state = state_with(deployments(), |b| b.master_key(KEY));
    let ep = endpoints(&state, &Script::healthy());
    let bearer = format!("Bearer {KEY}");
    let body = call_get(&ep, "/health", &[("authorization", &bearer)])
        .await
        .json();
    assert_eq!(
        body["healthy_endpoints"][0],
        json!({"model": "openai/m", "model_id": "d0", "api_base": "http://127.0.0.1:9/v1", "api_version": "v1"})
    );
    // Without one, LiteLLM treats every caller as an admin; so do we.
    let state = state_with(deployments(), |b| b);
    let body = call_get(&endpoints(&state, &Script::healthy()), "/health", &[])
        .await
        .json();
    assert_eq!(
        body["healthy_endpoints"][0]["api_base"],
        "http://127.0.0.1:9/v1"
    );
    // `health_check_details: false` hides it from everyone.
    let state = state_with(deployments(), |b| b.health_check_details(false));
    let body = call_get(&endpoints(&state, &Script::healthy()), "/health", &[])
        .await
        .json();
    assert_eq!(
        body["healthy_endpoints"][0],
        json!({"model": "openai/m", "model_id": "d0"})
    );
}
