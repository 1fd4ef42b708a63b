//! The health endpoints (auth, axum router, secrets, status codes) and the metrics.
//!
//! One test binary per area (link time dominates the test suite); each file is a module.

#[path = "../support/mod.rs"]
mod support;

mod dashboard;
mod endpoints;
mod endpoints_auth;
#[cfg(feature = "axum")]
mod endpoints_axum;
mod endpoints_secrets;
mod endpoints_status;
mod metrics;
