//! What the dashboard shows, built once per request from one snapshot and the
//! [`HealthHistory`], and served both as the JSON the page polls and as the server-rendered
//! table: one model, so the two cannot disagree about what is shown (or hidden).
//!
//! Every text comes through the `/health` allowlist ([`EndpointEntry`]) or is scrubbed
//! here: a deployment shows its id, `model`, `api_base` (without credentials or query) and
//! scrubbed reasons, never its params.

use std::{
    collections::HashMap,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde::Serialize;
use tokio::time::Instant;

use super::super::{
    report::{EndpointEntry, View},
    wire,
};
use crate::{
    deployment::Deployment,
    health::{HealthSnapshot, HealthSource, HealthState},
    probe::{HealthHistory, HistoryRecord},
    secret::Scrubber,
};

/// How far back the timeline strips reach (at most: the history ring may hold less).
pub(crate) const TIMELINE: Duration = Duration::from_secs(3600);

/// The shortest span a strip covers, in seconds (a young history is spread over it).
const MIN_SPAN: f64 = 10.0;

/// How often the page polls, in seconds (sent to it, so one constant decides).
pub(crate) const POLL_SECONDS: u32 = 3;

/// The whole page's data.
#[derive(Debug, Serialize)]
pub(crate) struct Dashboard {
    /// When this was built (RFC 3339, UTC).
    pub(crate) generated_at: String,
    /// The same, in milliseconds since the Unix epoch (the timeline's clock).
    pub(crate) now_ms: u64,
    /// How often the page polls.
    pub(crate) poll_seconds: u32,
    /// The span the timeline strips cover, in seconds (the last hour, or less when the
    /// history holds less).
    pub(crate) timeline_seconds: f64,
    /// `enable_health_check_routing`: whether failed checks keep traffic away.
    pub(crate) health_check_routing: bool,
    /// `background_health_checks`: whether there are results to show at all.
    pub(crate) background_health_checks: bool,
    /// Warnings about the whole page (no background checks, so no results).
    pub(crate) notices: Vec<String>,
    /// Every route, by name.
    pub(crate) routes: Vec<RouteView>,
}

/// One route.
#[derive(Debug, Serialize)]
pub(crate) struct RouteView {
    pub(crate) name: String,
    /// Deployments not kept away by a fresh failed check (of the routable ones).
    pub(crate) passing: usize,
    /// Deployments that can be sent traffic (all but the unroutable unsupported ones).
    pub(crate) routable: usize,
    /// Set when the route's traffic does not follow health as usual.
    pub(crate) banner: Option<Banner>,
    pub(crate) deployments: Vec<DeploymentView>,
}

/// Why a route's traffic does not follow the health results as usual.
#[derive(Debug, Serialize)]
pub(crate) struct Banner {
    /// `bypass`, `panic`, `unavailable` or `unsupported`.
    pub(crate) kind: &'static str,
    pub(crate) message: String,
}

/// One deployment's row.
#[derive(Debug, Serialize)]
pub(crate) struct DeploymentView {
    pub(crate) model_id: String,
    /// The upstream model (`litellm_params.model`), scrubbed.
    pub(crate) model: String,
    /// `api_base` without credentials or query, when details are on.
    pub(crate) api_base: Option<String>,
    /// `healthy`, `unhealthy`, `unchecked`, `unsupported` or `stale`.
    pub(crate) state: &'static str,
    /// Why it is unhealthy or unsupported (or what its stale result said), scrubbed;
    /// `None` when details are off.
    pub(crate) reason: Option<String>,
    /// The status code of its last failed check.
    pub(crate) status_code: Option<u16>,
    /// How long ago its last result was made.
    pub(crate) checked_seconds_ago: Option<f64>,
    /// `probe` or `traffic` (a probe saved by healthy traffic).
    pub(crate) source: Option<&'static str>,
    /// Time left in cooldown.
    pub(crate) cooldown_seconds: Option<f64>,
    /// Time left ejected by outlier detection.
    pub(crate) ejected_seconds: Option<f64>,
    /// Requests at it now.
    pub(crate) in_flight: u32,
    /// Answers per second over the last minute (successes and its own faults; the
    /// callers' faults are not counted, as for cooldown).
    pub(crate) requests_per_second: f64,
    /// The share of those answers that were its faults; `None` with no answers.
    pub(crate) error_rate: Option<f64>,
    /// How long its last probe took.
    pub(crate) last_probe_ms: Option<f64>,
    /// Its probe results within the timeline span, oldest first.
    pub(crate) timeline: Vec<Point>,
}

/// One probe result on a timeline strip.
#[derive(Debug, Serialize)]
pub(crate) struct Point {
    /// When (milliseconds since the Unix epoch).
    pub(crate) t: u64,
    pub(crate) ok: bool,
    /// How long it took.
    pub(crate) ms: f64,
    pub(crate) status: Option<u16>,
    /// Why it failed, scrubbed; `None` when details are off.
    pub(crate) error: Option<String>,
}

fn unix_ms(t: SystemTime) -> u64 {
    u64::try_from(t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis()).unwrap_or(u64::MAX)
}

fn secs(d: Duration) -> f64 {
    // Tenths: the page shows no more, and the JSON stays stable between polls.
    (d.as_secs_f64() * 10.0).ceil() / 10.0
}

impl Dashboard {
    /// Everything the page shows, now.
    pub(crate) fn build(state: &HealthState) -> Self {
        let cfg = state.config();
        let details = cfg.health.details;
        let view = View {
            details,
            admin: true,
        };
        let scrubber = state.scrubber();
        let (wall, now, nanos) = (SystemTime::now(), Instant::now(), state.now_nanos());
        let since = wall.checked_sub(TIMELINE).unwrap_or(UNIX_EPOCH);
        let history = HealthHistory::of(state);
        let mut by_id: HashMap<String, Vec<HistoryRecord>> = HashMap::new();
        for r in history.matching(|r| r.checked_at >= since) {
            by_id
                .entry(r.model_id.as_str().to_owned())
                .or_default()
                .push(r);
        }
        let oldest = by_id
            .values()
            .filter_map(|v| v.last())
            .map(|r| r.checked_at)
            .min();
        let snap = state.load();
        let mut names: Vec<&str> = snap.routes().collect();
        names.sort_unstable();
        let routes = names
            .into_iter()
            .map(|name| {
                let ds: Vec<_> = snap.route(name).into_iter().flatten().collect();
                let rows = ds
                    .iter()
                    .map(|d| {
                        let mut recs = by_id.remove(d.id().as_str()).unwrap_or_default();
                        recs.reverse(); // oldest first
                        row(&snap, d, recs, view, now, nanos, scrubber)
                    })
                    .collect();
                route(state, &snap, name, &ds, rows, now, nanos)
            })
            .collect();
        let mut notices = Vec::new();
        if !cfg.health.background_health_checks {
            notices.push(
                "background_health_checks is off: there are no health results to show (an \
                 on-demand /health does not publish them); only traffic is shown"
                    .to_owned(),
            );
        }
        Self {
            generated_at: wire::rfc3339(wall),
            now_ms: unix_ms(wall),
            poll_seconds: POLL_SECONDS,
            timeline_seconds: oldest
                .and_then(|t| wall.duration_since(t).ok())
                .map_or(MIN_SPAN, |d| {
                    d.as_secs_f64().clamp(MIN_SPAN, TIMELINE.as_secs_f64())
                }),
            health_check_routing: cfg.health.routing_enabled,
            background_health_checks: cfg.health.background_health_checks,
            notices,
            routes,
        }
    }

    /// Every deployment row, for tests and the summary line.
    pub(crate) fn rows(&self) -> impl Iterator<Item = &DeploymentView> {
        self.routes.iter().flat_map(|r| r.deployments.iter())
    }
}

fn row(
    snap: &HealthSnapshot,
    d: &Deployment,
    recs: Vec<HistoryRecord>,
    view: View,
    now: Instant,
    nanos: u64,
    scrubber: &Scrubber,
) -> DeploymentView {
    let id = d.id().as_str();
    let scrub = |s: &str| scrubber.scrub(s).into_owned();
    let health = snap.health(id);
    let unsupported = snap.unsupported(id);
    // The allowlist of `/health`: model, api_base (no credentials, no query), reason.
    let entry = match (unsupported, health) {
        (Some(u), _) => EndpointEntry::unsupported(d, &u.reason, view, scrubber),
        (None, Some(h)) => EndpointEntry::from_record(d, h, view, scrubber),
        (None, None) => EndpointEntry::unchecked(d, view, scrubber),
    };
    let stale = health.is_some() && snap.is_stale(id, now);
    let state = match (unsupported, health) {
        (Some(_), _) => "unsupported",
        (None, None) => "unchecked",
        (None, Some(_)) if stale => "stale",
        (None, Some(h)) if h.healthy => "healthy",
        (None, Some(_)) => "unhealthy",
    };
    const STALE: &str = "its last result is older than the staleness threshold, so the \
                         router treats it as unknown";
    let reason = match (unsupported, health) {
        _ if !view.details => None,
        (Some(_), _) => entry.error.clone(),
        (None, Some(h)) if stale => Some(match &entry.error {
            Some(e) if !h.healthy => format!("{STALE}; it failed: {e}"),
            _ => format!("{STALE}; it passed"),
        }),
        (None, Some(h)) if !h.healthy => entry.error.clone(),
        _ => None,
    };
    let (cooldown, ejected, in_flight, recent) = match snap.entry_by_id(id) {
        Some(e) => (
            e.stats.cooldown.remaining(nanos),
            e.stats.ejection.remaining(nanos),
            e.stats.in_flight(),
            Some(e.stats.cooldown.recent(nanos)),
        ),
        None => (None, None, 0, None),
    };
    let (rps, error_rate) = recent.map_or((0.0, None), |r| {
        let rate = (r.requests >= 0.5).then(|| (r.failures / r.requests).clamp(0.0, 1.0));
        (r.requests / r.seconds, rate)
    });
    DeploymentView {
        model_id: id.to_owned(),
        model: entry.model,
        api_base: entry.api_base,
        state,
        // The reason came through the allowlist's scrubbing; the stale note is ours.
        reason,
        status_code: health.filter(|h| !h.healthy).and_then(|h| h.status),
        checked_seconds_ago: health.map(|h| secs(now.saturating_duration_since(h.checked_at))),
        source: health.map(|h| match h.source {
            HealthSource::Traffic => "traffic",
            _ => "probe",
        }),
        cooldown_seconds: cooldown.map(secs),
        ejected_seconds: ejected.map(secs),
        in_flight,
        requests_per_second: (rps * 100.0).round() / 100.0,
        error_rate: error_rate.map(|r| (r * 1000.0).round() / 1000.0),
        last_probe_ms: recs
            .last()
            .map(|r| (r.response_time.as_secs_f64() * 1e4).round() / 10.0),
        timeline: recs
            .iter()
            .map(|r| Point {
                t: unix_ms(r.checked_at),
                ok: r.healthy,
                ms: (r.response_time.as_secs_f64() * 1e4).round() / 10.0,
                status: r.status_code,
                error: if view.details {
                    r.error.as_deref().map(&scrub)
                } else {
                    None
                },
            })
            .collect(),
    }
}

fn route(
    state: &HealthState,
    snap: &HealthSnapshot,
    name: &str,
    ds: &[&std::sync::Arc<Deployment>],
    deployments: Vec<DeploymentView>,
    now: Instant,
    nanos: u64,
) -> RouteView {
    let cfg = state.config();
    let routable: Vec<_> = ds
        .iter()
        .filter(|d| snap.unsupported(d.id().as_str()).is_none_or(|u| u.routable))
        .collect();
    // As the router's health filter sees it: out only while a failed result is fresh.
    let passing = routable
        .iter()
        .filter(|d| {
            let id = d.id().as_str();
            snap.health(id)
                .is_none_or(|h| h.healthy || snap.is_stale(id, now))
        })
        .count();
    let total = routable.len();
    let banner = if total == 0 && !ds.is_empty() {
        Some(Banner {
            kind: "unsupported",
            message: "every deployment of this route is unsupported: requests for it are \
                      refused"
                .to_owned(),
        })
    } else if cfg.health.routing_enabled
        && total > 0
        && match cfg.router.panic_threshold_percent {
            None => passing == 0,
            Some(pct) => (passing as f64) * 100.0 < pct * total as f64,
        }
    {
        Some(match cfg.router.panic_threshold_percent {
            None => Banner {
                kind: "bypass",
                message: format!(
                    "every deployment failed its health check: the health filter is bypassed \
                     and traffic goes to all {total} (cooldown still applies)"
                ),
            },
            Some(pct) => Banner {
                kind: "panic",
                message: format!(
                    "panic mode: {passing} of {total} deployments pass their health check, \
                     below panic_threshold_percent ({pct}%): the health filter is off for this \
                     route and traffic goes to all of them"
                ),
            },
        })
    } else {
        let back_in = routable
            .iter()
            .map(|d| {
                snap.entry_by_id(d.id().as_str())
                    .map_or(Duration::ZERO, |e| {
                        let c = e.stats.cooldown.remaining(nanos).unwrap_or_default();
                        c.max(e.stats.ejection.remaining(nanos).unwrap_or_default())
                    })
            })
            .min();
        back_in.filter(|d| !d.is_zero()).map(|d| Banner {
            kind: "unavailable",
            message: format!(
                "every deployment is cooling down or ejected: requests are refused (429) until \
                 the first comes back in {:.1} s",
                secs(d)
            ),
        })
    };
    RouteView {
        name: state.scrubber().scrub(name).into_owned(),
        passing,
        routable: total,
        banner,
        deployments,
    }
}
