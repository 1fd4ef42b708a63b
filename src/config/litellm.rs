//! The serde model of LiteLLM's `config.yaml`, converted into the runtime types.
//!
//! Why a separate model: the YAML format is LiteLLM's (loose types, `os.environ/NAME`
//! indirection, many keys this crate has no use for), while the runtime types are strict
//! and sit on the request path. The model below takes the format as it is; conversion does
//! the range checks with the field's YAML path, then [`Config::validate`] the cross-field ones.
//!
//! The pipeline:
//!
//! 1. YAML text → a JSON value tree (`serde-saphyr`, read as PyYAML reads it: see `yaml.rs`;
//!    broken YAML is a `Syntax` error with the parser's line and column). An empty document
//!    is an error; an empty `model_list` is allowed, with a warning.
//! 2. Keys this crate does not use are taken out: at the top level and inside the settings
//!    sections they are ignored with a debug event each; inside `litellm_params` and
//!    `model_info` they are kept as each deployment's `extra` (credentials as secrets).
//!    Taking them out first means an `os.environ/NAME` in an ignored key (say
//!    `general_settings.database_url`) never needs that variable to be set.
//! 3. Every `os.environ/NAME` string left is replaced by the variable's value.
//! 4. The tree → the typed model below (`serde_path_to_error`, so a wrong type names its path).
//! 5. The model → [`Config`], then [`Config::validate`].
//!
//! The entries of a `model_list` sequence go through steps 2 to 4 one at a time, as the
//! parser reads them: a list of 100,000 entries never exists as one value tree. In a large
//! file the parser runs on a thread of its own and hands the entries over in batches, so
//! steps 2 to 4 overlap the parse (see `yaml::load_pipelined`); when the list is written
//! plainly enough to be cut at an entry for certain, each half of it is parsed and read on
//! its own thread instead (see `split.rs`), its plainest entries by a small reader of our
//! own rather than by the YAML parser (see `quick.rs`).
//!
//! Every error text passes through a [`Scrubber`] holding each secret seen on the way, so no
//! error message carries a credential.

mod coerce;
mod convert;
mod env;
mod quick;
mod split;
mod yaml;

use std::collections::BTreeMap;

use serde::{Deserialize, de::DeserializeOwned};
use serde_json::{Map, Value};

use self::{
    coerce::{Flag, Float, Int, SecretText, Text, field_names, null_as_default},
    env::{Resolver, child_path, is_secret_key, scrub_error, secrets_in_text},
};
use crate::{
    config::Config,
    deployment::ParamValue,
    error::{ConfigError, ConfigErrorKind},
    secret::{Scrubber, Secret},
};

// === the model ===

/// The whole file. Other top-level keys (`environment_variables`, ...) are ignored.
#[derive(Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct LiteLlmConfig {
    #[serde(deserialize_with = "null_as_default")]
    model_list: Vec<ModelEntry>,
    #[serde(deserialize_with = "null_as_default")]
    general_settings: GeneralSettings,
    #[serde(deserialize_with = "null_as_default")]
    router_settings: RouterSection,
    #[serde(deserialize_with = "null_as_default")]
    litellm_settings: LitellmSettings,
}

/// One `model_list` entry.
#[derive(Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct ModelEntry {
    model_name: Option<Text>,
    /// LiteLLM also reads `rpm`/`tpm` at the entry's top level (`litellm_params` wins).
    rpm: Option<Int>,
    tpm: Option<Int>,
    #[serde(deserialize_with = "null_as_default")]
    litellm_params: LitellmParams,
    #[serde(deserialize_with = "null_as_default")]
    model_info: RawModelInfo,
}

/// `litellm_params`; other keys go to [`DeploymentParams::extra`](crate::deployment::DeploymentParams::extra).
#[derive(Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct LitellmParams {
    model: Option<Text>,
    api_base: Option<Text>,
    api_key: Option<SecretText>,
    api_version: Option<Text>,
    weight: Option<Float>,
    rpm: Option<Int>,
    tpm: Option<Int>,
    cooldown_time: Option<Float>,
    max_parallel_requests: Option<Int>,
    input_cost_per_token: Option<Float>,
    output_cost_per_token: Option<Float>,
    timeout: Option<Float>,
    stream_timeout: Option<Float>,
}

