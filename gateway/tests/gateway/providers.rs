//! The provider catalog through the gateway, over real sockets: every forwardable row of
//! the provider table (`tests/fixtures/provider_table.rs`, the one the prober test reads)
//! reaches a recording upstream with the path, query and headers the table says; and
//! Anthropic deployments are translated both ways (streamed and not, tools and a system
//! prompt) against a fake Anthropic server that checks what it receives.

use serde_json::{Value, json};
use thr_gateway::forward::anthropic::{StreamTranslator, Translation};
use thr_testkit::upstream::{Recorded, Reply, Upstream};
use tower_health_routing::{Config, Deployment, Mode};

use crate::{
    provider_table::{self as table, KEY, ROWS},
    support::{post, start},
};

const CREDENTIAL_HEADERS: &[&str] = &["authorization", "api-key", "x-api-key"];

/// The gateway path of a mode, if the gateway serves it.
fn gateway_path(mode: Mode) -> Option<&'static str> {
    Some(match mode {
        Mode::Chat => "/v1/chat/completions",
        Mode::Completion => "/v1/completions",
        Mode::Responses => "/v1/responses",
        Mode::Embedding => "/v1/embeddings",
        Mode::ImageGeneration => "/v1/images/generations",
        Mode::AudioSpeech => "/v1/audio/speech",
        Mode::AudioTranscription => "/v1/audio/transcriptions",
        Mode::Rerank => "/v1/rerank",
        _ => return None,
    })
}

const BOUNDARY: &str = "thr-test-boundary";

fn multipart(model: &str) -> String {
    format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\n{model}\r\n\
         --{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n\
         Content-Type: audio/wav\r\n\r\nRIFF\r\n--{BOUNDARY}--\r\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_forwardable_row_reaches_the_upstream_as_the_table_says() {
    let up = Upstream::ok();
    // One route per row that the gateway serves.
    let rows: Vec<(String, &table::Row)> = ROWS
        .iter()
        .enumerate()
        .filter(|(_, r)| r.forward_path.is_some() && gateway_path(r.mode).is_some())
        .map(|(i, r)| (format!("row-{i}"), r))
        .collect();
    assert!(
        rows.len() >= 15,
        "most of the table is forwardable: {}",
        rows.len()
    );
    let cfg = Config::builder()
        .deployments(rows.iter().map(|(name, r)| {
            Deployment::builder(name.as_str(), r.model)
                .api_base(format!("{}{}", up.base(), r.base))
                .api_key(KEY)
                .mode(r.mode)
                .build()
        }))
        .build()
        .unwrap();
    let gw = start(cfg).await;
    for (i, (name, row)) in rows.iter().enumerate() {
        let ctx = format!("{} {}", row.model, row.mode);
        let path = gateway_path(row.mode).unwrap();
        let reply = if row.mode == Mode::AudioTranscription {
            let ct = format!("multipart/form-data; boundary={BOUNDARY}");
            post(gw.addr, path, &ct, multipart(name)).await
        } else {
            let body = json!({
                "model": name, "messages": [{"role": "user", "content": "hi"}],
                "input": "hi", "prompt": "hi", "query": "q", "documents": ["d"], "voice": "alloy",
            });
            post(gw.addr, path, "application/json", body.to_string()).await
        };
        assert_eq!(reply.status, 200, "{ctx}: {}", reply.text());
        let reqs = up.requests();
        assert_eq!(
            reqs.len(),
            i + 1,
            "{ctx}: one upstream request per client request"
        );
        let r: &Recorded = &reqs[i];
        assert_eq!(r.method.as_str(), "POST", "{ctx}");
        assert_eq!(Some(r.path.as_str()), row.forward_path, "{ctx}");
        assert_eq!(r.query.as_deref(), row.forward_query, "{ctx}");
        for (h, v) in row.headers {
            assert_eq!(r.header(h), Some(*v), "{ctx}: {h}");
        }
        for h in CREDENTIAL_HEADERS {
            if !row.headers.iter().any(|(n, _)| n == h) {
                assert_eq!(r.header(h), None, "{ctx}: {h} must be absent");
            }
        }
        let bare = row.model.split_once('/').map_or(row.model, |(_, m)| m);
        if row.mode == Mode::AudioTranscription {
            let text = String::from_utf8_lossy(&r.body);
            assert!(
                text.contains(&format!("\r\n\r\n{bare}\r\n")),
                "{ctx}: {text}"
            );
        } else {
            let body = r.json();
            assert_eq!(body["model"], bare, "{ctx}: the deployment's model is sent");
            if row.forward_wire == tower_health_routing::provider::Wire::Anthropic {
                assert_eq!(body["max_tokens"], 4096, "{ctx}");
                assert_eq!(
                    body["messages"],
                    json!([{"role": "user", "content": [{"type": "text", "text": "hi"}]}]),
                    "{ctx}"
                );
                assert_eq!(reply.json()["object"], "chat.completion", "{ctx}");
            }
        }
    }
    gw.shutdown().await;
}

/// A fake Anthropic: the Messages API at `/v1/messages` with the table's key and
/// `anthropic-version`; anything else gets Anthropic's 401.
fn fake_anthropic(answer: impl Fn(&Recorded) -> Reply + Send + Sync + 'static) -> Upstream {
    Upstream::start(move |r| {
        let ok = r.path == "/v1/messages"
            && r.header("x-api-key") == Some(KEY)
            && r.header("anthropic-version") == Some("2023-06-01")
            && r.header("authorization").is_none()
            && r.header("content-type") == Some("application/json");
        if ok {
            answer(r)
        } else {
            Reply::status(
                401,
                json!({"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}}).to_string(),
            )
        }
    })
}

fn anthropic_config(up: &Upstream) -> Config {
    Config::builder()
        .deployments([
            Deployment::builder("claude", "anthropic/claude-3-5-haiku-20241022")
                .api_base(up.base())
                .api_key(KEY)
                .build(),
        ])
        .build()
        .unwrap()
}

/// An OpenAI request with a system prompt, multi-part user text, an assistant tool call,
/// its tool result, tools and a forced tool choice.
fn tool_request(stream: bool) -> Value {
    let mut v = json!({
        "model": "claude",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": [{"type": "text", "text": "Weather in"}, {"type": "text", "text": "Paris?"}]},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Lyon\"}"}}
            ]},
            {"role": "tool", "tool_call_id": "toolu_1", "content": "12C"},
            {"role": "user", "content": "And Paris?"}
        ],
        "tools": [{"type": "function", "function": {
            "name": "get_weather", "description": "Weather by city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
        }}],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "parallel_tool_calls": false,
        "temperature": 0.2,
        "top_p": 0.9,
        "stop": "END",
        "user": "u-1"
    });
    if stream {
        v["stream"] = true.into();
        v["stream_options"] = json!({"include_usage": true});
    }
    v
}

