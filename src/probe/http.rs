//! The default [`Prober`]: [`HttpProber`], which sends LiteLLM's probe requests over
//! hyper (feature `http-prober`).

use std::{
    fmt,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering::Relaxed},
    },
    time::Duration,
};

use bytes::{Bytes, BytesMut};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::{TokioExecutor, TokioTimer},
};

use super::{
    ProbeFuture, Prober,
    defaults::ProbeDefaults,
    outcome::{ProbeOutcome, shorten},
    pool::{self, HostPool, Pools, UpstreamBody},
    provider, request,
};
use crate::{
    BoxError,
    classify::{Class, Classify, DefaultClassifier},
    deployment::Deployment,
    error::ConfigError,
    health::ProbeTier,
    provider::{CheapCheck, Endpoint, ProviderError, Wire},
    secret::Scrubber,
};

#[cfg(feature = "rustls")]
type Connector = hyper_rustls::HttpsConnector<HttpConnector>;
#[cfg(not(feature = "rustls"))]
type Connector = HttpConnector;

type HttpClient = Client<Connector, Full<Bytes>>;

/// Bytes of an error body kept to explain a failure.
const ERROR_BODY_LIMIT: usize = 8 * 1024;
/// Bytes of a success body read (so the connection can be reused); larger bodies are dropped.
const DRAIN_LIMIT: usize = 64 * 1024;

/// The default prober: the requests LiteLLM 1.109 sends, over a pooled hyper client,
/// HTTP/1.1 and HTTP/2 (by ALPN for `https`, which needs the default `rustls` feature; by
/// prior knowledge for `http` when asked).
///
/// # Where
///
/// From the [provider catalog](crate::provider): the base (the deployment's `api_base`, else
/// the provider's public default), the path and query of the mode, the auth headers.
/// Deployments it cannot probe — a provider the catalog does not speak (SageMaker, watsonx,
/// ...), no `api_base` where the provider has no default, a mode the provider lacks, a
/// wildcard route without `health_check_model` — are not start-up errors: when the loop is
/// built they become [`Unsupported`](crate::health::Unsupported) with the catalog's reason
/// ([`Prober::unsupported`]), are never probed, and are never sent as OpenAI requests.
///
/// Bedrock (feature `bedrock`) and Vertex AI (feature `vertex`) are probed natively: a
/// SigV4-signed Converse / InvokeModel request, and a `generateContent` / `predict` request
/// with a service-account OAuth token that one cache per prober keeps until it expires. The
/// AWS and Google environment variables are read when the prober is built. A failed token
/// exchange is an unhealthy probe with the reason `auth: …` (class `Auth`).
///
/// # What
///
/// The model sent is `health_check_model` or the deployment's model, without its provider
/// prefix (Bedrock ids lose their region segment: [`bedrock_probe_model`](super::bedrock_probe_model)).
/// The mode comes from [`resolve_mode`](super::resolve_mode), the token limit from
/// [`resolve_max_tokens`](super::resolve_max_tokens) (chat and completion only, unless
/// `health_check_supports_max_tokens` says otherwise), the prompt from [`ProbeDefaults`].
/// `health_check_reasoning_effort` is sent as `reasoning_effort` in chat and completion
/// probes of OpenAI-compatible and Azure upstreams. Every probe carries the credentials.
///
/// OpenAI-compatible paths are relative to `api_base` (which usually ends in `/v1`):
///
/// | mode | request |
/// |---|---|
/// | chat | `POST /chat/completions` `{model, messages: [{role: user, content}], max_tokens}` (`max_completion_tokens` for reasoning models) |
/// | completion | `POST /completions` `{model, prompt, max_tokens}` |
/// | responses | `POST /responses` `{model, input}` |
/// | embedding | `POST /embeddings` `{model, input: ["test from litellm"]}` |
/// | image_generation | `POST /images/generations` `{model, prompt}` |
/// | audio_speech | `POST /audio/speech` `{model, input, voice}` |
/// | audio_transcription | `POST /audio/transcriptions`, multipart: `model` and a 0.5 s WAV `file` |
/// | rerank | `POST /rerank` `{model, query, documents: ["my sample text"]}` |
/// | batch | `GET /batches` |
/// | moderation | `POST /moderations` `{model, input: "test from litellm"}` |
/// | ocr | `POST /ocr` `{model, document: {type: image_url, image_url: <1×1 PNG data URL>}}` |
/// | realtime | `GET /realtime?model=…` WebSocket handshake (HTTP/1.1 upgrade; 101 is healthy) |
/// | video_generation | `GET /videos?limit=1` (lists videos: exercises the endpoint and key without generating one) |
///
/// Azure puts the deployment in the path (`/openai/deployments/{model}/chat/completions`,
/// and likewise for completion, embedding, image, speech, transcription), uses
/// `/openai/responses`, `/openai/batches` and `/openai/realtime?deployment=…` otherwise,
/// adds `?api-version=` (default [`AZURE_DEFAULT_API_VERSION`](crate::provider::AZURE_DEFAULT_API_VERSION))
/// and sends the key as `api-key`.
/// Anthropic: `POST /v1/messages` (chat, completion; `max_tokens` is required there, so a
/// wildcard without one sends LiteLLM's 4096) and `GET /v1/messages/batches`, with
/// `x-api-key` and `anthropic-version: 2023-06-01`. Cohere: `POST /v2/chat`, `/v2/embed`,
/// `/v2/rerank` with a bearer key.
///
/// # Outcome
///
/// Healthy on 2xx (101 for a realtime handshake); otherwise unhealthy, with the
/// [`Class`](crate::classify::Class) its classifier gives the answer, the status and
/// a short reason from the error body, `timeout`, `connect: …` or `tls: …`. A 400/422
/// whose body says the request itself was malformed (unknown or unsupported parameter,
/// validation error, `invalid_request_error`, ...) gets the reason `probe_rejected: …`,
/// so a broken probe is told apart from a broken upstream. Reasons never carry the
/// deployment's secrets (and the loop scrubs every configured secret again).
pub struct HttpProber {
    client: HttpClient,
    /// For the cheap tier's TCP/TLS connect.
    connector: Connector,
    /// HTTP/1.1 only: WebSocket handshakes cannot ride an HTTP/2 connection.
    ws_client: HttpClient,
    defaults: ProbeDefaults,
    classifier: Arc<dyn Classify>,
    turn: AtomicUsize,
    /// Each probed deployment's request as built on its first probe (see [`Prepared`]).
    prepared: PreparedCache,
    /// The same for the cheap tier's `GET` (its one body is empty).
    prepared_cheap: PreparedCache,
    /// The HTTP/1 connections to `http://` upstreams (with HTTP/2 prior knowledge off):
    /// a prepared request keeps its upstream's pool, found once. The clients above serve
    /// `https://` upstreams, WebSocket handshakes and native cloud probes.
    pools: Pools,
    /// Whether every upstream is spoken to in HTTP/2 (so no request is sure to go out in
    /// HTTP/1.1, where hyper adds the `host` header).
    h2_only: bool,
    /// The last few [`Prober::unsupported`] answers and the deployments they were for:
    /// deployments listed alike ([`Deployment::same_upstream`]; thousands in a large config,
    /// checked in a row at start-up, often a few keys in turn) share one. Locked only at
    /// start-up, by the probe loop's builder (never on the request path).
    #[allow(clippy::disallowed_types)]
    recent_unsupported: std::sync::Mutex<Vec<(Deployment, Option<String>)>>,
    /// The AWS environment, read when the prober is built.
    #[cfg(feature = "bedrock")]
    aws: crate::provider::aws::AwsEnv,
    /// The Google environment, read when the prober is built.
    #[cfg(feature = "vertex")]
    google: crate::provider::vertex::GoogleEnv,
    /// The prober's service-account token cache.
    #[cfg(feature = "vertex")]
    vertex: crate::provider::vertex::VertexAuth,
}

