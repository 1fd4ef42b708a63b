//! The Vertex AI probe against a local OAuth token endpoint (which verifies the JWT
//! assertion with the test key's public half) and a local Vertex AI stand-in that checks
//! the bearer token.
//!
//! `throwaway_test_key.pem` beside this file is a THROWAWAY RSA key made for these tests
//! only (`openssl genpkey -algorithm RSA`); it guards nothing. `throwaway_test_key.pub.der`
//! is its public half (PKCS#1 DER).

// The test servers record what they saw under a Mutex: test code, off any request path.
#![allow(clippy::disallowed_types)]

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicUsize, Ordering::SeqCst},
};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use http::{Response, StatusCode};
use http_body_util::Full;

use super::*;
use crate::provider::test_support::{Logs, json, probe, serve};

pub(crate) const PRIVATE_KEY: &str = include_str!("throwaway_test_key.pem");
const PUBLIC_KEY: &[u8] = include_bytes!("throwaway_test_key.pub.der");
const EMAIL: &str = "prober@test-project.iam.gserviceaccount.com";
const GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// A token endpoint: checks the grant and the assertion's signature and claims, then
/// answers `tok-{n}` with the next `expires_in` of the script (the last one repeats).
pub(crate) struct TokenServer {
    pub(crate) url: String,
    pub(crate) calls: Arc<AtomicUsize>,
}

pub(crate) async fn token_server(expires: &'static [u64], fail: bool) -> TokenServer {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let url_cell: Arc<Mutex<String>> = Arc::default();
    let aud = url_cell.clone();
    let addr = serve(Arc::new(move |req: Request<Bytes>| {
        let n = counter.fetch_add(1, SeqCst);
        if fail {
            return json(
                StatusCode::BAD_REQUEST,
                serde_json::json!({"error": "invalid_grant"}),
            );
        }
        match check_grant(&req, &aud.lock().unwrap()) {
            Ok(()) => json(
                StatusCode::OK,
                serde_json::json!({
                    "access_token": format!("tok-{}", n + 1),
                    "expires_in": expires[n.min(expires.len() - 1)],
                    "token_type": "Bearer"
                }),
            ),
            Err(why) => json(
                StatusCode::UNAUTHORIZED,
                serde_json::json!({ "error": why }),
            ),
        }
    }))
    .await;
    let url = format!("http://{addr}/token");
    *url_cell.lock().unwrap() = url.clone();
    TokenServer { url, calls }
}

fn check_grant(req: &Request<Bytes>, token_uri: &str) -> Result<(), String> {
    if req.uri().path() != "/token" || req.method() != Method::POST {
        return Err("wrong endpoint".into());
    }
    let form: HashMap<String, String> = form_urlencoded::parse(req.body()).into_owned().collect();
    if form.get("grant_type").map(String::as_str) != Some(GRANT) {
        return Err("wrong grant_type".into());
    }
    let jwt = form.get("assertion").ok_or("no assertion")?;
    let (signed, sig) = jwt.rsplit_once('.').ok_or("malformed JWT")?;
    let sig = URL_SAFE_NO_PAD
        .decode(sig.trim_end_matches('='))
        .map_err(|e| e.to_string())?;
    ring::signature::UnparsedPublicKey::new(
        &ring::signature::RSA_PKCS1_2048_8192_SHA256,
        PUBLIC_KEY,
    )
    .verify(signed.as_bytes(), &sig)
    .map_err(|_| "bad JWT signature".to_owned())?;
    let claims = signed.split('.').nth(1).ok_or("no claims")?;
    let claims: serde_json::Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(claims.trim_end_matches('='))
            .map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    if claims["iss"] != EMAIL || claims["aud"] != token_uri || claims["scope"] != SCOPE {
        return Err(format!("wrong claims {claims}"));
    }
    Ok(())
}

#[derive(Clone, Debug)]
pub(crate) struct Seen {
    pub(crate) path: String,
    pub(crate) body: serde_json::Value,
    pub(crate) bearer: String,
}

