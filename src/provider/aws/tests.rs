//! The Bedrock probe against a local server that recomputes the SigV4 signature from
//! what it received, with the test's own secret (an independent implementation of the
//! spec: <https://docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html>).

// The test servers record what they saw under a Mutex: test code, off any request path.
#![allow(clippy::disallowed_types)]

use std::sync::{Arc, Mutex};

use hmac::{Hmac, Mac};
use http::StatusCode;
use sha2::{Digest, Sha256};

use super::*;
use crate::provider::test_support::{Logs, json, probe, serve};

pub(crate) const KEY_ID: &str = "AKIDTESTEXAMPLE";
pub(crate) const SECRET: &str = "wJalrXUtnFEMI-test-secret-K7MDENG+bPxRfiCY";
pub(crate) const SESSION: &str = "FwoGZXIvYXdzEXAMPLE-session-token//+=";
pub(crate) const REGION: &str = "eu-west-1";

/// What the server saw of one request.
#[derive(Clone, Debug)]
pub(crate) struct Seen {
    pub(crate) path: String,
    pub(crate) body: serde_json::Value,
    pub(crate) verdict: Result<(), String>,
    pub(crate) security_token: Option<String>,
}

/// A Bedrock stand-in: 200 with a Converse-shaped answer when the signature it recomputes
/// with `secret` matches (and the scope names `region` and `bedrock`), else 403.
pub(crate) async fn bedrock_server(
    secret: &'static str,
    region: &'static str,
) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let addr = serve(Arc::new(move |req: Request<Bytes>| {
        let verdict = verify(&req, secret, region);
        log.lock().unwrap().push(Seen {
            path: req.uri().path().to_owned(),
            body: serde_json::from_slice(req.body()).unwrap_or_default(),
            verdict: verdict.clone(),
            security_token: req
                .headers()
                .get("x-amz-security-token")
                .map(|v| v.to_str().unwrap().to_owned()),
        });
        match verdict {
            Ok(()) => json(
                StatusCode::OK,
                serde_json::json!({
                    "output": {"message": {"role": "assistant", "content": [{"text": "Hi"}]}},
                    "stopReason": "max_tokens",
                    "usage": {"inputTokens": 4, "outputTokens": 1, "totalTokens": 5},
                    "metrics": {"latencyMs": 12}
                }),
            ),
            Err(why) => json(
                StatusCode::FORBIDDEN,
                serde_json::json!({ "message": format!("The request signature we calculated does not match the signature you provided: {why}") }),
            ),
        }
    }))
    .await;
    (format!("http://{addr}"), seen)
}

fn hmac(key: &[u8], data: &str) -> Vec<u8> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).unwrap();
    m.update(data.as_bytes());
    m.finalize().into_bytes().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SigV4's URI encoding: every byte but the unreserved ones as `%XX`.
