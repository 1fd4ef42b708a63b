//! The crate's time base: nanoseconds since a state's epoch (tokio's [`Instant`], so
//! paused-time tests drive it), and a clock read at most once per decision.

use tokio::time::Instant;

/// Nanoseconds from `epoch` to `t` (zero before the epoch, saturating far after it).
pub(crate) fn nanos_since(epoch: Instant, t: Instant) -> u64 {
    u64::try_from(t.saturating_duration_since(epoch).as_nanos()).unwrap_or(u64::MAX)
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
}
