//! Start-up checks that let the gateway take any config LiteLLM takes, and say what it does
//! not do with it.
//!
//! * **Unforwardable deployments.** A deployment the forwarder cannot send a request to
//!   (the provider catalog's [`provider::forward_endpoint`] fails for its mode: a provider
//!   it does not speak, no `api_base` where the provider has none, a mode the provider
//!   lacks) is marked [`Unsupported`] and unroutable once, here: it is never probed, never
//!   picked for traffic, and listed in `/health` under `unsupported_endpoints`. A route left
//!   with none answers `501 Not Implemented` naming the providers' reasons.
//! * **Timeouts** ([`request_timeout`]): a deployment's `timeout` / `stream_timeout`, else
//!   the config's, else `--timeout`'s default.
//! * **Unimplemented settings** ([`Config::unimplemented_settings`]) are listed once at
//!   warn level by their YAML path.
//! * **Who may call.** Settings that decide it in LiteLLM ([`AUTH_SETTINGS`]: custom auth,
//!   JWT, virtual keys behind `database_url`, ...) get an error-level line: only the master
//!   key is accepted, so callers relying on them are refused. Without a master key such a
//!   config would otherwise leave the gateway open to everyone; it refuses every caller
//!   instead (an unguessable key nobody holds), so the gateway never becomes more open
//!   because a setting was dropped.

use std::time::Duration;

use tower_health_routing::{
    Config, Deployment, HealthState,
    config::AUTH_SETTINGS,
    health::Unsupported,
    probe::resolve_mode,
    provider::{self, ProviderError},
    secret::Secret,
};

use crate::app::API_ROUTES;

/// Marks every deployment of `state` that the forwarder cannot send traffic to as
/// unsupported and unroutable (see the [module docs](self)); returns how many.
pub fn mark_unforwardable(state: &HealthState) -> usize {
    let marks: Vec<_> = {
        let snap = state.load();
        // Deployments listed alike (thousands, in a large config, often a few keys in
        // turn) get one answer: the last few are kept.
        const RECENT: usize = 8;
        let mut recent: Vec<(&Deployment, Option<Unsupported>)> = Vec::with_capacity(RECENT);
        snap.deployments()
            .filter_map(|d| {
                let mark = match recent.iter().find(|(seen, _)| seen.same_upstream(d)) {
                    Some((_, mark)) => mark.clone(),
                    None => {
                        let mark = unforwardable(state, d);
                        if recent.len() == RECENT {
                            recent.remove(0);
                        }
                        recent.push((d, mark.clone()));
                        mark
                    }
                }?;
                Some((d.id().clone(), mark))
            })
            .collect()
    };
    let n = marks.len();
    state.mark_unsupported(marks);
    n
}

/// Why the forwarder cannot send `d` traffic, if it cannot.
fn unforwardable(state: &HealthState, d: &Deployment) -> Option<Unsupported> {
    let mode = resolve_mode(d);
    // A mode no API route serves (batch, realtime, ...) gets no traffic anyway.
    let path = API_ROUTES
        .iter()
        .find(|p| provider::mode_for_path(p) == Some(mode))?;
    let why = match provider::check_forward_endpoint(d, path) {
        Ok(()) => return None,
        Err(ProviderError::Invalid { field, why }) => format!("{field}: {why}"),
        Err(e) => e.to_string(),
    };
    let reason = state.scrubber().scrub(&why).into_owned();
    Some(Unsupported::new(
        format!("the gateway cannot forward to it: {reason}"),
        false,
    ))
}

/// Logs the config's unimplemented settings (warn) and its auth settings (error), once.
/// Returns the config to serve: when an auth setting is present and no master key is set,
/// one nobody holds, so that every caller is refused rather than every caller let in.
pub fn check_settings(mut config: Config, database_url_env: bool) -> Config {
    let auth: Vec<String> = config
        .auth_settings()
        .map(str::to_owned)
        .chain(database_url_env.then(|| "environment DATABASE_URL".to_owned()))
        .collect();
    let other: Vec<&str> = config
        .unimplemented_settings
        .iter()
        .map(String::as_str)
        .filter(|p| !AUTH_SETTINGS.contains(p))
        .collect();
    if !other.is_empty() {
        tracing::warn!(
            settings = %other.join(", "),
            count = other.len(),
            "config settings not implemented by thr-gateway; they have no effect"
        );
    }
    if !auth.is_empty() {
        let no_key = config.master_key.is_none();
        tracing::error!(
            settings = %auth.join(", "),
            "only the master key is accepted: custom auth, JWT/OAuth2, virtual keys (database_url), \
             IP allowlists and custom key headers are not implemented, so callers relying on them \
             will be refused{}",
            if no_key {
                "; no master_key is set, so every caller is refused"
            } else {
                ""
            }
        );
        if no_key {
            config.master_key = Some(Secret::new(unguessable_key()));
        }
    }
    config
}

/// The time allowed for one request to `deployment`, in LiteLLM's order: its
/// `stream_timeout` for a stream (else its `timeout`), its `timeout` otherwise, else the
/// config's (`router_settings.timeout`, else `litellm_settings.request_timeout`, or
/// `--timeout` when given), else `default` (600 s). A timeout is the classifier's
/// `Timeout`: it counts for cooldown and is retried on another deployment.
pub fn request_timeout(
    deployment: &Deployment,
    stream: bool,
    config: Option<Duration>,
    default: Duration,
) -> Duration {
    let p = deployment.params();
    stream
        .then_some(p.stream_timeout)
        .flatten()
        .or(p.timeout)
        .or(config)
        .unwrap_or(default)
}

/// 256 random bits, hex: a key nobody holds.
fn unguessable_key() -> String {
    let bytes: [u8; 32] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
