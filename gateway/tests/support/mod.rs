//! Helpers shared by the gateway's tests (the grouped `gateway` binary and `faults`): an
//! in-process gateway on 127.0.0.1:0, a client that reads whole answers, a bounded wait, and
//! the one Prometheus recorder a test process may install.
#![allow(dead_code, unreachable_pub)] // each test module uses its own part

use std::{net::SocketAddr, sync::OnceLock, time::Duration};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde_json::{Value, json};
use thr_gateway::{app, drain, routes};
use tokio::{sync::oneshot, task::JoinHandle};
use tower_health_routing::{BoxError, Config, HealthState};

/// How long [`Running::shutdown`] waits for the graceful shutdown.
const SHUTDOWN_BOUND: Duration = Duration::from_secs(15);
/// How long [`fetch`] waits for a whole answer: a hang fails the test instead of stalling it.
const ANSWER_BOUND: Duration = Duration::from_secs(60);

/// A gateway serving on a local port. Stop it with [`shutdown`](Self::shutdown) (which
/// asserts that it stops gracefully, in bounded time); dropping it only signals the stop.
pub struct Running {
    pub addr: SocketAddr,
    pub state: HealthState,
    /// Its drain state (`/health/drain`, SIGTERM).
    pub drain: drain::Drain,
    /// Every route it serves and who may call it.
    pub routes: Vec<routes::Route>,
    stop: Option<oneshot::Sender<()>>,
    done: Option<JoinHandle<Result<(), BoxError>>>,
}

impl Running {
    /// Stops it and waits (at most 15 s) for its graceful shutdown, which must succeed.
    pub async fn shutdown(mut self) {
        let _ = self.stop.take().map(|s| s.send(()));
        let done = self.done.take().expect("not shut down yet");
        tokio::time::timeout(SHUTDOWN_BOUND, done)
            .await
            .expect("graceful shutdown within 15 s")
            .expect("the serving task")
            .expect("serve ends cleanly");
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.stop.take().map(|s| s.send(()));
    }
}

/// The tests' usual options: a 5 s upstream timeout, 1 MiB bodies, no `/metrics`.
pub fn options() -> app::Options {
    app::Options {
        upstream_timeout: Duration::from_secs(5),
        max_body: 1 << 20,
        ..app::Options::default()
    }
}

/// Starts a gateway for `cfg` with [`options`].
pub async fn start(cfg: Config) -> Running {
    start_with(cfg, options()).await
}

/// Starts a gateway for `cfg` with `options` on 127.0.0.1:0.
pub async fn start_with(cfg: Config, options: app::Options) -> Running {
    let gw = app::Gateway::new(cfg, &options).unwrap();
    let state = gw.state.clone();
    let drain = gw.drain.clone();
    let routes = gw.routes().to_vec();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let done = tokio::spawn(gw.serve(listener, async {
        let _ = stopped.await;
    }));
    Running {
        addr,
        state,
        drain,
        routes,
        stop: Some(stop),
        done: Some(done),
    }
}

/// The Prometheus recorder of this test process, installed on first use. Only one recorder
/// can be installed per process, and every gateway in it records there: a test that reads
/// metrics filters by its own route and deployment names.
pub fn metrics() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).expect("the only recorder of this process");
            handle
        })
        .clone()
}

/// A whole answer.
pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Reply {
    /// The body as JSON (`Null` when it is not).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
    /// The body as JSON; panics (showing the body) when it is not.
    pub fn expect_json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|_| panic!("not JSON: {}", self.text()))
    }
    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    /// A header's value (`""` when absent).
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap())
            .unwrap_or_default()
    }
    /// The deployment that served it (`x-litellm-model-id`, `""` when absent).
    pub fn served_by(&self) -> String {
        self.header("x-litellm-model-id").to_owned()
    }
}

/// Sends `req` and reads the whole answer (at most 60 s).
pub async fn fetch(req: http::Request<Full<Bytes>>) -> Reply {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    tokio::time::timeout(ANSWER_BOUND, async move {
        let (parts, body) = client.request(req).await.unwrap().into_parts();
        Reply {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body: body.collect().await.unwrap().to_bytes(),
        }
    })
    .await
    .expect("a whole answer within 60 s")
}

/// `GET path`, with `key` as a bearer token when given.
pub async fn get(addr: SocketAddr, path: &str, key: Option<&str>) -> Reply {
    let mut req = http::Request::get(format!("http://{addr}{path}"));
    if let Some(k) = key {
        req = req.header("authorization", format!("Bearer {k}"));
    }
    fetch(req.body(Full::new(Bytes::new())).unwrap()).await
}

/// POSTs `body` with `content_type` to `path` on `addr` and reads the whole answer.
pub async fn post(
    addr: SocketAddr,
    path: &str,
    content_type: &str,
    body: impl Into<Bytes>,
) -> Reply {
    send(addr, path, body, &[("content-type", content_type)]).await
}

/// POSTs `body` as JSON to `path`, with `key` as a bearer token when given.
pub async fn post_json(addr: SocketAddr, path: &str, body: Value, key: Option<&str>) -> Reply {
    let auth = key.map(|k| format!("Bearer {k}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", a.as_str())).collect();
    send(addr, path, body.to_string(), &headers).await
}

/// POSTs `body` to `path` with `headers` (and `content-type: application/json` unless one
/// of them is a content type).
pub async fn send(
    addr: SocketAddr,
    path: &str,
    body: impl Into<Bytes>,
    headers: &[(&str, &str)],
) -> Reply {
    let mut req = http::Request::post(format!("http://{addr}{path}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if !headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
    {
        req = req.header("content-type", "application/json");
    }
    fetch(req.body(Full::new(body.into())).unwrap()).await
}

/// A one-message chat completion for route `model`.
pub async fn chat(addr: SocketAddr, model: &str) -> Reply {
    chat_as(addr, model, None).await
}

/// A one-message chat completion for route `model`, with `key` as a bearer token when given.
pub async fn chat_as(addr: SocketAddr, model: &str, key: Option<&str>) -> Reply {
    let body = json!({"model": model, "messages": [{"role": "user", "content": "hi"}]});
    post_json(addr, "/v1/chat/completions", body, key).await
}

/// Waits (real time, bounded) until `cond` holds.
pub async fn until(limit: Duration, mut cond: impl FnMut() -> bool) {
    let start = tokio::time::Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < limit,
            "condition not met within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
