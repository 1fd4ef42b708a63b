//! The gateway's integration tests, one binary: linking a test binary against the gateway
//! and its dependencies takes longer than compiling its tests, so the former binaries are
//! modules of this one (`cargo test -p thr-gateway --test gateway hardening::` runs one).
//! `faults.rs` stays a binary of its own: it counts the whole process's open file
//! descriptors and live tasks before and after 10,800 requests to find leaks, and holds
//! latency bounds under load, so no other test may share its process.
//! `dashboard.rs` is one too: its one test reruns its own binary in new network and PID
//! namespaces (`unshare`) and drives a headless Chromium process.
//!
//! **Adding tests**: put them in `gateway/tests/gateway/NAME.rs`, add `mod NAME;` below (in
//! order), and take the shared helpers from `crate::support` (`use crate::support::{self,
//! start, chat, ...};`) instead of a `mod support;` of your own: an in-process gateway
//! ([`support::start`], [`support::start_with`]), whole answers ([`support::fetch`],
//! [`support::get`], [`support::post`], [`support::chat`], ...), a bounded wait
//! ([`support::until`]). Tests run in parallel in one process: give temp files and ports no
//! fixed names, and for metrics use [`support::metrics`], the one Prometheus recorder a
//! process may install, and read only the lines of your own route and deployment names.

#[path = "../support/mod.rs"]
mod support;

#[path = "../../../tests/fixtures/provider_table.rs"]
mod provider_table;

mod dropin;
mod ejection;
mod front;
mod gateway;
mod hardening;
mod headers;
mod health_surface;
mod pool;
mod providers;
mod routing;
mod safe_gateway;
mod stalls;
mod usage;
