//! What a probe asks: the mode (which endpoint), the model, the prompt and `max_tokens`.
//!
//! These are pure functions of a deployment and a few process-wide defaults, so every rule
//! is tested without a network. The rules are LiteLLM's (`proxy/health_check.py`):
//!
//! * **Mode**: `model_info.mode`, else the small table in [`resolve_mode`], else chat.
//! * **Model**: `model_info.health_check_model` if set (wildcard routes such as `openai/*`),
//!   else the deployment's model; sent without its provider prefix.
//! * **`max_tokens`**: only for chat and completion (or wherever
//!   `model_info.health_check_supports_max_tokens` says), with the value from
//!   [`resolve_max_tokens`].
//! * **Prompt**: [`ProbeDefaults::prompt`] (`DEFAULT_HEALTH_CHECK_PROMPT`) for the modes
//!   that take one: completion, responses, image generation, speech and rerank.
//!
//! The environment is read once into [`ProbeDefaults`] (see `defaults.rs`); tests build
//! that struct directly.

use super::defaults::{DEFAULT_MAX_TOKENS, ProbeDefaults};
use crate::deployment::{Deployment, Mode};

/// The model a probe names, with its provider prefix if it has one: the
/// `health_check_model` when set, else the deployment's model.
pub(crate) fn probe_model_full(d: &Deployment) -> &str {
    d.info()
        .health_check_model
        .as_deref()
        .unwrap_or(&d.params().model)
}

/// The last path segment of a model name, lowercased: `openai/gpt-4o` → `gpt-4o`.
fn base_name(model: &str) -> String {
    model
        .rsplit('/')
        .next()
        .unwrap_or(model)
        .to_ascii_lowercase()
}

/// The mode a deployment is probed in: `model_info.mode`, else by the model's name, else chat.
///
/// The name table (matched on the last path segment of `health_check_model`, else of the
/// model, case-insensitively):
///
/// | name | mode |
/// |---|---|
/// | `text-embedding-*`, `*embed*` | embedding |
/// | `dall-e-*`, `gpt-image-*` | image_generation |
/// | `whisper-*`, `*transcribe*` | audio_transcription |
/// | `tts-*`, `*-tts` | audio_speech |
/// | `*rerank*` | rerank |
/// | `omni-moderation-*`, `text-moderation-*` | moderation |
/// | `*realtime*` | realtime |
/// | `sora-*` | video_generation |
/// | `*-ocr*` | ocr |
/// | `gpt-3.5-turbo-instruct*`, `davinci-*`, `babbage-*`, `text-davinci-*` | completion |
/// | anything else | chat |
pub fn resolve_mode(d: &Deployment) -> Mode {
    d.info()
        .mode
        .unwrap_or_else(|| mode_by_name(probe_model_full(d)))
}

pub(crate) fn mode_by_name(model: &str) -> Mode {
    let n = base_name(model);
    let starts = |p: &str| n.starts_with(p);
    if starts("text-embedding-") || n.contains("embed") {
        Mode::Embedding
    } else if starts("dall-e-") || starts("gpt-image-") {
        Mode::ImageGeneration
    } else if starts("whisper-") || n.contains("transcribe") {
        Mode::AudioTranscription
    } else if starts("tts-") || n.ends_with("-tts") {
        Mode::AudioSpeech
    } else if n.contains("rerank") {
        Mode::Rerank
    } else if starts("omni-moderation-") || starts("text-moderation-") {
        Mode::Moderation
    } else if n.contains("realtime") {
        Mode::Realtime
    } else if starts("sora-") {
        Mode::VideoGeneration
    } else if n.contains("-ocr") {
        Mode::Ocr
    } else if starts("gpt-3.5-turbo-instruct")
        || starts("davinci-")
        || starts("babbage-")
        || starts("text-davinci-")
    {
        Mode::Completion
    } else {
        Mode::Chat
    }
}

