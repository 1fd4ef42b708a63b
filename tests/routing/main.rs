//! Routing: the layer (health filter, bypass, cooldown, balancing), the health state, the tower contract, retries and the invariants.
//!
//! One test binary per area (link time dominates the test suite); each file is a module.

#[path = "../support/mod.rs"]
mod support;

mod ejection;
mod fallbacks;
mod health_state;
mod invariants;
mod retry;
mod routing;
mod slow_start;
mod stalls;
mod strategies;
mod tower_contract;
mod unsupported;
