//! [`HealthDashboard`]: the health page, its JSON and its assets (see its docs).

mod html;
mod model;

use std::{
    convert::Infallible,
    fmt,
    task::{Context, Poll},
};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, StatusCode, header};
use http_body::Body;
use http_body_util::{BodyExt, Full, Limited};
use tower_service::Service;

use super::{
    future::{Kind, ResponseFuture, strip},
    wire::{self, Resp},
};
use crate::{BoxError, health::HealthState};

/// The page's path.
pub(crate) const PAGE: &str = "/health/dashboard";
/// The JSON the page polls.
pub(crate) const DATA: &str = "/health/dashboard/data";
/// The page's script.
pub(crate) const APP_JS: &str = "/health/dashboard/app.js";
/// The page's style.
pub(crate) const APP_CSS: &str = "/health/dashboard/app.css";
/// Every path [`HealthDashboard`] serves.
pub const DASHBOARD_PATHS: &[&str] = &[PAGE, DATA, APP_JS, APP_CSS];
/// The largest login form `POST /health/dashboard` reads.
pub(crate) const MAX_FORM_BODY: usize = 4096;

const JS: &str = include_str!("app.js");
const CSS: &str = include_str!("app.css");

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                   img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";
const HTML: &str = "text/html; charset=utf-8";

/// The health dashboard as a tower [`Service`]: one HTML page an operator can watch, served
/// from the binary.
///
/// Every route, every deployment: healthy, unhealthy (with the scrubbed reason), unchecked,
/// unsupported or stale; cooling down or ejected and for how long; answers per second and
/// error rate over the last minute; the last probe's latency; a strip of the last hour of
/// probe results (as far as `health_check_history_size` reaches) marking where they turned;
/// and a banner when a route is in bypass or panic mode, or has nothing left to route to.
/// The page polls its JSON every few seconds. It shows what `/health` shows (the same
/// allowlist, every text scrubbed of every configured secret), never more.
///
/// # Paths
///
/// | path | auth | answer |
/// |---|---|---|
/// | `GET /health/dashboard` | key | the page with the table (server-rendered); without the key a **401** with only the login form |
/// | `POST /health/dashboard` | key | a form field `key` (`application/x-www-form-urlencoded`, at most 4 KiB), or the key as a header: the page with the table; a wrong key is a 401 with the form |
/// | `GET /health/dashboard/data` | key | the page's JSON (what the table shows), read from the published snapshot |
/// | `GET /health/dashboard/app.js`, `/health/dashboard/app.css` | open | the page's script and style: constant files, no data |
///
/// # Auth without cookies, with or without JavaScript
///
/// The key is the master key, as for `/health`, and it never goes into an address (where
/// logs, history and `Referer` would keep it):
///
/// * **With JavaScript**, the page's login form stores the key for the tab in
///   `sessionStorage` (gone when the tab closes) and the script sends it as
///   `Authorization: Bearer` on each poll of `/health/dashboard/data`.
/// * **Without JavaScript**, the same form posts the key to `/health/dashboard` and the
///   answer is the whole table, rendered by the server; nothing is set (no cookie), so
///   fresh data means sending the form again.
/// * **With the header** (curl, or a proxy in front that adds it), `GET /health/dashboard`
///   answers the table directly.
///
/// Without the key the page is a 401 whose body is the login form and a `<noscript>` note:
/// no deployment data. Without a `master_key` configured, everything is open, as `/health`
/// is.
///
/// # Headers
///
/// Every answer carries `Cache-Control: no-store`, `X-Content-Type-Options: nosniff`,
/// `Referrer-Policy: no-referrer`, `X-Frame-Options: DENY` and a `Content-Security-Policy`
/// that allows only this origin's script, style and fetches (nothing inline: the script and
/// style are the two asset paths, embedded with `include_str!`).
///
/// ```
/// use tower::ServiceExt;
/// use tower_health_routing::{Config, Deployment, HealthState, endpoints::HealthDashboard};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), tower_health_routing::BoxError> {
/// let cfg = Config::builder()
///     .deployment(Deployment::builder("gpt-4o", "openai/gpt-4o").api_base("http://127.0.0.1:9/v1").build())
///     .master_key("sk-admin-0123456789")
///     .build()?;
/// let dashboard = HealthDashboard::new(HealthState::new(cfg));
/// let req = http::Request::get("/health/dashboard").body(http_body_util::Empty::<bytes::Bytes>::new())?;
/// let resp = dashboard.oneshot(req).await?;
/// assert_eq!(resp.status(), 401, "the login form only");
/// # Ok(())
/// # }
/// ```
///
/// Cheap to clone (an `Arc`). It reads only the published snapshot and the
/// [`HealthHistory`](crate::probe::HealthHistory), never probes, so polling it costs no
/// upstream a request. Mount it next to [`HealthEndpoints`](super::HealthEndpoints) on
/// [`DASHBOARD_PATHS`] (`health_router` does). It reads the body of `POST /health/dashboard`
/// only (at most 4 KiB) and answers `http::Response<Full<Bytes>>`, never an
/// error.
#[derive(Clone)]
pub struct HealthDashboard {
    state: HealthState,
}

