//! The immutable [`HealthSnapshot`]: deployments, their routes and their last health, as
//! one value. Writers build a whole new one. It holds health only: the request path's
//! routing table (candidate lists, weights, per-route balancer state) is derived from it
//! by `routing` at publication and kept in an opaque [slot](HealthSnapshot::slot), so
//! selection does no per-request filtering in the common case and still costs one load.

use std::{
    any::Any,
    collections::HashMap,
    fmt,
    sync::{Arc, OnceLock},
    time::Duration,
};

use foldhash::fast::RandomState;
use tokio::time::Instant;

use crate::{
    deployment::{Deployment, DeploymentId},
    stats::DeploymentStats,
    time::nanos_since,
};

/// The result of a deployment's last health check.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct HealthRecord {
    /// Whether the check passed.
    pub healthy: bool,
    /// When it was made.
    pub checked_at: Instant,
    /// Why it failed: a short, secret-free reason (`timeout`, `status 500`, ...).
    pub reason: Option<Arc<str>>,
    /// The status code the probe got, if it got an answer (408 for a timeout).
    pub status: Option<u16>,
    /// Where the result came from: a probe, or (with
    /// `health_check_skip_when_traffic_healthy`) real traffic that succeeded.
    pub source: HealthSource,
    /// Which tier of a tiered health check decided it (`health_check_billed_every`, probe
    /// budgets); `None` when rounds are not tiered (every probe billed, LiteLLM's way).
    pub tier: Option<ProbeTier>,
}

/// The tier of a tiered health check that produced a [`HealthRecord`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProbeTier {
    /// The cheap tier: a call that spends no tokens (a model list, a TCP/TLS connect).
    Cheap,
    /// The billed tier: the mode-aware request LiteLLM sends (a completion, an embedding, ...).
    Billed,
}

impl ProbeTier {
    /// `"cheap"` or `"billed"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cheap => "cheap",
            Self::Billed => "billed",
        }
    }
}

/// Where a [`HealthRecord`] came from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HealthSource {
    /// A health probe.
    #[default]
    Probe,
    /// A real request answered successfully within the round's interval (the probe was
    /// saved; `general_settings.health_check_skip_when_traffic_healthy`).
    Traffic,
}

impl HealthSource {
    /// `"probe"` or `"traffic"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Probe => "probe",
            Self::Traffic => "traffic",
        }
    }
}

impl HealthRecord {
    /// A passed check at `checked_at`.
    pub fn healthy(checked_at: Instant) -> Self {
        Self {
            healthy: true,
            checked_at,
            reason: None,
            status: None,
            source: HealthSource::Probe,
            tier: None,
        }
    }

    /// A failed check at `checked_at`, with a short secret-free reason and the status code, if any.
    pub fn unhealthy(
        checked_at: Instant,
        reason: impl Into<Arc<str>>,
        status: Option<u16>,
    ) -> Self {
        Self {
            healthy: false,
            checked_at,
            reason: Some(reason.into()),
            status,
            source: HealthSource::Probe,
            tier: None,
        }
    }

    /// Sets the status code.
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }

    /// Sets where the result came from.
    pub fn with_source(mut self, source: HealthSource) -> Self {
        self.source = source;
        self
    }

    /// Sets the tier that decided it.
    pub fn with_tier(mut self, tier: Option<ProbeTier>) -> Self {
        self.tier = tier;
        self
    }
}

