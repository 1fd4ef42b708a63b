//! Keys this crate does not use: ignored with a debug event (top level, settings sections)
//! or kept as a deployment's `extra` (`litellm_params`, `model_info`).

use tower_health_routing::{
    Config, config::HealthCheckSettings, config::RouterSettings, deployment::ParamValue,
};

use super::env_of;

#[test]
fn unknown_keys_are_ignored_or_kept_as_extras() {
    let yaml = "\
environment_variables:
  SOME_VAR: os.environ/NOT_SET_EITHER
some_future_section: {a: 1}
model_list:
  - model_name: a
    litellm_params:
      model: bedrock/anthropic.claude-3
      aws_access_key_id: AKIA-literal
      vertex_credentials: {\"type\": \"service_account\"}
      aws_region_name: us-west-2
      extra_headers: {X-Team: blue}
      timeout: 30
      unset_thing: null
      organization: os.environ/ORG_TOKEN
    model_info:
      base_model: gpt-4
      supports_vision: true
    unknown_entry_key: whatever
general_settings:
  database_url: os.environ/DATABASE_URL
  store_model_in_db: true
router_settings:
  provider_budget_config: {x: y}
litellm_settings:
  success_callback: [langfuse]
";
    let env = env_of(&[("ORG_TOKEN", "org-from-secret-var")]);
    let cfg = Config::from_yaml_str_with_env(yaml, &env).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.health, HealthCheckSettings::default());
    assert_eq!(cfg.router, RouterSettings::default());
    let d = &cfg.deployments[0];
    let extra = &d.params().extra;
    let secret = |k: &str| match extra.get(k) {
        Some(ParamValue::Secret(s)) => s.expose().to_owned(),
        other => panic!("{k} should be a secret, got {other:?}"),
    };
    assert_eq!(secret("aws_access_key_id"), "AKIA-literal");
    assert_eq!(
        secret("vertex_credentials"),
        r#"{"type":"service_account"}"#
    );
    assert_eq!(secret("extra_headers"), r#"{"X-Team":"blue"}"#);
    // A plain name, but read from a secret-looking variable: held as a secret.
    assert_eq!(secret("organization"), "org-from-secret-var");
    assert_eq!(
        extra.get("aws_region_name"),
        Some(&ParamValue::Plain("us-west-2".into()))
    );
    // `timeout` is typed since issue 12 (the gateway's request timeout).
    assert_eq!(d.params().timeout, Some(std::time::Duration::from_secs(30)));
    assert!(!extra.contains_key("timeout"));
    assert!(!extra.contains_key("unset_thing"), "null means unset");
    assert_eq!(extra.len(), 5);
    // The settings sections' unknown keys are kept by path, for the start-up warning.
    assert_eq!(
        cfg.unimplemented_settings,
        [
            "environment_variables",
            "some_future_section",
            "general_settings.database_url",
            "general_settings.store_model_in_db",
            "router_settings.provider_budget_config",
            "litellm_settings.success_callback",
        ]
    );
    let info = &d.info().extra;
    assert_eq!(
        info.get("base_model"),
        Some(&ParamValue::Plain("gpt-4".into()))
    );
    assert_eq!(
        info.get("supports_vision"),
        Some(&ParamValue::Plain(true.into()))
    );
    let dbg = format!("{cfg:?}");
    assert!(!dbg.contains("AKIA-literal") && !dbg.contains("service_account"));
    assert!(!dbg.contains("org-from-secret-var") && !dbg.contains("blue"));
}

#[test]
fn ignored_keys_are_named_in_debug_events_without_their_values() {
    let yaml = "\
environment_variables:
  SOME_VAR: hidden-value-1
general_settings:
  database_url: postgres://user:hidden-value-2@db/x
router_settings:
  provider_budget_config: {x: y}
litellm_settings:
  drop_params: true
model_list:
  - model_name: a
    litellm_params: {model: m}
    stray: hidden-value-3
";
    let logs = capture_debug_logs(|| {
        Config::from_yaml_str_with_env(yaml, &|_| None).unwrap();
    });
    for key in [
        "environment_variables",
        "general_settings.database_url",
        "router_settings.provider_budget_config",
        "litellm_settings.drop_params",
        "model_list[0].stray",
    ] {
        assert!(logs.contains(key), "no debug event names {key}:\n{logs}");
    }
    assert!(
        !logs.contains("hidden-value"),
        "a value reached the logs:\n{logs}"
    );
}

/// Runs `f` and returns the DEBUG events it logged on this thread (through the shared
/// global capture: a per-test `with_default` subscriber races tracing's callsite cache).
fn capture_debug_logs(f: impl FnOnce()) -> String {
    let (logs, ()) = crate::support::Logs::capture();
    f();
    logs.text()
}
