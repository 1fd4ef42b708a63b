//! The response future and body: they observe each outcome for cooldown and latency, and
//! hold the in-flight guard until the response body is finished or dropped.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
    time::Duration,
};

use http::{HeaderMap, Response, header::RETRY_AFTER};
use http_body::{Body, Frame, SizeHint};
use pin_project::pin_project;
use tokio::time::Instant;

use crate::{
    BoxError,
    cooldown::{CooldownPolicy, CooldownSink, Outcome},
    health::HealthState,
    stats::DeploymentStats,
    time::nanos_since,
};

/// Counts one request in flight to a deployment while it lives.
#[derive(Debug)]
pub(crate) struct InFlight(Arc<DeploymentStats>);

impl InFlight {
    pub(crate) fn new(stats: Arc<DeploymentStats>) -> Self {
        stats.start();
        Self(stats)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.finish();
    }
}

/// What the future needs to record the outcome.
#[derive(Debug)]
pub(crate) struct Observer {
    pub(crate) guard: InFlight,
    pub(crate) state: HealthState,
    pub(crate) selected: super::SelectedDeployment,
    pub(crate) route_len: usize,
    pub(crate) started: Instant,
}

impl Observer {
    fn record(&self, outcome: Outcome) {
        let now = Instant::now();
        let shared = &self.state.shared;
        let stats = &self.guard.0;
        if !matches!(outcome, Outcome::Failure { status: None, .. }) {
            stats.observe_latency(
                u64::try_from((now - self.started).as_nanos()).unwrap_or(u64::MAX),
            );
        }
        let d = self.selected.deployment();
        let entered = stats.cooldown.record(
            outcome,
            nanos_since(shared.epoch, now),
            self.route_len,
            &CooldownPolicy::from_config(&shared.config),
            d.params.cooldown_time,
        );
        if let Some(dur) = entered {
            crate::telemetry::record_cooldown(d, "request");
            let status = match outcome {
                Outcome::Failure { status, .. } => status,
                _ => None,
            };
            tracing::info!(
                deployment = %d.id,
                route = %d.route,
                status,
                cooldown_secs = dur.as_secs_f64(),
                "deployment entered cooldown"
            );
            // Shared cooldowns (opt-in): a `try_send` to the coordinator, never a wait.
            if let Some(sink) = self.state.hooks().get::<CooldownSink>() {
                sink.announce(&d.id);
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
                        let guard = observer.map(|o| {
                            o.record(Outcome::classify(
                                resp.status().as_u16(),
                                retry_after(resp.headers()),
                            ));
                            resp.extensions_mut().insert(o.selected);
                            o.guard
                        });
                        Poll::Ready(Ok(resp.map(|inner| ResponseBody {
                            inner,
                            _guard: guard,
                        })))
                    }
                    Err(e) => {
                        if let Some(o) = observer {
                            o.record(Outcome::error());
                        }
                        Poll::Ready(Err(e.into()))
                    }
                }
            }
        }
    }
}

/// Parses `Retry-After` as seconds or an HTTP date.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    if let Ok(secs) = v.parse::<f64>()
        && secs.is_finite()
        && secs >= 0.0
    {
        return Some(Duration::from_secs_f64(secs.min(86_400.0)));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(
        at.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// Response body of [`HealthRouting`](crate::HealthRouting): the inner body, holding the
/// deployment's in-flight count until it ends or is dropped.
#[pin_project]
#[derive(Debug)]
pub struct ResponseBody<B> {
    #[pin]
    inner: B,
    _guard: Option<InFlight>,
}

impl<B> ResponseBody<B> {
    /// The inner body, borrowed.
    pub fn get_ref(&self) -> &B {
        &self.inner
    }

    /// The inner body.
    pub fn into_inner(self) -> B {
        self.inner
    }
}

impl<B: Body> Body for ResponseBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let res = ready!(this.inner.poll_frame(cx));
        if res.is_none() {
            // The stream is over: stop counting it as in flight now, not when dropped.
            this._guard.take();
        }
        Poll::Ready(res)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert(RETRY_AFTER, "30".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(30)));
        h.insert(RETRY_AFTER, "1.5".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_millis(1500)));
        h.insert(
            RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), Some(Duration::ZERO), "a date in the past");
        h.insert(RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&h), None);
    }
}
