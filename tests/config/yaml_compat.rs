//! YAML as LiteLLM (PyYAML) reads it: duplicate keys, long comment runs, `20_000`,
//! `model_list: []`, unknown top-level keys, LiteLLM strategies not implemented yet, and
//! the interval floor. Warnings are asserted through the captured log lines.

use std::time::Duration;

use tower_health_routing::{Config, config::RoutingStrategy};

use super::support::Logs;

fn parse(yaml: &str) -> Config {
    Config::from_yaml_str_with_env(yaml, &|_| None).unwrap_or_else(|e| panic!("{e}\n{yaml}"))
}

const ONE_MODEL: &str =
    "model_list:\n  - model_name: a\n    litellm_params:\n      model: openai/a\n";

#[test]
fn a_duplicate_key_keeps_the_last_value_and_warns_with_its_line() {
    let (logs, _) = Logs::capture();
    let cfg = parse(&format!(
        "{ONE_MODEL}general_settings:\n  health_check_interval: 10\n  health_check_interval: 20\n"
    ));
    assert_eq!(cfg.health.interval, Duration::from_secs(20));
    let text = logs.text();
    let line = text
        .lines()
        .find(|l| l.contains("duplicate key"))
        .unwrap_or_else(|| panic!("no warning:\n{text}"));
    assert!(line.contains("WARN"), "{line}");
    assert!(
        line.contains("general_settings.health_check_interval"),
        "{line}"
    );
    assert!(line.contains("line=7"), "{line}");
}

#[test]
fn a_duplicate_deployment_key_keeps_the_last_value() {
    let cfg = parse(
        "model_list:\n  - model_name: a\n    litellm_params:\n      model: openai/first\n      model: openai/second\n",
    );
    assert_eq!(cfg.deployments[0].params().model, "openai/second");
}

#[test]
fn five_thousand_comment_lines_load() {
    let mut text = String::from("# header\n");
    for i in 0..5_000 {
        text.push_str(&format!("# comment line {i}: - model_name: not-a-model\n"));
    }
    text.push_str("model_list:\n");
    for i in 0..5_000 {
        text.push_str(&format!("  # inside the list {i}\n"));
    }
    text.push_str("  - model_name: a\n");
    for i in 0..5_000 {
        text.push_str(&format!("    # inside the entry {i}\n"));
    }
    text.push_str("    litellm_params:\n      model: openai/a\n");
    let cfg = parse(&text);
    assert_eq!(cfg.deployments.len(), 1);
    assert_eq!(cfg.deployments[0].route(), "a");
}

#[test]
fn underscored_numbers_read_as_pyyaml_reads_them() {
    let cfg = parse(
        "model_list:\n  - model_name: a\n    litellm_params:\n      model: openai/a\n      tpm: 20_000\n      rpm: 1_000\n",
    );
    let p = cfg.deployments[0].params();
    assert_eq!((p.tpm, p.rpm), (Some(20_000), Some(1_000)));
}

#[test]
fn an_empty_model_list_loads_with_a_warning() {
    let (logs, _) = Logs::capture();
    let cfg = parse("model_list: []\n");
    assert!(cfg.deployments.is_empty());
    let text = logs.text();
    assert!(
        text.lines()
            .any(|l| l.contains("WARN") && l.contains("no deployments")),
        "{text}"
    );
}

#[test]
fn unknown_top_level_keys_load() {
    let cfg = parse(&format!(
        "{ONE_MODEL}environment_variables:\n  X: y\nfinetune_settings:\n  - custom_llm_provider: azure\nmcp_servers: {{}}\n"
    ));
    assert_eq!(cfg.deployments.len(), 1);
}

#[test]
fn litellms_usage_and_cost_strategies_are_their_own() {
    for (name, used) in [
        ("usage-based-routing-v2", RoutingStrategy::UsageBasedV2),
        ("usage-based-routing", RoutingStrategy::UsageBased),
        ("cost-based-routing", RoutingStrategy::CostBased),
    ] {
        let cfg = parse(&format!(
            "{ONE_MODEL}router_settings:\n  routing_strategy: {name}\n"
        ));
        assert_eq!(cfg.router.routing_strategy, used, "{name}");
    }
}

