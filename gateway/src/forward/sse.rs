//! Streams that fail end cleanly: an error in the body of a `text/event-stream` answer
//! (a stall the routing layer detected, `router_settings.stream_stall_timeout`, or an
//! upstream that broke off) becomes one last SSE event in OpenAI's streaming error shape,
//! then `data: [DONE]`, then the end of the stream. Without it the client's connection
//! would be cut mid-body (or, for a stall without the timer, left hanging).
//!
//! The shape is LiteLLM 1.109's (`proxy_server.py`, `async_data_generator`: any failure
//! mid-stream ends the body as `data: {"error": {...}}` and `data: [DONE]`):
//!
//! ```text
//! data: {"error": {"message": "…", "type": "timeout", "param": null, "code": "408"}}
//!
//! data: [DONE]
//!
//! ```
//!
//! A stall is `"type": "timeout"`, `"code": "408"` (LiteLLM's `Timeout` is a 408); any
//! other failure `"type": "upstream_error"`, `"code": "502"`. The message is scrubbed of
//! every configured secret.

use std::{
    pin::Pin,
    task::{Context, Poll},
};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use serde_json::json;
use tower_health_routing::{BoxError, StreamStalled, secret::Scrubber};

/// Whether an answer is a server-sent-event stream (its `Content-Type`).
pub fn is_event_stream(headers: &HeaderMap) -> bool {
    headers.get(http::header::CONTENT_TYPE).is_some_and(|v| {
        // The media type compared as bytes first (most answers are JSON); a value that is
        // not visible ASCII is no event stream, as before.
        let b = v.as_bytes();
        let media = b.split(|&c| c == b';').next().unwrap_or(b);
        media
            .trim_ascii()
            .eq_ignore_ascii_case(b"text/event-stream")
            && v.to_str().is_ok()
    })
}

/// The closing events for a stream that failed with `err`: the error event, then
/// `data: [DONE]`.
///
/// ```
/// use thr_gateway::forward::sse::error_event;
/// use tower_health_routing::secret::Scrubber;
/// let e: tower_health_routing::BoxError = "connection reset".into();
/// let out = String::from_utf8(error_event(&*e, &Scrubber::default()).to_vec()).unwrap();
/// assert!(out.starts_with(r#"data: {"error":{"#), "{out}");
/// assert!(out.ends_with("\n\ndata: [DONE]\n\n"), "{out}");
/// ```
pub fn error_event(err: &(dyn std::error::Error + 'static), scrubber: &Scrubber) -> Bytes {
    let mut cur = Some(err);
    let mut stalled = None;
    while let Some(e) = cur {
        if let Some(s) = e.downcast_ref::<StreamStalled>() {
            stalled = Some(s);
            break;
        }
        cur = e.source();
    }
    let (message, kind, code) = match stalled {
        Some(s) => (s.to_string(), "timeout", "408"),
        None => (
            format!("the upstream's stream failed: {err}"),
            "upstream_error",
            "502",
        ),
    };
    let message = scrubber.scrub(&message).into_owned();
    let event = json!({"error": {"message": message, "type": kind, "param": null, "code": code}});
    Bytes::from(format!("data: {event}\n\ndata: [DONE]\n\n"))
}

/// A stream body whose error, if any, becomes the closing events of [`error_event`].
#[derive(Debug)]
pub struct SseErrors<B> {
    inner: B,
    scrubber: Scrubber,
    done: bool,
}

impl<B> SseErrors<B> {
    /// Wraps `inner`; messages are scrubbed with `scrubber`.
    pub fn new(inner: B, scrubber: Scrubber) -> Self {
        Self {
            inner,
            scrubber,
            done: false,
        }
    }
}

impl<B> Body for SseErrors<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.done {
            return Poll::Ready(None);
        }
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Err(e))) => {
                let e: BoxError = e.into();
                self.done = true;
                let event = error_event(&*e, &self.scrubber);
                let error = self.scrubber.scrub(&e.to_string()).into_owned();
                if e.is::<StreamStalled>() {
                    // The routing layer logged the stall (`stream stalled; ending it`).
                    tracing::debug!(%error, "ended the client's stream with an error event");
                } else {
                    tracing::warn!(
                        %error,
                        "the upstream's stream failed; ended the client's stream with an error event"
                    );
                }
                Poll::Ready(Some(Ok(Frame::data(event))))
            }
            Poll::Ready(None) => {
                self.done = true;
                Poll::Ready(None)
            }
            other => other.map(|f| f.map(|r| r.map_err(Into::into))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        // The closing events may add bytes: no exact length.
        let mut h = SizeHint::new();
        h.set_lower(self.inner.size_hint().lower());
        h
    }
}
