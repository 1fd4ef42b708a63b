//! The typed model → the runtime [`Config`]: range checks whose errors name the field's
//! YAML path, LiteLLM's fallbacks (`litellm_settings` for router keys, `REDIS_*` from the
//! environment) and this crate's defaults.

use std::{
    collections::HashMap,
    num::{NonZeroU32, NonZeroUsize},
    sync::Arc,
    time::Duration,
};

use serde_json::Value;

use super::{
    Extras, GeneralSettings, LiteLlmConfig, LitellmSettings, ModelEntry, OutlierSection,
    RouterSection,
    coerce::{Flag, Float, Int, SecretText, Text},
    env::Resolver,
};
use crate::{
    config::{
        Config, Fallbacks, HealthCheckSettings, OutlierDetection, RedisSettings, RouterSettings,
        RoutingStrategy, RoutingStrategyArgs, ServerSettings,
    },
    deployment::{Deployment, DeploymentParams, Mode, ModelInfo},
    error::{ConfigError, ConfigErrorKind},
    secret::Secret,
};

impl LiteLlmConfig {
    pub(super) fn into_config(
        self,
        extras: Vec<Extras>,
        r: &Resolver<'_>,
    ) -> Result<Config, ConfigError> {
        let mut extras = extras.into_iter();
        // Exactly as many as there are (a `collect` into a `Result` could not know, and
        // doubled its way up: at 100,000 deployments, a third more room than needed).
        let mut deployments = Vec::with_capacity(self.model_list.len());
        let mut shared = Shared::default();
        for (i, e) in self.model_list.into_iter().enumerate() {
            deployments.push(e.into_deployment(
                i,
                extras.next().unwrap_or_default(),
                &mut shared,
            )?);
        }
        drop(shared);
        let g = self.general_settings;
        let health = g.health()?;
        let master_key = g.master_key.clone().map(|k| k.0);
        let server = g.server(self.litellm_settings.require_auth_for_metrics_endpoint)?;
        let router = self.router_settings.into_router(
            self.litellm_settings,
            health.use_shared_health_check,
            r,
        )?;
        crate::deployment::disambiguate_derived_ids(&mut deployments);
        if deployments.is_empty() {
            tracing::warn!(
                field = "model_list",
                "config has no deployments: every request will be refused as an unknown route"
            );
        }
        Ok(Config {
            deployments,
            health,
            router,
            master_key,
            classifier: None,
            server,
            unimplemented_settings: Vec::new(),
        })
    }
}

/// One allocation per distinct route name and per distinct API key, shared by the
/// deployments that use it (100,000 deployments often have a few keys between them).
#[derive(Default)]
struct Shared {
    routes: HashMap<Arc<str>, (), foldhash::fast::RandomState>,
    secrets: HashMap<Arc<str>, Secret, foldhash::fast::RandomState>,
}

impl Shared {
    fn route(&mut self, name: String) -> Arc<str> {
        match self.routes.get_key_value(name.as_str()) {
            Some((k, ())) => Arc::clone(k),
            None => {
                let k: Arc<str> = name.into();
                self.routes.insert(Arc::clone(&k), ());
                k
            }
        }
    }

    fn secret(&mut self, s: Secret) -> Secret {
        match self.secrets.get(s.expose()) {
            Some(same) => same.clone(),
            None => {
                self.secrets.insert(s.expose().into(), s.clone());
                s
            }
        }
    }
}

