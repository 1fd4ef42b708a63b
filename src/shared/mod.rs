//! Health state shared across processes.
//!
//! With many gateway processes, only one should probe each deployment per interval and
//! all should route on the same results. In memory (the default) every process probes on
//! its own; with the `redis` feature and `use_shared_health_check: true`, processes
//! coordinate through Redis and read shared results into their local snapshot in the
//! background (the request path never touches Redis).
//!
//! [`SharedStatus`] is what `/health/shared-status` shows; the coordinator publishes it
//! through [`HealthState::set_shared_status`](crate::HealthState::set_shared_status).

use std::{fmt, time::SystemTime};

use serde::Serialize;

/// Whether this process shares health results with others.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SharedMode {
    /// Not shared: this process probes on its own (the in-memory default).
    #[default]
    Off,
    /// Shared through the store.
    On,
    /// Sharing is configured but the store is unreachable: probing locally until it is back.
    Degraded,
}

impl fmt::Display for SharedMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Off => "off",
            Self::On => "on",
            Self::Degraded => "degraded",
        })
    }
}

/// The state of health sharing, as `/health/shared-status` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SharedStatus {
    /// Off, on, or degraded.
    pub mode: SharedMode,
    /// The store in use (`memory`, `redis`).
    pub backend: &'static str,
    /// This process's id (random per process).
    pub process_id: String,
    /// Who holds the probing lease now, if known.
    pub lease_holder: Option<String>,
    /// When the shared results were last written (wall clock: it crosses processes).
    pub results_written_at: Option<SystemTime>,
    /// Which process wrote them.
    pub last_checked_by: Option<String>,
    /// The fencing token stored with the latest results.
    pub fencing_token: Option<u64>,
    /// Why the mode is degraded, if it is (short, secret-free).
    pub detail: Option<String>,
}

impl SharedStatus {
    /// The in-memory default: not shared.
    pub fn local(process_id: impl Into<String>) -> Self {
        Self {
            mode: SharedMode::Off,
            backend: "memory",
            process_id: process_id.into(),
            lease_holder: None,
            results_written_at: None,
            last_checked_by: None,
            fencing_token: None,
            detail: None,
        }
    }
}

/// A random process id: 16 hex digits, unique per process (not a timestamp, which collides).
pub(crate) fn random_process_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}
