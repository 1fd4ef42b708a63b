//! Runtime configuration: plain structs with documented defaults, a typed builder, and
//! one validation pass ([`Config::validate`]) whose errors name the field at fault.
//!
//! Two ways in, one result:
//!
//! * [`Config::from_yaml_str`] / [`Config::from_yaml_file`] read LiteLLM's `config.yaml`
//!   (`model_list`, `general_settings`, `router_settings`, `litellm_settings`), resolving
//!   `os.environ/NAME` values from the environment;
//! * [`Config::builder`] for Rust users, with the same defaults.
//!
//! Field names in errors are LiteLLM's YAML paths (`general_settings.health_check_interval`)
//! whichever way the config was built, so one error text serves both.
//!
//! ```
//! use std::time::Duration;
//! use tower_health_routing::{Config, Deployment, config::RoutingStrategy};
//!
//! let cfg = Config::builder()
//!     .deployment(Deployment::builder("gpt-4o", "openai/gpt-4o").api_base("http://127.0.0.1:8001/v1").build())
//!     .deployment(Deployment::builder("gpt-4o", "openai/gpt-4o").api_base("http://127.0.0.1:8002/v1").build())
//!     .background_health_checks(true)
//!     .health_check_interval(Duration::from_secs(30))
//!     .enable_health_check_routing(true)
//!     .routing_strategy(RoutingStrategy::LeastBusy)
//!     .build()?;
//! assert_eq!(cfg.health.staleness_threshold(), Duration::from_secs(60));
//! # Ok::<(), tower_health_routing::ConfigError>(())
//! ```

#[cfg(feature = "yaml")]
mod litellm;

#[cfg(feature = "yaml")]
use std::path::Path;
use std::{
    collections::{BTreeMap, HashMap},
    fmt,
    num::{NonZeroU32, NonZeroUsize},
    time::Duration,
};

use crate::{
    deployment::Deployment,
    error::{ConfigError, ConfigErrorKind},
    secret::{Scrubber, Secret},
};

/// The smallest `health_check_interval` a config file can set (1 s); a smaller value is
/// raised to it with a warning naming the field. [`ConfigBuilder::health_check_interval`]
/// takes any positive value (tests run sub-second intervals under paused time).
pub const MIN_HEALTH_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// Everything the router, the probe loop and the endpoints need, validated.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct Config {
    /// Every deployment (`model_list`), in config order.
    pub deployments: Vec<Deployment>,
    /// Health-check settings (`general_settings`).
    pub health: HealthCheckSettings,
    /// Router settings (`router_settings`).
    pub router: RouterSettings,
    /// The proxy's admin key (`general_settings.master_key`); guards the health endpoints.
    pub master_key: Option<Secret>,
    /// A classifier of your own for cooldown, retries and the HTTP prober; `None`: the
    /// [`DefaultClassifier`](crate::classify::DefaultClassifier) with
    /// `router.max_retry_after`. Read it with [`Config::classifier`].
    pub classifier: Option<std::sync::Arc<dyn crate::classify::Classify>>,
    /// Settings only a server in front of the router reads (the gateway's boot check,
    /// request limits, drain endpoint, `/metrics` auth); the library carries them.
    pub server: ServerSettings,
    /// Settings of the config file that this crate does not implement (callbacks,
    /// guardrails, caching, spend tracking, the database, the UI, ...), by YAML path
    /// (`litellm_settings.success_callback`), sorted within each section. Filled by the YAML reader (keys set
    /// to null, `false` or an empty value are left out); shown in
    /// `/health/readiness/details` as `unimplemented_settings`. See
    /// [`Config::auth_settings`] for those that decide who may call.
    pub unimplemented_settings: Vec<String>,
}

/// `general_settings`/`litellm_settings` keys read by a server (the gateway), not by the
/// router. `None` means "the server's default" (the gateway's CLI may override each).
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct ServerSettings {
    /// `general_settings.dangerously_permit_weak_or_unset_master_key` (LiteLLM's): start
    /// on a public address with no, an empty, a publicly known or a short master key.
    pub dangerously_permit_weak_or_unset_master_key: bool,
    /// `general_settings.max_request_size_mb` (LiteLLM's): the largest request body, MiB.
    pub max_request_size_mb: Option<f64>,
    /// `general_settings.max_request_header_size_kb`: the largest request head (request
    /// line and headers), KiB.
    pub max_request_header_size_kb: Option<f64>,
    /// `general_settings.header_read_timeout` (seconds): time a client has to send a
    /// request's headers.
    pub header_read_timeout: Option<Duration>,
    /// `general_settings.max_connections`: the most client connections served at once.
    pub max_connections: Option<usize>,
    /// `general_settings.enable_drain_endpoint` (LiteLLM's): serve `GET /health/drain`.
    pub enable_drain_endpoint: bool,
    /// `general_settings.drain_endpoint_token` (LiteLLM's): the `X-Drain-Token` value.
    pub drain_endpoint_token: Option<Secret>,
    /// `general_settings.graceful_shutdown_timeout` (seconds; LiteLLM reads the
    /// `GRACEFUL_SHUTDOWN_TIMEOUT` variable): the longest a drain waits for in-flight requests.
    pub graceful_shutdown_timeout: Option<Duration>,
    /// `litellm_settings.require_auth_for_metrics_endpoint` (LiteLLM's, default `true`):
    /// `/metrics` needs the master key when one is set.
    pub require_auth_for_metrics_endpoint: Option<bool>,
}

/// The settings, among [`Config::unimplemented_settings`], that decide *who may call* in
/// LiteLLM (custom auth, JWT / OAuth2, virtual keys in a database, IP allowlists, a custom
/// key header). This crate accepts only the master key: callers relying on them are refused.
pub const AUTH_SETTINGS: &[&str] = &[
    "general_settings.custom_auth",
    "general_settings.enable_jwt_auth",
    "general_settings.litellm_jwtauth",
    "general_settings.enable_oauth2_auth",
    "general_settings.enable_oauth2_proxy_auth",
    "general_settings.database_url",
    "general_settings.allowed_ips",
    "general_settings.litellm_key_header_name",
];

