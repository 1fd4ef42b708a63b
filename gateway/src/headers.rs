//! What of an upstream's answer reaches the client: an allowlist of response headers, every
//! forwarded value and every body (success or not) scrubbed of every configured secret, and
//! error bodies cut to a size.
//!
//! # Forwarded response headers
//!
//! Only these, under their own names (anything else an upstream sends is dropped):
//!
//! | header | why |
//! |---|---|
//! | `content-type`, `content-language`, `cache-control` | what the body is (SSE needs its `text/event-stream`) |
//! | `content-encoding` | `identity`: the gateway asks upstreams for `accept-encoding: identity`, since it cannot scrub a compressed body, and answers 502 to a compressed one when any secret is configured (with none, it passes as sent) |
//! | `content-length` | only when the body goes byte for byte (no secret configured); otherwise the body is scrubbed and sent chunked |
//! | `x-request-id`, `request-id`, `x-amzn-requestid`, `apim-request-id`, `x-ms-request-id` | request ids, for the provider's support |
//! | `openai-*`, `anthropic-*`, `x-amzn-bedrock-*` | the providers' own (`openai-processing-ms`, `anthropic-ratelimit-*`, ...) |
//! | `x-ratelimit-*`, `ratelimit`, `ratelimit-policy`, `retry-after`, `retry-after-ms` | rate limits, so clients back off |
//!
//! Never forwarded, whatever their name matches: hop-by-hop headers (RFC 9110 §7.6.1:
//! `connection`, `keep-alive`, `proxy-connection`, `proxy-authenticate`,
//! `proxy-authorization`, `te`, `trailer`, `transfer-encoding`, `upgrade`, and every
//! header the upstream's `Connection` names), `set-cookie`, `www-authenticate`,
//! `authorization`, `x-api-key`, and any name that looks like a credential
//! ([`looks_secret`]). Trailers are dropped. The gateway adds `x-litellm-model-id` itself.
//!
//! An interim `101 Switching Protocols` is no answer to an API request: it is a 502.

use std::{
    pin::Pin,
    task::{Context, Poll, ready},
};

use axum::body::Body;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, header};
use http_body_util::BodyExt;
use hyper::body::Frame;
use tower_health_routing::secret::{Scrubber, StreamScrubber, looks_secret};

/// Response headers forwarded by exact name (see the [module docs](self)).
pub const FORWARDED: &[&str] = &[
    "content-type",
    "content-encoding",
    "content-length",
    "content-language",
    "cache-control",
    "retry-after",
    "retry-after-ms",
    "ratelimit",
    "ratelimit-policy",
    "x-request-id",
    "request-id",
    "x-amzn-requestid",
    "apim-request-id",
    "x-ms-request-id",
];

/// Response headers forwarded by prefix.
pub const FORWARDED_PREFIXES: &[&str] =
    &["x-ratelimit-", "openai-", "anthropic-", "x-amzn-bedrock-"];

/// Never forwarded, even when a prefix matches: hop-by-hop (RFC 9110 §7.6.1) and credentials.
pub const NEVER: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "set-cookie",
    "www-authenticate",
    "authorization",
    "x-api-key",
];

/// Whether a response header of this (lower-case) name is forwarded.
pub fn is_forwarded(name: &str) -> bool {
    // The exact names are neither hop-by-hop nor credential-like (a test checks), so only
    // the names a prefix lets in need the slower checks.
    FORWARDED.contains(&name)
        || (FORWARDED_PREFIXES.iter().any(|p| name.starts_with(p))
            && !NEVER.contains(&name)
            && !looks_secret(name))
}

/// Standard headers that [`is_forwarded`] turns away, which upstreams send on most answers
/// (compared by identity in [`response_headers`]).
const DROPPED_STANDARD: [HeaderName; 5] = [
    header::DATE,
    header::SERVER,
    header::CONNECTION,
    header::TRANSFER_ENCODING,
    header::VARY,
];

/// Whether the upstream's `Connection` values name `name` (which is then hop-by-hop).
fn connection_names(connection: &header::GetAll<'_, HeaderValue>, name: &str) -> bool {
    connection
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|n| n.trim().eq_ignore_ascii_case(name))
}

/// The headers of an upstream answer that reach the client: the allowlist minus whatever
/// its `Connection` names, each value scrubbed. `content-length` only when `same_body`
/// (the body goes byte for byte).
pub fn response_headers(upstream: &HeaderMap, scrubber: &Scrubber, same_body: bool) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(upstream.len().min(32));
    let connection = upstream.get_all(header::CONNECTION);
    for (name, value) in upstream {
        if let Some(value) = forwarded_value(&connection, name, value, scrubber, same_body) {
            out.append(HeaderName::clone(name), value);
        }
    }
    out
}

