//! What does one routing decision cost?
//!
//! For routes of 2, 8, 64 and 1024 deployments, 25 % of them failed their last health
//! check and 1 in 8 cooling down: one `load()` of the published snapshot plus one pick,
//! per strategy; the same while another thread publishes new snapshots; and, for scale, a
//! bare `ArcSwap` load + uniform pick of a healthy entry (the floor any design pays).
//!
//! The `layer` group measures what a user pays: the whole `HealthRouting` service (ready +
//! call + await + the response body to its end) over a trivial inner service, next to the
//! same inner service alone (`layer/bare`): the layer's overhead is `routed - bare`.
//! `benches/allocs.rs` counts the heap allocations of the same path.
//!
//! Run: `cargo bench --bench routing` (add `-- --quick` for a fast pass).
#![allow(missing_docs)] // criterion_group! generates undocumented items

mod support;

use std::{
    hint::black_box,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use arc_swap::ArcSwap;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use rand::{Rng, SeedableRng, rngs::SmallRng};
use tokio::time::Instant;
use tower_health_routing::{HealthRoutingLayer, config::RoutingStrategy, routing::Picker};

use support::{
    FloorWork, ROUTE, Trivial, cooling, publish, publish_flipping, request, state, through,
    unhealthy,
};

const SIZES: [usize; 4] = [2, 8, 64, 1024];
fn decision(c: &mut Criterion) {
    // As in a service: the state lives in a running runtime (a worker thread drives its
    // tasks while the bench decides on this one), so its staleness watchdog runs and keeps
    // the usage minute: decisions read no clock.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let _enter = rt.enter();
    let mut g = c.benchmark_group("decision");
    g.measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500));
    for n in SIZES {
        let st = state(n, &rt);
        for strategy in [
            RoutingStrategy::SimpleShuffle,
            RoutingStrategy::RoundRobin,
            RoutingStrategy::PowerOfTwoChoices,
            RoutingStrategy::LeastBusy,
            RoutingStrategy::LatencyBased,
            RoutingStrategy::UsageBasedV2,
            RoutingStrategy::CostBased,
        ] {
            let mut picker = Picker::new(st.clone()).with_seed(7).with_strategy(strategy);
            g.bench_with_input(BenchmarkId::new(strategy.as_str(), n), &n, |b, _| {
                b.iter(|| {
                    let snap = st.load();
                    let p = picker.pick(&snap, black_box(ROUTE), &[]).unwrap();
                    black_box(Arc::as_ptr(p.deployment()));
                })
            });
        }
        // The floor: a bare ArcSwap load + uniform sampling of a healthy entry.
        let bare = ArcSwap::from_pointee(
            (0..n)
                .map(|i| !unhealthy(i) && !cooling(i))
                .collect::<Vec<bool>>(),
        );
        let mut rng = SmallRng::seed_from_u64(3);
        g.bench_with_input(BenchmarkId::new("bare-arcswap-sample", n), &n, |b, _| {
            b.iter(|| {
                let v = bare.load();
                loop {
                    let i = rng.random_range(0..v.len());
                    if v[i] {
                        break black_box(i);
                    }
                }
            })
        });
    }
    g.finish();
}

/// Decisions while another thread publishes whole snapshots back to back: `simple-shuffle`
/// republishes the same verdicts (new timestamps), as a probe loop mostly does;
/// `simple-shuffle-alternating` flips one deployment between healthy and unhealthy at every
/// publication, so every snapshot has new candidate lists; `simple-shuffle-no-writer` is
/// the same decision with no writer, in the same group, for the ratio. Rows ending in
/// `-current` decide with `Picker::pick_current` (the picker's own snapshot copy, as the
/// service does) instead of `state.load()` + `Picker::pick`.
fn under_writer(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _enter = rt.enter();
    let mut g = c.benchmark_group("decision-under-writer");
    g.measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500));
    for n in [8, 1024] {
        for writer in ["no-writer", "same", "alternating"] {
            for current in [false, true] {
                let st = state(n, &rt);
                let stop = Arc::new(AtomicBool::new(false));
                let handle = (writer != "no-writer").then(|| {
                    let (st, stop) = (st.clone(), Arc::clone(&stop));
                    let alternate = writer == "alternating";
                    std::thread::spawn(move || {
                        let mut published = 0u64;
                        while !stop.load(Ordering::Relaxed) {
                            if alternate {
                                publish_flipping(&st, n, published % 2 == 1);
                            } else {
                                publish(&st, n);
                            }
                            published += 1;
                            std::thread::yield_now();
                        }
                        published
                    })
                });
                let mut picker = Picker::new(st.clone()).with_seed(9);
                let id = match writer {
                    "same" => "simple-shuffle",
                    "alternating" => "simple-shuffle-alternating",
                    _ => "simple-shuffle-no-writer",
                };
                let id = if current {
                    format!("{id}-current")
                } else {
                    id.to_owned()
                };
                g.bench_with_input(BenchmarkId::new(&id, n), &n, |b, _| {
                    if current {
                        b.iter(|| {
                            black_box(Arc::as_ptr(
                                picker.pick_current(ROUTE, &[]).unwrap().deployment(),
                            ));
                        })
                    } else {
                        b.iter(|| {
                            let snap = st.load();
                            black_box(Arc::as_ptr(
                                picker.pick(&snap, ROUTE, &[]).unwrap().deployment(),
                            ));
                        })
                    }
                });
                stop.store(true, Ordering::Relaxed);
                if let Some(h) = handle {
                    let published = h.join().unwrap();
                    eprintln!(
                        "decision-under-writer/{id}/{n}: the writer published {published} snapshots meanwhile"
                    );
                }
            }
        }
    }
    g.finish();
}

