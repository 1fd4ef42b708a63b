//! `health_router` merged into an axum app with its own state: every path through
//! `Router::oneshot`, and one real socket with real upstreams (one hanging), where
//! liveliness and readiness answer while `/health` waits for its round.
#![cfg(feature = "axum")]

use std::time::Duration;

use crate::support::{
    endpoints::probes,
    script::{Script, Step},
    state_with,
    upstream::{Reply, Upstream},
};
use axum::{Router, body::Body, extract::State, routing::get};
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use serde_json::{Value, json};
use tower::ServiceExt;
use tower_health_routing::{
    Deployment, HealthState,
    endpoints::{HealthEndpoints, health_router, service_check_fn},
    probe::{ProbeDefaults, ProbeLoop},
};

const KEY: &str = "sk-master-axum";

async fn oneshot(app: &Router, uri: &str) -> (StatusCode, Value) {
    let req = Request::get(uri)
        .header("authorization", format!("Bearer {KEY}"))
        .body(Body::empty())
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test(start_paused = true)]
async fn the_router_merges_into_an_app_with_state_and_serves_every_path() {
    let ds = vec![
        Deployment::builder("r", "openai/m")
            .id("ok")
            .api_base("http://127.0.0.1:9/v1")
            .build(),
        Deployment::builder("r", "openai/m")
            .id("bad")
            .api_base("http://127.0.0.1:8/v1")
            .build(),
    ];
    let state = state_with(ds, |b| b.master_key(KEY));
    let script = Script::new(|id, _| {
        if id == "ok" {
            Step::ok()
        } else {
            Step::fail(502)
        }
    });
    let ep = HealthEndpoints::new(state.clone(), probes(&state, &script)).service(
        "redis",
        service_check_fn(|| async { Ok(json!({"ping": "PONG"})) }),
    );
    let app: Router = Router::new()
        .route(
            "/app",
            get(|State(n): State<u32>| async move { n.to_string() }),
        )
        .merge(health_router(ep))
        .with_state(7u32);
    let expect = [
        ("/health", StatusCode::OK),
        ("/health?model=r", StatusCode::OK),
        ("/health?model_id=bad", StatusCode::SERVICE_UNAVAILABLE),
        ("/health?model_id=nope", StatusCode::NOT_FOUND),
        ("/health/liveliness", StatusCode::OK),
        ("/health/liveness", StatusCode::OK),
        ("/health/readiness", StatusCode::OK),
        ("/health/readiness/details", StatusCode::OK),
        ("/health/shared-status", StatusCode::OK),
        ("/health/services?service=redis", StatusCode::OK),
        ("/health/services?service=nope", StatusCode::BAD_REQUEST),
    ];
    for (uri, want) in expect {
        assert_eq!(oneshot(&app, uri).await.0, want, "{uri}");
    }
    let (_, body) = oneshot(&app, "/health").await;
    assert_eq!(
        (&body["healthy_count"], &body["unhealthy_count"]),
        (&json!(1), &json!(1))
    );
    assert_eq!(
        oneshot(&app, "/health/liveliness").await.1,
        json!("I'm alive!")
    );
    let resp = app
        .clone()
        .oneshot(Request::get("/app").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.into_body().collect().await.unwrap().to_bytes(), "7");
    let resp = app
        .oneshot(Request::get("/health").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
}

async fn get_real(base: &str, path: &str) -> (StatusCode, Value) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let req = Request::get(format!("{base}{path}"))
        .header("x-litellm-api-key", KEY)
        .body(Empty::new())
        .unwrap();
    let resp = client.request(req).await.expect("the gateway answers");
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).expect("JSON"))
}

