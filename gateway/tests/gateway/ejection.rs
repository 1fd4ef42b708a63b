//! Traffic as a probe through the gateway, over real sockets: with
//! `health_check_skip_when_traffic_healthy`, a deployment that keeps answering client
//! requests is not probed, and `/health` says its result came from traffic. Real time,
//! short intervals, bounded waits.

use std::{net::SocketAddr, time::Duration};

use serde_json::json;
use thr_gateway::app;
use thr_testkit::{Reply, Upstream};
use tower_health_routing::{Config, Deployment};

use crate::support::{self, Running, get, send};

const CLIENT_TEXT: &str = "a real client request";
/// This module's deployment: its metrics are told apart from other tests' by this name (one
/// recorder serves the whole test process).
const ID: &str = "ejection-only";

/// The gateway over `up`, probing every 300 ms, with `/metrics`.
async fn gateway(up: &Upstream, skip: bool) -> Running {
    let cfg = Config::builder()
        .deployment(
            Deployment::builder("gpt-4o", "openai/gpt-4o-mini")
                .id(ID)
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
        metrics: Some(support::metrics()),
        ..app::Options::default()
    };
    support::start_with(cfg, options).await
}

async fn chat(addr: SocketAddr) -> u16 {
    let body = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": CLIENT_TEXT}]});
    send(addr, "/v1/chat/completions", body.to_string(), &[])
        .await
        .status
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
    let gw = gateway(&up, true).await;
    let addr = gw.addr;
    // The first round (at start) probes: no traffic yet.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let at_start = probes(&up);
    traffic_for(addr, Duration::from_millis(1300)).await;
    let during = probes(&up) - at_start;
    assert_eq!(during, 0, "rounds in 1.3 s of traffic sent {during} probes");
    let r = get(addr, "/health", None).await;
    let (status, health) = (r.status, r.json());
    assert_eq!(status, 200, "{health}");
    let e = &health["healthy_endpoints"][0];
    assert_eq!(e["model_id"], ID, "{health}");
    assert_eq!(e["source"], "traffic", "{health}");
    assert!(e["checked_at"].is_string(), "{health}");
    // Probes saved are counted, by route and deployment.
    let text = support::metrics().render();
    let saved: f64 = text
        .lines()
        .find(|l| {
            l.starts_with("tower_health_routing_probes_saved_total{")
                && l.contains(&format!("model_id=\"{ID}\""))
                && l.contains("route=\"gpt-4o\"")
        })
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no probes_saved_total in\n{text}"));
    assert!(
        saved >= 3.0,
        "saved {saved} probes in 1.3 s of 300 ms rounds"
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn without_the_setting_the_probes_go_on() {
    let up = Upstream::start(|_| {
        Reply::status(
            200,
            r#"{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}]}"#,
        )
    });
    let gw = gateway(&up, false).await;
    let addr = gw.addr;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let at_start = probes(&up);
    traffic_for(addr, Duration::from_millis(1300)).await;
    let during = probes(&up) - at_start;
    assert!(during >= 3, "rounds every 300 ms sent only {during} probes");
    gw.shutdown().await;
}
