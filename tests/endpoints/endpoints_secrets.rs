//! Secrets planted in every credential-like field never come out: not in any endpoint's
//! body (on-demand and background-served), not in errors, not in `Debug`, not in logs.
//! The upstream is a real local server whose 401 body quotes every secret, as real
//! providers quote the key they were sent.

use crate::support::{
    Logs,
    endpoints::{Answer, call_get},
    upstream::{Reply, Upstream},
};
use serde_json::json;
use tower_health_routing::{
    Config, Deployment, DeploymentId, HealthState,
    config::RedisSettings,
    endpoints::{HealthEndpoints, service_check_fn},
    health::HealthRecord,
    probe::{ProbeDefaults, ProbeLoop, ProbeTarget},
    secret::Secret,
    shared::SharedStatus,
};

const API_KEY: &str = "sk-live-APIKEY-0001";
const AWS: &str = "aws-SECRET-0002";
const VERTEX_INNER: &str = "VERTEX-PRIVATE-0003";
const HEADER_INNER: &str = "HDR-TOKEN-0004";
const MY_TOKEN: &str = "mytoken-0005";
const MASTER: &str = "sk-master-0006";
const REDIS_PW: &str = "redis-pw-0007";

fn vertex() -> String {
    json!({"type": "service_account", "private_key": VERTEX_INNER}).to_string()
}

fn headers() -> String {
    json!({"Authorization": format!("Bearer {HEADER_INNER}")}).to_string()
}

/// Every value that must never be shown.
fn secrets() -> Vec<String> {
    [
        API_KEY,
        AWS,
        VERTEX_INNER,
        HEADER_INNER,
        MY_TOKEN,
        MASTER,
        REDIS_PW,
    ]
    .map(str::to_owned)
    .into_iter()
    .chain([vertex(), headers()])
    .collect()
}

/// Text quoting every secret whole, as an upstream error body might.
fn quoting_all() -> String {
    format!(
        "Incorrect API key provided: {API_KEY}; aws {AWS}; creds {}; headers {}; token {MY_TOKEN}; master {MASTER}; redis {REDIS_PW}",
        vertex(),
        headers()
    )
}

fn config(up: &Upstream, background: bool) -> Config {
    let d = |id: &str| {
        Deployment::builder("r", "openai/gpt-4o")
            .id(id)
            .api_base(up.v1())
            .api_key(API_KEY)
            .param("aws_secret_access_key", AWS.into())
            .param(
                "vertex_credentials",
                serde_json::from_str(&vertex()).unwrap(),
            )
            .param("extra_headers", serde_json::from_str(&headers()).unwrap())
            .param("my_token", MY_TOKEN.into())
            .build()
    };
    let mut cfg = Config::builder()
        .deployment(d("d0"))
        .deployment(d("d1"))
        .master_key(MASTER)
        .background_health_checks(background)
        .build()
        .expect("config");
    cfg.router.redis = Some(RedisSettings::HostPort {
        host: "127.0.0.1".into(),
        port: 6379,
        password: Some(Secret::new(REDIS_PW)),
        tls: false,
    });
    cfg
}

fn endpoints(state: &HealthState) -> (HealthEndpoints, ProbeLoop) {
    let probes = ProbeLoop::builder(state)
        .defaults(ProbeDefaults::default())
        .build()
        .expect("loop");
    let leaky = quoting_all();
    let ep = HealthEndpoints::new(state.clone(), probes.clone())
        .service(
            "redis",
            service_check_fn(move || {
                let e = leaky.clone();
                async move { Err(e) }
            }),
        )
        .service(
            "sink",
            service_check_fn(|| async {
                Ok(json!({"url": format!("redis://:{REDIS_PW}@h"), MASTER: [API_KEY]}))
            }),
        );
    (ep, probes)
}

async fn every_answer(ep: &HealthEndpoints) -> Vec<Answer> {
    let bearer = format!("Bearer {MASTER}");
    let key = [("authorization", bearer.as_str())];
    let hj = [
        ("authorization", bearer.as_str()),
        ("accept", "application/health+json"),
    ];
    let mut out = Vec::new();
    for path in [
        "/health".to_owned(),
        "/health?model=r".to_owned(),
        "/health?model_id=d0".to_owned(),
        format!("/health?model_id={API_KEY}"),
        format!("/health?model={MY_TOKEN}"),
        format!("/health/services?service={AWS}"),
        format!("/health/{MASTER}"),
        "/health/services?service=redis".to_owned(),
        "/health/services?service=sink".to_owned(),
        "/health/readiness/details".to_owned(),
        "/health/shared-status".to_owned(),
        "/health/readiness".to_owned(),
        "/health/liveliness".to_owned(),
    ] {
        out.push(call_get(ep, &path, &key).await);
        out.push(call_get(ep, &path, &hj).await);
    }
    out.push(call_get(ep, "/health", &[("authorization", "Bearer nope")]).await);
    out
}

