//! `FallbackLayer`: LiteLLM's `fallbacks`, `default_fallbacks`, `context_window_fallbacks`
//! and `content_policy_fallbacks`, through the stack (fallback → retry → routing) with a
//! scripted inner service (paused time), and once over real sockets with a hyper forwarder.

use std::convert::Infallible;

use crate::support::{
    Upstreams, request,
    upstream::{Reply, Upstream},
};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tower::{ServiceBuilder, ServiceExt};
use tower_health_routing::{
    BoxError, Config, ConfigBuilder, Deployment, HealthRoutingLayer, SelectedDeployment,
    config::RoutingStrategy,
    retry::RetryLayer,
    routing::{FallbackLayer, ServedBy},
};

/// Groups `a`, `b`, `c`, `big`, `safe` with one deployment each: d0..d4.
fn groups() -> ConfigBuilder {
    let ds = ["a", "b", "c", "big", "safe"]
        .iter()
        .enumerate()
        .map(|(i, g)| {
            Deployment::builder(*g, "openai/m")
                .id(format!("d{i}"))
                .build()
        });
    Config::builder().deployments(ds).allowed_fails(1_000)
}

async fn body_text<B: http_body::Body>(b: B) -> String
where
    B::Error: std::fmt::Debug,
{
    String::from_utf8(b.collect().await.unwrap().to_bytes().to_vec()).unwrap()
}

macro_rules! stack {
    ($cfg:expr, $inner:expr) => {{
        let cfg = $cfg;
        ServiceBuilder::new()
            .layer(FallbackLayer::new(&cfg))
            .layer(RetryLayer::new(&cfg))
            .layer(
                HealthRoutingLayer::new(cfg)
                    .with_seed(1)
                    .with_response_extension(),
            )
            .service($inner)
    }};
}

#[tokio::test(start_paused = true)]
async fn a_failing_group_falls_back_in_order() {
    let up = Upstreams::new();
    up.set_status(0, 500);
    up.set_status(1, 503);
    let svc = stack!(
        groups()
            .fallbacks("a", ["b", "c"])
            .num_retries(1)
            .build()
            .unwrap(),
        up.service()
    );
    let resp = svc.clone().oneshot(request("a")).await.unwrap();
    assert_eq!(resp.status(), 200);
    let served = resp.body().served_by().unwrap().clone();
    assert_eq!(
        (served.group().as_str(), served.attempted_fallbacks()),
        ("c", 2)
    );
    assert_eq!(body_text(resp.into_body()).await, "d2");
    assert_eq!((up.hits(0), up.hits(1), up.hits(2)), (1, 1, 1));
    // A group that answers is not fallen back from, and says so.
    let resp = svc.oneshot(request("c")).await.unwrap();
    let served = resp.body().served_by().unwrap();
    assert!(!served.is_fallback() && served.group().as_str() == "c");
}

/// The fallback layer passes a request through when its group has no fallback (or it has
/// no group): the answer is the group's own, named as served by it, and a routing error is
/// the routing layer's own.
#[tokio::test(start_paused = true)]
async fn a_group_without_fallbacks_is_passed_through_and_named() {
    let up = Upstreams::new();
    up.set_status(1, 500);
    let svc = stack!(
        groups().fallbacks("a", ["c"]).build().unwrap(),
        up.service()
    );
    let resp = svc.clone().oneshot(request("b")).await.unwrap();
    assert_eq!(resp.status(), 500);
    let served = resp.body().served_by().unwrap().clone();
    assert_eq!(
        (served.group().as_str(), served.attempted_fallbacks()),
        ("b", 0)
    );
    assert_eq!(body_text(resp.into_body()).await, "d1");
    assert_eq!(up.hits(2), 0, "no fallback group was tried");
    // No group at all: the routing layer's error, untouched.
    let err = svc.oneshot(Request::new(String::new())).await.unwrap_err();
    assert!(err.is::<tower_health_routing::MissingRoute>(), "{err}");
}

#[tokio::test(start_paused = true)]
async fn every_group_failing_returns_the_last_failure() {
    let up = Upstreams::new();
    up.set_status(0, 500);
    up.set_status(1, 502);
    let svc = stack!(
        groups().fallbacks("a", ["b"]).build().unwrap(),
        up.service()
    );
    let resp = svc.oneshot(request("a")).await.unwrap();
    assert_eq!(resp.status(), 502);
    assert_eq!(resp.body().served_by().unwrap().group().as_str(), "b");
}

