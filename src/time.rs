//! The crate's time base: nanoseconds since a state's epoch (tokio's [`Instant`], so
//! paused-time tests drive it), and a clock read at most once per decision.

use tokio::time::Instant;

/// Nanoseconds from `epoch` to `t` (zero before the epoch, saturating far after it).
#[inline]
pub(crate) fn nanos_since(epoch: Instant, t: Instant) -> u64 {
    // From the seconds and the nanos in 64 bits (`as_nanos` widens to 128 first).
    let d = t.saturating_duration_since(epoch);
    d.as_secs()
        .checked_mul(1_000_000_000)
        .and_then(|n| n.checked_add(u64::from(d.subsec_nanos())))
        .unwrap_or(u64::MAX)
}

/// Reads the clock at most once.
pub(crate) struct LazyNow<F> {
    read: F,
    value: Option<u64>,
}

impl<F: FnMut() -> u64> LazyNow<F> {
    pub(crate) fn new(read: F) -> Self {
        Self { read, value: None }
    }

    pub(crate) fn get(&mut self) -> u64 {
        *self.value.get_or_insert_with(&mut self.read)
    }

    /// The time if it was read already.
    pub(crate) fn peek(&self) -> Option<u64> {
        self.value
    }
}

/// Answers and failures counted in one period (a minute, an interval): see
/// [`PeriodCounts`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    /// The period's index (time divided by the period's length).
    pub(crate) period: u64,
    pub(crate) requests: u32,
    pub(crate) failures: u32,
}

/// Bits of each count; counts stop at [`Counts::MAX`].
const COUNT_BITS: u32 = 20;

/// The packed period's bits (what is left of the word above the two counts).
const PERIOD_MASK: u64 = (1 << (64 - 2 * COUNT_BITS)) - 1;

/// How many periods late an answer may be and still count in the current period (rather
/// than start its own again): 2^16 minutes are 45 days; an outlier-detection interval of
/// 1 ms, 65 s. An answer later than that (or a period this far ahead) starts anew.
const LATE_PERIODS: u64 = 1 << 16;

impl Counts {
    /// The most either count holds.
    pub(crate) const MAX: u32 = (1 << COUNT_BITS) - 1;

    fn unpack(v: u64) -> Self {
        Self {
            period: v >> (2 * COUNT_BITS),
            requests: (v & u64::from(Self::MAX)) as u32,
            failures: ((v >> COUNT_BITS) & u64::from(Self::MAX)) as u32,
        }
    }

    fn pack(self) -> u64 {
        (self.period << (2 * COUNT_BITS))
            | (u64::from(self.failures) << COUNT_BITS)
            | u64::from(self.requests)
    }
}

/// [`Counts`] of the current period in one atomic, lock-free: the period's index in the
/// high bits, the two counts below. An answer in a later period starts it again empty.
#[derive(Debug, Default)]
pub(crate) struct PeriodCounts(std::sync::atomic::AtomicU64);

