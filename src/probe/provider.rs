//! Where the HTTP prober sends a deployment's probe: the provider's wire format, the base
//! URL and the model named, decided once per deployment and checked at config time.
//!
//! The table is documented on [`HttpProber`](super::HttpProber).
//!
//! A deployment with no `api_base` and no default (Bedrock, Vertex AI, ...) cannot be
//! reached, and says so when the loop is built rather than failing every probe.

use crate::{
    deployment::{Deployment, Mode},
    probe::mode::{bedrock_probe_model, is_wildcard, probe_model_full, resolve_mode},
};

/// The wire format of a probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Provider {
    OpenAi,
    Azure,
    Anthropic,
    Cohere,
}

impl Provider {
    fn name(self) -> &'static str {
        match self {
            Self::OpenAi => "openai",
            Self::Azure => "azure",
            Self::Anthropic => "anthropic",
            Self::Cohere => "cohere",
        }
    }

    /// The modes whose endpoints this wire format offers; `None`: all.
    fn modes(self) -> Option<&'static [Mode]> {
        match self {
            Self::OpenAi => None,
            Self::Azure => Some(&[
                Mode::Chat,
                Mode::Completion,
                Mode::Responses,
                Mode::Embedding,
                Mode::ImageGeneration,
                Mode::AudioSpeech,
                Mode::AudioTranscription,
                Mode::Batch,
                Mode::Realtime,
            ]),
            Self::Anthropic => Some(&[Mode::Chat, Mode::Completion, Mode::Batch]),
            Self::Cohere => Some(&[Mode::Chat, Mode::Completion, Mode::Embedding, Mode::Rerank]),
        }
    }
}

/// Why the HTTP prober cannot probe a deployment; `field` is relative to its
/// `model_list` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Unsupported {
    pub(crate) field: &'static str,
    pub(crate) why: String,
}

/// Everything about a probe that does not depend on the mode's body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Target {
    pub(crate) provider: Provider,
    /// The base URL, without a trailing slash.
    pub(crate) base: String,
    /// The model named in the probe (no provider prefix).
    pub(crate) model: String,
    pub(crate) mode: Mode,
}

/// Model ids that are Bedrock's even without a `bedrock/` prefix (`anthropic.claude-v2`).
fn looks_bedrock(bare: &str) -> bool {
    const VENDORS: &[&str] = &[
        "anthropic.",
        "amazon.",
        "meta.",
        "mistral.",
        "cohere.",
        "ai21.",
        "deepseek.",
        "us.",
        "eu.",
        "apac.",
        "global.",
    ];
    VENDORS.iter().any(|v| bare.starts_with(v))
}

/// Resolves where and how `d` is probed.
pub(crate) fn resolve(d: &Deployment) -> Result<Target, Unsupported> {
    let params = d.params();
    if is_wildcard(d) && d.info().health_check_model.is_none() {
        return Err(Unsupported {
            field: "model_info.health_check_model",
            why: format!(
                "the wildcard model `{}` cannot be probed as it is: set health_check_model \
                 (e.g. openai/gpt-4o-mini) or disable_background_health_check",
                params.model
            ),
        });
    }
    let full = probe_model_full(d);
    let (own_prefix, bare) = match full.split_once('/') {
        Some((p, m)) => (Some(p), m),
        None => (None, full),
    };
    let prefix = own_prefix.or(params.provider());
    let model = if full.starts_with("bedrock/") {
        bedrock_probe_model(full)
    } else {
        bare.to_owned()
    };
    let provider = match prefix {
        Some("azure" | "azure_text") => Provider::Azure,
        Some("anthropic") => Provider::Anthropic,
        Some("cohere" | "cohere_chat") => Provider::Cohere,
        _ => Provider::OpenAi,
    };
    let default_base = match (provider, prefix) {
        (Provider::Anthropic, _) => Some("https://api.anthropic.com"),
        (Provider::Cohere, _) => Some("https://api.cohere.com"),
        (Provider::OpenAi, None) if looks_bedrock(&model) => None,
        (Provider::OpenAi, None | Some("openai" | "text-completion-openai")) => {
            Some("https://api.openai.com/v1")
        }
        _ => None,
    };
    let Some(base) = params.api_base.as_deref().or(default_base) else {
        let named = match prefix {
            Some(p) => format!("provider `{p}`"),
            None => format!("the model `{model}` (a Bedrock model id)"),
        };
        return Err(Unsupported {
            field: "litellm_params.api_base",
            why: format!(
                "{named} has no api_base and no known default endpoint (known: openai, \
                 anthropic, cohere): not supported by the HTTP prober; supply a Prober, or \
                 set api_base to an OpenAI-compatible endpoint"
            ),
        });
    };
    let base = check_base(base)?;
    let mode = resolve_mode(d);
    if let Some(modes) = provider.modes()
        && !modes.contains(&mode)
    {
        let offered: Vec<&str> = modes.iter().map(|m| m.as_str()).collect();
        return Err(Unsupported {
            field: "model_info.mode",
            why: format!(
                "provider `{}` offers no `{mode}` endpoint the HTTP prober knows (it probes {}); \
                 set model_info.mode, or supply a Prober",
                provider.name(),
                offered.join(", ")
            ),
        });
    }
    Ok(Target {
        provider,
        base,
        model,
        mode,
    })
}

