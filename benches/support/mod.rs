//! What the routing benches share (`benches/routing.rs`, `benches/scaling.rs`,
//! `benches/writer.rs`): the state they decide on, the publications of a writer, the
//! trivial inner service, one request through a service and the rounds knob.
// Each bench target compiles this module and uses part of it.
#![allow(dead_code)]

use std::{
    convert::Infallible,
    future::Future,
    pin::pin,
    task::{Context, Poll, Waker},
    time::Duration,
};

use bytes::Bytes;
use http_body::Body;
use http_body_util::Empty;
use rand::{Rng, SeedableRng, rngs::SmallRng};
use tokio::time::Instant;
use tower::{Service, ServiceExt};
use tower_health_routing::{
    Config, Deployment, DeploymentId, HealthRoutingLayer, HealthState, ModelGroup,
    health::HealthRecord,
};

pub(crate) const ROUTE: &str = "bench";

pub(crate) fn unhealthy(i: usize) -> bool {
    i % 4 == 1
}

pub(crate) fn cooling(i: usize) -> bool {
    i % 8 == 2
}

/// A state with `n` deployments: a quarter marked unhealthy, an eighth cooling down for an hour.
pub(crate) fn state(n: usize, rt: &tokio::runtime::Runtime) -> HealthState {
    let ds = (0..n).map(|i| {
        Deployment::builder(ROUTE, "openai/m")
            .id(format!("d{i}"))
            .build()
    });
    let cfg = Config::builder()
        .deployments(ds)
        .enable_health_check_routing(true)
        .health_check_interval(Duration::from_secs(3600))
        .allowed_fails(0)
        .cooldown_time(Duration::from_secs(3600))
        .build()
        .unwrap();
    let state = HealthState::new(cfg);
    publish(&state, n);
    // Cool deployments down the real way: failed requests through the routing service.
    let layer = HealthRoutingLayer::from_state(state.clone()).with_seed(1);
    let svc = tower::Layer::layer(
        &layer,
        tower::service_fn(|req: http::Request<()>| async move {
            let d = req
                .extensions()
                .get::<tower_health_routing::SelectedDeployment>()
                .unwrap();
            let i: usize = d.id().as_str()[1..].parse().unwrap();
            let status = if cooling(i) { 500 } else { 200 };
            Ok::<_, std::convert::Infallible>(
                http::Response::builder().status(status).body(()).unwrap(),
            )
        }),
    );
    let wanted = (0..n).filter(|&i| cooling(i) && !unhealthy(i)).count();
    rt.block_on(async {
        let mut svc = svc;
        let mut tries = 0;
        while (0..n)
            .filter(|i| state.cooldown_remaining(&format!("d{i}")).is_some())
            .count()
            < wanted
            && tries < 200 * n
        {
            let mut req = http::Request::new(());
            req.extensions_mut().insert(ModelGroup::new(ROUTE));
            let _ = svc.ready().await.unwrap().call(req).await;
            tries += 1;
        }
    });
    state
}

pub(crate) fn publish(state: &HealthState, n: usize) {
    let now = Instant::now();
    state.record((0..n).map(|i| {
        let rec = if unhealthy(i) {
            HealthRecord::unhealthy(now, "status 500", Some(500))
        } else {
            HealthRecord::healthy(now)
        };
        (DeploymentId::new(format!("d{i}")), rec)
    }));
}

/// The inner service: always ready, answers 200 with an empty body at once.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Trivial;

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

/// One request through `svc`: ready, call, the response, its body to the end (polled
/// with a no-op waker: every part here is ready at once).
pub(crate) fn through<S, B>(svc: &mut S, req: http::Request<()>)
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

pub(crate) fn request() -> http::Request<()> {
    let mut req = http::Request::new(());
    req.extensions_mut().insert(ModelGroup::new(ROUTE));
    req
}

/// A thread's private work for `floor-threads`: per step, a few dependent random reads of
/// its own 4 KiB table mixed by multiplications, about as long as one decision and
/// touching no memory another thread writes.
pub(crate) struct FloorWork {
    table: Box<[u64; 512]>,
    x: u64,
}

impl FloorWork {
    pub(crate) fn new(seed: u64) -> Self {
        let mut rng = SmallRng::seed_from_u64(seed);
        let mut table = Box::new([0u64; 512]);
        for v in table.iter_mut() {
            *v = rng.random();
        }
        Self { table, x: seed | 1 }
    }

    pub(crate) fn step(&mut self) -> u64 {
        for _ in 0..8 {
            let v = self.table[(self.x >> 55) as usize];
            self.x = (self.x ^ v).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
        self.x
    }
}

/// Like [`publish`], with deployment 0 unhealthy too when `flip`.
pub(crate) fn publish_flipping(state: &HealthState, n: usize, flip: bool) {
    let now = Instant::now();
    state.record((0..n).map(|i| {
        let rec = if unhealthy(i) || (flip && i == 0) {
            HealthRecord::unhealthy(now, "status 500", Some(500))
        } else {
            HealthRecord::healthy(now)
        };
        (DeploymentId::new(format!("d{i}")), rec)
    }));
}

/// How many paired rounds to run: the environment variable `var`, else 15 (at least 1).
pub(crate) fn rounds(var: &str) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(15)
        .max(1)
}