impl Config {
    /// The [`unimplemented_settings`](Self::unimplemented_settings) that decide who may
    /// call ([`AUTH_SETTINGS`]).
    pub fn auth_settings(&self) -> impl Iterator<Item = &str> {
        self.unimplemented_settings
            .iter()
            .map(String::as_str)
            .filter(|p| AUTH_SETTINGS.contains(p))
    }

    /// The classifier every consumer uses: the one set, else the default rules capping
    /// `Retry-After` at `router.max_retry_after`.
    pub fn classifier(&self) -> std::sync::Arc<dyn crate::classify::Classify> {
        match &self.classifier {
            Some(c) => std::sync::Arc::clone(c),
            None => std::sync::Arc::new(self.default_classifier()),
        }
    }

    fn default_classifier(&self) -> crate::classify::DefaultClassifier {
        crate::classify::DefaultClassifier::new(self.router.max_retry_after)
    }

    /// [`Classify::classify_response`](crate::classify::Classify::classify_response) with
    /// [`Config::classifier`], without allocating (the request path calls it).
    pub(crate) fn classify_response(
        &self,
        status: http::StatusCode,
        headers: &http::HeaderMap,
        body: Option<&[u8]>,
    ) -> crate::classify::Class {
        use crate::classify::Classify as _;
        match &self.classifier {
            Some(c) => c.classify_response(status, headers, body),
            None => self
                .default_classifier()
                .classify_response(status, headers, body),
        }
    }

    /// [`Classify::classify_error`](crate::classify::Classify::classify_error) with
    /// [`Config::classifier`], without allocating.
    pub(crate) fn classify_error(
        &self,
        error: &(dyn std::error::Error + 'static),
    ) -> crate::classify::Class {
        use crate::classify::Classify as _;
        match &self.classifier {
            Some(c) => c.classify_error(error),
            None => self.default_classifier().classify_error(error),
        }
    }

    /// Whether a successful answer only counts in its deployment's cooldown window: no
    /// `health_check_skip_when_traffic_healthy`, no tiered rounds, no `outlier_detection`
    /// and no `stream_stall_timeout` asks more of it (the request path's short way).
    pub(crate) fn success_counts_only(&self) -> bool {
        !self.health.skip_when_traffic_healthy
            && !self.health.tiered()
            && self.router.outlier_detection.is_none()
            && self.router.stream_stall_timeout.is_none()
    }
}

/// Health-check settings, with LiteLLM's names and defaults.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct HealthCheckSettings {
    /// `background_health_checks`: run the probe loop. Default `false`.
    pub background_health_checks: bool,
    /// `health_check_interval`: time between rounds. Default 300 s.
    pub interval: Duration,
    /// `enable_health_check_routing`: drop deployments that failed their last check. Default `false`.
    pub routing_enabled: bool,
    /// `health_check_staleness_threshold`: results older than this are ignored.
    /// `None` means 2 × [`interval`](Self::interval); see [`staleness_threshold`](Self::staleness_threshold).
    pub staleness_threshold: Option<Duration>,
    /// `health_check_details`: show `api_base`, errors etc. in `/health`. Default `true`.
    pub details: bool,
    /// `health_check_skip_disabled_background_models`: leave deployments with
    /// `disable_background_health_check` out of on-demand `/health` rounds too. Default `false`.
    pub skip_disabled_background_models: bool,
    /// `health_check_concurrency`: most probes in flight at once. Default `None` (unbounded).
    pub concurrency: Option<NonZeroUsize>,
    /// `health_check_ignore_transient_errors`: a probe answered 429 or 408 keeps the
    /// deployment's previous state. Default `false`.
    pub ignore_transient_errors: bool,
    /// `health_check_unhealthy_threshold`: consecutive failed probes before a healthy
    /// deployment is marked unhealthy. Default 1 (LiteLLM's behaviour).
    pub unhealthy_threshold: NonZeroU32,
    /// `health_check_healthy_threshold`: consecutive passed probes before an unhealthy
    /// deployment is marked healthy again. Default 1 (LiteLLM's behaviour).
    pub healthy_threshold: NonZeroU32,
    /// `health_check_jitter`: up to this much random delay added to each interval. Default zero (off).
    pub jitter: Duration,
    /// `use_shared_health_check`: share results across processes (needs the `redis` feature). Default `false`.
    pub use_shared_health_check: bool,
    /// `min_healthy_percent`: `/health/readiness` answers 503 while fewer than this share
    /// (0–100) of the (supported) deployments is healthy. Default `None` (always ready).
    pub min_healthy_percent: Option<f64>,
    /// `health_check_skip_when_traffic_healthy` (this crate's): a deployment that answered
    /// real traffic successfully within the current interval (and failed none since) is not
    /// probed that round; its result comes from the traffic (`source: traffic`). Default `false`.
    pub skip_when_traffic_healthy: bool,
    /// `background_health_check_model_groups`: only deployments of these routes
    /// (`model_name`s) are probed in the background; the others stay unchecked. `None`
    /// (unset): every route. Default `None`.
    pub background_model_groups: Option<Vec<String>>,
    /// `health_check_history_size` (extension): results kept per deployment for
    /// `/health/history` (a ring; the oldest goes first). `0` keeps none. Default 100.
    pub history_size: usize,
    /// `model_list_healthy_only`: `/v1/models` lists only routes with a deployment that
    /// may be picked now (as `healthy_only=true` asks per request). Default `false`.
    pub model_list_healthy_only: bool,
    /// `health_check_billed_every` (this crate's): with a value N above 1, every round runs
    /// the **cheap tier** first (`GET {base}/models` or the provider's cheapest
    /// authenticated call, else a TCP/TLS connect: no tokens), and the **billed tier**
    /// (the mode-aware probe LiteLLM sends) only every N rounds per deployment, or at once
    /// when something changed (its cheap tier went from fail to pass, its traffic failed,
    /// its last billed probe failed). A failed cheap tier makes the deployment unhealthy
    /// without a billed probe. Default 1: every round billed, no cheap tier (LiteLLM's).
    pub billed_every: NonZeroU32,
    /// `health_check_max_probes_per_minute` (this crate's): at most this many billed
    /// probes per minute over all deployments (background rounds). A round over budget
    /// skips the rest of its billed probes (the cheap tier still runs; those deployments
    /// keep their last state). Per deployment: `model_info.health_check_max_probes_per_minute`.
    /// Default `None` (no limit).
    pub max_probes_per_minute: Option<NonZeroU32>,
    /// `health_check_max_cost_per_day` (this crate's): at most this much estimated spend on
    /// billed probes per 24 hours (in the unit of `input_cost_per_token`). A billed probe
    /// costs `prompt tokens × input_cost_per_token + max_tokens × output_cost_per_token`
    /// (prompt tokens: its prompt's characters / 4, rounded up); a deployment with no
    /// costs configured is not counted. Default `None` (no limit).
    pub max_cost_per_day: Option<f64>,
    /// `health_check_spread` (this crate's): a fraction from 0 to 1 of the interval over
    /// which a background round's probes start: each deployment's probe waits a uniform
    /// random offset in `[0, spread × interval)` (seeded by [`seed`](Self::seed)), with at
    /// most `health_check_concurrency` in flight. Default 0: all start at once, bounded
    /// only by the concurrency (today's behaviour).
    pub spread: f64,
    /// `health_check_jitter_seed` (this crate's): the seed of the interval jitter and of
    /// the spread offsets, for reproducible schedules
    /// ([`ProbeLoopBuilder::seed`](crate::probe::ProbeLoopBuilder::seed) wins). Default
    /// `None` (random).
    pub seed: Option<u64>,
}

