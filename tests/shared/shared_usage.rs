//! `usage-based-routing-v2` counters shared through a real `redis-server` by two
//! in-process "gateways" configured from YAML (`use_shared_health_check: true`), each with
//! its own state, layer, probe loop and Redis connections. Real time; bounded waits.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::support::{
    Upstreams,
    gateway::{fast, until},
    redis::RedisServer,
    upstream::Upstream,
};
use tokio::time::{Instant, sleep};
use tower::{Layer, Service, ServiceExt};
use tower_health_routing::{
    Config, HealthRoutingLayer, HealthState, NoDeploymentAvailable,
    probe::{ProbeDefaults, ProbeHandle, ProbeLoop},
    shared::SharedMode,
};

const FLUSH: Duration = Duration::from_millis(50);

struct Node {
    state: HealthState,
    probes: ProbeHandle,
}

impl Node {
    fn start(yaml: &str) -> Self {
        let state = HealthState::new(Config::from_yaml_str(yaml).expect("config"));
        let probes = ProbeLoop::builder(&state)
            .defaults(ProbeDefaults::default())
            .sharing(fast().usage_flush_interval(FLUSH))
            .build()
            .expect("the Redis store from router_settings")
            .spawn();
        Self { state, probes }
    }

    /// One request through this node's layer: the chosen id, or the refusal.
    async fn send(&self, inner: &Upstreams) -> Result<String, tower::BoxError> {
        let mut svc = HealthRoutingLayer::from_state(self.state.clone()).layer(inner.service());
        let resp = svc
            .ready()
            .await?
            .call(crate::support::request("r"))
            .await?;
        Ok(resp.into_body().into_inner())
    }
}

fn yaml(up: &Upstream, redis_port: u16, rpm: u64) -> String {
    format!(
        "model_list:\n  - model_name: r\n    litellm_params: {{model: openai/gpt-4o, api_base: \"{}\", rpm: {rpm}}}\n    \
         model_info: {{id: d0}}\n\
         general_settings:\n  background_health_checks: true\n  health_check_interval: 300\n  \
         use_shared_health_check: true\n\
         router_settings:\n  routing_strategy: usage-based-routing-v2\n  redis_host: 127.0.0.1\n  redis_port: {redis_port}\n",
        up.v1()
    )
}

/// Counters are per wall-clock minute: start the story at least 10 s before the next
/// minute turns, so it does not straddle two.
async fn clear_of_a_minute_boundary() {
    let into = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis()
        % 60_000;
    if into > 50_000 {
        sleep(Duration::from_millis(60_000 - into as u64 + 100)).await;
    }
}

#[tokio::test]
async fn traffic_through_one_gateway_counts_against_the_others_rpm() {
    let redis = RedisServer::start().await;
    let up = Upstream::ok();
    clear_of_a_minute_boundary().await;
    let (a, b) = (
        Node::start(&yaml(&up, redis.port, 5)),
        Node::start(&yaml(&up, redis.port, 5)),
    );
    let inner = Upstreams::new();
    for _ in 0..3 {
        assert_eq!(a.send(&inner).await.expect("under rpm"), "d0");
    }
    // B sees A's three requests within a few flush periods, without sending any.
    let t = Instant::now();
    assert!(
        until(Duration::from_secs(2), || async {
            b.state.usage_this_minute("d0").0 == 3
        })
        .await,
        "B counts A's requests: {:?}",
        b.state.usage_this_minute("d0")
    );
    println!("usage: B saw A's requests after {:?}", t.elapsed());
    // Two more slots in the cluster: B takes them, then A is at the limit too.
    for _ in 0..2 {
        assert_eq!(b.send(&inner).await.expect("the cluster has room"), "d0");
    }
    assert!(
        until(Duration::from_secs(2), || async {
            a.state.usage_this_minute("d0").0 == 5
        })
        .await,
        "A counts B's requests: {:?}",
        a.state.usage_this_minute("d0")
    );
    for node in [&a, &b] {
        let err = node
            .send(&inner)
            .await
            .expect_err("rpm 5 reached cluster-wide");
        let e = err
            .downcast_ref::<NoDeploymentAvailable>()
            .expect("refused as NoDeploymentAvailable");
        assert!(
            e.retry_after() > Duration::ZERO && e.retry_after() <= Duration::from_secs(60),
            "until the minute turns: {:?}",
            e.retry_after()
        );
    }
    assert_eq!(inner.hits(0), 5, "five requests in the cluster for rpm 5");
    a.probes.shutdown().await;
    b.probes.shutdown().await;
}

#[tokio::test]
async fn with_redis_down_each_gateway_counts_alone() {
    let mut redis = RedisServer::start().await;
    let up = Upstream::ok();
    clear_of_a_minute_boundary().await;
    let (a, b) = (
        Node::start(&yaml(&up, redis.port, 3)),
        Node::start(&yaml(&up, redis.port, 3)),
    );
    // Both share through Redis, then Redis goes.
    assert!(
        until(Duration::from_secs(3), || async {
            [&a, &b]
                .iter()
                .all(|n| n.state.shared_status().mode == SharedMode::On)
        })
        .await
    );
    redis.stop();
    sleep(3 * FLUSH).await;
    let inner = Upstreams::new();
    for node in [&a, &b] {
        for _ in 0..3 {
            let started = Instant::now();
            assert_eq!(node.send(&inner).await.expect("local rpm room"), "d0");
            assert!(
                started.elapsed() < Duration::from_millis(50),
                "never waits on Redis"
            );
        }
        assert!(
            node.send(&inner).await.is_err(),
            "its own rpm 3 still applies"
        );
    }
    assert_eq!(inner.hits(0), 6, "each counted alone: 3 + 3");
    a.probes.shutdown().await;
    b.probes.shutdown().await;
}
