//! Snapshot publication: a reader never sees a half-updated state, whatever the
//! number of deployments, readers and publications.

use proptest::prelude::*;
use tokio::time::Instant;
use tower_health_routing::{
    Deployment, DeploymentId, HealthState, health::HealthRecord, health::HealthSnapshot,
};

use super::{cases, id};
use crate::support;

/// Every deployment's result carries the round number as its status; healthy in even
/// rounds, unhealthy in odd ones. A reader must see one round everywhere: returns it
/// (0 before the first), or what was mixed.
fn uniform_round(snap: &HealthSnapshot, n: usize) -> Result<u16, String> {
    let seen: Vec<Option<(Option<u16>, bool)>> = (0..n)
        .map(|i| snap.health(&id(i)).map(|h| (h.status, h.healthy)))
        .collect();
    if seen.iter().any(|s| *s != seen[0]) {
        return Err(format!("mixed rounds in one snapshot: {seen:?}"));
    }
    let counts = (snap.healthy_count(), snap.unhealthy_count());
    match seen[0] {
        None if counts == (0, 0) => Ok(0),
        Some((Some(r), healthy)) if healthy == (r % 2 == 0) => {
            let expect = if healthy { (n, 0) } else { (0, n) };
            if counts == expect {
                Ok(r)
            } else {
                Err(format!("round {r}: counts {counts:?}"))
            }
        }
        other => Err(format!("unexpected {other:?} with counts {counts:?}")),
    }
}

fn publish_rounds(state: &HealthState, n: usize, rounds: u16, reshuffle_every: u16) {
    let deployments: Vec<Deployment> = state
        .snapshot()
        .deployments()
        .map(|d| (**d).clone())
        .collect();
    for r in 1..=rounds {
        let at = Instant::now();
        state.record((0..n).map(|i| {
            let rec = if r % 2 == 0 {
                HealthRecord::healthy(at)
            } else {
                HealthRecord::unhealthy(at, "down", None)
            };
            (DeploymentId::new(id(i)), rec.with_status(r))
        }));
        if reshuffle_every > 0 && r % reshuffle_every == 0 {
            // A deployment-list publication in between keeps every result.
            let mut ds = deployments.clone();
            ds.reverse();
            state.set_deployments(&ds);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(32)))]

    #[test]
    fn readers_never_see_a_half_published_snapshot(
        n in 1..=24usize,
        rounds in 50..=400u16,
        readers in 1..=3usize,
        reshuffle_every in 0..=16u16,
    ) {
        let cfg = support::config("m", n).build().unwrap();
        let state = HealthState::new(cfg);
        let done = std::sync::atomic::AtomicBool::new(false);
        let outcome: Result<Vec<u64>, String> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..readers)
                .map(|_| {
                    s.spawn(|| {
                        let (mut seen, mut last_version, mut last_round) = (0u64, 0u64, 0u16);
                        loop {
                            let finished = done.load(std::sync::atomic::Ordering::Acquire);
                            let snap = state.load();
                            let round = uniform_round(&snap, n)?;
                            if snap.version() < last_version || round < last_round {
                                return Err(format!(
                                    "went back: version {} after {last_version}, round {round} after {last_round}",
                                    snap.version()
                                ));
                            }
                            (last_version, last_round) = (snap.version(), round);
                            seen += 1;
                            if finished {
                                return Ok(seen);
                            }
                        }
                    })
                })
                .collect();
            publish_rounds(&state, n, rounds, reshuffle_every);
            done.store(true, std::sync::atomic::Ordering::Release);
            handles.into_iter().map(|h| h.join().expect("reader thread")).collect()
        });
        let seen = outcome.map_err(TestCaseError::fail)?;
        prop_assert!(seen.iter().all(|&s| s > 0));
        let last = state.snapshot();
        prop_assert_eq!(uniform_round(&last, n).map_err(TestCaseError::fail)?, rounds);
    }
}
