//! `GET /v1/models` health filtering (LiteLLM's `healthy_model_filter`): with
//! `?healthy_only=true` or `general_settings.model_list_healthy_only: true`, only routes
//! with a deployment that may be picked now are listed. Presentation only: a hidden route
//! stays callable.

use axum::response::IntoResponse;
use tower_health_routing::{HealthEndpoints, HealthState};

/// The routes to keep (sorted), or `None` when the filter is off for this request.
pub fn healthy_only(state: &HealthState, query: Option<&str>) -> Option<Vec<String>> {
    let asked = query.is_some_and(|q| {
        q.split('&').any(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            k == "healthy_only"
                && ["true", "1", "yes", "on"]
                    .iter()
                    .any(|t| v.eq_ignore_ascii_case(t))
        })
    });
    (asked || state.config().health.model_list_healthy_only).then(|| state.pickable_routes())
}

/// `POST /health/test_connection`, the one health endpoint that reads a body (the library's
/// tower `Service` cannot; [`HealthEndpoints::call_with_body`] can).
pub fn test_connection_route(endpoints: HealthEndpoints) -> axum::Router {
    axum::Router::new().route(
        "/health/test_connection",
        axum::routing::post(move |req: axum::extract::Request| {
            let endpoints = endpoints.clone();
            async move {
                let (parts, body) = req.into_parts();
                match axum::body::to_bytes(body, 64 << 10).await {
                    Ok(bytes) => endpoints
                        .call_with_body(http::Request::from_parts(parts, bytes))
                        .await
                        .into_response(),
                    Err(_) => crate::app::error(
                        http::StatusCode::PAYLOAD_TOO_LARGE,
                        "invalid_request_error",
                        "the body is too large (at most 64 KiB) or could not be read",
                    ),
                }
            }
        }),
    )
}
