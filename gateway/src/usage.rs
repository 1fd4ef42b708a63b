//! Token accounting for `usage-based-routing(-v2)` and `tpm` limits, and the prompt-size
//! estimate for `enable_pre_call_checks`.
//!
//! * **Tokens used.** The forwarder streams every 2xx body through untouched (it buffers
//!   only error bodies), so the answer's `usage` is read on the way through: the
//!   forwarder's body ([`ForwardBody`](crate::headers::ForwardBody)) hands each frame of a
//!   JSON or SSE body to a [`UsageScanner`], which looks for the `"usage"` key in each
//!   frame (one SIMD substring search per frame; nothing is parsed until the key is found).
//!   The first `usage` object that is not `null` is parsed (it is only a few dozen bytes)
//!   and reported with [`SelectedDeployment::record_tokens`](tower_health_routing::SelectedDeployment::record_tokens). That covers a buffered JSON
//!   answer (`usage` near its end) and a stream whose final chunk carries `usage` (OpenAI's
//!   `stream_options: {"include_usage": true}`, which sends `"usage": null` on the other
//!   chunks). A stream without `usage` reports nothing: its deployment is counted by
//!   requests only.
//! * **Prompt tokens.** LiteLLM counts a prompt with the model's tokenizer; the gateway
//!   estimates it as a quarter of the characters of the prompt's text (see
//!   [`estimate_request_tokens`]), read only when `enable_pre_call_checks` is on.

use serde_json::Value;
use tower_health_routing::routing::RequestTokens;

const KEY: &[u8] = b"\"usage\"";

/// The most bytes of one `usage` object kept while it arrives (a real one is < 1 KiB).
const MAX_USAGE_OBJECT: usize = 4 << 10;

/// Finds the first non-null `"usage": {...}` object in a body fed to it frame by frame
/// (the key, the colon and the object may each be split across frames) and returns its
/// total tokens: `total_tokens`, else `prompt_tokens + completion_tokens`, else
/// `input_tokens + output_tokens` (the Responses API's names).
///
/// ```
/// use thr_gateway::usage::UsageScanner;
/// let mut s = UsageScanner::new();
/// assert_eq!(s.push(br#"data: {"choices":[],"usage":null}"#), None);
/// assert_eq!(s.push(br#"data: {"choices":[],"usa"#), None);
/// assert_eq!(s.push(br#"ge": {"prompt_tokens":5,"completion_tokens":3}}"#), Some(8));
/// assert_eq!(s.push(br#"{"usage":{"total_tokens":99}}"#), None, "counted once");
/// ```
#[derive(Debug, Default)]
pub struct UsageScanner {
    state: Scan,
}

#[derive(Debug, Default)]
enum Scan {
    /// Looking for the key; `tail` holds the last bytes of the previous frame (fewer than
    /// the key's length) in case the key straddles two frames.
    #[default]
    Seek,
    SeekWithTail(Vec<u8>),
    /// After the key: whitespace, then `:`, then whitespace, then `{` (or anything else,
    /// such as `null`: back to seeking).
    AfterKey {
        colon: bool,
    },
    /// Inside the object.
    Capture(Capture),
    /// Found (or given up): nothing more is looked at.
    Done,
}

#[derive(Debug)]
struct Capture {
    buf: Vec<u8>,
    depth: u32,
    in_str: bool,
    escaped: bool,
}

impl UsageScanner {
    /// A scanner at the start of a body.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether it has found a `usage` object (or given up) and ignores what follows.
    pub fn is_done(&self) -> bool {
        matches!(self.state, Scan::Done)
    }

