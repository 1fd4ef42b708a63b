//! Shared health state through a real `redis-server` (started per test on a free local
//! port, killed when the test ends), with in-process "gateways" (a state, a routing layer
//! and a probe loop each, with its own Redis connection) and real local upstreams that
//! count the probes they receive. Real time: intervals of 400 ms and bounded waits.
//!
//! A missing `redis-server` fails these tests with a message saying how to install it.

use std::time::Duration;

use crate::support::{
    Upstreams,
    gateway::{Gateway, INTERVAL, config, fast, store, token, until, url},
    redis::{self as server, RedisServer},
    store_contract,
    upstream::{Reply, Upstream},
};
use tokio::time::{Instant, sleep};
use tower_health_routing::{
    Config, HealthState,
    config::RedisSettings,
    probe::{ProbeDefaults, ProbeLoop},
    secret::Secret,
    shared::{HealthStore, SharedMode, SharingSettings},
};

#[test]
fn redis_server_is_installed() {
    let v = server::installed().unwrap_or_else(|e| panic!("{e}"));
    assert!(v.contains("Redis server"), "{v}");
}

#[tokio::test]
async fn store_contract_lease() {
    let redis = RedisServer::start().await;
    store_contract::lease_is_exclusive_and_only_its_holder_renews_or_releases(&store(&url(&redis)))
        .await;
}

#[tokio::test]
async fn store_contract_a_stale_lease_writer_cannot_overwrite_newer_results() {
    let redis = RedisServer::start().await;
    store_contract::a_stale_lease_writer_cannot_overwrite_newer_results(&store(&url(&redis))).await;
}

#[tokio::test]
async fn store_contract_acquire_needs_the_latest_round() {
    let redis = RedisServer::start().await;
    store_contract::acquire_needs_the_latest_round(&store(&url(&redis))).await;
}

#[tokio::test]
async fn store_contract_cooldowns() {
    let redis = RedisServer::start().await;
    store_contract::cooldowns_keep_the_later_end(&store(&url(&redis))).await;
}

#[tokio::test]
async fn three_gateways_probe_each_deployment_once_per_round() {
    let redis = RedisServer::start().await;
    let ups = [Upstream::ok(), Upstream::ok()];
    let observer = store(&url(&redis));
    let t0 = Instant::now();
    let gws: Vec<_> = (0..3)
        .map(|_| Gateway::start(config(&ups, INTERVAL), &url(&redis), fast()))
        .collect();
    assert!(
        until(Duration::from_secs(5), || async {
            token(&observer).await >= 5
        })
        .await,
        "five shared rounds within 5 s"
    );
    let elapsed = t0.elapsed();
    for g in gws {
        g.shutdown().await;
    }
    let rounds = token(&observer).await;
    for (i, up) in ups.iter().enumerate() {
        let probes = up.count() as u64;
        assert!(
            (rounds..=rounds + 1).contains(&probes),
            "d{i}: {probes} probes for {rounds} rounds (three gateways probing alone would be ~{})",
            3 * rounds
        );
    }
    let max_rounds = (elapsed.as_secs_f64() / INTERVAL.as_secs_f64()).floor() as u64 + 1;
    assert!(rounds <= max_rounds, "{rounds} rounds in {elapsed:?}");
}

