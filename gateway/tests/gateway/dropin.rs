//! Drop-in for LiteLLM configs (issue 12): the `thr-gateway` binary starts on every config
//! LiteLLM ships (and on configs covering each case below); deployments it cannot forward
//! are `unsupported` (in `/health`, never routed, a route of only those answers 501);
//! request timeouts cut a hanging upstream and retry elsewhere; `min_healthy_percent` from
//! the config drives readiness; unimplemented settings are listed; auth settings never make
//! the gateway more open. Real sockets, real time, bounded waits.

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use bytes::Bytes;
use http_body_util::Full;
use serde_json::json;
use thr_gateway::{app, dropin};
use thr_testkit::{FakeLlm, Reply as UpReply, Upstream};
use tokio::time::Instant;
use tower_health_routing::Config;

use crate::support::{self, Running, chat_as, fetch, get};

// === the binary on real configs ===

/// A plausible value for each `os.environ/` variable, by the shape of its name (as
/// `tests/config/litellm_configs.rs` does): bases point at a closed local port.
fn dummy(name: &str) -> String {
    match name {
        n if n.ends_with("_API_BASE") || n.ends_with("_BASE_URL") => "http://127.0.0.1:9/v1".into(),
        "REDIS_HOST" => "127.0.0.1".into(),
        "REDIS_PORT" => "6379".into(),
        "DATABASE_URL" => "postgresql://127.0.0.1:5432/litellm".into(),
        "VERTEXAI_PROJECT" => "my-project".into(),
        n if n.ends_with("_CREDENTIALS") => json!({
            "type": "service_account",
            "project_id": "my-project",
            "private_key": "-----BEGIN PRIVATE KEY-----\nMIIEdummy\n-----END PRIVATE KEY-----\n",
            "client_email": "probe@my-project.iam.gserviceaccount.com",
        })
        .to_string(),
        n => format!("dummy-{}", n.to_ascii_lowercase()),
    }
}

/// Every `os.environ/NAME` in `text`.
fn env_vars(text: &str) -> Vec<String> {
    let mut v: Vec<String> = text
        .split("os.environ/")
        .skip(1)
        .map(|rest| {
            rest.chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect()
        })
        .filter(|n: &String| !n.is_empty())
        .collect();
    v.sort();
    v.dedup();
    v
}

/// A started binary: its child, the bound address (once it said so) and its log lines.
struct Started {
    child: Child,
    addr: Option<SocketAddr>,
    log: Vec<String>,
}

impl Drop for Started {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `thr-gateway --config path --host 127.0.0.1 --port 0` with every variable the
/// file reads set to a dummy, and reads its stdout until the "gateway listening" line (or
/// the process ends, or 30 s pass).
fn start_binary(path: &Path) -> Started {
    let text = std::fs::read_to_string(path).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_thr-gateway"));
    cmd.args(["--config", path.to_str().unwrap()])
        .args(["--host", "127.0.0.1", "--port", "0", "--workers", "1"])
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .env_remove("JSON_LOGS")
        .env_remove("DATABASE_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for v in env_vars(&text) {
        cmd.env(&v, dummy(&v));
    }
    let mut child = cmd.spawn().expect("spawn thr-gateway");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut started = Started {
        child,
        addr: None,
        log: Vec::new(),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        let Ok(line) = rx.recv_timeout(left) else {
            break; // ended (stdout closed) or timed out
        };
        let listening = line.contains("gateway listening");
        if listening {
            started.addr = line
                .split_whitespace()
                .find_map(|w| w.strip_prefix("addr="))
                .and_then(|a| a.parse().ok());
        }
        started.log.push(line);
        if listening {
            break;
        }
    }
    if started.addr.is_none() {
        let mut err = String::new();
        if let Some(mut e) = started.child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut e, &mut err);
        }
        started.log.push(format!("stderr: {err}"));
    }
    started
}

