//! OpenAI chat completions ⇄ Anthropic's Messages API, as LiteLLM 1.109 translates them
//! for `anthropic/` deployments (`llms/anthropic/chat/transformation.py`, and `handler.py`'s
//! `ModelResponseIterator` for streams).
//!
//! # Request ([`to_messages_request`])
//!
//! | OpenAI | Anthropic |
//! |---|---|
//! | `system` / `developer` messages | `system` text blocks |
//! | `user` content (text or parts: `text`, `image_url`) | `user` content blocks (`text`, `image` by URL or base64 data URL) |
//! | `assistant` content and `tool_calls` | `assistant` `text` and `tool_use` blocks (arguments parsed as JSON) |
//! | `tool` messages | `user` `tool_result` blocks (consecutive same-role messages are merged) |
//! | `max_tokens` / `max_completion_tokens` | `max_tokens` (required: [`DEFAULT_MAX_TOKENS`] when absent) |
//! | `temperature`, `top_p`, `stream` | the same |
//! | `stop` (string or list) | `stop_sequences` |
//! | `tools` (`function`s) | `tools` (`name`, `description`, `input_schema`) |
//! | `tool_choice` `auto` / `required` / `none` / `{function: {name}}`, `parallel_tool_calls` | `tool_choice` `auto` / `any` / `none` / `tool`, `disable_parallel_tool_use` |
//! | `user` | `metadata.user_id` |
//!
//! Other OpenAI parameters are dropped (LiteLLM drops them too with `drop_params`).
//!
//! # Response ([`to_chat_completion`], [`StreamTranslator`], [`to_openai_error`])
//!
//! `text` blocks become the message content, `tool_use` blocks its `tool_calls`,
//! `thinking` blocks `reasoning_content`; `stop_reason` maps to `finish_reason`
//! ([`finish_reason`]); `usage.input_tokens` (plus cache reads and writes) to
//! `prompt_tokens`, `output_tokens` to `completion_tokens`. A stream's events become
//! `chat.completion.chunk`s ending in `data: [DONE]`. An error keeps its status and becomes
//! `{"error": {"message", "type", "param", "code"}}`.

use std::collections::HashMap;

use bytes::Bytes;
use serde_json::{Map, Value, json};

/// `max_tokens` when the client sends none: Anthropic requires one. LiteLLM's chat path
/// takes the model's maximum output from its cost map; this gateway has no cost map and
/// sends what LiteLLM's probes send.
pub const DEFAULT_MAX_TOKENS: u64 = 4096;

/// What the response translation needs to know about the request.
#[derive(Clone, Debug, Default)]
pub struct Translation {
    /// The client asked for a stream.
    pub stream: bool,
    /// The client asked for a final usage chunk (`stream_options.include_usage`).
    pub include_usage: bool,
}

/// A request that cannot be translated, in words for the client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadRequest(pub String);

impl std::fmt::Display for BadRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadRequest {}

fn bad(why: impl Into<String>) -> BadRequest {
    BadRequest(why.into())
}

