//! Deployments: one upstream that can serve a route, with its params and `model_info`.
//!
//! A *route* (LiteLLM's `model_name`, here also called a model group) is what a client asks
//! for; each route has one or more deployments. The router picks one deployment per request.

use std::{collections::BTreeMap, fmt, sync::Arc, time::Duration};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::secret::{Secret, looks_secret};

/// A deployment's unique id (`model_info.id`, or one derived from its params).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DeploymentId(pub(crate) Arc<str>);

impl DeploymentId {
    /// Wraps an id.
    pub fn new(id: impl Into<Arc<str>>) -> Self {
        Self(id.into())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for DeploymentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for DeploymentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for DeploymentId {
    fn from(s: &str) -> Self {
        Self::new(s)
    }
}

impl std::borrow::Borrow<str> for DeploymentId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

/// The route a request is for, as a request extension: the default way
/// [`HealthRouting`](crate::HealthRouting) learns which deployments may serve a request.
///
/// ```
/// use tower_health_routing::ModelGroup;
/// let mut req = http::Request::new(());
/// req.extensions_mut().insert(ModelGroup::new("gpt-4o"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ModelGroup(Arc<str>);

impl ModelGroup {
    /// A route name (LiteLLM's `model_name`).
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        Self(name.into())
    }

    /// The route name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&str> for ModelGroup {
    fn from(s: &str) -> Self {
        Self::new(s)
    }
}

impl From<String> for ModelGroup {
    fn from(s: String) -> Self {
        Self::new(s)
    }
}

/// What kind of endpoint a deployment serves, which decides how it is probed
/// (`model_info.mode`, LiteLLM's names).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Mode {
    /// `/chat/completions`; the default.
    Chat,
    /// `/completions`.
    Completion,
    /// `/responses`.
    Responses,
    /// `/embeddings`.
    Embedding,
    /// `/images/generations`.
    ImageGeneration,
    /// `/audio/speech` (text to speech).
    AudioSpeech,
    /// `/audio/transcriptions` (speech to text).
    AudioTranscription,
    /// `/rerank`.
    Rerank,
    /// `/batches` (Azure batch deployments).
    Batch,
    /// `/moderations`.
    Moderation,
    /// `/ocr`.
    Ocr,
    /// Realtime (websocket) models.
    Realtime,
    /// `/videos`.
    VideoGeneration,
}

impl Mode {
    /// Every mode's config name, in declaration order.
    pub const NAMES: &'static [&'static str] = &[
        "chat",
        "completion",
        "responses",
        "embedding",
        "image_generation",
        "audio_speech",
        "audio_transcription",
        "rerank",
        "batch",
        "moderation",
        "ocr",
        "realtime",
        "video_generation",
    ];

    /// Every mode, in declaration order.
    pub(crate) const ALL: &'static [Mode] = &[
        Mode::Chat,
        Mode::Completion,
        Mode::Responses,
        Mode::Embedding,
        Mode::ImageGeneration,
        Mode::AudioSpeech,
        Mode::AudioTranscription,
        Mode::Rerank,
        Mode::Batch,
        Mode::Moderation,
        Mode::Ocr,
        Mode::Realtime,
        Mode::VideoGeneration,
    ];

    /// The config name (`image_generation`, ...).
    pub fn as_str(self) -> &'static str {
        let i = Self::ALL.iter().position(|m| *m == self).unwrap_or(0);
        Self::NAMES[i]
    }

    /// Parses a config name; `None` for a mode this crate does not know.
    pub fn from_name(name: &str) -> Option<Self> {
        let name = if name == "video" {
            "video_generation"
        } else {
            name
        };
        Self::NAMES
            .iter()
            .position(|n| *n == name)
            .map(|i| Self::ALL[i])
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An extra parameter kept from `litellm_params` or `model_info`. Params whose name looks
/// like a credential ([`looks_secret`]) are held as [`Secret`]s.
#[derive(Clone, PartialEq)]
pub enum ParamValue {
    /// A displayable value.
    Plain(serde_json::Value),
    /// A credential; strings are kept as they are, other JSON values as their JSON text.
    Secret(Secret),
}

impl ParamValue {
    /// Wraps `value` for the param `name`, as a secret when the name says so.
    pub fn for_name(name: &str, value: serde_json::Value) -> Self {
        if looks_secret(name) {
            let text = match value {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            };
            Self::Secret(Secret::new(text))
        } else {
            Self::Plain(value)
        }
    }
}

impl fmt::Debug for ParamValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Plain(v) => fmt::Debug::fmt(v, f),
            Self::Secret(s) => fmt::Debug::fmt(s, f),
        }
    }
}