/// The default of [`HealthCheckSettings::history_size`].
pub const DEFAULT_HISTORY_SIZE: usize = 100;

/// The largest [`HealthCheckSettings::history_size`] accepted.
pub const MAX_HISTORY_SIZE: usize = 10_000;

impl Default for HealthCheckSettings {
    fn default() -> Self {
        Self {
            background_health_checks: false,
            interval: Duration::from_secs(300),
            routing_enabled: false,
            staleness_threshold: None,
            details: true,
            skip_disabled_background_models: false,
            concurrency: None,
            ignore_transient_errors: false,
            unhealthy_threshold: NonZeroU32::MIN,
            healthy_threshold: NonZeroU32::MIN,
            jitter: Duration::ZERO,
            use_shared_health_check: false,
            min_healthy_percent: None,
            skip_when_traffic_healthy: false,
            background_model_groups: None,
            history_size: DEFAULT_HISTORY_SIZE,
            model_list_healthy_only: false,
            billed_every: NonZeroU32::MIN,
            max_probes_per_minute: None,
            max_cost_per_day: None,
            spread: 0.0,
            seed: None,
        }
    }
}

impl HealthCheckSettings {
    /// The effective staleness threshold: the configured one, else 2 × interval.
    pub fn staleness_threshold(&self) -> Duration {
        self.staleness_threshold
            .unwrap_or(self.interval.saturating_mul(2))
    }

    /// Whether rounds run the cheap tier first: `billed_every` above 1 or a probe budget set.
    pub fn tiered(&self) -> bool {
        self.billed_every.get() > 1
            || self.max_probes_per_minute.is_some()
            || self.max_cost_per_day.is_some()
    }
}

/// Router settings, with LiteLLM's names and defaults.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct RouterSettings {
    /// `routing_strategy`. Default [`RoutingStrategy::SimpleShuffle`].
    pub routing_strategy: RoutingStrategy,
    /// `allowed_fails`: failures per minute before cooldown. `None`: LiteLLM's default
    /// rule (see `CooldownPolicy`).
    pub allowed_fails: Option<u32>,
    /// `cooldown_time`: how long a deployment sits out. Default 5 s.
    pub cooldown_time: Duration,
    /// `num_retries`: retries on another deployment. Default 0.
    pub num_retries: u32,
    /// `max_retry_after`: the longest `Retry-After` an upstream can impose, on cooldown
    /// and on the retry wait alike. Default 60 s.
    pub max_retry_after: Duration,
    /// Redis connection (`redis_url`, or `redis_host`/`redis_port`/`redis_password`).
    pub redis: Option<RedisSettings>,
    /// `routing_strategy_args`: knobs of the latency strategy.
    pub routing_strategy_args: RoutingStrategyArgs,
    /// `fallbacks`, `default_fallbacks`, `context_window_fallbacks`, `content_policy_fallbacks`.
    pub fallbacks: Fallbacks,
    /// `model_group_alias`: a route name that resolves to another group. Default empty.
    pub model_group_alias: BTreeMap<String, String>,
    /// `enable_pre_call_checks`: skip deployments whose `model_info.max_input_tokens` is
    /// below the request's [`RequestTokens`](crate::routing::RequestTokens). Default `false`.
    pub enable_pre_call_checks: bool,
    /// `timeout` (else `litellm_settings.request_timeout`): how long a forwarder waits for
    /// an upstream's answer when the deployment sets no `timeout` of its own. Default `None`
    /// (the forwarder's own default; the gateway's `--timeout`, 600 s). A deployment's
    /// `stream_timeout` (streams) or `timeout` wins over it, as in LiteLLM.
    pub timeout: Option<Duration>,
    /// `outlier_detection` (this crate's): Envoy-style ejection of deployments whose
    /// traffic fails. Default `None` (off; LiteLLM's cooldown only).
    pub outlier_detection: Option<OutlierDetection>,
    /// `panic_threshold_percent` (this crate's): when fewer than this share (0–100) of a
    /// route's deployments pass the health filter, route over all of them. Replaces the
    /// all-or-nothing bypass when set (0: never bypass). Default `None` (LiteLLM's bypass).
    pub panic_threshold_percent: Option<f64>,
    /// `slow_start_window` (this crate's): a deployment that comes back (healthy after
    /// unhealthy, or out of cooldown or ejection) starts at 10 % of its weight and ramps
    /// linearly to full over this window. Default `None` (off).
    pub slow_start_window: Option<Duration>,
    /// `stream_stall_timeout` (this crate's): the longest wait for the first body frame of
    /// a successful streaming (`text/event-stream`) response, and between its frames. A
    /// stall ends the stream with a [`StreamStalled`](crate::StreamStalled) error and counts
    /// once as a `Timeout` failure of the deployment (cooldown, outlier ejection); such a
    /// stream's outcome is recorded when it ends rather than at its head. Default `None`
    /// (off: no timer).
    pub stream_stall_timeout: Option<Duration>,
}