/// The Messages API body for an OpenAI chat completions body, for `model`; and what the
/// response translation needs.
pub fn to_messages_request(body: &[u8], model: &str) -> Result<(Bytes, Translation), BadRequest> {
    let req: Value =
        serde_json::from_slice(body).map_err(|e| bad(format!("malformed JSON body: {e}")))?;
    let req = req
        .as_object()
        .ok_or_else(|| bad("the body must be a JSON object"))?;
    let messages = req
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("`messages` must be an array"))?;
    let mut system: Vec<Value> = Vec::new();
    let mut out: Vec<(String, Vec<Value>)> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let role = m
            .get("role")
            .and_then(Value::as_str)
            .ok_or_else(|| bad(format!("messages[{i}].role must be a string")))?;
        let (role, blocks) = match role {
            "system" | "developer" => {
                system.extend(text_blocks(m.get("content"), i)?);
                continue;
            }
            "user" => ("user", content_blocks(m.get("content"), i)?),
            "assistant" => ("assistant", assistant_blocks(m, i)?),
            "tool" | "function" => ("user", vec![tool_result(m, i)?]),
            other => {
                return Err(bad(format!(
                    "messages[{i}].role `{other}` is not supported"
                )));
            }
        };
        if blocks.is_empty() {
            continue;
        }
        // Anthropic wants user and assistant turns to alternate: merge neighbours.
        match out.last_mut() {
            Some((last, prev)) if last == role => prev.extend(blocks),
            _ => out.push((role.to_owned(), blocks)),
        }
    }
    let mut body = Map::new();
    body.insert("model".into(), model.into());
    body.insert(
        "messages".into(),
        out.into_iter()
            .map(|(role, content)| json!({ "role": role, "content": content }))
            .collect(),
    );
    if !system.is_empty() {
        body.insert("system".into(), system.into());
    }
    let max = req
        .get("max_tokens")
        .or_else(|| req.get("max_completion_tokens"))
        .filter(|v| !v.is_null());
    let max = match max {
        None => DEFAULT_MAX_TOKENS,
        Some(v) => v
            .as_u64()
            .ok_or_else(|| bad("`max_tokens` must be a non-negative integer"))?,
    };
    body.insert("max_tokens".into(), max.into());
    for key in ["temperature", "top_p"] {
        if let Some(v) = req.get(key).filter(|v| !v.is_null()) {
            if !v.is_number() {
                return Err(bad(format!("`{key}` must be a number")));
            }
            body.insert(key.into(), v.clone());
        }
    }
    match req.get("stop") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => {
            body.insert("stop_sequences".into(), json!([s]));
        }
        Some(Value::Array(a)) if a.iter().all(Value::is_string) => {
            body.insert("stop_sequences".into(), Value::Array(a.clone()));
        }
        Some(_) => return Err(bad("`stop` must be a string or a list of strings")),
    }
    let stream = req.get("stream").and_then(Value::as_bool).unwrap_or(false);
    if stream {
        body.insert("stream".into(), true.into());
    }
    let include_usage = req
        .get("stream_options")
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if let Some(tools) = req.get("tools").filter(|v| !v.is_null()) {
        body.insert("tools".into(), tools_of(tools)?);
    }
    let parallel = req.get("parallel_tool_calls").and_then(Value::as_bool);
    if let Some(choice) = tool_choice(req.get("tool_choice"), parallel)? {
        body.insert("tool_choice".into(), choice);
    }
    if let Some(user) = req.get("user").and_then(Value::as_str) {
        body.insert("metadata".into(), json!({ "user_id": user }));
    }
    let bytes = serde_json::to_vec(&Value::Object(body)).map_err(|e| bad(e.to_string()))?;
    Ok((
        bytes.into(),
        Translation {
            stream,
            include_usage,
        },
    ))
}

/// Text-only content (system prompts, tool results) as text blocks.
fn text_blocks(content: Option<&Value>, i: usize) -> Result<Vec<Value>, BadRequest> {
    Ok(match content {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) if s.is_empty() => Vec::new(),
        Some(Value::String(s)) => vec![json!({ "type": "text", "text": s })],
        Some(Value::Array(parts)) => parts
            .iter()
            .filter(|p| p.get("type").and_then(Value::as_str) == Some("text"))
            .map(|p| {
                let text = p.get("text").and_then(Value::as_str).ok_or_else(|| {
                    bad(format!("messages[{i}]: a text part needs a string `text`"))
                })?;
                Ok(json!({ "type": "text", "text": text }))
            })
            .collect::<Result<_, BadRequest>>()?,
        Some(_) => {
            return Err(bad(format!(
                "messages[{i}].content must be a string or a list of parts"
            )));
        }
    })
}

