//! Test support: a recording upstream server and a scripted prober.
#![allow(dead_code, unreachable_pub)] // each test binary uses its own part of it

pub mod script;
pub mod upstream;
pub mod wire;

use std::{sync::Arc, time::Duration};

use tower_health_routing::{Config, Deployment, HealthState};

/// A state over `deployments` with `tweak` applied to the builder.
pub fn state_with(
    deployments: Vec<Deployment>,
    tweak: impl FnOnce(tower_health_routing::ConfigBuilder) -> tower_health_routing::ConfigBuilder,
) -> HealthState {
    let b = Config::builder().deployments(deployments);
    HealthState::new(tweak(b).build().expect("valid test config"))
}

/// `n` deployments of route `route`, ids `{route}-{i}`, at `api_base`.
pub fn many(route: &str, n: usize, api_base: &str) -> Vec<Deployment> {
    (0..n)
        .map(|i| {
            Deployment::builder(route, "openai/gpt-4o")
                .id(format!("{route}-{i}"))
                .api_base(api_base)
                .build()
        })
        .collect()
}

/// A deployment with its `model_info` edited.
pub fn with_info(
    b: tower_health_routing::DeploymentBuilder,
    f: impl FnOnce(&mut tower_health_routing::ModelInfo),
) -> Deployment {
    let mut b = b;
    f(b.info_mut());
    b.build()
}

/// Polls `cond` every 5 ms of real time for at most `limit`.
pub async fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Duration::from_millis(5);
    let mut waited = Duration::ZERO;
    while waited < limit {
        if cond() {
            return true;
        }
        tokio::time::sleep(deadline).await;
        waited += deadline;
    }
    cond()
}

pub fn arc(d: Deployment) -> Arc<Deployment> {
    Arc::new(d)
}
