//! `thr-gateway`: an OpenAI-compatible gateway with health-check-driven routing.
//!
//! Run with: `thr-gateway --config examples/config.yaml --host 127.0.0.1 [--port 4000]` (see the library
//! target's docs, `thr_gateway`, for the routes, flags and log formats).

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    thr_gateway::run(thr_gateway::Cli::parse())
}