/// `router_settings.outlier_detection`: Envoy-style outlier ejection (see the README).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct OutlierDetection {
    /// `consecutive_failures`: deployment faults in a row that eject. Default 5; `None`: off.
    pub consecutive_failures: Option<u32>,
    /// `failure_percentage`: the share (0–100) of failed requests in an interval that
    /// ejects. Default `None` (off).
    pub failure_percentage: Option<f64>,
    /// `minimum_requests`: requests in the interval before `failure_percentage` applies. Default 50.
    pub minimum_requests: u32,
    /// `interval`: the failure-percentage window, and the time back in rotation that takes
    /// one off the ejection multiplier. Default 10 s.
    pub interval: Duration,
    /// `base_ejection_time`: an ejection lasts this × the number of ejections. Default 30 s.
    pub base_ejection_time: Duration,
    /// `max_ejection_time`: the longest ejection (before jitter). Default 300 s.
    pub max_ejection_time: Duration,
    /// `max_ejection_percent`: at most this share (0–100) of a route is out at once (one
    /// deployment may always be). Default 10.
    pub max_ejection_percent: f64,
    /// `jitter`: a random extra of up to this much on each ejection. Default 0.
    pub jitter: Duration,
    /// `jitter_seed`: makes the jitter reproducible. Default `None` (random).
    pub jitter_seed: Option<u64>,
}

impl Default for OutlierDetection {
    fn default() -> Self {
        Self {
            consecutive_failures: Some(5),
            failure_percentage: None,
            minimum_requests: 50,
            interval: Duration::from_secs(10),
            base_ejection_time: Duration::from_secs(30),
            max_ejection_time: Duration::from_secs(300),
            max_ejection_percent: 10.0,
            jitter: Duration::ZERO,
            jitter_seed: None,
        }
    }
}

/// `router_settings.routing_strategy_args`, with LiteLLM's names where LiteLLM has one.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct RoutingStrategyArgs {
    /// `lowest_latency_buffer`: pick at random among the deployments whose latency is within
    /// this fraction of the lowest (0.5 = up to 50 % slower). Default 0 (the lowest only).
    pub lowest_latency_buffer: f64,
    /// `latency_decay` (this crate's): the time constant τ of the latency estimate; an
    /// estimate not refreshed falls to 1/e of itself in τ. Default 10 s.
    pub latency_decay: Duration,
    /// `latency_failure_penalty` (this crate's): the latency a failed request counts as.
    /// Default 30 s.
    pub latency_failure_penalty: Duration,
}

impl RoutingStrategyArgs {
    /// `latency_decay` in nanos (at least 1), as the latency estimate uses it.
    pub(crate) fn tau_nanos(&self) -> f64 {
        (self.latency_decay.as_nanos() as f64).max(1.0)
    }
}

impl Default for RoutingStrategyArgs {
    fn default() -> Self {
        Self {
            lowest_latency_buffer: 0.0,
            latency_decay: Duration::from_secs(10),
            latency_failure_penalty: Duration::from_secs(30),
        }
    }
}

/// Where a request goes when its own group cannot answer (LiteLLM's fallbacks).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Fallbacks {
    /// `fallbacks`: per group, the groups to try in order after any failure.
    pub general: BTreeMap<String, Vec<String>>,
    /// `default_fallbacks`: the groups to try for a group with no `fallbacks` entry.
    pub default: Vec<String>,
    /// `context_window_fallbacks`: per group, after the upstream rejected the request for its length.
    pub context_window: BTreeMap<String, Vec<String>>,
    /// `content_policy_fallbacks`: per group, after a content-policy rejection.
    pub content_policy: BTreeMap<String, Vec<String>>,
}

impl Fallbacks {
    /// Whether no fallback of any kind is configured.
    pub fn is_empty(&self) -> bool {
        self.general.is_empty()
            && self.default.is_empty()
            && self.context_window.is_empty()
            && self.content_policy.is_empty()
    }
}

impl Default for RouterSettings {
    fn default() -> Self {
        Self {
            routing_strategy: RoutingStrategy::SimpleShuffle,
            allowed_fails: None,
            cooldown_time: Duration::from_secs(5),
            num_retries: 0,
            max_retry_after: crate::classify::DEFAULT_MAX_RETRY_AFTER,
            redis: None,
            routing_strategy_args: RoutingStrategyArgs::default(),
            fallbacks: Fallbacks::default(),
            model_group_alias: BTreeMap::new(),
            enable_pre_call_checks: false,
            timeout: None,
            outlier_detection: None,
            panic_threshold_percent: None,
            slow_start_window: None,
            stream_stall_timeout: None,
        }
    }
}

/// Where Redis is. The password is a secret.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RedisSettings {
    /// `redis_url` (may embed a password; never displayed).
    Url(Secret),
    /// `redis_host`, `redis_port`, `redis_password`.
    HostPort {
        /// Host name or address.
        host: String,
        /// Port (default 6379).
        port: u16,
        /// Password, if any.
        password: Option<Secret>,
        /// TLS (`redis_ssl: true`, or `REDIS_SSL=true`), as a `rediss://` URL would.
        tls: bool,
    },
}

/// How the router picks one deployment among the eligible ones.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RoutingStrategy {
    /// `simple-shuffle`: weighted random by `weight`, else `rpm`, else `tpm`, else uniform.
    /// LiteLLM's default.
    #[default]
    SimpleShuffle,
    /// `round-robin`: each deployment in turn.
    RoundRobin,
    /// `least-busy`: the fewest requests in flight.
    LeastBusy,
    /// `latency-based-routing`: the lowest decaying latency estimate (time to first byte;
    /// see `routing_strategy_args`).
    LatencyBased,
    /// `power-of-two-choices`: two at random, the less loaded of the two.
    PowerOfTwoChoices,
    /// `usage-based-routing`: the least used this minute (tokens, then requests), skipping
    /// deployments at their `rpm`/`tpm` limit.
    UsageBased,
    /// `usage-based-routing-v2`: as `usage-based-routing` (LiteLLM's v2 differs in how it
    /// stores its counters; sharing them across processes through Redis is not done yet).
    UsageBasedV2,
    /// `cost-based-routing`: the lowest `input_cost_per_token + output_cost_per_token`.
    CostBased,
}