/// `model_info`; other keys go to [`ModelInfo::extra`](crate::deployment::ModelInfo::extra).
#[derive(Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawModelInfo {
    id: Option<Text>,
    mode: Option<Text>,
    health_check_model: Option<Text>,
    health_check_timeout: Option<Float>,
    health_check_max_tokens: Option<Int>,
    health_check_max_tokens_reasoning: Option<Int>,
    health_check_max_tokens_non_reasoning: Option<Int>,
    health_check_supports_max_tokens: Option<Flag>,
    health_check_voice: Option<Text>,
    health_check_reasoning_effort: Option<Text>,
    disable_background_health_check: Option<Flag>,
    max_input_tokens: Option<Int>,
    input_cost_per_token: Option<Float>,
    output_cost_per_token: Option<Float>,
    health_check_max_probes_per_minute: Option<Int>,
}

/// `general_settings`: LiteLLM's health-check keys, plus this crate's extensions
/// (`health_check_unhealthy_threshold`, `health_check_healthy_threshold`, `health_check_jitter`).
#[derive(Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct GeneralSettings {
    background_health_checks: Option<Flag>,
    health_check_interval: Option<Float>,
    enable_health_check_routing: Option<Flag>,
    health_check_staleness_threshold: Option<Float>,
    health_check_details: Option<Flag>,
    health_check_skip_disabled_background_models: Option<Flag>,
    health_check_concurrency: Option<Int>,
    health_check_ignore_transient_errors: Option<Flag>,
    master_key: Option<SecretText>,
    use_shared_health_check: Option<Flag>,
    health_check_skip_when_traffic_healthy: Option<Flag>,
    health_check_unhealthy_threshold: Option<Int>,
    health_check_healthy_threshold: Option<Int>,
    health_check_jitter: Option<Float>,
    /// Also accepted for the two thresholds above (the longer name wins).
    unhealthy_threshold: Option<Int>,
    healthy_threshold: Option<Int>,
    min_healthy_percent: Option<Float>,
    // The health surface (`/health/history`, `/v1/models?healthy_only`, scoped rounds).
    background_health_check_model_groups: Option<Value>,
    health_check_history_size: Option<Int>,
    model_list_healthy_only: Option<Value>,
    // Tiered probes and probe budgets (this crate's).
    health_check_billed_every: Option<Int>,
    health_check_max_probes_per_minute: Option<Int>,
    health_check_max_cost_per_day: Option<Float>,
    health_check_spread: Option<Float>,
    health_check_jitter_seed: Option<Int>,
    // Read by the gateway (`Config::server`).
    dangerously_permit_weak_or_unset_master_key: Option<Flag>,
    max_request_size_mb: Option<Float>,
    max_request_header_size_kb: Option<Float>,
    header_read_timeout: Option<Float>,
    max_connections: Option<Int>,
    enable_drain_endpoint: Option<Flag>,
    drain_endpoint_token: Option<SecretText>,
    graceful_shutdown_timeout: Option<Float>,
}

/// `router_settings`.
#[derive(Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RouterSection {
    routing_strategy: Option<Text>,
    allowed_fails: Option<Int>,
    cooldown_time: Option<Float>,
    num_retries: Option<Int>,
    max_retry_after: Option<Float>,
    redis_url: Option<SecretText>,
    redis_host: Option<Text>,
    redis_port: Option<Int>,
    redis_password: Option<SecretText>,
    #[serde(deserialize_with = "null_as_default")]
    routing_strategy_args: StrategyArgs,
    /// `[{group: [fallback, ...]}, ...]`; shapes are checked in conversion, naming the entry.
    fallbacks: Option<Value>,
    default_fallbacks: Option<Value>,
    context_window_fallbacks: Option<Value>,
    content_policy_fallbacks: Option<Value>,
    /// `{alias: group}` or `{alias: {model: group, hidden: bool}}`.
    model_group_alias: Option<Value>,
    enable_pre_call_checks: Option<Flag>,
    timeout: Option<Float>,
    redis_ssl: Option<Flag>,
    outlier_detection: Option<OutlierSection>,
    panic_threshold_percent: Option<Float>,
    slow_start_window: Option<Float>,
    stream_stall_timeout: Option<Float>,
}

/// `router_settings.outlier_detection` (this crate's; Envoy's names where it has one).
#[derive(Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct OutlierSection {
    consecutive_failures: Option<Int>,
    failure_percentage: Option<Float>,
    minimum_requests: Option<Int>,
    interval: Option<Float>,
    base_ejection_time: Option<Float>,
    max_ejection_time: Option<Float>,
    max_ejection_percent: Option<Float>,
    jitter: Option<Float>,
    jitter_seed: Option<Int>,
}

/// `router_settings.routing_strategy_args`. LiteLLM's other keys here (`ttl`,
/// `max_latency_list_size`, ...) have no use in this crate and are ignored.
#[derive(Default, Deserialize)]
#[serde(default)]
struct StrategyArgs {
    lowest_latency_buffer: Option<Float>,
    latency_decay: Option<Float>,
    latency_failure_penalty: Option<Float>,
}