/// A Vertex AI stand-in: 200 with a `generateContent`-shaped answer when the bearer token
/// is one the token endpoint issued (`tok-…`, or exactly `want` if given), else 401.
pub(crate) async fn vertex_server(want: Option<&'static str>) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let addr = serve(Arc::new(move |req: Request<Bytes>| -> Response<Full<Bytes>> {
        let bearer = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default()
            .to_owned();
        log.lock().unwrap().push(Seen {
            path: req.uri().path().to_owned(),
            body: serde_json::from_slice(req.body()).unwrap_or_default(),
            bearer: bearer.clone(),
        });
        let ok = match want {
            Some(w) => bearer == w,
            None => bearer.starts_with("tok-"),
        };
        if ok {
            json(
                StatusCode::OK,
                serde_json::json!({
                    "candidates": [{"content": {"role": "model", "parts": [{"text": "Hi"}]}, "finishReason": "MAX_TOKENS"}],
                    "usageMetadata": {"promptTokenCount": 4, "candidatesTokenCount": 1, "totalTokenCount": 5}
                }),
            )
        } else {
            json(
                StatusCode::UNAUTHORIZED,
                serde_json::json!({"error": {"code": 401, "message": "Request had invalid authentication credentials.", "status": "UNAUTHENTICATED"}}),
            )
        }
    }))
    .await;
    (format!("http://{addr}"), seen)
}

pub(crate) fn key_json(token_uri: &str, project: Option<&str>) -> String {
    let mut v = serde_json::json!({
        "type": "service_account",
        "private_key_id": "0123456789abcdef",
        "private_key": PRIVATE_KEY,
        "client_email": EMAIL,
        "client_id": "1234567890",
        "token_uri": token_uri,
    });
    if let Some(p) = project {
        v["project_id"] = p.into();
    }
    v.to_string()
}

pub(crate) fn deployment(model: &str, base: &str, creds: &str) -> Deployment {
    Deployment::builder("gemini", model)
        .api_base(base)
        .param("vertex_credentials", creds.into())
        .param("vertex_project", "my-proj".into())
        .build()
}

pub(crate) const GEN_PATH: &str = "/v1/projects/my-proj/locations/us-central1/publishers/google/models/gemini-1.5-pro:generateContent";

#[tokio::test]
async fn one_token_serves_every_probe_of_a_key() {
    let tokens = token_server(&[3600], false).await;
    let (base, seen) = vertex_server(None).await;
    let creds = key_json(&tokens.url, None);
    let auth = VertexAuth::new();
    let env = GoogleEnv::default();
    let a = deployment("vertex_ai/gemini-1.5-pro", &base, &creds);
    let b = deployment("vertex_ai/gemini-2.0-flash", &base, &creds);
    for d in [&a, &b, &a] {
        let req = auth
            .vertex_probe_request(d, Mode::Chat, "test from litellm", &env)
            .await
            .unwrap();
        assert!(req.headers()["authorization"].is_sensitive());
        let out = probe(req).await;
        assert!(out.healthy, "{out:?}");
    }
    assert_eq!(
        tokens.calls.load(SeqCst),
        1,
        "one token exchange for three probes"
    );
    let seen = seen.lock().unwrap();
    assert!(seen.iter().all(|s| s.bearer == "tok-1"));
    assert_eq!(seen[0].path, GEN_PATH);
    assert_eq!(
        seen[1].path,
        "/v1/projects/my-proj/locations/us-central1/publishers/google/models/gemini-2.0-flash:generateContent"
    );
    assert_eq!(
        seen[0].body,
        serde_json::json!({
            "contents": [{"role": "user", "parts": [{"text": "test from litellm"}]}],
            "generationConfig": {"maxOutputTokens": 1}
        })
    );
}

/// `gcp_auth` treats a token as expired 20 s before its `expires_in` ends (on the wall
/// clock, which paused time cannot move), so a token that lives exactly 20 s is due at
/// once: the next probe exchanges again, and the 3600 s token after it is kept.
#[tokio::test]
async fn an_expired_token_is_refreshed_then_cached() {
    let tokens = token_server(&[20, 3600], false).await;
    let (base, seen) = vertex_server(None).await;
    let creds = key_json(&tokens.url, Some("my-proj"));
    let auth = VertexAuth::new();
    let d = deployment("vertex_ai/gemini-1.5-pro", &base, &creds);
    for _ in 0..4 {
        let req = auth
            .vertex_probe_request(&d, Mode::Chat, "p", &GoogleEnv::default())
            .await
            .unwrap();
        assert!(probe(req).await.healthy);
    }
    assert_eq!(tokens.calls.load(SeqCst), 2);
    let bearers: Vec<String> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|s| s.bearer.clone())
        .collect();
    assert_eq!(bearers, ["tok-1", "tok-2", "tok-2", "tok-2"]);
}

#[tokio::test]
async fn a_token_the_upstream_rejects_makes_the_probe_unhealthy() {
    let tokens = token_server(&[3600], false).await;
    let (base, _) = vertex_server(Some("tok-from-another-account")).await;
    let d = deployment(
        "vertex_ai/gemini-1.5-pro",
        &base,
        &key_json(&tokens.url, None),
    );
    let req = VertexAuth::new()
        .vertex_probe_request(&d, Mode::Chat, "p", &GoogleEnv::default())
        .await
        .unwrap();
    let out = probe(req).await;
    assert!(!out.healthy);
    assert_eq!(out.status, Some(401));
}

