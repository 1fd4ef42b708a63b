//! Attacks on the gateway (issue 17), each reproduced over real sockets against a local
//! upstream that misbehaves on purpose, and the fix shown: a client cannot cool a route
//! down with an unrewritable body; an upstream's headers pass an allowlist and its bodies
//! are scrubbed, even cut across chunks; a `101` is a 502; a 10 MB error body is cut with a
//! note; a multipart file part is never taken for the `model` field; large bodies share a
//! memory budget; on-demand `/health` is bounded and coalesced, and running out of file
//! descriptors is never an upstream's verdict; absurd flags are refused by the binary.

use std::{
    sync::atomic::{AtomicUsize, Ordering::SeqCst},
    time::Duration,
};

use bytes::Bytes;
use http_body_util::Full;
use serde_json::json;
use thr_gateway::headers;
use thr_testkit::{RawUpstream, Reply, Upstream};
use tower_health_routing::{Config, Deployment};

use crate::support::{chat, fetch, post, start};

const KEY: &str = "sk-planted-secret-hardening-0123456789";

/// One route `gpt-4o` whose deployments serve `gpt-4o-mini` (so `model` is rewritten).
fn rewriting(api_bases: &[String]) -> Config {
    Config::builder()
        .deployments(api_bases.iter().enumerate().map(|(i, b)| {
            Deployment::builder("gpt-4o", "openai/gpt-4o-mini")
                .id(format!("d{i}"))
                .api_base(b.clone())
                .api_key(KEY)
                .build()
        }))
        .build()
        .unwrap()
}

// ---- item 1: a client cannot cool a route down ----

