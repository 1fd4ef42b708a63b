//! Per-deployment runtime statistics, shared by every snapshot that lists the deployment:
//! requests in flight, a decaying latency estimate, this minute's usage, and cooldown
//! state. All atomics with `Relaxed` ordering: each is a statistic, not a synchronisation
//! point.
//!
//! # Latency: a peak-EWMA that forgets
//!
//! As tower's `PeakEwma`: a sample above the estimate replaces it (the estimate *peaks*);
//! a sample below moves it part of the way, by `1 - e^(-Δt/τ)` where Δt is the time since
//! the previous sample; and when the estimate is *read* it is decayed by `e^(-Δt/τ)` for
//! the time since the last sample. A deployment that is not picked is therefore not
//! measured, its estimate falls towards zero, and it becomes the lowest again after about
//! `τ · ln(its / best)`: a deployment that was slow once is re-measured, never starved.
//!
//! # Usage: minute buckets
//!
//! Requests and tokens in the current minute (minutes counted from the state's epoch),
//! each one `AtomicU64` that packs the minute (high 24 bits) with the count (low 40 bits),
//! so a new minute resets the count in the same compare-and-swap that adds to it.
//!
//! # Usage across processes (`usage-based-routing-v2` with a shared store)
//!
//! Each process keeps counting in its own buckets, lock-free. A background task of the
//! shared-state coordinator (`shared/usage.rs`, never the request path) adds each
//! deployment's local deltas to the store's count for the wall-clock minute in one batch
//! every ~200 ms and reads the totals back; what the *other* processes counted goes into
//! one more minute-tagged atomic per counter, which [`requests_in`](DeploymentStats::requests_in)
//! and [`tokens_in`](DeploymentStats::tokens_in) add to the local count, and which
//! [`try_count_request`](DeploymentStats::try_count_request) takes off the `rpm` room. So
//! a decision sees the cluster's usage as of the last exchange plus this process's own
//! requests since. With shared usage the state's minutes are wall-clock minutes (see
//! [`minute_aligned_epoch`]), so every process's minute is the same minute.

use std::{
    sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use crate::{cooldown::CooldownState, ejection::EjectionState};

/// Nanoseconds in one usage bucket.
pub(crate) const MINUTE_NANOS: u64 = 60_000_000_000;

/// Aligned to 128 bytes (two cache lines, what the adjacent-line prefetcher pairs) so the
/// counters of two deployments never share a line: threads serving different deployments
/// do not slow each other down (false sharing).
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct DeploymentStats {
    in_flight: AtomicU32,
    /// Peak-EWMA latency estimate in nanoseconds, as f64 bits; 0 = no sample yet.
    latency_ewma: AtomicU64,
    /// When the estimate was last updated, in nanoseconds since the state's epoch.
    latency_at: AtomicU64,
    /// This minute's requests: `minute << 40 | count`.
    requests: AtomicU64,
    /// This minute's tokens: `minute << 40 | count`.
    tokens: AtomicU64,
    /// This minute's requests and tokens counted by other processes (shared usage only):
    /// `minute << 40 | count`.
    remote_requests: AtomicU64,
    remote_tokens: AtomicU64,
    pub(crate) cooldown: CooldownState,
    pub(crate) ejection: EjectionState,
    /// When its health last turned from failed to passed (nanos since the epoch); 0 = never.
    recovered_at: AtomicU64,
    /// When real traffic last succeeded / last failed by the deployment's fault (nanos
    /// since the epoch; 0 = never), for `health_check_skip_when_traffic_healthy`.
    traffic_ok_at: AtomicU64,
    traffic_failed_at: AtomicU64,
}

/// The weight a deployment starts from when it comes back, under `slow_start_window`
/// (Envoy's default `min_weight_percent`).
pub(crate) const SLOW_START_FLOOR: f64 = 0.1;

const COUNT_BITS: u32 = 40;
const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;
const MINUTE_MASK: u64 = (1 << (64 - COUNT_BITS)) - 1;

/// The minute (truncated to the bucket's bits) of `now` (nanoseconds since the epoch).
pub(crate) fn minute_of(now: u64) -> u64 {
    (now / MINUTE_NANOS) & MINUTE_MASK
}

/// Where a state counts its time from: `now`, or, when `align` (its usage is shared
/// across processes), the start of the current wall-clock minute, so that its minutes
/// (`now / 60 s`) are wall-clock minutes, as in every other process sharing the counters.
pub(crate) fn minute_aligned_epoch(now: tokio::time::Instant, align: bool) -> tokio::time::Instant {
    if !align {
        return now;
    }
    let into = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| (d.as_nanos() % u128::from(MINUTE_NANOS)) as u64);
    now.checked_sub(Duration::from_nanos(into)).unwrap_or(now)
}