/// `litellm_settings`: the router keys LiteLLM also takes here (`router_settings` wins).
#[derive(Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct LitellmSettings {
    num_retries: Option<Int>,
    allowed_fails: Option<Int>,
    cooldown_time: Option<Float>,
    require_auth_for_metrics_endpoint: Option<Flag>,
    request_timeout: Option<Float>,
}

/// The unknown keys of one deployment, kept.
#[derive(Default)]
struct Extras {
    params: BTreeMap<String, ParamValue>,
    info: BTreeMap<String, ParamValue>,
}

// === parse ===

pub(super) fn parse(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    parse_with(text, env, None)
}

/// An `env` other threads may call too.
type SharedEnv<'e> = &'e (dyn Fn(&str) -> Option<String> + Sync);

/// [`parse`], with an `env` that other threads may call too: a large file's `model_list`
/// may then be read in two halves at once (see `split.rs`).
pub(super) fn parse_shared(text: &str, env: SharedEnv<'_>) -> Result<Config, ConfigError> {
    parse_with(text, env, Some(env))
}

fn parse_with(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
    shared_env: Option<SharedEnv<'_>>,
) -> Result<Config, ConfigError> {
    // `split::parse` answers `None` at once for a text outside its sizes.
    split::parse(text, env, shared_env).unwrap_or_else(|| one_thread(text, env))
}

/// The load on one thread for the parse (two for a large file: see `yaml::load_pipelined`).
fn one_thread(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
    let mut resolver = Resolver::new(env);
    let mut streamed = Streamed::new(&mut resolver);
    let loaded = if text.len() >= yaml::PIPELINE_MIN_BYTES {
        yaml::load_pipelined(text, &mut streamed)
    } else {
        yaml::load_streaming(text, &mut streamed)
    };
    let Streamed { list, error, .. } = streamed;
    let tree = loaded.map_err(|e| {
        let scrubber = Scrubber::new(secrets_in_text(text));
        ConfigError::new(
            "",
            ConfigErrorKind::Syntax(scrubber.scrub(&e.to_string()).into_owned()),
        )
    })?;
    finish(tree, list.map(|l| (l, error)), resolver)
}

/// Steps 2 to 5 once the text is parsed (`tree`, with the `model_list` entries streamed).
fn finish(
    tree: Option<Value>,
    streamed: Option<StreamedList>,
    mut resolver: Resolver<'_>,
) -> Result<Config, ConfigError> {
    // An empty file (or one holding only comments) is a mistake: a wrong path, a file
    // truncated by a deploy. A file with only `model_list: []` is allowed (and warned).
    let Some(tree) = tree.filter(|t| !t.is_null()) else {
        return Err(ConfigError::invalid(
            "",
            "the config is empty (no YAML document, only whitespace or comments); \
             expected a mapping with at least `model_list`",
        ));
    };
    let result = convert(tree, streamed, &mut resolver);
    result.map_err(|e| scrub_error(e, &Scrubber::new(resolver.into_secrets())))
}

/// The `model_list` entries, read one by one as the parser meets them (steps 2 to 4 of the
/// pipeline, per entry): only one entry's value tree exists at a time. `error`: the first
/// entry that failed (the others are skipped; the parse goes on, so broken YAML further
/// down is still reported first).
struct Streamed<'r, 'e> {
    resolver: &'r mut Resolver<'e>,
    list: Option<(Vec<ModelEntry>, Vec<Extras>)>,
    error: Option<ConfigError>,
    /// How many `model_list` sequences began (more than one for a duplicate key).
    starts: usize,
}

impl<'r, 'e> Streamed<'r, 'e> {
    fn new(resolver: &'r mut Resolver<'e>) -> Self {
        Self {
            resolver,
            list: None,
            error: None,
            starts: 0,
        }
    }
}

impl yaml::Entries for Streamed<'_, '_> {
    fn start(&mut self) {
        self.starts += 1;
        self.list = Some((Vec::new(), Vec::new()));
        self.error = None;
    }

    fn entry(&mut self, i: usize, mut entry: Value) {
        if self.error.is_some() {
            // Skipped, but its secrets are still learnt: the error is scrubbed of them all.
            let _ = self.resolver.resolve(&mut entry, "", false);
            return;
        }
        match read_entry(i, entry, self.resolver) {
            Ok((e, x)) => {
                if let Some((list, extras)) = &mut self.list {
                    list.push(e);
                    extras.push(x);
                }
            }
            Err(e) => self.error = Some(e),
        }
    }
}