/// A deployment's probe request, kept from its first probe for the next ones: the shapes
/// depend on the deployment, the prober's defaults and the chat question only, so the
/// catalog look-up, the JSON body and the headers are built once per deployment and
/// question (two questions alternate), and a probe clones them (reference counts, and
/// the header map's two vectors). Not for native cloud probes, signed or authorised anew
/// for each probe.
struct Prepared {
    method: http::Method,
    uri: http::Uri,
    headers: http::HeaderMap,
    /// The pool of its upstream when it goes out in HTTP/1.1 to an `http://` upstream (no
    /// WebSocket handshake): sent there, in origin form, rather than by the client.
    pool: Option<Arc<HostPool>>,
    /// The body for each chat question (`request::QUESTIONS`), once a probe asked it.
    bodies: [std::sync::OnceLock<Bytes>; request::QUESTIONS.len()],
}

impl fmt::Debug for Prepared {
    /// Never the headers (they carry the credentials).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Prepared")
            .field("method", &self.method)
            .finish_non_exhaustive()
    }
}

impl Prepared {
    /// A prepared request from `req`, the one built for question `turn`, and `req` as the
    /// prepared request sends it. `h1`: whether a plain `http` request goes out in HTTP/1.1
    /// (no prior knowledge of HTTP/2): it then carries the `host` header hyper's client
    /// would add to it on each send (formatting it anew), the same value, last.
    fn new(turn: usize, req: Request<Bytes>, h1: bool, pools: &Pools) -> (Self, Request<Bytes>) {
        let (parts, body) = req.into_parts();
        let mut headers = parts.headers;
        let plain = h1 && parts.uri.scheme() == Some(&http::uri::Scheme::HTTP);
        if plain
            && !headers.contains_key(http::header::HOST)
            && let Some(host) = host_header(&parts.uri)
        {
            headers.insert(http::header::HOST, host);
        }
        let pool = if plain && !headers.contains_key(http::header::UPGRADE) {
            pools.for_uri(&parts.uri)
        } else {
            None
        };
        let uri = match pool {
            Some(_) => pool::origin_form(&parts.uri),
            None => parts.uri,
        };
        let p = Self {
            method: parts.method,
            uri,
            headers,
            pool,
            bodies: Default::default(),
        };
        // The other questions' bodies, where the question is this body's only string of
        // its text: the chat message, whose text alone differs from question to question.
        for (other, slot) in p.bodies.iter().enumerate() {
            if other != turn
                && let Some(b) = swap_question(&body, turn, other)
            {
                let _ = slot.set(b);
            }
        }
        if let Some(b) = p.bodies.get(turn) {
            let _ = b.set(body.clone());
        }
        let req = p.with_body(body);
        (p, req)
    }

    /// The request for question `turn`, if one was built for it already, and the pool it
    /// goes out through (see [`Prepared::pool`]).
    fn request(self: &Arc<Self>, turn: usize) -> Option<Outgoing> {
        let body = self.bodies.get(turn)?.get()?.clone();
        Some(self.outgoing(body))
    }

    /// The kept request with `body`, as it goes out.
    fn outgoing(self: &Arc<Self>, body: Bytes) -> Outgoing {
        Outgoing {
            req: self.with_body(body),
            kept: Some(Arc::clone(self)),
        }
    }

    /// The kept request with `body`.
    fn with_body(&self, body: Bytes) -> Request<Bytes> {
        let mut req = Request::new(body);
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = self.uri.clone();
        *req.headers_mut() = self.headers.clone();
        req
    }

