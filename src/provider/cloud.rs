//! What the native cloud probes ([Bedrock](super::aws), [Vertex AI](super::vertex)) share:
//! the error that says a deployment cannot be probed, and typed reads of `litellm_params`.

use std::fmt;

use crate::{
    deployment::{Deployment, ParamValue},
    secret::Secret,
};

/// Why a deployment cannot be probed natively; `field` is relative to its `model_list`
/// entry (`litellm_params.aws_region_name`). `why` never carries a credential.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Unsupported {
    pub(crate) field: &'static str,
    pub(crate) why: String,
}

impl Unsupported {
    pub(crate) fn new(field: &'static str, why: impl Into<String>) -> Self {
        Self {
            field,
            why: why.into(),
        }
    }
}

impl fmt::Debug for Unsupported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Unsupported({}: {})", self.field, self.why)
    }
}

impl fmt::Display for Unsupported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.why)
    }
}

/// A displayable `litellm_params` string (trimmed; empty counts as unset). A param kept as
/// a secret is not displayable and reads as unset here: use [`secret_param`].
pub(crate) fn plain_param<'a>(d: &'a Deployment, name: &str) -> Option<&'a str> {
    match d.params().extra.get(name)? {
        ParamValue::Plain(serde_json::Value::String(s)) => Some(s.trim()).filter(|s| !s.is_empty()),
        _ => None,
    }
}

/// A `litellm_params` credential (empty counts as unset). A plain string under a name
/// [`looks_secret`](crate::secret::looks_secret) misses is taken too, as a secret.
pub(crate) fn secret_param(d: &Deployment, name: &str) -> Option<Secret> {
    let s = match d.params().extra.get(name)? {
        ParamValue::Secret(s) => s.clone(),
        ParamValue::Plain(serde_json::Value::String(s)) => Secret::new(s.as_str()),
        ParamValue::Plain(_) => return None,
    };
    (!s.expose().trim().is_empty()).then_some(s)
}

/// The model a probe names, with its provider prefix: `health_check_model`, else the model.
pub(crate) fn probe_model(d: &Deployment) -> &str {
    d.info()
        .health_check_model
        .as_deref()
        .unwrap_or(&d.params().model)
}

/// A value that an HTTP header can carry as it is (visible ASCII and spaces).
pub(crate) fn header_safe(s: &str) -> bool {
    s.bytes()
        .all(|b| b == b' ' || b == b'\t' || (0x21..0x7f).contains(&b))
}

/// An endpoint override: an absolute `http`/`https` URL with a host, without its trailing
/// slash. `https` needs the TLS stack (the `rustls` feature).
pub(crate) fn check_endpoint(field: &'static str, url: &str) -> Result<String, Unsupported> {
    let trimmed = url.trim().trim_end_matches('/');
    let uri: http::Uri = trimmed
        .parse()
        .map_err(|e| Unsupported::new(field, format!("`{trimmed}` is not a URL: {e}")))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") if cfg!(feature = "rustls") => {}
        Some("https") => {
            return Err(Unsupported::new(
                field,
                format!("`{trimmed}` is https, which needs the `rustls` feature"),
            ));
        }
        _ => {
            return Err(Unsupported::new(
                field,
                format!("`{trimmed}` must start with http:// or https://"),
            ));
        }
    }
    if uri.authority().is_none() {
        return Err(Unsupported::new(
            field,
            format!("`{trimmed}` names no host"),
        ));
    }
    Ok(trimmed.to_owned())
}
