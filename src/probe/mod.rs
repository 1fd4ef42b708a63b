//! Background health probes: a loop that probes every deployment on an interval and
//! publishes the results as one new [`HealthSnapshot`](crate::health::HealthSnapshot) per round.
//!
//! # Why a loop of its own
//!
//! Routing on health needs fresh results without a request paying for them, so probing
//! runs beside the service: LiteLLM's `background_health_checks`. The loop is a value
//! ([`ProbeLoop`]) plus a handle ([`ProbeHandle`]): [`spawn`](ProbeLoop::spawn) it on
//! tokio, or drive [`run`](ProbeLoop::run) yourself.
//!
//! # Behaviour
//!
//! * **Schedule.** The first round starts at once; each next one starts
//!   `health_check_interval` after the previous one *started* (plus up to
//!   `health_check_jitter`, default none, seedable with [`ProbeLoopBuilder::seed`]); a round
//!   longer than the interval is followed at once, never overlapped.
//! * **Round.** Deployments once each (by id), minus those with
//!   `disable_background_health_check`; at most `health_check_concurrency` probes in
//!   flight, background and on-demand rounds together ([`DEFAULT_CONCURRENCY`] when unset,
//!   where LiteLLM 1.109 has no bound: one `/health` over 1,500 deployments must not open
//!   1,500 sockets at once); each bounded by `model_info.health_check_timeout`
//!   (default 60 s), so a hanging upstream costs its own slot its timeout and nothing else.
//! * **Publication.** One [`HealthState::record`] per round (it logs
//!   `health_check_routing_state_updated healthy=H unhealthy=U`), after hysteresis and the
//!   transient-error rule (below).
//! * **Lifetime.** [`ProbeHandle::shutdown`] returns within milliseconds, mid-round too:
//!   the sleep and the round are raced against it, and a round's probes are polled inside
//!   the loop's own task, so nothing outlives it. The loop holds the state only weakly and
//!   also ends as soon as every owner of the [`HealthState`] is gone.
//! * **Sharing.** With a [`HealthStore`](crate::shared::HealthStore)
//!   ([`ProbeLoopBuilder::store`], or `use_shared_health_check: true` in the config), loops
//!   in several processes take turns: one probes per round under a lease and writes the
//!   results, the others apply them (see [`crate::shared`]). Shutdown then also releases a
//!   held lease, within the store's command timeout.
//! * **On demand.** [`ProbeLoop::check_now`] runs a round now, for every deployment, one
//!   `model` or one `model_id` (the `/health` endpoint), sharing the concurrency bound
//!   with the background rounds. Concurrent calls for the same target share one round:
//!   a caller that comes while one runs awaits that round's results. Its results are returned, **not published**: as in
//!   LiteLLM, `/health` observes, and only the background loop, with its interval and
//!   thresholds, moves routing (an endpoint hit every second would otherwise defeat the
//!   hysteresis). Publish them yourself with `state.record(report.records())` if you want.
//!
//! # Tiers, budgets and spread (opt-in)
//!
//! * **Tiers.** With `health_check_billed_every: N` above 1 (or a budget below), a
//!   background round first runs each deployment's **cheap tier**
//!   ([`Prober::probe_cheap`]: for the [`HttpProber`], `GET {base}/models` or the
//!   provider's own model list, else a TCP/TLS connect; no tokens), and sends the **billed**
//!   probe only every N rounds, or at once when its cheap tier went from fail to pass, its
//!   traffic failed since the last round, or its last billed probe failed. A failed cheap
//!   tier is the result: unhealthy, nothing billed. Records carry the tier
//!   ([`HealthRecord::tier`](crate::health::HealthRecord::tier)); `/health` shows `"tier"`.
//! * **Budgets.** `health_check_max_probes_per_minute` (global, and per deployment in
//!   `model_info`) and `health_check_max_cost_per_day` (estimated from the deployment's
//!   `input_cost_per_token`/`output_cost_per_token`, the prompt and `max_tokens`) bound
//!   the billed probes of background rounds; a refused one is not sent and the deployment
//!   keeps its last state. One warning per exhaustion (`probe budget spent`);
//!   [`ProbeLoop::budget_status`] and `/health`'s `probe_budget` say until when.
//! * **Spread.** `health_check_spread: f` starts each probe of a round at a random offset
//!   in `[0, f × interval)` (seeded: [`ProbeLoopBuilder::seed`] or
//!   `health_check_jitter_seed`); a delayed probe asks traffic again when it is due.
//!
//! On-demand rounds (`/health` without background checks, `test_connection`) are not
//! tiered nor budgeted: they probe as asked.
//!
//! # Hysteresis, transient errors and logs
//!
//! A deployment flips only after `unhealthy_threshold` / `healthy_threshold` consecutive
//! opposite results (defaults 1/1); its first result counts at once. With
//! `health_check_ignore_transient_errors`, a 429 or 408 (timeouts included) leaves its
//! state as it was. A change of state is one info event `health_check_state_changed`;
//! per-probe detail (`health_check_probe`) is debug. Opt in with
//! [`ProbeLoopBuilder::feed_cooldown`] to count probe results in cooldown as requests
//! would count (a pass as a success; 429, 408/timeout and 5xx as failures).
//!
//! # Probes
//!
//! [`HttpProber`] sends the requests LiteLLM sends, by provider and mode (tables on its
//! page); plug your own [`Prober`] for anything else.
//!
//! ```
//! use std::time::Duration;
//! use tower_health_routing::{Config, Deployment, HealthRoutingLayer, probe::ProbeLoop};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tower_health_routing::ConfigError> {
//! let cfg = Config::builder()
//!     .deployment(Deployment::builder("gpt-4o", "openai/gpt-4o").api_base("http://127.0.0.1:9/v1").build())
//!     .health_check_interval(Duration::from_secs(30))
//!     .build()?;
//! let layer = HealthRoutingLayer::new(cfg);
//! let probes = ProbeLoop::new(layer.state())?.spawn();
//! // ... serve with `layer` ...
//! probes.shutdown().await;
//! # Ok(())
//! # }
//! ```

