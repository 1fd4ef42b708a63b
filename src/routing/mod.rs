//! [`HealthRouting`]: the tower service that routes each request to one healthy deployment.
//!
//! For each request it finds the route ([`RouteExtractor`]), picks a deployment (see
//! [`select`](self) below), attaches it to the request as a [`SelectedDeployment`]
//! extension, and calls the inner service, which forwards the request wherever the
//! deployment says. The response future records the outcome (for cooldown and latency);
//! the response body holds the deployment's in-flight count until it ends.
//!
//! Errors are [`BoxError`]s, downcastable to [`UnknownRoute`](crate::UnknownRoute),
//! [`NoDeploymentAvailable`](crate::NoDeploymentAvailable),
//! [`MissingRoute`], or whatever the inner service returned.
//!
//! # With axum
//!
//! The service is fallible, so axum needs the errors turned into responses with
//! `HandleErrorLayer` (a 429 with `Retry-After` when every deployment cools down):
//!
//! ```
//! use axum::{Router, error_handling::HandleErrorLayer, http::StatusCode, response::IntoResponse, routing::post};
//! use tower::ServiceBuilder;
//! use tower_health_routing::{BoxError, Config, Deployment, HealthRoutingLayer, NoDeploymentAvailable, UnknownRoute};
//!
//! async fn to_response(err: BoxError) -> axum::response::Response {
//!     if let Some(e) = err.downcast_ref::<NoDeploymentAvailable>() {
//!         let secs = e.retry_after().as_secs().max(1).to_string();
//!         return (StatusCode::TOO_MANY_REQUESTS, [("retry-after", secs)], e.to_string()).into_response();
//!     }
//!     if err.is::<UnknownRoute>() {
//!         return (StatusCode::BAD_REQUEST, err.to_string()).into_response();
//!     }
//!     (StatusCode::BAD_GATEWAY, "upstream failed").into_response()
//! }
//!
//! let cfg = Config::builder()
//!     .deployment(Deployment::builder("gpt-4o", "openai/gpt-4o").api_base("http://127.0.0.1:9/v1").build())
//!     .build()?;
//! let app: Router = Router::new()
//!     .route("/v1/chat/completions", post(|| async { "forwarded" }))
//!     .route_layer(
//!         ServiceBuilder::new()
//!             .layer(HandleErrorLayer::new(to_response))
//!             .layer(HealthRoutingLayer::new(cfg)),
//!     );
//! # let _ = app;
//! # Ok::<(), tower_health_routing::ConfigError>(())
//! ```
//!
//! A real gateway also sets the [`ModelGroup`](crate::ModelGroup) from the JSON body's
//! `"model"` before this layer (or uses [`route_fn`]).

mod extract;
pub mod fallback;
pub(crate) mod future;
mod layer;
pub(crate) mod select;
mod stall;
pub(crate) mod table;

use std::{
    sync::Arc,
    task::{Context, Poll},
};

use arc_swap::ArcSwap;

use http::{Request, Response};
use tower_service::Service;

pub use extract::{FromExtension, FromHeader, RouteExtractor, RouteFn, route_fn};
pub use fallback::{Fallback, FallbackBody, FallbackFuture, FallbackLayer, ServedBy};
pub use future::{ResponseBody, ResponseFuture, TokenUsage};
pub use layer::HealthRoutingLayer;
pub use select::{Pick, PickError, Picker};

use crate::{
    BoxError,
    deployment::{Deployment, DeploymentId},
    error::MissingRoute,
    health::{EntryCore, HealthState},
    stats::DeploymentStats,
};
use future::{InFlight, Observer};

/// The deployment chosen for a request, attached to the request (for the inner service)
/// as an extension. The response tells it too (for logging or an `x-litellm-model-id`
/// header): [`ResponseBody::selected_deployment`], at no cost, or, with
/// [`HealthRoutingLayer::with_response_extension`], as a response extension (which costs a
/// response that has none its extension map: three small allocations).
///
/// ```
/// # use tower_health_routing::SelectedDeployment;
/// async fn forward(req: http::Request<String>) -> Result<http::Response<String>, std::convert::Infallible> {
///     let chosen = req.extensions().get::<SelectedDeployment>().expect("set by HealthRouting");
///     let base = chosen.deployment().params().api_base.clone().unwrap_or_default();
///     Ok(http::Response::new(format!("would forward to {base}")))
/// }
/// ```
#[derive(Clone)]
pub struct SelectedDeployment {
    /// The deployment and its statistics, as the snapshot holds them (one `Arc`).
    core: Arc<EntryCore>,
    bypassed: bool,
}

