//! LiteLLM `config.yaml` parsing: every documented field, defaults, env resolution, unknown
//! keys (in `config/unknown_keys.rs`), and (in `config/invalid.rs`) one test per rejected config.

#[path = "../support/mod.rs"]
mod support;

mod dropin;
mod ejection_settings;
mod health_surface_keys;
mod invalid;
mod litellm_configs;
mod probe_budget_keys;
mod server_settings;
mod stall_settings;
mod unknown_keys;
mod yaml_compat;

use std::{cell::RefCell, collections::HashMap, num::NonZeroU32, time::Duration};

use tower_health_routing::{
    Config, Deployment, Mode, config::HealthCheckSettings, config::RedisSettings,
    config::RouterSettings, config::RoutingStrategy, deployment::ParamValue,
    error::ConfigErrorKind,
};

const FULL: &str = include_str!("../fixtures/litellm_full.yaml");

/// The environment the fixture's `os.environ/NAME` values read.
const FULL_ENV: &[(&str, &str)] = &[
    ("AZURE_API_BASE", "http://127.0.0.1:9101/azure"),
    ("AZURE_API_KEY", "azure-key-env-1"),
    ("OPENAI_API_KEY", "sk-openai-env-2"),
    ("OPENAI_API_KEY_SECONDARY", "sk-openai-env-3"),
    ("COHERE_API_KEY", "cohere-env-4"),
    ("MISTRAL_API_KEY", "mistral-env-5"),
    ("ANTHROPIC_API_KEY", "sk-ant-env-6"),
    ("AWS_SECRET_ACCESS_KEY", "aws-secret-env-7"),
    ("LITELLM_MASTER_KEY", "sk-master-env-8"),
    ("REDIS_PASSWORD", "redis-pass-env-9"),
];

/// Every secret the fixture holds, from the environment or written literally.
const FULL_SECRETS: &[&str] = &[
    "azure-key-env-1",
    "sk-openai-env-2",
    "sk-openai-env-3",
    "cohere-env-4",
    "mistral-env-5",
    "sk-ant-env-6",
    "aws-secret-env-7",
    "sk-master-env-8",
    "redis-pass-env-9",
    "sk-literal-o3-key",
];

pub(crate) fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |name| map.get(name).cloned()
}

fn parse_full() -> Config {
    Config::from_yaml_str_with_env(FULL, &env_of(FULL_ENV)).unwrap_or_else(|e| panic!("{e}"))
}

fn key(d: &Deployment) -> Option<&str> {
    d.params().api_key.as_ref().map(|k| k.expose())
}

#[test]
fn full_fixture_parses_every_documented_deployment() {
    let cfg = parse_full();
    let routes: Vec<&str> = cfg.deployments.iter().map(Deployment::route).collect();
    assert_eq!(
        routes,
        [
            "azure-embedding-model",
            "dall-e-3",
            "azure-text-completion",
            "whisper",
            "tts",
            "rerank-english-v3.0",
            "batch-gpt-4o-mini",
            "openai/gpt-4o-realtime-audio",
            "mistral/mistral-ocr-latest",
            "openai/*",
            "anthropic/*",
            "openai/gpt-4o",
            "openai/gpt-4o",
            "openai/gpt-4o",
            "gpt-4",
            "gpt-4",
            "o3-mini",
        ]
    );
    let d = &cfg.deployments;
    let modes: Vec<Option<Mode>> = d.iter().map(|d| d.info().mode).collect();
    use Mode::*;
    assert_eq!(
        modes,
        [
            Some(Embedding),
            Some(ImageGeneration),
            Some(Completion),
            Some(AudioTranscription),
            Some(AudioSpeech),
            Some(Rerank),
            Some(Batch),
            Some(Realtime),
            Some(Ocr),
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            Some(Chat),
        ]
    );

    // Azure: env-resolved base and key, quoted api_version.
    for az in [&d[0], &d[1], &d[2]] {
        let p = az.params();
        assert_eq!(p.api_base.as_deref(), Some("http://127.0.0.1:9101/azure"));
        assert_eq!(key(az), Some("azure-key-env-1"));
        assert_eq!(p.api_version.as_deref(), Some("2023-07-01-preview"));
    }
    assert_eq!(d[0].params().model, "azure/azure-embedding-model");
    assert_eq!(d[2].params().model, "azure/text-davinci-003");
    assert_eq!(d[3].params().model, "whisper-1");
    assert_eq!(d[3].params().api_base, None);
    // tts: a quoted `os.environ/` value resolves too; the voice is kept.
    assert_eq!(key(&d[4]), Some("sk-openai-env-2"));
    assert_eq!(d[4].info().health_check_voice.as_deref(), Some("alloy"));
    assert_eq!(d[5].params().provider(), Some("cohere"));
    assert_eq!(key(&d[5]), Some("cohere-env-4"));
    assert_eq!(d[6].params().model, "azure/batch-gpt-4o-mini");
    assert_eq!(key(&d[8]), Some("mistral-env-5"));
    // Wildcards probe another model.
    assert_eq!(
        d[9].info().health_check_model.as_deref(),
        Some("openai/gpt-4o-mini")
    );
    assert_eq!(
        d[10].info().health_check_model.as_deref(),
        Some("anthropic/claude-3-5-sonnet-20240620")
    );
    assert_eq!(key(&d[10]), Some("sk-ant-env-6"));
    // The three openai/gpt-4o entries: explicit ids, one option each.
    assert_eq!(d[11].id().as_str(), "gpt-4o-no-background");
    assert!(d[11].info().disable_background_health_check);
    assert!(!d[12].info().disable_background_health_check);
    assert_eq!(d[12].id().as_str(), "gpt-4o-timeout");
    assert_eq!(
        d[12].info().health_check_timeout,
        Some(Duration::from_secs(10))
    );
    assert_eq!(d[13].id().as_str(), "gpt-4o-max-tokens");
    assert_eq!(d[13].info().health_check_max_tokens, Some(5));
    assert_eq!(d[13].info().health_check_timeout, None);
    // The two gpt-4 deployments differ only in their key: distinct derived ids.
    assert_eq!(key(&d[14]), Some("sk-openai-env-2"));
    assert_eq!(key(&d[15]), Some("sk-openai-env-3"));
    assert_ne!(d[14].id(), d[15].id());
    assert_eq!(d[14].id().as_str().len(), 32);
    assert_eq!(d[14].info().id, None);
}

