//! `thr-gateway`: an OpenAI-compatible gateway with health-check-driven routing.
//!
//! Run with: `thr-gateway --config examples/config.yaml --host 127.0.0.1 [--port 4000]` (see the library
//! target's docs, `thr_gateway`, for the routes, flags and log formats).

use std::process::ExitCode;

use clap::Parser;

/// The binary's allocator (the `jemalloc` feature, on by default): a proxy allocates and
/// frees small buffers on every request, often on another worker thread than the one that
/// allocated them, which jemalloc's thread caches serve in fewer instructions than glibc's
/// arenas, and it hands freed memory back to the system in time (the gateway holds less).
#[cfg(all(feature = "jemalloc", not(target_env = "msvc")))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    thr_gateway::run(thr_gateway::Cli::parse())
}
