//! Cooldowns and ejections pushed across three in-process "gateways" (a state, a routing
//! layer and a probe loop each, with their own Redis connections) through a real
//! `redis-server`. Polling is set to 10 s, so anything applied sooner came by push.
//! Real time, bounded waits; the measured delays are printed (`--nocapture`).

use std::time::Duration;

use crate::support::{
    Upstreams,
    gateway::{Gateway, until, url},
    redis::RedisServer,
    upstream::Upstream,
};
use tokio::time::{Instant, sleep};
use tower_health_routing::{
    Config, Deployment,
    config::OutlierDetection,
    shared::{SharedMode, SharingSettings},
};

const CHANNEL: &str = "{tower-health-routing}:events";

/// Polls every 10 s: a cooldown seen sooner elsewhere was pushed.
fn push_only() -> SharingSettings {
    SharingSettings::new()
        // A minute: what reaches another gateway within the tests' windows (5 s) came by
        // push, not by a poll.
        .poll_interval(Duration::from_secs(60))
        .lease_ttl(Duration::from_millis(300))
        .command_timeout(Duration::from_millis(200))
        .share_cooldowns(true)
}

/// Deployments `d{i}` of route `r`; one failure ejects (outlier detection), and all of
/// a route may be out at once.
fn config(ups: &[Upstream]) -> Config {
    let mut od = OutlierDetection::default();
    od.consecutive_failures = Some(1);
    od.max_ejection_percent = 100.0;
    Config::builder()
        .deployments(ups.iter().enumerate().map(|(i, up)| {
            Deployment::builder("r", "openai/gpt-4o")
                .id(format!("d{i}"))
                .api_base(up.v1())
                .api_key(format!("sk-planted-KEY-{i}"))
                .build()
        }))
        .health_check_interval(Duration::from_secs(60))
        .cooldown_time(Duration::from_secs(30))
        .outlier_detection(od)
        .build()
        .expect("config")
}

async fn subscribers(redis: &RedisServer) -> i64 {
    let Ok(client) = redis::Client::open(redis.url()) else {
        return 0;
    };
    let Ok(mut c) = client.get_multiplexed_async_connection().await else {
        return 0;
    };
    let r: redis::RedisResult<(String, i64)> = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg(CHANNEL)
        .query_async(&mut c)
        .await;
    r.map_or(0, |(_, n)| n)
}

/// How long until `seen` holds for every gateway of `others` (polled every millisecond,
/// at most `limit`).
async fn time_until_all(
    others: &[Gateway],
    limit: Duration,
    seen: impl Fn(&Gateway) -> bool,
) -> Option<Duration> {
    let t = Instant::now();
    while t.elapsed() < limit {
        if others.iter().all(&seen) {
            return Some(t.elapsed());
        }
        sleep(Duration::from_millis(1)).await;
    }
    None
}

#[tokio::test]
async fn cooldowns_and_ejections_reach_the_other_gateways_by_push_and_survive_an_outage() {
    let mut redis = RedisServer::start().await;
    let ups = [Upstream::ok(), Upstream::ok(), Upstream::ok()];
    let gws: Vec<_> = (0..3)
        .map(|_| Gateway::start(config(&ups), &url(&redis), push_only()))
        .collect();
    assert!(
        // A readiness wait (generous for a loaded machine), not the measure.
        until(Duration::from_secs(15), || async {
            gws.iter().all(|g| g.mode() == SharedMode::On) && subscribers(&redis).await == 3
        })
        .await,
        "three gateways subscribed"
    );

    // A cooldown in gateway 0 (d1 answers 429 to a request)...
    let inner = Upstreams::new();
    inner.set_status(1, 429);
    while inner.hits(1) == 0 {
        gws[0].route(&inner).await;
    }
    assert!(gws[0].state.cooldown_remaining("d1").is_some());
    let cooldown = time_until_all(&gws[1..], Duration::from_secs(5), |g| {
        g.state.cooldown_remaining("d1").is_some()
    })
    .await
    .expect("the cooldown reached gateways 1 and 2 (polling is 60 s: by push)");
    println!("push: a cooldown applied by the two other gateways after {cooldown:?}");
    // Applied there, not re-announced: the end is the same everywhere (to clock rounding).
    let ends: Vec<_> = gws
        .iter()
        .map(|g| g.state.cooldown_remaining("d1").unwrap().as_millis() as i64)
        .collect();
    assert!(ends.iter().all(|e| (e - ends[0]).abs() < 100), "{ends:?}");

    // ...and an ejection in gateway 1 (d2 answers 500: one failure ejects).
    let inner = Upstreams::new();
    inner.set_status(2, 500);
    while inner.hits(2) == 0 {
        gws[1].route(&inner).await;
    }
    assert!(gws[1].state.ejection_remaining("d2").is_some());
    let others = [&gws[0], &gws[2]];
    let t = Instant::now();
    while !others
        .iter()
        .all(|g| g.state.ejection_remaining("d2").is_some())
    {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "the ejection reached the others (polling is 60 s: by push)"
        );
        sleep(Duration::from_millis(1)).await;
    }
    let ejection = t.elapsed();
    println!("push: an ejection applied by the two other gateways after {ejection:?}");
    // A remote ejection does not count as one of this process's own.
    assert_eq!(gws[0].state.ejections("d2"), 0);
    assert_eq!(gws[1].state.ejections("d2"), 1);
    // d1 cools, d2 is ejected: every gateway sends to d0.
    for g in &gws {
        for _ in 0..5 {
            assert_eq!(g.route(&Upstreams::new()).await, "d0");
        }
    }

    // Redis killed: every gateway carries on alone; requests never wait on it.
    redis.stop();
    let t = Instant::now();
    while t.elapsed() < Duration::from_millis(500) {
        for g in &gws {
            let started = Instant::now();
            assert_eq!(g.route(&Upstreams::new()).await, "d0");
            // A request that waited on Redis would take its command timeout (200 ms).
            assert!(
                started.elapsed() < Duration::from_millis(150),
                "requests never wait on Redis"
            );
        }
        sleep(Duration::from_millis(10)).await;
    }

    // Redis back: the subscriptions are remade and pushing resumes.
    redis.restart().await;
    assert!(
        until(Duration::from_secs(15), || async {
            subscribers(&redis).await == 3
        })
        .await,
        "every gateway subscribes again"
    );
    let inner = Upstreams::new();
    inner.set_status(0, 429);
    // d0 is the only deployment left in rotation: its 429 cools it down only if the route
    // has others (LiteLLM spares a lone one), and it has three.
    while inner.hits(0) == 0 {
        gws[2].route(&inner).await;
    }
    assert!(gws[2].state.cooldown_remaining("d0").is_some());
    let again = time_until_all(&gws[..2], Duration::from_secs(5), |g| {
        g.state.cooldown_remaining("d0").is_some()
    })
    .await
    .expect("after the outage, a cooldown is pushed again");
    println!("push: after Redis came back, a cooldown applied elsewhere after {again:?}");
    for g in gws {
        g.shutdown().await;
    }
}
