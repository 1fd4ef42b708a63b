//! Metrics, recorded through the [`metrics`] facade.
//!
//! # Why a facade
//!
//! A library should not pick its users' exporter: recording through `metrics` costs next
//! to nothing until an application installs a recorder (Prometheus, StatsD, OpenTelemetry,
//! a test's debugging recorder), and then every metric below flows to it. Call
//! [`describe`] after installing the recorder to attach help texts and units.
//!
//! # What is recorded
//!
//! | name | kind | labels | when |
//! |---|---|---|---|
//! | `tower_health_routing_deployment_healthy` | gauge | `route`, `model_id` | each published health result: 1 passed, 0 failed |
//! | `tower_health_routing_probe_duration_seconds` | histogram | `route`, `model_id` | each probe (background and on-demand), up to its timeout |
//! | `tower_health_routing_probes_total` | counter | `route`, `model_id`, `reason` | each probe; `reason` is one of [`PROBE_REASONS`] |
//! | `tower_health_routing_routing_decisions_total` | counter | `route` | each request routed to a deployment |
//! | `tower_health_routing_health_filter_bypasses_total` | counter | `route` | each request routed with the health filter skipped (every deployment had failed) |
//! | `tower_health_routing_no_deployment_available_total` | counter | `route` | each request refused because every deployment was cooling down or excluded |
//! | `tower_health_routing_unknown_route_total` | counter | none | each request for a route no deployment serves (no label: the name comes from the client) |
//! | `tower_health_routing_cooldowns_total` | counter | `route`, `model_id`, `source` | each time a deployment enters (or extends) a cooldown; `source` is `request` or `probe` |
//!
//! # Labels
//!
//! Every label value is bounded by the configuration or by a fixed list: `route` is a
//! configured `model_name`, `model_id` a configured (or derived) deployment id, `reason`
//! and `source` come from fixed lists. No label carries a URL, an error text, a client-chosen
//! string or a secret.
//!
//! # Cost on the request path
//!
//! The per-route counters of routing decisions keep their [`metrics::Key`] (name and
//! labels) in the route's state, built once, and the handle the recorder gave for it, so
//! a decision neither allocates nor looks the counter up: it increments the cached handle
//! (with no recorder installed, that is a no-op). A decision recorded through a recorder
//! other than the first one that counted the route (a test's local recorder) looks the
//! key up instead.

#[cfg(feature = "metrics")]
use std::sync::Arc;

#[cfg(feature = "metrics")]
use metrics::{Key, Label, Level, Metadata, SharedString, Unit};

#[cfg(feature = "metrics")]
use crate::deployment::Deployment;

/// Gauge: 1 when a deployment's last published health result passed, 0 when it failed.
pub const DEPLOYMENT_HEALTHY: &str = "tower_health_routing_deployment_healthy";
/// Histogram: how long each probe took, in seconds.
pub const PROBE_DURATION: &str = "tower_health_routing_probe_duration_seconds";
/// Counter: probes by outcome (`reason`, one of [`PROBE_REASONS`]).
pub const PROBES: &str = "tower_health_routing_probes_total";
/// Counter: requests routed to a deployment, per route.
pub const ROUTING_DECISIONS: &str = "tower_health_routing_routing_decisions_total";
/// Counter: requests routed with the health filter bypassed, per route.
pub const HEALTH_FILTER_BYPASSES: &str = "tower_health_routing_health_filter_bypasses_total";
/// Counter: requests refused because no deployment of the route was available.
pub const NO_DEPLOYMENT_AVAILABLE: &str = "tower_health_routing_no_deployment_available_total";
/// Counter: requests for an unknown route (no label).
pub const UNKNOWN_ROUTE: &str = "tower_health_routing_unknown_route_total";
/// Counter: cooldowns entered, per deployment and `source` (`request` or `probe`).
pub const COOLDOWNS: &str = "tower_health_routing_cooldowns_total";

/// Counter: background probes not sent because real traffic vouched for the deployment
/// (`health_check_skip_when_traffic_healthy`), per deployment. Probes sent are [`PROBES`].
pub const PROBES_SAVED: &str = "tower_health_routing_probes_saved_total";

/// Counter: outlier ejections entered, per deployment (`router_settings.outlier_detection`).
pub const EJECTIONS: &str = "tower_health_routing_ejections_total";

/// Every value the `reason` label of [`PROBES`] takes:
///
/// | reason | meaning |
/// |---|---|
/// | `ok` | the probe passed |
/// | `timeout` | no answer within the probe's timeout, or a 408 |
/// | `connect` | the connection could not be made |
/// | `tls` | the TLS handshake failed |
/// | `rate_limited` | 429 |
/// | `auth` | 401 or 403 |
/// | `probe_rejected` | a 400/422 saying the probe request itself was malformed |
/// | `status_4xx` | any other 4xx |
/// | `status_5xx` | a 5xx |
/// | `unsupported` | the deployment cannot be probed (no endpoint, mode not offered) |
/// | `panic` | the prober panicked |
/// | `error` | anything else |
pub const PROBE_REASONS: &[&str] = &[
    "ok",
    "timeout",
    "connect",
    "tls",
    "rate_limited",
    "auth",
    "probe_rejected",
    "status_4xx",
    "status_5xx",
    "unsupported",
    "panic",
    "error",
];

