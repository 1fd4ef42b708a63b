//! Tiered background rounds (`health_check_billed_every`, probe budgets) and the spread
//! of a round's probes over its interval (`health_check_spread`).
//!
//! A tiered round has two phases. The **cheap tier** ([`Prober::probe_cheap`]) runs first
//! for every deployment that is probed this round; then, for each:
//!
//! * a failed cheap tier is the result (unhealthy, no tokens spent);
//! * a passed one is the result too, carrying the last billed verdict forward, unless a
//!   billed probe is **due** (its first round, or `billed_every` rounds since its last
//!   billed probe) or **called for at once**: its cheap tier went from fail to pass, its
//!   traffic failed since the last round, or its last billed probe failed;
//! * the billed probes so called for pass the [budget](super::budget) (escalations first,
//!   then the deployments billed longest ago); one refused is not sent and the deployment
//!   keeps its last state (a deployment with none gets its cheap pass);
//! * the admitted billed probes run, and their results are the round's.
//!
//! A deployment whose prober has no cheap tier is billed every round (budget permitting).
//! Traffic that vouched for a deployment (`health_check_skip_when_traffic_healthy`) counts
//! as a billed pass: real billed requests succeeded.
//!
//! With `health_check_spread: f` each probe of a round starts at a uniform random offset in
//! `[0, f × interval)` from the round's start, drawn from the loop's seeded generator; in
//! a tiered round the cheap tier takes the first half of that window and the billed
//! probes the second. `health_check_concurrency` still bounds the probes in flight.
#![allow(clippy::disallowed_types)] // `Plan` is locked by the probe loop only, never on a request path

use std::{collections::HashMap, sync::Arc, time::Duration};

use foldhash::fast::RandomState;
use rand::{Rng, rngs::SmallRng};
use tokio::time::Instant;

use super::{
    budget::{Budget, Refusal},
    outcome::ProbeReport,
};
use crate::{
    deployment::{Deployment, DeploymentId},
    health::{HealthSource, ProbeTier},
};

/// What a loop remembers of each deployment between tiered rounds.
#[derive(Debug, Default)]
struct TierState {
    /// Rounds since its last billed probe (or traffic that vouched); `None`: never.
    since_billed: Option<u32>,
    /// Whether its last billed probe passed.
    billed_ok: bool,
    /// Whether its last cheap tier passed; `None`: never run.
    cheap_ok: Option<bool>,
    /// When it was last billed.
    last_billed: Option<Instant>,
    /// The budget refused its billed probe in the last round that called for one.
    skipped: Option<Refusal>,
}

/// One deployment's billed probe called for by the cheap phase.
#[derive(Debug)]
pub(super) struct Candidate {
    pub(super) index: usize,
    pub(super) deployment: Arc<Deployment>,
    escalated: bool,
    last_billed: Option<Instant>,
    /// Its cheap pass, published if the budget refuses and it has no earlier state.
    cheap: Option<ProbeReport>,
}

/// What the cheap phase decided for one deployment.
#[derive(Debug)]
pub(super) enum Decision {
    /// Publish this result (`None`: nothing).
    Publish(Option<ProbeReport>),
    /// Ask the budget for a billed probe.
    Bill(Candidate),
}

/// The tier state, budget and offset generator of one loop.
#[derive(Debug)]
pub(crate) struct Plan {
    by_id: HashMap<DeploymentId, TierState, RandomState>,
    pub(crate) budget: Budget,
    rng: SmallRng,
    /// When the previous background round started (nanos since the state's epoch).
    pub(super) last_round: Option<u64>,
}

impl Plan {
    pub(crate) fn new(budget: Budget, rng: SmallRng) -> Self {
        Self {
            by_id: HashMap::default(),
            budget,
            rng,
            last_round: None,
        }
    }

    /// Forgets deployments for which `keep` says no.
    pub(crate) fn retain(&mut self, keep: impl Fn(&str) -> bool + Copy) {
        self.by_id.retain(|id, _| keep(id.as_str()));
        self.budget.retain(keep);
    }

    /// `n` start times in `[from, from + len)`, uniform at random; all `from` when `len` is zero.
    pub(super) fn offsets(&mut self, n: usize, from: Instant, len: Duration) -> Vec<Instant> {
        if len.is_zero() {
            return vec![from; n];
        }
        let max = u64::try_from(len.as_nanos()).unwrap_or(u64::MAX);
        (0..n)
            .map(|_| from + Duration::from_nanos(self.rng.random_range(0..max)))
            .collect()
    }

