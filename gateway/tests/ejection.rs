//! Traffic as a probe through the gateway, over real sockets: with
//! `health_check_skip_when_traffic_healthy`, a deployment that keeps answering client
//! requests is not probed, and `/health` says its result came from traffic. Real time,
//! short intervals, bounded waits.

use std::{net::SocketAddr, time::Duration};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use serde_json::{Value, json};
use thr_gateway::app;
use thr_testkit::{Reply, Upstream};
use tower_health_routing::{Config, Deployment};

const CLIENT_TEXT: &str = "a real client request";

/// The gateway over `up`, probing every 300 ms; returns its address and a stop handle.
async fn gateway(up: &Upstream, skip: bool) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let cfg = Config::builder()
        .deployment(
            Deployment::builder("gpt-4o", "openai/gpt-4o-mini")
                .id("only")
                .api_base(up.v1())
                .api_key("sk-test-ejection")
                .build(),
        )
        .background_health_checks(true)
        .health_check_interval(Duration::from_millis(300))
        .health_check_skip_when_traffic_healthy(skip)
        .build()
        .unwrap();
    let options = app::Options {
        metrics: Some(prometheus()),
        ..app::Options::default()
    };
    let gw = app::Gateway::new(cfg, &options).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let _ = gw.serve(listener, std::future::pending::<()>()).await;
    });
    (addr, task)
}

/// The Prometheus recorder of this test binary (installed once).
fn prometheus() -> metrics_exporter_prometheus::PrometheusHandle {
    static HANDLE: std::sync::OnceLock<metrics_exporter_prometheus::PrometheusHandle> =
        std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).expect("first recorder of this binary");
            handle
        })
        .clone()
}

async fn send(req: http::Request<Full<Bytes>>) -> (u16, Value) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let resp = tokio::time::timeout(Duration::from_secs(5), client.request(req))
        .await
        .expect("answer in time")
        .unwrap();
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

async fn chat(addr: SocketAddr) -> u16 {
    let body = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": CLIENT_TEXT}]});
    let req = http::Request::post(format!("http://{addr}/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    send(req).await.0
}

/// Upstream requests that were probes (not the client's).
fn probes(up: &Upstream) -> usize {
    up.requests()
        .iter()
        .filter(|r| !String::from_utf8_lossy(&r.body).contains(CLIENT_TEXT))
        .count()
}

/// Client traffic every 50 ms for `d`.
async fn traffic_for(addr: SocketAddr, d: Duration) {
    let end = tokio::time::Instant::now() + d;
    while tokio::time::Instant::now() < end {
        assert_eq!(chat(addr).await, 200);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn steady_traffic_replaces_the_probes() {
    let up = Upstream::start(|_| {
        Reply::status(
            200,
            r#"{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}]}"#,
        )
    });
    let (addr, task) = gateway(&up, true).await;
    // The first round (at start) probes: no traffic yet.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let at_start = probes(&up);
    traffic_for(addr, Duration::from_millis(1300)).await;
    let during = probes(&up) - at_start;
    assert_eq!(during, 0, "rounds in 1.3 s of traffic sent {during} probes");
    let (status, health) = send(
        http::Request::get(format!("http://{addr}/health"))
            .body(Full::new(Bytes::new()))
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{health}");
    let e = &health["healthy_endpoints"][0];
    assert_eq!(e["model_id"], "only", "{health}");
    assert_eq!(e["source"], "traffic", "{health}");
    assert!(e["checked_at"].is_string(), "{health}");
    // Probes saved are counted, by route and deployment.
    let text = prometheus().render();
    let saved: f64 = text
        .lines()
        .find(|l| {
            l.starts_with("tower_health_routing_probes_saved_total{")
                && l.contains("model_id=\"only\"")
                && l.contains("route=\"gpt-4o\"")
        })
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no probes_saved_total in\n{text}"));
    assert!(
        saved >= 3.0,
        "saved {saved} probes in 1.3 s of 300 ms rounds"
    );
    task.abort();
}

#[tokio::test]
async fn without_the_setting_the_probes_go_on() {
    let up = Upstream::start(|_| {
        Reply::status(
            200,
            r#"{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}]}"#,
        )
    });
    let (addr, task) = gateway(&up, false).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let at_start = probes(&up);
    traffic_for(addr, Duration::from_millis(1300)).await;
    let during = probes(&up) - at_start;
    assert!(during >= 3, "rounds every 300 ms sent only {during} probes");
    task.abort();
}
