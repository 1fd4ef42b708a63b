//! Health state shared across processes.
//!
//! With many gateway processes, only one should probe each deployment per interval and
//! all should route on the same results. Without a store (the default) every process
//! probes on its own. With a [`HealthStore`] ([`RedisStore`] behind the `redis` feature,
//! switched on by `general_settings.use_shared_health_check: true`; or a [`MemoryStore`]
//! shared by loops in one process), probe loops coordinate through it and read shared
//! results into their local snapshot in the background: **the request path never touches
//! the store**, and a store outage never fails a request.
//!
//! # How a round is shared
//!
//! Every loop polls the store (every [`SharingSettings::poll_interval`], 500 ms by
//! default, one round trip: latest round, its token, lease holder). When the next round
//! is due (`health_check_interval` after the latest one started):
//!
//! 1. **Lease.** A loop takes the per-round lease (`SET NX PX` with its random process
//!    id, [`SharedStatus::process_id`]), only if nobody holds it and the latest round is
//!    still the one it saw, so a round just written is never probed twice. Taking it
//!    draws a **fencing token** from a counter that only grows.
//! 2. **Probe.** The holder probes, renewing the lease every third of its TTL (default
//!    interval / 2, at most 10 s) while it works; a holder that dies stops renewing and
//!    is replaced once the lease expires, whatever the probe timeouts are.
//! 3. **Write.** It writes the raw results (ids, statuses, wall-clock timestamps, short
//!    scrubbed reasons, its process id, the token) with a compare-on-write: kept only if
//!    the token is newer than the stored one, so a late writer whose lease expired cannot
//!    overwrite newer results. It then releases the lease with a compare-and-delete.
//! 4. **Follow.** The others see the new token at their next poll and apply the results
//!    through their own hysteresis, staleness and transient-error rules (timestamps are
//!    converted to local time by age).
//!
//! # When things go wrong
//!
//! * **Holder crashes** (no release): its lease expires within a TTL; the next poll of
//!   another loop takes it.
//! * **Holder alive but stuck** (probes slower than the interval): a follower that sees no
//!   new round [`takeover_after`](SharingSettings::takeover_after) past the due time
//!   (about two intervals after the last round) probes on its own.
//! * **Store down or slow**: every store call is bounded by
//!   [`command_timeout`](SharingSettings::command_timeout); on failure the loop reports
//!   [`SharedMode::Degraded`] and probes on its own schedule, and it rejoins as soon as a
//!   poll succeeds again.
//! * **Cooldowns and ejections** ([`SharingSettings::share_cooldowns`]; on by default for
//!   the store `use_shared_health_check` makes): a cooldown or outlier ejection entered by
//!   a request in one process is announced by a `try_send` from the response future
//!   (never a wait), **pushed** to the others ([`HealthStore::push`], Redis pub/sub), who
//!   apply it within milliseconds, and written to the store, where the others' polls find
//!   it if the push was lost (see [`OutageEvent`]).
//! * **Usage** (`usage-based-routing-v2`): each process's per-minute counters are
//!   exchanged with the store in batches ([`HealthStore::exchange_usage`], every
//!   [`SharingSettings::usage_flush_interval`]), so `rpm`/`tpm` limits hold across processes.
//!
//! [`SharedStatus`] is what `/health/shared-status` shows; the coordinator publishes it
//! through [`HealthState::set_shared_status`](crate::HealthState::set_shared_status).
//!
//! ```
//! use std::{sync::Arc, time::Duration};
//! use tower_health_routing::{
//!     Config, Deployment, HealthState, ProbeLoop,
//!     shared::{MemoryStore, SharingSettings},
//! };
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tower_health_routing::ConfigError> {
//! let cfg = || {
//!     Config::builder()
//!         .deployment(Deployment::builder("gpt-4o", "openai/gpt-4o").api_base("http://127.0.0.1:9/v1").build())
//!         .health_check_interval(Duration::from_secs(30))
//!         .build()
//! };
//! // Two layers in one binary take turns probing. Across processes, use a `RedisStore`
//! // (feature `redis`), or just `use_shared_health_check: true` in the config.
//! let store = Arc::new(MemoryStore::new());
//! let sharing = SharingSettings::new().share_cooldowns(true);
//! let (a, b) = (HealthState::new(cfg()?), HealthState::new(cfg()?));
//! let pa = ProbeLoop::builder(&a).store(store.clone()).sharing(sharing.clone()).build()?.spawn();
//! let pb = ProbeLoop::builder(&b).store(store).sharing(sharing).build()?.spawn();
//! // ... serve with `HealthRoutingLayer::from_state(a)` and `(b)` ...
//! pa.shutdown().await;
//! pb.shutdown().await;
//! # Ok(())
//! # }
//! ```

mod cooldowns;
mod coordinator;
mod memory;
mod push;
#[cfg(feature = "redis")]
mod redis;
mod round;
mod settings;
mod store;
mod usage;

use std::sync::Arc;

use std::{
    fmt,
    time::{Duration, SystemTime},
};

use serde::Serialize;

#[cfg(feature = "redis")]
pub use self::redis::{DEFAULT_KEY_PREFIX, RedisStore, RedisStoreBuilder};
pub(crate) use self::settings::Resolved;
pub use self::{
    memory::MemoryStore,
    push::{BACKOFF_MAX, BACKOFF_MIN, EventStream, OutageEvent, OutageKind},
    settings::{
        DEFAULT_POLL_INTERVAL, DEFAULT_USAGE_FLUSH_INTERVAL, MAX_DEFAULT_COMMAND_TIMEOUT,
        MAX_DEFAULT_LEASE, SharingSettings,
    },
    store::{HealthStore, Observation, SharedResult, SharedRound, StoreError, StoreFuture},
    usage::UsageCount,
};
use crate::{
    config::Config,
    error::ConfigError,
    health::HealthState,
    probe::{ProbeLoop, ProbeLoopBuilder},
};

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

    /// How old the shared results are at `now` (wall clock), if there are any.
    pub fn results_age(&self, now: SystemTime) -> Option<Duration> {
        self.results_written_at
            .map(|t| now.duration_since(t).unwrap_or(Duration::ZERO))
    }
}

