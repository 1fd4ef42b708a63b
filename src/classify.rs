//! One failure classifier: what an upstream's answer (or the lack of one) means.
//!
//! In the shape of tower-http's `ClassifyResponse`: a response (status, headers and, for
//! LLM upstreams, the error body) or an error maps to one [`Class`]. Every consumer reads
//! the class, never a status table of its own:
//!
//! * cooldown counts a class that [`counts_toward_cooldown`](Class::counts_toward_cooldown);
//! * [`RetryLayer`](crate::retry::RetryLayer) retries one that is
//!   [`worth_another_deployment`](Class::worth_another_deployment), waiting its capped
//!   [`retry_after`](Class::retry_after);
//! * probe verdicts come from [`probe_verdict`](Class::probe_verdict).
//!
//! # The default rules ([`DefaultClassifier`])
//!
//! | answer | class | deployment at fault (cooldown, retry elsewhere) | probe verdict |
//! |---|---|---|---|
//! | 2xx, 3xx | `Success` | no | healthy |
//! | 1xx (an interim answer is no final one) | `ServerError` | yes | unhealthy |
//! | 429 | `RateLimited { retry_after }` | yes (a 429 cools a shared deployment at once) | transient |
//! | 429 with `insufficient_quota`, 402 | `Quota` | yes | unhealthy |
//! | 401 | `Auth` | yes (each deployment has its own key) | unhealthy |
//! | 404 | `NotFound` | yes | unhealthy |
//! | 408, a timeout, a stalled stream ([`StreamStalled`](crate::StreamStalled)) | `Timeout` | yes | transient |
//! | 503, 529, Anthropic `overloaded_error` | `Overloaded` | yes | unhealthy |
//! | other 5xx | `ServerError` | yes | unhealthy |
//! | connect / TLS / reset errors | `Connection` | yes | unhealthy |
//! | 400 with `context_length_exceeded` (or "maximum context length") | `ContextWindowExceeded` | no | unhealthy |
//! | 400 with `content_policy_violation` / `content_filter` | `ContentPolicy` | no | unhealthy |
//! | other 4xx (400, 403, 413, 422, ...) | `CallerFault` | no | unhealthy |
//! | [`LocalError`], routing errors, a local resource error (`EMFILE` "too many open files", `ENFILE`, `ENOBUFS`, `ENOMEM`, `EADDRNOTAVAIL`: see [`is_local_resource_error`]) | `Local` | no | inconclusive (says nothing about the upstream) |
//!
//! The deployment-at-fault column is LiteLLM 1.109's `_is_cooldown_required`: 429, 401,
//! 402, 404, 408 and everything that is not a 4xx.
//!
//! `Retry-After` (seconds, fractional seconds or an HTTP date) is capped at
//! `router_settings.max_retry_after` (default 60 s): an upstream cannot cool a deployment
//! down, or hold a retry, for longer. Negative or unreadable values are ignored.
//!
//! # Your own rules
//!
//! Implement [`Classify`] (usually wrapping [`DefaultClassifier`]) and hand it to
//! [`ConfigBuilder::classifier`](crate::ConfigBuilder::classifier); cooldown, retries and
//! the HTTP prober then use it. A service inside the routing layer that reads response
//! bodies can also put a [`Class`] in the response's extensions: the routing layer takes
//! that one instead of classifying the head itself.
//!
//! ```
//! use std::{sync::Arc, time::Duration};
//! use http::{HeaderMap, StatusCode};
//! use tower_health_routing::classify::{Class, Classify, DefaultClassifier};
//!
//! /// An upstream that answers 409 when it is busy.
//! #[derive(Debug, Default)]
//! struct Busy409(DefaultClassifier);
//!
//! impl Classify for Busy409 {
//!     fn classify_response(&self, status: StatusCode, headers: &HeaderMap, body: Option<&[u8]>) -> Class {
//!         if status == StatusCode::CONFLICT {
//!             return Class::Overloaded;
//!         }
//!         self.0.classify_response(status, headers, body)
//!     }
//!     fn classify_error(&self, error: &(dyn std::error::Error + 'static)) -> Class {
//!         self.0.classify_error(error)
//!     }
//! }
//!
//! let c = Busy409::default();
//! assert_eq!(c.classify_response(StatusCode::CONFLICT, &HeaderMap::new(), None), Class::Overloaded);
//! let cfg = tower_health_routing::Config::builder().classifier(Arc::new(c)).build().unwrap();
//! # let _ = cfg;
//! ```