impl RoutingStrategy {
    /// Every strategy's config name.
    pub const NAMES: &'static [&'static str] = &[
        "simple-shuffle",
        "round-robin",
        "least-busy",
        "latency-based-routing",
        "power-of-two-choices",
        "usage-based-routing",
        "usage-based-routing-v2",
        "cost-based-routing",
    ];

    /// The config name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SimpleShuffle => "simple-shuffle",
            Self::RoundRobin => "round-robin",
            Self::LeastBusy => "least-busy",
            Self::LatencyBased => "latency-based-routing",
            Self::PowerOfTwoChoices => "power-of-two-choices",
            Self::UsageBased => "usage-based-routing",
            Self::UsageBasedV2 => "usage-based-routing-v2",
            Self::CostBased => "cost-based-routing",
        }
    }

    /// Parses a config name.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "simple-shuffle" => Self::SimpleShuffle,
            "round-robin" => Self::RoundRobin,
            "least-busy" => Self::LeastBusy,
            "latency-based-routing" => Self::LatencyBased,
            "power-of-two-choices" | "p2c" => Self::PowerOfTwoChoices,
            "usage-based-routing" => Self::UsageBased,
            "usage-based-routing-v2" => Self::UsageBasedV2,
            "cost-based-routing" => Self::CostBased,
            _ => return None,
        })
    }
}

impl fmt::Display for RoutingStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for RoutingStrategy {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, ConfigError> {
        Self::from_name(s).ok_or_else(|| {
            ConfigError::new(
                "router_settings.routing_strategy",
                ConfigErrorKind::UnknownStrategy {
                    value: s.to_owned(),
                },
            )
            .with_known(Self::NAMES)
        })
    }
}

impl Config {
    /// Starts a config with every default.
    pub fn builder() -> ConfigBuilder {
        ConfigBuilder {
            cfg: Config::default(),
        }
    }

    /// Parses LiteLLM's `config.yaml` text. `os.environ/NAME` values are read from the
    /// environment; unknown keys are kept (in each deployment's `extra`) or ignored with a
    /// debug event.
    #[cfg(feature = "yaml")]
    pub fn from_yaml_str(text: &str) -> Result<Self, ConfigError> {
        litellm::parse_shared(text, &|name| std::env::var(name).ok())
    }

    /// Like [`from_yaml_str`](Self::from_yaml_str), with `os.environ/NAME` looked up by
    /// `env` instead of the process environment (handy in tests).
    #[cfg(feature = "yaml")]
    pub fn from_yaml_str_with_env(
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        litellm::parse(text, env)
    }

