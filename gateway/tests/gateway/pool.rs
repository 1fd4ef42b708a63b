//! The forwarder's own connection pool for `http://` upstreams: connections are reused
//! across requests, never when the upstream closes them or when an answer was not read to
//! the end, and requests go out in origin form with the upstream's `Host`.
#![allow(clippy::disallowed_types)] // the test upstream's request log

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering::SeqCst},
    },
};

use bytes::Bytes;
use http_body_util::{Full, StreamBody};
use hyper::{Request, Response, body::Frame, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use thr_testkit::RawUpstream;
use tower_health_routing::{Config, Deployment};

use crate::support::{self, chat};

const ANSWER: &str = r#"{"id":"c1","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}]}"#;

/// A keep-alive HTTP/1 upstream that counts the connections it accepted and records each
/// request's target and `Host`; the first answer's body stalls after one chunk when
/// `stall_first` is set.
struct Counting {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<(String, String)>>>,
}

impl Counting {
    async fn start(stall_first: bool) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (acc, log) = (Arc::clone(&accepted), Arc::clone(&seen));
        let served = Arc::new(AtomicUsize::new(0));
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                acc.fetch_add(1, SeqCst);
                let (log, served) = (Arc::clone(&log), Arc::clone(&served));
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                        let host = req
                            .headers()
                            .get(http::header::HOST)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_owned();
                        log.lock().unwrap().push((req.uri().to_string(), host));
                        let first = served.fetch_add(1, SeqCst) == 0;
                        async move {
                            let body: http_body_util::combinators::BoxBody<Bytes, Infallible> =
                                if stall_first && first {
                                    let chunk = futures_util::stream::once(async {
                                        Ok::<_, Infallible>(Frame::data(Bytes::from_static(
                                            b"{\"id\":",
                                        )))
                                    });
                                    let stall = futures_util::stream::pending();
                                    http_body_util::BodyExt::boxed(StreamBody::new(
                                        futures_util::StreamExt::chain(chunk, stall),
                                    ))
                                } else {
                                    http_body_util::BodyExt::boxed(Full::new(Bytes::from_static(
                                        ANSWER.as_bytes(),
                                    )))
                                };
                            Ok::<_, Infallible>(
                                Response::builder()
                                    .header("content-type", "application/json")
                                    .body(body)
                                    .unwrap(),
                            )
                        }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Self {
            addr,
            accepted,
            seen,
        }
    }
}

fn config(api_base: String) -> Config {
    Config::builder()
        .deployment(
            Deployment::builder("pool-gpt", "openai/pool-gpt")
                .id("pool-1")
                .api_base(api_base)
                .api_key("sk-pool-upstream-key")
                .build(),
        )
        .build()
        .unwrap()
}

#[tokio::test]
async fn sequential_requests_share_one_upstream_connection_in_origin_form() {
    let up = Counting::start(false).await;
    let gw = support::start(config(format!("http://{}/v1", up.addr))).await;
    for _ in 0..4 {
        let r = chat(gw.addr, "pool-gpt").await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["id"], "c1");
    }
    assert_eq!(up.accepted.load(SeqCst), 1, "one connection, reused");
    let seen = up.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 4);
    for (target, host) in seen {
        assert_eq!(target, "/v1/chat/completions");
        assert_eq!(host, up.addr.to_string());
    }
    gw.shutdown().await;
}

#[tokio::test]
async fn an_answer_not_read_to_the_end_does_not_put_its_connection_back() {
    let up = Counting::start(true).await;
    let gw = support::start(config(format!("http://{}/v1", up.addr))).await;
    // The client reads the head of the stalled answer, then goes away.
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let req = http::Request::post(format!("http://{}/v1/chat/completions", gw.addr))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(
            r#"{"model":"pool-gpt","messages":[{"role":"user","content":"hi"}]}"#,
        )))
        .unwrap();
    let head = client.request(req).await.unwrap();
    assert_eq!(head.status(), 200);
    drop(head);
    drop(client);
    // The next request gets a new connection and a whole answer.
    let r = chat(gw.addr, "pool-gpt").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["id"], "c1");
    assert_eq!(
        up.accepted.load(SeqCst),
        2,
        "the stalled connection is not reused"
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn an_upstream_that_closes_every_connection_answers_every_request() {
    let up = RawUpstream::start(|| {
        let answer = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{ANSWER}",
            ANSWER.len()
        );
        vec![(answer.into_bytes(), std::time::Duration::ZERO)]
    });
    let gw = support::start(config(up.v1())).await;
    for _ in 0..3 {
        let r = chat(gw.addr, "pool-gpt").await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    assert_eq!(up.count(), 3);
    gw.shutdown().await;
}
