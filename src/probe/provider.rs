//! Where the HTTP prober sends a deployment's probe: the provider catalog's endpoint for
//! its probe model (`health_check_model` or its own) and mode.
//!
//! A wildcard route (`openai/*`) names no model to probe: it needs `health_check_model`.

use crate::{
    deployment::Deployment,
    probe::mode::{is_wildcard, probe_model_full, resolve_mode},
    provider::{self, CheapCheck, Endpoint, ProviderError, Purpose, Wire},
};

/// Resolves the cheap tier of `d` (see [`provider::cheap_check`]).
pub(crate) fn resolve_cheap(d: &Deployment) -> Result<CheapCheck, ProviderError> {
    resolve(d)?;
    provider::cheap_check(d, probe_model_full(d), resolve_mode(d))
}

/// Resolves where and how `d` is probed.
pub(crate) fn resolve(d: &Deployment) -> Result<Endpoint, ProviderError> {
    wildcard_check(d)?;
    provider::endpoint(d, probe_model_full(d), resolve_mode(d), Purpose::Probe)
}

/// [`resolve`]'s wire and URL, or its error, without building the endpoint (see
/// [`provider::check_endpoint`]).
pub(crate) fn check(d: &Deployment) -> Result<(Wire, String), ProviderError> {
    wildcard_check(d)?;
    provider::check_endpoint(d, probe_model_full(d), resolve_mode(d), Purpose::Probe)
}

/// A wildcard route without `health_check_model` names no model to probe.
fn wildcard_check(d: &Deployment) -> Result<(), ProviderError> {
    if is_wildcard(d) && d.info().health_check_model.is_none() {
        return Err(ProviderError::Invalid {
            field: "model_info.health_check_model",
            why: format!(
                "the wildcard model `{}` cannot be probed as it is: set health_check_model \
                 (e.g. openai/gpt-4o-mini) or disable_background_health_check",
                d.params().model
            ),
        });
    }
    Ok(())
}
