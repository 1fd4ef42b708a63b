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
    let lower: Cow<'_, str> = if name.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(name.to_ascii_lowercase())
    } else {
        Cow::Borrowed(name)
    };
    if SUBSTRINGS.iter().any(|m| lower.contains(m)) {
        return true;
    }
    let mut prev = "";
    for w in lower.split(['_', '-', '.']) {
        // `input_cost_per_token` is a price, not a credential.
        if WORDS.contains(&w) && !(w == "token" && prev == "per") {
            return true;
        }
        prev = w;
    }
    false
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

/// Removes every known secret value from a piece of text, in the forms an upstream or a
/// client library may print it.
///
/// For each secret it also removes: the value upper- and lower-cased; its base64 (standard
/// and URL-safe alphabets, with and without padding), hex (both cases) and URL-encoded
/// forms; and, when the secret is a JSON credential (`vertex_credentials`), each
/// credential-looking value inside it (`private_key`, `client_secret`, ...), with its lines
/// when it spans several (a PEM key). Encoded forms are added only for secrets of at least
/// [`MIN_ENCODED_LEN`](Self::MIN_ENCODED_LEN) bytes, where a false match is implausible.
///
/// All forms are matched in one pass (Aho-Corasick, leftmost-longest, so a secret that
/// contains another is removed whole). Build it once from the configured secrets
/// ([`Config::scrubber`](crate::Config::scrubber)); [`scrub`](Self::scrub) borrows when
/// there is nothing to remove.
#[derive(Clone, Default)]
pub struct Scrubber {
    /// The distinct secrets it was given.
    count: usize,
    /// Every form of every secret; `None` when there is none.
    matcher: Option<Arc<aho_corasick::AhoCorasick>>,
    /// The same forms, sorted (for [`StreamScrubber`]'s look for a secret cut at a chunk's end).
    forms: Arc<[Box<[u8]>]>,
    /// The longest form's length in bytes.
    longest: usize,
    /// Bit `b` set when some form begins with byte `b`: most chunk ends cannot begin a
    /// secret, and this rules them out without a search.
    starts: Arc<[u64; 4]>,
}

impl Scrubber {
    /// Secrets shorter than this (in bytes) are removed as they are and case-folded only.
    pub const MIN_ENCODED_LEN: usize = 8;

    /// A scrubber for these secrets (empty values are ignored).
    pub fn new(secrets: impl IntoIterator<Item = Secret>) -> Self {
        let mut given: Vec<Secret> = secrets
            .into_iter()
            .filter(|s| !s.expose().is_empty())
            .collect();
        given.sort_by(|a, b| a.expose().cmp(b.expose()));
        given.dedup();
        let mut forms = std::collections::BTreeSet::new();
        for s in &given {
            add_forms(s.expose(), &mut forms);
            for inner in json_fragments(s.expose()) {
                add_forms(&inner, &mut forms);
            }
        }
        let matcher = (!forms.is_empty()).then(|| {
            let ac = aho_corasick::AhoCorasick::builder()
                .match_kind(aho_corasick::MatchKind::LeftmostLongest)
                .build(&forms)
                .expect("secrets are bounded by the config's size");
            Arc::new(ac)
        });
        let longest = forms.iter().map(String::len).max().unwrap_or(0);
        let mut starts = [0u64; 4];
        for f in &forms {
            if let Some(&b) = f.as_bytes().first() {
                starts[usize::from(b >> 6)] |= 1 << (b & 63);
            }
        }
        let forms: Arc<[Box<[u8]>]> = forms
            .into_iter()
            .map(|f| f.into_bytes().into_boxed_slice())
            .collect();
        Self {
            count: given.len(),
            matcher,
            forms,
            longest,
            starts: Arc::new(starts),
        }
    }