/// What a deployment's entry keeps unchanged from one snapshot to the next (until the
/// deployment list changes): one `Arc`, so a publication clones one pointer per entry and a
/// request's [`SelectedDeployment`](crate::SelectedDeployment) one. Aligned to a cache
/// line so that the `Arc`'s counts (written by every clone and drop) share no line with
/// what every decision reads: the two pointers and the limits (the first 64 bytes, in
/// this order: `repr(C)`), followed by what only an answer reads (its [`Owner`]).
#[derive(Debug)]
#[repr(C, align(64))]
pub(crate) struct EntryCore {
    pub(crate) deployment: Arc<Deployment>,
    pub(crate) stats: Arc<DeploymentStats>,
    /// The deployment's limits every decision checks, copied here so that checking them
    /// reads this line only (not the deployment's params two pointers away).
    pub(crate) limits: Limits,
    /// The state the entry belongs to, for a request's answer: reached through the
    /// request's one `Arc<EntryCore>`, so a request clones no state handle.
    pub(crate) owner: Arc<crate::health::Owner>,
}

/// The per-deployment limits a decision checks (see [`EntryCore::limits`]), 24 bytes: a
/// missing limit is stored as the type's maximum, which no count reaches, so each check
/// answers exactly as with the `Option` (and the entry's core fits its 64-byte line).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    rpm: u64,
    tpm: u64,
    max_parallel: u32,
    max_input_tokens: u32,
}

impl Limits {
    fn of(d: &Deployment) -> Self {
        let p = d.params();
        Self {
            max_parallel: p.max_parallel_requests.unwrap_or(u32::MAX),
            rpm: p.rpm.unwrap_or(u64::MAX),
            tpm: p.tpm.unwrap_or(u64::MAX),
            max_input_tokens: d.info().max_input_tokens.unwrap_or(u32::MAX),
        }
    }

    /// `max_parallel_requests`.
    pub(crate) fn max_parallel(&self) -> Option<u32> {
        (self.max_parallel != u32::MAX).then_some(self.max_parallel)
    }

    /// `rpm`.
    pub(crate) fn rpm(&self) -> Option<u64> {
        (self.rpm != u64::MAX).then_some(self.rpm)
    }

    /// `tpm`.
    pub(crate) fn tpm(&self) -> Option<u64> {
        (self.tpm != u64::MAX).then_some(self.tpm)
    }

    /// `model_info.max_input_tokens`.
    pub(crate) fn max_input_tokens(&self) -> Option<u32> {
        (self.max_input_tokens != u32::MAX).then_some(self.max_input_tokens)
    }
}

// What a decision reads and the answer's owner share one line; a bigger core would take
// two (an `align(64)` allocation of 192 bytes per deployment instead of 128).
const _: () = assert!(std::mem::size_of::<EntryCore>() == 64);

/// One deployment of a snapshot, as decisions read it; derefs to its [`EntryCore`]. Its
/// last health result is the snapshot's own ([`Checked`]): entries are shared by
/// successive snapshots (see [`Entries`]).
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) core: Arc<EntryCore>,
    /// Set once at start-up when the deployment cannot be probed or forwarded.
    pub(crate) unsupported: Option<Unsupported>,
}

/// Every deployment's [`Entry`], in config order: one value shared by successive snapshots
/// while the deployment list and its [`Unsupported`] marks stay the same, so that a
/// publication of health results copies no entry and writes no entry's reference count,
/// and a decision after it reads the entries it already has in cache. Aligned to a cache
/// line so that the `Arc`'s counts (written whenever a snapshot sharing it is built or
/// dropped) share no line with the slice's pointer and length, which every decision reads.
#[derive(Debug)]
#[repr(align(64))]
pub(crate) struct Entries(Box<[Entry]>);

impl std::ops::Deref for Entries {
    type Target = [Entry];
    fn deref(&self) -> &[Entry] {
        &self.0
    }
}

/// A deployment's last health result in one snapshot (by the entry's index).
#[derive(Debug, Clone, Default)]
pub(crate) struct Checked {
    pub(crate) health: Option<HealthRecord>,
    /// `health.checked_at` as nanoseconds since the state's epoch.
    pub(crate) checked_nanos: u64,
}

impl Checked {
    /// Whether the last check failed and that result is not stale at `now`.
    pub(crate) fn failed_fresh(&self, now: u64, staleness_nanos: u64) -> bool {
        self.health.as_ref().is_some_and(|h| !h.healthy)
            && now.saturating_sub(self.checked_nanos) <= staleness_nanos
    }
}

