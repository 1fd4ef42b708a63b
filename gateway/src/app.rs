//! The gateway's application: the OpenAI-compatible API routes behind
//! `HealthRoutingLayer`, forwarding each request to the chosen deployment. [`Front`] sends an
//! API `POST` straight to its handler and everything else (health, metrics, `/v1/models`, other
//! methods) through an axum router.
//!
//! Request flow for `POST /v1/chat/completions` (and the other API routes):
//!
//! ```text
//! auth (master_key) → buffer + parse the body, read "model" (400 if malformed)
//!   → FallbackLayer (fallbacks, default_fallbacks, context_window_fallbacks,
//!     content_policy_fallbacks: another group when this one fails; see `fallback`;
//!     left out when the config has none)
//!   → RetryLayer (num_retries: a 5xx/408/429/401 or connection error goes to another
//!     deployment; left out with num_retries: 0)
//!   → HealthRouting (route = "model": health filter, cooldown, balancer; 400 unknown model,
//!     429 + Retry-After when every deployment cools down)
//!   → Forwarder: rewrite "model" to the deployment's, add its credentials, send with hyper;
//!     the answer's headers pass an allowlist (`headers`), 2xx bodies stream through
//!     scrubbed chunk by chunk of every configured secret (their `usage` is counted on the
//!     way, see `usage`); error bodies are read up to 64 KiB (longer ones cut, with a note),
//!     scrubbed, and returned with the upstream's status (502 if unreachable or for an
//!     interim 101); a 2xx stream whose body fails (a stall under `stream_stall_timeout`, a
//!     broken upstream) ends with an SSE error event and `data: [DONE]` (`forward::sse`)
//! ```
//!
//! Request bodies are buffered within a global budget (`budget`): 503 with `Retry-After`
//! when it is full.

use std::{future::Future, pin::Pin, task, time::Duration};

use axum::{
    Router,
    body::Body,
    extract::{Request, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use bytes::Bytes;
use http_body_util::Full;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use serde_json::{Value, json};
use tower::{Service, ServiceExt};
use tower_health_routing::{
    BoxError, Config, HealthRoutingLayer, HealthState, MissingRoute, ModelGroup,
    NoDeploymentAvailable, SelectedDeployment, UnknownRoute, UnsupportedRoute,
    classify::LocalError, provider, secret::Scrubber,
};

use crate::{
    budget::{self, BodyBudget},
    forward::pool::{HostPool, Pools, UpstreamBody},
    headers::{self as fwd, MAX_ERROR_BODY},
    multipart,
};

/// The API paths served (each also without `/v1`), and the upstream endpoint of each.
pub const API_ROUTES: &[&str] = &[
    "chat/completions",
    "completions",
    "embeddings",
    "images/generations",
    "audio/speech",
    "audio/transcriptions",
    "rerank",
    "responses",
];

/// Gateway options that are not in `config.yaml`.
#[derive(Clone, Debug)]
pub struct Options {
    /// Time allowed for an upstream's response headers (a stream may then run longer).
    pub upstream_timeout: Duration,
    /// The largest request body accepted (audio uploads included); larger is a 413.
    /// Bodies over 64 KiB in flight share a budget of 4 × this (see [`crate::budget`]).
    pub max_body: usize,
    /// Serve `/metrics` (Prometheus text) from this handle, when given.
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    /// `/metrics` needs the master key (when one is set): LiteLLM's
    /// `litellm_settings.require_auth_for_metrics_endpoint`, default `true`.
    pub metrics_require_auth: bool,
    /// Connection limits (head size, head read time, concurrent connections).
    pub limits: crate::limits::Limits,
    /// The drain endpoint and the grace time of a drain.
    pub drain: crate::drain::DrainSettings,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            upstream_timeout: Duration::from_secs(600),
            max_body: crate::limits::DEFAULT_MAX_BODY_BYTES,
            metrics: None,
            metrics_require_auth: true,
            limits: crate::limits::Limits::default(),
            drain: crate::drain::DrainSettings {
                grace: crate::drain::DEFAULT_GRACE,
                ..Default::default()
            },
        }
    }
}

/// `x-litellm-model-id`, built once (a `&str` name is copied on every insert).
const MODEL_ID: http::HeaderName = http::HeaderName::from_static("x-litellm-model-id");

/// The routed stack, its type named: cloned per request as a plain struct, and its future
/// not boxed again (a `BoxCloneSyncService` cost two allocations per request).
type Routed = Served;

/// The routing layer over the forwarder, in the retry layer when retries are on
/// (`num_retries > 0`). With them off the retry layer only passes the request through (it
/// keeps no copy, so it never calls its policy), at the cost of two more clones of the
/// stack below it per request: it is left out.
type Retried = tower::util::Either<
    tower_health_routing::retry::Retry<tower_health_routing::HealthRouting<Forwarder>>,
    tower_health_routing::HealthRouting<Forwarder>,
>;

/// The routed stack's answer, before [`Served`] makes it the client's.
type FallbackResponse = http::Response<
    tower_health_routing::routing::FallbackBody<
        tower_health_routing::routing::ResponseBody<fwd::ForwardedBody>,
    >,
>;

/// Below [`Served`]: the fallback layer over the retried routing. For a group without
/// fallbacks (every group when the config has none) it passes the request through (the
/// inner future as it is); either way its answer's body names the group that served and
/// lends the routing layer's body, which names the deployment (no response extension).
type Stack = tower_health_routing::routing::Fallback<Retried>;

/// Makes a routed answer the client's: the served-by headers (`x-litellm-model-group`,
/// `x-litellm-attempted-fallbacks`, `x-litellm-model-id`, as LiteLLM sends them), and an
/// SSE answer's error ending when its stream fails ([`crate::forward::sse`]).
#[derive(Clone)]
struct Served {
    inner: Stack,
    values: std::sync::Arc<crate::fallback::HeaderValues>,
    sse_scrubber: Scrubber,
}