    /// Reads and parses a LiteLLM `config.yaml` file.
    #[cfg(feature = "yaml")]
    pub fn from_yaml_file(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::new("", ConfigErrorKind::Io(format!("{}: {e}", path.display())))
        })?;
        Self::from_yaml_str(&text)
    }

    /// `outlier_detection`, `panic_threshold_percent` and `stream_stall_timeout`.
    fn validate_ejection(&self) -> Result<(), ConfigError> {
        let pct = |v: f64, field: &str| {
            if v.is_finite() && (0.0..=100.0).contains(&v) {
                Ok(())
            } else {
                Err(ConfigError::invalid(
                    field,
                    format!("must be a percentage between 0 and 100, got {v}"),
                ))
            }
        };
        if let Some(p) = self.router.panic_threshold_percent {
            pct(p, "router_settings.panic_threshold_percent")?;
        }
        if self.router.stream_stall_timeout == Some(Duration::ZERO) {
            return Err(ConfigError::invalid(
                "router_settings.stream_stall_timeout",
                "must be greater than zero (leave it out, or null, to turn it off)",
            ));
        }
        let Some(od) = &self.router.outlier_detection else {
            return Ok(());
        };
        const OD: &str = "router_settings.outlier_detection";
        if let Some(f) = od.failure_percentage {
            pct(f, &format!("{OD}.failure_percentage"))?;
        }
        pct(
            od.max_ejection_percent,
            &format!("{OD}.max_ejection_percent"),
        )?;
        if od.consecutive_failures == Some(0) {
            return Err(ConfigError::invalid(
                format!("{OD}.consecutive_failures"),
                "must be at least 1 (leave it out, or null, to turn the rule off)",
            ));
        }
        for (v, f) in [
            (od.interval, "interval"),
            (od.base_ejection_time, "base_ejection_time"),
        ] {
            if v.is_zero() {
                return Err(ConfigError::invalid(
                    format!("{OD}.{f}"),
                    "must be greater than zero",
                ));
            }
        }
        Ok(())
    }

    /// Checks every rule once; errors name the field (see the module docs).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(p) = self.health.min_healthy_percent
            && !(p.is_finite() && (0.0..=100.0).contains(&p))
        {
            return Err(ConfigError::invalid(
                "general_settings.min_healthy_percent",
                format!("must be a number from 0 to 100, got {p}"),
            ));
        }
        let h = &self.health;
        if h.interval.is_zero() {
            return Err(ConfigError::invalid(
                "general_settings.health_check_interval",
                "must be greater than zero",
            ));
        }
        if let Some(s) = h.staleness_threshold
            && s < h.interval
        {
            return Err(ConfigError::invalid(
                "general_settings.health_check_staleness_threshold",
                format!(
                    "{}s is below health_check_interval ({}s): every result would be stale before the next round",
                    s.as_secs_f64(),
                    h.interval.as_secs_f64()
                ),
            ));
        }
        if !(h.spread.is_finite() && (0.0..=1.0).contains(&h.spread)) {
            return Err(ConfigError::invalid(
                "general_settings.health_check_spread",
                format!(
                    "must be a fraction of the interval from 0 to 1, got {}",
                    h.spread
                ),
            ));
        }
        if let Some(c) = h.max_cost_per_day
            && !(c.is_finite() && c >= 0.0)
        {
            return Err(ConfigError::invalid(
                "general_settings.health_check_max_cost_per_day",
                format!("must be a finite number >= 0, got {c}"),
            ));
        }
        let a = &self.router.routing_strategy_args;
        if !(a.lowest_latency_buffer.is_finite() && a.lowest_latency_buffer >= 0.0) {
            return Err(ConfigError::invalid(
                "router_settings.routing_strategy_args.lowest_latency_buffer",
                format!(
                    "must be a finite number >= 0, got {}",
                    a.lowest_latency_buffer
                ),
            ));
        }
        if a.latency_decay.is_zero() {
            return Err(ConfigError::invalid(
                "router_settings.routing_strategy_args.latency_decay",
                "must be greater than zero",
            ));
        }
        self.validate_ejection()?;
        let mut seen: HashMap<&str, usize> = HashMap::with_capacity(self.deployments.len());
        // The last `api_base` that passed: deployments listed together often share one.
        let mut base_ok: Option<&str> = None;
        for (i, d) in self.deployments.iter().enumerate() {
            let at = |f: &str| format!("model_list[{i}].{f}");
            if d.route().is_empty() {
                return Err(ConfigError::new(at("model_name"), ConfigErrorKind::Missing));
            }
            if d.params().model.is_empty() {
                return Err(ConfigError::new(
                    at("litellm_params.model"),
                    ConfigErrorKind::Missing,
                ));
            }
            if let Some(w) = d.params().weight
                && !(w.is_finite() && w >= 0.0)
            {
                return Err(ConfigError::invalid(
                    at("litellm_params.weight"),
                    format!("must be a finite number >= 0, got {w}"),
                ));
            }
            if d.info().health_check_max_probes_per_minute == Some(0) {
                return Err(ConfigError::invalid(
                    at("model_info.health_check_max_probes_per_minute"),
                    "must be greater than zero (leave it out for no limit)",
                ));
            }
            if let Some(base) = d.params().api_base.as_deref()
                && base_ok != Some(base)
            {
                check_api_base(base)
                    .map_err(|why| ConfigError::invalid(at("litellm_params.api_base"), why))?;
                base_ok = Some(base);
            }
            for (f, c) in [
                (
                    "litellm_params.input_cost_per_token",
                    d.params().input_cost_per_token,
                ),
                (
                    "litellm_params.output_cost_per_token",
                    d.params().output_cost_per_token,
                ),
                (
                    "model_info.input_cost_per_token",
                    d.info().input_cost_per_token,
                ),
                (
                    "model_info.output_cost_per_token",
                    d.info().output_cost_per_token,
                ),
            ] {
                if let Some(c) = c
                    && !(c.is_finite() && c >= 0.0)
                {
                    return Err(ConfigError::invalid(
                        at(f),
                        format!("must be a finite number >= 0, got {c}"),
                    ));
                }
            }
            if d.params().max_parallel_requests == Some(0) {
                return Err(ConfigError::invalid(
                    at("litellm_params.max_parallel_requests"),
                    "must be greater than zero",
                ));
            }
            if let Some(t) = d.info().health_check_timeout
                && t.is_zero()
            {
                return Err(ConfigError::invalid(
                    at("model_info.health_check_timeout"),
                    "must be greater than zero",
                ));
            }
            match seen.get(d.id().as_str()) {
                Some(&j) if !self.deployments[j].same_params(d) => {
                    return Err(ConfigError::new(
                        at("model_info.id"),
                        ConfigErrorKind::DuplicateId {
                            id: d.id().to_string(),
                        },
                    ));
                }
                Some(_) => {}
                None => {
                    seen.insert(d.id().as_str(), i);
                }
            }
        }
        Ok(())
    }

    /// A [`Scrubber`] that removes every configured secret (API keys, credentials, the
    /// master key) from text before it is shown or logged.
    pub fn scrubber(&self) -> Scrubber {
        let deployment_secrets = self.deployments.iter().flat_map(|d| d.secrets().cloned());
        let redis = match &self.router.redis {
            Some(RedisSettings::Url(u)) => Some(u.clone()),
            Some(RedisSettings::HostPort { password, .. }) => password.clone(),
            None => None,
        };
        Scrubber::new(
            deployment_secrets
                .chain(self.master_key.clone())
                .chain(self.server.drain_endpoint_token.clone())
                .chain(redis),
        )
    }
}

/// An `api_base` is an absolute URL without credentials. Userinfo (`user:pw@host`) is
/// refused rather than stripped: it would never be sent (keys go in `api_key` or headers),
/// and HTTP client logs print a URL's authority. No message quotes the userinfo.
fn check_api_base(base: &str) -> Result<(), String> {
    let shown = || crate::secret::redact_userinfo(base.trim());
    if base.trim().is_empty() {
        // `os.environ/X` with X set empty: LiteLLM reads it as unset; the prober decides.
        return Ok(());
    }
    if crate::secret::has_userinfo(base) {
        return Err(format!(
            "`{}` carries credentials (user:password@); they are not sent upstream. \
             Remove them and put the key in api_key (or a header param)",
            shown()
        ));
    }
    match base.trim().parse::<http::Uri>() {
        Ok(u) if u.scheme().is_some() && u.authority().is_some() => Ok(()),
        Ok(_) => Err(format!(
            "`{}` is not an absolute URL (expected scheme://host[:port]/path)",
            shown()
        )),
        Err(_) => Err(format!(
            "`{}` is not a valid URL (spaces and other unescaped characters are not allowed)",
            shown()
        )),
    }
}

/// Builds a [`Config`] in Rust; every setter names the LiteLLM setting it stands for.
#[derive(Debug, Clone)]
pub struct ConfigBuilder {
    cfg: Config,
}