/// What `/health/shared-status` shows, hung off the health state (see `health::Hooks`);
/// written by the shared-state coordinator.
struct StatusHook(arc_swap::ArcSwap<SharedStatus>);

impl StatusHook {
    fn of(state: &HealthState) -> Arc<Self> {
        state.hooks().get_or_init(|| {
            Self(arc_swap::ArcSwap::from_pointee(SharedStatus::local(
                random_process_id(),
            )))
        })
    }
}

impl HealthState {
    /// The state of cross-process sharing (see [`crate::shared`]).
    pub fn shared_status(&self) -> Arc<SharedStatus> {
        StatusHook::of(self).0.load_full()
    }

    /// Publishes the state of cross-process sharing (for a coordinator such as the Redis store).
    pub fn set_shared_status(&self, status: SharedStatus) {
        StatusHook::of(self).0.store(Arc::new(status));
    }
}

/// A random process id: 16 hex digits, unique per process (not a timestamp, which collides).
pub(crate) fn random_process_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// The config key that switches sharing on; errors about sharing name it.
const SHARED_FIELD: &str = "general_settings.use_shared_health_check";

/// The store `config` asks for: `None` when `use_shared_health_check` is off; the
/// [`RedisStore`] of `router_settings.redis_*` (or the `REDIS_*` environment, read when the
/// config was parsed) when it is on.
///
/// Sharing switched on without a place to share is an error rather than a silent fallback
/// to local probing: it names `general_settings.use_shared_health_check` and says where
/// Redis is looked for. So is a build without the `redis` feature. Creating the store
/// does not connect: an unreachable Redis is a degraded mode at run time, not an error.
pub fn store_from_config(config: &Config) -> Result<Option<Arc<dyn HealthStore>>, ConfigError> {
    if !config.health.use_shared_health_check {
        return Ok(None);
    }
    #[cfg(feature = "redis")]
    {
        match &config.router.redis {
            Some(r) => Ok(Some(Arc::new(RedisStore::new(r)?))),
            None => Err(ConfigError::invalid(
                SHARED_FIELD,
                "is true but no Redis is configured: set router_settings.redis_url, or \
                 router_settings.redis_host (with redis_port and redis_password), or the \
                 environment variables REDIS_URL, or REDIS_HOST / REDIS_PORT / REDIS_PASSWORD",
            )),
        }
    }
    #[cfg(not(feature = "redis"))]
    {
        Err(ConfigError::invalid(
            SHARED_FIELD,
            "is true but this build of tower-health-routing lacks the `redis` feature",
        ))
    }
}

