//! One routing decision, side by side: routes of 2, 8, 64 and 1024 upstreams with 25 %
//! unhealthy, for
//!
//! * this crate: `Picker::pick` (health filter + cooldown + weighted shuffle), and p2c;
//! * `pingora-load-balancing`: `LoadBalancer::select` (round-robin and random), the
//!   unhealthy backends disabled through `Backends::set_enable`;
//! * `tower::balance::p2c::Balance` over ready services (one `ready` + `call` per
//!   decision; the unhealthy ones never ready), with a single plain service's
//!   `ready` + `call` measured alongside so it can be subtracted;
//! * the floor: a bare `ArcSwap` load + uniform pick of a healthy entry.
//!
//! The `service` group measures what a user pays per request instead of the decision
//! alone: ready + call + the response + its body to the end, each over the same trivial
//! inner service (an `http` service answering an empty 200 at once), for
//!
//! * `ours`: the whole `HealthRouting` layer (defaults) over it;
//! * `tower-p2c`: `tower::balance::p2c::Balance` over N such services, each wrapped in
//!   `PendingRequests` (the in-flight load tower's p2c is meant for; the unhealthy ones
//!   never ready);
//! * `pingora`: a `Service` that asks `LoadBalancer<RoundRobin>::select` for a backend,
//!   attaches it to the request as an extension (as ours attaches the chosen deployment)
//!   and calls the inner service;
//! * `bare`: the inner service alone (subtract it for each one's own cost).
//!
//! Plus this crate's decision under a concurrent snapshot writer (publishing whole snapshots
//! back to back, far more often than any probe loop), and with two threads deciding at once
//! (`threads/N`: the time for each thread to make one decision while N decide; throughput
//! scales by N × threads/1 ÷ threads/N).
//!
//! Run: `benches/compare.sh` (installs cmake for pingora, then `cargo bench`).
#![allow(missing_docs)]

use std::{
    convert::Infallible,
    hint::black_box,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use arc_swap::ArcSwap;
use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use futures_util::FutureExt;
use http_body::Body;
use http_body_util::Empty;
use pingora_load_balancing::Backend;
use pingora_load_balancing::{
    LoadBalancer,
    selection::{Random, RoundRobin},
};
use rand::{Rng, SeedableRng, rngs::SmallRng};
use tower::{
    Service, ServiceExt,
    balance::p2c::Balance,
    discover::ServiceList,
    load::{CompleteOnResponse, Constant, PendingRequests},
};
use tower_health_routing::{
    Config, Deployment, DeploymentId, HealthRoutingLayer, HealthState, ModelGroup,
    config::RoutingStrategy, health::HealthRecord, routing::Picker,
};

const SIZES: [usize; 4] = [2, 8, 64, 1024];
const ROUTE: &str = "bench";

fn unhealthy(i: usize) -> bool {
    i % 4 == 1
}

fn ours(n: usize) -> HealthState {
    let ds = (0..n).map(|i| {
        Deployment::builder(ROUTE, "openai/m")
            .id(format!("d{i}"))
            .build()
    });
    let cfg = Config::builder()
        .deployments(ds)
        .enable_health_check_routing(true)
        .health_check_interval(Duration::from_secs(3600))
        .build()
        .unwrap();
    let state = HealthState::new(cfg);
    publish(&state, n);
    state
}

fn publish(state: &HealthState, n: usize) {
    let now = tokio::time::Instant::now();
    state.record((0..n).map(|i| {
        let rec = if unhealthy(i) {
            HealthRecord::unhealthy(now, "status 500", Some(500))
        } else {
            HealthRecord::healthy(now)
        };
        (DeploymentId::new(format!("d{i}")), rec)
    }));
}

fn addrs(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("127.0.{}.{}:80", i / 250, i % 250 + 1))
        .collect()
}

/// A service that is always ready (or never, for an unhealthy upstream) and answers at once.
#[derive(Clone)]
struct Upstream {
    ready: bool,
}

impl Service<()> for Upstream {
    type Response = ();
    type Error = Infallible;
    type Future = std::future::Ready<Result<(), Infallible>>;
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        if self.ready {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    }
    fn call(&mut self, _: ()) -> Self::Future {
        std::future::ready(Ok(()))
    }
}