    /// Traffic vouched for `d`: as good as a billed pass.
    pub(super) fn vouched(&mut self, d: &Deployment, now: Instant) {
        let st = self.by_id.entry(d.id().clone()).or_default();
        st.since_billed = Some(0);
        st.billed_ok = true;
        st.last_billed = Some(now);
    }

    /// Reads `d`'s cheap result (`None`: its prober has no cheap tier) and decides: the
    /// result to publish now, or a billed probe to ask the budget for.
    pub(super) fn after_cheap(
        &mut self,
        index: usize,
        d: &Arc<Deployment>,
        cheap: Option<ProbeReport>,
        billed_every: u32,
        traffic_failed: bool,
    ) -> Decision {
        let st = self.by_id.entry(d.id().clone()).or_default();
        let candidate = |st: &TierState, escalated, cheap| Candidate {
            index,
            deployment: Arc::clone(d),
            escalated,
            last_billed: st.last_billed,
            cheap,
        };
        let Some(mut c) = cheap else {
            return Decision::Bill(candidate(st, false, None));
        };
        if c.outcome.source == HealthSource::Traffic {
            // Traffic answered for it while its probe waited for its start.
            st.since_billed = Some(0);
            st.billed_ok = true;
            return Decision::Publish(Some(c));
        }
        if c.outcome.tier.is_none() {
            c.outcome.tier = Some(ProbeTier::Cheap);
        }
        if c.outcome.is_inconclusive() {
            return Decision::Publish(Some(c));
        }
        let was_failed = st.cheap_ok == Some(false);
        st.cheap_ok = Some(c.outcome.healthy);
        if !c.outcome.healthy {
            st.since_billed = st.since_billed.map(|n| n.saturating_add(1));
            return Decision::Publish(Some(c));
        }
        let billed_failed = st.since_billed.is_some() && !st.billed_ok;
        let escalated = was_failed || traffic_failed || billed_failed;
        let due = st
            .since_billed
            .is_none_or(|n| n.saturating_add(1) >= billed_every);
        if escalated || due {
            if escalated {
                tracing::debug!(
                    model_id = %d.id(),
                    route = d.route(),
                    cheap_recovered = was_failed,
                    traffic_failed,
                    billed_failed,
                    "health_check_billed_escalated"
                );
            }
            return Decision::Bill(candidate(st, escalated, Some(c)));
        }
        st.since_billed = st.since_billed.map(|n| n.saturating_add(1));
        Decision::Publish(Some(c))
    }

    /// Asks the budget for each candidate's billed probe (escalations first, then those
    /// billed longest ago); returns the admitted ones and, for the refused, the result to
    /// publish (their cheap pass when they have no earlier state).
    pub(super) fn admit(
        &mut self,
        mut candidates: Vec<Candidate>,
        has_state: impl Fn(&str) -> bool,
        cost: impl Fn(&Deployment) -> Option<f64>,
        now: Instant,
    ) -> (Vec<Candidate>, Vec<(usize, ProbeReport)>) {
        candidates.sort_by_key(|c| (!c.escalated, c.last_billed));
        let mut admitted = Vec::with_capacity(candidates.len());
        let mut kept = Vec::new();
        for c in candidates {
            let st = self.by_id.entry(c.deployment.id().clone()).or_default();
            match self.budget.admit(&c.deployment, cost(&c.deployment), now) {
                Ok(()) => {
                    st.skipped = None;
                    admitted.push(c);
                }
                Err(r) => {
                    st.skipped = Some(r);
                    st.since_billed = st.since_billed.map(|n| n.saturating_add(1));
                    tracing::debug!(
                        model_id = %c.deployment.id(),
                        limit = r.limit,
                        "health_check_billed_skipped_budget"
                    );
                    if !has_state(c.deployment.id().as_str())
                        && let Some(cheap) = c.cheap
                    {
                        kept.push((c.index, cheap));
                    }
                }
            }
        }
        (admitted, kept)
    }

    /// Notes a billed result of `d` at `now`.
    pub(super) fn billed(&mut self, r: &ProbeReport, now: Instant) {
        let st = self.by_id.entry(r.id().clone()).or_default();
        if r.outcome.is_inconclusive() {
            return;
        }
        st.since_billed = Some(0);
        st.billed_ok = r.outcome.healthy;
        st.last_billed = Some(now);
    }

    /// The deployments whose billed probe the budget refused in their last round, and why.
    pub(crate) fn skipped(&self) -> impl Iterator<Item = (&DeploymentId, Refusal)> {
        self.by_id
            .iter()
            .filter_map(|(id, st)| st.skipped.map(|r| (id, r)))
    }
}