/// [`response_headers`] in place: `headers` keeps only what reaches the client, in its
/// order, in its own storage (a new map costs two allocations, and dropping the old one
/// two frees). An answer with more than `IN_PLACE` header values gets a new map.
pub fn forward_response_headers(headers: &mut HeaderMap, scrubber: &Scrubber, same_body: bool) {
    if headers.len() > IN_PLACE {
        *headers = response_headers(headers, scrubber, same_body);
        return;
    }
    let mut kept: [Option<(HeaderName, HeaderValue)>; IN_PLACE] = Default::default();
    let mut n = 0;
    {
        // Looked up once, not once per forwarded header.
        let connection = headers.get_all(header::CONNECTION);
        for (name, value) in headers.iter() {
            if let Some(value) = forwarded_value(&connection, name, value, scrubber, same_body) {
                kept[n] = Some((HeaderName::clone(name), value));
                n += 1;
            }
        }
    }
    // Emptied, its storage kept; then refilled in the same order.
    headers.clear();
    for (name, value) in kept.iter_mut().take(n).filter_map(Option::take) {
        headers.append(name, value);
    }
}

/// The most header values an upstream answer may have for [`forward_response_headers`] to
/// filter it in place.
const IN_PLACE: usize = 8;

/// The value of an upstream's header as it reaches the client (scrubbed), or `None` when
/// the header is not forwarded.
#[inline]
fn forwarded_value(
    connection: &header::GetAll<'_, HeaderValue>,
    name: &HeaderName,
    value: &HeaderValue,
    scrubber: &Scrubber,
    same_body: bool,
) -> Option<HeaderValue> {
    // The names upstreams send most are told by identity, without comparing strings.
    let forwarded = if name == header::CONTENT_TYPE {
        true
    } else if name == header::CONTENT_LENGTH {
        same_body
    } else if DROPPED_STANDARD.contains(name) {
        false
    } else {
        is_forwarded(name.as_str())
    };
    if !forwarded || connection_names(connection, name.as_str()) {
        return None;
    }
    match scrubber.scrub_bytes(value.as_bytes()) {
        std::borrow::Cow::Borrowed(_) => Some(value.clone()),
        std::borrow::Cow::Owned(v) => HeaderValue::from_bytes(&v).ok(),
    }
}

/// Whether the body is in a content coding other than `identity` (which the gateway cannot
/// scrub).
pub fn is_encoded(headers: &HeaderMap) -> bool {
    headers.get_all(header::CONTENT_ENCODING).iter().any(|v| {
        !v.to_str()
            .is_ok_and(|v| v.trim().eq_ignore_ascii_case("identity"))
    })
}

/// The most of an upstream error body passed on; the rest is cut (see [`read_error_body`]).
pub const MAX_ERROR_BODY: usize = 64 << 10;

/// An upstream error body, scrubbed, and whether it was longer than `limit` bytes and cut.
///
/// Reads no more than `limit` plus the longest secret form: a secret that straddles the cut
/// is removed whole, never shown in part. A body that fails mid-way keeps what came.
pub async fn read_error_body(mut body: Body, scrubber: &Scrubber, limit: usize) -> (Vec<u8>, bool) {
    let mut scrub = scrubber.stream();
    let mut out = Vec::new();
    while let Some(Ok(frame)) = body.frame().await {
        if let Ok(data) = frame.into_data() {
            out.extend(scrub.push(&data));
            if out.len() > limit {
                // What `scrub` holds back may begin a secret: it is dropped with the rest.
                out.truncate(char_boundary(&out, limit));
                return (out, true);
            }
        }
    }
    out.extend(scrub.finish());
    if out.len() > limit {
        out.truncate(char_boundary(&out, limit));
        return (out, true);
    }
    (out, false)
}

/// The largest `n <= at` that does not cut a UTF-8 character of `bytes` in two.
fn char_boundary(bytes: &[u8], at: usize) -> usize {
    let mut n = at.min(bytes.len());
    // A continuation byte (0b10xx_xxxx) is never where a character starts.
    while n > 0 && n < bytes.len() && (bytes[n] & 0xC0) == 0x80 {
        n -= 1;
    }
    n
}

/// The marker that ends the message of a cut error body.
pub const TRUNCATED: &str = "…[truncated]";

/// The JSON error the client gets for an upstream error body cut at `limit` bytes: an
/// OpenAI-style error whose message is the body's first `limit` bytes (scrubbed) followed
/// by [`TRUNCATED`] and a note.
pub fn truncated_error(status: http::StatusCode, head: &[u8], limit: usize) -> Bytes {
    let text = String::from_utf8_lossy(head);
    let message = format!(
        "{text}{TRUNCATED} (the upstream's error body was longer than {limit} bytes; the rest was dropped)"
    );
    let v = serde_json::json!({"error": {
        "message": message,
        "type": "upstream_error",
        "code": status.as_u16().to_string(),
    }});
    Bytes::from(v.to_string())
}