#[cfg(feature = "metrics")]
static METADATA: Metadata<'static> =
    Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

#[cfg(feature = "metrics")]
/// Attaches help texts and units to every metric above, on the recorder installed now.
/// Call it once after installing your recorder (optional: metrics are recorded either way).
pub fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_gauge!(
        DEPLOYMENT_HEALTHY,
        "1 when the deployment's last published health check passed, 0 when it failed"
    );
    describe_histogram!(
        PROBE_DURATION,
        Unit::Seconds,
        "Duration of each health probe"
    );
    describe_counter!(PROBES, "Health probes, by outcome reason");
    describe_counter!(
        ROUTING_DECISIONS,
        "Requests routed to a deployment, per route"
    );
    describe_counter!(
        HEALTH_FILTER_BYPASSES,
        "Requests routed with the health filter skipped because every deployment had failed its check"
    );
    describe_counter!(
        NO_DEPLOYMENT_AVAILABLE,
        "Requests refused because every deployment of the route was cooling down or excluded"
    );
    describe_counter!(UNKNOWN_ROUTE, "Requests for a route no deployment serves");
    describe_counter!(
        COOLDOWNS,
        "Times a deployment entered or extended a cooldown"
    );
    describe_counter!(
        PROBES_SAVED,
        "Background probes not sent because real traffic succeeded within the interval"
    );
    describe_counter!(
        EJECTIONS,
        "Times a deployment was ejected by outlier detection"
    );
}

/// The `reason` label of a probe outcome (whether it passed, the status it got and its
/// short reason, as in a `ProbeOutcome`): always one of [`PROBE_REASONS`].
pub fn probe_reason(healthy: bool, status: Option<u16>, reason: Option<&str>) -> &'static str {
    if healthy {
        return "ok";
    }
    let reason = reason.unwrap_or("");
    let starts = |p: &str| reason.starts_with(p);
    if starts("probe_rejected") {
        return "probe_rejected";
    }
    match status {
        Some(408) => "timeout",
        Some(429) => "rate_limited",
        Some(401 | 403) => "auth",
        Some(400..=499) => "status_4xx",
        Some(500..=599) => "status_5xx",
        _ if starts("timeout") => "timeout",
        _ if starts("connect") => "connect",
        _ if starts("tls") => "tls",
        _ if starts("unsupported") => "unsupported",
        _ if starts("prober panicked") => "panic",
        _ => "error",
    }
}

#[cfg(feature = "metrics")]
fn deployment_labels(d: &Deployment) -> Vec<Label> {
    let mut v = Vec::with_capacity(3);
    v.push(Label::new(
        "route",
        SharedString::from(Arc::clone(d.route_name())),
    ));
    v.push(Label::new(
        "model_id",
        SharedString::from(Arc::clone(&d.id().0)),
    ));
    v
}

#[cfg(feature = "metrics")]
/// Records one probe: its duration and its outcome's `reason` label (see [`probe_reason`]).
pub(crate) fn record_probe(d: &Deployment, reason: &'static str, latency: std::time::Duration) {
    let mut labels = deployment_labels(d);
    metrics::histogram!(PROBE_DURATION, labels.clone()).record(latency.as_secs_f64());
    labels.push(Label::from_static_parts("reason", reason));
    metrics::counter!(PROBES, labels).increment(1);
}

#[cfg(feature = "metrics")]
/// Records published health results (the deployment gauge): each deployment and whether
/// its result passed.
pub(crate) fn record_health<'a>(results: impl IntoIterator<Item = (&'a Deployment, bool)>) {
    for (d, healthy) in results {
        let v = if healthy { 1.0 } else { 0.0 };
        metrics::gauge!(DEPLOYMENT_HEALTHY, deployment_labels(d)).set(v);
    }
}

#[cfg(feature = "metrics")]
/// Records a cooldown entered by a deployment; `source` is `request` or `probe`.
pub(crate) fn record_cooldown(d: &Deployment, source: &'static str) {
    let mut labels = deployment_labels(d);
    labels.push(Label::from_static_parts("source", source));
    metrics::counter!(COOLDOWNS, labels).increment(1);
}

#[cfg(feature = "metrics")]
/// Records a probe of `d` saved by healthy traffic.
pub(crate) fn record_probe_saved(d: &Deployment) {
    metrics::counter!(PROBES_SAVED, deployment_labels(d)).increment(1);
}

#[cfg(feature = "metrics")]
/// Records an outlier ejection of `d`.
pub(crate) fn record_ejection(d: &Deployment) {
    metrics::counter!(EJECTIONS, deployment_labels(d)).increment(1);
}

#[cfg(feature = "metrics")]
/// Records a request for an unknown route.
pub(crate) fn record_unknown_route() {
    static KEY: Key = Key::from_static_name(UNKNOWN_ROUTE);
    increment(&KEY);
}

