//! The request each probe sends, by provider and mode: the shapes LiteLLM 1.109 sends.
//!
//! The shapes are documented on [`HttpProber`](super::HttpProber).

use std::sync::OnceLock;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, header};
use serde_json::{Value, json};

use super::{
    defaults::ProbeDefaults,
    mode::{is_reasoning_model, resolve_max_tokens, sends_max_tokens},
};
use crate::{
    deployment::{Deployment, Mode},
    provider::{Endpoint, ProviderError, Wire},
};

/// Anthropic requires `max_tokens`; LiteLLM's default when none is resolved.
pub(crate) const ANTHROPIC_DEFAULT_MAX_TOKENS: u32 = 4096;
/// The fixed input of embedding and moderation probes.
pub(crate) const FIXED_INPUT: &str = "test from litellm";
/// The document of rerank probes.
pub(crate) const RERANK_DOCUMENT: &str = "my sample text";
/// The two short questions chat probes alternate between (LiteLLM picks one at random).
pub(crate) const QUESTIONS: [&str; 2] = ["Hey how's it going?", "What's 1 + 1?"];
/// A 1×1 PNG, for OCR probes.
const PNG_1X1: &str = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mP8/x8AAwMCAO+ip1sAAAAASUVORK5CYII=";
const BOUNDARY: &str = "tower-health-routing-probe-5f2c9e";
const MULTIPART_CONTENT_TYPE: &str =
    "multipart/form-data; boundary=tower-health-routing-probe-5f2c9e";
/// The RFC 6455 sample key: a handshake needs a well-formed key, not a secret one.
const WS_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// Builds the probe request for `d` to `ep` (from the provider catalog). `question` is
/// the chat question.
pub(crate) fn build(
    d: &Deployment,
    ep: &Endpoint,
    defaults: &ProbeDefaults,
    question: &str,
) -> Result<Request<Bytes>, ProviderError> {
    let mut headers = ep.headers.clone();
    headers.insert(
        header::USER_AGENT,
        HeaderValue::from_static(concat!("tower-health-routing/", env!("CARGO_PKG_VERSION"))),
    );
    let (method, mut body) = match ep.wire {
        Wire::OpenAi | Wire::Azure => openai_shape(d, ep, defaults, question, &mut headers),
        Wire::Anthropic => anthropic_shape(d, ep, defaults, question),
        Wire::Cohere => cohere_shape(d, ep, defaults, question),
        // Signed or token-authorised requests: built by the prober's native path.
        Wire::Bedrock | Wire::Vertex => {
            return Err(ProviderError::Unsupported {
                provider: ep.provider.clone(),
                reason: "its probe request is built natively, per probe".to_owned(),
            });
        }
    };
    if let (Body::Json(Value::Object(map)), Some(extra)) = (&mut body, health_check_params(d)) {
        merge_health_check_params(map, extra, d.info().health_check_model.is_some());
    }
    let body = match body {
        Body::None => Bytes::new(),
        Body::Json(v) => {
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            Bytes::from(v.to_string())
        }
        Body::Multipart(b) => {
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(MULTIPART_CONTENT_TYPE),
            );
            b
        }
    };
    let mut req = Request::new(body);
    *req.method_mut() = method;
    *req.uri_mut() = uri(ep)?;
    *req.headers_mut() = headers;
    Ok(req)
}

/// Whether [`build`] can make the probe request of an endpoint with `url`, without building
/// it: the shapes themselves cannot fail, so only the URL can (and native wires, built per
/// probe).
pub(crate) fn check_url(url: &str) -> Result<(), ProviderError> {
    parse_uri(url).map(drop)
}

fn uri(ep: &Endpoint) -> Result<http::Uri, ProviderError> {
    parse_uri(&ep.url)
}

fn parse_uri(url: &str) -> Result<http::Uri, ProviderError> {
    http::Uri::try_from(url).map_err(|_| ProviderError::Invalid {
        field: "litellm_params.api_base",
        why: "does not make a valid request URL".into(),
    })
}

/// The keys of `model_info.health_check_params` that are connection settings in LiteLLM
/// (they retarget or authenticate the call): never copied into a probe body.
const CONNECTION_KEYS: &[&str] = &[
    "api_key",
    "api_base",
    "base_url",
    "api_version",
    "custom_llm_provider",
    "organization",
    "timeout",
    "stream",
];

/// `model_info.health_check_params`, when it is a mapping (a deployment whose other value
/// is warned about when the probe loop is built, and ignored, as LiteLLM does).
pub(crate) fn health_check_params(d: &Deployment) -> Option<&serde_json::Map<String, Value>> {
    match d.info().extra.get("health_check_params")? {
        crate::deployment::ParamValue::Plain(Value::Object(m)) => Some(m),
        _ => None,
    }
}