#[test]
fn an_interval_below_the_floor_is_raised_with_a_warning() {
    let (logs, _) = Logs::capture();
    let cfg = parse(&format!(
        "{ONE_MODEL}general_settings:\n  health_check_interval: 1e-9\n"
    ));
    assert_eq!(
        cfg.health.interval,
        tower_health_routing::config::MIN_HEALTH_CHECK_INTERVAL
    );
    assert_eq!(cfg.health.interval, Duration::from_secs(1));
    let text = logs.text();
    assert!(
        text.lines()
            .any(|l| l.contains("WARN") && l.contains("general_settings.health_check_interval")),
        "{text}"
    );
    // At the floor and above: as given, no warning.
    let (logs, _) = Logs::capture();
    let cfg = parse(&format!(
        "{ONE_MODEL}general_settings:\n  health_check_interval: 1.5\n"
    ));
    assert_eq!(cfg.health.interval, Duration::from_millis(1500));
    assert!(!logs.text().contains("below the floor"));
}

#[test]
fn userinfo_in_api_base_never_reaches_a_log_line_at_any_level() {
    let (logs, _) = Logs::capture();
    let pw = "hunter2-trace-pw";
    for base in [
        format!("ftp://admin:{pw}@host.example/v1"),
        format!("http://admin:{pw}@host.example/a b"),
        format!("http://admin:{pw}@127.0.0.1:9/v1"),
    ] {
        let yaml = format!("{ONE_MODEL}      api_base: \"{base}\"\n");
        let e = Config::from_yaml_str_with_env(&yaml, &|_| None).unwrap_err();
        tracing::error!(error = %e, debug = ?e, "config refused");
        assert!(!format!("{e} {e:?}").contains(pw));
    }
    // Built in Rust, where nothing validates until `build`: Debug hides it, and a probe
    // loop over a hand-assembled config refuses it without quoting it.
    let d = tower_health_routing::Deployment::builder("a", "openai/a")
        .api_base(format!("http://admin:{pw}@127.0.0.1:9/v1"))
        .build();
    let shown = format!("{d:?}");
    assert!(
        !shown.contains(pw) && shown.contains("[redacted]@127.0.0.1"),
        "{shown}"
    );
    let e = Config::builder().deployment(d.clone()).build().unwrap_err();
    tracing::trace!(?e, "builder refused");
    let mut cfg = Config::builder().build().unwrap();
    cfg.deployments.push(d);
    let state = tower_health_routing::HealthState::new(cfg);
    // Since issue 12 the loop starts; the deployment is unsupported, its reason (logged at
    // warn) not quoting the credentials either.
    tower_health_routing::ProbeLoop::builder(&state)
        .build()
        .expect("the probe loop starts");
    let snap = state.snapshot();
    let why = &snap
        .unsupported(snap.deployments().next().unwrap().id().as_str())
        .expect("userinfo makes the deployment unsupported")
        .reason;
    assert!(!why.contains(pw), "{why}");
    tracing::trace!(%why, "probe loop refused");
    let text = logs.text();
    assert!(
        text.contains("config refused")
            && text.contains("probe loop refused")
            && text.contains("deployment unsupported"),
        "{text}"
    );
    assert!(!text.contains(pw), "{text}");
}

#[test]
fn a_duplicate_model_list_keeps_the_last_list() {
    // `model_list` entries are read one at a time as the parser meets them; a second list
    // still replaces the first, as PyYAML does, and an error in the first one is forgotten.
    let cfg = parse(
        "model_list:\n  - model_name: first\n    litellm_params: { model: openai/a, rpm: -1 }\n\
         model_list:\n  - model_name: second\n    litellm_params: { model: openai/b }\n",
    );
    assert_eq!(cfg.deployments.len(), 1);
    assert_eq!(cfg.deployments[0].route(), "second");
    let err = Config::from_yaml_str_with_env(
        "model_list:\n  - model_name: a\n    litellm_params: { model: openai/a }\nmodel_list: oops\n",
        &|_| None,
    )
    .unwrap_err();
    assert_eq!(err.field(), "model_list", "{err}");
}
