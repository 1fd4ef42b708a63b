//! What the HTTP prober sends to Azure, Anthropic and Cohere, for wildcard routes, and
//! how `max_tokens` and `reasoning_effort` reach the wire, as a real server receives it.

use crate::support::{
    upstream::{Reply, Upstream},
    wire::{KEY, assert_post_json, probe, probe_with},
    with_info,
};
use serde_json::json;
use tower_health_routing::{Deployment, Mode, probe::ProbeDefaults};

#[tokio::test]
async fn azure_paths_version_and_key() {
    for (mode, path, query) in [
        (
            Mode::Chat,
            "/openai/deployments/my-gpt/chat/completions",
            "api-version=2024-06-01",
        ),
        (
            Mode::Embedding,
            "/openai/deployments/my-gpt/embeddings",
            "api-version=2024-06-01",
        ),
        (
            Mode::AudioTranscription,
            "/openai/deployments/my-gpt/audio/transcriptions",
            "api-version=2024-06-01",
        ),
        (
            Mode::Responses,
            "/openai/responses",
            "api-version=2024-06-01",
        ),
        (Mode::Batch, "/openai/batches", "api-version=2024-06-01"),
        (
            Mode::Realtime,
            "/openai/realtime",
            "api-version=2024-06-01&deployment=my-gpt",
        ),
    ] {
        let up = Upstream::start(|r| {
            if r.header("upgrade").is_some() {
                Reply::status(101, "")
            } else {
                Reply::ok()
            }
        });
        let d = Deployment::builder("r", "azure/my-gpt")
            .api_base(format!("{}/", up.base()))
            .api_key(KEY)
            .api_version("2024-06-01")
            .mode(mode)
            .build();
        let (o, r) = probe(&up, d).await;
        assert!(o.healthy, "{mode}: {o:?}");
        assert_eq!(
            (r.path.as_str(), r.query.as_deref()),
            (path, Some(query)),
            "{mode}"
        );
        assert_eq!(r.header("api-key"), Some(KEY), "{mode}");
        assert_eq!(r.header("authorization"), None, "{mode}");
        if mode == Mode::Chat {
            assert_eq!(r.json()["model"], "my-gpt");
            assert_eq!(r.header("openai-beta"), None);
        }
    }
}

#[tokio::test]
async fn azure_default_api_version() {
    let up = Upstream::ok();
    let d = Deployment::builder("r", "azure/dep")
        .api_base(up.base())
        .api_key(KEY)
        .build();
    let (_, r) = probe(&up, d).await;
    assert_eq!(r.query.as_deref(), Some("api-version=2025-02-01-preview"));
}

