//! Shared health state across processes: the in-memory store and Redis (behind the `redis` feature, against a real redis-server the tests start).
//!
//! One test binary per area (link time dominates the test suite); each file is a module.

#[path = "../support/mod.rs"]
mod support;

mod push_memory;
mod shared_memory;
#[cfg(feature = "redis")]
mod shared_push;
#[cfg(feature = "redis")]
mod shared_redis;
#[cfg(feature = "redis")]
mod shared_usage;
