//! What a round does with its results, under paused time with a scripted prober:
//! hysteresis, transient errors, timeouts and the concurrency bound, on-demand targets,
//! scrubbing, cooldown feeding.

use std::{
    num::{NonZeroU32, NonZeroUsize},
    sync::Arc,
    time::Duration,
};

use crate::support::{
    many,
    script::{Script, Step},
    state_with,
};
use tokio::time::Instant;
use tower_health_routing::{
    Deployment, HealthState,
    probe::{ProbeLoop, ProbeOutcome, ProbeTarget, Prober},
};

const BASE: &str = "http://127.0.0.1:9/v1";

fn probes(state: &HealthState, script: &Arc<Script>) -> ProbeLoop {
    ProbeLoop::builder(state)
        .prober(Arc::clone(script) as Arc<dyn Prober>)
        .build()
        .expect("loop")
}

fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).expect("non-zero")
}

/// `(healthy, status)` of `id` in the published snapshot.
fn published(state: &HealthState, id: &str) -> Option<(bool, Option<u16>)> {
    state.snapshot().health(id).map(|h| (h.healthy, h.status))
}

#[tokio::test(start_paused = true)]
async fn hysteresis_flips_only_after_n_consecutive_results() {
    // Results per round: ok, fail, fail, ok, fail, fail, fail, ok, ok.
    let plan = [true, false, false, true, false, false, false, true, true];
    let script = Script::new(move |_, n| if plan[n] { Step::ok() } else { Step::fail(503) });
    let state = state_with(many("r", 1, BASE), |b| {
        b.health_check_thresholds(nz(3), nz(2))
    });
    let probes = probes(&state, &script);
    let mut seen = Vec::new();
    for _ in 0..plan.len() {
        probes.run_round().await.expect("alive");
        seen.push(published(&state, "r-0").expect("checked").0);
    }
    assert_eq!(
        seen,
        [true, true, true, true, true, true, false, false, true]
    );
}

#[tokio::test(start_paused = true)]
async fn defaults_flip_on_every_result_like_litellm() {
    let plan = [true, false, true];
    let script = Script::new(move |_, n| if plan[n] { Step::ok() } else { Step::fail(500) });
    let state = state_with(many("r", 1, BASE), |b| b);
    let probes = probes(&state, &script);
    for want in plan {
        probes.run_round().await.expect("alive");
        assert_eq!(published(&state, "r-0").map(|p| p.0), Some(want));
    }
}

#[tokio::test(start_paused = true)]
async fn a_held_state_stays_fresh() {
    // Unhealthy, then passes that are not yet enough to flip back: the unhealthy record is
    // republished with a new checked_at (so it does not go stale), its reason kept.
    let script = Script::new(|_, n| if n == 0 { Step::fail(500) } else { Step::ok() });
    let state = state_with(many("r", 1, BASE), |b| {
        b.health_check_thresholds(nz(1), nz(3))
    });
    let probes = probes(&state, &script);
    probes.run_round().await;
    let first = state.snapshot().health("r-0").cloned().expect("checked");
    tokio::time::advance(Duration::from_secs(100)).await;
    probes.run_round().await;
    let held = state.snapshot().health("r-0").cloned().expect("checked");
    assert_eq!(
        (held.healthy, held.reason.as_deref()),
        (false, Some("status 500"))
    );
    assert_eq!(held.checked_at - first.checked_at, Duration::from_secs(100));
}

#[tokio::test(start_paused = true)]
async fn transient_errors_keep_the_previous_state_when_asked() {
    let plan = [Step::ok(), Step::fail(429), Step::Hang, Step::fail(500)];
    let script = Script::new(move |_, n| plan[n].clone());
    let mut d = Deployment::builder("r", "openai/gpt-4o")
        .id("d")
        .api_base(BASE);
    d.info_mut().health_check_timeout = Some(Duration::from_secs(2));
    let state = state_with(vec![d.build()], |b| {
        b.health_check_ignore_transient_errors(true)
    });
    let ignoring = probes(&state, &script);
    ignoring.run_round().await;
    let before = state.snapshot().health("d").cloned();
    ignoring.run_round().await; // 429
    ignoring.run_round().await; // timeout (408)
    assert_eq!(
        state.snapshot().health("d").cloned(),
        before,
        "record untouched"
    );
    ignoring.run_round().await; // 500 counts
    assert_eq!(published(&state, "d"), Some((false, Some(500))));

    // Without the setting, a 429 counts like any failure.
    let script = Script::new(|_, n| if n == 0 { Step::ok() } else { Step::fail(429) });
    let state = state_with(many("r", 1, BASE), |b| b);
    let counting = probes(&state, &script);
    counting.run_round().await;
    counting.run_round().await;
    assert_eq!(published(&state, "r-0"), Some((false, Some(429))));
}

