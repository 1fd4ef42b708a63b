//! The provider catalog: for a deployment and a mode, where its upstream lives (base, path,
//! query), which auth headers it takes and which wire format it speaks.
//!
//! Both the HTTP prober and a forwarder (the gateway) build their upstream requests from
//! [`endpoint`], so a deployment is probed where its traffic goes. Provider names are
//! LiteLLM's (the prefix of `litellm_params.model`, e.g. `groq/llama3`).
//!
//! # Entries
//!
//! | provider | wire | default base (no `api_base`) | auth |
//! |---|---|---|---|
//! | `openai`, `text-completion-openai`, none | OpenAI | `https://api.openai.com/v1` | bearer |
//! | `azure`, `azure_text` | Azure OpenAI | none: `api_base` required | `api-key` (or `azure_ad_token` as bearer) |
//! | `azure_ai` | OpenAI | none: `api_base` required | bearer |
//! | `openrouter` | OpenAI | `https://openrouter.ai/api/v1` | bearer |
//! | `groq` | OpenAI | `https://api.groq.com/openai/v1` | bearer |
//! | `mistral` | OpenAI | `https://api.mistral.ai/v1` | bearer |
//! | `deepseek` | OpenAI | `https://api.deepseek.com/beta` | bearer |
//! | `xai` | OpenAI | `https://api.x.ai/v1` | bearer |
//! | `together_ai` | OpenAI | `https://api.together.ai/v1` | bearer |
//! | `fireworks_ai` | OpenAI | `https://api.fireworks.ai/inference/v1` | bearer |
//! | `perplexity` | OpenAI | `https://api.perplexity.ai` | bearer |
//! | `cerebras` | OpenAI | `https://api.cerebras.ai/v1` | bearer |
//! | `deepinfra` | OpenAI | `https://api.deepinfra.com/v1/openai` | bearer |
//! | `nvidia_nim` | OpenAI | `https://integrate.api.nvidia.com/v1` | bearer |
//! | `gemini` | OpenAI (Gemini's OpenAI-compatible endpoint) | `https://generativelanguage.googleapis.com/v1beta/openai` | bearer |
//! | `voyage` | OpenAI (embedding, rerank) | `https://api.voyageai.com/v1` | bearer |
//! | `ollama`, `ollama_chat` | OpenAI (Ollama's `/v1`) | `http://localhost:11434` (`/v1` is added) | bearer |
//! | `lm_studio`, `hosted_vllm`, `openai_like` | OpenAI | none: `api_base` required | bearer |
//! | `anthropic` | Anthropic Messages (probe; forward: chat, which the forwarder translates from OpenAI's) | `https://api.anthropic.com` | `x-api-key`, `anthropic-version` |
//! | `cohere`, `cohere_chat` | Cohere v2 (probe); its `/compatibility/v1` (forward: chat, embedding) | `https://api.cohere.com` | bearer |
//! | any other name | OpenAI | none: `api_base` required | bearer |
//!
//! | `bedrock`, bare Bedrock ids (`anthropic.claude-v2`, `us.anthropic.…`) | Bedrock (probe only; feature `bedrock`) | `https://bedrock-runtime.{region}.amazonaws.com` | SigV4, or a Bedrock API key |
//! | `vertex_ai`, `vertex_ai_beta`, bare `gemini-…` | Vertex AI (probe only; feature `vertex`) | `https://{location}-aiplatform.googleapis.com` | service-account OAuth token |
//!
//! Bedrock and Vertex AI probe endpoints carry no URL path or headers: the HTTP prober
//! builds, signs or authorises each probe itself; their `url` is the endpoint override
//! (`api_base`, `aws_bedrock_runtime_endpoint`), if any. They are never forwarded
//! ([`Purpose::Forward`] is [`ProviderError::Unsupported`]), and without their feature they
//! are `Unsupported` naming it.
//!
//! Providers that speak their own API we do not speak — `sagemaker`, `watsonx`, ... — and
//! meta-providers such as `auto_router` resolve to [`ProviderError::Unsupported`], with or
//! without an `api_base`: a native API is never treated as OpenAI's.
//!
//! # URLs
//!
//! OpenAI-compatible paths are relative to the base (`/chat/completions`, `/embeddings`,
//! ...); Azure puts the deployment (URL-encoded) in the path and adds `api-version`
//! (default [`AZURE_DEFAULT_API_VERSION`], LiteLLM 1.109's). A query string on `api_base`
//! is kept and joined after the path: `https://x/v1?token=T` gives
//! `https://x/v1/chat/completions?token=T`. An `api_base` carrying credentials
//! (`https://user:pw@host`) is refused rather than silently stripped: put them in
//! `api_key`.