impl Service<http::Request<Bytes>> for Served {
    type Response = Response;
    type Error = BoxError;
    type Future = ServedFuture;

    fn poll_ready(&mut self, cx: &mut task::Context<'_>) -> task::Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<Bytes>) -> Self::Future {
        ServedFuture {
            inner: self.inner.call(req),
            values: std::sync::Arc::clone(&self.values),
            sse_scrubber: self.sse_scrubber.clone(),
        }
    }
}

/// The future of [`Served`].
#[pin_project::pin_project]
struct ServedFuture {
    #[pin]
    inner: <Stack as Service<http::Request<Bytes>>>::Future,
    values: std::sync::Arc<crate::fallback::HeaderValues>,
    sse_scrubber: Scrubber,
}

impl Future for ServedFuture {
    type Output = Result<Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut task::Context<'_>) -> task::Poll<Self::Output> {
        let this = self.project();
        let values = &**this.values;
        let resp: FallbackResponse = std::task::ready!(this.inner.poll(cx))?;
        let (mut parts, body) = resp.into_parts();
        if let Some(served) = body.served_by() {
            crate::fallback::set_served_headers(
                &mut parts.headers,
                served.group(),
                served.attempted_fallbacks(),
                values,
            );
        }
        // Tell the client which deployment answered, as LiteLLM does: the routing layer's
        // body names it (no response extension needed).
        if let Some(d) = body.get_ref().selected_deployment()
            && let Some(v) = values.get(d.id().as_str())
        {
            parts.headers.insert(MODEL_ID, v);
        }
        task::Poll::Ready(Ok(client_response(parts, body, this.sse_scrubber)))
    }
}

/// The client's answer, boxed once: a stream that fails (a stall, a broken upstream) ends
/// with an error event.
fn client_response<B>(parts: http::response::Parts, body: B, sse_scrubber: &Scrubber) -> Response
where
    B: http_body::Body<Data = Bytes, Error = BoxError> + Unpin + Send + 'static,
{
    if crate::forward::sse::is_event_stream(&parts.headers) {
        let body = crate::forward::sse::SseErrors::new(body, sse_scrubber.clone());
        return Response::from_parts(parts, Body::new(body));
    }
    Response::from_parts(parts, Body::new(body))
}

/// What the API handler needs, behind one `Arc` (the handler gets a clone per request).
#[derive(Clone)]
struct App(std::sync::Arc<AppInner>);

struct AppInner {
    state: HealthState,
    /// The master key's digest (hashed once, not on every request).
    master_key: Option<tower_health_routing::endpoints::KeyDigest>,
    max_body: usize,
    routed: Routed,
    scrubber: Scrubber,
    budget: BodyBudget,
    /// The config's route names (`model_name`s), shared: a request naming one clones its
    /// name (a reference count) instead of allocating a copy.
    routes: RouteNames,
}

/// The route names of a config, each in one shared allocation.
struct RouteNames(std::collections::HashSet<std::sync::Arc<str>, foldhash::fast::RandomState>);

impl RouteNames {
    /// Every route (`model_name`) of `config`.
    fn of(config: &Config) -> Self {
        let mut set = std::collections::HashSet::default();
        for d in &config.deployments {
            if !set.contains(d.route()) {
                set.insert(std::sync::Arc::from(d.route()));
            }
        }
        Self(set)
    }

    /// `name`, shared: the config's when it is one of its routes, else a new one.
    fn get(&self, name: &str) -> std::sync::Arc<str> {
        match self.0.get(name) {
            Some(n) => std::sync::Arc::clone(n),
            None => std::sync::Arc::from(name),
        }
    }
}

impl std::ops::Deref for App {
    type Target = AppInner;
    fn deref(&self) -> &AppInner {
        &self.0
    }
}

/// Builds the API router (health endpoints are merged in by the caller).
pub fn api_router(state: HealthState, routing: HealthRoutingLayer, options: &Options) -> Router {
    let values = crate::fallback::HeaderValues::of(state.config());
    let app = api_app(state, routing, || values, options);
    api_routes(app)
}

/// The API handler's state: the routed forwarding stack and what `api` checks. `values`:
/// the header values of the config's routes and deployment ids (asked for once the
/// forwarder is built).
fn api_app(
    state: HealthState,
    routing: HealthRoutingLayer,
    values: impl FnOnce() -> crate::fallback::HeaderValues,
    options: &Options,
) -> App {
    let scrubber = state.scrubber().clone();
    let forwarder = Forwarder::new(scrubber.clone(), options.upstream_timeout)
        .router_timeout(state.config().router.timeout)
        .endpoints_of(state.config());
    // Behind an `Arc`: the service is cloned for every request.
    let values = std::sync::Arc::new(values());
    let router = &state.config().router;
    // No response extension naming the deployment: the served-by headers read the body
    // (`ResponseBody::selected_deployment`) and the retry log the request's tries.
    let routed = tower::Layer::layer(&routing, forwarder);
    // Failed requests are re-sent to another deployment (`num_retries`), within a budget.
    let retried: Retried = if router.num_retries > 0 {
        tower::util::Either::Left(tower::Layer::layer(
            &tower_health_routing::retry::RetryLayer::new(state.config()),
            routed,
        ))
    } else {
        tower::util::Either::Right(routed)
    };
    // A group that cannot answer hands the request to its fallback groups (a group without
    // any is passed through).
    let inner = tower::Layer::layer(
        &tower_health_routing::routing::FallbackLayer::new(state.config()),
        retried,
    );
    // The served-by headers and a failing stream's error ending (see `Served`).
    let routed = Served {
        inner,
        values,
        sse_scrubber: scrubber.clone(),
    };
    App(std::sync::Arc::new(AppInner {
        master_key: state
            .config()
            .master_key
            .as_ref()
            .map(tower_health_routing::endpoints::KeyDigest::new),
        routes: RouteNames::of(state.config()),
        state,
        max_body: options.max_body,
        routed,
        scrubber,
        budget: BodyBudget::new(options.max_body.saturating_mul(4)),
    }))
}

