//! The HTTP prober and the loop's rounds against real local servers (real time, short
//! bounded waits): outcomes and reasons, timeouts, the concurrency bound, disabled
//! deployments, publication, and shutdown leaving no task.

use std::{num::NonZeroUsize, sync::Arc, time::Duration};

use crate::support::{
    eventually, many, state_with,
    upstream::{Reply, Upstream},
};
use tokio::time::Instant;
use tower_health_routing::{
    Deployment, HealthState,
    probe::{HttpProber, ProbeDefaults, ProbeLoop, ProbeOutcome, ProbeTarget, Prober},
};

const KEY: &str = "sk-live-abcdef123456";

fn loop_over(state: &HealthState) -> ProbeLoop {
    ProbeLoop::builder(state)
        .defaults(ProbeDefaults::default())
        .build()
        .expect("loop")
}

async fn outcome_for(reply: Reply) -> ProbeOutcome {
    let up = Upstream::start(move |_| reply.clone());
    let d = Deployment::builder("r", "openai/gpt-4o")
        .api_base(up.v1())
        .api_key(KEY)
        .build();
    HttpProber::new(ProbeDefaults::default())
        .expect("prober")
        .probe(Arc::new(d))
        .await
}

#[tokio::test]
async fn outcomes_by_status() {
    let o = outcome_for(Reply::ok()).await;
    assert_eq!((o.healthy, o.status, o.reason), (true, Some(200), None));

    let o = outcome_for(Reply::status(
        503,
        r#"{"error":{"message":"upstream overloaded"}}"#,
    ))
    .await;
    assert_eq!(
        (o.healthy, o.status, o.reason.as_deref()),
        (false, Some(503), Some("status 503: upstream overloaded"))
    );

    let o = outcome_for(Reply::status(502, "")).await;
    assert_eq!(o.reason.as_deref(), Some("status 502: Bad Gateway"));

    let o = outcome_for(
        Reply::status(429, r#"{"error":{"message":"slow down"}}"#).header("retry-after", "12"),
    )
    .await;
    assert_eq!(
        (o.status, o.retry_after),
        (Some(429), Some(Duration::from_secs(12)))
    );
    assert!(o.is_transient());
}

#[tokio::test]
async fn upstream_text_quoting_the_key_is_scrubbed() {
    let body = format!(
        r#"{{"error":{{"message":"Incorrect API key provided: {KEY}. Find yours at ..."}}}}"#
    );
    let o = outcome_for(Reply::status(401, body)).await;
    let r = o.reason.expect("reason");
    assert!(!r.contains(KEY), "{r}");
    assert!(
        r.starts_with("status 401: Incorrect API key provided: [redacted]"),
        "{r}"
    );
}

#[tokio::test]
async fn a_malformed_probe_is_reported_as_probe_rejected() {
    let o = outcome_for(Reply::status(
        400,
        r#"{"error":{"message":"Unrecognized request argument supplied: max_tokens","type":"invalid_request_error"}}"#,
    ))
    .await;
    assert_eq!(o.status, Some(400));
    assert_eq!(
        o.reason.as_deref(),
        Some("probe_rejected: Unrecognized request argument supplied: max_tokens")
    );
    // A 400 that says nothing about the request's shape is an upstream failure.
    let o = outcome_for(Reply::status(
        400,
        r#"{"error":{"message":"content filtered","code":"content_filter"}}"#,
    ))
    .await;
    assert_eq!(o.reason.as_deref(), Some("status 400: content filtered"));
}

#[tokio::test]
async fn a_closed_port_is_a_connect_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let d = Deployment::builder("r", "openai/gpt-4o")
        .api_base(format!("http://127.0.0.1:{port}/v1"))
        .build();
    let o = HttpProber::new(ProbeDefaults::default())
        .expect("prober")
        .probe(Arc::new(d))
        .await;
    assert_eq!((o.healthy, o.status), (false, None));
    // The reason as hyper-util's client gave it, now that a plain-HTTP probe goes
    // through the prober's own pool.
    assert!(
        o.reason
            .as_deref()
            .unwrap_or("")
            .starts_with("connect: tcp connect error: "),
        "{o:?}"
    );
    assert_eq!(
        o.class,
        Some(tower_health_routing::classify::Class::Connection)
    );
}

