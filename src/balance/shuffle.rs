//! `simple-shuffle`: LiteLLM's default. A weighted random pick by `weight`, else `rpm`,
//! else `tpm`, else uniform; drawn by binary search over cumulative weights.

use rand::Rng;

use super::{SAMPLE_TRIES, View};

/// The weighted random pick: up to [`SAMPLE_TRIES`] draws, then a scan of the eligible
/// ones. Generic over `eligible` and inlined, so the default strategy's decision (see
/// `routing::select`) draws and checks its pick in place, without a call per step; the
/// rare scan stays out of line.
#[inline]
pub(crate) fn pick<R: Rng + ?Sized, E: FnMut(u32) -> bool + ?Sized>(
    view: View<'_>,
    rng: &mut R,
    eligible: &mut E,
) -> Option<u32> {
    if view.idx.is_empty() {
        return None;
    }
    for _ in 0..SAMPLE_TRIES {
        let i = view.idx[draw(view.cum, view.idx.len(), rng)];
        if eligible(i) {
            return Some(i);
        }
    }
    scan(view, rng, eligible)
}

/// Several draws hit ineligible entries: a pick among the eligible ones directly.
#[inline(never)]
fn scan<R: Rng + ?Sized, E: FnMut(u32) -> bool + ?Sized>(
    view: View<'_>,
    rng: &mut R,
    eligible: &mut E,
) -> Option<u32> {
    let mut acc = 0.0;
    let mut cands: Vec<(u32, f64)> = Vec::new();
    for (pos, &i) in view.idx.iter().enumerate() {
        if eligible(i) {
            acc += view.weight(pos);
            cands.push((i, acc));
        }
    }
    match cands.len() {
        0 => None,
        1 => Some(cands[0].0),
        n if acc > 0.0 => {
            let x = rng.random::<f64>() * acc;
            let at = cands.partition_point(|&(_, c)| c <= x).min(n - 1);
            Some(cands[at].0)
        }
        // Only zero-weight entries are eligible: serve anyway, uniformly.
        n => Some(cands[rng.random_range(0..n)].0),
    }
}

/// A position in `0..n`, weighted by `cum` when given.
#[inline]
pub(super) fn draw<R: Rng + ?Sized>(cum: Option<&[f64]>, n: usize, rng: &mut R) -> usize {
    match cum {
        None => rng.random_range(0..n),
        Some(cum) => {
            let x = rng.random::<f64>() * cum[n - 1];
            cum.partition_point(|&c| c <= x).min(n - 1)
        }
    }
}