    /// Feeds the next frame; returns the total tokens once, when the object closes.
    pub fn push(&mut self, mut data: &[u8]) -> Option<u64> {
        loop {
            if data.is_empty() {
                return None;
            }
            match &mut self.state {
                Scan::Done => return None,
                Scan::Seek | Scan::SeekWithTail(_) => {
                    let tail = match std::mem::take(&mut self.state) {
                        Scan::SeekWithTail(t) => t,
                        _ => Vec::new(),
                    };
                    match find_key(&tail, data) {
                        Some(after) => {
                            self.state = Scan::AfterKey { colon: false };
                            data = &data[after..];
                        }
                        None => {
                            let keep = KEY.len() - 1;
                            let mut t = tail;
                            if data.len() >= keep {
                                t.clear();
                                t.extend_from_slice(&data[data.len() - keep..]);
                            } else {
                                t.extend_from_slice(data);
                                let excess = t.len().saturating_sub(keep);
                                t.drain(..excess);
                            }
                            self.state = Scan::SeekWithTail(t);
                            return None;
                        }
                    }
                }
                Scan::AfterKey { colon } => {
                    let mut i = 0;
                    let mut next = None;
                    while i < data.len() {
                        match data[i] {
                            b' ' | b'\t' | b'\r' | b'\n' => {}
                            b':' if !*colon => *colon = true,
                            b'{' if *colon => {
                                // The brace is scanned with the object: one that closes in
                                // this frame is parsed where it lies, uncopied.
                                next = Some(Scan::Capture(Capture {
                                    buf: Vec::new(),
                                    depth: 0,
                                    in_str: false,
                                    escaped: false,
                                }));
                                break;
                            }
                            // `null`, or the word in some other position: keep looking.
                            _ => {
                                next = Some(Scan::Seek);
                                break;
                            }
                        }
                        i += 1;
                    }
                    match next {
                        None => return None,
                        Some(s @ Scan::Capture(_)) => {
                            // Most often the whole object is in this frame: parsed where it
                            // lies, without a byte-by-byte scan for its end. One cut short
                            // by the frame's end is scanned and kept as it arrives.
                            match parse_usage(&data[i..]) {
                                Parsed::Whole(total) => {
                                    self.state = Scan::Done;
                                    return total;
                                }
                                Parsed::CutShort => {
                                    self.state = s;
                                    data = &data[i..];
                                }
                            }
                        }
                        Some(s) => {
                            self.state = s;
                            data = &data[i + 1..];
                        }
                    }
                }
                Scan::Capture(c) => {
                    for (i, &b) in data.iter().enumerate() {
                        if c.in_str {
                            if c.escaped {
                                c.escaped = false;
                            } else if b == b'\\' {
                                c.escaped = true;
                            } else if b == b'"' {
                                c.in_str = false;
                            }
                        } else {
                            match b {
                                b'"' => c.in_str = true,
                                b'{' => c.depth += 1,
                                b'}' => c.depth -= 1,
                                _ => {}
                            }
                        }
                        if c.depth == 0 {
                            let total = if c.buf.is_empty() {
                                total_tokens(&data[..=i])
                            } else {
                                c.buf.extend_from_slice(&data[..=i]);
                                total_tokens(&c.buf)
                            };
                            self.state = Scan::Done;
                            return total;
                        }
                    }
                    c.buf.extend_from_slice(data);
                    if c.buf.len() > MAX_USAGE_OBJECT {
                        self.state = Scan::Done;
                    }
                    return None;
                }
            }
        }
    }
}

/// The searcher for [`KEY`], built once (building one per frame cost more than the search).
fn key_finder() -> &'static memchr::memmem::Finder<'static> {
    static FINDER: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(KEY));
    &FINDER
}

/// The offset in `data` just past the first key that starts in `tail` or `data`.
fn find_key(tail: &[u8], data: &[u8]) -> Option<usize> {
    if !tail.is_empty() {
        // The key across the frame boundary: tail + the start of this frame.
        let mut w = Vec::with_capacity(tail.len() + KEY.len());
        w.extend_from_slice(tail);
        w.extend_from_slice(&data[..data.len().min(KEY.len() - 1)]);
        if let Some(p) = key_finder().find(&w) {
            return Some(p + KEY.len() - tail.len());
        }
    }
    key_finder().find(data).map(|p| p + KEY.len())
}

/// The fields of a `usage` object that count.
#[derive(serde::Deserialize)]
struct Usage {
    total_tokens: Option<u64>,
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
}

/// What [`parse_usage`] made of a frame's rest.
enum Parsed {
    /// The object ended in it: its total tokens (`None`: no count in it, or not a valid
    /// `usage` object, as [`total_tokens`] says of it).
    Whole(Option<u64>),
    /// The frame ended before the object did.
    CutShort,
}

/// The `usage` object at the start of `rest` (a frame's bytes from its `{`), parsed in place.
fn parse_usage(rest: &[u8]) -> Parsed {
    if let Some(u) = parse_flat(rest) {
        return Parsed::Whole(total_of(&u));
    }
    let mut de = serde_json::Deserializer::from_slice(rest);
    match <Usage as serde::Deserialize>::deserialize(&mut de) {
        Ok(u) => Parsed::Whole(total_of(&u)),
        Err(e) if e.is_eof() => Parsed::CutShort,
        // Not a valid `usage` object, whatever follows: the same `None` as once it ends.
        Err(_) => Parsed::Whole(None),
    }
}