fn uri_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Recomputes the request's signature; `Err` says what does not match.
fn verify(req: &Request<Bytes>, secret: &str, region: &str) -> Result<(), String> {
    let auth = req
        .headers()
        .get("authorization")
        .ok_or("no Authorization")?
        .to_str()
        .map_err(|e| e.to_string())?;
    let rest = auth
        .strip_prefix("AWS4-HMAC-SHA256 ")
        .ok_or("not AWS4-HMAC-SHA256")?;
    let mut credential = "";
    let mut signed = "";
    let mut signature = "";
    for part in rest.split(", ") {
        let (k, v) = part.split_once('=').ok_or("malformed Authorization")?;
        match k {
            "Credential" => credential = v,
            "SignedHeaders" => signed = v,
            "Signature" => signature = v,
            _ => return Err(format!("unknown Authorization part {k}")),
        }
    }
    let scope: Vec<&str> = credential.split('/').collect();
    let [key_id, date, scope_region, service, "aws4_request"] = scope[..] else {
        return Err(format!("bad credential scope {credential}"));
    };
    if key_id != KEY_ID || scope_region != region || service != "bedrock" {
        return Err(format!("scope {credential}"));
    }
    let amz_date = req
        .headers()
        .get("x-amz-date")
        .ok_or("no x-amz-date")?
        .to_str()
        .unwrap();
    if !amz_date.starts_with(date) {
        return Err("x-amz-date and scope disagree".into());
    }
    // Canonical request. Non-S3 services encode the (already encoded) path once more.
    let path: Vec<String> = req.uri().path().split('/').map(uri_encode).collect();
    let mut query: Vec<(String, String)> = req
        .uri()
        .query()
        .map(|q| {
            form_urlencoded::parse(q.as_bytes())
                .map(|(k, v)| (uri_encode(&k), uri_encode(&v)))
                .collect()
        })
        .unwrap_or_default();
    query.sort();
    let query: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let mut canonical_headers = String::new();
    for name in signed.split(';') {
        let values: Vec<String> = req
            .headers()
            .get_all(name)
            .iter()
            .map(|v| {
                v.to_str()
                    .unwrap()
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        if values.is_empty() {
            return Err(format!("signed header {name} missing"));
        }
        canonical_headers.push_str(&format!("{name}:{}\n", values.join(",")));
    }
    for must in ["host", "x-amz-date"] {
        if !signed.split(';').any(|h| h == must) {
            return Err(format!("{must} is not signed"));
        }
    }
    if req.headers().contains_key("x-amz-security-token")
        && !signed.split(';').any(|h| h == "x-amz-security-token")
    {
        return Err("the session token is not signed".into());
    }
    let canonical = format!(
        "{}\n{}\n{}\n{canonical_headers}\n{signed}\n{}",
        req.method(),
        path.join("/"),
        query.join("&"),
        hex(&Sha256::digest(req.body()))
    );
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{date}/{region}/bedrock/aws4_request\n{}",
        hex(&Sha256::digest(canonical.as_bytes()))
    );
    let k_date = hmac(format!("AWS4{secret}").as_bytes(), date);
    let k_region = hmac(&k_date, region);
    let k_service = hmac(&k_region, "bedrock");
    let k_signing = hmac(&k_service, "aws4_request");
    let expected = hex(&hmac(&k_signing, &to_sign));
    if expected == signature {
        Ok(())
    } else {
        Err("signature mismatch".into())
    }
}

pub(crate) fn deployment(model: &str, base: &str, secret: &str, token: Option<&str>) -> Deployment {
    let mut b = Deployment::builder("claude", model)
        .api_base(base)
        .param("aws_access_key_id", KEY_ID.into())
        .param("aws_secret_access_key", secret.into())
        .param("aws_region_name", REGION.into());
    if let Some(t) = token {
        b = b.param("aws_session_token", t.into());
    }
    b.build()
}

pub(crate) const MODEL: &str = "bedrock/anthropic.claude-3-haiku-20240307-v1:0";

#[tokio::test]
async fn signed_converse_probe_is_accepted_and_shaped_as_converse() {
    let (base, seen) = bedrock_server(SECRET, REGION).await;
    let d = deployment(MODEL, &base, SECRET, None);
    let req =
        bedrock_probe_request(&d, Mode::Chat, "test from litellm", &AwsEnv::default()).unwrap();
    let out = probe(req).await;
    assert!(out.healthy, "{out:?}");
    let seen = seen.lock().unwrap();
    let s = &seen[0];
    assert_eq!(s.verdict, Ok(()));
    assert_eq!(
        s.path,
        "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse"
    );
    assert_eq!(
        s.body,
        serde_json::json!({
            "messages": [{"role": "user", "content": [{"text": "test from litellm"}]}],
            "inferenceConfig": {"maxTokens": 1}
        })
    );
    assert_eq!(s.security_token, None);
}

#[tokio::test]
async fn wrong_secret_is_rejected_and_the_probe_is_unhealthy() {
    let (base, seen) = bedrock_server(SECRET, REGION).await;
    let d = deployment(MODEL, &base, "not-the-secret", None);
    let req = bedrock_probe_request(&d, Mode::Chat, "ping", &AwsEnv::default()).unwrap();
    let out = probe(req).await;
    assert!(!out.healthy);
    assert_eq!(out.status, Some(403));
    assert_eq!(
        seen.lock().unwrap()[0].verdict,
        Err("signature mismatch".into())
    );
}

#[tokio::test]
async fn session_token_is_sent_and_signed() {
    let (base, seen) = bedrock_server(SECRET, REGION).await;
    let d = deployment(MODEL, &base, SECRET, Some(SESSION));
    let req = bedrock_probe_request(&d, Mode::Chat, "ping", &AwsEnv::default()).unwrap();
    assert!(req.headers()["x-amz-security-token"].is_sensitive());
    assert!(req.headers()["authorization"].is_sensitive());
    assert!(probe(req).await.healthy);
    let s = seen.lock().unwrap()[0].clone();
    assert_eq!(s.verdict, Ok(()));
    assert_eq!(s.security_token.as_deref(), Some(SESSION));
}

#[tokio::test]
async fn credentials_and_region_from_the_environment() {
    let (base, seen) = bedrock_server(SECRET, "ap-south-1").await;
    let env = AwsEnv::from_lookup(|k| {
        match k {
            "AWS_ACCESS_KEY_ID" => Some(KEY_ID),
            "AWS_SECRET_ACCESS_KEY" => Some(SECRET),
            "AWS_SESSION_TOKEN" => Some(SESSION),
            "AWS_DEFAULT_REGION" => Some("ap-south-1"),
            _ => None,
        }
        .map(str::to_owned)
    });
    let d = Deployment::builder("t", "amazon.titan-embed-text-v1")
        .api_base(&base)
        .build();
    let req = bedrock_probe_request(&d, Mode::Embedding, "test from litellm", &env).unwrap();
    assert!(probe(req).await.healthy);
    let s = seen.lock().unwrap()[0].clone();
    assert_eq!(s.verdict, Ok(()));
    assert_eq!(s.path, "/model/amazon.titan-embed-text-v1/invoke");
    assert_eq!(
        s.body,
        serde_json::json!({"inputText": "test from litellm"})
    );
    assert_eq!(s.security_token.as_deref(), Some(SESSION));
    // Params win over the environment: a wrong param secret fails even with a good env.
    let d = Deployment::builder("t", "amazon.titan-embed-text-v1")
        .api_base(&base)
        .param("aws_access_key_id", KEY_ID.into())
        .param("aws_secret_access_key", "wrong".into())
        .build();
    let req = bedrock_probe_request(&d, Mode::Embedding, "x", &env).unwrap();
    assert_eq!(probe(req).await.status, Some(403));
}

#[test]
fn cohere_embedding_body_and_profile_ids() {
    let d = deployment(
        "bedrock/us.cohere.embed-v4:0",
        "http://127.0.0.1:9",
        SECRET,
        None,
    );
    let req = bedrock_probe_request(&d, Mode::Embedding, "hi", &AwsEnv::default()).unwrap();
    assert_eq!(req.uri().path(), "/model/us.cohere.embed-v4%3A0/invoke");
    let body: serde_json::Value = serde_json::from_slice(req.body()).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"texts": ["hi"], "input_type": "search_document"})
    );
    let d = deployment(
        "bedrock/amazon.nova-2-multimodal-embeddings-v1:0",
        "http://h",
        SECRET,
        None,
    );
    let e = bedrock_probe_request(&d, Mode::Embedding, "hi", &AwsEnv::default()).unwrap_err();
    assert_eq!(e.field, "litellm_params.model");
}