use std::{
    error::Error as StdError,
    fmt,
    time::{Duration, SystemTime},
};

use http::{HeaderMap, StatusCode, header::RETRY_AFTER};

/// What one upstream answer (or failure to answer) means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Class {
    /// The upstream answered (2xx, 3xx).
    Success,
    /// Rate-limited (429), with its `Retry-After`, already capped.
    RateLimited {
        /// How long the upstream asked to wait, at most `max_retry_after`.
        retry_after: Option<Duration>,
    },
    /// The deployment's account is out of quota or credit (402, `insufficient_quota`).
    Quota,
    /// The deployment's credentials were refused (401).
    Auth,
    /// The deployment does not know the model or path (404).
    NotFound,
    /// The upstream is overloaded (503, 529, `overloaded_error`).
    Overloaded,
    /// No answer in time (408, or a timeout).
    Timeout,
    /// The upstream could not be reached (connect, TLS, reset).
    Connection,
    /// The caller's own fault: a malformed request (400, 403, 413, 422, ...).
    CallerFault,
    /// The prompt does not fit the model's context window: the caller's fault.
    ContextWindowExceeded,
    /// The provider's content policy refused the request: the caller's fault.
    ContentPolicy,
    /// Another server error (5xx).
    ServerError,
    /// A failure this process made itself (no upstream was asked, or it was asked
    /// wrongly by us): never the deployment's fault.
    Local,
}

/// What a probe's [`Class`] says about the deployment's health.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProbeVerdict {
    /// It passed.
    Healthy,
    /// It failed.
    Unhealthy,
    /// It failed in a way `health_check_ignore_transient_errors` may ignore (429, 408,
    /// timeouts).
    Transient,
    /// It could not be made here (a [`Class::Local`] failure: this process ran out of
    /// file descriptors or buffers, or could not build the request): it says nothing
    /// about the upstream. The deployment keeps the state it had, and an on-demand
    /// `/health` lists it under `unchecked_endpoints` with the reason, not as unhealthy.
    Inconclusive,
}

impl Class {
    /// Whether the failure is the deployment's (LiteLLM's `_is_cooldown_required`).
    pub fn is_deployment_fault(&self) -> bool {
        matches!(
            self,
            Self::RateLimited { .. }
                | Self::Quota
                | Self::Auth
                | Self::NotFound
                | Self::Overloaded
                | Self::Timeout
                | Self::Connection
                | Self::ServerError
        )
    }

    /// Whether the answer counts as a failure in the deployment's cooldown window.
    pub fn counts_toward_cooldown(&self) -> bool {
        self.is_deployment_fault()
    }

    /// Whether a request counts in the cooldown window at all (a success or a
    /// deployment fault; the caller's and our own failures are not counted).
    pub fn is_counted(&self) -> bool {
        *self == Self::Success || self.is_deployment_fault()
    }

    /// Whether a rate limit cools a deployment that shares its route at once.
    pub fn is_rate_limit(&self) -> bool {
        matches!(self, Self::RateLimited { .. } | Self::Quota)
    }

    /// Whether another deployment of the route is worth a retry.
    pub fn worth_another_deployment(&self) -> bool {
        self.is_deployment_fault()
    }

    /// The capped `Retry-After` of a rate limit.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after } => *retry_after,
            _ => None,
        }
    }

    /// What a probe that got this class says.
    pub fn probe_verdict(&self) -> ProbeVerdict {
        match self {
            Self::Success => ProbeVerdict::Healthy,
            Self::RateLimited { .. } | Self::Timeout => ProbeVerdict::Transient,
            Self::Local => ProbeVerdict::Inconclusive,
            _ => ProbeVerdict::Unhealthy,
        }
    }

    /// A short name (`rate_limited`, `context_window_exceeded`, ...) for logs and metrics.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::RateLimited { .. } => "rate_limited",
            Self::Quota => "quota",
            Self::Auth => "auth",
            Self::NotFound => "not_found",
            Self::Overloaded => "overloaded",
            Self::Timeout => "timeout",
            Self::Connection => "connection",
            Self::CallerFault => "caller_fault",
            Self::ContextWindowExceeded => "context_window_exceeded",
            Self::ContentPolicy => "content_policy",
            Self::ServerError => "server_error",
            Self::Local => "local",
        }
    }
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Turns an upstream's answer, or an error, into a [`Class`]. Object-safe: consumers hold
/// an `Arc<dyn Classify>`.
pub trait Classify: Send + Sync + fmt::Debug + 'static {
    /// Classifies an answer by its status and headers and, when the caller has read it,
    /// its (error) body.
    fn classify_response(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        body: Option<&[u8]>,
    ) -> Class;

    /// Classifies an error that took the place of an answer.
    fn classify_error(&self, error: &(dyn StdError + 'static)) -> Class;
}

/// The default rules (see the [module docs](self)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DefaultClassifier {
    max_retry_after: Duration,
}

