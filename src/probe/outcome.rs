//! What one probe found ([`ProbeOutcome`]), and what a round found ([`RoundReport`]).
//!
//! Outcomes are raw results: the background loop turns them into published
//! [`HealthRecord`]s through its hysteresis and transient-error rules, while an on-demand
//! round ([`ProbeLoop::check_now`](super::ProbeLoop::check_now)) hands them back as they are.

use std::{fmt::Write as _, sync::Arc, time::Duration};

use tokio::time::Instant;

use crate::{
    classify::{Class, Classify, DefaultClassifier, ProbeVerdict},
    deployment::{Deployment, DeploymentId},
    health::{HealthRecord, HealthSource, ProbeTier},
    secret::Scrubber,
};

/// The longest reason kept, in characters; longer text is cut and ends with `…`.
pub(crate) const MAX_REASON_CHARS: usize = 200;

/// The result of probing one deployment.
///
/// A prober fills in what it knows; the loop scrubs every configured secret out of
/// [`reason`](Self::reason) before the outcome is kept or shown, whoever wrote it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProbeOutcome {
    /// Whether the deployment passed.
    pub healthy: bool,
    /// The status code of the answer, if one came (408 for a timeout).
    pub status: Option<u16>,
    /// Why it failed: short and secret-free (`timeout`, `status 503: overloaded`,
    /// `probe_rejected: Unrecognized request argument supplied: max_tokens`, ...).
    pub reason: Option<Arc<str>>,
    /// `Retry-After` of a 429 answer, if any (used when probes feed cooldown).
    pub retry_after: Option<Duration>,
    /// What the answer means, if the prober classified it (the
    /// [`HttpProber`](super::HttpProber) does); otherwise [`class`](Self::class) derives it
    /// from `healthy` and `status`.
    pub class: Option<Class>,
    /// Where it came from ([`HealthSource::Traffic`]: a probe saved because real traffic
    /// succeeded within the interval).
    pub source: HealthSource,
    /// Which tier of a tiered round decided it (`None`: the round was not tiered).
    pub tier: Option<ProbeTier>,
}

impl ProbeOutcome {
    /// A passed probe.
    pub fn healthy() -> Self {
        Self {
            healthy: true,
            status: None,
            reason: None,
            retry_after: None,
            class: None,
            source: HealthSource::Probe,
            tier: None,
        }
    }

    /// A failed probe with a short, secret-free reason.
    pub fn unhealthy(reason: impl Into<Arc<str>>) -> Self {
        Self {
            healthy: false,
            status: None,
            reason: Some(reason.into()),
            retry_after: None,
            class: None,
            source: HealthSource::Probe,
            tier: None,
        }
    }

    /// A probe that did not finish within its timeout: unhealthy, status 408, reason `timeout`.
    pub fn timeout() -> Self {
        Self::unhealthy("timeout").with_status(408)
    }

    /// Sets the status code.
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }

    /// Sets the `Retry-After` of a 429.
    pub fn with_retry_after(mut self, retry_after: Duration) -> Self {
        self.retry_after = Some(retry_after);
        self
    }

    /// Sets the tier that produced it (a [`Prober::probe_cheap`](super::Prober::probe_cheap)
    /// outcome is [`ProbeTier::Cheap`]; the loop marks billed ones).
    pub fn with_tier(mut self, tier: ProbeTier) -> Self {
        self.tier = Some(tier);
        self
    }

    /// Sets the class of the answer.
    pub fn with_class(mut self, class: Class) -> Self {
        self.class = Some(class);
        self
    }

    /// What the answer means: the prober's class, else one derived from `healthy` and
    /// `status` by the [`DefaultClassifier`] (no status: a connection failure).
    pub fn class(&self) -> Class {
        if let Some(c) = self.class {
            return c;
        }
        if self.healthy {
            return Class::Success;
        }
        let status = self.status.and_then(|s| http::StatusCode::from_u16(s).ok());
        match status {
            None => Class::Connection,
            Some(s) => match DefaultClassifier::default().classify_response(
                s,
                &http::HeaderMap::new(),
                None,
            ) {
                Class::RateLimited { .. } => Class::RateLimited {
                    retry_after: self.retry_after,
                },
                // An unhealthy probe is never a success, whatever its status.
                Class::Success => Class::ServerError,
                c => c,
            },
        }
    }

    /// Whether the failure is one `health_check_ignore_transient_errors` ignores: its
    /// [`class`](Self::class) says [`ProbeVerdict::Transient`] (a 429 that is not a quota
    /// error, a 408, a timeout).
    pub fn is_transient(&self) -> bool {
        !self.healthy && self.class().probe_verdict() == ProbeVerdict::Transient
    }

    /// Whether the probe could not be made here (its class is [`Class::Local`]: this
    /// process ran out of file descriptors, say): it says nothing about the upstream, so
    /// the deployment keeps its state and `/health` lists it as unchecked, with the reason.
    pub fn is_inconclusive(&self) -> bool {
        !self.healthy && self.class().probe_verdict() == ProbeVerdict::Inconclusive
    }

    /// The outcome with every secret `scrubber` knows removed from its reason, and the
    /// reason cut to a short length.
    pub(crate) fn scrubbed(mut self, scrubber: &Scrubber) -> Self {
        if let Some(r) = &self.reason {
            let clean = shorten(&scrubber.scrub(r));
            if *clean != **r {
                self.reason = Some(clean.into());
            }
        }
        self
    }

    /// The record to publish for this outcome, checked at `at`.
    pub(crate) fn to_record(&self, at: Instant) -> HealthRecord {
        let rec = if self.healthy {
            HealthRecord::healthy(at)
        } else {
            HealthRecord::unhealthy(
                at,
                self.reason
                    .clone()
                    .unwrap_or_else(|| Arc::from("unhealthy")),
                self.status,
            )
        };
        let rec = rec.with_source(self.source).with_tier(self.tier);
        match self.status {
            Some(s) => rec.with_status(s),
            None => rec,
        }
    }
}