#[test]
fn region_rule() {
    let env = |pairs: &'static [(&'static str, &'static str)]| {
        AwsEnv::from_lookup(move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_owned())
        })
    };
    let dep = |model: &str, region: Option<&str>| {
        let mut b = Deployment::builder("r", model);
        if let Some(r) = region {
            b = b.param("aws_region_name", r.into());
        }
        b.build()
    };
    let none = AwsEnv::default();
    let m = "bedrock/anthropic.claude-v2";
    assert_eq!(
        bedrock_region(&dep(m, None), &none).unwrap(),
        DEFAULT_REGION
    );
    assert_eq!(
        bedrock_region(
            &dep("bedrock/eu-central-1/anthropic.claude-v2", None),
            &none
        )
        .unwrap(),
        "eu-central-1"
    );
    // The param wins over the model's region segment.
    assert_eq!(
        bedrock_region(
            &dep(
                "bedrock/eu-central-1/anthropic.claude-v2",
                Some("us-east-2")
            ),
            &none
        )
        .unwrap(),
        "us-east-2"
    );
    assert_eq!(
        bedrock_region(
            &dep(
                "bedrock/llama/arn:aws:bedrock:ca-central-1:123456789012:imported-model/x",
                None
            ),
            &none
        )
        .unwrap(),
        "ca-central-1"
    );
    let e = env(&[
        ("AWS_REGION_NAME", "sa-east-1"),
        ("AWS_REGION", "us-east-1"),
    ]);
    assert_eq!(bedrock_region(&dep(m, None), &e).unwrap(), "sa-east-1");
    let e = env(&[
        ("AWS_REGION", "us-east-1"),
        ("AWS_DEFAULT_REGION", "eu-north-1"),
    ]);
    assert_eq!(bedrock_region(&dep(m, None), &e).unwrap(), "us-east-1");
    let bad = bedrock_region(&dep(m, Some("evil.com/x")), &none).unwrap_err();
    assert_eq!(bad.field, "litellm_params.aws_region_name");
}

