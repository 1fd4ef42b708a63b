//! `latency-based-routing`: the candidate with the lowest latency estimate, a peak-EWMA
//! that decays with the time since its last sample (see `stats`), so a deployment that
//! was slow once is measured again once its estimate has decayed below the others'.
//!
//! * Latency is the time to the first byte of the response body: time to first token for
//!   a stream, the whole answer for a buffered JSON response (what LiteLLM measures).
//! * A failed request counts as `latency_failure_penalty` (or its real time, if longer).
//! * `lowest_latency_buffer` (LiteLLM's): a random pick among the candidates within that
//!   fraction of the lowest, which spreads load over deployments that are nearly as fast.
//! * Deployments never measured read as zero, so each is measured first.

use rand::Rng;

use super::{Ctx, View, scan_min_uniform};
use crate::health::Entry;

pub(super) fn pick<R: Rng + ?Sized>(
    view: View<'_>,
    entries: &[Entry],
    ctx: &Ctx<'_>,
    rng: &mut R,
    eligible: &mut dyn FnMut(u32) -> bool,
) -> Option<u32> {
    let est = |i: u32| entries[i as usize].stats.latency_at(ctx.now, ctx.tau_nanos);
    if ctx.buffer <= 0.0 {
        return scan_min_uniform(view, rng, eligible, est);
    }
    let mut best = f64::INFINITY;
    for &i in view.idx {
        if eligible(i) {
            best = best.min(est(i));
        }
    }
    if best.is_infinite() {
        return None;
    }
    let limit = best * (1.0 + ctx.buffer);
    // Reservoir sampling over the candidates within the buffer.
    let mut chosen = None;
    let mut seen = 0u32;
    for &i in view.idx {
        if est(i) <= limit && eligible(i) {
            seen += 1;
            if rng.random_range(0..seen) == 0 {
                chosen = Some(i);
            }
        }
    }
    chosen
}