/// A flat `usage` object at the start of `rest` (from its `{`) read without serde, as
/// most are (`{"prompt_tokens":5,"completion_tokens":1,"total_tokens":6}`): keys without
/// escapes, each at most once, and values that are `null` or integers in plain digits,
/// which serde reads the same way. `None` for anything else (a nested object, a float, an
/// escape, a repeated key, a number too large, the frame's end before the object's), left
/// to serde, which also says what such an object is.
fn parse_flat(rest: &[u8]) -> Option<Usage> {
    let mut u = Usage {
        total_tokens: None,
        prompt_tokens: None,
        completion_tokens: None,
        input_tokens: None,
        output_tokens: None,
    };
    let mut seen = [false; 5];
    let ws = |b: u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r');
    let mut i = 1; // past the `{`
    while ws(*rest.get(i)?) {
        i += 1;
    }
    if rest[i] == b'}' {
        return Some(u);
    }
    loop {
        // A key, up to its closing quote (an escape: left to serde).
        if rest[i] != b'"' {
            return None;
        }
        let start = i + 1;
        let len = memchr::memchr2(b'"', b'\\', rest.get(start..)?)?;
        if rest[start + len] != b'"' {
            return None;
        }
        let key = &rest[start..start + len];
        i = start + len + 1;
        while ws(*rest.get(i)?) {
            i += 1;
        }
        if rest[i] != b':' {
            return None;
        }
        i += 1;
        while ws(*rest.get(i)?) {
            i += 1;
        }
        // Its value: `null` or plain digits (no leading zero unless alone).
        let value = match rest[i] {
            b'n' => {
                if rest.get(i..i + 4)? != b"null" {
                    return None;
                }
                i += 4;
                None
            }
            b'0'..=b'9' => {
                let first = i;
                let mut n = 0u64;
                while let Some(&b) = rest.get(i).filter(|b| b.is_ascii_digit()) {
                    n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
                    i += 1;
                }
                if i - first > 1 && rest[first] == b'0' {
                    return None;
                }
                Some(n)
            }
            _ => return None,
        };
        let field = match key {
            b"total_tokens" => Some((0, &mut u.total_tokens)),
            b"prompt_tokens" => Some((1, &mut u.prompt_tokens)),
            b"completion_tokens" => Some((2, &mut u.completion_tokens)),
            b"input_tokens" => Some((3, &mut u.input_tokens)),
            b"output_tokens" => Some((4, &mut u.output_tokens)),
            // Another key: plain ASCII only (serde checks the rest).
            _ if key.iter().all(|&b| (0x20..0x80).contains(&b)) => None,
            _ => return None,
        };
        if let Some((k, field)) = field {
            // A repeated field is serde's error.
            if std::mem::replace(&mut seen[k], true) {
                return None;
            }
            *field = value;
        }
        // `,` and the next key, or the end.
        while ws(*rest.get(i)?) {
            i += 1;
        }
        match rest[i] {
            b',' => {
                i += 1;
                while ws(*rest.get(i)?) {
                    i += 1;
                }
            }
            b'}' => return Some(u),
            _ => return None,
        }
    }
}

fn total_tokens(object: &[u8]) -> Option<u64> {
    let u: Usage = serde_json::from_slice(object).ok()?;
    total_of(&u)
}

/// `total_tokens`, else `prompt_tokens + completion_tokens`, else `input_tokens +
/// output_tokens`; `None` for no count or zero.
fn total_of(u: &Usage) -> Option<u64> {
    let sum = |a: Option<u64>, b: Option<u64>| match (a, b) {
        (None, None) => None,
        (a, b) => Some(a.unwrap_or(0).saturating_add(b.unwrap_or(0))),
    };
    u.total_tokens
        .or_else(|| sum(u.prompt_tokens, u.completion_tokens))
        .or_else(|| sum(u.input_tokens, u.output_tokens))
        .filter(|&t| t > 0)
}

/// Whether a response of this `Content-Type` may carry `usage` (JSON or SSE).
pub fn may_carry_usage(content_type: Option<&http::HeaderValue>) -> bool {
    let Some(ct) = content_type.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let ct = ct.trim_start().as_bytes();
    let starts = |p: &[u8]| ct.len() >= p.len() && ct[..p.len()].eq_ignore_ascii_case(p);
    starts(b"application/json") || starts(b"text/event-stream")
}

/// The prompt's estimated tokens, for `enable_pre_call_checks`: the characters of its text
/// divided by 4, rounded up (OpenAI's rule of thumb for English; LiteLLM runs the model's
/// tokenizer instead, so this over- or under-counts by some percent, and undercounts
/// scripts such as Chinese or Japanese, where a character is often a token or more).
///
/// The text is every string under `content` or `text` in `messages` (chat completions;
/// image parts and other fields are not counted), `prompt` (completions) and `input`
/// (embeddings, responses). `None` when the body is not JSON or has none of them.
///
/// ```
/// use thr_gateway::usage::estimate_request_tokens;
/// use tower_health_routing::routing::RequestTokens;
/// let body = br#"{"model":"m","messages":[{"role":"user","content":"twelve chars"}]}"#;
/// assert_eq!(estimate_request_tokens(body), Some(RequestTokens(3)));
/// ```
pub fn estimate_request_tokens(body: &[u8]) -> Option<RequestTokens> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let obj = v.as_object()?;
    let mut chars = 0usize;
    let mut any = false;
    if let Some(msgs) = obj.get("messages").and_then(Value::as_array) {
        any = true;
        for m in msgs {
            chars += text_chars(m.get("content"));
        }
    }
    for key in ["prompt", "input"] {
        if let Some(p) = obj.get(key) {
            any = true;
            chars += text_chars(Some(p));
        }
    }
    any.then(|| RequestTokens(u32::try_from(chars.div_ceil(4)).unwrap_or(u32::MAX)))
}

/// Characters of a prompt value: a string, or an array of strings, of parts with `text`,
/// or of messages with `content` (the Responses API's `input`).
fn text_chars(v: Option<&Value>) -> usize {
    match v {
        Some(Value::String(s)) => s.chars().count(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| match i {
                Value::String(s) => s.chars().count(),
                Value::Object(o) => text_chars(o.get("text")) + text_chars(o.get("content")),
                _ => 0,
            })
            .sum(),
        _ => 0,
    }
}
