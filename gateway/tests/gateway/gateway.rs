//! The gateway (`thr_gateway`), in-process, against local fake upstreams over real sockets:
//! health routing moves traffic, the bypass serves, streams arrive in chunks, and every
//! error a client can act on has its status. Real time, short intervals, bounded waits.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use serde_json::{Value, json};
use thr_gateway::{app, health_cli};
use thr_testkit::{FakeLlm, Fault};
use tower_health_routing::{Config, ConfigBuilder, Deployment, HealthState};

use crate::support::{self, Running, chat, get, send, until};

const KEY_PREFIX: &str = "sk-planted-secret-";

async fn upstreams(n: usize) -> Vec<FakeLlm> {
    named_upstreams("up", n).await
}

/// `n` upstreams named `{prefix}-1` to `{prefix}-n`.
async fn named_upstreams(prefix: &str, n: usize) -> Vec<FakeLlm> {
    let mut v = Vec::new();
    for i in 1..=n {
        v.push(FakeLlm::start(&format!("{prefix}-{i}")).await.unwrap());
    }
    v
}

/// `config` with background probes every 200 ms.
fn probed(ups: &[FakeLlm]) -> ConfigBuilder {
    probed_route("gpt-4o", ups)
}

/// `config_route` with background probes every 200 ms.
fn probed_route(route: &str, ups: &[FakeLlm]) -> ConfigBuilder {
    config_route(route, ups)
        .background_health_checks(true)
        .health_check_interval(Duration::from_millis(200))
}

fn config(ups: &[FakeLlm]) -> ConfigBuilder {
    config_route("gpt-4o", ups)
}

/// One deployment of `route` per upstream, named after it.
fn config_route(route: &str, ups: &[FakeLlm]) -> ConfigBuilder {
    Config::builder().deployments(ups.iter().map(|u| {
        Deployment::builder(route, "openai/gpt-4o-mini")
            .id(u.name.clone())
            .api_base(u.api_base())
            .api_key(format!("{KEY_PREFIX}{}", u.name))
            .health_check_timeout(Duration::from_millis(150))
            .build()
    }))
}

/// A gateway with a 2 s upstream timeout and `/metrics` from the process's recorder.
async fn start(cfg: Config) -> Running {
    support::start_with(
        cfg,
        app::Options {
            upstream_timeout: Duration::from_secs(2),
            metrics: Some(support::metrics()),
            ..support::options()
        },
    )
    .await
}

fn healthy(state: &HealthState, id: &str) -> Option<bool> {
    state.snapshot().health(id).map(|h| h.healthy)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_leaves_a_deployment_that_fails_its_probe_and_returns_after_recovery() {
    let ups = upstreams(3).await;
    let cfg = probed(&ups)
        .enable_health_check_routing(true)
        .build()
        .unwrap();
    let gw = start(cfg).await;
    until(Duration::from_secs(3), || {
        healthy(&gw.state, "up-1") == Some(true)
    })
    .await;

    ups[0].control.set(Fault::Hang); // its probes time out; no request has to fail first
    until(Duration::from_secs(3), || {
        healthy(&gw.state, "up-1") == Some(false)
    })
    .await;
    for _ in 0..60 {
        let r = chat(gw.addr, "gpt-4o").await;
        assert_eq!(r.status, 200);
        assert_ne!(r.served_by(), "up-1");
    }
    ups[0].control.set(Fault::None);
    until(Duration::from_secs(3), || {
        healthy(&gw.state, "up-1") == Some(true)
    })
    .await;
    let mut back = 0;
    for _ in 0..60 {
        back += usize::from(chat(gw.addr, "gpt-4o").await.served_by() == "up-1");
    }
    assert!(back > 5, "traffic returned: {back}/60");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_every_probe_fails_the_bypass_keeps_serving() {
    let ups = upstreams(2).await;
    for u in &ups {
        u.control.set(Fault::Slow); // 300 ms: too slow for the 150 ms probe timeout, fine for requests
    }
    let cfg = probed(&ups)
        .enable_health_check_routing(true)
        .build()
        .unwrap();
    let gw = start(cfg).await;
    until(Duration::from_secs(3), || {
        healthy(&gw.state, "up-1") == Some(false) && healthy(&gw.state, "up-2") == Some(false)
    })
    .await;
    for _ in 0..4 {
        let r = chat(gw.addr, "gpt-4o").await;
        assert_eq!(r.status, 200, "{:?}", r.json());
    }
    gw.shutdown().await;
}

#[tokio::test]
async fn streaming_passes_through_chunk_by_chunk() {
    let ups = upstreams(1).await;
    let gw = start(config(&ups).build().unwrap()).await;
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let body =
        json!({"model": "gpt-4o", "stream": true, "messages": [{"role": "user", "content": "hi"}]})
            .to_string();
    let req = http::Request::post(format!("http://{}/v1/chat/completions", gw.addr))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let resp = client.request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut body = resp.into_body();
    let mut frames = Vec::new();
    let started = tokio::time::Instant::now();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            frames.push((started.elapsed(), data));
        }
    }
    // Five chunks 20 ms apart, then [DONE]: they arrive as they are sent, not all at the end.
    assert!(frames.len() >= 5, "{} frames", frames.len());
    assert!(
        frames[0].0 + Duration::from_millis(50) < frames.last().unwrap().0,
        "first chunk arrived early"
    );
    let all: Vec<u8> = frames.iter().flat_map(|(_, d)| d.to_vec()).collect();
    let text = String::from_utf8(all).unwrap();
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
    assert_eq!(text.matches("chat.completion.chunk").count(), 5);
    gw.shutdown().await;
}

