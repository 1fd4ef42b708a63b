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
    provider::{Provider, Target, Unsupported},
};
use crate::deployment::{Deployment, Mode, ParamValue};

/// Azure's `api-version` when the deployment sets none (LiteLLM's default).
pub(crate) const AZURE_DEFAULT_API_VERSION: &str = "2025-02-01-preview";
/// The `anthropic-version` header.
pub(crate) const ANTHROPIC_VERSION: &str = "2023-06-01";
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
/// The RFC 6455 sample key: a handshake needs a well-formed key, not a secret one.
const WS_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// Builds the probe request for `d`, resolved to `t`. `question` is the chat question.
pub(crate) fn build(
    d: &Deployment,
    t: &Target,
    defaults: &ProbeDefaults,
    question: &str,
) -> Result<Request<Bytes>, Unsupported> {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::USER_AGENT,
        HeaderValue::from_static(concat!("tower-health-routing/", env!("CARGO_PKG_VERSION"))),
    );
    auth_headers(d, t.provider, &mut headers)?;
    let (method, url, body) = match t.provider {
        Provider::OpenAi | Provider::Azure => openai_shape(d, t, defaults, question, &mut headers)?,
        Provider::Anthropic => anthropic_shape(d, t, defaults, question),
        Provider::Cohere => cohere_shape(d, t, defaults, question),
    };
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
                HeaderValue::from_str(&format!("multipart/form-data; boundary={BOUNDARY}"))
                    .map_err(|_| invalid_base(&url))?,
            );
            b
        }
    };
    let mut req = Request::builder()
        .method(method)
        .uri(url.as_str())
        .body(body)
        .map_err(|_| invalid_base(&url))?;
    *req.headers_mut() = headers;
    Ok(req)
}

fn invalid_base(url: &str) -> Unsupported {
    Unsupported {
        field: "litellm_params.api_base",
        why: format!(
            "`{}` is not a valid request URL",
            crate::secret::redact_userinfo(url)
        ),
    }
}

enum Body {
    None,
    Json(Value),
    Multipart(Bytes),
}

fn secret_header(
    name: &'static str,
    field: &'static str,
    value: String,
) -> Result<(header::HeaderName, HeaderValue), Unsupported> {
    let mut v = HeaderValue::try_from(value).map_err(|_| Unsupported {
        field,
        why: "contains characters an HTTP header cannot carry".into(),
    })?;
    v.set_sensitive(true);
    Ok((header::HeaderName::from_static(name), v))
}

fn auth_headers(d: &Deployment, provider: Provider, h: &mut HeaderMap) -> Result<(), Unsupported> {
    let key = d.params().api_key.as_ref().map(|k| k.expose());
    let (name, value) = match (provider, key) {
        (Provider::OpenAi | Provider::Cohere, Some(k)) => secret_header(
            "authorization",
            "litellm_params.api_key",
            format!("Bearer {k}"),
        )?,
        (Provider::Azure, Some(k)) => {
            secret_header("api-key", "litellm_params.api_key", k.to_owned())?
        }
        (Provider::Azure, None) => match d.params().extra.get("azure_ad_token") {
            Some(ParamValue::Secret(t)) => secret_header(
                "authorization",
                "litellm_params.azure_ad_token",
                format!("Bearer {}", t.expose()),
            )?,
            _ => return Ok(()),
        },
        (Provider::Anthropic, k) => {
            h.insert(
                "anthropic-version",
                HeaderValue::from_static(ANTHROPIC_VERSION),
            );
            match k {
                Some(k) => secret_header("x-api-key", "litellm_params.api_key", k.to_owned())?,
                None => return Ok(()),
            }
        }
        (_, None) => return Ok(()),
    };
    h.insert(name, value);
    Ok(())
}

/// The token limit field and value for this probe, if it carries one.
fn token_limit(
    d: &Deployment,
    t: &Target,
    defaults: &ProbeDefaults,
) -> Option<(&'static str, u32)> {
    if !sends_max_tokens(d, t.mode) {
        return None;
    }
    let n = resolve_max_tokens(d, defaults);
    let key = match (t.provider, t.mode) {
        (Provider::OpenAi | Provider::Azure, Mode::Chat) if is_reasoning_model(&t.model) => {
            "max_completion_tokens"
        }
        (_, Mode::Responses) => "max_output_tokens",
        _ => "max_tokens",
    };
    match (t.provider, n) {
        (Provider::Anthropic, None) => Some((key, ANTHROPIC_DEFAULT_MAX_TOKENS)),
        (_, n) => n.map(|n| (key, n)),
    }
}

fn messages(question: &str) -> Value {
    json!([{ "role": "user", "content": question }])
}

type Shape = (Method, String, Body);