    /// Keeps the body of `req`, just built for question `turn` (everything else is the same
    /// for every question), and hands back the request as it goes out.
    fn add(self: &Arc<Self>, turn: usize, req: Request<Bytes>) -> Outgoing {
        let body = req.into_body();
        if let Some(b) = self.bodies.get(turn) {
            let _ = b.set(body.clone());
        }
        self.outgoing(body)
    }
}

/// A probe request, and the kept request it was made from (whose pool it goes out
/// through, and from which it is made again should it have to go out twice).
struct Outgoing {
    req: Request<Bytes>,
    kept: Option<Arc<Prepared>>,
}

impl Outgoing {
    /// A request the prober's client sends.
    fn by_client(req: Request<Bytes>) -> Self {
        Self { req, kept: None }
    }

    /// The pool it goes out through (`None`: the prober's client).
    #[cfg(test)]
    fn pool(&self) -> Option<&Arc<HostPool>> {
        self.kept.as_ref()?.pool.as_ref()
    }
}

/// The `host` header hyper's client adds to an HTTP/1.1 request to `uri` (`http`): the
/// host, and the port as written unless it is 80.
fn host_header(uri: &http::Uri) -> Option<http::HeaderValue> {
    let host = uri.host()?;
    let value = match uri.port() {
        Some(port) if port.as_u16() != 80 => format!("{host}:{port}"),
        _ => host.to_owned(),
    };
    http::HeaderValue::from_str(&value).ok()
}

/// `body`, built for question `from`, as it is for question `to` (indices in
/// `request::QUESTIONS`): the JSON string of `from` replaced, when it occurs exactly once (the
/// chat message's content); `None` otherwise (a body without it, or a coincidence in the
/// deployment's `health_check_params`: built for `to` when a probe asks it).
fn swap_question(body: &[u8], from: usize, to: usize) -> Option<Bytes> {
    let json = |i: usize| serde_json::to_string(request::QUESTIONS.get(i)?).ok();
    let (from, to) = (json(from)?, json(to)?);
    let from = from.as_bytes();
    let mut at = body
        .windows(from.len())
        .enumerate()
        .filter(|(_, w)| *w == from);
    let (i, _) = at.next()?;
    if at.next().is_some() {
        return None;
    }
    let mut out = Vec::with_capacity(body.len() + to.len());
    out.extend_from_slice(&body[..i]);
    out.extend_from_slice(to.as_bytes());
    out.extend_from_slice(&body[i + from.len()..]);
    Some(out.into())
}

/// The [`Prepared`] requests of the deployments probed so far, by the deployment's address.
/// Each is kept with a `Weak` of its deployment, so that an address is never reused while it
/// is a key (a deployment is immutable: the same address is the same deployment), and the
/// requests of deployments gone (a new deployment list) are swept when the map has doubled.
#[derive(Debug, Default)]
struct PreparedCache {
    /// Locked for one look-up or insertion per probe, never across an `await`, and never on
    /// the request path.
    #[allow(clippy::disallowed_types)]
    map: std::sync::Mutex<PreparedMap>,
}

#[derive(Debug, Default)]
struct PreparedMap {
    by_addr: std::collections::HashMap<
        usize,
        (std::sync::Weak<Deployment>, Arc<Prepared>),
        foldhash::fast::RandomState,
    >,
    /// How many it held after the last sweep.
    swept: usize,
}

impl PreparedCache {
    fn get(&self, d: &Arc<Deployment>) -> Option<Arc<Prepared>> {
        let map = self.map.lock().ok()?;
        let key = Arc::as_ptr(d) as usize;
        map.by_addr.get(&key).map(|(_, p)| Arc::clone(p))
    }

    /// Keeps `req`, the request just built for `d` and question `turn`, and hands it back as
    /// it goes out. `h1`, `pools`: see [`Prepared::new`].
    fn insert(
        &self,
        d: &Arc<Deployment>,
        turn: usize,
        req: Request<Bytes>,
        h1: bool,
        pools: &Pools,
    ) -> Outgoing {
        let Ok(mut map) = self.map.lock() else {
            return Outgoing::by_client(req);
        };
        let (p, req) = Prepared::new(turn, req, h1, pools);
        let p = Arc::new(p);
        let out = Outgoing {
            req,
            kept: Some(Arc::clone(&p)),
        };
        if map.by_addr.len() >= 2 * map.swept + 1024 {
            map.by_addr.retain(|_, (w, _)| w.strong_count() > 0);
            map.swept = map.by_addr.len();
        }
        map.by_addr
            .insert(Arc::as_ptr(d) as usize, (Arc::downgrade(d), p));
        out
    }
}

/// Why no probe request was made.
enum NoRequest {
    /// The catalog or a native builder cannot make one.
    Provider(ProviderError),
    /// Vertex AI's token exchange failed just now (secret-free reason).
    #[cfg_attr(not(feature = "vertex"), allow(dead_code))]
    Token(String),
}

impl From<ProviderError> for NoRequest {
    fn from(e: ProviderError) -> Self {
        Self::Provider(e)
    }
}

/// A native builder's refusal, as the catalog's.
#[cfg(any(feature = "bedrock", feature = "vertex"))]
fn native_unsupported(ep: &Endpoint, u: &crate::provider::cloud::Unsupported) -> ProviderError {
    ProviderError::Unsupported {
        provider: ep.provider.clone(),
        reason: u.to_string(),
    }
}

impl fmt::Debug for HttpProber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpProber")
            .field("defaults", &self.defaults)
            .finish_non_exhaustive()
    }
}

/// Builds an [`HttpProber`]; see [`HttpProber::builder`].
#[derive(Clone, Debug)]
pub struct HttpProberBuilder {
    defaults: ProbeDefaults,
    classifier: Arc<dyn Classify>,
    http2_prior_knowledge: bool,
    pool_idle_timeout: Duration,
}