/// A deployment's `litellm_params`: where and how to reach the upstream.
///
/// `Debug` hides every secret, including userinfo in `api_base`.
#[derive(Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct DeploymentParams {
    /// The upstream model, usually with a provider prefix (`openai/gpt-4o`, `azure/my-deploy`).
    pub model: String,
    /// The upstream's base URL.
    pub api_base: Option<String>,
    /// The upstream's key.
    pub api_key: Option<Secret>,
    /// The API version (Azure).
    pub api_version: Option<String>,
    /// Relative weight for `simple-shuffle`.
    pub weight: Option<f64>,
    /// Requests per minute this deployment allows (a weight for `simple-shuffle` when no `weight`).
    pub rpm: Option<u64>,
    /// Tokens per minute this deployment allows (a weight for `simple-shuffle` when neither of the above).
    pub tpm: Option<u64>,
    /// Per-deployment cooldown, overriding the router's `cooldown_time`.
    pub cooldown_time: Option<Duration>,
    /// `max_parallel_requests`: at this many requests in flight the deployment is skipped.
    pub max_parallel_requests: Option<u32>,
    /// `input_cost_per_token` (for `cost-based-routing`; wins over `model_info`'s).
    pub input_cost_per_token: Option<f64>,
    /// `output_cost_per_token` (for `cost-based-routing`; wins over `model_info`'s).
    pub output_cost_per_token: Option<f64>,
    /// `timeout`: how long a forwarder waits for this deployment's answer (wins over
    /// [`RouterSettings::timeout`](crate::config::RouterSettings::timeout)).
    pub timeout: Option<Duration>,
    /// `stream_timeout`: the same, for a streaming request (else `timeout`).
    pub stream_timeout: Option<Duration>,
    /// Every other param, kept as given (credentials as secrets).
    pub extra: BTreeMap<String, ParamValue>,
}

impl fmt::Debug for DeploymentParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let base = self.api_base.as_deref().map(crate::secret::redact_userinfo);
        f.debug_struct("DeploymentParams")
            .field("model", &self.model)
            .field("api_base", &base)
            .field("api_key", &self.api_key)
            .field("api_version", &self.api_version)
            .field("weight", &self.weight)
            .field("rpm", &self.rpm)
            .field("tpm", &self.tpm)
            .field("cooldown_time", &self.cooldown_time)
            .field("timeout", &self.timeout)
            .field("stream_timeout", &self.stream_timeout)
            .field("extra", &self.extra)
            .finish()
    }
}

impl DeploymentParams {
    /// Params for `model`, everything else unset.
    pub fn new(model: impl Into<String>) -> Self {
        Self {
            model: model.into(),
            ..Self::default()
        }
    }

    /// The provider prefix of [`model`](Self::model) (`openai` in `openai/gpt-4o`), if any.
    pub fn provider(&self) -> Option<&str> {
        self.model.split_once('/').map(|(p, _)| p)
    }

    /// [`model`](Self::model) without its provider prefix.
    pub fn model_without_provider(&self) -> &str {
        self.model.split_once('/').map_or(&self.model, |(_, m)| m)
    }
}