mod budget;
mod defaults;
mod handle;
mod history;
#[cfg(feature = "http-prober")]
mod http;
mod hysteresis;
mod mode;
#[cfg(all(test, feature = "bedrock", feature = "vertex"))]
mod native_tests;
mod outcome;
#[cfg(feature = "http-prober")]
pub mod pool;
mod prober;
#[cfg(feature = "http-prober")]
mod provider;
#[cfg(feature = "http-prober")]
mod request;
mod round;
mod tiers;
mod traffic;

use std::{
    fmt,
    future::Future,
    sync::{Arc, Weak},
    time::Duration,
};

use rand::{Rng, SeedableRng, rngs::SmallRng};
use tokio::{
    sync::{Mutex, oneshot, watch},
    time::Instant,
};
use tracing::Instrument;

#[cfg(feature = "http-prober")]
pub use self::http::{HttpProber, HttpProberBuilder};
#[cfg(feature = "endpoints")]
pub(crate) use self::round::on_demand_targets as targets;
pub use self::{
    budget::{BudgetStatus, SkippedProbe},
    defaults::{DEFAULT_MAX_TOKENS, DEFAULT_PROMPT, ProbeDefaults},
    handle::ProbeHandle,
    history::{HealthHistory, HistoryRecord, HistorySource, LOCAL},
    mode::{bedrock_probe_model, is_reasoning_model, resolve_max_tokens, resolve_mode},
    outcome::{ProbeOutcome, ProbeReport, ProbeTarget, RoundReport},
    prober::{ProbeFuture, Prober, ProberFn, prober_fn},
};
use self::{
    hysteresis::{Rules, Tracker, end_upstream_cooldowns, feed_cooldown},
    round::{Runner, background_targets, on_demand_targets},
};
use crate::{
    config::{Config, HealthCheckSettings},
    error::ConfigError,
    health::{HealthState, Shared},
};

/// The per-probe timeout when `model_info.health_check_timeout` is unset (LiteLLM's).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// Probes in flight at once when `health_check_concurrency` is unset: 32, for background
/// and on-demand rounds together. LiteLLM 1.109 has no bound by default; an unbounded
/// `/health` over many deployments exhausts the process's file descriptors.
pub const DEFAULT_CONCURRENCY: usize = 32;

/// An on-demand round that callers share (see [`ProbeLoop::check_now`]).
type SharedRound = futures_util::future::Shared<BoxFuture<RoundReport>>;

/// The background probe loop of one [`HealthState`]; see the [module docs](self).
///
/// Cheap to clone (an `Arc`): keep a clone for [`check_now`](Self::check_now) after
/// spawning. It holds the state only weakly.
#[derive(Clone)]
pub struct ProbeLoop {
    inner: Arc<Inner>,
}