mod wire;

// Native probes of the cloud providers that speak their own API: AWS Bedrock (SigV4,
// feature `bedrock`) and Vertex AI (service-account OAuth, feature `vertex`), called by the
// HTTP prober for the catalog's `Wire::Bedrock` / `Wire::Vertex`. (Some of their helpers
// serve their own tests only.)
#[cfg(feature = "bedrock")]
#[allow(dead_code)]
pub(crate) mod aws;
pub(crate) mod bedrock_model;
#[cfg(any(feature = "bedrock", feature = "vertex"))]
#[allow(dead_code)]
pub(crate) mod cloud;
#[cfg(all(test, any(feature = "bedrock", feature = "vertex")))]
pub(crate) mod test_support;
#[cfg(feature = "vertex")]
#[allow(dead_code)]
pub(crate) mod vertex;

use std::fmt;

use http::HeaderMap;

pub use wire::{ANTHROPIC_VERSION, AZURE_DEFAULT_API_VERSION};

use crate::deployment::{Deployment, Mode};

/// The wire format an upstream speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Wire {
    /// OpenAI's REST API (and every OpenAI-compatible server).
    OpenAi,
    /// Azure OpenAI: deployments in the path, `api-version` in the query.
    Azure,
    /// Anthropic's Messages API.
    Anthropic,
    /// Cohere's v2 API.
    Cohere,
    /// AWS Bedrock's runtime API (Converse, InvokeModel), SigV4-signed: probed natively
    /// (feature `bedrock`), not forwarded.
    Bedrock,
    /// Vertex AI's API (`generateContent`, `predict`) with a service-account OAuth token:
    /// probed natively (feature `vertex`), not forwarded.
    Vertex,
}

/// What the request is for: the endpoints differ where a provider's native API is probed
/// but its OpenAI-compatible endpoint forwarded (Anthropic, Cohere).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Purpose {
    /// A health probe (LiteLLM's probe shapes).
    Probe,
    /// A forwarded OpenAI-shaped client request.
    Forward,
    /// The cheap tier of a tiered health check: the provider's cheapest authenticated call,
    /// one that spends no tokens (`GET {base}/models`, Azure's `GET /openai/models`,
    /// Anthropic's and Cohere's `GET /v1/models`); see [`cheap_check`].
    Cheap,
}

/// The cheap tier of a deployment's health check ([`cheap_check`]).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum CheapCheck {
    /// An authenticated `GET` that costs no tokens; its URL and auth headers.
    Request(Endpoint),
    /// No such call is known for the provider: a TCP connect (and a TLS handshake for
    /// `https`) to this origin (`scheme://host:port`).
    Connect(String),
}

/// OpenAI-compatible providers without a model list: their cheap tier is a connect.
const CONNECT_ONLY: &[&str] = &["perplexity", "voyage"];

/// The cheap tier of `deployment` probed as `model` in `mode`: where the catalog knows a
/// call that spends no tokens, that call ([`Purpose::Cheap`]), else a TCP/TLS connect to
/// the upstream's origin. Native cloud wires (Bedrock, Vertex AI) have none yet
/// ([`ProviderError::Unsupported`]): every round of theirs is billed.
pub fn cheap_check(
    deployment: &Deployment,
    model: &str,
    mode: Mode,
) -> Result<CheapCheck, ProviderError> {
    let ep = endpoint(deployment, model, mode, Purpose::Cheap)?;
    if CONNECT_ONLY.contains(&ep.provider.as_str()) {
        let origin = match ep.url.split_once("://") {
            Some((scheme, rest)) => {
                let host = rest.split(['/', '?']).next().unwrap_or(rest);
                format!("{scheme}://{host}")
            }
            None => ep.url.clone(),
        };
        return Ok(CheapCheck::Connect(origin));
    }
    Ok(CheapCheck::Request(ep))
}

