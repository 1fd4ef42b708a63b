//! Routing strategies, limits and fallbacks through the gateway (`thr_gateway`), in-process,
//! over real sockets against local scripted upstreams (`thr_testkit::Upstream`): each test
//! asserts which upstream got the requests, and what the client saw. Real time, kept short
//! (a latency decay of 50 ms; rpm/tpm limits within the first minute of the state).

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering::SeqCst},
    },
    time::Duration,
};

use serde_json::{Value, json};
use thr_gateway::usage::{UsageScanner, estimate_request_tokens};
use thr_testkit::{Reply, Upstream};
use tower_health_routing::{
    Config, ConfigBuilder, Deployment,
    config::{RoutingStrategy, RoutingStrategyArgs},
    routing::RequestTokens,
};

use crate::support::{self, start};

/// A deployment of `route` named `id`, served by `up`, whose model is `model`.
fn dep(
    route: &str,
    id: &str,
    model: &str,
    up: &Upstream,
) -> tower_health_routing::DeploymentBuilder {
    Deployment::builder(route, format!("openai/{model}"))
        .id(id)
        .api_base(up.v1())
        .api_key(format!("sk-test-{id}"))
}

/// A chat completion answer with `usage` totalling `tokens`.
fn chat_answer(tokens: u64) -> Reply {
    Reply::status(
        200,
        json!({
            "id": "c", "object": "chat.completion",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}}],
            "usage": {"prompt_tokens": tokens - 1, "completion_tokens": 1, "total_tokens": tokens}
        })
        .to_string(),
    )
    .header("content-type", "application/json")
}

/// POSTs a chat completion `body`.
async fn post(addr: SocketAddr, body: Value) -> support::Reply {
    support::post_json(addr, "/v1/chat/completions", body, None).await
}

fn chat(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "hello"}]})
}

fn strategy(s: RoutingStrategy) -> ConfigBuilder {
    Config::builder().routing_strategy(s)
}

/// Upstream answering 200 after `delay_ms` (changed at run time).
fn delayed(delay_ms: &Arc<AtomicU64>) -> Upstream {
    let d = Arc::clone(delay_ms);
    Upstream::start(move |_| Reply::ok().after(Duration::from_millis(d.load(SeqCst))))
}

#[tokio::test]
async fn latency_based_routing_remeasures_a_recovered_deployment() {
    let (a_ms, b_ms) = (Arc::new(AtomicU64::new(150)), Arc::new(AtomicU64::new(1)));
    let (a, b) = (delayed(&a_ms), delayed(&b_ms));
    let mut args = RoutingStrategyArgs::default();
    // Short decay: a 150 ms estimate not refreshed falls below 40 ms in ~70 ms.
    args.latency_decay = Duration::from_millis(50);
    let gw = start(
        strategy(RoutingStrategy::LatencyBased)
            .routing_strategy_args(args)
            .deployment(dep("m", "a", "m", &a).build())
            .deployment(dep("m", "b", "m", &b).build())
            .build()
            .unwrap(),
    )
    .await;
    // Both are measured (unmeasured first): `a` at 150 ms, `b` at ~1 ms; `b` takes the rest.
    for _ in 0..5 {
        assert_eq!(post(gw.addr, chat("m")).await.status, 200);
    }
    assert_eq!(a.count(), 1, "a measured once, slow, then avoided");
    // `a` recovers and `b` becomes slow: `a`'s stale estimate decays and it is tried again.
    a_ms.store(1, SeqCst);
    b_ms.store(40, SeqCst);
    let before = a.count();
    let mut first_back = None;
    for i in 0..20 {
        let r = post(gw.addr, chat("m")).await;
        assert_eq!(r.status, 200);
        if first_back.is_none() && a.count() > before {
            first_back = Some(i);
        }
    }
    let first_back = first_back.expect("the recovered deployment got traffic again");
    assert!(first_back <= 10, "back after {first_back} requests");
    // Once re-measured as the fastest, it takes most of the rest (`b` is re-measured
    // now and then, as its own estimate decays).
    let after = a.count() - before;
    assert!(after >= (20 - first_back) / 2, "a served {after} of 20");
    gw.shutdown().await;
}

