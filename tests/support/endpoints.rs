//! Calling the health endpoints in tests: build requests, read answers as JSON.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::Value;
use tower::ServiceExt;
use tower_health_routing::{
    HealthState,
    endpoints::HealthEndpoints,
    probe::{ProbeLoop, Prober},
};

use super::script::Script;

/// One answer: status, headers and body text.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub text: String,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }
    pub fn content_type(&self) -> &str {
        self.headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

/// A GET of `uri` with extra `headers`.
pub fn get(uri: &str, headers: &[(&str, &str)]) -> Request<()> {
    let mut b = Request::get(uri);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(()).expect("request")
}

pub async fn read(resp: http::Response<Full<Bytes>>) -> Answer {
    let (parts, body) = resp.into_parts();
    let bytes = body.collect().await.expect("infallible").to_bytes();
    Answer {
        status: parts.status,
        headers: parts.headers,
        text: String::from_utf8(bytes.to_vec()).expect("UTF-8 body"),
    }
}

/// Calls the service once.
pub async fn call(ep: &HealthEndpoints, req: Request<()>) -> Answer {
    read(ep.clone().oneshot(req).await.expect("infallible")).await
}

/// GET `uri` with the given headers.
pub async fn call_get(ep: &HealthEndpoints, uri: &str, headers: &[(&str, &str)]) -> Answer {
    call(ep, get(uri, headers)).await
}

/// A probe loop over `state` with the scripted prober.
pub fn probes(state: &HealthState, script: &Arc<Script>) -> ProbeLoop {
    ProbeLoop::builder(state)
        .prober(Arc::clone(script) as Arc<dyn Prober>)
        .build()
        .expect("loop")
}

/// Endpoints over `state`, probing with `script`.
pub fn endpoints(state: &HealthState, script: &Arc<Script>) -> HealthEndpoints {
    HealthEndpoints::new(state.clone(), probes(state, script))
}

/// The sorted keys of a JSON object.
pub fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .cloned()
        .collect();
    k.sort();
    k
}

/// The `model_id`s of one list of a `/health` body.
pub fn ids(body: &Value, list: &str) -> Vec<String> {
    body[list]
        .as_array()
        .unwrap_or_else(|| panic!("no `{list}` in {body}"))
        .iter()
        .map(|e| e["model_id"].as_str().expect("model_id").to_owned())
        .collect()
}