impl std::ops::Deref for Entry {
    type Target = EntryCore;
    fn deref(&self) -> &EntryCore {
        &self.core
    }
}

/// Why a deployment is `unsupported`: decided once at start-up (when the probe loop or a
/// forwarder is built), never probed again, shown in `/health` under `unsupported_endpoints`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Unsupported {
    /// Why, in a sentence, secret-free (`provider `bedrock` is not supported: …`).
    pub reason: Arc<str>,
    /// Whether the router may still pick it for traffic. `false` when the forwarder cannot
    /// send it a request (the gateway's choice); `true` when only probing is impossible.
    pub routable: bool,
}

impl Unsupported {
    /// An unsupported mark with `reason` (secret-free); `routable`: whether the router may
    /// still pick it.
    pub fn new(reason: impl Into<Arc<str>>, routable: bool) -> Self {
        Self {
            reason: reason.into(),
            routable,
        }
    }
}

impl Entry {
    /// Whether the router may pick it (not marked unsupported and unroutable).
    pub(crate) fn routable(&self) -> bool {
        !matches!(&self.unsupported, Some(u) if !u.routable)
    }
}

/// A route's members as the snapshot knows them: health only (the balancer's per-route
/// state, weights and candidate lists are derived by `routing`, see [`HealthSnapshot::slot`]).
#[derive(Debug)]
pub(crate) struct RouteMembers {
    /// Every member, in config order (unroutable ones included).
    pub(crate) members: Box<[u32]>,
    /// How many of them are routable.
    pub(crate) routable: usize,
}

impl RouteMembers {
    fn new(members: Box<[u32]>, entries: &[Entry]) -> Self {
        let routable = members
            .iter()
            .filter(|&&i| entries[i as usize].routable())
            .count();
        Self { members, routable }
    }
}

/// An immutable view of every deployment and its last health, published as a whole.
///
/// Get one from [`HealthState::snapshot`](crate::HealthState::snapshot).
//
// Laid out for the decision after a publication, which reads a snapshot it has never seen
// (written by the publishing thread): what it reads (the slot, the entries, the epoch, the
// staleness threshold, `watched`) comes first, in this order (`repr(C)`), in one cache line
// of its own (`align(64)`: the `Arc`'s counts sit on the line before).
#[repr(C, align(64))]
pub struct HealthSnapshot {
    /// What the request path derives from this snapshot (the routing table), set once by
    /// its owner; `health` does not interpret it. See [`slot`](Self::slot).
    slot: OnceLock<Box<dyn Any + Send + Sync>>,
    /// Shared with the snapshot this one was built from while the deployments and their
    /// marks stay the same (see [`Entries`]).
    pub(crate) entries: Arc<Entries>,
    pub(crate) epoch: Instant,
    pub(crate) staleness_nanos: u64,
    /// Whether a watchdog republishes this snapshot at `next_expiry` (see `HealthState`).
    pub(crate) watched: bool,
    /// Each entry's last health result, by the entry's index.
    pub(crate) checked: Box<[Checked]>,
    by_id: HashMap<DeploymentId, u32, RandomState>,
    pub(crate) routes: HashMap<Arc<str>, RouteMembers, RandomState>,
    version: u64,
    healthy: usize,
    unhealthy: usize,
    updated_at: Option<Instant>,
    /// When the earliest failed result that was fresh at `built_at` goes stale.
    next_expiry: u64,
    /// When it was built (nanos since the epoch): failed results fresh then exclude their
    /// deployments from the lists derived from it until `next_expiry`.
    pub(crate) built_at: u64,
}

// What a decision reads of a snapshot fits its first cache line (see the layout note).
const _: () = assert!(std::mem::offset_of!(HealthSnapshot, watched) < 64);

