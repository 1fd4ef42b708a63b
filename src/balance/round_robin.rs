//! `round-robin`: each candidate in turn, from a per-route counter that survives snapshots.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use super::View;

pub(super) fn pick(
    view: View<'_>,
    next: &AtomicUsize,
    eligible: &mut dyn FnMut(u32) -> bool,
) -> Option<u32> {
    let n = view.idx.len();
    let start = next.fetch_add(1, Relaxed);
    (0..n)
        .map(|k| view.idx[(start.wrapping_add(k)) % n])
        .find(|&i| eligible(i))
}
