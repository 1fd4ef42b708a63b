//! Unsupported deployments in routing: an unroutable one is never picked, whatever the
//! strategy; a route of only such ones is `UnsupportedRoute` (not a cooldown 429); one
//! that is only unprobeable (`routable`) is still picked. Marks survive publications.

use tower_health_routing::{
    Deployment, HealthState, UnsupportedRoute,
    config::RoutingStrategy,
    health::{HealthRecord, Unsupported},
    routing::{PickError, Picker},
};

use crate::support::state_with;

fn d(route: &str, id: &str) -> Deployment {
    Deployment::builder(route, "openai/m")
        .id(id)
        .api_base("http://127.0.0.1:9/v1")
        .build()
}

fn state() -> HealthState {
    let s = state_with(
        vec![
            d("mixed", "gone"),
            d("mixed", "ok"),
            d("mixed", "unprobed"),
            d("dead", "gone-2"),
        ],
        |b| b.enable_health_check_routing(true),
    );
    s.mark_unsupported([
        (
            "gone".into(),
            Unsupported::new("provider `x` is not supported: no", false),
        ),
        (
            "gone-2".into(),
            Unsupported::new("provider `y` is not supported: no", false),
        ),
        ("unprobed".into(), Unsupported::new("cannot probe", true)),
    ]);
    s
}

#[test]
fn unroutable_deployments_are_never_picked_by_any_strategy() {
    let s = state();
    for strategy in [
        RoutingStrategy::SimpleShuffle,
        RoutingStrategy::RoundRobin,
        RoutingStrategy::LeastBusy,
        RoutingStrategy::PowerOfTwoChoices,
        RoutingStrategy::LatencyBased,
        RoutingStrategy::CostBased,
        RoutingStrategy::UsageBasedV2,
    ] {
        let mut p = Picker::new(s.clone()).with_seed(3).with_strategy(strategy);
        let snap = s.load();
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..200 {
            let pick = p.pick(&snap, "mixed", &[]).unwrap();
            seen.insert(pick.deployment().id().to_string());
        }
        assert!(!seen.contains("gone"), "{strategy}: {seen:?}");
        assert!(seen.contains("ok"), "{strategy}: {seen:?}");
    }
    // Listed in the route all the same (for /health), and counted.
    let snap = s.snapshot();
    assert_eq!(snap.route("mixed").unwrap().len(), 3);
    assert_eq!(snap.unsupported_count(), 3);
}

#[test]
fn a_route_of_only_unroutable_deployments_is_unsupported_route() {
    let s = state();
    let mut p = Picker::new(s.clone());
    let snap = s.load();
    let e = p.pick(&snap, "dead", &[]).unwrap_err();
    let PickError::Unsupported(e) = e else {
        panic!("expected Unsupported, got {e:?}")
    };
    assert_eq!(e.route(), "dead");
    assert!(e.reason().contains("provider `y` is not supported"), "{e}");
    assert!(
        PickError::Unsupported(e)
            .into_box_error()
            .is::<UnsupportedRoute>(),
        "downcastable"
    );
}

#[test]
fn marks_survive_publications_and_the_first_reason_stays() {
    let s = state();
    let t = tokio::time::Instant::now();
    s.record([("ok".into(), HealthRecord::unhealthy(t, "down", Some(500)))]);
    s.mark_unsupported([("gone".into(), Unsupported::new("later reason", true))]);
    let snap = s.snapshot();
    let u = snap.unsupported("gone").unwrap();
    assert_eq!(
        (&*u.reason, u.routable),
        ("provider `x` is not supported: no", false)
    );
    // Health filter: `ok` failed, `unprobed` is unknown: the pick avoids `ok` and never
    // falls back to the unroutable one.
    let mut p = Picker::new(s.clone()).with_seed(1);
    for _ in 0..50 {
        let pick = p.pick(&snap, "mixed", &[]).unwrap();
        assert_eq!(pick.deployment().id().as_str(), "unprobed");
    }
    // Everything else excluded: the unroutable one is still not offered.
    let e = p
        .pick(&snap, "mixed", &["ok".into(), "unprobed".into()])
        .unwrap_err();
    assert!(matches!(e, PickError::NoDeploymentAvailable(_)), "{e:?}");
}
