//! AWS Bedrock's native probe: the Converse API (chat, completion) or InvokeModel
//! (embeddings), signed with AWS Signature Version 4 by the maintained `aws-sigv4` crate.
//!
//! Everything here is a pure function of a deployment, the AWS environment read once into
//! [`AwsEnv`], and the signing time, so every rule is tested without a network.
//!
//! # The rules (LiteLLM 1.109's, `llms/bedrock/base_aws_llm.py`)
//!
//! * **Model id**: `health_check_model`, else the model; the `bedrock/` prefix and any
//!   region segment go ([`bedrock_probe_model`]), then LiteLLM's route prefixes
//!   (`converse/`, `invoke/`, `llama/`, ...). Cross-region inference profiles (`us.`, `eu.`,
//!   `apac.`, `global.`, ...) and ARNs are kept. Bare ids are Bedrock's when
//!   [`is_bedrock_model`](super::bedrock_model::is_bedrock_model) says so.
//! * **Region**: `aws_region_name`, else a region segment of the model
//!   (`bedrock/eu-west-1/...`), else the ARN's region, else `AWS_REGION_NAME`, `AWS_REGION`,
//!   `AWS_DEFAULT_REGION`, else `us-west-2`.
//! * **Endpoint**: `api_base`, else `aws_bedrock_runtime_endpoint`, else
//!   `AWS_BEDROCK_RUNTIME_ENDPOINT`, else `https://bedrock-runtime.{region}.amazonaws.com`
//!   (`.amazonaws.com.cn` for `cn-` regions).
//! * **Credentials**: a Bedrock API key (`api_key`, else `AWS_BEARER_TOKEN_BEDROCK`) is sent
//!   as a bearer token, unsigned. Otherwise `aws_access_key_id` + `aws_secret_access_key`
//!   (+ `aws_session_token`) from `litellm_params`, else `AWS_ACCESS_KEY_ID` +
//!   `AWS_SECRET_ACCESS_KEY` (+ `AWS_SESSION_TOKEN`), signed for the service `bedrock`.
//!   Profiles, role assumption, web identity and instance metadata are not supported: a
//!   deployment that names them is [`Unsupported`], never probed with other credentials.
//!
//! # The request
//!
//! | mode | request |
//! |---|---|
//! | chat, completion | `POST /model/{id}/converse` `{"messages":[{"role":"user","content":[{"text":PROMPT}]}],"inferenceConfig":{"maxTokens":1}}` |
//! | embedding, Titan | `POST /model/{id}/invoke` `{"inputText":PROMPT}` |
//! | embedding, Cohere | `POST /model/{id}/invoke` `{"texts":[PROMPT],"input_type":"search_document"}` |
//!
//! `maxTokens` is `model_info.health_check_max_tokens`, else 1. The id is percent-encoded
//! in the path (`:` is `%3A`), as LiteLLM sends it. Other modes and embedding families
//! (Nova, TwelveLabs) are [`Unsupported`].
//!
//! # Secrets
//!
//! The secret key and session token are never in an error, a log line or `Debug`: the
//! signed headers are marked sensitive, and `aws-sigv4` (which traces the canonical
//! request, session token included) signs with tracing silenced.

use std::{fmt, time::SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::{
    http_request::{SignableBody, SignableRequest, SigningSettings, sign},
    sign::v4,
};
use aws_smithy_runtime_api::client::identity::Identity;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, header};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::json;

#[cfg(test)]
use super::bedrock_model::is_bedrock_model;
use super::bedrock_model::{PROFILE_PREFIXES, bedrock_probe_model};
use super::cloud::{
    Unsupported, check_endpoint, header_safe, plain_param, probe_model, secret_param,
};
use crate::{
    deployment::{Deployment, Mode},
    secret::Secret,
};

