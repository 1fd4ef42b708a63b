//! Secrets: values that never appear in `Debug`, `Display`, serialized output, logs or
//! error messages, and a [`Scrubber`] that removes every configured secret from text we
//! did not write ourselves (upstream error bodies often quote the caller's key).

use std::{borrow::Cow, fmt, sync::Arc};

use serde::{Serialize, Serializer};

/// The text shown wherever a secret would have been.
pub const REDACTED: &str = "[redacted]";

/// A secret value such as an `api_key`. `Debug`, `Display` and `Serialize` show
/// `[redacted]`; only [`expose`](Self::expose) gives the value, for the one place that
/// must send it upstream.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Secret(Arc<str>);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<Arc<str>>) -> Self {
        Self(value.into())
    }

    /// The secret itself. Call it only where the value must leave the process
    /// (an `Authorization` header to the upstream), never for display.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(REDACTED)
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Self::new(s)
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Self::new(s)
    }
}

/// Whether a parameter's name says it holds a credential: `api_key`,
/// `aws_secret_access_key`, `vertex_credentials`, `extra_headers`, `my_token`, ...
///
/// Such params are kept as [`Secret`]s and never displayed. The test is deliberately
/// broad: a false positive hides a harmless value, a false negative leaks a key.
pub fn looks_secret(name: &str) -> bool {
    // Anywhere in the name.
    const SUBSTRINGS: &[&str] = &[
        "secret",
        "password",
        "passwd",
        "credential",
        "apikey",
        "api_key",
        "access_key",
        "private_key",
        "authorization",
        "header",
        "cookie",
        "signature",
    ];
    // As a whole word (split on `_`, `-`, `.`): `my_token` but not `max_tokens`.
    const WORDS: &[&str] = &[
        "key", "token", "auth", "session", "cert", "pwd", "pass", "bearer",
    ];
    let lower = name.to_ascii_lowercase();
    if SUBSTRINGS.iter().any(|m| lower.contains(m)) {
        return true;
    }
    let words: Vec<&str> = lower.split(['_', '-', '.']).collect();
    words.iter().enumerate().any(|(i, w)| {
        // `input_cost_per_token` is a price, not a credential.
        WORDS.contains(w) && !(*w == "token" && i > 0 && words[i - 1] == "per")
    })
}

/// Splits `url` into (everything up to the authority, the userinfo, the rest), where the
/// userinfo is what comes before the last `@` of the authority. Works on text that is not
/// a valid URL too (a space, an unknown scheme), since those are the ones printed in errors.
fn split_userinfo(url: &str) -> Option<(&str, &str, &str)> {
    let start = url.find("://").map_or(0, |i| i + 3);
    let rest = &url[start..];
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let at = rest[..end].rfind('@')?;
    Some((&url[..start], &rest[..at], &rest[at + 1..]))
}

/// Whether `url` carries credentials (`user:password@host`).
pub(crate) fn has_userinfo(url: &str) -> bool {
    split_userinfo(url).is_some()
}

/// `url` with its userinfo replaced by `[redacted]`: what an error may show of an `api_base`.
pub(crate) fn redact_userinfo(url: &str) -> Cow<'_, str> {
    match split_userinfo(url) {
        Some((head, _, rest)) => Cow::Owned(format!("{head}{REDACTED}@{rest}")),
        None => Cow::Borrowed(url),
    }
}

/// `url` without userinfo, query or fragment: the parts of an `api_base` that say where the
/// upstream is and never carry a credential.
pub(crate) fn public_url(url: &str) -> String {
    let url = url.trim();
    let (head, rest) = match split_userinfo(url) {
        Some((head, _, rest)) => (head, rest),
        None => {
            let start = url.find("://").map_or(0, |i| i + 3);
            (&url[..start], &url[start..])
        }
    };
    let rest = &rest[..rest.find(['?', '#']).unwrap_or(rest.len())];
    format!("{head}{rest}")
}

/// Removes every known secret value from a piece of text.
///
/// Build it once from the configured secrets ([`Config::scrubber`](crate::Config::scrubber));
/// [`scrub`](Self::scrub) borrows when there is nothing to remove.
#[derive(Clone, Default)]
pub struct Scrubber {
    // Longest first, so a secret that contains another is removed whole.
    secrets: Arc<[Secret]>,
}

impl Scrubber {
    /// A scrubber for these secrets (empty values are ignored).
    pub fn new(secrets: impl IntoIterator<Item = Secret>) -> Self {
        let mut v: Vec<Secret> = secrets
            .into_iter()
            .filter(|s| !s.expose().is_empty())
            .collect();
        v.sort_by(|a, b| {
            b.expose()
                .len()
                .cmp(&a.expose().len())
                .then_with(|| a.expose().cmp(b.expose()))
        });
        v.dedup();
        Self { secrets: v.into() }
    }

    /// `text` with every secret replaced by `[redacted]`.
    pub fn scrub<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut out = Cow::Borrowed(text);
        for s in self.secrets.iter() {
            if out.contains(s.expose()) {
                out = Cow::Owned(out.replace(s.expose(), REDACTED));
            }
        }
        out
    }

    /// How many distinct secrets it removes.
    pub fn len(&self) -> usize {
        self.secrets.len()
    }

    /// Whether it knows no secret at all.
    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }
}

impl fmt::Debug for Scrubber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scrubber")
            .field("secrets", &self.secrets.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_shows() {
        let s = Secret::new("sk-live-123");
        assert_eq!(format!("{s:?} {s}"), "[redacted] [redacted]");
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"[redacted]\"");
        assert_eq!(s.expose(), "sk-live-123");
    }

    #[test]
    fn scrubber_removes_longest_first() {
        let sc = Scrubber::new([Secret::new("abc"), Secret::new("abcdef"), Secret::new("")]);
        assert_eq!(sc.len(), 2);
        assert_eq!(
            sc.scrub("key abcdef and abc"),
            "key [redacted] and [redacted]"
        );
        assert!(matches!(sc.scrub("clean"), Cow::Borrowed(_)));
    }

    #[test]
    fn secret_names() {
        for n in [
            "api_key",
            "aws_secret_access_key",
            "vertex_credentials",
            "extra_headers",
            "my_token",
            "Password",
        ] {
            assert!(looks_secret(n), "{n}");
        }
        for n in [
            "model",
            "api_base",
            "api_version",
            "weight",
            "rpm",
            "region_name",
        ] {
            assert!(!looks_secret(n), "{n}");
        }
    }
}
