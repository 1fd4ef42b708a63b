//! Vertex AI's native probe: Gemini's `generateContent` (chat, completion) or `predict`
//! (text embeddings), authorised by an OAuth access token that a service-account key is
//! exchanged for (the maintained `gcp_auth` crate: RS256 JWT grant to the key's own
//! `token_uri`, on our rustls/ring stack).
//!
//! # The rules (LiteLLM 1.109's, `llms/vertex_ai/`)
//!
//! * **Credentials**: `vertex_credentials`, a service-account key as JSON text (or a JSON
//!   object in the config) or the path of a JSON file; else the file
//!   `GOOGLE_APPLICATION_CREDENTIALS` names. Only `"type": "service_account"` keys are
//!   supported (not gcloud user credentials, workload identity or the metadata server).
//! * **Tokens**: one [`CustomServiceAccount`] per distinct credential, shared by every
//!   deployment and probe of a [`VertexAuth`]; `gcp_auth` caches its token until 20 s before
//!   `expires_in` ends and then fetches a new one. Its lock is taken only by probes, never
//!   on the request path.
//! * **Project**: `vertex_project`, else `VERTEXAI_PROJECT`, `VERTEX_PROJECT`, else the key's
//!   `project_id`.
//! * **Location**: `vertex_location`, else `VERTEXAI_LOCATION`, `VERTEX_LOCATION`, else
//!   `us-central1`. `global` is served by `aiplatform.googleapis.com`, a multi-region (`us`,
//!   `eu`) by `aiplatform.{geo}.rep.googleapis.com`, a region by
//!   `{location}-aiplatform.googleapis.com`.
//! * **URL**: `{host}/v1/projects/{project}/locations/{location}/publishers/google/models/{model}:{method}`.
//!   An `api_base` points the native wire elsewhere, as LiteLLM's `_check_custom_proxy`
//!   does: with no path (or `/`) the default path is appended; with only a version path
//!   (`/v1`, `/v1beta1`) the default path after the version is; otherwise it names the
//!   model and `:{method}` is appended.
//!
//! # The request
//!
//! | mode | request |
//! |---|---|
//! | chat, completion | `POST …:generateContent` `{"contents":[{"role":"user","parts":[{"text":PROMPT}]}],"generationConfig":{"maxOutputTokens":1}}` |
//! | embedding | `POST …:predict` `{"instances":[{"content":PROMPT}]}` |
//!
//! `maxOutputTokens` is `model_info.health_check_max_tokens`, else 1. Models other than
//! Gemini (`gemini-*`) and Google's text embeddings (`text-embedding-*`,
//! `text-multilingual-embedding-*`, `textembedding-gecko*`, `gemini-embedding-*`) — partner
//! models such as Claude or Llama on Vertex, custom endpoints — are [`Unsupported`].
//!
//! # Secrets
//!
//! The private key and the access token are never in an error, a log line or `Debug`: the
//! `Authorization` header is marked sensitive, `gcp_auth` redacts its key and token in
//! `Debug`, and its errors are scrubbed of the key before they are shown.

use std::{collections::HashMap, fmt, path::PathBuf, sync::Arc};

use bytes::Bytes;
use gcp_auth::{CustomServiceAccount, TokenProvider};
use http::{HeaderValue, Method, Request, header};
use serde_json::json;
use tokio::sync::Mutex;

use super::cloud::{Unsupported, check_endpoint, plain_param, probe_model, secret_param};
use crate::{
    deployment::{Deployment, Mode},
    secret::{Scrubber, Secret},
};

/// The OAuth scope of the token (LiteLLM's).
pub(crate) const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
/// The location when nothing names one (LiteLLM's).
pub(crate) const DEFAULT_LOCATION: &str = "us-central1";
/// The probe's `maxOutputTokens` when `health_check_max_tokens` is unset.
pub(crate) const DEFAULT_MAX_TOKENS: u32 = 1;

/// The Google environment variables the Vertex AI probe reads, read once (tests build it
/// with [`from_lookup`](Self::from_lookup)).
#[derive(Clone, Debug, Default)]
pub(crate) struct GoogleEnv {
    application_credentials: Option<PathBuf>,
    project: Option<String>,
    location: Option<String>,
}