struct Inner {
    pub(crate) state: Weak<Shared>,
    pub(crate) closed: watch::Receiver<()>,
    runner: Runner,
    settings: HealthCheckSettings,
    rules: Rules,
    seed: Option<u64>,
    feed_cooldown: bool,
    /// Consecutive-result counters; held across apply + publish so rounds publish in order.
    tracker: Mutex<Tracker>,
    /// Runs the rounds in place of the local schedule: the shared-state coordinator
    /// (see [`crate::shared`]) when the loop shares a store, `None` otherwise.
    driver: Option<Arc<dyn Driver>>,
    /// Tier states, budgets and the spread generator of background rounds. Locked only
    /// around bookkeeping, never across an await (not on a request path).
    #[allow(clippy::disallowed_types)] // see above
    plan: std::sync::Mutex<tiers::Plan>,
    /// The probe defaults, for the cost estimate of a billed probe.
    defaults: ProbeDefaults,
    /// On-demand rounds running now, by target; callers of the same target share one.
    /// Locked only around a map lookup, never across an await (not on a request path).
    #[allow(clippy::disallowed_types)] // see above
    on_demand: std::sync::Mutex<std::collections::HashMap<ProbeTarget, SharedRound>>,
}

/// A boxed future, as [`Driver`]s take and return them.
pub(crate) type BoxFuture<T> = std::pin::Pin<Box<dyn Future<Output = T> + Send>>;

/// Runs a loop's rounds in place of its local schedule, until `shutdown` or the state's
/// last owner goes. The shared-state coordinator (`crate::shared`) is one: the probe loop
/// does not know it, it only hands it its [`Rounds`].
pub(crate) trait Driver: Send + Sync + fmt::Debug {
    fn drive(&self, rounds: Rounds, shutdown: BoxFuture<()>) -> BoxFuture<()>;
}

/// What a [`Driver`] may do with a loop: probe a round, publish one, watch the state.
#[derive(Clone)]
pub(crate) struct Rounds(Arc<Inner>);

impl Rounds {
    /// The loop's health state, held weakly.
    pub(crate) fn state(&self) -> &Weak<Shared> {
        &self.0.state
    }

    /// Fails once every owner of the state is gone.
    pub(crate) fn closed(&self) -> watch::Receiver<()> {
        self.0.closed.clone()
    }

    /// See [`Inner::background_round`].
    pub(crate) async fn background_round(&self) -> Option<RoundReport> {
        self.0.background_round().await
    }

    /// See [`Inner::probe_round`].
    pub(crate) async fn probe_round(&self) -> Option<RoundReport> {
        self.0.probe_round().await
    }

    /// See [`Inner::apply_round`].
    pub(crate) async fn apply_round(&self, report: &RoundReport) -> Option<()> {
        self.0.apply_round(report).await
    }
}

impl fmt::Debug for ProbeLoop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProbeLoop")
            .field("interval", &self.inner.settings.interval)
            .field("concurrency", &self.inner.settings.concurrency)
            .field("rules", &self.inner.rules)
            .field("feed_cooldown", &self.inner.feed_cooldown)
            .field("sharing", &self.inner.driver)
            .field("state_alive", &(self.inner.state.strong_count() > 0))
            .finish_non_exhaustive()
    }
}

/// Builds a [`ProbeLoop`]; see [`ProbeLoop::builder`].
pub struct ProbeLoopBuilder {
    state: HealthState,
    prober: Option<Arc<dyn Prober>>,
    defaults: Option<ProbeDefaults>,
    seed: Option<u64>,
    feed_cooldown: bool,
    default_timeout: Duration,
    /// What the sharing module keeps here between its builder calls (see
    /// `crate::shared`); opaque to the probe loop.
    pub(crate) sharing: Option<Box<dyn Extension>>,
}

/// A value another module keeps in a [`ProbeLoopBuilder`] (the sharing module's store
/// and settings), opaque to this one.
pub(crate) trait Extension: std::any::Any + Send + fmt::Debug {
    fn as_any_mut(&mut self) -> &mut dyn std::any::Any;
}

impl fmt::Debug for ProbeLoopBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProbeLoopBuilder")
            .field("custom_prober", &self.prober.is_some())
            .field("defaults", &self.defaults)
            .field("seed", &self.seed)
            .field("feed_cooldown", &self.feed_cooldown)
            .field("default_timeout", &self.default_timeout)
            .field("sharing", &self.sharing)
            .finish()
    }
}

impl ProbeLoopBuilder {
    /// Probes with `prober` instead of an [`HttpProber`].
    pub fn prober(mut self, prober: Arc<dyn Prober>) -> Self {
        self.prober = Some(prober);
        self
    }

