//! [`RetryPolicy`]: which results are retried, after what wait, and what the caller gets
//! when the attempts run out.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use http::{Request, Response};
use tokio::time::Sleep;
use tower::retry::Policy;

use super::Settings;
use crate::{
    BoxError, MissingRoute, NoDeploymentAvailable, SelectedDeployment, UnknownRoute,
    UnsupportedRoute, classify::Class, routing::TriedDeployments,
};

/// The [`tower::retry::Policy`] behind [`RetryLayer`](super::RetryLayer), for one request
/// and its retries. Get one from [`RetryLayer::policy`](super::RetryLayer::policy).
///
/// Cloning it starts a new request: the clone has every attempt left and keeps no result.
pub struct RetryPolicy<RB> {
    settings: Arc<Settings>,
    /// Retries made so far.
    retries: u32,
    /// Whether this request has paid into the budget.
    deposited: bool,
    /// The last failed upstream result, given back if the next attempt cannot be routed.
    kept: Option<Result<Response<RB>, BoxError>>,
}

impl<RB> RetryPolicy<RB> {
    pub(super) fn new(settings: Arc<Settings>) -> Self {
        Self {
            settings,
            retries: 0,
            deposited: false,
            kept: None,
        }
    }

    /// Retries made so far for this request.
    pub fn retries(&self) -> u32 {
        self.retries
    }
}

impl<RB> Clone for RetryPolicy<RB> {
    fn clone(&self) -> Self {
        Self::new(Arc::clone(&self.settings))
    }
}

impl<RB> fmt::Debug for RetryPolicy<RB> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryPolicy")
            .field("num_retries", &self.settings.num_retries)
            .field("retries", &self.retries)
            .field("kept", &self.kept.is_some())
            .finish_non_exhaustive()
    }
}

/// What one attempt's result calls for.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// A failure worth another deployment, after this wait.
    Retry(Duration),
    /// Routing failed (no deployment left, unknown or missing route): never retried.
    Unroutable,
    /// An answer to pass on (success or the client's fault).
    Done,
}

impl Settings {
    fn verdict<RB>(&self, result: &Result<Response<RB>, BoxError>, retries: u32) -> Verdict {
        let class = match result {
            Ok(resp) => resp
                .extensions()
                .get::<Class>()
                .copied()
                .unwrap_or_else(|| {
                    self.classifier
                        .classify_response(resp.status(), resp.headers(), None)
                }),
            Err(e)
                if e.is::<NoDeploymentAvailable>()
                    || e.is::<UnknownRoute>()
                    || e.is::<UnsupportedRoute>()
                    || e.is::<MissingRoute>() =>
            {
                return Verdict::Unroutable;
            }
            Err(e) => self.classifier.classify_error(&**e),
        };
        if !class.worth_another_deployment() {
            return Verdict::Done;
        }
        if matches!(class, Class::RateLimited { .. }) {
            return Verdict::Retry(self.rate_limit_wait(class.retry_after(), retries));
        }
        Verdict::Retry(Duration::ZERO)
    }

    /// `Retry-After` (already capped by the classifier) if given, else
    /// `rate_limit_backoff` doubled per retry; at most `max_backoff`.
    fn rate_limit_wait(&self, retry_after: Option<Duration>, retries: u32) -> Duration {
        let wait = retry_after.unwrap_or_else(|| {
            self.rate_limit_backoff
                .saturating_mul(1u32.checked_shl(retries).unwrap_or(u32::MAX))
        });
        wait.min(self.max_backoff)
    }
}

impl<B: Clone, RB> Policy<Request<B>, Response<RB>, BoxError> for RetryPolicy<RB> {
    type Future = Backoff;

    fn retry(
        &mut self,
        req: &mut Request<B>,
        result: &mut Result<Response<RB>, BoxError>,
    ) -> Option<Backoff> {
        let budget = &self.settings.budget;
        if !self.deposited {
            self.deposited = true;
            budget.deposit();
        }
        match self.settings.verdict(result, self.retries) {
            Verdict::Done => None,
            Verdict::Unroutable => {
                // On a retry this means every deployment was tried or is cooling down:
                // the caller is better served by the last upstream failure.
                if let Some(kept) = self.kept.take() {
                    *result = kept;
                }
                None
            }
            Verdict::Retry(wait) => {
                if self.retries >= self.settings.num_retries {
                    return None;
                }
                if !budget.withdraw() {
                    tracing::debug!(
                        retries = self.retries,
                        "retry budget exhausted; returning the failure"
                    );
                    return None;
                }
                self.retries += 1;
                // The deployment just tried: the response's extension when the routing
                // layer attaches one, else the last one the request's record lists (the
                // retry layer gives every request one).
                let failed = result
                    .as_ref()
                    .ok()
                    .and_then(|resp| resp.extensions().get::<SelectedDeployment>())
                    .map(|d| d.id().to_string())
                    .or_else(|| {
                        req.extensions()
                            .get::<TriedDeployments>()
                            .and_then(|t| t.ids().last().map(ToString::to_string))
                    });
                tracing::debug!(
                    deployment = failed.as_deref().unwrap_or("?"),
                    status = result.as_ref().ok().map(|r| r.status().as_u16()),
                    retry = self.retries,
                    backoff_ms = wait.as_millis() as u64,
                    "retrying on another deployment"
                );
                self.kept = Some(std::mem::replace(result, Err(Box::new(Superseded))));
                Some(Backoff::new(wait))
            }
        }
    }

