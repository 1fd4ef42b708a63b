//! Test helpers of the native cloud probes: a local HTTP server on 127.0.0.1:0 whose
//! answers a closure decides, a client that sends a built probe and turns the answer into a
//! [`Outcome`] the way the HTTP prober does (2xx healthy, else unhealthy with the
//! status), and TRACE-level log capture.
// A Mutex guards the captured log buffers in tests only; never on the request path.
#![allow(clippy::disallowed_types)]

use std::{
    collections::HashMap,
    convert::Infallible,
    io,
    net::SocketAddr,
    sync::{Arc, Mutex, Once, OnceLock},
    thread::ThreadId,
};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::{body::Incoming, service::service_fn};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::{TokioExecutor, TokioIo},
};
use tokio::net::TcpListener;

/// What a test server does with one request (its body read whole).
pub(crate) type Handler = Arc<dyn Fn(Request<Bytes>) -> Response<Full<Bytes>> + Send + Sync>;

/// Serves `handler` on 127.0.0.1:0 until the runtime ends; returns its address.
pub(crate) async fn serve(handler: Handler) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let handler = handler.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| {
                    let handler = handler.clone();
                    async move {
                        let (parts, body) = req.into_parts();
                        let body = body
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        Ok::<_, Infallible>(handler(Request::from_parts(parts, body)))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

/// A JSON response.
pub(crate) fn json(status: StatusCode, body: serde_json::Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

/// Sends `req` over a real connection; the answer's status and body.
pub(crate) async fn send(req: Request<Bytes>) -> (StatusCode, Bytes) {
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let resp = client.request(req.map(Full::new)).await.unwrap();
    let status = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, body)
}

/// A probe's verdict, as the HTTP prober reaches it (the provider layer does not see the
/// prober's `ProbeOutcome`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Outcome {
    pub(crate) healthy: bool,
    pub(crate) status: Option<u16>,
    pub(crate) reason: Option<String>,
}

/// Sends `req` and classifies the answer as the HTTP prober does: 2xx is healthy,
/// anything else unhealthy with its status.
pub(crate) async fn probe(req: Request<Bytes>) -> Outcome {
    let (status, body) = send(req).await;
    let healthy = status.is_success();
    Outcome {
        healthy,
        status: Some(status.as_u16()),
        reason: (!healthy).then(|| {
            format!(
                "status {}: {}",
                status.as_u16(),
                String::from_utf8_lossy(&body)
            )
        }),
    }
}

/// Captures this thread's formatted log lines at TRACE (a `#[tokio::test]` on the
/// current-thread runtime runs its spawned servers on the same thread).
///
/// One global subscriber serves the whole test binary: per-test `set_default`
/// subscribers race tracing's callsite-interest cache under parallel tests.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Logs;

type Buffers = Mutex<HashMap<ThreadId, Vec<u8>>>;

fn buffers() -> &'static Buffers {
    static BUFFERS: OnceLock<Buffers> = OnceLock::new();
    BUFFERS.get_or_init(Default::default)
}

impl Logs {
    /// Starts capturing this thread's events (and forgets what it logged before).
    pub(crate) fn capture() -> Self {
        static INIT: Once = Once::new();
        INIT.call_once(|| {
            let sub = tracing_subscriber::fmt()
                .with_max_level(tracing::Level::TRACE)
                .with_ansi(false)
                .with_writer(Logs)
                .finish();
            // Another test module may have installed one first; then it captures instead.
            let _ = tracing::subscriber::set_global_default(sub);
        });
        buffers()
            .lock()
            .unwrap()
            .remove(&std::thread::current().id());
        Logs
    }

    /// What this thread logged since [`capture`](Self::capture).
    pub(crate) fn text(&self) -> String {
        let map = buffers().lock().unwrap();
        map.get(&std::thread::current().id())
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .unwrap_or_default()
    }
}

impl io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        buffers()
            .lock()
            .unwrap()
            .entry(std::thread::current().id())
            .or_default()
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logs {
    type Writer = Logs;
    fn make_writer(&'a self) -> Self::Writer {
        Logs
    }
}
