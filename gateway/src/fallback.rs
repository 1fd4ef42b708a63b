//! Fallbacks in the gateway: the library's `FallbackLayer` sits outside the retry layer
//! (`router_settings.fallbacks`, `default_fallbacks`, `context_window_fallbacks`,
//! `content_policy_fallbacks`), and every answer says which group served it, with
//! LiteLLM's response headers:
//!
//! * `x-litellm-model-group`: the group whose deployment answered (the requested one, or
//!   the fallback group);
//! * `x-litellm-attempted-fallbacks`: how many fallback groups were tried (`0`: the
//!   requested group answered);
//! * `x-litellm-model-id` (set in `app`): the deployment that answered.
//!
//! A fallback group's deployment gets its own model in the body, as any deployment does:
//! the forwarder compares the deployment's model with the body's (the [`BodyModel`]
//! extension), not with the group being tried.

use std::sync::Arc;

use http::{HeaderName, HeaderValue, response::Parts};
use tower_health_routing::routing::ServedBy;

/// `x-litellm-model-group`.
pub const MODEL_GROUP: &str = "x-litellm-model-group";
/// `x-litellm-attempted-fallbacks`.
pub const ATTEMPTED_FALLBACKS: &str = "x-litellm-attempted-fallbacks";

// As `HeaderName`s built once: inserting a `&str` name copies it on every response.
const MODEL_GROUP_NAME: HeaderName = HeaderName::from_static(MODEL_GROUP);
const ATTEMPTED_FALLBACKS_NAME: HeaderName = HeaderName::from_static(ATTEMPTED_FALLBACKS);

/// Small counts as static values (no allocation per response).
const COUNTS: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];

/// The `model` the client's body names, as a request extension (the route, the
/// [`ModelGroup`](tower_health_routing::ModelGroup), changes when a fallback group is tried;
/// this does not).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BodyModel(pub Arc<str>);

/// Sets the served-by headers from the response's [`ServedBy`] extension.
pub fn served_headers(parts: &mut Parts) {
    let Some(served) = parts.extensions.get::<ServedBy>() else {
        return;
    };
    if let Ok(v) = HeaderValue::from_str(served.group().as_str()) {
        parts.headers.insert(MODEL_GROUP_NAME, v);
    }
    let n = served.attempted_fallbacks();
    let count = COUNTS
        .get(n as usize)
        .map_or_else(|| HeaderValue::from(n), |s| HeaderValue::from_static(s));
    parts.headers.insert(ATTEMPTED_FALLBACKS_NAME, count);
}