impl HttpProberBuilder {
    /// The prompt and `max_tokens` defaults (default: [`ProbeDefaults::default`], i.e. no
    /// environment; [`ProbeLoop::new`](super::ProbeLoop::new) passes [`ProbeDefaults::from_env`]).
    pub fn defaults(mut self, defaults: ProbeDefaults) -> Self {
        self.defaults = defaults;
        self
    }

    /// What answers mean (default: [`DefaultClassifier`]; [`ProbeLoop`](super::ProbeLoop)
    /// passes the config's [`Config::classifier`](crate::Config::classifier)).
    pub fn classifier(mut self, classifier: Arc<dyn Classify>) -> Self {
        self.classifier = classifier;
        self
    }

    /// Speaks HTTP/2 without negotiation to every upstream (h2c for `http`). Default off.
    pub fn http2_prior_knowledge(mut self, on: bool) -> Self {
        self.http2_prior_knowledge = on;
        self
    }

    /// How long an idle pooled connection is kept (default 90 s).
    pub fn pool_idle_timeout(mut self, d: Duration) -> Self {
        self.pool_idle_timeout = d;
        self
    }

    /// Builds the prober. Fails only if TLS cannot be set up.
    pub fn build(self) -> Result<HttpProber, ConfigError> {
        let client = client(self.http2_prior_knowledge, true, self.pool_idle_timeout)?;
        let ws_client = client_h1(self.pool_idle_timeout)?;
        Ok(HttpProber {
            client,
            connector: connector(false)?,
            ws_client,
            defaults: self.defaults,
            classifier: self.classifier,
            turn: AtomicUsize::new(0),
            prepared: PreparedCache::default(),
            prepared_cheap: PreparedCache::default(),
            // Every idle connection kept, as by the client: a round sends up to
            // `health_check_concurrency` probes at once, often to one upstream.
            pools: Pools::with_idle_timeout(self.pool_idle_timeout).max_idle_per_host(usize::MAX),
            h2_only: self.http2_prior_knowledge,
            #[allow(clippy::disallowed_types)]
            recent_unsupported: std::sync::Mutex::new(Vec::new()),
            #[cfg(feature = "bedrock")]
            aws: crate::provider::aws::AwsEnv::from_env(),
            #[cfg(feature = "vertex")]
            google: crate::provider::vertex::GoogleEnv::from_env(),
            #[cfg(feature = "vertex")]
            vertex: crate::provider::vertex::VertexAuth::new(),
        })
    }
}

fn client_h1(idle: Duration) -> Result<HttpClient, ConfigError> {
    client(false, false, idle)
}

fn client(h2_only: bool, h2_alpn: bool, idle: Duration) -> Result<HttpClient, ConfigError> {
    Ok(Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .pool_idle_timeout(idle)
        .http2_only(h2_only)
        .build(connector(h2_alpn)?))
}

fn connector(h2_alpn: bool) -> Result<Connector, ConfigError> {
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    http.enforce_http(false);
    #[cfg(feature = "rustls")]
    let connector = {
        let b = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())
            .map_err(|e| {
                ConfigError::new(
                    "",
                    crate::error::ConfigErrorKind::Invalid(format!("cannot set up TLS: {e}")),
                )
            })?
            .https_or_http();
        if h2_alpn {
            b.enable_http1().enable_http2().wrap_connector(http)
        } else {
            b.enable_http1().wrap_connector(http)
        }
    };
    #[cfg(not(feature = "rustls"))]
    let connector = {
        let _ = h2_alpn;
        http
    };
    Ok(connector)
}

impl HttpProber {
    /// A prober with these defaults and the builder's other defaults.
    pub fn new(defaults: ProbeDefaults) -> Result<Self, ConfigError> {
        Self::builder().defaults(defaults).build()
    }

    /// Starts a prober: no environment defaults, HTTP/2 by ALPN only, idle connections kept 90 s.
    pub fn builder() -> HttpProberBuilder {
        HttpProberBuilder {
            defaults: ProbeDefaults::default(),
            classifier: Arc::new(DefaultClassifier::default()),
            http2_prior_knowledge: false,
            pool_idle_timeout: Duration::from_secs(90),
        }
    }

    /// The defaults it probes with.
    pub fn defaults(&self) -> &ProbeDefaults {
        &self.defaults
    }

    /// The request it would send to probe `deployment`: method, URL, headers (credentials
    /// marked sensitive) and body. Errors name the field (relative to the deployment's
    /// `model_list` entry) that makes the deployment unreachable. A Bedrock probe is signed
    /// now; a Vertex AI probe carries a fresh OAuth token, so it is built only when probing
    /// (here: an error saying so, or why it cannot be probed).
    pub fn build_request(&self, deployment: &Deployment) -> Result<Request<Bytes>, ConfigError> {
        let question = self.question();
        provider::resolve(deployment)
            .and_then(|ep| self.build_sync(deployment, &ep, question))
            .map_err(|e| match e {
                ProviderError::Invalid { field, why } => ConfigError::invalid(field, why),
                unsupported => {
                    ConfigError::invalid("litellm_params.model", unsupported.to_string())
                }
            })
    }