impl ModelEntry {
    fn into_deployment(
        self,
        i: usize,
        extra: Extras,
        shared: &mut Shared,
    ) -> Result<Deployment, ConfigError> {
        let at = |f: &str| format!("model_list[{i}].{f}");
        let route = self
            .model_name
            .map(|t| shared.route(t.0))
            .ok_or_else(|| ConfigError::new(at("model_name"), ConfigErrorKind::Missing))?;
        let p = self.litellm_params;
        let model = p.model.map(|t| t.0).ok_or_else(|| {
            ConfigError::new(at("litellm_params.model"), ConfigErrorKind::Missing)
        })?;
        let mut params = DeploymentParams::new(model);
        params.api_base = p.api_base.map(|t| t.0);
        params.api_key = p.api_key.map(|s| shared.secret(s.0));
        params.api_version = p.api_version.map(|t| t.0);
        params.weight = p.weight.map(|f| f.0);
        params.rpm = lazily(p.rpm, || at("litellm_params.rpm"), count)?.or(lazily(
            self.rpm,
            || at("rpm"),
            count,
        )?);
        params.tpm = lazily(p.tpm, || at("litellm_params.tpm"), count)?.or(lazily(
            self.tpm,
            || at("tpm"),
            count,
        )?);
        params.max_parallel_requests = lazily(
            p.max_parallel_requests,
            || at("litellm_params.max_parallel_requests"),
            positive,
        )?;
        params.input_cost_per_token = p.input_cost_per_token.map(|f| f.0);
        params.output_cost_per_token = p.output_cost_per_token.map(|f| f.0);
        params.cooldown_time = lazily(
            p.cooldown_time,
            || at("litellm_params.cooldown_time"),
            seconds,
        )?;
        params.timeout = lazily(p.timeout, || at("litellm_params.timeout"), positive_seconds)?;
        params.stream_timeout = lazily(
            p.stream_timeout,
            || at("litellm_params.stream_timeout"),
            positive_seconds,
        )?;
        params.extra = extra.params;

        let m = self.model_info;
        let mode = m
            .mode
            .map(|t| {
                Mode::from_name(&t.0).ok_or_else(|| {
                    ConfigError::new(
                        at("model_info.mode"),
                        ConfigErrorKind::UnknownMode { value: t.0 },
                    )
                })
            })
            .transpose()?;
        let info = ModelInfo {
            id: m.id.map(|t| t.0),
            mode,
            health_check_model: m.health_check_model.map(|t| t.0),
            health_check_timeout: lazily(
                m.health_check_timeout,
                || at("model_info.health_check_timeout"),
                positive_seconds,
            )?,
            health_check_max_tokens: lazily(
                m.health_check_max_tokens,
                || at("model_info.health_check_max_tokens"),
                positive,
            )?,
            health_check_max_tokens_reasoning: lazily(
                m.health_check_max_tokens_reasoning,
                || at("model_info.health_check_max_tokens_reasoning"),
                positive,
            )?,
            health_check_max_tokens_non_reasoning: lazily(
                m.health_check_max_tokens_non_reasoning,
                || at("model_info.health_check_max_tokens_non_reasoning"),
                positive,
            )?,
            health_check_supports_max_tokens: m.health_check_supports_max_tokens.map(|f| f.0),
            health_check_voice: m.health_check_voice.map(|t| t.0),
            health_check_reasoning_effort: m.health_check_reasoning_effort.map(|t| t.0),
            disable_background_health_check: m.disable_background_health_check.is_some_and(|f| f.0),
            max_input_tokens: lazily(
                m.max_input_tokens,
                || at("model_info.max_input_tokens"),
                positive,
            )?,
            input_cost_per_token: m.input_cost_per_token.map(|f| f.0),
            output_cost_per_token: m.output_cost_per_token.map(|f| f.0),
            health_check_max_probes_per_minute: lazily(
                m.health_check_max_probes_per_minute,
                || at("model_info.health_check_max_probes_per_minute"),
                positive,
            )?,
            extra: extra.info,
        };
        Ok(Deployment::new(route, params, info))
    }
}