#[tokio::test]
async fn anthropic_messages() {
    let up = Upstream::ok();
    let d = Deployment::builder("r", "anthropic/claude-3-5-sonnet-20240620")
        .api_base(up.base())
        .api_key(KEY)
        .build();
    let (o, r) = probe(&up, d).await;
    assert!(o.healthy);
    assert_eq!(
        (r.method.as_str(), r.path.as_str()),
        ("POST", "/v1/messages")
    );
    assert_eq!(r.header("x-api-key"), Some(KEY));
    assert_eq!(r.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(r.header("authorization"), None);
    assert_eq!(r.keys(), ["max_tokens", "messages", "model"]);
    assert_eq!(
        (r.json()["model"].clone(), r.json()["max_tokens"].clone()),
        (json!("claude-3-5-sonnet-20240620"), json!(16))
    );
}

#[tokio::test]
async fn anthropic_wildcard_sends_the_required_max_tokens() {
    let up = Upstream::ok();
    let d = with_info(
        Deployment::builder("anthropic/*", "anthropic/*")
            .api_base(format!("{}/v1", up.base()))
            .api_key(KEY),
        |i| i.health_check_model = Some("anthropic/claude-3-5-haiku".into()),
    );
    let (_, r) = probe(&up, d).await;
    assert_eq!(r.path, "/v1/messages");
    assert_eq!(
        (r.json()["model"].clone(), r.json()["max_tokens"].clone()),
        (json!("claude-3-5-haiku"), json!(4096))
    );
}

#[tokio::test]
async fn cohere_v2_endpoints_with_bearer() {
    for (model, mode, path, body) in [
        (
            "cohere/rerank-english-v3.0",
            None,
            "/v2/rerank",
            json!({"model": "rerank-english-v3.0", "query": "test from litellm", "documents": ["my sample text"]}),
        ),
        (
            "cohere/embed-english-v3.0",
            None,
            "/v2/embed",
            json!({"model": "embed-english-v3.0", "texts": ["test from litellm"], "input_type": "search_query", "embedding_types": ["float"]}),
        ),
        (
            "cohere/command-r",
            Some(Mode::Chat),
            "/v2/chat",
            json!({"model": "command-r", "messages": [{"role": "user", "content": "?"}], "max_tokens": 16}),
        ),
    ] {
        let up = Upstream::ok();
        let mut b = Deployment::builder("r", model)
            .api_base(up.base())
            .api_key(KEY);
        if let Some(m) = mode {
            b = b.mode(m);
        }
        let (_, r) = probe(&up, b.build()).await;
        assert_post_json(&r, path);
        let mut got = r.json();
        if path == "/v2/chat" {
            got["messages"][0]["content"] = json!("?");
        }
        assert_eq!(got, body, "{model}");
    }
}

#[tokio::test]
async fn wildcard_is_probed_as_chat_on_health_check_model() {
    let up = Upstream::ok();
    let d = with_info(
        Deployment::builder("openai/*", "openai/*")
            .api_base(up.v1())
            .api_key(KEY),
        |i| i.health_check_model = Some("openai/gpt-4o-mini".into()),
    );
    let (_, r) = probe(&up, d.clone()).await;
    assert_post_json(&r, "/v1/chat/completions");
    // A wildcard sends no max_tokens unless the global default says so.
    assert_eq!(r.keys(), ["messages", "model"]);
    assert_eq!(r.json()["model"], "gpt-4o-mini");
    let up2 = Upstream::ok();
    let d2 = with_info(
        Deployment::builder("openai/*", "openai/*")
            .api_base(up2.v1())
            .api_key(KEY),
        |i| i.health_check_model = Some("openai/gpt-4o-mini".into()),
    );
    let (_, r) = probe_with(&up2, d2, ProbeDefaults::default().with_max_tokens(Some(10))).await;
    assert_eq!(r.json()["max_tokens"], 10);
}

#[tokio::test]
async fn max_tokens_on_the_wire() {
    let global = ProbeDefaults::default()
        .with_max_tokens(Some(40))
        .with_max_tokens_reasoning(Some(400));
    type Edit = fn(&mut tower_health_routing::deployment::ModelInfo);
    type Case = (
        &'static str,
        Option<Mode>,
        Edit,
        ProbeDefaults,
        Option<(&'static str, u64)>,
    );
    let cases: [Case; 8] = [
        (
            "openai/gpt-4o",
            None,
            |i| i.health_check_max_tokens = Some(3),
            global.clone(),
            Some(("max_tokens", 3)),
        ),
        (
            "openai/gpt-4o",
            None,
            |i| i.health_check_max_tokens_non_reasoning = Some(8),
            global.clone(),
            Some(("max_tokens", 8)),
        ),
        (
            "openai/o3-mini",
            None,
            |i| i.health_check_max_tokens_reasoning = Some(200),
            global.clone(),
            Some(("max_completion_tokens", 200)),
        ),
        (
            "openai/o3-mini",
            None,
            |_| {},
            global.clone(),
            Some(("max_completion_tokens", 400)),
        ),
        (
            "openai/gpt-4o",
            None,
            |_| {},
            global.clone(),
            Some(("max_tokens", 40)),
        ),
        (
            "openai/gpt-4o",
            None,
            |i| i.health_check_supports_max_tokens = Some(false),
            global.clone(),
            None,
        ),
        (
            "openai/text-embedding-3-small",
            None,
            |i| i.health_check_supports_max_tokens = Some(true),
            ProbeDefaults::default(),
            Some(("max_tokens", 16)),
        ),
        (
            "openai/m",
            Some(Mode::Responses),
            |i| i.health_check_supports_max_tokens = Some(true),
            ProbeDefaults::default(),
            Some(("max_output_tokens", 16)),
        ),
    ];
    for (model, mode, edit, defaults, want) in cases {
        let up = Upstream::ok();
        let mut b = Deployment::builder("r", model)
            .api_base(up.v1())
            .api_key(KEY);
        if let Some(m) = mode {
            b = b.mode(m);
        }
        edit(b.info_mut());
        let (_, r) = probe_with(&up, b.build(), defaults).await;
        let body = r.json();
        let sent: Vec<(&str, u64)> = ["max_tokens", "max_completion_tokens", "max_output_tokens"]
            .into_iter()
            .filter_map(|k| body[k].as_u64().map(|v| (k, v)))
            .collect();
        assert_eq!(sent, want.into_iter().collect::<Vec<_>>(), "{model} {body}");
    }
}

#[tokio::test]
async fn reasoning_effort_for_chat_and_completion_only() {
    for (mode, sent) in [
        (Mode::Chat, true),
        (Mode::Completion, true),
        (Mode::Embedding, false),
    ] {
        let up = Upstream::ok();
        let mut b = Deployment::builder("r", "openai/o3-mini")
            .api_base(up.v1())
            .api_key(KEY)
            .mode(mode);
        b.info_mut().health_check_reasoning_effort = Some("low".into());
        let (_, r) = probe(&up, b.build()).await;
        assert_eq!(
            r.json().get("reasoning_effort") == Some(&json!("low")),
            sent,
            "{mode}"
        );
    }
}
