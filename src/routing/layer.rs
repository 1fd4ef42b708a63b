//! [`HealthRoutingLayer`]: builds [`HealthRouting`] services that share one health state.

use tower_layer::Layer;

use super::{FromExtension, HealthRouting, Picker};
use crate::{config::Config, error::ConfigError, health::HealthState};

/// Applies [`HealthRouting`] to a service. Every service it builds (and their clones)
/// shares one [`HealthState`]; get it with [`state`](Self::state) to feed the probe loop
/// and the health endpoints.
///
/// ```
/// use tower::ServiceBuilder;
/// use tower_health_routing::{Config, Deployment, HealthRoutingLayer};
/// # let forwarder = tower::service_fn(|_req: http::Request<String>| async {
/// #     Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
/// # });
/// let cfg = Config::builder()
///     .deployment(Deployment::builder("gpt-4o", "openai/gpt-4o").api_base("http://127.0.0.1:9/v1").build())
///     .build()?;
/// let svc = ServiceBuilder::new().layer(HealthRoutingLayer::new(cfg)).service(forwarder);
/// # let _ = svc;
/// # Ok::<(), tower_health_routing::ConfigError>(())
/// ```
#[derive(Clone, Debug)]
pub struct HealthRoutingLayer<E = FromExtension> {
    picker: Picker,
    extractor: E,
    respond_with_selected: bool,
}

impl HealthRoutingLayer {
    /// A layer over a new [`HealthState`] for `config` (assumed valid: it came from
    /// [`Config::builder`] or [`Config::from_yaml_file`]; see [`try_new`](Self::try_new)).
    ///
    /// Defaults: the config's strategy; the health filter when `enable_health_check_routing`
    /// is on; the route from the [`ModelGroup`](crate::ModelGroup) extension; a random seed.
    pub fn new(config: Config) -> Self {
        Self::from_state(HealthState::new(config))
    }

    /// Like [`new`](Self::new), validating `config` first.
    pub fn try_new(config: Config) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self::new(config))
    }

    /// A layer over an existing state (to share it with other layers or services).
    pub fn from_state(state: HealthState) -> Self {
        Self {
            picker: Picker::new(state),
            extractor: FromExtension,
            respond_with_selected: false,
        }
    }
}

impl<E> HealthRoutingLayer<E> {
    /// The shared health state.
    pub fn state(&self) -> &HealthState {
        self.picker.state()
    }

    /// Finds routes with `extractor` instead.
    pub fn with_extractor<E2>(self, extractor: E2) -> HealthRoutingLayer<E2> {
        HealthRoutingLayer {
            picker: self.picker,
            extractor,
            respond_with_selected: self.respond_with_selected,
        }
    }

    /// Also attaches the [`SelectedDeployment`](crate::SelectedDeployment) to each
    /// response as an extension (the request always carries it), for code that reads it
    /// from `Response::extensions` (a `map_response` after other layers, a retry policy).
    ///
    /// Off by default (before 0.2 it was on): it costs a response with no extension map yet three small
    /// allocations (the map and the entry), the layer's only ones besides the request's
    /// extension. The response's body tells the same for free:
    /// [`ResponseBody::selected_deployment`](crate::routing::ResponseBody::selected_deployment).
    pub fn with_response_extension(mut self) -> Self {
        self.respond_with_selected = true;
        self
    }

    /// Leaves the [`SelectedDeployment`](crate::SelectedDeployment) extension off the
    /// responses: the default (see [`with_response_extension`](Self::with_response_extension)).
    pub fn without_response_extension(mut self) -> Self {
        self.respond_with_selected = false;
        self
    }

    /// Draws every random choice from `seed`, for reproducible tests.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.picker = self.picker.with_seed(seed);
        self
    }

    /// Uses `strategy` instead of the config's `routing_strategy`.
    pub fn with_strategy(mut self, strategy: crate::config::RoutingStrategy) -> Self {
        self.picker = self.picker.with_strategy(strategy);
        self
    }

    /// The picker the services use (each service gets its own clone).
    pub fn picker(&self) -> &Picker {
        &self.picker
    }
}

impl<S, E: Clone> Layer<S> for HealthRoutingLayer<E> {
    type Service = HealthRouting<S, E>;

    fn layer(&self, inner: S) -> Self::Service {
        HealthRouting::new(
            inner,
            self.picker.clone(),
            self.extractor.clone(),
            self.respond_with_selected,
        )
    }
}