impl HealthSnapshot {
    /// A snapshot of `deployments` (de-duplicated by id; a deployment listed under several
    /// routes belongs to each). Health and statistics of ids present in `prev` carry over.
    pub(crate) fn build(
        deployments: &[Deployment],
        prev: Option<&HealthSnapshot>,
        epoch: Instant,
        staleness: Duration,
        now: Instant,
        owner: &Arc<crate::health::Owner>,
    ) -> Self {
        let now_nanos = nanos_since(epoch, now);
        let mut entries: Vec<Entry> = Vec::with_capacity(deployments.len());
        let mut checked: Vec<Checked> = Vec::with_capacity(deployments.len());
        let mut by_id: HashMap<DeploymentId, u32, RandomState> =
            HashMap::with_capacity_and_hasher(deployments.len(), RandomState::default());
        let mut members: Vec<(Arc<str>, Vec<u32>)> = Vec::new();
        let mut route_pos: HashMap<Arc<str>, usize, RandomState> = HashMap::default();
        for d in deployments {
            let before = entries.len();
            let idx = *by_id.entry(d.id().clone()).or_insert_with(|| {
                let old = prev.and_then(|p| Some((p, p.index_of(d.id().as_str())? as usize)));
                let old_entry = old.map(|(p, i)| &p.entries[i]);
                entries.push(Entry {
                    core: Arc::new(EntryCore {
                        limits: Limits::of(d),
                        deployment: Arc::new(d.clone()),
                        stats: old_entry.map_or_else(Default::default, |e| Arc::clone(&e.stats)),
                        owner: Arc::clone(owner),
                    }),
                    unsupported: old_entry.and_then(|e| e.unsupported.clone()),
                });
                checked.push(old.map_or_else(Checked::default, |(p, i)| p.checked[i].clone()));
                (entries.len() - 1) as u32
            });
            let pos = *route_pos
                .entry(Arc::clone(d.route_name()))
                .or_insert_with(|| {
                    members.push((Arc::clone(d.route_name()), Vec::new()));
                    members.len() - 1
                });
            // A new entry is in no route yet; only an id seen before (one deployment
            // listed under two routes, or twice) needs the look (linear in the route's size).
            if entries.len() > before || !members[pos].1.contains(&idx) {
                members[pos].1.push(idx);
            }
        }
        let staleness_nanos = u64::try_from(staleness.as_nanos()).unwrap_or(u64::MAX);
        let routes = members
            .into_iter()
            .map(|(name, m)| (name, RouteMembers::new(m.into(), &entries)))
            .collect();
        let mut snap = Self {
            slot: OnceLock::new(),
            entries: Arc::new(Entries(entries.into())),
            epoch,
            staleness_nanos,
            watched: false,
            checked: checked.into(),
            by_id,
            routes,
            version: prev.map_or(1, |p| p.version + 1),
            healthy: 0,
            unhealthy: 0,
            updated_at: prev.and_then(|p| p.updated_at),
            next_expiry: u64::MAX,
            built_at: now_nanos,
        };
        snap.count();
        snap
    }

    /// A new snapshot with these health results applied (unknown ids are ignored).
    pub(crate) fn with_records(
        &self,
        records: &[(DeploymentId, HealthRecord)],
        now: Instant,
    ) -> Self {
        let mut checked = self.checked.to_vec();
        for (id, rec) in records {
            if let Some(&i) = self.by_id.get(id) {
                let c = &mut checked[i as usize];
                c.checked_nanos = nanos_since(self.epoch, rec.checked_at);
                // Healthy after unhealthy: slow start ramps it up from here.
                if rec.healthy && c.health.as_ref().is_some_and(|h| !h.healthy) {
                    self.entries[i as usize]
                        .stats
                        .mark_recovered(c.checked_nanos);
                }
                c.health = Some(rec.clone());
            }
        }
        self.rebuilt(Arc::clone(&self.entries), checked, now, Some(now))
    }

