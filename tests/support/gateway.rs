//! In-process "gateways" sharing a Redis, for the Redis tests: a health state, a routing
//! layer and a probe loop each, with its own Redis connection, and bounded real-time waits.

use std::{future::Future, sync::Arc, time::Duration};

use tokio::{
    sync::oneshot,
    task::JoinHandle,
    time::{Instant, sleep},
};
use tower::{Layer, ServiceExt};
use tower_health_routing::{
    Config, Deployment, HealthRoutingLayer, HealthState,
    config::RedisSettings,
    probe::{ProbeDefaults, ProbeLoop},
    secret::Secret,
    shared::{HealthStore, RedisStore, SharedMode, SharingSettings},
};

use super::{Upstreams, redis::RedisServer, upstream::Upstream};

pub const INTERVAL: Duration = Duration::from_millis(400);

/// Knobs for real-time tests: polls every 50 ms, a 300 ms lease, 200 ms per command.
pub fn fast() -> SharingSettings {
    SharingSettings::new()
        .poll_interval(Duration::from_millis(50))
        .lease_ttl(Duration::from_millis(300))
        .command_timeout(Duration::from_millis(200))
}

pub fn url(redis: &RedisServer) -> RedisSettings {
    RedisSettings::Url(Secret::new(redis.url()))
}

pub fn store(settings: &RedisSettings) -> RedisStore {
    RedisStore::new(settings).expect("a store")
}

/// Deployments `d{i}` of route `r`, one per upstream, with a planted key each.
pub fn config(ups: &[Upstream], interval: Duration) -> Config {
    Config::builder()
        .deployments(ups.iter().enumerate().map(|(i, up)| {
            Deployment::builder("r", "openai/gpt-4o")
                .id(format!("d{i}"))
                .api_base(up.v1())
                .api_key(format!("sk-planted-KEY-{i}"))
                .build()
        }))
        .health_check_interval(interval)
        .enable_health_check_routing(true)
        .cooldown_time(Duration::from_secs(30))
        .build()
        .expect("config")
}

/// One in-process gateway: its state, its probe loop's task (abortable, like a process
/// that can be killed) and a graceful stop.
pub struct Gateway {
    pub state: HealthState,
    pub task: JoinHandle<()>,
    stop: Option<oneshot::Sender<()>>,
}

impl Gateway {
    pub fn start(cfg: Config, redis: &RedisSettings, sharing: SharingSettings) -> Self {
        let state = HealthState::new(cfg);
        let probes = ProbeLoop::builder(&state)
            .defaults(ProbeDefaults::default())
            .default_timeout(Duration::from_secs(30))
            .store(Arc::new(store(redis)))
            .sharing(sharing)
            .build()
            .expect("probe loop");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(probes.run(async move {
            let _ = stopped.await;
        }));
        Self {
            state,
            task,
            stop: Some(stop),
        }
    }

    pub fn id(&self) -> String {
        self.state.shared_status().process_id.clone()
    }

    pub fn mode(&self) -> SharedMode {
        self.state.shared_status().mode
    }

    pub async fn shutdown(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = (&mut self.task).await;
    }

    /// Routes one request through this gateway's layer; the inner service answers for the
    /// chosen deployment as `up` says. Returns the chosen id.
    pub async fn route(&self, up: &Upstreams) -> String {
        let svc = HealthRoutingLayer::from_state(self.state.clone()).layer(up.service());
        let resp = svc
            .oneshot(super::request("r"))
            .await
            .expect("routed without Redis");
        resp.into_body().into_inner()
    }
}

/// Polls `cond` every 10 ms for at most `limit`.
pub async fn until<F: Future<Output = bool>>(limit: Duration, mut cond: impl FnMut() -> F) -> bool {
    let end = Instant::now() + limit;
    loop {
        if cond().await {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        sleep(Duration::from_millis(10)).await;
    }
}

pub async fn token(observer: &RedisStore) -> u64 {
    observer.observe().await.map_or(0, |o| o.written_token)
}