#[tokio::test]
async fn the_body_carries_the_deployments_model_and_responses_name_the_deployment() {
    let ups = upstreams(1).await;
    let gw = start(config(&ups).build().unwrap()).await;
    let r = chat(gw.addr, "gpt-4o").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json()["model"],
        "gpt-4o-mini",
        "provider prefix stripped, route name replaced"
    );
    assert_eq!(r.served_by(), "up-1");
    // Without /v1 too, and the other endpoints.
    let r = send(
        gw.addr,
        "/embeddings",
        json!({"model": "gpt-4o", "input": ["x"]}).to_string(),
        &[],
    )
    .await;
    assert_eq!(
        (r.status, r.json()["model"].as_str()),
        (200, Some("gpt-4o-mini"))
    );
    let models = {
        let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        let resp = client
            .get(format!("http://{}/v1/models", gw.addr).parse().unwrap())
            .await
            .unwrap();
        serde_json::from_slice::<Value>(&resp.into_body().collect().await.unwrap().to_bytes())
            .unwrap()
    };
    assert_eq!(models["data"][0]["id"], "gpt-4o");
    gw.shutdown().await;
}

#[tokio::test]
async fn multipart_transcriptions_are_forwarded_with_the_model_rewritten() {
    let ups = upstreams(1).await;
    let gw = start(config(&ups).build().unwrap()).await;
    let b = "XBOUNDARYX";
    let body = format!(
        "--{b}\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\ngpt-4o\r\n--{b}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\nContent-Type: audio/wav\r\n\r\nRIFF....\r\n--{b}--\r\n"
    );
    let ctype = format!("multipart/form-data; boundary={b}");
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let req = http::Request::post(format!("http://{}/v1/audio/transcriptions", gw.addr))
        .header("content-type", ctype)
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let resp = client.request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value =
        serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(v["text"], "transcribed by up-1");
    gw.shutdown().await;
}

