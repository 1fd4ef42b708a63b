//! What the HTTP prober sends for each mode of an OpenAI-compatible upstream, as a real
//! server receives it.

use std::sync::Arc;

use crate::support::{
    upstream::{Reply, Upstream},
    wire::{KEY, QUESTIONS, assert_post_json, openai, probe, probe_with},
    with_info,
};
use serde_json::json;
use tower_health_routing::{
    Deployment, Mode,
    probe::{HttpProber, ProbeDefaults, Prober},
};

#[tokio::test]
async fn chat_openai_compatible() {
    let up = Upstream::ok();
    let (o, r) = probe(&up, openai(&up, "hosted_vllm/llama-3.1-8b", None)).await;
    assert!(o.healthy && o.status == Some(200), "{o:?}");
    assert_post_json(&r, "/v1/chat/completions");
    assert_eq!(r.keys(), ["max_tokens", "messages", "model"]);
    let b = r.json();
    assert_eq!(
        (b["model"].clone(), b["max_tokens"].clone()),
        (json!("llama-3.1-8b"), json!(16))
    );
    assert_eq!(b["messages"].as_array().map(Vec::len), Some(1));
    assert_eq!(b["messages"][0]["role"], "user");
    assert!(
        QUESTIONS.contains(&b["messages"][0]["content"].as_str().unwrap_or("")),
        "{b}"
    );
}

#[tokio::test]
async fn chat_reasoning_model_sends_max_completion_tokens() {
    let up = Upstream::ok();
    let (_, r) = probe(&up, openai(&up, "openai/o3-mini", None)).await;
    assert_eq!(r.keys(), ["max_completion_tokens", "messages", "model"]);
    assert_eq!(r.json()["max_completion_tokens"], 16);
}

#[tokio::test]
async fn prompt_modes_use_the_prompt_and_no_max_tokens() {
    let defaults = ProbeDefaults::default().with_prompt("custom prompt");
    for (mode, path, body) in [
        (
            Mode::Completion,
            "/v1/completions",
            json!({"model": "m", "prompt": "custom prompt", "max_tokens": 16}),
        ),
        (
            Mode::Responses,
            "/v1/responses",
            json!({"model": "m", "input": "custom prompt"}),
        ),
        (
            Mode::ImageGeneration,
            "/v1/images/generations",
            json!({"model": "m", "prompt": "custom prompt"}),
        ),
        (
            Mode::AudioSpeech,
            "/v1/audio/speech",
            json!({"model": "m", "input": "custom prompt", "voice": "alloy"}),
        ),
        (
            Mode::Rerank,
            "/v1/rerank",
            json!({"model": "m", "query": "custom prompt", "documents": ["my sample text"]}),
        ),
        // Fixed inputs: the prompt does not apply.
        (
            Mode::Embedding,
            "/v1/embeddings",
            json!({"model": "m", "input": ["test from litellm"]}),
        ),
        (
            Mode::Moderation,
            "/v1/moderations",
            json!({"model": "m", "input": "test from litellm"}),
        ),
    ] {
        let up = Upstream::ok();
        let (o, r) = probe_with(&up, openai(&up, "openai/m", Some(mode)), defaults.clone()).await;
        assert!(o.healthy, "{mode}: {o:?}");
        assert_post_json(&r, path);
        assert_eq!(r.json(), body, "{mode}");
    }
}

#[tokio::test]
async fn default_prompt_is_litellms() {
    let up = Upstream::ok();
    let (_, r) = probe(&up, openai(&up, "openai/m", Some(Mode::Completion))).await;
    assert_eq!(r.json()["prompt"], "test from litellm");
}

#[tokio::test]
async fn speech_voice_from_model_info() {
    let up = Upstream::ok();
    let d = with_info(
        Deployment::builder("tts", "openai/tts-1")
            .api_base(up.v1())
            .api_key(KEY),
        |i| i.health_check_voice = Some("nova".into()),
    );
    let (_, r) = probe(&up, d).await;
    assert_eq!(
        (r.path.as_str(), r.json()["voice"].clone()),
        ("/v1/audio/speech", json!("nova"))
    );
}

