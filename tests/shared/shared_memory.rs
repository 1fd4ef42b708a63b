//! Coordination across probe loops through a shared `MemoryStore`, under paused time with
//! a scripted prober (no sockets): the same protocol the Redis store runs, with exact
//! timings. The Redis tests (`shared_redis.rs`) repeat the essentials on a real server.

use std::{sync::Arc, time::Duration};

use crate::support::{
    Upstreams, deployments, many,
    script::{Script, Step},
    state_with, store_contract,
};
use tokio::{
    task::JoinHandle,
    time::{Instant, sleep},
};
use tower::{Layer, Service, ServiceExt};
use tower_health_routing::{
    Config, ConfigBuilder, HealthRoutingLayer, HealthState,
    probe::{ProbeLoop, ProbeOutcome, Prober},
    routing::Picker,
    shared::{HealthStore, MemoryStore, SharedMode, SharingSettings},
};

const BASE: &str = "http://127.0.0.1:9/v1";
const INTERVAL: Duration = Duration::from_secs(10);

fn every_10s(b: ConfigBuilder) -> ConfigBuilder {
    b.health_check_interval(INTERVAL)
        .enable_health_check_routing(true)
}

fn probes(
    state: &HealthState,
    script: &Arc<Script>,
    store: &Arc<MemoryStore>,
    sharing: SharingSettings,
) -> ProbeLoop {
    ProbeLoop::builder(state)
        .prober(Arc::clone(script) as Arc<dyn Prober>)
        .store(Arc::clone(store) as Arc<dyn HealthStore>)
        .sharing(sharing)
        .build()
        .expect("loop")
}

/// `n` gateways (states over the same deployments) whose loops share `store`; each loop
/// runs in a task that can be aborted, like a process that is killed.
fn gateways(
    n: usize,
    script: &Arc<Script>,
    store: &Arc<MemoryStore>,
    tweak: impl Fn(ConfigBuilder) -> ConfigBuilder,
    sharing: SharingSettings,
) -> Vec<(HealthState, JoinHandle<()>)> {
    (0..n)
        .map(|_| {
            let state = state_with(many("r", 2, BASE), &tweak);
            let task = tokio::spawn(
                probes(&state, script, store, sharing.clone()).run(std::future::pending()),
            );
            (state, task)
        })
        .collect()
}

/// Whether `got` matches `want` (seconds) within 50 ms each.
fn near(got: &[f64], want: &[f64]) -> bool {
    got.len() == want.len() && got.iter().zip(want).all(|(g, w)| (g - w).abs() < 0.05)
}

fn pid(state: &HealthState) -> String {
    state.shared_status().process_id.clone()
}

#[tokio::test(start_paused = true)]
async fn store_contract_lease() {
    store_contract::lease_is_exclusive_and_only_its_holder_renews_or_releases(&MemoryStore::new())
        .await;
}

#[tokio::test(start_paused = true)]
async fn store_contract_fencing() {
    store_contract::a_stale_lease_writer_cannot_overwrite_newer_results(&MemoryStore::new()).await;
}

#[tokio::test(start_paused = true)]
async fn store_contract_acquire_needs_the_latest_round() {
    store_contract::acquire_needs_the_latest_round(&MemoryStore::new()).await;
}

#[tokio::test(start_paused = true)]
async fn store_contract_cooldowns() {
    store_contract::cooldowns_keep_the_later_end(&MemoryStore::new()).await;
}

#[tokio::test(start_paused = true)]
async fn one_loop_probes_per_round_and_the_others_follow() {
    // Probes take 2 s, so the others poll while a round is in flight.
    let store = Arc::new(MemoryStore::new());
    let script = Script::new(|_, _| {
        Step::After(
            Duration::from_secs(2),
            ProbeOutcome::healthy().with_status(200),
        )
    });
    let t0 = Instant::now();
    let gws = gateways(3, &script, &store, every_10s, SharingSettings::new());
    sleep(Duration::from_secs(35)).await;
    for id in ["r-0", "r-1"] {
        let starts = script.starts(id, t0);
        assert!(near(&starts, &[0.0, 10.0, 20.0, 30.0]), "{id}: {starts:?}");
    }
    let token = store.observe().await.unwrap().written_token;
    assert_eq!(token, 4, "one written round per interval");
    for (state, _) in &gws {
        let snap = state.load();
        for id in ["r-0", "r-1"] {
            let h = snap.health(id).expect("every gateway has the results");
            assert!(h.healthy);
            assert!(
                Instant::now() - h.checked_at < Duration::from_secs(4),
                "checked at the end of the last round (~3 s ago), by age"
            );
        }
        assert_eq!(state.shared_status().fencing_token, Some(4));
    }
}