impl std::fmt::Debug for SelectedDeployment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SelectedDeployment")
            .field("deployment", &self.core.deployment.id())
            .field("bypassed", &self.bypassed)
            .finish_non_exhaustive()
    }
}

impl SelectedDeployment {
    /// Adds `tokens` (prompt + completion) to the deployment's usage this minute, for
    /// `usage-based-routing` and `tpm` limits. Lock-free and cheap (one atomic
    /// compare-and-swap): the forwarder calls it when it reads a response's `usage`, for
    /// example from the last chunk of a stream. A non-streamed answer may instead carry a
    /// [`TokenUsage`] response extension.
    pub fn record_tokens(&self, tokens: u64) {
        let now = crate::time::nanos_since(self.core.owner.epoch, tokio::time::Instant::now());
        self.core
            .stats
            .add_tokens(crate::stats::minute_of(now), tokens);
    }

    /// The deployment to forward to.
    pub fn deployment(&self) -> &Arc<Deployment> {
        &self.core.deployment
    }

    /// The deployment's statistics.
    pub(crate) fn stats(&self) -> &DeploymentStats {
        &self.core.stats
    }

    /// Whether the health filter was skipped because every deployment of the route had failed its check.
    pub fn bypassed_health_filter(&self) -> bool {
        self.bypassed
    }
}

impl std::ops::Deref for SelectedDeployment {
    type Target = Deployment;
    fn deref(&self) -> &Deployment {
        &self.core.deployment
    }
}

/// The request's estimated input tokens, as a request extension set by the caller (the
/// gateway counts or estimates the prompt). With `enable_pre_call_checks`, deployments
/// whose `model_info.max_input_tokens` is smaller are skipped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestTokens(pub u32);

/// Deployments a request must not be routed to, as a request extension set by the caller.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExcludeDeployments(pub Vec<DeploymentId>);

/// The deployments a request has been sent to, shared by every clone of the request (a
/// request extension). [`HealthRouting`] skips the deployments listed and adds the one it
/// picks, so a retry layer above it that re-sends a clone goes to another deployment.
///
/// Insert a fresh one per logical request, before the retry layer clones it.
#[derive(Clone, Debug, Default)]
pub struct TriedDeployments(Arc<ArcSwap<Vec<DeploymentId>>>);

impl TriedDeployments {
    /// An empty record.
    pub fn new() -> Self {
        Self::default()
    }

    /// The deployments tried so far, in order.
    pub fn ids(&self) -> Arc<Vec<DeploymentId>> {
        self.0.load_full()
    }

    /// Records one more.
    pub fn push(&self, id: DeploymentId) {
        self.0.rcu(|v| {
            let mut v = Vec::clone(v);
            v.push(id.clone());
            v
        });
    }
}

/// Routes each request to one deployment of its route; see the [module docs](self).
#[derive(Clone, Debug)]
pub struct HealthRouting<S, E = FromExtension> {
    inner: S,
    picker: Picker,
    extractor: E,
    /// Whether responses carry the [`SelectedDeployment`] extension (opt-in).
    respond_with_selected: bool,
}

impl<S, E> HealthRouting<S, E> {
    pub(crate) fn new(inner: S, picker: Picker, extractor: E, respond_with_selected: bool) -> Self {
        // Its answers count in the minute the state's watchdog keeps: no clock read each.
        picker.state().want_minute();
        Self {
            inner,
            picker,
            extractor,
            respond_with_selected,
        }
    }