impl GeneralSettings {
    /// The keys only the gateway reads (`Config::server`).
    fn server(&self, metrics_auth: Option<Flag>) -> Result<ServerSettings, ConfigError> {
        let at = |f: &str| format!("general_settings.{f}");
        let size = |v: Option<Float>, f: &str| -> Result<Option<f64>, ConfigError> {
            match v.map(|v| v.0) {
                Some(x) if !x.is_finite() || x <= 0.0 => Err(ConfigError::invalid(
                    at(f),
                    "expected a size greater than 0",
                )),
                other => Ok(other),
            }
        };
        Ok(ServerSettings {
            dangerously_permit_weak_or_unset_master_key: self
                .dangerously_permit_weak_or_unset_master_key
                .is_some_and(|f| f.0),
            max_request_size_mb: size(self.max_request_size_mb, "max_request_size_mb")?,
            max_request_header_size_kb: size(
                self.max_request_header_size_kb,
                "max_request_header_size_kb",
            )?,
            header_read_timeout: positive_seconds(
                self.header_read_timeout,
                &at("header_read_timeout"),
            )?,
            max_connections: positive(self.max_connections, &at("max_connections"))?,
            enable_drain_endpoint: self.enable_drain_endpoint.is_some_and(|f| f.0),
            drain_endpoint_token: self
                .drain_endpoint_token
                .clone()
                .map(|t| t.0)
                .filter(|t| !t.expose().is_empty()),
            graceful_shutdown_timeout: seconds(
                self.graceful_shutdown_timeout,
                &at("graceful_shutdown_timeout"),
            )?,
            require_auth_for_metrics_endpoint: metrics_auth.map(|f| f.0),
        })
    }

    fn health(&self) -> Result<HealthCheckSettings, ConfigError> {
        let d = HealthCheckSettings::default();
        let flag = |f: Option<Flag>, default: bool| f.map_or(default, |f| f.0);
        let at = |f: &str| format!("general_settings.{f}");
        Ok(HealthCheckSettings {
            background_health_checks: flag(
                self.background_health_checks,
                d.background_health_checks,
            ),
            interval: positive_seconds(self.health_check_interval, &at("health_check_interval"))?
                .map(|i| at_least_the_floor(i, &at("health_check_interval")))
                .unwrap_or(d.interval),
            routing_enabled: flag(self.enable_health_check_routing, d.routing_enabled),
            staleness_threshold: seconds(
                self.health_check_staleness_threshold,
                &at("health_check_staleness_threshold"),
            )?,
            details: flag(self.health_check_details, d.details),
            skip_disabled_background_models: flag(
                self.health_check_skip_disabled_background_models,
                d.skip_disabled_background_models,
            ),
            concurrency: positive::<usize>(
                self.health_check_concurrency,
                &at("health_check_concurrency"),
            )?
            .and_then(NonZeroUsize::new),
            ignore_transient_errors: flag(
                self.health_check_ignore_transient_errors,
                d.ignore_transient_errors,
            ),
            unhealthy_threshold: positive::<u32>(
                self.health_check_unhealthy_threshold,
                &at("health_check_unhealthy_threshold"),
            )?
            .or(positive::<u32>(
                self.unhealthy_threshold,
                &at("unhealthy_threshold"),
            )?)
            .and_then(NonZeroU32::new)
            .unwrap_or(d.unhealthy_threshold),
            healthy_threshold: positive::<u32>(
                self.health_check_healthy_threshold,
                &at("health_check_healthy_threshold"),
            )?
            .or(positive::<u32>(
                self.healthy_threshold,
                &at("healthy_threshold"),
            )?)
            .and_then(NonZeroU32::new)
            .unwrap_or(d.healthy_threshold),
            min_healthy_percent: self.min_healthy_percent.map(|f| f.0),
            jitter: seconds(self.health_check_jitter, &at("health_check_jitter"))?
                .unwrap_or(d.jitter),
            use_shared_health_check: flag(self.use_shared_health_check, d.use_shared_health_check),
            skip_when_traffic_healthy: flag(
                self.health_check_skip_when_traffic_healthy,
                d.skip_when_traffic_healthy,
            ),
            background_model_groups: model_groups(
                self.background_health_check_model_groups.as_ref(),
                &at("background_health_check_model_groups"),
            )?,
            history_size: history_size(
                self.health_check_history_size,
                &at("health_check_history_size"),
            )?
            .unwrap_or(d.history_size),
            // LiteLLM: only a real `true` counts (a quoted value never starts hiding models).
            model_list_healthy_only: matches!(
                self.model_list_healthy_only,
                Some(Value::Bool(true))
            ),
            billed_every: positive::<u32>(
                self.health_check_billed_every,
                &at("health_check_billed_every"),
            )?
            .and_then(NonZeroU32::new)
            .unwrap_or(d.billed_every),
            max_probes_per_minute: positive::<u32>(
                self.health_check_max_probes_per_minute,
                &at("health_check_max_probes_per_minute"),
            )?
            .and_then(NonZeroU32::new),
            max_cost_per_day: non_negative(
                self.health_check_max_cost_per_day,
                &at("health_check_max_cost_per_day"),
            )?,
            spread: fraction(self.health_check_spread, &at("health_check_spread"))?
                .unwrap_or(d.spread),
            seed: count::<u64>(
                self.health_check_jitter_seed,
                &at("health_check_jitter_seed"),
            )?,
        })
    }
}

