//! What does a back-to-back snapshot writer cost a reader's decisions? Measured as *paired*
//! rounds, like `benches/scaling.rs`: criterion's `decision-under-writer` rows time the
//! writer and the no-writer cases seconds apart, and on a shared 2-vCPU machine the speed
//! of a vCPU moves between such runs more than the effect measured.
//!
//! Each round times `load` + `pick` on this thread for about 20 ms with the other thread in
//! each of four states, back to back: `parked` (asleep: the goal's "no writer"),
//! `spinning` (private work that shares nothing: a busy sibling, no publication),
//! `same` (`HealthState::record` of the same verdicts back to back, as
//! `decision-under-writer/simple-shuffle` does) and `alternating` (deployment 0 flips at
//! every publication, so the candidate lists change every time). The ratios are computed
//! per round; the median over the rounds is reported with its spread. `same ÷ spinning`
//! is what publications cost a decision beyond sharing the machine with a busy thread.
//!
//! Run: `cargo bench --bench writer` (`WRITER_ROUNDS=N`, default 15; `WRITER_N`, default
//! 8 and 1024).
#![allow(missing_docs)]

mod support;

use std::{
    hint::black_box,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use tokio::time::Instant;
use tower_health_routing::routing::Picker;

use support::{FloorWork, ROUTE, publish, publish_flipping, state};

const MODES: [&str; 4] = ["parked", "spinning", "same", "alternating"];

fn main() {
    let rounds: usize = support::rounds("WRITER_ROUNDS");
    let sizes: Vec<usize> = match std::env::var("WRITER_N").ok().and_then(|v| v.parse().ok()) {
        Some(n) => vec![n],
        None => vec![8, 1024],
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime");
    let _enter = rt.enter();
    for n in sizes {
        run(n, rounds, &rt);
    }
}

fn run(n: usize, rounds: usize, rt: &tokio::runtime::Runtime) {
    let st = state(n, rt);
    // The other thread's state: an index into `MODES`; `usize::MAX` ends it.
    let mode = Arc::new(AtomicUsize::new(0));
    let published = Arc::new(AtomicUsize::new(0));
    let other = {
        let (st, mode, published) = (st.clone(), Arc::clone(&mode), Arc::clone(&published));
        std::thread::spawn(move || {
            let mut own = FloorWork::new(1);
            let mut flip = false;
            loop {
                match mode.load(Ordering::Relaxed) {
                    0 => nap(Duration::from_micros(200)),
                    1 => {
                        // About a publication's length, then the writer's yield.
                        for _ in 0..64 {
                            black_box(own.step());
                        }
                        std::thread::yield_now();
                    }
                    2 => {
                        publish(&st, n);
                        published.fetch_add(1, Ordering::Relaxed);
                        std::thread::yield_now();
                    }
                    3 => {
                        flip = !flip;
                        publish_flipping(&st, n, flip);
                        published.fetch_add(1, Ordering::Relaxed);
                        std::thread::yield_now();
                    }
                    _ => break,
                }
            }
        })
    };
    let mut picker = Picker::new(st.clone()).with_seed(9);
    let mut decide = |iters: usize| {
        let start = Instant::now();
        for _ in 0..iters {
            let snap = st.load();
            let p = picker.pick(&snap, ROUTE, &[]).expect("a pick");
            black_box(Arc::as_ptr(p.deployment()));
        }
        start.elapsed()
    };
    // About 20 ms of decisions with the other thread parked.
    let mut iters = 1000;
    while decide(iters) < Duration::from_millis(20) {
        iters *= 2;
    }
    let mut ratios: Vec<[f64; 4]> = Vec::new();
    let mut per_ns = vec![Vec::new(); MODES.len()];
    for _ in 0..rounds {
        let mut ns = [0f64; 4];
        for (m, slot) in ns.iter_mut().enumerate() {
            mode.store(m, Ordering::Relaxed);
            nap(Duration::from_millis(2));
            *slot = decide(iters).as_nanos() as f64 / iters as f64;
            per_ns[m].push(*slot);
        }
        ratios.push([ns[2] / ns[0], ns[2] / ns[1], ns[3] / ns[0], ns[3] / ns[1]]);
    }
    mode.store(usize::MAX, Ordering::Relaxed);
    other.join().expect("the other thread");
    println!(
        "writer/{n}: {rounds} rounds of {iters} decisions, {} publications",
        published.load(Ordering::Relaxed)
    );
    for (m, v) in MODES.iter().zip(per_ns.iter_mut()) {
        println!("  {m:<12} median {:.1} ns", median(v));
    }
    for (i, name) in [
        "same / parked",
        "same / spinning",
        "alternating / parked",
        "alternating / spinning",
    ]
    .iter()
    .enumerate()
    {
        let mut v: Vec<f64> = ratios.iter().map(|r| r[i]).collect();
        v.sort_by(f64::total_cmp);
        println!(
            "  {name:<24} median {:.2}x (min {:.2}, max {:.2})",
            median(&mut v),
            v[0],
            v[v.len() - 1]
        );
    }
}

/// Sleeps this OS thread: the bench's own threads run outside any runtime, in real time
/// (the lint's reason, paused time in tests, does not apply).
#[allow(clippy::disallowed_methods)]
fn nap(d: Duration) {
    std::thread::sleep(d);
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}