    /// `bytes` with every form of every secret replaced by `[redacted]`, for text that may
    /// not be UTF-8 (a response body, a header value).
    pub fn scrub_bytes<'a>(&self, bytes: &'a [u8]) -> Cow<'a, [u8]> {
        let Some(ac) = &self.matcher else {
            return Cow::Borrowed(bytes);
        };
        if ac.find(bytes).is_none() {
            return Cow::Borrowed(bytes);
        }
        let mut out = Vec::with_capacity(bytes.len());
        ac.replace_all_with_bytes(bytes, &mut out, |_, _, dst| {
            dst.extend_from_slice(REDACTED.as_bytes());
            true
        });
        Cow::Owned(out)
    }

    /// A scrubber for a body that arrives in chunks: a secret cut across two chunks is
    /// removed all the same (see [`StreamScrubber`]).
    pub fn stream(&self) -> StreamScrubber {
        StreamScrubber {
            scrubber: self.clone(),
            carry: Vec::new(),
        }
    }

    /// The length in bytes of the longest form it removes (0 when it knows no secret): a
    /// [`StreamScrubber`] holds back at most one byte less than this.
    pub fn longest_form(&self) -> usize {
        self.longest
    }

    /// The length of the longest end of `buf` (shorter than the longest form) that is the
    /// beginning, but not the whole, of some form: bytes that may still become a secret.
    fn pending_len(&self, buf: &[u8]) -> usize {
        let max = self.longest.saturating_sub(1).min(buf.len());
        let from = buf.len() - max;
        // Longest end first; only an end whose first byte begins some form is looked up.
        for (i, &b) in buf[from..].iter().enumerate() {
            if self.starts[usize::from(b >> 6)] & (1 << (b & 63)) == 0 {
                continue;
            }
            let tail = &buf[from + i..];
            let k = tail.len();
            let at = self.forms.partition_point(|f| f.as_ref() < tail);
            if self.forms[at..]
                .iter()
                .take_while(|f| f.starts_with(tail))
                .any(|f| f.len() > k)
            {
                return k;
            }
        }
        0
    }

    /// `text` with every form of every secret replaced by `[redacted]`.
    pub fn scrub<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let Some(ac) = &self.matcher else {
            return Cow::Borrowed(text);
        };
        let Some(first) = ac.find(text) else {
            return Cow::Borrowed(text);
        };
        let mut out = String::with_capacity(text.len());
        out.push_str(&text[..first.start()]);
        out.push_str(REDACTED);
        let rest = &text[first.end()..];
        ac.replace_all_with(rest, &mut out, |_, _, dst| {
            dst.push_str(REDACTED);
            true
        });
        Cow::Owned(out)
    }

    /// How many distinct secrets it removes.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether it knows no secret at all.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

/// A [`Scrubber`] over a body that arrives in chunks ([`Scrubber::stream`]).
///
/// [`push`](Self::push) returns each chunk scrubbed, except for its last few bytes when
/// they could be the beginning of a secret that the next chunk completes: those are held
/// back (never more than [`Scrubber::longest_form`] − 1 bytes, and usually none, so a
/// stream of server-sent events is not delayed) and go out, scrubbed, with the next chunk
/// or at [`finish`](Self::finish). The output is what [`Scrubber::scrub_bytes`] would make
/// of the whole body.
///
/// ```
/// use tower_health_routing::secret::{Scrubber, Secret};
///
/// let sc = Scrubber::new([Secret::new("sk-live-0123456789")]);
/// let mut s = sc.stream();
/// let mut out = s.push(b"data: key sk-live-01");
/// out.extend(s.push(b"23456789 end"));
/// out.extend(s.finish());
/// assert_eq!(out, b"data: key [redacted] end");
/// ```
#[derive(Clone)]
pub struct StreamScrubber {
    scrubber: Scrubber,
    /// Held-back bytes that may begin a secret.
    carry: Vec<u8>,
}

