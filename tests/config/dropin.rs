//! The knobs of issue 12 as config.yaml spells them: request timeouts (numbers or numeric
//! strings), `min_healthy_percent`, both spellings of the hysteresis thresholds, Redis over
//! TLS (`rediss://`, `redis_ssl`, `REDIS_SSL`), and the unimplemented / auth settings kept
//! by path.

use std::{num::NonZeroU32, time::Duration};

use tower_health_routing::{
    Config,
    config::{AUTH_SETTINGS, RedisSettings},
};

use super::env_of;

fn parse(yaml: &str) -> Config {
    Config::from_yaml_str_with_env(yaml, &|_| None).unwrap_or_else(|e| panic!("{e}\n{yaml}"))
}

const ONE: &str = "model_list:\n  - model_name: a\n    litellm_params: {model: openai/a}\n";

#[test]
fn request_timeouts_from_every_place_litellm_reads_them() {
    let cfg = parse(
        "model_list:
  - model_name: a
    litellm_params: {model: openai/a, timeout: \"2.5\", stream_timeout: 1}
  - model_name: b
    litellm_params: {model: openai/b}
router_settings: {timeout: 30}
litellm_settings: {request_timeout: 20_000}
",
    );
    let p = cfg.deployments[0].params();
    assert_eq!(p.timeout, Some(Duration::from_millis(2500)));
    assert_eq!(p.stream_timeout, Some(Duration::from_secs(1)));
    assert_eq!(cfg.deployments[1].params().timeout, None);
    assert_eq!(cfg.router.timeout, Some(Duration::from_secs(30)));
    let only = parse(&format!(
        "{ONE}litellm_settings: {{request_timeout: \"45\"}}\n"
    ));
    assert_eq!(only.router.timeout, Some(Duration::from_secs(45)));
    assert_eq!(parse(ONE).router.timeout, None);
}

#[test]
fn bad_timeouts_name_their_field() {
    for (yaml, field) in [
        (
            "model_list:\n  - model_name: a\n    litellm_params: {model: m, timeout: 0}\n",
            "model_list[0].litellm_params.timeout",
        ),
        (
            "model_list:\n  - model_name: a\n    litellm_params: {model: m, stream_timeout: -1}\n",
            "model_list[0].litellm_params.stream_timeout",
        ),
        (
            "model_list: []\nrouter_settings: {timeout: soon}\n",
            "router_settings.timeout",
        ),
        (
            "model_list: []\nlitellm_settings: {request_timeout: 0}\n",
            "litellm_settings.request_timeout",
        ),
        (
            "model_list: []\ngeneral_settings: {min_healthy_percent: 120}\n",
            "general_settings.min_healthy_percent",
        ),
    ] {
        let e = Config::from_yaml_str_with_env(yaml, &|_| None).unwrap_err();
        assert_eq!(e.field(), field, "{yaml}: {e}");
    }
}

#[test]
fn min_healthy_percent_and_both_threshold_spellings() {
    let cfg = parse(&format!(
        "{ONE}general_settings: {{min_healthy_percent: \"50\", unhealthy_threshold: 3, healthy_threshold: 2}}\n"
    ));
    assert_eq!(cfg.health.min_healthy_percent, Some(50.0));
    assert_eq!(cfg.health.unhealthy_threshold, NonZeroU32::new(3).unwrap());
    assert_eq!(cfg.health.healthy_threshold, NonZeroU32::new(2).unwrap());
    // The longer name wins where both are set.
    let cfg = parse(&format!(
        "{ONE}general_settings: {{health_check_unhealthy_threshold: 4, unhealthy_threshold: 3}}\n"
    ));
    assert_eq!(cfg.health.unhealthy_threshold, NonZeroU32::new(4).unwrap());
    assert_eq!(parse(ONE).health.min_healthy_percent, None);
    // Known keys are not "unimplemented".
    assert!(
        cfg.unimplemented_settings.is_empty(),
        "{:?}",
        cfg.unimplemented_settings
    );
}

#[test]
fn redis_over_tls_from_the_url_the_flag_or_the_environment() {
    let tls_of = |cfg: &Config| match &cfg.router.redis {
        Some(RedisSettings::HostPort { tls, .. }) => *tls,
        Some(RedisSettings::Url(u)) => u.expose().starts_with("rediss://"),
        other => panic!("no redis: {other:?}"),
    };
    let host = |extra: &str| {
        format!("{ONE}router_settings: {{redis_host: cache.example, redis_port: 6380{extra}}}\n")
    };
    assert!(!tls_of(&parse(&host(""))));
    assert!(tls_of(&parse(&host(", redis_ssl: true"))));
    assert!(tls_of(&parse(&host(", redis_ssl: \"True\""))));
    // LiteLLM's REDIS_SSL=true, for host/port settings without redis_ssl.
    let env = env_of(&[("REDIS_SSL", "TRUE")]);
    let cfg = Config::from_yaml_str_with_env(&host(""), &env).unwrap();
    assert!(tls_of(&cfg));
    let cfg = Config::from_yaml_str_with_env(&host(", redis_ssl: false"), &env).unwrap();
    assert!(
        !tls_of(&cfg),
        "the config's redis_ssl wins over the environment"
    );
    // Shared checks from the environment alone.
    let env = env_of(&[("REDIS_HOST", "h"), ("REDIS_SSL", "true")]);
    let cfg = Config::from_yaml_str_with_env(
        &format!("{ONE}general_settings: {{use_shared_health_check: true}}\n"),
        &env,
    )
    .unwrap();
    assert!(tls_of(&cfg));
    // A URL: rediss:// is TLS; redis_ssl upgrades redis://.
    let url =
        |u: &str, extra: &str| format!("{ONE}router_settings: {{redis_url: \"{u}\"{extra}}}\n");
    assert!(tls_of(&parse(&url("rediss://:pw@cache.example:6380", ""))));
    assert!(!tls_of(&parse(&url("redis://cache.example", ""))));
    assert!(tls_of(&parse(&url(
        "redis://cache.example",
        ", redis_ssl: true"
    ))));
}

#[test]
fn unimplemented_and_auth_settings_are_kept_by_path_without_values() {
    let cfg = parse(&format!(
        "{ONE}general_settings:
  custom_auth: my_module.auth
  enable_jwt_auth: false
  database_url: postgresql://u:hidden-pw@db/x
  alerting: []
  store_model_in_db: True
litellm_settings:
  callbacks: [\"otel\"]
  cache: null
guardrails: [{{guardrail_name: g}}]
"
    ));
    assert_eq!(
        cfg.unimplemented_settings,
        [
            "guardrails",
            "general_settings.custom_auth",
            "general_settings.database_url",
            "general_settings.store_model_in_db",
            "litellm_settings.callbacks",
        ],
        "null, false and empty values are unset"
    );
    assert_eq!(
        cfg.auth_settings().collect::<Vec<_>>(),
        [
            "general_settings.custom_auth",
            "general_settings.database_url"
        ]
    );
    assert!(AUTH_SETTINGS.contains(&"general_settings.enable_jwt_auth"));
    assert!(!format!("{cfg:?}").contains("hidden-pw"));
}
