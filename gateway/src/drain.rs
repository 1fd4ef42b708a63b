//! Draining: LiteLLM's `GET /health/drain` and the same drain on SIGTERM.
//!
//! Once draining starts (the endpoint, or SIGTERM/Ctrl-C), `/health/liveliness`,
//! `/health/liveness` and `/health/readiness` answer 503 `{"status": "shutting_down"}`,
//! new API requests get 503, and in-flight ones finish. The drain call returns
//! `{"status": "drained", "drained_requests": N}` when no API request is in flight or the
//! grace time (`general_settings.graceful_shutdown_timeout`, else the
//! `GRACEFUL_SHUTDOWN_TIMEOUT` variable, else 30 s, LiteLLM's default) has passed since
//! draining started. One grace budget serves the endpoint and the signal alike.
//!
//! The endpoint is off (404) unless `general_settings.enable_drain_endpoint: true`; when
//! `drain_endpoint_token` (or `DRAIN_ENDPOINT_TOKEN`) is set, `X-Drain-Token` must carry it
//! (compared in constant time), else 401 with no side effect.
//!
//! The request path only touches atomics: one load to see whether draining, one
//! increment and one decrement (when the response body ends) per API request.

use std::{
    pin::Pin,
    sync::{
        Arc, OnceLock,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    task,
    time::Duration,
};

use axum::{
    body::Body,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use serde_json::json;
use subtle::ConstantTimeEq;
use tokio::{sync::Notify, time::Instant};
use tower_health_routing::secret::Secret;

/// LiteLLM's default grace time (`DEFAULT_GRACEFUL_SHUTDOWN_TIMEOUT`).
pub const DEFAULT_GRACE: Duration = Duration::from_secs(30);

/// The drain state shared by the request gate (`crate::gate`), the endpoint and the signal handler.
#[derive(Clone, Debug, Default)]
pub struct Drain(Arc<Inner>);

#[derive(Debug, Default)]
struct Inner {
    draining: AtomicBool,
    in_flight: AtomicUsize,
    started: OnceLock<Instant>,
    idle: Notify,
}

/// How the drain endpoint is configured.
#[derive(Clone, Debug, Default)]
pub struct DrainSettings {
    /// `general_settings.enable_drain_endpoint`.
    pub enabled: bool,
    /// `drain_endpoint_token` / `DRAIN_ENDPOINT_TOKEN`.
    pub token: Option<Secret>,
    /// The grace time for in-flight requests.
    pub grace: Duration,
}

impl Drain {
    /// Starts draining (idempotent: the grace time runs from the first call).
    pub fn start(&self) {
        if !self.0.draining.swap(true, Ordering::SeqCst) {
            let _ = self.0.started.set(Instant::now());
            tracing::info!(
                in_flight_requests = self.in_flight(),
                "graceful shutdown started: refusing new API requests, finishing in-flight ones"
            );
        }
    }

    /// Whether draining has started.
    pub fn is_draining(&self) -> bool {
        self.0.draining.load(Ordering::Relaxed)
    }

    /// API requests in flight (until their response bodies end).
    pub fn in_flight(&self) -> usize {
        self.0.in_flight.load(Ordering::SeqCst)
    }

    /// Counts one request in flight until the guard drops.
    pub fn enter(&self) -> InFlight {
        self.0.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(self.clone())
    }

    /// Starts draining and waits until nothing is in flight or `grace` has passed since
    /// draining started; returns how many requests finished while waiting.
    pub async fn drain(&self, grace: Duration) -> usize {
        self.start();
        let initial = self.in_flight();
        let deadline = *self.0.started.get().unwrap_or(&Instant::now()) + grace;
        loop {
            let idle = self.0.idle.notified();
            let now = self.in_flight();
            if now == 0 {
                tracing::info!(drained_requests = initial, "graceful shutdown complete");
                return initial;
            }
            if tokio::time::timeout_at(deadline, idle).await.is_err() {
                let left = self.in_flight();
                tracing::warn!(
                    in_flight_requests = left,
                    grace_s = grace.as_secs_f64(),
                    "graceful shutdown timed out with requests in flight; proceeding"
                );
                return initial.saturating_sub(left);
            }
        }
    }
}

/// One API request in flight; dropping it counts it done.
#[derive(Debug)]
pub struct InFlight(Drain);

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.0.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.0.idle.notify_waiters();
        }
    }
}

