//! Probing one deployment with the HTTP prober against an [`Upstream`], for wire-shape tests.

use std::sync::Arc;

use tower_health_routing::{
    Deployment, Mode,
    probe::{HttpProber, ProbeDefaults, ProbeOutcome, Prober},
};

use super::upstream::{Recorded, Upstream};

pub const KEY: &str = "sk-test-key-123";
pub const QUESTIONS: [&str; 2] = ["Hey how's it going?", "What's 1 + 1?"];

pub async fn probe_with(
    up: &Upstream,
    d: Deployment,
    defaults: ProbeDefaults,
) -> (ProbeOutcome, Recorded) {
    let p = HttpProber::new(defaults).expect("prober");
    let outcome = p.probe(Arc::new(d)).await;
    (outcome, up.only())
}

pub async fn probe(up: &Upstream, d: Deployment) -> (ProbeOutcome, Recorded) {
    probe_with(up, d, ProbeDefaults::default()).await
}

pub fn openai(up: &Upstream, model: &str, mode: Option<Mode>) -> Deployment {
    let mut b = Deployment::builder("r", model)
        .api_base(up.v1())
        .api_key(KEY);
    if let Some(m) = mode {
        b = b.mode(m);
    }
    b.build()
}

pub fn assert_post_json(r: &Recorded, path: &str) {
    assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", path));
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(
        r.header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
}
