//! The loop's schedule and lifetime, under paused time with a scripted prober (no sockets).

use std::{sync::Arc, time::Duration};

use crate::support::{
    many,
    script::{Script, Step},
    state_with,
};
use tokio::time::{Instant, sleep};
use tower_health_routing::{
    HealthState,
    probe::{ProbeLoop, ProbeOutcome, ProbeTarget, Prober},
};

const BASE: &str = "http://127.0.0.1:9/v1";

fn probes(state: &HealthState, script: &Arc<Script>) -> ProbeLoop {
    ProbeLoop::builder(state)
        .prober(Arc::clone(script) as Arc<dyn Prober>)
        .build()
        .expect("loop")
}

fn every(
    secs: u64,
) -> impl FnOnce(tower_health_routing::ConfigBuilder) -> tower_health_routing::ConfigBuilder {
    move |b| b.health_check_interval(Duration::from_secs(secs))
}

#[tokio::test(start_paused = true)]
async fn first_round_at_start_then_every_interval() {
    let state = state_with(many("r", 2, BASE), every(10));
    let script = Script::healthy();
    let t0 = Instant::now();
    let handle = probes(&state, &script).spawn();
    sleep(Duration::from_secs(35)).await;
    handle.shutdown().await;
    for id in ["r-0", "r-1"] {
        assert_eq!(script.starts(id, t0), [0.0, 10.0, 20.0, 30.0], "{id}");
    }
}

#[tokio::test(start_paused = true)]
async fn rounds_keep_their_rhythm_and_never_overlap() {
    // Rounds of 3 s start every 10 s; rounds of 15 s (longer than the interval) follow at once.
    for (took, want) in [
        (3, vec![0.0, 10.0, 20.0, 30.0]),
        (15, vec![0.0, 15.0, 30.0]),
    ] {
        let state = state_with(many("r", 3, BASE), every(10));
        let script = Script::new(move |_, _| {
            Step::After(Duration::from_secs(took), ProbeOutcome::healthy())
        });
        let t0 = Instant::now();
        let handle = probes(&state, &script).spawn();
        sleep(Duration::from_secs(35)).await;
        handle.shutdown().await;
        assert_eq!(script.starts("r-0", t0), want, "rounds of {took}s");
        assert_eq!(script.peak(), 3, "one round at a time");
    }
}

async fn schedule_with_jitter(seed: u64) -> Vec<f64> {
    let state = state_with(many("r", 1, BASE), |b| {
        b.health_check_interval(Duration::from_secs(10))
            .health_check_jitter(Duration::from_secs(5))
    });
    let script = Script::healthy();
    let t0 = Instant::now();
    let handle = ProbeLoop::builder(&state)
        .prober(Arc::clone(&script) as Arc<dyn Prober>)
        .seed(seed)
        .build()
        .expect("loop")
        .spawn();
    sleep(Duration::from_secs(200)).await;
    handle.shutdown().await;
    script.starts("r-0", t0)
}

#[tokio::test(start_paused = true)]
async fn jitter_is_bounded_and_reproducible_from_a_seed() {
    let a = schedule_with_jitter(42).await;
    let gaps: Vec<f64> = a.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps.len() >= 12, "{a:?}");
    assert!(gaps.iter().all(|g| (10.0..=15.0).contains(g)), "{gaps:?}");
    assert!(
        gaps.iter().any(|g| (g - gaps[0]).abs() > 0.01),
        "jitter varies: {gaps:?}"
    );
    assert_eq!(
        a,
        schedule_with_jitter(42).await,
        "same seed, same schedule"
    );
    assert_ne!(a, schedule_with_jitter(7).await);
}

#[tokio::test(start_paused = true)]
async fn shutdown_mid_round_is_immediate_and_leaves_nothing() {
    let metrics = tokio::runtime::Handle::current().metrics();
    let baseline = metrics.num_alive_tasks();
    let state = state_with(many("r", 4, BASE), every(10));
    let script = Script::new(|_, _| Step::Hang);
    let handle = probes(&state, &script).spawn();
    sleep(Duration::from_secs(1)).await;
    assert_eq!(
        (script.live(), metrics.num_alive_tasks()),
        (4, baseline + 1)
    );
    let t0 = Instant::now();
    handle.shutdown().await;
    assert_eq!(t0.elapsed(), Duration::ZERO, "no timer was awaited");
    assert_eq!((script.live(), metrics.num_alive_tasks()), (0, baseline));
}

#[tokio::test(start_paused = true)]
async fn shutdown_mid_sleep_is_immediate() {
    let state = state_with(many("r", 1, BASE), every(300));
    let script = Script::healthy();
    let handle = probes(&state, &script).spawn();
    sleep(Duration::from_secs(5)).await;
    let t0 = Instant::now();
    handle.shutdown().await;
    assert_eq!(t0.elapsed(), Duration::ZERO);
    assert_eq!(script.calls().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn the_loop_ends_when_every_owner_of_the_state_is_gone() {
    for mid_round in [false, true] {
        let state = state_with(many("r", 2, BASE), every(60));
        let script = if mid_round {
            Script::new(|_, _| Step::Hang)
        } else {
            Script::healthy()
        };
        let probes = probes(&state, &script);
        let handle = probes.spawn();
        sleep(Duration::from_secs(1)).await;
        assert!(!handle.is_finished());
        let t0 = Instant::now();
        drop(state);
        handle.join().await;
        assert_eq!(
            t0.elapsed(),
            Duration::ZERO,
            "ended without waiting for a timer"
        );
        assert_eq!(script.live(), 0);
        // The loop value holds no strong reference: nothing is left to probe.
        assert!(probes.run_round().await.is_none());
        assert!(probes.check_now(ProbeTarget::All).await.results.is_empty());
    }
}

#[tokio::test(start_paused = true)]
async fn a_dropped_handle_detaches_the_loop() {
    let state = state_with(many("r", 1, BASE), every(10));
    let script = Script::healthy();
    let t0 = Instant::now();
    drop(probes(&state, &script).spawn());
    sleep(Duration::from_secs(25)).await;
    assert_eq!(script.starts("r-0", t0), [0.0, 10.0, 20.0]);
}

#[tokio::test(start_paused = true)]
async fn spawn_if_enabled_follows_background_health_checks() {
    let script = Script::healthy();
    let off = state_with(many("r", 1, BASE), |b| b);
    assert!(probes(&off, &script).spawn_if_enabled().is_none());
    let on = state_with(many("r", 1, BASE), |b| b.background_health_checks(true));
    let handle = probes(&on, &script).spawn_if_enabled().expect("enabled");
    sleep(Duration::from_millis(1)).await;
    handle.shutdown().await;
    assert_eq!(script.calls().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn run_with_a_custom_shutdown_future() {
    let state = state_with(many("r", 1, BASE), every(10));
    let script = Script::healthy();
    let t0 = Instant::now();
    // Shut down by a timer: `run` takes any future.
    probes(&state, &script)
        .run(sleep(Duration::from_secs(15)))
        .await;
    assert_eq!(t0.elapsed(), Duration::from_secs(15));
    assert_eq!(script.starts("r-0", t0), [0.0, 10.0]);
}
