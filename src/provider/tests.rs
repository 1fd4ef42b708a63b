use super::*;
use crate::deployment::Deployment;

fn ep(
    model: &str,
    base: Option<&str>,
    mode: Mode,
    purpose: Purpose,
) -> Result<Endpoint, ProviderError> {
    let mut b = Deployment::builder("r", model);
    if let Some(base) = base {
        b = b.api_base(base);
    }
    let d = b.build();
    endpoint(&d, &d.params().model.clone(), mode, purpose)
}

fn probe_url(model: &str, base: Option<&str>) -> String {
    ep(model, base, Mode::Chat, Purpose::Probe).unwrap().url
}

#[test]
#[cfg(feature = "rustls")]
fn default_bases_are_litellms() {
    for (model, url) in [
        ("gpt-4o", "https://api.openai.com/v1/chat/completions"),
        (
            "openai/gpt-4o",
            "https://api.openai.com/v1/chat/completions",
        ),
        (
            "groq/llama3",
            "https://api.groq.com/openai/v1/chat/completions",
        ),
        (
            "openrouter/x/y",
            "https://openrouter.ai/api/v1/chat/completions",
        ),
        ("mistral/m", "https://api.mistral.ai/v1/chat/completions"),
        (
            "deepseek/d",
            "https://api.deepseek.com/beta/chat/completions",
        ),
        ("xai/grok", "https://api.x.ai/v1/chat/completions"),
        (
            "together_ai/t",
            "https://api.together.ai/v1/chat/completions",
        ),
        (
            "fireworks_ai/f",
            "https://api.fireworks.ai/inference/v1/chat/completions",
        ),
        ("perplexity/p", "https://api.perplexity.ai/chat/completions"),
        ("cerebras/c", "https://api.cerebras.ai/v1/chat/completions"),
        (
            "deepinfra/d",
            "https://api.deepinfra.com/v1/openai/chat/completions",
        ),
        (
            "nvidia_nim/n",
            "https://integrate.api.nvidia.com/v1/chat/completions",
        ),
        (
            "gemini/gemini-2.0-flash",
            "https://generativelanguage.googleapis.com/v1beta/openai/chat/completions",
        ),
        (
            "ollama/llama3",
            "http://localhost:11434/v1/chat/completions",
        ),
        (
            "ollama_chat/llama3",
            "http://localhost:11434/v1/chat/completions",
        ),
        (
            "anthropic/claude-3-5-sonnet",
            "https://api.anthropic.com/v1/messages",
        ),
        ("cohere/command-r", "https://api.cohere.com/v2/chat"),
    ] {
        assert_eq!(probe_url(model, None), url, "{model}");
    }
    let v = ep("voyage/voyage-3", None, Mode::Embedding, Purpose::Probe).unwrap();
    assert_eq!(v.url, "https://api.voyageai.com/v1/embeddings");
}

#[test]
fn api_base_is_required_where_there_is_no_default() {
    for model in [
        "azure/gpt-4o",
        "azure_ai/x",
        "lm_studio/x",
        "hosted_vllm/x",
        "openai_like/x",
        "my_own/x",
    ] {
        let e = ep(model, None, Mode::Chat, Purpose::Probe).unwrap_err();
        assert!(
            matches!(
                &e,
                ProviderError::Invalid {
                    field: "litellm_params.api_base",
                    ..
                }
            ),
            "{model}: {e}"
        );
    }
}

