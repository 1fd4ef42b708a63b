//! Envoy-style outlier ejection (opt-in, `router_settings.outlier_detection`): deployments
//! whose real traffic fails are taken out of rotation for a time that grows with each
//! ejection.
//!
//! Every answer the routing service sees is classified by the config's
//! [`Classify`](crate::classify::Classify); the deployment's faults
//! ([`Class::is_deployment_fault`]) are failures, [`Class::Success`] a success, and the rest
//! (the caller's faults, failures this process made) are not counted, as for cooldown.
//!
//! * **Consecutive failures**: `consecutive_failures` failures in a row (default 5) eject.
//! * **Failure percentage** (off unless `failure_percentage` is set): in each `interval`
//!   (default 10 s), once the deployment has answered `minimum_requests` requests (default
//!   50), a share of failures at or above `failure_percentage` ejects.
//! * **Ejection time**: `base_ejection_time` (default 30 s) × the number of times the
//!   deployment has been ejected, capped by `max_ejection_time` (default 300 s), plus a
//!   random jitter of up to `jitter` (default 0; seedable with `jitter_seed`). The count
//!   goes down by one for every `interval` the deployment spends back in rotation without
//!   being ejected again, as Envoy's multiplier does.
//! * **Max ejection percent**: a deployment is ejected only while fewer than
//!   `max_ejection_percent` (default 10) of its route's deployments are out, except that one
//!   deployment of a route may always be ejected (Envoy's rule); a route's only deployment is
//!   never ejected (LiteLLM's cooldown spares it too).
//! * An ejection ends at its time, or when a probe of the deployment passes (Envoy's
//!   `successful_active_health_check_uneject_host`).
//!
//! Ejection and cooldown are independent: a deployment in either is out; when both apply
//! it is out until the later end.
//!
//! State is a few atomics per deployment: nothing here locks or waits.

use std::{
    sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed},
    time::Duration,
};

use crate::{
    classify::Class,
    config::OutlierDetection,
    time::{Counts, PeriodCounts},
};

/// Per-deployment ejection state.
#[derive(Debug, Default)]
pub(crate) struct EjectionState {
    /// End of the current ejection, nanos since the state's epoch; 0 = none.
    until: AtomicU64,
    /// Deployment faults in a row.
    consecutive: AtomicU32,
    /// Answers and faults of the current interval.
    window: PeriodCounts,
    /// The ejection multiplier: how many times it was ejected (decayed, see module docs).
    ejections: AtomicU32,
    /// End of the last ejection entered (nanos since the epoch), for the decay.
    last_end: AtomicU64,
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// SplitMix64: a well-mixed hash of one word, for deterministic jitter (and the
/// request path's slow-start draws).
pub(crate) fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// How long the `n`-th ejection lasts (before jitter): base × n, capped by the maximum
/// (never below the base).
pub(crate) fn ejection_time(p: &OutlierDetection, n: u32) -> Duration {
    p.base_ejection_time
        .saturating_mul(n.max(1))
        .min(p.max_ejection_time.max(p.base_ejection_time))
}

/// Whether `p` allows one more ejection in a route of `route_len` deployments of which
/// `ejected` are out now.
pub(crate) fn room_for_one_more(p: &OutlierDetection, route_len: usize, ejected: usize) -> bool {
    if route_len <= 1 {
        return false;
    }
    ejected == 0 || (ejected as f64) * 100.0 < p.max_ejection_percent * route_len as f64
}

impl EjectionState {
    /// `None` when not ejected at `now`, else the time left.
    pub(crate) fn remaining(&self, now: u64) -> Option<Duration> {
        let until = self.until.load(Relaxed);
        (until > now).then(|| Duration::from_nanos(until - now))
    }

    /// End of the last ejection (nanos since the epoch; 0: never ejected). In the future
    /// while it is ejected.
    pub(crate) fn last_end(&self) -> u64 {
        self.last_end.load(Relaxed)
    }

    /// How many times it has been ejected (the multiplier, not decayed to now).
    pub(crate) fn ejections(&self) -> u32 {
        self.ejections.load(Relaxed)
    }