/// The region when nothing names one (LiteLLM's).
pub(crate) const DEFAULT_REGION: &str = "us-west-2";
/// The SigV4 signing name of Bedrock's runtime.
pub(crate) const SIGNING_SERVICE: &str = "bedrock";
/// The probe's `maxTokens` when `health_check_max_tokens` is unset.
pub(crate) const DEFAULT_MAX_TOKENS: u32 = 1;
/// Cohere's `input_type` for embeddings (LiteLLM's `COHERE_DEFAULT_EMBEDDING_INPUT_TYPE`).
const COHERE_INPUT_TYPE: &str = "search_document";

/// The AWS environment variables the Bedrock probe reads, read once (nothing else reads
/// the process environment; tests build it with [`from_lookup`](Self::from_lookup)).
/// `Debug` shows which are set, never a credential.
#[derive(Clone, Default)]
pub(crate) struct AwsEnv {
    access_key_id: Option<Secret>,
    secret_access_key: Option<Secret>,
    session_token: Option<Secret>,
    bearer_token: Option<Secret>,
    region_name: Option<String>,
    region: Option<String>,
    default_region: Option<String>,
    runtime_endpoint: Option<String>,
}

impl AwsEnv {
    /// Reads `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`,
    /// `AWS_BEARER_TOKEN_BEDROCK`, `AWS_REGION_NAME`, `AWS_REGION`, `AWS_DEFAULT_REGION` and
    /// `AWS_BEDROCK_RUNTIME_ENDPOINT` from the process environment.
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
        let secret = |name: &str| get(name).map(Secret::new);
        Self {
            access_key_id: secret("AWS_ACCESS_KEY_ID"),
            secret_access_key: secret("AWS_SECRET_ACCESS_KEY"),
            session_token: secret("AWS_SESSION_TOKEN"),
            bearer_token: secret("AWS_BEARER_TOKEN_BEDROCK"),
            region_name: get("AWS_REGION_NAME"),
            region: get("AWS_REGION"),
            default_region: get("AWS_DEFAULT_REGION"),
            runtime_endpoint: get("AWS_BEDROCK_RUNTIME_ENDPOINT"),
        }
    }
}

impl fmt::Debug for AwsEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsEnv")
            .field("access_key_id", &self.access_key_id.is_some())
            .field("secret_access_key", &self.secret_access_key.is_some())
            .field("session_token", &self.session_token.is_some())
            .field("bearer_token", &self.bearer_token.is_some())
            .field("region_name", &self.region_name)
            .field("region", &self.region)
            .field("default_region", &self.default_region)
            .field("runtime_endpoint", &self.runtime_endpoint)
            .finish()
    }
}

/// LiteLLM's Bedrock route prefixes (`bedrock/converse/…`, `bedrock/llama/arn:…`): they
/// choose LiteLLM's handler and are not part of the model id.
const ROUTES: &[&str] = &[
    "converse",
    "invoke",
    "async_invoke",
    "converse_like",
    "llama",
    "deepseek_r1",
    "qwen2",
    "qwen3",
    "nova",
    "openai",
    "moonshot",
    "twelvelabs",
];

/// The model id and the region segment (if any) of a probe model.
fn model_and_path_region(full: &str) -> (String, Option<String>) {
    let Some(rest) = full.strip_prefix("bedrock/") else {
        return (strip_routes(full).to_owned(), None);
    };
    let kept = bedrock_probe_model(full);
    // The segments `bedrock_probe_model` dropped are the regions.
    let mut kept_parts = kept.split('/').peekable();
    let mut region = None;
    for part in rest.split('/') {
        if kept_parts.peek() == Some(&part) {
            kept_parts.next();
        } else {
            region = Some(part.to_owned());
        }
    }
    (strip_routes(&kept).to_owned(), region)
}

fn strip_routes(mut id: &str) -> &str {
    while let Some((first, rest)) = id.split_once('/')
        && ROUTES.contains(&first)
    {
        id = rest;
    }
    id
}

/// The region of a Bedrock ARN (`arn:aws:bedrock:us-east-1:…`).
fn arn_region(id: &str) -> Option<&str> {
    let mut parts = id.strip_prefix("arn:")?.split(':');
    parts.nth(2).filter(|r| !r.is_empty())
}