impl GoogleEnv {
    /// Reads `GOOGLE_APPLICATION_CREDENTIALS`, `VERTEXAI_PROJECT` / `VERTEX_PROJECT` and
    /// `VERTEXAI_LOCATION` / `VERTEX_LOCATION` from the process environment.
    pub(crate) fn from_env() -> Self {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Like [`from_env`](Self::from_env), with the variables looked up by `env`; empty
    /// values count as unset.
    pub(crate) fn from_lookup(env: impl Fn(&str) -> Option<String>) -> Self {
        let get = |name: &str| {
            env(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        Self {
            application_credentials: get("GOOGLE_APPLICATION_CREDENTIALS").map(PathBuf::from),
            project: get("VERTEXAI_PROJECT").or_else(|| get("VERTEX_PROJECT")),
            location: get("VERTEXAI_LOCATION").or_else(|| get("VERTEX_LOCATION")),
        }
    }
}

/// Where a deployment's service-account key comes from; also the key of the token cache.
#[derive(Clone, PartialEq, Eq, Hash)]
enum Source {
    /// The key's JSON text (`vertex_credentials`).
    Json(Secret),
    /// A JSON file (`vertex_credentials` as a path, or `GOOGLE_APPLICATION_CREDENTIALS`).
    File { path: PathBuf, field: &'static str },
}

impl fmt::Debug for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Json(_) => f.write_str("Json([redacted])"),
            Self::File { path, .. } => f.debug_tuple("File").field(path).finish(),
        }
    }
}

impl Source {
    fn field(&self) -> &'static str {
        match self {
            Self::Json(_) => "litellm_params.vertex_credentials",
            Self::File { field, .. } => field,
        }
    }
}

fn source(d: &Deployment, env: &GoogleEnv) -> Result<Source, Unsupported> {
    if let Some(c) = secret_param(d, "vertex_credentials") {
        let text = c.expose().trim();
        return Ok(if text.starts_with('{') {
            Source::Json(c)
        } else {
            Source::File {
                path: PathBuf::from(text),
                field: "litellm_params.vertex_credentials",
            }
        });
    }
    match &env.application_credentials {
        Some(path) => Ok(Source::File {
            path: path.clone(),
            field: "env.GOOGLE_APPLICATION_CREDENTIALS",
        }),
        None => Err(Unsupported::new(
            "litellm_params.vertex_credentials",
            "no Google credentials: set vertex_credentials (a service-account key, as JSON or \
             the path of its file) or GOOGLE_APPLICATION_CREDENTIALS",
        )),
    }
}

/// A service-account key, read and checked: what `gcp_auth` is given, the project it
/// names, and the private key to scrub from any error.
struct Key {
    json: Secret,
    project_id: Option<String>,
    private_key: Secret,
}

fn read_key(src: &Source) -> Result<Key, Unsupported> {
    let field = src.field();
    let json = match src {
        Source::Json(s) => s.clone(),
        Source::File { path, .. } => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                Unsupported::new(
                    field,
                    format!("cannot read the credentials file `{}`: {e}", path.display()),
                )
            })?;
            Secret::new(text)
        }
    };
    // Our own parse, for errors that name what is wrong without quoting the key.
    let v: serde_json::Value = serde_json::from_str(json.expose()).map_err(|e| {
        Unsupported::new(
            field,
            format!("is not JSON (line {}, column {})", e.line(), e.column()),
        )
    })?;
    let text = |k: &str| v.get(k).and_then(|x| x.as_str()).filter(|s| !s.is_empty());
    match text("type") {
        Some("service_account") => {}
        Some(other) => {
            return Err(Unsupported::new(
                field,
                format!(
                    "is a `{other}` credential; the native Vertex AI probe supports \
                     service-account keys (`\"type\": \"service_account\"`) only"
                ),
            ));
        }
        None => {
            return Err(Unsupported::new(
                field,
                "is not a service-account key (no `\"type\": \"service_account\"`)",
            ));
        }
    }
    for k in ["client_email", "private_key", "token_uri"] {
        if text(k).is_none() {
            return Err(Unsupported::new(
                field,
                format!("the service-account key has no `{k}`"),
            ));
        }
    }
    Ok(Key {
        project_id: text("project_id").map(str::to_owned),
        private_key: Secret::new(text("private_key").unwrap_or_default()),
        json,
    })
}

/// The account for a key, or why `gcp_auth` refused it (scrubbed of the key).
fn account(src: &Source, key: &Key) -> Result<CustomServiceAccount, Unsupported> {
    CustomServiceAccount::from_json(key.json.expose()).map_err(|e| {
        let scrub = Scrubber::new([key.private_key.clone(), key.json.clone()]);
        Unsupported::new(
            src.field(),
            format!(
                "the service-account key is unusable: {}",
                scrub.scrub(&e.to_string())
            ),
        )
    })
}

/// Why a Vertex AI probe request could not be made.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum VertexError {
    /// The deployment cannot be probed as configured (a config-time error).
    Unsupported(Unsupported),
    /// The token exchange failed just now: the probe is unhealthy with this reason
    /// (secret-free).
    Token(String),
}

