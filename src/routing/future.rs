//! The response future and body: they observe each outcome for cooldown and latency, and
//! hold the in-flight guard until the response body is finished or dropped.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
    time::Duration,
};

use http::Response;
use http_body::{Body, Frame, SizeHint};
use pin_project::pin_project;
use tokio::time::Instant;

use crate::{
    BoxError,
    classify::Class,
    config::{Config, OutlierDetection},
    cooldown::{CooldownPolicy, CooldownSink},
    ejection,
    health::HealthState,
    routing::{
        SelectedDeployment,
        stall::{Stall, is_event_stream},
    },
    stats::{DeploymentStats, minute_of},
    time::nanos_since,
};

/// Counts one request in flight to a deployment until the response ends (or is dropped),
/// and takes the latency sample of a successful response at its first body frame (or
/// when it ends before one). Holds the [`SelectedDeployment`] the response came from.
///
/// Kept to 32 bytes (the start time and two flags rather than an `Option<u64>` and a
/// flag): a response whose body holds it is moved whole several times per request.
#[derive(Debug)]
pub(crate) struct InFlight {
    selected: SelectedDeployment,
    /// When the request was routed, in nanos since the state's epoch; [`UNREAD`] when
    /// its routing did not read the clock (it does whenever latency is sampled).
    started: u64,
    /// A latency sample is pending (taken from `started` at the first frame or the end).
    sample_pending: bool,
    /// Still counted in flight.
    live: bool,
}

/// [`InFlight::started`] of a request whose routing did not read the clock.
const UNREAD: u64 = u64::MAX;

impl InFlight {
    /// Counts a request routed at `started` (nanos since the state's epoch; `None` when
    /// its routing did not read the clock) in flight.
    pub(crate) fn new(selected: SelectedDeployment, started: Option<u64>) -> Self {
        selected.stats().start();
        Self {
            selected,
            started: started.unwrap_or(UNREAD),
            sample_pending: false,
            live: true,
        }
    }

    /// When the request was routed, in nanos since the state's epoch, if its routing read
    /// the clock (always when latency is sampled).
    pub(crate) fn started(&self) -> Option<u64> {
        (self.started != UNREAD).then_some(self.started)
    }

    /// Takes a time-to-first-frame sample at the first frame (or at the end).
    pub(super) fn await_first_byte(&mut self) {
        self.sample_pending = true;
    }

    /// The deployment's statistics.
    pub(crate) fn stats(&self) -> &DeploymentStats {
        self.selected.stats()
    }

    /// The deployment the request went to.
    pub(crate) fn selected(&self) -> &SelectedDeployment {
        &self.selected
    }

    pub(super) fn first_byte(&mut self) {
        if std::mem::take(&mut self.sample_pending) && self.started != UNREAD {
            let owner = &self.selected.core.owner;
            let now = nanos_since(owner.epoch, Instant::now());
            self.selected.stats().observe_latency(
                now.saturating_sub(self.started),
                now,
                owner.tau_nanos(),
            );
        }
    }

    /// Takes no time-to-first-frame sample (a failed stream's penalty stands instead).
    pub(super) fn forget_first_byte(&mut self) {
        self.sample_pending = false;
    }