/// `GET /health/liveliness` on a started binary, with a bounded wait.
async fn liveliness(addr: SocketAddr) -> u16 {
    let req = http::Request::get(format!("http://{addr}/health/liveliness"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    match tokio::time::timeout(Duration::from_secs(10), fetch(req)).await {
        Ok(r) => r.status,
        Err(_) => 0,
    }
}

fn shipped_configs() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/litellm_configs");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

/// Shipped files that are truly malformed (LiteLLM's own router refuses them too): the
/// binary exits with an error naming the field.
const MALFORMED: &[(&str, &str)] = &[(
    "example_config_yaml__langfuse_config.yaml",
    "model_list[0].litellm_params.model",
)];

/// Configs of our own, one per case the issue names.
const OWN: &[(&str, &str)] = &[
    (
        "bedrock_vertex_and_friends",
        r#"
model_list:
  - model_name: titan
    litellm_params: {model: amazon.titan-embed-text-v1}
  - model_name: claude-bedrock
    litellm_params: {model: bedrock/anthropic.claude-3-sonnet-20240229-v1:0, aws_region_name: us-east-1}
  - model_name: gemini-vertex
    litellm_params: {model: vertex_ai/gemini-1.5-pro, vertex_project: p, vertex_location: us-central1}
  - model_name: gemini
    litellm_params: {model: gemini/gemini-1.5-flash, api_key: os.environ/GEMINI_API_KEY}
  - model_name: voyage
    litellm_params: {model: voyage/voyage-3, api_key: sk-dummy-voyage}
  - model_name: ollama
    litellm_params: {model: ollama/llama3}
  - model_name: openrouter
    litellm_params: {model: openrouter/meta-llama/llama-3-70b}
  - model_name: oci
    litellm_params: {model: oci/cohere.command-r}
  - model_name: auto
    litellm_params: {model: auto_router/my-router}
  - model_name: azure-no-base
    litellm_params: {model: azure/my-deployment, api_key: sk-dummy-azure}
general_settings:
  background_health_checks: false
"#,
    ),
    (
        "wildcards_background_on",
        r#"
model_list:
  - model_name: "openai/*"
    litellm_params: {model: "openai/*", api_base: "http://127.0.0.1:9/v1"}
  - model_name: "anthropic/*"
    litellm_params: {model: "anthropic/*", api_base: "http://127.0.0.1:9"}
general_settings:
  background_health_checks: true
  health_check_interval: 300
"#,
    ),
    (
        "wildcards_background_off",
        r#"
model_list:
  - model_name: "*"
    litellm_params: {model: "openai/*", api_base: "http://127.0.0.1:9/v1"}
"#,
    ),
    (
        "every_knob",
        r#"
model_list:
  - model_name: gpt
    litellm_params:
      model: openai/gpt-4o
      api_base: http://127.0.0.1:9/v1
      timeout: "2"
      stream_timeout: 1.5
router_settings:
  routing_strategy: usage-based-routing-v2
  timeout: 30
  redis_host: 127.0.0.1
  redis_ssl: true
litellm_settings:
  request_timeout: 20_000
  success_callback: ["langfuse"]
  cache: true
  cache_params: {type: redis}
general_settings:
  min_healthy_percent: 50
  unhealthy_threshold: 3
  healthy_threshold: 2
  alerting: ["slack"]
  database_url: os.environ/DATABASE_URL
  custom_auth: my_module.user_api_key_auth
  master_key: sk-1234
guardrails:
  - guardrail_name: g
environment_variables: {X: "1"}
"#,
    ),
];

/// Every shipped LiteLLM config and each of ours starts (`/health/liveliness` 200), a
/// few processes at a time; the malformed one exits naming its field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_starts_on_every_shipped_config_and_ours() {
    let dir = std::env::temp_dir().join(format!("thr-dropin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut files = shipped_configs();
    let shipped = files.len();
    assert!(shipped >= 30, "fixtures missing: {shipped}");
    for (name, text) in OWN {
        let p = dir.join(format!("own__{name}.yaml"));
        std::fs::write(&p, text).unwrap();
        files.push(p);
    }
    let mut started_shipped = 0;
    let mut failed = Vec::new();
    let mut logs = std::collections::BTreeMap::new();
    for chunk in files.chunks(6) {
        let running: Vec<(PathBuf, Started)> = std::thread::scope(|s| {
            let hs: Vec<_> = chunk
                .iter()
                .map(|p| s.spawn(move || (p.clone(), start_binary(p))))
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (path, started) in running {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let malformed = MALFORMED.iter().find(|(n, _)| *n == name);
            match (started.addr, malformed) {
                (Some(addr), None) => {
                    let status = liveliness(addr).await;
                    if status == 200 {
                        started_shipped += usize::from(!name.starts_with("own__"));
                    } else {
                        failed.push(format!("{name}: liveliness answered {status}"));
                    }
                }
                (None, Some((_, field))) => {
                    let said = started.log.iter().any(|l| l.contains(field));
                    assert!(said, "{name} must name {field}: {:?}", started.log);
                }
                (Some(_), Some(_)) => failed.push(format!("{name}: malformed, but started")),
                (None, None) => failed.push(format!("{name}: did not start: {:?}", started.log)),
            }
            logs.insert(name, started.log.clone());
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!(
        "thr-gateway started on {started_shipped} of {shipped} shipped LiteLLM configs \
         ({} malformed) and on all {} of ours",
        MALFORMED.len(),
        OWN.len()
    );
    assert!(failed.is_empty(), "{}", failed.join("\n"));
    assert_eq!(started_shipped + MALFORMED.len(), shipped);

    // What the start-up said, once each: unsupported deployments at warn with their
    // reason, unimplemented settings at warn by path, auth settings at error.
    let own = |n: &str| logs[&format!("own__{n}.yaml")].join("\n");
    let b = own("bedrock_vertex_and_friends");
    for needle in [
        "deployment unsupported",
        "provider `bedrock` is not supported",
        "provider `vertex_ai` is not supported",
        "provider `auto_router` is not supported",
        "litellm_params.api_base: provider `azure` has no api_base",
    ] {
        assert!(b.contains(needle), "{needle} in:\n{b}");
    }
    assert!(
        own("wildcards_background_on").contains("model_info.health_check_model"),
        "{}",
        own("wildcards_background_on")
    );
    let k = own("every_knob");
    let warn = k
        .lines()
        .find(|l| l.contains("not implemented by thr-gateway"))
        .unwrap_or_else(|| panic!("no unimplemented-settings line:\n{k}"));
    assert!(warn.contains("WARN"), "{warn}");
    for path in [
        "litellm_settings.success_callback",
        "litellm_settings.cache",
        "litellm_settings.cache_params",
        "general_settings.alerting",
        "guardrails",
        "environment_variables",
    ] {
        assert!(warn.contains(path), "{path} in {warn}");
    }
    let error = k
        .lines()
        .find(|l| l.contains("only the master key is accepted"))
        .unwrap_or_else(|| panic!("no auth line:\n{k}"));
    assert!(error.contains("ERROR"), "{error}");
    assert!(
        error.contains("general_settings.custom_auth")
            && error.contains("general_settings.database_url"),
        "{error}"
    );
    assert!(!k.contains("sk-1234"), "the master key must not be logged");
}

// === in-process gateway over real sockets ===

/// A gateway with `upstream_timeout` (stopped when dropped).
async fn start(cfg: Config, upstream_timeout: Duration) -> Running {
    support::start_with(
        cfg,
        app::Options {
            upstream_timeout,
            ..support::options()
        },
    )
    .await
}

fn yaml(text: &str) -> Config {
    Config::from_yaml_str(text).unwrap()
}

/// A deployment the gateway cannot forward is never picked; a route of only such ones
/// answers 501 naming the provider; `/health` and readiness details list them.
#[tokio::test]
async fn unforwardable_deployments_are_unsupported_and_never_routed() {
    let up = FakeLlm::start("good").await.unwrap();
    let cfg = yaml(&format!(
        r#"
model_list:
  - model_name: mixed
    litellm_params: {{model: bedrock/anthropic.claude-v2}}
    model_info: {{id: bedrock-1}}
  - model_name: mixed
    litellm_params: {{model: openai/gpt-4o, api_base: "{}"}}
    model_info: {{id: good}}
  - model_name: only-bedrock
    litellm_params: {{model: amazon.titan-text-express-v1}}
    model_info: {{id: bedrock-2}}
"#,
        up.api_base()
    ));
    let gw = start(cfg, Duration::from_secs(5)).await;
    for _ in 0..20 {
        let r = chat_as(gw.addr, "mixed", None).await;
        assert_eq!((r.status, r.served_by().as_str()), (200, "good"));
    }
    let r = chat_as(gw.addr, "only-bedrock", None).await;
    assert_eq!(r.status, 501, "{:?}", r.json());
    let msg = r.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(
        msg.contains("only-bedrock") && msg.contains("provider `bedrock` is not supported"),
        "{msg}"
    );
    assert_eq!(r.json()["error"]["type"], "unsupported_provider");

    let h = get(gw.addr, "/health", None).await.json();
    assert_eq!(h["unsupported_count"], 2, "{h}");
    let ids: Vec<&str> = h["unsupported_endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["model_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["bedrock-1", "bedrock-2"]);
    assert!(
        h["unsupported_endpoints"][0]["error"]
            .as_str()
            .unwrap()
            .contains("cannot forward"),
        "{h}"
    );
    // Probed on demand: only the supported one.
    assert_eq!(h["healthy_count"], 1, "{h}");
    assert_eq!(h["unhealthy_count"], 0, "{h}");
    let d = get(gw.addr, "/health/readiness/details", None).await.json();
    assert_eq!(d["unsupported_count"], 2, "{d}");
    assert_eq!(d["unsupported_endpoints"][0]["routable"], false, "{d}");
    assert!(gw.state.snapshot().unsupported("bedrock-1").is_some());
}

/// `timeout: 2` on a hanging upstream: the request is cut at about 2 s, counted as a
/// failure (cooldown with `allowed_fails: 0`) and retried on the other deployment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_upstream_is_cut_at_its_timeout_and_retried_elsewhere() {
    let hang = Upstream::start(|_| UpReply::hang());
    let good = FakeLlm::start("good").await.unwrap();
    let cfg = yaml(&format!(
        r#"
model_list:
  - model_name: gpt
    litellm_params: {{model: openai/gpt-4o, api_base: "{}", timeout: 2}}
    model_info: {{id: hanging}}
  - model_name: gpt
    litellm_params: {{model: openai/gpt-4o, api_base: "{}"}}
    model_info: {{id: good}}
router_settings:
  routing_strategy: round-robin
  num_retries: 1
  allowed_fails: 0
"#,
        hang.v1(),
        good.api_base()
    ));
    // The forwarder's own timeout is long: only the deployment's cuts.
    let gw = start(cfg, Duration::from_secs(600)).await;
    let t0 = Instant::now();
    let r = chat_as(gw.addr, "gpt", None).await;
    let took = t0.elapsed();
    eprintln!("hanging upstream with timeout: 2 -> answered after {took:?}");
    assert_eq!((r.status, r.served_by().as_str()), (200, "good"));
    assert_eq!(hang.count(), 1, "the hanging deployment was tried first");
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(5),
        "{took:?}"
    );
    assert!(
        gw.state.cooldown_remaining("hanging").is_some(),
        "a timeout counts as a failure"
    );
}

/// The precedence of the timeout sources, as the forwarder applies it.
#[test]
fn timeout_sources_in_litellms_order() {
    let s = Duration::from_secs;
    let cfg = yaml(
        r#"
model_list:
  - model_name: a
    litellm_params: {model: openai/x, api_base: "http://127.0.0.1:9/v1", timeout: "7", stream_timeout: 3}
  - model_name: b
    litellm_params: {model: openai/x, api_base: "http://127.0.0.1:9/v1", timeout: 7}
  - model_name: c
    litellm_params: {model: openai/x, api_base: "http://127.0.0.1:9/v1"}
router_settings: {timeout: 11}
litellm_settings: {request_timeout: 13}
"#,
    );
    let d = |i: usize| &cfg.deployments[i];
    let router = cfg.router.timeout;
    assert_eq!(router, Some(s(11)), "router_settings.timeout wins");
    assert_eq!(dropin::request_timeout(d(0), false, router, s(600)), s(7));
    assert_eq!(dropin::request_timeout(d(0), true, router, s(600)), s(3));
    assert_eq!(dropin::request_timeout(d(1), true, router, s(600)), s(7));
    assert_eq!(dropin::request_timeout(d(2), false, router, s(600)), s(11));
    assert_eq!(dropin::request_timeout(d(2), false, None, s(600)), s(600));
    let only_litellm = yaml("model_list: []\nlitellm_settings: {request_timeout: 13}\n");
    assert_eq!(only_litellm.router.timeout, Some(s(13)));
}

/// `general_settings.min_healthy_percent` from the file: readiness is 503 below it.
#[tokio::test]
async fn readiness_follows_min_healthy_percent_from_the_config() {
    let good = FakeLlm::start("good").await.unwrap();
    let text = |min: u32| {
        format!(
            r#"
model_list:
  - model_name: gpt
    litellm_params: {{model: openai/gpt-4o, api_base: "{}"}}
    model_info: {{id: good, health_check_timeout: 1}}
  - model_name: gpt
    litellm_params: {{model: openai/gpt-4o, api_base: "http://127.0.0.1:9/v1"}}
    model_info: {{id: dead, health_check_timeout: 1}}
  - model_name: bedrock
    litellm_params: {{model: bedrock/amazon.titan-text-express-v1}}
general_settings:
  background_health_checks: true
  health_check_interval: 300
  min_healthy_percent: {min}
"#,
            good.api_base()
        )
    };
    for (min, want) in [(60, 503), (50, 200)] {
        let gw = start(yaml(&text(min)), Duration::from_secs(5)).await;
        // Wait (bounded) for the first background round.
        let deadline = Instant::now() + Duration::from_secs(5);
        while gw.state.snapshot().health("dead").is_none() {
            assert!(Instant::now() < deadline, "no first round");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let r = get(gw.addr, "/health/readiness", None).await;
        // 1 of 2 supported deployments healthy (the unsupported one does not count).
        assert_eq!(r.status, want, "min {min}: {:?}", r.json());
        let d = get(gw.addr, "/health/readiness/details", None).await.json();
        assert_eq!(d["min_healthy_percent"], f64::from(min), "{d}");
    }
}

/// `custom_auth` (or JWT, or `database_url`) without a master key: every caller is refused,
/// never let in; the unimplemented settings are in readiness details.
#[tokio::test]
async fn auth_settings_never_open_the_gateway() {
    let good = FakeLlm::start("good").await.unwrap();
    let cfg = yaml(&format!(
        r#"
model_list:
  - model_name: gpt
    litellm_params: {{model: openai/gpt-4o, api_base: "{}"}}
general_settings:
  custom_auth: my_module.user_api_key_auth
  enable_jwt_auth: true
  alerting: ["slack"]
litellm_settings:
  success_callback: ["langfuse"]
  drop_params: false
"#,
        good.api_base()
    ));
    assert_eq!(
        cfg.auth_settings().collect::<Vec<_>>(),
        [
            "general_settings.custom_auth",
            "general_settings.enable_jwt_auth"
        ]
    );
    let gw = start(cfg, Duration::from_secs(5)).await;
    assert_eq!(chat_as(gw.addr, "gpt", None).await.status, 401);
    assert_eq!(chat_as(gw.addr, "gpt", Some("anything")).await.status, 401);
    assert_eq!(get(gw.addr, "/health", None).await.status, 401);
    assert_eq!(get(gw.addr, "/health/liveliness", None).await.status, 200);
    assert_eq!(
        gw.state.config().unimplemented_settings,
        [
            "general_settings.alerting",
            "general_settings.custom_auth",
            "general_settings.enable_jwt_auth",
            "litellm_settings.success_callback",
        ],
        "`drop_params: false` is unset, not listed"
    );

    // With a master key, the key still works, and the details list the settings.
    let cfg = yaml(&format!(
        r#"
model_list:
  - model_name: gpt
    litellm_params: {{model: openai/gpt-4o, api_base: "{}"}}
general_settings:
  master_key: sk-master
  custom_auth: my_module.user_api_key_auth
  alerting: ["slack"]
"#,
        good.api_base()
    ));
    let gw = start(cfg, Duration::from_secs(5)).await;
    assert_eq!(chat_as(gw.addr, "gpt", Some("sk-master")).await.status, 200);
    assert_eq!(chat_as(gw.addr, "gpt", None).await.status, 401);
    let d = get(gw.addr, "/health/readiness/details", Some("sk-master"))
        .await
        .json();
    assert_eq!(
        d["unimplemented_settings"],
        json!(["general_settings.alerting", "general_settings.custom_auth"]),
        "{d}"
    );
}

/// A wildcard route without `health_check_model` starts with background checks on and
/// off; it is unsupported for probing but still routable (the forwarder can send it).
#[tokio::test]
async fn a_wildcard_without_a_health_check_model_starts_and_routes() {
    let up = FakeLlm::start("wild").await.unwrap();
    for background in [true, false] {
        let cfg = yaml(&format!(
            r#"
model_list:
  - model_name: "gpt-4o"
    litellm_params: {{model: "openai/*", api_base: "{}"}}
    model_info: {{id: wild}}
general_settings:
  background_health_checks: {background}
"#,
            up.api_base()
        ));
        let gw = start(cfg, Duration::from_secs(5)).await;
        let snap = gw.state.snapshot();
        let u = snap.unsupported("wild").expect("unsupported for probing");
        assert!(
            u.routable && u.reason.contains("health_check_model"),
            "{u:?}"
        );
        let h = get(gw.addr, "/health", None).await.json();
        assert_eq!(h["unsupported_count"], 1, "{h}");
        assert_eq!(h["healthy_count"], 0, "{h}");
    }
}