impl fmt::Debug for VertexError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unsupported(u) => fmt::Debug::fmt(u, f),
            Self::Token(why) => write!(f, "Token({why})"),
        }
    }
}

impl fmt::Display for VertexError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unsupported(u) => fmt::Display::fmt(u, f),
            Self::Token(why) => write!(f, "auth: {why}"),
        }
    }
}

impl From<Unsupported> for VertexError {
    fn from(u: Unsupported) -> Self {
        Self::Unsupported(u)
    }
}

/// Where and what a Vertex AI probe sends, without its token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct VertexTarget {
    /// The full request URL.
    pub(crate) url: String,
    /// The JSON body.
    pub(crate) body: Bytes,
}

/// The Vertex AI model name of a probe model: `vertex_ai/gemini-1.5-pro` → `gemini-1.5-pro`.
fn model_name(d: &Deployment) -> &str {
    let full = probe_model(d);
    ["vertex_ai/", "vertex_ai_beta/"]
        .iter()
        .find_map(|p| full.strip_prefix(p))
        .unwrap_or(full)
}

fn is_text_embedding(m: &str) -> bool {
    [
        "text-embedding-",
        "text-multilingual-embedding-",
        "textembedding-gecko",
        "gemini-embedding-",
    ]
    .iter()
    .any(|p| m.starts_with(p))
}

fn method_and_body(
    d: &Deployment,
    model: &str,
    mode: Mode,
    prompt: &str,
) -> Result<(&'static str, serde_json::Value), Unsupported> {
    let ok_name = model
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'@'));
    let known = match mode {
        Mode::Chat | Mode::Completion => model.starts_with("gemini-") && !is_text_embedding(model),
        Mode::Embedding => is_text_embedding(model),
        other => {
            return Err(Unsupported::new(
                "model_info.mode",
                format!(
                    "the native Vertex AI probe offers chat, completion and embedding, not \
                     `{other}`"
                ),
            ));
        }
    };
    if !ok_name || !known {
        return Err(Unsupported::new(
            "litellm_params.model",
            format!(
                "`{model}` in `{mode}` mode is not a model the native Vertex AI probe knows \
                 (Gemini for chat, Google's text embeddings): partner models and custom \
                 endpoints are not supported; disable_background_health_check"
            ),
        ));
    }
    Ok(match mode {
        Mode::Embedding => ("predict", json!({ "instances": [{ "content": prompt }] })),
        _ => {
            let max = d
                .info()
                .health_check_max_tokens
                .unwrap_or(DEFAULT_MAX_TOKENS);
            (
                "generateContent",
                json!({
                    "contents": [{ "role": "user", "parts": [{ "text": prompt }] }],
                    "generationConfig": { "maxOutputTokens": max },
                }),
            )
        }
    })
}

fn location(d: &Deployment, env: &GoogleEnv) -> Result<String, Unsupported> {
    let (field, loc) = match plain_param(d, "vertex_location") {
        Some(l) => ("litellm_params.vertex_location", l),
        None => (
            "env.VERTEXAI_LOCATION",
            env.location.as_deref().unwrap_or(DEFAULT_LOCATION),
        ),
    };
    let valid = loc.starts_with(|c: char| c.is_ascii_lowercase())
        && loc
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !valid {
        return Err(Unsupported::new(
            field,
            format!("`{loc}` is not a Vertex AI location (e.g. us-central1, europe-west4, global)"),
        ));
    }
    Ok(loc.to_owned())
}

fn project(d: &Deployment, env: &GoogleEnv, key: &Key) -> Result<String, Unsupported> {
    let (field, p) = match plain_param(d, "vertex_project") {
        Some(p) => ("litellm_params.vertex_project", p),
        None => match env.project.as_deref().or(key.project_id.as_deref()) {
            Some(p) => ("env.VERTEXAI_PROJECT", p),
            None => {
                return Err(Unsupported::new(
                    "litellm_params.vertex_project",
                    "no Vertex AI project: set vertex_project (or VERTEXAI_PROJECT), or use a \
                     key with a project_id",
                ));
            }
        },
    };
    if p.is_empty()
        || !p
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b':' | b'_'))
    {
        return Err(Unsupported::new(
            field,
            format!("`{p}` is not a Google Cloud project id"),
        ));
    }
    Ok(p.to_owned())
}