/// One `model_list` entry: its unknown keys kept as extras, `os.environ/` resolved, typed.
fn read_entry(
    i: usize,
    mut v: Value,
    r: &mut Resolver<'_>,
) -> Result<(ModelEntry, Extras), ConfigError> {
    let at = format!("model_list[{i}]");
    let Some(e) = mapping(&mut v, &at)? else {
        return Err(not_a_mapping(&at, "nothing (null)"));
    };
    let extras = entry_extras(e, &at, r)?;
    r.resolve(&mut v, &at, false)?;
    let entry = serde_path_to_error::deserialize(v).map_err(|e| {
        let field = if e.path().iter().next().is_some() {
            format!("{at}.{}", e.path())
        } else {
            at.clone()
        };
        ConfigError::new(field, ConfigErrorKind::Syntax(e.into_inner().to_string()))
    })?;
    Ok((entry, extras))
}

/// The `model_list` entries streamed (typed, with their extras), and the first error
/// among them.
type StreamedList = ((Vec<ModelEntry>, Vec<Extras>), Option<ConfigError>);

/// Steps 2 to 5 for the rest of the tree. `streamed`: the `model_list` entries read while
/// parsing (and the first error among them), when it was a sequence.
fn convert(
    mut tree: Value,
    streamed: Option<StreamedList>,
    resolver: &mut Resolver<'_>,
) -> Result<Config, ConfigError> {
    // The list streamed is the one in the tree (left empty there) unless a later duplicate
    // `model_list` key replaced it with something that is not a sequence.
    let streamed = streamed
        .filter(|_| matches!(tree.get("model_list"), Some(Value::Array(a)) if a.is_empty()));
    let mut unimplemented = Vec::new();
    let mut extras = take_unknown_keys(&mut tree, resolver, &mut unimplemented)?;
    let streamed = match streamed {
        Some((_, Some(e))) => {
            // The rest of the tree is resolved all the same, for its secrets (the master
            // key, say): the error is scrubbed of every one.
            let _ = resolver.resolve(&mut tree, "", false);
            return Err(e);
        }
        Some((list, None)) => Some(list),
        None => None,
    };
    resolver.resolve(&mut tree, "", false)?;
    let mut model: LiteLlmConfig = serde_path_to_error::deserialize(tree).map_err(|e| {
        let field = if e.path().iter().next().is_some() {
            e.path().to_string()
        } else {
            String::new()
        };
        ConfigError::new(field, ConfigErrorKind::Syntax(e.into_inner().to_string()))
    })?;
    if let Some((list, x)) = streamed {
        model.model_list = list;
        extras = x;
    }
    let mut cfg = model.into_config(extras, resolver)?;
    cfg.unimplemented_settings = unimplemented;
    cfg.validate()?;
    Ok(cfg)
}

/// Step 2 of the pipeline: drops the keys no model struct knows (with a debug event each),
/// except in `litellm_params`/`model_info`, whose unknown keys are resolved and returned.
///
/// It also checks that every part the model reads as a struct is a mapping (or empty):
/// serde would otherwise read a list into a struct field by field, by position.
fn take_unknown_keys(
    tree: &mut Value,
    r: &mut Resolver<'_>,
    unimplemented: &mut Vec<String>,
) -> Result<Vec<Extras>, ConfigError> {
    let Some(top) = mapping(tree, "")? else {
        return Ok(Vec::new());
    };
    drop_unknown_in(top, field_names::<LiteLlmConfig>(), "", unimplemented);
    for (key, known) in [
        ("general_settings", field_names::<GeneralSettings>()),
        ("router_settings", field_names::<RouterSection>()),
        ("litellm_settings", field_names::<LitellmSettings>()),
    ] {
        if let Some(section) = top.get_mut(key)
            && let Some(m) = mapping(section, key)?
        {
            drop_unknown_in(m, known, key, unimplemented);
        }
    }
    // Anything but a list is reported by the typed step ("expected a sequence").
    let Some(Value::Array(entries)) = top.get_mut("model_list") else {
        return Ok(Vec::new());
    };
    let mut all = Vec::with_capacity(entries.len());
    for (i, entry) in entries.iter_mut().enumerate() {
        let at = format!("model_list[{i}]");
        let Some(e) = mapping(entry, &at)? else {
            return Err(not_a_mapping(&at, "nothing (null)"));
        };
        all.push(entry_extras(e, &at, r)?);
    }
    Ok(all)
}

