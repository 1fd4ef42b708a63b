//! The `usage` scanner's totals for objects of every shape: the hand-read flat objects
//! agree with serde's reading (the reference below), and whatever the hand reader leaves
//! to serde gets serde's answer.

use thr_gateway::usage::UsageScanner;

/// What serde makes of a `usage` object (the scanner's rule: `total_tokens`, else
/// `prompt + completion`, else `input + output`; no count or zero is none).
fn reference(object: &str) -> Option<u64> {
    #[derive(serde::Deserialize)]
    struct Usage {
        total_tokens: Option<u64>,
        prompt_tokens: Option<u64>,
        completion_tokens: Option<u64>,
        input_tokens: Option<u64>,
        output_tokens: Option<u64>,
    }
    let mut de = serde_json::Deserializer::from_str(object);
    let u = <Usage as serde::Deserialize>::deserialize(&mut de).ok()?;
    let sum = |a: Option<u64>, b: Option<u64>| match (a, b) {
        (None, None) => None,
        (a, b) => Some(a.unwrap_or(0).saturating_add(b.unwrap_or(0))),
    };
    u.total_tokens
        .or_else(|| sum(u.prompt_tokens, u.completion_tokens))
        .or_else(|| sum(u.input_tokens, u.output_tokens))
        .filter(|&t| t > 0)
}

#[test]
fn flat_and_other_usage_objects_total_as_serde_reads_them() {
    let objects = [
        r#"{"prompt_tokens":5,"completion_tokens":1,"total_tokens":6}"#,
        r#"{"prompt_tokens":5,"completion_tokens":3}"#,
        r#"{ "input_tokens" : 7 , "output_tokens" : 2 }"#,
        "{\n\t\"total_tokens\":\r\n 42\n}",
        r#"{}"#,
        r#"{ }"#,
        r#"{"total_tokens":0}"#,
        r#"{"total_tokens":null,"prompt_tokens":4}"#,
        r#"{"total_tokens":6,"total_tokens":7}"#,
        r#"{"total_tokens":null,"total_tokens":7}"#,
        r#"{"total_tokens":06}"#,
        r#"{"total_tokens":0,"prompt_tokens":1}"#,
        r#"{"total_tokens":6.0}"#,
        r#"{"total_tokens":6e1}"#,
        r#"{"total_tokens":-6}"#,
        r#"{"total_tokens":"6"}"#,
        r#"{"total_tokens":18446744073709551615}"#,
        r#"{"total_tokens":18446744073709551616}"#,
        r#"{"prompt_tokens":18446744073709551615,"completion_tokens":2}"#,
        r#"{"total_tokens":6,}"#,
        r#"{"total_tokens" 6}"#,
        r#"{"total_tokens":6 "x":1}"#,
        r#"{"tot\u0061l_tokens":9}"#,
        r#"{"other":1,"total_tokens":3}"#,
        r#"{"other":null,"total_tokens":3}"#,
        r#"{"other":true,"total_tokens":3}"#,
        r#"{"other":"x","total_tokens":3}"#,
        r#"{"prompt_tokens":9,"prompt_tokens_details":{"cached_tokens":0},"completion_tokens":1}"#,
        r#"{"total_tokens":nul}"#,
        r#"{"total_tokens":nullx}"#,
        r#"{"é":1,"total_tokens":3}"#,
        r#"{"total_tokens":3}  trailing"#,
    ];
    for object in objects {
        let mut s = UsageScanner::new();
        let got = s.push(format!(r#"{{"id":"x","usage":{object}}}"#).as_bytes());
        // A cut-short object is serde's EOF: the reference reads the whole of it.
        let want = reference(object);
        assert_eq!(got, want, "{object}");
    }
}

#[test]
fn a_flat_object_cut_by_the_frame_is_read_when_it_ends() {
    let body = r#"{"id":"x","usage":{"prompt_tokens":5,"completion_tokens":1,"total_tokens":6}}"#;
    for cut in 1..body.len() {
        let mut s = UsageScanner::new();
        let first = s.push(&body.as_bytes()[..cut]);
        let second = s.push(&body.as_bytes()[cut..]);
        assert_eq!(first.or(second), Some(6), "cut at {cut}");
    }
}