    /// Whether the deployment may take a request. Reads the clock (through `now`) only
    /// when an ejection was recorded, and clears an expired one so later checks need none.
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
        let _ = self.until.compare_exchange(until, 0, Relaxed, Relaxed);
        true
    }

    /// Applies an ejection entered elsewhere (another process, through the shared store):
    /// ejected until `until` at least. The multiplier is left alone: it counts this
    /// process's own ejections. Returns whether that moved the end later.
    pub(crate) fn extend_until(&self, until: u64) -> bool {
        let until = until.max(1);
        self.last_end.fetch_max(until, Relaxed);
        self.until.fetch_max(until, Relaxed) < until
    }

    /// Ends an ejection at `now` (a probe passed). Returns whether one was ended.
    pub(crate) fn end(&self, now: u64) -> bool {
        let until = self.until.load(Relaxed);
        if until <= now {
            return false;
        }
        let ended = self
            .until
            .compare_exchange(until, 0, Relaxed, Relaxed)
            .is_ok();
        if ended {
            self.last_end.store(now.max(1), Relaxed);
        }
        ended
    }

    /// Counts a classified answer at `now`; returns the ejection entered, if any.
    /// `room` is asked (only when a rule says eject) whether the route's
    /// `max_ejection_percent` leaves room for one more.
    pub(crate) fn record(
        &self,
        class: &Class,
        now: u64,
        p: &OutlierDetection,
        room: impl FnOnce() -> bool,
    ) -> Option<Duration> {
        if !class.is_counted() {
            return None;
        }
        let failed = class.is_deployment_fault();
        let consecutive = if failed {
            self.consecutive.fetch_add(1, Relaxed).saturating_add(1)
        } else {
            self.consecutive.store(0, Relaxed);
            0
        };
        let interval = now / nanos(p.interval).max(1);
        let (w, _) = self.window.count(interval, failed);
        if !failed || self.remaining(now).is_some() {
            return None;
        }
        let by_streak = p
            .consecutive_failures
            .is_some_and(|n| n > 0 && consecutive >= n);
        let by_share = p.failure_percentage.is_some_and(|pct| {
            w.requests >= p.minimum_requests
                && f64::from(w.failures) * 100.0 >= pct * f64::from(w.requests)
        });
        if !(by_streak || by_share) || !room() {
            return None;
        }
        // The multiplier, less one for every interval spent back in rotation.
        let last_end = self.last_end.load(Relaxed);
        let back_for = if last_end == 0 {
            0
        } else {
            now.saturating_sub(last_end) / nanos(p.interval).max(1)
        };
        let prev = self.ejections.load(Relaxed);
        let n = prev
            .saturating_sub(u32::try_from(back_for).unwrap_or(u32::MAX))
            .saturating_add(1);
        let jitter = match nanos(p.jitter) {
            0 => 0,
            j => {
                let seed = p.jitter_seed.unwrap_or_else(rand::random);
                mix(seed ^ mix(now ^ u64::from(n))) % (j + 1)
            }
        };
        let dur = ejection_time(p, n) + Duration::from_nanos(jitter);
        let until = now.saturating_add(nanos(dur)).max(1);
        let cur = self.until.load(Relaxed);
        if cur > now
            || self
                .until
                .compare_exchange(cur, until, Relaxed, Relaxed)
                .is_err()
        {
            return None; // another answer ejected it meanwhile
        }
        self.ejections.store(n, Relaxed);
        self.last_end.store(until, Relaxed);
        self.consecutive.store(0, Relaxed);
        self.window.store(Counts {
            period: interval,
            ..Counts::default()
        });
        Some(dur)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;
    const OK: &Class = &Class::Success;
    const FAIL: &Class = &Class::ServerError;

    fn od() -> OutlierDetection {
        OutlierDetection::default()
    }

    #[test]
    fn five_in_a_row_eject_and_a_success_resets_the_streak() {
        let st = EjectionState::default();
        let p = od();
        for _ in 0..4 {
            assert_eq!(st.record(FAIL, S, &p, || true), None);
        }
        assert_eq!(st.record(OK, S, &p, || true), None);
        for _ in 0..4 {
            assert_eq!(st.record(FAIL, S, &p, || true), None);
        }
        assert_eq!(
            st.record(FAIL, S, &p, || true),
            Some(Duration::from_secs(30))
        );
        assert_eq!(st.remaining(S), Some(Duration::from_secs(30)));
        assert_eq!(st.remaining(31 * S), None);
    }

    #[test]
    fn caller_faults_are_not_counted() {
        let st = EjectionState::default();
        for _ in 0..100 {
            assert_eq!(st.record(&Class::CallerFault, S, &od(), || true), None);
        }
        assert_eq!(st.consecutive.load(Relaxed), 0);
    }

    #[test]
    fn backoff_grows_with_ejections_caps_and_decays() {
        let st = EjectionState::default();
        let mut p = od();
        p.consecutive_failures = Some(1);
        p.max_ejection_time = Duration::from_secs(70);
        let mut t = S;
        let mut got = Vec::new();
        for _ in 0..4 {
            got.push(st.record(FAIL, t, &p, || true).unwrap());
            t += nanos(*got.last().unwrap()); // fail again the moment it is back
        }
        let secs: Vec<u64> = got.iter().map(Duration::as_secs).collect();
        assert_eq!(secs, [30, 60, 70, 70]);
        // Four intervals (10 s each) back in rotation take the multiplier from 4 to 0.
        t += 40 * S;
        assert_eq!(
            st.record(FAIL, t, &p, || true),
            Some(Duration::from_secs(30))
        );
    }

    #[test]
    fn failure_percentage_needs_minimum_requests_in_the_interval() {
        let st = EjectionState::default();
        let mut p = od();
        p.consecutive_failures = None;
        p.failure_percentage = Some(50.0);
        p.minimum_requests = 10;
        for i in 0..9 {
            let c = if i % 2 == 0 { FAIL } else { OK };
            assert_eq!(st.record(c, S, &p, || true), None, "request {i}");
        }
        // A new interval starts an empty window: still below the volume.
        assert_eq!(st.record(FAIL, 11 * S, &p, || true), None);
        for i in 0..8 {
            let c = if i % 2 == 0 { OK } else { FAIL };
            assert_eq!(st.record(c, 11 * S, &p, || true), None, "request {i}");
        }
        // 10 requests, 5 failed = 50 %.
        assert!(st.record(FAIL, 11 * S, &p, || true).is_some());
    }

    #[test]
    fn no_room_means_no_ejection() {
        let st = EjectionState::default();
        let mut p = od();
        p.consecutive_failures = Some(1);
        assert_eq!(st.record(FAIL, S, &p, || false), None);
        assert_eq!(st.remaining(S), None);
    }

    #[test]
    fn room_follows_max_ejection_percent_with_one_always_allowed() {
        let mut p = od();
        assert!(!room_for_one_more(&p, 1, 0), "a lone deployment stays");
        assert!(room_for_one_more(&p, 2, 0), "one may always go");
        assert!(!room_for_one_more(&p, 20, 2), "10 % of 20 is 2");
        assert!(room_for_one_more(&p, 20, 1));
        p.max_ejection_percent = 50.0;
        assert!(room_for_one_more(&p, 4, 1));
        assert!(!room_for_one_more(&p, 4, 2));
    }

    #[test]
    fn jitter_is_bounded_and_seeded() {
        let mut p = od();
        p.consecutive_failures = Some(1);
        p.jitter = Duration::from_secs(5);
        p.jitter_seed = Some(42);
        let a = EjectionState::default()
            .record(FAIL, S, &p, || true)
            .unwrap();
        let b = EjectionState::default()
            .record(FAIL, S, &p, || true)
            .unwrap();
        assert_eq!(a, b, "same seed, same jitter");
        assert!(a >= Duration::from_secs(30) && a <= Duration::from_secs(35));
    }

    #[test]
    fn a_passed_probe_ends_an_ejection() {
        let st = EjectionState::default();
        let mut p = od();
        p.consecutive_failures = Some(1);
        assert!(st.record(FAIL, S, &p, || true).is_some());
        assert!(st.end(2 * S));
        assert_eq!(st.remaining(2 * S), None);
        assert!(!st.end(3 * S));
    }
}
