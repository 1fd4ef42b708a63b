//! The master-key boot check: no open proxy by default.
//!
//! LiteLLM 1.109 (`litellm/proxy/auth/master_key_boot_check.py`) refuses to start with no
//! master key, an empty one or a publicly known one unless told
//! `dangerously_permit_weak_or_unset_master_key`. The gateway does the same when it listens
//! on anything but loopback, and also refuses keys that cannot work:
//!
//! | key | loopback (`127.0.0.0/8`, `::1`) | any other address | with the opt-out |
//! |---|---|---|---|
//! | unset, empty, publicly known ([`KNOWN_KEYS`]) | starts, warning | **refused** | starts, warning |
//! | shorter than [`MIN_KEY_LEN`] | starts, warning | **refused** | starts, warning |
//! | non-ASCII or control characters | **refused** | **refused** | **refused** (it can never be sent in a header) |
//! | surrounding whitespace | trimmed, warning (clients' values are trimmed too) | same | same |
//!
//! The opt-out is `general_settings.dangerously_permit_weak_or_unset_master_key: true` or
//! the environment's `LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY=true`. No message
//! quotes the key.

use std::net::IpAddr;

use tower_health_routing::secret::Secret;

/// Publicly known keys (printed in LiteLLM's docs and examples), refused off loopback.
/// LiteLLM's own list holds `sk-1234`; the others are the variants its docs also print.
pub const KNOWN_KEYS: &[&str] = &["sk-1234", "sk-12345", "sk-1234567890"];

/// The shortest master key accepted without the opt-out.
pub const MIN_KEY_LEN: usize = 8;

/// LiteLLM's opt-out setting (under `general_settings`).
pub const OPT_OUT_SETTING: &str = "dangerously_permit_weak_or_unset_master_key";
/// LiteLLM's opt-out environment variable.
pub const OPT_OUT_ENV: &str = "LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY";

/// What the boot check decided.
#[derive(Debug)]
pub enum Verdict {
    /// Start; log each warning first. `key` is the key to use (trimmed), if any.
    Start {
        /// The master key to serve with.
        key: Option<Secret>,
        /// Lines to log at `warn`.
        warnings: Vec<String>,
    },
    /// Do not start: the message says why and how to fix it.
    Refuse(String),
}

/// Whether `value` of the opt-out variable turns it on (`true`, any case, like LiteLLM).
pub fn env_opt_out(value: Option<&str>) -> bool {
    value.is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

/// Whether `host` is loopback only (`127.0.0.0/8`, `::1`, IPv4-mapped loopback).
pub fn is_loopback(host: IpAddr) -> bool {
    match host {
        IpAddr::V4(a) => a.is_loopback(),
        IpAddr::V6(a) => a.is_loopback() || a.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
    }
}

const HOW_TO: &str = "make one with `openssl rand -hex 32` and set it as \
    `general_settings.master_key` (e.g. `master_key: os.environ/LITELLM_MASTER_KEY`) or in \
    the LITELLM_MASTER_KEY environment variable";

/// The boot check for `key` (config's `master_key`, else `LITELLM_MASTER_KEY`) when
/// listening on `host`, with the opt-out on or off.
pub fn check(key: Option<&Secret>, host: IpAddr, opt_out: bool) -> Verdict {
    let mut warnings = Vec::new();
    let raw = key.map(Secret::expose);
    let trimmed = raw.map(str::trim);
    if let (Some(r), Some(t)) = (raw, trimmed)
        && r.len() != t.len()
        && !t.is_empty()
    {
        warnings.push(
            "master_key has leading or trailing whitespace; it is trimmed (clients' keys are \
             trimmed too, so the untrimmed key could never match)"
                .to_owned(),
        );
    }
    if let Some(t) = trimmed
        && t.chars().any(|c| !(' '..='~').contains(&c))
    {
        return Verdict::Refuse(format!(
            "master_key contains non-ASCII or control characters, so no client can send it in \
             an HTTP header; {HOW_TO}"
        ));
    }
    let weak = match trimmed {
        None => Some(
            "no master_key is set (neither general_settings.master_key nor LITELLM_MASTER_KEY), so every request would be accepted without authentication",
        ),
        Some("") => Some("master_key is empty"),
        Some(t) if KNOWN_KEYS.contains(&t) => Some("master_key is a publicly known example key"),
        Some(t) if t.len() < MIN_KEY_LEN => {
            Some("master_key is too short (fewer than 8 characters)")
        }
        Some(_) => None,
    };
    let key = trimmed.filter(|t| !t.is_empty()).map(Secret::from);
    let Some(why) = weak else {
        return Verdict::Start { key, warnings };
    };
    if opt_out {
        warnings.push(format!(
            "{why}; starting anyway because {OPT_OUT_SETTING} is on. Never run this outside \
             local development."
        ));
    } else if is_loopback(host) {
        warnings.push(format!(
            "{why}; starting because the gateway listens on loopback ({host}) only. Before \
             listening on another address, {HOW_TO}."
        ));
    } else {
        return Verdict::Refuse(format!(
            "refusing to start on {host}: {why}. Fix: {HOW_TO}. Or listen on loopback only \
             (--host 127.0.0.1). Local development only: set {OPT_OUT_ENV}=true or \
             general_settings.{OPT_OUT_SETTING}: true to start anyway."
        ));
    }
    Verdict::Start { key, warnings }
}
