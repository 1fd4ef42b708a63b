//! Traffic as a probe (`general_settings.health_check_skip_when_traffic_healthy`): a
//! deployment whose real traffic succeeded within the last interval, with no failure of
//! its own since, is not probed this round. Its result is that traffic: healthy, checked
//! when the last success was seen, `source: traffic`.

use std::{sync::Arc, time::Duration};

use super::outcome::{ProbeOutcome, ProbeReport};
use crate::{
    deployment::Deployment,
    health::{HealthSnapshot, HealthSource, HealthState},
};

/// Removes from `targets` the deployments traffic vouches for, and returns their reports.
pub(super) fn take_healthy(
    state: &HealthState,
    snap: &HealthSnapshot,
    targets: &mut Vec<Arc<Deployment>>,
    interval: Duration,
) -> Vec<ProbeReport> {
    let mut saved = Vec::new();
    targets.retain(|d| match vouch(state, snap, d, interval) {
        Some(r) => {
            saved.push(r);
            false
        }
        None => true,
    });
    saved
}

/// The traffic report of `d` if its traffic succeeded within the last `interval` with no
/// failure of its own since (the probe is saved and counted so), else `None`. Asked again
/// when a spread probe is about to start: traffic seen since the round began saves it too.
pub(super) fn vouch(
    state: &HealthState,
    snap: &HealthSnapshot,
    d: &Arc<Deployment>,
    interval: Duration,
) -> Option<ProbeReport> {
    let now = state.now_nanos();
    let since = now.saturating_sub(u64::try_from(interval.as_nanos()).unwrap_or(u64::MAX));
    let at = snap
        .entry_by_id(d.id().as_str())
        .and_then(|e| e.stats.traffic_healthy_since(since))?;
    crate::telemetry::record_probe_saved(d);
    tracing::debug!(
        model_id = %d.id(),
        route = d.route(),
        "health_check_probe_saved healthy traffic"
    );
    let mut outcome = ProbeOutcome::healthy();
    outcome.source = HealthSource::Traffic;
    Some(ProbeReport {
        deployment: Arc::clone(d),
        outcome,
        latency: Duration::ZERO,
        checked_at: snap.epoch + Duration::from_nanos(at),
    })
}