/// A local upstream that counts the connections it accepts and records each request's
/// target and `Host`; with `close`, each answer says `Connection: close`; each answer
/// comes after `delay`.
struct Counting {
    addr: std::net::SocketAddr,
    connections: Arc<std::sync::atomic::AtomicUsize>,
    #[allow(clippy::disallowed_types)]
    seen: Arc<std::sync::Mutex<Vec<(String, String)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Counting {
    async fn start(close: bool, delay: Duration) -> Self {
        use hyper::{Response, body::Bytes, server::conn::http1, service::service_fn};
        use std::sync::atomic::Ordering::SeqCst;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        #[allow(clippy::disallowed_types)]
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (count, log) = (Arc::clone(&connections), Arc::clone(&seen));
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                count.fetch_add(1, SeqCst);
                let log = Arc::clone(&log);
                tokio::spawn(async move {
                    let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let host = req
                            .headers()
                            .get("host")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_owned();
                        log.lock().unwrap().push((req.uri().to_string(), host));
                        async move {
                            if !delay.is_zero() {
                                tokio::time::sleep(delay).await;
                            }
                            let mut resp = Response::new(http_body_util::Full::new(
                                Bytes::from_static(br#"{"choices":[]}"#),
                            ));
                            if close {
                                resp.headers_mut()
                                    .insert("connection", "close".parse().unwrap());
                            }
                            Ok::<_, std::convert::Infallible>(resp)
                        }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Self {
            addr,
            connections,
            seen,
            task,
        }
    }

    fn deployment(&self) -> Arc<Deployment> {
        Arc::new(
            Deployment::builder("r", "openai/gpt-4o")
                .api_base(format!("http://{}/v1", self.addr))
                .api_key(KEY)
                .build(),
        )
    }

    fn connections(&self) -> usize {
        self.connections.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for Counting {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test]
async fn probes_of_a_plain_http_upstream_share_one_kept_connection_in_origin_form() {
    let up = Counting::start(false, Duration::ZERO).await;
    let prober = HttpProber::new(ProbeDefaults::default()).expect("prober");
    let d = up.deployment();
    for i in 0..3 {
        let o = prober.probe(Arc::clone(&d)).await;
        assert!(o.healthy, "probe {i}: {o:?}");
        // The cheap tier's `GET /models` goes the same way.
        let cheap = prober
            .probe_cheap(Arc::clone(&d))
            .expect("a cheap tier")
            .await;
        assert!(cheap.healthy, "cheap probe {i}: {cheap:?}");
    }
    assert_eq!(up.connections(), 1, "one connection, kept between probes");
    let seen = up.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 6);
    let host = up.addr.to_string();
    for (target, h) in &seen {
        assert!(
            target == "/v1/chat/completions" || target == "/v1/models",
            "origin form: {target}"
        );
        assert_eq!(h, &host);
    }
}

#[tokio::test]
async fn an_upstream_that_closes_its_connections_gets_a_new_one_for_each_probe() {
    let up = Counting::start(true, Duration::ZERO).await;
    let prober = HttpProber::new(ProbeDefaults::default()).expect("prober");
    let d = up.deployment();
    for i in 0..3 {
        let o = prober.probe(Arc::clone(&d)).await;
        assert!(o.healthy, "probe {i}: {o:?}");
    }
    assert_eq!(up.connections(), 3);
}

/// Reads one request (head and `Content-Length` body) from `stream`; `None` at its end.
async fn read_one(stream: &mut tokio::net::TcpStream, buf: &mut Vec<u8>) -> Option<()> {
    use tokio::io::AsyncReadExt;
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                buf.drain(..end + 4 + len);
                return Some(());
            }
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[tokio::test]
async fn a_probe_on_a_kept_connection_the_upstream_drops_is_sent_again_on_a_new_one() {
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    use tokio::io::AsyncWriteExt;
    // Each connection answers its first request and, keeping it open as if for another,
    // drops it when the next request arrives, without answering: what an upstream that
    // closes idle connections does when a request crosses its close. The request went
    // out, so only a request that may go twice is sent again.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let requests = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&requests);
    let server = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let seen = Arc::clone(&seen);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                if read_one(&mut stream, &mut buf).await.is_none() {
                    return;
                }
                seen.fetch_add(1, SeqCst);
                let body = r#"{"choices":[]}"#;
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
                if stream.write_all(answer.as_bytes()).await.is_err() {
                    return;
                }
                if read_one(&mut stream, &mut buf).await.is_some() {
                    seen.fetch_add(1, SeqCst);
                }
                // Dropped here, unanswered.
            });
        }
    });
    let prober = HttpProber::new(ProbeDefaults::default()).expect("prober");
    let d = Arc::new(
        Deployment::builder("r", "openai/gpt-4o")
            .api_base(format!("http://{addr}/v1"))
            .api_key(KEY)
            .build(),
    );
    for i in 0..4 {
        let o = prober.probe(Arc::clone(&d)).await;
        assert!(o.healthy, "probe {i}: {o:?}");
    }
    // The first probe once; each later one twice (dropped on the kept connection, then
    // answered on a new one).
    assert_eq!(requests.load(SeqCst), 1 + 3 * 2);
    server.abort();
}

