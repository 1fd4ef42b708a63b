//! `latency-based-routing`: the candidate with the lowest exponentially weighted moving
//! average of observed latency (time to response headers). Candidates never measured
//! come first, so every deployment gets measured.

use rand::Rng;

use super::{View, scan_min};
use crate::health::Entry;

pub(super) fn pick<R: Rng + ?Sized>(
    view: View<'_>,
    entries: &[Entry],
    rng: &mut R,
    eligible: &mut dyn FnMut(u32) -> bool,
) -> Option<u32> {
    scan_min(view, rng, eligible, |i| {
        entries[i as usize].stats.latency_nanos().unwrap_or(0.0)
    })
}
