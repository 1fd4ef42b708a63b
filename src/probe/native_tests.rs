//! Bedrock and Vertex AI through the HTTP prober and the probe loop, against the native
//! probes' own test servers (SigV4-verifying Bedrock, OAuth token endpoint + Vertex AI).
#![allow(clippy::disallowed_types)] // the test servers record under a Mutex

/// The whole path: the catalog names the Bedrock wire, the HTTP prober signs and sends
/// the probe, its classifier judges the answer; a probe loop round records the verdict.
mod bedrock {
    use std::sync::Arc;

    use crate::deployment::{Deployment, Mode};
    use crate::provider::aws::tests::*;
    use crate::provider::test_support::Logs;
    use crate::{
        config::Config,
        probe::{HttpProber, ProbeLoop, Prober},
        provider::{ProviderError, Purpose, Wire, endpoint, forward_endpoint},
    };

    #[tokio::test]
    async fn right_secret_is_healthy_wrong_secret_is_unhealthy() {
        let (base, seen) = bedrock_server(SECRET, REGION).await;
        let prober = HttpProber::builder().build().unwrap();
        let good = Arc::new(deployment(MODEL, &base, SECRET, Some(SESSION)));
        let out = prober.probe(good.clone()).await;
        assert!(out.healthy, "{out:?}");
        let bad = Arc::new(deployment(MODEL, &base, "not-the-secret", None));
        let out = prober.probe(bad).await;
        assert!(!out.healthy);
        assert_eq!(out.status, Some(403));
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 2, "both probes reached the server");
        assert_eq!(seen[0].verdict, Ok(()));
        assert_eq!(seen[0].security_token.as_deref(), Some(SESSION));
        assert_eq!(
            seen[0].path,
            "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse"
        );
        assert_eq!(seen[1].verdict, Err("signature mismatch".into()));
    }

    #[tokio::test]
    async fn a_probe_loop_round_marks_each_deployment() {
        let (base, _) = bedrock_server(SECRET, REGION).await;
        let good = Deployment::builder("claude", "anthropic.claude-3-haiku-20240307-v1:0")
            .id("good")
            .param("aws_bedrock_runtime_endpoint", base.as_str().into())
            .param("aws_access_key_id", KEY_ID.into())
            .param("aws_secret_access_key", SECRET.into())
            .param("aws_region_name", REGION.into())
            .build();
        let bad = Deployment::builder("claude", MODEL)
            .id("bad")
            .api_base(&base)
            .param("aws_access_key_id", KEY_ID.into())
            .param("aws_secret_access_key", "not-the-secret".into())
            .param("aws_region_name", REGION.into())
            .build();
        let cfg = Config::builder().deployments([good, bad]).build().unwrap();
        let (state, probes) = ProbeLoop::from_config(cfg).unwrap();
        let report = probes.run_round().await.unwrap();
        assert_eq!(report.results.len(), 2);
        let snap = state.snapshot();
        assert_eq!(snap.health("good").map(|h| h.healthy), Some(true));
        assert_eq!(snap.health("bad").map(|h| h.healthy), Some(false));
    }

    #[test]
    fn the_catalog_speaks_bedrock_natively_and_never_forwards_it() {
        for model in [
            MODEL,
            "anthropic.claude-3-haiku-20240307-v1:0",
            "bedrock/us-west-2/meta.llama3-8b-instruct-v1:0",
        ] {
            // An api_base does not make it OpenAI.
            let d = deployment(model, "http://127.0.0.1:1/v1", SECRET, None);
            let ep = endpoint(&d, model, Mode::Chat, Purpose::Probe).unwrap();
            assert_eq!(ep.wire, Wire::Bedrock, "{model}");
            assert_eq!(ep.provider, "bedrock");
            let fwd = forward_endpoint(&d, "/v1/chat/completions").unwrap_err();
            assert!(
                matches!(&fwd, ProviderError::Unsupported { provider, .. } if provider == "bedrock"),
                "{fwd:?}"
            );
        }
    }

    /// No secret in anything the prober or the loop shows, with TRACE logs captured.
    #[tokio::test]
    async fn no_secret_through_the_loop_at_trace() {
        let logs = Logs::capture();
        let (base, _) = bedrock_server(SECRET, REGION).await;
        let ok = deployment(MODEL, &base, SECRET, Some(SESSION));
        let wrong = Deployment::builder("claude", MODEL)
            .id("wrong")
            .api_base(&base)
            .param("aws_access_key_id", KEY_ID.into())
            .param("aws_secret_access_key", "wrong-secret-value".into())
            .param("aws_session_token", SESSION.into())
            .param("aws_region_name", REGION.into())
            .build();
        let cfg = Config::builder().deployments([ok, wrong]).build().unwrap();
        let (state, probes) = ProbeLoop::from_config(cfg).unwrap();
        let report = probes.run_round().await.unwrap();
        let prober = HttpProber::builder().build().unwrap();
        let snap = state.snapshot();
        let first = snap.deployments().next().unwrap().clone();
        let built = prober.build_request(&first);
        let text = format!("{report:?} {snap:?} {built:?} {prober:?} {}", logs.text());
        assert!(
            text.contains("status 403") || text.contains("403"),
            "{text}"
        );
        for secret in [SECRET, SESSION, "wrong-secret-value"] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
    }
}

