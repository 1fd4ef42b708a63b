//! Paths, queries and auth headers per wire format.

use http::{HeaderMap, HeaderValue, header};

use super::{ProviderError, Purpose, Wire};
use crate::deployment::{Deployment, Mode, ParamValue};

/// Azure's `api-version` when the deployment sets none (LiteLLM 1.109's
/// `AZURE_DEFAULT_API_VERSION`).
pub const AZURE_DEFAULT_API_VERSION: &str = "2025-02-01-preview";
/// The `anthropic-version` header.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

const API_BASE: &str = "litellm_params.api_base";

fn invalid(why: String) -> ProviderError {
    ProviderError::Invalid {
        field: API_BASE,
        why,
    }
}

/// A checked base URL: scheme and authority plus path (no trailing slash), and the query
/// it carried.
#[derive(Debug)]
pub(super) struct Base {
    pub(super) path: String,
    query: Option<String>,
}

impl Base {
    /// An absolute `http` or `https` URL (the latter needs the `rustls` feature), without
    /// credentials in it. Errors never quote a URL that carries credentials.
    pub(super) fn parse(base: &str) -> Result<Self, ProviderError> {
        let trimmed = base.trim();
        let uri: http::Uri = trimmed
            .parse()
            .map_err(|e| invalid(format!("`{trimmed}` is not a URL: {e}")))?;
        if let Some(auth) = uri.authority()
            && auth.as_str().contains('@')
        {
            return Err(invalid(
                "carries credentials (user:password@host), which are not sent: put the \
                 key in api_key"
                    .into(),
            ));
        }
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") if cfg!(feature = "rustls") => {}
            Some("https") => {
                return Err(invalid(format!(
                    "`{trimmed}` is https, which needs the `rustls` feature of tower-health-routing"
                )));
            }
            _ => {
                return Err(invalid(format!(
                    "`{trimmed}` must start with http:// or https://"
                )));
            }
        }
        let Some(authority) = uri.authority() else {
            return Err(invalid(format!("`{trimmed}` names no host")));
        };
        let scheme = uri.scheme_str().unwrap_or("http");
        let path = uri.path().trim_end_matches('/');
        let authority = authority.as_str();
        let mut full = String::with_capacity(scheme.len() + 3 + authority.len() + path.len());
        for part in [scheme, "://", authority, path] {
            full.push_str(part);
        }
        Ok(Self {
            path: full,
            query: uri.query().filter(|q| !q.is_empty()).map(str::to_owned),
        })
    }

    /// Removes the first of `suffixes` the path ends with.
    pub(super) fn trim_suffixes(&mut self, suffixes: &[&str]) {
        if let Some(s) = suffixes.iter().find(|s| self.path.ends_with(*s)) {
            self.path.truncate(self.path.len() - s.len());
        }
    }

    /// `path` after the base path, then the base's query and `query` (already encoded).
    pub(super) fn join(&self, path: &str, query: &[(&str, String)]) -> String {
        let extra: usize = self.query.as_ref().map_or(0, |q| q.len() + 1)
            + query
                .iter()
                .map(|(k, v)| k.len() + v.len() + 2)
                .sum::<usize>();
        let mut url = String::with_capacity(self.path.len() + path.len() + extra);
        url.push_str(&self.path);
        url.push_str(path);
        let mut sep = '?';
        if let Some(q) = &self.query {
            url.push(sep);
            url.push_str(q);
            sep = '&';
        }
        for (k, v) in query {
            url.push(sep);
            url.push_str(k);
            url.push('=');
            url.push_str(v);
            sep = '&';
        }
        url
    }
}

/// Percent-encodes a query or path value (everything but RFC 3986 unreserved characters).
pub(crate) fn encode(s: &str) -> String {
    let unreserved = |b: u8| b.is_ascii_alphanumeric() || b"-._~".contains(&b);
    // The usual value (a model name, an API version) has nothing to encode.
    if s.bytes().all(unreserved) {
        return s.to_owned();
    }
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if unreserved(b) {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xF)]));
        }
    }
    out
}

