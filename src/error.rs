//! Errors: small named types you can downcast from the routing service's
//! [`BoxError`], and [`ConfigError`], which always names the field at fault.
//!
//! The routing service's error type is [`BoxError`] (as in `tower::timeout`), so it can
//! carry both its own failures and the inner service's. Downcast to tell them apart:
//!
//! ```
//! use tower_health_routing::{BoxError, NoDeploymentAvailable};
//! fn status_for(err: &BoxError) -> u16 {
//!     if let Some(e) = err.downcast_ref::<NoDeploymentAvailable>() {
//!         // Every deployment of the route is cooling down: tell the client when to retry.
//!         let _retry_after_secs = e.retry_after().as_secs().max(1);
//!         429
//!     } else {
//!         502
//!     }
//! }
//! # let _ = status_for;
//! ```

use std::{fmt, sync::Arc, time::Duration};

/// An error and its sources, `: `-joined.
#[cfg(feature = "http-prober")]
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        out.push_str(": ");
        out.push_str(&s.to_string());
        src = s.source();
    }
    out
}

/// A type-erased error, as used by tower.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Every deployment of the route is cooling down (or was excluded), so none can take the request.
///
/// Turn it into `429 Too Many Requests` with a `Retry-After` of [`retry_after`](Self::retry_after).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoDeploymentAvailable {
    pub(crate) route: Arc<str>,
    pub(crate) retry_after: Duration,
}

impl NoDeploymentAvailable {
    /// The route (`model_name`) that had no deployment to offer.
    pub fn route(&self) -> &str {
        &self.route
    }

    /// How long until the first deployment of the route leaves its cooldown
    /// (zero when the deployments were excluded rather than cooling down).
    pub fn retry_after(&self) -> Duration {
        self.retry_after
    }
}

impl fmt::Display for NoDeploymentAvailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "no deployment available for route `{}`: every deployment is cooling down; first one back in {:.3}s",
            self.route,
            self.retry_after.as_secs_f64()
        )
    }
}

impl std::error::Error for NoDeploymentAvailable {}

/// Every deployment of the route is `unsupported` and unroutable (its provider cannot be
/// forwarded to; see [`HealthState::mark_unsupported`](crate::HealthState::mark_unsupported)):
/// no request for it can be served, now or later. The gateway answers `501 Not Implemented`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsupportedRoute {
    pub(crate) route: Arc<str>,
    pub(crate) reason: Arc<str>,
}

impl UnsupportedRoute {
    /// The route (`model_name`) asked for.
    pub fn route(&self) -> &str {
        &self.route
    }

    /// Why, naming each provider's reason (secret-free).
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl fmt::Display for UnsupportedRoute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

impl std::error::Error for UnsupportedRoute {}

/// The request named a route that no deployment serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownRoute {
    pub(crate) route: Arc<str>,
}

impl UnknownRoute {
    /// The route the request asked for.
    pub fn route(&self) -> &str {
        &self.route
    }
}

impl fmt::Display for UnknownRoute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown route `{}`: no deployment serves it", self.route)
    }
}

impl std::error::Error for UnknownRoute {}

/// The request carried no route: neither a [`ModelGroup`](crate::ModelGroup) extension nor
/// whatever the configured [`RouteExtractor`](crate::routing::RouteExtractor) looks for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MissingRoute(());

impl MissingRoute {
    pub(crate) fn new() -> Self {
        Self(())
    }
}

impl fmt::Display for MissingRoute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the request names no route (no ModelGroup extension and the route extractor found none)")
    }
}

impl std::error::Error for MissingRoute {}

/// Which wait of a stream ran out (see [`StreamStalled`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StallGap {
    /// No body frame came after the response head (time to first token).
    FirstFrame,
    /// No body frame came after the previous one.
    BetweenFrames,
}

/// A streaming response stalled: no body frame came within
/// `router_settings.stream_stall_timeout`. The routing layer's response body yields it as
/// its error (then ends), after counting the stall as a failure of the deployment (a
/// `Timeout`, through the classifier) for cooldown and outlier ejection.
///
/// Its message names the deployment's id and the wait, never a credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamStalled {
    pub(crate) deployment: crate::deployment::DeploymentId,
    pub(crate) gap: StallGap,
    pub(crate) timeout: Duration,
}

