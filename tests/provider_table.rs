//! One table ([`fixtures/provider_table.rs`](fixtures/provider_table.rs)) drives both the
//! HTTP prober (its real request, as a recording server on 127.0.0.1 receives it) and the
//! catalog function the gateway's forwarder calls, so a deployment is probed where its
//! traffic goes.

mod support;

#[path = "fixtures/provider_table.rs"]
mod table;

use std::sync::Arc;

use support::upstream::Upstream;
use table::{KEY, ROWS, Row};
use tower_health_routing::{
    Deployment,
    probe::{HttpProber, ProbeDefaults, Prober},
    provider::{self, Purpose},
};

const CREDENTIAL_HEADERS: &[&str] = &["authorization", "api-key", "x-api-key"];

fn deployment(up: &Upstream, row: &Row) -> Deployment {
    Deployment::builder("r", row.model)
        .api_base(format!("{}{}", up.base(), row.base))
        .api_key(KEY)
        .mode(row.mode)
        .build()
}

fn check_headers(what: &str, row: &Row, get: impl Fn(&str) -> Option<String>) {
    for (name, value) in row.headers {
        assert_eq!(
            get(name).as_deref(),
            Some(*value),
            "{what} {} {}: {name}",
            row.model,
            row.mode
        );
    }
    for name in CREDENTIAL_HEADERS {
        if !row.headers.iter().any(|(n, _)| n == name) {
            assert_eq!(
                get(name),
                None,
                "{what} {} {}: {name} must be absent",
                row.model,
                row.mode
            );
        }
    }
}

#[tokio::test]
async fn the_prober_sends_what_the_table_says() {
    let up = Upstream::ok();
    let prober = HttpProber::new(ProbeDefaults::default()).unwrap();
    for (i, row) in ROWS.iter().enumerate() {
        let d = deployment(&up, row);
        let out = prober.probe(Arc::new(d.clone())).await;
        assert!(out.healthy, "{} {}: {out:?}", row.model, row.mode);
        let reqs = up.requests();
        assert_eq!(reqs.len(), i + 1, "one request per row");
        let r = &reqs[i];
        let ctx = format!("{} {}", row.model, row.mode);
        assert_eq!(r.method.as_str(), row.method, "{ctx}");
        assert_eq!(r.path, row.path, "{ctx}");
        assert_eq!(r.query.as_deref(), row.query, "{ctx}");
        check_headers("probe", row, |n| r.header(n).map(str::to_owned));
        let ep = provider::endpoint(&d, row.model, row.mode, Purpose::Probe).unwrap();
        assert_eq!(ep.wire, row.wire, "{ctx}");
    }
}

#[test]
fn the_forwarder_sends_what_the_table_says() {
    // The address is never called: only the URLs the catalog gives are compared.
    let up = Upstream::ok();
    for row in ROWS {
        let d = deployment(&up, row);
        let ctx = format!("{} {}", row.model, row.mode);
        let got = provider::endpoint(&d, row.model, row.mode, Purpose::Forward);
        let Some(path) = row.forward_path else {
            assert!(
                matches!(got, Err(provider::ProviderError::Unsupported { .. })),
                "{ctx}: {got:?}"
            );
            continue;
        };
        let ep = got.unwrap_or_else(|e| panic!("{ctx}: {e}"));
        let uri: http::Uri = ep.url.parse().unwrap();
        assert_eq!(
            uri.authority().map(|a| a.as_str()),
            Some(up.addr.to_string().as_str()),
            "{ctx}"
        );
        assert_eq!(uri.path(), path, "{ctx}");
        assert_eq!(uri.query(), row.forward_query, "{ctx}");
        assert_eq!(ep.wire, row.forward_wire, "{ctx}");
        check_headers("forward", row, |n| {
            ep.headers.get(n).map(|v| v.to_str().unwrap().to_owned())
        });
        // The forwarder finds the same endpoint from the client's OpenAI path.
        if let Some(p) = openai_path(row.mode) {
            let via_path = provider::forward_endpoint(&d, p).unwrap();
            assert_eq!(via_path.url, ep.url, "{ctx}");
        }
    }
}

fn openai_path(mode: tower_health_routing::Mode) -> Option<&'static str> {
    use tower_health_routing::Mode::*;
    Some(match mode {
        Chat => "/v1/chat/completions",
        Completion => "/v1/completions",
        Responses => "/v1/responses",
        Embedding => "/v1/embeddings",
        ImageGeneration => "/v1/images/generations",
        AudioSpeech => "/v1/audio/speech",
        AudioTranscription => "/v1/audio/transcriptions",
        Rerank => "/v1/rerank",
        Batch => "/v1/batches",
        Moderation => "/v1/moderations",
        VideoGeneration => "/v1/videos",
        _ => return None,
    })
}