#[tokio::test]
async fn client_errors_are_400s() {
    let ups = upstreams(1).await;
    let gw = start(config(&ups).build().unwrap()).await;
    let r = chat(gw.addr, "no-such-model").await;
    assert_eq!(r.status, 400);
    let msg = r.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(
        msg.contains("no-such-model") && msg.contains("gpt-4o"),
        "names the known models: {msg}"
    );
    let r = send(gw.addr, "/v1/chat/completions", "{not json", &[]).await;
    assert_eq!(r.status, 400);
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("malformed JSON")
    );
    let r = send(gw.addr, "/v1/chat/completions", r#"{"messages": []}"#, &[]).await;
    assert_eq!(r.status, 400);
    let r = send(gw.addr, "/v1/chat/completions", r#"{"model": 7}"#, &[]).await;
    assert_eq!(r.status, 400);
    // A multipart body that is not one.
    let r = send(
        gw.addr,
        "/v1/audio/transcriptions",
        "garbage",
        &[("content-type", "multipart/form-data; boundary=zz")],
    )
    .await;
    assert_eq!(r.status, 400, "{:?}", r.json());
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("multipart")
    );
    // Over the body limit (1 MiB in these tests).
    let big = format!(r#"{{"model":"gpt-4o","pad":"{}"}}"#, "x".repeat(1 << 20));
    assert_eq!(
        send(gw.addr, "/v1/chat/completions", big, &[]).await.status,
        413
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn every_deployment_cooling_down_is_a_429_with_retry_after() {
    let ups = upstreams(2).await;
    for u in &ups {
        u.control.set(Fault::Error500);
    }
    let cfg = config(&ups)
        .allowed_fails(0)
        .cooldown_time(Duration::from_secs(30))
        .build()
        .unwrap();
    let gw = start(cfg).await;
    assert_eq!(
        chat(gw.addr, "gpt-4o").await.status,
        500,
        "the upstream's status passes through"
    );
    assert_eq!(chat(gw.addr, "gpt-4o").await.status, 500);
    let r = chat(gw.addr, "gpt-4o").await;
    assert_eq!(r.status, 429);
    let retry: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((29..=30).contains(&retry), "{retry}");
    gw.shutdown().await;
}

#[tokio::test]
async fn upstream_errors_keep_their_status_and_lose_their_secrets() {
    let ups = upstreams(1).await;
    ups[0].control.set(Fault::Unauthorized); // its 401 body quotes the key it was sent
    let gw = start(config(&ups).build().unwrap()).await;
    let r = chat(gw.addr, "gpt-4o").await;
    assert_eq!(r.status, 401);
    let text = String::from_utf8_lossy(&r.body).into_owned();
    assert!(
        text.contains("Incorrect API key provided: [redacted]"),
        "{text}"
    );
    assert!(!text.contains(KEY_PREFIX), "{text}");
    gw.shutdown().await;
}

#[tokio::test]
async fn an_unreachable_upstream_is_a_502_and_a_hang_a_504() {
    let ups = upstreams(2).await;
    ups[0].stop();
    ups[1].control.set(Fault::Hang);
    let cfg = Config::builder()
        .deployment(
            Deployment::builder("down", "openai/m")
                .id("down")
                .api_base(ups[0].api_base())
                .build(),
        )
        .deployment(
            Deployment::builder("hangs", "openai/m")
                .id("hangs")
                .api_base(ups[1].api_base())
                .build(),
        )
        .build()
        .unwrap();
    let gw = start(cfg).await;
    tokio::time::sleep(Duration::from_millis(50)).await; // let the stopped listener close
    let r = chat(gw.addr, "down").await;
    assert_eq!(r.status, 502, "{:?}", r.json());
    let r = chat(gw.addr, "hangs").await;
    assert_eq!(r.status, 504, "bounded by the upstream timeout (2 s here)");
    gw.shutdown().await;
}

#[tokio::test]
async fn the_master_key_guards_the_api() {
    let ups = upstreams(1).await;
    let gw = start(config(&ups).master_key("sk-master-123").build().unwrap()).await;
    let body = json!({"model": "gpt-4o", "messages": []}).to_string();
    assert_eq!(
        send(gw.addr, "/v1/chat/completions", body.clone(), &[])
            .await
            .status,
        401
    );
    assert_eq!(
        send(
            gw.addr,
            "/v1/chat/completions",
            body.clone(),
            &[("authorization", "Bearer nope")]
        )
        .await
        .status,
        401
    );
    for h in ["authorization", "x-litellm-api-key", "api-key"] {
        let v = if h == "authorization" {
            "Bearer sk-master-123"
        } else {
            "sk-master-123"
        };
        assert_eq!(
            send(gw.addr, "/v1/chat/completions", body.clone(), &[(h, v)])
                .await
                .status,
            200,
            "{h}"
        );
    }
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_endpoints_and_metrics_are_served_on_the_same_port() {
    // Its own route and deployment names: every gateway of this process records into the
    // one recorder, and the metrics checked below are this gateway's.
    let ups = named_upstreams("metrics", 2).await;
    ups[1].control.set(Fault::Error500);
    let cfg = probed_route("metrics-surface", &ups)
        .master_key("sk-master-9")
        .enable_health_check_routing(true)
        .build()
        .unwrap();
    let gw = start(cfg).await;
    until(Duration::from_secs(3), || {
        healthy(&gw.state, "metrics-2") == Some(false)
    })
    .await;
    assert_eq!(get(gw.addr, "/health/liveliness", None).await.status, 200);
    assert_eq!(get(gw.addr, "/health/readiness", None).await.status, 200);
    assert_eq!(get(gw.addr, "/health", None).await.status, 401);
    let h = get(gw.addr, "/health", Some("sk-master-9")).await;
    assert_eq!(h.status, 200);
    let v = h.json();
    assert_eq!(
        (v["healthy_count"].as_u64(), v["unhealthy_count"].as_u64()),
        (Some(1), Some(1)),
        "{v}"
    );
    assert_eq!(v["unhealthy_endpoints"][0]["model_id"], "metrics-2");
    assert_eq!(v["unhealthy_endpoints"][0]["exception_status"], 500);
    assert!(
        !String::from_utf8_lossy(&h.body).contains(KEY_PREFIX),
        "no key in /health"
    );
    let r = chat(gw.addr, "metrics-surface").await;
    assert_eq!(
        (r.status, r.served_by().as_str()),
        (401, ""),
        "the API needs the key too"
    );
    let r = send(
        gw.addr,
        "/v1/chat/completions",
        json!({"model": "metrics-surface", "messages": []}).to_string(),
        &[("authorization", "Bearer sk-master-9")],
    )
    .await;
    assert_eq!((r.status, r.served_by().as_str()), (200, "metrics-1"));
    // LiteLLM's `require_auth_for_metrics_endpoint` (default on): the key guards /metrics.
    assert_eq!(get(gw.addr, "/metrics", None).await.status, 401);
    let m = get(gw.addr, "/metrics", Some("sk-master-9")).await;
    let text = String::from_utf8_lossy(&m.body).into_owned();
    assert_eq!(m.status, 200);
    for name in [
        "tower_health_routing_routing_decisions_total",
        "tower_health_routing_deployment_healthy",
        "tower_health_routing_probes_total",
    ] {
        assert!(
            text.lines()
                .any(|l| l.starts_with(&format!("{name}{{"))
                    && l.contains("route=\"metrics-surface\"")),
            "{name} of this route missing from /metrics:\n{text}"
        );
    }
    assert!(!text.contains(KEY_PREFIX) && !text.contains("sk-master-9"));
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_health_client_exits_non_zero_when_a_deployment_is_unhealthy() {
    let ups = upstreams(2).await;
    let cfg = probed(&ups).master_key("sk-master-cli").build().unwrap();
    let gw = start(cfg).await;
    let url = format!("http://{}", gw.addr);
    let code = |c: std::process::ExitCode| format!("{c:?}");
    until(Duration::from_secs(3), || {
        healthy(&gw.state, "up-2") == Some(true)
    })
    .await;
    assert_eq!(
        code(health_cli::run(&url, Some("sk-master-cli")).await),
        code(std::process::ExitCode::SUCCESS)
    );
    ups[1].control.set(Fault::Error500);
    until(Duration::from_secs(3), || {
        healthy(&gw.state, "up-2") == Some(false)
    })
    .await;
    assert_eq!(
        code(health_cli::run(&url, Some("sk-master-cli")).await),
        code(std::process::ExitCode::from(1))
    );
    // Wrong key or nobody listening: it cannot tell, and says so with exit code 2.
    assert_eq!(
        code(health_cli::run(&url, Some("wrong")).await),
        code(std::process::ExitCode::from(2))
    );
    gw.shutdown().await;
    assert_eq!(
        code(health_cli::run(&url, None).await),
        code(std::process::ExitCode::from(2))
    );
}

// ---- The `thr-gateway` binary's logs (run as a child process, stdout piped) ----

/// Runs `thr-gateway` on a one-deployment config with stdout piped, collects its stdout
/// lines until it logs that it listens (at most 30 s), then stops it.
// A plain thread reading a child process's stdout: no tokio runtime, so real time.
#[allow(clippy::disallowed_types, clippy::disallowed_methods)]
fn binary_log_lines(args: &[&str], env: &[(&str, &str)]) -> Vec<String> {
    use std::io::BufRead;
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path =
        std::env::temp_dir().join(format!("thr-gateway-logs-{}-{n}.yaml", std::process::id()));
    std::fs::write(
        &path,
        "model_list:\n  - model_name: m\n    litellm_params:\n      model: openai/gpt-4o\n      api_base: http://127.0.0.1:9/v1\n      api_key: sk-planted-secret-logs\n",
    )
    .expect("write config");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_thr-gateway"));
    cmd.args([
        "--config",
        path.to_str().expect("utf-8 path"),
        "--host",
        "127.0.0.1",
        "--port",
        "0",
    ])
    .args(args)
    .env("RUST_LOG", "info")
    .env_remove("JSON_LOGS")
    .env_remove("NO_COLOR")
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("thr-gateway starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut lines = Vec::new();
    while let Some(left) = deadline.checked_duration_since(tokio::time::Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(line) => {
                let listening = line.contains("gateway listening");
                lines.push(line);
                if listening {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    let _ = child.kill();
    let status = child.wait().expect("thr-gateway exits");
    let _ = reader.join();
    let _ = std::fs::remove_file(&path);
    assert!(
        lines.iter().any(|l| l.contains("gateway listening")),
        "thr-gateway never logged that it listens (exit {status:?}): {lines:#?}"
    );
    lines
}

#[test]
fn binary_text_logs_carry_no_colour_codes_when_stdout_is_not_a_terminal() {
    let lines = binary_log_lines(&[], &[]);
    for l in &lines {
        assert!(
            !l.contains("\x1b["),
            "colour codes in a piped log line: {l:?}"
        );
        assert!(
            !l.contains("sk-planted-secret"),
            "secret in a log line: {l:?}"
        );
    }
    assert!(lines.iter().any(|l| l.contains("INFO")), "{lines:#?}");
}

/// Each line is one JSON object; the listening line has its level, message and address.
fn assert_json_lines(lines: &[String]) {
    let mut listening = 0;
    for l in lines {
        assert!(
            !l.contains("\x1b["),
            "colour codes in a JSON log line: {l:?}"
        );
        assert!(
            !l.contains("sk-planted-secret"),
            "secret in a log line: {l:?}"
        );
        let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}"));
        assert!(v.is_object(), "not an object: {l:?}");
        if v["fields"]["message"] == "gateway listening" {
            listening += 1;
            assert_eq!(v["level"], "INFO", "{l}");
            let addr = v["fields"]["addr"].as_str().expect("addr field");
            let port = addr.strip_prefix("127.0.0.1:").expect("bound address");
            assert_ne!(port, "0", "the bound port, not the requested one: {l}");
            assert!(v["timestamp"].is_string(), "{l}");
        }
    }
    assert_eq!(listening, 1, "{lines:#?}");
}

#[test]
fn binary_log_format_json_writes_one_json_object_per_line() {
    assert_json_lines(&binary_log_lines(&["--log-format", "json"], &[]));
}

#[test]
fn binary_json_logs_env_selects_json_and_the_flag_wins() {
    assert_json_lines(&binary_log_lines(&[], &[("JSON_LOGS", "True")]));
    let text = binary_log_lines(&["--log-format", "text"], &[("JSON_LOGS", "True")]);
    assert!(
        text.iter()
            .all(|l| serde_json::from_str::<Value>(l).is_err()),
        "--log-format text gave JSON: {text:#?}"
    );
}

#[test]
fn log_format_resolves_flag_then_json_logs_env() {
    use thr_gateway::LogFormat::{Json, Text};
    let r = thr_gateway::LogFormat::resolve;
    assert_eq!(r(None, None), Text);
    assert_eq!(r(None, Some("True")), Json);
    assert_eq!(r(None, Some("true")), Json);
    assert_eq!(r(None, Some("False")), Text);
    assert_eq!(r(None, Some("")), Text);
    assert_eq!(r(Some(Text), Some("True")), Text);
    assert_eq!(r(Some(Json), None), Json);
}
