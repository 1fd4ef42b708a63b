//! `Config::server`: the gateway-only keys (boot check, limits, drain, `/metrics` auth).

use std::time::Duration;

use tower_health_routing::{Config, config::ServerSettings};

const MODELS: &str = "model_list:\n  - model_name: m\n    litellm_params:\n      model: openai/m\n";

#[test]
fn server_keys_are_read_with_litellm_names() {
    let text = format!(
        "{MODELS}general_settings:\n  dangerously_permit_weak_or_unset_master_key: true\n  \
         max_request_size_mb: 1.5\n  max_request_header_size_kb: 16\n  header_read_timeout: 2.5\n  \
         max_connections: 100\n  enable_drain_endpoint: true\n  drain_endpoint_token: drain-tok-91c\n  \
         graceful_shutdown_timeout: 12\nlitellm_settings:\n  require_auth_for_metrics_endpoint: false\n"
    );
    let cfg = Config::from_yaml_str(&text).unwrap();
    let s = &cfg.server;
    assert!(s.dangerously_permit_weak_or_unset_master_key);
    assert_eq!(s.max_request_size_mb, Some(1.5));
    assert_eq!(s.max_request_header_size_kb, Some(16.0));
    assert_eq!(s.header_read_timeout, Some(Duration::from_millis(2500)));
    assert_eq!(s.max_connections, Some(100));
    assert!(s.enable_drain_endpoint);
    assert_eq!(
        s.drain_endpoint_token.as_ref().map(|t| t.expose()),
        Some("drain-tok-91c")
    );
    assert_eq!(s.graceful_shutdown_timeout, Some(Duration::from_secs(12)));
    assert_eq!(s.require_auth_for_metrics_endpoint, Some(false));
    // The drain token is a secret: scrubbed, never in Debug.
    assert_eq!(cfg.scrubber().scrub("x drain-tok-91c y"), "x [redacted] y");
    assert!(!format!("{cfg:?}").contains("drain-tok-91c"));
}

#[test]
fn server_keys_default_to_unset() {
    let cfg = Config::from_yaml_str(MODELS).unwrap();
    assert_eq!(cfg.server, ServerSettings::default());
}

#[test]
fn bad_server_values_name_their_field() {
    for (key, value) in [
        ("max_request_size_mb", "0"),
        ("max_request_header_size_kb", "-1"),
        ("header_read_timeout", "0"),
        ("max_connections", "0"),
    ] {
        let text = format!("{MODELS}general_settings:\n  {key}: {value}\n");
        let e = Config::from_yaml_str(&text).unwrap_err();
        assert_eq!(e.field(), format!("general_settings.{key}"), "{e}");
    }
}
