//! `router_settings.outlier_detection` and `router_settings.panic_threshold_percent`:
//! defaults, every key, and the rejected values (each naming its field).

use std::time::Duration;

use tower_health_routing::{Config, config::OutlierDetection, error::ConfigErrorKind};

fn parse(yaml: &str) -> Result<Config, tower_health_routing::ConfigError> {
    Config::from_yaml_str_with_env(yaml, &|_| None)
}

#[test]
fn off_by_default() {
    let cfg = parse("router_settings:\n  num_retries: 1\n").unwrap();
    assert_eq!(cfg.router.outlier_detection, None);
    assert_eq!(cfg.router.panic_threshold_percent, None);
}

#[test]
fn an_empty_section_turns_it_on_with_envoys_defaults() {
    let cfg = parse("router_settings:\n  outlier_detection: {}\n").unwrap();
    let od = cfg.router.outlier_detection.expect("on");
    assert_eq!(od, OutlierDetection::default());
    assert_eq!(od.consecutive_failures, Some(5));
    assert_eq!(od.failure_percentage, None);
    assert_eq!(od.minimum_requests, 50);
    assert_eq!(od.interval, Duration::from_secs(10));
    assert_eq!(od.base_ejection_time, Duration::from_secs(30));
    assert_eq!(od.max_ejection_time, Duration::from_secs(300));
    assert_eq!(od.max_ejection_percent, 10.0);
    assert_eq!(od.jitter, Duration::ZERO);
    assert_eq!(od.jitter_seed, None);
}

#[test]
fn every_key_parses() {
    let yaml = "\
router_settings:
  panic_threshold_percent: 50
  outlier_detection:
    consecutive_failures: 3
    failure_percentage: \"85\"
    minimum_requests: 20
    interval: 5
    base_ejection_time: 1.5
    max_ejection_time: 60
    max_ejection_percent: 34
    jitter: 0.25
    jitter_seed: 7
";
    let cfg = parse(yaml).unwrap();
    assert_eq!(cfg.router.panic_threshold_percent, Some(50.0));
    let od = cfg.router.outlier_detection.unwrap();
    assert_eq!(od.consecutive_failures, Some(3));
    assert_eq!(od.failure_percentage, Some(85.0));
    assert_eq!(od.minimum_requests, 20);
    assert_eq!(od.interval, Duration::from_secs(5));
    assert_eq!(od.base_ejection_time, Duration::from_millis(1500));
    assert_eq!(od.max_ejection_time, Duration::from_secs(60));
    assert_eq!(od.max_ejection_percent, 34.0);
    assert_eq!(od.jitter, Duration::from_millis(250));
    assert_eq!(od.jitter_seed, Some(7));
}

#[test]
fn zero_consecutive_failures_turns_that_rule_off() {
    let cfg = parse(
        "router_settings:\n  outlier_detection:\n    consecutive_failures: 0\n    failure_percentage: 90\n",
    )
    .unwrap();
    let od = cfg.router.outlier_detection.unwrap();
    assert_eq!(od.consecutive_failures, None);
    assert_eq!(od.failure_percentage, Some(90.0));
}

#[test]
fn bad_values_name_their_field() {
    for (body, field) in [
        (
            "  panic_threshold_percent: 101\n",
            "router_settings.panic_threshold_percent",
        ),
        (
            "  panic_threshold_percent: -1\n",
            "router_settings.panic_threshold_percent",
        ),
        (
            "  outlier_detection:\n    failure_percentage: 150\n",
            "router_settings.outlier_detection.failure_percentage",
        ),
        (
            "  outlier_detection:\n    max_ejection_percent: .nan\n",
            "router_settings.outlier_detection.max_ejection_percent",
        ),
        (
            "  outlier_detection:\n    interval: 0\n",
            "router_settings.outlier_detection.interval",
        ),
        (
            "  outlier_detection:\n    base_ejection_time: -3\n",
            "router_settings.outlier_detection.base_ejection_time",
        ),
        (
            "  outlier_detection:\n    consecutive_failures: -1\n",
            "router_settings.outlier_detection.consecutive_failures",
        ),
    ] {
        let e = parse(&format!("router_settings:\n{body}")).expect_err(body);
        assert_eq!(e.field(), field, "{body}: {e}");
        assert!(
            matches!(e.kind(), ConfigErrorKind::Invalid(_)),
            "{body}: {e:?}"
        );
    }
}

#[test]
fn a_misspelt_key_is_an_error_not_a_silent_default() {
    let e = parse("router_settings:\n  outlier_detection:\n    consecutive_failure: 3\n")
        .expect_err("typo");
    let text = e.to_string();
    assert!(text.contains("consecutive_failure"), "{text}");
}

#[test]
fn the_builder_checks_the_same_rules() {
    let mut od = OutlierDetection::default();
    od.max_ejection_percent = 200.0;
    let e = Config::builder().outlier_detection(od).build().unwrap_err();
    assert_eq!(
        e.field(),
        "router_settings.outlier_detection.max_ejection_percent"
    );
    let e = Config::builder()
        .panic_threshold_percent(f64::INFINITY)
        .build()
        .unwrap_err();
    assert_eq!(e.field(), "router_settings.panic_threshold_percent");
}

#[test]
fn slow_start_window_parses_and_zero_is_off() {
    let cfg = parse("router_settings:\n  slow_start_window: 45\n").unwrap();
    assert_eq!(cfg.router.slow_start_window, Some(Duration::from_secs(45)));
    let cfg = parse("router_settings:\n  slow_start_window: 0\n").unwrap();
    assert_eq!(cfg.router.slow_start_window, None);
    let cfg = parse("router_settings:\n  num_retries: 0\n").unwrap();
    assert_eq!(cfg.router.slow_start_window, None);
    let e = parse("router_settings:\n  slow_start_window: -5\n").unwrap_err();
    assert_eq!(e.field(), "router_settings.slow_start_window");
}

#[test]
fn skip_when_traffic_healthy_parses_and_is_off_by_default() {
    let cfg =
        parse("general_settings:\n  health_check_skip_when_traffic_healthy: \"true\"\n").unwrap();
    assert!(cfg.health.skip_when_traffic_healthy);
    let cfg = parse("general_settings:\n  health_check_interval: 30\n").unwrap();
    assert!(!cfg.health.skip_when_traffic_healthy);
}