/// User content: text and images.
fn content_blocks(content: Option<&Value>, i: usize) -> Result<Vec<Value>, BadRequest> {
    let Some(Value::Array(parts)) = content else {
        return text_blocks(content, i);
    };
    let mut out = Vec::with_capacity(parts.len());
    for p in parts {
        match p.get("type").and_then(Value::as_str) {
            Some("text") => out.extend(text_blocks(Some(&Value::Array(vec![p.clone()])), i)?),
            Some("image_url") => {
                let url = p
                    .get("image_url")
                    .and_then(|u| u.get("url").or(Some(u)))
                    .and_then(Value::as_str)
                    .ok_or_else(|| bad(format!("messages[{i}]: an image_url part needs a url")))?;
                out.push(image_block(url, i)?);
            }
            other => {
                return Err(bad(format!(
                    "messages[{i}]: content part type {} is not supported for Anthropic",
                    other.map_or("(none)".to_owned(), |t| format!("`{t}`"))
                )));
            }
        }
    }
    Ok(out)
}

fn image_block(url: &str, i: usize) -> Result<Value, BadRequest> {
    if let Some(rest) = url.strip_prefix("data:") {
        let (meta, data) = rest
            .split_once(',')
            .ok_or_else(|| bad(format!("messages[{i}]: a malformed data URL")))?;
        let media = meta
            .strip_suffix(";base64")
            .ok_or_else(|| bad(format!("messages[{i}]: image data URLs must be base64")))?;
        return Ok(json!({
            "type": "image",
            "source": { "type": "base64", "media_type": media, "data": data },
        }));
    }
    Ok(json!({ "type": "image", "source": { "type": "url", "url": url } }))
}

fn assistant_blocks(m: &Value, i: usize) -> Result<Vec<Value>, BadRequest> {
    let mut out = text_blocks(m.get("content"), i)?;
    if let Some(calls) = m.get("tool_calls").filter(|v| !v.is_null()) {
        let calls = calls
            .as_array()
            .ok_or_else(|| bad(format!("messages[{i}].tool_calls must be a list")))?;
        for (j, c) in calls.iter().enumerate() {
            let at = || format!("messages[{i}].tool_calls[{j}]");
            let id = c
                .get("id")
                .and_then(Value::as_str)
                .ok_or_else(|| bad(format!("{} needs an `id`", at())))?;
            let f = c
                .get("function")
                .ok_or_else(|| bad(format!("{} needs a `function`", at())))?;
            let name = f
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| bad(format!("{}.function needs a `name`", at())))?;
            let input = match f.get("arguments") {
                None | Some(Value::Null) => json!({}),
                Some(Value::String(s)) if s.trim().is_empty() => json!({}),
                Some(Value::String(s)) => serde_json::from_str(s)
                    .map_err(|e| bad(format!("{}.function.arguments is not JSON: {e}", at())))?,
                Some(v) => v.clone(),
            };
            out.push(json!({ "type": "tool_use", "id": id, "name": name, "input": input }));
        }
    }
    Ok(out)
}

fn tool_result(m: &Value, i: usize) -> Result<Value, BadRequest> {
    let id = m
        .get("tool_call_id")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            bad(format!(
                "messages[{i}]: a tool message needs `tool_call_id`"
            ))
        })?;
    let content: Value = match m.get("content") {
        Some(Value::String(s)) => s.clone().into(),
        other => text_blocks(other, i)?.into(),
    };
    Ok(json!({ "type": "tool_result", "tool_use_id": id, "content": content }))
}

fn tools_of(tools: &Value) -> Result<Value, BadRequest> {
    let tools = tools
        .as_array()
        .ok_or_else(|| bad("`tools` must be a list"))?;
    tools
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let f = t
                .get("function")
                .filter(|_| {
                    t.get("type").and_then(Value::as_str).unwrap_or("function") == "function"
                })
                .ok_or_else(|| bad(format!("tools[{i}] must be a `function` tool")))?;
            let name = f
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| bad(format!("tools[{i}].function needs a `name`")))?;
            let mut out = json!({
                "name": name,
                "input_schema": f
                    .get("parameters")
                    .cloned()
                    .unwrap_or_else(|| json!({ "type": "object", "properties": {} })),
            });
            if let Some(d) = f.get("description").and_then(Value::as_str) {
                out["description"] = d.into();
            }
            Ok(out)
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Value::Array)
}

