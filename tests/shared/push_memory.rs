//! Pushed cooldowns and ejections through a shared `MemoryStore` (its broadcast channel),
//! under paused time with a scripted prober: exact rules, no sockets. Polling is set to
//! 60 s, so anything seen sooner was pushed.

use std::{sync::Arc, time::Duration};

use crate::support::{
    Upstreams, deployments,
    script::{Script, Step},
    state_with,
};
use tokio::time::sleep;
use tower::{Layer, Service, ServiceExt};
use tower_health_routing::{
    ConfigBuilder, HealthRoutingLayer, HealthState,
    config::OutlierDetection,
    probe::{ProbeLoop, Prober},
    shared::{HealthStore, MemoryStore, SharingSettings},
};

fn push_only() -> SharingSettings {
    SharingSettings::new()
        .poll_interval(Duration::from_secs(60))
        .share_cooldowns(true)
}

/// `n` states over deployments `d0`.. `d{k-1}`, their loops sharing `store`.
fn gateways(
    n: usize,
    k: usize,
    script: &Arc<Script>,
    store: &Arc<MemoryStore>,
    tweak: impl Fn(ConfigBuilder) -> ConfigBuilder,
) -> Vec<HealthState> {
    (0..n)
        .map(|_| {
            let state = state_with(deployments("r", k), |b| {
                tweak(b.health_check_interval(Duration::from_secs(300)))
                    .cooldown_time(Duration::from_secs(30))
            });
            let probes = ProbeLoop::builder(&state)
                .prober(Arc::clone(script) as Arc<dyn Prober>)
                .store(Arc::clone(store) as Arc<dyn HealthStore>)
                .sharing(push_only())
                .build()
                .expect("loop");
            tokio::spawn(probes.run(std::future::pending()));
            state
        })
        .collect()
}

/// Sends requests through `state` until deployment `i` was hit once.
async fn hit(state: &HealthState, up: &Upstreams, i: usize) {
    let mut svc = HealthRoutingLayer::from_state(state.clone())
        .with_seed(7)
        .layer(up.service());
    let before = up.hits(i);
    while up.hits(i) == before {
        let _ = svc
            .ready()
            .await
            .unwrap()
            .call(crate::support::request("r"))
            .await;
    }
}

fn one_failure_ejects(max_percent: f64) -> impl Fn(ConfigBuilder) -> ConfigBuilder {
    move |b| {
        let mut od = OutlierDetection::default();
        od.consecutive_failures = Some(1);
        od.max_ejection_percent = max_percent;
        b.outlier_detection(od)
    }
}

#[tokio::test(start_paused = true)]
async fn a_cooldown_is_pushed_at_once_and_applied_once() {
    let store = Arc::new(MemoryStore::new());
    let script = Script::new(|_, _| Step::ok());
    let gws = gateways(2, 2, &script, &store, |b| b);
    sleep(Duration::from_millis(10)).await;
    let up = Upstreams::new();
    up.set_status(1, 429);
    hit(&gws[0], &up, 1).await;
    let here = gws[0].cooldown_remaining("d1").expect("cooling in A");
    sleep(Duration::from_millis(5)).await;
    let there = gws[1]
        .cooldown_remaining("d1")
        .expect("pushed to B within 5 ms (polls are 60 s apart)");
    assert!(
        here - there < Duration::from_millis(20),
        "{here:?} vs {there:?}"
    );
    // Not echoed back into A as a longer cooldown.
    let again = gws[0].cooldown_remaining("d1").unwrap();
    assert!(again <= here, "{again:?} > {here:?}");
}

#[tokio::test(start_paused = true)]
async fn a_pushed_ejection_respects_the_receivers_max_ejection_percent() {
    let store = Arc::new(MemoryStore::new());
    let script = Script::new(|_, _| Step::ok());
    // Three deployments, 10 %: one may always be out, a second may not.
    let gws = gateways(2, 3, &script, &store, one_failure_ejects(10.0));
    sleep(Duration::from_millis(10)).await;
    // B ejects d2 on its own first (its view: one out).
    let up_b = Upstreams::new();
    up_b.set_status(2, 500);
    hit(&gws[1], &up_b, 2).await;
    assert!(gws[1].ejection_remaining("d2").is_some());
    sleep(Duration::from_millis(5)).await;
    // A applied B's ejection of d2 (A had none out).
    assert!(gws[0].ejection_remaining("d2").is_some(), "pushed to A");
    assert_eq!(gws[0].ejections("d2"), 0, "not counted as A's own ejection");
    // A cannot eject d1 itself now (one of three is out, 10 %)...
    let up_a = Upstreams::new();
    up_a.set_status(1, 500);
    hit(&gws[0], &up_a, 1).await;
    assert!(gws[0].ejection_remaining("d1").is_none());
}

#[tokio::test(start_paused = true)]
async fn a_pushed_ejection_is_not_applied_beyond_the_local_cap() {
    let store = Arc::new(MemoryStore::new());
    let script = Script::new(|_, _| Step::ok());
    let gws = gateways(2, 3, &script, &store, one_failure_ejects(10.0));
    sleep(Duration::from_millis(10)).await;
    // Both eject a different deployment at about the same time: A d0, B d1.
    let (ua, ub) = (Upstreams::new(), Upstreams::new());
    ua.set_status(0, 500);
    ub.set_status(1, 500);
    hit(&gws[0], &ua, 0).await;
    assert!(gws[0].ejection_remaining("d0").is_some());
    // Before B hears of it (no runtime turn yet), B ejects d1 with its own room.
    hit(&gws[1], &ub, 1).await;
    sleep(Duration::from_millis(5)).await;
    // Each keeps one of three out, as its max_ejection_percent allows: the other's is not
    // applied on top (unless B had already applied A's d0 before its own, then B's d1 was
    // refused there instead); never two out in one process.
    for g in &gws {
        let out = ["d0", "d1", "d2"]
            .iter()
            .filter(|id| g.ejection_remaining(id).is_some())
            .count();
        assert_eq!(out, 1, "one of three out in each process");
    }
}