/// Lowercase letters, digits and hyphens: a region that is safe in a host name.
fn valid_region(r: &str) -> bool {
    !r.is_empty()
        && r.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// What is percent-encoded in the model id's path segment: all but RFC 3986's unreserved.
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// How the request authenticates.
enum Auth {
    /// A Bedrock API key: `Authorization: Bearer`.
    Bearer(Secret),
    /// SigV4 with these credentials.
    Keys {
        access_key_id: Secret,
        secret_access_key: Secret,
        session_token: Option<Secret>,
    },
}

/// Params that name a credential source the native probe cannot use.
const UNSUPPORTED_SOURCES: &[&str] = &[
    "aws_profile_name",
    "aws_role_name",
    "aws_web_identity_token",
    "aws_sts_endpoint",
];

fn auth(d: &Deployment, env: &AwsEnv) -> Result<Auth, Unsupported> {
    if let Some(key) = d
        .params()
        .api_key
        .clone()
        .or_else(|| env.bearer_token.clone())
    {
        return Ok(Auth::Bearer(key));
    }
    for name in UNSUPPORTED_SOURCES {
        if d.params().extra.contains_key(*name) {
            return Err(Unsupported::new(
                field_of(name),
                format!(
                    "`{name}` (profiles, role assumption, web identity) is not supported by the \
                     native Bedrock probe: set aws_access_key_id and aws_secret_access_key, or \
                     disable_background_health_check"
                ),
            ));
        }
    }
    let id = secret_param(d, "aws_access_key_id");
    let key = secret_param(d, "aws_secret_access_key");
    let (access_key_id, secret_access_key, session_token) = match (id, key) {
        (Some(id), Some(key)) => (id, key, secret_param(d, "aws_session_token")),
        (Some(_), None) => {
            return Err(Unsupported::new(
                "litellm_params.aws_secret_access_key",
                "aws_access_key_id is set without aws_secret_access_key",
            ));
        }
        (None, Some(_)) => {
            return Err(Unsupported::new(
                "litellm_params.aws_access_key_id",
                "aws_secret_access_key is set without aws_access_key_id",
            ));
        }
        (None, None) => match (&env.access_key_id, &env.secret_access_key) {
            (Some(id), Some(key)) => (id.clone(), key.clone(), env.session_token.clone()),
            _ => {
                return Err(Unsupported::new(
                    "litellm_params.aws_access_key_id",
                    "no AWS credentials: set aws_access_key_id and aws_secret_access_key (or \
                     api_key for a Bedrock API key), or the AWS_ACCESS_KEY_ID and \
                     AWS_SECRET_ACCESS_KEY environment variables",
                ));
            }
        },
    };
    if !header_safe(access_key_id.expose()) {
        return Err(Unsupported::new(
            "litellm_params.aws_access_key_id",
            "contains characters an HTTP header cannot carry",
        ));
    }
    if let Some(t) = &session_token
        && !header_safe(t.expose())
    {
        return Err(Unsupported::new(
            "litellm_params.aws_session_token",
            "contains characters an HTTP header cannot carry",
        ));
    }
    Ok(Auth::Keys {
        access_key_id,
        secret_access_key,
        session_token,
    })
}

fn field_of(name: &str) -> &'static str {
    match name {
        "aws_profile_name" => "litellm_params.aws_profile_name",
        "aws_role_name" => "litellm_params.aws_role_name",
        "aws_web_identity_token" => "litellm_params.aws_web_identity_token",
        _ => "litellm_params.aws_sts_endpoint",
    }
}