    /// The default [`HttpProber`]'s prompt and `max_tokens` defaults, instead of reading
    /// them from the environment ([`ProbeDefaults::from_env`]).
    pub fn defaults(mut self, defaults: ProbeDefaults) -> Self {
        self.defaults = Some(defaults);
        self
    }

    /// Draws the jitter from `seed` (default: a random seed), for reproducible schedules.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Counts background probe results in cooldown, as requests would count (default off).
    pub fn feed_cooldown(mut self, on: bool) -> Self {
        self.feed_cooldown = on;
        self
    }

    /// The per-probe timeout of deployments without `health_check_timeout` (default 60 s).
    pub fn default_timeout(mut self, d: Duration) -> Self {
        self.default_timeout = d;
        self
    }

    /// Builds the loop; `driver` decides, from the config, the health settings and what
    /// the sharing module kept in the builder, what runs the rounds (see [`Driver`]).
    pub(crate) fn build_with(
        mut self,
        driver: impl FnOnce(
            Option<Box<dyn Extension>>,
            &Config,
            &HealthCheckSettings,
        ) -> Result<Option<Arc<dyn Driver>>, ConfigError>,
    ) -> Result<ProbeLoop, ConfigError> {
        let defaults = match self.defaults.take() {
            Some(d) => d,
            None if self.prober.is_none() => ProbeDefaults::from_env()?,
            None => ProbeDefaults::from_env().unwrap_or_default(),
        };
        let prober: Arc<dyn Prober> = match self.prober {
            Some(p) => p,
            #[cfg(feature = "http-prober")]
            None => Arc::new(
                HttpProber::builder()
                    .defaults(defaults.clone())
                    .classifier(self.state.config().classifier())
                    .build()?,
            ),
            #[cfg(not(feature = "http-prober"))]
            None => {
                return Err(ConfigError::invalid(
                    "probe.prober",
                    "no prober given and this build lacks the `http-prober` feature: \
                     pass one with ProbeLoopBuilder::prober",
                ));
            }
        };
        if self.default_timeout.is_zero() {
            return Err(ConfigError::invalid(
                "probe.default_timeout",
                "must be greater than zero",
            ));
        }
        let cfg: &Config = self.state.config();
        prober.check_config(cfg)?;
        // Decided once: a deployment this prober cannot probe is a state, not an error.
        let marks: Vec<_> = {
            let snap = self.state.load();
            snap.deployments()
                .filter_map(|d| {
                    let why = prober.unsupported(d)?;
                    let reason = self.state.scrubber().scrub(&why).into_owned();
                    Some((
                        d.id().clone(),
                        crate::health::Unsupported::new(reason, true),
                    ))
                })
                .collect()
        };
        self.state.mark_unsupported(marks);
        warn_unmatched_groups(cfg);
        warn_bad_health_check_params(cfg);
        let settings = cfg.health.clone();
        let driver = driver(self.sharing.take(), cfg, &settings)?;
        let rules = Rules {
            unhealthy_threshold: settings.unhealthy_threshold.get(),
            healthy_threshold: settings.healthy_threshold.get(),
            ignore_transient: settings.ignore_transient_errors,
        };
        let runner = Runner::new(
            prober,
            settings.concurrency.map(|n| n.get()),
            self.default_timeout,
        );
        let seed = self.seed.or(settings.seed);
        let spread_rng =
            SmallRng::seed_from_u64(seed.map_or_else(rand::random, |s| s ^ 0x5eed_5eed_5eed_5eed));
        let plan = tiers::Plan::new(budget::Budget::new(&settings), spread_rng);
        Ok(ProbeLoop {
            inner: Arc::new(Inner {
                state: self.state.downgrade(),
                closed: self.state.closed(),
                runner,
                settings,
                rules,
                plan: plan_lock(plan),
                defaults,
                seed,
                feed_cooldown: self.feed_cooldown,
                tracker: Mutex::new(Tracker::default()),
                driver,
                on_demand: on_demand_map(),
            }),
        })
    }
}

impl ProbeLoop {
    /// A loop over `state` with the [`HttpProber`] and defaults from the environment.
    /// Fails if a deployment cannot be probed over HTTP (see [`ProbeLoopBuilder::build`]).
    pub fn new(state: &HealthState) -> Result<Self, ConfigError> {
        Self::builder(state).build()
    }

