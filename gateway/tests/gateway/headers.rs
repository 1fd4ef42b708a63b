//! The response header allowlist (`thr_gateway::headers`): what is forwarded, what the
//! upstream's `Connection` names, scrubbed values.

use http::{HeaderMap, HeaderValue, header};
use thr_gateway::headers::{FORWARDED, NEVER, is_forwarded, response_headers};
use tower_health_routing::secret::{Scrubber, Secret, looks_secret};

#[test]
fn exact_names_are_neither_hop_by_hop_nor_credential_like() {
    // `is_forwarded` lets these through without the slower checks.
    for n in FORWARDED {
        assert!(!NEVER.contains(n), "{n} is hop-by-hop or a credential");
        assert!(!looks_secret(n), "{n} looks like a credential");
    }
}

#[test]
fn prefixed_names_still_get_the_credential_checks() {
    assert!(is_forwarded("content-type"));
    assert!(is_forwarded("openai-processing-ms"));
    assert!(is_forwarded("x-ratelimit-remaining-tokens"));
    assert!(!is_forwarded("openai-api-key"));
    assert!(!is_forwarded("anthropic-session-token"));
    assert!(!is_forwarded("x-served-by"));
    assert!(!is_forwarded("set-cookie"));
}

#[test]
fn a_header_the_connection_header_names_is_dropped() {
    let mut up = HeaderMap::new();
    up.insert(
        header::CONNECTION,
        HeaderValue::from_static("keep-alive, X-Request-Id"),
    );
    up.insert("x-request-id", HeaderValue::from_static("req-1"));
    up.insert("openai-processing-ms", HeaderValue::from_static("12"));
    let out = response_headers(&up, &Scrubber::new([]), true);
    assert!(out.get("x-request-id").is_none());
    assert_eq!(out.get("openai-processing-ms").unwrap(), "12");
    assert!(out.get(header::CONNECTION).is_none());
}

#[test]
fn a_secret_in_a_forwarded_value_is_scrubbed() {
    let secret = "sk-upstream-0123456789abcdef";
    let mut up = HeaderMap::new();
    up.insert(
        "x-request-id",
        HeaderValue::from_str(&format!("id-{secret}")).unwrap(),
    );
    let scrubber = Scrubber::new([Secret::new(secret)]);
    let out = response_headers(&up, &scrubber, false);
    let v = out.get("x-request-id").unwrap().to_str().unwrap();
    assert!(!v.contains(secret), "{v}");
}

#[test]
fn common_standard_headers_get_the_same_answer_as_by_name() {
    // `response_headers` decides these by identity; the answer is `is_forwarded`'s.
    let names = [
        header::DATE,
        header::SERVER,
        header::CONNECTION,
        header::TRANSFER_ENCODING,
        header::VARY,
        header::CONTENT_TYPE,
        header::CONTENT_LENGTH,
    ];
    for same_body in [true, false] {
        let mut up = HeaderMap::new();
        for n in &names {
            up.insert(n.clone(), HeaderValue::from_static("v"));
        }
        let out = response_headers(&up, &Scrubber::new([]), same_body);
        for n in &names {
            let expected = is_forwarded(n.as_str()) && (*n != header::CONTENT_LENGTH || same_body);
            assert_eq!(out.contains_key(n), expected, "{n}, same body {same_body}");
        }
    }
}
