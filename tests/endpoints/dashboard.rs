//! The health dashboard's server-rendered table and its JSON: every state a deployment can
//! be in appears as it should (healthy, unhealthy with its reason, unchecked, unsupported,
//! stale, cooling down, ejected; bypass, panic and unavailable banners), the timeline strips
//! have the probes and their turns, the auth rules hold (login form only, no data, without
//! the key; the form post works without JavaScript), and planted secrets (an api_key, the
//! same key quoted back in an upstream's error body, the master key) appear nowhere.
//!
//! Real probes over HTTP to local servers; traffic through the real routing layer.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering::Relaxed},
    },
    time::Duration,
};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use serde_json::Value;
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};
use tower_health_routing::{
    Config, ConfigBuilder, Deployment, DeploymentId, HealthRoutingLayer, HealthState,
    config::OutlierDetection, endpoints::HealthDashboard, health::HealthRecord, probe::ProbeLoop,
};

use crate::support::{
    Upstreams,
    endpoints::{Answer, read},
    request,
    upstream::{Reply, Upstream},
};

const MASTER: &str = "sk-master-DASHBOARD-0002";
const KEY_BAD: &str = "sk-live-DASHBOARD-0001";
const KEY_DOWN: &str = "sk-live-DASHBOARD-0003";

fn secrets() -> [&'static str; 3] {
    [MASTER, KEY_BAD, KEY_DOWN]
}

fn assert_no_secret(what: &str, text: &str) {
    for s in secrets() {
        assert!(!text.contains(s), "{what} shows a secret ({s}):\n{text}");
    }
}

/// An upstream answering 401 and quoting the key it was sent, as real providers do.
fn quoting() -> Upstream {
    Upstream::start(|r| {
        let key = r.header("authorization").unwrap_or("").to_owned();
        Reply::status(
            401,
            format!(r#"{{"error":{{"message":"Incorrect API key provided: {key}"}}}}"#),
        )
    })
}

fn dep(route: &str, id: &str, base: &str) -> Deployment {
    Deployment::builder(route, "openai/gpt-4o-mini")
        .id(id)
        .api_base(base)
        .health_check_timeout(Duration::from_secs(2))
        .build()
}

async fn call(d: &HealthDashboard, req: Request<Full<Bytes>>) -> Answer {
    read(d.clone().oneshot(req).await.expect("infallible")).await
}

fn get(uri: &str, key: Option<&str>) -> Request<Full<Bytes>> {
    let mut b = Request::get(uri);
    if let Some(k) = key {
        b = b.header("authorization", format!("Bearer {k}"));
    }
    b.body(Full::default()).unwrap()
}

fn post_form(body: &str) -> Request<Full<Bytes>> {
    Request::post("/health/dashboard")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap()
}

/// The `<tr>` of deployment `id` (its whole row).
fn row<'a>(html: &'a str, id: &str) -> &'a str {
    let start = html
        .find(&format!(r#"<tr data-model-id="{id}""#))
        .unwrap_or_else(|| panic!("no row for {id}:\n{html}"));
    let end = html[start..].find("</tr>").expect("row end") + start;
    &html[start..end]
}

fn json_row<'a>(data: &'a Value, id: &str) -> &'a Value {
    data["routes"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["deployments"].as_array().unwrap())
        .find(|d| d["model_id"] == id)
        .unwrap_or_else(|| panic!("no {id} in {data}"))
}

/// Sends requests for `route` through `svc` until `done` or `n` requests.
async fn traffic<S>(svc: &mut S, route: &str, n: usize, done: impl Fn() -> bool)
where
    S: Service<Request<String>>,
{
    for _ in 0..n {
        if done() {
            return;
        }
        let s = svc.ready().await.ok().expect("ready");
        let _ = s.call(request(route)).await;
    }
}