fn openai_shape(
    d: &Deployment,
    t: &Target,
    defaults: &ProbeDefaults,
    question: &str,
    headers: &mut HeaderMap,
) -> Result<Shape, Unsupported> {
    let (model, prompt) = (t.model.as_str(), &*defaults.prompt);
    let post = |path: &'static str, body: Value| (Method::POST, path, Body::Json(body));
    let (method, path, mut body) = match t.mode {
        Mode::Chat => post(
            "/chat/completions",
            json!({ "model": model, "messages": messages(question) }),
        ),
        Mode::Completion => post("/completions", json!({ "model": model, "prompt": prompt })),
        Mode::Responses => post("/responses", json!({ "model": model, "input": prompt })),
        Mode::Embedding => post(
            "/embeddings",
            json!({ "model": model, "input": [FIXED_INPUT] }),
        ),
        Mode::ImageGeneration => post(
            "/images/generations",
            json!({ "model": model, "prompt": prompt }),
        ),
        Mode::AudioSpeech => {
            let voice = d.info().health_check_voice.as_deref().unwrap_or("alloy");
            post(
                "/audio/speech",
                json!({ "model": model, "input": prompt, "voice": voice }),
            )
        }
        Mode::AudioTranscription => (
            Method::POST,
            "/audio/transcriptions",
            Body::Multipart(multipart(model)),
        ),
        Mode::Rerank => post(
            "/rerank",
            json!({ "model": model, "query": prompt, "documents": [RERANK_DOCUMENT] }),
        ),
        Mode::Batch => (Method::GET, "/batches", Body::None),
        Mode::Moderation => post(
            "/moderations",
            json!({ "model": model, "input": FIXED_INPUT }),
        ),
        Mode::Ocr => post(
            "/ocr",
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
            if t.provider == Provider::OpenAi {
                headers.insert("openai-beta", HeaderValue::from_static("realtime=v1"));
            }
            (Method::GET, "/realtime", Body::None)
        }
        Mode::VideoGeneration => (Method::GET, "/videos", Body::None),
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
    let url = match t.provider {
        Provider::Azure => {
            let version = d
                .params()
                .api_version
                .as_deref()
                .unwrap_or(AZURE_DEFAULT_API_VERSION);
            let v = encode(version);
            match t.mode {
                Mode::Responses | Mode::Batch => format!("{}/openai{path}?api-version={v}", t.base),
                Mode::Realtime => format!(
                    "{}/openai/realtime?api-version={v}&deployment={}",
                    t.base,
                    encode(model)
                ),
                _ => format!(
                    "{}/openai/deployments/{}{path}?api-version={v}",
                    t.base,
                    encode(model)
                ),
            }
        }
        _ => match t.mode {
            Mode::Realtime => format!("{}/realtime?model={}", t.base, encode(model)),
            Mode::VideoGeneration => format!("{}/videos?limit=1", t.base),
            _ => format!("{}{path}", t.base),
        },
    };
    Ok((method, url, body))
}

fn anthropic_shape(d: &Deployment, t: &Target, defaults: &ProbeDefaults, question: &str) -> Shape {
    let base = t
        .base
        .trim_end_matches("/v1/messages")
        .trim_end_matches("/v1");
    if t.mode == Mode::Batch {
        return (
            Method::GET,
            format!("{base}/v1/messages/batches"),
            Body::None,
        );
    }
    let mut body = json!({ "model": t.model, "messages": messages(question) });
    if let (Some((key, n)), Value::Object(map)) = (token_limit(d, t, defaults), &mut body) {
        map.insert(key.into(), n.into());
    }
    (
        Method::POST,
        format!("{base}/v1/messages"),
        Body::Json(body),
    )
}

fn cohere_shape(d: &Deployment, t: &Target, defaults: &ProbeDefaults, question: &str) -> Shape {
    let base = t.base.trim_end_matches("/v1").trim_end_matches("/v2");
    let model = t.model.as_str();
    let (path, mut body) = match t.mode {
        Mode::Embedding => (
            "/v2/embed",
            json!({ "model": model, "texts": [FIXED_INPUT], "input_type": "search_query", "embedding_types": ["float"] }),
        ),
        Mode::Rerank => (
            "/v2/rerank",
            json!({ "model": model, "query": &*defaults.prompt, "documents": [RERANK_DOCUMENT] }),
        ),
        _ => (
            "/v2/chat",
            json!({ "model": model, "messages": messages(question) }),
        ),
    };
    if let (Some((key, n)), Value::Object(map)) = (token_limit(d, t, defaults), &mut body) {
        map.insert(key.into(), n.into());
    }
    (Method::POST, format!("{base}{path}"), Body::Json(body))
}

/// Percent-encodes a query or path value (everything but RFC 3986 unreserved characters).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
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

    #[test]
    fn encoding() {
        assert_eq!(encode("gpt-4o_mini.1~"), "gpt-4o_mini.1~");
        assert_eq!(encode("a b/c&d"), "a%20b%2Fc%26d");
    }
}