#[tokio::test]
async fn an_idle_connection_older_than_the_pool_idle_timeout_is_not_reused() {
    let up = Counting::start(false, Duration::ZERO).await;
    let prober = HttpProber::builder()
        .pool_idle_timeout(Duration::from_nanos(1))
        .build()
        .expect("prober");
    let d = up.deployment();
    for i in 0..2 {
        let o = prober.probe(Arc::clone(&d)).await;
        assert!(o.healthy, "probe {i}: {o:?}");
    }
    assert_eq!(
        up.connections(),
        2,
        "the first connection was idle too long"
    );
}

#[tokio::test]
async fn a_hanging_upstream_costs_only_its_timeout() {
    let hang = Upstream::start(|_| Reply::hang());
    let fast = Upstream::ok();
    let mut ds = many("fast", 6, &fast.v1());
    let mut slow = Deployment::builder("slow", "openai/gpt-4o")
        .id("slow")
        .api_base(hang.v1());
    slow.info_mut().health_check_timeout = Some(Duration::from_millis(300));
    ds.insert(0, slow.build());
    // Two slots: the hanging probe holds one for 300 ms, the six fast ones share the other.
    let state = state_with(ds, |b| {
        b.health_check_concurrency(NonZeroUsize::new(2).expect("2"))
    });
    let probes = loop_over(&state);
    let t0 = Instant::now();
    let report = probes.run_round().await.expect("state alive");
    let elapsed = t0.elapsed();
    assert!(
        elapsed >= Duration::from_millis(300) && elapsed < Duration::from_millis(1500),
        "{elapsed:?}"
    );
    let s = report.get("slow").expect("slow probed");
    assert_eq!(
        (s.outcome.status, s.outcome.reason.as_deref()),
        (Some(408), Some("timeout"))
    );
    for r in report.healthy() {
        assert!(
            r.latency < Duration::from_millis(250),
            "{} waited {:?}",
            r.id(),
            r.latency
        );
        assert!(
            r.checked_at - t0 < Duration::from_millis(250),
            "{} finished late",
            r.id()
        );
    }
    assert_eq!(report.healthy().count(), 6);
    let snap = state.snapshot();
    assert_eq!(
        snap.health("slow").map(|h| (h.healthy, h.status)),
        Some((false, Some(408)))
    );
}

#[tokio::test]
async fn the_concurrency_bound_holds() {
    let up = Upstream::start_with_threads(2, |_| Reply::ok().after(Duration::from_millis(40)));
    let state = state_with(many("r", 24, &up.v1()), |b| {
        b.health_check_concurrency(NonZeroUsize::new(4).expect("4"))
    });
    let probes = loop_over(&state);
    // A background round and an on-demand round at once share the bound.
    let (bg, now) = tokio::join!(probes.run_round(), probes.check_now(ProbeTarget::All));
    assert_eq!(
        (bg.expect("alive").results.len(), now.results.len()),
        (24, 24)
    );
    assert_eq!(up.count(), 48);
    assert_eq!(
        up.peak_in_flight(),
        4,
        "peak must reach but never exceed the bound"
    );
}

#[tokio::test]
async fn unbounded_without_a_limit() {
    let up = Upstream::start_with_threads(2, |_| Reply::ok().after(Duration::from_millis(150)));
    let state = state_with(many("r", 16, &up.v1()), |b| b);
    loop_over(&state).run_round().await.expect("alive");
    assert_eq!(up.peak_in_flight(), 16);
}