fn tool_choice(
    choice: Option<&Value>,
    parallel: Option<bool>,
) -> Result<Option<Value>, BadRequest> {
    let mut out = match choice {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => match s.as_str() {
            "auto" => Some(json!({ "type": "auto" })),
            "required" | "any" => Some(json!({ "type": "any" })),
            "none" => Some(json!({ "type": "none" })),
            other => return Err(bad(format!("`tool_choice` `{other}` is not known"))),
        },
        Some(Value::Object(o)) => match o
            .get("function")
            .and_then(|f| f.get("name"))
            .and_then(Value::as_str)
        {
            Some(name) => Some(json!({ "type": "tool", "name": name })),
            None => match o.get("type").and_then(Value::as_str) {
                Some("auto") => Some(json!({ "type": "auto" })),
                Some("required" | "any") => Some(json!({ "type": "any" })),
                Some("none") => Some(json!({ "type": "none" })),
                _ => return Err(bad("`tool_choice` names no function")),
            },
        },
        Some(_) => return Err(bad("`tool_choice` must be a string or an object")),
    };
    let none = choice.and_then(Value::as_str) == Some("none");
    if let Some(p) = parallel
        && !none
    {
        out.get_or_insert_with(|| json!({ "type": "auto" }))["disable_parallel_tool_use"] =
            (!p).into();
    }
    Ok(out)
}

/// OpenAI's `finish_reason` for Anthropic's `stop_reason` (LiteLLM's `map_finish_reason`).
pub fn finish_reason(stop_reason: &str) -> &'static str {
    match stop_reason {
        "max_tokens" | "pause_turn" | "compaction" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        _ => "stop",
    }
}

fn usage_of(u: &Value) -> Value {
    let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
    let prompt =
        n("input_tokens") + n("cache_creation_input_tokens") + n("cache_read_input_tokens");
    let completion = n("output_tokens");
    let mut out = json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    });
    if u.get("cache_read_input_tokens").is_some() {
        out["prompt_tokens_details"] = json!({ "cached_tokens": n("cache_read_input_tokens") });
    }
    out
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The OpenAI chat completion for a Messages API response body.
pub fn to_chat_completion(body: &[u8]) -> Result<Bytes, BadRequest> {
    let r: Value = serde_json::from_slice(body).map_err(|e| {
        bad(format!(
            "the upstream sent a malformed Messages response: {e}"
        ))
    })?;
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut calls = Vec::new();
    for block in r
        .get("content")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => text.push_str(block.get("text").and_then(Value::as_str).unwrap_or("")),
            Some("thinking") => reasoning
                .push_str(block.get("thinking").and_then(Value::as_str).unwrap_or("")),
            Some("tool_use") => calls.push(json!({
                "id": block.get("id").cloned().unwrap_or(Value::Null),
                "type": "function",
                "function": {
                    "name": block.get("name").cloned().unwrap_or(Value::Null),
                    "arguments": block.get("input").map_or_else(|| "{}".to_owned(), Value::to_string),
                },
            })),
            _ => {}
        }
    }
    let mut message = json!({
        "role": "assistant",
        "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { text.into() },
    });
    if !calls.is_empty() {
        message["tool_calls"] = calls.into();
    }
    if !reasoning.is_empty() {
        message["reasoning_content"] = reasoning.into();
    }
    let finish = r
        .get("stop_reason")
        .and_then(Value::as_str)
        .map_or("stop", finish_reason);
    let out = json!({
        "id": r.get("id").cloned().unwrap_or(Value::Null),
        "object": "chat.completion",
        "created": now_secs(),
        "model": r.get("model").cloned().unwrap_or(Value::Null),
        "choices": [{ "index": 0, "message": message, "finish_reason": finish }],
        "usage": usage_of(r.get("usage").unwrap_or(&Value::Null)),
    });
    Ok(out.to_string().into())
}