/// Merges `extra` into a probe body, by LiteLLM's rule (`update_litellm_params_for_health_check`):
/// the params go in first and the probe's own knobs are applied after them, so a key the
/// probe sets (`messages`, `max_tokens`, `input`, `voice`, ...) keeps the probe's value.
/// `model` is the exception: `health_check_params.model` names the model to probe unless
/// `health_check_model` is set (which wins). Connection keys ([`CONNECTION_KEYS`]) are
/// not body fields and are skipped.
pub(crate) fn merge_health_check_params(
    body: &mut serde_json::Map<String, Value>,
    extra: &serde_json::Map<String, Value>,
    has_health_check_model: bool,
) {
    for (k, v) in extra {
        if CONNECTION_KEYS.contains(&k.as_str()) {
            continue;
        }
        if k == "model" {
            if !has_health_check_model && v.is_string() {
                body.insert(k.clone(), v.clone());
            }
            continue;
        }
        body.entry(k.clone()).or_insert_with(|| v.clone());
    }
}

enum Body {
    None,
    Json(Value),
    Multipart(Bytes),
}

/// The token limit field and value for this probe, if it carries one.
fn token_limit(
    d: &Deployment,
    t: &Endpoint,
    defaults: &ProbeDefaults,
) -> Option<(&'static str, u32)> {
    if !sends_max_tokens(d, t.mode) {
        return None;
    }
    let n = resolve_max_tokens(d, defaults);
    let key = match (t.wire, t.mode) {
        (Wire::OpenAi | Wire::Azure, Mode::Chat) if is_reasoning_model(&t.model) => {
            "max_completion_tokens"
        }
        (_, Mode::Responses) => "max_output_tokens",
        _ => "max_tokens",
    };
    match (t.wire, n) {
        (Wire::Anthropic, None) => Some((key, ANTHROPIC_DEFAULT_MAX_TOKENS)),
        (_, n) => n.map(|n| (key, n)),
    }
}

fn messages(question: &str) -> Value {
    json!([{ "role": "user", "content": question }])
}

type Shape = (Method, Body);

fn openai_shape(
    d: &Deployment,
    t: &Endpoint,
    defaults: &ProbeDefaults,
    question: &str,
    headers: &mut HeaderMap,
) -> Shape {
    let (model, prompt) = (t.model.as_str(), &*defaults.prompt);
    let post = |body: Value| (Method::POST, Body::Json(body));
    let (method, mut body) = match t.mode {
        Mode::Chat => post(json!({ "model": model, "messages": messages(question) })),
        Mode::Completion => post(json!({ "model": model, "prompt": prompt })),
        Mode::Responses => post(json!({ "model": model, "input": prompt })),
        Mode::Embedding => post(json!({ "model": model, "input": [FIXED_INPUT] })),
        Mode::ImageGeneration => post(json!({ "model": model, "prompt": prompt })),
        Mode::AudioSpeech => {
            let voice = d.info().health_check_voice.as_deref().unwrap_or("alloy");
            post(json!({ "model": model, "input": prompt, "voice": voice }))
        }
        Mode::AudioTranscription => (Method::POST, Body::Multipart(multipart(model))),
        Mode::Rerank => {
            post(json!({ "model": model, "query": prompt, "documents": [RERANK_DOCUMENT] }))
        }
        Mode::Batch => (Method::GET, Body::None),
        Mode::Moderation => post(json!({ "model": model, "input": FIXED_INPUT })),
        Mode::Ocr => post(
            json!({ "model": model, "document": { "type": "image_url", "image_url": PNG_1X1 } }),
        ),
        Mode::Realtime => {
            for (k, v) in [
                (header::CONNECTION, "Upgrade"),
                (header::UPGRADE, "websocket"),
                (header::SEC_WEBSOCKET_VERSION, "13"),
                (header::SEC_WEBSOCKET_KEY, WS_KEY),
            ] {
                headers.insert(k, HeaderValue::from_static(v));
            }
            if t.wire == Wire::OpenAi {
                headers.insert("openai-beta", HeaderValue::from_static("realtime=v1"));
            }
            (Method::GET, Body::None)
        }
        Mode::VideoGeneration => (Method::GET, Body::None),
    };
    if let Body::Json(Value::Object(map)) = &mut body {
        if let Some((key, n)) = token_limit(d, t, defaults) {
            map.insert(key.into(), n.into());
        }
        if matches!(t.mode, Mode::Chat | Mode::Completion)
            && let Some(effort) = &d.info().health_check_reasoning_effort
        {
            map.insert("reasoning_effort".into(), effort.as_str().into());
        }
    }
    (method, body)
}

