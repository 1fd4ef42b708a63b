//! From raw probe results to published health: hysteresis, transient errors, cooldown.
//!
//! * **Hysteresis** (as Envoy and Pingora do it): a deployment flips from healthy to
//!   unhealthy only after `health_check_unhealthy_threshold` consecutive failed probes, and
//!   back after `health_check_healthy_threshold` consecutive passed ones (defaults 1 and 1,
//!   LiteLLM's behaviour). Its first result is published as it is: there is no earlier
//!   state to protect, and an unknown deployment is already eligible. While a flip is
//!   pending, the held state is republished with a fresh `checked_at`, so it does not go
//!   stale while the evidence builds up.
//! * **Transient errors**: with `health_check_ignore_transient_errors`, a 429 or 408
//!   (timeouts included) changes nothing: no new record, no step towards a flip.
//! * **Inconclusive results**: a probe this process could not make (a local resource
//!   error such as "Too many open files", class `Local`) changes nothing either, whatever
//!   the settings: it says nothing about the upstream.
//! * **Logging**: a change of state (unknown → unhealthy, healthy ↔ unhealthy) is one info
//!   event, `health_check_state_changed`; everything else is debug.
//! * **Cooldown** (opt-in): probe results count as requests would, a pass as a success
//!   and a load-related failure (classes `RateLimited`, `Quota`, `Timeout`, `Overloaded`,
//!   `ServerError`: 429, 402, 408 or a timeout, 5xx) as a failure; other failures (auth,
//!   404, `probe_rejected`, connection errors) are left to health routing.
//! * **Upstream cooldowns end** (always): a passed probe ends a cooldown that an
//!   upstream's `Retry-After` lengthened beyond `cooldown_time`.

use std::collections::HashMap;

use foldhash::fast::RandomState;

use super::outcome::ProbeReport;
use crate::{
    classify::Class,
    cooldown::CooldownPolicy,
    deployment::DeploymentId,
    health::{HealthRecord, HealthState},
};

/// The rules applied to results, from `general_settings`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Rules {
    pub(crate) unhealthy_threshold: u32,
    pub(crate) healthy_threshold: u32,
    pub(crate) ignore_transient: bool,
}

#[derive(Debug)]
struct Track {
    /// The published state.
    healthy: bool,
    /// Consecutive results against the published state.
    streak: u32,
    /// The last record published.
    last: HealthRecord,
}

/// Per-deployment consecutive-result counters of one loop.
#[derive(Debug, Default)]
pub(crate) struct Tracker {
    by_id: HashMap<DeploymentId, Track, RandomState>,
}

impl Tracker {
    /// Forgets deployments for which `keep` says no (removed from the state).
    pub(crate) fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.by_id.retain(|id, _| keep(id.as_str()));
    }

    /// The records to publish for a round's results.
    pub(crate) fn apply(
        &mut self,
        results: &[ProbeReport],
        rules: Rules,
    ) -> Vec<(DeploymentId, HealthRecord)> {
        let mut out = Vec::with_capacity(results.len());
        for r in results {
            let id = r.id();
            let route = r.deployment.route();
            if r.outcome.is_inconclusive() {
                tracing::debug!(model_id = %id, route, reason = ?r.outcome.reason, "health_check_inconclusive_ignored");
                continue;
            }
            if rules.ignore_transient && r.outcome.is_transient() {
                tracing::debug!(model_id = %id, route, status = ?r.outcome.status, "health_check_transient_ignored");
                continue;
            }
            let new = r.record();
            let published = match self.by_id.get_mut(id) {
                None => {
                    if new.healthy {
                        tracing::debug!(model_id = %id, route, "health_check_first_result healthy=true");
                    } else {
                        log_change(id, route, None, &new);
                    }
                    self.by_id.insert(
                        id.clone(),
                        Track {
                            healthy: new.healthy,
                            streak: 0,
                            last: new.clone(),
                        },
                    );
                    new
                }
                Some(t) if t.healthy == new.healthy => {
                    t.streak = 0;
                    t.last = new.clone();
                    new
                }
                Some(t) => {
                    t.streak += 1;
                    let needed = if new.healthy {
                        rules.healthy_threshold
                    } else {
                        rules.unhealthy_threshold
                    };
                    if t.streak >= needed {
                        log_change(id, route, Some(t.healthy), &new);
                        t.healthy = new.healthy;
                        t.streak = 0;
                        t.last = new.clone();
                        new
                    } else {
                        tracing::debug!(
                            model_id = %id,
                            route,
                            held_healthy = t.healthy,
                            streak = t.streak,
                            needed,
                            reason = ?new.reason,
                            "health_check_flip_pending"
                        );
                        t.last.checked_at = new.checked_at;
                        t.last.clone()
                    }
                }
            };
            out.push((id.clone(), published));
        }
        out
    }
}