/// A deployment's `model_info`: its id and how it is health-checked.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct ModelInfo {
    /// The id given in the config, if any.
    pub id: Option<String>,
    /// What the deployment serves; decides the probe's shape. `None`: resolved from the model name.
    pub mode: Option<Mode>,
    /// The model to probe instead of `model` (for wildcard routes such as `openai/*`).
    pub health_check_model: Option<String>,
    /// Per-probe timeout (default 60 s).
    pub health_check_timeout: Option<Duration>,
    /// `max_tokens` sent by the probe.
    pub health_check_max_tokens: Option<u32>,
    /// `max_tokens` for a reasoning model, when `health_check_max_tokens` is unset.
    pub health_check_max_tokens_reasoning: Option<u32>,
    /// `max_tokens` for a non-reasoning model, when `health_check_max_tokens` is unset.
    pub health_check_max_tokens_non_reasoning: Option<u32>,
    /// Whether the probe may send `max_tokens` (default: by mode).
    pub health_check_supports_max_tokens: Option<bool>,
    /// The voice for `audio_speech` probes (default `alloy`).
    pub health_check_voice: Option<String>,
    /// `reasoning_effort` sent by chat/completion probes.
    pub health_check_reasoning_effort: Option<String>,
    /// Leave this deployment out of background health checks.
    pub disable_background_health_check: bool,
    /// `max_input_tokens`: the context window, for `enable_pre_call_checks`.
    pub max_input_tokens: Option<u32>,
    /// `input_cost_per_token` (for `cost-based-routing`).
    pub input_cost_per_token: Option<f64>,
    /// `output_cost_per_token` (for `cost-based-routing`).
    pub output_cost_per_token: Option<f64>,
    /// `health_check_max_probes_per_minute` (this crate's): at most this many billed probes
    /// of this deployment per minute (beside the global budget). Default `None`.
    pub health_check_max_probes_per_minute: Option<u32>,
    /// Every other key, kept as given (credentials as secrets).
    pub extra: BTreeMap<String, ParamValue>,
}

/// One upstream deployment of a route.
///
/// Its parts sit behind one `Arc`: a clone (the config keeps the deployments it read, each
/// health snapshot lists them) costs a count, not a copy of every param.
#[derive(Clone, PartialEq)]
pub struct Deployment(Arc<Parts>);

#[derive(Clone, PartialEq)]
pub(crate) struct Parts {
    pub(crate) id: DeploymentId,
    pub(crate) route: Arc<str>,
    pub(crate) params: DeploymentParams,
    pub(crate) info: ModelInfo,
}

impl Deployment {
    /// Starts a deployment of `route` (LiteLLM's `model_name`) served by upstream `model`.
    ///
    /// ```
    /// use tower_health_routing::Deployment;
    /// let d = Deployment::builder("gpt-4o", "openai/gpt-4o")
    ///     .api_base("http://127.0.0.1:8001/v1")
    ///     .api_key("sk-secret")
    ///     .weight(2.0)
    ///     .build();
    /// assert_eq!(d.route(), "gpt-4o");
    /// assert!(!format!("{d:?}").contains("sk-secret"));
    /// ```
    pub fn builder(route: impl Into<Arc<str>>, model: impl Into<String>) -> DeploymentBuilder {
        DeploymentBuilder {
            route: route.into(),
            params: DeploymentParams::new(model),
            info: ModelInfo::default(),
        }
    }

    /// Builds a deployment from its parts; the id is `info.id`, or derived from the params.
    pub fn new(route: impl Into<Arc<str>>, params: DeploymentParams, info: ModelInfo) -> Self {
        let route = route.into();
        let id = match &info.id {
            Some(id) => DeploymentId::new(id.as_str()),
            None => derive_id(&route, &params),
        };
        Self(Arc::new(Parts {
            id,
            route,
            params,
            info,
        }))
    }

    /// The route's name as shared (one allocation per route name in a config).
    pub(crate) fn route_name(&self) -> &Arc<str> {
        &self.0.route
    }