/// The default cap on an upstream's `Retry-After`: 60 s.
pub const DEFAULT_MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

impl Default for DefaultClassifier {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_RETRY_AFTER)
    }
}

impl DefaultClassifier {
    /// The default rules, capping `Retry-After` at `max_retry_after`.
    pub fn new(max_retry_after: Duration) -> Self {
        Self { max_retry_after }
    }

    /// The cap on `Retry-After`.
    pub fn max_retry_after(&self) -> Duration {
        self.max_retry_after
    }
}

impl Classify for DefaultClassifier {
    // Inlined as far as a success (every request's answer classifies): the rules for the
    // failures are a call of their own.
    #[inline]
    fn classify_response(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        body: Option<&[u8]>,
    ) -> Class {
        let code = status.as_u16();
        if code < 200 {
            return Class::ServerError;
        }
        if code < 400 {
            return Class::Success;
        }
        self.classify_failure(code, headers, body)
    }

    fn classify_error(&self, error: &(dyn StdError + 'static)) -> Class {
        let mut cur: Option<&(dyn StdError + 'static)> = Some(error);
        while let Some(e) = cur {
            if e.is::<LocalError>()
                || e.is::<crate::NoDeploymentAvailable>()
                || e.is::<crate::UnknownRoute>()
                || e.is::<crate::UnsupportedRoute>()
                || e.is::<crate::MissingRoute>()
            {
                return Class::Local;
            }
            if is_resource_exhaustion(e) {
                return Class::Local;
            }
            if e.is::<tokio::time::error::Elapsed>() || e.is::<crate::StreamStalled>() {
                return Class::Timeout;
            }
            if let Some(io) = e.downcast_ref::<std::io::Error>()
                && io.kind() == std::io::ErrorKind::TimedOut
            {
                return Class::Timeout;
            }
            cur = e.source();
        }
        Class::Connection
    }
}

impl DefaultClassifier {
    /// [`Classify::classify_response`] of a status from 400 up.
    fn classify_failure(&self, code: u16, headers: &HeaderMap, body: Option<&[u8]>) -> Class {
        let says = |needles: &[&str]| body.is_some_and(|b| contains_any(b, needles));
        match code {
            429 if says(&["insufficient_quota"]) => Class::Quota,
            429 => Class::RateLimited {
                retry_after: retry_after(headers, self.max_retry_after),
            },
            402 => Class::Quota,
            401 => Class::Auth,
            404 => Class::NotFound,
            408 => Class::Timeout,
            400..=499 if says(CONTEXT_MARKERS) => Class::ContextWindowExceeded,
            400..=499 if says(POLICY_MARKERS) => Class::ContentPolicy,
            400..=499 => Class::CallerFault,
            503 | 529 => Class::Overloaded,
            _ if says(&["overloaded_error"]) => Class::Overloaded,
            _ => Class::ServerError,
        }
    }
}

/// Phrases of a context-window error (OpenAI's code, Anthropic's and others' messages).
const CONTEXT_MARKERS: &[&str] = &[
    "context_length_exceeded",
    "maximum context length",
    "context window",
    "prompt is too long",
];
/// Codes of a content-policy refusal (OpenAI, Azure).
const POLICY_MARKERS: &[&str] = &["content_policy_violation", "content_filter"];

fn contains_any(body: &[u8], needles: &[&str]) -> bool {
    let lower = String::from_utf8_lossy(body).to_ascii_lowercase();
    needles.iter().any(|n| lower.contains(n))
}

/// Whether `error`, or an error in its `source()` chain, says that this process ran out
/// of a resource of its own: file descriptors (`EMFILE` "Too many open files", `ENFILE`),
/// socket buffers (`ENOBUFS`), memory (`ENOMEM`) or local ports (`EADDRNOTAVAIL`). Such a
/// failure is never an upstream's: [`DefaultClassifier`] classifies it [`Class::Local`].
pub fn is_local_resource_error(error: &(dyn StdError + 'static)) -> bool {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(error);
    while let Some(e) = cur {
        if is_resource_exhaustion(e) {
            return true;
        }
        cur = e.source();
    }
    false
}

/// `e` itself (not its sources) is an I/O error of a local resource running out.
fn is_resource_exhaustion(e: &(dyn StdError + 'static)) -> bool {
    let Some(io) = e.downcast_ref::<std::io::Error>() else {
        return false;
    };
    if io.kind() == std::io::ErrorKind::OutOfMemory {
        return true;
    }
    // errno values: EMFILE, ENFILE, ENOBUFS, ENOMEM, EADDRNOTAVAIL.
    #[cfg(target_os = "linux")]
    const CODES: &[i32] = &[24, 23, 105, 12, 99];
    #[cfg(any(target_os = "macos", target_os = "ios", target_os = "freebsd"))]
    const CODES: &[i32] = &[24, 23, 55, 12, 49];
    #[cfg(windows)]
    const CODES: &[i32] = &[10024, 10055, 10049]; // WSAEMFILE, WSAENOBUFS, WSAEADDRNOTAVAIL
    #[cfg(not(any(
        target_os = "linux",
        target_os = "macos",
        target_os = "ios",
        target_os = "freebsd",
        windows
    )))]
    const CODES: &[i32] = &[];
    io.raw_os_error().is_some_and(|c| CODES.contains(&c))
}