#[tokio::test]
async fn every_gateway_routes_away_from_a_failing_deployment() {
    let redis = RedisServer::start().await;
    let ups = [
        Upstream::ok(),
        Upstream::start(|_| Reply::status(500, r#"{"error":"down"}"#)),
    ];
    let observer = store(&url(&redis));
    let gws: Vec<_> = (0..3)
        .map(|_| Gateway::start(config(&ups, INTERVAL), &url(&redis), fast()))
        .collect();
    let all_see_it = until(Duration::from_secs(3), || async {
        gws.iter()
            .all(|g| g.state.load().health("d1").is_some_and(|h| !h.healthy))
    })
    .await;
    assert!(all_see_it, "every gateway marks d1 unhealthy");
    let inner = Upstreams::new();
    for g in &gws {
        for _ in 0..10 {
            assert_eq!(g.route(&inner).await, "d0");
        }
    }
    let rounds = token(&observer).await;
    assert!(
        ups[1].count() as u64 <= rounds + 1,
        "{} probes of d1 for {rounds} rounds",
        ups[1].count()
    );
}

#[tokio::test]
async fn a_killed_leader_is_replaced_within_two_intervals() {
    let redis = RedisServer::start().await;
    // Rounds take 250 ms, so a leader can be caught mid-round; probe timeouts are 30 s.
    let slow = || Upstream::start(|_| Reply::ok().after(Duration::from_millis(250)));
    let ups = [slow(), slow()];
    let observer = store(&url(&redis));
    let mut gws: Vec<_> = (0..3)
        .map(|_| Gateway::start(config(&ups, INTERVAL), &url(&redis), fast()))
        .collect();
    // A leader mid-round: the lease is held, after at least one round was written.
    let deadline = Instant::now() + Duration::from_secs(5);
    let leader = loop {
        let o = observer.observe().await.expect("observe");
        if let Some(h) = o.lease_holder.filter(|_| o.written_token >= 1) {
            break h;
        }
        assert!(
            Instant::now() < deadline,
            "no leader caught mid-round within 5 s"
        );
        sleep(Duration::from_millis(5)).await;
    };
    let i = gws
        .iter()
        .position(|g| g.id() == leader)
        .expect("a gateway leads");
    let killed = gws.remove(i);
    killed.task.abort(); // As SIGKILL: no release.
    let t_kill = Instant::now();
    let replaced = until(Duration::from_secs(3), || async {
        let o = observer.observe().await.expect("observe");
        o.round.is_some_and(|r| {
            r.checked_by != leader
                && r.written_at() > std::time::SystemTime::now() - t_kill.elapsed()
        })
    })
    .await;
    let took = t_kill.elapsed();
    assert!(replaced, "another gateway wrote a round after the kill");
    // Lease 300 ms + a poll + a 250 ms round: within two intervals, with slack for CI.
    assert!(
        took < 2 * INTERVAL + Duration::from_millis(400),
        "replaced after {took:?}"
    );
    assert_ne!(observer.observe().await.unwrap().lease_holder, Some(leader));
}

#[tokio::test]
async fn redis_outage_means_local_probing_then_rejoining() {
    let mut redis = RedisServer::start().await;
    let ups = [Upstream::ok(), Upstream::ok()];
    let observer = store(&url(&redis));
    let gws: Vec<_> = (0..3)
        .map(|_| Gateway::start(config(&ups, INTERVAL), &url(&redis), fast()))
        .collect();
    assert!(
        until(Duration::from_secs(3), || async {
            token(&observer).await >= 2
        })
        .await
    );

    redis.stop();
    let degraded = until(Duration::from_secs(2), || async {
        gws.iter().all(|g| g.mode() == SharedMode::Degraded)
    })
    .await;
    assert!(degraded, "every gateway notices");
    let detail = gws[0].state.shared_status().detail.clone().unwrap();
    assert!(detail.starts_with("redis unavailable"), "{detail}");
    let before = ups[0].count();
    let inner = Upstreams::new();
    let t = Instant::now();
    while t.elapsed() < 3 * INTERVAL {
        for g in &gws {
            let started = Instant::now();
            assert!(g.route(&inner).await.starts_with('d'));
            assert!(
                started.elapsed() < Duration::from_millis(50),
                "requests never wait on Redis"
            );
        }
        sleep(Duration::from_millis(20)).await;
    }
    let local = ups[0].count() - before;
    assert!(
        local >= 6,
        "each gateway probes on its own: {local} probes in 1.2 s"
    );
    for g in &gws {
        let age = g.state.load().health("d0").unwrap().checked_at.elapsed();
        assert!(
            age < 2 * INTERVAL,
            "each gateway has a fresh local result: {age:?}"
        );
    }

    redis.restart().await;
    let back = until(Duration::from_secs(5), || async {
        gws.iter().all(|g| g.mode() == SharedMode::On)
    })
    .await;
    assert!(back, "every gateway rejoins");
    let (w0, c0) = (token(&observer).await, ups[0].count() as u64);
    assert!(
        until(Duration::from_secs(3), || async {
            token(&observer).await >= w0 + 3
        })
        .await
    );
    let (w1, c1) = (token(&observer).await, ups[0].count() as u64);
    assert!(
        c1 - c0 <= w1 - w0 + 1,
        "shared again: {} probes for {} rounds",
        c1 - c0,
        w1 - w0
    );
}

#[tokio::test]
async fn nothing_secret_reaches_redis() {
    const PASSWORD: &str = "redis-planted-PASS-4711";
    let mut redis = RedisServer::start_with_password(PASSWORD).await;
    // d1 answers 401 quoting the key it was sent, as some providers do.
    let ups = [
        Upstream::ok(),
        Upstream::start(|r| {
            let key = r.header("authorization").unwrap_or("").to_owned();
            Reply::status(
                401,
                format!(r#"{{"error":{{"message":"Incorrect API key provided: {key}"}}}}"#),
            )
        }),
    ];
    let with_url = RedisSettings::Url(Secret::new(format!(
        "redis://:{PASSWORD}@127.0.0.1:{}",
        redis.port
    )));
    let with_host = RedisSettings::HostPort {
        host: "127.0.0.1".into(),
        port: redis.port,
        password: Some(Secret::new(PASSWORD)),
        tls: false,
    };
    let sharing = fast().share_cooldowns(true);
    let gws = [
        Gateway::start(config(&ups, INTERVAL), &with_url, sharing.clone()),
        Gateway::start(config(&ups, INTERVAL), &with_host, sharing),
    ];
    let observer = store(&with_host);
    assert!(
        until(Duration::from_secs(3), || async {
            gws.iter().all(|g| g.mode() == SharedMode::On)
        })
        .await
    );
    // A cooldown entered by a request (d0 answers 429 to it), to put one in Redis too.
    let inner = Upstreams::new();
    inner.set_status(0, 429);
    while inner.hits(0) == 0 {
        gws[0].route(&inner).await;
    }
    let ready = until(Duration::from_secs(3), || async {
        token(&observer).await >= 2 && !observer.cooldowns().await.unwrap_or_default().is_empty()
    })
    .await;
    assert!(ready, "rounds and a cooldown written");

    let client = redis::Client::open(with_url_string(PASSWORD, redis.port)).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let mut keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut c)
        .await
        .unwrap();
    keys.sort();
    let mut all = keys.join("\n");
    for k in &keys {
        let kind: String = redis::cmd("TYPE").arg(k).query_async(&mut c).await.unwrap();
        let text: Vec<String> = match kind.as_str() {
            "string" => vec![redis::cmd("GET").arg(k).query_async(&mut c).await.unwrap()],
            "zset" => redis::cmd("ZRANGE")
                .arg(k)
                .arg(0)
                .arg(-1)
                .arg("WITHSCORES")
                .query_async(&mut c)
                .await
                .unwrap(),
            // The usage counters of usage-based-routing-v2 (`{prefix}:usage:{minute}`).
            "hash" => redis::cmd("HGETALL")
                .arg(k)
                .query_async(&mut c)
                .await
                .unwrap(),
            other => panic!("unexpected {other} key {k}"),
        };
        all.push('\n');
        all.push_str(&text.join("\n"));
    }
    assert_eq!(
        keys,
        [
            "{tower-health-routing}:cooldowns",
            "{tower-health-routing}:fence",
            "{tower-health-routing}:results",
            "{tower-health-routing}:results_token",
        ],
        "the lease is free between rounds"
    );
    assert!(
        all.contains("status 401"),
        "the 401 reason is shared: {all}"
    );
    for secret in ["sk-planted-KEY-0", "sk-planted-KEY-1", PASSWORD] {
        assert!(!all.contains(secret), "{secret} reached Redis:\n{all}");
    }
    // Nor through the store's own Debug, or its errors once Redis is gone.
    let debug = format!("{observer:?} {:?}", store(&with_url));
    assert!(!debug.contains(PASSWORD), "{debug}");
    assert!(observer.ping().await.is_ok());
    redis.stop();
    let err = store(&with_url).ping().await.unwrap_err();
    assert!(
        !err.contains(PASSWORD) && err.contains("redis at 127.0.0.1"),
        "{err}"
    );
}

fn with_url_string(password: &str, port: u16) -> String {
    format!("redis://:{password}@127.0.0.1:{port}")
}

#[tokio::test]
async fn status_shows_mode_lease_holder_and_fencing_token() {
    let redis = RedisServer::start().await;
    let slow = || Upstream::start(|_| Reply::ok().after(Duration::from_millis(150)));
    let ups = [slow()];
    let observer = store(&url(&redis));
    let gws: Vec<_> = (0..3)
        .map(|_| Gateway::start(config(&ups, INTERVAL), &url(&redis), fast()))
        .collect();
    let ids: Vec<String> = gws.iter().map(Gateway::id).collect();
    assert!(
        ids[0] != ids[1] && ids[1] != ids[2] && ids[0] != ids[2],
        "{ids:?}"
    );
    // Mid-round, every gateway names the holder the store names.
    let shown = until(Duration::from_secs(3), || async {
        let Some(h) = observer.observe().await.ok().and_then(|o| o.lease_holder) else {
            return false;
        };
        gws.iter()
            .all(|g| g.state.shared_status().lease_holder.as_deref() == Some(h.as_str()))
    })
    .await;
    assert!(shown, "the lease holder is shown");
    let agreed = until(Duration::from_secs(3), || async {
        let o = observer.observe().await.unwrap();
        let Some(r) = o.round else { return false };
        gws.iter().all(|g| {
            let st = g.state.shared_status();
            st.mode == SharedMode::On
                && st.backend == "redis"
                && st.fencing_token == Some(r.token)
                && st.last_checked_by.as_deref() == Some(r.checked_by.as_str())
                && st.results_written_at == Some(r.written_at())
        })
    })
    .await;
    assert!(
        agreed,
        "every gateway shows the latest round's token and prober"
    );
    let by = gws[0]
        .state
        .shared_status()
        .last_checked_by
        .clone()
        .unwrap();
    assert!(ids.contains(&by), "{by} is one of the gateways");
}

#[tokio::test]
async fn a_cooldown_reaches_the_other_gateways_within_a_second() {
    let redis = RedisServer::start().await;
    let ups = [Upstream::ok(), Upstream::ok()];
    // Default knobs (a 500 ms poll), cooldowns shared.
    let sharing = SharingSettings::new().share_cooldowns(true);
    let gws: Vec<_> = (0..3)
        .map(|_| {
            Gateway::start(
                config(&ups, Duration::from_secs(1)),
                &url(&redis),
                sharing.clone(),
            )
        })
        .collect();
    assert!(
        until(Duration::from_secs(3), || async {
            gws.iter().all(|g| g.mode() == SharedMode::On)
        })
        .await
    );
    let inner = Upstreams::new();
    inner.set_status(1, 429);
    while inner.hits(1) == 0 {
        gws[0].route(&inner).await;
    }
    let entered = Instant::now();
    assert!(gws[0].state.cooldown_remaining("d1").is_some());
    let everywhere = until(Duration::from_secs(2), || async {
        gws[1..]
            .iter()
            .all(|g| g.state.cooldown_remaining("d1").is_some())
    })
    .await;
    let took = entered.elapsed();
    assert!(
        everywhere && took < Duration::from_secs(1),
        "shared after {took:?}"
    );
    for g in &gws[1..] {
        assert!(g.state.cooldown_remaining("d0").is_none());
        for _ in 0..5 {
            assert_eq!(
                g.route(&Upstreams::new()).await,
                "d0",
                "d1 sits out here too"
            );
        }
    }
}

#[tokio::test]
async fn use_shared_health_check_in_yaml_shares_through_redis() {
    let redis = RedisServer::start().await;
    let up = Upstream::ok();
    let yaml = format!(
        "model_list:\n  - model_name: r\n    litellm_params: {{model: openai/gpt-4o, api_base: \"{}\"}}\n    \
         model_info: {{id: d0}}\n\
         general_settings:\n  background_health_checks: true\n  health_check_interval: 1\n  \
         use_shared_health_check: true\n\
         router_settings:\n  redis_host: 127.0.0.1\n  redis_port: {}\n",
        up.v1(),
        redis.port
    );
    let state = HealthState::new(Config::from_yaml_str(&yaml).expect("config"));
    let probes = ProbeLoop::builder(&state)
        .defaults(ProbeDefaults::default())
        .build()
        .expect("the Redis store from router_settings");
    let handle = probes.spawn();
    let observer = store(&url(&redis));
    assert!(
        until(Duration::from_secs(3), || async {
            token(&observer).await >= 1
        })
        .await
    );
    assert!(
        until(Duration::from_secs(2), || async {
            let st = state.shared_status();
            st.mode == SharedMode::On && st.backend == "redis"
        })
        .await
    );
    handle.shutdown().await;
    assert_eq!(up.count(), 1);
}