    /// A new snapshot with these deployments marked [`Unsupported`] (unknown ids are
    /// ignored; a deployment already marked keeps its reason, and becomes unroutable if
    /// either mark says so).
    pub(crate) fn with_unsupported(
        &self,
        marks: &[(DeploymentId, Unsupported)],
        now: Instant,
    ) -> Self {
        let mut entries = self.entries.to_vec();
        for (id, mark) in marks {
            if let Some(&i) = self.by_id.get(id) {
                let e = &mut entries[i as usize];
                e.unsupported = Some(match e.unsupported.take() {
                    Some(old) => Unsupported {
                        routable: old.routable && mark.routable,
                        ..old
                    },
                    None => mark.clone(),
                });
            }
        }
        let entries = Arc::new(Entries(entries.into()));
        self.rebuilt(entries, self.checked.to_vec(), now, self.updated_at)
    }

    /// The same results, with the route lists recomputed at `now`: failed results that
    /// went stale no longer exclude their deployment.
    pub(crate) fn expired(&self, now: Instant) -> Self {
        self.rebuilt(
            Arc::clone(&self.entries),
            self.checked.to_vec(),
            now,
            self.updated_at,
        )
    }

    fn rebuilt(
        &self,
        entries: Arc<Entries>,
        checked: Vec<Checked>,
        now: Instant,
        updated_at: Option<Instant>,
    ) -> Self {
        let routes = self
            .routes
            .iter()
            .map(|(name, r)| {
                let members = RouteMembers::new(r.members.clone(), &entries);
                (Arc::clone(name), members)
            })
            .collect();
        let mut snap = Self {
            slot: OnceLock::new(),
            entries,
            epoch: self.epoch,
            staleness_nanos: self.staleness_nanos,
            watched: false,
            checked: checked.into(),
            by_id: self.by_id.clone(),
            routes,
            version: self.version + 1,
            healthy: 0,
            unhealthy: 0,
            updated_at,
            next_expiry: u64::MAX,
            built_at: nanos_since(self.epoch, now),
        };
        snap.count();
        snap
    }

    /// Marks this snapshot as watched: a task will republish it when its next failed
    /// result goes stale, so readers may trust its route lists without reading the clock.
    pub(crate) fn set_watched(&mut self) {
        self.watched = true;
    }

    /// When (nanos since epoch) the next failed result goes stale; `u64::MAX` if never.
    pub(crate) fn next_expiry(&self) -> u64 {
        self.next_expiry
    }

    /// The slot for what the request path derives from this snapshot (one value, set
    /// once: at publication by the state's deriver, or on first use). Opaque here.
    pub(crate) fn slot(&self) -> &OnceLock<Box<dyn Any + Send + Sync>> {
        &self.slot
    }

    /// The routable members of `route` (all but the unroutable [`Unsupported`] ones).
    pub(crate) fn routable_members(&self, route: &str) -> impl Iterator<Item = &Entry> {
        self.routable_indices(route)
            .map(|i| &self.entries[i as usize])
    }