#[tokio::test(start_paused = true)]
async fn timeouts_bound_the_round_and_delay_no_one_else() {
    let script = Script::new(|id, _| match id {
        "stuck" => Step::Hang,
        _ => Step::After(Duration::from_secs(1), ProbeOutcome::healthy()),
    });
    let mut ds = many("r", 4, BASE);
    let mut stuck = Deployment::builder("r", "openai/gpt-4o")
        .id("stuck")
        .api_base(BASE);
    stuck.info_mut().health_check_timeout = Some(Duration::from_secs(5));
    ds.insert(0, stuck.build());
    let state = state_with(ds, |b| {
        b.health_check_concurrency(NonZeroUsize::new(2).expect("2"))
    });
    let t0 = Instant::now();
    let report = probes(&state, &script).run_round().await.expect("alive");
    // One slot is held 5 s by the stuck probe; four 1 s probes run in the other.
    assert_eq!(report.elapsed, Duration::from_secs(5));
    for (i, r) in report.healthy().enumerate() {
        assert_eq!(
            r.checked_at - t0,
            Duration::from_secs(i as u64 + 1),
            "{}",
            r.id()
        );
    }
    let s = report.get("stuck").expect("stuck");
    assert_eq!(
        (s.outcome.status, s.latency),
        (Some(408), Duration::from_secs(5))
    );
    assert_eq!(script.live(), 0, "the timed-out probe was dropped");
}

#[tokio::test(start_paused = true)]
async fn the_default_timeout_is_sixty_seconds() {
    let script = Script::new(|_, _| Step::Hang);
    let state = state_with(many("r", 1, BASE), |b| b);
    let report = probes(&state, &script).run_round().await.expect("alive");
    assert_eq!(report.elapsed, Duration::from_secs(60));
}

#[tokio::test(start_paused = true)]
async fn the_concurrency_bound_is_shared_by_every_round() {
    let script = Script::new(|_, _| Step::After(Duration::from_secs(1), ProbeOutcome::healthy()));
    let state = state_with(many("r", 10, BASE), |b| {
        b.health_check_concurrency(NonZeroUsize::new(3).expect("3"))
    });
    let probes = probes(&state, &script);
    let report = probes.run_round().await.expect("alive");
    assert_eq!((report.elapsed, script.peak()), (Duration::from_secs(4), 3));
    let (a, b) = tokio::join!(probes.run_round(), probes.check_now(ProbeTarget::All));
    assert_eq!(
        (
            a.expect("alive").results.len(),
            b.results.len(),
            script.peak()
        ),
        (10, 10, 3)
    );
}

#[tokio::test(start_paused = true)]
async fn on_demand_targets_and_no_publication() {
    let ds = vec![
        Deployment::builder("gpt-4o", "openai/gpt-4o")
            .id("a")
            .api_base(BASE)
            .build(),
        Deployment::builder("gpt-4o", "azure/gpt-4o-eu")
            .id("b")
            .api_base(BASE)
            .build(),
        Deployment::builder("mini", "openai/gpt-4o-mini")
            .id("c")
            .api_base(BASE)
            .build(),
    ];
    let state = state_with(ds, |b| b);
    let script = Script::new(|_, _| Step::fail(500));
    let probes = probes(&state, &script);
    let ids = |r: tower_health_routing::probe::RoundReport| -> Vec<String> {
        r.results.iter().map(|r| r.id().to_string()).collect()
    };
    let v0 = state.snapshot().version();
    assert_eq!(
        ids(probes.check_now(ProbeTarget::All).await),
        ["a", "b", "c"]
    );
    // `model` matches litellm_params.model first, then the route name.
    assert_eq!(
        ids(probes
            .check_now(ProbeTarget::Model("azure/gpt-4o-eu".into()))
            .await),
        ["b"]
    );
    assert_eq!(
        ids(probes.check_now(ProbeTarget::Model("gpt-4o".into())).await),
        ["a", "b"]
    );
    assert_eq!(
        ids(probes.check_now(ProbeTarget::ModelId("c".into())).await),
        ["c"]
    );
    assert!(ids(probes.check_now(ProbeTarget::ModelId("nope".into())).await).is_empty());
    let report = probes.check_now(ProbeTarget::ModelId("a".into())).await;
    assert_eq!(report.results[0].outcome.status, Some(500));
    assert_eq!(
        state.snapshot().version(),
        v0,
        "on-demand rounds publish nothing"
    );
    assert!(state.snapshot().health("a").is_none());
    // ... unless the caller publishes them.
    state.record(report.records());
    assert_eq!(published(&state, "a"), Some((false, Some(500))));
}

