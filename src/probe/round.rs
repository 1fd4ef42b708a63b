//! One round: probe a list of deployments, at most N at once, each within its timeout.
//!
//! The round is a single future that polls its probes itself (no spawned tasks), so
//! dropping it (shutdown mid-round) cancels every probe at once and leaves nothing behind.
//! Probes wait for a permit of a semaphore shared by every round of the loop, background
//! and on-demand alike, so `health_check_concurrency` (default
//! [`DEFAULT_CONCURRENCY`](super::DEFAULT_CONCURRENCY)) bounds them all together; a probe's
//! timeout starts once it holds its permit. At most that many probe futures exist per
//! round (`buffer_unordered`), so memory stays flat however long the list is.

use std::{panic::AssertUnwindSafe, sync::Arc, time::Duration};

use futures_util::{FutureExt, StreamExt, stream};
use tokio::{sync::Semaphore, time::Instant};

use super::{
    Prober,
    outcome::{ProbeOutcome, ProbeReport, ProbeTarget, RoundReport},
};
use crate::{
    deployment::Deployment,
    health::{HealthSnapshot, ProbeTier},
    secret::Scrubber,
};

/// Runs rounds with one prober, one concurrency bound and one default timeout.
pub(crate) struct Runner {
    pub(crate) prober: Arc<dyn Prober>,
    pub(crate) permits: Option<Arc<Semaphore>>,
    /// Probe futures alive at once per round.
    pub(crate) limit: usize,
    pub(crate) default_timeout: Duration,
}

impl Runner {
    pub(crate) fn new(
        prober: Arc<dyn Prober>,
        concurrency: Option<usize>,
        default_timeout: Duration,
    ) -> Self {
        let n = concurrency
            .unwrap_or(super::DEFAULT_CONCURRENCY)
            .clamp(1, Semaphore::MAX_PERMITS);
        Self {
            prober,
            permits: Some(Arc::new(Semaphore::new(n))),
            limit: n,
            default_timeout,
        }
    }

    /// Probes every target; the report lists them in the given order.
    pub(crate) async fn run(
        &self,
        targets: Vec<Arc<Deployment>>,
        scrubber: &Scrubber,
    ) -> RoundReport {
        let started_at = Instant::now();
        let mut slots: Vec<Option<ProbeReport>> = Vec::new();
        slots.resize_with(targets.len(), || None);
        let mut done = stream::iter(targets.into_iter().enumerate())
            .map(|(i, d)| async move { (i, self.probe_one(d, scrubber, true).await) })
            .buffer_unordered(self.limit);
        while let Some((i, report)) = done.next().await {
            slots[i] = Some(report);
        }
        RoundReport {
            results: slots.into_iter().flatten().collect(),
            started_at,
            elapsed: started_at.elapsed(),
            checked_by: None,
        }
    }

    /// Probes each target with `tier`, each starting no earlier than its instant (earliest
    /// first; the wait holds no permit); the results in the given order, `None` where the
    /// prober has no cheap tier.
    /// `vouch`, asked when a delayed probe is due, may answer for it instead (traffic
    /// seen since the round began).
    pub(crate) async fn run_at(
        &self,
        targets: Vec<(Arc<Deployment>, Instant)>,
        scrubber: &Scrubber,
        tier: Option<ProbeTier>,
        vouch: &(dyn Fn(&Arc<Deployment>) -> Option<ProbeReport> + Sync),
    ) -> Vec<Option<ProbeReport>> {
        let mut slots: Vec<Option<ProbeReport>> = Vec::new();
        slots.resize_with(targets.len(), || None);
        let mut order: Vec<(usize, (Arc<Deployment>, Instant))> =
            targets.into_iter().enumerate().collect();
        order.sort_by_key(|(_, (_, at))| *at);
        let now = Instant::now();
        let mut done = stream::iter(order)
            .map(|(i, (d, at))| async move {
                if at > now {
                    tokio::time::sleep_until(at).await;
                    if let Some(r) = vouch(&d) {
                        return (i, Some(r));
                    }
                }
                (i, self.probe_tier(d, scrubber, true, tier).await)
            })
            .buffer_unordered(self.limit);
        while let Some((i, report)) = done.next().await {
            slots[i] = report;
        }
        slots
    }