/// The axum routes of the API (`GET /models`, and the `POST` API routes, which [`Front`]
/// serves without the router; here they also answer 405 to other methods).
fn api_routes(app: App) -> Router {
    let mut router = Router::new()
        .route("/v1/models", get(models))
        .route("/models", get(models));
    for r in API_ROUTES {
        router = router
            .route(&format!("/v1/{r}"), post(api_handler))
            .route(&format!("/{r}"), post(api_handler));
    }
    router.with_state(app)
}

/// An OpenAI-style error body.
pub fn error(status: StatusCode, kind: &str, message: impl Into<String>) -> Response {
    let body = json!({"error": {"message": message.into(), "type": kind, "code": status.as_u16().to_string()}});
    (status, axum::Json(body)).into_response()
}

fn unauthorized() -> Response {
    error(
        StatusCode::UNAUTHORIZED,
        "auth_error",
        "missing or invalid key: send `Authorization: Bearer <key>`",
    )
}

/// 401 unless the request carries the master key (when one is configured).
fn check_key(app: &App, headers: &HeaderMap) -> Result<(), Box<Response>> {
    match &app.master_key {
        Some(key) if !tower_health_routing::endpoints::has_key_digest(headers, key) => {
            Err(Box::new(error(
                StatusCode::UNAUTHORIZED,
                "auth_error",
                "missing or invalid key: send `Authorization: Bearer <key>`",
            )))
        }
        _ => Ok(()),
    }
}

async fn models(State(app): State<App>, uri: axum::http::Uri, headers: HeaderMap) -> Response {
    if let Err(r) = check_key(&app, &headers) {
        return *r;
    }
    let snap = app.state.snapshot();
    let mut routes: Vec<&str> = snap.routes().collect();
    routes.sort_unstable();
    // `?healthy_only=true` or `model_list_healthy_only`: only routes that may be picked now.
    let pickable = crate::models::healthy_only(&app.state, uri.query());
    if let Some(p) = &pickable {
        routes.retain(|r| p.binary_search_by(|x| x.as_str().cmp(r)).is_ok());
    }
    let data: Vec<Value> = routes
        .iter()
        .map(|r| json!({"id": r, "object": "model", "created": 0, "owned_by": "tower-health-routing"}))
        .collect();
    axum::Json(json!({"object": "list", "data": data})).into_response()
}

async fn api_handler(State(app): State<App>, req: Request) -> Response {
    api(app, req).await
}

/// Whether `path` is one of the API routes ([`API_ROUTES`], with or without `/v1`).
pub fn is_api_path(path: &str) -> bool {
    api_route_index(path).is_some()
}

async fn api<B>(app: App, req: http::Request<B>) -> Response
where
    B: http_body::Body<Data = Bytes>,
{
    if let Err(r) = check_key(&app, req.headers()) {
        return *r;
    }
    let (parts, body) = req.into_parts();
    // Held until the answer's head is out (a retry sends the body again).
    let (body, _held) = match budget::read_body(body, &parts.headers, app.max_body, &app.budget)
        .await
    {
        Ok(b) => b,
        Err(budget::ReadError::TooLarge) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request_error",
                format!(
                    "request body too large: the limit is {} bytes",
                    app.max_body
                ),
            );
        }
        Err(budget::ReadError::Malformed) => {
            // A bad chunk size, a truncated upload: the client's fault.
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "the request body could not be read (malformed chunked encoding or a truncated body)",
            );
        }
        Err(budget::ReadError::Busy) => {
            let mut r = error(
                StatusCode::SERVICE_UNAVAILABLE,
                "service_unavailable",
                "too many large request bodies in flight; retry shortly",
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(1));
            return r;
        }
    };
    let (model, stream) = match request_head(&parts.headers, &body, &app.routes).await {
        Ok(h) => h,
        Err(msg) => return error(StatusCode::BAD_REQUEST, "invalid_request_error", msg),
    };
    let mut req = http::Request::from_parts(parts, body);
    // One shared name for the route and the body's model (cloned, not copied).
    req.extensions_mut()
        .insert(ModelGroup::new(std::sync::Arc::clone(&model)));
    if app.state.config().router.enable_pre_call_checks
        && let Some(t) = crate::usage::estimate_request_tokens(req.body())
    {
        req.extensions_mut().insert(t);
    }
    // The group changes only when a fallback group is tried: without fallbacks the
    // forwarder reads the body's model from the group.
    if !app.state.config().router.fallbacks.is_empty() {
        req.extensions_mut()
            .insert(crate::fallback::BodyModel(std::sync::Arc::clone(&model)));
    }
    if stream {
        req.extensions_mut().insert(Streaming);
    }
    // Readied and called in place (a `oneshot` moves the service and the request into its
    // state, and out again, and then the future in).
    let mut routed = app.routed.clone();
    let answer = match routed.ready().await {
        Ok(svc) => svc.call(req).await,
        Err(e) => Err(e),
    };
    match answer {
        Ok(resp) => resp,
        Err(e) => error_response(&app, &model, &e),
    }
}

/// The `model` a request asks for (from the JSON body, or the `model` field of a multipart
/// form) and whether it asks for a stream (`"stream": true` in a JSON body). A JSON body's
/// model that is one of `routes` comes back as its shared name.
async fn request_head(
    headers: &HeaderMap,
    body: &Bytes,
    routes: &RouteNames,
) -> Result<(std::sync::Arc<str>, bool), String> {
    let ctype = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if ctype.starts_with("multipart/form-data") {
        return Ok((Box::pin(multipart::model(ctype, body)).await?.into(), false));
    }
    // One pass: `model` and `stream` are read; the rest is validated as JSON but not built
    // into a tree.
    let h: Head<'_> =
        serde_json::from_slice(body).map_err(|e| format!("malformed JSON body: {e}"))?;
    let stream = h.stream == Some(Value::Bool(true)) && !ctype.starts_with("multipart/");
    match h.model {
        Some(ModelField::Str(s)) if !s.is_empty() => Ok((routes.get(&s), stream)),
        Some(_) => Err("`model` must be a non-empty string".to_owned()),
        None => Err("the body has no `model`".to_owned()),
    }
}