/// `background_health_check_model_groups`: a list of route names (LiteLLM fails at start-up
/// on anything else, rather than probing everything).
fn model_groups(v: Option<&Value>, field: &str) -> Result<Option<Vec<String>>, ConfigError> {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let wrong = || ConfigError::invalid(field, "must be a list of model group names (model_name)");
    let Value::Array(items) = v else {
        return Err(wrong());
    };
    items
        .iter()
        .map(|i| i.as_str().map(str::to_owned).ok_or_else(wrong))
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// `health_check_history_size`: 0 to [`MAX_HISTORY_SIZE`](crate::config::MAX_HISTORY_SIZE).
fn history_size(v: Option<Int>, field: &str) -> Result<Option<usize>, ConfigError> {
    let n = count::<usize>(v, field)?;
    match n {
        Some(n) if n > crate::config::MAX_HISTORY_SIZE => Err(ConfigError::invalid(
            field,
            format!(
                "must be at most {}, got {n}",
                crate::config::MAX_HISTORY_SIZE
            ),
        )),
        n => Ok(n),
    }
}

impl RouterSection {
    fn into_router(
        self,
        l: LitellmSettings,
        shared: bool,
        r: &Resolver<'_>,
    ) -> Result<RouterSettings, ConfigError> {
        let d = RouterSettings::default();
        let routing_strategy = match self.routing_strategy {
            None => d.routing_strategy,
            Some(Text(name)) => RoutingStrategy::from_name(&name).ok_or_else(|| {
                ConfigError::new(
                    "router_settings.routing_strategy",
                    ConfigErrorKind::UnknownStrategy { value: name },
                )
                .with_known(RoutingStrategy::NAMES)
            })?,
        };
        // Both places are checked; `router_settings` wins where both are set.
        let allowed_fails = count(self.allowed_fails, "router_settings.allowed_fails")?
            .or(count(l.allowed_fails, "litellm_settings.allowed_fails")?);
        let cooldown_time = seconds(self.cooldown_time, "router_settings.cooldown_time")?
            .or(seconds(l.cooldown_time, "litellm_settings.cooldown_time")?)
            .unwrap_or(d.cooldown_time);
        let num_retries = count(self.num_retries, "router_settings.num_retries")?
            .or(count(l.num_retries, "litellm_settings.num_retries")?)
            .unwrap_or(d.num_retries);
        let max_retry_after = seconds(self.max_retry_after, "router_settings.max_retry_after")?
            .unwrap_or(d.max_retry_after);
        let timeout = positive_seconds(self.timeout, "router_settings.timeout")?.or(
            positive_seconds(l.request_timeout, "litellm_settings.request_timeout")?,
        );
        let redis = redis(
            self.redis_url,
            self.redis_host,
            self.redis_port,
            self.redis_password,
            self.redis_ssl.map(|f| f.0),
            shared,
            r,
        )?;
        const R: &str = "router_settings";
        let a = &self.routing_strategy_args;
        let da = d.routing_strategy_args;
        let routing_strategy_args = RoutingStrategyArgs {
            lowest_latency_buffer: a
                .lowest_latency_buffer
                .map_or(da.lowest_latency_buffer, |f| f.0),
            latency_decay: positive_seconds(
                a.latency_decay,
                "router_settings.routing_strategy_args.latency_decay",
            )?
            .unwrap_or(da.latency_decay),
            latency_failure_penalty: seconds(
                a.latency_failure_penalty,
                "router_settings.routing_strategy_args.latency_failure_penalty",
            )?
            .unwrap_or(da.latency_failure_penalty),
        };
        let fallbacks = Fallbacks {
            general: fallback_map(self.fallbacks, &format!("{R}.fallbacks"))?,
            default: group_list(self.default_fallbacks, &format!("{R}.default_fallbacks"))?,
            context_window: fallback_map(
                self.context_window_fallbacks,
                &format!("{R}.context_window_fallbacks"),
            )?,
            content_policy: fallback_map(
                self.content_policy_fallbacks,
                &format!("{R}.content_policy_fallbacks"),
            )?,
        };
        Ok(RouterSettings {
            routing_strategy,
            allowed_fails,
            cooldown_time,
            num_retries,
            max_retry_after,
            redis,
            routing_strategy_args,
            fallbacks,
            model_group_alias: aliases(self.model_group_alias)?,
            enable_pre_call_checks: self.enable_pre_call_checks.is_some_and(|f| f.0),
            timeout,
            outlier_detection: self
                .outlier_detection
                .map(OutlierSection::into_settings)
                .transpose()?,
            panic_threshold_percent: self.panic_threshold_percent.map(|f| f.0),
            slow_start_window: seconds(
                self.slow_start_window,
                "router_settings.slow_start_window",
            )?
            .filter(|d| !d.is_zero()),
            stream_stall_timeout: positive_seconds(
                self.stream_stall_timeout,
                "router_settings.stream_stall_timeout",
            )?,
        })
    }
}

impl OutlierSection {
    fn into_settings(self) -> Result<OutlierDetection, ConfigError> {
        const OD: &str = "router_settings.outlier_detection";
        let at = |f: &str| format!("{OD}.{f}");
        let d = OutlierDetection::default();
        let consecutive_failures =
            match count::<u32>(self.consecutive_failures, &at("consecutive_failures"))? {
                None => d.consecutive_failures,
                Some(0) => None,
                Some(n) => Some(n),
            };
        Ok(OutlierDetection {
            consecutive_failures,
            failure_percentage: self.failure_percentage.map(|f| f.0),
            minimum_requests: count(self.minimum_requests, &at("minimum_requests"))?
                .unwrap_or(d.minimum_requests),
            interval: positive_seconds(self.interval, &at("interval"))?.unwrap_or(d.interval),
            base_ejection_time: positive_seconds(
                self.base_ejection_time,
                &at("base_ejection_time"),
            )?
            .unwrap_or(d.base_ejection_time),
            max_ejection_time: seconds(self.max_ejection_time, &at("max_ejection_time"))?
                .unwrap_or(d.max_ejection_time),
            max_ejection_percent: self
                .max_ejection_percent
                .map_or(d.max_ejection_percent, |f| f.0),
            jitter: seconds(self.jitter, &at("jitter"))?.unwrap_or(d.jitter),
            jitter_seed: self.jitter_seed.map(|Int(n)| n as u64),
        })
    }
}

/// A group name: a string (LiteLLM also accepts `{model: name}` in some lists).
fn group_name(v: &Value, field: &str) -> Result<String, ConfigError> {
    match v {
        Value::String(s) if !s.is_empty() => Ok(s.clone()),
        Value::Object(m) => match m.get("model") {
            Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
            _ => Err(ConfigError::invalid(
                field,
                "expected a group name (a string) or {model: name}",
            )),
        },
        _ => Err(ConfigError::invalid(
            field,
            "expected a group name (a string)",
        )),
    }
}

/// A list of group names (a single name is a list of one).
fn group_list(v: Option<Value>, field: &str) -> Result<Vec<String>, ConfigError> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, g)| group_name(g, &format!("{field}[{i}]")))
            .collect(),
        Some(one) => Ok(vec![group_name(&one, field)?]),
    }
}