/// Step 2 for one `model_list` entry (at `at`): its unknown keys dropped, those of
/// `litellm_params` and `model_info` returned.
fn entry_extras(
    e: &mut Map<String, Value>,
    at: &str,
    r: &mut Resolver<'_>,
) -> Result<Extras, ConfigError> {
    drop_unknown_in(e, field_names::<ModelEntry>(), at, &mut Vec::new());
    let mut extras = Extras::default();
    // The sections' paths are spelled out only for an error or an unknown key.
    if let Some(p) = e.get_mut("litellm_params")
        && let Some(p) = section(p, at, "litellm_params")?
    {
        extras.params = keep_unknown::<LitellmParams>(p, at, "litellm_params", r)?;
    }
    if let Some(m) = e.get_mut("model_info")
        && let Some(m) = section(m, at, "model_info")?
    {
        extras.info = keep_unknown::<RawModelInfo>(m, at, "model_info", r)?;
    }
    Ok(extras)
}

/// [`mapping`] for the section `key` of the entry at `at`.
fn section<'v>(
    v: &'v mut Value,
    at: &str,
    key: &str,
) -> Result<Option<&'v mut Map<String, Value>>, ConfigError> {
    match v {
        Value::Object(m) => Ok(Some(m)),
        Value::Null => Ok(None),
        other => mapping(other, &child_path(at, key)),
    }
}

/// The mapping `v` is; `None` when it is empty (null); an error naming `path` otherwise.
fn mapping<'v>(
    v: &'v mut Value,
    path: &str,
) -> Result<Option<&'v mut Map<String, Value>>, ConfigError> {
    match v {
        Value::Object(m) => Ok(Some(m)),
        Value::Null => Ok(None),
        Value::Array(_) => Err(not_a_mapping(path, "a list")),
        Value::String(_) => Err(not_a_mapping(path, "a string")),
        Value::Number(_) => Err(not_a_mapping(path, "a number")),
        Value::Bool(_) => Err(not_a_mapping(path, "a boolean")),
    }
}

fn not_a_mapping(path: &str, got: &str) -> ConfigError {
    ConfigError::new(
        path,
        ConfigErrorKind::Syntax(format!("expected a mapping, got {got}")),
    )
}

/// Drops the keys of `m` not in `known`; the paths of those set to something (not null,
/// `false`, or empty) are added to `unimplemented`.
fn drop_unknown_in(
    m: &mut Map<String, Value>,
    known: &[&str],
    path: &str,
    unimplemented: &mut Vec<String>,
) {
    m.retain(|k, v| {
        let keep = known.contains(&k.as_str());
        if !keep {
            let at = child_path(path, k);
            tracing::debug!(key = %at, "config key not used by tower-health-routing; ignored");
            if is_set(v) {
                unimplemented.push(at);
            }
        }
        keep
    });
}

/// Whether a setting is on: LiteLLM reads null, `false`, `""`, `[]` and `{}` as unset.
fn is_set(v: &Value) -> bool {
    match v {
        Value::Null | Value::Bool(false) => false,
        Value::String(s) => !s.trim().is_empty() && !s.trim().eq_ignore_ascii_case("false"),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        Value::Bool(true) | Value::Number(_) => true,
    }
}

/// Moves the unknown keys of `m` (the section `key` of the entry at `at`) out,
/// env-resolved, as [`ParamValue`]s. Null values mean
/// "unset" in LiteLLM and are dropped. A value read from a secret-looking variable is a
/// secret even when its key's name is not.
fn keep_unknown<T: DeserializeOwned>(
    m: &mut Map<String, Value>,
    at: &str,
    key: &str,
    r: &mut Resolver<'_>,
) -> Result<BTreeMap<String, ParamValue>, ConfigError> {
    let known = field_names::<T>();
    let unknown: Vec<String> = m
        .keys()
        .filter(|k| !known.contains(&k.as_str()))
        .cloned()
        .collect();
    let mut out = BTreeMap::new();
    if unknown.is_empty() {
        return Ok(out);
    }
    let path = &child_path(at, key);
    for k in unknown {
        let Some(mut v) = m.remove(&k) else { continue };
        if v.is_null() {
            continue;
        }
        let from_secret_var = r.resolve(&mut v, &child_path(path, &k), is_secret_key(&k))?;
        let pv = match ParamValue::for_name(&k, v) {
            ParamValue::Plain(v) if from_secret_var || is_secret_key(&k) => {
                ParamValue::Secret(Secret::new(match v {
                    Value::String(s) => s,
                    other => other.to_string(),
                }))
            }
            pv => pv,
        };
        out.insert(k, pv);
    }
    Ok(out)
}
