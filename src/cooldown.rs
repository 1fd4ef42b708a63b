//! Reactive cooldown: deployments that fail requests sit out for a while.
//!
//! Every response the routing service sees is classified by the config's
//! [`Classify`](crate::classify::Classify) and counted in the deployment's current one-minute
//! window. The decision follows LiteLLM:
//!
//! * failures that count are the deployment's faults
//!   ([`Class::counts_toward_cooldown`]): 429, 402, 401, 408, 404 and 5xx, timeouts and
//!   connection errors; the caller's own faults (other 4xx, context window, content
//!   policy) and failures this process made ([`Class::Local`]) are not counted at all;
//! * with `allowed_fails` unset: a rate limit (429, quota) cools the deployment down unless
//!   it is the only one of its route; more than 50 % failures with at least 5 requests in
//!   the minute cools it down when the route has more than one deployment; 100 % failures
//!   over at least 1000 requests cools it down even alone;
//! * with `allowed_fails = N`: more than N failures in the minute cools it down;
//! * a cooldown lasts `cooldown_time` (default 5 s, or the deployment's own), extended to
//!   the `Retry-After` of a 429 (capped by the classifier at `max_retry_after`). A cooldown
//!   so extended by an upstream ends early when a probe of the deployment passes.
//!
//! State is a few atomics per deployment: nothing here locks or waits.

use std::{
    sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed},
    time::Duration,
};

use crate::{
    classify::Class,
    config::Config,
    deployment::DeploymentId,
    time::{Counts, PeriodCounts},
};

/// When a deployment is cooled down; built from `router_settings`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CooldownPolicy {
    /// `allowed_fails`; `None`: the percentage rule.
    pub(crate) allowed_fails: Option<u32>,
    /// `cooldown_time`.
    pub(crate) cooldown_time: Duration,
}

/// Requests in the window after which the percentage rule applies.
const MIN_REQUESTS_FOR_RATE: u32 = 5;
/// Requests in the window after which a lone deployment may be cooled down at 100 % failures.
const MIN_REQUESTS_ALONE: u32 = 1000;

impl CooldownPolicy {
    pub(crate) fn from_config(cfg: &Config) -> Self {
        Self {
            allowed_fails: cfg.router.allowed_fails,
            cooldown_time: cfg.router.cooldown_time,
        }
    }

    /// Whether a deployment with this window should be cooled down after a failure.
    fn should_cool(&self, w: Counts, class: &Class, route_len: usize) -> bool {
        if let Some(allowed) = self.allowed_fails {
            return w.failures > allowed;
        }
        let shared = route_len > 1;
        (class.is_rate_limit() && shared)
            || (shared && w.requests >= MIN_REQUESTS_FOR_RATE && w.failures * 2 > w.requests)
            || (w.requests >= MIN_REQUESTS_ALONE && w.failures == w.requests)
    }
}

/// Per-deployment cooldown state.
#[derive(Debug, Default)]
pub(crate) struct CooldownState {
    /// End of the current cooldown, nanos since the state's epoch; 0 = none.
    until: AtomicU64,
    /// Answers and faults of the current minute.
    window: PeriodCounts,
    /// Those of the minute before; written only when a minute turns (for
    /// [`recent`](Self::recent), which the dashboard shows).
    previous: PeriodCounts,
    /// Whether the current cooldown was lengthened by an upstream's `Retry-After`.
    upstream_set: AtomicBool,
    /// End of the last cooldown (nanos since the epoch; 0: never), for slow start.
    last_end: AtomicU64,
}

/// Answers counted over the last minute; see [`CooldownState::recent`].
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(not(feature = "endpoints"), allow(dead_code))] // read by the dashboard only
pub(crate) struct RecentAnswers {
    /// Answers (an estimate: part of the previous minute's count is pro-rated).
    pub(crate) requests: f64,
    /// Of which the deployment's faults.
    pub(crate) failures: f64,
    /// The span they were counted over, in seconds (60, less in the first minute).
    pub(crate) seconds: f64,
}

const NANOS_PER_MINUTE: u64 = 60_000_000_000;