    /// Starts a loop over `state`: the HTTP prober, defaults from the environment, a random
    /// jitter seed, no cooldown feeding, a 60 s default timeout.
    pub fn builder(state: &HealthState) -> ProbeLoopBuilder {
        ProbeLoopBuilder {
            state: state.clone(),
            prober: None,
            defaults: None,
            seed: None,
            feed_cooldown: false,
            default_timeout: DEFAULT_TIMEOUT,
            sharing: None,
        }
    }

    /// A new [`HealthState`] for `config` (validated first) and a loop over it. Keep the
    /// state: the loop holds it only weakly and stops once it is dropped.
    pub fn from_config(config: Config) -> Result<(HealthState, Self), ConfigError> {
        config.validate()?;
        let state = HealthState::new(config);
        let probes = Self::new(&state)?;
        Ok((state, probes))
    }

    /// Spawns the loop on the current tokio runtime (panics outside one, as `tokio::spawn`
    /// does). It runs whatever `background_health_checks` says; see
    /// [`spawn_if_enabled`](Self::spawn_if_enabled).
    pub fn spawn(&self) -> ProbeHandle {
        let (stop, rx) = oneshot::channel::<()>();
        // A dropped handle detaches the loop rather than stopping it.
        let shutdown = async move {
            if rx.await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        ProbeHandle {
            stop,
            task: tokio::spawn(self.run(shutdown)),
        }
    }

    /// Spawns the loop only if the config's `background_health_checks` is on.
    pub fn spawn_if_enabled(&self) -> Option<ProbeHandle> {
        self.inner
            .settings
            .background_health_checks
            .then(|| self.spawn())
    }

    /// The loop as a future, for your own executor: it ends when `shutdown` completes or
    /// every owner of the health state is gone. Needs tokio's time driver (and, for the
    /// HTTP prober, a tokio runtime to spawn connections on).
    pub fn run(
        &self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> impl Future<Output = ()> + Send + 'static {
        let inner = Arc::clone(&self.inner);
        let span = tracing::info_span!("health_probe_loop");
        match inner.driver.clone() {
            Some(driver) => futures_util::future::Either::Left(
                driver
                    .drive(Rounds(inner), Box::pin(shutdown))
                    .instrument(span),
            ),
            None => futures_util::future::Either::Right(run_loop(inner, shutdown).instrument(span)),
        }
    }

    /// Runs one background round now: probes, applies hysteresis, publishes a snapshot,
    /// exactly as the loop does without a store (locally: nothing is shared). `None` when
    /// the health state is gone.
    pub async fn run_round(&self) -> Option<RoundReport> {
        self.inner.background_round().await
    }

    /// Probes `target` now and returns the raw results, without publishing them (see the
    /// [module docs](self)). Callable while the loop runs; shares its concurrency bound and
    /// timeouts. With `health_check_skip_disabled_background_models`, deployments with
    /// `disable_background_health_check` are left out; unsupported ones always are. Empty when the state is gone or
    /// nothing matches (an unknown `model_id` probes nothing, where LiteLLM would probe all).
    ///
    /// Calls for the same `target` while a round for it runs share that round: each waits
    /// for its results, and the deployments are probed once. A round whose every caller
    /// has gone is dropped with them (its probes cancelled).
    pub async fn check_now(&self, target: ProbeTarget) -> RoundReport {
        use futures_util::FutureExt as _;
        let round = {
            let mut running = self
                .inner
                .on_demand
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            match running.get(&target) {
                Some(r) => {
                    tracing::debug!(?target, "health_check_on_demand_joined");
                    r.clone()
                }
                None => {
                    let inner = Arc::clone(&self.inner);
                    let key = target.clone();
                    let fut: BoxFuture<RoundReport> = Box::pin(async move {
                        let report = inner.on_demand_round(&key).await;
                        // Later callers start a new round.
                        inner
                            .on_demand
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .remove(&key);
                        report
                    });
                    let shared = fut.shared();
                    running.insert(target.clone(), shared.clone());
                    shared
                }
            }
        };
        // If every caller goes before the round ends, forget it with the last one, so a
        // later caller starts afresh rather than resuming probes whose timeouts ran on.
        let guard = ForgetAbandoned {
            inner: &self.inner,
            target: &target,
            round: Some(round.clone()),
        };
        let report = round.await;
        drop(guard);
        report
    }
}

/// An empty map of running on-demand rounds (locked by `/health` callers only, never on
/// a request path, never across an await).
#[allow(clippy::disallowed_types)]
fn on_demand_map() -> std::sync::Mutex<std::collections::HashMap<ProbeTarget, SharedRound>> {
    std::sync::Mutex::default()
}

/// The lock of a loop's [`tiers::Plan`] (probe loop only, never on a request path, never
/// across an await).
#[allow(clippy::disallowed_types)]
fn plan_lock(plan: tiers::Plan) -> std::sync::Mutex<tiers::Plan> {
    std::sync::Mutex::new(plan)
}

/// Removes an on-demand round from the running map when its last caller drops it unfinished.
struct ForgetAbandoned<'a> {
    inner: &'a Inner,
    target: &'a ProbeTarget,
    round: Option<SharedRound>,
}

