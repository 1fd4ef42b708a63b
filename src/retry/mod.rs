//! Retries on another deployment: LiteLLM's `num_retries`, as a tower layer stacked
//! *outside* [`HealthRoutingLayer`](crate::HealthRoutingLayer).
//!
//! A deployment that fails a request is usually not the only one of its route, and the
//! next one may well answer. [`RetryLayer`] re-sends a failed request through the routing
//! pipeline; a [`TriedDeployments`] record that every copy of the request shares makes the
//! routing layer skip the deployments already tried, so each attempt goes somewhere new.
//!
//! # What is retried
//!
//! What a result means comes from the config's [`Classify`](crate::classify::Classify)
//! (see [`classify`](crate::classify)): a failure that is the deployment's fault
//! ([`Class::worth_another_deployment`](crate::classify::Class::worth_another_deployment))
//! is retried elsewhere; the caller's own faults and local failures are not.
//!
//! | result (default classifier) | retried? | wait |
//! |---|---|---|
//! | 429 Too Many Requests | yes | its `Retry-After` (seconds or a date, capped at `max_retry_after`), else `rate_limit_backoff` (500 ms) doubled per retry; at most `max_backoff` (5 s) |
//! | 402, 408, 5xx | yes | none |
//! | 401, 404 (each deployment has its own credentials and models; LiteLLM cools both down) | yes | none |
//! | an error of the inner service (connection refused, reset, timeout) | yes | none |
//! | any other status (2xx, 3xx, 400, 403, 413, 422, context window, content policy, ...) | no | |
//! | a [`LocalError`](crate::classify::LocalError) of the inner service | no | |
//! | [`NoDeploymentAvailable`](crate::NoDeploymentAvailable), [`UnknownRoute`](crate::UnknownRoute), [`MissingRoute`](crate::MissingRoute) | no | |
//!
//! At most `num_retries` retries (the config's `router_settings.num_retries`), and only
//! while the [`RetryBudget`] allows: by default retries may add 20 % to the traffic of
//! the last 10 s, plus 10 per second, so an outage cannot multiply the load on what is
//! left of the upstreams.
//!
//! # What the caller gets
//!
//! The first answer that is not retried; or, when the retries run out, the last failure.
//! When a retry finds no deployment left to try (every one was tried, or the rest are
//! cooling down), the caller gets the last *upstream* failure (the 503 or the connection
//! error), not [`NoDeploymentAvailable`](crate::NoDeploymentAvailable): that one is
//! returned only when the first attempt could not be routed at all. The response's
//! [`SelectedDeployment`](crate::SelectedDeployment) extension names the deployment that
//! gave it.
//!
//! # Bodies
//!
//! The request body must be `Clone` (buffer it: `Bytes`, `Full<Bytes>`, `String`); each
//! attempt sends a clone. A response is judged by its head, before any byte of its body
//! reaches the caller; once it is passed on it is never retried, so a streaming body that
//! fails halfway fails for the caller. While a retry runs, the failed response it may fall
//! back to is kept (with its body unread).
//!
//! ```
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_health_routing::{Config, Deployment, HealthRoutingLayer, ModelGroup, retry::RetryLayer, SelectedDeployment};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tower_health_routing::BoxError> {
//! let cfg = Config::builder()
//!     .deployment(Deployment::builder("gpt-4o", "openai/gpt-4o").id("a").api_base("http://10.0.0.1/v1").build())
//!     .deployment(Deployment::builder("gpt-4o", "openai/gpt-4o").id("b").api_base("http://10.0.0.2/v1").build())
//!     .num_retries(2)
//!     .build()?;
//! let svc = ServiceBuilder::new()
//!     .layer(RetryLayer::new(&cfg)) // outside: each retry goes through routing again
//!     .layer(HealthRoutingLayer::new(cfg))
//!     .service_fn(|req: http::Request<String>| async move {
//!         // A forwarder whose deployment `a` is down.
//!         let chosen = req.extensions().get::<SelectedDeployment>().unwrap();
//!         let status = if chosen.id().as_str() == "a" { 503 } else { 200 };
//!         let mut resp = http::Response::new(chosen.id().to_string());
//!         *resp.status_mut() = http::StatusCode::from_u16(status).unwrap();
//!         Ok::<_, std::convert::Infallible>(resp)
//!     });
//! let mut req = http::Request::new(String::new());
//! req.extensions_mut().insert(ModelGroup::new("gpt-4o"));
//! let resp = svc.oneshot(req).await?;
//! assert_eq!(resp.status(), 200);
//! assert_eq!(resp.into_body().into_inner(), "b");
//! # Ok(())
//! # }
//! ```

mod budget;
mod policy;

use std::{
    fmt,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use http::{Request, Response};
use tower::retry::budget::Budget;
use tower_layer::Layer;
use tower_service::Service;

pub use budget::RetryBudget;
pub use policy::{Backoff, RetryPolicy};

use crate::{BoxError, config::Config, routing::TriedDeployments};

/// What every [`RetryPolicy`] of a layer shares.
pub(crate) struct Settings {
    num_retries: u32,
    max_backoff: Duration,
    rate_limit_backoff: Duration,
    budget: Arc<dyn Budget + Send + Sync>,
    classifier: Arc<dyn crate::classify::Classify>,
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("num_retries", &self.num_retries)
            .field("max_backoff", &self.max_backoff)
            .field("rate_limit_backoff", &self.rate_limit_backoff)
            .finish_non_exhaustive()
    }
}

/// Retries failed requests on other deployments; see the [module docs](self).
///
/// Stack it outside [`HealthRoutingLayer`](crate::HealthRoutingLayer). Every service it
/// builds (and their clones) shares one [`RetryBudget`].
#[derive(Clone, Debug)]
pub struct RetryLayer {
    settings: Arc<Settings>,
}

impl RetryLayer {
    /// A layer with `config`'s `num_retries` (default 0: never retry), a `max_backoff` of
    /// 5 s, a `rate_limit_backoff` of 500 ms and a default [`RetryBudget`].
    pub fn new(config: &Config) -> Self {
        Self {
            settings: Arc::new(Settings {
                num_retries: config.router.num_retries,
                max_backoff: Duration::from_secs(5),
                rate_limit_backoff: Duration::from_millis(500),
                budget: Arc::new(RetryBudget::default()),
                classifier: config.classifier(),
            }),
        }
    }

    fn edit(mut self, f: impl FnOnce(&mut Settings)) -> Self {
        let s = &self.settings;
        let mut next = Settings {
            num_retries: s.num_retries,
            max_backoff: s.max_backoff,
            rate_limit_backoff: s.rate_limit_backoff,
            budget: Arc::clone(&s.budget),
            classifier: Arc::clone(&s.classifier),
        };
        f(&mut next);
        self.settings = Arc::new(next);
        self
    }

    /// Retries at most `n` times per request instead of the config's `num_retries`.
    pub fn with_num_retries(self, n: u32) -> Self {
        self.edit(|s| s.num_retries = n)
    }

    /// Waits at most `max` before retrying a 429, whatever its `Retry-After` says (default 5 s).
    pub fn with_max_backoff(self, max: Duration) -> Self {
        self.edit(|s| s.max_backoff = max)
    }

    /// The first wait after a 429 without `Retry-After`, doubled on each further retry
    /// (default 500 ms; capped by `max_backoff`).
    pub fn with_rate_limit_backoff(self, base: Duration) -> Self {
        self.edit(|s| s.rate_limit_backoff = base)
    }

    /// Uses `budget` (a [`RetryBudget`] with other parameters, tower's `TpsBudget`, ...)
    /// instead of the default [`RetryBudget`].
    pub fn with_budget(self, budget: Arc<dyn Budget + Send + Sync>) -> Self {
        self.edit(|s| s.budget = budget)
    }

    /// The policy this layer applies, for a `tower::retry::Retry` you assemble yourself.
    /// Each request must then carry a fresh [`TriedDeployments`] extension, inserted before
    /// `Retry` clones it, or retries may go back to a deployment already tried.
    pub fn policy<RB>(&self) -> RetryPolicy<RB> {
        RetryPolicy::new(Arc::clone(&self.settings))
    }
}

impl<S> Layer<S> for RetryLayer {
    type Service = Retry<S>;

    fn layer(&self, inner: S) -> Retry<S> {
        Retry {
            inner,
            settings: Arc::clone(&self.settings),
        }
    }
}

/// The service [`RetryLayer`] builds: gives each request a fresh [`TriedDeployments`] and
/// runs it through `tower::retry::Retry` with a [`RetryPolicy`].
#[derive(Clone, Debug)]
pub struct Retry<S> {
    inner: S,
    settings: Arc<Settings>,
}

impl<S> Retry<S> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B, RB> Service<Request<B>> for Retry<S>
where
    S: Service<Request<B>, Response = Response<RB>, Error = BoxError> + Clone,
    B: Clone,
{
    type Response = Response<RB>;
    type Error = BoxError;
    type Future = tower::retry::future::ResponseFuture<RetryPolicy<RB>, S, Request<B>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        if self.settings.num_retries == 0 {
            // One attempt, never re-sent: nothing to exclude on a next one, so no record
            // (and none the caller set: it belongs to another logical request).
            req.extensions_mut().remove::<TriedDeployments>();
        } else {
            // Any record the caller set is replaced: it belongs to another logical request.
            req.extensions_mut().insert(TriedDeployments::new());
        }
        // The ready service takes this request; a clone stays for the next poll_ready.
        let clone = self.inner.clone();
        let ready = std::mem::replace(&mut self.inner, clone);
        tower::retry::Retry::new(RetryPolicy::new(Arc::clone(&self.settings)), ready).call(req)
    }
}
