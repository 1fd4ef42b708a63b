//! The health endpoints, in LiteLLM's JSON shapes: a framework-free tower
//! [`Service`] ([`HealthEndpoints`]) and, with the `axum` feature, `health_router`.
//!
//! # Why here, and why this way
//!
//! Every LiteLLM deployment is watched through these endpoints (load balancers poll
//! `/health/readiness`, orchestrators `/health/liveliness`, dashboards `/health`), so the
//! shapes are LiteLLM's. Two things differ on purpose:
//!
//! * **Nothing secret, ever.** An entry shows an allowlist of fields, never LiteLLM's
//!   "params minus a denylist", and every text shown is scrubbed of every configured
//!   secret (see [`EndpointEntry`]).
//! * **Nothing slow where it must be fast.** Liveliness is a constant; readiness, shared
//!   status and a background-served `/health` read the published snapshot; only an
//!   on-demand `/health` and `/health/services` wait, bounded by the per-probe timeouts and
//!   [`service_timeout`](HealthEndpoints::service_timeout). A hanging upstream cannot slow
//!   `/health/liveliness` or `/health/readiness`.
//!
//! # Endpoints
//!
//! | path | auth | answer |
//! |---|---|---|
//! | `GET /health` | key | `{"healthy_endpoints", "unhealthy_endpoints", "healthy_count", "unhealthy_count", "unchecked_endpoints", "unchecked_count", "unsupported_endpoints", "unsupported_count"}` |
//! | `GET /health?model=NAME` | key | the deployments whose `model` is NAME, else those of route NAME; 503 (same body) when none is healthy; 404 when nothing matches |
//! | `GET /health?model_id=ID` | key | that deployment (wins over `model`); 503 when unhealthy; 404 for an unknown id |
//! | `GET /health/liveliness`, `/health/liveness` | open | 200 `"I'm alive!"`, constant |
//! | `GET /health/readiness` | open | 200 `{"status": "healthy", "db": "Not connected", "cache": null}`; 503 `"unhealthy"` below [`min_healthy_percent`](HealthEndpoints::min_healthy_percent) |
//! | `GET /health/readiness/details` | key | the above plus versions, `success_callbacks` (the registered services), counts, `last_updated` |
//! | `GET /health/shared-status` | key | `{"shared_health_check_enabled", "mode", "backend", "process_id", "lock_holder", "results_age_seconds", "last_checked_by", ...}` |
//! | `GET /health/services?service=NAME` | key | 200 `{"status": "healthy", "service", "details"}`, 503 `{"status": "unhealthy", "service", "error"}`; 400 naming the known services |
//! | `GET /health/latest` | key | `{"latest_health_checks": {model_id: record}, "total_models"}` from the [`HealthHistory`](crate::probe::HealthHistory) |
//! | `GET /health/history` | key | `model`, `status_filter` (`healthy`/`unhealthy`), `limit` (1–[`MAX_HISTORY_LIMIT`], default [`DEFAULT_HISTORY_LIMIT`]), `offset`: `{"health_checks", "total_records", "total_matching", "limit", "offset", "history_size"}`, newest first; 400 naming a bad parameter |
//! | `GET /health/backlog` | key | `{"in_flight_requests", "admitted_requests", "queued_requests", "rejected_requests", "deployments_at_max_parallel_requests", "in_flight_by_model_id"}` |
//! | `POST /health/test_connection` | key | LiteLLM's body (`litellm_params`, `mode`, `model_info`): `{"status": "success" \| "error", "result"}`, never stored; served by [`HealthEndpoints::call_with_body`] |
//! | `GET`/`POST /health/dashboard`, `GET /health/dashboard/data` | key | the health page and its JSON, served by [`HealthDashboard`] (a Service of its own; `health_router` mounts it); its script and style (`/health/dashboard/app.js`, `app.css`) are open |
//!
//! `HEAD` is answered like `GET` without a body; other methods get 405.
//! `Accept: application/health+json` on `/health` and `/health/readiness` gives the IETF
//! draft format (`status`: `pass`/`warn`/`fail`, `checks` keyed `deployment:<id>`;
//! `fail` is a 503).
//!
//! # `/health`: now, or from the background loop
//!
//! With `background_health_checks` off, each call probes now (through
//! [`ProbeLoop::check_now`], which shares the loop's concurrency bound and timeouts) and
//! reports what it found, without publishing it (as LiteLLM does). With it on, the answer
//! is the latest **published** results, with no upstream call: deployments with
//! `disable_background_health_check` are not listed, and deployments not checked yet are
//! listed under `unchecked_endpoints` (neither healthy nor unhealthy: the router treats
//! them as eligible, so calling them unhealthy would be wrong, and leaving them out would
//! hide them).
//!
//! # Auth and detail
//!
//! With `master_key` set, the endpoints marked *key* need it, as `Authorization: Bearer
//! <key>`, `x-litellm-api-key` or `api-key` (compared in constant time), else 401 with a
//! JSON error. `api_base` and `api_version` are shown to admin callers only: with a
//! master key that is a caller who sent it (every caller of `/health`); without one,
//! every caller, as in LiteLLM, where a proxy without a master key is an open admin
//! surface. Set `health_check_details: false` to show only `model`, `model_id` and
//! `exception_status` to anyone. `api_base` never shows `user:password@` or a query string.

