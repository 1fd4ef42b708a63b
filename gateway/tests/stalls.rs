//! Stream stalls through the gateway, over real sockets (`router_settings.stream_stall_timeout`):
//! an upstream that sends a few SSE chunks and then goes silent without closing. The client
//! gets the chunks, then one error event in OpenAI's streaming error shape, `data: [DONE]`
//! and the end of the stream; the deployment sits out (cooldown, ejection), so the next
//! requests go to the other one. Real time with a short timeout (300 ms); the assertions are
//! on order and content, never on durations (the waits are only upper bounds).

mod support;

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use serde_json::{Value, json};
use thr_testkit::{RawUpstream, Reply, Upstream};
use tower_health_routing::{Config, Deployment, config::OutlierDetection};

use support::start;

const KEY: &str = "sk-stall-secret-0123456789";
const STALL: Duration = Duration::from_millis(300);
/// Longer than any test: the upstream stays silent with the connection open.
const SILENCE: Duration = Duration::from_secs(120);

/// An upstream that answers `200 text/event-stream`, sends `chunks`, then stays silent
/// (or, with `close`, closes the connection without ending the chunked body).
fn stalling(chunks: &[String], close: bool) -> RawUpstream {
    let chunk = |s: &str| format!("{:x}\r\n{s}\r\n", s.len()).into_bytes();
    let mut script = vec![(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
            .to_vec(),
        Duration::ZERO,
    )];
    script.extend(chunks.iter().map(|c| (chunk(c), Duration::ZERO)));
    if !close {
        script.push((Vec::new(), SILENCE));
    }
    RawUpstream::start(move || script.clone())
}

