//! `POST /health/test_connection`: probe a deployment described in the request body
//! (LiteLLM's shape: `{"litellm_params": {...}, "mode": ..., "model_info": {...}}`) with
//! the same prober, timeouts and scrubbing as the probe loop. The result is never
//! published nor kept in the history.
//!
//! The deployment is found as LiteLLM finds it: by `model_info.id`, else by the route
//! (`model_name`) named by `litellm_params.model`, else by the upstream model; the request's
//! params override its. A request that sets its own `api_base`/`base_url`, or brings its own
//! `api_key` without selecting the deployment by id, is probed **without** the configured
//! credentials (LiteLLM's `_config_base_for_health_check`): otherwise a caller could send
//! the configured key to a server of its own. `os.environ/` references in the body are
//! refused (LiteLLM's `_reject_os_environ_references`): the body must not read the
//! server's environment.

#[cfg(feature = "yaml")]
use std::sync::Arc;

use bytes::Bytes;
use http::StatusCode;
#[cfg(feature = "yaml")]
use serde_json::json;
use serde_json::{Map, Value};

#[cfg(feature = "yaml")]
use super::report::{EndpointEntry, View};
use super::wire::{self, Resp};
use crate::{deployment::Mode, health::HealthState, probe::ProbeLoop};
#[cfg(feature = "yaml")]
use crate::{
    deployment::{Deployment, ParamValue},
    secret::Scrubber,
};

/// The route name of a deployment described only by the request.
#[cfg(feature = "yaml")]
const TEST_ROUTE: &str = "test_connection";

/// The largest body read.
pub(crate) const MAX_BODY: usize = 64 << 10;

/// The error LiteLLM answers for an `os.environ/` reference in the body.
const ENV_REFERENCE: &str =
    "Environment variable references are not permitted in request parameters.";

/// Whether any string in `v` (at any depth) starts with `os.environ/`.
fn has_env_reference(v: &Value) -> bool {
    match v {
        Value::String(s) => s.starts_with("os.environ/"),
        Value::Array(a) => a.iter().any(has_env_reference),
        Value::Object(m) => m.values().any(has_env_reference),
        _ => false,
    }
}

fn bad(msg: &str) -> Resp {
    wire::error(StatusCode::BAD_REQUEST, "bad_request", msg)
}

/// The request, parsed and checked.
#[cfg_attr(not(feature = "yaml"), allow(dead_code))]
struct Ask {
    params: Map<String, Value>,
    info: Map<String, Value>,
    mode: Option<Mode>,
}

fn parse(body: &[u8]) -> Result<Ask, String> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|_| "the body must be a JSON object with `litellm_params`".to_owned())?;
    let Value::Object(mut top) = v else {
        return Err("the body must be a JSON object with `litellm_params`".to_owned());
    };
    let object = |v: Option<Value>, name: &str| match v {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(m)) => Ok(m),
        Some(_) => Err(format!("`{name}` must be a JSON object")),
    };
    let mut params = object(top.remove("litellm_params"), "litellm_params")?;
    let info = object(top.remove("model_info"), "model_info")?;
    if has_env_reference(&Value::Object(params.clone()))
        || has_env_reference(&Value::Object(info.clone()))
    {
        return Err(ENV_REFERENCE.to_owned());
    }
    // `mode` (top level) wins over `litellm_params.mode`.
    let raw_mode = match top.remove("mode").filter(|m| !m.is_null()) {
        Some(m) => Some(m),
        None => params.remove("mode").filter(|m| !m.is_null()),
    };
    let mode = match raw_mode {
        None => None,
        Some(Value::String(m)) => Some(Mode::from_name(&m).ok_or_else(|| {
            format!(
                "`mode` is not a mode this gateway probes; known: {}",
                Mode::NAMES.join(", ")
            )
        })?),
        Some(_) => return Err("`mode` must be a string".to_owned()),
    };
    Ok(Ask { params, info, mode })
}

/// The request's params as a deployment of their own (LiteLLM's config parser, so names,
/// types and credential handling are the config's), with the secrets it carries.
#[cfg(feature = "yaml")]
fn request_deployment(
    params: &Map<String, Value>,
    fallback_model: Option<&str>,
) -> Result<(Deployment, Scrubber), String> {
    let mut params = params.clone();
    if !params.contains_key("model")
        && let Some(m) = fallback_model
    {
        params.insert("model".into(), m.into());
    }
    let doc = json!({"model_list": [{"model_name": TEST_ROUTE, "litellm_params": params}]});
    // No `os.environ/` is left (refused above): the environment is never read.
    let cfg = crate::Config::from_yaml_str_with_env(&doc.to_string(), &|_| None).map_err(|e| {
        // Only the field is named: the message may quote the request's value.
        let field = e
            .field()
            .strip_prefix("model_list[0].")
            .unwrap_or("litellm_params");
        format!("invalid {field}: see the config reference for its type")
    })?;
    let scrubber = cfg.scrubber();
    let d = cfg
        .deployments
        .into_iter()
        .next()
        .ok_or_else(|| "`litellm_params` must name a `model`".to_owned())?;
    Ok((d, scrubber))
}

/// The configured deployment the request names, and whether it was named by id.
#[cfg(feature = "yaml")]
fn configured(
    state: &HealthState,
    params: &Map<String, Value>,
    info: &Map<String, Value>,
) -> Option<(Arc<Deployment>, bool)> {
    let snap = state.load();
    if let Some(id) = info.get("id").and_then(Value::as_str)
        && let Some(d) = snap.deployment(id)
    {
        return Some((Arc::clone(d), true));
    }
    let model = params.get("model").and_then(Value::as_str)?;
    if let Some(mut ds) = snap.route(model)
        && let Some(d) = ds.next()
    {
        return Some((Arc::clone(d), false));
    }
    snap.deployments()
        .find(|d| d.params().model == model)
        .map(|d| (Arc::clone(d), false))
}

