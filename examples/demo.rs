//! Run with: `cargo run --release -p thr-demo` (its own package, `demo/`: it builds only what
//! the demo needs; `cargo run --release --example demo` runs the same file but first builds
//! every dev-dependency of the library).
//!
//! The embedded default, in one process with no setup: local OpenAI-compatible upstreams
//! behind one route, `HealthRoutingLayer` with background health checks every second and
//! health routing on, and a steady client. It plays a story and shows it live:
//!
//! 1. all deployments healthy: traffic spreads evenly;
//! 2. `up-1` starts answering 500: cooldown reacts at once (`allowed_fails: 3`), the next
//!    probe marks it unhealthy, and traffic stays away while it fails;
//! 3. every deployment fails its health check (`up-1` still errors; the others are too slow
//!    for the 200 ms probe timeout but still serve requests): the health filter is bypassed
//!    rather than failing everything, and cooldown keeps traffic off `up-1`;
//! 4. recovery: everything healthy again, traffic spreads again.
//!
//! Options: `--duration SECS` (30), `--deployments N` (3), `--interval SECS` (1).
//! Output is a table refreshed in place on a terminal, plain lines otherwise.

use std::{
    collections::BTreeMap,
    io::{IsTerminal, Write},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering::Relaxed},
    },
    time::Duration,
};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use thr_testkit::{FakeLlm, Fault};
use tokio::time::Instant;
use tower::{ServiceBuilder, ServiceExt};
use tower_health_routing::{
    BoxError, Config, Deployment, HealthRoutingLayer, HealthState, ModelGroup,
    NoDeploymentAvailable, ProbeLoop, SelectedDeployment,
};

const ROUTE: &str = "gpt-4o-mini";

/// The demo's options.
#[derive(clap::Parser, Debug)]
#[command(about = "Health-check-driven routing, live, against local fake upstreams")]
struct Args {
    /// How long the story lasts, in seconds.
    #[arg(long, default_value_t = 30.0, value_parser = positive)]
    duration: f64,
    /// How many upstream deployments (2 to 9).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(2..=9))]
    deployments: u8,
    /// Seconds between background health checks.
    #[arg(long, default_value_t = 1.0, value_parser = positive)]
    interval: f64,
    /// Only serve the fake upstreams on 127.0.0.1:8001.. (for `examples/config.yaml` and
    /// `thr-gateway`) until Ctrl-C; type `2 500` to make up-2 answer 500, `2 ok` to heal it.
    #[arg(long)]
    serve_upstreams: bool,
    /// With --serve-upstreams: the first port.
    #[arg(long, default_value_t = 8001)]
    base_port: u16,
}

fn positive(s: &str) -> Result<f64, String> {
    s.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v > 0.0)
        .ok_or_else(|| format!("expected seconds > 0, got `{s}`"))
}

/// Per-deployment counts of the current second and of the whole run.
#[derive(Default)]
struct Counts {
    ok: AtomicU64,
    err: AtomicU64,
    total_ok: AtomicU64,
    total_err: AtomicU64,
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let args = <Args as clap::Parser>::parse();
    let (duration, interval) = (
        Duration::from_secs_f64(args.duration),
        Duration::from_secs_f64(args.interval),
    );

    if args.serve_upstreams {
        return serve_upstreams(args.deployments, args.base_port).await;
    }

    // 1. Local upstreams.
    let mut upstreams = Vec::new();
    for i in 1..=args.deployments {
        upstreams.push(FakeLlm::start(&format!("up-{i}")).await?);
    }

    // 2. The config: one route, every upstream a deployment; probes time out after 200 ms.
    let cfg = Config::builder()
        .deployments(upstreams.iter().map(|u| {
            let mut b = Deployment::builder(ROUTE, "openai/gpt-4o-mini")
                .id(u.name.clone())
                .api_base(u.api_base())
                .api_key(format!("sk-demo-{}", u.name))
                .health_check_timeout(Duration::from_millis(200));
            b.info_mut().mode = Some(tower_health_routing::Mode::Chat);
            b.build()
        }))
        .background_health_checks(true)
        .health_check_interval(interval)
        .enable_health_check_routing(true)
        .allowed_fails(3)
        .cooldown_time(Duration::from_secs(2))
        .build()?;
    let routing = HealthRoutingLayer::new(cfg).with_response_extension();
    let state = routing.state().clone();
    let probes = ProbeLoop::new(&state)?.spawn();

