//! Limits that stop abuse early, and HTTP/1 strictness, applied before any handler runs.
//!
//! | limit | default | config.yaml (`general_settings`) | CLI | when broken |
//! |---|---|---|---|---|
//! | request head (request line + headers) | 64 KiB | `max_request_header_size_kb` | `--max-header-size-kb` | 431, connection closed (hyper) |
//! | request body | 64 MiB | `max_request_size_mb` (LiteLLM's) | `--max-request-size-mb` | 413 at once when `Content-Length` says so, else 413 as soon as the limit is passed |
//! | time to send the request head | 30 s | `header_read_timeout` | `--header-read-timeout` | connection closed |
//! | concurrent client connections | 4096 | `max_connections` | `--max-connections` | new connections wait in the listen backlog; one `warn` line per episode |
//!
//! HTTP/1.1 requests need exactly one `Host` header (RFC 9112 §3.2), HTTP/1.0 at most
//! one: else 400. A body that cannot be read (a bad chunk size) is a 400, not a 413.

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use axum::{
    http::{StatusCode, Version, header},
    response::Response,
};
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::conn::auto,
    service::TowerToHyperService,
};
use tokio::sync::Semaphore;
use tower_health_routing::BoxError;

/// Default request head limit: 64 KiB.
pub const DEFAULT_MAX_HEADER_BYTES: usize = 64 << 10;
/// Default request body limit: 64 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 64 << 20;
/// Default time a client has to send a request head.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Default cap on concurrent client connections.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;

/// After a drain, how long open connections get to finish before they are dropped.
pub const CLOSE_WITHIN: Duration = Duration::from_secs(5);

/// Connection-level limits (the body limit is [`Options::max_body`](crate::app::Options::max_body)).
#[derive(Clone, Debug)]
pub struct Limits {
    /// The largest request head (request line and headers), bytes.
    pub max_header_bytes: usize,
    /// Time a client has to send a request's head.
    pub header_read_timeout: Duration,
    /// The most client connections served at once.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

/// Converts a size in MiB/KiB (config or CLI) to bytes, naming `field` when it is not a
/// positive finite number.
pub fn size_bytes(value: f64, unit: usize, field: &str) -> Result<usize, String> {
    if !value.is_finite() || value <= 0.0 {
        return Err(format!("{field}: expected a size greater than 0"));
    }
    let bytes = value * unit as f64;
    if bytes >= usize::MAX as f64 {
        return Err(format!("{field}: too large"));
    }
    Ok(bytes as usize)
}

/// The answer to a request that fails the `Host` rule or declares a body over `max_body`
/// bytes (both close the connection); `None` when it may go on.
pub fn check<B>(req: &http::Request<B>, max_body: usize) -> Option<Response> {
    let hosts = req.headers().get_all(header::HOST).iter().count();
    let bad_host = match req.version() {
        Version::HTTP_11 => hosts != 1,
        Version::HTTP_10 | Version::HTTP_09 => hosts > 1,
        _ => hosts > 1,
    };
    if bad_host {
        let mut r = crate::app::error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "an HTTP/1.1 request needs exactly one Host header",
        );
        r.headers_mut()
            .insert(header::CONNECTION, http::HeaderValue::from_static("close"));
        return Some(r);
    }
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > max_body as u64) {
        let mut r = crate::app::error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            format!("request body too large: the limit is {max_body} bytes"),
        );
        r.headers_mut()
            .insert(header::CONNECTION, http::HeaderValue::from_static("close"));
        return Some(r);
    }
    None
}

/// Serves `router` (an axum `Router`, or the gateway's [`Gated`](crate::app::Gated)
/// service) on `listener` with `limits` until `shutdown` completes, then lets open
/// connections finish their requests.
pub async fn serve<S, B>(
    listener: tokio::net::TcpListener,
    router: S,
    limits: &Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), BoxError>
where
    S: tower::Service<
            http::Request<hyper::body::Incoming>,
            Response = http::Response<B>,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        // hyper answers 431 and closes when the head does not fit (its floor is 8 KiB).
        .max_buf_size(limits.max_header_bytes.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let full = Arc::new(AtomicBool::new(false));
    tokio::pin!(shutdown);
    loop {
        let permit = match Arc::clone(&slots).try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                if !full.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        max_connections = limits.max_connections,
                        "connection limit reached (general_settings.max_connections): new \
                         connections wait until one closes"
                    );
                }
                tokio::select! {
                    p = Arc::clone(&slots).acquire_owned() => p?,
                    () = &mut shutdown => break,
                }
            }
        };
        let (stream, _peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let svc = TowerToHyperService::new(router.clone());
        let (builder, watcher) = (builder.clone(), graceful.watcher());
        let first_byte = limits.header_read_timeout;
        let full = Arc::clone(&full);
        tokio::spawn(async move {
            // hyper's header timer starts with the first byte: a connection that never
            // sends one gets the same time, then is closed.
            if matches!(
                tokio::time::timeout(first_byte, stream.peek(&mut [0u8; 1])).await,
                Ok(Ok(1..))
            ) {
                let conn = builder
                    .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                    .into_owned();
                let _ = watcher.watch(conn).await;
            }
            drop(permit);
            full.store(false, Ordering::Relaxed);
        });
    }
    drop(listener);
    // Idle connections close at once; a response still streaming gets a little longer.
    if tokio::time::timeout(CLOSE_WITHIN, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the drain; closing them");
    }
    Ok(())
}