/// Marks a request that asked for a stream (`"stream": true`): its deployment's
/// `stream_timeout` applies.
#[derive(Clone, Copy, Debug)]
struct Streaming;

/// The fields of a JSON body the gateway reads; every other field is checked and skipped.
#[derive(serde::Deserialize)]
struct Head<'a> {
    #[serde(borrow)]
    model: Option<ModelField<'a>>,
    stream: Option<Value>,
}

/// The value of a body's `model`: a string (borrowed from the body unless it has escapes),
/// or any other JSON value (checked and skipped, as a `Value` would be, but not built).
enum ModelField<'a> {
    Str(std::borrow::Cow<'a, str>),
    Other,
}

impl<'de: 'a, 'a> serde::Deserialize<'de> for ModelField<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::{IgnoredAny, MapAccess, SeqAccess, Visitor};
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ModelField<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(ModelField::Str(std::borrow::Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(ModelField::Str(std::borrow::Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(ModelField::Str(std::borrow::Cow::Owned(v)))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok(ModelField::Other)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
                Ok(ModelField::Other)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
                Ok(ModelField::Other)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
                Ok(ModelField::Other)
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(ModelField::Other)
            }
            fn visit_none<E>(self) -> Result<Self::Value, E> {
                Ok(ModelField::Other)
            }
            fn visit_some<D2: serde::Deserializer<'de>>(
                self,
                d: D2,
            ) -> Result<Self::Value, D2::Error> {
                <IgnoredAny as serde::Deserialize>::deserialize(d)?;
                Ok(ModelField::Other)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(ModelField::Other)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(ModelField::Other)
            }
        }
        d.deserialize_any(V)
    }
}

fn error_response(app: &App, model: &str, e: &BoxError) -> Response {
    if let Some(e) = e.downcast_ref::<NoDeploymentAvailable>() {
        let secs = e.retry_after().as_secs_f64().ceil().max(1.0) as u64;
        let mut r = error(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_error",
            e.to_string(),
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        return r;
    }
    if let Some(e) = e.downcast_ref::<UnsupportedRoute>() {
        // Every deployment of the model is one the gateway cannot forward to: not the
        // caller's fault, and no retry will help.
        return error(
            StatusCode::NOT_IMPLEMENTED,
            "unsupported_provider",
            app.scrubber.scrub(e.reason()),
        );
    }
    if e.is::<UnknownRoute>() || e.is::<MissingRoute>() {
        let snap = app.state.snapshot();
        let mut known: Vec<&str> = snap.routes().collect();
        known.sort_unstable();
        let msg = format!(
            "Invalid model name passed in model={model}. Known models: {}",
            known.join(", ")
        );
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            app.scrubber.scrub(&msg),
        );
    }
    if let Some(local) = e.downcast_ref::<LocalError>() {
        // Made here, not by an upstream: no deployment is blamed (see `classify`).
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            app.scrubber.scrub(&local.to_string()),
        );
    }
    if tower_health_routing::classify::is_local_resource_error(&**e) {
        // This process ran out (file descriptors, buffers): not the upstream's fault, and
        // not the client's (classified `Local`: no cooldown, no retry).
        let mut r = error(
            StatusCode::SERVICE_UNAVAILABLE,
            "service_unavailable",
            "the gateway is out of local resources (file descriptors or buffers); retry shortly",
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(1));
        return r;
    }
    let timed_out = e.is::<tokio::time::error::Elapsed>();
    let (status, what) = if timed_out {
        (
            StatusCode::GATEWAY_TIMEOUT,
            "the upstream did not answer in time".to_owned(),
        )
    } else {
        (
            StatusCode::BAD_GATEWAY,
            format!("the upstream could not be reached: {e}"),
        )
    };
    error(status, "upstream_error", app.scrubber.scrub(&what))
}

/// Sends a routed request to its deployment.
#[derive(Clone, Debug)]
pub struct Forwarder {
    // One `Arc`: the service is cloned for every request (retries send clones).
    inner: std::sync::Arc<ForwarderInner>,
}

#[derive(Clone, Debug)]
struct ForwarderInner {
    /// `https://` upstreams (TLS, HTTP/2 by ALPN).
    client: Client<HttpsOrHttp, Full<Bytes>>,
    /// `http://` upstreams: the forwarder's own HTTP/1 pool.
    pools: std::sync::Arc<crate::forward::pool::Pools>,
    scrubber: Scrubber,
    timeout: Duration,
    router_timeout: Option<Duration>,
    /// Resolved at start-up ([`Forwarder::endpoints_of`]); the rest per request.
    endpoints: std::sync::Arc<ForwardEndpoints>,
}

#[cfg(feature = "rustls")]
type HttpsOrHttp = hyper_rustls::HttpsConnector<HttpConnector>;
#[cfg(not(feature = "rustls"))]
type HttpsOrHttp = HttpConnector;

impl Forwarder {
    /// A forwarder whose error bodies go through `scrubber`, waiting at most `timeout`
    /// for an upstream's response headers.
    pub fn new(scrubber: Scrubber, timeout: Duration) -> Self {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        #[cfg(feature = "rustls")]
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        #[cfg(not(feature = "rustls"))]
        let connector = http;
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(256)
            .build(connector);
        Self {
            inner: std::sync::Arc::new(ForwarderInner {
                client,
                pools: std::sync::Arc::default(),
                scrubber,
                timeout,
                router_timeout: None,
                endpoints: std::sync::Arc::default(),
            }),
        }
    }

    /// The config's request timeout (`router_settings.timeout`, else
    /// `litellm_settings.request_timeout`), used for deployments without their own
    /// `timeout`/`stream_timeout`, before the forwarder's own.
    pub fn router_timeout(mut self, timeout: Option<Duration>) -> Self {
        std::sync::Arc::make_mut(&mut self.inner).router_timeout = timeout;
        self
    }