/// The region a Bedrock deployment is signed for and reached in; see the module docs.
pub(crate) fn bedrock_region(d: &Deployment, env: &AwsEnv) -> Result<String, Unsupported> {
    let (id, path_region) = model_and_path_region(probe_model(d));
    let (field, region) = if let Some(r) = plain_param(d, "aws_region_name") {
        ("litellm_params.aws_region_name", r.to_owned())
    } else if let Some(r) = path_region.or_else(|| arn_region(&id).map(str::to_owned)) {
        ("litellm_params.model", r)
    } else {
        let env_region = env
            .region_name
            .as_ref()
            .or(env.region.as_ref())
            .or(env.default_region.as_ref());
        (
            "env.AWS_REGION",
            env_region.map_or(DEFAULT_REGION, String::as_str).to_owned(),
        )
    };
    if !valid_region(&region) {
        return Err(Unsupported::new(
            field,
            format!("`{region}` is not an AWS region (lowercase letters, digits and hyphens)"),
        ));
    }
    Ok(region)
}

/// The body and the operation (`converse` or `invoke`) of the probe.
fn operation(
    d: &Deployment,
    id: &str,
    mode: Mode,
    prompt: &str,
) -> Result<(&'static str, serde_json::Value), Unsupported> {
    match mode {
        Mode::Chat | Mode::Completion => {
            let max = d
                .info()
                .health_check_max_tokens
                .unwrap_or(DEFAULT_MAX_TOKENS);
            Ok((
                "converse",
                json!({
                    "messages": [{ "role": "user", "content": [{ "text": prompt }] }],
                    "inferenceConfig": { "maxTokens": max },
                }),
            ))
        }
        Mode::Embedding => {
            // The family is named after any inference-profile prefix.
            let family = id
                .split_once('.')
                .filter(|(p, _)| PROFILE_PREFIXES.contains(p))
                .map_or(id, |(_, rest)| rest);
            if family.starts_with("amazon.titan-embed") {
                Ok(("invoke", json!({ "inputText": prompt })))
            } else if family.starts_with("cohere.embed") {
                Ok((
                    "invoke",
                    json!({ "texts": [prompt], "input_type": COHERE_INPUT_TYPE }),
                ))
            } else {
                Err(Unsupported::new(
                    "litellm_params.model",
                    format!(
                        "the Bedrock embedding model `{id}` is not one the native probe knows \
                         (Titan and Cohere embeddings are): disable_background_health_check"
                    ),
                ))
            }
        }
        other => Err(Unsupported::new(
            "model_info.mode",
            format!(
                "the native Bedrock probe offers chat, completion and embedding, not `{other}`"
            ),
        )),
    }
}

/// The runtime endpoint, without a trailing slash; see the module docs.
fn endpoint(d: &Deployment, env: &AwsEnv, region: &str) -> Result<String, Unsupported> {
    if let Some(base) = d.params().api_base.as_deref() {
        return check_endpoint("litellm_params.api_base", base);
    }
    if let Some(e) = plain_param(d, "aws_bedrock_runtime_endpoint") {
        return check_endpoint("litellm_params.aws_bedrock_runtime_endpoint", e);
    }
    if let Some(e) = env.runtime_endpoint.as_deref() {
        return check_endpoint("env.AWS_BEDROCK_RUNTIME_ENDPOINT", e);
    }
    let suffix = if region.starts_with("cn-") {
        "amazonaws.com.cn"
    } else {
        "amazonaws.com"
    };
    check_endpoint(
        "litellm_params.aws_region_name",
        &format!("https://bedrock-runtime.{region}.{suffix}"),
    )
}

/// The signed probe request of a Bedrock deployment, signed now; see
/// [`bedrock_probe_request_at`]. Build it right before sending it: AWS accepts a signature
/// for 5 minutes either side of its clock.
pub(crate) fn bedrock_probe_request(
    d: &Deployment,
    mode: Mode,
    prompt: &str,
    env: &AwsEnv,
) -> Result<Request<Bytes>, Unsupported> {
    bedrock_probe_request_at(d, mode, prompt, env, SystemTime::now())
}