/// A failure this process made itself (a body it could not rewrite, a request it could
/// not build): classified [`Class::Local`], so it is never the deployment's fault.
#[derive(Debug)]
pub struct LocalError {
    message: String,
}

impl LocalError {
    /// A local failure, described (without secrets) by `message`.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

impl fmt::Display for LocalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl StdError for LocalError {}

/// Parses `Retry-After` (seconds, fractional seconds or an HTTP date), capped at `max`.
/// Negative or unreadable values give `None`; a date in the past gives zero.
pub fn retry_after(headers: &HeaderMap, max: Duration) -> Option<Duration> {
    let v = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs).min(max));
    }
    if let Ok(secs) = v.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0)
            .then(|| Duration::from_secs_f64(secs.min(max.as_secs_f64())));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(
        at.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO)
            .min(max),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classify(code: u16, body: Option<&str>) -> Class {
        DefaultClassifier::default().classify_response(
            StatusCode::from_u16(code).unwrap(),
            &HeaderMap::new(),
            body.map(str::as_bytes),
        )
    }

    #[test]
    fn statuses() {
        for c in [200, 201, 304] {
            assert_eq!(classify(c, None), Class::Success, "{c}");
        }
        assert_eq!(classify(101, None), Class::ServerError);
        assert_eq!(
            classify(429, None),
            Class::RateLimited { retry_after: None }
        );
        assert_eq!(classify(402, None), Class::Quota);
        assert_eq!(classify(401, None), Class::Auth);
        assert_eq!(classify(404, None), Class::NotFound);
        assert_eq!(classify(408, None), Class::Timeout);
        for c in [400, 403, 413, 422] {
            assert_eq!(classify(c, None), Class::CallerFault, "{c}");
        }
        assert_eq!(classify(503, None), Class::Overloaded);
        assert_eq!(classify(529, None), Class::Overloaded);
        for c in [500, 502, 504, 599] {
            assert_eq!(classify(c, None), Class::ServerError, "{c}");
        }
    }

    #[test]
    fn llm_error_bodies() {
        let openai_ctx = r#"{"error":{"message":"This model's maximum context length is 8192 tokens","type":"invalid_request_error","code":"context_length_exceeded"}}"#;
        assert_eq!(
            classify(400, Some(openai_ctx)),
            Class::ContextWindowExceeded
        );
        let anthropic_ctx = r#"{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 210000 tokens > 200000 maximum"}}"#;
        assert_eq!(
            classify(400, Some(anthropic_ctx)),
            Class::ContextWindowExceeded
        );
        let policy = r#"{"error":{"code":"content_policy_violation","message":"rejected"}}"#;
        assert_eq!(classify(400, Some(policy)), Class::ContentPolicy);
        let azure = r#"{"error":{"code":"content_filter","message":"filtered"}}"#;
        assert_eq!(classify(400, Some(azure)), Class::ContentPolicy);
        let quota = r#"{"error":{"type":"insufficient_quota","code":"insufficient_quota"}}"#;
        assert_eq!(classify(429, Some(quota)), Class::Quota);
        let overloaded =
            r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
        assert_eq!(classify(529, Some(overloaded)), Class::Overloaded);
        assert_eq!(classify(500, Some(overloaded)), Class::Overloaded);
    }

    #[test]
    fn fault_and_verdicts() {
        for c in [
            Class::RateLimited { retry_after: None },
            Class::Quota,
            Class::Auth,
            Class::NotFound,
            Class::Overloaded,
            Class::Timeout,
            Class::Connection,
            Class::ServerError,
        ] {
            assert!(c.is_deployment_fault() && c.counts_toward_cooldown(), "{c}");
            assert!(c.worth_another_deployment() && c.is_counted(), "{c}");
        }
        for c in [
            Class::CallerFault,
            Class::ContextWindowExceeded,
            Class::ContentPolicy,
            Class::Local,
        ] {
            assert!(!c.is_deployment_fault() && !c.is_counted(), "{c}");
            assert!(!c.worth_another_deployment(), "{c}");
            let want = if c == Class::Local {
                ProbeVerdict::Inconclusive
            } else {
                ProbeVerdict::Unhealthy
            };
            assert_eq!(c.probe_verdict(), want, "{c}");
        }
        assert!(Class::Success.is_counted() && !Class::Success.counts_toward_cooldown());
        assert_eq!(Class::Success.probe_verdict(), ProbeVerdict::Healthy);
        assert_eq!(Class::Timeout.probe_verdict(), ProbeVerdict::Transient);
        assert_eq!(Class::Quota.probe_verdict(), ProbeVerdict::Unhealthy);
    }

    #[test]
    fn errors() {
        let c = DefaultClassifier::default();
        let local = LocalError::new("could not rewrite the body");
        assert_eq!(c.classify_error(&local), Class::Local);
        let io = std::io::Error::other("reset");
        assert_eq!(c.classify_error(&io), Class::Connection);
        let slow = std::io::Error::new(std::io::ErrorKind::TimedOut, "slow");
        assert_eq!(c.classify_error(&slow), Class::Timeout);
        let none = crate::NoDeploymentAvailable {
            route: "r".into(),
            retry_after: Duration::ZERO,
        };
        assert_eq!(c.classify_error(&none), Class::Local);
        #[cfg(target_os = "linux")]
        {
            // "Too many open files", as a connector wraps it.
            #[derive(Debug)]
            struct Wrapped(std::io::Error);
            impl fmt::Display for Wrapped {
                fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("tcp open error")
                }
            }
            impl StdError for Wrapped {
                fn source(&self) -> Option<&(dyn StdError + 'static)> {
                    Some(&self.0)
                }
            }
            let emfile = Wrapped(std::io::Error::from_raw_os_error(24));
            assert!(is_local_resource_error(&emfile));
            assert_eq!(c.classify_error(&emfile), Class::Local);
            let refused = std::io::Error::from_raw_os_error(111);
            assert!(!is_local_resource_error(&refused));
            assert_eq!(c.classify_error(&refused), Class::Connection);
        }
    }

    fn header(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, v.parse().unwrap());
        h
    }

    #[test]
    fn retry_after_is_parsed_and_capped() {
        let max = Duration::from_secs(60);
        assert_eq!(retry_after(&HeaderMap::new(), max), None);
        assert_eq!(
            retry_after(&header("30"), max),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            retry_after(&header("1.5"), max),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(retry_after(&header("99999999999"), max), Some(max));
        assert_eq!(retry_after(&header("1e300"), max), Some(max));
        assert_eq!(
            retry_after(&header("Thu, 31 Dec 2099 23:59:59 GMT"), max),
            Some(max)
        );
        assert_eq!(
            retry_after(&header("Wed, 21 Oct 2015 07:28:00 GMT"), max),
            Some(Duration::ZERO)
        );
        for bad in ["-5", "-0.5", "soon", "NaN", "inf"] {
            assert_eq!(retry_after(&header(bad), max), None, "{bad}");
        }
        let c = DefaultClassifier::new(Duration::from_secs(10));
        assert_eq!(
            c.classify_response(StatusCode::TOO_MANY_REQUESTS, &header("3600"), None),
            Class::RateLimited {
                retry_after: Some(Duration::from_secs(10))
            }
        );
    }
}
