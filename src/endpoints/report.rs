//! The `/health` report in LiteLLM's shape, built from an **allowlist**.
//!
//! LiteLLM builds its entries from a deployment's `litellm_params` minus a denylist, and
//! has leaked credentials through `/health` whenever a new credential-bearing param
//! appeared. Here an entry holds only the fields named below, whatever the deployment
//! carries; every text in it goes through the state's [`Scrubber`](crate::secret::Scrubber) once
//! more (a result published by other code may quote a key), and `api_base` loses any
//! `user:password@` and query string.

use std::sync::Arc;

use serde::{Serialize, Serializer, ser::SerializeMap};
use tokio::time::Instant;

use crate::{
    deployment::{Deployment, DeploymentId, Mode, ParamValue},
    health::{HealthRecord, HealthSource, ProbeTier},
    probe::ProbeReport,
    secret::{Scrubber, looks_secret},
};

/// `litellm_params` shown as region fields (string values only).
pub const REGION_FIELDS: &[&str] = &["region_name", "aws_region_name", "vertex_location"];

/// How much an entry shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct View {
    /// `health_check_details`.
    pub(crate) details: bool,
    /// The caller is an admin (may see `api_base` and `api_version`).
    pub(crate) admin: bool,
}

/// One deployment in a [`HealthReport`].
///
/// Serialized in LiteLLM's shape: `model`, `model_id`, then, with details, `api_base` and
/// `api_version` (admin callers only), `mode` and region fields when set, and `error` when
/// unhealthy; an unhealthy entry always carries `exception_status` (the status code, 408
/// for a timeout, `null` when no answer came).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct EndpointEntry {
    /// The upstream model (`litellm_params.model`).
    pub model: String,
    /// The deployment's id.
    pub model_id: DeploymentId,
    /// Whether it passed (`false` for a deployment not checked yet).
    pub healthy: bool,
    /// Whether it has a result at all.
    pub checked: bool,
    /// `api_base`, without credentials or query string.
    pub api_base: Option<String>,
    /// `api_version`.
    pub api_version: Option<String>,
    /// `model_info.mode`, when configured.
    pub mode: Option<Mode>,
    /// Region fields ([`REGION_FIELDS`]) that are set.
    pub regions: Vec<(&'static str, String)>,
    /// Why it failed (short, scrubbed); `None` when healthy or details are off.
    pub error: Option<String>,
    /// The status code of a failure (408 for a timeout), when there was one.
    pub exception_status: Option<u16>,
    /// When it was checked (not serialized in LiteLLM's shape; `time` in `health+json`).
    pub checked_at: Option<Instant>,
    /// Where the result came from. A result from traffic
    /// (`health_check_skip_when_traffic_healthy`) adds `"source": "traffic"` and
    /// `"checked_at"` (RFC 3339) to the entry; a probe's keeps LiteLLM's shape.
    pub source: HealthSource,
    /// Which tier of a tiered round decided it (`health_check_billed_every`, probe
    /// budgets): shown as `"tier": "cheap"|"billed"`; `None` (not shown) otherwise.
    pub tier: Option<ProbeTier>,
}

impl EndpointEntry {
    pub(crate) fn new(
        d: &Deployment,
        healthy: bool,
        reason: Option<&str>,
        status: Option<u16>,
        checked_at: Option<Instant>,
        view: View,
        scrubber: &Scrubber,
    ) -> Self {
        let clean = |s: &str| scrubber.scrub(s).into_owned();
        let p = d.params();
        let (details, admin) = (view.details, view.details && view.admin);
        let regions = if details {
            REGION_FIELDS
                .iter()
                .filter(|k| !looks_secret(k))
                .filter_map(|k| match p.extra.get(*k) {
                    Some(ParamValue::Plain(serde_json::Value::String(v))) => Some((*k, clean(v))),
                    _ => None,
                })
                .collect()
        } else {
            Vec::new()
        };
        Self {
            model: clean(&p.model),
            model_id: d.id().clone(),
            healthy,
            checked: true,
            api_base: admin
                .then(|| p.api_base.as_deref().map(|b| clean(&displayable_url(b))))
                .flatten(),
            api_version: admin.then(|| p.api_version.as_deref().map(clean)).flatten(),
            mode: details.then_some(d.info().mode).flatten(),
            regions,
            error: (details && !healthy).then(|| clean(reason.unwrap_or("unhealthy"))),
            exception_status: if healthy { None } else { status },
            checked_at,
            source: HealthSource::Probe,
            tier: None,
        }
    }

    pub(crate) fn from_record(
        d: &Deployment,
        rec: &HealthRecord,
        view: View,
        scrubber: &Scrubber,
    ) -> Self {
        let mut e = Self::new(
            d,
            rec.healthy,
            rec.reason.as_deref(),
            rec.status,
            Some(rec.checked_at),
            view,
            scrubber,
        );
        e.source = rec.source;
        e.tier = rec.tier;
        e
    }