/// One catalog entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Provider {
    /// LiteLLM's name (`groq`).
    pub name: &'static str,
    /// The wire format probes speak.
    pub wire: Wire,
    /// The base URL used when the deployment sets no `api_base`.
    pub default_base: Option<&'static str>,
    /// The modes it offers; `None`: every mode.
    pub modes: Option<&'static [Mode]>,
}

const AZURE_MODES: &[Mode] = &[
    Mode::Chat,
    Mode::Completion,
    Mode::Responses,
    Mode::Embedding,
    Mode::ImageGeneration,
    Mode::AudioSpeech,
    Mode::AudioTranscription,
    Mode::Batch,
    Mode::Realtime,
];
const ANTHROPIC_MODES: &[Mode] = &[Mode::Chat, Mode::Completion, Mode::Batch];
const COHERE_MODES: &[Mode] = &[Mode::Chat, Mode::Completion, Mode::Embedding, Mode::Rerank];
const VOYAGE_MODES: &[Mode] = &[Mode::Embedding, Mode::Rerank];

const fn entry(name: &'static str, wire: Wire, base: Option<&'static str>) -> Provider {
    Provider {
        name,
        wire,
        default_base: base,
        modes: None,
    }
}

const fn openai(name: &'static str, base: &'static str) -> Provider {
    entry(name, Wire::OpenAi, Some(base))
}

/// Every provider the catalog knows (see the [module docs](self)).
pub const PROVIDERS: &[Provider] = &[
    openai("openai", "https://api.openai.com/v1"),
    openai("text-completion-openai", "https://api.openai.com/v1"),
    Provider {
        modes: Some(AZURE_MODES),
        ..entry("azure", Wire::Azure, None)
    },
    Provider {
        modes: Some(AZURE_MODES),
        ..entry("azure_text", Wire::Azure, None)
    },
    entry("azure_ai", Wire::OpenAi, None),
    openai("openrouter", "https://openrouter.ai/api/v1"),
    openai("groq", "https://api.groq.com/openai/v1"),
    openai("mistral", "https://api.mistral.ai/v1"),
    openai("deepseek", "https://api.deepseek.com/beta"),
    openai("xai", "https://api.x.ai/v1"),
    openai("together_ai", "https://api.together.ai/v1"),
    openai("fireworks_ai", "https://api.fireworks.ai/inference/v1"),
    openai("perplexity", "https://api.perplexity.ai"),
    openai("cerebras", "https://api.cerebras.ai/v1"),
    openai("deepinfra", "https://api.deepinfra.com/v1/openai"),
    openai("nvidia_nim", "https://integrate.api.nvidia.com/v1"),
    openai(
        "gemini",
        "https://generativelanguage.googleapis.com/v1beta/openai",
    ),
    Provider {
        modes: Some(VOYAGE_MODES),
        ..openai("voyage", "https://api.voyageai.com/v1")
    },
    openai("ollama", OLLAMA_BASE),
    openai("ollama_chat", OLLAMA_BASE),
    entry("lm_studio", Wire::OpenAi, None),
    entry("hosted_vllm", Wire::OpenAi, None),
    entry("openai_like", Wire::OpenAi, None),
    Provider {
        modes: Some(ANTHROPIC_MODES),
        ..entry(
            "anthropic",
            Wire::Anthropic,
            Some("https://api.anthropic.com"),
        )
    },
    Provider {
        modes: Some(COHERE_MODES),
        ..entry("cohere", Wire::Cohere, Some("https://api.cohere.com"))
    },
    Provider {
        modes: Some(COHERE_MODES),
        ..entry("cohere_chat", Wire::Cohere, Some("https://api.cohere.com"))
    },
];

const OLLAMA_BASE: &str = "http://localhost:11434";