    /// The response is over: takes the pending sample and stops counting it in flight
    /// (once; the selected deployment stays readable).
    pub(super) fn end(&mut self) {
        if self.live {
            self.live = false;
            self.first_byte();
            self.selected.stats().finish();
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.end();
    }
}

/// What the future needs to record the outcome.
#[derive(Debug)]
pub(crate) struct Observer {
    pub(crate) guard: InFlight,
    pub(crate) route_len: usize,
    /// Whether to take latency samples (some picker uses `latency-based-routing`).
    pub(crate) latency: bool,
    /// Whether the response gets the `SelectedDeployment` extension.
    pub(crate) respond_with_selected: bool,
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Observer {
    /// The config of the state the deployment belongs to (reached through the
    /// request's `Arc<EntryCore>`: a request clones no state handle).
    pub(super) fn config(&self) -> &Config {
        self.guard.selected().core.owner.config()
    }

    /// The state the deployment belongs to, for the rare paths (a cooldown or ejection
    /// entered); `None` once every owner of it is gone.
    fn state(&self) -> Option<HealthState> {
        self.guard.selected().core.owner.state()
    }

    /// Records an answer's class (`status`: the answer's status, `None` for an error).
    #[inline]
    pub(super) fn record(&self, class: &Class, status: Option<u16>) {
        let owner = &self.guard.selected().core.owner;
        if *class == Class::Success && owner.plain_success {
            // Nothing the config turns on asks more of a success than its count in the
            // cooldown window, in the minute it is answered in: the state's kept minute
            // (no clock read) while its watchdog keeps one.
            let minute = owner
                .minute()
                .unwrap_or_else(|| minute_of(nanos_since(owner.epoch, Instant::now())));
            self.guard.stats().cooldown.record_success(minute);
        } else {
            self.record_all(class, status);
        }
    }

    /// [`record`](Self::record) of any answer, with everything the config turns on.
    fn record_all(&self, class: &Class, status: Option<u16>) {
        let cfg = self.config();
        let epoch = self.guard.selected().core.owner.epoch;
        // A success with no traffic-health or outlier bookkeeping only counts in its
        // minute's window: the request's start tells it, when its routing read the clock.
        let exact = class.is_deployment_fault()
            || cfg.health.skip_when_traffic_healthy
            || cfg.router.outlier_detection.is_some();
        let at = match self.guard.started() {
            Some(t) if !exact => t,
            _ => nanos_since(epoch, Instant::now()),
        };
        let stats = self.guard.stats();
        if self.latency && class.is_deployment_fault() {
            // A failure counts as a high latency, so the latency strategy moves away
            // until the estimate has decayed (then the deployment is tried again).
            let penalty = nanos(cfg.router.routing_strategy_args.latency_failure_penalty);
            let took = at
                .saturating_sub(self.guard.started().unwrap_or(at))
                .max(penalty);
            let tau = self.guard.selected().core.owner.tau_nanos();
            stats.observe_latency(took, at, tau);
        }
        // Traffic as a probe, and tiered rounds (a failure calls for a billed probe).
        let h = &cfg.health;
        if (h.skip_when_traffic_healthy || h.tiered()) && class.is_counted() {
            stats.observe_traffic(*class == Class::Success, at);
        }
        let d = self.guard.selected().deployment();
        let entered = stats.cooldown.record(
            class,
            at,
            self.route_len,
            &CooldownPolicy::from_config(cfg),
            d.params().cooldown_time,
        );
        if let Some(dur) = entered {
            crate::telemetry::record_cooldown(d, "request");
            tracing::info!(
                deployment = %d.id(),
                route = %d.route(),
                status,
                class = class.as_str(),
                cooldown_secs = dur.as_secs_f64(),
                "deployment entered cooldown"
            );
            // Shared cooldowns (opt-in): a `try_send` to the coordinator, never a wait.
            if let Some(state) = self.state()
                && let Some(sink) = state.hooks().get::<CooldownSink>()
            {
                sink.announce(d.id(), false, class.as_str());
            }
        }
        if let Some(od) = &cfg.router.outlier_detection {
            self.record_ejection(class, status, at, od);
        }
    }

    /// `stream_stall_timeout`, when it applies to an answer: on, and a successful stream.
    #[inline]
    fn stall_timeout(&self, class: &Class, headers: &http::HeaderMap) -> Option<Duration> {
        let t = self.config().router.stream_stall_timeout?;
        (*class == Class::Success && is_event_stream(headers)).then_some(t)
    }

    /// Feeds outlier detection; `now` in nanos since the state's epoch.
    fn record_ejection(&self, class: &Class, status: Option<u16>, now: u64, od: &OutlierDetection) {
        let d = self.guard.selected().deployment();
        // Only when a rule says eject: how much of the route is out now.
        let room = || {
            // A state gone leaves nobody to route to: no room needed.
            let Some(state) = self.state() else {
                return false;
            };
            let (_, ejected) = state.load().ejected_in(d.route(), now);
            ejection::room_for_one_more(od, self.route_len, ejected)
        };
        let stats = self.guard.stats();
        if let Some(dur) = stats.ejection.record(class, now, od, room) {
            crate::telemetry::record_ejection(d);
            tracing::info!(
                deployment = %d.id(),
                route = %d.route(),
                status,
                class = class.as_str(),
                ejections = stats.ejection.ejections(),
                ejection_secs = dur.as_secs_f64(),
                "deployment ejected"
            );
            // Shared like a cooldown (opt-in): a `try_send`, never a wait.
            if let Some(state) = self.state()
                && let Some(sink) = state.hooks().get::<CooldownSink>()
            {
                sink.announce(d.id(), true, class.as_str());
            }
        }
    }
}

/// Response future of [`HealthRouting`](crate::HealthRouting).
#[pin_project]
#[derive(Debug)]
pub struct ResponseFuture<F> {
    #[pin]
    kind: Kind<F>,
}

#[pin_project(project = KindProj)]
#[derive(Debug)]
enum Kind<F> {
    Called {
        #[pin]
        fut: F,
        observer: Option<Observer>,
    },
    Failed {
        error: Option<BoxError>,
    },
}

impl<F> ResponseFuture<F> {
    pub(crate) fn called(fut: F, observer: Observer) -> Self {
        Self {
            kind: Kind::Called {
                fut,
                observer: Some(observer),
            },
        }
    }