    /// Probes `d` once within its timeout. `record`: count it in the metrics (not for
    /// deployments outside the config, whose labels would be unbounded).
    pub(crate) async fn probe_one(
        &self,
        d: Arc<Deployment>,
        scrubber: &Scrubber,
        record: bool,
    ) -> ProbeReport {
        match self.probe_tier(d.clone(), scrubber, record, None).await {
            Some(r) => r,
            // Only a cheap tier can be missing.
            None => ProbeReport {
                deployment: d,
                outcome: ProbeOutcome::unhealthy("no probe"),
                latency: Duration::ZERO,
                checked_at: Instant::now(),
            },
        }
    }

    /// [`probe_one`](Self::probe_one) with a tier: `Some(Cheap)` asks the prober's cheap
    /// tier (`None` when it has none; cheap probes are not counted in the metrics),
    /// `Some(Billed)` marks the outcome billed, `None` probes as an untiered round does.
    pub(crate) async fn probe_tier(
        &self,
        d: Arc<Deployment>,
        scrubber: &Scrubber,
        record: bool,
        tier: Option<ProbeTier>,
    ) -> Option<ProbeReport> {
        let fut = match tier {
            Some(ProbeTier::Cheap) => self.prober.probe_cheap(Arc::clone(&d))?,
            _ => self.prober.probe(Arc::clone(&d)),
        };
        let record = record && tier != Some(ProbeTier::Cheap);
        // `acquire` fails only on a closed semaphore, which this one never is.
        let _permit = match &self.permits {
            Some(s) => s.acquire().await.ok(),
            None => None,
        };
        let timeout = d
            .info()
            .health_check_timeout
            .unwrap_or(self.default_timeout);
        let started = Instant::now();
        let probe = AssertUnwindSafe(fut).catch_unwind();
        let mut outcome = match tokio::time::timeout(timeout, probe).await {
            Ok(Ok(outcome)) => outcome.scrubbed(scrubber),
            Ok(Err(_)) => ProbeOutcome::unhealthy("prober panicked"),
            Err(_) => ProbeOutcome::timeout(),
        };
        if let Some(t) = tier {
            outcome.tier.get_or_insert(t);
        }
        let checked_at = Instant::now();
        let latency = checked_at.saturating_duration_since(started);
        let reason = crate::telemetry::probe_reason(
            outcome.healthy,
            outcome.status,
            outcome.reason.as_deref(),
        );
        if record {
            crate::telemetry::record_probe(&d, reason, latency);
        }
        tracing::debug!(
            model_id = %d.id(),
            route = d.route(),
            healthy = outcome.healthy,
            status = ?outcome.status,
            latency_ms = latency.as_secs_f64() * 1e3,
            reason = ?outcome.reason,
            tier = outcome.tier.map(ProbeTier::as_str),
            "health_check_probe"
        );
        Some(ProbeReport {
            deployment: d,
            outcome,
            latency,
            checked_at,
        })
    }
}

/// The deployments a background round probes: each once, minus those with
/// `disable_background_health_check` and, with `background_health_check_model_groups`
/// (`groups`), those of other routes.
pub(crate) fn background_targets(
    snap: &HealthSnapshot,
    groups: Option<&[String]>,
) -> Vec<Arc<Deployment>> {
    snap.deployments()
        .filter(|d| !d.info().disable_background_health_check)
        .filter(|d| groups.is_none_or(|g| g.iter().any(|g| **g == *d.route())))
        .filter(|d| snap.unsupported(d.id().as_str()).is_none())
        .cloned()
        .collect()
}

/// The deployments an on-demand round probes (see [`ProbeTarget`]).
pub(crate) fn on_demand_targets(
    snap: &HealthSnapshot,
    target: &ProbeTarget,
    skip_disabled: bool,
) -> Vec<Arc<Deployment>> {
    let mut v: Vec<Arc<Deployment>> = match target {
        ProbeTarget::All => snap.deployments().cloned().collect(),
        ProbeTarget::Model(m) => {
            let by_model: Vec<_> = snap
                .deployments()
                .filter(|d| d.params().model == *m)
                .cloned()
                .collect();
            if by_model.is_empty() {
                snap.route(m)
                    .map(|ds| ds.cloned().collect())
                    .unwrap_or_default()
            } else {
                by_model
            }
        }
        ProbeTarget::ModelId(id) => snap.deployment(id).cloned().into_iter().collect(),
    };
    if skip_disabled {
        v.retain(|d| !d.info().disable_background_health_check);
    }
    v
}
