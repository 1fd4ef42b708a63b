//! [`health_router`]: the endpoints as an axum `Router`, to `.merge()` into an app.

use super::HealthEndpoints;

/// The health endpoints as an axum [`Router`](::axum::Router) (feature `axum`): every path
/// of the [module table](super) served by `endpoints`, and the
/// [`HealthDashboard`](super::HealthDashboard) of the same state on its paths, ready to
/// `.merge()` into an app of any state type.
///
/// ```
/// use axum::{Router, routing::get};
/// use tower_health_routing::{Config, Deployment, endpoints::{HealthEndpoints, health_router}, probe::ProbeLoop};
///
/// # fn main() -> Result<(), tower_health_routing::ConfigError> {
/// let cfg = Config::builder()
///     .deployment(Deployment::builder("gpt-4o", "openai/gpt-4o").api_base("http://127.0.0.1:9/v1").build())
///     .build()?;
/// let (state, probes) = ProbeLoop::from_config(cfg)?;
/// let app: Router = Router::new()
///     .route("/", get(|| async { "hello" }))
///     .merge(health_router(HealthEndpoints::new(state, probes)));
/// # let _ = app;
/// # Ok(())
/// # }
/// ```
pub fn health_router<S>(endpoints: HealthEndpoints) -> ::axum::Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    const PATHS: &[&str] = &[
        "/health",
        "/health/liveliness",
        "/health/liveness",
        "/health/readiness",
        "/health/readiness/details",
        "/health/shared-status",
        "/health/services",
        "/health/latest",
        "/health/history",
        "/health/backlog",
    ];
    let with_body = endpoints.clone();
    let test_connection = ::axum::routing::post(move |req: ::axum::extract::Request| {
        let endpoints = with_body.clone();
        async move {
            let (parts, body) = req.into_parts();
            let limited = http_body_util::Limited::new(body, super::test_connection::MAX_BODY);
            match http_body_util::BodyExt::collect(limited).await {
                Ok(c) => {
                    let req = http::Request::from_parts(parts, c.to_bytes());
                    endpoints.call_with_body(req).await
                }
                Err(_) => Ok(super::wire::error(
                    http::StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    "the body is too large (at most 64 KiB) or could not be read",
                )),
            }
        }
    });
    let dashboard = super::HealthDashboard::new(endpoints.state().clone());
    let router = PATHS
        .iter()
        .fold(::axum::Router::new(), |router, path| {
            router.route_service(path, endpoints.clone())
        })
        .route("/health/test_connection", test_connection);
    super::DASHBOARD_PATHS.iter().fold(router, |router, path| {
        router.route_service(path, dashboard.clone())
    })
}
