//! LiteLLM's own configs (`tests/fixtures/litellm_configs/`, copied from its repository:
//! see the README there) parse, with every `os.environ/` variable they read set to a
//! plausible dummy value, and the HTTP probe loop builds over each (deployments it cannot
//! probe are `unsupported`, never a start-up error). The gateway binary's start-up on each is
//! `gateway/tests/dropin.rs`.

use std::path::Path;

use tower_health_routing::{
    Config, HealthState,
    probe::{ProbeDefaults, ProbeLoop},
};

/// A plausible value for each variable the configs read, by the shape of its name.
fn dummy(name: &str) -> String {
    match name {
        n if n.ends_with("_API_BASE") || n.ends_with("_BASE_URL") => "http://127.0.0.1:9/v1".into(),
        "REDIS_HOST" => "127.0.0.1".into(),
        "REDIS_PORT" => "6379".into(),
        "DATABASE_URL" => "postgresql://127.0.0.1:5432/litellm".into(),
        "VERTEXAI_PROJECT" => "my-project".into(),
        n if n.ends_with("_CREDENTIALS") => serde_json::json!({
            "type": "service_account",
            "project_id": "my-project",
            "private_key": "-----BEGIN PRIVATE KEY-----\nMIIEdummy\n-----END PRIVATE KEY-----\n",
            "client_email": "probe@my-project.iam.gserviceaccount.com",
        })
        .to_string(),
        n => format!("dummy-{}", n.to_ascii_lowercase()),
    }
}

/// Files that are truly malformed, LiteLLM's own loader included, with the field at fault.
const MALFORMED: &[(&str, &str)] = &[
    // `- model_name: gpt-3.5-turbo` and nothing else: no `litellm_params`, so no `model`
    // (LiteLLM's router rejects it too: `litellm_params` is required per deployment).
    (
        "example_config_yaml__langfuse_config.yaml",
        "model_list[0].litellm_params.model",
    ),
];

#[test]
fn every_shipped_litellm_config_parses() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/litellm_configs");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 30, "fixtures missing: {}", files.len());
    let env = |name: &str| Some(dummy(name));
    let mut failed = Vec::new();
    let mut parsed = 0;
    let mut unsupported = 0;
    for f in &files {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(f).unwrap();
        let result = Config::from_yaml_str_with_env(&text, &env);
        match (result, MALFORMED.iter().find(|(n, _)| *n == name)) {
            (Ok(cfg), None) => {
                parsed += 1;
                // Start-up with the HTTP prober: providers it cannot reach become an
                // `unsupported` state, never an error.
                let state = HealthState::new(cfg);
                let built = ProbeLoop::builder(&state)
                    .defaults(ProbeDefaults::default())
                    .build();
                match built {
                    Ok(_) => unsupported += state.snapshot().unsupported_count(),
                    Err(e) => failed.push(format!("{name}: the probe loop refuses it: {e}")),
                }
            }
            (Err(e), Some((_, field))) if e.field() == *field => {}
            (Ok(_), Some(_)) => failed.push(format!("{name}: expected to be refused, parsed")),
            (Err(e), _) => failed.push(format!("{name}: {e}")),
        }
    }
    eprintln!(
        "LiteLLM configs parsed: {parsed} of {} ({} malformed); {unsupported} deployments unsupported",
        files.len(),
        MALFORMED.len()
    );
    assert!(failed.is_empty(), "{}", failed.join("\n"));
    assert_eq!(parsed + MALFORMED.len(), files.len());
}