/// Providers with an API of their own that the catalog does not speak, and why.
const UNSUPPORTED: &[(&str, &str)] = &[
    (
        "bedrock_converse",
        "AWS Bedrock needs SigV4-signed requests to its own API",
    ),
    (
        "sagemaker",
        "AWS SageMaker needs SigV4-signed requests to its own API",
    ),
    (
        "sagemaker_chat",
        "AWS SageMaker needs SigV4-signed requests to its own API",
    ),
    ("watsonx", "watsonx needs IBM IAM tokens and its own API"),
    (
        "watsonx_text",
        "watsonx needs IBM IAM tokens and its own API",
    ),
    ("replicate", "Replicate speaks its own prediction API"),
    ("predibase", "Predibase speaks its own API"),
    ("cloudflare", "Cloudflare Workers AI speaks its own API"),
    ("triton", "Triton speaks its own inference API"),
    (
        "oci",
        "OCI Generative AI needs signed requests to its own API",
    ),
    ("snowflake", "Snowflake Cortex speaks its own API"),
    ("aleph_alpha", "Aleph Alpha speaks its own API"),
    ("petals", "Petals speaks its own API"),
    ("palm", "PaLM speaks its own API"),
    (
        "auto_router",
        "a meta-provider: it routes to other deployments, it has no upstream",
    ),
];

/// Why a deployment has no endpoint for a mode.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProviderError {
    /// The provider speaks an API the catalog does not (Bedrock, Vertex AI, ...), or the
    /// mode is not forwardable to it: a state of the deployment, not a config error.
    Unsupported {
        /// The provider's LiteLLM name.
        provider: String,
        /// Why, in a sentence.
        reason: String,
    },
    /// The deployment's config cannot work (no `api_base` where one is required, a bad
    /// URL, a mode the provider lacks, a key a header cannot carry).
    Invalid {
        /// The field at fault, relative to the deployment's `model_list` entry.
        field: &'static str,
        /// Why, without secrets.
        why: String,
    },
}

impl fmt::Display for ProviderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unsupported { provider, reason } => {
                write!(f, "provider `{provider}` is not supported: {reason}")
            }
            Self::Invalid { field, why } => write!(f, "{field}: {why}"),
        }
    }
}

impl std::error::Error for ProviderError {}

/// Where and how to send one request.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Endpoint {
    /// The provider's LiteLLM name.
    pub provider: String,
    /// The wire format of the body this endpoint takes (OpenAI's for the
    /// OpenAI-compatible endpoints Anthropic and Cohere are forwarded to).
    pub wire: Wire,
    /// The whole URL: base, path and query.
    pub url: String,
    /// The auth headers (marked sensitive) and any the wire requires (`anthropic-version`).
    pub headers: HeaderMap,
    /// The model to name in the body (no provider prefix).
    pub model: String,
    /// The mode the endpoint serves.
    pub mode: Mode,
}

/// The catalog entry of `name`, if any.
pub fn provider(name: &str) -> Option<&'static Provider> {
    PROVIDERS.iter().find(|p| p.name == name)
}

/// The native cloud wire of a model: `bedrock/…` and bare Bedrock ids
/// ([`bedrock_model::is_bedrock_model`]) are Bedrock's; `vertex_ai/…`, `vertex_ai_beta/…`
/// and bare `gemini-…` ids (LiteLLM's `vertex_language_models`) are Vertex AI's.
fn native_wire(prefix: Option<&str>, bare: &str) -> Option<(&'static str, Wire)> {
    match prefix {
        Some("bedrock") => Some(("bedrock", Wire::Bedrock)),
        Some("vertex_ai") => Some(("vertex_ai", Wire::Vertex)),
        Some("vertex_ai_beta") => Some(("vertex_ai_beta", Wire::Vertex)),
        None if bedrock_model::is_bedrock_model(bare) => Some(("bedrock", Wire::Bedrock)),
        None if bare.starts_with("gemini-") => Some(("vertex_ai", Wire::Vertex)),
        _ => None,
    }
}