mod dashboard;
mod future;
mod history;
mod report;
mod services;
mod status;
mod test_connection;
mod wire;

#[cfg(feature = "axum")]
mod axum;

use std::{
    convert::Infallible,
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, StatusCode, header};
use http_body_util::Full;
use tower_service::Service;

#[cfg(feature = "axum")]
pub use self::axum::health_router;
pub use self::{
    dashboard::{DASHBOARD_PATHS, HealthDashboard},
    future::ResponseFuture,
    history::{DEFAULT_HISTORY_LIMIT, MAX_HISTORY_LIMIT},
    report::{EndpointEntry, HealthReport, REGION_FIELDS},
    services::{
        DEFAULT_SERVICE_TIMEOUT, ServiceCheck, ServiceCheckFn, ServiceCheckFuture, service_check_fn,
    },
    wire::{KeyDigest, has_key, has_key_digest},
};
use self::{
    future::{Kind, strip},
    report::View,
    wire::Resp,
};
use crate::{
    error::ConfigError,
    health::HealthState,
    probe::{ProbeLoop, ProbeTarget},
};

/// The health endpoints as one tower [`Service`]; see the [module docs](self).
///
/// Cheap to clone (a few `Arc`s). It accepts any request body (and ignores it) and answers
/// `http::Response<Full<Bytes>>`, never an error.
///
/// ```
/// use tower::ServiceExt;
/// use tower_health_routing::{Config, Deployment, endpoints::HealthEndpoints, probe::ProbeLoop};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), tower_health_routing::BoxError> {
/// let cfg = Config::builder()
///     .deployment(Deployment::builder("gpt-4o", "openai/gpt-4o").api_base("http://127.0.0.1:9/v1").build())
///     .build()?;
/// let (state, probes) = ProbeLoop::from_config(cfg)?;
/// let endpoints = HealthEndpoints::new(state, probes).min_healthy_percent(50.0)?;
/// let req = http::Request::get("/health/liveliness").body(())?;
/// let resp = endpoints.oneshot(req).await?;
/// assert_eq!(resp.status(), 200);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct HealthEndpoints {
    state: HealthState,
    probes: ProbeLoop,
    services: Arc<[(String, Arc<dyn ServiceCheck>)]>,
    min_healthy_percent: Option<f64>,
    service_timeout: Duration,
}

impl fmt::Debug for HealthEndpoints {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HealthEndpoints")
            .field("services", &self.service_names())
            .field("min_healthy_percent", &self.min_healthy_percent)
            .field("service_timeout", &self.service_timeout)
            .finish_non_exhaustive()
    }
}

impl HealthEndpoints {
    /// Endpoints over `state`, running on-demand rounds with `probes` (use the same loop
    /// as the background checks, so both share one concurrency bound).
    ///
    /// Defaults: the config's `general_settings.min_healthy_percent` (none: readiness is
    /// always 200), no services, a 5 s service timeout.
    pub fn new(state: HealthState, probes: ProbeLoop) -> Self {
        let min_healthy_percent = state.config().health.min_healthy_percent;
        Self {
            state,
            probes,
            services: Arc::from(Vec::new()),
            min_healthy_percent,
            service_timeout: DEFAULT_SERVICE_TIMEOUT,
        }
    }

    /// Readiness answers 503 while fewer than `percent` % of the deployments are healthy
    /// (as the router sees them: a deployment counts unless its last check failed and is
    /// still fresh). An error unless `0 <= percent <= 100`.
    pub fn min_healthy_percent(mut self, percent: f64) -> Result<Self, ConfigError> {
        if !(percent.is_finite() && (0.0..=100.0).contains(&percent)) {
            return Err(ConfigError::invalid(
                "endpoints.min_healthy_percent",
                format!("must be a number from 0 to 100, got {percent}"),
            ));
        }
        self.min_healthy_percent = Some(percent);
        Ok(self)
    }

