//! `/health/latest`, `/health/history` and `/health/backlog`: LiteLLM's shapes over the
//! in-memory [`HealthHistory`] (LiteLLM reads a database table) and the in-flight counters.

use http::StatusCode;
use serde_json::{Map, Value, json};

use super::wire::{self, Resp};
use crate::{
    health::HealthState,
    probe::{HealthHistory, HistoryRecord},
};

/// The `limit` of `/health/history` when none is given (LiteLLM's).
pub const DEFAULT_HISTORY_LIMIT: usize = 100;
/// The largest `limit` of `/health/history` (LiteLLM's).
pub const MAX_HISTORY_LIMIT: usize = 1000;

/// One record in LiteLLM's `convert_health_check_to_dict` shape, plus `model`,
/// `status_code` and `source`. Its texts are scrubbed again here, as everything shown is.
pub(crate) fn record_json(r: &HistoryRecord, state: &HealthState) -> Value {
    let at = wire::rfc3339(r.checked_at);
    let scrub = |s: &str| state.scrubber().scrub(s).into_owned();
    json!({
        "health_check_id": format!("{}-{}", r.model_id.as_str(), r.seq),
        "model_name": scrub(&r.model_name),
        "model": scrub(&r.model),
        "model_id": r.model_id.as_str(),
        "status": if r.healthy { "healthy" } else { "unhealthy" },
        "healthy_count": u32::from(r.healthy),
        "unhealthy_count": u32::from(!r.healthy),
        "error_message": r.error.as_deref().map(scrub),
        "status_code": r.status_code,
        "response_time_ms": r.response_time.as_secs_f64() * 1e3,
        "details": Value::Null,
        "checked_by": scrub(&r.checked_by),
        "checked_at": at,
        "created_at": at,
        "source": r.source.as_str(),
    })
}

/// `GET /health/latest`: `{"latest_health_checks": {model_id: record}, "total_models": n}`.
pub(crate) fn latest(state: &HealthState) -> Resp {
    let history = HealthHistory::of(state);
    let mut latest = history.latest();
    latest.sort_unstable_by(|a, b| a.model_id.as_str().cmp(b.model_id.as_str()));
    let checks: Map<String, Value> = latest
        .iter()
        .map(|r| (r.model_id.as_str().to_owned(), record_json(r, state)))
        .collect();
    let total = checks.len();
    wire::json(
        StatusCode::OK,
        &json!({"latest_health_checks": checks, "total_models": total}),
    )
}

/// The parsed query of `/health/history`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct HistoryQuery {
    model: Option<String>,
    healthy: Option<bool>,
    limit: usize,
    offset: usize,
}

/// Parses `model`, `status_filter`, `limit`, `offset`; errors name the parameter and never
/// quote its value.
pub(crate) fn parse_query(q: Option<&str>) -> Result<HistoryQuery, String> {
    let get = |name: &str| wire::query_param(q, name);
    let model = get("model")?.filter(|m| !m.is_empty());
    let healthy = match get("status_filter")?.as_deref() {
        None | Some("") => None,
        Some("healthy") => Some(true),
        Some("unhealthy") => Some(false),
        Some(_) => return Err("status_filter must be `healthy` or `unhealthy`".to_owned()),
    };
    let number = |name: &str, default: usize, min: usize, max: usize| -> Result<usize, String> {
        match get(name)? {
            None => Ok(default),
            Some(v) => v
                .trim()
                .parse::<usize>()
                .ok()
                .filter(|n| (min..=max).contains(n))
                .ok_or_else(|| {
                    if max == usize::MAX {
                        format!("{name} must be an integer of at least {min}")
                    } else {
                        format!("{name} must be an integer from {min} to {max}")
                    }
                }),
        }
    };
    Ok(HistoryQuery {
        model,
        healthy,
        limit: number("limit", DEFAULT_HISTORY_LIMIT, 1, MAX_HISTORY_LIMIT)?,
        offset: number("offset", 0, 0, usize::MAX)?,
    })
}

/// `GET /health/history`: newest first. `model` matches the route (`model_name`, as in
/// LiteLLM), the upstream `model` or the `model_id`. `total_records` is the number
/// returned (LiteLLM's); `total_matching` (ours) counts every match, for paging.
pub(crate) fn history(state: &HealthState, q: &HistoryQuery) -> Resp {
    let h = HealthHistory::of(state);
    let all = h.matching(|r| {
        q.healthy.is_none_or(|want| r.healthy == want)
            && q.model
                .as_deref()
                .is_none_or(|m| &*r.model_name == m || &*r.model == m || r.model_id.as_str() == m)
    });
    let page: Vec<Value> = all
        .iter()
        .skip(q.offset)
        .take(q.limit)
        .map(|r| record_json(r, state))
        .collect();
    wire::json(
        StatusCode::OK,
        &json!({
            "health_checks": page,
            "total_records": page.len(),
            "total_matching": all.len(),
            "limit": q.limit,
            "offset": q.offset,
            "history_size": h.capacity(),
        }),
    )
}

/// `GET /health/backlog`: LiteLLM's four fields. `in_flight_requests` is the sum of the
/// per-deployment in-flight counters (requests at an upstream now); there is no admission
/// queue, so `admitted_requests` equals it and `queued_requests`/`rejected_requests` are 0.
/// Ours: `deployments_at_max_parallel_requests` (skipped by routing until one finishes)
/// and `in_flight_by_model_id` (non-zero counters only).
pub(crate) fn backlog(state: &HealthState) -> Resp {
    let snap = state.load();
    let mut by_id = Map::new();
    let mut total: u64 = 0;
    let mut at_limit = 0usize;
    for e in snap.entries.iter() {
        let n = e.stats.in_flight();
        total += u64::from(n);
        if n > 0 {
            by_id.insert(e.deployment.id().as_str().to_owned(), n.into());
        }
        if e.deployment
            .params()
            .max_parallel_requests
            .is_some_and(|m| n >= m)
        {
            at_limit += 1;
        }
    }
    wire::json(
        StatusCode::OK,
        &json!({
            "in_flight_requests": total,
            "admitted_requests": total,
            "queued_requests": 0,
            "rejected_requests": 0,
            "deployments_at_max_parallel_requests": at_limit,
            "in_flight_by_model_id": by_id,
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_has_litellms_defaults_and_bounds() {
        let q = parse_query(None).unwrap();
        assert_eq!((q.limit, q.offset, q.healthy), (100, 0, None));
        let q = parse_query(Some(
            "model=gpt&status_filter=unhealthy&limit=1000&offset=5",
        ))
        .unwrap();
        assert_eq!(
            (q.model.as_deref(), q.healthy, q.limit, q.offset),
            (Some("gpt"), Some(false), 1000, 5)
        );
        for bad in [
            "limit=0",
            "limit=1001",
            "limit=-7",
            "limit=ten",
            "offset=-3",
            "offset=x",
        ] {
            let e = parse_query(Some(bad)).unwrap_err();
            let (name, value) = bad.split_once('=').unwrap();
            assert!(e.starts_with(name), "{e}");
            if value.len() > 1 {
                assert!(!e.contains(value), "echoed the value: {e}");
            }
        }
        let e = parse_query(Some("status_filter=sk-secret")).unwrap_err();
        assert!(
            e.contains("status_filter") && !e.contains("sk-secret"),
            "{e}"
        );
    }
}