#[test]
fn full_fixture_parses_loose_values_and_keeps_extras() {
    let cfg = parse_full();
    let o3 = &cfg.deployments[16];
    let p = o3.params();
    assert_eq!(p.api_base.as_deref(), Some("http://127.0.0.1:8001/v1"));
    assert_eq!(key(o3), Some("sk-literal-o3-key"));
    assert_eq!(p.api_version.as_deref(), Some("2024-12-01-preview"));
    assert_eq!(p.weight, Some(2.5));
    assert_eq!(p.rpm, Some(600), "rpm was the string \"600\"");
    assert_eq!(p.tpm, Some(100_000));
    assert_eq!(p.cooldown_time, Some(Duration::from_secs(30)));
    assert_eq!(
        p.extra.get("max_retries"),
        Some(&ParamValue::Plain(3.into()))
    );
    assert_eq!(
        p.extra.get("region_name"),
        Some(&ParamValue::Plain("us-east-1".into()))
    );
    match p.extra.get("aws_secret_access_key") {
        Some(ParamValue::Secret(s)) => assert_eq!(s.expose(), "aws-secret-env-7"),
        other => panic!("aws_secret_access_key should be a secret, got {other:?}"),
    }
    let i = o3.info();
    assert_eq!(o3.id().as_str(), "1234", "an integer id is taken as text");
    assert_eq!(i.id.as_deref(), Some("1234"));
    assert_eq!(i.health_check_timeout, Some(Duration::from_millis(2500)));
    assert_eq!(i.health_check_max_tokens, None);
    assert_eq!(i.health_check_max_tokens_reasoning, Some(64));
    assert_eq!(i.health_check_max_tokens_non_reasoning, Some(8));
    assert_eq!(i.health_check_supports_max_tokens, Some(true));
    assert_eq!(i.health_check_reasoning_effort.as_deref(), Some("low"));
    assert!(
        !i.disable_background_health_check,
        "was the string \"false\""
    );
    assert_eq!(
        i.extra.get("base_model"),
        Some(&ParamValue::Plain("azure/o3-mini".into()))
    );
    // Deployments without these keys keep the unset defaults.
    let whisper = &cfg.deployments[3];
    assert_eq!(whisper.params().weight, None);
    assert_eq!(whisper.params().rpm, None);
    assert!(whisper.params().extra.is_empty() && whisper.info().extra.is_empty());
    assert_eq!(whisper.info().health_check_voice, None);
}