    pub(crate) fn from_probe(r: &ProbeReport, view: View, scrubber: &Scrubber) -> Self {
        let o = &r.outcome;
        Self::new(
            &r.deployment,
            o.healthy,
            o.reason.as_deref(),
            o.status,
            Some(r.checked_at),
            view,
            scrubber,
        )
    }

    /// A deployment that is unsupported (never probed): its reason as `error`.
    pub(crate) fn unsupported(
        d: &Deployment,
        reason: &str,
        view: View,
        scrubber: &Scrubber,
    ) -> Self {
        let mut e = Self::new(d, false, Some(reason), None, None, view, scrubber);
        e.checked = false;
        e
    }

    /// A deployment not checked yet (background mode, before its first result).
    pub(crate) fn unchecked(d: &Deployment, view: View, scrubber: &Scrubber) -> Self {
        let mut e = Self::new(d, true, None, None, None, view, scrubber);
        e.healthy = false;
        e.checked = false;
        e
    }
}

impl Serialize for EndpointEntry {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("model", &self.model)?;
        m.serialize_entry("model_id", &self.model_id)?;
        if let Some(b) = &self.api_base {
            m.serialize_entry("api_base", b)?;
        }
        if let Some(v) = &self.api_version {
            m.serialize_entry("api_version", v)?;
        }
        if let Some(mode) = self.mode {
            m.serialize_entry("mode", &mode)?;
        }
        for (k, v) in &self.regions {
            m.serialize_entry(k, v)?;
        }
        if let Some(e) = &self.error {
            m.serialize_entry("error", e)?;
        }
        if self.checked && !self.healthy {
            m.serialize_entry("exception_status", &self.exception_status)?;
        }
        if let Some(t) = self.tier {
            m.serialize_entry("tier", t.as_str())?;
        }
        if self.source == HealthSource::Traffic {
            m.serialize_entry("source", self.source.as_str())?;
            if let Some(t) = self.checked_at {
                m.serialize_entry(
                    "checked_at",
                    &super::wire::rfc3339(super::wire::wall_clock(t)),
                )?;
            }
        }
        m.end()
    }
}

/// The body of `/health`: LiteLLM's four keys, plus `unchecked_endpoints` /
/// `unchecked_count` for deployments a background-served answer has no result for yet, and
/// `unsupported_endpoints` / `unsupported_count` for those that are never probed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct HealthReport {
    /// Deployments that passed.
    pub healthy_endpoints: Vec<EndpointEntry>,
    /// Deployments that failed.
    pub unhealthy_endpoints: Vec<EndpointEntry>,
    /// How many passed.
    pub healthy_count: usize,
    /// How many failed.
    pub unhealthy_count: usize,
    /// Deployments with no result yet (background checks on, first round not done), and
    /// those an on-demand round could not probe because this process ran out of a
    /// resource (their `error` says so). Beyond LiteLLM, which lists nothing for them.
    pub unchecked_endpoints: Vec<EndpointEntry>,
    /// How many have no result yet.
    pub unchecked_count: usize,
    /// Deployments that cannot be probed (or forwarded), decided at start-up; each with its
    /// reason as `error`. Beyond LiteLLM.
    pub unsupported_endpoints: Vec<EndpointEntry>,
    /// How many are unsupported.
    pub unsupported_count: usize,
    /// The probe budgets, when one is configured (beyond LiteLLM): `spent` (billed probes
    /// are being skipped), `limit` (the config key spent), `until` (RFC 3339, when it
    /// refills), `billed_probes_this_minute`, `max_probes_per_minute`, `cost_today`,
    /// `max_cost_per_day`, and `skipped` (`model_id`, `limit`, `until` of each deployment
    /// whose billed probe was refused).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probe_budget: Option<serde_json::Value>,
}

/// `/health`'s `probe_budget` object.
pub(crate) fn budget_json(b: &crate::probe::BudgetStatus) -> serde_json::Value {
    let at = |t: Instant| {
        let now = Instant::now();
        let wall = if t >= now {
            std::time::SystemTime::now() + (t - now)
        } else {
            super::wire::wall_clock(t)
        };
        super::wire::rfc3339(wall)
    };
    let skipped: Vec<serde_json::Value> = b
        .skipped
        .iter()
        .map(|s| {
            serde_json::json!({
                "model_id": s.model_id.as_str(),
                "limit": s.limit,
                "until": at(s.until),
            })
        })
        .collect();
    serde_json::json!({
        "spent": b.spent,
        "limit": b.limit,
        "until": b.until.map(at),
        "billed_probes_this_minute": b.billed_probes_this_minute,
        "max_probes_per_minute": b.max_probes_per_minute,
        "cost_today": b.cost_today,
        "max_cost_per_day": b.max_cost_per_day,
        "skipped": skipped,
    })
}

impl HealthReport {
    pub(crate) fn push(&mut self, e: EndpointEntry) {
        if e.healthy {
            self.healthy_endpoints.push(e);
        } else {
            self.unhealthy_endpoints.push(e);
        }
        self.healthy_count = self.healthy_endpoints.len();
        self.unhealthy_count = self.unhealthy_endpoints.len();
    }