/// `text` on one line, whitespace collapsed, at most [`MAX_REASON_CHARS`] characters.
pub(crate) fn shorten(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(MAX_REASON_CHARS + 4));
    for (n, word) in text.split_whitespace().enumerate() {
        if n > 0 {
            out.push(' ');
        }
        out.push_str(word);
        if out.chars().count() > MAX_REASON_CHARS {
            let cut: String = out.chars().take(MAX_REASON_CHARS).collect();
            out = cut;
            let _ = write!(out, "…");
            break;
        }
    }
    out
}

/// One deployment's result in a round.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ProbeReport {
    /// The deployment probed.
    pub deployment: Arc<Deployment>,
    /// What the probe found (reason already scrubbed).
    pub outcome: ProbeOutcome,
    /// How long the probe took (up to its timeout).
    pub latency: Duration,
    /// When it finished.
    pub checked_at: Instant,
}

impl ProbeReport {
    /// The deployment's id.
    pub fn id(&self) -> &DeploymentId {
        self.deployment.id()
    }

    /// Whether the probe passed.
    pub fn healthy(&self) -> bool {
        self.outcome.healthy
    }

    /// The record this result would publish, taken as it is (no hysteresis).
    pub fn record(&self) -> HealthRecord {
        self.outcome.to_record(self.checked_at)
    }
}

/// Every result of one round, in the order of the deployment list.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RoundReport {
    /// One entry per deployment probed.
    pub results: Vec<ProbeReport>,
    /// When the round started.
    pub started_at: Instant,
    /// How long the round took.
    pub elapsed: Duration,
    /// Who probed it, when that was another process or this one under a shared lease
    /// (its process id); `None`: this process, on its own.
    pub checked_by: Option<Arc<str>>,
}

impl RoundReport {
    pub(crate) fn empty() -> Self {
        Self {
            results: Vec::new(),
            started_at: Instant::now(),
            elapsed: Duration::ZERO,
            checked_by: None,
        }
    }

    /// The results that passed.
    pub fn healthy(&self) -> impl Iterator<Item = &ProbeReport> {
        self.results.iter().filter(|r| r.outcome.healthy)
    }

    /// The results that failed.
    pub fn unhealthy(&self) -> impl Iterator<Item = &ProbeReport> {
        self.results.iter().filter(|r| !r.outcome.healthy)
    }

    /// The result for one deployment id, if it was probed.
    pub fn get(&self, id: &str) -> Option<&ProbeReport> {
        self.results.iter().find(|r| r.id().as_str() == id)
    }

    /// The raw results as records, for `HealthState::record` when you do want an on-demand
    /// round to change routing (see [`ProbeLoop::check_now`](super::ProbeLoop::check_now)).
    pub fn records(&self) -> impl Iterator<Item = (DeploymentId, HealthRecord)> + '_ {
        self.results.iter().map(|r| (r.id().clone(), r.record()))
    }
}

/// Which deployments an on-demand round probes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProbeTarget {
    /// Every deployment (once each).
    All,
    /// The deployments whose `litellm_params.model` is this; if none, those of the route
    /// (`model_name`) of this name. LiteLLM's `/health?model=`.
    Model(String),
    /// The deployment with this `model_info.id`. LiteLLM's `/health?model_id=`.
    ModelId(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    #[test]
    fn transient_means_408_or_429_failures() {
        assert!(ProbeOutcome::timeout().is_transient());
        assert!(ProbeOutcome::unhealthy("x").with_status(429).is_transient());
        assert!(!ProbeOutcome::unhealthy("x").with_status(500).is_transient());
        assert!(!ProbeOutcome::unhealthy("x").is_transient());
        assert!(!ProbeOutcome::healthy().with_status(200).is_transient());
        let local =
            ProbeOutcome::unhealthy("connect: Too many open files").with_class(Class::Local);
        assert!(local.is_inconclusive() && !local.is_transient());
        assert!(
            !ProbeOutcome::unhealthy("x")
                .with_status(500)
                .is_inconclusive()
        );
        assert!(
            !ProbeOutcome::unhealthy("quota")
                .with_status(429)
                .with_class(Class::Quota)
                .is_transient()
        );
    }

    #[test]
    fn scrubbing_removes_secrets_and_shortens() {
        let sc = Scrubber::new([Secret::new("sk-live-1")]);
        let long = format!("bad key sk-live-1 {}", "x ".repeat(400));
        let o = ProbeOutcome::unhealthy(long).scrubbed(&sc);
        let r = o.reason.unwrap();
        assert!(r.starts_with("bad key [redacted] x"), "{r}");
        assert!(!r.contains("sk-live-1"));
        assert_eq!(r.chars().count(), MAX_REASON_CHARS + 1);
        assert!(r.ends_with('…'));
    }

    #[test]
    fn records_carry_status_and_reason() {
        let at = Instant::now();
        let rec = ProbeOutcome::timeout().to_record(at);
        assert_eq!(
            (rec.healthy, rec.status, rec.reason.as_deref()),
            (false, Some(408), Some("timeout"))
        );
        let rec = ProbeOutcome::healthy().with_status(200).to_record(at);
        assert_eq!(
            (rec.healthy, rec.status, rec.reason),
            (true, Some(200), None)
        );
    }
}