    /// Resolves the forward endpoint (URL, auth headers, model) of each deployment of
    /// `config` for every API route once, on the first request routed to it, instead of on
    /// every request. A request routed to a deployment that is not one of `config`'s is
    /// resolved as it comes.
    pub fn endpoints_of(mut self, config: &Config) -> Self {
        let inner = std::sync::Arc::make_mut(&mut self.inner);
        inner.endpoints = std::sync::Arc::new(ForwardEndpoints::of(
            config,
            std::sync::Arc::clone(&inner.pools),
        ));
        self
    }
}

impl ForwarderInner {
    /// The timeout of one request to `d`: its `stream_timeout` (streams) or `timeout`,
    /// else the config's, else the forwarder's own.
    fn timeout_for(&self, d: &tower_health_routing::Deployment, stream: bool) -> Duration {
        crate::dropin::request_timeout(d, stream, self.router_timeout, self.timeout)
    }
}

impl Service<http::Request<Bytes>> for Forwarder {
    type Response = http::Response<fwd::ForwardedBody>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut task::Context<'_>) -> task::Poll<Result<(), BoxError>> {
        task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Bytes>) -> Self::Future {
        let this = std::sync::Arc::clone(&self.inner);
        Box::pin(async move {
            let chosen = req
                .extensions()
                .get::<SelectedDeployment>()
                .ok_or("no deployment selected")?
                .clone();
            let stream = req.extensions().get::<Streaming>().is_some();
            let timeout = this.timeout_for(chosen.deployment(), stream);
            let (upstream, translation, pool) =
                upstream_request(&this.endpoints, &this.pools, &chosen, req).await?;
            // A timeout is `Elapsed`: the classifier's `Timeout` (cooldown, retries).
            let resp = match pool {
                Some(pool) => tokio::time::timeout(timeout, pool.send(upstream)).await??,
                None => tokio::time::timeout(timeout, this.client.request(upstream))
                    .await??
                    .map(UpstreamBody::unpooled),
            };
            if let Some(t) = translation {
                // Anthropic's Messages API, answered in OpenAI's shapes; then the same
                // header allowlist, scrubbing and usage counting as any other answer.
                let resp =
                    Box::pin(crate::forward::anthropic_response(resp, &t, &this.scrubber)).await?;
                let (mut parts, body) = resp.into_parts();
                let same = this.scrubber.is_empty();
                fwd::forward_response_headers(&mut parts.headers, &this.scrubber, same);
                if !parts.status.is_success() {
                    return Ok(http::Response::from_parts(parts, body.into()));
                }
                let body = fwd::ForwardBody::new(body, &this.scrubber, same, Some(chosen));
                return Ok(http::Response::from_parts(parts, Body::new(body).into()));
            }
            let (mut parts, body) = resp.into_parts();
            if parts.status.is_informational() {
                // `101 Switching Protocols` (hyper passes no other 1xx on): no final answer.
                return Ok(error(
                    StatusCode::BAD_GATEWAY,
                    "upstream_error",
                    format!(
                        "the upstream answered {} to an API request, which is no final answer",
                        parts.status
                    ),
                )
                .map(Into::into));
            }
            if fwd::is_encoded(&parts.headers) && !this.scrubber.is_empty() {
                return Ok(error(
                    StatusCode::BAD_GATEWAY,
                    "upstream_error",
                    "the upstream sent a compressed body though `accept-encoding: identity` \
                     was asked; it cannot be checked for secrets",
                )
                .map(Into::into));
            }
            // Byte for byte only when there is nothing to scrub.
            let same = this.scrubber.is_empty();
            fwd::forward_response_headers(&mut parts.headers, &this.scrubber, same);
            if parts.status.is_success() {
                // Stream through, chunk by chunk (SSE included), scrubbed as it goes and
                // counting its `usage`: one body, boxed once.
                let usage = crate::usage::may_carry_usage(parts.headers.get(header::CONTENT_TYPE))
                    .then_some(chosen);
                let body = fwd::ForwardBody::new(body, &this.scrubber, same, usage);
                return Ok(http::Response::from_parts(
                    parts,
                    fwd::ForwardedBody::Upstream(body),
                ));
            }
            let body = Body::new(body);
            // An error: read a bounded amount, scrub it, keep the upstream's status.
            let (text, cut) =
                Box::pin(fwd::read_error_body(body, &this.scrubber, MAX_ERROR_BODY)).await;
            parts.headers.remove(header::CONTENT_LENGTH);
            let text = if cut {
                parts.headers.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                fwd::truncated_error(parts.status, &text, MAX_ERROR_BODY)
            } else {
                Bytes::from(text)
            };
            Ok(http::Response::from_parts(parts, Body::from(text).into()))
        })
    }
}

/// A deployment's forward endpoint for one API route, with its URL parsed: resolved once,
/// by the first request to a deployment of the config ([`ForwardEndpoints`]), or per
/// request for one that is not there.
#[derive(Debug)]
struct ForwardEndpoint {
    wire: provider::Wire,
    /// The URL, parsed (`None`: it does not parse, and the request builder says why).
    uri: Option<http::Uri>,
    /// For an `http://` URL: its connection pool and the URL's path in origin form.
    pooled: Option<(std::sync::Arc<HostPool>, http::Uri)>,
    url: String,
    headers: HeaderMap,
    model: String,
}

impl ForwardEndpoint {
    /// Where and how: the provider catalog, the same the prober builds its probes from.
    fn resolve(
        d: &tower_health_routing::Deployment,
        path: &str,
        pools: &Pools,
    ) -> Result<Self, BoxError> {
        let ep = provider::forward_endpoint(d, path).map_err(|e| LocalError::new(e.to_string()))?;
        let uri = http::Uri::try_from(ep.url.as_str()).ok();
        let pooled = uri.as_ref().and_then(|u| {
            pools
                .for_uri(u)
                .map(|p| (p, crate::forward::pool::origin_form(u)))
        });
        Ok(Self {
            wire: ep.wire,
            uri,
            pooled,
            url: ep.url,
            headers: ep.headers,
            model: ep.model,
        })
    }