/// The endpoint of a native cloud wire: probed by the prober's own request builder (the
/// `url` is the endpoint override, if any: `aws_bedrock_runtime_endpoint` or `api_base`;
/// empty for the region's or location's default host), never forwarded.
fn native_endpoint(
    deployment: &Deployment,
    name: &str,
    wire: Wire,
    bare: &str,
    mode: Mode,
    purpose: Purpose,
) -> Result<Endpoint, ProviderError> {
    let (api, feature) = match wire {
        Wire::Bedrock => ("AWS Bedrock", "bedrock"),
        _ => ("Vertex AI", "vertex"),
    };
    let unsupported = |reason: String| ProviderError::Unsupported {
        provider: name.to_owned(),
        reason,
    };
    if purpose == Purpose::Cheap {
        return Err(unsupported(format!(
            "{api} has no cheap health check here: every round of it is billed"
        )));
    }
    if purpose == Purpose::Forward {
        return Err(unsupported(format!(
            "{api}'s native API is probed but not forwarded: serve it from a deployment that \
             speaks OpenAI (e.g. a LiteLLM proxy as openai/ with api_base)"
        )));
    }
    let (bedrock, vertex) = (cfg!(feature = "bedrock"), cfg!(feature = "vertex"));
    let compiled = if wire == Wire::Bedrock {
        bedrock
    } else {
        vertex
    };
    if !compiled {
        return Err(unsupported(format!(
            "{api}'s native probe needs the `{feature}` feature of tower-health-routing"
        )));
    }
    let params = deployment.params();
    let url = match wire {
        Wire::Bedrock => params.api_base.clone().or_else(|| {
            match params.extra.get("aws_bedrock_runtime_endpoint") {
                Some(crate::deployment::ParamValue::Plain(serde_json::Value::String(s))) => {
                    Some(s.clone())
                }
                _ => None,
            }
        }),
        _ => params.api_base.clone(),
    };
    Ok(Endpoint {
        provider: name.to_owned(),
        wire,
        url: url.unwrap_or_default(),
        headers: HeaderMap::new(),
        model: bare.to_owned(),
        mode,
    })
}

/// A provider the catalog does not know: spoken to as OpenAI, `api_base` required.
const OTHER: Provider = entry("", Wire::OpenAi, None);

/// The endpoint of `deployment` for `model` (its `litellm_params.model` or, for probes, its
/// `health_check_model`; a bare model keeps the deployment's provider) in `mode`.
pub fn endpoint(
    deployment: &Deployment,
    model: &str,
    mode: Mode,
    purpose: Purpose,
) -> Result<Endpoint, ProviderError> {
    let (name, entry, base, bare) = match plan(deployment, model, mode, purpose)? {
        Plan::Native(ep) => return Ok(ep),
        Plan::Catalog {
            name,
            entry,
            base,
            bare,
        } => (name, entry, base, bare),
    };
    let (wire, path, query) = wire::path(deployment, entry.wire, name, bare, mode, purpose)?;
    let mut headers = HeaderMap::new();
    wire::auth_headers(deployment, entry.wire, &mut headers)?;
    Ok(Endpoint {
        provider: name.to_owned(),
        wire,
        url: base.join(&path, &query),
        headers,
        model: bare.to_owned(),
        mode,
    })
}

/// [`endpoint`]'s answer without building the endpoint's headers, provider and model
/// strings: its wire and URL, or exactly the error [`endpoint`] returns. For start-up
/// checks that only ask whether a deployment is supported (run once per deployment, so
/// 100,000 times for 100,000 deployments).
pub fn check_endpoint(
    deployment: &Deployment,
    model: &str,
    mode: Mode,
    purpose: Purpose,
) -> Result<(Wire, String), ProviderError> {
    let (name, entry, base, bare) = match plan(deployment, model, mode, purpose)? {
        Plan::Native(ep) => return Ok((ep.wire, ep.url)),
        Plan::Catalog {
            name,
            entry,
            base,
            bare,
        } => (name, entry, base, bare),
    };
    let (wire, path, query) = wire::path(deployment, entry.wire, name, bare, mode, purpose)?;
    wire::check_auth(deployment, entry.wire)?;
    Ok((wire, base.join(&path, &query)))
}

/// What [`endpoint`] and [`check_endpoint`] decide before building: a native cloud
/// endpoint, or the catalog's provider and the checked base URL.
enum Plan<'a> {
    /// Bedrock or Vertex AI (built by their own modules).
    Native(Endpoint),
    /// A catalog provider.
    Catalog {
        /// The provider's name.
        name: &'a str,
        /// Its catalog entry.
        entry: &'static Provider,
        /// The base URL, its suffixes trimmed for the wire.
        base: wire::Base,
        /// The model without its provider prefix.
        bare: &'a str,
    },
}

