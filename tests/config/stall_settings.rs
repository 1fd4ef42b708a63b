//! `router_settings.stream_stall_timeout`: off by default, seconds (ints, floats, numeric
//! strings), and the rejected values, each naming the key; the builder checks the same.

use std::time::Duration;

use tower_health_routing::{Config, error::ConfigErrorKind};

const KEY: &str = "router_settings.stream_stall_timeout";

fn parse(yaml: &str) -> Result<Config, tower_health_routing::ConfigError> {
    Config::from_yaml_str_with_env(yaml, &|_| None)
}

#[test]
fn stream_stall_timeout_is_off_by_default() {
    let cfg = parse("router_settings:\n  num_retries: 1\n").unwrap();
    assert_eq!(cfg.router.stream_stall_timeout, None);
    let cfg = parse("router_settings:\n  stream_stall_timeout: null\n").unwrap();
    assert_eq!(cfg.router.stream_stall_timeout, None);
    assert_eq!(
        Config::builder()
            .build()
            .unwrap()
            .router
            .stream_stall_timeout,
        None
    );
}

#[test]
fn stream_stall_timeout_takes_seconds() {
    for (v, want) in [
        ("30", Duration::from_secs(30)),
        ("0.3", Duration::from_millis(300)),
        ("\"12.5\"", Duration::from_millis(12_500)),
    ] {
        let cfg = parse(&format!("router_settings:\n  stream_stall_timeout: {v}\n")).unwrap();
        assert_eq!(cfg.router.stream_stall_timeout, Some(want), "{v}");
    }
    let cfg = Config::builder()
        .stream_stall_timeout(Duration::from_secs(7))
        .build()
        .unwrap();
    assert_eq!(
        cfg.router.stream_stall_timeout,
        Some(Duration::from_secs(7))
    );
}

#[test]
fn bad_stream_stall_timeouts_are_refused_naming_the_key() {
    for v in ["0", "-1", ".nan", ".inf", "soon", "[1]", "1e30"] {
        let e = parse(&format!("router_settings:\n  stream_stall_timeout: {v}\n")).expect_err(v);
        assert_eq!(e.field(), KEY, "{v}: {e}");
        assert!(e.to_string().contains("stream_stall_timeout"), "{v}: {e}");
    }
    let e = parse("router_settings:\n  stream_stall_timeout: 0\n").unwrap_err();
    assert!(
        matches!(e.kind(), ConfigErrorKind::Invalid(why) if why == "must be greater than zero"),
        "{e:?}"
    );
    let e = Config::builder()
        .stream_stall_timeout(Duration::ZERO)
        .build()
        .unwrap_err();
    assert_eq!(e.field(), KEY);
    assert!(e.to_string().contains("greater than zero"), "{e}");
}