/// Time from `now` to the start of the next minute.
pub(crate) fn until_next_minute(now: u64) -> Duration {
    Duration::from_nanos(MINUTE_NANOS - now % MINUTE_NANOS)
}

fn count_in(bucket: &AtomicU64, minute: u64) -> u64 {
    let v = bucket.load(Relaxed);
    if v >> COUNT_BITS == minute {
        v & COUNT_MASK
    } else {
        0
    }
}

/// Adds `n` to the minute's count if the result stays within `limit`; `false` otherwise.
/// Adds `n` to `bucket`'s count for `minute`, unless the count is at `limit`. A bucket
/// already in the next minute stays in it and counts `n` there: a caller whose minute
/// lags (a kept minute turns a timer tick after the clock's) never takes a bucket back.
fn add_in(bucket: &AtomicU64, minute: u64, n: u64, limit: Option<u64>) -> bool {
    bucket
        .fetch_update(Relaxed, Relaxed, |v| {
            let (at, cur) = match v >> COUNT_BITS {
                m if m == minute => (minute, v & COUNT_MASK),
                m if m == minute + 1 => (m, v & COUNT_MASK),
                _ => (minute, 0),
            };
            let next = cur.saturating_add(n).min(COUNT_MASK);
            if limit.is_some_and(|l| cur >= l) {
                return None;
            }
            Some(at << COUNT_BITS | next)
        })
        .is_ok()
}

impl DeploymentStats {
    /// Notes a real answer at `now`: a success, or a failure by the deployment's fault.
    pub(crate) fn observe_traffic(&self, ok: bool, now: u64) {
        let at = if ok {
            &self.traffic_ok_at
        } else {
            &self.traffic_failed_at
        };
        at.fetch_max(now.max(1), Relaxed);
    }

    /// When real traffic last succeeded, if it did at or after `since` and nothing failed
    /// by the deployment's fault after it (nanos since the epoch).
    pub(crate) fn traffic_healthy_since(&self, since: u64) -> Option<u64> {
        let ok = self.traffic_ok_at.load(Relaxed);
        (ok != 0 && ok >= since && ok > self.traffic_failed_at.load(Relaxed)).then_some(ok)
    }

    /// Whether real traffic failed by the deployment's fault at or after `since` (nanos
    /// since the epoch): a tiered round then bills its probe at once.
    pub(crate) fn traffic_failed_since(&self, since: u64) -> bool {
        let at = self.traffic_failed_at.load(Relaxed);
        at != 0 && at >= since
    }

    /// Notes that its health turned from failed to passed at `at`.
    pub(crate) fn mark_recovered(&self, at: u64) {
        self.recovered_at.fetch_max(at.max(1), Relaxed);
    }

    /// When it last came back into rotation: the latest of its health recovery, the end
    /// of its last cooldown and the end of its last ejection (0: never out). May lie in the
    /// future while it is still out.
    pub(crate) fn back_since(&self) -> u64 {
        self.recovered_at
            .load(Relaxed)
            .max(self.cooldown.last_end())
            .max(self.ejection.last_end())
    }