impl StreamScrubber {
    /// The next chunk, scrubbed, minus any held-back end.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        let Some(ac) = self.scrubber.matcher.as_deref() else {
            return chunk.to_vec();
        };
        let mut buf = std::mem::take(&mut self.carry);
        buf.extend_from_slice(chunk);
        // Bytes from `cut` on may begin a secret the next chunk completes. A match that
        // starts before it is final: any longer form starting there would make a longer
        // pending end.
        let cut = buf.len() - self.scrubber.pending_len(&buf);
        let mut out = Vec::with_capacity(buf.len());
        let mut cursor = 0;
        for m in ac.find_iter(&buf) {
            if m.start() >= cut {
                break;
            }
            out.extend_from_slice(&buf[cursor..m.start()]);
            out.extend_from_slice(REDACTED.as_bytes());
            cursor = m.end();
        }
        let keep = cursor.max(cut);
        out.extend_from_slice(&buf[cursor..keep]);
        self.carry = buf[keep..].to_vec();
        out
    }

    /// As [`push`](Self::push), for a chunk that is already [`Bytes`](bytes::Bytes): a chunk with nothing
    /// held back before it, no secret in it and no end that may begin one comes back as it
    /// is, without a copy (the common case of a body with no secret in it).
    pub fn push_bytes(&mut self, chunk: bytes::Bytes) -> bytes::Bytes {
        let Some(ac) = self.scrubber.matcher.as_deref() else {
            return chunk;
        };
        if self.carry.is_empty()
            && self.scrubber.pending_len(&chunk) == 0
            && ac.find(&chunk[..]).is_none()
        {
            return chunk;
        }
        self.push(&chunk).into()
    }

    /// The last chunk of a body (one known to end with it, as a `Content-Length` body
    /// does), scrubbed with the held-back end: [`push`](Self::push) then
    /// [`finish`](Self::finish) in one, and, when nothing is held back and the chunk holds no
    /// secret, the chunk as it is, without a copy or the look for a secret's beginning at
    /// its end.
    pub fn push_last(&mut self, chunk: bytes::Bytes) -> bytes::Bytes {
        if self.carry.is_empty() {
            return match self.scrubber.scrub_bytes(&chunk) {
                Cow::Borrowed(_) => chunk,
                Cow::Owned(v) => v.into(),
            };
        }
        let mut out = self.push(&chunk);
        out.extend(self.finish());
        out.into()
    }

    /// The held-back end, scrubbed: call once the body has ended.
    pub fn finish(&mut self) -> Vec<u8> {
        let carry = std::mem::take(&mut self.carry);
        self.scrubber.scrub_bytes(&carry).into_owned()
    }

    /// How many bytes are held back now.
    pub fn held(&self) -> usize {
        self.carry.len()
    }
}

impl fmt::Debug for StreamScrubber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamScrubber")
            .field("secrets", &self.scrubber.count)
            .field("held", &self.carry.len())
            .finish()
    }
}

/// The forms of `s` that [`Scrubber`] removes.
fn add_forms(s: &str, out: &mut std::collections::BTreeSet<String>) {
    use base64::Engine as _;
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    if s.is_empty() {
        return;
    }
    out.insert(s.to_owned());
    out.insert(s.to_uppercase());
    out.insert(s.to_lowercase());
    if s.len() < Scrubber::MIN_ENCODED_LEN {
        return;
    }
    for engine in [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD] {
        out.insert(engine.encode(s));
    }
    let hex: String = s.bytes().map(|b| format!("{b:02x}")).collect();
    out.insert(hex.to_uppercase());
    out.insert(hex);
    // Query strings and forms: every byte but unreserved ones, `%2F` and `%2f` alike.
    const COMPONENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    let encoded = percent_encoding::utf8_percent_encode(s, COMPONENT).to_string();
    if encoded != s {
        out.insert(lowercase_escapes(&encoded));
        out.insert(encoded);
        out.insert(s.replace(' ', "+"));
    }
}