#[tokio::test]
async fn unrewritable_bodies_are_400s_that_never_reach_or_blame_an_upstream() {
    let up = Upstream::ok();
    let gw = start(rewriting(&[up.v1(), up.v1()])).await;
    let deep = format!(
        r#"{{"model":"gpt-4o","x":{}{}}}"#,
        "[".repeat(300),
        "]".repeat(300)
    );
    let mut invalid_utf8 = br#"{"model":"gpt-4o","messages":[{"role":"user","content":""#.to_vec();
    invalid_utf8.extend_from_slice(b"\xff\xfe\x80");
    invalid_utf8.extend_from_slice(br#""}]}"#);
    let bodies: Vec<(&str, Vec<u8>)> = vec![
        (
            "lone surrogate",
            br#"{"model":"gpt-4o","messages":[{"role":"user","content":"\ud83d"}]}"#.to_vec(),
        ),
        ("invalid UTF-8", invalid_utf8),
        ("deep nesting", deep.into_bytes()),
    ];
    // Far more than cooldown's allowed failures: were they counted, the route would cool.
    for round in 0..6 {
        for (what, body) in &bodies {
            let a = post(
                gw.addr,
                "/v1/chat/completions",
                "application/json",
                body.clone(),
            )
            .await;
            assert_eq!(a.status, 400, "{what} (round {round}): {}", a.text());
            let msg = a.json()["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            assert!(
                msg.contains("body"),
                "{what}: the error names the body: {msg}"
            );
            assert!(
                !msg.contains("upstream"),
                "{what}: not blamed on an upstream: {msg}"
            );
        }
    }
    assert_eq!(up.count(), 0, "no upstream was called for a bad body");
    // The route still serves, from both deployments (neither cooled down).
    let mut served = std::collections::BTreeSet::new();
    for _ in 0..20 {
        let a = chat(gw.addr, "gpt-4o").await;
        assert_eq!(a.status, 200, "{}", a.text());
        served.insert(a.headers["x-litellm-model-id"].to_str().unwrap().to_owned());
    }
    assert_eq!(served.len(), 2, "both deployments serve: {served:?}");
    assert_eq!(up.count(), 20);
    gw.shutdown().await;
}

// ---- item 3: response headers and bodies ----

fn raw_answer(head: &str, body: &str) -> Vec<u8> {
    format!("{head}Content-Length: {}\r\n\r\n{body}", body.len()).into_bytes()
}

#[tokio::test]
async fn upstream_headers_pass_an_allowlist_and_every_value_and_body_is_scrubbed() {
    let head = format!(
        "HTTP/1.1 200 OK\r\n\
         Content-Type: application/json\r\n\
         Connection: keep-alive, X-Hop-Custom, x-request-id\r\n\
         Keep-Alive: timeout=5\r\n\
         X-Hop-Custom: 1\r\n\
         Upgrade: h2c\r\n\
         Trailer: x-checksum\r\n\
         Proxy-Authenticate: Basic realm=\"up\"\r\n\
         Set-Cookie: session=abc; HttpOnly\r\n\
         WWW-Authenticate: Bearer error=\"invalid_token\", token=\"{KEY}\"\r\n\
         X-Api-Key: {KEY}\r\n\
         Authorization: Bearer {KEY}\r\n\
         Server: upstream/1.0\r\n\
         X-Request-Id: hidden-because-connection-names-it\r\n\
         Request-Id: req-{KEY}\r\n\
         X-Ratelimit-Remaining-Requests: 99\r\n\
         Openai-Processing-Ms: 12\r\n\
         Retry-After: 3\r\n"
    );
    let body = format!(
        r#"{{"id":"c1","echo":"{KEY}","upper":"{}"}}"#,
        KEY.to_uppercase()
    );
    let up = RawUpstream::start(move || vec![(raw_answer(&head, &body), Duration::ZERO)]);
    let gw = start(rewriting(&[up.v1()])).await;
    let a = chat(gw.addr, "gpt-4o").await;
    assert_eq!(a.status, 200, "{}", a.text());
    let h = &a.headers;
    for gone in [
        "keep-alive",
        "x-hop-custom",
        "upgrade",
        "trailer",
        "proxy-authenticate",
        "set-cookie",
        "www-authenticate",
        "x-api-key",
        "authorization",
        "server",
        "x-request-id",
    ] {
        assert!(
            h.get(gone).is_none(),
            "{gone} must not reach the client: {h:?}"
        );
    }
    assert_eq!(h["content-type"], "application/json");
    assert_eq!(h["request-id"], "req-[redacted]");
    assert_eq!(h["x-ratelimit-remaining-requests"], "99");
    assert_eq!(h["openai-processing-ms"], "12");
    assert_eq!(h["retry-after"], "3");
    assert_eq!(h["x-litellm-model-id"], "d0");
    for (name, v) in h {
        let v = String::from_utf8_lossy(v.as_bytes());
        assert!(!v.contains(KEY), "{name}: {v}");
    }
    let text = a.text();
    assert!(
        !text.contains(KEY) && !text.contains(&KEY.to_uppercase()),
        "{text}"
    );
    assert_eq!(
        a.json(),
        json!({"id": "c1", "echo": "[redacted]", "upper": "[redacted]"})
    );
    // The allowlist itself.
    assert!(headers::is_forwarded(
        "anthropic-ratelimit-requests-remaining"
    ));
    assert!(!headers::is_forwarded("x-litellm-model-id"));
    assert!(!headers::is_forwarded("openai-api-key"));
    gw.shutdown().await;
}

#[tokio::test]
async fn a_secret_split_across_stream_chunks_is_still_scrubbed() {
    // SSE in two chunks with a pause between them, the key cut in the middle.
    let (a, b) = KEY.split_at(11);
    let first = format!("data: {{\"delta\":\"key {a}");
    let second = format!("{b} end\"}}\n\ndata: [DONE]\n\n");
    let chunk = |s: &str| format!("{:x}\r\n{s}\r\n", s.len()).into_bytes();
    let script = vec![
        (
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
                .to_vec(),
            Duration::ZERO,
        ),
        (chunk(&first), Duration::from_millis(150)),
        (chunk(&second), Duration::ZERO),
        (b"0\r\n\r\n".to_vec(), Duration::ZERO),
    ];
    let up = RawUpstream::start(move || script.clone());
    let gw = start(rewriting(&[up.v1()])).await;
    let a = chat(gw.addr, "gpt-4o").await;
    assert_eq!(a.status, 200);
    assert_eq!(a.headers["content-type"], "text/event-stream");
    assert_eq!(
        a.text(),
        "data: {\"delta\":\"key [redacted] end\"}\n\ndata: [DONE]\n\n"
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn an_upstream_101_is_a_502_never_a_final_answer() {
    let up = RawUpstream::start(|| {
        vec![(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
                .to_vec(),
            Duration::ZERO,
        )]
    });
    let gw = start(rewriting(&[up.v1()])).await;
    let a = chat(gw.addr, "gpt-4o").await;
    assert_eq!(a.status, 502, "{}", a.text());
    assert!(a.headers.get("upgrade").is_none());
    assert_eq!(a.json()["error"]["type"], "upstream_error");
    gw.shutdown().await;
}

#[tokio::test]
async fn a_compressed_body_the_gateway_cannot_scrub_is_a_502() {
    let up = RawUpstream::start(|| {
        vec![(
            raw_answer(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\n",
                "\u{1f}\u{8b}not-really-gzip",
            ),
            Duration::ZERO,
        )]
    });
    let gw = start(rewriting(&[up.v1()])).await;
    let a = chat(gw.addr, "gpt-4o").await;
    assert_eq!(a.status, 502, "{}", a.text());
    assert!(a.text().contains("identity"), "{}", a.text());
    gw.shutdown().await;
}

// ---- item 13: large error bodies ----

#[tokio::test]
async fn a_ten_megabyte_error_body_is_cut_with_a_note_and_scrubbed() {
    let limit = headers::MAX_ERROR_BODY;
    // A key at the start, and one straddling the cut: once the first is `[redacted] `
    // (11 bytes), the second starts 5 bytes before the cut.
    let head = format!("{KEY} ");
    let pad = "a".repeat(limit - 16);
    let big = format!("{head}{pad}{KEY}{}", "b".repeat(10 << 20));
    let seen = std::sync::Arc::new(AtomicUsize::new(0));
    let up = {
        let seen = std::sync::Arc::clone(&seen);
        Upstream::start(move |_| {
            seen.fetch_add(1, SeqCst);
            Reply::status(500, big.clone()).header("content-type", "text/plain")
        })
    };
    let gw = start(rewriting(&[up.v1()])).await;
    let a = chat(gw.addr, "gpt-4o").await;
    assert_eq!(a.status, 500);
    assert!(
        a.body.len() < limit + 1024,
        "cut near {limit} bytes, got {}",
        a.body.len()
    );
    assert_eq!(a.headers["content-type"], "application/json");
    let msg = a.json()["error"]["message"]
        .as_str()
        .expect("a JSON error with a message")
        .to_owned();
    assert!(msg.starts_with("[redacted] aaa"), "{}", &msg[..40]);
    assert!(msg.contains(headers::TRUNCATED), "a note says it was cut");
    assert!(!msg.contains("sk-planted"), "no key, whole or in part");
    assert!(!msg.contains("bbbbbbbbbb"), "nothing past the cut");
    gw.shutdown().await;
}

// ---- item 12: multipart ----

#[tokio::test]
async fn multipart_rewrites_the_model_field_and_never_a_file_part() {
    let up = Upstream::start(|_| Reply::status(200, r#"{"text":"ok"}"#));
    let cfg = Config::builder()
        .deployment(
            Deployment::builder("whisper", "openai/whisper-1")
                .api_base(up.v1())
                .api_key(KEY)
                .build(),
        )
        .build()
        .unwrap();
    let gw = start(cfg).await;
    let b = "XBOUNDARYX";
    // The file's bytes look like a `model` field; the raw-byte search used to rewrite them.
    let file =
        "RIFF\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper\r\nmore audio";
    let body = format!(
        "--{b}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\nContent-Type: audio/wav\r\n\r\n{file}\r\n\
         --{b}\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper\r\n--{b}--\r\n"
    );
    let a = post(
        gw.addr,
        "/v1/audio/transcriptions",
        &format!("multipart/form-data; boundary={b}"),
        body,
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text());
    let sent = up.only();
    let sent = String::from_utf8_lossy(&sent.body).into_owned();
    assert!(sent.contains(file), "the file part is untouched: {sent}");
    assert!(
        sent.contains("name=\"model\"\r\n\r\nwhisper-1\r\n"),
        "the field is rewritten: {sent}"
    );
    assert_eq!(sent.matches("whisper-1").count(), 1, "{sent}");
    gw.shutdown().await;
}

// ---- item 8: the memory of buffered bodies ----

#[tokio::test]
async fn large_bodies_over_the_budget_get_503_while_a_small_request_is_served() {
    // Body limit 1 MiB: a 4 MiB budget. Eight bodies of 900 KB at once: four fit.
    let up = Upstream::start_with_threads(2, |_| Reply::ok().after(Duration::from_millis(1500)));
    let cfg = Config::builder()
        .deployment(
            Deployment::builder("gpt-4o-mini", "openai/gpt-4o-mini")
                .api_base(up.v1())
                .api_key(KEY)
                .build(),
        )
        .build()
        .unwrap();
    let gw = start(cfg).await;
    let big = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x".repeat(900_000)}]}).to_string();
    let addr = gw.addr;
    let large: Vec<_> = (0..8)
        .map(|_| {
            let big = big.clone();
            tokio::spawn(async move {
                post(addr, "/v1/chat/completions", "application/json", big).await
            })
        })
        .collect();
    // While they are held: a small request is served.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let small = chat(addr, "gpt-4o-mini").await;
    assert_eq!(small.status, 200, "{}", small.text());
    let mut ok = 0;
    let mut busy = 0;
    for h in large {
        let a = h.await.unwrap();
        match a.status {
            200 => ok += 1,
            503 => {
                busy += 1;
                assert_eq!(a.headers["retry-after"], "1");
                assert_eq!(a.json()["error"]["type"], "service_unavailable");
            }
            s => panic!("unexpected {s}: {}", a.text()),
        }
    }
    assert_eq!((ok, busy), (4, 4), "four fit in 4 MiB, four are refused");
    // Given back: the next large body is served.
    let again = post(addr, "/v1/chat/completions", "application/json", big).await;
    assert_eq!(again.status, 200);
    gw.shutdown().await;
}

// ---- item 7: on-demand /health ----

#[tokio::test]
async fn on_demand_health_is_bounded_and_concurrent_calls_share_one_round() {
    let up = Upstream::start_with_threads(2, |_| Reply::ok().after(Duration::from_millis(100)));
    let n = 100;
    let cfg = Config::builder()
        .deployments((0..n).map(|i| {
            Deployment::builder(format!("r{i}"), "openai/gpt-4o-mini")
                .id(format!("d{i}"))
                .api_base(up.v1())
                .api_key(KEY)
                .build()
        }))
        .build()
        .unwrap();
    let gw = start(cfg).await;
    let addr = gw.addr;
    let calls: Vec<_> = (0..5)
        .map(|_| {
            tokio::spawn(async move {
                let req = http::Request::get(format!("http://{addr}/health"))
                    .body(Full::new(Bytes::new()))
                    .unwrap();
                fetch(req).await
            })
        })
        .collect();
    for c in calls {
        let a = c.await.unwrap();
        assert_eq!(a.status, 200);
        assert_eq!(a.json()["healthy_count"], n, "{}", a.text());
    }
    assert_eq!(
        up.count(),
        n,
        "five concurrent calls, one round: each deployment once"
    );
    let peak = up.peak_in_flight();
    assert!(
        peak <= tower_health_routing::probe::DEFAULT_CONCURRENCY,
        "unset health_check_concurrency bounds on-demand rounds: peak {peak}"
    );
    // A later call is a new round.
    let req = http::Request::get(format!("http://{addr}/health"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(fetch(req).await.json()["healthy_count"], n);
    assert_eq!(up.count(), 2 * n);
    gw.shutdown().await;
}

// ---- the binary: CLI sanity, and running out of file descriptors ----

fn write_config(name: &str, text: &str) -> std::path::PathBuf {
    let path =
        std::env::temp_dir().join(format!("thr-hardening-{}-{name}.yaml", std::process::id()));
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs the binary to completion (it must exit by itself) and returns (exit code, stderr).
fn run_binary(args: &[&str]) -> (Option<i32>, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_thr-gateway"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("thr-gateway runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn binary_refuses_a_zero_timeout_and_absurd_worker_counts_naming_the_flag() {
    let cfg = write_config(
        "cli",
        "model_list:\n  - model_name: m\n    litellm_params:\n      model: openai/gpt-4o\n      api_base: http://127.0.0.1:9/v1\n",
    );
    let c = cfg.to_str().unwrap();
    for (args, flag) in [
        (vec!["--timeout", "0"], "--timeout"),
        (vec!["--timeout=-3"], "--timeout"),
        (vec!["--timeout", "NaN"], "--timeout"),
        (vec!["--workers", "100000"], "--workers"),
        (vec!["--workers", "0"], "--workers"),
    ] {
        let mut all = vec!["--config", c, "--host", "127.0.0.1", "--port", "0"];
        all.extend(args.iter().copied());
        let (code, err) = run_binary(&all);
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(err.contains(flag), "{args:?} names {flag}: {err}");
    }
    let _ = std::fs::remove_file(cfg);
}

/// Starts the binary under `sh -c "ulimit -n {nofile}; exec ..."` and returns it with the
/// address it listens on and the log lines up to that point.
// A plain thread reads the child's stdout: real time, no runtime.
#[allow(clippy::disallowed_types, clippy::disallowed_methods)]
fn spawn_binary(
    config: &std::path::Path,
    nofile: Option<u32>,
) -> (std::process::Child, String, Vec<String>) {
    use std::io::BufRead;
    let bin = env!("CARGO_BIN_EXE_thr-gateway");
    let cmd = format!(
        "{}exec '{bin}' --config '{}' --host 127.0.0.1 --port 0",
        nofile
            .map(|n| format!("ulimit -n {n} && "))
            .unwrap_or_default(),
        config.display()
    );
    let mut child = std::process::Command::new("sh")
        .args(["-c", &cmd])
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .env_remove("JSON_LOGS")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("thr-gateway starts");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    loop {
        let Ok(line) = rx.recv_timeout(Duration::from_secs(30)) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("no `gateway listening` line: {lines:#?}");
        };
        let listening = line.contains("gateway listening");
        lines.push(line.clone());
        if listening {
            let addr = line
                .split_whitespace()
                .find_map(|w| w.strip_prefix("addr="))
                .expect("addr=")
                .to_owned();
            return (child, addr, lines);
        }
    }
}

#[test]
fn binary_warns_when_model_list_is_empty() {
    let cfg = write_config("empty", "model_list: []\n");
    let (mut child, _addr, lines) = spawn_binary(&cfg, None);
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_file(cfg);
    assert!(
        lines
            .iter()
            .any(|l| l.contains("WARN") && l.contains("model_list is empty")),
        "{lines:#?}"
    );
}

#[tokio::test]
async fn running_out_of_file_descriptors_is_never_an_upstreams_verdict() {
    // 80 deployments probed at once (health_check_concurrency: 200) by a gateway allowed 40
    // file descriptors: many probes cannot open a socket. Those are the gateway's own
    // failures: listed as unchecked with a local reason, never as unhealthy.
    let up = Upstream::start_with_threads(2, |_| Reply::ok().after(Duration::from_millis(500)));
    let mut yaml =
        String::from("general_settings:\n  health_check_concurrency: 200\nmodel_list:\n");
    for i in 0..80 {
        yaml.push_str(&format!(
            "  - model_name: r{i}\n    litellm_params:\n      model: openai/gpt-4o-mini\n      api_base: {}\n      api_key: {KEY}\n    model_info:\n      id: d{i}\n",
            up.v1()
        ));
    }
    let cfg = write_config("emfile", &yaml);
    let (mut child, addr, _) = spawn_binary(&cfg, Some(40));
    let req = http::Request::get(format!("http://{addr}/health"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let a = tokio::time::timeout(Duration::from_secs(30), fetch(req))
        .await
        .expect("/health answers");
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_file(cfg);
    let v = a.json();
    let (healthy, unhealthy, unchecked) = (
        v["healthy_count"].as_u64().unwrap(),
        v["unhealthy_count"].as_u64().unwrap(),
        v["unchecked_count"].as_u64().unwrap(),
    );
    assert_eq!(unhealthy, 0, "no upstream blamed: {v:#}");
    assert_eq!(healthy + unchecked, 80, "{v:#}");
    assert!(unchecked > 0, "the limit was hit: {v:#}");
    for e in v["unchecked_endpoints"].as_array().unwrap() {
        let err = e["error"].as_str().unwrap_or_default();
        assert!(err.starts_with("local:"), "{err}");
        assert!(!err.contains(KEY));
    }
}