    /// A `POST` of `body` to this endpoint, without headers yet (its URI in origin form
    /// when it goes through the pool).
    fn request<B>(&self, body: B) -> Result<http::Request<B>, http::Error> {
        let uri = match (&self.pooled, &self.uri) {
            (Some((_, origin)), _) => origin.clone(),
            (None, Some(u)) => u.clone(),
            (None, None) => http::Uri::try_from(self.url.as_str())?,
        };
        let mut req = http::Request::new(body);
        *req.method_mut() = http::Method::POST;
        *req.uri_mut() = uri;
        Ok(req)
    }

    /// A `POST` to this endpoint.
    fn post(&self) -> http::request::Builder {
        if let Some((_, origin)) = &self.pooled {
            return http::Request::post(origin.clone());
        }
        match &self.uri {
            Some(u) => http::Request::post(u.clone()),
            None => http::Request::post(self.url.as_str()),
        }
    }
}

/// The forward endpoints of a config's deployments, by deployment id and API route
/// ([`API_ROUTES`] index; the same endpoint serves the route with and without `/v1`).
/// A deployment's endpoints are resolved by the first request routed to it, once (a
/// `OnceLock`: later requests read them without a lock), so a config of 100,000
/// deployments costs one empty slot each at start-up, not a resolution per route.
#[derive(Debug, Default)]
struct ForwardEndpoints {
    map: std::collections::HashMap<
        tower_health_routing::DeploymentId,
        std::sync::OnceLock<Box<[Option<ForwardEndpoint>]>>,
        foldhash::fast::RandomState,
    >,
    pools: std::sync::Arc<Pools>,
}

impl ForwardEndpoints {
    /// A slot for every deployment of `config` (the first of a repeated id, as the routing
    /// snapshot keeps).
    fn of(config: &Config, pools: std::sync::Arc<Pools>) -> Self {
        let mut map = std::collections::HashMap::with_capacity_and_hasher(
            config.deployments.len(),
            foldhash::fast::RandomState::default(),
        );
        for d in &config.deployments {
            map.entry(d.id().clone()).or_default();
        }
        Self { map, pools }
    }

    /// The endpoint for `d` and `path`, if `d` is the config's (a clone of the deployment
    /// its slot was made for): resolved on its first request, then kept. What cannot be
    /// resolved is left to the request (whose error it then is).
    fn get(&self, d: &tower_health_routing::Deployment, path: &str) -> Option<&ForwardEndpoint> {
        let i = api_route_index(path)?;
        let (id, slot) = self.map.get_key_value(d.id().as_str())?;
        // The same id allocation: `d` is a clone of the config's deployment.
        if !std::ptr::eq(id.as_str(), d.id().as_str()) {
            return None;
        }
        let eps = slot.get_or_init(|| {
            API_ROUTES
                .iter()
                .map(|r| {
                    ForwardEndpoint::resolve(d, &format!("/v1/{r}"), &self.pools)
                        .ok()
                        .filter(|e| e.uri.is_some())
                })
                .collect()
        });
        eps.get(i)?.as_ref()
    }
}

/// The index in [`API_ROUTES`] of an API path (with or without `/v1`).
fn api_route_index(path: &str) -> Option<usize> {
    let p = path.strip_prefix('/')?;
    let p = p.strip_prefix("v1/").unwrap_or(p);
    API_ROUTES.iter().position(|r| *r == p)
}

/// The upstream request: URL by provider, the deployment's model in the body, its
/// credentials; and, for Anthropic, how to translate its answer back.
async fn upstream_request(
    endpoints: &ForwardEndpoints,
    pools: &Pools,
    chosen: &SelectedDeployment,
    req: http::Request<Bytes>,
) -> Result<
    (
        http::Request<Full<Bytes>>,
        Option<crate::forward::anthropic::Translation>,
        Option<std::sync::Arc<HostPool>>,
    ),
    BoxError,
> {
    let resolved;
    let ep = match endpoints.get(chosen.deployment(), req.uri().path()) {
        Some(ep) => ep,
        None => {
            resolved = ForwardEndpoint::resolve(chosen.deployment(), req.uri().path(), pools)?;
            &resolved
        }
    };
    let pool = ep.pooled.as_ref().map(|(p, _)| std::sync::Arc::clone(p));
    let model = ep.model.as_str();
    // The model the client's body names, set by `api` (not the group: a fallback changes it).
    let (parts, body) = req.into_parts();
    if ep.wire == tower_health_routing::provider::Wire::Anthropic {
        // OpenAI chat completions translated to the Messages API; no client header goes.
        let (body, t) = crate::forward::anthropic::to_messages_request(&body, model)
            .map_err(|e| LocalError::new(e.to_string()))?;
        let mut up = ep
            .post()
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT_ENCODING, "identity");
        for (name, value) in &ep.headers {
            up = up.header(name, value);
        }
        return Ok((up.body(Full::new(body))?, Some(t), pool));
    }
    // The body's model: its own extension when fallbacks may change the group, else the
    // group (which is then the body's model).
    let requested = match parts.extensions.get::<crate::fallback::BodyModel>() {
        Some(m) => Some(&*m.0),
        None => parts.extensions.get::<ModelGroup>().map(ModelGroup::as_str),
    };
    // Most deployments serve the model the client named: then the body goes as it came.
    let unchanged = requested == Some(model);
    let body = if unchanged {
        body
    } else {
        let ctype = parts.headers.get(header::CONTENT_TYPE);
        // Boxed, as the other uncommon paths: their futures would make every request's
        // future larger, and it is moved as a whole several times.
        Box::pin(rewrite_model(
            ctype.and_then(|v| v.to_str().ok()),
            body,
            model,
        ))
        .await
        .map_err(|e| LocalError::new(format!("the request body cannot be rewritten: {e}")))?
    };
    // The gateway scrubs answers, which it cannot do to a compressed body. Built in place
    // (a request builder moves its whole head on every header).
    let body_len = body.len() as u64;
    let mut up = ep.request(Full::new(body))?;
    *up.headers_mut() = upstream_headers(parts.headers, ep, unchanged.then_some(body_len))?;
    Ok((up, None, pool))
}

