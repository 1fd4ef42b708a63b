//! Probe budgets (`health_check_max_probes_per_minute`, its per-deployment twin in
//! `model_info`, `health_check_max_cost_per_day`): how many billed probes a background
//! round may still send, and what one costs.
//!
//! Each limit is a fixed window that opens with the first billed probe counted in it (a
//! minute, or 24 hours for the cost) and is full once its limit is reached. A billed probe
//! the budget refuses is not sent: the deployment keeps its last state. The first refusal
//! of each window logs one warning (`probe budget spent`), never one per probe.

use std::{collections::HashMap, time::Duration};

use foldhash::fast::RandomState;
use tokio::time::Instant;

use super::{defaults::ProbeDefaults, mode::resolve_max_tokens, mode::resolve_mode};
use crate::{
    config::HealthCheckSettings,
    deployment::{Deployment, DeploymentId, Mode},
};

const MINUTE: Duration = Duration::from_secs(60);
const DAY: Duration = Duration::from_secs(24 * 3600);

/// The characters of the longest chat question the HTTP prober asks (`request::QUESTIONS`).
pub(crate) const CHAT_QUESTION_CHARS: usize = 19;

/// The config key of the limit that refused a billed probe.
pub(crate) const PER_MINUTE: &str = "general_settings.health_check_max_probes_per_minute";
/// See [`PER_MINUTE`].
pub(crate) const PER_DAY_COST: &str = "general_settings.health_check_max_cost_per_day";
/// See [`PER_MINUTE`].
pub(crate) const PER_DEPLOYMENT: &str = "model_info.health_check_max_probes_per_minute";

/// The estimated cost of one billed probe of `d`: its prompt's tokens (characters / 4,
/// rounded up) × `input_cost_per_token` plus its `max_tokens` × `output_cost_per_token`
/// (chat, completion and responses probes; the others produce no text tokens).
/// `litellm_params` wins over `model_info`. `None` when neither cost is configured.
pub(crate) fn billed_cost(d: &Deployment, defaults: &ProbeDefaults) -> Option<f64> {
    let (p, i) = (d.params(), d.info());
    let input = p.input_cost_per_token.or(i.input_cost_per_token);
    let output = p.output_cost_per_token.or(i.output_cost_per_token);
    if input.is_none() && output.is_none() {
        return None;
    }
    let mode = resolve_mode(d);
    let prompt_chars = match mode {
        Mode::Chat => CHAT_QUESTION_CHARS,
        _ => defaults.prompt.chars().count(),
    };
    let prompt_tokens = prompt_chars.div_ceil(4) as f64;
    let out_tokens = match mode {
        Mode::Chat | Mode::Completion | Mode::Responses => {
            f64::from(resolve_max_tokens(d, defaults).unwrap_or(super::DEFAULT_MAX_TOKENS))
        }
        _ => 0.0,
    };
    Some(prompt_tokens.mul_add(input.unwrap_or(0.0), out_tokens * output.unwrap_or(0.0)))
}

/// A fixed window: opened by its first use, `used` out of the limit until `start + len`.
#[derive(Clone, Copy, Debug)]
struct Window<T> {
    start: Option<Instant>,
    used: T,
    /// A refusal in this window was logged.
    warned: bool,
}

impl<T: Default + Copy> Window<T> {
    fn new() -> Self {
        Self {
            start: None,
            used: T::default(),
            warned: false,
        }
    }

    /// Rolls the window over when it has ended at `now`.
    fn roll(&mut self, now: Instant, len: Duration) {
        if self.start.is_some_and(|s| now >= s + len) {
            *self = Self::new();
        }
    }

    fn until(&self, now: Instant, len: Duration) -> Instant {
        self.start.unwrap_or(now) + len
    }
}

/// The probe budgets of a loop at one moment ([`ProbeLoop::budget_status`](super::ProbeLoop::budget_status));
/// `/health` shows it as `probe_budget`.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct BudgetStatus {
    /// Whether a global budget is spent now: background rounds skip billed probes.
    pub spent: bool,
    /// The config key of the spent budget
    /// (`general_settings.health_check_max_probes_per_minute` or `…max_cost_per_day`).
    pub limit: Option<&'static str>,
    /// When the spent budget refills.
    pub until: Option<Instant>,
    /// Billed probes counted in the current minute.
    pub billed_probes_this_minute: u32,
    /// `health_check_max_probes_per_minute`, if set.
    pub max_probes_per_minute: Option<u32>,
    /// Estimated spend counted in the current 24-hour window.
    pub cost_today: f64,
    /// `health_check_max_cost_per_day`, if set.
    pub max_cost_per_day: Option<f64>,
    /// The deployments whose last billed probe a budget refused, while it stays spent.
    pub skipped: Vec<SkippedProbe>,
}

/// A deployment whose billed probe a budget refused ([`BudgetStatus::skipped`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SkippedProbe {
    /// The deployment.
    pub model_id: DeploymentId,
    /// The config key of the budget that refused it.
    pub limit: &'static str,
    /// When that budget refills.
    pub until: Instant,
}

/// Why a billed probe was refused, and until when.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub(crate) limit: &'static str,
    pub(crate) until: Instant,
}