fn log_change(id: &DeploymentId, route: &str, from: Option<bool>, new: &HealthRecord) {
    let from = match from {
        None => "unknown",
        Some(true) => "healthy",
        Some(false) => "unhealthy",
    };
    let healthy = new.healthy;
    tracing::info!(
        model_id = %id,
        route,
        from,
        healthy,
        status = ?new.status,
        reason = new.reason.as_deref().unwrap_or(""),
        "health_check_state_changed model_id={id} healthy={healthy}"
    );
}

/// Counts probe results in the deployments' cooldown windows (see the module docs).
pub(crate) fn feed_cooldown(state: &HealthState, results: &[ProbeReport]) {
    let snap = state.load();
    let now = state.now_nanos();
    let policy = &CooldownPolicy::from_config(state.config());
    for r in results {
        let o = &r.outcome;
        let class = o.class();
        if !matches!(
            class,
            Class::Success
                | Class::RateLimited { .. }
                | Class::Quota
                | Class::Timeout
                | Class::Overloaded
                | Class::ServerError
        ) {
            continue;
        }
        let Some(entry) = snap.entry_by_id(r.id().as_str()) else {
            continue;
        };
        let route_len = snap
            .routes
            .get(r.deployment.route())
            .map_or(1, |route| route.routable);
        let own = r.deployment.params().cooldown_time;
        if let Some(d) = entry
            .stats
            .cooldown
            .record(&class, now, route_len, policy, own)
        {
            crate::telemetry::record_cooldown(&r.deployment, "probe");
            tracing::info!(
                model_id = %r.id(),
                route = r.deployment.route(),
                status = ?o.status,
                cooldown_secs = d.as_secs_f64(),
                "health_check_cooldown"
            );
        }
    }
}