fn plan<'a>(
    deployment: &'a Deployment,
    model: &'a str,
    mode: Mode,
    purpose: Purpose,
) -> Result<Plan<'a>, ProviderError> {
    let params = deployment.params();
    let (own_prefix, bare) = match model.split_once('/') {
        Some((p, m)) => (Some(p), m),
        None => (None, model),
    };
    let prefix = own_prefix.or(params.provider());
    let unsupported = |name: &str, reason: &str| ProviderError::Unsupported {
        provider: name.to_owned(),
        reason: reason.to_owned(),
    };
    if let Some((name, wire)) = native_wire(prefix, bare) {
        return native_endpoint(deployment, name, wire, bare, mode, purpose).map(Plan::Native);
    }
    if let Some(p) = prefix
        && let Some((name, reason)) = UNSUPPORTED.iter().find(|(n, _)| *n == p)
    {
        return Err(unsupported(name, reason));
    }
    let entry = match prefix {
        None => provider("openai").unwrap_or(&OTHER),
        Some(p) => provider(p).unwrap_or(&OTHER),
    };
    let name = if entry.name.is_empty() {
        prefix.unwrap_or("openai")
    } else {
        entry.name
    };
    let Some(base) = params.api_base.as_deref().or(entry.default_base) else {
        return Err(ProviderError::Invalid {
            field: "litellm_params.api_base",
            why: format!(
                "provider `{name}` has no api_base and no known default endpoint: set \
                 api_base (see the provider catalog for the providers with defaults)"
            ),
        });
    };
    if let Some(modes) = entry.modes
        && !modes.contains(&mode)
    {
        let offered: Vec<&str> = modes.iter().map(|m| m.as_str()).collect();
        return Err(ProviderError::Invalid {
            field: "model_info.mode",
            why: format!(
                "provider `{name}` offers no `{mode}` endpoint the catalog knows (it offers {}); \
                 set model_info.mode, or supply a Prober",
                offered.join(", ")
            ),
        });
    }
    let mut base = wire::Base::parse(base)?;
    match entry.wire {
        Wire::OpenAi if name.starts_with("ollama") && !base.path.ends_with("/v1") => {
            base.path.push_str("/v1");
        }
        // Native paths start at the host's root: a base given as `.../v1` is the same place.
        Wire::Anthropic => base.trim_suffixes(&["/v1/messages", "/v1"]),
        Wire::Cohere => base.trim_suffixes(&["/v1", "/v2"]),
        _ => {}
    }
    Ok(Plan::Catalog {
        name,
        entry,
        base,
        bare,
    })
}

/// The mode an OpenAI-style request path serves (`/v1/chat/completions`, `embeddings`,
/// ...), for forwarders; `None` for a path the catalog does not forward.
pub fn mode_for_path(path: &str) -> Option<Mode> {
    let p = path.trim_start_matches('/');
    let p = p.strip_prefix("v1/").unwrap_or(p).trim_end_matches('/');
    Some(match p {
        "chat/completions" => Mode::Chat,
        "completions" => Mode::Completion,
        "responses" => Mode::Responses,
        "embeddings" => Mode::Embedding,
        "images/generations" => Mode::ImageGeneration,
        "audio/speech" => Mode::AudioSpeech,
        "audio/transcriptions" => Mode::AudioTranscription,
        "rerank" => Mode::Rerank,
        "batches" => Mode::Batch,
        "moderations" => Mode::Moderation,
        "ocr" => Mode::Ocr,
        "videos" => Mode::VideoGeneration,
        _ => return None,
    })
}

/// The endpoint a forwarder sends an OpenAI-style request for `path` (e.g.
/// `/v1/chat/completions`) to, for `deployment`'s own model.
pub fn forward_endpoint(deployment: &Deployment, path: &str) -> Result<Endpoint, ProviderError> {
    let Some(mode) = mode_for_path(path) else {
        return Err(ProviderError::Unsupported {
            provider: deployment
                .params()
                .provider()
                .unwrap_or("openai")
                .to_owned(),
            reason: "the path is not one the catalog forwards".to_owned(),
        });
    };
    endpoint(
        deployment,
        &deployment.params().model,
        mode,
        Purpose::Forward,
    )
}

/// [`forward_endpoint`]'s answer without building the endpoint (see [`check_endpoint`]):
/// `Ok` exactly when it builds one, else its error.
pub fn check_forward_endpoint(deployment: &Deployment, path: &str) -> Result<(), ProviderError> {
    let Some(mode) = mode_for_path(path) else {
        return forward_endpoint(deployment, path).map(drop);
    };
    check_endpoint(
        deployment,
        &deployment.params().model,
        mode,
        Purpose::Forward,
    )
    .map(drop)
}

#[cfg(test)]
mod tests;