/// What [`ProbeLoopBuilder::store`] and [`ProbeLoopBuilder::sharing`] keep in the
/// builder until [`ProbeLoopBuilder::build`].
#[derive(Debug, Default)]
struct Plan {
    store: Option<Arc<dyn HealthStore>>,
    settings: Option<SharingSettings>,
}

impl crate::probe::Extension for Plan {
    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }
}

impl ProbeLoopBuilder {
    fn plan(&mut self) -> &mut Plan {
        let ext = self
            .sharing
            .get_or_insert_with(|| Box::new(Plan::default()));
        if ext.as_any_mut().downcast_mut::<Plan>().is_none() {
            *ext = Box::new(Plan::default());
        }
        ext.as_any_mut()
            .downcast_mut::<Plan>()
            .unwrap_or_else(|| unreachable!("a Plan was just installed"))
    }

    /// Shares probing with other loops through `store`: one loop probes per round, the
    /// others apply its results (see [`crate::shared`]). Without this call, a config with
    /// `use_shared_health_check: true` gets the Redis store of its `router_settings`
    /// ([`shared::store_from_config`](crate::shared::store_from_config)); otherwise the
    /// loop probes on its own.
    pub fn store(mut self, store: Arc<dyn HealthStore>) -> Self {
        self.plan().store = Some(store);
        self
    }

    /// The knobs of sharing (defaults in [`SharingSettings`]); used only with a store.
    /// Without this call, the store `use_shared_health_check` asks for shares cooldowns
    /// and ejections ([`SharingSettings::share_cooldowns`]); a store given to
    /// [`store`](Self::store) does not.
    pub fn sharing(mut self, settings: SharingSettings) -> Self {
        self.plan().settings = Some(settings);
        self
    }

    /// Builds the loop, checking the config against the prober
    /// ([`Prober::check_config`](crate::probe::Prober::check_config)): e.g. a Bedrock
    /// deployment under the HTTP prober is an error naming
    /// `model_list[i].litellm_params.api_base`. Sharing, when a store is given or the
    /// config asks for one, is checked here too.
    pub fn build(self) -> Result<ProbeLoop, ConfigError> {
        self.build_with(|ext, cfg, settings| {
            let mut plan = Plan::default();
            if let Some(mut ext) = ext {
                if let Some(p) = ext.as_any_mut().downcast_mut::<Plan>() {
                    plan = std::mem::take(p);
                }
            }
            let (store, from_config) = match plan.store {
                Some(s) => (Some(s), false),
                None => (store_from_config(cfg)?, true),
            };
            // The store `use_shared_health_check` asks for shares cooldowns too, as
            // LiteLLM's Redis-backed cooldown cache does (unless `sharing` said otherwise).
            let knobs = match plan.settings {
                Some(k) => k,
                None => SharingSettings::new().share_cooldowns(from_config),
            };
            Ok(match store {
                Some(store) => Some(Arc::new(Sharing::new(store, knobs.resolve(settings)?))
                    as Arc<dyn crate::probe::Driver>),
                None => None,
            })
        })
    }
}

/// A probe loop's store and resolved knobs.
#[derive(Clone)]
pub(crate) struct Sharing {
    pub(crate) store: Arc<dyn HealthStore>,
    pub(crate) cfg: Resolved,
}

impl Sharing {
    pub(crate) fn new(store: Arc<dyn HealthStore>, cfg: Resolved) -> Self {
        Self { store, cfg }
    }
}

impl fmt::Debug for Sharing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sharing")
            .field("store", &self.store)
            .field("settings", &self.cfg)
            .finish()
    }
}