    pub(crate) fn failed(error: BoxError) -> Self {
        Self {
            kind: Kind::Failed { error: Some(error) },
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: Into<BoxError>,
{
    type Output = Result<Response<ResponseBody<B>>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Failed { error } => Poll::Ready(Err(error
                .take()
                .unwrap_or_else(|| "ResponseFuture polled after completion".into()))),
            KindProj::Called { fut, observer } => {
                let res = ready!(fut.poll(cx));
                let observer = observer.take();
                match res {
                    Ok(mut resp) => {
                        let mut stall = None;
                        let guard = observer.and_then(|mut o| {
                            // A service that read the body may have classified it already.
                            let class =
                                resp.extensions()
                                    .get::<Class>()
                                    .copied()
                                    .unwrap_or_else(|| {
                                        o.config().classify_response(
                                            resp.status(),
                                            resp.headers(),
                                            None,
                                        )
                                    });
                            let status = resp.status().as_u16();
                            // Opt-in: a successful stream's outcome waits for its end.
                            let timed = o.stall_timeout(&class, resp.headers());
                            if timed.is_none() {
                                o.record(&class, Some(status));
                            }
                            if let Some(u) = resp.extensions().get::<TokenUsage>() {
                                o.guard.selected().record_tokens(u.total());
                            }
                            if o.respond_with_selected {
                                resp.extensions_mut().insert(o.guard.selected().clone());
                            }
                            if o.latency && matches!(class, Class::Success) {
                                o.guard.await_first_byte();
                            }
                            if let Some(t) = timed {
                                stall = Some(Stall::new(o, t, status));
                                return None;
                            }
                            Some(o.guard)
                        });
                        Poll::Ready(Ok(resp.map(|inner| ResponseBody {
                            inner,
                            guard,
                            stall,
                        })))
                    }
                    Err(e) => {
                        let e: BoxError = e.into();
                        if let Some(o) = observer {
                            let class = o.config().classify_error(&*e);
                            o.record(&class, None);
                        }
                        Poll::Ready(Err(e))
                    }
                }
            }
        }
    }
}

/// Tokens a response used, as a response extension the inner service (the forwarder)
/// sets when it knows them before returning the response (a buffered JSON answer's
/// `usage`). [`HealthRouting`](crate::HealthRouting) adds them to the deployment's usage
/// this minute, for `usage-based-routing` and `tpm` limits. For a stream, whose `usage`
/// arrives at its end, call [`SelectedDeployment::record_tokens`](crate::SelectedDeployment::record_tokens) instead.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TokenUsage {
    /// `usage.prompt_tokens`.
    pub prompt_tokens: u64,
    /// `usage.completion_tokens`.
    pub completion_tokens: u64,
}

impl TokenUsage {
    /// Prompt plus completion tokens.
    pub fn total(&self) -> u64 {
        self.prompt_tokens.saturating_add(self.completion_tokens)
    }
}

/// Response body of [`HealthRouting`](crate::HealthRouting): the inner body, holding the
/// deployment's in-flight count until it ends or is dropped.
///
/// Its first frame is when the latency of a successful response is measured (time to
/// first token for a stream); a body that ends or is dropped without a frame is measured
/// then.
///
/// With `router_settings.stream_stall_timeout`, a successful `text/event-stream` body
/// that waits longer than that for a frame yields a
/// [`StreamStalled`](crate::StreamStalled) error and ends; the stall counts as a failure
/// of the deployment. Its errors are the inner body's, boxed.
#[pin_project]
#[derive(Debug)]
pub struct ResponseBody<B> {
    #[pin]
    inner: B,
    guard: Option<InFlight>,
    /// The stall timer; `None` unless `stream_stall_timeout` is set and this is a
    /// successful stream.
    stall: Option<Pin<Box<Stall>>>,
}

impl<B> ResponseBody<B> {
    /// The inner body, borrowed.
    pub fn get_ref(&self) -> &B {
        &self.inner
    }

    /// The deployment that answered: what the response's
    /// [`SelectedDeployment`] extension holds with
    /// [`HealthRoutingLayer::with_response_extension`](crate::HealthRoutingLayer::with_response_extension),
    /// here at no cost (no extension map). `None` only for a body not built by
    /// [`HealthRouting`](crate::HealthRouting) from a routed request (never in practice).
    pub fn selected_deployment(&self) -> Option<&SelectedDeployment> {
        match (&self.guard, &self.stall) {
            (Some(g), _) => Some(g.selected()),
            (None, Some(s)) => Some(s.selected()),
            (None, None) => None,
        }
    }

    /// The inner body.
    pub fn into_inner(self) -> B {
        self.inner
    }
}

impl<B> Body for ResponseBody<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    type Data = B::Data;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        if let Some(stall) = this.stall {
            return stall.as_mut().poll_frame(this.inner, cx);
        }
        let res = ready!(this.inner.poll_frame(cx)).map(|r| r.map_err(Into::into));
        if let Some(g) = this.guard.as_mut() {
            if res.is_none() {
                // The stream is over: stop counting it as in flight now, not when dropped.
                g.end();
            } else {
                g.first_byte();
            }
        }
        Poll::Ready(res)
    }

    fn is_end_stream(&self) -> bool {
        self.stall.as_ref().is_some_and(|s| s.settled()) || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