/// The most client headers passed on (`accept`, `openai-*`) for [`upstream_headers`] to
/// build the upstream's headers in the client's map.
const PASSED_IN_PLACE: usize = 8;

/// The upstream request's headers, built in the client request's map `client` (emptied, its
/// storage kept: a new map costs two allocations, and dropping the client's two frees):
/// `accept-encoding: identity`, the client's `content-type`, its own negotiation headers
/// (`accept`, `openai-*`; never its credentials), the endpoint's headers, and the client's
/// `content-length` when the body goes as it came and is `body_len` long.
fn upstream_headers(
    mut client: HeaderMap,
    ep: &ForwardEndpoint,
    body_len: Option<u64>,
) -> Result<HeaderMap, http::Error> {
    let ctype = client.get(header::CONTENT_TYPE).cloned();
    // The body as it came has the client's length: its value is sent again (shared, where
    // hyper would format a new one) when it is that length in plain digits.
    let length = body_len.and_then(|len| {
        client
            .get(header::CONTENT_LENGTH)
            .filter(|cl| is_length(cl.as_bytes(), len))
            .cloned()
    });
    let passed =
        |name: &http::HeaderName| name == header::ACCEPT || name.as_str().starts_with("openai-");
    let mut kept: [Option<(http::HeaderName, HeaderValue)>; PASSED_IN_PLACE] = Default::default();
    let mut n = 0;
    let mut in_place = true;
    for (name, value) in client.iter().filter(|(name, _)| passed(name)) {
        if n == PASSED_IN_PLACE {
            // More than fit: a new map, filled from the client's.
            in_place = false;
            break;
        }
        kept[n] = Some((name.clone(), value.clone()));
        n += 1;
    }
    let mut h = if in_place {
        client.clear();
        std::mem::take(&mut client)
    } else {
        HeaderMap::new()
    };
    h.try_append(
        header::ACCEPT_ENCODING,
        HeaderValue::from_static("identity"),
    )?;
    if let Some(ct) = ctype {
        h.try_append(header::CONTENT_TYPE, ct)?;
    }
    if in_place {
        for (name, value) in kept.iter_mut().take(n).filter_map(Option::take) {
            h.try_append(name, value)?;
        }
    } else {
        for (name, value) in client.iter().filter(|(name, _)| passed(name)) {
            h.try_append(name.clone(), value.clone())?;
        }
    }
    for (name, value) in &ep.headers {
        h.try_append(name.clone(), value.clone())?;
    }
    if let Some(cl) = length {
        h.try_append(header::CONTENT_LENGTH, cl)?;
    }
    Ok(h)
}

/// Whether `value` is `len` in canonical decimal (digits only, no leading zero).
fn is_length(value: &[u8], len: u64) -> bool {
    let canonical = !value.is_empty()
        && value.len() <= 20
        && value.iter().all(u8::is_ascii_digit)
        && (value.len() == 1 || value[0] != b'0');
    canonical
        && value.iter().try_fold(0u64, |n, &d| {
            n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
        }) == Some(len)
}

/// The body with `model` set to the deployment's model (JSON, or the multipart `model` field).
async fn rewrite_model(ctype: Option<&str>, body: Bytes, model: &str) -> Result<Bytes, BoxError> {
    match ctype {
        Some(ct) if ct.starts_with("multipart/form-data") => {
            Ok(multipart::rewrite_model(ct, &body, model).await?)
        }
        _ => {
            let mut v: Value = serde_json::from_slice(&body)?;
            v["model"] = Value::String(model.to_owned());
            Ok(serde_json::to_vec(&v)?.into())
        }
    }
}

/// The gateway's whole service: the request gate around [`Front`].
pub type Gated = crate::gate::Gate<Front>;

/// The gateway's front service: an API request (`POST` to an [`API_ROUTES`] path) goes
/// straight to its handler; anything else through the axum router (which also has the API
/// routes, so another method gets its 405). One route match and no boxed route clone per
/// API request.
#[derive(Clone)]
pub struct Front {
    app: App,
    router: Router,
}

impl std::fmt::Debug for Front {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Front").finish_non_exhaustive()
    }
}

impl<B> Service<http::Request<B>> for Front
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future = FrontFuture;

    fn poll_ready(
        &mut self,
        _: &mut task::Context<'_>,
    ) -> task::Poll<Result<(), std::convert::Infallible>> {
        // The router is always ready; so is the handler.
        task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> FrontFuture {
        if req.method() == http::Method::POST && is_api_path(req.uri().path()) {
            // The body is read as it came (no box): only the router needs a `Body`.
            let app = self.app.clone();
            return FrontFuture::Api(Box::pin(async move {
                let mut resp = api(app, req).await;
                // As axum's route does: an exact-size body gets its `content-length`.
                set_content_length(&mut resp);
                Ok(resp)
            }));
        }
        FrontFuture::Router(Service::call(&mut self.router, req.map(Body::new)))
    }
}

/// `content-length` from an exact size hint, unless the response has one.
fn set_content_length(resp: &mut Response) {
    use http_body::Body as _;
    if resp.headers().contains_key(header::CONTENT_LENGTH) {
        return;
    }
    if let Some(n) = resp.body().size_hint().exact() {
        resp.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(n));
    }
}

/// The future of [`Front`].
// Kept inline, not boxed: it sits in the connection's task, pinned once, and a boxed
// router future would cost an allocation per request.
#[allow(clippy::large_enum_variant)]
#[pin_project::pin_project(project = FrontProj)]
pub enum FrontFuture {
    /// An API request's handler.
    Api(Pin<Box<dyn Future<Output = Result<Response, std::convert::Infallible>> + Send>>),
    /// Anything else, through the router.
    Router(#[pin] axum::routing::future::RouteFuture<std::convert::Infallible>),
}

impl std::fmt::Debug for FrontFuture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Api(_) => "FrontFuture::Api",
            Self::Router(_) => "FrontFuture::Router",
        })
    }
}