/// LiteLLM's `[{group: [fallback, ...]}, ...]` (a single mapping is accepted too).
fn fallback_map(
    v: Option<Value>,
    field: &str,
) -> Result<std::collections::BTreeMap<String, Vec<String>>, ConfigError> {
    let mut out = std::collections::BTreeMap::new();
    let entries = match v {
        None | Some(Value::Null) => return Ok(out),
        Some(Value::Array(items)) => items,
        Some(m @ Value::Object(_)) => vec![m],
        Some(_) => {
            return Err(ConfigError::invalid(
                field,
                "expected a list of {group: [fallback, ...]} mappings",
            ));
        }
    };
    for (i, e) in entries.into_iter().enumerate() {
        let at = format!("{field}[{i}]");
        let Value::Object(m) = e else {
            return Err(ConfigError::invalid(
                at,
                "expected a mapping {group: [fallback, ...]}",
            ));
        };
        for (group, to) in m {
            let list = group_list(Some(to), &format!("{at}.{group}"))?;
            out.insert(group, list);
        }
    }
    Ok(out)
}

/// `model_group_alias`: `{alias: group}` or `{alias: {model: group, hidden: bool}}`.
fn aliases(v: Option<Value>) -> Result<std::collections::BTreeMap<String, String>, ConfigError> {
    const F: &str = "router_settings.model_group_alias";
    match v {
        None | Some(Value::Null) => Ok(Default::default()),
        Some(Value::Object(m)) => m
            .iter()
            .map(|(alias, g)| Ok((alias.clone(), group_name(g, &format!("{F}.{alias}"))?)))
            .collect(),
        Some(_) => Err(ConfigError::invalid(F, "expected a mapping {alias: group}")),
    }
}