/// Ends the ejections, and the cooldowns upstreams lengthened, of deployments whose probe passed.
pub(crate) fn end_upstream_cooldowns(state: &HealthState, results: &[ProbeReport]) {
    let snap = state.load();
    let now = state.now_nanos();
    for r in results.iter().filter(|r| r.outcome.healthy) {
        let Some(entry) = snap.entry_by_id(r.id().as_str()) else {
            continue;
        };
        // Envoy's `successful_active_health_check_uneject_host`.
        if entry.stats.ejection.end(now) {
            tracing::info!(
                model_id = %r.id(),
                route = r.deployment.route(),
                "health_check_ejection_ended"
            );
        }
        if entry.stats.cooldown.end_upstream_set(now) {
            tracing::info!(
                model_id = %r.id(),
                route = r.deployment.route(),
                "health_check_cooldown_ended"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::time::Instant;

    use super::*;
    use crate::{deployment::Deployment, probe::outcome::ProbeOutcome};

    fn report(d: &Arc<Deployment>, outcome: ProbeOutcome) -> ProbeReport {
        ProbeReport {
            deployment: Arc::clone(d),
            outcome,
            latency: std::time::Duration::ZERO,
            checked_at: Instant::now(),
        }
    }

    const RULES: Rules = Rules {
        unhealthy_threshold: 3,
        healthy_threshold: 2,
        ignore_transient: false,
    };

    fn step(
        t: &mut Tracker,
        d: &Arc<Deployment>,
        o: ProbeOutcome,
        rules: Rules,
    ) -> Option<HealthRecord> {
        t.apply(&[report(d, o)], rules).pop().map(|(_, r)| r)
    }

    #[test]
    fn flips_only_after_n_consecutive_results() {
        let d = Arc::new(Deployment::builder("r", "m").id("a").build());
        let mut t = Tracker::default();
        let fail = || ProbeOutcome::unhealthy("boom").with_status(500);
        assert!(
            step(&mut t, &d, ProbeOutcome::healthy(), RULES)
                .unwrap()
                .healthy
        );
        // Two failures: held healthy. A pass resets the streak.
        assert!(step(&mut t, &d, fail(), RULES).unwrap().healthy);
        assert!(step(&mut t, &d, fail(), RULES).unwrap().healthy);
        assert!(
            step(&mut t, &d, ProbeOutcome::healthy(), RULES)
                .unwrap()
                .healthy
        );
        assert!(step(&mut t, &d, fail(), RULES).unwrap().healthy);
        assert!(step(&mut t, &d, fail(), RULES).unwrap().healthy);
        let flipped = step(&mut t, &d, fail(), RULES).unwrap();
        assert_eq!((flipped.healthy, flipped.status), (false, Some(500)));
        // Back: one pass holds unhealthy (with its reason, freshly dated), two flip.
        let held = step(&mut t, &d, ProbeOutcome::healthy(), RULES).unwrap();
        assert_eq!(
            (held.healthy, held.reason.as_deref()),
            (false, Some("boom"))
        );
        assert!(
            step(&mut t, &d, ProbeOutcome::healthy(), RULES)
                .unwrap()
                .healthy
        );
    }

    #[test]
    fn local_resource_errors_change_nothing() {
        let d = Arc::new(Deployment::builder("r", "m").id("a").build());
        let rules = Rules {
            unhealthy_threshold: 1,
            ..RULES
        };
        let local = || {
            ProbeOutcome::unhealthy("local: tcp open error: Too many open files")
                .with_class(Class::Local)
        };
        let mut t = Tracker::default();
        // No earlier state: nothing is published (the deployment stays unchecked).
        assert!(step(&mut t, &d, local(), rules).is_none());
        assert!(
            step(&mut t, &d, ProbeOutcome::healthy(), rules)
                .unwrap()
                .healthy
        );
        // However many, whatever the threshold: no flip, no record.
        for _ in 0..5 {
            assert!(step(&mut t, &d, local(), rules).is_none());
        }
        assert!(
            step(&mut t, &d, ProbeOutcome::healthy(), rules)
                .unwrap()
                .healthy
        );
    }

    #[test]
    fn first_result_is_published_as_is() {
        let d = Arc::new(Deployment::builder("r", "m").id("a").build());
        let mut t = Tracker::default();
        let rec = step(&mut t, &d, ProbeOutcome::unhealthy("down"), RULES).unwrap();
        assert!(!rec.healthy);
    }

    #[test]
    fn transient_results_are_ignored_when_asked() {
        let d = Arc::new(Deployment::builder("r", "m").id("a").build());
        let rules = Rules {
            unhealthy_threshold: 1,
            healthy_threshold: 1,
            ignore_transient: true,
        };
        let mut t = Tracker::default();
        assert!(
            step(&mut t, &d, ProbeOutcome::healthy(), rules)
                .unwrap()
                .healthy
        );
        assert_eq!(step(&mut t, &d, ProbeOutcome::timeout(), rules), None);
        assert_eq!(
            step(
                &mut t,
                &d,
                ProbeOutcome::unhealthy("slow").with_status(429),
                rules
            ),
            None
        );
        assert!(
            !step(
                &mut t,
                &d,
                ProbeOutcome::unhealthy("x").with_status(503),
                rules
            )
            .unwrap()
            .healthy
        );
        // Not ignoring: a timeout counts.
        let mut t = Tracker::default();
        assert!(
            !step(
                &mut t,
                &d,
                ProbeOutcome::timeout(),
                Rules {
                    ignore_transient: false,
                    ..rules
                }
            )
            .unwrap()
            .healthy
        );
    }

    #[test]
    fn retain_forgets_removed_deployments() {
        let d = Arc::new(Deployment::builder("r", "m").id("a").build());
        let mut t = Tracker::default();
        step(&mut t, &d, ProbeOutcome::healthy(), RULES);
        t.retain(|id| id != "a");
        assert!(t.by_id.is_empty());
    }
}
