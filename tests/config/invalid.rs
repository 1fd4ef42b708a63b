//! One test per rejected config: each asserts the field named and the kind of error.

use tower_health_routing::{Config, ConfigError, error::ConfigErrorKind};

use super::env_of;

fn err(yaml: &str) -> ConfigError {
    match Config::from_yaml_str_with_env(yaml, &|_| None) {
        Ok(cfg) => panic!("accepted: {cfg:?}"),
        Err(e) => e,
    }
}

fn general(body: &str) -> ConfigError {
    err(&format!("general_settings:\n{body}"))
}

fn is_invalid(e: &ConfigError) -> bool {
    matches!(e.kind(), ConfigErrorKind::Invalid(_))
}

fn is_syntax(e: &ConfigError) -> bool {
    matches!(e.kind(), ConfigErrorKind::Syntax(_))
}

const ONE_MODEL: &str = "model_list:\n  - model_name: a\n    litellm_params:\n      model: m\n";

#[test]
fn zero_interval() {
    let e = general("  health_check_interval: 0\n");
    assert_eq!(e.field(), "general_settings.health_check_interval");
    assert!(is_invalid(&e), "{e:?}");
}

#[test]
fn negative_interval() {
    let e = general("  health_check_interval: -30\n");
    assert_eq!(e.field(), "general_settings.health_check_interval");
    assert_eq!(
        e.kind(),
        &ConfigErrorKind::Invalid("must be zero or more seconds, got -30".into())
    );
}

#[test]
fn non_finite_interval() {
    let e = general("  health_check_interval: .nan\n");
    assert_eq!(e.field(), "general_settings.health_check_interval");
    assert!(is_invalid(&e), "{e:?}");
}

#[test]
fn staleness_below_interval() {
    let e = general("  health_check_interval: 60\n  health_check_staleness_threshold: 30\n");
    assert_eq!(
        e.field(),
        "general_settings.health_check_staleness_threshold"
    );
    assert!(is_invalid(&e), "{e:?}");
    assert!(e.to_string().contains("below health_check_interval"), "{e}");
}

#[test]
fn negative_jitter() {
    let e = general("  health_check_jitter: -1\n");
    assert_eq!(e.field(), "general_settings.health_check_jitter");
    assert!(is_invalid(&e), "{e:?}");
}

#[test]
fn zero_concurrency() {
    let e = general("  health_check_concurrency: 0\n");
    assert_eq!(e.field(), "general_settings.health_check_concurrency");
    assert_eq!(
        e.kind(),
        &ConfigErrorKind::Invalid("must be greater than zero, got 0".into())
    );
}

#[test]
fn negative_concurrency() {
    let e = general("  health_check_concurrency: -2\n");
    assert_eq!(e.field(), "general_settings.health_check_concurrency");
    assert!(is_invalid(&e), "{e:?}");
}

#[test]
fn zero_threshold() {
    let e = general("  health_check_healthy_threshold: 0\n");
    assert_eq!(e.field(), "general_settings.health_check_healthy_threshold");
    assert!(is_invalid(&e), "{e:?}");
}

#[test]
fn wrong_type_is_a_syntax_error_naming_the_field() {
    let e = general("  health_check_interval: [1]\n");
    assert_eq!(e.field(), "general_settings.health_check_interval");
    assert_eq!(
        e.kind(),
        &ConfigErrorKind::Syntax("expected a number, got a list".into())
    );
}

#[test]
fn word_for_a_boolean() {
    let e = general("  background_health_checks: \"sometimes\"\n");
    assert_eq!(e.field(), "general_settings.background_health_checks");
    assert_eq!(
        e.kind(),
        &ConfigErrorKind::Syntax("expected true or false, got the string \"sometimes\"".into())
    );
}

#[test]
fn word_for_a_number_in_a_deployment() {
    let e = err(&format!("{ONE_MODEL}      rpm: lots\n"));
    assert_eq!(e.field(), "model_list[0].litellm_params.rpm");
    assert!(is_syntax(&e), "{e:?}");
}

#[test]
fn a_section_of_the_wrong_shape() {
    let e = err("model_list: {model_name: a}\n");
    assert_eq!(e.field(), "model_list");
    assert!(is_syntax(&e), "{e:?}");
    // serde would read a list into a struct by position; it is refused instead.
    let e = err("- just\n- a list\n");
    assert_eq!(e.field(), "");
    assert_eq!(
        e.kind(),
        &ConfigErrorKind::Syntax("expected a mapping, got a list".into())
    );
    let e = err("general_settings: [true, 30]\n");
    assert_eq!(e.field(), "general_settings");
    assert!(is_syntax(&e), "{e:?}");
    let e = err("model_list:\n  - model_name: a\n    litellm_params: [m]\n");
    assert_eq!(e.field(), "model_list[0].litellm_params");
    assert!(is_syntax(&e), "{e:?}");
    let e = err("model_list:\n  -\n");
    assert_eq!(e.field(), "model_list[0]");
    assert!(is_syntax(&e), "{e:?}");
}

