//! Deployments the HTTP prober cannot probe (providers the catalog does not speak, no
//! `api_base` where one is needed, a wildcard without `health_check_model`, ...) are
//! `unsupported` when the loop is built, with the catalog's reason naming the field: never
//! probed, never a start-up error.

use std::{sync::Arc, time::Duration};

use crate::support::state_with;
use tower_health_routing::{
    Deployment, Mode,
    probe::{ProbeDefaults, ProbeLoop, ProbeOutcome, prober_fn},
};

fn ok_deployment() -> Deployment {
    Deployment::builder("ok", "openai/gpt-4o")
        .api_base("http://127.0.0.1:9/v1")
        .build()
}

/// Why the loop built over `ds` marks deployment `i` unsupported (`None`: supported).
fn unsupported(ds: Vec<Deployment>, i: usize) -> Option<String> {
    let state = state_with(ds, |b| b);
    ProbeLoop::builder(&state)
        .defaults(ProbeDefaults::default())
        .build()
        .expect("a deployment the prober cannot probe never stops start-up");
    let snap = state.snapshot();
    let d = snap.deployments().nth(i).expect("deployment").clone();
    snap.unsupported(d.id().as_str()).map(|u| {
        assert!(
            u.routable,
            "the prober never takes a deployment out of routing"
        );
        u.reason.to_string()
    })
}

/// Changed with issue 12: no `api_base` where the provider has no default is a state of
/// the deployment (never probed, its reason naming the field), not a start-up error.
#[test]
fn providers_without_a_default_and_no_api_base_are_unsupported() {
    for model in [
        "azure/my-deployment",
        "hosted_vllm/llama",
        "my_own_provider/x",
    ] {
        let ds = vec![
            ok_deployment(),
            Deployment::builder("r", model).api_key("k").build(),
        ];
        assert_eq!(unsupported(ds.clone(), 0), None, "{model}");
        let why = unsupported(ds, 1).expect(model);
        assert!(
            why.starts_with("litellm_params.api_base: ") && why.contains("has no api_base"),
            "{why}"
        );
        assert!(!why.contains("\"k\""));
    }
}

/// Changed with the provider catalog: a native API the catalog does not speak is a state
/// of the deployment (its probe says why), not a config error, with or without api_base.
/// (Bedrock and Vertex AI are spoken natively: see their tests in `src/provider/`.)
/// A native API the catalog does not speak is a state of the deployment (its probe says
/// why), not a config error, with or without api_base.
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
            let why = unsupported(vec![ok_deployment(), d.clone()], 1).expect(model);
            assert!(
                why.starts_with("provider `") && why.contains("not supported"),
                "{why}"
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

/// Changed with issue 12: a wildcard without `health_check_model`, a mode the provider
/// lacks and a key no header can carry are unsupported deployments naming the field.
#[test]
fn wildcards_without_a_health_check_model_and_unoffered_modes() {
    let why = unsupported(vec![Deployment::builder("openai/*", "openai/*").build()], 0).unwrap();
    assert!(
        why.starts_with("model_info.health_check_model: the wildcard model `openai/*`"),
        "{why}"
    );
    let ds = vec![
        Deployment::builder("r", "anthropic/claude-3")
            .api_base("http://127.0.0.1:9")
            .mode(Mode::Embedding)
            .build(),
    ];
    let why = unsupported(ds, 0).unwrap();
    assert!(
        why.starts_with("model_info.mode: provider `anthropic` offers no `embedding` endpoint"),
        "{why}"
    );
}

#[test]
fn a_key_no_header_can_carry() {
    let d = Deployment::builder("r", "openai/gpt-4o")
        .api_base("http://127.0.0.1:9/v1")
        .api_key("sk-line\nbreak")
        .build();
    let why = unsupported(vec![d], 0).unwrap();
    assert!(why.starts_with("litellm_params.api_key: "), "{why}");
    assert!(!why.contains("sk-line"), "{why}");
}

/// Unsupported deployments are never probed: not in background rounds, not on demand.
#[tokio::test]
async fn unsupported_deployments_are_never_probed() {
    let state = state_with(
        vec![
            ok_deployment(),
            Deployment::builder("ok", "sagemaker/my-endpoint").build(),
        ],
        |b| b,
    );
    let probes = ProbeLoop::builder(&state)
        .defaults(ProbeDefaults::default())
        .build()
        .unwrap();
    let snap = state.snapshot();
    let ids: Vec<_> = snap.deployments().map(|d| d.id().clone()).collect();
    assert_eq!(snap.unsupported_count(), 1);
    let round = probes.run_round().await.unwrap();
    let probed: Vec<_> = round
        .results
        .iter()
        .map(|r| r.deployment.id().clone())
        .collect();
    assert_eq!(probed, vec![ids[0].clone()]);
    let now = probes
        .check_now(tower_health_routing::probe::ProbeTarget::All)
        .await;
    assert_eq!(now.results.len(), 1);
    assert!(state.snapshot().health(ids[1].as_str()).is_none());
    // Only probing is impossible: the router may still pick it (a forwarder of your own).
    assert!(
        state
            .snapshot()
            .unsupported(ids[1].as_str())
            .unwrap()
            .routable
    );
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
