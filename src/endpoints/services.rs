//! `/health/services`: named integrations ([`ServiceCheck`]) checked on demand, each
//! bounded by a timeout and scrubbed of every configured secret.

use std::{fmt, future::Future, pin::Pin, sync::Arc, time::Duration};

use http::StatusCode;
use serde_json::{Value, json};

use super::{Answer, HealthEndpoints, wire};

/// The default time a [`ServiceCheck`] may take before it counts as failed.
pub const DEFAULT_SERVICE_TIMEOUT: Duration = Duration::from_secs(5);

/// The future a [`ServiceCheck`] returns: details (any JSON) or a short, secret-free message.
pub type ServiceCheckFuture<'a> = Pin<Box<dyn Future<Output = Result<Value, String>> + Send + 'a>>;

/// A named integration `/health/services?service=NAME` can check (Redis, a database, a
/// logging sink).
///
/// The endpoint bounds the check with [`HealthEndpoints::service_timeout`] and scrubs every
/// configured secret out of what it returns; still, return messages meant for people, not
/// connection strings.
///
/// ```
/// use tower_health_routing::endpoints::{ServiceCheck, ServiceCheckFuture};
///
/// struct Disk;
/// impl ServiceCheck for Disk {
///     fn check(&self) -> ServiceCheckFuture<'_> {
///         Box::pin(async { Ok(serde_json::json!({"free_gb": 42})) })
///     }
/// }
/// ```
pub trait ServiceCheck: Send + Sync + 'static {
    /// Checks the integration once.
    fn check(&self) -> ServiceCheckFuture<'_>;
}

impl<C: ServiceCheck + ?Sized> ServiceCheck for Arc<C> {
    fn check(&self) -> ServiceCheckFuture<'_> {
        (**self).check()
    }
}

/// A [`ServiceCheck`] from an async closure; see [`service_check_fn`].
#[derive(Clone)]
pub struct ServiceCheckFn<F>(F);

impl<F> fmt::Debug for ServiceCheckFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ServiceCheckFn")
    }
}

/// Makes a [`ServiceCheck`] of an async closure.
///
/// ```
/// use tower_health_routing::endpoints::service_check_fn;
/// let check = service_check_fn(|| async { Ok(serde_json::json!({"queue_depth": 3})) });
/// # let _ = check;
/// ```
pub fn service_check_fn<F, Fut>(f: F) -> ServiceCheckFn<F>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Value, String>> + Send + 'static,
{
    ServiceCheckFn(f)
}

impl<F, Fut> ServiceCheck for ServiceCheckFn<F>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Value, String>> + Send + 'static,
{
    fn check(&self) -> ServiceCheckFuture<'_> {
        Box::pin((self.0)())
    }
}

impl HealthEndpoints {
    pub(super) fn services_answer(&self, parts: &http::request::Parts) -> Answer {
        let known = || {
            if self.services.is_empty() {
                "no services are registered".to_owned()
            } else {
                format!("known services: {}", self.service_names().join(", "))
            }
        };
        let name = match wire::query_param(parts.uri.query(), "service") {
            Ok(Some(n)) => n,
            Ok(None) => {
                let msg = format!("missing query parameter `service`; {}", known());
                return Answer::Ready(self.client_error(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    &msg,
                ));
            }
            Err(e) => {
                return Answer::Ready(self.client_error(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    &e,
                ));
            }
        };
        let Some((name, check)) = self.services.iter().find(|(n, _)| *n == name).cloned() else {
            let msg = format!("unknown service (query parameter `service`); {}", known());
            return Answer::Ready(self.client_error(StatusCode::BAD_REQUEST, "bad_request", &msg));
        };
        let (timeout, scrubber) = (self.service_timeout, self.state.scrubber().clone());
        Answer::Pending(Box::pin(async move {
            let scrub = |t: &str| scrubber.scrub(t).into_owned();
            match tokio::time::timeout(timeout, check.check()).await {
                Ok(Ok(details)) => {
                    let body = json!({"status": "healthy", "service": name,
                        "details": wire::scrub_json(details, &scrub)});
                    wire::json(StatusCode::OK, &body)
                }
                Ok(Err(e)) => {
                    let body = json!({"status": "unhealthy", "service": name, "error": scrub(&e)});
                    wire::json(StatusCode::SERVICE_UNAVAILABLE, &body)
                }
                Err(_) => {
                    let e = format!("timed out after {:.3}s", timeout.as_secs_f64());
                    let body = json!({"status": "unhealthy", "service": name, "error": e});
                    wire::json(StatusCode::SERVICE_UNAVAILABLE, &body)
                }
            }
        }))
    }
}