fn layer(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _enter = rt.enter();
    let mut g = c.benchmark_group("layer");
    g.measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500));
    let mut bare = Trivial;
    g.bench_function("bare", |b| {
        b.iter(|| through(&mut bare, black_box(request())))
    });
    for n in SIZES {
        let st = state(n, &rt);
        let layer = HealthRoutingLayer::from_state(st).with_seed(5);
        let mut svc = tower::Layer::layer(&layer, Trivial);
        g.bench_with_input(BenchmarkId::new("routed", n), &n, |b, _| {
            b.iter(|| through(&mut svc, black_box(request())))
        });
        // With the response's `SelectedDeployment` copy (an extension map per response).
        let mut ext = tower::Layer::layer(&layer.clone().with_response_extension(), Trivial);
        g.bench_with_input(BenchmarkId::new("routed-ext", n), &n, |b, _| {
            b.iter(|| through(&mut ext, black_box(request())))
        });
        // What each strategy costs a request (usage-based reads the minute the state's
        // watchdog keeps; latency-based reads the clock for its sample's start).
        for strategy in [
            RoutingStrategy::SimpleShuffle,
            RoutingStrategy::UsageBasedV2,
            RoutingStrategy::CostBased,
        ] {
            let mut svc = tower::Layer::layer(&layer.clone().with_strategy(strategy), Trivial);
            let id = format!("routed/{}", strategy.as_str());
            g.bench_with_input(BenchmarkId::new(id, n), &n, |b, _| {
                b.iter(|| through(&mut svc, black_box(request())))
            });
        }
    }
    g.finish();
}

/// `threads/T`: the time for each of T threads to make one decision (or send one request
/// through its own clone of the service) while all T do: throughput scales by
/// `T × threads/1 ÷ threads/T` (goal: ≥ 1.8 at T = 2).
///
/// `floor-threads/T` is the machine's own ceiling: each thread runs [`floor_work`], a
/// loop of about a decision's length over memory of its own only (no line shared with
/// the other thread), so `2 × floor-threads/1 ÷ floor-threads/2` is as far as two
/// threads can scale here at all (below 2 when the vCPUs are hyperthread siblings or
/// the host is busy).
fn concurrency(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _enter = rt.enter();
    let mut g = c.benchmark_group("concurrency");
    g.measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500));
    let st = state(8, &rt);
    let layer = HealthRoutingLayer::from_state(st.clone());
    for threads in [1usize, 2] {
        for what in ["floor", "decision", "decision-current", "layer"] {
            g.bench_with_input(
                BenchmarkId::new(format!("{what}-threads"), threads),
                &threads,
                |b, &threads| {
                    b.iter_custom(|iters| {
                        // Each thread times its own loop, started together at a barrier.
                        let barrier = std::sync::Barrier::new(threads);
                        std::thread::scope(|s| {
                            let handles: Vec<_> = (0..threads)
                                .map(|t| {
                                    let (st, layer, barrier) = (st.clone(), &layer, &barrier);
                                    s.spawn(move || {
                                        let mut picker =
                                            Picker::new(st.clone()).with_seed(t as u64);
                                        let mut svc = tower::Layer::layer(layer, Trivial);
                                        let mut own = FloorWork::new(t as u64);
                                        barrier.wait();
                                        let start = Instant::now();
                                        for _ in 0..iters {
                                            if what == "floor" {
                                                black_box(own.step());
                                            } else if what == "decision" {
                                                let snap = st.load();
                                                let p = picker.pick(&snap, ROUTE, &[]).unwrap();
                                                black_box(Arc::as_ptr(p.deployment()));
                                            } else if what == "decision-current" {
                                                let p = picker.pick_current(ROUTE, &[]).unwrap();
                                                black_box(Arc::as_ptr(p.deployment()));
                                            } else {
                                                through(&mut svc, request());
                                            }
                                        }
                                        start.elapsed()
                                    })
                                })
                                .collect();
                            handles
                                .into_iter()
                                .map(|h| h.join().unwrap())
                                .max()
                                .unwrap_or_default()
                        })
                    })
                },
            );
        }
    }
    g.finish();
}

criterion_group!(benches, decision, under_writer, layer, concurrency);
criterion_main!(benches);