#[test]
fn endpoints_and_model_ids() {
    let keys = |b: crate::deployment::DeploymentBuilder| {
        b.param("aws_access_key_id", KEY_ID.into())
            .param("aws_secret_access_key", SECRET.into())
    };
    let none = AwsEnv::default();
    let url = |d: &Deployment| {
        bedrock_probe_request(d, Mode::Chat, "p", &none).map(|r| r.uri().to_string())
    };
    let d = keys(Deployment::builder(
        "r",
        "bedrock/converse/us-east-1/us.anthropic.claude-3-5-sonnet-20240620-v1:0",
    ))
    .build();
    let expect = "https://bedrock-runtime.us-east-1.amazonaws.com/model/us.anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse";
    assert_eq!(
        url(&d).as_deref().map_err(|e| e.why.clone()),
        if cfg!(feature = "rustls") {
            Ok(expect)
        } else {
            Err("`https://bedrock-runtime.us-east-1.amazonaws.com` is https, which needs the `rustls` feature".into())
        }
    );
    let d = keys(Deployment::builder("r", "meta.llama3-8b-instruct-v1:0"))
        .param(
            "aws_bedrock_runtime_endpoint",
            "http://vpce.local:8080/".into(),
        )
        .build();
    assert_eq!(
        url(&d).unwrap(),
        "http://vpce.local:8080/model/meta.llama3-8b-instruct-v1%3A0/converse"
    );
    // api_base wins over aws_bedrock_runtime_endpoint (LiteLLM's order).
    let d = keys(Deployment::builder(
        "r",
        "bedrock/invoke/anthropic.claude-v2",
    ))
    .api_base("http://gw/bedrock")
    .param("aws_bedrock_runtime_endpoint", "http://vpce.local".into())
    .build();
    assert_eq!(
        url(&d).unwrap(),
        "http://gw/bedrock/model/anthropic.claude-v2/converse"
    );
    // An ARN is one path segment.
    let d = keys(Deployment::builder(
        "r",
        "bedrock/llama/arn:aws:bedrock:us-east-1:123456789012:imported-model/abc",
    ))
    .api_base("http://gw")
    .build();
    assert_eq!(
        url(&d).unwrap(),
        "http://gw/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Aimported-model%2Fabc/converse"
    );
    // Modes Bedrock's native probe does not offer.
    let d = keys(Deployment::builder("r", MODEL))
        .api_base("http://gw")
        .build();
    let e = bedrock_probe_request(&d, Mode::ImageGeneration, "p", &none).unwrap_err();
    assert_eq!(e.field, "model_info.mode");
    // health_check_max_tokens is honoured.
    let mut b = keys(Deployment::builder("r", MODEL)).api_base("http://gw");
    b.info_mut().health_check_max_tokens = Some(5);
    let req = bedrock_probe_request(&b.build(), Mode::Chat, "p", &none).unwrap();
    let body: serde_json::Value = serde_json::from_slice(req.body()).unwrap();
    assert_eq!(body["inferenceConfig"]["maxTokens"], 5);
}

#[test]
fn bare_bedrock_ids() {
    for m in [
        "amazon.titan-embed-text-v1",
        "anthropic.claude-3-haiku-20240307-v1:0",
        "anthropic.claude-v2",
        "meta.llama3-8b-instruct-v1:0",
        "us.anthropic.claude-3-5-sonnet-20240620-v1:0",
        "eu.amazon.nova-pro-v1:0",
        "global.cohere.embed-v4:0",
        "us-gov.anthropic.claude-3-haiku-20240307-v1:0",
        "cohere.embed-english-v3",
        "mistral.mistral-large-2407-v1:0",
        "twelvelabs.marengo-embed-2-7-v1:0",
    ] {
        assert!(is_bedrock_model(m), "{m}");
    }
    for m in [
        "gpt-4o",
        "claude-3-5-sonnet",
        "openai/gpt-4o",
        "bedrock/anthropic.claude-v2",
        "us.gpt",
        "meta.",
        "gemini-1.5-pro",
        "text-embedding-3-small",
    ] {
        assert!(!is_bedrock_model(m), "{m}");
    }
}