    /// Registers an integration for `/health/services?service=NAME` (a later one of the
    /// same name replaces it).
    pub fn service(mut self, name: impl Into<String>, check: impl ServiceCheck) -> Self {
        let name = name.into();
        let mut v: Vec<_> = self
            .services
            .iter()
            .filter(|(n, _)| *n != name)
            .cloned()
            .collect();
        v.push((name, Arc::new(check)));
        self.services = v.into();
        self
    }

    /// How long a service check may take before it is reported as failed (default 5 s).
    pub fn service_timeout(mut self, timeout: Duration) -> Self {
        self.service_timeout = timeout;
        self
    }

    /// The state the endpoints read.
    pub fn state(&self) -> &HealthState {
        &self.state
    }

    /// The names of the registered services.
    pub fn service_names(&self) -> Vec<String> {
        self.services.iter().map(|(n, _)| n.clone()).collect()
    }

    /// The `/health` report for `target`, as an admin sees it (probing now, or from the
    /// published results when background checks are on; see the [module docs](self)).
    /// `None` when `target` matches no deployment.
    pub async fn report(&self, target: ProbeTarget) -> Option<HealthReport> {
        let view = View {
            details: self.state.config().health.details,
            admin: true,
        };
        self.report_with(target, view).await
    }

    async fn report_with(&self, target: ProbeTarget, view: View) -> Option<HealthReport> {
        let scrubber = self.state.scrubber().clone();
        let skip = self.state.config().health.skip_disabled_background_models;
        let (listed, unsupported) = {
            let snap = self.state.load();
            if crate::probe::targets(&snap, &target, false).is_empty() {
                return None;
            }
            let background = self.state.config().health.background_health_checks;
            let ds = crate::probe::targets(&snap, &target, background || skip);
            let mut unsupported = HealthReport::default();
            unsupported.add_unsupported(&snap, &ds, view, &scrubber);
            let listed =
                background.then(|| HealthReport::from_snapshot(&snap, &ds, view, &scrubber));
            (listed, unsupported)
        };
        let mut report = match listed {
            Some(r) => r,
            None => {
                let round = self.probes.check_now(target).await;
                HealthReport::from_round(&round.results, view, &scrubber)
            }
        };
        report.unsupported_endpoints = unsupported.unsupported_endpoints;
        report.unsupported_count = unsupported.unsupported_count;
        report.probe_budget = self.probes.budget_status().map(|b| report::budget_json(&b));
        Some(report)
    }