#[tokio::test]
async fn usage_based_v2_keeps_a_deployment_at_its_rpm_out_for_the_minute() {
    let (a, b) = (Upstream::ok(), Upstream::ok());
    let gw = start(
        strategy(RoutingStrategy::from_name("usage-based-routing-v2").unwrap())
            .deployment(dep("m", "a", "m", &a).rpm(3).build())
            .deployment(dep("m", "b", "m", &b).rpm(10).build())
            .build()
            .unwrap(),
    )
    .await;
    for _ in 0..10 {
        assert_eq!(post(gw.addr, chat("m")).await.status, 200);
    }
    assert_eq!(a.count(), 3, "a stops at its rpm");
    assert_eq!(b.count(), 7, "b has room");
    // Spread by usage while both had room: `a` was not skipped before it reached 3.
    // Now both are at their limit: 429 with a Retry-After to the next minute.
    for _ in 0..3 {
        assert_eq!(post(gw.addr, chat("m")).await.status, 200);
    }
    assert_eq!(b.count(), 10);
    let r = post(gw.addr, chat("m")).await;
    assert_eq!(r.status, 429, "{:?}", r.json());
    let secs: u64 = r.header("retry-after").parse().unwrap();
    assert!((1..=60).contains(&secs), "retry-after {secs}");
    assert_eq!((a.count(), b.count()), (3, 10), "nothing sent over a limit");
    gw.shutdown().await;
}