impl CooldownState {
    /// `None` when not cooling down at `now`, else the time left.
    pub(crate) fn remaining(&self, now: u64) -> Option<Duration> {
        let until = self.until.load(Relaxed);
        (until > now).then(|| Duration::from_nanos(until - now))
    }

    /// Whether the deployment may take a request. Reads the clock (through `now`) only
    /// when a cooldown was recorded, and clears an expired one so later checks need none.
    pub(crate) fn is_available<F: FnMut() -> u64>(
        &self,
        now: &mut crate::time::LazyNow<F>,
    ) -> bool {
        let until = self.until.load(Relaxed);
        if until == 0 {
            return true;
        }
        if until > now.get() {
            return false;
        }
        // Expired: clear it unless a new cooldown was recorded meanwhile.
        let _ = self.until.compare_exchange(until, 0, Relaxed, Relaxed);
        true
    }

    /// The answers counted over the last minute at `now` (nanos since the epoch), for
    /// display: this minute's window plus the share of the previous minute's that still
    /// lies within the last 60 s (a sliding-window estimate). Counts what cooldown counts:
    /// successes and the deployment's faults, not the caller's.
    #[cfg_attr(not(feature = "endpoints"), allow(dead_code))]
    pub(crate) fn recent(&self, now: u64) -> RecentAnswers {
        let minute = now / NANOS_PER_MINUTE;
        let cur = self.window.load();
        let prev = self.previous.load();
        let last = minute.checked_sub(1);
        let (this, before) = if cur.period == minute {
            (Some(cur), (Some(prev.period) == last).then_some(prev))
        } else {
            (None, (Some(cur.period) == last).then_some(cur))
        };
        let into = (now % NANOS_PER_MINUTE) as f64 / NANOS_PER_MINUTE as f64;
        let (mut requests, mut failures) = (0.0, 0.0);
        if let Some(w) = this {
            requests += f64::from(w.requests);
            failures += f64::from(w.failures);
        }
        if let Some(w) = before {
            requests += f64::from(w.requests) * (1.0 - into);
            failures += f64::from(w.failures) * (1.0 - into);
        }
        RecentAnswers {
            requests,
            failures,
            // The first minute after the epoch is shorter.
            seconds: (now.min(NANOS_PER_MINUTE) as f64 / 1e9).max(1.0),
        }
    }

    /// Applies a cooldown entered elsewhere (another process, through the shared store):
    /// cooling down until `until` at least. Returns whether that moved the end later.
    pub(crate) fn extend_until(&self, until: u64) -> bool {
        let until = until.max(1);
        self.last_end.fetch_max(until, Relaxed);
        self.until.fetch_max(until, Relaxed) < until
    }

    /// End of the last cooldown (nanos since the epoch; 0: never). In the future while it
    /// cools down.
    pub(crate) fn last_end(&self) -> u64 {
        self.last_end.load(Relaxed)
    }

    /// Ends, at `now`, a cooldown an upstream's `Retry-After` lengthened (a passed probe
    /// says the deployment is back). Returns whether one was ended.
    pub(crate) fn end_upstream_set(&self, now: u64) -> bool {
        let until = self.until.load(Relaxed);
        if until <= now || !self.upstream_set.swap(false, Relaxed) {
            return false;
        }
        let ended = self
            .until
            .compare_exchange(until, 0, Relaxed, Relaxed)
            .is_ok();
        if ended {
            // Ended early: it is back now, not at the upstream's time.
            let _ = self
                .last_end
                .compare_exchange(until, now.max(1), Relaxed, Relaxed);
        }
        ended
    }

    /// [`record`](Self::record) of a success at `now`, the short way: it only counts.
    pub(crate) fn record_success(&self, minute: u64) {
        if let Some(before) = self.window.count_success(minute) {
            self.previous.store(before);
        }
    }