impl Drop for ForgetAbandoned<'_> {
    fn drop(&mut self) {
        let Some(mine) = self.round.take() else {
            return;
        };
        let mut running = self
            .inner
            .on_demand
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        // Ours, still in the map (so unfinished), and nobody else holds it: the map's clone
        // and `mine` are the last two.
        if running.get(self.target).is_some_and(|r| r.ptr_eq(&mine))
            && mine.strong_count() == Some(2)
        {
            running.remove(self.target);
        }
    }
}

impl Inner {
    /// Probes an on-demand target now. Empty when the state is gone or nothing matches.
    async fn on_demand_round(&self, target: &ProbeTarget) -> RoundReport {
        let picked = HealthState::upgrade(&self.state).map(|state| {
            let snap = state.load();
            let skip = self.settings.skip_disabled_background_models;
            let mut targets = on_demand_targets(&snap, target, skip);
            // Unsupported deployments are never probed (see `health::Unsupported`).
            targets.retain(|d| snap.unsupported(d.id().as_str()).is_none());
            (targets, state.scrubber().clone())
        });
        let Some((targets, scrubber)) = picked else {
            return RoundReport::empty();
        };
        let span = tracing::debug_span!("health_check_on_demand", deployments = targets.len());
        self.runner.run(targets, &scrubber).instrument(span).await
    }
}

impl ProbeLoop {
    /// The state of the probe budgets (`health_check_max_probes_per_minute`, per deployment
    /// too, and `health_check_max_cost_per_day`) at `now`, for `/health`; `None` when no
    /// budget is configured.
    pub fn budget_status(&self) -> Option<BudgetStatus> {
        let state = HealthState::upgrade(&self.inner.state)?;
        let plan = self.inner.plan();
        if !plan.budget.configured(state.config().deployments.iter()) {
            return None;
        }
        let now = Instant::now();
        let (billed, cost) = plan.budget.used();
        let spent = plan.budget.spent.filter(|r| r.until > now);
        let mut skipped: Vec<SkippedProbe> = plan
            .skipped()
            .filter(|(_, r)| r.until > now)
            .map(|(id, r)| SkippedProbe {
                model_id: id.clone(),
                limit: r.limit,
                until: r.until,
            })
            .collect();
        skipped.sort_by(|a, b| a.model_id.as_str().cmp(b.model_id.as_str()));
        Some(BudgetStatus {
            spent: spent.is_some(),
            limit: spent.map(|r| r.limit),
            until: spent.map(|r| r.until),
            billed_probes_this_minute: billed,
            max_probes_per_minute: self.inner.settings.max_probes_per_minute.map(|n| n.get()),
            cost_today: cost,
            max_cost_per_day: self.inner.settings.max_cost_per_day,
            skipped,
        })
    }

    /// Probes one deployment now, which need not be in the config (what
    /// `POST /health/test_connection` runs): the loop's prober, concurrency bound and
    /// timeouts, its reason scrubbed with the state's secrets and `scrubber`'s. Nothing is
    /// published, recorded in the history or counted in the metrics.
    pub async fn probe_detached(
        &self,
        deployment: Arc<crate::deployment::Deployment>,
        scrubber: &crate::secret::Scrubber,
    ) -> ProbeReport {
        let mut report = self
            .inner
            .runner
            .probe_one(deployment, scrubber, false)
            .await;
        if let Some(state) = HealthState::upgrade(&self.inner.state) {
            report.outcome = report.outcome.scrubbed(state.scrubber());
        }
        report
    }
}

impl Inner {
    /// Probes and publishes a round locally. `None` when the health state is gone.
    pub(crate) async fn background_round(&self) -> Option<RoundReport> {
        let report = self.probe_round().await?;
        self.apply_round(&report).await?;
        Some(report)
    }

