//! The health-surface keys of `general_settings`: `background_health_check_model_groups`,
//! `health_check_history_size`, `model_list_healthy_only`.

use tower_health_routing::Config;

fn parse(general: &str) -> Result<Config, tower_health_routing::ConfigError> {
    Config::from_yaml_str(&format!(
        "model_list:\n  - model_name: a\n    litellm_params: {{model: openai/x, api_base: 'http://127.0.0.1:9/v1'}}\ngeneral_settings:\n{general}"
    ))
}

#[test]
fn defaults_and_values() {
    let d = parse("  background_health_checks: false\n").unwrap();
    assert_eq!(
        (
            d.health.background_model_groups.clone(),
            d.health.history_size,
            d.health.model_list_healthy_only
        ),
        (None, 100, false)
    );
    let c = parse(
        "  background_health_check_model_groups: [a, b]\n  health_check_history_size: 7\n  model_list_healthy_only: true\n",
    )
    .unwrap();
    assert_eq!(
        c.health.background_model_groups,
        Some(vec!["a".to_owned(), "b".to_owned()])
    );
    assert_eq!(c.health.history_size, 7);
    assert!(c.health.model_list_healthy_only);
    assert_eq!(
        parse("  health_check_history_size: 0\n")
            .unwrap()
            .health
            .history_size,
        0
    );
    // LiteLLM: only a real `true` turns the listing filter on.
    assert!(
        !parse("  model_list_healthy_only: 'true'\n")
            .unwrap()
            .health
            .model_list_healthy_only
    );
}

#[test]
fn bad_values_name_the_field() {
    for (yaml, field) in [
        (
            "  background_health_check_model_groups: a\n",
            "general_settings.background_health_check_model_groups",
        ),
        (
            "  background_health_check_model_groups: [a, 3]\n",
            "general_settings.background_health_check_model_groups",
        ),
        (
            "  health_check_history_size: -1\n",
            "general_settings.health_check_history_size",
        ),
        (
            "  health_check_history_size: 10001\n",
            "general_settings.health_check_history_size",
        ),
    ] {
        let e = parse(yaml).unwrap_err();
        assert_eq!(e.field(), field, "{yaml}: {e}");
    }
}