    /// Counts a classified answer at `now`; returns the cooldown entered, if any.
    pub(crate) fn record(
        &self,
        class: &Class,
        now: u64,
        route_len: usize,
        policy: &CooldownPolicy,
        own_cooldown: Option<Duration>,
    ) -> Option<Duration> {
        if !class.is_counted() {
            return None;
        }
        let failed = class.counts_toward_cooldown();
        let retry_after = class.retry_after();
        let minute = now / NANOS_PER_MINUTE;
        let (w, replaced) = self.window.count(minute, failed);
        // The first answer of a new minute keeps the last one for `recent` (one store,
        // once a minute).
        if let Some(before) = replaced {
            self.previous.store(before);
        }
        if !failed || !policy.should_cool(w, class, route_len) {
            return None;
        }
        let base = own_cooldown.unwrap_or(policy.cooldown_time);
        let dur = retry_after.map_or(base, |r| r.max(base));
        let until = now
            .saturating_add(u64::try_from(dur.as_nanos()).unwrap_or(u64::MAX))
            .max(1);
        self.last_end.fetch_max(until, Relaxed);
        if self.until.fetch_max(until, Relaxed) < until {
            self.upstream_set.store(dur > base, Relaxed);
        }
        Some(dur)
    }
}

/// Where cooldowns (and outlier ejections) entered by requests are announced when they are
/// shared across processes: hung off the health state (see `health::Hooks`), installed by
/// the shared-state coordinator, empty otherwise.
#[derive(Debug, Default)]
pub(crate) struct CooldownSink(arc_swap::ArcSwapOption<tokio::sync::mpsc::Sender<Announcement>>);

/// What the request path tells the shared-state coordinator: which deployment went out,
/// how (a cooldown or an ejection) and the class of the answer that put it out (a fixed
/// name such as `rate_limited`, never a message).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Announcement {
    pub(crate) id: DeploymentId,
    pub(crate) ejection: bool,
    pub(crate) class: &'static str,
}

impl CooldownSink {
    /// Announces that `id` entered cooldown (`ejection`: was ejected) after an answer of
    /// `class`, if anyone listens. Never waits: a full queue drops the announcement.
    pub(crate) fn announce(&self, id: &DeploymentId, ejection: bool, class: &'static str) {
        if let Some(tx) = &*self.0.load() {
            let _ = tx.try_send(Announcement {
                id: id.clone(),
                ejection,
                class,
            });
        }
    }

