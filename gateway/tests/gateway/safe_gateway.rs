//! A gateway that is safe by default, over real sockets: the master-key boot check (the
//! binary), the limits that stop abuse early, HTTP/1 strictness, drain (endpoint and
//! SIGTERM), and auth on every route. Real time, bounded waits.

use std::{
    io::{BufRead, Read},
    net::SocketAddr,
    process::{Command, Stdio},
    sync::atomic::{AtomicUsize, Ordering},
    time::Duration,
};

use serde_json::Value;
use thr_gateway::{app, drain, limits, routes};
use thr_testkit::upstream::{Reply, Upstream};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    time::Instant,
};
use tower_health_routing::{Config, Deployment};

use crate::support::start_with as start;

// === the binary: master-key boot check ===

static N: AtomicUsize = AtomicUsize::new(0);

const MODEL_LIST: &str = "model_list:\n  - model_name: m\n    litellm_params:\n      model: openai/m\n      api_base: http://127.0.0.1:9/v1\n      api_key: sk-planted-upstream-key\n";

/// How a start of the binary went.
struct Boot {
    /// `Some(code)` if it exited by itself, `None` if it was listening (then killed).
    exit: Option<i32>,
    stdout: String,
    stderr: String,
    addr: Option<SocketAddr>,
    /// With `keep`: the lines the running child prints from now on.
    more: Option<std::sync::mpsc::Receiver<String>>,
}

/// Starts `thr-gateway` with `yaml` on `host:0`; returns once it listens (then stops it,
/// unless `keep`) or exits.
fn boot_with(
    yaml: &str,
    host: &str,
    env: &[(&str, &str)],
    keep: bool,
) -> (Boot, Option<std::process::Child>) {
    boot_args(yaml, host, env, keep, &[])
}