    fn clone_request(&mut self, req: &Request<B>) -> Option<Request<B>> {
        // With retries off, keep no copy: the request goes through once, untouched.
        (self.settings.num_retries > 0).then(|| req.clone())
    }
}

/// Stands in for a failed result the policy kept; never reaches a caller.
#[derive(Debug)]
struct Superseded;

impl fmt::Display for Superseded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("superseded by a retry")
    }
}

impl std::error::Error for Superseded {}

/// The wait before a retry: none, or a tokio sleep (so paused-time tests control it).
#[derive(Debug)]
pub struct Backoff(Option<Pin<Box<Sleep>>>);

impl Backoff {
    fn new(wait: Duration) -> Self {
        Self((!wait.is_zero()).then(|| Box::pin(tokio::time::sleep(wait))))
    }
}

impl Future for Backoff {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match self.0.as_mut() {
            None => Poll::Ready(()),
            Some(sleep) => sleep.as_mut().poll(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use http::StatusCode;

    use super::*;

    fn settings() -> Settings {
        Settings {
            num_retries: 2,
            max_backoff: Duration::from_secs(5),
            rate_limit_backoff: Duration::from_millis(500),
            budget: Arc::new(super::super::RetryBudget::default()),
            classifier: Arc::new(crate::classify::DefaultClassifier::default()),
        }
    }

    fn status(s: u16, retry_after: Option<&str>) -> Result<Response<()>, BoxError> {
        let mut r = Response::new(());
        *r.status_mut() = StatusCode::from_u16(s).unwrap();
        if let Some(v) = retry_after {
            r.headers_mut()
                .insert(http::header::RETRY_AFTER, v.parse().unwrap());
        }
        Ok(r)
    }

    #[test]
    fn verdicts() {
        let s = settings();
        // 402 and 404 are retried since the classifier took LiteLLM's cooldown rule.
        for code in [500, 502, 503, 504, 408, 401, 402, 404] {
            assert_eq!(
                s.verdict(&status(code, None), 0),
                Verdict::Retry(Duration::ZERO),
                "{code}"
            );
        }
        for code in [200, 201, 304, 400, 403, 413, 422] {
            assert_eq!(s.verdict(&status(code, None), 0), Verdict::Done, "{code}");
        }
        let io: Result<Response<()>, BoxError> = Err(Box::new(std::io::Error::other("reset")));
        assert_eq!(s.verdict(&io, 0), Verdict::Retry(Duration::ZERO));
        let local: Result<Response<()>, BoxError> =
            Err(Box::new(crate::classify::LocalError::new("bad body")));
        assert_eq!(s.verdict(&local, 0), Verdict::Done);
        let unknown: Result<Response<()>, BoxError> =
            Err(Box::new(UnknownRoute { route: "x".into() }));
        assert_eq!(s.verdict(&unknown, 0), Verdict::Unroutable);
        let missing: Result<Response<()>, BoxError> = Err(Box::new(MissingRoute::new()));
        assert_eq!(s.verdict(&missing, 0), Verdict::Unroutable);
    }

    #[test]
    fn rate_limit_waits_follow_retry_after_else_double_and_are_capped() {
        let s = settings();
        let wait = |r: Result<Response<()>, BoxError>, n| match s.verdict(&r, n) {
            Verdict::Retry(d) => d,
            v => panic!("{v:?}"),
        };
        assert_eq!(wait(status(429, Some("2")), 0), Duration::from_secs(2));
        assert_eq!(wait(status(429, Some("30")), 0), Duration::from_secs(5));
        assert_eq!(wait(status(429, None), 0), Duration::from_millis(500));
        assert_eq!(wait(status(429, None), 2), Duration::from_secs(2));
        assert_eq!(wait(status(429, None), 4), Duration::from_secs(5));
        assert_eq!(
            wait(status(429, None), 99),
            Duration::from_secs(5),
            "no overflow"
        );
    }
}