impl Future for FrontFuture {
    type Output = Result<Response, std::convert::Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut task::Context<'_>) -> task::Poll<Self::Output> {
        match self.project() {
            FrontProj::Api(f) => f.as_mut().poll(cx),
            FrontProj::Router(f) => f.poll(cx),
        }
    }
}

/// The whole gateway: routing state, probe loop and router.
#[derive(Debug)]
pub struct Gateway {
    /// The shared health state.
    pub state: HealthState,
    /// The probe loop (on-demand rounds for `/health`; background rounds when enabled).
    pub probes: tower_health_routing::ProbeLoop,
    /// The drain state (`/health/drain`, SIGTERM).
    pub drain: crate::drain::Drain,
    service: Gated,
    limits: crate::limits::Limits,
    grace: Duration,
    routes: Vec<crate::routes::Route>,
}

impl Gateway {
    /// Builds the gateway from a validated config: the API routes, the health endpoints
    /// (with a Redis service check when results are shared), and `/metrics` when asked.
    pub fn new(config: Config, options: &Options) -> Result<Self, BoxError> {
        let config =
            crate::dropin::check_settings(config, std::env::var_os("DATABASE_URL").is_some());
        let layer = HealthRoutingLayer::new(config);
        let state = layer.state().clone();
        // The header values of every route and deployment id are built on a thread of their
        // own (some 2,000 instructions a deployment) while the rest is set up here.
        let values = {
            let state = state.clone();
            std::thread::Builder::new()
                .name("thr-header-values".to_owned())
                .spawn(move || crate::fallback::HeaderValues::of(state.config()))
        };
        // Before the probe loop: what cannot be forwarded is not probed either.
        crate::dropin::mark_unforwardable(&state);
        let probes = tower_health_routing::ProbeLoop::new(&state)?;
        // The same probe loop serves on-demand /health rounds: one concurrency bound for both.
        let mut endpoints =
            tower_health_routing::HealthEndpoints::new(state.clone(), probes.clone());
        if let Some(store) = tower_health_routing::shared::store_from_config(state.config())? {
            endpoints = endpoints.service(
                "redis",
                tower_health_routing::endpoints::service_check_fn(move || {
                    let store = std::sync::Arc::clone(&store);
                    async move {
                        let rtt = store.ping().await.map_err(|e| e.to_string())?;
                        Ok(json!({"latency_ms": rtt.as_secs_f64() * 1e3}))
                    }
                }),
            );
        }
        // The endpoints are a plain tower Service (no framework feature needed): mount it on
        // the paths it serves. With the `axum` feature, `health_router(endpoints)` does the same.
        let values = || match values {
            Ok(built) => match built.join() {
                Ok(values) => values,
                Err(panic) => std::panic::resume_unwind(panic),
            },
            Err(_) => crate::fallback::HeaderValues::of(state.config()),
        };
        let app = api_app(state.clone(), layer, values, options);
        let mut router = api_routes(app.clone())
            .merge(crate::models::test_connection_route(endpoints.clone()))
            .route_service("/health", endpoints.clone())
            .route_service("/health/{*rest}", endpoints);
        // The health page (its own Service: it reads a login form's body); exact paths win
        // over the wildcard above.
        let dashboard = tower_health_routing::endpoints::HealthDashboard::new(state.clone());
        for path in tower_health_routing::endpoints::DASHBOARD_PATHS {
            router = router.route_service(path, dashboard.clone());
        }
        if let Some(handle) = options.metrics.clone() {
            let key = state
                .config()
                .master_key
                .clone()
                .filter(|_| options.metrics_require_auth);
            router = router.route(
                "/metrics",
                get(move |headers: HeaderMap| {
                    let ok = key
                        .as_ref()
                        .is_none_or(|k| tower_health_routing::endpoints::has_key(&headers, k));
                    std::future::ready(if ok {
                        handle.render().into_response()
                    } else {
                        unauthorized()
                    })
                }),
            );
        }
        let drain = crate::drain::Drain::default();
        let router = router.route(
            "/health/drain",
            get(crate::drain::endpoint)
                .with_state((drain.clone(), std::sync::Arc::new(options.drain.clone()))),
        );
        let service = tower::Layer::layer(
            &crate::gate::GateLayer::new(drain.clone(), options.max_body),
            Front { app, router },
        );
        Ok(Self {
            state,
            probes,
            drain,
            service,
            limits: options.limits.clone(),
            grace: options.drain.grace,
            routes: crate::routes::table(options.metrics.is_some(), options.metrics_require_auth),
        })
    }

    /// Every route this gateway serves, with its access rule.
    pub fn routes(&self) -> &[crate::routes::Route] {
        &self.routes
    }

    /// The router (API routes and health endpoints).
    pub fn router(&self) -> Router {
        Router::new().fallback_service(self.service.clone())
    }

    /// The service [`serve`](Self::serve) runs: the request gate, then [`Front`] (API
    /// requests straight to their handler, the rest through the router).
    pub fn service(&self) -> Gated {
        self.service.clone()
    }

    /// Serves on `listener` until `shutdown` completes; in-flight requests finish, then the
    /// probe loop stops.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), BoxError> {
        let probes = self.probes.spawn_if_enabled();
        // On the signal: drain (probes 503, new API requests 503, in-flight ones finish
        // within the grace time), then close the connections.
        let (drain, grace) = (self.drain.clone(), self.grace);
        let shutdown = async move {
            shutdown.await;
            drain.drain(grace).await;
        };
        crate::limits::serve(listener, self.service, &self.limits, shutdown).await?;
        if let Some(p) = probes {
            p.shutdown().await;
        }
        Ok(())
    }
}