/// An OpenAI-shaped error body for an Anthropic error body (`{"type": "error", "error":
/// {"type", "message"}}`) answered with `status`; any other body becomes the message.
pub fn to_openai_error(status: u16, body: &str) -> Bytes {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let err = parsed.as_ref().and_then(|v| v.get("error"));
    let message = err
        .and_then(|e| e.get("message"))
        .and_then(Value::as_str)
        .map_or_else(|| body.trim().to_owned(), str::to_owned);
    let kind = err
        .and_then(|e| e.get("type"))
        .and_then(Value::as_str)
        .unwrap_or(match status {
            401 => "authentication_error",
            403 => "permission_error",
            404 => "not_found_error",
            429 => "rate_limit_error",
            400..=499 => "invalid_request_error",
            _ => "api_error",
        });
    json!({ "error": { "message": message, "type": kind, "param": null, "code": status.to_string() } })
        .to_string()
        .into()
}

/// Turns an Anthropic Messages SSE stream into OpenAI `chat.completion.chunk` SSE, fed
/// chunk by chunk (events may be split anywhere).
#[derive(Debug)]
pub struct StreamTranslator {
    buf: Vec<u8>,
    id: Value,
    model: Value,
    created: u64,
    /// Content block index → tool call index.
    tools: HashMap<u64, usize>,
    prompt_usage: Value,
    include_usage: bool,
    done: bool,
}

impl StreamTranslator {
    /// A translator for a request with these options.
    pub fn new(t: &Translation) -> Self {
        Self {
            buf: Vec::new(),
            id: Value::Null,
            model: Value::Null,
            created: now_secs(),
            tools: HashMap::new(),
            prompt_usage: Value::Null,
            include_usage: t.include_usage,
            done: false,
        }
    }