/// The deployment to probe: the configured one with the request's params over it (and
/// without its credentials when the request points elsewhere), or the request's alone.
#[cfg(feature = "yaml")]
fn target(state: &HealthState, ask: &Ask) -> Result<(Deployment, Scrubber), String> {
    let base = configured(state, &ask.params, &ask.info);
    let (req, scrubber) = request_deployment(
        &ask.params,
        base.as_ref().map(|(d, _)| d.params().model.as_str()),
    )?;
    let Some((base, by_id)) = base else {
        let mut d = req;
        if let Some(m) = ask.mode {
            d.parts_mut().info.mode = Some(m);
        }
        return Ok((d, scrubber));
    };
    let has = |k: &str| ask.params.contains_key(k);
    let own_connection = has("api_base") || has("base_url") || (has("api_key") && !by_id);
    let mut d = Deployment::clone(&base);
    if own_connection {
        d.parts_mut().params.api_key = None;
        d.parts_mut()
            .params
            .extra
            .retain(|_, v| !matches!(v, ParamValue::Secret(_)));
    }
    let stored_model = d.params().model.clone();
    for k in ask.params.keys() {
        match k.as_str() {
            // Matched by route or upstream model, `model` named the deployment: keep its own.
            "model" if by_id => d.parts_mut().params.model = req.params().model.clone(),
            "model" => {}
            "api_base" | "base_url" => {
                d.parts_mut().params.api_base = req.params().api_base.clone()
            }
            "api_key" => d.parts_mut().params.api_key = req.params().api_key.clone(),
            "api_version" => d.parts_mut().params.api_version = req.params().api_version.clone(),
            other => match req.params().extra.get(other) {
                Some(v) => {
                    d.parts_mut()
                        .params
                        .extra
                        .insert(other.to_owned(), v.clone());
                }
                None => {
                    d.parts_mut().params.extra.remove(other);
                }
            },
        }
    }
    // LiteLLM's `_model_info_for_mode_resolution`: the stored mode describes the stored model.
    if d.params().model != stored_model {
        d.parts_mut().info.mode = None;
    }
    if let Some(m) = ask.mode {
        d.parts_mut().info.mode = Some(m);
    }
    d.parts_mut().route = TEST_ROUTE.into();
    Ok((d, scrubber))
}

/// Answers `POST /health/test_connection` (the caller is an admin already).
pub(crate) async fn answer(state: HealthState, probes: ProbeLoop, body: Bytes) -> Resp {
    if body.len() > MAX_BODY {
        return wire::error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the body must be at most {MAX_BODY} bytes"),
        );
    }
    let ask = match parse(&body) {
        Ok(a) => a,
        Err(e) => return bad(&e),
    };
    run(state, probes, ask).await
}

#[cfg(not(feature = "yaml"))]
async fn run(_: HealthState, _: ProbeLoop, _: Ask) -> Resp {
    wire::error(
        StatusCode::NOT_IMPLEMENTED,
        "not_implemented",
        "test_connection needs the `yaml` feature of tower-health-routing",
    )
}

/// Probes the deployment `ask` describes and answers in LiteLLM's shape.
#[cfg(feature = "yaml")]
async fn run(state: HealthState, probes: ProbeLoop, ask: Ask) -> Resp {
    let (d, scrubber) = match target(&state, &ask) {
        Ok(t) => t,
        Err(e) => return bad(&e),
    };
    let mode = crate::probe::resolve_mode(&d);
    let report = probes.probe_detached(Arc::new(d), &scrubber).await;
    let view = View {
        details: true,
        admin: true,
    };
    let entry = EndpointEntry::from_probe(&report, view, &scrubber);
    let mut result = serde_json::to_value(&entry).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut result {
        m.insert("mode".into(), mode.as_str().into());
        m.insert(
            "response_time_ms".into(),
            (report.latency.as_secs_f64() * 1e3).into(),
        );
        if let Some(s) = report.outcome.status {
            m.insert("status_code".into(), s.into());
        }
    }
    // Both the request's secrets and the configured ones are scrubbed from everything shown.
    let result = wire::scrub_json(result, &|s| {
        state.scrubber().scrub(&scrubber.scrub(s)).into_owned()
    });
    let status = if report.outcome.healthy {
        "success"
    } else {
        "error"
    };
    wire::json(StatusCode::OK, &json!({"status": status, "result": result}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_references_are_refused_at_any_depth() {
        for body in [
            r#"{"litellm_params": {"model": "m", "api_key": "os.environ/OPENAI_API_KEY"}}"#,
            r#"{"litellm_params": {"model": "m", "extra_body": {"a": ["x", "os.environ/HOME"]}}}"#,
            r#"{"litellm_params": {"model": "m"}, "model_info": {"id": "os.environ/X"}}"#,
        ] {
            let Err(e) = parse(body.as_bytes()) else {
                panic!("accepted {body}")
            };
            assert_eq!(e, ENV_REFERENCE);
        }
        assert!(parse(br#"{"litellm_params": {"model": "m"}, "mode": "embedding"}"#).is_ok());
        assert!(parse(br#"{"litellm_params": {"model": "m"}, "mode": 3}"#).is_err());
        assert!(parse(br#"{"litellm_params": {"model": "m"}, "mode": "telepathy"}"#).is_err());
        assert!(parse(b"[1]").is_err());
    }
}