    fn question(&self) -> &'static str {
        request::QUESTIONS[self.next_turn()]
    }

    /// The index in `request::QUESTIONS` of the next probe's chat question (they alternate).
    fn next_turn(&self) -> usize {
        self.turn.fetch_add(1, Relaxed) % request::QUESTIONS.len()
    }

    /// The prompt a native probe carries: the chat question, else the defaults' prompt.
    #[cfg(any(feature = "bedrock", feature = "vertex"))]
    fn native_prompt<'a>(&'a self, ep: &Endpoint, question: &'a str) -> &'a str {
        match ep.mode {
            crate::deployment::Mode::Chat => question,
            _ => &self.defaults.prompt,
        }
    }

    /// Every request but Vertex AI's (which needs a token).
    fn build_sync(
        &self,
        d: &Deployment,
        ep: &Endpoint,
        question: &str,
    ) -> Result<Request<Bytes>, ProviderError> {
        match ep.wire {
            #[cfg(feature = "bedrock")]
            Wire::Bedrock => crate::provider::aws::bedrock_probe_request(
                d,
                ep.mode,
                self.native_prompt(ep, question),
                &self.aws,
            )
            .map_err(|u| native_unsupported(ep, &u)),
            #[cfg(feature = "vertex")]
            Wire::Vertex => {
                crate::provider::vertex::VertexAuth::check(
                    d,
                    ep.mode,
                    self.native_prompt(ep, question),
                    &self.google,
                )
                .map_err(|u| native_unsupported(ep, &u))?;
                Err(ProviderError::Unsupported {
                    provider: ep.provider.clone(),
                    reason: "a Vertex AI probe carries a fresh OAuth token: it is built only \
                             when probing"
                        .to_owned(),
                })
            }
            _ => request::build(d, ep, &self.defaults, question),
        }
    }

    async fn try_build(&self, d: &Arc<Deployment>) -> Result<Outgoing, NoRequest> {
        let turn = self.next_turn();
        let prepared = self.prepared.get(d);
        if let Some(out) = prepared.as_ref().and_then(|p| p.request(turn)) {
            return Ok(out);
        }
        let question = request::QUESTIONS[turn];
        let ep = provider::resolve(d)?;
        match ep.wire {
            #[cfg(feature = "vertex")]
            Wire::Vertex => {
                use crate::provider::vertex::VertexError;
                let prompt = self.native_prompt(&ep, question);
                self.vertex
                    .vertex_probe_request(d, ep.mode, prompt, &self.google)
                    .await
                    .map(Outgoing::by_client)
                    .map_err(|e| match e {
                        VertexError::Unsupported(u) => {
                            NoRequest::Provider(native_unsupported(&ep, &u))
                        }
                        VertexError::Token(why) => NoRequest::Token(why),
                    })
            }
            // Signed per probe: built every time.
            #[cfg(feature = "bedrock")]
            Wire::Bedrock => Ok(Outgoing::by_client(self.build_sync(d, &ep, question)?)),
            _ => {
                let req = request::build(d, &ep, &self.defaults, question)?;
                Ok(match prepared {
                    Some(p) => p.add(turn, req),
                    None => self
                        .prepared
                        .insert(d, turn, req, !self.h2_only, &self.pools),
                })
            }
        }
    }

    async fn run(&self, d: Arc<Deployment>) -> ProbeOutcome {
        let req = match self.try_build(&d).await {
            Ok(r) => r,
            // Not a local failure of this round (which would be inconclusive): the
            // deployment cannot be probed as configured, so it is reported unhealthy.
            Err(NoRequest::Provider(ProviderError::Invalid { why, .. })) => {
                return ProbeOutcome::unhealthy(format!("unsupported: {why}"))
                    .with_class(Class::CallerFault);
            }
            Err(NoRequest::Provider(unsupported)) => {
                return ProbeOutcome::unhealthy(format!("unsupported: {unsupported}"))
                    .with_class(Class::CallerFault);
            }
            Err(NoRequest::Token(why)) => {
                let why = Scrubber::new(d.secrets().cloned()).scrub(&why).into_owned();
                return ProbeOutcome::unhealthy(format!("auth: {}", shorten(&why)))
                    .with_class(Class::Auth);
            }
        };
        let upgrade = req.req.headers().contains_key(http::header::UPGRADE);
        match self.send(req, upgrade).await {
            Ok(resp) => classify(resp, upgrade, &d, &*self.classifier).await,
            Err(failed) => failed,
        }
    }

    /// Sends a probe request through its upstream's pool, or by the client (the WebSocket
    /// one for a handshake): the answer, or the outcome of getting none.
    async fn send(
        &self,
        out: Outgoing,
        upgrade: bool,
    ) -> Result<Response<UpstreamBody>, ProbeOutcome> {
        let Outgoing { req, kept } = out;
        match kept.and_then(|k| Some((Arc::clone(k.pool.as_ref()?), k))) {
            // A probe may go out twice: a kept connection the upstream closed while idle
            // costs no spurious failure (the client retried only requests not yet sent).
            Some((pool, kept)) => {
                let body = req.body().clone();
                pool.send_replayable(req.map(Full::new), move || {
                    kept.with_body(body).map(Full::new)
                })
                .await
                .map_err(|e| pool_error_outcome(&e, &*self.classifier))
            }
            None => {
                let client = if upgrade {
                    &self.ws_client
                } else {
                    &self.client
                };
                match client.request(req.map(Full::new)).await {
                    Ok(resp) => Ok(resp.map(UpstreamBody::unpooled)),
                    Err(e) => Err(error_outcome(&e, &*self.classifier)),
                }
            }
        }
    }
}

impl HttpProber {
    /// Builds the cheap tier's `GET` for `d` from the catalog's endpoint and keeps it for
    /// the next rounds (see [`Prepared`]).
    fn keep_cheap(&self, d: &Arc<Deployment>, ep: Endpoint) -> Result<Outgoing, http::Error> {
        let mut req = Request::get(ep.url.as_str());
        if let Some(h) = req.headers_mut() {
            h.extend(ep.headers);
        }
        let req = req.body(Bytes::new())?;
        Ok(self
            .prepared_cheap
            .insert(d, 0, req, !self.h2_only, &self.pools))
    }

