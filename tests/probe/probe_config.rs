//! Deployments whose config cannot work under the HTTP prober are config errors when the
//! loop is built, naming the field, not confusing failures at probe time; providers the
//! catalog does not speak are unsupported (a probe that says so), not errors.

use std::{sync::Arc, time::Duration};

use crate::support::{state_with, with_info};
use tower_health_routing::{
    Deployment, Mode,
    probe::{ProbeDefaults, ProbeLoop, ProbeOutcome, prober_fn},
};

fn http_loop(ds: Vec<Deployment>) -> Result<ProbeLoop, tower_health_routing::ConfigError> {
    let state = state_with(ds, |b| b);
    ProbeLoop::builder(&state)
        .defaults(ProbeDefaults::default())
        .build()
}

fn ok_deployment() -> Deployment {
    Deployment::builder("ok", "openai/gpt-4o")
        .api_base("http://127.0.0.1:9/v1")
        .build()
}

#[test]
fn providers_without_a_default_need_api_base() {
    for model in [
        "azure/my-deployment",
        "hosted_vllm/llama",
        "my_own_provider/x",
    ] {
        let e = http_loop(vec![
            ok_deployment(),
            Deployment::builder("r", model).api_key("k").build(),
        ])
        .unwrap_err();
        assert_eq!(
            e.field(),
            "model_list[1].litellm_params.api_base",
            "{model}"
        );
        let text = e.to_string();
        assert!(text.contains("has no api_base"), "{text}");
        assert!(!text.contains("\"k\""));
    }
}

/// Changed with the provider catalog: a native API the catalog does not speak is a state
/// of the deployment (its probe says why), not a config error, with or without api_base.
/// (Bedrock and Vertex AI are spoken natively: see their tests in `src/provider/`.)
#[tokio::test]
async fn native_apis_we_do_not_speak_are_unsupported_not_config_errors() {
    use tower_health_routing::probe::{HttpProber, Prober};
    for model in [
        "sagemaker/my-endpoint",
        "watsonx/ibm/granite",
        "auto_router/my-router",
    ] {
        for base in [None, Some("http://127.0.0.1:9/v1")] {
            let mut b = Deployment::builder("r", model).api_key("k");
            if let Some(base) = base {
                b = b.api_base(base);
            }
            let d = b.build();
            assert!(
                http_loop(vec![ok_deployment(), d.clone()]).is_ok(),
                "{model}"
            );
            let out = HttpProber::new(ProbeDefaults::default())
                .unwrap()
                .probe(Arc::new(d))
                .await;
            assert!(!out.healthy, "{model}");
            let reason = out.reason.unwrap();
            assert!(
                reason.starts_with("unsupported: provider `") && reason.contains("not supported"),
                "{reason}"
            );
        }
    }
}

#[test]
fn wildcards_without_a_health_check_model_and_unoffered_modes() {
    let e = http_loop(vec![Deployment::builder("openai/*", "openai/*").build()]).unwrap_err();
    assert_eq!(e.field(), "model_list[0].model_info.health_check_model");
    let e = http_loop(vec![
        Deployment::builder("r", "anthropic/claude-3")
            .api_base("http://127.0.0.1:9")
            .mode(Mode::Embedding)
            .build(),
    ])
    .unwrap_err();
    assert_eq!(e.field(), "model_list[0].model_info.mode");
    assert!(
        e.to_string()
            .contains("provider `anthropic` offers no `embedding` endpoint"),
        "{e}"
    );
}

#[test]
fn a_key_no_header_can_carry() {
    let d = Deployment::builder("r", "openai/gpt-4o")
        .api_base("http://127.0.0.1:9/v1")
        .api_key("sk-line\nbreak")
        .build();
    let e = http_loop(vec![d]).unwrap_err();
    assert_eq!(e.field(), "model_list[0].litellm_params.api_key");
    assert!(!e.to_string().contains("sk-line"), "{e}");
}

#[test]
fn bad_api_base() {
    let d = Deployment::builder("r", "openai/gpt-4o")
        .api_base("localhost:8000")
        .build();
    // Not an absolute URL: refused when the config is built, before any prober.
    let e = tower_health_routing::Config::builder()
        .deployment(d)
        .build()
        .unwrap_err();
    assert_eq!(e.field(), "model_list[0].litellm_params.api_base");
    assert!(e.to_string().contains("absolute URL"), "{e}");
}

#[test]
fn never_probed_deployments_are_not_checked() {
    let bedrock = with_info(Deployment::builder("r", "azure/no-api-base"), |i| {
        i.disable_background_health_check = true
    });
    // Disabled but still probed on demand: checked.
    assert!(http_loop(vec![bedrock.clone()]).is_err());
    // Disabled and skipped on demand too: never probed, so fine.
    let state = state_with(vec![bedrock], |b| {
        b.health_check_skip_disabled_background_models(true)
    });
    assert!(
        ProbeLoop::builder(&state)
            .defaults(ProbeDefaults::default())
            .build()
            .is_ok()
    );
}

#[test]
fn a_custom_prober_takes_any_deployment() {
    let state = state_with(
        vec![Deployment::builder("r", "bedrock/anthropic.claude-v2").build()],
        |b| b,
    );
    let p = prober_fn(|_d| async { ProbeOutcome::healthy() });
    assert!(
        ProbeLoop::builder(&state)
            .prober(Arc::new(p))
            .build()
            .is_ok()
    );
}

#[test]
fn zero_default_timeout_is_rejected() {
    let state = state_with(vec![ok_deployment()], |b| b);
    let e = ProbeLoop::builder(&state)
        .defaults(ProbeDefaults::default())
        .default_timeout(Duration::ZERO)
        .build()
        .unwrap_err();
    assert_eq!(e.field(), "probe.default_timeout");
}

#[test]
fn from_config_validates_and_keeps_the_state() {
    let cfg = tower_health_routing::Config::builder()
        .deployment(ok_deployment())
        .build()
        .expect("valid");
    let (state, probes) = ProbeLoop::from_config(cfg).expect("built");
    assert_eq!(state.snapshot().deployments().len(), 1);
    drop(probes);
}
