//! Test-only (`publish = false`): the fake OpenAI-compatible upstream that the library's
//! tests, the demo example and the gateway's tests share, so it exists once.
//!
//! * [`FakeLlm`]: answers every endpoint a gateway forwards to with small canned replies,
//!   streams SSE for `"stream": true`, and switches at run time into a [`Fault`] (errors,
//!   rate limits with `Retry-After`, slowness, hangs, resets, flapping). Runs on the
//!   caller's runtime.
//! * [`Upstream`]: the same kind of server with the answer scripted per request by a
//!   closure, recording every request (method, path, query, headers, body, HTTP version)
//!   for assertions. Runs on its own thread and runtime, so it shares neither a paused
//!   test clock nor the test runtime's task count.
//! * [`RawUpstream`]: writes scripted bytes, pieces and pauses, for answers a well-behaved
//!   server never sends (hop-by-hop headers, a `101` to a POST, a body cut mid-secret).
//!
//! All three bind `127.0.0.1:0` (or a given port) and run on one server core (`server`: the
//! accept loop, the stop that closes every connection, and HTTP/1.1 + h2c for the first two).

pub mod fake_llm;
pub mod raw;
mod server;
pub mod upstream;

pub use fake_llm::{Control, FakeLlm, Fault};
pub use raw::{RawUpstream, Script};
pub use upstream::{Recorded, Reply, Upstream};
