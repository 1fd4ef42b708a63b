//! Probe-round benchmark (a `harness = false` bench: it answers questions criterion's
//! per-iteration statistics do not, namely peak memory and routing latency under load).
//!
//! * A round over 10,000 deployments against a local upstream that answers every probe
//!   after 20 ms, with `health_check_concurrency` 500. Ideal: 10,000 / 500 × 20 ms = 0.4 s;
//!   goal: ≤ 1.25 × ideal.
//! * Memory: peak RSS (`VmHWM`) and RSS after each round (flat = no growth per round).
//!   The upstream runs in a child process (this binary re-executed), so the figures are
//!   the probe loop's alone.
//! * Routing-decision latency (`Picker::pick`, one `load()` + selection) on another
//!   thread, while idle and while a round runs.
//!
//! Run: `cargo bench --bench probe_round`. Without `--bench` (e.g. `cargo test --benches`)
//! it runs a small smoke version. Knobs (environment): `PROBE_ROUND_ROUNDS` (measured
//! rounds, default 5), `PROBE_ROUND_DELAY_MS` (upstream delay, default 20; 0 shows the
//! machinery's own cost), `PROBE_ROUND_WORKERS` (client runtime workers, default tokio's),
//! `PROBE_ROUND_NO_PICKS` (skip the routing-latency phase, e.g. for profiling),
//! `PROBE_ROUND_TIERED` (tiered rounds and a probe budget on: `health_check_billed_every: 5`,
//! a per-minute budget that never refuses),
//! `PROBE_ROUND_N` / `PROBE_ROUND_CONCURRENCY` (deployments, default 10,000; bound, default
//! 500). `benches/probe_scale.sh` runs 100, 1,000 and 10,000 and LiteLLM's `/health` beside.
//!
//! Rounds run as spawned tasks, as the loop's rounds do.

use std::{
    io::{BufRead, BufReader},
    num::NonZeroUsize,
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering::Relaxed},
    },
    time::Duration,
};

use tokio::time::Instant;
use tower_health_routing::{
    Config, Deployment, HealthState,
    probe::RoundReport,
    probe::{ProbeDefaults, ProbeLoop},
    routing::Picker,
};

const SERVER_ENV: &str = "PROBE_ROUND_BENCH_SERVER";
/// The upstream's answer delay (20 ms; `PROBE_ROUND_DELAY_MS` overrides it, e.g. 0 to see
/// the probe machinery's own cost).
fn delay() -> Duration {
    let ms = std::env::var("PROBE_ROUND_DELAY_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    Duration::from_millis(ms)
}

fn main() {
    if std::env::var_os(SERVER_ENV).is_some() {
        serve();
        return;
    }
    let full = std::env::args().any(|a| a == "--bench");
    let (mut n, mut concurrency, mut rounds) = if full { (10_000, 500, 5) } else { (200, 20, 1) };
    let knob = |name: &str| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .filter(|v| *v > 0)
    };
    if let Some(v) = knob("PROBE_ROUND_N") {
        n = v;
    }
    if let Some(v) = knob("PROBE_ROUND_CONCURRENCY") {
        concurrency = v;
    }
    if let Some(r) = std::env::var("PROBE_ROUND_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        rounds = r;
    }
    let server = Server::start();
    // The client's runtime: tokio's default multi-thread one (`PROBE_ROUND_WORKERS` sets
    // its worker count).
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(w) = std::env::var("PROBE_ROUND_WORKERS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        builder.worker_threads(w);
    }
    let rt = builder.enable_all().build().expect("runtime");
    let base = format!("http://{}/v1", server.addr);
    let state = state(n, concurrency, &base);
    let probes = ProbeLoop::builder(&state)
        .defaults(ProbeDefaults::default())
        .build()
        .expect("loop");
    // Waves of `concurrency` probes, each one upstream delay long.
    let ideal = Duration::from_secs_f64(n.div_ceil(concurrency) as f64 * delay().as_secs_f64());
    let (rss0, _) = mem();
    println!(
        "probe_round: {n} deployments, concurrency {concurrency}, upstream delay {:?}, ideal {ideal:?}",
        delay()
    );
    println!("  rss before any round: {:.1} MiB", rss0 as f64 / 1024.0);

    // Warm-up: opens the pooled connections.
    let warm = round(&rt, &probes);
    assert_eq!(warm.healthy().count(), n, "every probe passes");
    let mut times = Vec::new();
    for i in 0..rounds {
        let t0 = Instant::now();
        let report = round(&rt, &probes);
        let took = t0.elapsed();
        assert_eq!(report.healthy().count(), n);
        let (rss, hwm) = mem();
        let mut lat: Vec<Duration> = report.results.iter().map(|r| r.latency).collect();
        lat.sort();
        println!(
            "  round {i}: {:.3} s ({:.2} × ideal); probe latency p50 {:.1} ms, p99 {:.1} ms; rss {:.1} MiB, peak {:.1} MiB",
            took.as_secs_f64(),
            took.as_secs_f64() / ideal.as_secs_f64(),
            lat[lat.len() / 2].as_secs_f64() * 1e3,
            lat[lat.len() * 99 / 100].as_secs_f64() * 1e3,
            rss as f64 / 1024.0,
            hwm as f64 / 1024.0
        );
        times.push(took);
    }
    times.sort();
    let median = times[times.len() / 2];
    println!(
        "  round time: min {:.3} s, median {:.3} s, max {:.3} s; median/ideal {:.2} (goal <= 1.25)",
        times[0].as_secs_f64(),
        median.as_secs_f64(),
        times[times.len() - 1].as_secs_f64(),
        median.as_secs_f64() / ideal.as_secs_f64()
    );

    if std::env::var_os("PROBE_ROUND_NO_PICKS").is_some() {
        return;
    }
    // Routing latency, idle then during a round.
    let idle = pick_latency(&state, n, || {
        thread::sleep_for(if full { 1000 } else { 100 })
    });
    let busy = pick_latency(&state, n, || {
        round(&rt, &probes);
    });
    println!("  pick latency idle:         {idle}");
    println!("  pick latency during round: {busy}");
    let (_, hwm) = mem();
    println!("  peak rss (VmHWM): {:.1} MiB", hwm as f64 / 1024.0);
    drop(server);
}

