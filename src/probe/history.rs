//! [`HealthHistory`]: the last results of every deployment, kept in memory for
//! `/health/history` and `/health/latest`.
//!
//! LiteLLM keeps these rows in its database; we keep a bounded ring per deployment
//! (`general_settings.health_check_history_size`, default 100), so memory is at most
//! size × deployments records. The probe loop writes it once per applied round (rounds
//! probed here and rounds read from a shared store alike), never the request path. It
//! hangs off the [`HealthState`] (one history per state, whoever reads it).
//!
//! Records hold the raw probe result (before hysteresis), with a reason already scrubbed
//! of every configured secret.

use std::{
    collections::{HashMap, VecDeque},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime},
};

use foldhash::fast::RandomState;
use tokio::time::Instant;

use super::outcome::RoundReport;
use crate::{deployment::DeploymentId, health::HealthState};

/// Where a record came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HistorySource {
    /// A background health probe (this process's, or one read from the shared store).
    Probe,
}

impl HistorySource {
    /// The name shown in `/health/history` (`"probe"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Probe => "probe",
        }
    }
}

/// One health result, as `/health/history` shows it.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct HistoryRecord {
    /// A number unique within this process, increasing with every record.
    pub seq: u64,
    /// The route (`model_name`).
    pub model_name: Arc<str>,
    /// The upstream model (`litellm_params.model`).
    pub model: Arc<str>,
    /// The deployment id (`model_info.id`).
    pub model_id: DeploymentId,
    /// Whether the check passed.
    pub healthy: bool,
    /// Why it failed: short and scrubbed of every configured secret.
    pub error: Option<Arc<str>>,
    /// The status code the probe got, if it got an answer.
    pub status_code: Option<u16>,
    /// How long the probe took.
    pub response_time: Duration,
    /// When it finished (wall clock).
    pub checked_at: SystemTime,
    /// Who probed: the process id of the shared-store writer, else `"local"`.
    pub checked_by: Arc<str>,
    /// What produced it.
    pub source: HistorySource,
}

/// The bounded per-deployment history of a [`HealthState`]: a ring of the last
/// `general_settings.health_check_history_size` (default 100) results per deployment,
/// appended by the probe loop once per applied round (local or from a shared store),
/// read by `/health/history` and `/health/latest`.
#[derive(Debug)]
pub struct HealthHistory {
    size: usize,
    seq: AtomicU64,
    // Written once per round by the probe loop, read by the endpoints; never touched by
    // the request path (which reads only the published snapshot).
    #[allow(clippy::disallowed_types)]
    rings: std::sync::Mutex<HashMap<DeploymentId, VecDeque<HistoryRecord>, RandomState>>,
}

/// The `checked_by` of rounds probed in this process without a shared store.
pub const LOCAL: &str = "local";

impl HealthHistory {
    fn new(size: usize) -> Self {
        Self {
            size: size.min(crate::config::MAX_HISTORY_SIZE),
            seq: AtomicU64::new(0),
            rings: Default::default(),
        }
    }

    /// The history of `state` (created empty on first use, sized by its config's
    /// `health_check_history_size`).
    pub fn of(state: &HealthState) -> Arc<Self> {
        let size = state.config().health.history_size;
        state.hooks().get_or_init(|| Self::new(size))
    }

    /// Records kept per deployment at most.
    pub fn capacity(&self) -> usize {
        self.size
    }

