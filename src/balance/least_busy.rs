//! `least-busy`: the candidate with the fewest requests in flight. In-flight counts are
//! kept by a guard that lives as long as the response body, so a long stream counts as
//! busy until it ends. Ties go to a random one (the scan starts at a random position).

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
        entries[i as usize].stats.in_flight()
    })
}
