//! Fault injection: 10,000+ requests through the gateway while scripted faults
//! rotate over real local upstreams (500s, 429 with Retry-After, connection resets, hangs
//! past the timeout, slowness, flapping, death and return).
//!
//! The promise checked: while a route has a serving deployment, every request succeeds;
//! a route with none gets a clean 429/502/503/504, never a hang past the configured bound
//! and never a panic; health routing and cooldown move traffic off faulty deployments; and
//! nothing leaks (tasks and file descriptors come back to where they were).
//!
//! A test binary of its own, not a module of `gateway/`: the leak check counts the whole
//! process's file descriptors and tokio tasks, and the latency bound holds for this load
//! alone, so no other test may run in its process.

mod support;

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::Duration,
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use thr_gateway::app;
use thr_testkit::{FakeLlm, Fault};
use tokio::{sync::Mutex, time::Instant};
use tower_health_routing::{Config, Deployment};

/// Requests per phase and phases: 12 × 900 = 10,800 requests on the serving route.
const PHASES: usize = 12;
const PER_PHASE: usize = 900;
const CONCURRENCY: usize = 16;
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(1);

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

/// The faults of each phase for upstreams 1..=4 (`None`: dead, listener closed).
/// At most three are broken at a time, and every phase keeps a deployment that served
/// cleanly through the phase before: one that just recovered may still be cooling down
/// (its failures of the minute count against it, and its first requests may meet pooled
/// connections to the process that died), so it cannot be the only one left.
fn plan(phase: usize) -> [Option<Fault>; 4] {
    use Fault::*;
    match phase % 6 {
        0 => [Some(None), Some(None), Some(None), Some(None)],
        1 => [Some(Error500), Some(RateLimited), Some(None), Some(None)],
        2 => [Some(None), Some(Reset), Some(Hang), Some(None)],
        3 => [Option::None, Some(Slow), Some(Flap), Some(None)],
        4 => [Some(None), Some(Hang), Some(Error500), Some(None)],
        _ => [Some(Flap), Some(None), Some(Reset), Some(None)],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_requests_through_rotating_faults() {
    let metrics = tokio::runtime::Handle::current().metrics();
    let (tasks_before, fds_before) = (metrics.num_alive_tasks(), open_fds());

    let mut ups: Vec<FakeLlm> = Vec::new();
    for i in 1..=4 {
        ups.push(FakeLlm::start(&format!("up-{i}")).await.unwrap());
    }
    let ports: Vec<u16> = ups.iter().map(|u| u.addr.port()).collect();
    let dead_route = FakeLlm::start("gone").await.unwrap();
    let gone_base = dead_route.api_base();
    drop(dead_route); // its port now refuses connections

    let cfg = Config::builder()
        .deployments(ups.iter().map(|u| {
            Deployment::builder("serving", "openai/gpt-4o-mini")
                .id(u.name.clone())
                .api_base(u.api_base())
                .api_key(format!("sk-fault-{}", u.name))
                .health_check_timeout(Duration::from_millis(100))
                .build()
        }))
        .deployment(
            Deployment::builder("dead", "openai/gpt-4o-mini")
                .id("gone")
                .api_base(gone_base)
                .build(),
        )
        .background_health_checks(true)
        .health_check_interval(Duration::from_millis(100))
        .enable_health_check_routing(true)
        .allowed_fails(2)
        .cooldown_time(Duration::from_millis(500))
        .num_retries(3)
        .build()
        .unwrap();
    let gw = support::start_with(
        cfg,
        app::Options {
            upstream_timeout: UPSTREAM_TIMEOUT,
            ..app::Options::default()
        },
    )
    .await;
    let addr = gw.addr;

    let ups = Arc::new(Mutex::new(ups.into_iter().map(Some).collect::<Vec<_>>()));
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let served: Arc<Mutex<HashMap<(usize, String), u64>>> = Arc::default();
    let (failed, slowest_ms) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut total = 0usize;

    for phase in 0..PHASES {
        // Apply the phase's faults: restart dead upstreams on their port, kill the ones to die.
        {
            let mut ups = ups.lock().await;
            for (i, want) in plan(phase).into_iter().enumerate() {
                match (want, &ups[i]) {
                    (Option::None, Some(_)) => ups[i] = Option::None,
                    (Some(f), Option::None) => {
                        let u = FakeLlm::start_on(&format!("up-{}", i + 1), ports[i])
                            .await
                            .unwrap();
                        u.control.set(f);
                        ups[i] = Some(u);
                    }
                    (Some(f), Some(u)) => u.control.set(f),
                    (Option::None, Option::None) => {}
                }
            }
        }
        let next = Arc::new(AtomicU64::new(0));
        let mut workers = Vec::new();
        for _ in 0..CONCURRENCY {
            let (client, next, served, failed, slowest_ms) = (
                client.clone(),
                Arc::clone(&next),
                Arc::clone(&served),
                Arc::clone(&failed),
                Arc::clone(&slowest_ms),
            );
            workers.push(tokio::spawn(async move {
                while next.fetch_add(1, Relaxed) < PER_PHASE as u64 {
                    let t0 = Instant::now();
                    let (status, by) = chat(&client, addr, "serving").await;
                    slowest_ms.fetch_max(t0.elapsed().as_millis() as u64, Relaxed);
                    if status == 200 {
                        *served.lock().await.entry((phase, by)).or_default() += 1;
                    } else {
                        failed.fetch_add(1, Relaxed);
                        eprintln!("phase {phase}: status {status} from {by}");
                    }
                }
            }));
        }
        for w in workers {
            w.await.unwrap();
        }
        total += PER_PHASE;
        // The dead route: a clean error, quickly.
        let t0 = Instant::now();
        let (status, _) = chat(&client, addr, "dead").await;
        assert!(
            matches!(status, 429 | 502 | 503 | 504),
            "dead route answered {status}"
        );
        assert!(
            t0.elapsed() < Duration::from_secs(3),
            "dead route took {:?}",
            t0.elapsed()
        );
    }

    {
        let served = served.lock().await;
        let per_phase: Vec<Vec<u64>> = (0..PHASES)
            .map(|p| {
                (1..=4)
                    .map(|i| served.get(&(p, format!("up-{i}"))).copied().unwrap_or(0))
                    .collect()
            })
            .collect();
        eprintln!(
            "faults: {total} requests, {} failed, slowest {} ms; served by up-1..4 per phase: {per_phase:?}",
            failed.load(Relaxed),
            slowest_ms.load(Relaxed),
        );
    }
    assert!(total >= 10_000);
    assert_eq!(
        failed.load(Relaxed),
        0,
        "requests lost while the route had a serving deployment"
    );
    // Bound: each attempt ≤ the upstream timeout, 1 + 3 retries, plus backoff for 429s
    // (their Retry-After: 1 s each here).
    let bound = UPSTREAM_TIMEOUT.as_millis() as u64 * 4 + 3_000;
    assert!(
        slowest_ms.load(Relaxed) <= bound,
        "a request took {} ms (bound {bound})",
        slowest_ms.load(Relaxed)
    );

    // Traffic moved: in each phase, a deployment with a hard fault (500, 429, reset, hang,
    // dead) served a small share of the requests (what it served, it served before detection).
    let served = served.lock().await;
    for phase in 0..PHASES {
        for (i, f) in plan(phase).iter().enumerate() {
            let hard = matches!(
                f,
                Option::None
                    | Some(Fault::Error500 | Fault::RateLimited | Fault::Reset | Fault::Hang)
            );
            let n = served
                .get(&(phase, format!("up-{}", i + 1)))
                .copied()
                .unwrap_or(0);
            if hard {
                assert!(
                    n < PER_PHASE as u64 / 10,
                    "phase {phase}: faulty up-{} still served {n}",
                    i + 1
                );
            }
        }
    }
    drop(served);

    // Shut everything down and count what is left. The client goes first: its idle
    // keep-alive connections would otherwise hold the gateway's graceful shutdown for
    // its connection grace period (5 s), racing this timeout.
    drop(client);
    gw.shutdown().await;
    ups.lock().await.clear();
    let settled = async {
        loop {
            if metrics.num_alive_tasks() <= tasks_before && open_fds() <= fds_before {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    if tokio::time::timeout(Duration::from_secs(5), settled)
        .await
        .is_err()
    {
        panic!(
            "leak: tasks {} -> {}, fds {} -> {}",
            tasks_before,
            metrics.num_alive_tasks(),
            fds_before,
            open_fds()
        );
    }
}

async fn chat(
    client: &Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    addr: SocketAddr,
    model: &str,
) -> (u16, String) {
    let body = format!(r#"{{"model":"{model}","messages":[{{"role":"user","content":"hi"}}]}}"#);
    let req = http::Request::post(format!("http://{addr}/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    match tokio::time::timeout(Duration::from_secs(10), client.request(req)).await {
        Ok(Ok(resp)) => {
            let status = resp.status().as_u16();
            let by = resp
                .headers()
                .get("x-litellm-model-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-")
                .to_owned();
            let _ = resp.into_body().collect().await;
            (status, by)
        }
        Ok(Err(e)) => panic!("the gateway dropped a connection: {e}"),
        Err(_) => panic!("the gateway hung for 10 s"),
    }
}
