//! [`RetryBudget`]: Finagle's retry budget (the one tower's `TpsBudget` implements), kept in
//! atomics so that the response path never takes a lock.
//!
//! Every original request deposits; every retry withdraws. Retries are allowed while the
//! balance — a fixed reserve plus the deposits and withdrawals of the last `ttl` — covers
//! one withdrawal. So retries stay a bounded fraction of traffic (plus a small floor for
//! quiet clients) however many attempts `num_retries` allows: during an outage, the load
//! on the upstreams grows by at most that fraction rather than multiplying.
//!
//! The window is split in ten slots. Each slot is one `AtomicU64` holding the slot's
//! generation (which window it counts for) and its balance change, so a stale slot is
//! reset by the first writer that sees it, with a compare-and-swap rather than a lock.
//! Check-then-withdraw is not one atomic step: under heavy concurrency the balance may
//! be overdrawn by a few withdrawals, as with tower's budget.

use std::{
    fmt,
    sync::atomic::{AtomicU64, Ordering::Relaxed},
    time::Duration,
};

use tokio::time::Instant;
use tower::retry::budget::Budget;

/// Slots the window is split into.
const SLOTS: usize = 10;

/// A retry budget: retries may be at most `retry_ratio` of original requests over the
/// last `ttl`, plus `min_per_sec` retries per second whatever the traffic.
///
/// Implements tower's [`Budget`], so it also fits `tower::retry` policies of your own.
///
/// ```
/// use std::time::Duration;
/// use tower::retry::budget::Budget;
/// use tower_health_routing::retry::RetryBudget;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// // No floor, and one retry per ten requests.
/// let budget = RetryBudget::new(Duration::from_secs(10), 0, 0.1);
/// assert!(!budget.withdraw(), "nothing deposited yet");
/// for _ in 0..10 {
///     budget.deposit();
/// }
/// assert!(budget.withdraw());
/// assert!(!budget.withdraw());
/// # }
/// ```
pub struct RetryBudget {
    epoch: Instant,
    /// Nanoseconds per slot.
    slot_nanos: u64,
    reserve: i64,
    deposit_amount: i64,
    withdraw_amount: i64,
    /// Per slot: generation (window number) in the high 32 bits, balance change
    /// (an `i32`) in the low 32 bits.
    slots: [AtomicU64; SLOTS],
}

impl RetryBudget {
    /// A budget over a window of `ttl` (clamped to 1–60 s) that allows `min_per_sec`
    /// retries per second on its own, plus `retry_ratio` retries per original request
    /// (clamped to 0–1000; `0.2` allows one retry per five requests).
    ///
    /// Same parameters and arithmetic as tower's `TpsBudget::new`, which panics on out-of-range
    /// values where this clamps them.
    pub fn new(ttl: Duration, min_per_sec: u32, retry_ratio: f32) -> Self {
        let ttl = ttl.clamp(Duration::from_secs(1), Duration::from_secs(60));
        let ratio = if retry_ratio.is_nan() {
            0.0
        } else {
            retry_ratio.clamp(0.0, 1000.0)
        };
        let (deposit_amount, withdraw_amount): (i64, i64) = if ratio == 0.0 {
            (0, 1)
        } else if ratio <= 1.0 {
            (1, (1.0 / ratio) as i64)
        } else {
            (1000, (1000.0 / ratio) as i64)
        };
        let min_per_sec = i64::from(min_per_sec.min(i32::MAX as u32));
        let reserve = min_per_sec
            .saturating_mul(ttl.as_secs() as i64)
            .saturating_mul(withdraw_amount);
        Self {
            epoch: Instant::now(),
            slot_nanos: (ttl.as_nanos() / SLOTS as u128).max(1) as u64,
            reserve,
            deposit_amount,
            withdraw_amount,
            slots: Default::default(),
        }
    }

    /// The number of the current slot-sized window since the budget was made.
    fn generation(&self) -> u32 {
        let nanos = Instant::now()
            .saturating_duration_since(self.epoch)
            .as_nanos();
        // Wraps after 2^32 windows (over 13 years with 100 ms slots): a wrapped slot just
        // looks stale and is reset, which is harmless.
        (nanos / u128::from(self.slot_nanos)) as u32
    }