#[tokio::test(start_paused = true)]
async fn no_deployment_available_falls_back() {
    // Group a's only deployment is at its rpm for this minute.
    let ds = vec![
        Deployment::builder("a", "openai/m").id("d0").rpm(1).build(),
        Deployment::builder("b", "openai/m").id("d1").build(),
    ];
    let cfg = Config::builder()
        .deployments(ds)
        .routing_strategy(RoutingStrategy::UsageBased)
        .fallbacks("a", ["b"])
        .build()
        .unwrap();
    let up = Upstreams::new();
    let svc = stack!(cfg, up.service());
    let first = svc.clone().oneshot(request("a")).await.unwrap();
    assert_eq!(first.body().served_by().unwrap().group().as_str(), "a");
    let second = svc.oneshot(request("a")).await.unwrap();
    assert_eq!(second.body().served_by().unwrap().group().as_str(), "b");
    assert_eq!((up.hits(0), up.hits(1)), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn default_fallbacks_serve_groups_without_their_own() {
    let up = Upstreams::new();
    up.set_status(0, 500);
    let svc = stack!(
        groups().default_fallbacks(["safe"]).build().unwrap(),
        up.service()
    );
    let resp = svc.oneshot(request("a")).await.unwrap();
    assert_eq!(resp.body().served_by().unwrap().group().as_str(), "safe");
}

/// d0 answers 400 with the body held in `REJECTION`; the others answer 200 with their id.
fn rejecting(
    text: &'static str,
) -> impl tower::Service<
    Request<String>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<Full<Bytes>>, Infallible>> + Send,
> + Clone {
    tower::service_fn(move |req: Request<String>| async move {
        let id = req
            .extensions()
            .get::<SelectedDeployment>()
            .unwrap()
            .id()
            .to_string();
        let (status, body) = if id == "d0" {
            (400, text.to_owned())
        } else {
            (200, id)
        };
        let mut resp = Response::new(Full::new(Bytes::from(body)));
        *resp.status_mut() = StatusCode::from_u16(status).unwrap();
        Ok(resp)
    })
}

const TOO_LONG: &str = r#"{"error":{"message":"This model's maximum context length is 8192 tokens.","code":"context_length_exceeded"}}"#;
const POLICY: &str = r#"{"error":{"message":"rejected","code":"content_policy_violation"}}"#;
const BAD: &str = r#"{"error":{"message":"messages: field required"}}"#;

fn specific() -> Config {
    groups()
        .fallbacks("a", ["b"])
        .context_window_fallbacks("a", ["big"])
        .content_policy_fallbacks("a", ["safe"])
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn context_window_and_content_policy_rejections_take_their_own_lists() {
    for (text, to) in [(TOO_LONG, "big"), (POLICY, "safe")] {
        let svc = stack!(specific(), rejecting(text));
        let resp = svc.oneshot(request("a")).await.unwrap();
        assert_eq!(resp.status(), 200, "{text}");
        assert_eq!(resp.body().served_by().unwrap().group().as_str(), to);
    }
    // Without a context-window list, the general one serves.
    let cfg = groups().fallbacks("a", ["b"]).build().unwrap();
    let resp = stack!(cfg, rejecting(TOO_LONG))
        .oneshot(request("a"))
        .await
        .unwrap();
    assert_eq!(resp.body().served_by().unwrap().group().as_str(), "b");
}

#[tokio::test(start_paused = true)]
async fn a_plain_bad_request_is_returned_as_it_was() {
    let svc = stack!(specific(), rejecting(BAD));
    let resp = svc.oneshot(request("a")).await.unwrap();
    assert_eq!(resp.status(), 400);
    assert!(!resp.body().served_by().unwrap().is_fallback());
    assert_eq!(
        body_text(resp.into_body()).await,
        BAD,
        "the body read to classify it is passed on"
    );
}

/// By default the group that served is named by the response body only (no extension map
/// for it), for a fallen-back answer, a passed-through one and a buffered rejection alike;
/// the body below still names the deployment (with no routing extension either).
#[tokio::test(start_paused = true)]
async fn the_body_names_who_served_and_the_extension_is_opt_in() {
    let up = Upstreams::new();
    up.set_status(0, 500);
    let cfg = groups().fallbacks("a", ["b"]).build().unwrap();
    let layer = FallbackLayer::new(&cfg);
    let svc = ServiceBuilder::new()
        .layer(layer.clone())
        .layer(HealthRoutingLayer::new(cfg.clone()).with_seed(1))
        .service(up.service());
    // Fallen back from a to b.
    let resp = svc.clone().oneshot(request("a")).await.unwrap();
    assert_eq!(resp.status(), 200);
    let served = resp.body().served_by().unwrap();
    assert_eq!(
        (served.group().as_str(), served.attempted_fallbacks()),
        ("b", 1)
    );
    assert!(resp.extensions().get::<ServedBy>().is_none());
    assert!(resp.extensions().is_empty(), "no extension map at all");
    let chosen = resp.body().get_ref().selected_deployment().unwrap();
    assert_eq!(chosen.id().as_str(), "d1");
    assert!(!resp.body().is_buffered());
    // Passed through (c has no fallbacks).
    let resp = svc.clone().oneshot(request("c")).await.unwrap();
    let served = resp.body().served_by().unwrap();
    assert_eq!(
        (served.group().as_str(), served.attempted_fallbacks()),
        ("c", 0)
    );
    assert!(resp.extensions().get::<ServedBy>().is_none());
    assert_eq!(
        resp.body()
            .get_ref()
            .selected_deployment()
            .unwrap()
            .id()
            .as_str(),
        "d2"
    );
    assert_eq!(body_text(resp.into_body()).await, "d2");

    // Opted in: the same, as an extension too.
    let svc = ServiceBuilder::new()
        .layer(layer.with_response_extension())
        .layer(HealthRoutingLayer::new(cfg).with_seed(1))
        .service(up.service());
    for (group, want) in [("a", ("b", 1)), ("c", ("c", 0))] {
        let resp = svc.clone().oneshot(request(group)).await.unwrap();
        let ext = resp.extensions().get::<ServedBy>().unwrap();
        assert_eq!(
            (ext.group().as_str(), ext.attempted_fallbacks()),
            want,
            "{group}"
        );
        assert_eq!(Some(ext), resp.body().served_by(), "{group}");
    }
}

/// A rejection the layer read to classify still names its deployment through the body
/// (the drained inner body is kept), and the bytes read are what the body yields.
#[tokio::test(start_paused = true)]
async fn a_buffered_rejection_still_names_its_deployment() {
    let cfg = specific();
    let svc = ServiceBuilder::new()
        .layer(FallbackLayer::new(&cfg))
        .layer(HealthRoutingLayer::new(cfg).with_seed(1))
        .service(rejecting(BAD));
    let resp = svc.oneshot(request("a")).await.unwrap();
    assert_eq!(resp.status(), 400);
    let body = resp.into_body();
    assert!(body.is_buffered());
    let served = body.served_by().unwrap();
    assert_eq!(
        (served.group().as_str(), served.attempted_fallbacks()),
        ("a", 0)
    );
    assert_eq!(
        body.get_ref().selected_deployment().unwrap().id().as_str(),
        "d0"
    );
    assert_eq!(body_text(body).await, BAD);
}

// === over real sockets ===

type Client = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    Full<Bytes>,
>;

/// A minimal forwarder: POSTs the body to the chosen deployment's `api_base`.
fn forwarder(
    client: Client,
) -> impl tower::Service<
    Request<String>,
    Response = Response<hyper::body::Incoming>,
    Error = BoxError,
    Future = impl Future<Output = Result<Response<hyper::body::Incoming>, BoxError>> + Send,
> + Clone {
    tower::service_fn(move |req: Request<String>| {
        let client = client.clone();
        async move {
            let chosen = req.extensions().get::<SelectedDeployment>().unwrap();
            let base = chosen.params().api_base.clone().unwrap();
            let out = Request::post(format!("{base}/chat/completions"))
                .body(Full::new(Bytes::from(req.into_body())))?;
            Ok::<_, BoxError>(client.request(out).await?)
        }
    })
}

#[tokio::test]
async fn over_http_a_failing_group_falls_back_after_its_retries() {
    let down1 = Upstream::start(|_| Reply::status(500, "{\"error\":\"down\"}"));
    let down2 = Upstream::start(|_| Reply::status(503, "{\"error\":\"down\"}"));
    let good = Upstream::start(|_| Reply::status(200, "{\"ok\":true}"));
    let cfg = Config::builder()
        .deployment(
            Deployment::builder("a", "openai/m")
                .id("a1")
                .api_base(down1.v1())
                .build(),
        )
        .deployment(
            Deployment::builder("a", "openai/m")
                .id("a2")
                .api_base(down2.v1())
                .build(),
        )
        .deployment(
            Deployment::builder("b", "openai/m")
                .id("b1")
                .api_base(good.v1())
                .build(),
        )
        .fallbacks("a", ["b"])
        .num_retries(1)
        .allowed_fails(1_000)
        .build()
        .unwrap();
    let client: Client =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build(hyper_util::client::legacy::connect::HttpConnector::new());
    let svc = stack!(cfg, forwarder(client));
    let resp = svc.oneshot(request("a")).await.unwrap();
    assert_eq!(resp.status(), 200);
    let served = resp.body().served_by().unwrap().clone();
    assert_eq!(
        (served.group().as_str(), served.attempted_fallbacks()),
        ("b", 1)
    );
    let picked = resp
        .extensions()
        .get::<SelectedDeployment>()
        .unwrap()
        .id()
        .to_string();
    assert_eq!(picked, "b1");
    assert_eq!(body_text(resp.into_body()).await, "{\"ok\":true}");
    // Both of a's deployments were tried (the retry) before the fallback.
    assert_eq!(
        (
            down1.requests().len(),
            down2.requests().len(),
            good.requests().len()
        ),
        (1, 1, 1)
    );
}