fn shutting_down() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        axum::Json(json!({"status": "shutting_down"})),
    )
        .into_response()
}

/// Whether `path` is one of the health probes an orchestrator polls.
fn is_probe(path: &str) -> bool {
    matches!(
        path.trim_end_matches('/'),
        "/health/liveliness" | "/health/liveness" | "/health/readiness"
    )
}

/// Whether `path` is an API route (counted in flight and refused while draining).
fn is_api(path: &str) -> bool {
    !(path == "/metrics" || path == "/health" || path.starts_with("/health/"))
}

/// What [`admit`] decides for a request.
#[derive(Debug)]
pub enum Admission {
    /// Refused while draining, with this answer.
    Refused(Response),
    /// An API request, counted in flight until its response body ends ([`guarded`]).
    Counted(InFlight),
    /// Anything else: passed on, not counted.
    Passed,
}

/// Whether a request to `path` is let in: while draining, probes get 503 and API requests
/// 503 with `Connection: close`.
pub fn admit(drain: &Drain, path: &str) -> Admission {
    if drain.is_draining() {
        if is_probe(path) {
            return Admission::Refused(shutting_down());
        }
        if is_api(path) {
            let mut r = crate::app::error(
                StatusCode::SERVICE_UNAVAILABLE,
                "service_unavailable",
                "the gateway is shutting down; retry on another instance",
            );
            r.headers_mut().insert(
                http::header::CONNECTION,
                http::HeaderValue::from_static("close"),
            );
            return Admission::Refused(r);
        }
    }
    if is_api(path) {
        Admission::Counted(drain.enter())
    } else {
        Admission::Passed
    }
}

/// `resp` with its body holding `guard` until the body ends or drops.
pub fn guarded(resp: Response, guard: InFlight) -> Response {
    let (parts, body) = resp.into_parts();
    Response::from_parts(parts, Body::new(GuardedBody::new(body, Some(guard))))
}

/// The body of the gateway's answers ([`Gate`](crate::gate::Gate)'s): the answer's own,
/// holding an API request's [`InFlight`] guard (when it has one) until it ends or drops.
/// Not boxed again: the answer's body is boxed once.
#[derive(Debug)]
pub struct GuardedBody {
    body: Body,
    _guard: Option<InFlight>,
}

impl GuardedBody {
    /// `body`, holding `guard` until it ends or drops.
    pub fn new(body: Body, guard: Option<InFlight>) -> Self {
        Self {
            body,
            _guard: guard,
        }
    }
}

impl http_body::Body for GuardedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut task::Context<'_>,
    ) -> task::Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// `GET /health/drain`.
pub async fn endpoint(
    State((drain, settings)): State<(Drain, Arc<DrainSettings>)>,
    headers: HeaderMap,
) -> Response {
    if !settings.enabled {
        return crate::app::error(
            StatusCode::NOT_FOUND,
            "not_found",
            "the drain endpoint is off; set general_settings.enable_drain_endpoint: true",
        );
    }
    if let Some(want) = &settings.token {
        let given = headers
            .get("x-drain-token")
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        if !bool::from(given.ct_eq(want.expose().as_bytes())) {
            tracing::debug!("drain endpoint: missing or wrong X-Drain-Token");
            return crate::app::error(
                StatusCode::UNAUTHORIZED,
                "auth_error",
                "Invalid or missing X-Drain-Token",
            );
        }
    }
    let drained = drain.drain(settings.grace).await;
    axum::Json(json!({"status": "drained", "drained_requests": drained})).into_response()
}