    /// Probes the background targets, publishing nothing. `None` when the state is gone.
    pub(crate) async fn probe_round(&self) -> Option<RoundReport> {
        let started_at = Instant::now();
        let (targets, scrubber, saved, tiered, failed) = {
            let state = HealthState::upgrade(&self.state)?;
            let snap = state.load();
            let groups = self.settings.background_model_groups.as_deref();
            let mut targets = background_targets(&snap, groups);
            let saved = if state.config().health.skip_when_traffic_healthy {
                traffic::take_healthy(&state, &snap, &mut targets, self.settings.interval)
            } else {
                Vec::new()
            };
            let mut plan = self.plan();
            plan.retain(|id| snap.deployment(id).is_some());
            for r in &saved {
                plan.vouched(&r.deployment, started_at);
            }
            let tiered =
                self.settings.tiered() || plan.budget.configured(snap.deployments().map(|d| &**d));
            // Traffic that failed since the previous round calls for a billed probe.
            let since = plan.last_round.replace(state.now_nanos());
            let failed: Vec<bool> = targets
                .iter()
                .map(|d| {
                    since.is_some_and(|t| {
                        snap.entry_by_id(d.id().as_str())
                            .is_some_and(|e| e.stats.traffic_failed_since(t))
                    })
                })
                .collect();
            (targets, state.scrubber().clone(), saved, tiered, failed)
        };
        let span = tracing::debug_span!(
            "health_check_round",
            deployments = targets.len(),
            saved = saved.len(),
            tiered
        );
        let window = self.settings.interval.mul_f64(self.settings.spread);
        let vouch = |d: &Arc<crate::deployment::Deployment>| {
            let state = HealthState::upgrade(&self.state)?;
            if !state.config().health.skip_when_traffic_healthy {
                return None;
            }
            traffic::vouch(&state, &state.load(), d, self.settings.interval)
        };
        let mut results = if tiered {
            self.tiered_round(targets, failed, &scrubber, started_at, window, &vouch)
                .instrument(span)
                .await?
        } else {
            let at = self.plan().offsets(targets.len(), started_at, window);
            let targets = targets.into_iter().zip(at).collect();
            self.runner
                .run_at(targets, &scrubber, None, &vouch)
                .instrument(span)
                .await
                .into_iter()
                .flatten()
                .collect()
        };
        results.extend(saved);
        Some(RoundReport {
            results,
            started_at,
            elapsed: started_at.elapsed(),
            checked_by: None,
        })
    }

    #[allow(clippy::disallowed_types)] // `Plan`'s lock: see the field
    fn plan(&self) -> std::sync::MutexGuard<'_, tiers::Plan> {
        self.plan.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The two phases of a tiered round (see [`tiers`]): cheap tier, budget, billed tier.
    async fn tiered_round(
        &self,
        targets: Vec<Arc<crate::deployment::Deployment>>,
        failed: Vec<bool>,
        scrubber: &crate::secret::Scrubber,
        started_at: Instant,
        window: Duration,
        vouch: &(dyn Fn(&Arc<crate::deployment::Deployment>) -> Option<ProbeReport> + Sync),
    ) -> Option<Vec<ProbeReport>> {
        use crate::health::ProbeTier;
        let half = window / 2;
        let at = self.plan().offsets(targets.len(), started_at, half);
        let cheap = self
            .runner
            .run_at(
                targets.iter().cloned().zip(at).collect(),
                scrubber,
                Some(ProbeTier::Cheap),
                vouch,
            )
            .await;
        let mut slots: Vec<Option<ProbeReport>> = Vec::new();
        slots.resize_with(targets.len(), || None);
        let candidates = {
            let mut plan = self.plan();
            let every = self.settings.billed_every.get();
            let mut candidates = Vec::new();
            for (i, (c, d)) in cheap.into_iter().zip(&targets).enumerate() {
                match plan.after_cheap(i, d, c, every, failed[i]) {
                    tiers::Decision::Publish(r) => slots[i] = r,
                    tiers::Decision::Bill(c) => candidates.push(c),
                }
            }
            let state = HealthState::upgrade(&self.state)?;
            let snap = state.load();
            let (admitted, kept) = plan.admit(
                candidates,
                |id| snap.health(id).is_some(),
                |d| budget::billed_cost(d, &self.defaults),
                Instant::now(),
            );
            for (i, r) in kept {
                slots[i] = Some(r);
            }
            admitted
        };
        let at = self
            .plan()
            .offsets(candidates.len(), started_at + half, window - half);
        let (index, billed): (Vec<usize>, Vec<_>) = candidates
            .into_iter()
            .zip(at)
            .map(|(c, at)| (c.index, (c.deployment, at)))
            .unzip();
        let billed = self
            .runner
            .run_at(billed, scrubber, Some(ProbeTier::Billed), vouch)
            .await;
        {
            let mut plan = self.plan();
            let now = Instant::now();
            for (i, r) in index.into_iter().zip(billed) {
                if let Some(r) = r {
                    if r.outcome.source == crate::health::HealthSource::Traffic {
                        plan.vouched(&r.deployment, now);
                    } else {
                        plan.billed(&r, now);
                    }
                    slots[i] = Some(r);
                }
            }
        }
        Some(slots.into_iter().flatten().collect())
    }

