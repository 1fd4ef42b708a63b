//! The [`Prober`] trait: one deployment in, one [`ProbeOutcome`] out.
//!
//! Timeouts and the concurrency bound belong to the caller (the
//! [`ProbeLoop`](super::ProbeLoop)), so a prober is only about *how* to ask: plug your own
//! for upstreams the HTTP prober cannot reach (Bedrock, Vertex AI, a gRPC backend, ...).

use std::{fmt, future::Future, pin::Pin, sync::Arc};

use super::outcome::ProbeOutcome;
use crate::{config::Config, deployment::Deployment, error::ConfigError};

/// The future a [`Prober`] returns.
pub type ProbeFuture<'a> = Pin<Box<dyn Future<Output = ProbeOutcome> + Send + 'a>>;

/// Probes one deployment. Object-safe, so the loop holds an `Arc<dyn Prober>`.
///
/// The loop bounds every probe with its timeout, runs at most `health_check_concurrency`
/// at once, and scrubs secrets out of the reason afterwards; a prober only asks.
///
/// ```
/// use std::{collections::HashSet, sync::Arc};
/// use tower_health_routing::{Deployment, probe::{ProbeFuture, ProbeOutcome, Prober}};
///
/// /// Reports deployments under maintenance as unhealthy, the rest as healthy.
/// struct Maintenance(HashSet<String>);
///
/// impl Prober for Maintenance {
///     fn probe(&self, deployment: Arc<Deployment>) -> ProbeFuture<'_> {
///         Box::pin(async move {
///             if self.0.contains(deployment.id().as_str()) {
///                 ProbeOutcome::unhealthy("under maintenance")
///             } else {
///                 ProbeOutcome::healthy()
///             }
///         })
///     }
/// }
/// ```
pub trait Prober: Send + Sync + 'static {
    /// Probes `deployment` once.
    fn probe(&self, deployment: Arc<Deployment>) -> ProbeFuture<'_>;

    /// Rejects, when the loop is built, a config this prober cannot probe (the default
    /// accepts everything). Errors name the field at fault, e.g.
    /// `model_list[3].litellm_params.api_base`.
    fn check_config(&self, config: &Config) -> Result<(), ConfigError> {
        let _ = config;
        Ok(())
    }

    /// Why this prober cannot probe `deployment`, if it cannot (the default: it can).
    /// Asked once per deployment when the loop is built: a deployment with a reason
    /// becomes [`Unsupported`](crate::health::Unsupported) (never probed, listed under
    /// `unsupported_endpoints`); start-up goes on. The reason must be secret-free.
    fn unsupported(&self, deployment: &Deployment) -> Option<String> {
        let _ = deployment;
        None
    }

    /// The cheap tier of a tiered health check (`health_check_billed_every` above 1, or a
    /// probe budget): a check of `deployment` that spends no tokens, such as a model list
    /// or a TCP/TLS connect. Its outcome is read as [`probe`](Self::probe)'s is. `None`
    /// (the default): this prober has no cheap tier for it, and each of its rounds is billed.
    fn probe_cheap(&self, deployment: Arc<Deployment>) -> Option<ProbeFuture<'_>> {
        let _ = deployment;
        None
    }
}

impl<P: Prober + ?Sized> Prober for Arc<P> {
    fn probe(&self, deployment: Arc<Deployment>) -> ProbeFuture<'_> {
        (**self).probe(deployment)
    }

    fn check_config(&self, config: &Config) -> Result<(), ConfigError> {
        (**self).check_config(config)
    }

    fn unsupported(&self, deployment: &Deployment) -> Option<String> {
        (**self).unsupported(deployment)
    }

    fn probe_cheap(&self, deployment: Arc<Deployment>) -> Option<ProbeFuture<'_>> {
        (**self).probe_cheap(deployment)
    }
}

/// A [`Prober`] from an async closure; see [`prober_fn`].
#[derive(Clone)]
pub struct ProberFn<F>(F);

impl<F> fmt::Debug for ProberFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ProberFn")
    }
}

/// Makes a [`Prober`] of an async closure.
///
/// ```
/// use tower_health_routing::probe::{ProbeOutcome, prober_fn};
/// let p = prober_fn(|d| async move {
///     if d.route() == "down" { ProbeOutcome::unhealthy("scheduled maintenance") } else { ProbeOutcome::healthy() }
/// });
/// # let _ = p;
/// ```
pub fn prober_fn<F, Fut>(f: F) -> ProberFn<F>
where
    F: Fn(Arc<Deployment>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ProbeOutcome> + Send + 'static,
{
    ProberFn(f)
}

impl<F, Fut> Prober for ProberFn<F>
where
    F: Fn(Arc<Deployment>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ProbeOutcome> + Send + 'static,
{
    fn probe(&self, deployment: Arc<Deployment>) -> ProbeFuture<'_> {
        Box::pin((self.0)(deployment))
    }
}
