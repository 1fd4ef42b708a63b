//! Per-deployment runtime statistics, shared by every snapshot that lists the deployment:
//! requests in flight, a latency moving average, and cooldown state. All atomics with
//! `Relaxed` ordering: each is a statistic, not a synchronisation point.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};

use crate::cooldown::CooldownState;

#[derive(Debug, Default)]
pub(crate) struct DeploymentStats {
    in_flight: AtomicU32,
    /// EWMA of observed latency in nanoseconds, as f64 bits; 0 = no sample yet.
    latency_ewma: AtomicU64,
    pub(crate) cooldown: CooldownState,
}

/// Weight of the newest sample in the latency average.
const EWMA_ALPHA: f64 = 0.3;

impl DeploymentStats {
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

    /// The latency average in nanoseconds; `None` before the first sample.
    pub(crate) fn latency_nanos(&self) -> Option<f64> {
        match self.latency_ewma.load(Relaxed) {
            0 => None,
            bits => Some(f64::from_bits(bits)),
        }
    }

    /// Folds in one sample. Racing writers may lose a sample; the average stays sound.
    pub(crate) fn observe_latency(&self, nanos: u64) {
        let sample = (nanos as f64).max(1.0);
        let next = match self.latency_nanos() {
            None => sample,
            Some(old) => EWMA_ALPHA.mul_add(sample - old, old),
        };
        self.latency_ewma.store(next.to_bits(), Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_flight_never_wraps() {
        let s = DeploymentStats::default();
        s.start();
        s.finish();
        s.finish();
        assert_eq!(s.in_flight(), 0);
    }

    #[test]
    fn latency_average_moves_towards_samples() {
        let s = DeploymentStats::default();
        assert_eq!(s.latency_nanos(), None);
        s.observe_latency(1000);
        assert_eq!(s.latency_nanos(), Some(1000.0));
        s.observe_latency(2000);
        assert_eq!(s.latency_nanos(), Some(1300.0));
    }
}
