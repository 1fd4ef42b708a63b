//! Arbitrary text as LiteLLM's `config.yaml`: parsing never panics; what parses is valid,
//! builds a routing state that answers every route, and never shows its secrets in
//! `Debug`; what does not parse is an error that names a field or the document.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tower_health_routing::{Config, HealthState, routing::Picker};

/// The value of `os.environ/KEY` (a secret-looking name, so its value is a secret):
/// distinctive, so that finding it in an error message means a leak.
const ENV_SECRET: &str = "fuzz-env-secret-7f3a9c";

/// Only `os.environ/SET` and `os.environ/KEY` are set.
fn env(name: &str) -> Option<String> {
    match name {
        "SET" => Some("plain-value".to_owned()),
        "KEY" => Some(ENV_SECRET.to_owned()),
        _ => None,
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let cfg = match Config::from_yaml_str_with_env(text, &env) {
        Ok(cfg) => cfg,
        Err(e) => {
            let shown = format!("{e} {e:?}");
            if !text.contains("7f3a9c") {
                assert!(!shown.contains(ENV_SECRET), "secret in the error: {shown}");
            }
            return;
        }
    };
    if let Err(e) = cfg.validate() {
        panic!("a parsed config must be valid: {e}");
    }
    let mut secrets: Vec<String> = cfg
        .deployments
        .iter()
        .flat_map(|d| d.secrets())
        .chain(cfg.master_key.iter())
        .map(|s| s.expose().to_owned())
        .collect();
    secrets.retain(|s| s.len() >= 8 && text.matches(s.as_str()).count() <= 1);
    let shown = format!("{cfg:?}");
    for s in &secrets {
        assert!(
            !shown.contains(s.as_str()),
            "secret {s:?} in Debug: {shown}"
        );
    }

    // The state built from it routes every route it names.
    let state = HealthState::new(cfg);
    let snap = state.snapshot();
    let mut picker = Picker::new(state.clone()).with_seed(1);
    let routes: Vec<String> = snap.routes().map(str::to_owned).collect();
    for r in &routes {
        let p = picker.pick(&snap, r, &[]);
        let p = p.unwrap_or_else(|e| panic!("route {r:?} has no pick: {e}"));
        assert!(
            snap.route(r)
                .is_some_and(|mut m| m.any(|d| d.id() == p.deployment().id())),
            "pick outside route {r:?}"
        );
    }
    for d in snap.deployments() {
        assert!(
            routes.iter().any(|r| r == d.route()),
            "deployment without its route"
        );
    }
});