    /// The OpenAI SSE bytes for the next piece of the upstream stream.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<u8> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        while let Some(end) = event_end(&self.buf) {
            let event: Vec<u8> = self.buf.drain(..end.0).collect();
            self.buf.drain(..end.1);
            self.event(&event, &mut out);
        }
        out
    }

    /// The end of the stream: `data: [DONE]` if it has not been sent.
    pub fn finish(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        if !self.buf.is_empty() {
            let rest = std::mem::take(&mut self.buf);
            self.event(&rest, &mut out);
        }
        if !self.done {
            self.done = true;
            out.extend_from_slice(b"data: [DONE]\n\n");
        }
        out
    }

    fn chunk(&self, delta: Value, finish: Option<&str>, out: &mut Vec<u8>) {
        let c = json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{ "index": 0, "delta": delta, "finish_reason": finish }],
        });
        push_data(out, &c);
    }

    fn event(&mut self, raw: &[u8], out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        let text = String::from_utf8_lossy(raw);
        let data: String = text
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(|d| d.strip_prefix(' ').unwrap_or(d))
            .collect::<Vec<_>>()
            .join("\n");
        if data.is_empty() {
            return;
        }
        let Ok(ev) = serde_json::from_str::<Value>(&data) else {
            return;
        };
        match ev.get("type").and_then(Value::as_str) {
            Some("message_start") => {
                let m = ev.get("message").unwrap_or(&Value::Null);
                self.id = m.get("id").cloned().unwrap_or(Value::Null);
                self.model = m.get("model").cloned().unwrap_or(Value::Null);
                self.prompt_usage = m.get("usage").cloned().unwrap_or(Value::Null);
                self.chunk(json!({ "role": "assistant", "content": "" }), None, out);
            }
            Some("content_block_start") => {
                let block = ev.get("content_block").unwrap_or(&Value::Null);
                let index = ev.get("index").and_then(Value::as_u64).unwrap_or(0);
                match block.get("type").and_then(Value::as_str) {
                    Some("tool_use") => {
                        let n = self.tools.len();
                        self.tools.insert(index, n);
                        self.chunk(
                            json!({ "tool_calls": [{
                                "index": n,
                                "id": block.get("id").cloned().unwrap_or(Value::Null),
                                "type": "function",
                                "function": {
                                    "name": block.get("name").cloned().unwrap_or(Value::Null),
                                    "arguments": "",
                                },
                            }] }),
                            None,
                            out,
                        );
                    }
                    Some("text") => {
                        if let Some(t) = block
                            .get("text")
                            .and_then(Value::as_str)
                            .filter(|t| !t.is_empty())
                        {
                            self.chunk(json!({ "content": t }), None, out);
                        }
                    }
                    _ => {}
                }
            }
            Some("content_block_delta") => {
                let d = ev.get("delta").unwrap_or(&Value::Null);
                let index = ev.get("index").and_then(Value::as_u64).unwrap_or(0);
                match d.get("type").and_then(Value::as_str) {
                    Some("text_delta") => {
                        let t = d.get("text").cloned().unwrap_or_else(|| "".into());
                        self.chunk(json!({ "content": t }), None, out);
                    }
                    Some("input_json_delta") => {
                        let n = self.tools.get(&index).copied().unwrap_or(0);
                        let p = d.get("partial_json").cloned().unwrap_or_else(|| "".into());
                        self.chunk(
                            json!({ "tool_calls": [{ "index": n, "function": { "arguments": p } }] }),
                            None,
                            out,
                        );
                    }
                    Some("thinking_delta") => {
                        let t = d.get("thinking").cloned().unwrap_or_else(|| "".into());
                        self.chunk(json!({ "reasoning_content": t }), None, out);
                    }
                    _ => {}
                }
            }
            Some("message_delta") => {
                let stop = ev
                    .get("delta")
                    .and_then(|d| d.get("stop_reason"))
                    .and_then(Value::as_str)
                    .map_or("stop", finish_reason);
                self.chunk(json!({}), Some(stop), out);
                if self.include_usage {
                    let mut u = self.prompt_usage.clone();
                    if let (Some(u), Some(delta)) = (
                        u.as_object_mut(),
                        ev.get("usage").and_then(Value::as_object),
                    ) {
                        for (k, v) in delta {
                            u.insert(k.clone(), v.clone());
                        }
                    }
                    let c = json!({
                        "id": self.id,
                        "object": "chat.completion.chunk",
                        "created": self.created,
                        "model": self.model,
                        "choices": [],
                        "usage": usage_of(&u),
                    });
                    push_data(out, &c);
                }
            }
            Some("message_stop") => {
                self.done = true;
                out.extend_from_slice(b"data: [DONE]\n\n");
            }
            Some("error") => {
                let e = ev.get("error").unwrap_or(&Value::Null);
                let err = to_openai_error(500, &json!({ "error": e }).to_string());
                out.extend_from_slice(b"data: ");
                out.extend_from_slice(&err);
                out.extend_from_slice(b"\n\n");
                self.done = true;
                out.extend_from_slice(b"data: [DONE]\n\n");
            }
            // `ping`, `content_block_stop` and unknown events carry nothing for OpenAI.
            _ => {}
        }
    }
}

fn push_data(out: &mut Vec<u8>, v: &Value) {
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(v.to_string().as_bytes());
    out.extend_from_slice(b"\n\n");
}

/// Where the first complete SSE event ends: its length and the separator's.
fn event_end(buf: &[u8]) -> Option<(usize, usize)> {
    let mut i = 0;
    while i < buf.len() {
        if buf[i] == b'\n' {
            if buf.get(i + 1) == Some(&b'\n') {
                return Some((i, 2));
            }
            if buf.get(i + 1) == Some(&b'\r') && buf.get(i + 2) == Some(&b'\n') {
                return Some((i, 3));
            }
        }
        i += 1;
    }
    None
}
