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
//!            all unhealthy ⇒ bypass) → cooldown filter → balancer ─► inner service
//!            (with SelectedDeployment attached) ◄─ ResponseFuture records the outcome
//! ```
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

pub mod balance;
pub mod config;
mod cooldown;
mod deployment;
pub mod endpoints;
mod error;
pub mod health;
pub mod probe;
mod provider;
pub mod retry;
pub mod routing;
mod secret;
pub mod shared;
mod stats;
pub mod telemetry;

pub use config::{
    Config, ConfigBuilder, HealthCheckSettings, RedisSettings, RouterSettings, RoutingStrategy,
};
pub use cooldown::{CooldownPolicy, Outcome};
pub use deployment::{
    Deployment, DeploymentBuilder, DeploymentId, DeploymentParams, Mode, ModelGroup, ModelInfo,
    ParamValue,
};
#[cfg(feature = "axum")]
pub use endpoints::health_router;
pub use endpoints::{HealthEndpoints, HealthReport, ServiceCheck};
pub use error::{
    BoxError, ConfigError, ConfigErrorKind, MissingRoute, NoDeploymentAvailable, UnknownRoute,
};
pub use health::{HealthRecord, HealthSnapshot, HealthState};
pub use probe::{
    HttpProber, ProbeDefaults, ProbeHandle, ProbeLoop, ProbeLoopBuilder, ProbeOutcome, ProbeReport,
    ProbeTarget, Prober, RoundReport,
};
pub use retry::{RetryLayer, RetryPolicy};
pub use routing::{
    ExcludeDeployments, FromExtension, FromHeader, HealthRouting, HealthRoutingLayer, Pick,
    PickError, Picker, ResponseBody, ResponseFuture, RouteExtractor, RouteFn, SelectedDeployment,
    TriedDeployments, route_fn,
};
pub use secret::{REDACTED, Scrubber, Secret, looks_secret};
#[cfg(feature = "redis")]
pub use shared::RedisStore;
pub use shared::{HealthStore, MemoryStore, SharedMode, SharedStatus, SharingSettings};