/// A proxied 2xx body, boxed once: the upstream's body, scrubbed chunk by chunk
/// ([`StreamScrubber`]: a secret split across two chunks is caught, and a chunk that cannot
/// begin a secret goes out at once, so SSE is not delayed) when there is something to
/// scrub (then its trailers are dropped and its size is unknown), and its `usage` counted
/// on the scrubbed bytes ([`UsageScanner`](crate::usage::UsageScanner)) when it may carry
/// one. Both in one body type, without a box for each.
#[derive(Debug)]
pub struct ForwardBody<B = hyper::body::Incoming> {
    inner: B,
    scrub: Option<StreamScrubber>,
    done: bool,
    usage: Option<(
        crate::usage::UsageScanner,
        tower_health_routing::SelectedDeployment,
    )>,
}

impl<B> ForwardBody<B> {
    /// `inner`, scrubbed by `scrubber` unless `same` (nothing to scrub), its `usage`
    /// reported to `usage`'s deployment when given.
    pub fn new(
        inner: B,
        scrubber: &Scrubber,
        same: bool,
        usage: Option<tower_health_routing::SelectedDeployment>,
    ) -> Self {
        Self {
            inner,
            scrub: (!same).then(|| scrubber.stream()),
            done: false,
            usage: usage.map(|d| (crate::usage::UsageScanner::new(), d)),
        }
    }

    /// Counts the `usage` of an outgoing data chunk.
    fn count(&mut self, data: &Bytes) {
        if let Some((scanner, selected)) = &mut self.usage
            && !scanner.is_done()
            && let Some(tokens) = scanner.push(data)
        {
            selected.record_tokens(tokens);
        }
    }
}

impl<B> hyper::body::Body for ForwardBody<B>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        if this.scrub.is_none() {
            // Byte for byte (trailers included).
            let res = ready!(Pin::new(&mut this.inner).poll_frame(cx));
            return Poll::Ready(match res {
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        this.count(data);
                    }
                    Some(Ok(frame))
                }
                Some(Err(e)) => Some(Err(axum::Error::new(e))),
                None => None,
            });
        }
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            let Some(scrub) = this.scrub.as_mut() else {
                return Poll::Ready(None);
            };
            match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                Some(Ok(frame)) => {
                    let Ok(data) = frame.into_data() else {
                        continue; // trailers
                    };
                    if this.inner.is_end_stream() {
                        // The last chunk (a `Content-Length` body's): nothing to hold back.
                        this.done = true;
                        let out = scrub.push_last(data);
                        if out.is_empty() {
                            return Poll::Ready(None);
                        }
                        this.count(&out);
                        return Poll::Ready(Some(Ok(Frame::data(out))));
                    }
                    let out = scrub.push_bytes(data);
                    if !out.is_empty() {
                        this.count(&out);
                        return Poll::Ready(Some(Ok(Frame::data(out))));
                    }
                }
                Some(Err(e)) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(axum::Error::new(e))));
                }
                None => {
                    this.done = true;
                    let rest = scrub.finish();
                    if !rest.is_empty() {
                        let rest = Bytes::from(rest);
                        this.count(&rest);
                        return Poll::Ready(Some(Ok(Frame::data(rest))));
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        // A scrubbed body may still hold back a tail until its end is polled.
        self.done || (self.scrub.is_none() && self.inner.is_end_stream())
    }

    fn size_hint(&self) -> http_body::SizeHint {
        if self.scrub.is_some() {
            http_body::SizeHint::default()
        } else {
            self.inner.size_hint()
        }
    }
}

/// The body of a forwarded answer: a proxied 2xx body from an upstream connection, kept
/// unboxed (the client's answer boxes it once, with the layers around it), or any other
/// (an error body, a translated answer), boxed.
#[derive(Debug)]
pub enum ForwardedBody {
    /// A proxied 2xx body ([`ForwardBody`] over the upstream's).
    Upstream(ForwardBody<crate::forward::pool::UpstreamBody>),
    /// Any other body.
    Boxed(Body),
}

impl From<Body> for ForwardedBody {
    fn from(b: Body) -> Self {
        Self::Boxed(b)
    }
}

impl hyper::body::Body for ForwardedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        match self.get_mut() {
            Self::Upstream(b) => Pin::new(b).poll_frame(cx),
            Self::Boxed(b) => Pin::new(b).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Upstream(b) => b.is_end_stream(),
            Self::Boxed(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> http_body::SizeHint {
        match self {
            Self::Upstream(b) => b.size_hint(),
            Self::Boxed(b) => b.size_hint(),
        }
    }
}
