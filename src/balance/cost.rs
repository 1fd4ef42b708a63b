//! `cost-based-routing`: the candidate with the lowest `input_cost_per_token +
//! output_cost_per_token` (each from `litellm_params`, else `model_info`, else 5.0 as
//! LiteLLM assumes for an unknown cost); ties are broken uniformly at random.
//!
//! Costs only change with the config, so each candidate list's order by cost is computed
//! once per snapshot and kept by the picker ([`CostOrder`]): a decision then samples the
//! cheapest tier (falling to the next tier only when a whole tier is ineligible), O(1) in
//! the common case instead of a scan.

use std::collections::HashMap;

use rand::Rng;

use super::{SAMPLE_TRIES, View, scan_min_uniform};
use crate::health::Entry;

/// One candidate list, by cost: entry indices sorted, and where each tier of equal cost ends.
#[derive(Debug)]
struct Tiers {
    order: Box<[u32]>,
    ends: Box<[u32]>,
}

impl Tiers {
    fn new(view: View<'_>, entries: &[Entry]) -> Self {
        let cost = |i: u32| entries[i as usize].deployment.cost_per_token();
        let mut order: Vec<u32> = view.idx.to_vec();
        order.sort_by(|&a, &b| cost(a).total_cmp(&cost(b)));
        let mut ends = Vec::new();
        for k in 1..order.len() {
            if cost(order[k]) != cost(order[k - 1]) {
                ends.push(k as u32);
            }
        }
        ends.push(order.len() as u32);
        Self {
            order: order.into(),
            ends: ends.into(),
        }
    }
}

/// A picker's cache of [`Tiers`] per candidate list of one snapshot (keyed by the list's
/// address, which is stable for the snapshot's life); emptied when the snapshot changes.
#[derive(Debug, Default)]
pub(crate) struct CostOrder {
    version: u64,
    lists: HashMap<(usize, usize), Tiers, foldhash::fast::RandomState>,
}

impl CostOrder {
    fn tiers(&mut self, version: u64, view: View<'_>, entries: &[Entry]) -> &Tiers {
        if self.version != version {
            self.lists.clear();
            self.version = version;
        }
        self.lists
            .entry((view.idx.as_ptr() as usize, view.idx.len()))
            .or_insert_with(|| Tiers::new(view, entries))
    }
}

/// `cache` is `None` for a candidate list made for this decision only (it would not be
/// found again): that one is scanned.
pub(super) fn pick<R: Rng + ?Sized>(
    view: View<'_>,
    entries: &[Entry],
    cache: Option<(&mut CostOrder, u64)>,
    rng: &mut R,
    eligible: &mut dyn FnMut(u32) -> bool,
) -> Option<u32> {
    let Some((cache, version)) = cache else {
        return scan_min_uniform(view, rng, eligible, |i| {
            entries[i as usize].deployment.cost_per_token()
        });
    };
    let tiers = cache.tiers(version, view, entries);
    let mut start = 0usize;
    for &end in &tiers.ends {
        let tier = &tiers.order[start..end as usize];
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
        };
        if let Some(i) = scan_min_uniform(t, rng, eligible, |_| 0.0) {
            return Some(i);
        }
    }
    None
}
