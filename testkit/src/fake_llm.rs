//! A fake OpenAI-compatible upstream for the examples, tests and benchmarks: it answers
//! every endpoint a gateway forwards to with small canned replies, streams SSE chunks for
//! `"stream": true`, and can be switched at run time into a fault: errors, rate limits with
//! `Retry-After`, slowness, hangs, connection resets, or flapping between up and down.
//!
//! Each server binds its own `127.0.0.1:0` port and runs on the caller's runtime (the
//! `server` core). It lives in the test-only `thr-testkit` crate, shared by
//! the examples and the tests; it is not part of the library.

use std::{
    convert::Infallible,
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU8, AtomicU64, Ordering::Relaxed},
    },
    time::Duration,
};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};

use crate::server::{Runtime, Server, serve_http};

/// What a fake upstream does with each request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Fault {
    /// Answers normally.
    None = 0,
    /// Answers 500.
    Error500 = 1,
    /// Answers 429 with `Retry-After: 1`.
    RateLimited = 2,
    /// Answers after 300 ms.
    Slow = 3,
    /// Never answers.
    Hang = 4,
    /// Drops the connection without answering.
    Reset = 5,
    /// Alternates between up and down every second (by wall-clock second parity).
    Flap = 6,
    /// Answers 401 quoting the key it was sent (as some providers do).
    Unauthorized = 7,
}

impl Fault {
    /// Parses a label (`ok`, `500`, `429`, `slow`, `hang`, `reset`, `flap`, `401`).
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "ok" | "none" => Self::None,
            "500" => Self::Error500,
            "429" => Self::RateLimited,
            "slow" => Self::Slow,
            "hang" => Self::Hang,
            "reset" => Self::Reset,
            "flap" => Self::Flap,
            "401" => Self::Unauthorized,
            _ => return None,
        })
    }

    fn from_u8(v: u8) -> Self {
        [
            Self::None,
            Self::Error500,
            Self::RateLimited,
            Self::Slow,
            Self::Hang,
            Self::Reset,
            Self::Flap,
            Self::Unauthorized,
        ]
        .get(v as usize)
        .copied()
        .unwrap_or(Self::None)
    }

    /// A short label for display.
    pub fn label(self) -> &'static str {
        match self {
            Self::None => "ok",
            Self::Error500 => "500s",
            Self::RateLimited => "429s",
            Self::Slow => "slow",
            Self::Hang => "hangs",
            Self::Reset => "resets",
            Self::Flap => "flaps",
            Self::Unauthorized => "401s",
        }
    }
}

/// Counters and the fault switch of one fake upstream.
#[derive(Debug, Default)]
pub struct Control {
    fault: AtomicU8,
    /// API requests received (probes included).
    pub requests: AtomicU64,
    /// Requests that were answered 2xx.
    pub ok: AtomicU64,
    /// Requests in progress.
    pub in_flight: AtomicU64,
}

impl Control {
    /// Switches the fault.
    pub fn set(&self, fault: Fault) {
        self.fault.store(fault as u8, Relaxed);
    }

    /// The current fault.
    pub fn fault(&self) -> Fault {
        Fault::from_u8(self.fault.load(Relaxed))
    }
}

/// A running fake upstream.
#[derive(Debug)]
pub struct FakeLlm {
    /// Its name, echoed in replies (`x-upstream` header and ids).
    pub name: String,
    /// Its address.
    pub addr: SocketAddr,
    /// Its fault switch and counters.
    pub control: Arc<Control>,
    server: Server,
}

impl FakeLlm {
    /// Starts one on `127.0.0.1:0`.
    pub async fn start(name: &str) -> std::io::Result<Self> {
        Self::start_on(name, 0).await
    }

    /// Starts one on `127.0.0.1:port`.
    pub async fn start_on(name: &str, port: u16) -> std::io::Result<Self> {
        let control = Arc::new(Control::default());
        let (name_c, control_c) = (Arc::<str>::from(name), Arc::clone(&control));
        let server = Server::start(port, Runtime::Caller, move |stream| {
            let (name, control) = (Arc::clone(&name_c), Arc::clone(&control_c));
            serve_http(stream, move |req| {
                handle(req, Arc::clone(&name), Arc::clone(&control))
            })
        })?;
        Ok(Self {
            name: name.to_owned(),
            addr: server.addr,
            control,
            server,
        })
    }

    /// Its base URL with `/v1`.
    pub fn api_base(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Stops accepting and closes its connections (also when dropped).
    pub fn stop(&self) {
        self.server.stop();
    }
}

type Body = BoxBody<Bytes, Infallible>;

fn full(
    status: StatusCode,
    name: &str,
    content_type: &str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .header("x-upstream", name)
        .body(Full::new(body.into()).boxed())
        .expect("valid response")
}

struct InFlight(Arc<Control>);
impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Relaxed);
    }
}