#[tokio::test]
async fn credentials_from_a_file_and_from_google_application_credentials() {
    let tokens = token_server(&[3600], false).await;
    let (base, seen) = vertex_server(None).await;
    let path = std::env::temp_dir().join(format!("thr-vertex-key-{}.json", std::process::id()));
    std::fs::write(&path, key_json(&tokens.url, Some("key-proj"))).unwrap();
    let auth = VertexAuth::new();
    // vertex_credentials as a path.
    let d = Deployment::builder("g", "vertex_ai/text-embedding-004")
        .api_base(&base)
        .param("vertex_credentials", path.to_str().unwrap().into())
        .param("vertex_location", "europe-west4".into())
        .build();
    let req = auth
        .vertex_probe_request(
            &d,
            Mode::Embedding,
            "test from litellm",
            &GoogleEnv::default(),
        )
        .await
        .unwrap();
    assert!(probe(req).await.healthy);
    // GOOGLE_APPLICATION_CREDENTIALS, project from the key.
    let env = GoogleEnv::from_lookup(|k| {
        (k == "GOOGLE_APPLICATION_CREDENTIALS").then(|| path.to_str().unwrap().to_owned())
    });
    let d = Deployment::builder("g", "vertex_ai/gemini-1.5-pro")
        .api_base(&base)
        .build();
    let req = auth
        .vertex_probe_request(&d, Mode::Chat, "p", &env)
        .await
        .unwrap();
    assert!(probe(req).await.healthy);
    std::fs::remove_file(&path).unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!(
        seen[0].path,
        "/v1/projects/key-proj/locations/europe-west4/publishers/google/models/text-embedding-004:predict"
    );
    assert_eq!(
        seen[0].body,
        serde_json::json!({"instances": [{"content": "test from litellm"}]})
    );
    assert_eq!(
        seen[1].path,
        "/v1/projects/key-proj/locations/us-central1/publishers/google/models/gemini-1.5-pro:generateContent"
    );
}

#[test]
fn urls_locations_and_api_base_forms() {
    let creds = key_json("http://127.0.0.1:9/token", None);
    let target = |model: &str, base: Option<&str>, loc: Option<&str>| {
        let mut b = Deployment::builder("g", model)
            .param("vertex_credentials", creds.as_str().into())
            .param("vertex_project", "p1".into());
        if let Some(base) = base {
            b = b.api_base(base);
        }
        if let Some(l) = loc {
            b = b.param("vertex_location", l.into());
        }
        VertexAuth::check(&b.build(), Mode::Chat, "x", &GoogleEnv::default()).map(|t| t.url)
    };
    let m = "vertex_ai/gemini-2.5-flash";
    let tail =
        "/v1/projects/p1/locations/{L}/publishers/google/models/gemini-2.5-flash:generateContent";
    if cfg!(feature = "rustls") {
        assert_eq!(
            target(m, None, None).unwrap(),
            format!(
                "https://us-central1-aiplatform.googleapis.com{}",
                tail.replace("{L}", "us-central1")
            )
        );
        assert_eq!(
            target(m, None, Some("global")).unwrap(),
            format!(
                "https://aiplatform.googleapis.com{}",
                tail.replace("{L}", "global")
            )
        );
        assert_eq!(
            target(m, None, Some("eu")).unwrap(),
            format!(
                "https://aiplatform.eu.rep.googleapis.com{}",
                tail.replace("{L}", "eu")
            )
        );
    }
    let l = tail.replace("{L}", "us-central1");
    assert_eq!(
        target(m, Some("http://proxy:8080/"), None).unwrap(),
        format!("http://proxy:8080{l}")
    );
    assert_eq!(
        target(m, Some("http://proxy/v1beta1"), None).unwrap(),
        format!("http://proxy/v1beta1{}", &l["/v1".len()..])
    );
    assert_eq!(
        target(m, Some("http://proxy/custom/models/gemini-x"), None).unwrap(),
        "http://proxy/custom/models/gemini-x:generateContent"
    );
    let e = target(m, None, Some("evil.com/")).unwrap_err();
    assert_eq!(e.field, "litellm_params.vertex_location");
    let e = target(
        "vertex_ai/claude-3-5-sonnet@20240620",
        Some("http://p"),
        None,
    )
    .unwrap_err();
    assert_eq!(e.field, "litellm_params.model");
}