impl PeriodCounts {
    /// The counts as they are.
    pub(crate) fn load(&self) -> Counts {
        Counts::unpack(self.0.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Replaces the counts.
    pub(crate) fn store(&self, c: Counts) {
        self.0.store(c.pack(), std::sync::atomic::Ordering::Relaxed);
    }

    /// [`count`](Self::count) of a success, without the counts after it (which only a
    /// failure's cooldown rule reads). Returns the counts it replaced when it opened the
    /// period.
    #[inline]
    pub(crate) fn count_success(&self, period: u64) -> Option<Counts> {
        self.count(period, false).1
    }

    /// Counts one answer (`failed` or not) in `period`. Returns the counts after it and,
    /// when this answer opened the period, the counts it replaced (the period before).
    ///
    /// An answer of an earlier period than the one counting (a long request answered after
    /// the minute turned, while shorter ones already opened the next) counts in the current
    /// one: it must not start an old period again, which would drop what the current one
    /// counted.
    ///
    /// One compare-and-swap on the packed word, which it changes in place (each count
    /// stops at [`Counts::MAX`]); only what the caller reads is unpacked.
    #[inline]
    pub(crate) fn count(&self, period: u64, failed: bool) -> (Counts, Option<Counts>) {
        use std::sync::atomic::Ordering::Relaxed;
        const ONE_FAILURE: u64 = 1 << COUNT_BITS;
        let max = u64::from(Counts::MAX);
        let opened = Counts {
            period,
            ..Counts::default()
        }
        .pack();
        let of = |v: u64| v >> (2 * COUNT_BITS);
        // The period as packed (its low bits only); periods compare modulo that width.
        let packed = of(opened);
        let current = |v: u64| of(v).wrapping_sub(packed) & PERIOD_MASK < LATE_PERIODS;
        let mut after = opened;
        let before = self.0.fetch_update(Relaxed, Relaxed, |v| {
            let mut w = if current(v) { v } else { opened };
            if w & max < max {
                w += 1;
            }
            if failed && (w >> COUNT_BITS) & max < max {
                w += ONE_FAILURE;
            }
            after = w;
            Some(w)
        });
        // The closure always answers `Some`: the swap cannot fail.
        let before = before.unwrap_or_else(|v| v);
        let replaced = (!current(before)).then(|| Counts::unpack(before));
        // The period as asked (the packed one keeps only its low bits).
        let now = Counts {
            period,
            ..Counts::unpack(after)
        };
        (now, replaced)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_pack_round_trips() {
        let c = Counts {
            period: 12345,
            requests: Counts::MAX,
            failures: 7,
        };
        assert_eq!(Counts::unpack(c.pack()), c);
    }

    #[test]
    fn a_success_counts_as_count_does() {
        let (a, b) = (PeriodCounts::default(), PeriodCounts::default());
        let steps = [
            (3, false),
            (3, true),
            (3, false),
            (4, false),
            (4, true),
            (2, false),
        ];
        for (period, failed) in steps {
            let (_, replaced) = a.count(period, failed);
            let replaced_b = if failed {
                b.count(period, true).1
            } else {
                b.count_success(period)
            };
            assert_eq!(replaced, replaced_b);
            assert_eq!(a.load(), b.load());
        }
        // Saturated: stays at the most it holds, as `count` does.
        let full = Counts {
            period: 7,
            requests: Counts::MAX,
            failures: 2,
        };
        a.store(full);
        b.store(full);
        assert_eq!(a.count(7, false).1, b.count_success(7));
        assert_eq!((a.load(), b.load()), (full, full));
        // A period past the packed bits never matches (both start it again each time).
        let far = 1 << 30;
        assert_eq!(a.count(far, false).1, b.count_success(far));
        assert_eq!(a.load(), b.load());
    }

    #[test]
    fn a_new_period_starts_empty_and_hands_back_the_one_before() {
        let w = PeriodCounts::default();
        assert_eq!(
            w.count(3, true).0,
            Counts {
                period: 3,
                requests: 1,
                failures: 1
            }
        );
        let (now, replaced) = w.count(3, false);
        assert_eq!((now.requests, now.failures, replaced), (2, 1, None));
        let (now, replaced) = w.count(4, false);
        assert_eq!((now.requests, now.failures), (1, 0));
        assert_eq!(
            replaced,
            Some(Counts {
                period: 3,
                requests: 2,
                failures: 1
            })
        );
    }

    #[test]
    fn a_late_answer_counts_in_the_current_period_and_drops_nothing() {
        let w = PeriodCounts::default();
        w.count(4, true);
        w.count(5, true);
        w.count(5, true);
        // A request that started in period 4 answers now: period 5's failures stay.
        let (now, replaced) = w.count(4, false);
        assert_eq!((now.requests, now.failures, replaced), (3, 2, None));
        assert_eq!(w.load().period, 5);
        // A success through the success-only path does the same.
        assert_eq!(w.count_success(3), None);
        assert_eq!((w.load().period, w.load().requests), (5, 4));
        // Far behind is not late but anew (a wrapped period), and so is any later period.
        let (now, replaced) = w.count(5 + LATE_PERIODS, false);
        assert_eq!((now.requests, replaced.map(|c| c.requests)), (1, Some(4)));
        let (now, _) = w.count(5, false);
        assert_eq!(now.requests, 1, "a period that far behind starts anew");
    }

    #[test]
    fn periods_compare_across_the_packed_width() {
        // The packed period keeps its low bits: the period after the widest still opens.
        let w = PeriodCounts::default();
        w.store(Counts {
            period: PERIOD_MASK,
            requests: 1,
            failures: 1,
        });
        let (now, replaced) = w.count(PERIOD_MASK + 1, false);
        assert_eq!((now.requests, now.failures), (1, 0));
        assert_eq!(replaced.map(|c| c.failures), Some(1));
        // And the widest, late after it, counts in it.
        let (now, replaced) = w.count(PERIOD_MASK, true);
        assert_eq!((now.requests, now.failures, replaced), (2, 1, None));
    }

    #[test]
    fn counts_stop_at_their_maximum() {
        let w = PeriodCounts::default();
        w.store(Counts {
            period: 1,
            requests: Counts::MAX,
            failures: Counts::MAX,
        });
        assert_eq!(w.count(1, true).0.requests, Counts::MAX);
        assert_eq!(w.load().failures, Counts::MAX);
    }
}
