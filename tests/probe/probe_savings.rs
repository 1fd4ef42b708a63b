//! The measurement of issue 14: steady traffic on 20 deployments for 10 minutes at a 60 s
//! interval; billed probes sent with the features off and on, counted by the upstreams.
//!
//! Print the table with
//! `cargo test --all-features --test probe probe_savings -- --nocapture`.
//!
//! Paused time, simulated in 100 ms steps (held still in between, see
//! `tiers_budget::held`): rounds start every 60 s as the loop's do, on their own task;
//! every 5 s each active route gets one request through the routing layer (answered in
//! process: the measure is the probes). The probes go over real HTTP to one testkit
//! upstream per deployment, which counts `/v1/chat/completions` (billed) and `/v1/models`
//! (cheap).

use std::{convert::Infallible, num::NonZeroU32, time::Duration};

use crate::{
    support::{request, state_with, upstream::Upstream},
    tiers_budget::held,
};
use http::{Request, Response};
use tokio::time::{Instant, advance};
use tower::{Service, ServiceExt};
use tower_health_routing::{
    ConfigBuilder, Deployment, HealthRoutingLayer, HealthState,
    health::{HealthSource, ProbeTier},
    probe::{ProbeDefaults, ProbeLoop, RoundReport},
};

const N: usize = 20;
const INTERVAL: Duration = Duration::from_secs(60);
const RUN: Duration = Duration::from_secs(600);
const TRAFFIC_EVERY: Duration = Duration::from_secs(5);
const STEP: Duration = Duration::from_millis(100);

#[derive(Debug)]
struct Figures {
    billed: usize,
    cheap: usize,
    /// Billed probes of a deployment whose traffic succeeded within the interval before.
    billed_despite_traffic: usize,
    saved: usize,
    /// Billed probes of the idle deployments.
    billed_idle: usize,
}

/// Runs the scenario: `idle` of the 20 routes get no traffic; `tweak` sets the features.
async fn run(idle: usize, tweak: impl FnOnce(ConfigBuilder) -> ConfigBuilder) -> Figures {
    let ups: Vec<Upstream> = (0..N).map(|_| Upstream::ok()).collect();
    let ds: Vec<Deployment> = (0..N)
        .map(|i| {
            Deployment::builder(format!("r{i}"), "openai/gpt-4o")
                .id(format!("d{i}"))
                .api_base(ups[i].v1())
                .health_check_timeout(Duration::from_secs(3600))
                .build()
        })
        .collect();
    let state: HealthState = state_with(ds, |b| tweak(b.health_check_interval(INTERVAL)));
    let probes = ProbeLoop::builder(&state)
        .defaults(ProbeDefaults::default())
        .seed(14)
        .build()
        .expect("loop");
    let layer = HealthRoutingLayer::from_state(state.clone());
    let inner = tower::service_fn(|_: Request<String>| async {
        Ok::<_, Infallible>(Response::new(String::new()))
    });
    let mut svc = tower::Layer::layer(&layer, inner);
    let t0 = Instant::now();
    // When each deployment answered traffic successfully (the client's own record).
    let mut served: Vec<Vec<Instant>> = vec![Vec::new(); N];
    let mut reports: Vec<(Instant, RoundReport)> = Vec::new();
    held(async {
        let mut round: Option<(Instant, tokio::task::JoinHandle<Option<RoundReport>>)> = None;
        let mut next_round = t0;
        // Traffic starts a second after the loop's first round.
        let mut next_traffic = t0 + Duration::from_secs(1);
        while t0.elapsed() < RUN || round.is_some() {
            let now = Instant::now();
            if round.as_ref().is_some_and(|(_, t)| t.is_finished()) {
                let (at, task) = round.take().expect("a round");
                reports.push((at, task.await.expect("round").expect("alive")));
            }
            if now >= next_round && t0.elapsed() < RUN {
                // The round before is still at work when the next is due only if its real
                // sockets are slow (a loaded machine: virtual time runs ahead of them). Its
                // spread's waits (under half an interval) are over by now, so what is left is
                // real I/O: wait for it, as the loop's next round would start after it.
                if let Some((at, task)) = round.take() {
                    reports.push((at, task.await.expect("round").expect("alive")));
                }
                let p = probes.clone();
                round = Some((now, tokio::spawn(async move { p.run_round().await })));
                next_round += INTERVAL;
            }
            if now >= next_traffic && t0.elapsed() < RUN {
                for (i, at) in served.iter_mut().enumerate().skip(idle) {
                    svc.ready()
                        .await
                        .unwrap()
                        .call(request(&format!("r{i}")))
                        .await
                        .unwrap();
                    at.push(now);
                }
                next_traffic += TRAFFIC_EVERY;
            }
            advance(STEP).await;
        }
    })
    .await;
    let count = |path: &str| {
        ups.iter()
            .map(|u| u.requests().iter().filter(|r| r.path == path).count())
            .sum::<usize>()
    };
    // A billed probe of a deployment whose traffic succeeded within the interval before
    // the probe started.
    let mut billed_despite_traffic = 0;
    let mut saved = 0;
    for (_, r) in &reports {
        for p in &r.results {
            let i: usize = p.id().as_str()[1..].parse().expect("id d{i}");
            if p.outcome.source == HealthSource::Traffic {
                saved += 1;
                continue;
            }
            if p.outcome.tier == Some(ProbeTier::Cheap) {
                continue;
            }
            let started = p.checked_at - p.latency;
            if served[i]
                .iter()
                .any(|t| *t <= started && started - *t <= INTERVAL)
            {
                billed_despite_traffic += 1;
            }
        }
    }
    let billed_idle = ups[..idle]
        .iter()
        .map(|u| {
            u.requests()
                .iter()
                .filter(|r| r.path == "/v1/chat/completions")
                .count()
        })
        .sum();
    Figures {
        billed_idle,
        billed: count("/v1/chat/completions"),
        cheap: count("/v1/models"),
        billed_despite_traffic,
        saved,
    }
}