#[test]
fn credential_errors_name_the_field() {
    let none = AwsEnv::default();
    let d = Deployment::builder("r", MODEL).build();
    let e = bedrock_probe_request(&d, Mode::Chat, "p", &none).unwrap_err();
    assert_eq!(e.field, "litellm_params.aws_access_key_id");
    assert!(e.why.contains("no AWS credentials"), "{}", e.why);
    let d = Deployment::builder("r", MODEL)
        .param("aws_access_key_id", KEY_ID.into())
        .build();
    let e = bedrock_probe_request(&d, Mode::Chat, "p", &none).unwrap_err();
    assert_eq!(e.field, "litellm_params.aws_secret_access_key");
    let d = Deployment::builder("r", MODEL)
        .param("aws_role_name", "arn:aws:iam::1:role/x".into())
        .build();
    let e = bedrock_probe_request(&d, Mode::Chat, "p", &none).unwrap_err();
    assert_eq!(e.field, "litellm_params.aws_role_name");
    // A session token an HTTP header cannot carry is an error, not a panic in the signer.
    let d = Deployment::builder("r", MODEL)
        .api_base("http://gw")
        .param("aws_access_key_id", KEY_ID.into())
        .param("aws_secret_access_key", SECRET.into())
        .param("aws_session_token", "bad\ntoken".into())
        .build();
    let e = bedrock_probe_request(&d, Mode::Chat, "p", &none).unwrap_err();
    assert_eq!(e.field, "litellm_params.aws_session_token");
    assert!(!e.why.contains("bad"));
}

#[tokio::test]
async fn bedrock_api_key_is_a_bearer_token() {
    let d = Deployment::builder("r", MODEL)
        .api_base("http://gw")
        .api_key("bedrock-api-key-123")
        .build();
    let req = bedrock_probe_request(&d, Mode::Chat, "p", &AwsEnv::default()).unwrap();
    let auth = &req.headers()["authorization"];
    assert!(auth.is_sensitive());
    assert_eq!(auth.to_str().unwrap(), "Bearer bedrock-api-key-123");
    assert!(!req.headers().contains_key("x-amz-date"));
}

/// No secret in errors, Debug or TRACE logs. The control half shows the capture works and
/// that `aws-sigv4` does trace the session token when not silenced.
#[tokio::test]
async fn no_secret_in_logs_errors_or_debug() {
    let logs = Logs::capture();
    let (base, _) = bedrock_server(SECRET, REGION).await;
    let d = deployment(MODEL, &base, SECRET, Some(SESSION));
    let req = bedrock_probe_request(&d, Mode::Chat, "ping", &AwsEnv::default()).unwrap();
    let dbg = format!("{req:?} {d:?}");
    let out = probe(req).await;
    assert!(out.healthy);
    let wrong = deployment(MODEL, &base, "wrong-secret-value", Some(SESSION));
    let req = bedrock_probe_request(&wrong, Mode::Chat, "ping", &AwsEnv::default()).unwrap();
    let out = probe(req).await;
    let env = AwsEnv::from_lookup(|k| match k {
        "AWS_SECRET_ACCESS_KEY" => Some(SECRET.to_owned()),
        "AWS_SESSION_TOKEN" => Some(SESSION.to_owned()),
        _ => None,
    });
    let bad = Deployment::builder("r", MODEL)
        .param("aws_secret_access_key", SECRET.into())
        .param("aws_session_token", SESSION.into())
        .build();
    let err = bedrock_probe_request(&bad, Mode::Chat, "p", &env).unwrap_err();
    let text = format!("{dbg} {out:?} {err:?} {err} {env:?} {}", logs.text());
    for secret in [SECRET, SESSION, "wrong-secret-value"] {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }

    // Control: signing without the silencer does trace the token, and the capture sees it.
    let logs = Logs::capture();
    let identity: Identity =
        Credentials::new(KEY_ID, SECRET, Some(SESSION.into()), None, "t").into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(REGION)
        .name("bedrock")
        .time(SystemTime::now())
        .settings(SigningSettings::default())
        .build()
        .unwrap()
        .into();
    let signable = SignableRequest::new(
        "POST",
        "http://h/model/x/converse",
        std::iter::empty(),
        SignableBody::Bytes(b"{}"),
    )
    .unwrap();
    sign(signable, &params).unwrap();
    assert!(logs.text().contains(SESSION), "the control saw no trace");
}
