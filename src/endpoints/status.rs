//! Readiness, readiness details, shared status, and the `application/health+json` forms:
//! everything here answers from the published snapshot, synchronously, so no upstream can
//! slow it down.

use std::time::SystemTime;

use http::StatusCode;
use serde_json::{Map, Value, json};
use tokio::time::Instant;

use super::{
    report::{EndpointEntry, HealthReport},
    wire::{self, HEALTH_JSON, Resp},
};
use crate::{
    health::{HealthSnapshot, HealthState},
    shared::SharedMode,
};

/// The `db` field: this crate has no database (LiteLLM's wording for that case).
const DB: &str = "Not connected";

/// How the deployments stand for readiness: a deployment counts as healthy unless its
/// last result failed and is still fresh, exactly as the router's health filter sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Counts {
    pub(crate) total: usize,
    /// Not excluded by the health filter (passed, stale, or not checked yet).
    pub(crate) eligible: usize,
    pub(crate) unchecked: usize,
    /// Unsupported (never probed; not counted in `total`).
    pub(crate) unsupported: usize,
}

impl Counts {
    pub(crate) fn of(snap: &HealthSnapshot, now: Instant) -> Self {
        let mut c = Self {
            total: 0,
            eligible: 0,
            unchecked: 0,
            unsupported: 0,
        };
        for d in snap.deployments() {
            let id = d.id().as_str();
            if snap.unsupported(id).is_some() {
                // Never probed: no part of the healthy share either way.
                c.unsupported += 1;
                continue;
            }
            c.total += 1;
            match snap.health(id) {
                None => {
                    c.unchecked += 1;
                    c.eligible += 1;
                }
                Some(h) if h.healthy || snap.is_stale(id, now) => c.eligible += 1,
                Some(_) => {}
            }
        }
        c
    }

    /// `None` when ready; else why not.
    pub(crate) fn below(&self, min_percent: Option<f64>) -> Option<String> {
        let min = min_percent?;
        // eligible / total < min / 100, without dividing by zero.
        let short = (self.eligible as f64) * 100.0 < min * (self.total as f64);
        short.then(|| {
            format!(
                "{} of {} deployments healthy ({:.1}%), below min_healthy_percent ({min}%)",
                self.eligible,
                self.total,
                100.0 * self.eligible as f64 / self.total.max(1) as f64
            )
        })
    }
}

/// `"redis"` when results are shared through Redis, else `null`.
pub(crate) fn cache(state: &HealthState) -> Value {
    let cfg = state.config();
    if cfg.router.redis.is_some() && cfg.health.use_shared_health_check {
        Value::from("redis")
    } else {
        Value::Null
    }
}

