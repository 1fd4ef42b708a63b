//! [`SharingSettings`]: the knobs of cross-process coordination, each with a default tied
//! to the probe interval so that one setting (`health_check_interval`) is usually enough.

use std::time::Duration;

use crate::{config::HealthCheckSettings, error::ConfigError};

/// The longest default lease: a crashed holder is replaced after at most this (plus a poll).
pub const MAX_DEFAULT_LEASE: Duration = Duration::from_secs(10);
/// The longest default timeout of one store command.
pub const MAX_DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(1);
/// The default time between two polls of the store.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(500);
/// The default time between two exchanges of `usage-based-routing-v2` counters.
pub const DEFAULT_USAGE_FLUSH_INTERVAL: Duration = Duration::from_millis(200);

/// How processes coordinate through a [`HealthStore`](super::HealthStore); see
/// [`ProbeLoopBuilder::store`](crate::probe::ProbeLoopBuilder::store).
///
/// | knob | default |
/// |---|---|
/// | [`poll_interval`](Self::poll_interval) | 500 ms: followers see a new round within that plus one round trip (shared cooldowns arrive by push at once; the poll catches up on lost ones) |
/// | [`lease_ttl`](Self::lease_ttl) | interval / 2, at most 10 s; renewed every third of it while probing |
/// | [`command_timeout`](Self::command_timeout) | lease / 2, at most 1 s: the bound on every store call |
/// | [`takeover_after`](Self::takeover_after) | one interval past the due time of the next round (so about two intervals after the last one) |
/// | [`share_cooldowns`](Self::share_cooldowns) | off (on for the store `use_shared_health_check` asks for): cooldowns and ejections are pushed to the other processes at once, and polled as a fallback |
/// | [`usage_flush_interval`](Self::usage_flush_interval) | 200 ms: how often `usage-based-routing-v2` counters are exchanged with the store |
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SharingSettings {
    /// Time between two polls of the store. `None`: [`DEFAULT_POLL_INTERVAL`].
    pub poll_interval: Option<Duration>,
    /// How long a lease lasts unless renewed. `None`: interval / 2, at most [`MAX_DEFAULT_LEASE`].
    pub lease_ttl: Option<Duration>,
    /// The timeout of every store call. `None`: lease / 2, at most [`MAX_DEFAULT_COMMAND_TIMEOUT`].
    pub command_timeout: Option<Duration>,
    /// How long past a round's due time a follower waits for it before it probes on its
    /// own. `None`: one interval.
    pub takeover_after: Option<Duration>,
    /// Whether a cooldown (or outlier ejection) entered in one process is applied in the others.
    pub share_cooldowns: bool,
    /// Time between two exchanges of `usage-based-routing-v2` counters with the store.
    /// `None`: [`DEFAULT_USAGE_FLUSH_INTERVAL`].
    pub usage_flush_interval: Option<Duration>,
}

impl SharingSettings {
    /// The defaults (see the table above).
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets [`poll_interval`](Self::poll_interval).
    pub fn poll_interval(mut self, d: Duration) -> Self {
        self.poll_interval = Some(d);
        self
    }

    /// Sets [`lease_ttl`](Self::lease_ttl).
    pub fn lease_ttl(mut self, d: Duration) -> Self {
        self.lease_ttl = Some(d);
        self
    }

    /// Sets [`command_timeout`](Self::command_timeout).
    pub fn command_timeout(mut self, d: Duration) -> Self {
        self.command_timeout = Some(d);
        self
    }

    /// Sets [`takeover_after`](Self::takeover_after).
    pub fn takeover_after(mut self, d: Duration) -> Self {
        self.takeover_after = Some(d);
        self
    }

    /// Sets [`share_cooldowns`](Self::share_cooldowns).
    pub fn share_cooldowns(mut self, on: bool) -> Self {
        self.share_cooldowns = on;
        self
    }

    /// Sets [`usage_flush_interval`](Self::usage_flush_interval).
    pub fn usage_flush_interval(mut self, d: Duration) -> Self {
        self.usage_flush_interval = Some(d);
        self
    }

    /// The effective values for `health`, checked.
    pub(crate) fn resolve(&self, health: &HealthCheckSettings) -> Result<Resolved, ConfigError> {
        let interval = health.interval;
        let nonzero = |d: Duration, field: &str| {
            if d.is_zero() {
                Err(ConfigError::invalid(
                    format!("sharing.{field}"),
                    "must be greater than zero",
                ))
            } else {
                Ok(d)
            }
        };
        let poll = nonzero(
            self.poll_interval.unwrap_or(DEFAULT_POLL_INTERVAL),
            "poll_interval",
        )?;
        let lease = nonzero(
            self.lease_ttl
                .unwrap_or_else(|| (interval / 2).min(MAX_DEFAULT_LEASE)),
            "lease_ttl",
        )?;
        let command = nonzero(
            self.command_timeout
                .unwrap_or_else(|| (lease / 2).min(MAX_DEFAULT_COMMAND_TIMEOUT)),
            "command_timeout",
        )?;
        let takeover = self.takeover_after.unwrap_or(interval);
        let usage_flush = nonzero(
            self.usage_flush_interval
                .unwrap_or(DEFAULT_USAGE_FLUSH_INTERVAL),
            "usage_flush_interval",
        )?;
        Ok(Resolved {
            interval,
            poll,
            lease,
            renew_every: (lease / 3).max(Duration::from_millis(1)),
            command,
            takeover,
            keep_results: health.staleness_threshold(),
            share_cooldowns: self.share_cooldowns,
            usage_flush,
        })
    }
}

/// [`SharingSettings`] with every default filled in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Resolved {
    pub(crate) interval: Duration,
    pub(crate) poll: Duration,
    pub(crate) lease: Duration,
    pub(crate) renew_every: Duration,
    pub(crate) command: Duration,
    pub(crate) takeover: Duration,
    /// How long the store keeps a round: the staleness threshold, after which it would be
    /// ignored anyway.
    pub(crate) keep_results: Duration,
    pub(crate) share_cooldowns: bool,
    pub(crate) usage_flush: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_interval() {
        let mut h = HealthCheckSettings {
            interval: Duration::from_secs(300),
            ..Default::default()
        };
        let r = SharingSettings::new().resolve(&h).unwrap();
        assert_eq!(
            (r.poll, r.lease, r.command, r.takeover, r.keep_results),
            (
                Duration::from_millis(500),
                Duration::from_secs(10),
                Duration::from_secs(1),
                Duration::from_secs(300),
                Duration::from_secs(600)
            )
        );
        h.interval = Duration::from_secs(1);
        let r = SharingSettings::new().resolve(&h).unwrap();
        assert_eq!(
            (r.lease, r.command),
            (Duration::from_millis(500), Duration::from_millis(250))
        );
    }

    #[test]
    fn zero_durations_are_rejected_by_name() {
        let h = HealthCheckSettings::default();
        let e = SharingSettings::new()
            .lease_ttl(Duration::ZERO)
            .resolve(&h)
            .unwrap_err();
        assert_eq!(e.field(), "sharing.lease_ttl");
        let e = SharingSettings::new()
            .poll_interval(Duration::ZERO)
            .resolve(&h)
            .unwrap_err();
        assert_eq!(e.field(), "sharing.poll_interval");
    }
}
