//! The tiered-probe and probe-budget keys (`health_check_billed_every`,
//! `health_check_max_probes_per_minute` in `general_settings` and `model_info`,
//! `health_check_max_cost_per_day`, `health_check_spread`, `health_check_jitter_seed`):
//! parsed with their defaults, and bad values refused naming the key.

use std::num::NonZeroU32;

use tower_health_routing::{Config, ConfigError, error::ConfigErrorKind};

fn parse(yaml: &str) -> Result<Config, ConfigError> {
    Config::from_yaml_str_with_env(yaml, &|_| None)
}

const MODEL: &str = "model_list:\n  - model_name: a\n    litellm_params: {model: openai/a, api_base: 'http://127.0.0.1:9/v1'}\n";

fn general(body: &str) -> Result<Config, ConfigError> {
    parse(&format!("{MODEL}general_settings:\n{body}"))
}

fn refused(r: Result<Config, ConfigError>, field: &str) -> String {
    let e = r.expect_err("refused");
    assert_eq!(e.field(), field, "{e}");
    match e.kind() {
        ConfigErrorKind::Invalid(why) | ConfigErrorKind::Syntax(why) => why.clone(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn defaults_keep_todays_behaviour() {
    let h = parse(MODEL).unwrap().health;
    assert_eq!(h.billed_every, NonZeroU32::MIN);
    assert_eq!((h.max_probes_per_minute, h.max_cost_per_day), (None, None));
    assert_eq!((h.spread, h.seed), (0.0, None));
    assert!(!h.tiered());
}

#[test]
fn the_keys_parse() {
    let cfg = parse(
        "model_list:\n  - model_name: a\n    litellm_params: {model: openai/a, api_base: 'http://127.0.0.1:9/v1'}\n    \
         model_info: {health_check_max_probes_per_minute: 3}\n\
         general_settings:\n  health_check_billed_every: 10\n  health_check_max_probes_per_minute: 30\n  \
         health_check_max_cost_per_day: 1.5\n  health_check_spread: 0.25\n  health_check_jitter_seed: 99\n",
    )
    .unwrap();
    let h = &cfg.health;
    assert_eq!(h.billed_every.get(), 10);
    assert_eq!(h.max_probes_per_minute.map(|n| n.get()), Some(30));
    assert_eq!(h.max_cost_per_day, Some(1.5));
    assert_eq!((h.spread, h.seed), (0.25, Some(99)));
    assert!(h.tiered());
    assert_eq!(
        cfg.deployments[0].info().health_check_max_probes_per_minute,
        Some(3)
    );
}

#[test]
fn bad_values_name_the_key() {
    let g = "general_settings.";
    let why = refused(
        general("  health_check_billed_every: 0\n"),
        &format!("{g}health_check_billed_every"),
    );
    assert!(why.contains("greater than zero"), "{why}");
    refused(
        general("  health_check_billed_every: -2\n"),
        &format!("{g}health_check_billed_every"),
    );
    refused(
        general("  health_check_max_probes_per_minute: 0\n"),
        &format!("{g}health_check_max_probes_per_minute"),
    );
    let why = refused(
        general("  health_check_max_cost_per_day: -1\n"),
        &format!("{g}health_check_max_cost_per_day"),
    );
    assert!(why.contains(">= 0"), "{why}");
    let why = refused(
        general("  health_check_spread: 1.5\n"),
        &format!("{g}health_check_spread"),
    );
    assert!(why.contains("from 0 to 1"), "{why}");
    refused(
        general("  health_check_spread: -0.1\n"),
        &format!("{g}health_check_spread"),
    );
    refused(
        general("  health_check_jitter_seed: -1\n"),
        &format!("{g}health_check_jitter_seed"),
    );
    refused(
        general("  health_check_billed_every: often\n"),
        &format!("{g}health_check_billed_every"),
    );
    refused(
        parse(
            "model_list:\n  - model_name: a\n    litellm_params: {model: openai/a}\n    \
             model_info: {health_check_max_probes_per_minute: 0}\n",
        ),
        "model_list[0].model_info.health_check_max_probes_per_minute",
    );
}

#[test]
fn the_builder_checks_the_same_rules() {
    let b = || Config::builder().health_check_interval(std::time::Duration::from_secs(10));
    let e = b().health_check_spread(2.0).build().unwrap_err();
    assert_eq!(e.field(), "general_settings.health_check_spread");
    let e = b()
        .health_check_max_cost_per_day(f64::NAN)
        .build()
        .unwrap_err();
    assert_eq!(e.field(), "general_settings.health_check_max_cost_per_day");
    let d = tower_health_routing::Deployment::builder("a", "openai/a")
        .health_check_max_probes_per_minute(0)
        .build();
    let e = b().deployment(d).build().unwrap_err();
    assert_eq!(
        e.field(),
        "model_list[0].model_info.health_check_max_probes_per_minute"
    );
}