#[tokio::test]
async fn transcription_is_multipart_with_a_wav() {
    let up = Upstream::ok();
    let (o, r) = probe(&up, openai(&up, "whisper-1", None)).await;
    assert!(o.healthy);
    assert_eq!(
        (r.method.as_str(), r.path.as_str()),
        ("POST", "/v1/audio/transcriptions")
    );
    assert_eq!(
        r.header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
    let ct = r.header("content-type").unwrap_or_default();
    let boundary = ct.strip_prefix("multipart/form-data; boundary=").expect(ct);
    let body = &r.body[..];
    let text = String::from_utf8_lossy(body);
    assert!(
        text.contains("name=\"model\"\r\n\r\nwhisper-1\r\n"),
        "{text}"
    );
    assert!(
        text.contains("name=\"file\"; filename=\"health_check.wav\"\r\nContent-Type: audio/wav")
    );
    assert!(text.ends_with(&format!("--{boundary}--\r\n")));
    let riff = body.windows(4).position(|w| w == b"RIFF").expect("a WAV");
    assert_eq!(&body[riff + 8..riff + 12], b"WAVE");
}

#[tokio::test]
async fn get_modes_batch_and_video() {
    for (mode, path, query) in [
        (Mode::Batch, "/v1/batches", None),
        (Mode::VideoGeneration, "/v1/videos", Some("limit=1")),
    ] {
        let up = Upstream::ok();
        let (o, r) = probe(&up, openai(&up, "openai/m", Some(mode))).await;
        assert!(o.healthy, "{mode}");
        assert_eq!(
            (r.method.as_str(), r.path.as_str(), r.query.as_deref()),
            ("GET", path, query)
        );
        assert!(r.body.is_empty());
        assert_eq!(
            r.header("authorization"),
            Some(format!("Bearer {KEY}").as_str())
        );
    }
}

#[tokio::test]
async fn ocr_sends_an_image_document() {
    let up = Upstream::ok();
    let (_, r) = probe(&up, openai(&up, "mistral/mistral-ocr-latest", None)).await;
    assert_post_json(&r, "/v1/ocr");
    let b = r.json();
    assert_eq!(
        (b["model"].clone(), b["document"]["type"].clone()),
        (json!("mistral-ocr-latest"), json!("image_url"))
    );
    assert!(
        b["document"]["image_url"]
            .as_str()
            .unwrap_or("")
            .starts_with("data:image/png;base64,")
    );
}

#[tokio::test]
async fn realtime_is_a_websocket_handshake() {
    let up = Upstream::start(|r| {
        if r.header("upgrade") == Some("websocket") {
            Reply::status(101, "")
                .header("upgrade", "websocket")
                .header("connection", "Upgrade")
        } else {
            Reply::status(426, "upgrade required")
        }
    });
    let (o, r) = probe(&up, openai(&up, "openai/gpt-4o-realtime-preview", None)).await;
    assert_eq!((o.healthy, o.status), (true, Some(101)), "{o:?}");
    assert_eq!(
        (r.method.as_str(), r.path.as_str()),
        ("GET", "/v1/realtime")
    );
    assert_eq!(r.query.as_deref(), Some("model=gpt-4o-realtime-preview"));
    assert_eq!(r.version, http::Version::HTTP_11);
    for (k, v) in [
        ("upgrade", "websocket"),
        ("sec-websocket-version", "13"),
        ("openai-beta", "realtime=v1"),
    ] {
        assert_eq!(r.header(k), Some(v), "{k}");
    }
    assert!(r.header("sec-websocket-key").is_some());
    assert_eq!(
        r.header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
}

#[tokio::test]
async fn http2_prior_knowledge() {
    let up = Upstream::ok();
    let p = HttpProber::builder()
        .http2_prior_knowledge(true)
        .build()
        .expect("prober");
    let o = p.probe(Arc::new(openai(&up, "openai/gpt-4o", None))).await;
    assert!(o.healthy, "{o:?}");
    assert_eq!(up.only().version, http::Version::HTTP_2);
    let up1 = Upstream::ok();
    HttpProber::new(ProbeDefaults::default())
        .expect("prober")
        .probe(Arc::new(openai(&up1, "openai/gpt-4o", None)))
        .await;
    assert_eq!(up1.only().version, http::Version::HTTP_11);
}

#[tokio::test]
async fn no_key_no_auth_header() {
    let up = Upstream::ok();
    let d = Deployment::builder("r", "hosted_vllm/m")
        .api_base(up.v1())
        .build();
    let (_, r) = probe(&up, d).await;
    assert_eq!(r.header("authorization"), None);
}