    /// Answers a request whose body has been read: `POST /health/test_connection` (the
    /// one endpoint that reads a body; at most 64 KiB), and every other endpoint as
    /// [`call`](Service::call) does. The tower [`Service`] takes bodies of any type and
    /// cannot read them, so it answers `POST /health/test_connection` with 405; mount
    /// this method there (`health_router` does).
    pub fn call_with_body(&self, req: Request<Bytes>) -> ResponseFuture {
        let (parts, body) = req.into_parts();
        let path = parts.uri.path().trim_end_matches('/');
        if path != "/health/test_connection" {
            return self.clone().call(Request::from_parts(parts, body));
        }
        if parts.method != Method::POST {
            let mut resp = wire::error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "/health/test_connection answers POST",
            );
            resp.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("POST"));
            return ResponseFuture::ready(resp);
        }
        if !self.admin(&parts) {
            return ResponseFuture::ready(wire::unauthorized());
        }
        let (state, probes) = (self.state.clone(), self.probes.clone());
        ResponseFuture {
            kind: Kind::Pending {
                fut: Box::pin(test_connection::answer(state, probes, body)),
                head: false,
            },
        }
    }

    /// An error about the client's request. Its text never quotes request input (path,
    /// query values): an echo would let a caller test guesses against the scrubber, a secret
    /// oracle. It is scrubbed all the same.
    fn client_error(&self, status: StatusCode, kind: &str, msg: &str) -> Resp {
        wire::error(status, kind, self.state.scrubber().scrub(msg))
    }

    /// Whether the request is allowed to see admin endpoints.
    fn admin(&self, req: &http::request::Parts) -> bool {
        match &self.state.config().master_key {
            Some(key) => wire::has_key(&req.headers, key),
            None => true,
        }
    }

    fn dispatch(&self, parts: &http::request::Parts) -> Answer {
        let path = parts.uri.path();
        let path = if path.len() > 1 {
            path.trim_end_matches('/')
        } else {
            path
        };
        let protected = match path {
            "/health/liveliness" | "/health/liveness" => {
                return Answer::Ready(liveliness());
            }
            "/health/readiness" => {
                let hj = wire::wants_health_json(&parts.headers);
                return Answer::Ready(status::readiness(&self.state, self.min_healthy_percent, hj));
            }
            "/health"
            | "/health/readiness/details"
            | "/health/shared-status"
            | "/health/services"
            | "/health/latest"
            | "/health/history"
            | "/health/backlog" => path,
            _ => {
                let msg = "no health endpoint at this path; the health endpoints are /health, \
                           /health/liveliness, /health/liveness, /health/readiness, \
                           /health/readiness/details, /health/shared-status, /health/services, \
                           /health/latest, /health/history, /health/backlog and \
                           POST /health/test_connection";
                return Answer::Ready(self.client_error(StatusCode::NOT_FOUND, "not_found", msg));
            }
        };
        if !self.admin(parts) {
            tracing::debug!(path, "health endpoint: missing or wrong master key");
            return Answer::Ready(wire::unauthorized());
        }
        match protected {
            "/health/readiness/details" => Answer::Ready(status::readiness_details(
                &self.state,
                self.min_healthy_percent,
                &self.service_names(),
            )),
            "/health/shared-status" => Answer::Ready(status::shared_status(&self.state)),
            "/health/services" => self.services_answer(parts),
            "/health/latest" => Answer::Ready(history::latest(&self.state)),
            "/health/backlog" => Answer::Ready(history::backlog(&self.state)),
            "/health/history" => Answer::Ready(match history::parse_query(parts.uri.query()) {
                Ok(q) => history::history(&self.state, &q),
                Err(e) => self.client_error(StatusCode::BAD_REQUEST, "bad_request", &e),
            }),
            _ => self.health_answer(parts),
        }
    }

    fn health_answer(&self, parts: &http::request::Parts) -> Answer {
        let q = parts.uri.query();
        let (model, model_id) = match (
            wire::query_param(q, "model"),
            wire::query_param(q, "model_id"),
        ) {
            (Ok(m), Ok(i)) => (m, i),
            (Err(e), _) | (_, Err(e)) => {
                return Answer::Ready(self.client_error(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    &e,
                ));
            }
        };
        let (target, unknown) = match (model_id, model) {
            (Some(id), _) => (
                ProbeTarget::ModelId(id.clone()),
                "unknown model_id: no deployment has the requested id".to_owned(),
            ),
            (None, Some(m)) => (
                ProbeTarget::Model(m.clone()),
                "unknown model: no deployment has the requested model or route name".to_owned(),
            ),
            (None, None) => (ProbeTarget::All, String::new()),
        };
        let narrowed = target != ProbeTarget::All;
        let view = View {
            details: self.state.config().health.details,
            admin: true,
        };
        let health_json = wire::wants_health_json(&parts.headers);
        let this = self.clone();
        Answer::Pending(Box::pin(async move {
            let Some(report) = this.report_with(target, view).await else {
                return this.client_error(StatusCode::NOT_FOUND, "not_found", &unknown);
            };
            if health_json {
                let (code, body) = status::health_json(&report, narrowed);
                return wire::json_as(code, wire::HEALTH_JSON, &body);
            }
            let code = if narrowed && report.healthy_count == 0 {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::OK
            };
            wire::json(code, &report)
        }))
    }
}

/// `"I'm alive!"`: constant, built without touching any state.
fn liveliness() -> Resp {
    wire::bytes(
        StatusCode::OK,
        wire::JSON,
        Bytes::from_static(b"\"I'm alive!\""),
    )
}

enum Answer {
    Ready(Resp),
    Pending(Pin<Box<dyn Future<Output = Resp> + Send>>),
}

impl<B> Service<Request<B>> for HealthEndpoints {
    type Response = http::Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let (parts, _body) = req.into_parts();
        let head = parts.method == Method::HEAD;
        if parts.method != Method::GET && !head {
            let msg = if parts.uri.path().trim_end_matches('/') == "/health/test_connection" {
                "POST /health/test_connection needs its body: serve it with \
                 HealthEndpoints::call_with_body (health_router does)"
                    .to_owned()
            } else {
                format!(
                    "the health endpoints answer GET and HEAD, not {}",
                    parts.method
                )
            };
            let mut resp = wire::error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", msg);
            resp.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return ResponseFuture::ready(resp);
        }
        match self.dispatch(&parts) {
            Answer::Ready(resp) => ResponseFuture::ready(strip(resp, head)),
            Answer::Pending(fut) => ResponseFuture {
                kind: Kind::Pending { fut, head },
            },
        }
    }
}
