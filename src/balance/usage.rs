//! `usage-based-routing` and `usage-based-routing-v2`: the candidate that used the least
//! this minute: fewest tokens, then fewest requests. Deployments at their `rpm`/`tpm`
//! limit are not eligible (the pipeline checks that), so they get nothing more until the
//! minute turns.
//!
//! Up to [`EXACT`] candidates the route is scanned (the least used, exactly, as LiteLLM
//! does); above, the power of two choices on usage: the less used of two random eligible
//! candidates, which keeps the decision O(1) and spreads load nearly as well as the exact
//! minimum. When [`PAIRS`] pairs in a row are both ineligible (at their limit, cooling
//! down, ...), the route is scanned, so a deployment with room is always found.

use rand::Rng;

use super::{View, scan_min_uniform};
use crate::{health::Entry, stats::DeploymentStats};

/// Routes up to this size are scanned.
const EXACT: usize = 4;
/// Random pairs drawn on larger routes before scanning.
const PAIRS: usize = 2;

/// A deployment's usage in `minute`, as the strategy orders it: tokens first, requests as
/// the tie-break (compared as a pair: exact, and no float arithmetic). The one place the
/// strategy reads usage.
pub(crate) fn used(s: &DeploymentStats, minute: u64) -> (u64, u64) {
    (s.tokens_in(minute), s.requests_in(minute))
}

pub(super) fn pick<R: Rng + ?Sized>(
    view: View<'_>,
    entries: &[Entry],
    minute: u64,
    rng: &mut R,
    eligible: &mut dyn FnMut(u32) -> bool,
) -> Option<u32> {
    let used = |i: u32| used(&entries[i as usize].stats, minute);
    let n = view.idx.len();
    if n > EXACT {
        for _ in 0..PAIRS {
            let a = rng.random_range(0..n);
            let mut b = rng.random_range(0..n - 1);
            if b >= a {
                b += 1;
            }
            let (a, b) = (view.idx[a], view.idx[b]);
            match (eligible(a), eligible(b)) {
                (true, true) => return Some(if used(b) < used(a) { b } else { a }),
                (true, false) => return Some(a),
                (false, true) => return Some(b),
                (false, false) => {}
            }
        }
    }
    scan_min_uniform(view, rng, eligible, used)
}