#[tokio::test]
async fn over_a_real_socket_readiness_answers_while_health_waits_for_a_hanging_upstream() {
    let ok = Upstream::ok();
    let failing = Upstream::start(|_| Reply::status(500, r#"{"error":{"message":"boom"}}"#));
    let hanging = Upstream::start(|_| Reply::hang());
    let mut slow = Deployment::builder("r", "openai/m")
        .id("hang")
        .api_base(hanging.v1());
    slow.info_mut().health_check_timeout = Some(Duration::from_secs(3));
    let ds = vec![
        Deployment::builder("r", "openai/m")
            .id("ok")
            .api_base(ok.v1())
            .build(),
        Deployment::builder("r", "openai/m")
            .id("fail")
            .api_base(failing.v1())
            .build(),
        slow.build(),
    ];
    let state: HealthState = state_with(ds, |b| b.master_key(KEY));
    let probes = ProbeLoop::builder(&state)
        .defaults(ProbeDefaults::default())
        .build()
        .unwrap();
    let app = health_router::<()>(HealthEndpoints::new(state, probes));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let health = tokio::spawn({
        let base = base.clone();
        async move { get_real(&base, "/health").await }
    });
    // Wait (bounded) until the hanging upstream holds a probe, then ask the fast paths.
    assert!(crate::support::eventually(Duration::from_secs(2), || hanging.count() == 1).await);
    for path in ["/health/liveliness", "/health/readiness"] {
        let (status, _) = tokio::time::timeout(Duration::from_millis(500), get_real(&base, path))
            .await
            .unwrap_or_else(|_| panic!("{path} waited on the hanging upstream"));
        assert_eq!(status, StatusCode::OK, "{path}");
    }
    assert!(!health.is_finished(), "the round is still waiting");
    let (status, body) = health.await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body["healthy_endpoints"],
        json!([{"model": "openai/m", "model_id": "ok", "api_base": ok.v1()}])
    );
    assert_eq!(body["unhealthy_endpoints"][0]["exception_status"], 500);
    assert_eq!(body["unhealthy_endpoints"][0]["error"], "status 500: boom");
    assert_eq!(body["unhealthy_endpoints"][1]["model_id"], "hang");
    assert_eq!(body["unhealthy_endpoints"][1]["exception_status"], 408);
    server.abort();
}

#[tokio::test]
async fn the_router_serves_test_connection_with_its_body() {
    let up = Upstream::start(|_| Reply::ok());
    let ds = vec![
        Deployment::builder("r", "openai/m")
            .id("d1")
            .api_base(up.v1())
            .api_key("sk-planted-axum-key")
            .build(),
    ];
    let state = state_with(ds, |b| b.master_key(KEY));
    let script = Script::new(|_, _| Step::ok());
    let app: Router = health_router(HealthEndpoints::new(state.clone(), probes(&state, &script)));
    let post = |body: Value, key: Option<&str>| {
        let mut b =
            Request::post("/health/test_connection").header("content-type", "application/json");
        if let Some(k) = key {
            b = b.header("authorization", format!("Bearer {k}"));
        }
        let req = b.body(Body::from(body.to_string())).unwrap();
        let app = app.clone();
        async move {
            let resp = app.oneshot(req).await.unwrap();
            let status = resp.status();
            let bytes = resp.into_body().collect().await.unwrap().to_bytes();
            (status, String::from_utf8(bytes.to_vec()).unwrap())
        }
    };
    // The scripted prober answers (the loop's prober is the one used); nothing is stored.
    let (status, text) = post(
        json!({"model_info": {"id": "d1"}, "litellm_params": {"model": "openai/m"}}),
        Some(KEY),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        (v["status"].as_str(), v["result"]["model_id"].as_str()),
        (Some("success"), Some("d1")),
        "{v}"
    );
    assert!(!text.contains("sk-planted-axum-key"));
    assert!(state.snapshot().health("d1").is_none());
    assert_eq!(
        post(
            json!({"litellm_params": {"model": "os.environ/X"}}),
            Some(KEY)
        )
        .await
        .0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        post(json!({"litellm_params": {"model": "r"}}), None)
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    let big = json!({"litellm_params": {"model": "r", "pad": "x".repeat(70 << 10)}});
    assert_eq!(post(big, Some(KEY)).await.0, StatusCode::PAYLOAD_TOO_LARGE);
    // The plain tower Service cannot read bodies: it says where to go.
    let svc = HealthEndpoints::new(state.clone(), probes(&state, &script));
    let resp = svc
        .oneshot(Request::post("/health/test_connection").body(()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
}