    /// Sends the cheap tier's `GET` and judges its answer.
    async fn send_cheap(&self, out: Outgoing, d: Arc<Deployment>) -> ProbeOutcome {
        let tier = |o: ProbeOutcome| o.with_tier(ProbeTier::Cheap);
        match self.send(out, false).await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let out = classify(resp, false, &d, &*self.classifier).await;
                // An answer proves the upstream is reachable; a provider without a
                // model list at that path, or a key scoped away from listing models
                // (403), says no more than a connect would.
                if matches!(status, 403 | 404 | 405 | 501) {
                    return tier(
                        ProbeOutcome::healthy()
                            .with_status(status)
                            .with_class(Class::Success),
                    );
                }
                tier(out)
            }
            Err(failed) => tier(failed),
        }
    }

    /// The cheap tier: the catalog's token-free call, else a TCP/TLS connect.
    async fn run_cheap(&self, check: CheapCheck, d: Arc<Deployment>) -> ProbeOutcome {
        let tier = |o: ProbeOutcome| o.with_tier(ProbeTier::Cheap);
        match check {
            CheapCheck::Request(ep) => {
                let req = match self.keep_cheap(&d, ep) {
                    Ok(r) => r,
                    Err(e) => return tier(ProbeOutcome::unhealthy(format!("unsupported: {e}"))),
                };
                self.send_cheap(req, d).await
            }
            CheapCheck::Connect(origin) => {
                let uri: http::Uri = match origin.parse() {
                    Ok(u) => u,
                    Err(e) => return tier(ProbeOutcome::unhealthy(format!("unsupported: {e}"))),
                };
                let mut c = self.connector.clone();
                let connected = match tower::ServiceExt::ready(&mut c).await {
                    Ok(c) => tower::Service::call(c, uri).await,
                    Err(e) => Err(e),
                };
                match connected {
                    Ok(_) => tier(ProbeOutcome::healthy().with_class(Class::Success)),
                    Err(e) => {
                        let detail = shorten(&e.to_string());
                        let lower = detail.to_ascii_lowercase();
                        let kind = if lower.contains("certificate") || lower.contains("tls") {
                            "tls"
                        } else {
                            "connect"
                        };
                        tier(
                            ProbeOutcome::unhealthy(format!("{kind}: {detail}"))
                                .with_class(Class::Connection),
                        )
                    }
                }
            }
        }
    }
}

impl Prober for HttpProber {
    fn probe(&self, deployment: Arc<Deployment>) -> ProbeFuture<'_> {
        Box::pin(self.run(deployment))
    }

    /// `GET {base}/models` (Azure: `/openai/models?api-version=`, Anthropic and Cohere:
    /// `/v1/models`) with the deployment's credentials, or a TCP/TLS connect where the
    /// provider lists no models (`perplexity`, `voyage`); none for Bedrock and Vertex AI.
    /// A 403, 404, 405 or 501 answer passes: the upstream answered, it only has no list
    /// there (or the key may not list models); a 401 fails.
    fn probe_cheap(&self, deployment: Arc<Deployment>) -> Option<ProbeFuture<'_>> {
        // Kept from an earlier round: no catalog look-up, no request built.
        if let Some(req) = self
            .prepared_cheap
            .get(&deployment)
            .and_then(|p| p.request(0))
        {
            return Some(Box::pin(self.send_cheap(req, deployment)));
        }
        let check = provider::resolve_cheap(&deployment).ok()?;
        Some(Box::pin(self.run_cheap(check, deployment)))
    }

    /// The catalog's answer for `deployment`'s probe (and whether its request URL is
    /// valid; the request itself is built only when probing): a provider it does not speak, a wildcard without `health_check_model`, a
    /// missing `api_base` or a mode the provider lacks make the deployment unsupported,
    /// with the catalog's reason (and the field at fault, when there is one). Native cloud
    /// probes (Bedrock, Vertex AI) are built per probe; one that cannot be made says why
    /// in its result.
    fn unsupported(&self, d: &Deployment) -> Option<String> {
        /// How many answers are kept.
        const RECENT: usize = 8;
        if let Ok(recent) = self.recent_unsupported.lock()
            && let Some((_, why)) = recent.iter().find(|(seen, _)| seen.same_upstream(d))
        {
            return why.clone();
        }
        let why = self.decide_unsupported(d);
        if let Ok(mut recent) = self.recent_unsupported.lock() {
            if recent.len() == RECENT {
                recent.remove(0);
            }
            recent.push((d.clone(), why.clone()));
        }
        why
    }
}

impl HttpProber {
    /// [`Prober::unsupported`], decided afresh.
    fn decide_unsupported(&self, d: &Deployment) -> Option<String> {
        match provider::check(d).and_then(|(wire, url)| match wire {
            Wire::Bedrock | Wire::Vertex => Ok(()),
            _ => request::check_url(&url),
        }) {
            Ok(()) => None,
            Err(ProviderError::Invalid { field, why }) => Some(format!("{field}: {why}")),
            Err(e) => Some(e.to_string()),
        }
    }
}

async fn classify(
    resp: Response<UpstreamBody>,
    upgrade: bool,
    d: &Deployment,
    classifier: &dyn Classify,
) -> ProbeOutcome {
    let status = resp.status();
    if status.is_success() || (upgrade && status == StatusCode::SWITCHING_PROTOCOLS) {
        if !upgrade {
            drain(resp.into_body(), DRAIN_LIMIT).await;
        }
        return ProbeOutcome::healthy()
            .with_status(status.as_u16())
            .with_class(Class::Success);
    }
    let (parts, body) = resp.into_parts();
    let body = read_capped(body, ERROR_BODY_LIMIT).await;
    let class = match classifier.classify_response(status, &parts.headers, Some(&body)) {
        // A probe that did not pass is never a success (a 3xx, say).
        Class::Success => Class::ServerError,
        c => c,
    };
    let text = String::from_utf8_lossy(&body);
    let message = error_message(&text);
    let scrubbed = Scrubber::new(d.secrets().cloned())
        .scrub(&message)
        .into_owned();
    let code = status.as_u16();
    let reason = if matches!(code, 400 | 422) && says_probe_malformed(&text) {
        format!("probe_rejected: {}", shorten(&scrubbed))
    } else if scrubbed.is_empty() {
        format!(
            "status {code}: {}",
            status.canonical_reason().unwrap_or("error")
        )
    } else {
        format!("status {code}: {}", shorten(&scrubbed))
    };
    let out = ProbeOutcome::unhealthy(reason)
        .with_status(code)
        .with_class(class);
    match class.retry_after() {
        Some(r) => out.with_retry_after(r),
        None => out,
    }
}