    /// The shared health state.
    pub fn state(&self) -> &HealthState {
        self.picker.state()
    }

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

impl<S, E, B, RB> Service<Request<B>> for HealthRouting<S, E>
where
    S: Service<Request<B>, Response = Response<RB>>,
    S::Error: Into<BoxError>,
    E: RouteExtractor<B>,
{
    type Response = Response<ResponseBody<RB>>;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    /// Small enough to inline into the caller: the decision is `decide` (not generic,
    /// compiled once), so what is left here is the route, the request's extension and
    /// the inner call, and inlined, the request and the future are built in place rather
    /// than copied (fewer `memcpy`s of the 224-byte request).
    #[inline]
    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let picked = {
            let Some(route) = self.extractor.extract(&req) else {
                return ResponseFuture::failed(Box::new(MissingRoute::new()));
            };
            decide(&mut self.picker, &route, req.extensions())
        };
        let Decided {
            core,
            route_len,
            bypassed,
            started,
            latency,
        } = match picked {
            Ok(p) => p,
            Err(e) => return ResponseFuture::failed(e),
        };
        let selected = SelectedDeployment { core, bypassed };
        let observer = Observer {
            guard: InFlight::new(selected.clone(), started),
            route_len,
            latency,
            respond_with_selected: self.respond_with_selected,
        };
        req.extensions_mut().insert(selected);
        ResponseFuture::called(self.inner.call(req), observer)
    }
}

/// What [`decide`] picked for a request.
struct Decided {
    /// The deployment (the snapshot's entry for it).
    core: Arc<EntryCore>,
    /// The size of its route.
    route_len: usize,
    /// Whether the health filter was bypassed.
    bypassed: bool,
    /// When the request was routed (nanos since the state's epoch), if the clock was read:
    /// always when latency samples are taken, else only when the decision needed the time
    /// (a deployment of the route cooling down, a strategy reading it).
    started: Option<u64>,
    /// Whether the answer's latency is sampled (some picker uses `latency-based-routing`).
    latency: bool,
}

/// The decision of [`HealthRouting::call`] for a request to `route` with extensions `ext`:
/// the deployment picked, recorded in the request's [`TriedDeployments`] if it has one, or
/// the error to answer with.
///
/// The clock is read only when something needs the time: a latency sample's start, or the
/// decision itself (a cooldown to check, a strategy reading the time). An answer that
/// needs its minute reads the state's kept minute (or the clock) then.
///
/// Not generic over the service, the body or the extractor, so it is compiled once and
/// the generic `call` stays small.
fn decide(picker: &mut Picker, route: &str, ext: &http::Extensions) -> Result<Decided, BoxError> {
    // Most requests carry no extension but their route's: then none of the look-ups
    // below (exclusions, tries, tokens) can find anything, and one look-up replaces them.
    let plain = match ext.len() {
        0 => true,
        1 => ext.get::<crate::ModelGroup>().is_some(),
        _ => false,
    };
    let fixed = if plain {
        &[][..]
    } else {
        ext.get::<ExcludeDeployments>()
            .map_or(&[][..], |e| &e.0[..])
    };
    let tried = if plain {
        None
    } else {
        ext.get::<TriedDeployments>()
    };
    let tried_ids = tried.map(TriedDeployments::ids);
    let joined: Vec<DeploymentId>;
    let exclude = match &tried_ids {
        None => fixed,
        Some(t) if fixed.is_empty() => &t[..],
        Some(t) => {
            joined = fixed.iter().chain(t.iter()).cloned().collect();
            &joined[..]
        }
    };
    // Only pre-call checks read the request's tokens: without them, no look-up.
    let tokens = if !plain && picker.reads_tokens() {
        ext.get::<RequestTokens>().map(|t| t.0)
    } else {
        None
    };
    let epoch = picker.state().shared.epoch;
    let mut now =
        crate::time::LazyNow::new(|| crate::time::nanos_since(epoch, tokio::time::Instant::now()));
    let latency = picker.wants_latency();
    if latency {
        // The latency sample's start.
        now.get();
    }
    let picked = picker.pick_current_with(route, exclude, tokens, &mut now, |res| match res {
        Ok(p) => {
            if let Some(tried) = tried {
                tried.push(p.deployment().id().clone());
            }
            Ok((
                Arc::clone(&p.entry.core),
                p.route_len,
                p.bypassed_health_filter(),
            ))
        }
        Err(e) => Err(e.into_box_error()),
    });
    let (core, route_len, bypassed) = picked?;
    Ok(Decided {
        core,
        route_len,
        bypassed,
        started: now.peek(),
        latency,
    })
}