type Path = (Wire, String, Vec<(&'static str, String)>);

/// The path (after the base) and extra query of `mode` on `wire`, and the wire of the body.
pub(super) fn path(
    d: &Deployment,
    wire: Wire,
    provider: &str,
    model: &str,
    mode: Mode,
    purpose: Purpose,
) -> Result<Path, ProviderError> {
    let not_forwarded = |why: &str| ProviderError::Unsupported {
        provider: provider.to_owned(),
        reason: why.to_owned(),
    };
    Ok(match (wire, purpose) {
        (Wire::OpenAi, Purpose::Cheap) => (Wire::OpenAi, "/models".to_owned(), Vec::new()),
        (Wire::Azure, Purpose::Cheap) => {
            let version = d
                .params()
                .api_version
                .as_deref()
                .unwrap_or(AZURE_DEFAULT_API_VERSION);
            (
                Wire::Azure,
                "/openai/models".to_owned(),
                vec![("api-version", encode(version))],
            )
        }
        (Wire::Anthropic | Wire::Cohere, Purpose::Cheap) => {
            (wire, "/v1/models".to_owned(), Vec::new())
        }
        (Wire::OpenAi, _) => {
            let p = openai_path(mode);
            let q = match (mode, purpose) {
                (Mode::Realtime, _) => vec![("model", encode(model))],
                (Mode::VideoGeneration, Purpose::Probe) => vec![("limit", "1".to_owned())],
                _ => Vec::new(),
            };
            (Wire::OpenAi, p.to_owned(), q)
        }
        (Wire::Azure, _) => {
            let version = d
                .params()
                .api_version
                .as_deref()
                .unwrap_or(AZURE_DEFAULT_API_VERSION);
            let v = ("api-version", encode(version));
            let (p, q) = match mode {
                Mode::Responses | Mode::Batch => (format!("/openai{}", openai_path(mode)), vec![v]),
                Mode::Realtime => (
                    "/openai/realtime".to_owned(),
                    vec![v, ("deployment", encode(model))],
                ),
                _ => {
                    let (model, tail) = (encode(model), openai_path(mode));
                    let mut p = String::with_capacity(20 + model.len() + tail.len());
                    for part in ["/openai/deployments/", &model, tail] {
                        p.push_str(part);
                    }
                    (p, vec![v])
                }
            };
            (Wire::Azure, p, q)
        }
        (Wire::Anthropic, Purpose::Probe) => {
            let p = if mode == Mode::Batch {
                "/v1/messages/batches"
            } else {
                "/v1/messages"
            };
            (Wire::Anthropic, p.to_owned(), Vec::new())
        }
        // OpenAI chat completions, translated to the Messages API by the forwarder.
        (Wire::Anthropic, Purpose::Forward) => match mode {
            Mode::Chat => (Wire::Anthropic, "/v1/messages".to_owned(), Vec::new()),
            _ => {
                return Err(not_forwarded(
                    "only chat completions are forwarded to Anthropic (translated to its \
                     Messages API)",
                ));
            }
        },
        (Wire::Cohere, Purpose::Probe) => {
            let p = match mode {
                Mode::Embedding => "/v2/embed",
                Mode::Rerank => "/v2/rerank",
                _ => "/v2/chat",
            };
            (Wire::Cohere, p.to_owned(), Vec::new())
        }
        (Wire::Cohere, Purpose::Forward) => {
            let p = match mode {
                Mode::Chat => "/compatibility/v1/chat/completions",
                Mode::Embedding => "/compatibility/v1/embeddings",
                _ => {
                    return Err(not_forwarded(
                        "Cohere's OpenAI-compatible endpoint serves chat completions and embeddings only",
                    ));
                }
            };
            (Wire::OpenAi, p.to_owned(), Vec::new())
        }
        // Built by their own modules (`aws`, `vertex`); the catalog returns before here.
        (Wire::Bedrock | Wire::Vertex, _) => {
            return Err(not_forwarded(
                "a native cloud API: its requests are built by its own probe",
            ));
        }
    })
}

/// OpenAI's path of a mode, relative to a base ending in `/v1`.
fn openai_path(mode: Mode) -> &'static str {
    match mode {
        Mode::Chat => "/chat/completions",
        Mode::Completion => "/completions",
        Mode::Responses => "/responses",
        Mode::Embedding => "/embeddings",
        Mode::ImageGeneration => "/images/generations",
        Mode::AudioSpeech => "/audio/speech",
        Mode::AudioTranscription => "/audio/transcriptions",
        Mode::Rerank => "/rerank",
        Mode::Batch => "/batches",
        Mode::Moderation => "/moderations",
        Mode::Ocr => "/ocr",
        Mode::Realtime => "/realtime",
        Mode::VideoGeneration => "/videos",
    }
}

/// A header value that carries a credential: `Bearer ` and the token, or the key itself.
enum Credential<'a> {
    Bearer(&'a str),
    Plain(&'a str),
}

impl Credential<'_> {
    fn into_value(self) -> String {
        match self {
            Self::Bearer(t) => {
                let mut v = String::with_capacity("Bearer ".len() + t.len());
                v.push_str("Bearer ");
                v.push_str(t);
                v
            }
            Self::Plain(k) => k.to_owned(),
        }
    }

    /// The error [`secret_header`] returns for it, if any, without building the value:
    /// `Bearer ` is valid header text, and a header value is checked byte by byte.
    fn check(&self, field: &'static str) -> Result<(), ProviderError> {
        let (Self::Bearer(t) | Self::Plain(t)) = self;
        HeaderValue::from_bytes(t.as_bytes())
            .map(drop)
            .map_err(|_| header_error(field))
    }
}

fn header_error(field: &'static str) -> ProviderError {
    ProviderError::Invalid {
        field,
        why: "contains characters an HTTP header cannot carry".into(),
    }
}

fn secret_header(
    name: &'static str,
    field: &'static str,
    value: String,
) -> Result<(header::HeaderName, HeaderValue), ProviderError> {
    let mut v = HeaderValue::try_from(value).map_err(|_| header_error(field))?;
    v.set_sensitive(true);
    Ok((header::HeaderName::from_static(name), v))
}

/// The credential header `wire` sends for `d`: its name, the field it comes from and its
/// value.
fn credential(d: &Deployment, wire: Wire) -> Option<(&'static str, &'static str, Credential<'_>)> {
    let key = d.params().api_key.as_ref().map(|k| k.expose());
    match (wire, key) {
        (Wire::OpenAi | Wire::Cohere, Some(k)) => Some((
            "authorization",
            "litellm_params.api_key",
            Credential::Bearer(k),
        )),
        (Wire::Azure, Some(k)) => Some(("api-key", "litellm_params.api_key", Credential::Plain(k))),
        (Wire::Azure, None) => match d.params().extra.get("azure_ad_token") {
            Some(ParamValue::Secret(t)) => Some((
                "authorization",
                "litellm_params.azure_ad_token",
                Credential::Bearer(t.expose()),
            )),
            _ => None,
        },
        (Wire::Anthropic, Some(k)) => {
            Some(("x-api-key", "litellm_params.api_key", Credential::Plain(k)))
        }
        // Signed or token-authorised per request by their own modules.
        (Wire::Bedrock | Wire::Vertex, _) | (_, None) => None,
    }
}

/// The credentials (marked sensitive) and the headers `wire` requires.
pub(super) fn auth_headers(
    d: &Deployment,
    wire: Wire,
    h: &mut HeaderMap,
) -> Result<(), ProviderError> {
    if wire == Wire::Anthropic {
        h.insert(
            "anthropic-version",
            HeaderValue::from_static(ANTHROPIC_VERSION),
        );
    }
    if let Some((name, field, value)) = credential(d, wire) {
        let (name, value) = secret_header(name, field, value.into_value())?;
        h.insert(name, value);
    }
    Ok(())
}

/// [`auth_headers`]' error, if it has one, without building the headers.
pub(super) fn check_auth(d: &Deployment, wire: Wire) -> Result<(), ProviderError> {
    match credential(d, wire) {
        Some((_, field, value)) => value.check(field),
        None => Ok(()),
    }
}
