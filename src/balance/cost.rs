//! `cost-based-routing`: the candidate with the lowest `input_cost_per_token +
//! output_cost_per_token` (each from `litellm_params`, else `model_info`, else 5.0 as
//! LiteLLM assumes for an unknown cost); ties are broken uniformly at random.

use rand::Rng;

use super::{View, scan_min_uniform};
use crate::health::Entry;

pub(super) fn pick<R: Rng + ?Sized>(
    view: View<'_>,
    entries: &[Entry],
    rng: &mut R,
    eligible: &mut dyn FnMut(u32) -> bool,
) -> Option<u32> {
    scan_min_uniform(view, rng, eligible, |i| {
        entries[i as usize].deployment.cost_per_token()
    })
}