#[test]
fn config_errors_name_the_field() {
    let none = GoogleEnv::default();
    let check = |d: Deployment, mode: Mode| VertexAuth::check(&d, mode, "x", &none).unwrap_err();
    let e = check(
        Deployment::builder("g", "vertex_ai/gemini-1.5-pro").build(),
        Mode::Chat,
    );
    assert_eq!(e.field, "litellm_params.vertex_credentials");
    let with = |creds: String| {
        Deployment::builder("g", "vertex_ai/gemini-1.5-pro")
            .api_base("http://p")
            .param("vertex_credentials", creds.into())
            .build()
    };
    // No project anywhere.
    let e = check(with(key_json("http://t/token", None)), Mode::Chat);
    assert_eq!(e.field, "litellm_params.vertex_project");
    // Not a service account.
    let user = serde_json::json!({"type": "authorized_user", "client_id": "c", "client_secret": "s", "refresh_token": "r"});
    let e = check(with(user.to_string()), Mode::Chat);
    assert!(e.why.contains("`authorized_user`"), "{}", e.why);
    // Not JSON, a missing file, a key gcp_auth cannot use.
    assert!(
        check(with("{not json".into()), Mode::Chat)
            .why
            .contains("not JSON")
    );
    let e = check(with("/nonexistent/key.json".into()), Mode::Chat);
    assert!(e.why.contains("cannot read"), "{}", e.why);
    let broken = key_json("http://t/token", Some("p")).replace("MII", "XXX");
    let e = check(with(broken), Mode::Chat);
    assert!(e.why.contains("unusable"), "{}", e.why);
    // Modes the native probe lacks.
    let mut d = with(key_json("http://t/token", Some("p")));
    d = {
        let mut b = Deployment::builder("g", "vertex_ai/gemini-1.5-pro");
        *b.params_mut() = d.params().clone();
        b.build()
    };
    assert_eq!(check(d, Mode::ImageGeneration).field, "model_info.mode");
}

/// No private key or access token in errors, Debug or TRACE logs (gcp_auth's own included).
#[tokio::test]
async fn no_secret_in_logs_errors_or_debug() {
    let logs = Logs::capture();
    let key_line = PRIVATE_KEY.lines().nth(5).unwrap();
    let tokens = token_server(&[3600], false).await;
    let (base, _) = vertex_server(None).await;
    let creds = key_json(&tokens.url, None);
    let auth = VertexAuth::new();
    let d = deployment("vertex_ai/gemini-1.5-pro", &base, &creds);
    let req = auth
        .vertex_probe_request(&d, Mode::Chat, "p", &GoogleEnv::default())
        .await
        .unwrap();
    let dbg = format!("{req:?} {d:?} {auth:?}");
    assert!(probe(req).await.healthy);
    // A failing token endpoint: an unhealthy reason, secret-free.
    let failing = token_server(&[3600], true).await;
    let bad = deployment(
        "vertex_ai/gemini-1.5-pro",
        &base,
        &key_json(&failing.url, None),
    );
    let err = auth
        .vertex_probe_request(&bad, Mode::Chat, "p", &GoogleEnv::default())
        .await
        .unwrap_err();
    assert!(matches!(err, VertexError::Token(_)), "{err:?}");
    let broken = key_json("http://t/token", Some("p")).replace("MII", "XXX");
    let cfg_err = VertexAuth::check(
        &deployment("vertex_ai/gemini-1.5-pro", &base, &broken),
        Mode::Chat,
        "p",
        &GoogleEnv::default(),
    )
    .unwrap_err();
    let text = logs.text();
    assert!(
        text.contains("requesting token"),
        "the capture saw gcp_auth: {text}"
    );
    let all = format!("{dbg} {err:?} {err} {cfg_err:?} {cfg_err} {text}");
    for secret in [key_line, "tok-1", "PRIVATE KEY"] {
        assert!(!all.contains(secret), "{secret} leaked: {all}");
    }
}

#[tokio::test]
async fn the_token_endpoint_checks_the_assertion() {
    let tokens = token_server(&[3600], false).await;
    let (base, seen) = vertex_server(None).await;
    // The same key under another account name: the claims no longer match.
    let creds = key_json(&tokens.url, None).replace(EMAIL, "someone@else.iam.gserviceaccount.com");
    let d = deployment("vertex_ai/gemini-1.5-pro", &base, &creds);
    let err = VertexAuth::new()
        .vertex_probe_request(&d, Mode::Chat, "p", &GoogleEnv::default())
        .await
        .unwrap_err();
    assert!(matches!(err, VertexError::Token(_)), "{err:?}");
    assert!(seen.lock().unwrap().is_empty(), "no probe without a token");
}