/// Whether a model reasons, by name (the last path segment, case-insensitively). Decides
/// which `max_tokens` override applies and, for OpenAI-style chat, that the probe sends
/// `max_completion_tokens` instead of `max_tokens`.
///
/// | name | family |
/// |---|---|
/// | `o1`, `o3`, `o4`, `o1-*`, `o3-*`, `o4-*` | OpenAI o-series |
/// | `gpt-5*` except `gpt-5*-chat*` | GPT-5 |
/// | `*deepseek-r1*`, `deepseek-reasoner` | DeepSeek R1 |
/// | `*thinking*` | `claude-*-thinking`, `gemini-*-thinking`, ... |
/// | `claude-3-7-sonnet*`, `claude-sonnet-4*`, `claude-opus-4*`, `claude-haiku-4*`, `claude-4*` | Claude with extended thinking |
/// | `gemini-2.5-*`, `gemini-3*` | Gemini thinking models |
/// | `qwq*`, `magistral-*` | other reasoning models |
///
/// ```
/// use tower_health_routing::probe::is_reasoning_model;
/// assert!(is_reasoning_model("openai/o3-mini") && is_reasoning_model("gpt-5"));
/// assert!(!is_reasoning_model("gpt-4o") && !is_reasoning_model("gpt-5-chat-latest"));
/// ```
pub fn is_reasoning_model(model: &str) -> bool {
    let n = base_name(model);
    let starts = |p: &str| n.starts_with(p);
    // `o1`, or `o1-` and more (checked without building the `o1-` prefix per call).
    let o_series = ["o1", "o3", "o4"].iter().any(|p| {
        n.strip_prefix(p)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('-'))
    });
    o_series
        || (starts("gpt-5") && !n.contains("-chat"))
        || n.contains("deepseek-r1")
        || n == "deepseek-reasoner"
        || n.contains("thinking")
        || [
            "claude-3-7-sonnet",
            "claude-sonnet-4",
            "claude-opus-4",
            "claude-haiku-4",
            "claude-4",
        ]
        .iter()
        .any(|p| starts(p))
        || starts("gemini-2.5-")
        || starts("gemini-3")
        || starts("qwq")
        || starts("magistral-")
}

/// Whether the deployment serves a wildcard route (`openai/*`).
pub(crate) fn is_wildcard(d: &Deployment) -> bool {
    d.params().model.contains('*')
}

/// Whether the probe carries a token limit: `health_check_supports_max_tokens` if set, else
/// only in chat and completion.
#[cfg_attr(not(feature = "http-prober"), allow(dead_code))]
pub(crate) fn sends_max_tokens(d: &Deployment, mode: Mode) -> bool {
    d.info()
        .health_check_supports_max_tokens
        .unwrap_or(matches!(mode, Mode::Chat | Mode::Completion))
}

/// The probe's `max_tokens`, in LiteLLM's order:
///
/// 1. `model_info.health_check_max_tokens`;
/// 2. for a normal route, `health_check_max_tokens_reasoning` or `..._non_reasoning`,
///    whichever matches [`is_reasoning_model`] of the deployment's model;
/// 3. for a normal route of a reasoning model, `BACKGROUND_HEALTH_CHECK_MAX_TOKENS_REASONING`;
/// 4. `BACKGROUND_HEALTH_CHECK_MAX_TOKENS` (any route, wildcards too);
/// 5. 16 for a normal route; none for a wildcard.
///
/// The model judged is the deployment's own (`litellm_params.model`), not
/// `health_check_model`, as in LiteLLM.
pub fn resolve_max_tokens(d: &Deployment, defaults: &ProbeDefaults) -> Option<u32> {
    let info = d.info();
    if let Some(n) = info.health_check_max_tokens {
        return Some(n);
    }
    let wildcard = is_wildcard(d);
    if !wildcard {
        let reasoning = is_reasoning_model(&d.params().model);
        let own = if reasoning {
            info.health_check_max_tokens_reasoning
        } else {
            info.health_check_max_tokens_non_reasoning
        };
        if own.is_some() {
            return own;
        }
        if reasoning && defaults.max_tokens_reasoning.is_some() {
            return defaults.max_tokens_reasoning;
        }
    }
    if defaults.max_tokens.is_some() {
        return defaults.max_tokens;
    }
    (!wildcard).then_some(DEFAULT_MAX_TOKENS)
}