/// The probe request of a Bedrock deployment in `mode`, carrying `prompt`, signed (SigV4,
/// service `bedrock`) as of `now`, or why it cannot be built. `Authorization`,
/// `x-amz-security-token` and a bearer key are marked sensitive. See the module docs for
/// the rules.
pub(crate) fn bedrock_probe_request_at(
    d: &Deployment,
    mode: Mode,
    prompt: &str,
    env: &AwsEnv,
    now: SystemTime,
) -> Result<Request<Bytes>, Unsupported> {
    let (id, _) = model_and_path_region(probe_model(d));
    if id.is_empty() {
        return Err(Unsupported::new(
            "litellm_params.model",
            "names no Bedrock model id",
        ));
    }
    let region = bedrock_region(d, env)?;
    let (op, body) = operation(d, &id, mode, prompt)?;
    let auth = auth(d, env)?;
    let base = endpoint(d, env, &region)?;
    let url = format!(
        "{base}/model/{}/{op}",
        utf8_percent_encode(&id, PATH_SEGMENT)
    );
    let body = Bytes::from(body.to_string());
    let invalid = |_| {
        Unsupported::new(
            "litellm_params.api_base",
            format!("`{url}` is not a valid request URL"),
        )
    };
    let mut req = Request::builder()
        .method(Method::POST)
        .uri(url.as_str())
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ACCEPT, "application/json")
        .header(
            header::USER_AGENT,
            concat!("tower-health-routing/", env!("CARGO_PKG_VERSION")),
        )
        .body(body)
        .map_err(invalid)?;
    match auth {
        Auth::Bearer(key) => {
            let mut v =
                HeaderValue::try_from(format!("Bearer {}", key.expose())).map_err(|_| {
                    Unsupported::new(
                        "litellm_params.api_key",
                        "contains characters an HTTP header cannot carry",
                    )
                })?;
            v.set_sensitive(true);
            req.headers_mut().insert(header::AUTHORIZATION, v);
        }
        Auth::Keys {
            access_key_id,
            secret_access_key,
            session_token,
        } => sign_v4(
            &mut req,
            &region,
            now,
            access_key_id,
            secret_access_key,
            session_token,
        )?,
    }
    Ok(req)
}

/// Adds `x-amz-date`, `Authorization` (and `x-amz-security-token`) to `req`.
fn sign_v4(
    req: &mut Request<Bytes>,
    region: &str,
    now: SystemTime,
    access_key_id: Secret,
    secret_access_key: Secret,
    session_token: Option<Secret>,
) -> Result<(), Unsupported> {
    let identity: Identity = Credentials::new(
        access_key_id.expose(),
        secret_access_key.expose(),
        session_token.map(|t| t.expose().to_owned()),
        None,
        "litellm_params",
    )
    .into();
    let failed = |what: &str| {
        // aws-sigv4's errors name the request part at fault, never a credential; we keep
        // only our own words to be sure.
        Unsupported::new(
            "litellm_params.model",
            format!("the Bedrock request cannot be signed: {what}"),
        )
    };
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(SIGNING_SERVICE)
        .time(now)
        .settings(SigningSettings::default())
        .build()
        .map_err(|_| failed("incomplete signing parameters"))?
        .into();
    let uri = req.uri().to_string();
    let headers: Vec<(&str, &str)> = req
        .headers()
        .iter()
        .filter_map(|(k, v)| Some((k.as_str(), v.to_str().ok()?)))
        .collect();
    // aws-sigv4 traces the canonical request, which holds the session token: sign with
    // tracing silenced on this thread.
    let instructions =
        tracing::subscriber::with_default(tracing::subscriber::NoSubscriber::default(), || {
            let signable = SignableRequest::new(
                req.method().as_str(),
                uri.as_str(),
                headers.into_iter(),
                SignableBody::Bytes(req.body()),
            )
            .map_err(|_| failed("the URL or a header is not signable"))?;
            sign(signable, &params)
                .map(|out| out.into_parts().0)
                .map_err(|_| failed("signing failed"))
        })?;
    instructions.apply_to_request_http1x(req);
    // aws-sigv4 marks only the session token sensitive; the signature is not a secret,
    // but it is a credential for its 5 minutes, so it is hidden from `Debug` too.
    if let Some(v) = req.headers_mut().get_mut(header::AUTHORIZATION) {
        v.set_sensitive(true);
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests;