    fn add(&self, amount: i64) {
        let generation = self.generation();
        let slot = &self.slots[generation as usize % SLOTS];
        let _ = slot.fetch_update(Relaxed, Relaxed, |v| {
            let (g, bal) = unpack(v);
            let base = if g == generation { bal } else { 0 };
            let next = (i64::from(base) + amount).clamp(i64::from(i32::MIN), i64::from(i32::MAX));
            Some(pack(generation, next as i32))
        });
    }

    /// The reserve plus every change of the last `SLOTS` windows.
    fn balance(&self) -> i64 {
        let generation = self.generation();
        self.slots
            .iter()
            .map(|s| unpack(s.load(Relaxed)))
            .filter(|&(g, _)| generation.wrapping_sub(g) < SLOTS as u32)
            .fold(self.reserve, |acc, (_, bal)| {
                acc.saturating_add(i64::from(bal))
            })
    }
}

fn pack(generation: u32, balance: i32) -> u64 {
    (u64::from(generation) << 32) | u64::from(balance as u32)
}

fn unpack(v: u64) -> (u32, i32) {
    ((v >> 32) as u32, v as u32 as i32)
}

impl Default for RetryBudget {
    /// tower's defaults: a 10 s window, 10 retries per second, and 20 % of requests.
    fn default() -> Self {
        Self::new(Duration::from_secs(10), 10, 0.2)
    }
}

impl Budget for RetryBudget {
    fn deposit(&self) {
        if self.deposit_amount != 0 {
            self.add(self.deposit_amount);
        }
    }

    fn withdraw(&self) -> bool {
        if self.balance() >= self.withdraw_amount {
            self.add(-self.withdraw_amount);
            true
        } else {
            false
        }
    }
}

impl fmt::Debug for RetryBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryBudget")
            .field("deposit", &self.deposit_amount)
            .field("withdraw", &self.withdraw_amount)
            .field("balance", &self.balance())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn withdrawals(b: &RetryBudget) -> usize {
        let mut n = 0;
        while b.withdraw() {
            n += 1;
            assert!(n < 1_000_000, "the budget never runs out");
        }
        n
    }

    #[tokio::test(start_paused = true)]
    async fn reserve_allows_min_per_sec_times_ttl() {
        let b = RetryBudget::new(Duration::from_secs(10), 3, 0.2);
        assert_eq!(withdrawals(&b), 30);
    }

    #[tokio::test(start_paused = true)]
    async fn deposits_allow_the_ratio() {
        let b = RetryBudget::new(Duration::from_secs(10), 0, 0.25);
        for _ in 0..100 {
            b.deposit();
        }
        assert_eq!(withdrawals(&b), 25);
        let b = RetryBudget::new(Duration::from_secs(10), 0, 2.0);
        for _ in 0..10 {
            b.deposit();
        }
        assert_eq!(
            withdrawals(&b),
            20,
            "a ratio above 1 allows several per request"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn deposits_and_withdrawals_expire_after_the_window() {
        let b = RetryBudget::new(Duration::from_secs(10), 0, 0.5);
        for _ in 0..10 {
            b.deposit();
        }
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(b.withdraw(), "still within the window");
        tokio::time::advance(Duration::from_secs(6)).await;
        assert!(!b.withdraw(), "the deposits are older than ttl");
        // Spent reserve comes back too: withdrawals expire like deposits.
        let b = RetryBudget::new(Duration::from_secs(1), 2, 1.0);
        assert_eq!(withdrawals(&b), 2);
        tokio::time::advance(Duration::from_millis(1100)).await;
        assert_eq!(withdrawals(&b), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn out_of_range_parameters_are_clamped_not_panics() {
        let b = RetryBudget::new(Duration::ZERO, 1, f32::NAN);
        assert_eq!(withdrawals(&b), 1, "ttl 1 s, no ratio");
        let b = RetryBudget::new(Duration::from_secs(3600), 0, 1e9);
        b.deposit();
        assert_eq!(withdrawals(&b), 1000, "ratio capped at 1000");
        let b = RetryBudget::new(Duration::from_secs(1), 0, -1.0);
        b.deposit();
        assert_eq!(withdrawals(&b), 0);
    }

    #[test]
    fn packing_round_trips() {
        for (g, b) in [(0, 0), (7, -5), (u32::MAX, i32::MIN), (3, i32::MAX)] {
            assert_eq!(unpack(pack(g, b)), (g, b));
        }
    }
}