#[test]
fn duplicate_id_with_different_params() {
    let e = err("\
model_list:
  - model_name: a
    litellm_params: {model: openai/one}
    model_info: {id: shared}
  - model_name: b
    litellm_params: {model: openai/two}
    model_info: {id: shared}
");
    assert_eq!(e.field(), "model_list[1].model_info.id");
    assert_eq!(
        e.kind(),
        &ConfigErrorKind::DuplicateId {
            id: "shared".into()
        }
    );
}

#[test]
fn missing_model() {
    let e = err("model_list:\n  - model_name: a\n    litellm_params:\n      api_base: http://x\n");
    assert_eq!(e.field(), "model_list[0].litellm_params.model");
    assert_eq!(e.kind(), &ConfigErrorKind::Missing);
    // No litellm_params at all is the same error.
    let e = err(&format!("{ONE_MODEL}  - model_name: b\n"));
    assert_eq!(e.field(), "model_list[1].litellm_params.model");
    assert_eq!(e.kind(), &ConfigErrorKind::Missing);
}

#[test]
fn missing_model_name() {
    let e = err("model_list:\n  - litellm_params:\n      model: m\n");
    assert_eq!(e.field(), "model_list[0].model_name");
    assert_eq!(e.kind(), &ConfigErrorKind::Missing);
}

#[test]
fn unset_environment_variable() {
    let e = err(
        "model_list:\n  - model_name: a\n    litellm_params:\n      model: m\n      api_key: os.environ/THR_TEST_UNSET_KEY\n",
    );
    assert_eq!(e.field(), "model_list[0].litellm_params.api_key");
    assert_eq!(
        e.kind(),
        &ConfigErrorKind::EnvVarUnset {
            var: "THR_TEST_UNSET_KEY".into()
        }
    );
    // In a kept extra param too.
    let e = err(&format!(
        "{ONE_MODEL}      aws_secret_access_key: os.environ/THR_UNSET_2\n"
    ));
    assert_eq!(
        e.field(),
        "model_list[0].litellm_params.aws_secret_access_key"
    );
    assert!(matches!(e.kind(), ConfigErrorKind::EnvVarUnset { var } if var == "THR_UNSET_2"));
}

#[test]
fn unknown_strategy() {
    let e = err("router_settings:\n  routing_strategy: most-magic-routing\n");
    assert_eq!(e.field(), "router_settings.routing_strategy");
    assert_eq!(
        e.kind(),
        &ConfigErrorKind::UnknownStrategy {
            value: "most-magic-routing".into()
        }
    );
}

#[test]
fn unknown_mode() {
    let e = err(&format!(
        "{ONE_MODEL}    model_info:\n      mode: telepathy\n"
    ));
    assert_eq!(e.field(), "model_list[0].model_info.mode");
    assert_eq!(
        e.kind(),
        &ConfigErrorKind::UnknownMode {
            value: "telepathy".into()
        }
    );
}

#[test]
fn zero_or_negative_health_check_timeout() {
    for t in ["0", "-5"] {
        let e = err(&format!(
            "{ONE_MODEL}    model_info:\n      health_check_timeout: {t}\n"
        ));
        assert_eq!(
            e.field(),
            "model_list[0].model_info.health_check_timeout",
            "{t}"
        );
        assert!(is_invalid(&e), "{e:?}");
    }
}

#[test]
fn redis_port_without_host() {
    let e = err("router_settings:\n  redis_port: 6379\n");
    assert_eq!(e.field(), "router_settings.redis_host");
    assert_eq!(e.kind(), &ConfigErrorKind::Missing);
}

#[test]
fn bad_redis_port_from_the_environment() {
    let env = env_of(&[("REDIS_HOST", "h"), ("REDIS_PORT", "99999")]);
    let e =
        Config::from_yaml_str_with_env("general_settings: {use_shared_health_check: true}\n", &env)
            .unwrap_err();
    assert_eq!(e.field(), "router_settings.redis_port");
    assert!(e.to_string().contains("REDIS_PORT"), "{e}");
}

#[test]
fn broken_yaml_gives_the_parsers_position() {
    let e = err("model_list:\n  - model_name: a\n    litellm_params: [unclosed\n");
    assert_eq!(e.field(), "");
    let ConfigErrorKind::Syntax(why) = e.kind() else {
        panic!("expected Syntax, got {e:?}");
    };
    assert!(why.contains("line 3"), "{why}");
}

#[test]
fn an_empty_file_is_a_clear_error() {
    for text in ["", "\n\n", "# nothing here\n", "---\n"] {
        let e = err(text);
        assert_eq!(e.field(), "", "{text:?}");
        assert!(is_invalid(&e), "{text:?}: {e:?}");
        assert!(e.to_string().contains("the config is empty"), "{e}");
    }
}

#[test]
fn absurd_durations_name_their_field() {
    for (body, field) in [
        (
            "  health_check_interval: -1\n",
            "general_settings.health_check_interval",
        ),
        (
            "  health_check_interval: .inf\n",
            "general_settings.health_check_interval",
        ),
        (
            "  health_check_interval: 1e400\n",
            "general_settings.health_check_interval",
        ),
        (
            "  health_check_staleness_threshold: .nan\n",
            "general_settings.health_check_staleness_threshold",
        ),
        (
            "  health_check_jitter: -.inf\n",
            "general_settings.health_check_jitter",
        ),
    ] {
        let e = general(body);
        assert_eq!(e.field(), field, "{body}");
        assert!(is_invalid(&e), "{body}: {e:?}");
    }
    for t in ["0", "-1", ".nan", ".inf", "-.inf"] {
        let e = err(&format!(
            "{ONE_MODEL}    model_info:\n      health_check_timeout: {t}\n"
        ));
        assert_eq!(
            e.field(),
            "model_list[0].model_info.health_check_timeout",
            "{t}"
        );
        assert!(is_invalid(&e), "{t}: {e:?}");
    }
    let e = err("router_settings:\n  cooldown_time: -5\n");
    assert_eq!(e.field(), "router_settings.cooldown_time");
}

#[test]
fn credentials_in_api_base_are_refused_without_showing_them() {
    for base in [
        "ftp://admin:hunter2pw@host.example/v1",
        "http://admin:hunter2pw@host.example/a b",
        "https://admin:hunter2pw@host.example:8443/v1?x=1",
        "http://hunter2pw@host.example/v1",
    ] {
        let e = err(&format!("{ONE_MODEL}      api_base: \"{base}\"\n"));
        assert_eq!(e.field(), "model_list[0].litellm_params.api_base", "{base}");
        let text = format!("{e} {e:?}");
        assert!(!text.contains("hunter2pw"), "{text}");
        assert!(text.contains("[redacted]@host.example"), "{text}");
        assert!(text.contains("carries credentials"), "{text}");
    }
}

#[test]
fn a_bad_api_base_is_refused_naming_the_field() {
    for base in ["http://host.example/a b", "not a url", "/v1"] {
        let e = err(&format!("{ONE_MODEL}      api_base: \"{base}\"\n"));
        assert_eq!(e.field(), "model_list[0].litellm_params.api_base", "{base}");
        assert!(is_invalid(&e), "{base}: {e:?}");
    }
}

#[test]
fn no_error_message_contains_a_secret() {
    let env = env_of(&[
        ("OPENAI_API_KEY", "sk-env-secret-1"),
        ("MY_TOKEN", "tok-env-secret-2"),
    ]);
    let secrets = [
        "sk-env-secret-1",
        "tok-env-secret-2",
        "sk-literal-secret-3",
        "pw-literal-4",
    ];
    let head = "\
general_settings:
  master_key: sk-literal-secret-3
router_settings:
  redis_url: redis://:pw-literal-4@127.0.0.1:6379
model_list:
  - model_name: a
    litellm_params:
      model: m
      api_key: os.environ/OPENAI_API_KEY
";
    let cases = [
        // A secret lands where a number is expected.
        format!("{head}      rpm: os.environ/OPENAI_API_KEY\n"),
        format!("{head}      tpm: os.environ/MY_TOKEN\n"),
        format!("{head}    model_info:\n      health_check_timeout: sk-literal-secret-3\n"),
        // ... where a mode or a strategy is expected.
        format!("{head}    model_info:\n      mode: os.environ/OPENAI_API_KEY\n"),
        format!(
            "{head}  - model_name: b\n    litellm_params:\n      model: m\n      rpm: sk-literal-secret-3\n"
        ),
        "router_settings:\n  routing_strategy: os.environ/MY_TOKEN\n".to_owned(),
        // Another error after the secrets were read.
        format!("{head}  - model_name: c\n"),
        // Broken YAML right after literal secrets.
        format!("{head}      extra: [sk-literal-secret-3\n"),
        "general_settings:\n  master_key: \"sk-literal-secret-3\n bad: [\n".to_owned(),
    ];
    for yaml in &cases {
        let e = Config::from_yaml_str_with_env(yaml, &env).unwrap_err();
        let shown = format!("{e} {e:?}");
        for s in secrets {
            assert!(!shown.contains(s), "{s} shown in: {shown}\nfor:\n{yaml}");
        }
    }
    // The error still says what was wrong.
    let e = Config::from_yaml_str_with_env(&cases[0], &env).unwrap_err();
    assert_eq!(e.field(), "model_list[0].litellm_params.rpm");
    assert_eq!(
        e.kind(),
        &ConfigErrorKind::Syntax("expected an integer, got the string \"[redacted]\"".into())
    );
}
