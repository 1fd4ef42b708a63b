//! Every route the gateway serves, with who may call it: the table the README lists and
//! the auth test walks.

use http::Method;

use crate::app::API_ROUTES;

/// Who may call a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Anyone (orchestrator probes).
    Open,
    /// The master key, when one is set.
    Key,
    /// `X-Drain-Token`, when `drain_endpoint_token` is set (off unless enabled).
    DrainToken,
}

/// One served route.
#[derive(Clone, Debug)]
pub struct Route {
    /// The method.
    pub method: Method,
    /// The path.
    pub path: String,
    /// Who may call it.
    pub access: Access,
}

/// The health endpoints (served by the library's `HealthEndpoints`) and their access.
pub const HEALTH_ROUTES: &[(&str, Access)] = &[
    ("/health", Access::Key),
    ("/health/liveliness", Access::Open),
    ("/health/liveness", Access::Open),
    ("/health/readiness", Access::Open),
    ("/health/readiness/details", Access::Key),
    ("/health/shared-status", Access::Key),
    ("/health/services", Access::Key),
    ("/health/latest", Access::Key),
    ("/health/history", Access::Key),
    ("/health/backlog", Access::Key),
    // The health page: without the key a 401 whose body is only the login form.
    ("/health/dashboard", Access::Key),
    ("/health/dashboard/data", Access::Key),
];

/// Every route: the API (`POST`, with and without `/v1`), `GET /v1/models`, the health
/// endpoints, the health page, `GET /health/drain`, and `GET /metrics` when `metrics` is
/// served (key-guarded when `metrics_require_auth`, else open). Not listed: the page's
/// script and style (`/health/dashboard/app.js`, `/health/dashboard/app.css`), constant
/// files served to anyone (the login form needs them before any key is given).
pub fn table(metrics: bool, metrics_require_auth: bool) -> Vec<Route> {
    let route = |method: Method, path: String, access| Route {
        method,
        path,
        access,
    };
    let mut v = Vec::new();
    for r in API_ROUTES {
        v.push(route(Method::POST, format!("/v1/{r}"), Access::Key));
        v.push(route(Method::POST, format!("/{r}"), Access::Key));
    }
    v.push(route(Method::GET, "/v1/models".into(), Access::Key));
    v.push(route(Method::GET, "/models".into(), Access::Key));
    for (p, a) in HEALTH_ROUTES {
        v.push(route(Method::GET, (*p).into(), *a));
    }
    v.push(route(
        Method::POST,
        "/health/test_connection".into(),
        Access::Key,
    ));
    // The dashboard's login form posts here (the key as a form field; no cookie).
    v.push(route(Method::POST, "/health/dashboard".into(), Access::Key));
    v.push(route(
        Method::GET,
        "/health/drain".into(),
        Access::DrainToken,
    ));
    if metrics {
        let a = if metrics_require_auth {
            Access::Key
        } else {
            Access::Open
        };
        v.push(route(Method::GET, "/metrics".into(), a));
    }
    v
}