    /// Installs (or removes) the receiving side of [`announce`](Self::announce).
    pub(crate) fn set(&self, tx: Option<tokio::sync::mpsc::Sender<Announcement>>) {
        self.0.store(tx.map(std::sync::Arc::new));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn policy(allowed_fails: Option<u32>) -> CooldownPolicy {
        CooldownPolicy {
            allowed_fails,
            cooldown_time: Duration::from_secs(5),
        }
    }

    const SUCCESS: &Class = &Class::Success;
    const ERROR: &Class = &Class::Connection;
    const CLIENT_ERROR: &Class = &Class::CallerFault;

    fn r429(retry_after: Option<Duration>) -> Class {
        Class::RateLimited { retry_after }
    }

    #[test]
    fn upstream_set_cooldowns_end_on_a_passed_probe() {
        let st = CooldownState::default();
        let p = policy(None);
        // cooldown_time only: a probe does not end it.
        assert!(st.record(&r429(None), S, 2, &p, None).is_some());
        assert!(!st.end_upstream_set(2 * S));
        assert!(st.remaining(2 * S).is_some());
        let st = CooldownState::default();
        assert!(
            st.record(&r429(Some(Duration::from_secs(60))), S, 2, &p, None)
                .is_some()
        );
        assert!(st.end_upstream_set(2 * S));
        assert_eq!(st.remaining(2 * S), None);
    }

    #[test]
    fn recent_answers_slide_over_the_last_minute() {
        let st = CooldownState::default();
        let p = policy(Some(1000));
        let m = 60 * S;
        assert_eq!(st.recent(0).requests, 0.0);
        for i in 0..40 {
            let class = if i < 10 { ERROR } else { SUCCESS };
            st.record(class, 10 * S, 2, &p, None);
        }
        st.record(CLIENT_ERROR, 10 * S, 2, &p, None);
        let r = st.recent(20 * S);
        assert_eq!((r.requests, r.failures, r.seconds), (40.0, 10.0, 20.0));
        // Nothing yet in minute 1: minute 0 is "the one before", a quarter of it gone.
        let r = st.recent(m + 15 * S);
        assert_eq!((r.requests, r.failures, r.seconds), (30.0, 7.5, 60.0));
        for _ in 0..20 {
            st.record(SUCCESS, m + 15 * S, 2, &p, None);
        }
        let r = st.recent(m + 15 * S);
        assert_eq!((r.requests, r.failures), (50.0, 7.5));
        // Two minutes on, the old counts are gone.
        assert_eq!(st.recent(3 * m).requests, 0.0);
        let r = st.recent(2 * m + 30 * S);
        assert_eq!((r.requests, r.failures), (10.0, 0.0));
    }

    #[test]
    fn a_429_cools_down_unless_alone() {
        let st = CooldownState::default();
        let r429 = &r429(None);
        assert_eq!(st.record(r429, S, 1, &policy(None), None), None);
        assert_eq!(st.remaining(S), None);
        assert_eq!(
            st.record(r429, S, 2, &policy(None), None),
            Some(Duration::from_secs(5))
        );
        assert_eq!(st.remaining(S), Some(Duration::from_secs(5)));
        assert_eq!(st.remaining(6 * S + 1), None, "left after cooldown_time");
    }

    #[test]
    fn retry_after_extends_cooldown_and_own_time_overrides() {
        let st = CooldownState::default();
        let o = &r429(Some(Duration::from_secs(30)));
        assert_eq!(
            st.record(o, S, 3, &policy(None), None),
            Some(Duration::from_secs(30))
        );
        let st = CooldownState::default();
        let o = &r429(Some(Duration::from_secs(1)));
        assert_eq!(
            st.record(o, S, 3, &policy(None), Some(Duration::from_secs(9))),
            Some(Duration::from_secs(9))
        );
    }

    #[test]
    fn failure_rate_rule_needs_five_requests_and_a_peer() {
        let st = CooldownState::default();
        let p = policy(None);
        for _ in 0..2 {
            assert_eq!(st.record(SUCCESS, S, 2, &p, None), None);
        }
        // 2 ok + 2 failed = 4 requests: below the minimum.
        assert_eq!(st.record(ERROR, S, 2, &p, None), None);
        assert_eq!(st.record(ERROR, S, 2, &p, None), None);
        // 5 requests, 3 failed = 60 % > 50 %.
        assert!(st.record(ERROR, S, 2, &p, None).is_some());
        // Alone, the same history never cools down.
        let alone = CooldownState::default();
        for o in [SUCCESS, SUCCESS, ERROR, ERROR, ERROR] {
            assert_eq!(alone.record(o, S, 1, &p, None), None);
        }
    }

    #[test]
    fn lone_deployment_cools_at_total_failure_over_1000() {
        let st = CooldownState::default();
        let p = policy(None);
        for i in 1..1000 {
            assert_eq!(st.record(ERROR, S, 1, &p, None), None, "request {i}");
        }
        assert!(st.record(ERROR, S, 1, &p, None).is_some());
    }

    #[test]
    fn allowed_fails_counts_per_minute() {
        let st = CooldownState::default();
        let p = policy(Some(2));
        assert_eq!(st.record(ERROR, S, 1, &p, None), None);
        assert_eq!(st.record(ERROR, S, 1, &p, None), None);
        // A new minute starts a new window.
        assert_eq!(st.record(ERROR, 61 * S, 1, &p, None), None);
        assert_eq!(st.record(ERROR, 61 * S, 1, &p, None), None);
        assert!(st.record(ERROR, 61 * S, 1, &p, None).is_some());
    }

    #[test]
    fn client_errors_never_count() {
        let st = CooldownState::default();
        for _ in 0..2000 {
            assert_eq!(st.record(CLIENT_ERROR, S, 2, &policy(Some(0)), None), None);
        }
        assert_eq!(st.window.load().requests, 0);
    }
}