#[tokio::test(start_paused = true)]
async fn probe_savings() {
    let off = run(0, |b| b).await;
    let traffic = run(0, |b| b.health_check_skip_when_traffic_healthy(true)).await;
    let all = |b: ConfigBuilder| {
        b.health_check_skip_when_traffic_healthy(true)
            .health_check_billed_every(NonZeroU32::new(5).unwrap())
            .health_check_spread(0.5)
    };
    let on = run(0, all).await;
    let idle4 = run(4, all).await;
    let idle4_off = run(4, |b| b).await;
    println!();
    println!("20 deployments, 10 minutes, health_check_interval 60 s, traffic every 5 s per route");
    println!(
        "| scenario | billed probes | cheap probes | probes saved by traffic | billed to a deployment with successful traffic in the interval |"
    );
    println!("|---|---|---|---|---|");
    for (name, f) in [
        (
            "features off (LiteLLM's behaviour), traffic on all 20",
            &off,
        ),
        (
            "health_check_skip_when_traffic_healthy, traffic on all 20",
            &traffic,
        ),
        (
            "+ health_check_billed_every: 5, health_check_spread: 0.5, traffic on all 20",
            &on,
        ),
        ("features off, 4 of 20 idle", &idle4_off),
        ("all three on, 4 of 20 idle", &idle4),
    ] {
        println!(
            "| {name} | {} | {} | {} | {} |",
            f.billed, f.cheap, f.saved, f.billed_despite_traffic
        );
    }
    // Today: every deployment gets 10.
    assert_eq!(off.billed, N * 10);
    // The goal: none to a deployment that served traffic successfully in the interval.
    // (The first round runs at start-up, before any traffic: 20 billed probes.)
    for f in [&traffic, &on, &idle4] {
        assert_eq!(f.billed_despite_traffic, 0, "{f:?}");
    }
    // Traffic as a probe alone: the first round (before any traffic) is billed, then none.
    assert_eq!(traffic.billed, N);
    assert_eq!(traffic.saved, N * 9);
    // With the spread, a probe asks again when it is due: traffic seen since the round
    // began saves it, so the first round is mostly saved too (which ones: the seed's offsets).
    assert_eq!(on.billed + on.saved, N * 10, "{on:?}");
    assert!(on.billed < N, "{on:?}");
    // Idle deployments: billed in rounds 0 and 5, the cheap tier in every round.
    assert_eq!(idle4.billed_idle, 4 * 2, "{idle4:?}");
    assert!(idle4.cheap >= 4 * 10, "{idle4:?}");
    assert_eq!(idle4_off.billed, N * 10);
}