fn anthropic_shape(
    d: &Deployment,
    t: &Endpoint,
    defaults: &ProbeDefaults,
    question: &str,
) -> Shape {
    if t.mode == Mode::Batch {
        return (Method::GET, Body::None);
    }
    let mut body = json!({ "model": t.model, "messages": messages(question) });
    if let (Some((key, n)), Value::Object(map)) = (token_limit(d, t, defaults), &mut body) {
        map.insert(key.into(), n.into());
    }
    (Method::POST, Body::Json(body))
}

fn cohere_shape(d: &Deployment, t: &Endpoint, defaults: &ProbeDefaults, question: &str) -> Shape {
    let model = t.model.as_str();
    let mut body = match t.mode {
        Mode::Embedding => {
            json!({ "model": model, "texts": [FIXED_INPUT], "input_type": "search_query", "embedding_types": ["float"] })
        }
        Mode::Rerank => {
            json!({ "model": model, "query": &*defaults.prompt, "documents": [RERANK_DOCUMENT] })
        }
        _ => json!({ "model": model, "messages": messages(question) }),
    };
    if let (Some((key, n)), Value::Object(map)) = (token_limit(d, t, defaults), &mut body) {
        map.insert(key.into(), n.into());
    }
    (Method::POST, Body::Json(body))
}

fn multipart(model: &str) -> Bytes {
    let mut b = Vec::with_capacity(wav().len() + 512);
    b.extend_from_slice(
        format!(
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\n{model}\r\n\
             --{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"health_check.wav\"\r\n\
             Content-Type: audio/wav\r\n\r\n"
        )
        .as_bytes(),
    );
    b.extend_from_slice(wav());
    b.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    b.into()
}

/// Half a second of a quiet 440 Hz tone: 16 kHz, mono, 16-bit PCM WAV (16,044 bytes).
pub(crate) fn wav() -> &'static [u8] {
    static WAV: OnceLock<Vec<u8>> = OnceLock::new();
    WAV.get_or_init(|| {
        const RATE: u32 = 16_000;
        const SAMPLES: u32 = RATE / 2;
        let data_len = SAMPLES * 2;
        let mut w = Vec::with_capacity(44 + data_len as usize);
        w.extend_from_slice(b"RIFF");
        w.extend_from_slice(&(36 + data_len).to_le_bytes());
        w.extend_from_slice(b"WAVEfmt ");
        w.extend_from_slice(&16u32.to_le_bytes()); // fmt chunk size
        w.extend_from_slice(&1u16.to_le_bytes()); // PCM
        w.extend_from_slice(&1u16.to_le_bytes()); // mono
        w.extend_from_slice(&RATE.to_le_bytes());
        w.extend_from_slice(&(RATE * 2).to_le_bytes()); // byte rate
        w.extend_from_slice(&2u16.to_le_bytes()); // block align
        w.extend_from_slice(&16u16.to_le_bytes()); // bits per sample
        w.extend_from_slice(b"data");
        w.extend_from_slice(&data_len.to_le_bytes());
        for i in 0..SAMPLES {
            let t = f64::from(i) / f64::from(RATE);
            let s = (t * 440.0 * std::f64::consts::TAU).sin() * 3000.0;
            w.extend_from_slice(&(s as i16).to_le_bytes());
        }
        w
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_check_params_add_fields_and_the_probe_keeps_its_own() {
        let mut body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 16})
            .as_object()
            .cloned()
            .unwrap();
        let extra = json!({
            "mediaSource": {"s3Location": {"uri": "s3://b/k"}},
            "max_tokens": 999,
            "messages": [],
            "temperature": 0,
            "model": "other-model",
            "api_base": "http://elsewhere",
            "api_key": "sk-planted",
        });
        merge_health_check_params(&mut body, extra.as_object().unwrap(), false);
        assert_eq!(
            Value::Object(body.clone()),
            json!({
                "model": "other-model",
                "messages": [{"role": "user", "content": "hi"}],
                "max_tokens": 16,
                "mediaSource": {"s3Location": {"uri": "s3://b/k"}},
                "temperature": 0,
            })
        );
        // With health_check_model set, it names the model, not the params.
        let mut body = json!({"model": "hc-model"}).as_object().cloned().unwrap();
        merge_health_check_params(&mut body, extra.as_object().unwrap(), true);
        assert_eq!(body["model"], "hc-model");
    }

    #[test]
    fn wav_is_well_formed() {
        let w = wav();
        assert_eq!(w.len(), 44 + 16_000);
        assert_eq!(
            (&w[..4], &w[8..16], &w[36..40]),
            (&b"RIFF"[..], &b"WAVEfmt "[..], &b"data"[..])
        );
        assert_eq!(
            u32::from_le_bytes([w[4], w[5], w[6], w[7]]) as usize,
            w.len() - 8
        );
    }
}