    /// Its parts, for the few changes made after it is built (derived ids, a test
    /// connection's deployment); copied first if shared.
    pub(crate) fn parts_mut(&mut self) -> &mut Parts {
        Arc::make_mut(&mut self.0)
    }

    /// The deployment's id.
    pub fn id(&self) -> &DeploymentId {
        &self.0.id
    }

    /// The route it serves (`model_name`).
    pub fn route(&self) -> &str {
        &self.0.route
    }

    /// Its `litellm_params`.
    pub fn params(&self) -> &DeploymentParams {
        &self.0.params
    }

    /// Its `model_info`.
    pub fn info(&self) -> &ModelInfo {
        &self.0.info
    }

    /// `input_cost_per_token + output_cost_per_token`, each from `litellm_params`, else
    /// `model_info`, else LiteLLM's default for an unknown cost (5.0, i.e. last).
    pub fn cost_per_token(&self) -> f64 {
        const UNKNOWN: f64 = 5.0;
        let (p, i) = (&self.0.params, &self.0.info);
        p.input_cost_per_token
            .or(i.input_cost_per_token)
            .unwrap_or(UNKNOWN)
            + p.output_cost_per_token
                .or(i.output_cost_per_token)
                .unwrap_or(UNKNOWN)
    }

    /// Every credential it holds: the `api_key` and each secret-looking extra param.
    pub fn secrets(&self) -> impl Iterator<Item = &Secret> {
        let extra = self
            .params()
            .extra
            .values()
            .chain(self.info().extra.values());
        self.params()
            .api_key
            .iter()
            .chain(extra.filter_map(|v| match v {
                ParamValue::Secret(s) => Some(s),
                ParamValue::Plain(_) => None,
            }))
    }

    /// Whether the provider catalog sees the two alike: the same `litellm_params` and the
    /// same `model_info` but for its `id` (route and id aside). Whatever the catalog derives
    /// from a deployment alone (its endpoint, its probe request, why it cannot be probed or
    /// forwarded) is then the same for both: a check over many deployments listed alike can
    /// reuse one answer.
    pub fn same_upstream(&self, other: &Self) -> bool {
        if Arc::ptr_eq(&self.0, &other.0) {
            return true;
        }
        let ModelInfo {
            id: _,
            mode,
            health_check_model,
            health_check_timeout,
            health_check_max_tokens,
            health_check_max_tokens_reasoning,
            health_check_max_tokens_non_reasoning,
            health_check_supports_max_tokens,
            health_check_voice,
            health_check_reasoning_effort,
            disable_background_health_check,
            max_input_tokens,
            input_cost_per_token,
            output_cost_per_token,
            health_check_max_probes_per_minute,
            extra,
        } = &self.0.info;
        let o = &other.0.info;
        self.0.params == other.0.params
            && *mode == o.mode
            && *health_check_model == o.health_check_model
            && *health_check_timeout == o.health_check_timeout
            && *health_check_max_tokens == o.health_check_max_tokens
            && *health_check_max_tokens_reasoning == o.health_check_max_tokens_reasoning
            && *health_check_max_tokens_non_reasoning == o.health_check_max_tokens_non_reasoning
            && *health_check_supports_max_tokens == o.health_check_supports_max_tokens
            && *health_check_voice == o.health_check_voice
            && *health_check_reasoning_effort == o.health_check_reasoning_effort
            && *disable_background_health_check == o.disable_background_health_check
            && *max_input_tokens == o.max_input_tokens
            && *input_cost_per_token == o.input_cost_per_token
            && *output_cost_per_token == o.output_cost_per_token
            && *health_check_max_probes_per_minute == o.health_check_max_probes_per_minute
            && *extra == o.extra
    }

    /// Whether two deployments describe the same upstream (id aside).
    pub(crate) fn same_params(&self, other: &Self) -> bool {
        self.params() == other.params() && self.info().mode == other.info().mode
    }
}

