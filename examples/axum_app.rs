//! Run with: `cargo run --example axum_app`
//!
//! How an axum user meets the layer: one route (`POST /v1/chat/completions`) is routed across
//! deployments; the app's other routes (`/`, `/version`) are untouched; the health endpoints are
//! merged in beside them. The example serves on a free local port, calls itself,
//! prints what it got, and exits.

use std::time::Duration;

use axum::{
    Extension, Json, Router,
    error_handling::HandleErrorLayer,
    extract::Request,
    http::StatusCode,
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde_json::{Value, json};
use tower::ServiceBuilder;
use tower_health_routing::{
    BoxError, Config, Deployment, HealthEndpoints, HealthRoutingLayer, ModelGroup,
    NoDeploymentAvailable, ProbeLoop, SelectedDeployment, UnknownRoute,
};

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    // Two deployments of one route. (Real ones would be upstream URLs; this example's handler
    // answers itself instead of forwarding, to stay short.)
    let cfg = Config::builder()
        .deployment(
            Deployment::builder("gpt-4o", "openai/gpt-4o")
                .id("east")
                .api_base("http://10.0.0.1/v1")
                .build(),
        )
        .deployment(
            Deployment::builder("gpt-4o", "openai/gpt-4o")
                .id("west")
                .api_base("http://10.0.0.2/v1")
                .build(),
        )
        .build()?;
    let routing = HealthRoutingLayer::new(cfg);
    let state = routing.state().clone();
    let endpoints = HealthEndpoints::new(state.clone(), ProbeLoop::new(&state)?);

    // The routed handler: the layer has chosen a deployment and attached it.
    async fn chat(Extension(chosen): Extension<SelectedDeployment>) -> Json<Value> {
        Json(json!({"served_by": chosen.id().as_str(), "upstream": chosen.params().api_base}))
    }

    let app = Router::new()
        .route("/v1/chat/completions", post(chat))
        // `route_layer` applies to the routes above only. Order (outside in): set the route
        // from the `x-model` header, turn routing errors into responses, route. (axum's
        // middleware wants an infallible inner service, hence HandleErrorLayer inside it.)
        .route_layer(
            ServiceBuilder::new()
                .layer(middleware::from_fn(model_from_header))
                .layer(HandleErrorLayer::new(routing_error))
                .layer(routing),
        )
        // Untouched routes.
        .route("/", get(|| async { "hello" }))
        .route("/version", get(|| async { env!("CARGO_PKG_VERSION") }))
        // The health endpoints (a plain tower Service; `health_router` with the `axum` feature).
        .route_service("/health", endpoints.clone())
        .route_service("/health/{*rest}", endpoints);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    // Call ourselves a few times.
    let client = reqwest_like::Client::new();
    for model in ["gpt-4o", "gpt-4o", "no-such-model"] {
        let (status, body) = client.post(addr, "/v1/chat/completions", model).await?;
        println!("POST /v1/chat/completions (x-model: {model}) -> {status} {body}");
    }
    let (status, body) = client.get(addr, "/version").await?;
    println!("GET /version -> {status} {body}");
    let (status, body) = client.get(addr, "/health/liveliness").await?;
    println!("GET /health/liveliness -> {status} {body}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    server.abort();
    Ok(())
}

/// Sets the route from the `x-model` header (a real gateway reads `"model"` from the JSON body).
async fn model_from_header(mut req: Request, next: Next) -> Response {
    if let Some(model) = req.headers().get("x-model").and_then(|v| v.to_str().ok()) {
        let group = ModelGroup::new(model);
        req.extensions_mut().insert(group);
    }
    next.run(req).await
}

/// Routing errors as HTTP answers: the layer is fallible, axum needs infallible services.
async fn routing_error(err: BoxError) -> Response {
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

/// A few lines of hyper client, so the example needs nothing else.
mod reqwest_like {
    use std::net::SocketAddr;

    use bytes::Bytes;
    use http_body_util::{BodyExt, Empty};
    use hyper_util::{client::legacy::Client as Hyper, rt::TokioExecutor};
    use tower_health_routing::BoxError;

    pub(crate) struct Client(
        Hyper<hyper_util::client::legacy::connect::HttpConnector, Empty<Bytes>>,
    );

    impl Client {
        pub(crate) fn new() -> Self {
            Self(Hyper::builder(TokioExecutor::new()).build_http())
        }

        async fn send(&self, req: http::Request<Empty<Bytes>>) -> Result<(u16, String), BoxError> {
            let resp = self.0.request(req).await?;
            let status = resp.status().as_u16();
            let body = resp.into_body().collect().await?.to_bytes();
            Ok((status, String::from_utf8_lossy(&body).into_owned()))
        }

        pub(crate) async fn post(
            &self,
            addr: SocketAddr,
            path: &str,
            model: &str,
        ) -> Result<(u16, String), BoxError> {
            let req = http::Request::post(format!("http://{addr}{path}"))
                .header("x-model", model)
                .body(Empty::new())?;
            self.send(req).await
        }

        pub(crate) async fn get(
            &self,
            addr: SocketAddr,
            path: &str,
        ) -> Result<(u16, String), BoxError> {
            self.send(http::Request::get(format!("http://{addr}{path}")).body(Empty::new())?)
                .await
        }
    }
}
