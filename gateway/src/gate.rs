//! The checks every request passes before routing, as one tower layer: the `Host` rule and
//! the declared body size ([`limits::check`](crate::limits::check)), then the drain
//! ([`drain::admit`](crate::drain::admit)), whose in-flight guard the response body holds.
//!
//! One plain layer instead of two `axum::middleware::from_fn`s: those clone the boxed
//! inner service and box a future on every request.

use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
};

use axum::response::Response;
use tower::{Layer, Service};

use crate::drain::{Admission, Drain, GuardedBody, InFlight};

/// Adds [`Gate`] to every route.
#[derive(Clone, Debug)]
pub struct GateLayer {
    drain: Drain,
    max_body: usize,
}

impl GateLayer {
    /// Checks against `drain` and a body limit of `max_body` bytes.
    pub fn new(drain: Drain, max_body: usize) -> Self {
        Self { drain, max_body }
    }
}

impl<S> Layer<S> for GateLayer {
    type Service = Gate<S>;

    fn layer(&self, inner: S) -> Gate<S> {
        Gate {
            inner,
            drain: self.drain.clone(),
            max_body: self.max_body,
        }
    }
}

/// The service [`GateLayer`] makes.
#[derive(Clone, Debug)]
pub struct Gate<S> {
    inner: S,
    drain: Drain,
    max_body: usize,
}

impl<S, B> Service<http::Request<B>> for Gate<S>
where
    S: Service<http::Request<B>, Response = Response, Error = Infallible>,
{
    type Response = http::Response<GuardedBody>;
    type Error = Infallible;
    type Future = GateFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if let Some(refused) = crate::limits::check(&req, self.max_body) {
            return GateFuture::Refused {
                response: Some(refused),
            };
        }
        let guard = match crate::drain::admit(&self.drain, req.uri().path()) {
            Admission::Refused(refused) => {
                return GateFuture::Refused {
                    response: Some(refused),
                };
            }
            Admission::Counted(guard) => Some(guard),
            Admission::Passed => None,
        };
        GateFuture::Inner {
            future: self.inner.call(req),
            guard,
        }
    }
}

/// The future of [`Gate`].
#[pin_project::pin_project(project = GateProj)]
#[derive(Debug)]
pub enum GateFuture<F> {
    /// Answered by the gate itself.
    Refused {
        /// The answer (taken when polled).
        response: Option<Response>,
    },
    /// Passed on; an API request's guard goes with its response body.
    Inner {
        /// The inner service's future.
        #[pin]
        future: F,
        /// The in-flight guard of an API request.
        guard: Option<InFlight>,
    },
}

impl<F> Future for GateFuture<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<http::Response<GuardedBody>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            GateProj::Refused { response } => Poll::Ready(Ok(response
                .take()
                .expect("a refused gate future is polled once")
                .map(|body| GuardedBody::new(body, None)))),
            GateProj::Inner { future, guard } => {
                let Ok(resp) = ready!(future.poll(cx));
                // The guard goes with the body (no second box around it).
                let guard = guard.take();
                Poll::Ready(Ok(resp.map(|body| GuardedBody::new(body, guard))))
            }
        }
    }
}
