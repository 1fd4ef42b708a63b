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

    const ALL: &'static [Mode] = &[
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

    fn hash_value(&self) -> serde_json::Value {
        match self {
            Self::Plain(v) => v.clone(),
            Self::Secret(s) => serde_json::Value::String(s.expose().to_owned()),
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
#[derive(Clone, Debug, Default, PartialEq)]
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
    /// Every other param, kept as given (credentials as secrets).
    pub extra: BTreeMap<String, ParamValue>,
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
    /// Every other key, kept as given (credentials as secrets).
    pub extra: BTreeMap<String, ParamValue>,
}

/// One upstream deployment of a route.
#[derive(Clone, PartialEq)]
pub struct Deployment {
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
        Self {
            id,
            route,
            params,
            info,
        }
    }

    /// The deployment's id.
    pub fn id(&self) -> &DeploymentId {
        &self.id
    }

    /// The route it serves (`model_name`).
    pub fn route(&self) -> &str {
        &self.route
    }

    /// Its `litellm_params`.
    pub fn params(&self) -> &DeploymentParams {
        &self.params
    }

    /// Its `model_info`.
    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// `input_cost_per_token + output_cost_per_token`, each from `litellm_params`, else
    /// `model_info`, else LiteLLM's default for an unknown cost (5.0, i.e. last).
    pub fn cost_per_token(&self) -> f64 {
        const UNKNOWN: f64 = 5.0;
        let (p, i) = (&self.params, &self.info);
        p.input_cost_per_token
            .or(i.input_cost_per_token)
            .unwrap_or(UNKNOWN)
            + p.output_cost_per_token
                .or(i.output_cost_per_token)
                .unwrap_or(UNKNOWN)
    }

    /// Every credential it holds: the `api_key` and each secret-looking extra param.
    pub fn secrets(&self) -> impl Iterator<Item = &Secret> {
        let extra = self.params.extra.values().chain(self.info.extra.values());
        self.params
            .api_key
            .iter()
            .chain(extra.filter_map(|v| match v {
                ParamValue::Secret(s) => Some(s),
                ParamValue::Plain(_) => None,
            }))
    }

    /// Whether two deployments describe the same upstream (id aside).
    pub(crate) fn same_params(&self, other: &Self) -> bool {
        self.params == other.params && self.info.mode == other.info.mode
    }
}

impl fmt::Debug for Deployment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Deployment")
            .field("id", &self.id)
            .field("route", &self.route)
            .field("params", &self.params)
            .field("info", &self.info)
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

/// A stable id from the route and params: the same params give the same id across
/// restarts and versions of this crate (SHA-256 of a canonical JSON form, 32 hex digits).
fn derive_id(route: &str, p: &DeploymentParams) -> DeploymentId {
    let mut params = serde_json::Map::new();
    params.insert("model".into(), p.model.clone().into());
    let mut put = |k: &str, v: Option<serde_json::Value>| {
        if let Some(v) = v {
            params.insert(k.into(), v);
        }
    };
    put("api_base", p.api_base.clone().map(Into::into));
    put("api_key", p.api_key.as_ref().map(|s| s.expose().into()));
    put("api_version", p.api_version.clone().map(Into::into));
    put("weight", p.weight.map(Into::into));
    put("rpm", p.rpm.map(Into::into));
    put("tpm", p.tpm.map(Into::into));
    put(
        "cooldown_time",
        p.cooldown_time.map(|d| d.as_secs_f64().into()),
    );
    for (k, v) in &p.extra {
        params.insert(k.clone(), v.hash_value());
    }
    // serde_json's Map is ordered by key, so this text is canonical.
    let doc = serde_json::json!({ "model_name": route, "litellm_params": params });
    let digest = Sha256::digest(doc.to_string().as_bytes());
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    DeploymentId::new(hex)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_id_is_stable_and_param_sensitive() {
        let a = Deployment::builder("gpt-4", "openai/gpt-4")
            .api_key("k1")
            .build();
        let b = Deployment::builder("gpt-4", "openai/gpt-4")
            .api_key("k1")
            .build();
        let c = Deployment::builder("gpt-4", "openai/gpt-4")
            .api_key("k2")
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