    /// The indices of [`routable_members`](Self::routable_members).
    pub(crate) fn routable_indices(&self, route: &str) -> impl Iterator<Item = u32> + '_ {
        self.routes
            .get(route)
            .into_iter()
            .flat_map(|r| r.members.iter().copied())
            .filter(|&i| self.entries[i as usize].routable())
    }

    /// How many of `route`'s routable deployments there are, and how many of them are
    /// ejected at `now` (nanos since the epoch): what `max_ejection_percent` weighs.
    pub(crate) fn ejected_in(&self, route: &str, now: u64) -> (usize, usize) {
        self.routable_members(route).fold((0, 0), |(all, out), e| {
            (
                all + 1,
                out + usize::from(e.stats.ejection.remaining(now).is_some()),
            )
        })
    }

    fn count(&mut self) {
        // Routable deployments whose failed result was fresh at build time: the derived
        // lists exclude them until the earliest of these goes stale.
        let (now, staleness) = (self.built_at, self.staleness_nanos);
        self.next_expiry = self
            .entries
            .iter()
            .zip(self.checked.iter())
            .filter(|(e, c)| e.routable() && c.failed_fresh(now, staleness))
            .map(|(_, c)| c.checked_nanos.saturating_add(staleness))
            .min()
            .unwrap_or(u64::MAX);
        self.healthy = self
            .checked
            .iter()
            .filter(|c| c.health.as_ref().is_some_and(|h| h.healthy))
            .count();
        self.unhealthy = self
            .checked
            .iter()
            .filter(|c| c.health.as_ref().is_some_and(|h| !h.healthy))
            .count();
    }

    pub(crate) fn entry_by_id(&self, id: &str) -> Option<&Entry> {
        self.by_id.get(id).map(|&i| &self.entries[i as usize])
    }

    /// The last result of `id`, as this snapshot knows it.
    fn checked_by_id(&self, id: &str) -> Option<&Checked> {
        self.by_id.get(id).map(|&i| &self.checked[i as usize])
    }

    pub(crate) fn index_of(&self, id: &str) -> Option<u32> {
        self.by_id.get(id).copied()
    }

    /// Every deployment, once each, in config order.
    pub fn deployments(&self) -> impl ExactSizeIterator<Item = &Arc<Deployment>> {
        self.entries.iter().map(|e| &e.deployment)
    }

    /// The deployment with this id.
    pub fn deployment(&self, id: &str) -> Option<&Arc<Deployment>> {
        self.entry_by_id(id).map(|e| &e.deployment)
    }

    /// The last health result of a deployment, if it was ever checked.
    pub fn health(&self, id: &str) -> Option<&HealthRecord> {
        self.checked_by_id(id).and_then(|c| c.health.as_ref())
    }

    /// Whether `id`'s last result is older than the staleness threshold at `now`
    /// (a stale result counts as unknown). `false` for a deployment never checked.
    pub fn is_stale(&self, id: &str, now: Instant) -> bool {
        self.checked_by_id(id).is_some_and(|c| {
            c.health.is_some()
                && nanos_since(self.epoch, now).saturating_sub(c.checked_nanos)
                    > self.staleness_nanos
        })
    }

    /// Why `id` is unsupported (see [`Unsupported`]); `None` when it is supported.
    pub fn unsupported(&self, id: &str) -> Option<&Unsupported> {
        self.entry_by_id(id).and_then(|e| e.unsupported.as_ref())
    }

    /// How many deployments are [`Unsupported`].
    pub fn unsupported_count(&self) -> usize {
        self.entries
            .iter()
            .filter(|e| e.unsupported.is_some())
            .count()
    }

    /// The deployments of a route, in config order (unsupported ones included); `None`
    /// for an unknown route.
    pub fn route(&self, name: &str) -> Option<impl ExactSizeIterator<Item = &Arc<Deployment>>> {
        let r = self.routes.get(name)?;
        Some(
            r.members
                .iter()
                .map(|&i| &self.entries[i as usize].deployment),
        )
    }

    /// Every route name.
    pub fn routes(&self) -> impl Iterator<Item = &str> {
        self.routes.keys().map(|k| &**k)
    }

    /// How many deployments passed their last check.
    pub fn healthy_count(&self) -> usize {
        self.healthy
    }

    /// How many deployments failed their last check.
    pub fn unhealthy_count(&self) -> usize {
        self.unhealthy
    }

    /// Increases by one with every publication.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// When health results were last applied, if ever.
    pub fn last_updated(&self) -> Option<Instant> {
        self.updated_at
    }
}

impl fmt::Debug for HealthSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HealthSnapshot")
            .field("version", &self.version)
            .field("deployments", &self.entries.len())
            .field("routes", &self.routes.len())
            .field("healthy", &self.healthy)
            .field("unhealthy", &self.unhealthy)
            .finish()
    }
}