#[tokio::test]
async fn disabled_deployments_are_skipped_in_background_and_on_demand_when_asked() {
    let on = Upstream::ok();
    let off = Upstream::ok();
    let ds = || {
        vec![
            Deployment::builder("r", "openai/gpt-4o")
                .id("on")
                .api_base(on.v1())
                .build(),
            Deployment::builder("r", "openai/gpt-4o")
                .id("off")
                .api_base(off.v1())
                .disable_background_health_check(true)
                .build(),
        ]
    };
    let state = state_with(ds(), |b| b);
    let probes = loop_over(&state);
    let report = probes.run_round().await.expect("alive");
    assert_eq!((report.results.len(), on.count(), off.count()), (1, 1, 0));
    assert!(state.snapshot().health("off").is_none(), "never checked");
    // On demand, a disabled deployment is probed unless the skip setting is on.
    assert_eq!(probes.check_now(ProbeTarget::All).await.results.len(), 2);
    assert_eq!(off.count(), 1);
    let state = state_with(ds(), |b| {
        b.health_check_skip_disabled_background_models(true)
    });
    let probes = loop_over(&state);
    assert_eq!(
        probes
            .check_now(ProbeTarget::ModelId("off".into()))
            .await
            .results
            .len(),
        0
    );
    assert_eq!(probes.check_now(ProbeTarget::All).await.results.len(), 1);
    assert_eq!(off.count(), 1);
}

#[tokio::test]
async fn a_round_publishes_one_snapshot_with_status_and_reason() {
    let good = Upstream::ok();
    let bad = Upstream::start(|_| Reply::status(500, r#"{"error":{"message":"boom"}}"#));
    let state = state_with(
        vec![
            Deployment::builder("r", "openai/gpt-4o")
                .id("good")
                .api_base(good.v1())
                .build(),
            Deployment::builder("r", "openai/gpt-4o")
                .id("bad")
                .api_base(bad.v1())
                .build(),
        ],
        |b| b,
    );
    let v0 = state.snapshot().version();
    loop_over(&state).run_round().await.expect("alive");
    let snap = state.snapshot();
    assert_eq!(snap.version(), v0 + 1);
    assert_eq!((snap.healthy_count(), snap.unhealthy_count()), (1, 1));
    let h = snap.health("bad").expect("checked");
    assert_eq!(
        (h.healthy, h.status, h.reason.as_deref()),
        (false, Some(500), Some("status 500: boom"))
    );
    assert_eq!(
        snap.health("good").map(|h| (h.healthy, h.status)),
        Some((true, Some(200)))
    );
}

#[tokio::test]
async fn shutdown_mid_round_returns_fast_and_leaves_no_task() {
    let metrics = tokio::runtime::Handle::current().metrics();
    let baseline = metrics.num_alive_tasks();
    let hang = Upstream::start(|_| Reply::hang());
    let state = state_with(many("r", 5, &hang.v1()), |b| b);
    let probes = loop_over(&state);
    let handle = probes.spawn();
    assert!(
        eventually(Duration::from_secs(2), || hang.count() == 5).await,
        "probes in flight"
    );
    assert!(
        metrics.num_alive_tasks() > baseline,
        "the loop and its connections are running"
    );
    let t0 = Instant::now();
    handle.shutdown().await;
    assert!(
        t0.elapsed() < Duration::from_millis(100),
        "{:?}",
        t0.elapsed()
    );
    drop(probes);
    assert!(
        eventually(Duration::from_secs(2), || metrics.num_alive_tasks()
            == baseline)
        .await,
        "{} tasks left",
        metrics.num_alive_tasks() - baseline
    );
    drop(state);
}

#[tokio::test]
async fn a_pool_keeps_as_many_idle_connections_as_it_is_told() {
    use http_body_util::{BodyExt, Full};
    use tower_health_routing::probe::pool::{Pools, origin_form};
    // Three requests at once, twice: the second three find the connections the first
    // gave back, as many as the pool kept.
    for (max, opened) in [(2, 4), (usize::MAX, 3)] {
        let up = Counting::start(false, Duration::from_millis(100)).await;
        let uri: http::Uri = format!("http://{}/v1/models", up.addr).parse().unwrap();
        let pool = Pools::default()
            .max_idle_per_host(max)
            .for_uri(&uri)
            .expect("an http:// pool");
        let one = || {
            let pool = Arc::clone(&pool);
            let req = http::Request::get(origin_form(&uri))
                .body(Full::new(bytes::Bytes::new()))
                .unwrap();
            async move {
                let resp = pool.send(req).await.expect("an answer");
                // Read to the end: the connection goes back to the pool.
                resp.into_body().collect().await.expect("the body");
            }
        };
        for _ in 0..2 {
            tokio::join!(one(), one(), one());
        }
        assert_eq!(up.connections(), opened, "max_idle_per_host {max}");
    }
}