fn assert_clean(what: &str, text: &str) {
    for s in secrets() {
        assert!(!text.contains(&s), "{what} shows `{s}`:\n{text}");
    }
}

#[tokio::test]
async fn planted_secrets_never_appear_anywhere() {
    let (logs, _) = Logs::capture();
    let up = Upstream::start(|_| {
        Reply::status(
            401,
            json!({"error": {"message": quoting_all()}}).to_string(),
        )
    });

    // On demand: the round probes the real upstream, which answers 401 quoting everything.
    let state = HealthState::new(config(&up, false));
    let (ep, probes) = endpoints(&state);
    let answers = every_answer(&ep).await;
    assert_eq!(answers[0].status, 200);
    let body = answers[0].json();
    assert_eq!(body["unhealthy_count"], 2, "{body}");
    assert_eq!(body["unhealthy_endpoints"][0]["exception_status"], 401);
    assert!(
        body["unhealthy_endpoints"][0]["error"]
            .as_str()
            .unwrap()
            .contains("[redacted]")
    );
    let round = probes.check_now(ProbeTarget::All).await;

    // Background-served: one published result from the loop, one from other code that
    // did not scrub; the shared status and service checks also quote secrets.
    let bg = HealthState::new(config(&up, true));
    let (bg_ep, bg_probes) = endpoints(&bg);
    bg_probes.run_round().await.expect("alive");
    let now = tokio::time::Instant::now();
    bg.record([(
        DeploymentId::from("d1"),
        HealthRecord::unhealthy(now, quoting_all(), Some(401)),
    )]);
    let mut status = SharedStatus::local("p1");
    status.detail = Some(quoting_all());
    status.lease_holder = Some(format!("holder {AWS}"));
    bg.set_shared_status(status);
    let bg_answers = every_answer(&bg_ep).await;
    let bg_body = bg_answers[0].json();
    assert_eq!(bg_body["unhealthy_count"], 2, "{bg_body}");
    let report = bg_ep.report(ProbeTarget::All).await.expect("known");

    for (i, a) in answers.iter().chain(&bg_answers).enumerate() {
        assert_clean(&format!("answer {i} ({})", a.status), &a.text);
        for v in a.headers.values() {
            assert_clean("a header", v.to_str().unwrap_or(""));
        }
    }
    // (The planted SharedStatus and HealthRecord are our input, not output: not checked.)
    let debug = format!(
        "{ep:?} {bg_ep:?} {state:?} {bg:?} {:?} {round:?} {report:?} {probes:?}",
        state.config(),
    );
    assert_clean("Debug output", &debug);
    assert!(debug.contains("[redacted]"));
    let err = ep.clone().min_healthy_percent(f64::NAN).unwrap_err();
    assert_clean("an error", &format!("{err} {err:?}"));
    let text = logs.text();
    assert!(text.contains("health_check_probe"), "logs were captured");
    assert_clean("the logs", &text);
    drop(up);
}

/// A secret oracle: if an error quoted the request, a configured secret in it would come
/// back as `[redacted]` and a wrong guess verbatim, telling a caller which guess is right.
/// Every error answers the same for a right and a wrong guess, and quotes neither.
#[tokio::test]
async fn errors_never_echo_request_input() {
    let up = Upstream::start(|_| Reply::ok());
    let state = HealthState::new(config(&up, false));
    let (ep, _probes) = endpoints(&state);
    let bearer = format!("Bearer {MASTER}");
    let key = [("authorization", bearer.as_str())];
    for (right, wrong) in [
        (MASTER, "sk-master-9999"),
        (API_KEY, "sk-live-APIKEY-9999"),
        (AWS, "aws-SECRET-9999"),
    ] {
        for template in [
            "/health/xx-{}-yy",
            "/{}",
            "/health?model_id={}",
            "/health?model=xx{}yy",
            "/health/services?service={}",
            "/health?model=%zz{}",
            "/health/services?service=%zz{}",
        ] {
            let a = call_get(&ep, &template.replace("{}", right), &key).await;
            let b = call_get(&ep, &template.replace("{}", wrong), &key).await;
            assert!(
                a.status == 404 || a.status == 400,
                "{template}: {}",
                a.status
            );
            assert_eq!((a.status, &a.text), (b.status, &b.text), "{template}");
            assert!(
                !b.text.contains(wrong),
                "{template} echoes input: {}",
                b.text
            );
            assert!(!a.text.contains("[redacted]"), "{template}: {}", a.text);
            assert!(
                !b.text.contains("xx") && !b.text.contains("zz"),
                "{}",
                b.text
            );
        }
    }
    assert_eq!(up.count(), 0, "no error needed an upstream call");
}