    // 3. The gateway: routing in front of a forwarder that sends the request to the chosen deployment.
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let gateway = ServiceBuilder::new()
        .layer(routing)
        .service_fn(move |req: Request<Bytes>| forward(client.clone(), req));

    // 4. A steady client: 8 workers, each about 25 requests per second.
    let counts: Arc<BTreeMap<String, Counts>> = Arc::new(
        upstreams
            .iter()
            .map(|u| (u.name.clone(), Counts::default()))
            .collect(),
    );
    let (no_deployment, running) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicBool::new(true)));
    let mut workers = Vec::new();
    for _ in 0..8 {
        let (gateway, counts, no_deployment, running) = (
            gateway.clone(),
            Arc::clone(&counts),
            Arc::clone(&no_deployment),
            Arc::clone(&running),
        );
        workers.push(tokio::spawn(async move {
            let body = Bytes::from_static(
                br#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#,
            );
            while running.load(Relaxed) {
                let mut req = Request::new(body.clone());
                req.extensions_mut().insert(ModelGroup::new(ROUTE));
                let call =
                    tokio::time::timeout(Duration::from_secs(2), gateway.clone().oneshot(req));
                match call.await {
                    Ok(Ok(resp)) => {
                        let who = resp
                            .extensions()
                            .get::<SelectedDeployment>()
                            .map(|d| d.id().to_string());
                        if let Some(c) = who.and_then(|w| counts.get(&w)) {
                            if resp.status().is_success() {
                                c.ok.fetch_add(1, Relaxed);
                            } else {
                                c.err.fetch_add(1, Relaxed);
                            }
                        }
                    }
                    Ok(Err(e)) if e.is::<NoDeploymentAvailable>() => {
                        no_deployment.fetch_add(1, Relaxed);
                    }
                    Ok(Err(_)) | Err(_) => {}
                }
                tokio::time::sleep(Duration::from_millis(40)).await;
            }
        }));
    }

    // 5. The story, and the live table.
    let tty = std::io::stdout().is_terminal();
    let total = duration;
    let phases = [
        (0.0, "all healthy"),
        (
            0.2,
            "up-1 answers 500: cooldown, then the health check, move traffic away",
        ),
        (
            0.45,
            "every deployment fails its health check: bypass keeps serving, cooldown keeps up-1 out",
        ),
        (0.75, "recovery: all healthy again"),
    ];
    let start = Instant::now();
    let mut phase = usize::MAX;
    let mut printed = 0;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    loop {
        tick.tick().await;
        let t = start.elapsed();
        let frac = t.as_secs_f64() / total.as_secs_f64();
        let now_phase = phases.iter().rposition(|(at, _)| frac >= *at).unwrap_or(0);
        if now_phase != phase {
            phase = now_phase;
            for (i, u) in upstreams.iter().enumerate() {
                u.control.set(match (phase, i) {
                    (1 | 2, 0) => Fault::Error500,
                    (2, _) => Fault::Slow,
                    _ => Fault::None,
                });
            }
        }
        let lines = render(
            &state,
            &upstreams,
            &counts,
            &no_deployment,
            t,
            phases[phase].1,
        );
        if tty {
            if printed > 0 {
                print!("\x1b[{printed}A");
            }
            for l in &lines {
                println!("\x1b[2K{l}");
            }
            printed = lines.len();
        } else {
            println!("{}", lines.join("\n"));
            println!();
        }
        std::io::stdout().flush()?;
        if t >= total {
            break;
        }
    }

    running.store(false, Relaxed);
    for w in workers {
        let _ = w.await;
    }
    probes.shutdown().await;
    println!("\nSummary after {:.0}s:", start.elapsed().as_secs_f64());
    for (name, c) in counts.iter() {
        println!(
            "  {name:<6} served {:>5} ok, {:>4} errors",
            c.total_ok.load(Relaxed),
            c.total_err.load(Relaxed)
        );
    }
    println!(
        "  requests refused with no deployment available: {}",
        no_deployment.load(Relaxed)
    );
    println!(
        "  health filter bypassed when every deployment failed its check; no request was sent to a deployment in cooldown."
    );
    Ok(())
}

