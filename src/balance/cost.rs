//! `cost-based-routing`: the candidate with the lowest `input_cost_per_token +
//! output_cost_per_token` (each from `litellm_params`, else `model_info`, else 5.0 as
//! LiteLLM assumes for an unknown cost); ties are broken uniformly at random.
//!
//! Costs only change with the config, so each candidate list's order by cost is computed
//! once per snapshot, with the routing table ([`CostTiers`]): a decision then samples the
//! cheapest tier (falling to the next tier only when a whole tier is ineligible), O(1) in
//! the common case instead of a scan.

use rand::Rng;

use super::{SAMPLE_TRIES, View, scan_min_uniform};
use crate::health::Entry;

/// One candidate list, by cost: entry indices sorted, and where each tier of equal cost
/// ends. Built once per snapshot with the routing table.
#[derive(Debug)]
pub(crate) struct CostTiers {
    /// `None` when every candidate costs the same: one tier, the list itself.
    order: Option<Box<[u32]>>,
    ends: Box<[u32]>,
}

impl CostTiers {
    pub(crate) fn new(idx: &[u32], entries: &[Entry]) -> Self {
        let cost = |i: u32| entries[i as usize].deployment.cost_per_token();
        if idx.windows(2).all(|w| cost(w[0]) == cost(w[1])) {
            return Self {
                order: None,
                ends: Box::new([idx.len() as u32]),
            };
        }
        let mut order: Vec<u32> = idx.to_vec();
        order.sort_by(|&a, &b| cost(a).total_cmp(&cost(b)));
        let mut ends = Vec::new();
        for k in 1..order.len() {
            if cost(order[k]) != cost(order[k - 1]) {
                ends.push(k as u32);
            }
        }
        ends.push(order.len() as u32);
        Self {
            order: Some(order.into()),
            ends: ends.into(),
        }
    }
}

/// A list without [`CostTiers`] (made for this decision only) is scanned.
pub(super) fn pick<R: Rng + ?Sized>(
    view: View<'_>,
    entries: &[Entry],
    rng: &mut R,
    eligible: &mut dyn FnMut(u32) -> bool,
) -> Option<u32> {
    let Some(tiers) = view.tiers else {
        return scan_min_uniform(view, rng, eligible, |i| {
            entries[i as usize].deployment.cost_per_token()
        });
    };
    let order = tiers.order.as_deref().unwrap_or(view.idx);
    let mut start = 0usize;
    for &end in &tiers.ends {
        let tier = &order[start..end as usize];
        start = end as usize;
        for _ in 0..SAMPLE_TRIES.min(tier.len()) {
            let i = tier[rng.random_range(0..tier.len())];
            if eligible(i) {
                return Some(i);
            }
        }
        let t = View {
            idx: tier,
            cum: None,
            tiers: None,
        };
        if let Some(i) = scan_min_uniform(t, rng, eligible, |_| 0.0) {
            return Some(i);
        }
    }
    None
}
