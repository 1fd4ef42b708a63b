//! Helpers shared by the gateway's test binaries: an in-process gateway on 127.0.0.1:0 and
//! a client that reads whole answers.
#![allow(dead_code, unreachable_pub)] // each test binary uses its own part

use std::{net::SocketAddr, time::Duration};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use thr_gateway::app;
use tokio::sync::oneshot;
use tower_health_routing::{Config, HealthState};

/// A gateway serving on a local port; stop it with [`shutdown`](Self::shutdown).
pub struct Running {
    pub addr: SocketAddr,
    pub state: HealthState,
    stop: Option<oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Stops it gracefully (bounded).
    pub async fn shutdown(mut self) {
        let _ = self.stop.take().map(|s| s.send(()));
        tokio::time::timeout(Duration::from_secs(5), self.done)
            .await
            .expect("graceful shutdown")
            .unwrap();
    }
}

/// Starts a gateway for `cfg` with a 5 s upstream timeout and no metrics.
pub async fn start(cfg: Config) -> Running {
    let gw = app::Gateway::new(
        cfg,
        &app::Options {
            upstream_timeout: Duration::from_secs(5),
            max_body: 1 << 20,
            ..app::Options::default()
        },
    )
    .unwrap();
    let state = gw.state.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let done = tokio::spawn(async move {
        gw.serve(listener, async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    Running {
        addr,
        state,
        stop: Some(stop),
        done,
    }
}

/// A whole answer.
pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Reply {
    /// The body as JSON (`Null` when it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// POSTs `body` with `content_type` to `path` on `addr` and reads the whole answer.
pub async fn post(
    addr: SocketAddr,
    path: &str,
    content_type: &str,
    body: impl Into<Bytes>,
) -> Reply {
    let req = http::Request::post(format!("http://{addr}{path}"))
        .header("content-type", content_type)
        .body(Full::new(body.into()))
        .unwrap();
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let (parts, body) = client.request(req).await.unwrap().into_parts();
    Reply {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes(),
    }
}