#[tokio::test(start_paused = true)]
async fn every_gateway_routes_away_from_a_failing_deployment() {
    let store = Arc::new(MemoryStore::new());
    let script = Script::new(|id, _| {
        if id == "r-1" {
            Step::fail(503)
        } else {
            Step::ok()
        }
    });
    let gws = gateways(3, &script, &store, every_10s, SharingSettings::new());
    sleep(Duration::from_secs(1)).await;
    assert_eq!(script.calls().len(), 2, "one probe per deployment in all");
    for (state, _) in &gws {
        let snap = state.load();
        let h = snap.health("r-1").expect("shared result");
        assert_eq!((h.healthy, h.status), (false, Some(503)));
        let mut picker = Picker::new(state.clone()).with_seed(1);
        for _ in 0..20 {
            let pick = picker.pick(&snap, "r", &[]).expect("r-0 is healthy");
            assert_eq!(pick.deployment().id().as_str(), "r-0");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_killed_leader_is_replaced_once_its_lease_expires() {
    // The second probe of each deployment never answers: the round at 10 s hangs.
    let store = Arc::new(MemoryStore::new());
    let script = Script::new(|_, n| if n == 1 { Step::Hang } else { Step::ok() });
    let t0 = Instant::now();
    let gws = gateways(3, &script, &store, every_10s, SharingSettings::new());
    sleep(Duration::from_secs(12)).await;
    let leader = store
        .observe()
        .await
        .unwrap()
        .lease_holder
        .expect("the round of 10 s holds the lease");
    let (_, task) = gws
        .iter()
        .find(|(s, _)| pid(s) == leader)
        .expect("a gateway holds it");
    task.abort(); // As SIGKILL: no release.
    sleep(Duration::from_secs(8)).await;
    // Lease of 5 s (interval / 2), last renewed at ~11.7 s: expired at ~16.7 s, taken at the
    // next poll (every 0.5 s), well within two intervals of the hung round.
    let starts = script.starts("r-0", t0);
    assert!(near(&starts, &[0.0, 10.0, 17.0]), "{starts:?}");
    let seen = store.observe().await.unwrap();
    let round = seen.round.expect("a new round");
    assert_ne!(round.checked_by, leader);
    assert_eq!(
        round.token, 3,
        "the killed leader's token 2 was never written"
    );
}

#[tokio::test(start_paused = true)]
async fn followers_probe_themselves_when_the_leader_is_stuck() {
    // The leader is alive (renewing its lease) but its round at 10 s never ends.
    let store = Arc::new(MemoryStore::new());
    let script = Script::new(|_, n| if n == 1 { Step::Hang } else { Step::ok() });
    let t0 = Instant::now();
    let gws = gateways(3, &script, &store, every_10s, SharingSettings::new());
    sleep(Duration::from_secs(25)).await;
    let starts = script.starts("r-0", t0);
    // Due at 10 s, waited one more interval: both followers probe at 20 s.
    assert!(near(&starts, &[0.0, 10.0, 20.0, 20.0]), "{starts:?}");
    let leader = store
        .observe()
        .await
        .unwrap()
        .lease_holder
        .expect("still held");
    for (state, _) in gws.iter().filter(|(s, _)| pid(s) != leader) {
        let checked = state.load().health("r-0").unwrap().checked_at;
        assert!(
            Instant::now() - checked < Duration::from_secs(6),
            "fresh local result"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn an_unreachable_store_means_local_probing_then_rejoining() {
    let (store, script) = (Arc::new(MemoryStore::new()), Script::healthy());
    let t0 = Instant::now();
    let gws = gateways(3, &script, &store, every_10s, SharingSettings::new());
    sleep(Duration::from_secs(5)).await;
    store.set_reachable(false);
    sleep(Duration::from_secs(20)).await; // t = 25
    for (state, _) in &gws {
        let st = state.shared_status();
        assert_eq!(st.mode, SharedMode::Degraded);
        assert!(
            st.detail.as_deref().unwrap().contains("memory unavailable"),
            "{st:?}"
        );
    }
    // Each gateway probed on its own at 10 s and 20 s.
    let starts = script.starts("r-0", t0);
    assert!(
        near(&starts, &[0.0, 10.0, 10.0, 10.0, 20.0, 20.0, 20.0]),
        "{starts:?}"
    );
    store.set_reachable(true);
    sleep(Duration::from_secs(16)).await; // t = 41
    for (state, _) in &gws {
        assert_eq!(state.shared_status().mode, SharedMode::On);
    }
    let starts = script.starts("r-0", t0);
    assert!(
        near(&starts[7..], &[30.0, 40.0]),
        "one probe per round again: {starts:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn status_shows_mode_lease_holder_and_token() {
    let store = Arc::new(MemoryStore::new());
    // The second round takes 3 s.
    let script = Script::new(|_, n| {
        let d = if n == 1 { 3 } else { 0 };
        Step::After(Duration::from_secs(d), ProbeOutcome::healthy())
    });
    let gws = gateways(3, &script, &store, every_10s, SharingSettings::new());
    sleep(Duration::from_secs(1)).await;
    let ids: Vec<String> = gws.iter().map(|(s, _)| pid(s)).collect();
    assert!(
        ids[0] != ids[1] && ids[1] != ids[2] && ids[0] != ids[2],
        "{ids:?}"
    );
    let first_by = store.observe().await.unwrap().round.unwrap().checked_by;
    for (state, _) in &gws {
        let st = state.shared_status();
        assert_eq!((st.mode, st.backend), (SharedMode::On, "memory"));
        assert_eq!(st.fencing_token, Some(1));
        assert_eq!(st.last_checked_by.as_deref(), Some(first_by.as_str()));
        assert_eq!(st.lease_holder, None, "released after the round");
        let age = st.results_age(store.now()).unwrap();
        assert!(
            age <= Duration::from_millis(1001),
            "written at ~0 s: {age:?}"
        );
    }
    sleep(Duration::from_secs(11)).await; // t = 12, mid-round
    let holder = store
        .observe()
        .await
        .unwrap()
        .lease_holder
        .expect("mid-round");
    for (state, _) in &gws {
        assert_eq!(
            state.shared_status().lease_holder.as_deref(),
            Some(holder.as_str())
        );
    }
    sleep(Duration::from_secs(2)).await; // t = 14, written
    for (state, _) in &gws {
        let st = state.shared_status();
        assert_eq!(st.fencing_token, Some(2));
        assert_eq!(st.last_checked_by.as_deref(), Some(holder.as_str()));
    }
}

#[tokio::test(start_paused = true)]
async fn shutdown_releases_the_lease_at_once() {
    let store = Arc::new(MemoryStore::new());
    let script = Script::new(|_, _| Step::After(Duration::from_secs(5), ProbeOutcome::healthy()));
    let state = state_with(many("r", 2, BASE), every_10s);
    let handle = probes(&state, &script, &store, SharingSettings::new()).spawn();
    sleep(Duration::from_secs(1)).await;
    assert_eq!(
        store.observe().await.unwrap().lease_holder,
        Some(pid(&state))
    );
    handle.shutdown().await;
    assert_eq!(store.observe().await.unwrap().lease_holder, None);
    assert_eq!(state.shared_status().mode, SharedMode::Off);
}

#[tokio::test(start_paused = true)]
async fn each_gateway_applies_its_own_transient_error_rule() {
    // Round 2 answers 429 for everything.
    let store = Arc::new(MemoryStore::new());
    let script = Script::new(|_, n| if n == 1 { Step::fail(429) } else { Step::ok() });
    let strict = gateways(1, &script, &store, every_10s, SharingSettings::new());
    let lenient = gateways(
        1,
        &script,
        &store,
        |b| every_10s(b).health_check_ignore_transient_errors(true),
        SharingSettings::new(),
    );
    sleep(Duration::from_secs(12)).await;
    assert_eq!(script.calls().len(), 4, "two rounds of two probes, shared");
    let h =
        |gws: &Vec<(HealthState, JoinHandle<()>)>| gws[0].0.load().health("r-0").cloned().unwrap();
    assert_eq!((h(&strict).healthy, h(&strict).status), (false, Some(429)));
    assert!(h(&lenient).healthy, "the 429 is ignored there");
}

async fn cooldown_story(share: bool) -> (Option<Duration>, Option<Duration>) {
    let store = Arc::new(MemoryStore::new());
    let script = Script::healthy();
    let sharing = SharingSettings::new().share_cooldowns(share);
    let mut states = Vec::new();
    for _ in 0..2 {
        let cfg: Config = every_10s(Config::builder().deployments(deployments("r", 2)))
            .cooldown_time(Duration::from_secs(30))
            .build()
            .unwrap();
        let state = HealthState::new(cfg);
        tokio::spawn(probes(&state, &script, &store, sharing.clone()).run(std::future::pending()));
        states.push(state);
    }
    sleep(Duration::from_secs(1)).await;
    // Gateway A: d1 answers 429, which cools it down (its route has two deployments).
    let up = Upstreams::new();
    up.set_status(1, 429);
    let mut svc = HealthRoutingLayer::from_state(states[0].clone())
        .with_seed(3)
        .layer(up.service());
    while up.hits(1) == 0 {
        let _ = svc
            .ready()
            .await
            .unwrap()
            .call(crate::support::request("r"))
            .await;
    }
    assert!(states[0].cooldown_remaining("d1").is_some());
    sleep(Duration::from_secs(1)).await;
    (
        states[1].cooldown_remaining("d1"),
        states[1].cooldown_remaining("d0"),
    )
}

#[tokio::test(start_paused = true)]
async fn a_cooldown_reaches_the_other_gateways_within_a_second_when_shared() {
    let (d1, d0) = cooldown_story(true).await;
    let left = d1.expect("d1 cools down in gateway B too");
    assert!(
        left > Duration::from_secs(28) && left <= Duration::from_secs(30),
        "{left:?}"
    );
    assert_eq!(d0, None);
}

#[tokio::test(start_paused = true)]
async fn cooldowns_stay_local_unless_shared() {
    assert_eq!(cooldown_story(false).await, (None, None));
}

#[tokio::test]
async fn sharing_without_a_store_configured_is_a_clear_error() {
    let mut b = Config::builder().deployments(many("r", 1, BASE));
    b.health_mut().use_shared_health_check = true;
    let state = HealthState::new(b.build().unwrap());
    let err = ProbeLoop::builder(&state)
        .prober(Script::healthy() as Arc<dyn Prober>)
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "general_settings.use_shared_health_check");
    let msg = err.to_string();
    if cfg!(feature = "redis") {
        assert!(
            msg.contains("REDIS_URL") && msg.contains("router_settings.redis_url"),
            "{msg}"
        );
    } else {
        assert!(msg.contains("`redis` feature"), "{msg}");
    }
    // An explicit store wins over the config.
    ProbeLoop::builder(&state)
        .prober(Script::healthy() as Arc<dyn Prober>)
        .store(Arc::new(MemoryStore::new()))
        .build()
        .expect("a memory store needs no Redis");
}

#[tokio::test(start_paused = true)]
async fn every_gateway_keeps_the_shared_rounds_in_its_history_naming_the_prober() {
    let store = Arc::new(MemoryStore::new());
    let script = Script::new(|_, _| Step::ok());
    let gws = gateways(2, &script, &store, every_10s, SharingSettings::new());
    sleep(Duration::from_secs(35)).await;
    let pids: Vec<String> = gws.iter().map(|(s, _)| pid(s)).collect();
    let by: Vec<Vec<String>> = gws
        .iter()
        .map(|(state, _)| {
            let recs = tower_health_routing::probe::HealthHistory::of(state)
                .matching(|r| r.model_id.as_str() == "r-0");
            assert_eq!(
                recs.len(),
                4,
                "one record per round, probed here or read from the store"
            );
            recs.iter().map(|r| r.checked_by.to_string()).collect()
        })
        .collect();
    assert_eq!(
        by[0], by[1],
        "both gateways name the same prober for each round"
    );
    assert!(by[0].iter().all(|b| pids.contains(b)), "{by:?} vs {pids:?}");
}