/// A base URL the client can use: absolute `http` or `https` (the latter needs the
/// `rustls` feature), returned without its trailing slash.
fn check_base(base: &str) -> Result<String, Unsupported> {
    let bad = |why: String| Unsupported {
        field: "litellm_params.api_base",
        why,
    };
    let trimmed = base.trim().trim_end_matches('/');
    // Userinfo is a credential: no message quotes it.
    let shown = crate::secret::redact_userinfo(trimmed);
    if crate::secret::has_userinfo(trimmed) {
        // Config::validate refuses these; a Config assembled by hand may still carry one,
        // and the HTTP client's pool would log it.
        return Err(bad(format!(
            "`{shown}` carries credentials (user:password@); remove them and use api_key"
        )));
    }
    let uri: http::Uri = trimmed
        .parse()
        .map_err(|e| bad(format!("`{shown}` is not a URL: {e}")))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") if cfg!(feature = "rustls") => {}
        Some("https") => {
            return Err(bad(format!(
                "`{shown}` is https, which needs the `rustls` feature of tower-health-routing"
            )));
        }
        _ => {
            return Err(bad(format!(
                "`{shown}` must start with http:// or https://"
            )));
        }
    }
    if uri.authority().is_none() {
        return Err(bad(format!("`{shown}` names no host")));
    }
    Ok(trimmed.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(model: &str, base: Option<&str>) -> Result<Target, Unsupported> {
        let mut b = Deployment::builder("r", model);
        if let Some(base) = base {
            b = b.api_base(base);
        }
        resolve(&b.build())
    }

    #[test]
    #[cfg(not(feature = "rustls"))]
    fn known_defaults_need_rustls() {
        let e = target("openai/gpt-4o", None).unwrap_err();
        assert!(e.why.contains("needs the `rustls` feature"), "{}", e.why);
    }

    #[test]
    #[cfg(feature = "rustls")]
    fn known_defaults() {
        let t = target("openai/gpt-4o", None).unwrap();
        assert_eq!(
            (t.provider, t.base.as_str(), t.model.as_str()),
            (Provider::OpenAi, "https://api.openai.com/v1", "gpt-4o")
        );
        assert_eq!(
            target("whisper-1", None).unwrap().base,
            "https://api.openai.com/v1"
        );
        assert_eq!(
            target("anthropic/claude-3-5-sonnet", None).unwrap().base,
            "https://api.anthropic.com"
        );
        assert_eq!(
            target("cohere/rerank-v3.5", None).unwrap().base,
            "https://api.cohere.com"
        );
    }

    #[test]
    fn api_base_wins() {
        let t = target(
            "hosted_vllm/meta-llama/Llama-3-8B",
            Some("http://10.0.0.1:8000/v1/"),
        )
        .unwrap();
        assert_eq!(
            (t.provider, t.base.as_str(), t.model.as_str()),
            (
                Provider::OpenAi,
                "http://10.0.0.1:8000/v1",
                "meta-llama/Llama-3-8B"
            )
        );
    }

    #[test]
    fn unreachable_providers_are_named() {
        for model in [
            "bedrock/anthropic.claude-v2",
            "vertex_ai/gemini-1.5-pro",
            "azure/gpt-4o",
            "groq/llama3",
        ] {
            let e = target(model, None).unwrap_err();
            assert_eq!(e.field, "litellm_params.api_base", "{model}");
            assert!(
                e.why.contains("not supported by the HTTP prober"),
                "{}",
                e.why
            );
        }
        let e = target("anthropic.claude-v2", None).unwrap_err();
        assert!(e.why.contains("Bedrock"), "{}", e.why);
        // With an api_base, Bedrock's model loses its region segment and is sent as is.
        let t = target(
            "bedrock/us-west-2/mistral.mistral-7b",
            Some("http://gw:8080/api/v1"),
        )
        .unwrap();
        assert_eq!(
            (t.provider, t.model.as_str()),
            (Provider::OpenAi, "mistral.mistral-7b")
        );
    }

    #[test]
    fn wildcards_need_a_health_check_model() {
        let e = target("openai/*", None).unwrap_err();
        assert_eq!(e.field, "model_info.health_check_model");
        let mut b = Deployment::builder("anthropic/*", "anthropic/*").api_base("http://a");
        b.info_mut().health_check_model = Some("anthropic/claude-3-5-haiku".into());
        let t = resolve(&b.build()).unwrap();
        assert_eq!(
            (t.provider, t.model.as_str(), t.mode),
            (Provider::Anthropic, "claude-3-5-haiku", Mode::Chat)
        );
        // A bare health_check_model keeps the deployment's provider.
        let mut b = Deployment::builder("azure/*", "azure/*").api_base("http://az");
        b.info_mut().health_check_model = Some("gpt-4o-mini".into());
        let t = resolve(&b.build()).unwrap();
        assert_eq!(
            (t.provider, t.model.as_str()),
            (Provider::Azure, "gpt-4o-mini")
        );
    }

    #[test]
    fn modes_a_provider_lacks_are_config_errors() {
        let d = Deployment::builder("r", "anthropic/claude-3")
            .api_base("http://a")
            .mode(Mode::Embedding)
            .build();
        let e = resolve(&d).unwrap_err();
        assert_eq!(e.field, "model_info.mode");
        assert!(e.why.contains("chat, completion, batch"), "{}", e.why);
        let d = Deployment::builder("r", "azure/x")
            .api_base("http://az")
            .mode(Mode::Rerank)
            .build();
        assert_eq!(resolve(&d).unwrap_err().field, "model_info.mode");
    }

    #[test]
    fn bad_bases() {
        for base in ["ftp://x", "not a url", "/relative"] {
            let e = target("openai/gpt-4o", Some(base)).unwrap_err();
            assert_eq!(e.field, "litellm_params.api_base", "{base}");
        }
        let https = target("openai/gpt-4o", Some("https://x/v1"));
        assert_eq!(https.is_ok(), cfg!(feature = "rustls"));
    }
}