fn base(ds: Vec<Deployment>) -> ConfigBuilder {
    Config::builder()
        .deployments(ds)
        .master_key(MASTER)
        .background_health_checks(true)
        .enable_health_check_routing(true)
        .health_check_interval(Duration::from_secs(10))
        .health_check_staleness_threshold(Duration::from_secs(30))
        .cooldown_time(Duration::from_secs(60))
}

#[tokio::test]
async fn every_state_is_rendered_and_no_secret_is_shown() {
    let ok = Upstream::ok();
    let bad = quoting();
    let flip = Arc::new(AtomicBool::new(true));
    let f = Arc::clone(&flip);
    let flipping = Upstream::start(move |_| {
        if f.load(Relaxed) {
            Reply::ok()
        } else {
            Reply::status(503, "overloaded")
        }
    });
    let down = quoting();
    let ds = vec![
        dep("chat", "d0", &ok.v1()),
        Deployment::builder("chat", "openai/gpt-4o-mini")
            .id("d1")
            .api_base(bad.v1())
            .api_key(KEY_BAD)
            .build(),
        Deployment::builder("chat", "openai/gpt-4o-mini")
            .id("d2")
            .api_base(ok.v1())
            .disable_background_health_check(true)
            .build(),
        Deployment::builder("chat", "sagemaker/my-endpoint")
            .id("d3")
            .build(),
        dep("chat", "d5", &ok.v1()),
        dep("chat", "d6", &ok.v1()),
        dep("down", "d7", &flipping.v1()),
        Deployment::builder("down", "openai/gpt-4o-mini")
            .id("d8")
            .api_base(down.v1())
            .api_key(KEY_DOWN)
            .build(),
    ];
    let mut od = OutlierDetection::default();
    od.consecutive_failures = Some(2);
    let cfg = base(ds).outlier_detection(od).build().unwrap();
    let layer = HealthRoutingLayer::new(cfg).with_seed(7);
    let state = layer.state().clone();
    let probes = ProbeLoop::new(&state).unwrap();
    // Two rounds: d7 passes, then fails (a turn on its strip).
    probes.run_round().await.expect("round");
    flip.store(false, Relaxed);
    probes.run_round().await.expect("round");
    // Traffic: d5 answers 429 (cooldown at once), d6 500s (ejected after two in a row).
    let up = Upstreams::new();
    up.set_status(5, 429);
    up.set_status(6, 500);
    let mut svc = layer.layer(up.service());
    let cooled = || state.cooldown_remaining("d5").is_some();
    let ejected = || state.ejection_remaining("d6").is_some();
    traffic(&mut svc, "chat", 400, || cooled() && ejected()).await;
    assert!(cooled() && ejected(), "d5 cooling down and d6 ejected");

    let dash = HealthDashboard::new(state.clone());
    let a = call(&dash, get("/health/dashboard", Some(MASTER))).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(a.content_type(), "text/html; charset=utf-8");
    let h = &a.text;
    assert!(h.contains(r#"data-authed="true""#));
    assert!(
        row(h, "d0").contains(r#"data-state="healthy""#),
        "{}",
        row(h, "d0")
    );
    let d1 = row(h, "d1");
    assert!(d1.contains(r#"data-state="unhealthy""#), "{d1}");
    assert!(
        d1.contains("status 401") && d1.contains("Incorrect API key provided"),
        "the upstream's reason is shown (scrubbed): {d1}"
    );
    assert!(row(h, "d2").contains(r#"data-state="unchecked""#));
    let d3 = row(h, "d3");
    assert!(
        d3.contains(r#"data-state="unsupported""#) && d3.contains("sagemaker"),
        "{d3}"
    );
    let d5 = row(h, "d5");
    assert!(
        d5.contains(r#"data-out="cooldown""#) && d5.contains("s left"),
        "{d5}"
    );
    assert!(d5.contains("100.0 %"), "its one answer was a 429: {d5}");
    let d6 = row(h, "d6");
    assert!(
        d6.contains(r#"data-out="ejected""#) && d6.contains("100.0 %"),
        "{d6}"
    );
    let d0 = row(h, "d0");
    assert!(d0.contains("0.0 %"), "d0 served without errors: {d0}");
    assert_eq!(d0.matches("tl-probe tl-ok").count(), 2, "two probes: {d0}");
    assert!(!d0.contains("tl-change"));
    let d7 = row(h, "d7");
    assert!(
        d7.contains("tl-probe tl-ok")
            && d7.contains("tl-probe tl-fail")
            && d7.contains("tl-change"),
        "d7 turned unhealthy on its strip: {d7}"
    );
    // Route `down`: both failed, so the filter is bypassed.
    let down_at = h.find(r#"data-route="down""#).expect("route down");
    assert!(h[down_at..].contains("banner-bypass"), "{h}");
    let chat_at = h.find(r#"data-route="chat""#).expect("route chat");
    assert!(
        !h[chat_at..down_at].contains("banner-"),
        "chat routes as usual"
    );
    for (name, want) in [
        (
            "content-security-policy",
            "default-src 'none'; script-src 'self'",
        ),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "no-referrer"),
        ("cache-control", "no-store"),
        ("x-frame-options", "DENY"),
    ] {
        let v = a
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        assert!(v.starts_with(want), "{name}: {v}");
    }
    assert!(
        !h.contains("style=") && !h.contains("<script>"),
        "nothing inline"
    );
    assert_no_secret("the page", h);

    // The JSON says the same.
    let j = call(&dash, get("/health/dashboard/data", Some(MASTER))).await;
    assert_eq!(j.status, StatusCode::OK);
    assert_no_secret("the JSON", &j.text);
    let data = j.json();
    for (id, state) in [
        ("d0", "healthy"),
        ("d1", "unhealthy"),
        ("d2", "unchecked"),
        ("d3", "unsupported"),
    ] {
        assert_eq!(json_row(&data, id)["state"], state, "{id}");
    }
    assert!(json_row(&data, "d5")["cooldown_seconds"].as_f64().unwrap() > 50.0);
    assert!(json_row(&data, "d6")["ejected_seconds"].as_f64().unwrap() > 20.0);
    assert_eq!(json_row(&data, "d6")["error_rate"], 1.0);
    assert!(
        json_row(&data, "d0")["requests_per_second"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    assert!(json_row(&data, "d0")["last_probe_ms"].as_f64().is_some());
    assert_eq!(
        json_row(&data, "d7")["timeline"].as_array().unwrap().len(),
        2
    );
    let down = &data["routes"][1];
    assert_eq!(
        (down["name"].as_str(), down["banner"]["kind"].as_str()),
        (Some("down"), Some("bypass"))
    );

    // Without the key: a 401 with the login form only.
    for key in [None, Some("sk-wrong-0000")] {
        let l = call(&dash, get("/health/dashboard", key)).await;
        assert_eq!(l.status, StatusCode::UNAUTHORIZED);
        assert_eq!(l.content_type(), "text/html; charset=utf-8");
        assert!(l.text.contains(r#"id="login-form""#) && l.text.contains("<noscript>"));
        for data in [
            "data-model-id",
            "openai/",
            "sagemaker",
            "127.0.0.1",
            "<table>",
        ] {
            assert!(!l.text.contains(data), "the login page shows {data}");
        }
        assert!(l.headers.get("content-security-policy").is_some());
        assert_no_secret("the login page", &l.text);
        let j = call(&dash, get("/health/dashboard/data", key)).await;
        assert_eq!(j.status, StatusCode::UNAUTHORIZED);
        assert!(!j.text.contains("d0"), "{}", j.text);
    }

    // Without JavaScript: the form posts the key, the answer is the table (no cookie).
    let p = call(&dash, post_form(&format!("key={MASTER}"))).await;
    assert_eq!(p.status, StatusCode::OK);
    assert!(row(&p.text, "d1").contains(r#"data-state="unhealthy""#));
    assert!(p.headers.get("set-cookie").is_none());
    assert_no_secret("the posted page", &p.text);
    let p = call(&dash, post_form("key=sk-guess-1234")).await;
    assert_eq!(p.status, StatusCode::UNAUTHORIZED);
    assert!(p.text.contains("That key was not accepted") && !p.text.contains("sk-guess-1234"));
    assert!(!p.text.contains("data-model-id"));

    // The assets are open and constant.
    for (path, ct) in [
        ("/health/dashboard/app.js", "text/javascript; charset=utf-8"),
        ("/health/dashboard/app.css", "text/css; charset=utf-8"),
    ] {
        let a = call(&dash, get(path, None)).await;
        assert_eq!((a.status, a.content_type()), (StatusCode::OK, ct), "{path}");
        assert!(!a.text.contains("d0") && !a.text.contains("127.0.0.1"));
    }
}

/// No sockets here: time is paused, so a result can grow stale.
#[tokio::test(start_paused = true)]
async fn stale_results_panic_and_unavailable_routes() {
    let ds = vec![
        dep("p", "d0", "http://127.0.0.1:9/v1"),
        dep("p", "d1", "http://127.0.0.1:9/v1"),
        dep("p", "d2", "http://127.0.0.1:9/v1"),
        dep("u", "d3", "http://127.0.0.1:9/v1"),
        dep("u", "d4", "http://127.0.0.1:9/v1"),
        dep("s", "d5", "http://127.0.0.1:9/v1"),
        dep("s", "d6", "http://127.0.0.1:9/v1"),
    ];
    let cfg = base(ds).panic_threshold_percent(60.0).build().unwrap();
    let layer = HealthRoutingLayer::new(cfg).with_seed(3);
    let state: HealthState = layer.state().clone();
    // d5: failed, then no result for longer than the staleness threshold (30 s).
    state.record([(
        DeploymentId::new("d5"),
        HealthRecord::unhealthy(Instant::now(), "status 503: busy", Some(503)),
    )]);
    tokio::time::advance(Duration::from_secs(31)).await;
    let now = Instant::now();
    state.record([
        (DeploymentId::new("d6"), HealthRecord::healthy(now)),
        (DeploymentId::new("d0"), HealthRecord::healthy(now)),
        (
            DeploymentId::new("d1"),
            HealthRecord::unhealthy(now, "timeout", Some(408)),
        ),
        (
            DeploymentId::new("d2"),
            HealthRecord::unhealthy(now, "status 500", Some(500)),
        ),
    ]);
    let up = Upstreams::new();
    up.set_status(3, 429);
    up.set_status(4, 429);
    let mut svc = layer.layer(up.service());
    let both =
        || state.cooldown_remaining("d3").is_some() && state.cooldown_remaining("d4").is_some();
    traffic(&mut svc, "u", 50, both).await;
    assert!(both());
    let dash = HealthDashboard::new(state.clone());
    let data = dash.data();
    let route = |name: &str| {
        data["routes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name)
            .unwrap()
            .clone()
    };
    let p = route("p");
    assert_eq!(p["banner"]["kind"], "panic", "{p}");
    assert!(p["banner"]["message"].as_str().unwrap().contains("1 of 3"));
    assert_eq!(
        (p["passing"].as_u64(), p["routable"].as_u64()),
        (Some(1), Some(3))
    );
    let u = route("u");
    assert_eq!(u["banner"]["kind"], "unavailable", "{u}");
    let s = route("s");
    assert_eq!(s["deployments"][0]["state"], "stale", "{s}");
    assert!(
        s["banner"].is_null(),
        "a stale failure does not keep d5 out: {s}"
    );
    let reason = s["deployments"][0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("staleness threshold") && reason.contains("status 503"),
        "{reason}"
    );
    let h = dash.render();
    assert!(row(&h, "d5").contains(r#"data-state="stale""#));
    assert!(h.contains("banner-panic") && h.contains("banner-unavailable"));
    assert!(h.contains("below panic_threshold_percent (60%)"));
}
