//! Small HTTP pieces the endpoints share: responses, the master-key check, query and
//! `Accept` parsing, and wall-clock timestamps.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use http_body_util::Full;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::time::Instant;

use crate::secret::Secret;

/// The response type of every endpoint.
pub(crate) type Resp = Response<Full<Bytes>>;

pub(crate) const JSON: &str = "application/json";
pub(crate) const HEALTH_JSON: &str = "application/health+json";

/// A response with `body` and `content_type`; never cached.
pub(crate) fn bytes(status: StatusCode, content_type: &'static str, body: Bytes) -> Resp {
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// `value` as a JSON response.
pub(crate) fn json(status: StatusCode, value: &impl serde::Serialize) -> Resp {
    json_as(status, JSON, value)
}

/// `value` as JSON with the given content type.
pub(crate) fn json_as(
    status: StatusCode,
    content_type: &'static str,
    value: &impl serde::Serialize,
) -> Resp {
    match serde_json::to_vec(value) {
        Ok(v) => bytes(status, content_type, Bytes::from(v)),
        // Our own types always serialize; answer something well-formed regardless.
        Err(_) => bytes(
            StatusCode::INTERNAL_SERVER_ERROR,
            JSON,
            Bytes::from_static(br#"{"error":{"message":"cannot render the response","type":"internal_error","code":"500"}}"#),
        ),
    }
}

/// An error in LiteLLM's (OpenAI's) shape: `{"error": {"message", "type", "code"}}`.
pub(crate) fn error(status: StatusCode, kind: &str, message: impl Into<String>) -> Resp {
    let body = json!({
        "error": {"message": message.into(), "type": kind, "code": status.as_str()}
    });
    json(status, &body)
}

/// The 401 of a missing or wrong master key; the key given is never echoed.
pub(crate) fn unauthorized() -> Resp {
    let mut resp = error(
        StatusCode::UNAUTHORIZED,
        "auth_error",
        "Authentication Error: missing or invalid key. Send the master key as \
         `Authorization: Bearer <key>`, `x-litellm-api-key` or `api-key`.",
    );
    resp.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    resp
}

/// Whether `headers` carry `key` in `Authorization: Bearer`, `x-litellm-api-key` or
/// `api-key` (the last two with or without `Bearer `). Compared in constant time (see
/// [`has_key_digest`]), so neither the key's bytes nor its length leak through timing.
pub fn has_key(headers: &HeaderMap, key: &Secret) -> bool {
    has_key_digest(headers, &KeyDigest::new(key))
}

/// A key prepared once for [`has_key_digest`]: a server that checks every request against
/// one master key need not prepare the key each time. It holds the key and the key's tag
/// under a SipHash key drawn at random when it is made; two compare equal when their keys
/// do (in constant time). Its `Debug` shows nothing of it.
#[derive(Clone)]
pub struct KeyDigest {
    key: Secret,
    /// The SipHash key (random, never shown) and the key's tag under it.
    tagger: std::hash::RandomState,
    tag: u64,
}

impl KeyDigest {
    /// `key`, prepared.
    pub fn new(key: &Secret) -> Self {
        let tagger = std::hash::RandomState::new();
        let tag = tag_of(&tagger, key.expose().as_bytes());
        Self {
            key: key.clone(),
            tagger,
            tag,
        }
    }

    /// Whether `given` is the key, in time that depends on `given`'s length alone: its tag
    /// (SipHash, whose time depends on the input's length only) is compared in constant
    /// time with the key's, and only a tag that matches, which a wrong guess does with a
    /// chance of 2^-64 and whose inputs an attacker cannot choose without the random
    /// SipHash key, has its bytes compared with the key's. So neither the key's bytes nor
    /// its length leak through timing, as with the SHA-256 digest of every key given that
    /// was compared before, for fewer instructions (the gateway's check of a request: 4,890
    /// -> 1,420 under callgrind, which runs SHA-256 without the CPU's SHA extensions).
    fn matches(&self, given: &[u8]) -> subtle::Choice {
        if bool::from(tag_of(&self.tagger, given).ct_eq(&self.tag)) {
            given.ct_eq(self.key.expose().as_bytes())
        } else {
            subtle::Choice::from(0)
        }
    }
}

/// The tag of `bytes` under `tagger`'s SipHash key.
fn tag_of(tagger: &std::hash::RandomState, bytes: &[u8]) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = tagger.build_hasher();
    h.write(bytes);
    h.finish()
}

impl PartialEq for KeyDigest {
    fn eq(&self, other: &Self) -> bool {
        bool::from(
            self.key
                .expose()
                .as_bytes()
                .ct_eq(other.key.expose().as_bytes()),
        )
    }
}

impl Eq for KeyDigest {}

impl std::fmt::Debug for KeyDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyDigest(..)")
    }
}

/// [`has_key`] against a prepared [`KeyDigest`]: the same headers, the same constant-time
/// comparison.
pub fn has_key_digest(headers: &HeaderMap, want: &KeyDigest) -> bool {
    // Built once: a `&str` name is parsed again on every lookup.
    const LITELLM_API_KEY: header::HeaderName =
        header::HeaderName::from_static("x-litellm-api-key");
    const API_KEY: header::HeaderName = header::HeaderName::from_static("api-key");
    let mut ok = subtle::Choice::from(0);
    // One pass over the headers (a request has a handful) instead of three look-ups, each
    // hashing its name; every value of the three names is checked, in any order.
    for (name, v) in headers {
        let bearer_only = name == header::AUTHORIZATION;
        if !bearer_only && name != LITELLM_API_KEY && name != API_KEY {
            continue;
        }
        let Ok(v) = v.to_str() else { continue };
        let v = v.trim();
        let given = strip_bearer(v).unwrap_or(if bearer_only { "" } else { v });
        if given.is_empty() {
            continue;
        }
        ok |= want.matches(given.as_bytes());
    }
    bool::from(ok)
}

