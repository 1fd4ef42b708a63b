//! The tower contract: readiness propagates, the types are Clone + Send + Sync + Debug,
//! and the layer works inside axum (Router::oneshot and one real socket).

use std::fmt::Debug;

use crate::support::{config, request};
use axum::{
    Extension, Router,
    error_handling::HandleErrorLayer,
    http::{HeaderName, StatusCode},
    response::IntoResponse,
    routing::post,
};
use http_body_util::BodyExt;
use tokio_test::{assert_pending, assert_ready_ok};
use tower::{ServiceBuilder, ServiceExt};
use tower_health_routing::{
    BoxError, HealthRouting, HealthRoutingLayer, NoDeploymentAvailable, SelectedDeployment,
    UnknownRoute, routing::FromHeader,
};

#[test]
fn layer_and_service_are_clone_send_sync_debug() {
    fn check<T: Clone + Send + Sync + Debug + 'static>() {}
    #[derive(Clone, Debug)]
    struct Inner;
    check::<HealthRoutingLayer>();
    check::<HealthRouting<Inner>>();
    check::<HealthRouting<Inner, FromHeader>>();
}

#[tokio::test]
async fn readiness_propagates_from_the_inner_service() {
    let layer = HealthRoutingLayer::new(config("m", 2).build().unwrap());
    let (mut svc, mut handle) =
        tower_test::mock::spawn_layer::<http::Request<String>, http::Response<String>, _>(layer);

    handle.allow(0);
    assert_pending!(svc.poll_ready());
    handle.allow(1);
    assert_ready_ok!(svc.poll_ready());

    let fut = svc.call(request("m"));
    let (req, send) = handle.next_request().await.expect("forwarded");
    let chosen = req
        .extensions()
        .get::<SelectedDeployment>()
        .expect("deployment attached");
    assert!(["d0", "d1"].contains(&chosen.id().as_str()));
    send.send_response(http::Response::new("ok".to_owned()));
    let resp = fut.await.unwrap();
    assert_eq!(resp.into_body().into_inner(), "ok");
}

#[tokio::test]
async fn inner_readiness_errors_pass_through() {
    let layer = HealthRoutingLayer::new(config("m", 1).build().unwrap());
    let (mut svc, mut handle) =
        tower_test::mock::spawn_layer::<http::Request<String>, http::Response<String>, _>(layer);
    handle.send_error(std::io::Error::other("inner not ready"));
    let err = svc.poll_ready().map(|r| r.unwrap_err());
    assert!(format!("{err:?}").contains("inner not ready"));
}

async fn to_response(err: BoxError) -> axum::response::Response {
    if let Some(e) = err.downcast_ref::<NoDeploymentAvailable>() {
        let secs = e.retry_after().as_secs().max(1).to_string();
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", secs)],
            e.to_string(),
        )
            .into_response();
    }
    if err.is::<UnknownRoute>() {
        return (StatusCode::BAD_REQUEST, err.to_string()).into_response();
    }
    (StatusCode::BAD_GATEWAY, "upstream failed").into_response()
}

fn app() -> Router {
    let routing = HealthRoutingLayer::new(config("gpt-4o", 3).build().unwrap())
        .with_extractor(FromHeader::new(HeaderName::from_static("x-model")));
    Router::new()
        .route(
            "/v1/chat/completions",
            post(
                |Extension(chosen): Extension<SelectedDeployment>| async move {
                    chosen.id().to_string()
                },
            ),
        )
        .route_layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(to_response))
                .layer(routing),
        )
        .route("/other", axum::routing::get(|| async { "not routed" }))
}

fn chat(model: &str) -> http::Request<axum::body::Body> {
    http::Request::post("/v1/chat/completions")
        .header("x-model", model)
        .body(axum::body::Body::empty())
        .unwrap()
}

#[tokio::test]
async fn axum_routes_through_the_layer() {
    let resp = app().oneshot(chat("gpt-4o")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert!(
        ["d0", "d1", "d2"].contains(&std::str::from_utf8(&body).unwrap()),
        "{body:?}"
    );

    let resp = app().oneshot(chat("unknown")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);

    let resp = app()
        .oneshot(
            http::Request::get("/other")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "other routes are untouched");
}

#[tokio::test]
async fn axum_over_a_real_socket() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app()).await });
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    for _ in 0..5 {
        let req = http::Request::post("/v1/chat/completions")
            .header("host", addr.to_string())
            .header("x-model", "gpt-4o")
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        let resp = send.send_request(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert!(body.starts_with(b"d"));
    }
    server.abort();
}