impl ConfigBuilder {
    /// Adds a deployment (`model_list` entry).
    pub fn deployment(mut self, d: Deployment) -> Self {
        self.cfg.deployments.push(d);
        self
    }
    /// Adds several deployments.
    pub fn deployments(mut self, ds: impl IntoIterator<Item = Deployment>) -> Self {
        self.cfg.deployments.extend(ds);
        self
    }
    /// `background_health_checks` (default `false`).
    pub fn background_health_checks(mut self, on: bool) -> Self {
        self.cfg.health.background_health_checks = on;
        self
    }
    /// `health_check_interval` (default 300 s).
    pub fn health_check_interval(mut self, d: Duration) -> Self {
        self.cfg.health.interval = d;
        self
    }
    /// `enable_health_check_routing` (default `false`).
    pub fn enable_health_check_routing(mut self, on: bool) -> Self {
        self.cfg.health.routing_enabled = on;
        self
    }
    /// `health_check_staleness_threshold` (default 2 × interval).
    pub fn health_check_staleness_threshold(mut self, d: Duration) -> Self {
        self.cfg.health.staleness_threshold = Some(d);
        self
    }
    /// `health_check_details` (default `true`).
    pub fn health_check_details(mut self, on: bool) -> Self {
        self.cfg.health.details = on;
        self
    }
    /// `health_check_skip_disabled_background_models` (default `false`).
    pub fn health_check_skip_disabled_background_models(mut self, on: bool) -> Self {
        self.cfg.health.skip_disabled_background_models = on;
        self
    }
    /// `health_check_concurrency` (default unbounded).
    pub fn health_check_concurrency(mut self, n: NonZeroUsize) -> Self {
        self.cfg.health.concurrency = Some(n);
        self
    }
    /// `health_check_ignore_transient_errors` (default `false`).
    pub fn health_check_ignore_transient_errors(mut self, on: bool) -> Self {
        self.cfg.health.ignore_transient_errors = on;
        self
    }
    /// Consecutive results before a deployment flips (defaults 1 and 1).
    pub fn health_check_thresholds(mut self, unhealthy: NonZeroU32, healthy: NonZeroU32) -> Self {
        self.cfg.health.unhealthy_threshold = unhealthy;
        self.cfg.health.healthy_threshold = healthy;
        self
    }
    /// `health_check_skip_when_traffic_healthy` (default `false`).
    pub fn health_check_skip_when_traffic_healthy(mut self, on: bool) -> Self {
        self.cfg.health.skip_when_traffic_healthy = on;
        self
    }
    /// Random delay of up to `d` added to each interval (default zero).
    pub fn health_check_jitter(mut self, d: Duration) -> Self {
        self.cfg.health.jitter = d;
        self
    }
    /// `health_check_billed_every` (default 1: every round billed, no cheap tier); see
    /// [`HealthCheckSettings::billed_every`].
    pub fn health_check_billed_every(mut self, n: NonZeroU32) -> Self {
        self.cfg.health.billed_every = n;
        self
    }
    /// `health_check_max_probes_per_minute`: billed probes per minute over all deployments
    /// (default no limit); see [`HealthCheckSettings::max_probes_per_minute`].
    pub fn health_check_max_probes_per_minute(mut self, n: NonZeroU32) -> Self {
        self.cfg.health.max_probes_per_minute = Some(n);
        self
    }
    /// `health_check_max_cost_per_day`: estimated billed-probe spend per 24 h (default no
    /// limit; a finite number >= 0, checked by `build`); see
    /// [`HealthCheckSettings::max_cost_per_day`].
    pub fn health_check_max_cost_per_day(mut self, cost: f64) -> Self {
        self.cfg.health.max_cost_per_day = Some(cost);
        self
    }
    /// `health_check_spread`: the fraction (0 to 1, checked by `build`) of the interval
    /// over which a round's probes start at random offsets (default 0: all at once).
    pub fn health_check_spread(mut self, fraction: f64) -> Self {
        self.cfg.health.spread = fraction;
        self
    }
    /// `health_check_jitter_seed`: seeds the interval jitter and the spread offsets
    /// (default random).
    pub fn health_check_jitter_seed(mut self, seed: u64) -> Self {
        self.cfg.health.seed = Some(seed);
        self
    }
    /// `master_key`.
    pub fn master_key(mut self, key: impl Into<Secret>) -> Self {
        self.cfg.master_key = Some(key.into());
        self
    }
    /// `routing_strategy` (default `simple-shuffle`).
    pub fn routing_strategy(mut self, s: RoutingStrategy) -> Self {
        self.cfg.router.routing_strategy = s;
        self
    }
    /// `allowed_fails` (default: LiteLLM's percentage rule).
    pub fn allowed_fails(mut self, n: u32) -> Self {
        self.cfg.router.allowed_fails = Some(n);
        self
    }
    /// `cooldown_time` (default 5 s).
    pub fn cooldown_time(mut self, d: Duration) -> Self {
        self.cfg.router.cooldown_time = d;
        self
    }
    /// `num_retries` (default 0).
    pub fn num_retries(mut self, n: u32) -> Self {
        self.cfg.router.num_retries = n;
        self
    }
    /// `max_retry_after`: caps an upstream's `Retry-After` (default 60 s).
    pub fn max_retry_after(mut self, d: Duration) -> Self {
        self.cfg.router.max_retry_after = d;
        self
    }
    /// `outlier_detection` (default off).
    pub fn outlier_detection(mut self, od: OutlierDetection) -> Self {
        self.cfg.router.outlier_detection = Some(od);
        self
    }
    /// `slow_start_window` (default off; zero is off too).
    pub fn slow_start_window(mut self, d: Duration) -> Self {
        self.cfg.router.slow_start_window = (!d.is_zero()).then_some(d);
        self
    }
    /// `stream_stall_timeout`: the longest wait for a streaming response's first frame
    /// and between frames (default off; zero is refused by [`build`](Self::build)).
    pub fn stream_stall_timeout(mut self, d: Duration) -> Self {
        self.cfg.router.stream_stall_timeout = Some(d);
        self
    }
    /// `panic_threshold_percent` (default: LiteLLM's all-or-nothing bypass).
    pub fn panic_threshold_percent(mut self, pct: f64) -> Self {
        self.cfg.router.panic_threshold_percent = Some(pct);
        self
    }
    /// A classifier of your own (default:
    /// [`DefaultClassifier`](crate::classify::DefaultClassifier)).
    pub fn classifier(mut self, c: std::sync::Arc<dyn crate::classify::Classify>) -> Self {
        self.cfg.classifier = Some(c);
        self
    }
    /// `routing_strategy_args` (defaults in [`RoutingStrategyArgs`]).
    pub fn routing_strategy_args(mut self, a: RoutingStrategyArgs) -> Self {
        self.cfg.router.routing_strategy_args = a;
        self
    }
    /// `fallbacks`: after `group` fails, try `to` in order (default none).
    pub fn fallbacks(
        mut self,
        group: impl Into<String>,
        to: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        self.cfg
            .router
            .fallbacks
            .general
            .insert(group.into(), to.into_iter().map(Into::into).collect());
        self
    }
    /// `default_fallbacks`: for groups without a `fallbacks` entry (default none).
    pub fn default_fallbacks(mut self, to: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.cfg.router.fallbacks.default = to.into_iter().map(Into::into).collect();
        self
    }
    /// `context_window_fallbacks` for `group` (default none).
    pub fn context_window_fallbacks(
        mut self,
        group: impl Into<String>,
        to: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        self.cfg
            .router
            .fallbacks
            .context_window
            .insert(group.into(), to.into_iter().map(Into::into).collect());
        self
    }
    /// `content_policy_fallbacks` for `group` (default none).
    pub fn content_policy_fallbacks(
        mut self,
        group: impl Into<String>,
        to: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        self.cfg
            .router
            .fallbacks
            .content_policy
            .insert(group.into(), to.into_iter().map(Into::into).collect());
        self
    }
    /// `model_group_alias`: requests for `alias` go to `group` (default none).
    pub fn model_group_alias(mut self, alias: impl Into<String>, group: impl Into<String>) -> Self {
        self.cfg
            .router
            .model_group_alias
            .insert(alias.into(), group.into());
        self
    }
    /// `enable_pre_call_checks` (default `false`).
    pub fn enable_pre_call_checks(mut self, on: bool) -> Self {
        self.cfg.router.enable_pre_call_checks = on;
        self
    }
    /// `min_healthy_percent`: readiness is 503 below this share of healthy deployments
    /// (default none).
    pub fn min_healthy_percent(mut self, percent: f64) -> Self {
        self.cfg.health.min_healthy_percent = Some(percent);
        self
    }
    /// `router_settings.timeout`: the request timeout of deployments without their own
    /// (default none: the forwarder's).
    pub fn request_timeout(mut self, d: Duration) -> Self {
        self.cfg.router.timeout = Some(d);
        self
    }
    /// Gives full access, for settings without a setter.
    pub fn health_mut(&mut self) -> &mut HealthCheckSettings {
        &mut self.cfg.health
    }
    /// Validates and returns the config.
    pub fn build(mut self) -> Result<Config, ConfigError> {
        crate::deployment::disambiguate_derived_ids(&mut self.cfg.deployments);
        self.cfg.validate()?;
        Ok(self.cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deployment::Deployment;

    #[test]
    fn defaults_are_litellms() {
        let c = Config::builder().build().unwrap();
        assert!(!c.health.background_health_checks);
        assert_eq!(c.health.interval, Duration::from_secs(300));
        assert_eq!(c.health.staleness_threshold(), Duration::from_secs(600));
        assert!(!c.health.routing_enabled && c.health.details);
        assert_eq!(c.router.routing_strategy, RoutingStrategy::SimpleShuffle);
        assert_eq!(c.router.cooldown_time, Duration::from_secs(5));
    }

    #[test]
    fn a_success_only_counts_unless_a_setting_asks_more_of_it() {
        let only = |b: ConfigBuilder| b.build().unwrap().success_counts_only();
        assert!(only(Config::builder()));
        assert!(!only(
            Config::builder().health_check_skip_when_traffic_healthy(true)
        ));
        assert!(!only(
            Config::builder().health_check_billed_every(NonZeroU32::new(2).unwrap())
        ));
        assert!(!only(
            Config::builder().outlier_detection(OutlierDetection::default())
        ));
        assert!(!only(
            Config::builder().stream_stall_timeout(Duration::from_secs(1))
        ));
    }

    #[test]
    fn invalid_configs_name_their_field() {
        let e = Config::builder()
            .health_check_interval(Duration::ZERO)
            .build()
            .unwrap_err();
        assert_eq!(e.field(), "general_settings.health_check_interval");
        let e = Config::builder()
            .health_check_interval(Duration::from_secs(60))
            .health_check_staleness_threshold(Duration::from_secs(30))
            .build()
            .unwrap_err();
        assert_eq!(
            e.field(),
            "general_settings.health_check_staleness_threshold"
        );
        let e = Config::builder()
            .deployment(Deployment::builder("a", "m1").id("x").build())
            .deployment(Deployment::builder("a", "m2").id("x").build())
            .build()
            .unwrap_err();
        assert_eq!(e.field(), "model_list[1].model_info.id");
        assert!(matches!(e.kind(), ConfigErrorKind::DuplicateId { id } if id == "x"));
        let e = Config::builder()
            .deployment(Deployment::builder("a", "").build())
            .build()
            .unwrap_err();
        assert_eq!(
            (e.field(), e.kind()),
            (
                "model_list[0].litellm_params.model",
                &ConfigErrorKind::Missing
            )
        );
        assert_eq!(
            "bogus".parse::<RoutingStrategy>().unwrap_err().field(),
            "router_settings.routing_strategy"
        );
    }

    #[test]
    fn same_id_same_params_is_one_deployment_in_two_routes() {
        let a = Deployment::builder("alias-a", "m").id("x").build();
        let b = Deployment::builder("alias-b", "m").id("x").build();
        assert!(
            Config::builder()
                .deployment(a)
                .deployment(b)
                .build()
                .is_ok()
        );
    }

    #[test]
    fn scrubber_knows_every_secret() {
        let c = Config::builder()
            .deployment(
                Deployment::builder("a", "m")
                    .api_key("k-1")
                    .param("vertex_credentials", "{\"x\":1}".into())
                    .build(),
            )
            .master_key("sk-master")
            .build()
            .unwrap();
        assert_eq!(
            c.scrubber().scrub("k-1 sk-master {\"x\":1}"),
            "[redacted] [redacted] [redacted]"
        );
    }
}