/// Whether `given` (a key typed into a form) is `key`, compared as [`has_key`] does.
pub(crate) fn key_matches(given: &str, key: &Secret) -> bool {
    let given = given.trim();
    !given.is_empty()
        && bool::from(
            Sha256::digest(given.as_bytes()).ct_eq(&Sha256::digest(key.expose().as_bytes())),
        )
}

/// What follows `Bearer ` (any case; the scheme is what comes before the first space),
/// trimmed.
fn strip_bearer(v: &str) -> Option<&str> {
    // Byte by byte: "bearer" has no space, so it is the scheme exactly when the seventh
    // byte is the first space.
    let b = v.as_bytes();
    (b.len() > 6 && b[6] == b' ' && b[..6].eq_ignore_ascii_case(b"bearer")).then(|| v[7..].trim())
}

/// Whether the client asked for `application/health+json` (with a non-zero q).
pub(crate) fn wants_health_json(headers: &HeaderMap) -> bool {
    headers.get_all(header::ACCEPT).iter().any(|v| {
        v.to_str().is_ok_and(|s| {
            s.split(',').any(|item| {
                let mut parts = item.split(';');
                let media = parts.next().unwrap_or("").trim();
                let q_zero = parts.any(|p| {
                    p.trim()
                        .strip_prefix("q=")
                        .and_then(|q| q.trim().parse::<f64>().ok())
                        .is_some_and(|q| q <= 0.0)
                });
                media.eq_ignore_ascii_case(HEALTH_JSON) && !q_zero
            })
        })
    })
}

/// The first value of query parameter `name`, percent-decoded (`+` is a space).
pub(crate) fn query_param(query: Option<&str>, name: &str) -> Result<Option<String>, String> {
    let Some(q) = query else { return Ok(None) };
    for pair in q.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if decode(k)? == name {
            return decode(v).map(Some);
        }
    }
    Ok(None)
}

fn decode(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = b
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    // Never quoted: see `HealthEndpoints::client_error`.
                    .ok_or_else(|| "malformed percent-encoding in the query string".to_owned())?;
                out.push(hex);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| "query string is not UTF-8 once decoded".to_owned())
}

/// The wall-clock time of a tokio instant (for timestamps shown to people).
pub(crate) fn wall_clock(t: Instant) -> SystemTime {
    let ago = Instant::now().saturating_duration_since(t);
    SystemTime::now().checked_sub(ago).unwrap_or(UNIX_EPOCH)
}

/// `t` as RFC 3339 in UTC with milliseconds: `2024-07-10T18:59:10.616Z`.
pub(crate) fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, day) = civil_from_days(i64::try_from(days).unwrap_or(0));
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// Days since 1970-01-01 to (year, month, day); Howard Hinnant's `civil_from_days`.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Every string in `v` (keys too) with `scrub` applied.
pub(crate) fn scrub_json(v: Value, scrub: &dyn Fn(&str) -> String) -> Value {
    match v {
        Value::String(s) => Value::String(scrub(&s)),
        Value::Array(a) => Value::Array(a.into_iter().map(|x| scrub_json(x, scrub)).collect()),
        Value::Object(o) => Value::Object(
            o.into_iter()
                .map(|(k, x)| (scrub(&k), scrub_json(x, scrub)))
                .collect(),
        ),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_found_in_every_header_form() {
        let key = Secret::new("sk-master");
        let with = |name: &'static str, v: &str| {
            let mut h = HeaderMap::new();
            h.insert(name, v.parse().unwrap());
            has_key(&h, &key)
        };
        assert!(with("authorization", "Bearer sk-master"));
        assert!(with("authorization", "bearer  sk-master"));
        assert!(with("x-litellm-api-key", "sk-master"));
        assert!(with("x-litellm-api-key", "Bearer sk-master"));
        assert!(with("api-key", "sk-master"));
        assert!(!with("authorization", "sk-master"), "no scheme");
        assert!(!with("authorization", "Bearer sk-maste"));
        assert!(!with("authorization", "Bearer sk-master-and-more"));
        assert!(!with("api-key", ""));
        assert!(!has_key(&HeaderMap::new(), &key));
    }

    #[test]
    fn accept_negotiation() {
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::ACCEPT, v.parse().unwrap());
            wants_health_json(&h)
        };
        assert!(with("application/health+json"));
        assert!(with("text/html, Application/Health+JSON;q=0.9"));
        assert!(!with("application/json"));
        assert!(!with("application/health+json;q=0"));
        assert!(!wants_health_json(&HeaderMap::new()));
    }

    #[test]
    fn query_decoding() {
        let q = Some("a=1&model=openai%2Fgpt-4o+mini&model=second");
        assert_eq!(
            query_param(q, "model").unwrap().as_deref(),
            Some("openai/gpt-4o mini")
        );
        assert_eq!(query_param(q, "nope").unwrap(), None);
        assert_eq!(query_param(None, "model").unwrap(), None);
        let e = query_param(Some("model=%zz"), "model").unwrap_err();
        assert!(e.contains("percent-encoding"), "{e}");
        assert!(query_param(Some("model=%ff"), "model").is_err());
    }

    #[test]
    fn timestamps() {
        let t = UNIX_EPOCH + Duration::from_millis(1_720_637_950_616);
        assert_eq!(rfc3339(t), "2024-07-10T18:59:10.616Z");
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00.000Z");
    }
}