/// `/health/readiness`: LiteLLM's open shape; 503 below `min_healthy_percent`.
pub(crate) fn readiness(state: &HealthState, min: Option<f64>, health_json: bool) -> Resp {
    let snap = state.load();
    let now = Instant::now();
    let counts = Counts::of(&snap, now);
    let below = counts.below(min);
    let code = if below.is_some() {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    if health_json {
        let status = match (&below, counts.eligible < counts.total) {
            (Some(_), _) => "fail",
            (None, true) => "warn",
            (None, false) => "pass",
        };
        let mut body = json!({"status": status, "checks": readiness_checks(&snap, now)});
        if let Some(why) = below {
            body["output"] = why.into();
        }
        return wire::json_as(code, HEALTH_JSON, &body);
    }
    let mut body = json!({
        "status": if below.is_some() { "unhealthy" } else { "healthy" },
        "db": DB,
        "cache": cache(state),
    });
    if let Some(why) = below {
        body["error"] = why.into();
    }
    wire::json(code, &body)
}

fn readiness_checks(snap: &HealthSnapshot, now: Instant) -> Map<String, Value> {
    snap.deployments()
        .map(|d| {
            let id = d.id().as_str();
            let (status, time) = match snap.health(id) {
                // Not checked yet: eligible, as the router sees it.
                None => ("pass", None),
                Some(h) if h.healthy || snap.is_stale(id, now) => ("pass", Some(h.checked_at)),
                Some(h) => ("fail", Some(h.checked_at)),
            };
            (format!("deployment:{id}"), check(id, status, time, None))
        })
        .collect()
}

/// One IETF health-check entry (draft-inadarei-api-health-check).
fn check(id: &str, status: &str, time: Option<Instant>, output: Option<&str>) -> Value {
    let mut c = json!({"componentId": id, "componentType": "component", "status": status});
    if let Some(t) = time {
        c["time"] = wire::rfc3339(wire::wall_clock(t)).into();
    }
    if let Some(o) = output {
        c["output"] = o.into();
    }
    Value::Array(vec![c])
}

/// `/health/readiness/details` (admin): the open fields plus version, cache, callbacks,
/// counts and `last_updated`.
pub(crate) fn readiness_details(
    state: &HealthState,
    min: Option<f64>,
    services: &[String],
) -> Resp {
    let snap = state.load();
    let counts = Counts::of(&snap, Instant::now());
    let below = counts.below(min);
    let cfg = state.config();
    let mut body = json!({
        "status": if below.is_some() { "unhealthy" } else { "healthy" },
        "db": DB,
        "cache": cache(state),
        "tower_health_routing_version": env!("CARGO_PKG_VERSION"),
        "litellm_version": Value::Null,
        "success_callbacks": services,
        "last_updated": snap.last_updated().map(|t| wire::rfc3339(wire::wall_clock(t))),
        "background_health_checks": cfg.health.background_health_checks,
        "health_check_routing": cfg.health.routing_enabled,
        "deployments": counts.total,
        "healthy_count": snap.healthy_count(),
        "unhealthy_count": snap.unhealthy_count(),
        "unchecked_count": counts.unchecked,
        "unsupported_count": counts.unsupported,
        "unsupported_endpoints": unsupported_list(state, &snap),
        "unimplemented_settings": cfg.unimplemented_settings,
        "min_healthy_percent": min,
    });
    let code = match below {
        Some(why) => {
            body["error"] = why.into();
            StatusCode::SERVICE_UNAVAILABLE
        }
        None => StatusCode::OK,
    };
    wire::json(code, &body)
}

/// `{model_id, model, route, routable, reason}` of each unsupported deployment.
fn unsupported_list(state: &HealthState, snap: &HealthSnapshot) -> Vec<Value> {
    let scrub = |t: &str| state.scrubber().scrub(t).into_owned();
    snap.deployments()
        .filter_map(|d| {
            let u = snap.unsupported(d.id().as_str())?;
            Some(json!({
                "model_id": d.id(),
                "model": scrub(&d.params().model),
                "route": scrub(d.route()),
                "routable": u.routable,
                "reason": scrub(&u.reason),
            }))
        })
        .collect()
}

/// `/health/shared-status` (admin).
pub(crate) fn shared_status(state: &HealthState) -> Resp {
    let s = state.shared_status();
    let scrub = |t: &str| state.scrubber().scrub(t).into_owned();
    let age = s.results_written_at.map(|t| {
        SystemTime::now()
            .duration_since(t)
            .unwrap_or_default()
            .as_secs_f64()
    });
    let detail = match (&s.detail, s.mode) {
        (Some(d), _) => Some(scrub(d)),
        (None, SharedMode::Off) => Some(
            "not shared: this process keeps health results in memory and probes on its own"
                .to_owned(),
        ),
        (None, _) => None,
    };
    let body = json!({
        "shared_health_check_enabled": s.mode != SharedMode::Off,
        "mode": s.mode,
        "backend": s.backend,
        "process_id": scrub(&s.process_id),
        "lock_holder": s.lease_holder.as_deref().map(scrub),
        "is_lock_holder": s.lease_holder.as_deref() == Some(s.process_id.as_str()),
        "last_checked_by": s.last_checked_by.as_deref().map(scrub),
        "results_written_at": s.results_written_at.map(wire::rfc3339),
        "results_age_seconds": age,
        "fencing_token": s.fencing_token,
        "detail": detail,
    });
    wire::json(StatusCode::OK, &body)
}

/// A `/health` report in the IETF draft format; `narrowed` as for the JSON answer.
pub(crate) fn health_json(report: &HealthReport, narrowed: bool) -> (StatusCode, Value) {
    let fail = report.healthy_count == 0 && (report.unhealthy_count > 0 || narrowed);
    let status = if fail {
        "fail"
    } else if report.unhealthy_count > 0 || report.unchecked_count > 0 {
        "warn"
    } else {
        "pass"
    };
    let entry = |e: &EndpointEntry, st: &str| {
        (
            format!("deployment:{}", e.model_id),
            check(e.model_id.as_str(), st, e.checked_at, e.error.as_deref()),
        )
    };
    let checks: Map<String, Value> = report
        .healthy_endpoints
        .iter()
        .map(|e| entry(e, "pass"))
        .chain(report.unhealthy_endpoints.iter().map(|e| entry(e, "fail")))
        .chain(report.unchecked_endpoints.iter().map(|e| entry(e, "warn")))
        .collect();
    let code = if fail {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (code, json!({"status": status, "checks": checks}))
}
