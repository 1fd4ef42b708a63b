//! `power-of-two-choices`: draw two distinct candidates at random and take the one with
//! fewer requests in flight.
//!
//! Mitzenmacher, *The Power of Two Choices in Randomized Load Balancing* (2001): two
//! random choices cut the maximum load from Θ(log n / log log n) to Θ(log log n) while
//! staying O(1) per decision, which is why tower's and Envoy's balancers use it.

use rand::Rng;

use super::{SAMPLE_TRIES, View};
use crate::health::Entry;

pub(super) fn pick<R: Rng + ?Sized>(
    view: View<'_>,
    entries: &[Entry],
    rng: &mut R,
    eligible: &mut dyn FnMut(u32) -> bool,
) -> Option<u32> {
    let load = |i: u32| entries[i as usize].stats.in_flight();
    let n = view.idx.len();
    if n == 1 {
        return eligible(view.idx[0]).then_some(view.idx[0]);
    }
    for _ in 0..SAMPLE_TRIES {
        let a = rng.random_range(0..n);
        let mut b = rng.random_range(0..n - 1);
        if b >= a {
            b += 1;
        }
        let (a, b) = (view.idx[a], view.idx[b]);
        match (eligible(a), eligible(b)) {
            (true, true) => return Some(if load(b) < load(a) { b } else { a }),
            (true, false) => return Some(a),
            (false, true) => return Some(b),
            (false, false) => {}
        }
    }
    let cands: Vec<u32> = view.idx.iter().copied().filter(|&i| eligible(i)).collect();
    match cands.len() {
        0 => None,
        1 => Some(cands[0]),
        m => {
            let a = rng.random_range(0..m);
            let mut b = rng.random_range(0..m - 1);
            if b >= a {
                b += 1;
            }
            let (a, b) = (cands[a], cands[b]);
            Some(if load(b) < load(a) { b } else { a })
        }
    }
}