    /// Publishes a round's raw results through this loop's hysteresis, transient-error rule
    /// and (opt-in) cooldown feeding: for rounds probed here and rounds read from a store
    /// alike. `None` when the state is gone.
    pub(crate) async fn apply_round(&self, report: &RoundReport) -> Option<()> {
        let state = HealthState::upgrade(&self.state)?;
        let mut tracker = self.tracker.lock().await;
        let records = {
            let snap = state.load();
            tracker.retain(|id| snap.deployment(id).is_some());
            tracker.apply(&report.results, self.rules)
        };
        let history = HealthHistory::of(&state);
        {
            let snap = state.load();
            history.retain(|id| snap.deployment(id).is_some());
        }
        history.record_round(report);
        end_upstream_cooldowns(&state, &report.results);
        if self.feed_cooldown {
            feed_cooldown(&state, &report.results);
        }
        state.record(records);
        drop(tracker);
        Some(())
    }

    fn next_delay(&self, rng: &mut SmallRng) -> Duration {
        let jitter = self.settings.jitter;
        let extra = if jitter.is_zero() {
            Duration::ZERO
        } else {
            let max = u64::try_from(jitter.as_nanos()).unwrap_or(u64::MAX);
            Duration::from_nanos(rng.random_range(0..=max))
        };
        self.settings.interval.saturating_add(extra)
    }
}

/// Logs (once, when a loop is built) each `background_health_check_model_groups` name
/// that matches no route: those names probe nothing, which is most likely a typo.
fn warn_unmatched_groups(cfg: &Config) {
    let Some(groups) = &cfg.health.background_model_groups else {
        return;
    };
    for g in groups {
        if !cfg.deployments.iter().any(|d| d.route() == g.as_str()) {
            tracing::warn!(
                model_group = %g,
                "general_settings.background_health_check_model_groups names a model group \
                 no deployment has: it probes nothing"
            );
        }
    }
}

/// Logs (once, when a loop is built) each deployment whose
/// `model_info.health_check_params` is not a mapping: it is ignored, as in LiteLLM.
fn warn_bad_health_check_params(cfg: &Config) {
    for d in &cfg.deployments {
        let Some(v) = d.info().extra.get("health_check_params") else {
            continue;
        };
        if !matches!(
            v,
            crate::deployment::ParamValue::Plain(serde_json::Value::Object(_))
        ) {
            tracing::warn!(
                model_id = %d.id(),
                "model_info.health_check_params is not a mapping; ignored"
            );
        }
    }
}

/// Far enough to mean "never" without overflowing `Instant`.
const FAR_FUTURE: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

async fn run_loop(inner: Arc<Inner>, shutdown: impl Future<Output = ()> + Send) {
    let mut closed = inner.closed.clone();
    tokio::pin!(shutdown);
    let mut rng = SmallRng::seed_from_u64(inner.seed.unwrap_or_else(rand::random));
    tracing::info!(
        interval_secs = inner.settings.interval.as_secs_f64(),
        concurrency = ?inner.settings.concurrency,
        "health_check_loop_started"
    );
    let why = loop {
        let started = Instant::now();
        tokio::select! {
            biased;
            () = &mut shutdown => break "shutdown",
            _ = closed.changed() => break "state_dropped",
            report = inner.background_round() => if report.is_none() { break "state_dropped" },
        }
        let delay = inner.next_delay(&mut rng);
        let next = started
            .checked_add(delay)
            .unwrap_or_else(|| Instant::now() + FAR_FUTURE);
        tokio::select! {
            biased;
            () = &mut shutdown => break "shutdown",
            _ = closed.changed() => break "state_dropped",
            () = tokio::time::sleep_until(next) => {}
        }
    };
    tracing::info!(reason = why, "health_check_loop_stopped");
}