/// One background round, run as a spawned task (as the loop's rounds are).
fn round(rt: &tokio::runtime::Runtime, probes: &ProbeLoop) -> RoundReport {
    let p = probes.clone();
    rt.block_on(rt.spawn(async move { p.run_round().await }))
        .expect("round task")
        .expect("state alive")
}

fn state(n: usize, concurrency: usize, base: &str) -> HealthState {
    let deployments = (0..n).map(|i| {
        Deployment::builder(format!("route-{}", i % 100), "openai/gpt-4o")
            .id(format!("d-{i}"))
            .api_base(base)
            .api_key("sk-bench")
            .build()
    });
    let mut b = Config::builder()
        .deployments(deployments)
        .enable_health_check_routing(true)
        .health_check_concurrency(NonZeroUsize::new(concurrency).expect("non-zero"));
    if std::env::var_os("PROBE_ROUND_TIERED").is_some() {
        // Tiers and a budget on: a cheap `GET /models` every round, the billed probe every
        // fifth, and a per-minute budget counted (large enough never to refuse).
        let budget = u32::try_from(n.saturating_mul(10)).unwrap_or(u32::MAX);
        b = b
            .health_check_billed_every(std::num::NonZeroU32::new(5).expect("non-zero"))
            .health_check_max_probes_per_minute(
                std::num::NonZeroU32::new(budget.max(1)).expect("non-zero"),
            );
    }
    HealthState::new(b.build().expect("config"))
}

/// Per-pick latency percentiles while `during` runs on this thread. Samples go into a
/// fixed histogram (1 ns buckets up to 1 ms), so measuring costs no memory growth.
fn pick_latency(state: &HealthState, n: usize, during: impl FnOnce()) -> String {
    const BUCKETS: usize = 1_000_000;
    let stop = Arc::new(AtomicBool::new(false));
    let picker = Picker::new(state.clone()).with_seed(1);
    let routes = n.min(100);
    let s = Arc::clone(&stop);
    let worker = thread::spawn(move || {
        let mut picker = picker;
        let mut hist = vec![0u32; BUCKETS + 1];
        let mut max = 0u128;
        let names: Vec<String> = (0..routes).map(|i| format!("route-{i}")).collect();
        let mut i = 0;
        while !s.load(Relaxed) {
            let route = &names[i % names.len()];
            let t0 = Instant::now();
            let snap = picker.state().load();
            let picked = picker.pick(&snap, route, &[]).is_ok();
            let ns = t0.elapsed().as_nanos();
            assert!(picked);
            max = max.max(ns);
            hist[usize::try_from(ns).unwrap_or(BUCKETS).min(BUCKETS)] += 1;
            i += 1;
        }
        (hist, max)
    });
    during();
    stop.store(true, Relaxed);
    let (hist, max) = worker.join().expect("picker thread");
    let total: u64 = hist.iter().map(|&c| u64::from(c)).sum();
    let at = |q: f64| {
        let want = (total as f64 * q).ceil() as u64;
        let mut seen = 0;
        hist.iter()
            .position(|&c| {
                seen += u64::from(c);
                seen >= want
            })
            .unwrap_or(BUCKETS)
    };
    format!(
        "{total} picks, p50 {} ns, p99 {} ns, p99.9 {} ns, max {} us",
        at(0.5),
        at(0.99),
        at(0.999),
        max / 1000
    )
}

/// `std::thread::sleep` is banned (paused time in tests); a bench thread may block on a
/// channel timeout instead.
mod thread {
    pub(crate) use std::thread::spawn;

    pub(crate) fn sleep_for(ms: u64) {
        let (_tx, rx) = std::sync::mpsc::channel::<()>();
        let _ = rx.recv_timeout(std::time::Duration::from_millis(ms));
    }
}

/// (VmRSS, VmHWM) in KiB, from /proc (Linux); zeros elsewhere.
fn mem() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// The upstream, in a child process.
struct Server {
    child: Child,
    addr: String,
}

impl Server {
    fn start() -> Self {
        let exe = std::env::current_exe().expect("bench binary");
        let mut child = Command::new(exe)
            .env(SERVER_ENV, "1")
            .stdout(Stdio::piped())
            .spawn()
            .expect("server process");
        let out = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(out)
            .read_line(&mut line)
            .expect("server address");
        Self {
            child,
            addr: line.trim().to_owned(),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Child mode: answers every request after [`delay`], HTTP/1.1 keep-alive, two worker threads.
fn serve() {
    use http_body_util::Full;
    use hyper::{Response, body::Bytes, server::conn::http1, service::service_fn};
    use hyper_util::rt::TokioIo;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let pause = delay();
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        println!("{}", listener.local_addr().expect("addr"));
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let svc = service_fn(move |_req| async move {
                    tokio::time::sleep(pause).await;
                    Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from_static(
                        br#"{"id":"x","object":"chat.completion","created":1700000000,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}"#,
                    ))))
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
}