#[tokio::test]
async fn cost_based_routing_picks_the_cheapest() {
    let ups: Vec<Upstream> = (0..3).map(|_| Upstream::ok()).collect();
    let costs = [(3e-6, 6e-6), (1e-7, 2e-7), (1e-6, 1e-6)];
    let mut cfg = strategy(RoutingStrategy::CostBased);
    for (i, (u, (inp, out))) in ups.iter().zip(costs).enumerate() {
        cfg = cfg.deployment(
            dep("m", &format!("d{i}"), "m", u)
                .cost_per_token(inp, out)
                .build(),
        );
    }
    let gw = start(cfg.build().unwrap()).await;
    for _ in 0..8 {
        let r = post(gw.addr, chat("m")).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-litellm-model-id"), "d1");
    }
    assert_eq!(
        ups.iter().map(Upstream::count).collect::<Vec<_>>(),
        [0, 8, 0]
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn a_retried_answer_names_the_deployment_that_gave_it() {
    // With retries on and no fallbacks, the model-id header comes from the answer's body
    // (no response extension): after a retry it names the deployment retried on.
    let down = Upstream::start(|_| Reply::status(500, r#"{"error":{"message":"boom"}}"#));
    let good = Upstream::ok();
    let gw = start(
        Config::builder()
            .num_retries(1)
            .deployment(dep("gpt-4o-mini", "bad", "gpt-4o-mini", &down).build())
            .deployment(dep("gpt-4o-mini", "good", "gpt-4o-mini", &good).build())
            .build()
            .unwrap(),
    )
    .await;
    // The first pick is random: send until one went to the failing deployment first (and
    // was retried past it), checking every answer; 64 tries all missing it: odds of 2^-64.
    for _ in 0..64 {
        let r = post(gw.addr, chat("gpt-4o-mini")).await;
        assert_eq!(r.status, 200, "{:?}", r.json());
        assert_eq!(r.header("x-litellm-model-id"), "good");
        assert_eq!(r.header("x-litellm-model-group"), "gpt-4o-mini");
        if down.count() > 0 {
            break;
        }
    }
    assert!(down.count() >= 1, "the retry path never ran");
    gw.shutdown().await;
}

#[tokio::test]
async fn a_failing_group_falls_back_and_the_answer_names_the_group() {
    let down = Upstream::start(|_| Reply::status(500, r#"{"error":{"message":"boom"}}"#));
    let backup = Upstream::ok();
    let gw = start(
        Config::builder()
            .num_retries(1)
            .deployment(dep("primary", "p1", "big-model", &down).build())
            .deployment(dep("primary", "p2", "big-model", &down).build())
            // The group is named as its model: the body still names `primary`.
            .deployment(dep("gpt-4o-mini", "b1", "gpt-4o-mini", &backup).build())
            .fallbacks("primary", ["gpt-4o-mini"])
            .build()
            .unwrap(),
    )
    .await;
    let r = post(gw.addr, chat("primary")).await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    assert_eq!(r.header("x-litellm-model-group"), "gpt-4o-mini");
    assert_eq!(r.header("x-litellm-attempted-fallbacks"), "1");
    assert_eq!(r.header("x-litellm-model-id"), "b1");
    assert_eq!(down.count(), 2, "the group's retries were spent first");
    assert_eq!(
        backup.only().json()["model"],
        "gpt-4o-mini",
        "the fallback deployment gets its own model"
    );
    // A group that answers names itself, with no fallback attempted.
    let r = post(gw.addr, chat("gpt-4o-mini")).await;
    assert_eq!(
        (
            r.header("x-litellm-model-group"),
            r.header("x-litellm-attempted-fallbacks")
        ),
        ("gpt-4o-mini", "0")
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn default_fallbacks_serve_every_group_without_its_own() {
    let down = Upstream::start(|_| Reply::status(503, "{}"));
    let (other, last) = (Upstream::ok(), Upstream::ok());
    let gw = start(
        Config::builder()
            .deployment(dep("a", "a1", "a", &down).build())
            .deployment(dep("b", "b1", "b", &down).build())
            .deployment(dep("c", "c1", "c", &other).build())
            .deployment(dep("last", "l1", "last", &last).build())
            .fallbacks("b", ["last"])
            .default_fallbacks(["c"])
            .build()
            .unwrap(),
    )
    .await;
    let r = post(gw.addr, chat("a")).await;
    assert_eq!((r.status, r.header("x-litellm-model-group")), (200, "c"));
    let r = post(gw.addr, chat("b")).await;
    assert_eq!(
        (r.status, r.header("x-litellm-model-group")),
        (200, "last"),
        "a group's own list wins over default_fallbacks"
    );
    assert_eq!((other.count(), last.count()), (1, 1));
    gw.shutdown().await;
}

#[tokio::test]
async fn every_group_failing_returns_the_last_failure() {
    let down = Upstream::start(|_| Reply::status(500, r#"{"error":{"message":"still down"}}"#));
    let gw = start(
        Config::builder()
            .deployment(dep("a", "a1", "a", &down).build())
            .deployment(dep("b", "b1", "b", &down).build())
            .fallbacks("a", ["b"])
            .build()
            .unwrap(),
    )
    .await;
    let r = post(gw.addr, chat("a")).await;
    assert_eq!(r.status, 500);
    assert_eq!(r.header("x-litellm-model-group"), "b");
    assert_eq!(r.header("x-litellm-attempted-fallbacks"), "1");
    assert_eq!(down.count(), 2);
    gw.shutdown().await;
}

#[tokio::test]
async fn context_window_fallback_on_context_length_exceeded() {
    let small = Upstream::start(|_| {
        Reply::status(
            400,
            r#"{"error":{"message":"This model's maximum context length is 8192 tokens","type":"invalid_request_error","code":"context_length_exceeded"}}"#,
        )
        .header("content-type", "application/json")
    });
    let big = Upstream::ok();
    let general = Upstream::ok();
    let gw = start(
        Config::builder()
            .deployment(dep("small", "s1", "small-8k", &small).build())
            .deployment(dep("big", "b1", "big-128k", &big).build())
            .deployment(dep("general", "g1", "general", &general).build())
            .fallbacks("small", ["general"])
            .context_window_fallbacks("small", ["big"])
            .build()
            .unwrap(),
    )
    .await;
    let r = post(gw.addr, chat("small")).await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    assert_eq!(r.header("x-litellm-model-group"), "big");
    assert_eq!(big.only().json()["model"], "big-128k");
    assert_eq!(
        general.count(),
        0,
        "the context-window list, not the general one"
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn content_policy_fallback_and_a_plain_400_stays() {
    let strict = Upstream::start(|r| {
        let bad = String::from_utf8_lossy(&r.body).contains("forbidden");
        if bad {
            Reply::status(
                400,
                r#"{"error":{"message":"rejected","code":"content_policy_violation"}}"#,
            )
        } else {
            Reply::status(400, r#"{"error":{"message":"bad temperature"}}"#)
        }
    });
    let lenient = Upstream::ok();
    let gw = start(
        Config::builder()
            .deployment(dep("strict", "s1", "strict", &strict).build())
            .deployment(dep("lenient", "l1", "lenient", &lenient).build())
            .content_policy_fallbacks("strict", ["lenient"])
            .build()
            .unwrap(),
    )
    .await;
    let body = json!({"model": "strict", "messages": [{"role": "user", "content": "forbidden"}]});
    let r = post(gw.addr, body).await;
    assert_eq!(
        (r.status, r.header("x-litellm-model-group")),
        (200, "lenient")
    );
    // Another 400 is the caller's own: returned as it is, no fallback.
    let r = post(gw.addr, chat("strict")).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["message"], "bad temperature");
    assert_eq!(r.header("x-litellm-model-group"), "strict");
    // The body the fallback layer read to classify still names its deployment.
    assert_eq!(r.header("x-litellm-model-id"), "s1");
    assert_eq!(lenient.count(), 1);
    gw.shutdown().await;
}

// One thread: the gateway and the clients interleave deterministically, so the in-flight
// count the limit reads is exact.
#[tokio::test(flavor = "current_thread")]
async fn max_parallel_requests_skips_a_busy_deployment() {
    let a = Upstream::start(|_| Reply::ok().after(Duration::from_millis(300)));
    let b = Upstream::start(|_| Reply::ok().after(Duration::from_millis(300)));
    let gw = start(
        strategy(RoutingStrategy::RoundRobin)
            .deployment(dep("m", "a", "m", &a).max_parallel_requests(1).build())
            .deployment(dep("m", "b", "m", &b).build())
            .build()
            .unwrap(),
    )
    .await;
    let addr = gw.addr;
    let all: Vec<_> = (0..6)
        .map(|_| tokio::spawn(async move { post(addr, chat("m")).await.status }))
        .collect();
    for h in all {
        assert_eq!(h.await.unwrap(), 200);
    }
    assert_eq!(a.peak_in_flight(), 1, "never more than its limit at once");
    assert_eq!(a.count(), 1, "busy: skipped by the rest of the burst");
    assert_eq!(b.count(), 5);
    gw.shutdown().await;
}

#[tokio::test]
async fn model_group_alias_resolves_to_its_group() {
    let up = Upstream::ok();
    let gw = start(
        Config::builder()
            .deployment(dep("gpt-4o", "d", "gpt-4o-2024-08-06", &up).build())
            .model_group_alias("gpt-4", "gpt-4o")
            .build()
            .unwrap(),
    )
    .await;
    let r = post(gw.addr, chat("gpt-4")).await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    assert_eq!(r.header("x-litellm-model-id"), "d");
    assert_eq!(up.only().json()["model"], "gpt-4o-2024-08-06");
    let r = post(gw.addr, chat("gpt-5")).await;
    assert_eq!(r.status, 400, "an unknown name is still unknown");
    gw.shutdown().await;
}

#[tokio::test]
async fn pre_call_checks_skip_a_deployment_whose_window_is_too_small() {
    let (small, big) = (Upstream::ok(), Upstream::ok());
    let gw = start(
        Config::builder()
            .enable_pre_call_checks(true)
            .deployment(dep("m", "small", "m", &small).max_input_tokens(100).build())
            .deployment(dep("m", "big", "m", &big).max_input_tokens(100_000).build())
            .build()
            .unwrap(),
    )
    .await;
    // ~500 tokens by the chars/4 estimate: only `big` fits.
    let long = "word ".repeat(400);
    for _ in 0..6 {
        let body = json!({"model": "m", "messages": [{"role": "user", "content": long}]});
        let r = post(gw.addr, body).await;
        assert_eq!((r.status, r.header("x-litellm-model-id")), (200, "big"));
    }
    // A short prompt fits both.
    for _ in 0..30 {
        assert_eq!(post(gw.addr, chat("m")).await.status, 200);
    }
    assert!(small.count() > 0, "a short prompt may go to the small one");
    gw.shutdown().await;
}

/// Two deployments with `tpm` 40 under usage-based routing, each answer using 50 tokens:
/// once the answer's tokens are counted, each serves one request and the third is a 429.
async fn each_serves_once_by_tokens(reply: fn() -> Reply, stream: bool) {
    let (a, b) = (
        Upstream::start(move |_| reply()),
        Upstream::start(move |_| reply()),
    );
    let gw = start(
        strategy(RoutingStrategy::from_name("usage-based-routing").unwrap())
            .deployment(dep("m", "a", "m", &a).tpm(40).build())
            .deployment(dep("m", "b", "m", &b).tpm(40).build())
            .build()
            .unwrap(),
    )
    .await;
    let mut body = chat("m");
    if stream {
        body["stream"] = json!(true);
        body["stream_options"] = json!({"include_usage": true});
    }
    for _ in 0..2 {
        let r = post(gw.addr, body.clone()).await;
        assert_eq!(r.status, 200);
    }
    assert_eq!((a.count(), b.count()), (1, 1));
    let r = post(gw.addr, body).await;
    assert_eq!(r.status, 429, "both at their tpm: {:?}", r.json());
    gw.shutdown().await;
}

#[tokio::test]
async fn a_buffered_answers_usage_counts_against_tpm() {
    each_serves_once_by_tokens(|| chat_answer(50), false).await;
}

#[tokio::test]
async fn a_streams_final_usage_chunk_counts_against_tpm() {
    fn sse() -> Reply {
        let chunk = |usage: Value| {
            let c = json!({"id": "c", "object": "chat.completion.chunk",
                "choices": [{"index": 0, "delta": {"content": "tok"}}], "usage": usage});
            format!("data: {c}\n\n")
        };
        let body = format!(
            "{}{}{}data: [DONE]\n\n",
            chunk(Value::Null),
            chunk(Value::Null),
            chunk(json!({"prompt_tokens": 45, "completion_tokens": 5, "total_tokens": 50}))
        );
        Reply::status(200, body).header("content-type", "text/event-stream")
    }
    each_serves_once_by_tokens(sse, true).await;
}

#[test]
fn usage_scanner_reads_usage_split_anywhere() {
    let body = br#"data: {"usage":null}

data: {"x":"\"usage\" in text","usage": {"prompt_tokens": 40, "completion_tokens": 2, "details": {"a": "}"}}}

"#;
    // Every split point of the body into two frames gives the same answer, once.
    for cut in 0..body.len() {
        let mut s = UsageScanner::new();
        let got: Vec<u64> = [&body[..cut], &body[cut..]]
            .iter()
            .filter_map(|f| s.push(f))
            .collect();
        assert_eq!(got, [42], "split at {cut}");
    }
    // Byte by byte.
    let mut s = UsageScanner::new();
    let got: Vec<u64> = body.chunks(1).filter_map(|f| s.push(f)).collect();
    assert_eq!(got, [42]);
    // The Responses API's names; no usage at all.
    let mut s = UsageScanner::new();
    assert_eq!(
        s.push(br#"{"usage":{"input_tokens":7,"output_tokens":3}}"#),
        Some(10)
    );
    assert_eq!(UsageScanner::new().push(br#"{"choices":[]}"#), None);
}

#[test]
fn prompt_estimate_counts_message_text_only() {
    let body = json!({"model": "m", "temperature": 0.5, "messages": [
        {"role": "system", "content": "abcd"},
        {"role": "user", "content": [{"type": "text", "text": "abcdefgh"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAAAAAAAAAAAAAAAAAA"}}]}
    ]});
    let bytes = body.to_string().into_bytes();
    assert_eq!(estimate_request_tokens(&bytes), Some(RequestTokens(3)));
    let embed = br#"{"model":"e","input":["abcd","efgh"]}"#;
    assert_eq!(estimate_request_tokens(embed), Some(RequestTokens(2)));
    assert_eq!(estimate_request_tokens(b"{\"model\":\"m\"}"), None);
    assert_eq!(estimate_request_tokens(b"not json"), None);
}
