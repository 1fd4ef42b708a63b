//! `GET /v1/models` health filtering (LiteLLM's `healthy_model_filter`): with
//! `?healthy_only=true` or `general_settings.model_list_healthy_only: true`, only routes
//! with a deployment that may be picked now are listed. Presentation only: a hidden route
//! stays callable.

use tower_health_routing::HealthState;

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