#[test]
fn native_apis_are_never_openai_even_with_an_api_base() {
    for (model, name) in [
        ("sagemaker/x", "sagemaker"),
        ("auto_router/r", "auto_router"),
    ] {
        for base in [None, Some("http://gw:8080/api/v1")] {
            match ep(model, base, Mode::Chat, Purpose::Probe) {
                Err(ProviderError::Unsupported { provider, .. }) => {
                    assert_eq!(provider, name, "{model}")
                }
                other => panic!("{model} {base:?}: {other:?}"),
            }
        }
    }
    // The native cloud wires: probed natively (with their features), never forwarded.
    for (model, name, wire) in [
        ("bedrock/anthropic.claude-v2", "bedrock", Wire::Bedrock),
        (
            "bedrock/us-west-2/mistral.mistral-7b",
            "bedrock",
            Wire::Bedrock,
        ),
        ("anthropic.claude-v2", "bedrock", Wire::Bedrock),
        (
            "us.anthropic.claude-3-5-sonnet-20240620-v1:0",
            "bedrock",
            Wire::Bedrock,
        ),
        ("vertex_ai/gemini-1.5-pro", "vertex_ai", Wire::Vertex),
        (
            "vertex_ai_beta/gemini-1.5-pro",
            "vertex_ai_beta",
            Wire::Vertex,
        ),
        ("gemini-1.5-pro", "vertex_ai", Wire::Vertex),
    ] {
        for base in [None, Some("http://gw:8080/api/v1")] {
            match ep(model, base, Mode::Chat, Purpose::Probe) {
                Ok(e) if cfg!(any(feature = "bedrock", feature = "vertex")) => {
                    let (bedrock, vertex) = (cfg!(feature = "bedrock"), cfg!(feature = "vertex"));
                    let compiled = if wire == Wire::Bedrock {
                        bedrock
                    } else {
                        vertex
                    };
                    assert!(compiled, "{model}");
                    assert_eq!((e.provider.as_str(), e.wire), (name, wire), "{model}");
                    assert_eq!(e.url, base.unwrap_or(""), "{model}: the override");
                }
                Err(ProviderError::Unsupported { provider, reason }) => {
                    assert_eq!(provider, name, "{model}");
                    assert!(reason.contains("feature"), "{model}: {reason}");
                }
                other => panic!("{model} {base:?}: {other:?}"),
            }
            match ep(model, base, Mode::Chat, Purpose::Forward) {
                Err(ProviderError::Unsupported { provider, reason }) => {
                    assert_eq!(provider, name, "{model}");
                    assert!(reason.contains("not forwarded"), "{model}: {reason}");
                }
                other => panic!("{model} {base:?}: {other:?}"),
            }
        }
    }
}

#[test]
fn api_base_wins_and_keeps_its_query() {
    assert_eq!(
        probe_url(
            "hosted_vllm/meta-llama/Llama-3-8B",
            Some("http://10.0.0.1:8000/v1/")
        ),
        "http://10.0.0.1:8000/v1/chat/completions"
    );
    assert_eq!(
        probe_url("openai/gpt-4o", Some("http://x/v1?token=T")),
        "http://x/v1/chat/completions?token=T"
    );
    let az = ep(
        "azure/my dep",
        Some("http://az/?sig=1"),
        Mode::Chat,
        Purpose::Forward,
    )
    .unwrap();
    assert_eq!(
        az.url,
        "http://az/openai/deployments/my%20dep/chat/completions?sig=1&api-version=2025-02-01-preview"
    );
    assert_eq!(
        probe_url("ollama/llama3", Some("http://gpu:11434")),
        "http://gpu:11434/v1/chat/completions"
    );
    assert_eq!(
        probe_url("anthropic/c", Some("http://a/v1")),
        "http://a/v1/messages"
    );
}

#[test]
fn credentials_in_api_base_are_refused_without_quoting_them() {
    let e = ep(
        "openai/gpt-4o",
        Some("http://admin:hunter2@x/v1"),
        Mode::Chat,
        Purpose::Probe,
    )
    .unwrap_err();
    let text = e.to_string();
    assert!(text.contains("credentials"), "{text}");
    assert!(
        !text.contains("hunter2") && !text.contains("admin"),
        "{text}"
    );
}

#[test]
fn bad_bases() {
    for base in ["ftp://x", "not a url", "/relative"] {
        let e = ep("openai/gpt-4o", Some(base), Mode::Chat, Purpose::Probe).unwrap_err();
        assert!(
            matches!(
                e,
                ProviderError::Invalid {
                    field: "litellm_params.api_base",
                    ..
                }
            ),
            "{base}"
        );
    }
    let https = ep(
        "openai/gpt-4o",
        Some("https://x/v1"),
        Mode::Chat,
        Purpose::Probe,
    );
    assert_eq!(https.is_ok(), cfg!(feature = "rustls"));
}