/// Redis from `router_settings`; when none is given there and shared health checks are on,
/// from `REDIS_URL`, else `REDIS_HOST`/`REDIS_PORT`/`REDIS_PASSWORD`, as LiteLLM does.
/// Without shared health checks the environment is not read, so such configs do not
/// depend on it.
fn redis(
    url: Option<SecretText>,
    host: Option<Text>,
    port: Option<Int>,
    password: Option<SecretText>,
    ssl: Option<bool>,
    shared: bool,
    r: &Resolver<'_>,
) -> Result<Option<RedisSettings>, ConfigError> {
    // `redis_ssl`, else LiteLLM's `REDIS_SSL=true` (any case).
    let env_ssl = || {
        r.var("REDIS_SSL")
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
    };
    const PORT: &str = "router_settings.redis_port";
    const DEFAULT_PORT: u16 = 6379;
    if let Some(u) = url {
        if host.is_some() || port.is_some() || password.is_some() {
            tracing::debug!(
                "router_settings.redis_url is set; redis_host, redis_port and redis_password are ignored"
            );
        }
        // `redis_ssl: true` with a `redis://` URL: TLS, as `rediss://` says.
        let url = match u.0.expose().trim().strip_prefix("redis://") {
            Some(rest) if ssl == Some(true) => {
                crate::secret::Secret::new(format!("rediss://{rest}"))
            }
            _ => u.0,
        };
        return Ok(Some(RedisSettings::Url(url)));
    }
    if let Some(Text(host)) = host {
        return Ok(Some(RedisSettings::HostPort {
            host,
            port: positive::<u16>(port, PORT)?.unwrap_or(DEFAULT_PORT),
            password: password.map(|s| s.0),
            tls: ssl.unwrap_or_else(env_ssl),
        }));
    }
    if port.is_some() || password.is_some() {
        return Err(ConfigError::new(
            "router_settings.redis_host",
            ConfigErrorKind::Missing,
        ));
    }
    if !shared {
        return Ok(None);
    }
    if let Some(u) = r.var("REDIS_URL") {
        return Ok(Some(RedisSettings::Url(u.into())));
    }
    let Some(host) = r.var("REDIS_HOST") else {
        return Ok(None);
    };
    let port = match r.var("REDIS_PORT") {
        None => DEFAULT_PORT,
        Some(p) => {
            let bad = |why: String| {
                ConfigError::invalid(PORT, format!("from environment variable REDIS_PORT: {why}"))
            };
            let Int(n) = Int::from_value(&Value::String(p)).map_err(bad)?;
            u16::try_from(n)
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| bad(format!("expected a port from 1 to 65535, got {n}")))?
        }
    };
    Ok(Some(RedisSettings::HostPort {
        host,
        port,
        password: r.var("REDIS_PASSWORD").map(Into::into),
        tls: ssl.unwrap_or_else(env_ssl),
    }))
}