    /// Appends a round's results (the oldest of a full ring goes).
    pub(crate) fn record_round(&self, report: &RoundReport) {
        if self.size == 0 || report.results.is_empty() {
            return;
        }
        let by: Arc<str> = report.checked_by.clone().unwrap_or_else(|| LOCAL.into());
        let (now, wall) = (Instant::now(), SystemTime::now());
        let mut rings = self.lock();
        for r in &report.results {
            let d = &r.deployment;
            let rec = HistoryRecord {
                seq: self.seq.fetch_add(1, Ordering::Relaxed),
                model_name: Arc::clone(d.route_name()),
                model: d.params().model.as_str().into(),
                model_id: d.id().clone(),
                healthy: r.outcome.healthy,
                error: if r.outcome.healthy {
                    None
                } else {
                    r.outcome.reason.clone()
                },
                status_code: r.outcome.status,
                response_time: r.latency,
                checked_at: wall
                    .checked_sub(now.saturating_duration_since(r.checked_at))
                    .unwrap_or(wall),
                checked_by: Arc::clone(&by),
                source: HistorySource::Probe,
            };
            let ring = rings
                .entry(d.id().clone())
                .or_insert_with(|| VecDeque::with_capacity(self.size.min(16)));
            if ring.len() == self.size {
                ring.pop_front();
            }
            ring.push_back(rec);
        }
    }

    /// Forgets the deployments `keep` says no to (removed from the config).
    pub(crate) fn retain(&self, keep: impl Fn(&str) -> bool) {
        self.lock().retain(|id, _| keep(id.as_str()));
    }

    /// The newest record of every deployment that has one, in no particular order.
    pub fn latest(&self) -> Vec<HistoryRecord> {
        self.lock()
            .values()
            .filter_map(|r| r.back().cloned())
            .collect()
    }

    /// Every record matching `filter`, newest first (by `checked_at`, then `seq`).
    pub fn matching(&self, filter: impl Fn(&HistoryRecord) -> bool) -> Vec<HistoryRecord> {
        let mut v: Vec<HistoryRecord> = self
            .lock()
            .values()
            .flat_map(|r| r.iter().filter(|rec| filter(rec)).cloned())
            .collect();
        v.sort_unstable_by(|a, b| b.checked_at.cmp(&a.checked_at).then(b.seq.cmp(&a.seq)));
        v
    }

    #[allow(clippy::disallowed_types)]
    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<DeploymentId, VecDeque<HistoryRecord>, RandomState>>
    {
        // A panic while holding it leaves whole records behind: keep using them.
        self.rings
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        Config, Deployment,
        probe::{ProbeOutcome, ProbeReport},
    };

    fn report(d: &Arc<Deployment>, healthy: bool) -> RoundReport {
        let outcome = if healthy {
            ProbeOutcome::healthy()
        } else {
            ProbeOutcome::unhealthy("status 500").with_status(500)
        };
        let mut r = RoundReport::empty();
        r.results.push(ProbeReport {
            deployment: Arc::clone(d),
            outcome,
            latency: Duration::from_millis(7),
            checked_at: Instant::now(),
        });
        r
    }

    #[tokio::test]
    async fn a_full_ring_drops_its_oldest_record() {
        let d = Deployment::builder("r", "openai/m")
            .api_base("http://127.0.0.1:9/v1")
            .build();
        let h = HealthHistory::new(3);
        let d = Arc::new(d);
        for i in 0..5 {
            h.record_round(&report(&d, i % 2 == 0));
        }
        let all = h.matching(|_| true);
        assert_eq!(all.len(), 3);
        // Newest first: seqs 4, 3, 2.
        assert_eq!(all.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![4, 3, 2]);
        assert_eq!(h.latest().len(), 1);
        assert!(h.latest()[0].healthy);
        assert_eq!(&*all[1].checked_by, LOCAL);
        assert_eq!(all[1].error.as_deref(), Some("status 500"));
    }

    #[tokio::test]
    async fn size_zero_keeps_nothing_and_the_size_comes_from_the_config() {
        let mut b = Config::builder().deployment(
            Deployment::builder("r", "openai/m")
                .api_base("http://127.0.0.1:9/v1")
                .build(),
        );
        b.health_mut().history_size = 0;
        let state = HealthState::new(b.build().unwrap());
        let h = HealthHistory::of(&state);
        assert_eq!(h.capacity(), 0);
        let d = Arc::clone(state.load().deployments().next().unwrap());
        h.record_round(&report(&d, true));
        assert!(h.latest().is_empty());
        assert!(Arc::ptr_eq(&h, &HealthHistory::of(&state)));
    }
}