    pub(crate) fn push_unchecked(&mut self, e: EndpointEntry) {
        self.unchecked_endpoints.push(e);
        self.unchecked_count = self.unchecked_endpoints.len();
    }

    pub(crate) fn push_unsupported(&mut self, e: EndpointEntry) {
        self.unsupported_endpoints.push(e);
        self.unsupported_count = self.unsupported_endpoints.len();
    }

    /// Adds the unsupported deployments among `deployments` (never in a probe round).
    pub(crate) fn add_unsupported(
        &mut self,
        snap: &crate::health::HealthSnapshot,
        deployments: &[Arc<Deployment>],
        view: View,
        scrubber: &Scrubber,
    ) {
        for d in deployments {
            if let Some(u) = snap.unsupported(d.id().as_str()) {
                self.push_unsupported(EndpointEntry::unsupported(d, &u.reason, view, scrubber));
            }
        }
    }

    /// A report of a round run now. A probe this process could not make (a local resource
    /// error: [`ProbeOutcome::is_inconclusive`](crate::probe::ProbeOutcome::is_inconclusive))
    /// is listed as unchecked, with its reason, never as unhealthy: it says nothing about
    /// the upstream.
    pub(crate) fn from_round(results: &[ProbeReport], view: View, scrubber: &Scrubber) -> Self {
        let mut r = Self::default();
        for p in results {
            if p.outcome.is_inconclusive() {
                let mut e = EndpointEntry::unchecked(&p.deployment, view, scrubber);
                e.error = view.details.then(|| {
                    scrubber
                        .scrub(p.outcome.reason.as_deref().unwrap_or("local error"))
                        .into_owned()
                });
                e.checked_at = Some(p.checked_at);
                r.push_unchecked(e);
                continue;
            }
            r.push(EndpointEntry::from_probe(p, view, scrubber));
        }
        r
    }

    /// A report of the published results of `deployments`.
    pub(crate) fn from_snapshot(
        snap: &crate::health::HealthSnapshot,
        deployments: &[Arc<Deployment>],
        view: View,
        scrubber: &Scrubber,
    ) -> Self {
        let mut r = Self::default();
        for d in deployments {
            if snap.unsupported(d.id().as_str()).is_some() {
                continue; // see `add_unsupported`
            }
            match snap.health(d.id().as_str()) {
                Some(rec) => r.push(EndpointEntry::from_record(d, rec, view, scrubber)),
                None => r.push_unchecked(EndpointEntry::unchecked(d, view, scrubber)),
            }
        }
        r
    }
}

/// `url` without `user:password@` and without its query string or fragment.
pub(crate) fn displayable_url(url: &str) -> String {
    let url = url.split(['?', '#']).next().unwrap_or("");
    let (scheme, rest) = match url.split_once("://") {
        Some((s, r)) => (Some(s), r),
        None => (None, url),
    };
    let end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    match scheme {
        Some(s) => format!("{s}://{host}{path}"),
        None => format!("{host}{path}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_credentials_and_queries() {
        assert_eq!(
            displayable_url("https://user:pw@host.example:8443/v1?key=abc#x"),
            "https://host.example:8443/v1"
        );
        assert_eq!(
            displayable_url("http://127.0.0.1:9/v1"),
            "http://127.0.0.1:9/v1"
        );
        assert_eq!(displayable_url("host/v1?sig=1"), "host/v1");
    }

    #[test]
    fn entries_follow_the_view() {
        let d = Deployment::builder("r", "azure/gpt-4o")
            .id("a")
            .api_base("https://x.example/")
            .api_version("2024-01-01")
            .param("region_name", "eastus".into())
            .build();
        let sc = Scrubber::default();
        let full = View {
            details: true,
            admin: true,
        };
        let e = EndpointEntry::new(&d, false, Some("boom"), Some(500), None, full, &sc);
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"model": "azure/gpt-4o", "model_id": "a",
                "api_base": "https://x.example/", "api_version": "2024-01-01",
                "region_name": "eastus", "error": "boom", "exception_status": 500})
        );
        let public = View {
            details: true,
            admin: false,
        };
        let v = serde_json::to_value(EndpointEntry::new(
            &d,
            true,
            None,
            Some(200),
            None,
            public,
            &sc,
        ))
        .unwrap();
        assert_eq!(
            v,
            serde_json::json!({"model": "azure/gpt-4o", "model_id": "a", "region_name": "eastus"})
        );
        let minimal = View {
            details: false,
            admin: true,
        };
        let v = serde_json::to_value(EndpointEntry::new(
            &d,
            false,
            Some("x"),
            None,
            None,
            minimal,
            &sc,
        ))
        .unwrap();
        assert_eq!(
            v,
            serde_json::json!({"model": "azure/gpt-4o", "model_id": "a", "exception_status": null})
        );
    }
}
