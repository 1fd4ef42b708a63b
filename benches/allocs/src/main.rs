//! Heap allocations per request through the whole `HealthRouting` service (ready + call +
//! the response + its body to the end) over a trivial inner service, minus the same inner
//! service alone, for routes of 2, 8, 64 and 1024 deployments (25 % failed their last
//! check), per routing strategy, with the layer's defaults (no response extension) and
//! with the response's `SelectedDeployment` extension (`with_response_extension`). Exits
//! non-zero when the layer with its defaults allocates more than `MAX_PER_REQUEST` times
//! per request.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    convert::Infallible,
    future::Future,
    pin::pin,
    sync::atomic::{AtomicU64, Ordering::Relaxed},
    task::{Context, Poll, Waker},
    time::Duration,
};

use bytes::Bytes;
use http_body::Body;
use http_body_util::Empty;
use tower::Service;
use tower_health_routing::{
    Config, Deployment, DeploymentId, HealthRoutingLayer, HealthState, ModelGroup,
    config::RoutingStrategy, health::HealthRecord,
};

/// The system allocator, counting allocations (a reallocation counts as one).
struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is forwarded unchanged to `System`.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const ROUTE: &str = "bench";
const REQUESTS: u64 = 10_000;
const MAX_PER_REQUEST: f64 = 1.0;

#[derive(Clone, Copy)]
struct Trivial;

impl<B> Service<http::Request<B>> for Trivial {
    type Response = http::Response<Empty<Bytes>>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Self::Response, Infallible>>;
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, _: http::Request<B>) -> Self::Future {
        std::future::ready(Ok(http::Response::new(Empty::new())))
    }
}

fn through<S, B>(svc: &mut S, req: http::Request<()>)
where
    S: Service<http::Request<()>, Response = http::Response<B>>,
    S::Error: std::fmt::Debug,
    B: Body,
{
    let mut cx = Context::from_waker(Waker::noop());
    assert!(svc.poll_ready(&mut cx).is_ready());
    let fut = pin!(svc.call(req));
    let Poll::Ready(res) = fut.poll(&mut cx) else {
        panic!("the trivial service answers at once")
    };
    let mut body = pin!(res.unwrap().into_body());
    while let Poll::Ready(Some(_)) = body.as_mut().poll_frame(&mut cx) {}
}

fn request() -> http::Request<()> {
    let mut req = http::Request::new(());
    req.extensions_mut().insert(ModelGroup::new(ROUTE));
    req
}

/// Allocations per request of `REQUESTS` requests through `svc`.
fn per_request<S, B>(svc: &mut S) -> f64
where
    S: Service<http::Request<()>, Response = http::Response<B>>,
    S::Error: std::fmt::Debug,
    B: Body,
{
    for _ in 0..100 {
        through(svc, request());
    }
    let before = ALLOCS.load(Relaxed);
    for _ in 0..REQUESTS {
        through(svc, request());
    }
    (ALLOCS.load(Relaxed) - before) as f64 / REQUESTS as f64
}

fn state(n: usize) -> HealthState {
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
    let now = tokio::time::Instant::now();
    state.record((0..n).map(|i| {
        let rec = if i % 4 == 1 {
            HealthRecord::unhealthy(now, "status 500", Some(500))
        } else {
            HealthRecord::healthy(now)
        };
        (DeploymentId::new(format!("d{i}")), rec)
    }));
    state
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // As in a service: the state lives in a runtime (its staleness watchdog exists).
    let _enter = rt.enter();
    // `THR_SPIN=<requests> THR_MODE=bare|routed|ext THR_N=<deployments>`: only send that
    // many requests, for `perf stat` (instructions and cycles per request do not depend on
    // what else the machine runs, unlike wall-clock time).
    if let Ok(spin) = std::env::var("THR_SPIN") {
        let spin: u64 = spin.parse().expect("THR_SPIN: a number of requests");
        let n: usize = std::env::var("THR_N").map_or(8, |v| v.parse().expect("THR_N"));
        let layer = HealthRoutingLayer::from_state(state(n)).with_seed(1);
        // As in a service, the runtime runs the state's tasks before the requests: its
        // watchdog keeps the minute that answers count in once a routing service (built
        // here) asks for it; one yield lets it start.
        let _asks_for_the_minute = tower::Layer::layer(&layer, Trivial);
        rt.block_on(tokio::task::yield_now());
        match std::env::var("THR_MODE").as_deref() {
            Ok("bare") => (0..spin).for_each(|_| through(&mut Trivial, request())),
            // `lean` (the default now) is kept for comparisons with older builds.
            Ok("lean") => {
                let mut svc = tower::Layer::layer(&layer.without_response_extension(), Trivial);
                (0..spin).for_each(|_| through(&mut svc, request()));
            }
            Ok("ext") => {
                let mut svc = tower::Layer::layer(&layer.with_response_extension(), Trivial);
                (0..spin).for_each(|_| through(&mut svc, request()));
            }
            _ => {
                let mut svc = tower::Layer::layer(&layer, Trivial);
                (0..spin).for_each(|_| through(&mut svc, request()));
            }
        }
        return;
    }
    let bare = per_request(&mut Trivial);
    println!("bare inner service: {bare:.2} allocations per request (the request's own)");
    println!("layer's allocations per request: defaults / with_response_extension()");
    let mut worst: f64 = 0.0;
    for strategy in [
        RoutingStrategy::SimpleShuffle,
        RoutingStrategy::RoundRobin,
        RoutingStrategy::PowerOfTwoChoices,
        RoutingStrategy::LeastBusy,
        RoutingStrategy::LatencyBased,
        RoutingStrategy::UsageBasedV2,
        RoutingStrategy::CostBased,
    ] {
        let row: Vec<String> = [2, 8, 64, 1024]
            .into_iter()
            .map(|n| {
                let layer = HealthRoutingLayer::from_state(state(n))
                    .with_seed(1)
                    .with_strategy(strategy);
                let mut svc = tower::Layer::layer(&layer, Trivial);
                let default = per_request(&mut svc) - bare;
                worst = worst.max(default);
                let mut ext = tower::Layer::layer(&layer.with_response_extension(), Trivial);
                let ext = per_request(&mut ext) - bare;
                format!("N={n}: {default:.2} / {ext:.2}")
            })
            .collect();
        println!("{:<24} {}", strategy.as_str(), row.join("  "));
    }
    println!("worst with the defaults: {worst:.2} per request (max {MAX_PER_REQUEST})");
    if worst > MAX_PER_REQUEST {
        std::process::exit(1);
    }
}