// === range checks (errors name the field) ===

/// `check(v, field)`, with the field's path spelled out only when the value fails the check
/// (a deployment has a dozen optional fields, mostly unset, and those set mostly valid:
/// `rpm: 1000` on each of 100,000 deployments). The checks are pure and name the field in
/// their errors only, so a value is checked first with no name, and again with its name
/// for the error.
fn lazily<V: Copy, T>(
    v: Option<V>,
    field: impl FnOnce() -> String,
    check: impl Fn(Option<V>, &str) -> Result<Option<T>, ConfigError>,
) -> Result<Option<T>, ConfigError> {
    match v {
        None => Ok(None),
        v => check(v, "").or_else(|_| check(v, &field())),
    }
}

/// A count (`rpm`, `num_retries`, ...): an integer from zero up to `T`'s maximum.
fn count<T: TryFrom<i64>>(v: Option<Int>, field: &str) -> Result<Option<T>, ConfigError> {
    let Some(Int(n)) = v else { return Ok(None) };
    if n < 0 {
        return Err(ConfigError::invalid(
            field,
            format!("must be zero or more, got {n}"),
        ));
    }
    T::try_from(n)
        .map(Some)
        .map_err(|_| ConfigError::invalid(field, format!("{n} is too large")))
}

/// A positive integer (`health_check_concurrency`, `health_check_max_tokens`, ...).
fn positive<T: TryFrom<i64>>(v: Option<Int>, field: &str) -> Result<Option<T>, ConfigError> {
    if let Some(Int(n)) = v
        && n <= 0
    {
        return Err(ConfigError::invalid(
            field,
            format!("must be greater than zero, got {n}"),
        ));
    }
    count(v, field)
}

/// A duration in seconds, zero or more.
fn seconds(v: Option<Float>, field: &str) -> Result<Option<Duration>, ConfigError> {
    let Some(Float(s)) = v else { return Ok(None) };
    if s.is_nan() || s.is_infinite() {
        return Err(ConfigError::invalid(
            field,
            format!("must be a finite number of seconds, got {s}"),
        ));
    }
    if s < 0.0 {
        return Err(ConfigError::invalid(
            field,
            format!("must be zero or more seconds, got {s}"),
        ));
    }
    Duration::try_from_secs_f64(s)
        .map(Some)
        .map_err(|_| ConfigError::invalid(field, format!("{s} seconds is too long")))
}

/// `health_check_interval` from a config file is at least
/// [`MIN_HEALTH_CHECK_INTERVAL`](crate::config::MIN_HEALTH_CHECK_INTERVAL): a smaller one is
/// raised to it with a warning naming the field (`1e-9` would probe without pause).
fn at_least_the_floor(d: Duration, field: &str) -> Duration {
    let floor = crate::config::MIN_HEALTH_CHECK_INTERVAL;
    if d < floor {
        tracing::warn!(
            field,
            configured_seconds = d.as_secs_f64(),
            used_seconds = floor.as_secs_f64(),
            "health_check_interval below the floor; raised to it"
        );
        floor
    } else {
        d
    }
}