/// `--serve-upstreams`: fake upstreams on fixed ports, faults switched from stdin.
async fn serve_upstreams(n: u8, base_port: u16) -> Result<(), BoxError> {
    let mut ups = Vec::new();
    for i in 0..n {
        let port = base_port
            .checked_add(u16::from(i))
            .ok_or("--base-port too high")?;
        let u = FakeLlm::start_on(&format!("up-{}", i + 1), port)
            .await
            .map_err(|e| format!("cannot listen on 127.0.0.1:{port}: {e}"))?;
        println!("{} on {}", u.name, u.api_base());
        ups.push(u);
    }
    println!("type `<n> <fault>` (faults: ok 500 429 slow hang reset flap 401), Ctrl-C to stop");
    let mut lines =
        tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(tokio::io::stdin()));
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            line = lines.next_line() => {
                let Ok(Some(line)) = line else {
                    // stdin closed (e.g. run in the background): keep serving until Ctrl-C.
                    tokio::signal::ctrl_c().await?;
                    return Ok(());
                };
                let mut it = line.split_whitespace();
                match (it.next().and_then(|i| i.parse::<usize>().ok()), it.next().and_then(Fault::parse)) {
                    (Some(i), Some(f)) if (1..=ups.len()).contains(&i) => {
                        ups[i - 1].control.set(f);
                        println!("up-{i}: {}", f.label());
                    }
                    _ => println!("expected `<1..={}> <ok|500|429|slow|hang|reset|flap|401>`", ups.len()),
                }
            }
        }
    }
}

/// Sends the request to the deployment the layer chose, with its key.
async fn forward(
    client: Client<HttpConnector, Full<Bytes>>,
    req: Request<Bytes>,
) -> Result<Response<Bytes>, BoxError> {
    let d = req
        .extensions()
        .get::<SelectedDeployment>()
        .ok_or("no deployment selected")?
        .clone();
    let p = d.params();
    let url = format!(
        "{}/chat/completions",
        p.api_base.as_deref().unwrap_or_default()
    );
    let mut up = Request::post(url).header("content-type", "application/json");
    if let Some(key) = &p.api_key {
        up = up.header("authorization", format!("Bearer {}", key.expose()));
    }
    let resp = client.request(up.body(Full::new(req.into_body()))?).await?;
    let (parts, body) = resp.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok(Response::from_parts(parts, body))
}

fn render(
    state: &HealthState,
    upstreams: &[FakeLlm],
    counts: &BTreeMap<String, Counts>,
    no_deployment: &AtomicU64,
    t: Duration,
    phase: &str,
) -> Vec<String> {
    let snap = state.snapshot();
    let mut lines = vec![
        format!("t={:>4.0}s  phase: {phase}", t.as_secs_f64()),
        format!(
            "  {:<6} {:<7} {:<10} {:<9} {:>6} {:>6}",
            "deploy", "fault", "health", "cooldown", "ok/s", "err/s"
        ),
    ];
    for u in upstreams {
        let health = match snap.health(&u.name) {
            None => "unknown".to_owned(),
            Some(h) if h.healthy => "healthy".to_owned(),
            Some(h) => format!(
                "down {}",
                h.status.map(|s| s.to_string()).unwrap_or_default()
            ),
        };
        let cooldown = state
            .cooldown_remaining(&u.name)
            .map_or("-".to_owned(), |d| format!("{:.1}s", d.as_secs_f64()));
        let c = &counts[&u.name];
        let (ok, err) = (c.ok.swap(0, Relaxed), c.err.swap(0, Relaxed));
        c.total_ok.fetch_add(ok, Relaxed);
        c.total_err.fetch_add(err, Relaxed);
        let bar = "#".repeat((ok as usize).div_ceil(10));
        lines.push(format!(
            "  {:<6} {:<7} {:<10} {:<9} {:>6} {:>6}  {bar}",
            u.name,
            u.control.fault().label(),
            health,
            cooldown,
            ok,
            err
        ));
    }
    let all_down = upstreams
        .iter()
        .all(|u| snap.health(&u.name).is_some_and(|h| !h.healthy));
    lines.push(format!(
        "  health filter: {:<46} no deployment available (429): {}",
        if all_down {
            "BYPASSED (every deployment failed its check)"
        } else {
            "on"
        },
        no_deployment.load(Relaxed)
    ));
    lines
}