fn url(
    d: &Deployment,
    location: &str,
    project: &str,
    model: &str,
    method: &str,
) -> Result<String, Unsupported> {
    let path = format!(
        "/v1/projects/{project}/locations/{location}/publishers/google/models/{model}:{method}"
    );
    if let Some(base) = d.params().api_base.as_deref() {
        let base = check_endpoint("litellm_params.api_base", base)?;
        let uri: http::Uri = base.parse().map_err(|_| {
            Unsupported::new("litellm_params.api_base", format!("`{base}` is not a URL"))
        })?;
        return Ok(match uri.path().trim_end_matches('/') {
            "" => format!("{base}{path}"),
            version @ ("/v1" | "/v1beta1") => {
                let root = &base[..base.len() - version.len()];
                format!("{root}{version}{}", &path["/v1".len()..])
            }
            _ => format!("{base}:{method}"),
        });
    }
    let host = if location == "global" {
        "https://aiplatform.googleapis.com".to_owned()
    } else if !location.contains('-') {
        format!("https://aiplatform.{location}.rep.googleapis.com")
    } else {
        format!("https://{location}-aiplatform.googleapis.com")
    };
    Ok(check_endpoint("litellm_params.vertex_location", &host)? + &path)
}

/// A cached account and the key it was made from.
type Account = (Arc<CustomServiceAccount>, Arc<Key>);

/// Exchanges service-account keys for access tokens, one cached account per distinct key,
/// shared by every deployment and probe that uses it. Make one per prober.
#[derive(Default)]
pub(crate) struct VertexAuth {
    /// Taken by probes only (never on the request path), briefly: the token exchange runs
    /// outside it, under the account's own lock.
    accounts: Mutex<HashMap<Source, Account>>,
}

impl fmt::Debug for VertexAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VertexAuth").finish_non_exhaustive()
    }
}

impl VertexAuth {
    /// No accounts yet; they are made on first use.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Checks, without a network, that `d` can be probed in `mode`: credentials readable
    /// and a service-account key, project, location, model and mode known. Returns what
    /// the probe will send (bar the token). Call it when the config is loaded.
    pub(crate) fn check(
        d: &Deployment,
        mode: Mode,
        prompt: &str,
        env: &GoogleEnv,
    ) -> Result<VertexTarget, Unsupported> {
        let src = source(d, env)?;
        let key = read_key(&src)?;
        account(&src, &key)?;
        target(d, mode, prompt, env, &key)
    }

    /// The probe request of a Vertex AI deployment in `mode`, carrying `prompt`, with a
    /// bearer token from the cache (fetched or refreshed when needed), or why not.
    pub(crate) async fn vertex_probe_request(
        &self,
        d: &Deployment,
        mode: Mode,
        prompt: &str,
        env: &GoogleEnv,
    ) -> Result<Request<Bytes>, VertexError> {
        let src = source(d, env)?;
        let (acct, key) = self.account_for(&src).await?;
        let t = target(d, mode, prompt, env, &key)?;
        let token = acct.token(&[SCOPE]).await.map_err(|e| {
            let scrub = Scrubber::new([key.private_key.clone(), key.json.clone()]);
            VertexError::Token(format!(
                "the service-account token exchange failed: {}",
                scrub.scrub(&crate::error::error_chain(&e))
            ))
        })?;
        let mut auth = HeaderValue::try_from(format!("Bearer {}", token.as_str()))
            .map_err(|_| VertexError::Token("the token endpoint sent an unusable token".into()))?;
        auth.set_sensitive(true);
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(t.url.as_str())
            .header(header::CONTENT_TYPE, "application/json")
            .header(
                header::USER_AGENT,
                concat!("tower-health-routing/", env!("CARGO_PKG_VERSION")),
            )
            .body(t.body)
            .map_err(|_| {
                Unsupported::new(
                    "litellm_params.api_base",
                    format!("`{}` is not a valid request URL", t.url),
                )
            })?;
        req.headers_mut().insert(header::AUTHORIZATION, auth);
        Ok(req)
    }

    /// The cached account for `src`, made (its key read and checked) on first use.
    async fn account_for(&self, src: &Source) -> Result<Account, Unsupported> {
        let mut accounts = self.accounts.lock().await;
        if let Some(a) = accounts.get(src) {
            return Ok(a.clone());
        }
        let key = read_key(src)?;
        let made = (Arc::new(account(src, &key)?), Arc::new(key));
        accounts.insert(src.clone(), made.clone());
        Ok(made)
    }
}

fn target(
    d: &Deployment,
    mode: Mode,
    prompt: &str,
    env: &GoogleEnv,
    key: &Key,
) -> Result<VertexTarget, Unsupported> {
    let model = model_name(d);
    let (method, body) = method_and_body(d, model, mode, prompt)?;
    let location = location(d, env)?;
    let project = project(d, env, key)?;
    Ok(VertexTarget {
        url: url(d, &location, &project, model, method)?,
        body: Bytes::from(body.to_string()),
    })
}

#[cfg(test)]
pub(crate) mod tests;
