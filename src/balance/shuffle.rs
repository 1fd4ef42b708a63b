//! `simple-shuffle`: LiteLLM's default. A weighted random pick by `weight`, else `rpm`,
//! else `tpm`, else uniform; drawn by binary search over cumulative weights.

use rand::Rng;

use super::{SAMPLE_TRIES, View};

/// The weighted random pick: up to [`SAMPLE_TRIES`] draws, then a scan of the eligible
/// ones. Generic over `eligible` and inlined, so the default strategy's decision (see
/// `routing::select`) makes its first draw and checks it in place, without a call; the
/// other draws and the scan stay out of line.
#[inline(always)]
pub(crate) fn pick<R: Rng + ?Sized, E: FnMut(u32) -> bool + ?Sized>(
    view: View<'_>,
    rng: &mut R,
    eligible: &mut E,
) -> Option<u32> {
    if view.idx.is_empty() {
        return None;
    }
    let i = view.idx[draw(view.cum, view.idx.len(), rng)];
    if eligible(i) {
        return Some(i);
    }
    redraw(view, rng, eligible)
}

/// The first draw was ineligible: the other draws, then the scan.
#[inline(never)]
fn redraw<R: Rng + ?Sized, E: FnMut(u32) -> bool + ?Sized>(
    view: View<'_>,
    rng: &mut R,
    eligible: &mut E,
) -> Option<u32> {
    for _ in 1..SAMPLE_TRIES {
        let i = view.idx[draw(view.cum, view.idx.len(), rng)];
        if eligible(i) {
            return Some(i);
        }
    }
    scan(view, rng, eligible)
}

/// Several draws hit ineligible entries: a pick among the eligible ones directly.
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
#[inline(always)]
pub(super) fn draw<R: Rng + ?Sized>(cum: Option<&[f64]>, n: usize, rng: &mut R) -> usize {
    match cum {
        None => below(rng, n),
        Some(cum) => {
            let x = rng.random::<f64>() * cum[n - 1];
            cum.partition_point(|&c| c <= x).min(n - 1)
        }
    }
}

/// `rng.random_range(0..n)` for `0 < n <= u32::MAX` (a candidate list's length), drawn
/// exactly as rand draws it (its single-sample path for a range that fits 32 bits: one
/// widening multiply, a second draw only when the first falls in the biased sliver), but
/// inlined: `random_range` is a call of its own, as long as the rest of the decision.
#[inline(always)]
fn below<R: Rng + ?Sized>(rng: &mut R, n: usize) -> usize {
    debug_assert!(n > 0 && u32::try_from(n).is_ok());
    let range = n as u32;
    let wide = |x: u32| u64::from(x) * u64::from(range);
    let m = wide(rng.next_u32());
    let (mut result, lo) = ((m >> 32) as u32, m as u32);
    if lo > range.wrapping_neg() {
        let hi = (wide(rng.next_u32()) >> 32) as u32;
        result += u32::from(lo.checked_add(hi).is_none());
    }
    result as usize
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng, rngs::SmallRng};

    #[test]
    fn below_draws_what_random_range_draws() {
        for seed in 0..20 {
            let (mut a, mut b) = (SmallRng::seed_from_u64(seed), SmallRng::seed_from_u64(seed));
            for n in (1..70).chain([1000, 1024, 65_537, 1 << 31, u32::MAX as usize]) {
                for _ in 0..50 {
                    assert_eq!(super::below(&mut a, n), b.random_range(0..n), "n = {n}");
                }
            }
        }
    }
}