fn openai_chunk(text: &str) -> String {
    format!(
        "data: {}\n\n",
        json!({"id": "c1", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": text}}]})
    )
}

/// What a client read: the head's deployment, and the whole body (an `Err` if the stream
/// did not end cleanly).
struct Streamed {
    status: u16,
    served_by: String,
    body: Result<String, String>,
}

async fn stream_chat(addr: std::net::SocketAddr, model: &str) -> Streamed {
    let body =
        json!({"model": model, "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let req = http::Request::post(format!("http://{addr}/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let resp = tokio::time::timeout(Duration::from_secs(10), client.request(req))
        .await
        .expect("a head in time")
        .unwrap();
    let status = resp.status().as_u16();
    let served_by = resp
        .headers()
        .get("x-litellm-model-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    // Bounded only so a regression fails instead of hanging the suite.
    let body = tokio::time::timeout(Duration::from_secs(10), resp.into_body().collect())
        .await
        .expect("the stream ends instead of hanging")
        .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
        .map_err(|e| e.to_string());
    Streamed {
        status,
        served_by,
        body,
    }
}

/// The body's events split into the chunks before the error, the error object, and what
/// follows it.
fn split_error(body: &str) -> (Vec<&str>, Value, Vec<&str>) {
    let events: Vec<&str> = body.split_inclusive("\n\n").collect();
    let at = events
        .iter()
        .position(|e| e.starts_with("data: {\"error\""))
        .unwrap_or_else(|| panic!("no error event in {body:?}"));
    let err: Value = serde_json::from_str(events[at].trim().strip_prefix("data: ").unwrap())
        .expect("the error event is JSON");
    (events[..at].to_vec(), err, events[at + 1..].to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_stream_ends_with_an_error_event_and_its_deployment_sits_out() {
    let chunks = [openai_chunk("Hel"), openai_chunk("lo")];
    let staller = stalling(&chunks, false);
    let steady = Upstream::start(|_| {
        Reply::status(200, format!("{}data: [DONE]\n\n", openai_chunk("fine")))
            .header("content-type", "text/event-stream")
    });
    let mut od = OutlierDetection::default();
    od.consecutive_failures = Some(1);
    let cfg = Config::builder()
        .deployment(
            Deployment::builder("gpt-4o", "openai/gpt-4o")
                .id("stalls")
                .api_base(staller.v1())
                .api_key(KEY)
                .build(),
        )
        .deployment(
            Deployment::builder("gpt-4o", "openai/gpt-4o")
                .id("steady")
                .api_base(steady.v1())
                .api_key(KEY)
                .build(),
        )
        .stream_stall_timeout(STALL)
        .allowed_fails(0)
        .cooldown_time(Duration::from_secs(60))
        .outlier_detection(od)
        .build()
        .unwrap();
    let gw = start(cfg).await;

    // Shuffled: send until one lands on the stalling deployment.
    let mut stalled = None;
    for _ in 0..40 {
        let s = stream_chat(gw.addr, "gpt-4o").await;
        assert_eq!(s.status, 200);
        if s.served_by == "stalls" {
            stalled = Some(s);
            break;
        }
        let body = s.body.expect("a steady stream ends cleanly");
        assert!(body.ends_with("data: [DONE]\n\n"), "{body}");
    }
    let s = stalled.expect("shuffle reached the stalling deployment");
    let body = s.body.expect("the stalled stream ends cleanly, not cut");
    let (before, err, after) = split_error(&body);
    assert_eq!(before, chunks, "the chunks first, in order");
    assert_eq!(after, ["data: [DONE]\n\n"], "then [DONE] and the end");
    assert_eq!(err["error"]["type"], "timeout", "{err}");
    assert_eq!(err["error"]["code"], "408", "{err}");
    assert_eq!(err["error"]["param"], Value::Null, "{err}");
    let msg = err["error"]["message"].as_str().unwrap();
    assert!(msg.contains("stalled") && msg.contains("`stalls`"), "{msg}");
    assert!(!body.contains(KEY), "{body}");

    // The stall was a failure: the deployment cools down and is ejected.
    assert!(gw.state.cooldown_remaining("stalls").is_some());
    assert!(gw.state.ejection_remaining("stalls").is_some());
    assert_eq!(gw.state.ejections("stalls"), 1);
    let sent = staller.count();
    for _ in 0..10 {
        let s = stream_chat(gw.addr, "gpt-4o").await;
        assert_eq!(s.served_by, "steady");
        assert!(s.body.unwrap().ends_with("data: [DONE]\n\n"));
    }
    assert_eq!(
        staller.count(),
        sent,
        "nothing more to the stalled deployment"
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_anthropic_stream_ends_with_an_error_event_after_its_translated_chunks() {
    let events = [
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_07\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-3-5-haiku-20241022\",\"content\":[],\"stop_reason\":null,\"usage\":{\"input_tokens\":3,\"output_tokens\":1}}}\n\n".to_owned(),
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n".to_owned(),
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hel\"}}\n\n".to_owned(),
    ];
    let staller = stalling(&events, false);
    let cfg = Config::builder()
        .deployment(
            Deployment::builder("claude", "anthropic/claude-3-5-haiku-20241022")
                .id("claude-stalls")
                .api_base(format!("http://{}", staller.addr))
                .api_key(KEY)
                .build(),
        )
        .stream_stall_timeout(STALL)
        .build()
        .unwrap();
    let gw = start(cfg).await;
    let s = stream_chat(gw.addr, "claude").await;
    assert_eq!(s.status, 200);
    let body = s.body.expect("the stalled stream ends cleanly");
    let (before, err, after) = split_error(&body);
    let chunks: Vec<Value> = before
        .iter()
        .map(|e| serde_json::from_str(e.trim().strip_prefix("data: ").unwrap()).unwrap())
        .collect();
    assert!(
        chunks
            .iter()
            .all(|c| c["object"] == "chat.completion.chunk" && c["id"] == "msg_07"),
        "{chunks:#?}"
    );
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "Hel", "the translated text came before the error");
    assert_eq!(err["error"]["type"], "timeout", "{err}");
    assert_eq!(err["error"]["code"], "408", "{err}");
    assert_eq!(after, ["data: [DONE]\n\n"]);
    assert!(!body.contains(KEY), "{body}");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_breaks_off_mid_stream_ends_with_an_error_event() {
    let chunks = [openai_chunk("Hel")];
    let breaker = stalling(&chunks, true);
    let cfg = Config::builder()
        .deployment(
            Deployment::builder("gpt-4o", "openai/gpt-4o")
                .id("breaks")
                .api_base(breaker.v1())
                .api_key(KEY)
                .build(),
        )
        .build()
        .unwrap();
    let gw = start(cfg).await;
    let s = stream_chat(gw.addr, "gpt-4o").await;
    assert_eq!(s.status, 200);
    let body = s.body.expect("ends cleanly instead of being cut");
    let (before, err, after) = split_error(&body);
    assert_eq!(before, chunks);
    assert_eq!(err["error"]["type"], "upstream_error", "{err}");
    assert_eq!(err["error"]["code"], "502", "{err}");
    assert_eq!(after, ["data: [DONE]\n\n"]);
    assert!(!body.contains(KEY), "{body}");
    gw.shutdown().await;
}