impl fmt::Debug for Deployment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Deployment")
            .field("id", &self.0.id)
            .field("route", &self.0.route)
            .field("params", &self.0.params)
            .field("info", &self.0.info)
            .finish()
    }
}

/// Builds a [`Deployment`]; see [`Deployment::builder`].
#[derive(Debug, Clone)]
pub struct DeploymentBuilder {
    route: Arc<str>,
    params: DeploymentParams,
    info: ModelInfo,
}

impl DeploymentBuilder {
    /// Sets `model_info.id` (default: derived from the params, stable across restarts).
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.info.id = Some(id.into());
        self
    }
    /// Sets `api_base`.
    pub fn api_base(mut self, v: impl Into<String>) -> Self {
        self.params.api_base = Some(v.into());
        self
    }
    /// Sets `api_key`.
    pub fn api_key(mut self, v: impl Into<Secret>) -> Self {
        self.params.api_key = Some(v.into());
        self
    }
    /// Sets `api_version`.
    pub fn api_version(mut self, v: impl Into<String>) -> Self {
        self.params.api_version = Some(v.into());
        self
    }
    /// Sets `weight`.
    pub fn weight(mut self, v: f64) -> Self {
        self.params.weight = Some(v);
        self
    }
    /// Sets `rpm`.
    pub fn rpm(mut self, v: u64) -> Self {
        self.params.rpm = Some(v);
        self
    }
    /// Sets `tpm`.
    pub fn tpm(mut self, v: u64) -> Self {
        self.params.tpm = Some(v);
        self
    }
    /// Sets `max_parallel_requests`.
    pub fn max_parallel_requests(mut self, v: u32) -> Self {
        self.params.max_parallel_requests = Some(v);
        self
    }
    /// Sets `input_cost_per_token` and `output_cost_per_token` (in `litellm_params`).
    pub fn cost_per_token(mut self, input: f64, output: f64) -> Self {
        self.params.input_cost_per_token = Some(input);
        self.params.output_cost_per_token = Some(output);
        self
    }
    /// Sets `model_info.max_input_tokens`.
    pub fn max_input_tokens(mut self, v: u32) -> Self {
        self.info.max_input_tokens = Some(v);
        self
    }
    /// Sets this deployment's cooldown time.
    pub fn cooldown_time(mut self, v: Duration) -> Self {
        self.params.cooldown_time = Some(v);
        self
    }
    /// `timeout` (request timeout of this deployment).
    pub fn timeout(mut self, v: Duration) -> Self {
        self.params.timeout = Some(v);
        self
    }
    /// `stream_timeout` (request timeout of this deployment for streams).
    pub fn stream_timeout(mut self, v: Duration) -> Self {
        self.params.stream_timeout = Some(v);
        self
    }
    /// Sets `model_info.mode`.
    pub fn mode(mut self, v: Mode) -> Self {
        self.info.mode = Some(v);
        self
    }
    /// Sets `model_info.health_check_timeout`.
    pub fn health_check_timeout(mut self, v: Duration) -> Self {
        self.info.health_check_timeout = Some(v);
        self
    }
    /// Sets `model_info.disable_background_health_check`.
    pub fn disable_background_health_check(mut self, v: bool) -> Self {
        self.info.disable_background_health_check = v;
        self
    }
    /// Sets `model_info.health_check_max_probes_per_minute` (billed probes of this
    /// deployment per minute).
    pub fn health_check_max_probes_per_minute(mut self, n: u32) -> Self {
        self.info.health_check_max_probes_per_minute = Some(n);
        self
    }
    /// Adds any other `litellm_params` key (a secret when its name looks like one).
    pub fn param(mut self, key: impl Into<String>, value: serde_json::Value) -> Self {
        let key = key.into();
        let v = ParamValue::for_name(&key, value);
        self.params.extra.insert(key, v);
        self
    }
    /// Gives full access to the params, for fields without a setter.
    pub fn params_mut(&mut self) -> &mut DeploymentParams {
        &mut self.params
    }
    /// Gives full access to `model_info`, for fields without a setter.
    pub fn info_mut(&mut self) -> &mut ModelInfo {
        &mut self.info
    }
    /// Finishes the deployment.
    pub fn build(self) -> Deployment {
        Deployment::new(self.route, self.params, self.info)
    }
}

