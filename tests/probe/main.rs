//! Probes: configuration, environment, the HTTP prober against real local upstreams, logs, the loop, providers, rounds and request shapes.
//!
//! One test binary per area (link time dominates the test suite); each file is a module.

#[path = "../support/mod.rs"]
mod support;

mod probe_config;
mod probe_env;
mod probe_http;
mod probe_logs;
mod probe_loop;
mod probe_providers;
mod probe_rounds;
mod probe_savings;
mod probe_shapes;
mod tiers_budget;
mod traffic_probe;
