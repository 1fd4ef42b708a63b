//! HealthState: publication, the staleness watchdog and its fallback, deployment changes.

use std::time::Duration;

use crate::support::{Logs, config, deployments};
use tokio::time::{Instant, advance};
use tower_health_routing::{DeploymentId, HealthState, health::HealthRecord, routing::Picker};

fn fail(state: &HealthState, ids: &[&str]) {
    let now = Instant::now();
    state.record(ids.iter().map(|id| {
        (
            DeploymentId::from(*id),
            HealthRecord::unhealthy(now, "timeout", Some(408)),
        )
    }));
}

fn picked(state: &HealthState, id: &str, n: usize) -> bool {
    let mut p = Picker::new(state.clone()).with_seed(1);
    let snap = state.load();
    (0..n).any(|_| p.pick(&snap, "m", &[]).unwrap().deployment().id().as_str() == id)
}

fn routed_state() -> HealthState {
    HealthState::new(
        config("m", 3)
            .enable_health_check_routing(true)
            .health_check_interval(Duration::from_secs(10))
            .build()
            .unwrap(),
    )
}

#[tokio::test(start_paused = true)]
async fn publishing_logs_the_litellm_state_line() {
    let (logs, _g) = Logs::capture();
    let state = routed_state();
    let now = Instant::now();
    state.record([
        (DeploymentId::from("d0"), HealthRecord::healthy(now)),
        (DeploymentId::from("d1"), HealthRecord::healthy(now)),
        (
            DeploymentId::from("d2"),
            HealthRecord::unhealthy(now, "status 500", Some(500)),
        ),
    ]);
    assert!(
        logs.text()
            .contains("health_check_routing_state_updated healthy=2 unhealthy=1"),
        "{}",
        logs.text()
    );
    let snap = state.snapshot();
    assert_eq!((snap.healthy_count(), snap.unhealthy_count()), (2, 1));
    assert_eq!(snap.health("d2").unwrap().status, Some(500));
    assert_eq!(snap.last_updated(), Some(now));
}

#[tokio::test(start_paused = true)]
async fn unknown_ids_in_results_are_ignored() {
    let state = routed_state();
    let v = state.snapshot().version();
    state.record([(
        DeploymentId::from("nope"),
        HealthRecord::healthy(Instant::now()),
    )]);
    let snap = state.snapshot();
    assert_eq!(snap.version(), v + 1);
    assert_eq!((snap.healthy_count(), snap.unhealthy_count()), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn the_watchdog_republishes_when_a_result_goes_stale() {
    let state = routed_state();
    fail(&state, &["d1"]);
    let v = state.snapshot().version();
    advance(Duration::from_secs(20)).await;
    assert_eq!(state.snapshot().version(), v, "nothing is stale yet");
    advance(Duration::from_millis(1)).await;
    // The watchdog was woken by `advance`; let it run.
    tokio::task::yield_now().await;
    assert_eq!(state.snapshot().version(), v + 1, "republished at expiry");
    assert!(picked(&state, "d1", 100));
}

#[tokio::test(start_paused = true)]
async fn the_watchdog_ends_with_the_state() {
    let metrics = tokio::runtime::Handle::current().metrics();
    let base = metrics.num_alive_tasks();
    let state = routed_state();
    fail(&state, &["d1"]);
    tokio::task::yield_now().await;
    assert_eq!(metrics.num_alive_tasks(), base + 1, "one watchdog");
    fail(&state, &["d2"]);
    assert_eq!(metrics.num_alive_tasks(), base + 1, "still one");
    drop(state);
    tokio::task::yield_now().await;
    assert_eq!(metrics.num_alive_tasks(), base, "gone with the state");
}

/// A state fed from synchronous code has no runtime to host the watchdog: the request
/// path then checks staleness against the clock itself, with the same answers.
#[test]
fn without_a_runtime_the_request_path_checks_staleness_itself() {
    let state = routed_state();
    fail(&state, &["d1"]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async {
        assert!(!picked(&state, "d1", 100), "fresh failure excludes");
        advance(Duration::from_secs(21)).await;
        let v = state.snapshot().version();
        assert!(picked(&state, "d1", 100), "stale failure is ignored");
        assert_eq!(state.snapshot().version(), v, "no republication was needed");
    });
}

#[tokio::test(start_paused = true)]
async fn changing_deployments_keeps_state_of_those_that_stay() {
    let state = routed_state();
    fail(&state, &["d1"]);
    let mut ds = deployments("m", 2);
    ds.push(
        tower_health_routing::Deployment::builder("other", "openai/x")
            .id("x")
            .build(),
    );
    state.set_deployments(&ds);
    let snap = state.snapshot();
    assert_eq!(snap.deployments().len(), 3);
    assert!(!snap.health("d1").unwrap().healthy, "kept");
    assert!(snap.deployment("d2").is_none(), "removed");
    assert_eq!(snap.route("other").unwrap().count(), 1);
    let mut routes: Vec<_> = snap.routes().collect();
    routes.sort();
    assert_eq!(routes, ["m", "other"]);
}

#[tokio::test(start_paused = true)]
async fn a_deployment_listed_under_two_routes_is_one_deployment() {
    use tower_health_routing::{Config, Deployment};
    let a = Deployment::builder("alias-a", "openai/m")
        .id("same")
        .build();
    let b = Deployment::builder("alias-b", "openai/m")
        .id("same")
        .build();
    let state = HealthState::new(
        Config::builder()
            .deployment(a)
            .deployment(b)
            .build()
            .unwrap(),
    );
    let snap = state.snapshot();
    assert_eq!(snap.deployments().len(), 1);
    assert_eq!(
        snap.route("alias-a").unwrap().next().unwrap().id().as_str(),
        "same"
    );
    assert_eq!(
        snap.route("alias-b").unwrap().next().unwrap().id().as_str(),
        "same"
    );
}