/// What the fake Anthropic must receive for [`tool_request`].
fn expected_messages_body(stream: bool) -> Value {
    let mut v = json!({
        "model": "claude-3-5-haiku-20241022",
        "system": [{"type": "text", "text": "You are terse."}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Weather in"}, {"type": "text", "text": "Paris?"}]},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Lyon"}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "12C"},
                {"type": "text", "text": "And Paris?"}
            ]}
        ],
        "max_tokens": 4096,
        "temperature": 0.2,
        "top_p": 0.9,
        "stop_sequences": ["END"],
        "tools": [{"name": "get_weather", "description": "Weather by city",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}],
        "tool_choice": {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": true},
        "metadata": {"user_id": "u-1"}
    });
    if stream {
        v["stream"] = true.into();
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_chat_is_translated_both_ways() {
    let up = fake_anthropic(|_| {
        Reply::status(
            200,
            json!({
                "id": "msg_01", "type": "message", "role": "assistant",
                "model": "claude-3-5-haiku-20241022",
                "content": [
                    {"type": "text", "text": "Let me check."},
                    {"type": "tool_use", "id": "toolu_2", "name": "get_weather", "input": {"city": "Paris"}}
                ],
                "stop_reason": "tool_use", "stop_sequence": null,
                "usage": {"input_tokens": 12, "cache_read_input_tokens": 3, "output_tokens": 7}
            })
            .to_string(),
        )
        .header("content-type", "application/json")
    });
    let gw = start(anthropic_config(&up)).await;
    let reply = post(
        gw.addr,
        "/v1/chat/completions",
        "application/json",
        tool_request(false).to_string(),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(up.only().json(), expected_messages_body(false));
    let v = reply.json();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["id"], "msg_01");
    assert_eq!(v["model"], "claude-3-5-haiku-20241022");
    let choice = &v["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert_eq!(choice["message"]["role"], "assistant");
    assert_eq!(choice["message"]["content"], "Let me check.");
    assert_eq!(
        choice["message"]["tool_calls"],
        json!([{"id": "toolu_2", "type": "function",
            "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}])
    );
    assert_eq!(
        v["usage"],
        json!({"prompt_tokens": 15, "completion_tokens": 7, "total_tokens": 22,
            "prompt_tokens_details": {"cached_tokens": 3}})
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_anthropic_answer_is_scrubbed_and_its_usage_counts_against_tpm() {
    // The answer echoes the deployment's key: the client must never see it. Its usage
    // (12 + 7 tokens) is counted, so a `tpm` of 10 refuses the next request this minute.
    let up = fake_anthropic(|_| {
        Reply::status(
            200,
            json!({
                "id": "msg_09", "type": "message", "role": "assistant",
                "model": "claude-3-5-haiku-20241022",
                "content": [{"type": "text", "text": format!("the key is {KEY}")}],
                "stop_reason": "end_turn", "stop_sequence": null,
                "usage": {"input_tokens": 12, "output_tokens": 7}
            })
            .to_string(),
        )
        .header("content-type", "application/json")
    });
    let cfg = Config::builder()
        .deployments([
            Deployment::builder("claude", "anthropic/claude-3-5-haiku-20241022")
                .api_base(up.base())
                .api_key(KEY)
                .tpm(10)
                .build(),
        ])
        .routing_strategy(tower_health_routing::config::RoutingStrategy::UsageBasedV2)
        .build()
        .unwrap();
    let gw = start(cfg).await;
    let body = json!({"model": "claude", "messages": [{"role": "user", "content": "hi"}]});
    let reply = post(
        gw.addr,
        "/v1/chat/completions",
        "application/json",
        body.to_string(),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(
        !reply.text().contains(KEY),
        "the key reached the client: {}",
        reply.text()
    );
    assert!(
        reply.json()["choices"][0]["message"]["content"]
            .as_str()
            .is_some_and(|t| t.starts_with("the key is "))
    );
    let again = post(
        gw.addr,
        "/v1/chat/completions",
        "application/json",
        body.to_string(),
    )
    .await;
    assert_eq!(
        again.status,
        429,
        "the 19 tokens counted against tpm 10: {}",
        again.text()
    );
    assert_eq!(up.count(), 1);
    gw.shutdown().await;
}

const STREAM: &str = "event: message_start\n\
data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_02\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-3-5-haiku-20241022\",\"content\":[],\"stop_reason\":null,\"usage\":{\"input_tokens\":20,\"output_tokens\":1}}}\n\n\
event: ping\n\
data: {\"type\":\"ping\"}\n\n\
event: content_block_start\n\
data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n\
event: content_block_delta\n\
data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hel\"}}\n\n\
event: content_block_delta\n\
data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"lo\"}}\n\n\
event: content_block_stop\n\
data: {\"type\":\"content_block_stop\",\"index\":0}\n\n\
event: content_block_start\n\
data: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_3\",\"name\":\"get_weather\",\"input\":{}}}\n\n\
event: content_block_delta\n\
data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"city\\\":\"}}\n\n\
event: content_block_delta\n\
data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"\\\"Paris\\\"}\"}}\n\n\
event: content_block_stop\n\
data: {\"type\":\"content_block_stop\",\"index\":1}\n\n\
event: message_delta\n\
data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":9}}\n\n\
event: message_stop\n\
data: {\"type\":\"message_stop\"}\n\n";

/// The `data:` payloads of an SSE body, in order.
fn data_lines(sse: &str) -> Vec<String> {
    sse.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_streams_become_chat_completion_chunks_ending_in_done() {
    let up =
        fake_anthropic(|_| Reply::status(200, STREAM).header("content-type", "text/event-stream"));
    let gw = start(anthropic_config(&up)).await;
    let reply = post(
        gw.addr,
        "/v1/chat/completions",
        "application/json",
        tool_request(true).to_string(),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(up.only().json(), expected_messages_body(true));
    assert_eq!(
        reply
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("text/event-stream")
    );
    let lines = data_lines(&reply.text());
    assert_eq!(lines.last().map(String::as_str), Some("[DONE]"));
    assert_eq!(lines.iter().filter(|l| *l == "[DONE]").count(), 1);
    let chunks: Vec<Value> = lines[..lines.len() - 1]
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // role, "Hel", "lo", tool start, two argument pieces, finish, usage.
    assert_eq!(chunks.len(), 8, "{chunks:#?}");
    assert!(
        chunks
            .iter()
            .all(|c| c["object"] == "chat.completion.chunk" && c["id"] == "msg_02")
    );
    let delta = |i: usize| &chunks[i]["choices"][0]["delta"];
    assert_eq!(delta(0)["role"], "assistant");
    let text: String = (1..=2)
        .map(|i| delta(i)["content"].as_str().unwrap())
        .collect();
    assert_eq!(text, "Hello");
    assert_eq!(
        delta(3)["tool_calls"],
        json!([{"index": 0, "id": "toolu_3", "type": "function", "function": {"name": "get_weather", "arguments": ""}}])
    );
    let args: String = (4..=5)
        .map(|i| {
            delta(i)["tool_calls"][0]["function"]["arguments"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(args, "{\"city\":\"Paris\"}");
    assert_eq!(chunks[6]["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(chunks[7]["choices"], json!([]));
    assert_eq!(
        chunks[7]["usage"],
        json!({"prompt_tokens": 20, "completion_tokens": 9, "total_tokens": 29})
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_errors_keep_their_status_in_openai_shape() {
    let up = fake_anthropic(|_| {
        Reply::status(
            400,
            json!({"type": "error", "error": {"type": "invalid_request_error", "message": "max_tokens: 999999 > 8192"}}).to_string(),
        )
    });
    let gw = start(anthropic_config(&up)).await;
    let body = json!({"model": "claude", "max_tokens": 999999, "messages": [{"role": "user", "content": "hi"}]});
    let reply = post(
        gw.addr,
        "/v1/chat/completions",
        "application/json",
        body.to_string(),
    )
    .await;
    assert_eq!(reply.status, 400);
    assert_eq!(
        reply.json(),
        json!({"error": {"message": "max_tokens: 999999 > 8192", "type": "invalid_request_error", "param": null, "code": "400"}})
    );
    assert_eq!(up.only().json()["max_tokens"], 999999);
    // A request that cannot be translated is the client's 400, and reaches no upstream.
    let bad = json!({"model": "claude", "messages": [{"role": "wizard", "content": "hi"}]});
    let reply = post(
        gw.addr,
        "/v1/chat/completions",
        "application/json",
        bad.to_string(),
    )
    .await;
    assert_eq!(reply.status, 400, "{}", reply.text());
    assert!(reply.text().contains("wizard"), "{}", reply.text());
    assert_eq!(up.count(), 1);
    gw.shutdown().await;
}

/// Events split anywhere (byte by byte, CRLF line ends) translate the same; an `error`
/// event becomes an OpenAI error chunk, then `[DONE]`.
#[test]
fn stream_translation_survives_any_split_and_reports_errors() {
    let t = Translation {
        stream: true,
        include_usage: true,
    };
    let strip = |out: Vec<u8>| -> Vec<Value> {
        data_lines(&String::from_utf8(out).unwrap())
            .iter()
            .map(|l| {
                let mut v: Value =
                    serde_json::from_str(l).unwrap_or_else(|_| Value::String(l.clone()));
                if let Some(o) = v.as_object_mut() {
                    o.remove("created");
                }
                v
            })
            .collect()
    };
    let mut whole = StreamTranslator::new(&t);
    let mut a = whole.feed(STREAM.as_bytes());
    a.extend(whole.finish());
    let crlf = STREAM.replace('\n', "\r\n");
    let mut bytes = StreamTranslator::new(&t);
    let mut b = Vec::new();
    for byte in crlf.as_bytes() {
        b.extend(bytes.feed(std::slice::from_ref(byte)));
    }
    b.extend(bytes.finish());
    let (a, b) = (strip(a), strip(b));
    assert_eq!(a.len(), 9);
    assert_eq!(a, b);

    let failing = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"model\":\"c\",\"usage\":{\"input_tokens\":1}}}\n\n\
        event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n";
    let mut tr = StreamTranslator::new(&t);
    let mut out = tr.feed(failing.as_bytes());
    out.extend(tr.finish());
    let lines = data_lines(&String::from_utf8(out).unwrap());
    assert_eq!(lines.len(), 3, "{lines:?}");
    let err: Value = serde_json::from_str(&lines[1]).unwrap();
    assert_eq!(err["error"]["type"], "overloaded_error");
    assert_eq!(err["error"]["message"], "Overloaded");
    assert_eq!(lines[2], "[DONE]");
    // A stream cut short still ends in [DONE], once.
    let mut cut = StreamTranslator::new(&t);
    let mut out = cut.feed(&STREAM.as_bytes()[..300]);
    out.extend(cut.finish());
    out.extend(cut.finish());
    let lines = data_lines(&String::from_utf8(out).unwrap());
    assert_eq!(lines.iter().filter(|l| *l == "[DONE]").count(), 1);
}
