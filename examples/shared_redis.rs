//! Run with: `cargo run --example shared_redis --features redis`
//!
//! Two gateways (in one process here; in production, two processes or pods) share health
//! checks through one Redis: each round, one of them takes the lease and probes, the other
//! applies its results. The local upstreams count the probes they receive, which shows
//! that each deployment is probed once per round, not once per gateway. Halfway through,
//! the gateway holding the lease stops and the other one carries on alone.
//!
//! Redis: `REDIS_URL` (default `redis://127.0.0.1:6379`). Start one with
//! `redis-server --port 6379 --save ''` if you have none. The example writes a handful of
//! small keys under the prefix `tower-health-routing-example`.

use std::{
    sync::{Arc, atomic::Ordering::Relaxed},
    time::Duration,
};

use thr_testkit::FakeLlm;
use tower_health_routing::{
    BoxError, Config, Deployment, HealthState, ProbeHandle, ProbeLoop,
    config::RedisSettings,
    secret::Secret,
    shared::{HealthStore, RedisStore},
};

const ROUTE: &str = "gpt-4o-mini";
const INTERVAL: Duration = Duration::from_secs(1);
const PREFIX: &str = "tower-health-routing-example";

/// One gateway: its health state (what its routing layer would read) and its probe loop.
struct Gateway {
    name: &'static str,
    state: HealthState,
    probes: Option<ProbeHandle>,
}

fn gateway(name: &'static str, cfg: Config, redis: &RedisSettings) -> Result<Gateway, BoxError> {
    let state = HealthState::new(cfg);
    // Each gateway has its own store (its own connection), as separate processes would.
    let store = RedisStore::builder(redis).key_prefix(PREFIX).build()?;
    let probes = ProbeLoop::builder(&state)
        .store(Arc::new(store))
        .build()?
        .spawn();
    Ok(Gateway {
        name,
        state,
        probes: Some(probes),
    })
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let redis = RedisSettings::Url(Secret::new(url));
    let check = RedisStore::builder(&redis).key_prefix(PREFIX).build()?;
    if let Err(e) = check.ping().await {
        eprintln!(
            "{e}\nThis example needs a Redis: set REDIS_URL, or start one with \
             `redis-server --port 6379 --save ''`."
        );
        return Err("no Redis".into());
    }

    let ups = [FakeLlm::start("up-0").await?, FakeLlm::start("up-1").await?];
    let cfg = || {
        Config::builder()
            .deployments(ups.iter().map(|u| {
                Deployment::builder(ROUTE, "openai/gpt-4o-mini")
                    .id(u.name.clone())
                    .api_base(u.api_base())
                    .api_key("sk-example-not-a-real-key")
                    .build()
            }))
            .health_check_interval(INTERVAL)
            .enable_health_check_routing(true)
            .build()
    };
    let mut gws = [gateway("A", cfg()?, &redis)?, gateway("B", cfg()?, &redis)?];
    let t0 = tokio::time::Instant::now();

    println!("two gateways share one Redis; a round every {INTERVAL:?}\n");
    println!(
        "{:>4}  {:<25}  {:<25}  {:>5}  {:>11}",
        "t", "gateway A", "gateway B", "token", "probes 0/1"
    );
    for second in 1..=8 {
        tokio::time::sleep(INTERVAL).await;
        if second == 5 {
            // The gateway that probed last stops; the other one takes the next rounds.
            let last = check.observe().await?.round.map(|r| r.checked_by);
            if let Some(g) = gws
                .iter_mut()
                .find(|g| Some(&g.state.shared_status().process_id) == last.as_ref())
            {
                println!("      -- gateway {} stops --", g.name);
                if let Some(p) = g.probes.take() {
                    p.shutdown().await;
                }
            }
        }
        let cells: Vec<String> = gws
            .iter()
            .map(|g| {
                let st = g.state.shared_status();
                let role = if st.last_checked_by.as_deref() == Some(st.process_id.as_str()) {
                    "probed"
                } else {
                    "followed"
                };
                format!("{} {:<9} {role}", &st.process_id[..6], st.mode.to_string())
            })
            .collect();
        let token = check.observe().await?.written_token;
        println!(
            "{second:>3}s  {:<25}  {:<25}  {token:>5}  {:>5}/{:<5}",
            cells[0],
            cells[1],
            ups[0].control.requests.load(Relaxed),
            ups[1].control.requests.load(Relaxed),
        );
    }
    let secs = t0.elapsed().as_secs_f64();
    let probes = ups[0].control.requests.load(Relaxed);
    println!(
        "\nup-0 received {probes} probes in {secs:.0} s of rounds every {INTERVAL:?}: one per round. \
         Probing on their own, the two gateways would have sent about {}.",
        2 * probes
    );
    for g in &mut gws {
        if let Some(p) = g.probes.take() {
            p.shutdown().await;
        }
    }
    Ok(())
}