/// The credential values inside a JSON credential (a service-account file given as
/// `vertex_credentials`): every string under a secret-looking key, at any depth, and the
/// lines of multi-line ones (a PEM key's base64 lines), as written and JSON-escaped.
fn json_fragments(s: &str) -> Vec<String> {
    fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    match v {
                        serde_json::Value::String(s) if looks_secret(k) => {
                            out.push(s.clone());
                            // As it appears inside JSON text: `\n` for each newline.
                            if let Ok(escaped) = serde_json::to_string(s) {
                                out.push(escaped.trim_matches('"').to_owned());
                            }
                            out.extend(
                                s.lines()
                                    .map(str::trim)
                                    .filter(|l| l.len() >= 16 && !l.starts_with("-----"))
                                    .map(str::to_owned),
                            );
                        }
                        other => walk(other, out),
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let t = s.trim_start();
    if !t.starts_with('{') {
        return Vec::new();
    }
    let Ok(v) = serde_json::from_str::<serde_json::Value>(t) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    walk(&v, &mut out);
    out.retain(|f| !f.is_empty());
    out
}

/// `%2F` → `%2f`: some encoders write lower-case escapes. `encoded` is ASCII.
fn lowercase_escapes(encoded: &str) -> String {
    let mut parts = encoded.split('%');
    let mut out = parts.next().unwrap_or_default().to_owned();
    for p in parts {
        out.push('%');
        let cut = p.len().min(2);
        out.push_str(&p[..cut].to_ascii_lowercase());
        out.push_str(&p[cut..]);
    }
    out
}

impl fmt::Debug for Scrubber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scrubber")
            .field("secrets", &self.count)
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
    fn a_last_chunk_is_scrubbed_with_the_held_back_end_and_a_clean_one_is_not_copied() {
        let sc = Scrubber::new([Secret::new("sk-live-123456")]);
        // A secret split across the last two chunks.
        let mut st = sc.stream();
        let mut out = st
            .push_bytes(bytes::Bytes::from_static(b"key sk-live"))
            .to_vec();
        assert!(st.held() > 0);
        out.extend_from_slice(&st.push_last(bytes::Bytes::from_static(b"-123456 end")));
        assert_eq!(out, b"key [redacted] end");
        assert_eq!(st.held(), 0);
        // A held-back beginning that never becomes a secret comes out as it was.
        let mut st = sc.stream();
        let mut out = st
            .push_bytes(bytes::Bytes::from_static(b"a sk-li"))
            .to_vec();
        out.extend_from_slice(&st.push_last(bytes::Bytes::from_static(b"ve!")));
        assert_eq!(out, b"a sk-live!");
        // A whole secret in a last chunk, and a chunk that ends as a secret begins.
        let mut st = sc.stream();
        assert_eq!(
            &st.push_last(bytes::Bytes::from_static(b"{\"k\":\"sk-live-123456\"}"))[..],
            b"{\"k\":\"[redacted]\"}"
        );
        let clean = bytes::Bytes::from(b"ends with sk-li".to_vec());
        let mut st = sc.stream();
        let back = st.push_last(clean.clone());
        assert_eq!(back, clean);
        assert_eq!(back.as_ptr(), clean.as_ptr(), "not copied");
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
    fn scrubber_removes_encodings() {
        use base64::Engine as _;
        use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
        let key = "sk-Ab/c+d=e?f~g";
        let sc = Scrubber::new([Secret::new(key)]);
        let hex: String = key.bytes().map(|b| format!("{b:02x}")).collect();
        for form in [
            key.to_owned(),
            key.to_uppercase(),
            key.to_lowercase(),
            STANDARD.encode(key),
            STANDARD.encode(key).trim_end_matches('=').to_owned(),
            URL_SAFE_NO_PAD.encode(key),
            hex.clone(),
            hex.to_uppercase(),
            "sk-Ab%2Fc%2Bd%3De%3Ff~g".to_owned(),
            "sk-Ab%2fc%2bd%3de%3ff~g".to_owned(),
        ] {
            let text = format!("upstream said: <{form}>");
            assert_eq!(sc.scrub(&text), "upstream said: <[redacted]>", "{form}");
        }
    }

    #[test]
    fn json_credentials_lose_their_inner_secrets() {
        let creds = serde_json::json!({
            "type": "service_account",
            "project_id": "my-project",
            "private_key_id": "0123456789abcdef0123",
            "private_key": "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nAbCdEfGhIjKlMnOpQrStUvWxYz012345\n-----END PRIVATE KEY-----\n",
            "client_secret": "cs-very-secret-value",
        })
        .to_string();
        let sc = Scrubber::new([Secret::new(creds)]);
        let out = sc.scrub(
            "key 0123456789abcdef0123, line MIIEvQIBADANBgkqhkiG9w0BAQEFAASC, cs-very-secret-value, project my-project",
        );
        assert_eq!(
            out,
            "key [redacted], line [redacted], [redacted], project my-project"
        );
    }

    #[test]
    fn push_bytes_passes_clean_chunks_uncopied_and_still_catches_cut_secrets() {
        let key = "sk-stream-0123456789";
        let sc = Scrubber::new([Secret::new(key)]);
        // A clean chunk is the same buffer, not a copy.
        let mut s = sc.stream();
        let clean = bytes::Bytes::from_static(b"data: {\"ok\": true}\n\n");
        let out = s.push_bytes(clean.clone());
        assert_eq!(out.as_ptr(), clean.as_ptr());
        // Cut anywhere, a secret is still removed (the slow path takes over).
        let body = format!("x {key} y");
        for at in 0..=body.len() {
            let mut s = sc.stream();
            let mut out = s
                .push_bytes(bytes::Bytes::copy_from_slice(&body.as_bytes()[..at]))
                .to_vec();
            out.extend(s.push_bytes(bytes::Bytes::copy_from_slice(&body.as_bytes()[at..])));
            out.extend(s.finish());
            assert_eq!(
                String::from_utf8(out).unwrap(),
                "x [redacted] y",
                "cut at {at}"
            );
        }
    }

    #[test]
    fn streams_lose_secrets_cut_anywhere() {
        let key = "sk-stream-0123456789";
        let sc = Scrubber::new([Secret::new(key), Secret::new("sk-stream-0123456789-long")]);
        let body = format!("a {key} b sk-stream-0123456789-long c {key}");
        let want = sc.scrub(&body).into_owned();
        assert_eq!(want, "a [redacted] b [redacted] c [redacted]");
        // Every way of cutting the body in two, and byte by byte.
        for at in 0..=body.len() {
            let mut s = sc.stream();
            let mut out = s.push(&body.as_bytes()[..at]);
            out.extend(s.push(&body.as_bytes()[at..]));
            out.extend(s.finish());
            assert_eq!(String::from_utf8(out).unwrap(), want, "cut at {at}");
        }
        let mut s = sc.stream();
        let mut out = Vec::new();
        for b in body.as_bytes() {
            out.extend(s.push(std::slice::from_ref(b)));
            assert!(s.held() < sc.longest_form());
        }
        out.extend(s.finish());
        assert_eq!(String::from_utf8(out).unwrap(), want);
        // Text that cannot begin a secret is never held back (an SSE event goes out whole).
        let mut s = sc.stream();
        assert_eq!(s.push(b"data: {}\n\n"), b"data: {}\n\n");
        assert_eq!(s.held(), 0);
        assert_eq!(
            sc.scrub_bytes(b"x \xff sk-stream-0123456789"),
            &b"x \xff [redacted]"[..]
        );
    }

    #[test]
    fn short_secrets_are_not_encoded() {
        let sc = Scrubber::new([Secret::new("abc")]);
        // "abc" in hex is 616263: digits in a body must survive a short secret.
        assert_eq!(sc.scrub("616263 ABC"), "616263 [redacted]");
    }

    #[test]
    fn userinfo_is_found_and_hidden() {
        assert!(has_userinfo("ftp://admin:pw@host/x"));
        assert!(has_userinfo("http://admin:p w@host/a b"));
        assert!(!has_userinfo("http://host/v1?email=a@b"));
        assert_eq!(
            redact_userinfo("http://admin:pw@host:80/v1"),
            "http://[redacted]@host:80/v1"
        );
        assert_eq!(public_url("https://u:p@h:1/v1?token=x#f"), "https://h:1/v1");
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
