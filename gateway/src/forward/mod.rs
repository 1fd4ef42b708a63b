//! Forwarding to upstreams that do not speak OpenAI's API: the request and response
//! translations, by wire.

pub mod anthropic;
pub mod sse;

/// The forwarder's connection pool for `http://` upstreams (the library's, shared with its
/// prober).
pub use tower_health_routing::probe::pool;

use axum::body::Body;
use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderValue, header};
use http_body_util::{BodyExt, Limited};
use tower_health_routing::{BoxError, secret::Scrubber};

use self::anthropic::{StreamTranslator, Translation};

/// Bytes of a non-streamed Messages response read to translate it.
const MAX_TRANSLATED_BODY: usize = 32 << 20;
/// Bytes of an error body kept to translate it.
const MAX_ERROR_BODY: usize = 64 << 10;

/// The OpenAI-shaped client response for an Anthropic Messages response: a chat
/// completion, a stream of `chat.completion.chunk`s, or an OpenAI-shaped error with the
/// upstream's status (scrubbed by `scrubber`).
pub async fn anthropic_response<B>(
    resp: http::Response<B>,
    t: &Translation,
    scrubber: &Scrubber,
) -> Result<http::Response<Body>, BoxError>
where
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    let (mut parts, body) = resp.into_parts();
    for h in [
        header::CONNECTION,
        header::CONTENT_LENGTH,
        header::TRANSFER_ENCODING,
    ] {
        parts.headers.remove(h);
    }
    if !parts.status.is_success() {
        let raw = match Limited::new(body, MAX_ERROR_BODY).collect().await {
            Ok(b) => String::from_utf8_lossy(&b.to_bytes()).into_owned(),
            Err(_) => String::new(),
        };
        let text = scrubber.scrub(&raw).into_owned();
        parts.headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        let err = anthropic::to_openai_error(parts.status.as_u16(), &text);
        return Ok(http::Response::from_parts(parts, Body::from(err)));
    }
    if t.stream {
        parts.headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        let data = body.into_data_stream();
        let stream = futures_util::stream::unfold(
            (data, StreamTranslator::new(t), false),
            |(mut data, mut tr, ended)| async move {
                if ended {
                    return None;
                }
                loop {
                    match data.next().await {
                        Some(Ok(b)) => {
                            let out = tr.feed(&b);
                            if !out.is_empty() {
                                return Some((
                                    Ok::<_, BoxError>(Bytes::from(out)),
                                    (data, tr, false),
                                ));
                            }
                        }
                        Some(Err(e)) => return Some((Err(e.into()), (data, tr, true))),
                        None => {
                            let out = tr.finish();
                            return Some((Ok(Bytes::from(out)), (data, tr, true)));
                        }
                    }
                }
            },
        );
        return Ok(http::Response::from_parts(parts, Body::from_stream(stream)));
    }
    let raw = Limited::new(body, MAX_TRANSLATED_BODY)
        .collect()
        .await
        .map_err(|e| format!("the Messages response could not be read: {e}"))?
        .to_bytes();
    let out = anthropic::to_chat_completion(&raw)?;
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(http::Response::from_parts(parts, Body::from(out)))
}