#[test]
fn full_fixture_parses_every_settings_key() {
    let cfg = parse_full();
    let h = &cfg.health;
    assert!(h.background_health_checks, "True");
    assert_eq!(h.interval, Duration::from_secs(30));
    assert!(h.routing_enabled);
    assert_eq!(h.staleness_threshold, Some(Duration::from_secs(90)));
    assert_eq!(h.staleness_threshold(), Duration::from_secs(90));
    assert!(!h.details, "False");
    assert!(h.skip_disabled_background_models);
    assert_eq!(h.concurrency.map(|n| n.get()), Some(8));
    assert!(h.ignore_transient_errors, "the string \"true\"");
    assert!(h.use_shared_health_check);
    assert_eq!(h.unhealthy_threshold.get(), 3);
    assert_eq!(h.healthy_threshold.get(), 2);
    assert_eq!(h.jitter, Duration::from_millis(1500));
    assert_eq!(
        cfg.master_key.as_ref().map(|k| k.expose()),
        Some("sk-master-env-8")
    );

    let r = &cfg.router;
    assert_eq!(r.routing_strategy, RoutingStrategy::LeastBusy);
    // router_settings wins over litellm_settings (5, 9, 120).
    assert_eq!(r.allowed_fails, Some(3));
    assert_eq!(r.cooldown_time, Duration::from_secs(60));
    assert_eq!(r.num_retries, 2);
    match &r.redis {
        Some(RedisSettings::HostPort {
            host,
            port,
            password,
            tls: false,
        }) => {
            assert_eq!((host.as_str(), *port), ("127.0.0.1", 6380));
            assert_eq!(
                password.as_ref().map(|p| p.expose()),
                Some("redis-pass-env-9")
            );
        }
        other => panic!("expected redis host/port, got {other:?}"),
    }
}

#[test]
fn debug_output_and_scrubber_cover_every_secret() {
    let cfg = parse_full();
    let dbg = format!("{cfg:?}");
    for s in FULL_SECRETS {
        assert!(!dbg.contains(s), "Debug output shows {s}");
    }
    assert!(dbg.contains("[redacted]"));
    // Non-secrets stay visible, so the redaction is targeted.
    assert!(dbg.contains("http://127.0.0.1:9101/azure") && dbg.contains("us-east-1"));
    let all = FULL_SECRETS.join(" ");
    let scrubbed = cfg.scrubber().scrub(&all).into_owned();
    assert_eq!(scrubbed, vec!["[redacted]"; FULL_SECRETS.len()].join(" "));
}

#[test]
fn docs_quick_start_defaults_staleness_to_twice_the_interval() {
    let yaml = "\
model_list:
  - model_name: gpt-4
    litellm_params:
      model: openai/gpt-4
      api_key: os.environ/OPENAI_API_KEY
  - model_name: gpt-4
    litellm_params:
      model: openai/gpt-4
      api_key: os.environ/OPENAI_API_KEY_SECONDARY

general_settings:
  background_health_checks: true
  health_check_interval: 60
  enable_health_check_routing: true
";
    let cfg = Config::from_yaml_str_with_env(yaml, &env_of(FULL_ENV)).unwrap();
    assert_eq!(cfg.deployments.len(), 2);
    let h = &cfg.health;
    assert!(h.background_health_checks && h.routing_enabled);
    assert_eq!(h.interval, Duration::from_secs(60));
    assert_eq!(h.staleness_threshold, None);
    assert_eq!(h.staleness_threshold(), Duration::from_secs(120));
    // Everything else at its default.
    assert!(h.details && !h.skip_disabled_background_models && !h.ignore_transient_errors);
    assert_eq!(h.concurrency, None);
    assert_eq!(
        (h.unhealthy_threshold, h.healthy_threshold),
        (NonZeroU32::MIN, NonZeroU32::MIN)
    );
    assert_eq!(h.jitter, Duration::ZERO);
    assert_eq!(cfg.router, RouterSettings::default());
    assert_eq!(cfg.master_key, None);
    let info = cfg.deployments[0].info();
    assert_eq!((info.mode, info.health_check_timeout), (None, None));
}

#[test]
fn an_empty_model_list_is_the_default_config() {
    for text in ["model_list: []\n", "model_list:\ngeneral_settings:\n"] {
        let cfg = Config::from_yaml_str_with_env(text, &|_| None)
            .unwrap_or_else(|e| panic!("{text:?}: {e}"));
        assert!(cfg.deployments.is_empty(), "{text:?}");
        assert_eq!(cfg.health, HealthCheckSettings::default(), "{text:?}");
        assert_eq!(cfg.router, RouterSettings::default(), "{text:?}");
        assert_eq!(cfg.master_key, None, "{text:?}");
    }
}

#[test]
fn env_lookup_is_the_one_given() {
    let yaml =
        "model_list:\n  - model_name: a\n    litellm_params:\n      model: os.environ/MODEL\n";
    let cfg =
        Config::from_yaml_str_with_env(yaml, &env_of(&[("MODEL", "openai/from-env")])).unwrap();
    assert_eq!(cfg.deployments[0].params().model, "openai/from-env");
}