#[test]
fn modes_a_provider_lacks() {
    let e = ep(
        "anthropic/claude-3",
        Some("http://a"),
        Mode::Embedding,
        Purpose::Probe,
    )
    .unwrap_err();
    assert!(
        matches!(&e, ProviderError::Invalid { field: "model_info.mode", why } if why.contains("chat, completion, batch")),
        "{e}"
    );
    let e = ep("azure/x", Some("http://az"), Mode::Rerank, Purpose::Probe).unwrap_err();
    assert!(matches!(
        e,
        ProviderError::Invalid {
            field: "model_info.mode",
            ..
        }
    ));
}

#[test]
fn anthropic_forwards_to_messages_and_cohere_to_its_openai_endpoint() {
    let a = ep(
        "anthropic/claude-3",
        Some("http://a"),
        Mode::Chat,
        Purpose::Forward,
    )
    .unwrap();
    assert_eq!(
        (a.url.as_str(), a.wire),
        ("http://a/v1/messages", Wire::Anthropic),
        "the forwarder translates OpenAI chat completions to the Messages API"
    );
    assert!(a.headers.contains_key("anthropic-version"));
    let c = ep(
        "cohere/embed-v4",
        Some("http://c"),
        Mode::Embedding,
        Purpose::Forward,
    )
    .unwrap();
    assert_eq!(c.url, "http://c/compatibility/v1/embeddings");
    for (model, mode) in [("anthropic/c", Mode::Batch), ("cohere/c", Mode::Rerank)] {
        let e = ep(model, Some("http://x"), mode, Purpose::Forward).unwrap_err();
        assert!(matches!(e, ProviderError::Unsupported { .. }), "{model}");
    }
}

#[test]
fn paths_map_to_modes() {
    assert_eq!(mode_for_path("/v1/chat/completions"), Some(Mode::Chat));
    assert_eq!(mode_for_path("embeddings"), Some(Mode::Embedding));
    assert_eq!(mode_for_path("/v1/unknown"), None);
}

#[test]
fn encoding() {
    assert_eq!(wire::encode("gpt-4o_mini.1~"), "gpt-4o_mini.1~");
    assert_eq!(wire::encode("a b/c&d"), "a%20b%2Fc%26d");
}

#[test]
fn the_check_answers_what_endpoint_builds() {
    let models = [
        "gpt-4o",
        "openai/gpt-4o",
        "azure/my deploy",
        "azure/gpt-4o",
        "anthropic/claude-3",
        "cohere/embed-v4",
        "ollama/llama3",
        "groq/llama3",
        "unknownprov/m",
        "bedrock/anthropic.claude-3",
        "vertex_ai/gemini-2.0-flash",
        "gemini-2.0-flash",
    ];
    let bases = [
        None,
        Some("http://127.0.0.1:9"),
        Some("http://127.0.0.1:9/v1/?x=1"),
        Some("http://u:p@127.0.0.1:9"),
        Some("not a url"),
        Some("ftp://h"),
        Some("https://h/v1"),
    ];
    let keys = [None, Some("k1"), Some("bad\nkey"), Some("caf\u{e9}")];
    for model in models {
        for base in bases {
            for key in keys {
                for ad in [false, true] {
                    let mut b = Deployment::builder("r", model).api_version("2024 10");
                    if let Some(base) = base {
                        b = b.api_base(base);
                    }
                    if let Some(key) = key {
                        b = b.api_key(key);
                    }
                    if ad {
                        b = b.param("azure_ad_token", "t\u{7f}".into());
                    }
                    let d = b.build();
                    for &mode in Mode::ALL {
                        for purpose in [Purpose::Probe, Purpose::Forward, Purpose::Cheap] {
                            let full = endpoint(&d, model, mode, purpose).map(|e| (e.wire, e.url));
                            assert_eq!(
                                check_endpoint(&d, model, mode, purpose),
                                full,
                                "{model} {base:?} {key:?} {mode} {purpose:?}"
                            );
                        }
                    }
                    for path in ["/v1/chat/completions", "/v1/embeddings", "/v1/nope"] {
                        assert_eq!(
                            check_forward_endpoint(&d, path),
                            forward_endpoint(&d, path).map(drop),
                            "{model} {base:?} {key:?} {path}"
                        );
                    }
                }
            }
        }
    }
}