#[allow(
    clippy::zombie_processes,
    reason = "with `keep`, the running child is returned and its caller waits for it"
)]
fn boot_args(
    yaml: &str,
    host: &str,
    env: &[(&str, &str)],
    keep: bool,
    args: &[&str],
) -> (Boot, Option<std::process::Child>) {
    let n = N.fetch_add(1, Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!("thr-safe-gw-{}-{n}.yaml", std::process::id()));
    std::fs::write(&path, yaml).expect("write config");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_thr-gateway"));
    cmd.args([
        "--config",
        path.to_str().expect("utf-8 path"),
        "--host",
        host,
        "--port",
        "0",
    ])
    .args(args)
    .env("RUST_LOG", "info")
    .env("NO_COLOR", "1")
    .env_remove("JSON_LOGS")
    .env_remove("LITELLM_MASTER_KEY")
    .env_remove("LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY")
    .env_remove("DRAIN_ENDPOINT_TOKEN")
    .env_remove("GRACEFUL_SHUTDOWN_TIMEOUT")
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("thr-gateway starts");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut lines = Vec::new();
    let mut exit = None;
    let mut listening = false;
    while Instant::now() < deadline {
        match rx.recv_timeout(Duration::from_millis(50)) {
            Ok(line) => {
                listening = line.contains("gateway listening");
                lines.push(line);
                if listening {
                    break;
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                if let Some(status) = child.try_wait().expect("try_wait") {
                    exit = Some(status.code().unwrap_or(-1));
                    break;
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                let status = child.wait().expect("wait");
                exit = Some(status.code().unwrap_or(-1));
                break;
            }
        }
    }
    if !listening && exit.is_none() {
        let _ = child.kill();
        let _ = child.wait();
        panic!("the gateway neither listened nor exited: {lines:?}");
    }
    let addr = lines.iter().find_map(|l| {
        let at = l.find("addr=")? + 5;
        l[at..].split_whitespace().next()?.parse().ok()
    });
    let mut stderr = String::new();
    let child = if keep && listening {
        Some(child)
    } else {
        if listening {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = child
            .stderr
            .take()
            .expect("stderr")
            .read_to_string(&mut stderr);
        None
    };
    let _ = std::fs::remove_file(&path);
    (
        Boot {
            exit,
            stdout: lines.join("\n"),
            stderr,
            addr,
            more: keep.then_some(rx),
        },
        child,
    )
}

fn boot(yaml: &str, host: &str, env: &[(&str, &str)]) -> Boot {
    boot_with(yaml, host, env, false).0
}

fn with_general(settings: &str) -> String {
    format!("{MODEL_LIST}general_settings:\n{settings}")
}

fn assert_refused(b: &Boot, reason: &str) {
    assert_eq!(b.exit, Some(1), "expected a refusal; stdout: {}", b.stdout);
    for part in [
        "master_key",
        reason,
        "openssl rand -hex 32",
        "LITELLM_MASTER_KEY",
        "dangerously_permit_weak_or_unset_master_key",
    ] {
        assert!(b.stderr.contains(part), "{part:?} not in {:?}", b.stderr);
    }
}

#[test]
fn no_key_on_a_public_address_is_refused() {
    let b = boot(MODEL_LIST, "0.0.0.0", &[]);
    assert_refused(&b, "no master_key is set");
    assert!(!b.stdout.contains("gateway listening"));
}

#[test]
fn no_key_on_loopback_starts_with_a_warning() {
    for host in ["127.0.0.1", "::1"] {
        let b = boot(MODEL_LIST, host, &[]);
        assert_eq!(b.exit, None, "{host}: {}", b.stderr);
        assert!(
            b.stdout.contains("WARN") && b.stdout.contains("listens on loopback"),
            "{host}: {}",
            b.stdout
        );
    }
}

#[test]
fn the_opt_outs_start_on_a_public_address_with_a_warning() {
    let env = boot(
        MODEL_LIST,
        "0.0.0.0",
        &[(
            "LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY",
            "true",
        )],
    );
    assert_eq!(env.exit, None, "{}", env.stderr);
    assert!(
        env.stdout
            .contains("Never run this outside local development")
    );
    let cfg = boot(
        &with_general("  dangerously_permit_weak_or_unset_master_key: true\n"),
        "0.0.0.0",
        &[],
    );
    assert_eq!(cfg.exit, None, "{}", cfg.stderr);
    assert!(
        cfg.stdout
            .contains("dangerously_permit_weak_or_unset_master_key is on")
    );
    // `false` is no opt-out.
    let off = boot(
        MODEL_LIST,
        "0.0.0.0",
        &[(
            "LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY",
            "false",
        )],
    );
    assert_refused(&off, "no master_key is set");
}

#[test]
fn known_empty_and_short_keys_are_refused_on_a_public_address() {
    for key in ["sk-1234", "sk-12345", "sk-1234567890"] {
        let b = boot(
            &with_general(&format!("  master_key: {key}\n")),
            "0.0.0.0",
            &[],
        );
        assert_refused(&b, "publicly known");
        // From the environment too.
        let b = boot(MODEL_LIST, "0.0.0.0", &[("LITELLM_MASTER_KEY", key)]);
        assert_refused(&b, "publicly known");
    }
    assert_refused(
        &boot(&with_general("  master_key: \"\"\n"), "0.0.0.0", &[]),
        "empty",
    );
    let short = boot(&with_general("  master_key: sk-a1b\n"), "0.0.0.0", &[]);
    assert_refused(&short, "too short");
    assert!(!short.stderr.contains("sk-a1b"), "the key is never quoted");
    // The opt-out lets a short key through.
    let b = boot(
        &with_general(
            "  master_key: sk-a1b\n  dangerously_permit_weak_or_unset_master_key: true\n",
        ),
        "0.0.0.0",
        &[],
    );
    assert_eq!(b.exit, None, "{}", b.stderr);
}

#[test]
fn a_key_that_cannot_be_sent_is_refused_even_with_the_opt_out() {
    let b = boot(
        &with_general(
            "  master_key: \"sk-schlüssel-0123456789\"\n  dangerously_permit_weak_or_unset_master_key: true\n",
        ),
        "127.0.0.1",
        &[],
    );
    assert_eq!(b.exit, Some(1), "{}", b.stdout);
    assert!(
        b.stderr.contains("non-ASCII or control characters"),
        "{}",
        b.stderr
    );
    assert!(!b.stderr.contains("schlüssel"), "the key is never quoted");
}

#[tokio::test]
async fn a_good_key_starts_anywhere_and_surrounding_spaces_are_trimmed() {
    let good = boot(
        &with_general("  master_key: sk-4f9c2b7e1d3a5c8b\n"),
        "0.0.0.0",
        &[],
    );
    assert_eq!(good.exit, None, "{}", good.stderr);
    assert!(!good.stdout.contains("WARN"), "{}", good.stdout);

    let (b, child) = boot_with(
        &with_general("  master_key: \"  sk-4f9c2b7e1d3a5c8b \"\n"),
        "127.0.0.1",
        &[],
        true,
    );
    let mut child = child.expect("listening");
    assert!(
        b.stdout.contains("whitespace; it is trimmed"),
        "{}",
        b.stdout
    );
    let addr = b.addr.expect("the listening line has the address");
    let ok = request(
        addr,
        "GET /health/readiness/details HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sk-4f9c2b7e1d3a5c8b\r\nConnection: close\r\n\r\n",
    )
    .await;
    let _ = child.kill();
    let _ = child.wait();
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
}

// === in-process: limits, strictness, drain, auth ===

fn config(up: &Upstream) -> tower_health_routing::ConfigBuilder {
    Config::builder().deployments([Deployment::builder("m", "openai/m")
        .id("d1")
        .api_base(up.v1())
        .api_key("sk-planted-upstream-key")
        .build()])
}

/// Writes `raw` and reads until the server closes (at most 10 s).
async fn request(addr: SocketAddr, raw: &str) -> String {
    request_bytes(addr, raw.as_bytes()).await
}

async fn request_bytes(addr: SocketAddr, raw: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(raw).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("the server closes the connection");
    String::from_utf8_lossy(&out).into_owned()
}

fn chat(host_and_auth: &str) -> String {
    let body = r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;
    format!(
        "POST /v1/chat/completions HTTP/1.1\r\n{host_and_auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

const LIVE: &str = "GET /health/liveliness HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";

fn status(resp: &str) -> u16 {
    resp.get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {resp:?}"))
}

fn body_json(resp: &str) -> Value {
    let body = resp.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    serde_json::from_str(body).unwrap_or(Value::Null)
}

#[tokio::test]
async fn an_oversized_request_head_gets_431_and_the_connection_closes() {
    let up = Upstream::ok();
    let gw = start(config(&up).build().unwrap(), app::Options::default()).await;
    // Default 64 KiB: a 60 KiB head is served, a 70 KiB one is not.
    let fits = format!(
        "GET /health/liveliness HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(60 << 10)
    );
    assert_eq!(status(&request(gw.addr, &fits).await), 200);
    // The abuser keeps the connection (no Connection: close): the server must close it.
    let big = format!(
        "GET /health/liveliness HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\n\r\n",
        "a".repeat(70 << 10)
    );
    let resp = request(gw.addr, &big).await;
    assert_eq!(status(&resp), 431, "{resp}");
    // Many small headers add up the same way.
    let many: String = (0..90)
        .map(|i| format!("X-H{i}: {}\r\n", "b".repeat(900)))
        .collect();
    let resp = request(
        gw.addr,
        &format!("GET /health/liveliness HTTP/1.1\r\nHost: x\r\n{many}\r\n"),
    )
    .await;
    assert_eq!(status(&resp), 431, "{resp}");
    // A normal client is still served.
    assert_eq!(status(&request(gw.addr, LIVE).await), 200);
    gw.shutdown().await;
}

#[tokio::test]
async fn a_declared_body_over_the_limit_is_413_before_it_is_sent() {
    let up = Upstream::ok();
    let options = app::Options {
        max_body: 1 << 20,
        ..app::Options::default()
    };
    let gw = start(config(&up).build().unwrap(), options).await;
    // Only the head is sent: the answer comes without the 100 MB body.
    let t = Instant::now();
    let resp = request(
        gw.addr,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000000\r\n\r\n",
    )
    .await;
    assert_eq!(status(&resp), 413, "{resp}");
    assert!(t.elapsed() < Duration::from_secs(5));
    assert!(
        body_json(&resp)["error"]["message"]
            .as_str()
            .unwrap()
            .contains("1048576 bytes")
    );
    // Chunked (no Content-Length) over the limit: 413 once the limit is passed.
    let chunk = "a".repeat(64 << 10);
    let mut raw = "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".to_owned();
    for _ in 0..20 {
        raw.push_str(&format!("{:x}\r\n{chunk}\r\n", chunk.len()));
    }
    raw.push_str("0\r\n\r\n");
    assert_eq!(status(&request(gw.addr, &raw).await), 413);
    // A normal client is still served, and nothing reached the upstream before.
    assert_eq!(up.count(), 0);
    assert_eq!(status(&request(gw.addr, &chat("Host: x\r\n")).await), 200);
    assert_eq!(up.count(), 1);
    gw.shutdown().await;
}

#[tokio::test]
async fn a_request_body_reaches_the_upstream_whole_and_with_its_own_length() {
    let up = Upstream::ok();
    let config = Config::builder()
        .deployments([
            Deployment::builder("m", "openai/m")
                .id("d1")
                .api_base(up.v1())
                .api_key("sk-planted-upstream-key")
                .build(),
            // Another model upstream: the body is rewritten, so its length changes.
            Deployment::builder("r", "openai/real-model")
                .id("d2")
                .api_base(up.v1())
                .api_key("sk-planted-upstream-key")
                .build(),
        ])
        .build()
        .unwrap();
    let gw = start(config, app::Options::default()).await;
    // In one piece with a `Content-Length`: the same bytes go on.
    assert_eq!(status(&request(gw.addr, &chat("Host: x\r\n")).await), 200);
    // Chunked, in pieces that split the `model` key: read whole.
    let pieces = [
        r#"{"mod"#,
        r#"el":"m","messages":[{"role":"user","#,
        r#""content":"hi"}]}"#,
    ];
    let mut raw = "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".to_owned();
    for p in pieces {
        raw.push_str(&format!("{:x}\r\n{p}\r\n", p.len()));
    }
    raw.push_str("0\r\n\r\n");
    assert_eq!(status(&request(gw.addr, &raw).await), 200);
    // A `Content-Length` with a leading zero is the same length, sent in plain digits.
    let body = r#"{"model":"m","messages":[]}"#;
    let padded = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 0{}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    assert_eq!(status(&request(gw.addr, &padded).await), 200);
    // Rewritten for the deployment's model.
    let rewritten = chat("Host: x\r\n").replace(r#""model":"m""#, r#""model":"r""#);
    assert_eq!(status(&request(gw.addr, &rewritten).await), 200);
    let seen = up.requests();
    assert_eq!(seen.len(), 4);
    for r in &seen {
        let len = r.body.len().to_string();
        assert_eq!(r.header("content-length"), Some(len.as_str()), "{r:?}");
        assert_eq!(r.headers.get_all("content-length").iter().count(), 1);
        assert!(r.header("transfer-encoding").is_none());
    }
    let sent = chat("Host: x\r\n");
    let sent_body = sent.split_once("\r\n\r\n").unwrap().1;
    assert_eq!(&seen[0].body[..], sent_body.as_bytes());
    assert_eq!(&seen[1].body[..], pieces.concat().as_bytes());
    assert_eq!(&seen[2].body[..], body.as_bytes());
    assert_eq!(seen[3].json()["model"], "real-model");
    gw.shutdown().await;
}

#[tokio::test]
async fn a_half_sent_head_is_cut_off_after_the_header_read_timeout() {
    let up = Upstream::ok();
    let options = app::Options {
        limits: limits::Limits {
            header_read_timeout: Duration::from_millis(500),
            ..limits::Limits::default()
        },
        ..app::Options::default()
    };
    let gw = start(config(&up).build().unwrap(), options).await;
    let t = Instant::now();
    let mut slow = TcpStream::connect(gw.addr).await.unwrap();
    slow.write_all(b"GET /health/liveliness HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // A normal client is served meanwhile.
    assert_eq!(status(&request(gw.addr, LIVE).await), 200);
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), slow.read_to_end(&mut out))
        .await
        .expect("the gateway closes the half-sent request's connection")
        .ok();
    let waited = t.elapsed();
    assert!(
        waited >= Duration::from_millis(450),
        "closed after {waited:?}"
    );
    assert!(waited < Duration::from_secs(5), "closed after {waited:?}");
    // An idle connection that never sends a byte is closed the same way.
    let mut idle = TcpStream::connect(gw.addr).await.unwrap();
    let n = tokio::time::timeout(Duration::from_secs(10), idle.read(&mut [0u8; 64]))
        .await
        .expect("the idle connection is closed");
    assert!(matches!(n, Ok(0) | Err(_)));
    gw.shutdown().await;
}

#[tokio::test]
async fn the_connection_cap_holds_new_connections_until_one_closes() {
    let up = Upstream::ok();
    let options = app::Options {
        limits: limits::Limits {
            max_connections: 2,
            ..limits::Limits::default()
        },
        ..app::Options::default()
    };
    let gw = start(config(&up).build().unwrap(), options).await;
    let hog1 = TcpStream::connect(gw.addr).await.unwrap();
    let hog2 = TcpStream::connect(gw.addr).await.unwrap();
    // The third client is not served while two connections are open...
    let third = tokio::spawn(request(gw.addr, LIVE));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!third.is_finished(), "served beyond max_connections");
    // ...and is served as soon as one closes.
    drop(hog1);
    let resp = tokio::time::timeout(Duration::from_secs(5), third)
        .await
        .expect("served once a slot frees")
        .unwrap();
    assert_eq!(status(&resp), 200);
    drop(hog2);
    gw.shutdown().await;
}

#[tokio::test]
async fn host_headers_must_be_exactly_one_and_a_bad_chunk_size_is_400() {
    let up = Upstream::ok();
    let gw = start(config(&up).build().unwrap(), app::Options::default()).await;
    let two = "GET /health/liveliness HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n";
    assert_eq!(status(&request(gw.addr, two).await), 400);
    let none = "GET /health/liveliness HTTP/1.1\r\nConnection: close\r\n\r\n";
    assert_eq!(status(&request(gw.addr, none).await), 400);
    // HTTP/1.0 has no Host requirement.
    let old = "GET /health/liveliness HTTP/1.0\r\n\r\n";
    assert_eq!(status(&request(gw.addr, old).await), 200);
    let two_api = chat("Host: a\r\nHost: b\r\n");
    assert_eq!(status(&request(gw.addr, &two_api).await), 400);
    let bad_chunk = "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\n{}\r\n0\r\n\r\n";
    let resp = request(gw.addr, bad_chunk).await;
    assert_eq!(status(&resp), 400, "{resp}");
    assert_eq!(up.count(), 0, "no malformed request is forwarded");
    assert_eq!(status(&request(gw.addr, &chat("Host: x\r\n")).await), 200);
    gw.shutdown().await;
}

fn drain_options(token: Option<&str>, grace: Duration) -> app::Options {
    app::Options {
        drain: drain::DrainSettings {
            enabled: true,
            token: token.map(Into::into),
            grace,
        },
        ..app::Options::default()
    }
}

#[tokio::test]
async fn the_drain_endpoint_is_off_by_default_and_needs_its_token() {
    let up = Upstream::ok();
    let off = start(config(&up).build().unwrap(), app::Options::default()).await;
    let resp = request(
        off.addr,
        "GET /health/drain HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status(&resp), 404);
    assert!(!off.drain.is_draining());
    off.shutdown().await;

    let on = start(
        config(&up).build().unwrap(),
        drain_options(Some("drain-token-7f3a"), Duration::from_secs(5)),
    )
    .await;
    for hdr in [
        "",
        "X-Drain-Token: wrong\r\n",
        "X-Drain-Token: drain-token-7f3\r\n",
    ] {
        let resp = request(
            on.addr,
            &format!("GET /health/drain HTTP/1.1\r\nHost: x\r\n{hdr}Connection: close\r\n\r\n"),
        )
        .await;
        assert_eq!(status(&resp), 401, "{hdr:?}");
        assert!(!resp.contains("drain-token-7f3a"));
    }
    // No side effect: still live and serving.
    assert!(!on.drain.is_draining());
    assert_eq!(status(&request(on.addr, LIVE).await), 200);
    assert_eq!(status(&request(on.addr, &chat("Host: x\r\n")).await), 200);
    on.shutdown().await;
}

#[tokio::test]
async fn drain_lets_in_flight_requests_finish_and_refuses_new_ones() {
    let up = Upstream::start(|_| Reply::ok().after(Duration::from_millis(1500)));
    let gw = start(
        config(&up).build().unwrap(),
        drain_options(Some("drain-token-7f3a"), Duration::from_secs(20)),
    )
    .await;
    let addr = gw.addr;
    let inflight: Vec<_> = (0..2)
        .map(|_| tokio::spawn(async move { request(addr, &chat("Host: x\r\n")).await }))
        .collect();
    let until = Instant::now() + Duration::from_secs(5);
    while gw.drain.in_flight() < 2 {
        assert!(Instant::now() < until, "requests never in flight");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let drain_call = tokio::spawn(request(
        addr,
        "GET /health/drain HTTP/1.1\r\nHost: x\r\nX-Drain-Token: drain-token-7f3a\r\nConnection: close\r\n\r\n",
    ));
    let until = Instant::now() + Duration::from_secs(5);
    while !gw.drain.is_draining() {
        assert!(Instant::now() < until, "drain never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Draining: probes answer 503, new API requests are refused.
    for probe in [
        "/health/liveliness",
        "/health/liveness",
        "/health/readiness",
    ] {
        let resp = request(
            addr,
            &format!("GET {probe} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
        )
        .await;
        assert_eq!(status(&resp), 503, "{probe}");
        assert_eq!(body_json(&resp)["status"], "shutting_down");
    }
    let refused = request(addr, &chat("Host: x\r\n")).await;
    assert_eq!(status(&refused), 503, "{refused}");
    assert!(
        !drain_call.is_finished(),
        "the drain returned with requests in flight"
    );
    // The drain returns once both finished, and both got their answer.
    let resp = tokio::time::timeout(Duration::from_secs(10), drain_call)
        .await
        .expect("drain returns")
        .unwrap();
    assert_eq!(status(&resp), 200, "{resp}");
    assert_eq!(
        body_json(&resp),
        serde_json::json!({"status": "drained", "drained_requests": 2})
    );
    for r in inflight {
        assert!(r.is_finished() || gw.drain.in_flight() == 0);
        assert_eq!(status(&r.await.unwrap()), 200);
    }
    assert_eq!(
        up.count(),
        2,
        "the refused request never reached the upstream"
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn drain_gives_up_after_the_grace_time() {
    let up = Upstream::start(|_| Reply::hang());
    let gw = start(
        config(&up).build().unwrap(),
        drain_options(None, Duration::from_millis(300)),
    )
    .await;
    let addr = gw.addr;
    let _stuck = tokio::spawn(async move { request(addr, &chat("Host: x\r\n")).await });
    let until = Instant::now() + Duration::from_secs(5);
    while gw.drain.in_flight() < 1 {
        assert!(Instant::now() < until, "request never in flight");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let t = Instant::now();
    let resp = request(
        addr,
        "GET /health/drain HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(
        t.elapsed() >= Duration::from_millis(250),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(
        body_json(&resp),
        serde_json::json!({"status": "drained", "drained_requests": 0})
    );
    // Shutting down does not wait for the stuck request beyond a bounded close.
    gw.shutdown().await;
}

#[tokio::test]
async fn sigterm_drains_in_flight_requests_before_exiting() {
    // Long enough that the request is still in flight while the drain is checked, even on
    // a loaded machine.
    let up = Upstream::start(|_| Reply::ok().after(Duration::from_secs(4)));
    let yaml = format!(
        "model_list:\n  - model_name: m\n    litellm_params:\n      model: openai/m\n      api_base: {}\n      api_key: sk-planted-upstream-key\ngeneral_settings:\n  master_key: sk-4f9c2b7e1d3a5c8b\n",
        up.v1()
    );
    let (b, child) = boot_with(&yaml, "127.0.0.1", &[], true);
    let mut child = child.expect("listening");
    let addr = b.addr.expect("address");
    let auth = "Host: x\r\nAuthorization: Bearer sk-4f9c2b7e1d3a5c8b\r\n";
    let inflight = tokio::spawn(async move { request(addr, &chat(auth)).await });
    let until = Instant::now() + Duration::from_secs(5);
    while up.count() < 1 {
        assert!(Instant::now() < until, "never forwarded");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    // Draining: readiness answers 503 and a new request is refused, while the first runs.
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        let r = request(
            addr,
            "GET /health/readiness HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        if status(&r) == 503 {
            break;
        }
        assert!(Instant::now() < until, "never draining");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(status(&request(addr, &chat(auth)).await), 503);
    assert!(!inflight.is_finished());
    assert_eq!(status(&inflight.await.unwrap()), 200);
    let code = tokio::task::spawn_blocking(move || child.wait().expect("wait"))
        .await
        .unwrap();
    assert!(code.success(), "{code:?}");
    assert_eq!(up.count(), 1);
}

#[tokio::test]
async fn every_route_but_the_probes_needs_the_key() {
    let up = Upstream::ok();
    let key = "sk-4f9c2b7e1d3a5c8b";
    let options = app::Options {
        metrics: Some(
            metrics_exporter_prometheus::PrometheusBuilder::new()
                .build_recorder()
                .handle(),
        ),
        ..drain_options(Some("drain-token-7f3a"), Duration::from_millis(100))
    };
    let gw = start(config(&up).master_key(key).build().unwrap(), options).await;
    let open: Vec<&str> = gw
        .routes
        .iter()
        .filter(|r| r.access == routes::Access::Open)
        .map(|r| r.path.as_str())
        .collect();
    assert_eq!(
        open,
        [
            "/health/liveliness",
            "/health/liveness",
            "/health/readiness"
        ],
        "only the orchestrator probes are open"
    );
    assert!(gw.routes.iter().any(|r| r.path == "/metrics"));
    for r in &gw.routes {
        for auth in [
            "",
            "Authorization: Bearer sk-wrong-key-123\r\n",
            "x-litellm-api-key: sk-4f9c2b7e1d3a5c8\r\n",
        ] {
            let raw = format!(
                "{} {} HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}",
                r.method, r.path
            );
            let resp = request(gw.addr, &raw).await;
            let want = if r.access == routes::Access::Open {
                200
            } else {
                401
            };
            assert_eq!(status(&resp), want, "{} {} with {auth:?}", r.method, r.path);
            assert!(!resp.contains(key));
        }
    }
    // With the key, every key-guarded route exists (neither 401 nor 404).
    for r in gw.routes.iter().filter(|r| r.access == routes::Access::Key) {
        let raw = format!(
            "{} {} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}",
            r.method, r.path
        );
        let s = status(&request(gw.addr, &raw).await);
        assert!(s != 401 && s != 404, "{} {}: {s}", r.method, r.path);
    }
    assert!(!gw.drain.is_draining(), "no unauthorised call drained");
    gw.shutdown().await;
}

#[tokio::test]
async fn reaching_the_connection_cap_is_logged() {
    // The flag wins over the config's `max_connections`.
    let (b, child) = boot_args(
        &with_general("  master_key: sk-4f9c2b7e1d3a5c8b\n  max_connections: 5\n"),
        "127.0.0.1",
        &[],
        true,
        &["--max-connections", "1"],
    );
    let mut child = child.expect("listening");
    let addr = b.addr.expect("address");
    let more = b.more.expect("kept");
    let _hog = TcpStream::connect(addr).await.unwrap();
    let _waiting = TcpStream::connect(addr).await.unwrap();
    let line = tokio::task::spawn_blocking(move || {
        more.recv_timeout(Duration::from_secs(10))
            .map_err(|e| format!("{e}"))
    })
    .await
    .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let line = line.expect("a log line once the cap is reached");
    assert!(
        line.contains("connection limit reached") && line.contains("max_connections=1"),
        "{line}"
    );
}
