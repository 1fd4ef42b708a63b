//! What scrubbing an upstream body costs: a 4 KiB JSON error body, 20 configured secrets,
//! one of them quoted in the body (the common case: an upstream echoing the caller's key).
//!
//! `baseline` is the scrubber before 0.2 (exact forms only, one `contains` + `replace`
//! per secret), kept here to compare against.
//!
//! Run with: `cargo bench --bench scrub -- --quick`
#![allow(missing_docs)] // criterion_group! generates undocumented items

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use tower_health_routing::secret::{Scrubber, Secret};

fn secrets() -> Vec<Secret> {
    (0..20)
        .map(|i| Secret::new(format!("sk-proj-{i:02}-a1B2c3D4e5F6g7H8i9J0kLmNoPqRsT")))
        .collect()
}

fn body(with_secret: bool) -> String {
    let mut s = String::from(r#"{"error":{"message":""#);
    while s.len() < 4000 {
        s.push_str("The request could not be completed because the upstream said no. ");
    }
    if with_secret {
        s.push_str("Incorrect API key provided: sk-proj-07-a1B2c3D4e5F6g7H8i9J0kLmNoPqRsT.");
    }
    s.push_str(r#"","type":"invalid_request_error"}}"#);
    s
}

/// The old algorithm: longest first, one scan per secret, exact matches only.
fn baseline<'a>(sorted: &[Secret], text: &'a str) -> std::borrow::Cow<'a, str> {
    let mut out = std::borrow::Cow::Borrowed(text);
    for s in sorted {
        if out.contains(s.expose()) {
            out = std::borrow::Cow::Owned(out.replace(s.expose(), "[redacted]"));
        }
    }
    out
}

fn bench(c: &mut Criterion) {
    let mut sorted = secrets();
    sorted.sort_by_key(|s| std::cmp::Reverse(s.expose().len()));
    let sc = Scrubber::new(secrets());
    let dirty = body(true);
    let clean = body(false);
    c.bench_function("baseline: scrub 4 KiB, 20 secrets, one present", |b| {
        b.iter(|| baseline(&sorted, black_box(&dirty)).len())
    });
    c.bench_function("baseline: scrub 4 KiB, 20 secrets, none present", |b| {
        b.iter(|| baseline(&sorted, black_box(&clean)).len())
    });
    assert!(!sc.scrub(&dirty).contains("sk-proj-07"));
    c.bench_function("scrub 4 KiB, 20 secrets, one present", |b| {
        b.iter(|| sc.scrub(black_box(&dirty)).len())
    });
    c.bench_function("scrub 4 KiB, 20 secrets, none present", |b| {
        b.iter(|| sc.scrub(black_box(&clean)).len())
    });
    c.bench_function("Scrubber::new, 20 secrets", |b| {
        b.iter(|| Scrubber::new(black_box(secrets())).len())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