impl StreamStalled {
    /// The deployment whose stream stalled.
    pub fn deployment(&self) -> &crate::deployment::DeploymentId {
        &self.deployment
    }

    /// Which wait ran out.
    pub fn gap(&self) -> StallGap {
        self.gap
    }

    /// The configured `stream_stall_timeout`.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}

impl fmt::Display for StreamStalled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.gap {
            StallGap::FirstFrame => "no first chunk",
            StallGap::BetweenFrames => "no chunk after the previous one",
        };
        write!(
            f,
            "the stream of deployment `{}` stalled: {what} within {}s (stream_stall_timeout)",
            self.deployment.as_str(),
            self.timeout.as_secs_f64()
        )
    }
}

impl std::error::Error for StreamStalled {}

/// Invalid configuration. [`field`](Self::field) names the field at fault
/// (e.g. `model_list[2].litellm_params.model`), and the message says why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    field: String,
    kind: ConfigErrorKind,
    /// The values an unknown name could have been (listed in the message).
    known: &'static [&'static str],
}

/// Why a configuration was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigErrorKind {
    /// A required field is absent.
    Missing,
    /// A value is out of range or malformed; the string says how.
    Invalid(String),
    /// A value written `os.environ/NAME` names a variable that is not set.
    EnvVarUnset {
        /// The variable's name.
        var: String,
    },
    /// `routing_strategy` names a strategy this crate does not know.
    UnknownStrategy {
        /// The value given.
        value: String,
    },
    /// `model_info.mode` names a mode this crate does not know.
    UnknownMode {
        /// The value given.
        value: String,
    },
    /// Two deployments share an id but differ in their params.
    DuplicateId {
        /// The shared id.
        id: String,
    },
    /// The file could not be read.
    Io(String),
    /// The text is not valid YAML, or a value has the wrong type.
    Syntax(String),
}

impl ConfigError {
    pub(crate) fn new(field: impl Into<String>, kind: ConfigErrorKind) -> Self {
        let known = match kind {
            ConfigErrorKind::UnknownMode { .. } => crate::deployment::Mode::NAMES,
            _ => &[],
        };
        Self {
            field: field.into(),
            kind,
            known,
        }
    }

    /// Lists `names` as the known values in the message (for an unknown name the owner
    /// of the names checks, such as a routing strategy).
    pub(crate) fn with_known(mut self, names: &'static [&'static str]) -> Self {
        self.known = names;
        self
    }

    /// The same error with its kind replaced (e.g. scrubbed), keeping field and known names.
    #[cfg_attr(not(feature = "yaml"), allow(dead_code))]
    pub(crate) fn with_kind(mut self, kind: ConfigErrorKind) -> Self {
        self.kind = kind;
        self
    }

    pub(crate) fn invalid(field: impl Into<String>, why: impl Into<String>) -> Self {
        Self::new(field, ConfigErrorKind::Invalid(why.into()))
    }

    /// The path of the field at fault, e.g. `general_settings.health_check_interval`.
    /// Empty when the whole document is at fault (unreadable file, broken YAML).
    pub fn field(&self) -> &str {
        &self.field
    }

    /// Why the field was rejected.
    pub fn kind(&self) -> &ConfigErrorKind {
        &self.kind
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            f.write_str("invalid config: ")?;
        } else {
            write!(f, "invalid config field `{}`: ", self.field)?;
        }
        match &self.kind {
            ConfigErrorKind::Missing => f.write_str("missing"),
            ConfigErrorKind::Invalid(why) => f.write_str(why),
            ConfigErrorKind::EnvVarUnset { var } => {
                write!(
                    f,
                    "environment variable `{var}` is not set (value was `os.environ/{var}`)"
                )
            }
            ConfigErrorKind::UnknownStrategy { value } => write!(
                f,
                "unknown routing strategy `{value}`; known: {}",
                self.known.join(", ")
            ),
            ConfigErrorKind::UnknownMode { value } => write!(
                f,
                "unknown mode `{value}`; known: {}",
                self.known.join(", ")
            ),
            ConfigErrorKind::DuplicateId { id } => write!(
                f,
                "two deployments share the id `{id}` but have different params; give one of them another `model_info.id`"
            ),
            ConfigErrorKind::Io(why) => write!(f, "cannot read the file: {why}"),
            ConfigErrorKind::Syntax(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for ConfigError {}
