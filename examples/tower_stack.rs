//! Run with: `cargo run --example tower_stack`
//!
//! The routing layer in a plain tower stack, no web framework: three deployments of one
//! route, a "forwarder" that only reports where it would send each request, and what
//! health results and cooldowns do to the traffic.

use std::{collections::BTreeMap, convert::Infallible, time::Duration};

use http::{Request, Response, StatusCode};
use tokio::time::Instant;
use tower::{ServiceBuilder, ServiceExt, util::BoxCloneService};
use tower_health_routing::{
    BoxError, Config, Deployment, DeploymentId, HealthRoutingLayer, ModelGroup,
    NoDeploymentAvailable, SelectedDeployment, health::HealthRecord, routing::ResponseBody,
};

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    // 1. Three deployments serve the route "gpt-4o"; route on health, cool down after any failure.
    let cfg = Config::builder()
        .deployments((1..=3).map(|i| {
            Deployment::builder("gpt-4o", "openai/gpt-4o")
                .id(format!("east-{i}"))
                .api_base(format!("http://10.0.0.{i}:8000/v1"))
                .build()
        }))
        .enable_health_check_routing(true)
        .allowed_fails(0)
        .cooldown_time(Duration::from_secs(5))
        .build()?;
    let routing = HealthRoutingLayer::new(cfg);
    let state = routing.state().clone();

    // 2. The inner service gets the chosen deployment as a request extension. A real
    //    gateway forwards the request there; this one answers 500 for east-3 to show cooldown.
    let forwarder = tower::service_fn(|req: Request<()>| async move {
        let chosen = req
            .extensions()
            .get::<SelectedDeployment>()
            .expect("set by the layer");
        let status = if chosen.id().as_str() == "east-3" {
            StatusCode::INTERNAL_SERVER_ERROR
        } else {
            StatusCode::OK
        };
        Ok::<_, Infallible>(
            Response::builder()
                .status(status)
                .body(chosen.id().to_string())
                .unwrap(),
        )
    });
    let svc: Svc = ServiceBuilder::new()
        .boxed_clone()
        .layer(routing)
        .service(forwarder);

    println!(
        "all unknown, east-3 failing requests:   {:?}",
        send(&svc, 30).await
    );
    println!(
        "east-3 now cooling down for {:?}",
        state.cooldown_remaining("east-3").unwrap_or_default()
    );

    // 3. A health round (normally the background probe loop) marks east-1 unhealthy.
    let now = Instant::now();
    state.record([
        (
            DeploymentId::from("east-1"),
            HealthRecord::unhealthy(now, "status 503", Some(503)),
        ),
        (DeploymentId::from("east-2"), HealthRecord::healthy(now)),
    ]);
    println!(
        "east-1 unhealthy, east-3 cooling down:  {:?}",
        send(&svc, 30).await
    );

    // 4. Every deployment marked unhealthy: the filter is bypassed rather than failing everything.
    state.record([
        (
            DeploymentId::from("east-2"),
            HealthRecord::unhealthy(now, "timeout", Some(408)),
        ),
        (
            DeploymentId::from("east-3"),
            HealthRecord::unhealthy(now, "timeout", Some(408)),
        ),
    ]);
    println!(
        "all unhealthy (bypass), east-3 cooling: {:?}",
        send(&svc, 30).await
    );
    Ok(())
}

type Svc = BoxCloneService<Request<()>, Response<ResponseBody<String>>, BoxError>;

/// Sends `n` requests for "gpt-4o" and counts where they went.
async fn send(svc: &Svc, n: usize) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for _ in 0..n {
        let mut req = Request::new(());
        req.extensions_mut().insert(ModelGroup::new("gpt-4o"));
        let label = match svc.clone().oneshot(req).await {
            Ok(resp) => format!(
                "{} ({})",
                resp.status().as_u16(),
                resp.into_body().into_inner()
            ),
            // Every deployment cooling down: a gateway answers 429 with Retry-After.
            Err(e) if e.is::<NoDeploymentAvailable>() => "429: no deployment available".to_owned(),
            Err(e) => format!("error: {e}"),
        };
        *seen.entry(label).or_default() += 1;
    }
    seen
}