pub use crate::provider::bedrock_model::bedrock_probe_model;

#[cfg(test)]
mod tests {
    use super::*;

    fn dep(model: &str) -> Deployment {
        Deployment::builder("r", model).build()
    }

    #[test]
    fn explicit_mode_wins_over_the_name_table() {
        let d = Deployment::builder("r", "openai/text-embedding-3-small")
            .mode(Mode::Chat)
            .build();
        assert_eq!(resolve_mode(&d), Mode::Chat);
    }

    #[test]
    fn name_table() {
        for (model, mode) in [
            ("openai/text-embedding-3-small", Mode::Embedding),
            ("cohere/embed-english-v3.0", Mode::Embedding),
            ("openai/dall-e-3", Mode::ImageGeneration),
            ("gpt-image-1", Mode::ImageGeneration),
            ("whisper-1", Mode::AudioTranscription),
            ("openai/gpt-4o-mini-transcribe", Mode::AudioTranscription),
            ("openai/tts-1-hd", Mode::AudioSpeech),
            ("openai/gpt-4o-mini-tts", Mode::AudioSpeech),
            ("cohere/rerank-english-v3.0", Mode::Rerank),
            ("omni-moderation-latest", Mode::Moderation),
            ("openai/text-moderation-stable", Mode::Moderation),
            ("openai/gpt-4o-realtime-preview", Mode::Realtime),
            ("openai/gpt-realtime", Mode::Realtime),
            ("openai/sora-2", Mode::VideoGeneration),
            ("mistral/mistral-ocr-latest", Mode::Ocr),
            ("openai/gpt-3.5-turbo-instruct", Mode::Completion),
            ("openai/gpt-4o", Mode::Chat),
            ("hosted_vllm/meta-llama/Llama-3.1-8B-Instruct", Mode::Chat),
        ] {
            assert_eq!(resolve_mode(&dep(model)), mode, "{model}");
        }
    }

    #[test]
    fn wildcard_mode_follows_health_check_model() {
        let mut b = Deployment::builder("openai/*", "openai/*");
        b.info_mut().health_check_model = Some("openai/text-embedding-3-small".into());
        assert_eq!(resolve_mode(&b.build()), Mode::Embedding);
        let mut b = Deployment::builder("openai/*", "openai/*");
        b.info_mut().health_check_model = Some("openai/gpt-4o-mini".into());
        assert_eq!(resolve_mode(&b.build()), Mode::Chat);
    }

    #[test]
    fn reasoning_table() {
        for m in [
            "o1",
            "o3-mini",
            "openai/o4-mini",
            "azure/gpt-5-mini",
            "gpt-5",
            "deepseek/deepseek-r1",
            "deepseek-reasoner",
            "hosted_vllm/deepseek-ai/DeepSeek-R1-Distill-Qwen-7B",
            "anthropic/claude-3-7-sonnet-20250219",
            "claude-sonnet-4-5",
            "claude-3-opus-thinking",
            "gemini/gemini-2.5-pro",
            "qwq-32b",
            "magistral-medium-latest",
        ] {
            assert!(is_reasoning_model(m), "{m}");
        }
        for m in [
            "gpt-4o",
            "gpt-4.1-mini",
            "gpt-5-chat-latest",
            "claude-3-5-sonnet-20240620",
            "o1x",
            "omni-moderation-latest",
            "llama-3.1-8b",
            "gemini-2.0-flash",
        ] {
            assert!(!is_reasoning_model(m), "{m}");
        }
    }

    fn with_info(model: &str, f: impl FnOnce(&mut crate::deployment::ModelInfo)) -> Deployment {
        let mut b = Deployment::builder("r", model);
        f(b.info_mut());
        b.build()
    }