async fn handle(
    req: Request<Incoming>,
    name: Arc<str>,
    control: Arc<Control>,
) -> Result<Response<Body>, std::io::Error> {
    control.requests.fetch_add(1, Relaxed);
    control.in_flight.fetch_add(1, Relaxed);
    let _guard = InFlight(Arc::clone(&control));
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let fault = match control.fault() {
        // Flap by wall-clock second so every client sees the same phase.
        #[allow(clippy::disallowed_methods)]
        Fault::Flap => {
            let secs = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs();
            if secs % 2 == 0 {
                Fault::None
            } else {
                Fault::Error500
            }
        }
        f => f,
    };
    match fault {
        Fault::Error500 => {
            return Ok(full(
                StatusCode::INTERNAL_SERVER_ERROR,
                &name,
                "application/json",
                r#"{"error":{"message":"upstream exploded","type":"server_error"}}"#,
            ));
        }
        Fault::RateLimited => {
            let mut r = full(
                StatusCode::TOO_MANY_REQUESTS,
                &name,
                "application/json",
                r#"{"error":{"message":"rate limited","type":"rate_limit"}}"#,
            );
            r.headers_mut()
                .insert("retry-after", http::HeaderValue::from_static("1"));
            return Ok(r);
        }
        Fault::Unauthorized => {
            let key = parts
                .headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .trim_start_matches("Bearer ")
                .to_owned();
            let msg = format!(
                r#"{{"error":{{"message":"Incorrect API key provided: {key}","type":"invalid_request_error"}}}}"#
            );
            return Ok(full(
                StatusCode::UNAUTHORIZED,
                &name,
                "application/json",
                msg,
            ));
        }
        Fault::Hang => std::future::pending::<()>().await,
        Fault::Reset => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "fake reset",
            ));
        }
        Fault::Slow => tokio::time::sleep(Duration::from_millis(300)).await,
        Fault::None | Fault::Flap => {}
    }
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
    let model = json
        .get("model")
        .and_then(|m| m.as_str())
        .unwrap_or("fake")
        .to_owned();
    let n = control.ok.fetch_add(1, Relaxed);
    let path = parts.uri.path().trim_end_matches('/');
    let endpoint = path.rsplit('/').next().unwrap_or("");
    let id = format!("{name}-{n}");
    if endpoint == "completions"
        && path.ends_with("chat/completions")
        && json.get("stream").and_then(|s| s.as_bool()) == Some(true)
    {
        return Ok(stream_chat(&name, &id, &model));
    }
    let reply = match endpoint {
        "completions" if path.ends_with("chat/completions") => serde_json::json!({
            "id": id, "object": "chat.completion", "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": format!("hello from {name}")}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}
        }),
        "completions" => serde_json::json!({
            "id": id, "object": "text_completion", "model": model,
            "choices": [{"index": 0, "text": format!("hello from {name}"), "finish_reason": "stop"}]
        }),
        "embeddings" => serde_json::json!({
            "object": "list", "model": model,
            "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2, 0.3, 0.4]}]
        }),
        "generations" => {
            serde_json::json!({"created": 0, "data": [{"url": format!("http://{name}/image.png")}]})
        }
        "speech" => {
            return Ok(full(
                StatusCode::OK,
                &name,
                "audio/mpeg",
                Bytes::from_static(b"ID3fake-audio"),
            ));
        }
        "transcriptions" => serde_json::json!({"text": format!("transcribed by {name}")}),
        "rerank" => {
            serde_json::json!({"id": id, "results": [{"index": 0, "relevance_score": 0.9}]})
        }
        "responses" => {
            serde_json::json!({"id": id, "object": "response", "model": model, "output": [{"type": "message", "content": [{"type": "output_text", "text": format!("hello from {name}")}]}]})
        }
        "models" => {
            serde_json::json!({"object": "list", "data": [{"id": "fake", "object": "model"}]})
        }
        "batches" => serde_json::json!({"object": "list", "data": []}),
        "moderations" => serde_json::json!({"id": id, "results": [{"flagged": false}]}),
        _ => {
            return Ok(full(
                StatusCode::NOT_FOUND,
                &name,
                "application/json",
                r#"{"error":{"message":"no such endpoint"}}"#,
            ));
        }
    };
    Ok(full(
        StatusCode::OK,
        &name,
        "application/json",
        reply.to_string(),
    ))
}

/// Five SSE chunks, 20 ms apart, then `[DONE]`.
fn stream_chat(name: &str, id: &str, model: &str) -> Response<Body> {
    let chunks: Vec<String> = (0..5)
        .map(|i| {
            let c = serde_json::json!({
                "id": id, "object": "chat.completion.chunk", "model": model,
                "choices": [{"index": 0, "delta": {"content": format!("tok{i} ")}}]
            });
            format!("data: {c}\n\n")
        })
        .chain(std::iter::once("data: [DONE]\n\n".to_owned()))
        .collect();
    let stream =
        futures_util::stream::unfold(chunks.into_iter().enumerate(), |mut it| async move {
            let (i, chunk) = it.next()?;
            if i > 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Some((Ok::<_, Infallible>(Frame::data(Bytes::from(chunk))), it))
        });
    let body: Pin<Box<dyn hyper::body::Body<Data = Bytes, Error = Infallible> + Send + Sync>> =
        Box::pin(StreamBody::new(stream));
    Response::builder()
        .header("content-type", "text/event-stream")
        .header("x-upstream", name)
        .body(BoxBody::new(body))
        .expect("valid response")
}
