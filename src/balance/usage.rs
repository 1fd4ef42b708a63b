//! `usage-based-routing` and `usage-based-routing-v2`: the candidate that used the least
//! this minute: fewest tokens, then fewest requests. Deployments at their `rpm`/`tpm`
//! limit are not eligible (the pipeline checks that), so they get nothing more until the
//! minute turns.
//!
//! Up to [`EXACT`] candidates the route is scanned (the least used, exactly, as LiteLLM
//! does); above, the least used of [`DRAWS`] random draws, which keeps the decision O(1)
//! and, like the power of two choices, spreads load nearly as well as the exact minimum.

use rand::Rng;

use super::{View, scan_min_uniform};
use crate::health::Entry;

/// Routes up to this size are scanned.
const EXACT: usize = 8;
/// Random draws on larger routes.
const DRAWS: usize = 8;

pub(super) fn pick<R: Rng + ?Sized>(
    view: View<'_>,
    entries: &[Entry],
    minute: u64,
    rng: &mut R,
    eligible: &mut dyn FnMut(u32) -> bool,
) -> Option<u32> {
    let used = |i: u32| {
        let s = &entries[i as usize].stats;
        // Tokens first, requests as the tie-break (exact as f64 below 2^53).
        (s.tokens_in(minute) as f64).mul_add(1e6, s.requests_in(minute) as f64)
    };
    let n = view.idx.len();
    if n > EXACT {
        let mut best: Option<(u32, f64)> = None;
        for _ in 0..DRAWS {
            let i = view.idx[rng.random_range(0..n)];
            if !eligible(i) {
                continue;
            }
            let u = used(i);
            if best.is_none_or(|(_, b)| u < b) {
                best = Some((i, u));
            }
        }
        if let Some((i, _)) = best {
            return Some(i);
        }
    }
    scan_min_uniform(view, rng, eligible, used)
}
