//! # tower-health-routing
//!
//! Health-check-driven routing across upstream deployments, as a tower [`Layer`](tower_layer::Layer):
//! what LiteLLM's proxy calls "Health Checks" and "Health Check Driven Routing", embeddable
//! in any tower or axum service.
//!
//! ```text
//! config.yaml | builder ─► Config (validated once) ─► HealthState = ArcSwap<HealthSnapshot>
//!                                                        ▲ whole snapshots       │ one load() per request
//!                       background probe loop ───────────┘                       ▼
//! request ─► HealthRouting::call ─► route's deployments → health filter (stale = unknown;
//!            all unhealthy ⇒ bypass, or the panic threshold) → cooldown + ejection filter
//!            → balancer ─► inner service
//!            (with SelectedDeployment attached) ◄─ ResponseFuture records the outcome
//! ```
//!
//! # Module graph
//!
//! One way (`A ─► B`: A uses B, and everything B uses); `tests/architecture.rs` reads the
//! `crate::` paths of `src/` and keeps it so:
//!
//! ```text
//! endpoints ─► shared ─► probe ─► provider
//!     └──────────┴─────────┴─────► health ◄── balance ◄── routing ◄── retry
//!                                                         routing ─► cooldown, ejection
//! health ─► stats ─► cooldown, ejection ─► config ─► classify ─► error ─► deployment ─► secret
//!                                config ─► time
//! telemetry: a leaf anyone may call; it names only deployments
//! ```
//!
//! The request path (`routing`) reaches neither `probe`, `shared` nor `endpoints`.
//! `health` holds the published snapshot and per-deployment stats; what `shared` and
//! `cooldown` need of a state (the sharing status, the cooldown sink) hangs off hooks they
//! own, and the probe loop runs a driver that `shared` implements.
//!
//! # Features
//!
//! | feature | default | adds |
//! |---|---|---|
//! | `http-prober` | yes | [`probe::HttpProber`] over hyper; without it, give [`ProbeLoop`] your own [`probe::Prober`] |
//! | `rustls` | yes | HTTPS upstreams for the HTTP prober (implies `http-prober`) |
//! | `yaml` | yes | [`Config::from_yaml_str`] / [`Config::from_yaml_file`] (LiteLLM `config.yaml`) |
//! | `endpoints` | yes | LiteLLM's health endpoints (`HealthEndpoints`) |
//! | `metrics` | yes | metrics through the `metrics` facade ([`telemetry`]); without it they compile to nothing |
//! | `redis` | no | `shared::RedisStore` |
//! | `axum` | no | `health_router` (implies `endpoints`) |
//!
//! With `default-features = false` the crate is only the layer, the health state and the
//! probe loop (tower, tokio, http, arc-swap, rand, tracing, pin-project, serde).
//!
//! ```
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_health_routing::{Config, Deployment, HealthRoutingLayer, ModelGroup, SelectedDeployment};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tower_health_routing::BoxError> {
//! let cfg = Config::builder()
//!     .deployment(Deployment::builder("gpt-4o", "openai/gpt-4o").api_base("http://10.0.0.1/v1").build())
//!     .deployment(Deployment::builder("gpt-4o", "openai/gpt-4o").api_base("http://10.0.0.2/v1").build())
//!     .enable_health_check_routing(true)
//!     .build()?;
//! let layer = HealthRoutingLayer::new(cfg);
//! let svc = ServiceBuilder::new().layer(layer).service_fn(|req: http::Request<String>| async move {
//!     // The forwarder: send the request to the chosen deployment.
//!     let chosen = req.extensions().get::<SelectedDeployment>().unwrap();
//!     Ok::<_, std::convert::Infallible>(http::Response::new(chosen.params().api_base.clone().unwrap()))
//! });
//! let mut req = http::Request::new(String::new());
//! req.extensions_mut().insert(ModelGroup::new("gpt-4o"));
//! let resp = svc.oneshot(req).await?;
//! assert!(resp.into_body().into_inner().starts_with("http://10.0.0."));
//! # Ok(())
//! # }
//! ```

mod balance;
pub mod classify;
pub mod config;
mod cooldown;
pub mod deployment;
mod ejection;
#[cfg(feature = "endpoints")]
pub mod endpoints;
pub mod error;
pub mod health;
pub mod probe;
pub mod provider;
pub mod retry;
pub mod routing;
pub mod secret;
pub mod shared;
mod stats;
pub mod telemetry;
mod time;

pub use config::{Config, ConfigBuilder};
pub use deployment::{Deployment, DeploymentBuilder, DeploymentId, Mode, ModelGroup};
#[cfg(feature = "endpoints")]
pub use endpoints::HealthEndpoints;
#[cfg(feature = "axum")]
pub use endpoints::health_router;
pub use error::{
    BoxError, ConfigError, MissingRoute, NoDeploymentAvailable, StallGap, StreamStalled,
    UnknownRoute, UnsupportedRoute,
};
pub use health::HealthState;
pub use probe::{ProbeHandle, ProbeLoop};
pub use routing::{HealthRouting, HealthRoutingLayer, SelectedDeployment};
