//! Rounds across the process boundary: a local [`RoundReport`] (tokio instants) to a
//! [`SharedRound`] (wall-clock milliseconds) and back.
//!
//! Instants mean nothing in another process, so a result's time crosses as a wall-clock
//! timestamp in the store's clock and comes back as an age: `checked_at = now - (store
//! now - checked_at_ms)`. Only raw outcomes cross; each process applies its own rules.

use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use tokio::time::Instant;

use super::store::{SharedResult, SharedRound, millis, unix_ms};
use crate::{
    health::HealthState,
    probe::{ProbeOutcome, ProbeReport, RoundReport},
};

/// The wall-clock time of `at`, given that `now` is `wall`.
fn wall_of(at: Instant, now: Instant, wall: SystemTime) -> SystemTime {
    wall.checked_sub(now.saturating_duration_since(at))
        .unwrap_or(wall)
}

/// How long ago `ms` was, by the store clock `wall` (zero for a time in the future).
pub(crate) fn age(ms: u64, wall: SystemTime) -> Duration {
    Duration::from_millis(unix_ms(wall).saturating_sub(ms))
}

/// The round to write for `report`, probed under `token` by `by`.
pub(crate) fn to_shared(
    report: &RoundReport,
    token: u64,
    by: &str,
    state: &HealthState,
    now: Instant,
    wall: SystemTime,
) -> SharedRound {
    let scrubber = state.scrubber();
    SharedRound {
        token,
        checked_by: by.to_owned(),
        started_at_ms: unix_ms(wall_of(report.started_at, now, wall)),
        written_at_ms: unix_ms(wall),
        results: report
            .results
            .iter()
            .map(|r| SharedResult {
                id: r.id().to_string(),
                healthy: r.outcome.healthy,
                status: r.outcome.status,
                // Already scrubbed by the round; scrubbed again, as it leaves the process.
                reason: r
                    .outcome
                    .reason
                    .as_deref()
                    .map(|s| scrubber.scrub(s).into_owned()),
                checked_at_ms: unix_ms(wall_of(r.checked_at, now, wall)),
                latency_ms: millis(r.latency),
                retry_after_ms: r.outcome.retry_after.map(millis),
            })
            .collect(),
    }
}

/// The local report for a round read from the store: results for deployments this state
/// does not know, and results already stale (older than the staleness threshold), are left
/// out; reasons are scrubbed and shortened, as any text from outside is.
pub(crate) fn to_report(
    round: &SharedRound,
    state: &HealthState,
    now: Instant,
    wall: SystemTime,
) -> RoundReport {
    let snap = state.load();
    let staleness = state.config().health.staleness_threshold();
    let results = round
        .results
        .iter()
        .filter_map(|r| {
            let deployment = Arc::clone(snap.deployment(&r.id)?);
            let checked_at = now.checked_sub(age(r.checked_at_ms, wall))?;
            if now.saturating_duration_since(checked_at) > staleness {
                return None;
            }
            let outcome = ProbeOutcome {
                healthy: r.healthy,
                status: r.status,
                reason: r.reason.as_deref().map(Arc::from),
                retry_after: r.retry_after_ms.map(Duration::from_millis),
                // Derived from the status (the store keeps no class).
                class: None,
                source: Default::default(),
                tier: None,
            }
            .scrubbed(state.scrubber());
            Some(ProbeReport {
                deployment,
                outcome,
                latency: Duration::from_millis(r.latency_ms),
                checked_at,
            })
        })
        .collect();
    let started_at = now
        .checked_sub(age(round.started_at_ms, wall))
        .unwrap_or(now);
    RoundReport {
        results,
        started_at,
        elapsed: Duration::from_millis(round.written_at_ms.saturating_sub(round.started_at_ms)),
        checked_by: Some(round.checked_by.as_str().into()),
    }
}