/// The whole path: the catalog names the Vertex AI wire, the HTTP prober fetches the token
/// (once) and sends the probe, its classifier judges the answer.
mod vertex {
    use std::sync::{Arc, atomic::Ordering::SeqCst};

    use crate::deployment::{Deployment, Mode};
    use crate::provider::test_support::Logs;
    use crate::provider::vertex::tests::*;
    use crate::{
        config::Config,
        probe::{HttpProber, ProbeLoop, Prober},
        provider::{ProviderError, Purpose, Wire, endpoint, forward_endpoint},
    };

    #[tokio::test]
    async fn one_token_for_several_probes_and_a_rejected_token_is_unhealthy() {
        let tokens = token_server(&[3600], false).await;
        let (base, seen) = vertex_server(None).await;
        let creds = key_json(&tokens.url, None);
        let prober = HttpProber::builder().build().unwrap();
        let a = Arc::new(deployment("vertex_ai/gemini-1.5-pro", &base, &creds));
        let b = Arc::new(deployment("vertex_ai_beta/gemini-2.0-flash", &base, &creds));
        for d in [&a, &b, &a] {
            let out = prober.probe(d.clone()).await;
            assert!(out.healthy, "{out:?}");
        }
        assert_eq!(
            tokens.calls.load(SeqCst),
            1,
            "one token exchange for three probes"
        );
        assert_eq!(seen.lock().unwrap()[0].path, GEN_PATH);
        assert!(seen.lock().unwrap().iter().all(|s| s.bearer == "tok-1"));

        let (other, _) = vertex_server(Some("tok-from-another-account")).await;
        let d = Arc::new(deployment("vertex_ai/gemini-1.5-pro", &other, &creds));
        let out = prober.probe(d).await;
        assert!(!out.healthy);
        assert_eq!(out.status, Some(401));
    }

    #[tokio::test]
    async fn a_failed_token_exchange_is_unhealthy_with_a_scrubbed_reason() {
        let tokens = token_server(&[3600], true).await;
        let (base, seen) = vertex_server(None).await;
        let d = deployment(
            "vertex_ai/gemini-1.5-pro",
            &base,
            &key_json(&tokens.url, None),
        );
        let cfg = Config::builder().deployments([d]).build().unwrap();
        let (state, probes) = ProbeLoop::from_config(cfg).unwrap();
        let report = probes.run_round().await.unwrap();
        let out = &report.results[0].outcome;
        assert!(!out.healthy);
        let reason = out.reason.as_deref().unwrap_or_default();
        assert!(reason.starts_with("auth: "), "{reason}");
        assert!(!reason.contains("PRIVATE KEY"), "{reason}");
        assert!(seen.lock().unwrap().is_empty(), "no probe without a token");
        let id = report.results[0].id().clone();
        assert_eq!(
            state.snapshot().health(id.as_str()).map(|h| h.healthy),
            Some(false)
        );
    }

    #[test]
    fn the_catalog_speaks_vertex_natively_and_never_forwards_it() {
        for model in [
            "vertex_ai/gemini-1.5-pro",
            "vertex_ai_beta/gemini-1.5-pro",
            "gemini-1.5-pro",
        ] {
            let d = deployment(model, "http://127.0.0.1:1/v1", "{}");
            let ep = endpoint(&d, model, Mode::Chat, Purpose::Probe).unwrap();
            assert_eq!(ep.wire, Wire::Vertex, "{model}");
            let fwd = forward_endpoint(&d, "/v1/chat/completions").unwrap_err();
            assert!(matches!(fwd, ProviderError::Unsupported { .. }), "{fwd:?}");
        }
        // Gemini's own API keeps its OpenAI-compatible entry.
        let d = Deployment::builder("g", "gemini/gemini-1.5-pro").build();
        let ep = endpoint(&d, "gemini/gemini-1.5-pro", Mode::Chat, Purpose::Probe).unwrap();
        assert_eq!(ep.wire, Wire::OpenAi);
    }

    #[tokio::test]
    async fn no_secret_through_the_loop_at_trace() {
        let logs = Logs::capture();
        let tokens = token_server(&[3600], false).await;
        let (base, _) = vertex_server(None).await;
        let creds = key_json(&tokens.url, None);
        let d = deployment("vertex_ai/gemini-1.5-pro", &base, &creds);
        let cfg = Config::builder().deployments([d]).build().unwrap();
        let (state, probes) = ProbeLoop::from_config(cfg).unwrap();
        let report = probes.run_round().await.unwrap();
        assert!(report.results[0].outcome.healthy, "{report:?}");
        let snap = state.snapshot();
        let text = format!("{report:?} {snap:?} {}", logs.text());
        let key_body: String = PRIVATE_KEY
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .take(2)
            .collect();
        for secret in [key_body.as_str(), "tok-1"] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
    }
}