#[tokio::test(start_paused = true)]
async fn reasons_from_any_prober_are_scrubbed() {
    let script = Script::new(|_, _| {
        Step::After(
            Duration::ZERO,
            ProbeOutcome::unhealthy("denied for key sk-other-999 and sk-mine-1"),
        )
    });
    let ds = vec![
        Deployment::builder("r", "openai/gpt-4o")
            .id("a")
            .api_base(BASE)
            .api_key("sk-mine-1")
            .build(),
        Deployment::builder("r", "openai/gpt-4o")
            .id("b")
            .api_base(BASE)
            .api_key("sk-other-999")
            .build(),
    ];
    let state = state_with(ds, |b| b);
    let report = probes(&state, &script).run_round().await.expect("alive");
    for r in &report.results {
        assert_eq!(
            r.outcome.reason.as_deref(),
            Some("denied for key [redacted] and [redacted]")
        );
    }
    let snap = state.snapshot();
    assert_eq!(
        snap.health("a").and_then(|h| h.reason.as_deref()),
        Some("denied for key [redacted] and [redacted]")
    );
}

#[tokio::test(start_paused = true)]
async fn a_panicking_prober_fails_its_probe_not_the_loop() {
    let script = Script::new(|id, _| if id == "r-0" { Step::Panic } else { Step::ok() });
    let state = state_with(many("r", 2, BASE), |b| b);
    let report = probes(&state, &script).run_round().await.expect("alive");
    let r0 = report.get("r-0").expect("probed");
    assert_eq!(r0.outcome.reason.as_deref(), Some("prober panicked"));
    assert!(report.get("r-1").expect("probed").healthy());
}

#[tokio::test(start_paused = true)]
async fn probe_failures_feed_cooldown_only_when_asked() {
    for feed in [false, true] {
        let script = Script::new(|id, _| {
            if id == "r-0" {
                Step::fail(429)
            } else {
                Step::ok()
            }
        });
        let state = state_with(many("r", 2, BASE), |b| b);
        let probes = ProbeLoop::builder(&state)
            .prober(Arc::clone(&script) as Arc<dyn Prober>)
            .feed_cooldown(feed)
            .build()
            .expect("loop");
        probes.run_round().await;
        assert_eq!(
            state.cooldown_remaining("r-0").is_some(),
            feed,
            "feed={feed}"
        );
        assert_eq!(state.cooldown_remaining("r-1"), None);
    }
    // Non-transient failures (auth) are left to health routing.
    let script = Script::new(|_, _| Step::fail(401));
    let state = state_with(many("r", 2, BASE), |b| b.allowed_fails(0));
    let probes = ProbeLoop::builder(&state)
        .prober(Arc::clone(&script) as Arc<dyn Prober>)
        .feed_cooldown(true)
        .build()
        .expect("loop");
    probes.run_round().await;
    assert_eq!(state.cooldown_remaining("r-0"), None);
}

#[tokio::test(start_paused = true)]
async fn deployments_added_later_are_probed() {
    let script = Script::healthy();
    let state = state_with(many("r", 1, BASE), |b| b);
    let probes = probes(&state, &script);
    probes.run_round().await;
    state.set_deployments(&many("r", 3, BASE));
    let report = probes.run_round().await.expect("alive");
    assert_eq!(report.results.len(), 3);
    assert_eq!(state.snapshot().healthy_count(), 3);
}