/// Reads up to `limit` bytes of a body and drops them (a success's body is not looked at,
/// only read so that its connection can be reused): like [`read_capped`] without keeping
/// a copy.
async fn drain(mut body: UpstreamBody, limit: usize) {
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else { break };
        if let Ok(data) = frame.into_data() {
            seen = seen.saturating_add(data.len());
            if seen > limit {
                break;
            }
        }
    }
}

/// Reads up to `limit` bytes of a body; a longer body is cut there (and its connection
/// dropped rather than reused), a failed one ends early.
async fn read_capped(mut body: UpstreamBody, limit: usize) -> Bytes {
    let mut buf = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else { break };
        if let Ok(data) = frame.into_data() {
            let room = limit.saturating_sub(buf.len());
            buf.extend_from_slice(&data[..data.len().min(room)]);
            if data.len() > room {
                break;
            }
        }
    }
    buf.freeze()
}

/// The human part of an error body: `error.message`, `message`, `detail`, `error`, else the text.
fn error_message(text: &str) -> String {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(text) else {
        return text.trim().to_owned();
    };
    let pick = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Null => None,
        other => Some(other.to_string()),
    };
    v.pointer("/error/message")
        .and_then(pick)
        .or_else(|| v.get("message").and_then(pick))
        .or_else(|| v.get("detail").and_then(pick))
        .or_else(|| v.get("error").and_then(pick))
        .unwrap_or_else(|| text.trim().to_owned())
}

/// Phrases in a 400/422 body meaning the upstream rejected the probe's shape.
const MALFORMED_MARKERS: &[&str] = &[
    "unknown parameter",
    "unrecognized request argument",
    "unrecognized",
    "unsupported parameter",
    "unsupported value",
    "extra inputs are not permitted",
    "extra_forbidden",
    "extraneous",
    "missing required",
    "required parameter",
    "field required",
    "is a required property",
    "invalid type",
    "validation error",
    "could not parse",
    "malformed",
    "invalid_request_error",
];

fn says_probe_malformed(body: &str) -> bool {
    let lower = body.to_ascii_lowercase();
    MALFORMED_MARKERS.iter().any(|m| lower.contains(m))
}

fn error_outcome(e: &hyper_util::client::legacy::Error, classifier: &dyn Classify) -> ProbeOutcome {
    // The client's error says only which step failed; its sources say what failed.
    let detail = match std::error::Error::source(e) {
        Some(cause) => crate::error::error_chain(cause),
        None => e.to_string(),
    };
    failure_outcome(detail, e.is_connect(), classifier.classify_error(e))
}

/// [`error_outcome`] for a request sent through a [`HostPool`]: the same reasons (a failed
/// connect reads `connect: tcp connect error: …`, whichever sent it).
fn pool_error_outcome(e: &BoxError, classifier: &dyn Classify) -> ProbeOutcome {
    let connect = e.downcast_ref::<pool::ConnectError>().is_some();
    // This error is what failed (a connect error's text has its cause already).
    let detail = if connect {
        e.to_string()
    } else {
        crate::error::error_chain(&**e)
    };
    failure_outcome(detail, connect, classifier.classify_error(&**e))
}