/// Every budget of one probe loop.
#[derive(Debug)]
pub(crate) struct Budget {
    per_minute: Option<u32>,
    cost_per_day: Option<f64>,
    minute: Window<u32>,
    day: Window<f64>,
    by_id: HashMap<DeploymentId, Window<u32>, RandomState>,
    /// The last refusal by a global limit (shown in `/health` while it lasts).
    pub(crate) spent: Option<Refusal>,
}

impl Budget {
    pub(crate) fn new(s: &HealthCheckSettings) -> Self {
        Self {
            per_minute: s.max_probes_per_minute.map(|n| n.get()),
            cost_per_day: s.max_cost_per_day,
            minute: Window::new(),
            day: Window::new(),
            by_id: HashMap::default(),
            spent: None,
        }
    }

    /// Whether any limit is configured (globally or for one of `deployments`).
    pub(crate) fn configured<'a>(
        &self,
        mut deployments: impl Iterator<Item = &'a Deployment>,
    ) -> bool {
        self.per_minute.is_some()
            || self.cost_per_day.is_some()
            || deployments.any(|d| d.info().health_check_max_probes_per_minute.is_some())
    }

    /// The estimated spend in the current 24-hour window and the billed probes in the
    /// current minute.
    pub(crate) fn used(&self) -> (u32, f64) {
        (self.minute.used, self.day.used)
    }

    /// Counts one billed probe of `d` costing `cost` at `now`, or refuses it.
    pub(crate) fn admit(
        &mut self,
        d: &Deployment,
        cost: Option<f64>,
        now: Instant,
    ) -> Result<(), Refusal> {
        self.minute.roll(now, MINUTE);
        self.day.roll(now, DAY);
        if self.spent.is_some_and(|r| now >= r.until) {
            self.spent = None;
        }
        let own_limit = d.info().health_check_max_probes_per_minute;
        let own = own_limit.map(|_| {
            let w = self.by_id.entry(d.id().clone()).or_insert_with(Window::new);
            w.roll(now, MINUTE);
            *w
        });
        if let (Some(limit), Some(w)) = (own_limit, own)
            && w.used >= limit
        {
            let r = Refusal {
                limit: PER_DEPLOYMENT,
                until: w.until(now, MINUTE),
            };
            if let Some(w) = self.by_id.get_mut(d.id()) {
                warn_once(&mut w.warned, r, Some(d), now);
            }
            return Err(r);
        }
        if let Some(limit) = self.per_minute
            && self.minute.used >= limit
        {
            let r = Refusal {
                limit: PER_MINUTE,
                until: self.minute.until(now, MINUTE),
            };
            warn_once(&mut self.minute.warned, r, None, now);
            self.spent = Some(r);
            return Err(r);
        }
        if let (Some(limit), Some(c)) = (self.cost_per_day, cost)
            && self.day.used + c > limit
        {
            let r = Refusal {
                limit: PER_DAY_COST,
                until: self.day.until(now, DAY),
            };
            warn_once(&mut self.day.warned, r, None, now);
            self.spent = Some(r);
            return Err(r);
        }
        self.minute.start.get_or_insert(now);
        self.minute.used += 1;
        if let Some(c) = cost {
            self.day.start.get_or_insert(now);
            self.day.used += c;
        }
        if let Some(w) = self.by_id.get_mut(d.id()) {
            w.start.get_or_insert(now);
            w.used += 1;
        }
        Ok(())
    }

    /// Forgets deployments for which `keep` says no.
    pub(crate) fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.by_id.retain(|id, _| keep(id.as_str()));
    }
}

fn warn_once(warned: &mut bool, r: Refusal, d: Option<&Deployment>, now: Instant) {
    if std::mem::replace(warned, true) {
        return;
    }
    let secs = r.until.saturating_duration_since(now).as_secs_f64();
    match d {
        Some(d) => tracing::warn!(
            limit = r.limit,
            model_id = %d.id(),
            route = d.route(),
            refills_in_secs = secs,
            "probe budget spent: billed probes of this deployment are skipped until it refills \
             (the cheap tier still runs; the deployment keeps its last state)"
        ),
        None => tracing::warn!(
            limit = r.limit,
            refills_in_secs = secs,
            "probe budget spent: billed probes are skipped until it refills (the cheap tier \
             still runs; deployments keep their last state)"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "http-prober")]
    #[test]
    fn the_chat_question_length_is_the_longest_question() {
        let longest = super::super::request::QUESTIONS
            .iter()
            .map(|q| q.chars().count())
            .max();
        assert_eq!(longest, Some(CHAT_QUESTION_CHARS));
    }

    #[test]
    fn cost_is_prompt_tokens_times_input_plus_max_tokens_times_output() {
        let d = Deployment::builder("r", "openai/gpt-4o")
            .api_base("http://127.0.0.1:9/v1")
            .cost_per_token(0.001, 0.01)
            .build();
        // 19 characters → 5 tokens; 16 max_tokens.
        let c = billed_cost(&d, &ProbeDefaults::default()).unwrap();
        assert!((c - 0.165).abs() < 1e-12, "{c}");
        let none = Deployment::builder("r", "openai/gpt-4o").build();
        assert_eq!(billed_cost(&none, &ProbeDefaults::default()), None);
        let emb = Deployment::builder("r", "openai/text-embedding-3-small")
            .cost_per_token(0.001, 0.01)
            .build();
        // "test from litellm": 17 characters → 5 tokens; no output.
        let c = billed_cost(&emb, &ProbeDefaults::default()).unwrap();
        assert!((c - 0.005).abs() < 1e-12, "{c}");
    }
}