/// The extra params that say *where* a deployment runs (never a credential).
const LOCATION_PARAMS: &[&str] = &[
    "region_name",
    "aws_region_name",
    "vertex_location",
    "vertex_project",
    "watsonx_region_name",
];

/// A stable id from the route and the params that say where the upstream is: the route,
/// `model`, `api_base` (without userinfo, query or fragment), `api_version` and the region
/// params. No secret goes in, so an id shown in `/metrics` or `x-litellm-model-id` reveals
/// nothing that the config's public parts do not. SHA-256 of a canonical JSON form, 32 hex
/// digits; the same config gives the same ids across restarts.
///
/// Deployments that differ only in other params (two keys for one endpoint) share this id;
/// [`disambiguate_derived_ids`] numbers them.
fn derive_id(route: &str, p: &DeploymentParams) -> DeploymentId {
    let mut doc = serde_json::Map::new();
    doc.insert("model_name".into(), route.into());
    doc.insert("model".into(), p.model.clone().into());
    if let Some(base) = &p.api_base {
        doc.insert("api_base".into(), crate::secret::public_url(base).into());
    }
    if let Some(v) = &p.api_version {
        doc.insert("api_version".into(), v.clone().into());
    }
    for k in LOCATION_PARAMS {
        if let Some(ParamValue::Plain(v)) = p.extra.get(*k) {
            doc.insert((*k).into(), v.clone());
        }
    }
    // serde_json's Map is ordered by key, so this text is canonical.
    let digest = Sha256::digest(serde_json::Value::Object(doc).to_string().as_bytes());
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    DeploymentId::new(hex)
}