    #[test]
    fn max_tokens_every_branch() {
        let none = ProbeDefaults::default();
        let env = ProbeDefaults::default()
            .with_max_tokens(Some(40))
            .with_max_tokens_reasoning(Some(400));
        // 1. explicit wins over everything, wildcard or not.
        let d = with_info("openai/*", |i| {
            i.health_check_max_tokens = Some(3);
            i.health_check_max_tokens_non_reasoning = Some(9);
        });
        assert_eq!(resolve_max_tokens(&d, &env), Some(3));
        // 2. per-kind overrides by the deployment's model.
        let both = |m: &str| {
            with_info(m, |i| {
                i.health_check_max_tokens_reasoning = Some(200);
                i.health_check_max_tokens_non_reasoning = Some(8);
            })
        };
        assert_eq!(resolve_max_tokens(&both("openai/o3-mini"), &env), Some(200));
        assert_eq!(resolve_max_tokens(&both("openai/gpt-4o"), &env), Some(8));
        // Only the other kind's override set: fall through to the env/defaults.
        let only_r = with_info("openai/gpt-4o", |i| {
            i.health_check_max_tokens_reasoning = Some(200)
        });
        assert_eq!(resolve_max_tokens(&only_r, &none), Some(16));
        assert_eq!(resolve_max_tokens(&only_r, &env), Some(40));
        // 3. reasoning env for a reasoning model of a normal route.
        assert_eq!(resolve_max_tokens(&dep("openai/o3-mini"), &env), Some(400));
        // ... not for a non-reasoning model, which takes the global env (4).
        assert_eq!(resolve_max_tokens(&dep("openai/gpt-4o"), &env), Some(40));
        // 4. global env applies to wildcards, the reasoning env does not.
        let wild = with_info("openai/*", |i| {
            i.health_check_model = Some("openai/o3".into())
        });
        assert_eq!(resolve_max_tokens(&wild, &env), Some(40));
        let only_reasoning_env = ProbeDefaults::default().with_max_tokens_reasoning(Some(400));
        assert_eq!(resolve_max_tokens(&wild, &only_reasoning_env), None);
        // 5. defaults: 16 for a normal route, none for a wildcard.
        assert_eq!(resolve_max_tokens(&dep("openai/gpt-4o"), &none), Some(16));
        assert_eq!(resolve_max_tokens(&dep("openai/o3-mini"), &none), Some(16));
        assert_eq!(resolve_max_tokens(&wild, &none), None);
    }

    #[test]
    fn max_tokens_only_for_chat_and_completion_unless_told() {
        assert!(sends_max_tokens(&dep("m"), Mode::Chat));
        assert!(sends_max_tokens(&dep("m"), Mode::Completion));
        for m in [
            Mode::Responses,
            Mode::Embedding,
            Mode::Rerank,
            Mode::AudioSpeech,
        ] {
            assert!(!sends_max_tokens(&dep("m"), m), "{m}");
        }
        let on = with_info("m", |i| i.health_check_supports_max_tokens = Some(true));
        assert!(sends_max_tokens(&on, Mode::Embedding));
        let off = with_info("m", |i| i.health_check_supports_max_tokens = Some(false));
        assert!(!sends_max_tokens(&off, Mode::Chat));
    }

    #[test]
    fn bedrock_region_stripping() {
        for (input, want) in [
            (
                "bedrock/us-west-2/mistral.mistral-7b-instruct-v0:2",
                "mistral.mistral-7b-instruct-v0:2",
            ),
            (
                "bedrock/converse/us-west-2/anthropic.claude-3-sonnet",
                "converse/anthropic.claude-3-sonnet",
            ),
            (
                "bedrock/us.anthropic.claude-3-5-sonnet-20240620-v1:0",
                "us.anthropic.claude-3-5-sonnet-20240620-v1:0",
            ),
            (
                "bedrock/eu-central-1/eu.cohere.embed-v4:0",
                "eu.cohere.embed-v4:0",
            ),
            (
                "bedrock/invoke/apac.amazon.nova-pro-v1:0",
                "invoke/apac.amazon.nova-pro-v1:0",
            ),
            (
                "bedrock/llama/arn:aws:bedrock:us-east-1:123456789012:imported-model/abc",
                "llama/arn:aws:bedrock:us-east-1:123456789012:imported-model/abc",
            ),
            ("openai/us-west-2/x", "openai/us-west-2/x"),
            ("anthropic.claude-v2", "anthropic.claude-v2"),
        ] {
            assert_eq!(bedrock_probe_model(input), want, "{input}");
        }
    }
}