/// A finite number, zero or more (`health_check_max_cost_per_day`).
fn non_negative(v: Option<Float>, field: &str) -> Result<Option<f64>, ConfigError> {
    match v.map(|f| f.0) {
        Some(x) if !(x.is_finite() && x >= 0.0) => Err(ConfigError::invalid(
            field,
            format!("must be a finite number >= 0, got {x}"),
        )),
        x => Ok(x),
    }
}

/// A fraction from 0 to 1 (`health_check_spread`).
fn fraction(v: Option<Float>, field: &str) -> Result<Option<f64>, ConfigError> {
    match v.map(|f| f.0) {
        Some(x) if !(x.is_finite() && (0.0..=1.0).contains(&x)) => Err(ConfigError::invalid(
            field,
            format!("must be a fraction of the interval from 0 to 1, got {x}"),
        )),
        x => Ok(x),
    }
}

/// A duration in seconds, greater than zero.
fn positive_seconds(v: Option<Float>, field: &str) -> Result<Option<Duration>, ConfigError> {
    match seconds(v, field)? {
        Some(d) if d.is_zero() => Err(ConfigError::invalid(field, "must be greater than zero")),
        d => Ok(d),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invalid(e: ConfigError) -> (String, String) {
        match e.kind() {
            ConfigErrorKind::Invalid(why) => (e.field().to_owned(), why.clone()),
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn seconds_take_ints_and_floats_and_reject_negative_and_non_finite() {
        assert_eq!(seconds(None, "f"), Ok(None));
        assert_eq!(
            seconds(Some(Float(300.0)), "f"),
            Ok(Some(Duration::from_secs(300)))
        );
        assert_eq!(
            seconds(Some(Float(0.25)), "f"),
            Ok(Some(Duration::from_millis(250)))
        );
        assert_eq!(seconds(Some(Float(0.0)), "f"), Ok(Some(Duration::ZERO)));
        let (field, why) = invalid(seconds(Some(Float(-1.0)), "a.b").unwrap_err());
        assert_eq!(
            (field.as_str(), why.as_str()),
            ("a.b", "must be zero or more seconds, got -1")
        );
        let (_, why) = invalid(seconds(Some(Float(f64::NAN)), "f").unwrap_err());
        assert_eq!(why, "must be a finite number of seconds, got NaN");
        let (_, why) = invalid(seconds(Some(Float(f64::INFINITY)), "f").unwrap_err());
        assert_eq!(why, "must be a finite number of seconds, got inf");
        let (_, why) = invalid(seconds(Some(Float(1e30)), "f").unwrap_err());
        assert_eq!(why, "1000000000000000000000000000000 seconds is too long");
    }

    #[test]
    fn positive_seconds_reject_zero() {
        let (field, why) = invalid(positive_seconds(Some(Float(0.0)), "t").unwrap_err());
        assert_eq!(
            (field.as_str(), why.as_str()),
            ("t", "must be greater than zero")
        );
        assert_eq!(
            positive_seconds(Some(Float(10.0)), "t"),
            Ok(Some(Duration::from_secs(10)))
        );
    }

    #[test]
    fn counts_check_sign_and_range_of_the_target_type() {
        assert_eq!(count::<u32>(Some(Int(0)), "n"), Ok(Some(0)));
        assert_eq!(count::<u64>(None, "n"), Ok(None));
        let (_, why) = invalid(count::<u32>(Some(Int(-1)), "n").unwrap_err());
        assert_eq!(why, "must be zero or more, got -1");
        let (_, why) = invalid(count::<u16>(Some(Int(70_000)), "n").unwrap_err());
        assert_eq!(why, "70000 is too large");
        let (field, why) = invalid(positive::<usize>(Some(Int(0)), "c").unwrap_err());
        assert_eq!(
            (field.as_str(), why.as_str()),
            ("c", "must be greater than zero, got 0")
        );
        assert!(positive::<usize>(Some(Int(-4)), "c").is_err());
        assert_eq!(positive::<usize>(Some(Int(8)), "c"), Ok(Some(8)));
    }
}