    /// Its slow-start weight factor at `now` (nanos since the epoch) for a window of
    /// `window` nanos: from [`SLOW_START_FLOOR`] when it came back, linearly to 1 at the
    /// end of the window. Reads the clock (through `now`) only if it was ever out.
    pub(crate) fn slow_start_factor<F: FnMut() -> u64>(
        &self,
        window: u64,
        now: &mut crate::time::LazyNow<F>,
    ) -> f64 {
        let since = self.back_since();
        if since == 0 || window == 0 {
            return 1.0;
        }
        // `since` ahead of the clock (it came back this very tick, or is still out) is
        // the start of the window.
        let elapsed = now.get().saturating_sub(since);
        if elapsed >= window {
            return 1.0;
        }
        (1.0 - SLOW_START_FLOOR).mul_add(elapsed as f64 / window as f64, SLOW_START_FLOOR)
    }

    pub(crate) fn in_flight(&self) -> u32 {
        self.in_flight.load(Relaxed)
    }

    pub(crate) fn start(&self) {
        self.in_flight.fetch_add(1, Relaxed);
    }

    pub(crate) fn finish(&self) {
        // Saturate rather than wrap if a guard were ever dropped twice.
        let _ = self
            .in_flight
            .fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1));
    }

    /// The raw latency estimate in nanoseconds (not decayed); `None` before the first sample.
    pub(crate) fn latency_nanos(&self) -> Option<f64> {
        match self.latency_ewma.load(Relaxed) {
            0 => None,
            bits => Some(f64::from_bits(bits)),
        }
    }

    /// The estimate at `now`, decayed for the time since its last sample with time
    /// constant `tau_nanos`; 0 before the first sample (so unmeasured ones go first).
    pub(crate) fn latency_at(&self, now: u64, tau_nanos: f64) -> f64 {
        let Some(est) = self.latency_nanos() else {
            return 0.0;
        };
        let dt = now.saturating_sub(self.latency_at.load(Relaxed)) as f64;
        if dt <= 0.0 {
            est
        } else {
            est * (-dt / tau_nanos).exp()
        }
    }

    /// Folds in one sample taken at `now`. Racing writers may lose a sample; the estimate
    /// stays sound.
    pub(crate) fn observe_latency(&self, nanos: u64, now: u64, tau_nanos: f64) {
        let sample = (nanos as f64).max(1.0);
        let next = match self.latency_nanos() {
            None => sample,
            Some(_) => {
                let old = self.latency_at(now, tau_nanos);
                if sample > old {
                    sample
                } else {
                    let dt = now.saturating_sub(self.latency_at.load(Relaxed)) as f64;
                    let w = (-dt / tau_nanos).exp();
                    old.mul_add(w, sample * (1.0 - w))
                }
            }
        };
        self.latency_ewma.store(next.max(1.0).to_bits(), Relaxed);
        self.latency_at.store(now, Relaxed);
    }

    /// Requests counted in `minute`, here and (shared usage) by the other processes.
    pub(crate) fn requests_in(&self, minute: u64) -> u64 {
        count_in(&self.requests, minute).saturating_add(count_in(&self.remote_requests, minute))
    }

    /// Tokens counted in `minute`, here and (shared usage) by the other processes.
    pub(crate) fn tokens_in(&self, minute: u64) -> u64 {
        count_in(&self.tokens, minute).saturating_add(count_in(&self.remote_tokens, minute))
    }

    /// Requests and tokens counted in `minute` by this process alone.
    pub(crate) fn local_usage_in(&self, minute: u64) -> (u64, u64) {
        (
            count_in(&self.requests, minute),
            count_in(&self.tokens, minute),
        )
    }

    /// What the other processes counted in `minute` (shared usage), as last read.
    pub(crate) fn set_remote_usage(&self, minute: u64, requests: u64, tokens: u64) {
        let tag = |n: u64| minute << COUNT_BITS | n.min(COUNT_MASK);
        self.remote_requests.store(tag(requests), Relaxed);
        self.remote_tokens.store(tag(tokens), Relaxed);
    }

    /// Counts one request in `minute` unless `rpm` requests were already counted (here
    /// and, shared usage, elsewhere).
    pub(crate) fn try_count_request(&self, minute: u64, rpm: Option<u64>) -> bool {
        let elsewhere = count_in(&self.remote_requests, minute);
        add_in(
            &self.requests,
            minute,
            1,
            rpm.map(|l| l.saturating_sub(elsewhere)),
        )
    }

    /// Adds `n` tokens to `minute`.
    pub(crate) fn add_tokens(&self, minute: u64, n: u64) {
        add_in(&self.tokens, minute, n, None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lagging_minute_counts_in_the_next_minute_s_bucket_and_never_takes_it_back() {
        let s = DeploymentStats::default();
        assert!(s.try_count_request(5, Some(2)));
        // Minute 5 was left behind by a caller in minute 6 (it counts one there)...
        assert!(s.try_count_request(6, Some(2)));
        // ...a caller still in minute 5 counts in minute 6 against its limit,
        assert!(s.try_count_request(5, Some(2)));
        assert_eq!(s.requests_in(6), 2);
        // and is refused once minute 6 is full.
        assert!(!s.try_count_request(5, Some(2)));
        assert_eq!(s.requests_in(6), 2);
        // Two minutes behind is not a lag: it starts that minute again.
        assert!(s.try_count_request(4, None));
        assert_eq!(s.requests_in(4), 1);
    }

    const TAU: f64 = 10e9;

    #[test]
    fn in_flight_never_wraps() {
        let s = DeploymentStats::default();
        s.start();
        s.finish();
        s.finish();
        assert_eq!(s.in_flight(), 0);
    }

    #[test]
    fn latency_peaks_then_decays_with_time() {
        let s = DeploymentStats::default();
        assert_eq!(s.latency_nanos(), None);
        assert_eq!(s.latency_at(0, TAU), 0.0);
        s.observe_latency(1000, 0, TAU);
        assert_eq!(s.latency_at(0, TAU), 1000.0);
        // A higher sample replaces the estimate at once.
        s.observe_latency(5000, 0, TAU);
        assert_eq!(s.latency_at(0, TAU), 5000.0);
        // Read one time constant later: decayed by 1/e.
        let later = s.latency_at(10_000_000_000, TAU);
        assert!(
            (later - 5000.0 / std::f64::consts::E).abs() < 1e-6,
            "{later}"
        );
        // A lower sample long after the last one nearly replaces it.
        s.observe_latency(100, 100_000_000_000, TAU);
        let v = s.latency_at(100_000_000_000, TAU);
        assert!((100.0..101.0).contains(&v), "{v}");
    }

    #[test]
    fn minute_buckets_reset_and_enforce_limits() {
        let s = DeploymentStats::default();
        assert!(s.try_count_request(0, Some(2)));
        assert!(s.try_count_request(0, Some(2)));
        assert!(!s.try_count_request(0, Some(2)), "third request over rpm 2");
        assert_eq!(s.requests_in(0), 2);
        assert_eq!(s.requests_in(1), 0, "a new minute starts at zero");
        assert!(s.try_count_request(1, Some(2)));
        assert_eq!(s.requests_in(1), 1);
        s.add_tokens(1, 500);
        s.add_tokens(1, 250);
        assert_eq!(s.tokens_in(1), 750);
        assert_eq!(s.tokens_in(2), 0);
        assert_eq!(minute_of(MINUTE_NANOS * 3 + 5), 3);
        // Other processes' counts add to the minute they were read for, and take rpm room.
        s.set_remote_usage(1, 3, 1000);
        assert_eq!((s.requests_in(1), s.tokens_in(1)), (4, 1750));
        assert_eq!(s.local_usage_in(1), (1, 750));
        assert!(
            !s.try_count_request(1, Some(4)),
            "1 here + 3 elsewhere = rpm 4"
        );
        assert!(s.try_count_request(1, Some(5)));
        assert_eq!(s.requests_in(2), 0, "a remote count is for its minute only");
        assert_eq!(
            until_next_minute(MINUTE_NANOS + 1),
            Duration::from_nanos(MINUTE_NANOS - 1)
        );
    }
}