fn decision(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _enter = rt.enter();
    let mut g = c.benchmark_group("compare");
    g.measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500));
    for n in SIZES {
        let st = ours(n);
        for (name, strategy) in [
            ("ours-shuffle", RoutingStrategy::SimpleShuffle),
            ("ours-p2c", RoutingStrategy::PowerOfTwoChoices),
        ] {
            let mut picker = Picker::new(st.clone()).with_seed(7).with_strategy(strategy);
            g.bench_with_input(BenchmarkId::new(name, n), &n, |b, _| {
                b.iter(|| {
                    let snap = st.load();
                    black_box(Arc::as_ptr(
                        picker
                            .pick(&snap, black_box(ROUTE), &[])
                            .unwrap()
                            .deployment(),
                    ));
                })
            });
        }

        let rr: LoadBalancer<RoundRobin> = LoadBalancer::try_from_iter(addrs(n)).unwrap();
        let rnd: LoadBalancer<Random> = LoadBalancer::try_from_iter(addrs(n)).unwrap();
        for (i, b) in rr.backends().get_backend().iter().enumerate() {
            rr.backends().set_enable(b, !unhealthy(i));
        }
        for (i, b) in rnd.backends().get_backend().iter().enumerate() {
            rnd.backends().set_enable(b, !unhealthy(i));
        }
        g.bench_with_input(BenchmarkId::new("pingora-round-robin", n), &n, |b, _| {
            b.iter(|| black_box(rr.select(b"", 256).unwrap()))
        });
        g.bench_with_input(BenchmarkId::new("pingora-random", n), &n, |b, _| {
            b.iter(|| black_box(rnd.select(b"", 256).unwrap()))
        });

        let services: Vec<_> = (0..n)
            .map(|i| {
                Constant::new(
                    Upstream {
                        ready: !unhealthy(i),
                    },
                    1,
                )
            })
            .collect();
        let mut balance = Balance::new(ServiceList::new(services));
        g.bench_with_input(BenchmarkId::new("tower-p2c", n), &n, |b, _| {
            b.iter(|| {
                let svc = balance.ready().now_or_never().unwrap().unwrap();
                black_box(svc.call(()).now_or_never())
            })
        });

        let bare = ArcSwap::from_pointee((0..n).map(|i| !unhealthy(i)).collect::<Vec<bool>>());
        let mut rng = SmallRng::seed_from_u64(3);
        g.bench_with_input(BenchmarkId::new("bare-arcswap", n), &n, |b, _| {
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
    // What `tower-p2c` pays for tower's ready + call on its own, to subtract.
    let mut plain = Upstream { ready: true };
    g.bench_function("tower-plain-service-baseline", |b| {
        b.iter(|| {
            let svc = plain.ready().now_or_never().unwrap().unwrap();
            black_box(svc.call(()).now_or_never())
        })
    });
    g.finish();
}

fn concurrency(c: &mut Criterion) {
    // As in a service: the state lives in a runtime, so its staleness watchdog exists and
    // decisions read no clock (outside one they fall back to reading it: ~2x the cost here).
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _enter = rt.enter();
    let mut g = c.benchmark_group("compare-concurrency");
    g.measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_millis(500));
    let st = ours(8);
    for threads in [1usize, 2] {
        g.bench_with_input(
            BenchmarkId::new("threads", threads),
            &threads,
            |b, &threads| {
                b.iter_custom(|iters| {
                    // Each thread times its own loop, started together at a barrier; thread start-up
                    // and picker construction stay outside the measurement.
                    let barrier = std::sync::Barrier::new(threads);
                    std::thread::scope(|s| {
                        let handles: Vec<_> = (0..threads)
                            .map(|t| {
                                let (st, barrier) = (st.clone(), &barrier);
                                s.spawn(move || {
                                    let mut picker = Picker::new(st.clone()).with_seed(t as u64);
                                    barrier.wait();
                                    let start = Instant::now();
                                    for _ in 0..iters {
                                        let snap = st.load();
                                        black_box(Arc::as_ptr(
                                            picker.pick(&snap, ROUTE, &[]).unwrap().deployment(),
                                        ));
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
    // The same decision on a state fed without any runtime (no watchdog: clock read per decision).
    // Built on a thread with no runtime: no watchdog can start, so the snapshot is unwatched.
    let unwatched = std::thread::spawn(|| ours(8)).join().unwrap();
    let mut p = Picker::new(unwatched.clone()).with_seed(3);
    g.bench_function("unwatched-clock-read", |b| {
        b.iter(|| {
            let snap = unwatched.load();
            black_box(Arc::as_ptr(p.pick(&snap, ROUTE, &[]).unwrap().deployment()));
        })
    });
    // Reads while another thread publishes whole snapshots back to back.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (st, stop) = (st.clone(), Arc::clone(&stop));
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let _e = rt.enter();
            while !stop.load(Ordering::Relaxed) {
                publish(&st, 8);
            }
        })
    };
    let mut picker = Picker::new(st.clone()).with_seed(9);
    g.bench_function("under-writer", |b| {
        b.iter(|| {
            let snap = st.load();
            black_box(Arc::as_ptr(
                picker.pick(&snap, ROUTE, &[]).unwrap().deployment(),
            ));
        })
    });
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    g.finish();
}

/// The inner service of the `service` group: ready (or never, for an unhealthy upstream),
/// answers an empty 200 at once.
#[derive(Clone, Copy)]
struct Trivial {
    ready: bool,
}

impl<B> Service<http::Request<B>> for Trivial {
    type Response = http::Response<Empty<Bytes>>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Self::Response, Infallible>>;
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        if self.ready {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    }
    fn call(&mut self, _: http::Request<B>) -> Self::Future {
        std::future::ready(Ok(http::Response::new(Empty::new())))
    }
}

/// pingora's balancer as a tower service: select, attach the backend, call the inner service.
struct Pingora<S> {
    lb: Arc<LoadBalancer<RoundRobin>>,
    inner: S,
}

impl<S, B> Service<http::Request<B>> for Pingora<S>
where
    S: Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }
    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        let backend: Option<Backend> = self.lb.select(b"", 256);
        req.extensions_mut().insert(backend);
        self.inner.call(req)
    }
}

/// One request through `svc`: ready, call, the response, its body to the end.
fn through<S, B>(svc: &mut S, req: http::Request<()>)
where
    S: Service<http::Request<()>, Response = http::Response<B>>,
    S::Error: std::fmt::Debug,
    B: Body,
{
    let mut cx = Context::from_waker(std::task::Waker::noop());
    let Poll::Ready(ready) = svc.poll_ready(&mut cx) else {
        panic!("a ready upstream exists")
    };
    ready.unwrap();
    let fut = std::pin::pin!(svc.call(req));
    let Poll::Ready(res) = std::future::Future::poll(fut, &mut cx) else {
        panic!("the trivial service answers at once")
    };
    let mut body = std::pin::pin!(res.unwrap().into_body());
    while let Poll::Ready(Some(_)) = body.as_mut().poll_frame(&mut cx) {}
}

fn request() -> http::Request<()> {
    let mut req = http::Request::new(());
    req.extensions_mut().insert(ModelGroup::new(ROUTE));
    req
}

fn service(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _enter = rt.enter();
    let mut g = c.benchmark_group("service");
    g.measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500));
    let mut bare = Trivial { ready: true };
    g.bench_function("bare", |b| {
        b.iter(|| through(&mut bare, black_box(request())))
    });
    for n in SIZES {
        let layer = HealthRoutingLayer::from_state(ours(n)).with_seed(5);
        let mut svc = tower::Layer::layer(&layer, Trivial { ready: true });
        g.bench_with_input(BenchmarkId::new("ours", n), &n, |b, _| {
            b.iter(|| through(&mut svc, black_box(request())))
        });

        let services: Vec<_> = (0..n)
            .map(|i| {
                PendingRequests::new(
                    Trivial {
                        ready: !unhealthy(i),
                    },
                    CompleteOnResponse::default(),
                )
            })
            .collect();
        let mut balance = Balance::new(ServiceList::new::<http::Request<()>>(services));
        g.bench_with_input(BenchmarkId::new("tower-p2c", n), &n, |b, _| {
            b.iter(|| through(&mut balance, black_box(request())))
        });

        let lb: LoadBalancer<RoundRobin> = LoadBalancer::try_from_iter(addrs(n)).unwrap();
        for (i, b) in lb.backends().get_backend().iter().enumerate() {
            lb.backends().set_enable(b, !unhealthy(i));
        }
        let mut pingora = Pingora {
            lb: Arc::new(lb),
            inner: Trivial { ready: true },
        };
        g.bench_with_input(BenchmarkId::new("pingora", n), &n, |b, _| {
            b.iter(|| through(&mut pingora, black_box(request())))
        });
    }
    g.finish();
}

criterion_group!(benches, decision, concurrency, service);
criterion_main!(benches);