/// Makes derived ids unique: the deployments without `model_info.id` that share a derived
/// id but not their params (the same endpoint with two keys, say) get `-1`, `-2`, ... in
/// config order after the first. Identical deployments keep one id (they are one upstream).
pub(crate) fn disambiguate_derived_ids(ds: &mut [Deployment]) {
    // derived id -> the distinct deployments seen with it, in order.
    let mut groups: std::collections::HashMap<DeploymentId, Vec<usize>> = Default::default();
    for i in 0..ds.len() {
        if ds[i].info().id.is_some() {
            continue;
        }
        let base = derive_id(ds[i].route(), ds[i].params());
        let group = groups.entry(base.clone()).or_default();
        match group.iter().position(|&j| ds[j].same_params(&ds[i])) {
            Some(0) => ds[i].parts_mut().id = base,
            Some(k) => ds[i].parts_mut().id = DeploymentId::new(format!("{base}-{k}")),
            None => {
                let k = group.len();
                group.push(i);
                ds[i].parts_mut().id = if k == 0 {
                    base
                } else {
                    DeploymentId::new(format!("{base}-{k}"))
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_upstream_ignores_route_and_id_only() {
        let d = |route: &str, id: &str| {
            Deployment::builder(route, "openai/gpt-4o")
                .api_base("http://127.0.0.1:9/v1")
                .api_key("k1")
                .id(id)
        };
        let a = d("a", "1").build();
        assert!(a.same_upstream(&d("b", "2").build()));
        assert!(!a.same_upstream(&d("a", "1").api_key("k2").build()));
        assert!(!a.same_upstream(&d("a", "1").mode(Mode::Embedding).build()));
        assert!(!a.same_upstream(&d("a", "1").param("region_name", "eu".into()).build()));
    }

    #[test]
    fn derived_id_is_stable_and_param_sensitive() {
        let a = Deployment::builder("gpt-4", "openai/gpt-4")
            .api_key("k1")
            .build();
        let b = Deployment::builder("gpt-4", "openai/gpt-4")
            .api_key("k1")
            .build();
        let c = Deployment::builder("gpt-4", "openai/gpt-4")
            .api_base("http://127.0.0.1:1/v1")
            .build();
        assert_eq!(a.id(), b.id());
        assert_ne!(a.id(), c.id());
        assert_eq!(a.id().as_str().len(), 32);
        // Pinned: the derivation must not change between versions (ids outlive restarts).
        assert_eq!(
            Deployment::builder("r", "openai/m").build().id().as_str(),
            derive_id("r", &DeploymentParams::new("openai/m")).as_str()
        );
    }

    #[test]
    fn derived_id_holds_no_secret() {
        let with = |key: &str, base: &str| {
            Deployment::builder("r", "openai/m")
                .api_key(key)
                .api_base(base)
                .param("aws_secret_access_key", key.into())
                .build()
                .id()
                .clone()
        };
        // Keys and userinfo change nothing: the id cannot be a test for a guessed key.
        assert_eq!(
            with("k1", "http://u:pw1@h/v1"),
            with("k2", "http://u:pw2@h/v1?token=x")
        );
        assert_eq!(with("k1", "http://h/v1"), with("k2", "http://h/v1"));
        assert_ne!(with("k1", "http://h/v1"), with("k1", "http://h/v2"));
        let region = |r: &str| {
            Deployment::builder("r", "bedrock/m")
                .param("aws_region_name", r.into())
                .build()
                .id()
                .clone()
        };
        assert_ne!(region("us-east-1"), region("eu-west-1"));
    }

    #[test]
    fn same_endpoint_two_keys_get_numbered_ids() {
        let d = |key: &str| Deployment::builder("r", "openai/m").api_key(key).build();
        let mut ds = vec![d("k1"), d("k2"), d("k1"), d("k3")];
        let base = ds[0].id().clone();
        disambiguate_derived_ids(&mut ds);
        let ids: Vec<&str> = ds.iter().map(|d| d.id().as_str()).collect();
        assert_eq!(ids[0], base.as_str());
        assert_eq!(ids[1], format!("{base}-1"));
        assert_eq!(ids[2], base.as_str(), "identical params share the id");
        assert_eq!(ids[3], format!("{base}-2"));
        // Stable: the same config gives the same ids.
        let mut again = vec![d("k1"), d("k2"), d("k1"), d("k3")];
        disambiguate_derived_ids(&mut again);
        assert!(ds.iter().zip(&again).all(|(a, b)| a.id() == b.id()));
    }

    #[test]
    fn explicit_id_wins() {
        let d = Deployment::builder("r", "m").id("my-id").build();
        assert_eq!(d.id().as_str(), "my-id");
    }

    #[test]
    fn secrets_are_collected_and_hidden() {
        let d = Deployment::builder("r", "m")
            .api_key("sk-1")
            .param("aws_secret_access_key", "aws-2".into())
            .param("region_name", "us-east-1".into())
            .build();
        let s: Vec<_> = d.secrets().map(|s| s.expose().to_owned()).collect();
        assert_eq!(s, ["sk-1", "aws-2"]);
        let dbg = format!("{d:?}");
        assert!(!dbg.contains("sk-1") && !dbg.contains("aws-2") && dbg.contains("us-east-1"));
    }

    #[test]
    fn modes_round_trip() {
        for name in Mode::NAMES {
            assert_eq!(Mode::from_name(name).unwrap().as_str(), *name);
        }
        assert_eq!(Mode::from_name("video"), Some(Mode::VideoGeneration));
        assert_eq!(Mode::from_name("nope"), None);
    }

    #[test]
    fn provider_split() {
        let p = DeploymentParams::new("azure/gpt-4o");
        assert_eq!(
            (p.provider(), p.model_without_provider()),
            (Some("azure"), "gpt-4o")
        );
        let p = DeploymentParams::new("whisper-1");
        assert_eq!(
            (p.provider(), p.model_without_provider()),
            (None, "whisper-1")
        );
    }
}