#[test]
fn redis_comes_from_the_environment_only_with_shared_health_checks() {
    let shared = "general_settings:\n  use_shared_health_check: true\n";
    let cfg = Config::from_yaml_str_with_env(
        shared,
        &env_of(&[
            ("REDIS_URL", "redis://:pw-1@127.0.0.1:6390/0"),
            ("REDIS_HOST", "ignored"),
        ]),
    )
    .unwrap();
    match &cfg.router.redis {
        Some(RedisSettings::Url(u)) => assert_eq!(u.expose(), "redis://:pw-1@127.0.0.1:6390/0"),
        other => panic!("expected REDIS_URL, got {other:?}"),
    }
    assert!(!format!("{cfg:?}").contains("pw-1"));

    let cfg = Config::from_yaml_str_with_env(
        shared,
        &env_of(&[
            ("REDIS_HOST", "10.0.0.5"),
            ("REDIS_PORT", "6391"),
            ("REDIS_PASSWORD", "pw-2"),
        ]),
    )
    .unwrap();
    assert_eq!(
        cfg.router.redis,
        Some(RedisSettings::HostPort {
            host: "10.0.0.5".into(),
            port: 6391,
            password: Some("pw-2".into()),
            tls: false,
        })
    );
    let cfg = Config::from_yaml_str_with_env(shared, &env_of(&[("REDIS_HOST", "h")])).unwrap();
    assert_eq!(
        cfg.router.redis,
        Some(RedisSettings::HostPort {
            host: "h".into(),
            port: 6379,
            password: None,
            tls: false,
        })
    );
    let cfg = Config::from_yaml_str_with_env(shared, &|_| None).unwrap();
    assert_eq!(cfg.router.redis, None);

    // Without shared health checks the environment is not read at all.
    let asked = RefCell::new(Vec::new());
    let env = |name: &str| {
        asked.borrow_mut().push(name.to_owned());
        Some("redis://127.0.0.1:1".to_owned())
    };
    let cfg = Config::from_yaml_str_with_env(
        "general_settings:\n  use_shared_health_check: false\n",
        &env,
    )
    .unwrap();
    assert_eq!(cfg.router.redis, None);
    assert!(asked.borrow().is_empty(), "read {:?}", asked.borrow());
}

#[test]
fn redis_url_in_router_settings_is_a_secret() {
    let yaml = "router_settings:\n  redis_url: redis://:pw-3@127.0.0.1:6379\n  redis_host: other\n";
    let cfg = Config::from_yaml_str_with_env(yaml, &|_| panic!("env must not be read")).unwrap();
    match &cfg.router.redis {
        Some(RedisSettings::Url(u)) => assert_eq!(u.expose(), "redis://:pw-3@127.0.0.1:6379"),
        other => panic!("expected the url, got {other:?}"),
    }
    assert!(!format!("{cfg:?}").contains("pw-3"));
}

#[test]
fn litellm_settings_supply_router_keys_router_settings_lacks() {
    let yaml = "\
litellm_settings:
  num_retries: \"4\"
  allowed_fails: 7
  cooldown_time: 0.5
router_settings:
  num_retries: 1
";
    let cfg = Config::from_yaml_str_with_env(yaml, &|_| None).unwrap();
    assert_eq!(cfg.router.num_retries, 1);
    assert_eq!(cfg.router.allowed_fails, Some(7));
    assert_eq!(cfg.router.cooldown_time, Duration::from_millis(500));
}

#[test]
fn every_strategy_name_parses() {
    for name in RoutingStrategy::NAMES {
        let yaml = format!("router_settings:\n  routing_strategy: {name}\n");
        let cfg = Config::from_yaml_str_with_env(&yaml, &|_| None).unwrap();
        assert_eq!(cfg.router.routing_strategy.as_str(), *name);
    }
}

#[test]
fn from_yaml_file_reads_a_file() {
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("thr_config_from_file.yaml");
    std::fs::write(
        &path,
        "model_list:\n  - model_name: a\n    litellm_params: {model: openai/a}\n\
         general_settings: {health_check_interval: 15}\n",
    )
    .unwrap();
    let cfg = Config::from_yaml_file(&path).unwrap();
    assert_eq!(cfg.deployments[0].params().model, "openai/a");
    assert_eq!(cfg.health.interval, Duration::from_secs(15));
}

#[test]
fn a_missing_file_is_an_io_error() {
    let e = Config::from_yaml_file("/nonexistent/dir/config.yaml").unwrap_err();
    assert_eq!(e.field(), "");
    assert!(
        matches!(e.kind(), ConfigErrorKind::Io(why) if why.contains("/nonexistent/dir/config.yaml"))
    );
}