/// The outcome of a probe that got no answer: `detail` (the error and its causes),
/// whether it was the connect that failed, and its class.
fn failure_outcome(detail: String, connect: bool, class: Class) -> ProbeOutcome {
    let lower = detail.to_ascii_lowercase();
    let kind =
        if lower.contains("certificate") || lower.contains("tls") || lower.contains("handshake") {
            "tls"
        } else if connect {
            "connect"
        } else {
            "request failed"
        };
    if class == Class::Local {
        // Our own limit (file descriptors, buffers), not the upstream's verdict.
        return ProbeOutcome::unhealthy(format!(
            "local: {} (a limit of this process; says nothing about the upstream)",
            shorten(&detail)
        ))
        .with_class(class);
    }
    ProbeOutcome::unhealthy(format!("{kind}: {}", shorten(&detail))).with_class(class)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_messages_are_found() {
        assert_eq!(
            error_message(r#"{"error":{"message":"bad key","type":"x"}}"#),
            "bad key"
        );
        assert_eq!(error_message(r#"{"message":"overloaded"}"#), "overloaded");
        assert_eq!(
            error_message(r#"{"detail":[{"msg":"field required"}]}"#),
            r#"[{"msg":"field required"}]"#
        );
        assert_eq!(error_message(r#"{"error":"nope"}"#), "nope");
        assert_eq!(error_message("  plain text \n"), "plain text");
    }

    /// Deployments whose chat probes differ in shape: OpenAI-compatible, Anthropic, Cohere,
    /// Azure, an embedding (no question), and `health_check_params` that repeat a question.
    fn shapes() -> Vec<Arc<Deployment>> {
        let mut with_params = Deployment::builder("r", "openai/gpt-4o")
            .api_base("http://127.0.0.1:9/v1")
            .api_key("sk-test");
        with_params.info_mut().extra.insert(
            "health_check_params".into(),
            crate::deployment::ParamValue::Plain(serde_json::json!({
                "user": request::QUESTIONS[1],
                "temperature": 0.0,
            })),
        );
        [
            Deployment::builder("r", "openai/gpt-4o")
                .api_base("http://127.0.0.1:9/v1")
                .api_key("sk-test"),
            Deployment::builder("r", "anthropic/claude-3-5-haiku").api_key("sk-ant"),
            Deployment::builder("r", "cohere/command-r").api_key("co-key"),
            Deployment::builder("r", "azure/my-gpt")
                .api_base("https://x.openai.azure.com")
                .api_key("az-key"),
            Deployment::builder("r", "openai/text-embedding-3-small")
                .api_base("http://127.0.0.1:9/v1")
                .mode(crate::deployment::Mode::Embedding),
            with_params,
        ]
        .into_iter()
        .map(|b| Arc::new(b.build()))
        .collect()
    }

    /// The same request, but for the `host` header that hyper adds to an HTTP/1.1 request
    /// (and a prepared plain-`http` one carries already, with hyper's value).
    /// Whether `a`, a request as the prober sends it, is `b` as built anew: the same but
    /// for the `Host` header hyper's client adds to an HTTP/1.1 request and, sent through
    /// its upstream's pool (which every plain-HTTP request but a WebSocket handshake is),
    /// the URI in origin form.
    fn same(a: &Outgoing, b: &Request<Bytes>) -> bool {
        let plain = b.uri().scheme_str() == Some("http");
        assert_eq!(
            a.pool().is_some(),
            plain && !b.headers().contains_key(http::header::UPGRADE),
            "{}",
            b.uri()
        );
        let want_uri = match a.pool() {
            Some(_) => pool::origin_form(b.uri()),
            None => b.uri().clone(),
        };
        let req = &a.req;
        let mut ha = req.headers().clone();
        if let Some(host) = ha.remove(http::header::HOST) {
            assert!(plain);
            assert_eq!(Some(host), host_header(b.uri()));
        }
        req.method() == b.method()
            && *req.uri() == want_uri
            && ha == *b.headers()
            && req.body() == b.body()
    }

    #[test]
    fn the_host_header_is_hyper_s() {
        for (uri, host) in [
            ("http://127.0.0.1:9/v1/x", "127.0.0.1:9"),
            ("http://example.com/v1", "example.com"),
            ("http://example.com:80/v1", "example.com"),
            ("http://[::1]:8080/v1", "[::1]:8080"),
        ] {
            let uri: http::Uri = uri.parse().unwrap();
            assert_eq!(host_header(&uri).unwrap(), host);
        }
    }

    #[test]
    fn a_swapped_question_gives_the_body_built_for_it() {
        let defaults = ProbeDefaults::default();
        let mut swapped = 0;
        for d in shapes() {
            let ep = provider::resolve(&d).unwrap();
            let built: Vec<_> = request::QUESTIONS
                .iter()
                .map(|q| request::build(&d, &ep, &defaults, q).unwrap())
                .collect();
            for (from, to) in [(0, 1), (1, 0)] {
                if let Some(b) = swap_question(built[from].body(), from, to) {
                    assert_eq!(b, built[to].body(), "{}", d.params().model);
                    swapped += 1;
                }
            }
        }
        // Each of the four plain chat shapes both ways, and the one whose params repeat the
        // second question one way only (from the first question: it occurs once there).
        assert_eq!(swapped, 9);
    }

    #[tokio::test]
    async fn a_prepared_request_is_the_one_built_anew() {
        let prober = HttpProber::new(ProbeDefaults::default()).unwrap();
        for d in shapes() {
            // Two rounds of probes: the first builds (and keeps), the second reuses.
            for _ in 0..4 {
                let turn = prober.turn.load(Relaxed) % request::QUESTIONS.len();
                let ep = provider::resolve(&d).unwrap();
                let fresh =
                    request::build(&d, &ep, &prober.defaults, request::QUESTIONS[turn]).unwrap();
                let Ok(req) = prober.try_build(&d).await else {
                    panic!("a request for {}", d.params().model)
                };
                assert!(same(&req, &fresh), "{}", d.params().model);
            }
        }
        assert_eq!(
            prober.prepared.map.lock().unwrap().by_addr.len(),
            shapes().len()
        );
    }

    #[test]
    fn a_kept_cheap_request_is_the_one_built_anew() {
        let prober = HttpProber::new(ProbeDefaults::default()).unwrap();
        let mut kept = 0;
        for d in shapes() {
            let Ok(CheapCheck::Request(ep)) = provider::resolve_cheap(&d) else {
                continue;
            };
            let mut fresh = Request::get(ep.url.as_str());
            fresh.headers_mut().unwrap().extend(ep.headers.clone());
            let fresh = fresh.body(Bytes::new()).unwrap();
            let first = prober.keep_cheap(&d, ep).unwrap();
            assert!(same(&first, &fresh), "{}", d.params().model);
            // The next rounds' request: from the cache, the same.
            let again = prober.prepared_cheap.get(&d).unwrap().request(0).unwrap();
            assert!(same(&again, &fresh), "{}", d.params().model);
            assert_eq!(again.req.method(), http::Method::GET);
            kept += 1;
        }
        assert!(kept >= 4, "the shapes' cheap checks are requests ({kept})");
        assert_eq!(
            prober.prepared_cheap.map.lock().unwrap().by_addr.len(),
            kept
        );
    }

    #[test]
    fn malformed_markers() {
        assert!(says_probe_malformed(
            r#"{"error":{"message":"Unrecognized request argument supplied: max_tokens"}}"#
        ));
        assert!(says_probe_malformed("1 validation error for ChatRequest"));
        assert!(!says_probe_malformed(
            r#"{"error":{"message":"content filtered","code":"content_filter"}}"#
        ));
    }
}