#[cfg(feature = "metrics")]
/// The routing counters of one route, with their keys built once and their handles cached.
#[derive(Debug)]
pub(crate) struct RouteMetrics {
    decisions: CachedCounter,
    bypasses: CachedCounter,
    no_deployment: CachedCounter,
}

#[cfg(feature = "metrics")]
impl RouteMetrics {
    pub(crate) fn new(route: &Arc<str>) -> Self {
        let key = |name: &'static str| {
            CachedCounter::new(Key::from_parts(
                name,
                vec![Label::new("route", SharedString::from(Arc::clone(route)))],
            ))
        };
        Self {
            decisions: key(ROUTING_DECISIONS),
            bypasses: key(HEALTH_FILTER_BYPASSES),
            no_deployment: key(NO_DEPLOYMENT_AVAILABLE),
        }
    }

    /// A request was routed; `bypassed`: with the health filter skipped.
    pub(crate) fn decided(&self, bypassed: bool) {
        self.decisions.increment();
        if bypassed {
            self.bypasses.increment();
        }
    }

    /// A request was refused: no deployment available.
    pub(crate) fn refused(&self) {
        self.no_deployment.increment();
    }
}

#[cfg(feature = "metrics")]
/// A counter's key and its handle from the first recorder that counted it: later
/// increments through that same recorder use the handle (no registry look-up per
/// request); through any other (a test's local recorder, one installed later) they look
/// the key up as before.
#[derive(Debug)]
struct CachedCounter {
    key: Key,
    handle: std::sync::OnceLock<(usize, metrics::Counter)>,
}

#[cfg(feature = "metrics")]
impl CachedCounter {
    fn new(key: Key) -> Self {
        Self {
            key,
            handle: std::sync::OnceLock::new(),
        }
    }

    fn increment(&self) {
        metrics::with_recorder(|r| {
            // The recorder's identity: its address (the global one lives forever).
            let id = std::ptr::from_ref(r).cast::<()>() as usize;
            match self.handle.get() {
                Some((at, c)) if *at == id => c.increment(1),
                Some(_) => r.register_counter(&self.key, &METADATA).increment(1),
                None => self
                    .handle
                    .get_or_init(|| (id, r.register_counter(&self.key, &METADATA)))
                    .1
                    .increment(1),
            }
        });
    }
}

#[cfg(feature = "metrics")]
fn increment(key: &Key) {
    metrics::with_recorder(|r| r.register_counter(key, &METADATA).increment(1));
}

/// Without the `metrics` feature every recording call compiles to nothing.
#[cfg(not(feature = "metrics"))]
mod off {
    use std::sync::Arc;

    use crate::deployment::Deployment;

    /// Attaches help texts and units to every metric (a no-op: this build lacks the
    /// `metrics` feature).
    pub fn describe() {}

    #[inline(always)]
    pub(crate) fn record_probe(_: &Deployment, _: &'static str, _: std::time::Duration) {}

    #[inline(always)]
    pub(crate) fn record_health<'a>(_: impl IntoIterator<Item = (&'a Deployment, bool)>) {}

    #[inline(always)]
    pub(crate) fn record_cooldown(_: &Deployment, _: &'static str) {}

    #[inline(always)]
    pub(crate) fn record_ejection(_: &Deployment) {}

    #[inline(always)]
    pub(crate) fn record_probe_saved(_: &Deployment) {}

    #[inline(always)]
    pub(crate) fn record_unknown_route() {}

    /// The routing counters of one route (nothing: no `metrics` feature).
    #[derive(Debug)]
    pub(crate) struct RouteMetrics;

    impl RouteMetrics {
        pub(crate) fn new(_: &Arc<str>) -> Self {
            Self
        }

        #[inline(always)]
        pub(crate) fn decided(&self, _: bool) {}

        #[inline(always)]
        pub(crate) fn refused(&self) {}
    }
}
#[cfg(not(feature = "metrics"))]
pub use off::describe;
#[cfg(not(feature = "metrics"))]
pub(crate) use off::{
    RouteMetrics, record_cooldown, record_ejection, record_health, record_probe,
    record_probe_saved, record_unknown_route,
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_a_fixed_set() {
        let cases = [
            (true, None, None, "ok"),
            (false, Some(408), Some("timeout"), "timeout"),
            (false, None, Some("timeout after 5s"), "timeout"),
            (false, None, Some("connect: refused"), "connect"),
            (false, None, Some("tls: bad cert"), "tls"),
            (false, Some(429), Some("x"), "rate_limited"),
            (false, Some(401), Some("x"), "auth"),
            (false, Some(404), Some("x"), "status_4xx"),
            (false, Some(503), Some("x"), "status_5xx"),
            (
                false,
                Some(400),
                Some("probe_rejected: max_tokens"),
                "probe_rejected",
            ),
            (false, None, Some("unsupported: no api_base"), "unsupported"),
            (false, None, Some("prober panicked"), "panic"),
            (false, None, Some("anything at all, sk-123"), "error"),
            (false, None, None, "error"),
        ];
        for (healthy, status, reason, want) in cases {
            let got = probe_reason(healthy, status, reason);
            assert_eq!(got, want, "{healthy} {status:?} {reason:?}");
            assert!(PROBE_REASONS.contains(&got));
        }
    }
}
