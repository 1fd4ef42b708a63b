//! The stream stall timer (opt-in, `router_settings.stream_stall_timeout`).
//!
//! A successful streaming response (`text/event-stream`) whose upstream stops sending
//! without closing would otherwise hold the client, the deployment's in-flight count and
//! a connection until someone's request timeout, and it would count as a success. With the
//! timer on, the response body bounds each wait for a frame: the first one (time to first
//! token) and every one after. A wait starts when the consumer asks for the next frame and
//! the upstream has none ready, so a consumer that reads slowly (or not at all) never makes
//! a stall; a body it drops is not one either.
//!
//! Such a stream's outcome is recorded once, when it settles, instead of at its head:
//! a success when it ends (or is dropped by its consumer), the classifier's class of the
//! error when its body fails, and on a stall the class of [`StreamStalled`] (by default
//! `Timeout`): a failure of the deployment for cooldown and outlier ejection, with the
//! latency penalty, exactly once. The stalled body then yields that error and ends.
//!
//! Off, it costs nothing: no timer, no allocation, one branch per response and per frame.

use std::{
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use http::HeaderMap;
use http_body::{Body, Frame};
use pin_project::pin_project;
use tokio::time::{Instant, Sleep};

use super::future::Observer;
use crate::{
    BoxError,
    classify::Class,
    error::{StallGap, StreamStalled},
};

/// Whether a response is a server-sent-event stream (its `Content-Type`).
pub(crate) fn is_event_stream(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("text/event-stream"))
}

/// Bounds the waits of one successful streaming response and records its outcome once.
#[pin_project]
#[derive(Debug)]
pub(crate) struct Stall {
    #[pin]
    sleep: Sleep,
    timeout: Duration,
    /// The next `Pending` starts a wait: the consumer asked for a frame.
    start_wait: bool,
    gap: StallGap,
    outcome: Outcome,
    /// The deployment streaming (the observer is gone once settled).
    selected: super::SelectedDeployment,
}

/// The observer until the outcome is recorded; recorded as the head's success if the
/// body is dropped before it settles (its consumer went away: not the deployment's fault).
#[derive(Debug)]
struct Outcome {
    observer: Option<Observer>,
    status: u16,
}

impl Outcome {
    /// Records `class` and drops the observer (and with it the in-flight count). A
    /// failure takes no time-to-first-frame sample: its penalty is the latency sample.
    fn settle(&mut self, class: &Class, status: Option<u16>) {
        if let Some(mut o) = self.observer.take() {
            if class.is_deployment_fault() {
                o.guard.forget_first_byte();
            }
            o.record(class, status);
        }
    }
}

impl Drop for Outcome {
    fn drop(&mut self) {
        let status = self.status;
        self.settle(&Class::Success, Some(status));
    }
}

/// `now + d`, saturating far in the future.
fn deadline(d: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(d)
        .unwrap_or_else(|| now + Duration::from_secs(30 * 365 * 86_400))
}

impl Stall {
    /// A timer of `timeout` for a response with status `status` whose outcome `observer`
    /// records. Needs a Tokio runtime with time enabled.
    pub(crate) fn new(observer: Observer, timeout: Duration, status: u16) -> Pin<Box<Self>> {
        let selected = observer.guard.selected().clone();
        Box::pin(Self {
            selected,
            sleep: tokio::time::sleep_until(deadline(timeout)),
            timeout,
            start_wait: true,
            gap: StallGap::FirstFrame,
            outcome: Outcome {
                observer: Some(observer),
                status,
            },
        })
    }

    /// Whether the outcome is recorded (the stream ended, failed or stalled).
    /// The deployment streaming.
    pub(crate) fn selected(&self) -> &super::SelectedDeployment {
        &self.selected
    }

    pub(crate) fn settled(&self) -> bool {
        self.outcome.observer.is_none()
    }

    /// Polls `inner` for a frame within the timer; see the module docs.
    pub(crate) fn poll_frame<B>(
        self: Pin<&mut Self>,
        inner: Pin<&mut B>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, BoxError>>>
    where
        B: Body,
        B::Error: Into<BoxError>,
    {
        let mut s = self.project();
        let Some(o) = s.outcome.observer.as_mut() else {
            return Poll::Ready(None); // settled: a stalled or failed stream is over
        };
        match inner.poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                o.guard.first_byte();
                *s.gap = StallGap::BetweenFrames;
                *s.start_wait = true;
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                let e: BoxError = e.into();
                let class = o.config().classify_error(&*e);
                s.outcome.settle(&class, None);
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                let status = s.outcome.status;
                s.outcome.settle(&Class::Success, Some(status));
                Poll::Ready(None)
            }
            Poll::Pending => {
                if *s.start_wait {
                    *s.start_wait = false;
                    s.sleep.as_mut().reset(deadline(*s.timeout));
                }
                if s.sleep.poll(cx).is_pending() {
                    return Poll::Pending;
                }
                let d = o.guard.selected().deployment();
                let err = StreamStalled {
                    deployment: d.id().clone(),
                    gap: *s.gap,
                    timeout: *s.timeout,
                };
                tracing::warn!(
                    deployment = %d.id(),
                    route = %d.route(),
                    gap = match err.gap {
                        StallGap::FirstFrame => "first_frame",
                        StallGap::BetweenFrames => "between_frames",
                    },
                    timeout_secs = err.timeout.as_secs_f64(),
                    "stream stalled; ending it"
                );
                let class = o.config().classify_error(&err);
                s.outcome.settle(&class, None);
                Poll::Ready(Some(Err(Box::new(err))))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_streams_are_known_by_their_content_type() {
        let with = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static(v),
            );
            is_event_stream(&h)
        };
        assert!(with("text/event-stream"));
        assert!(with("text/event-stream; charset=utf-8"));
        assert!(with("Text/Event-Stream"));
        assert!(!with("application/json"));
        assert!(!with("text/event-streaming"));
        assert!(!is_event_stream(&HeaderMap::new()));
    }
}