impl fmt::Debug for HealthDashboard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HealthDashboard").finish_non_exhaustive()
    }
}

impl HealthDashboard {
    /// The dashboard of `state` (the state the routing layer and the probe loop share).
    pub fn new(state: HealthState) -> Self {
        Self { state }
    }

    /// The page's JSON, as `GET /health/dashboard/data` answers it to a caller with the key.
    pub fn data(&self) -> serde_json::Value {
        serde_json::to_value(model::Dashboard::build(&self.state)).unwrap_or_default()
    }

    /// The page with the table, as `GET /health/dashboard` answers it to a caller with the
    /// key.
    pub fn render(&self) -> String {
        html::page(Some(&model::Dashboard::build(&self.state)), None)
    }

    fn admin(&self, headers: &http::HeaderMap) -> bool {
        match &self.state.config().master_key {
            Some(key) => wire::has_key(headers, key),
            None => true,
        }
    }

    fn page(&self) -> Resp {
        secured(wire::bytes(
            StatusCode::OK,
            HTML,
            Bytes::from(self.render()),
        ))
    }

    fn login(status: StatusCode, message: Option<&str>) -> Resp {
        let mut resp = wire::bytes(status, HTML, Bytes::from(html::page(None, message)));
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        secured(resp)
    }

    /// `POST /health/dashboard`: the form's `key`, or the key as a header.
    async fn posted<B>(self, parts: http::request::Parts, body: B) -> Resp
    where
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        if self.admin(&parts.headers) {
            return self.page();
        }
        let form = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.split(';').next().is_some_and(|m| {
                    m.trim()
                        .eq_ignore_ascii_case("application/x-www-form-urlencoded")
                })
            });
        let bytes = match Limited::new(body, MAX_FORM_BODY).collect().await {
            Ok(c) => c.to_bytes(),
            Err(_) => {
                return Self::login(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    Some("The form was too large or could not be read."),
                );
            }
        };
        let given = std::str::from_utf8(&bytes)
            .ok()
            .filter(|_| form)
            .and_then(|b| wire::query_param(Some(b), "key").ok().flatten());
        let ok = match (&self.state.config().master_key, given) {
            (Some(key), Some(given)) => wire::key_matches(&given, key),
            _ => false,
        };
        if ok {
            self.page()
        } else {
            tracing::debug!("health dashboard: missing or wrong master key in the login form");
            Self::login(StatusCode::UNAUTHORIZED, Some("That key was not accepted."))
        }
    }
}

/// Adds the page's security headers.
fn secured(mut resp: Resp) -> Resp {
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

fn not_allowed(allow: &'static str) -> Resp {
    let mut resp = wire::error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("this dashboard path answers {allow}"),
    );
    resp.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    secured(resp)
}

impl<B> Service<Request<B>> for HealthDashboard
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Response = http::Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let path = req.uri().path();
        let path = if path.len() > 1 {
            path.trim_end_matches('/')
        } else {
            path
        };
        let (get, head) = (req.method() == Method::GET, req.method() == Method::HEAD);
        let resp = match path {
            PAGE if req.method() == Method::POST => {
                let (parts, body) = req.into_parts();
                return ResponseFuture {
                    kind: Kind::Pending {
                        fut: Box::pin(self.clone().posted(parts, body)),
                        head: false,
                    },
                };
            }
            PAGE if get || head => {
                if self.admin(req.headers()) {
                    self.page()
                } else {
                    tracing::debug!(path, "health dashboard: missing or wrong master key");
                    Self::login(StatusCode::UNAUTHORIZED, None)
                }
            }
            PAGE => not_allowed("GET, HEAD, POST"),
            DATA if get || head => {
                if self.admin(req.headers()) {
                    secured(wire::json(
                        StatusCode::OK,
                        &model::Dashboard::build(&self.state),
                    ))
                } else {
                    secured(wire::unauthorized())
                }
            }
            APP_JS | APP_CSS if get || head => {
                let (ct, text) = if path == APP_JS {
                    ("text/javascript; charset=utf-8", JS)
                } else {
                    ("text/css; charset=utf-8", CSS)
                };
                secured(wire::bytes(
                    StatusCode::OK,
                    ct,
                    Bytes::from_static(text.as_bytes()),
                ))
            }
            DATA | APP_JS | APP_CSS => not_allowed("GET, HEAD"),
            _ => secured(wire::error(
                StatusCode::NOT_FOUND,
                "not_found",
                "no dashboard path here; the dashboard is at /health/dashboard",
            )),
        };
        ResponseFuture::ready(strip(resp, head))
    }
}
