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
//! extension, set when the config has fallbacks; without any, the group is never changed
//! and is the body's model), not with the group being tried.

use std::sync::Arc;

use http::{HeaderName, HeaderValue};
use tower_health_routing::ModelGroup;

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
/// [`ModelGroup`], changes when a fallback group is tried;
/// this does not).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BodyModel(pub Arc<str>);

/// The header values of a config's group names and deployment ids, built once: a response
/// clones one (a reference count) instead of copying the name into a new value.
#[derive(Debug, Default)]
pub struct HeaderValues(
    std::collections::HashMap<Box<str>, HeaderValue, foldhash::fast::RandomState>,
);

impl HeaderValues {
    /// The values of every route (`model_name`) and deployment id of `config`.
    pub fn of(config: &tower_health_routing::Config) -> Self {
        let mut map = std::collections::HashMap::default();
        for d in &config.deployments {
            for name in [d.route(), d.id().as_str()] {
                if map.contains_key(name) {
                    continue;
                }
                let bytes = bytes::Bytes::from(name.to_owned());
                if let Ok(v) = HeaderValue::from_maybe_shared(bytes) {
                    // A first clone makes the bytes shared: later clones only count.
                    drop(v.clone());
                    map.insert(Box::from(name), v);
                }
            }
        }
        Self(map)
    }

    /// The value of `name`: the one built at start-up, else a new one (`None` when `name`
    /// cannot be a header value).
    pub fn get(&self, name: &str) -> Option<HeaderValue> {
        match self.0.get(name) {
            Some(v) => Some(v.clone()),
            None => HeaderValue::from_str(name).ok(),
        }
    }
}

/// Sets the served-by headers: `group` answered after `attempted` fallback groups were
/// tried (what the fallback layer's response body says,
/// [`FallbackBody::served_by`](tower_health_routing::routing::FallbackBody::served_by)), with
/// the values of `values`.
pub fn set_served_headers(
    headers: &mut http::HeaderMap,
    group: &ModelGroup,
    attempted: u32,
    values: &HeaderValues,
) {
    if let Some(v) = values.get(group.as_str()) {
        headers.insert(MODEL_GROUP_NAME, v);
    }
    let count = COUNTS.get(attempted as usize).map_or_else(
        || HeaderValue::from(attempted),
        |s| HeaderValue::from_static(s),
    );
    headers.insert(ATTEMPTED_FALLBACKS_NAME, count);
}
