//! A real HTTP server on 127.0.0.1:0 (HTTP/1.1 and h2c) that records every request and
//! answers as told. It runs on its own thread and runtime (the `server`
//! core), so it neither shares the test's clock (paused or not) nor shows up in the test
//! runtime's task count.
#![allow(clippy::disallowed_types)] // test-only recording, not a request path

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering::SeqCst},
    },
    time::Duration,
};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;

use crate::server::{Runtime, Server, serve_http};

/// One request as the server received it.
#[derive(Clone, Debug)]
pub struct Recorded {
    /// The request method.
    pub method: Method,
    /// The URI path.
    pub path: String,
    /// The URI query, if any.
    pub query: Option<String>,
    /// The request headers.
    pub headers: HeaderMap,
    /// The whole request body.
    pub body: Bytes,
    /// The HTTP version it came over.
    pub version: Version,
}

impl Recorded {
    /// The body parsed as JSON (panics with the body when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The JSON body's keys, sorted.
    pub fn keys(&self) -> Vec<String> {
        let mut k: Vec<String> = self
            .json()
            .as_object()
            .expect("a JSON object")
            .keys()
            .cloned()
            .collect();
        k.sort();
        k
    }

    /// Header `name` as text, if present and visible ASCII.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// How to answer one request.
#[derive(Clone, Debug)]
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// The body.
    pub body: String,
    /// Extra response headers.
    pub headers: Vec<(&'static str, String)>,
    /// How long to wait before answering.
    pub delay: Duration,
    /// Never answer (the connection stays open).
    pub hang: bool,
}

impl Reply {
    /// 200 `{"ok":true}`.
    pub fn ok() -> Self {
        Self::status(200, r#"{"ok":true}"#)
    }
    /// `status` with `body`.
    pub fn status(status: u16, body: impl Into<String>) -> Self {
        Self {
            status,
            body: body.into(),
            headers: Vec::new(),
            delay: Duration::ZERO,
            hang: false,
        }
    }
    /// Never answers.
    pub fn hang() -> Self {
        Self {
            hang: true,
            ..Self::ok()
        }
    }
    /// Answers after `d`.
    pub fn after(mut self, d: Duration) -> Self {
        self.delay = d;
        self
    }
    /// Adds response header `k: v`.
    pub fn header(mut self, k: &'static str, v: impl Into<String>) -> Self {
        self.headers.push((k, v.into()));
        self
    }
}

type ReplyFn = dyn Fn(&Recorded) -> Reply + Send + Sync;

struct Shared {
    log: Mutex<Vec<Recorded>>,
    in_flight: AtomicUsize,
    peak: AtomicUsize,
    reply: Box<ReplyFn>,
}

/// The server; stops when dropped.
#[allow(missing_debug_implementations)] // holds the reply closure
pub struct Upstream {
    /// Where it listens.
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    _server: Server,
}

impl Upstream {
    /// A server answering 200 `{"ok":true}` to everything.
    pub fn ok() -> Self {
        Self::start(|_| Reply::ok())
    }

    /// A server answering each request with `reply(request)`.
    pub fn start(reply: impl Fn(&Recorded) -> Reply + Send + Sync + 'static) -> Self {
        Self::start_with_threads(1, reply)
    }

    /// Like [`Upstream::start`], with `threads` runtime worker threads.
    pub fn start_with_threads(
        threads: usize,
        reply: impl Fn(&Recorded) -> Reply + Send + Sync + 'static,
    ) -> Self {
        let shared = Arc::new(Shared {
            log: Mutex::new(Vec::new()),
            in_flight: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            reply: Box::new(reply),
        });
        let sh = Arc::clone(&shared);
        let server = Server::start(0, Runtime::Thread(threads.max(1)), move |stream| {
            let sh = Arc::clone(&sh);
            serve_http(stream, move |req| handle(Arc::clone(&sh), req))
        })
        .expect("start the upstream");
        Self {
            addr: server.addr,
            shared,
            _server: server,
        }
    }

    /// `http://127.0.0.1:port`.
    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://127.0.0.1:port/v1`.
    pub fn v1(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.log.lock().expect("log").clone()
    }

    /// The only request received (panics otherwise).
    pub fn only(&self) -> Recorded {
        let r = self.requests();
        assert_eq!(r.len(), 1, "expected one request, got {r:#?}");
        r.into_iter().next().expect("one")
    }

    /// How many requests it received.
    pub fn count(&self) -> usize {
        self.shared.log.lock().expect("log").len()
    }

    /// The most requests it held at once.
    pub fn peak_in_flight(&self) -> usize {
        self.shared.peak.load(SeqCst)
    }
}

async fn handle(
    sh: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let n = sh.in_flight.fetch_add(1, SeqCst) + 1;
    sh.peak.fetch_max(n, SeqCst);
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let rec = Recorded {
        method: parts.method,
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        headers: parts.headers,
        body,
        version: parts.version,
    };
    let reply = (sh.reply)(&rec);
    sh.log.lock().expect("log").push(rec);
    if reply.hang {
        std::future::pending::<()>().await;
    }
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    sh.in_flight.fetch_sub(1, SeqCst);
    let mut resp = Response::new(Full::new(Bytes::from(reply.body)));
    *resp.status_mut() = StatusCode::from_u16(reply.status).expect("status");
    for (k, v) in reply.headers {
        resp.headers_mut()
            .insert(k, v.parse().expect("header value"));
    }
    Ok(resp)
}
