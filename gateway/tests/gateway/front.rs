//! The front service: API requests go straight to their handler, everything else through
//! the router; the answers are the same as the router's.

use std::time::Duration;

use serde_json::json;
use thr_gateway::app::is_api_path;
use thr_testkit::FakeLlm;
use tower_health_routing::{Config, Deployment};

use crate::support::{self, get, send};

fn config(up: &FakeLlm) -> Config {
    Config::builder()
        .deployment(
            Deployment::builder("front-gpt", "openai/front-gpt")
                .id("front-1")
                .api_base(up.api_base())
                .api_key("sk-front-upstream-key")
                .health_check_timeout(Duration::from_millis(150))
                .build(),
        )
        .build()
        .unwrap()
}

#[test]
fn api_paths_are_the_api_routes_with_and_without_v1() {
    for r in thr_gateway::app::API_ROUTES {
        assert!(is_api_path(&format!("/v1/{r}")), "{r}");
        assert!(is_api_path(&format!("/{r}")), "{r}");
        assert!(!is_api_path(&format!("/v1/v1/{r}")), "{r}");
        assert!(!is_api_path(&format!("/v1/{r}/")), "{r}");
    }
    for p in [
        "",
        "/",
        "/v1",
        "/v1/",
        "/health",
        "/v1/models",
        "chat/completions",
    ] {
        assert!(!is_api_path(p), "{p}");
    }
}

#[tokio::test]
async fn api_routes_answer_with_and_without_v1_and_other_methods_get_405() {
    let up = FakeLlm::start("front-up").await.unwrap();
    let gw = support::start(config(&up)).await;
    let body = json!({"model": "front-gpt", "messages": [{"role": "user", "content": "hi"}]});
    for path in ["/v1/chat/completions", "/chat/completions"] {
        let r = send(gw.addr, path, body.to_string(), &[]).await;
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        assert_eq!(r.header("x-litellm-model-group"), "front-gpt");
        assert_eq!(r.header("x-litellm-attempted-fallbacks"), "0");
        assert_eq!(r.served_by(), "front-1");
    }
    // Not POST: the router's 405, naming the method it takes.
    let r = get(gw.addr, "/v1/chat/completions", None).await;
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), "POST");
    // Not an API path: the router's 404.
    let r = send(gw.addr, "/v1/chat/completions/", body.to_string(), &[]).await;
    assert_eq!(r.status, 404);
    // Other routes still go through the router.
    let r = get(gw.addr, "/v1/models", None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.expect_json()["data"][0]["id"], "front-gpt");
    gw.shutdown().await;
}

#[tokio::test]
async fn the_body_model_is_read_in_every_json_form() {
    let up = FakeLlm::start("front-model").await.unwrap();
    let gw = support::start(config(&up)).await;
    let chat = |body: String| send(gw.addr, "/v1/chat/completions", body, &[]);
    // An escaped string names the same model.
    let r = chat(r#"{"model":"front\u002dgpt","messages":[]}"#.to_owned()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.served_by(), "front-1");
    for (body, want) in [
        (r#"{"messages":[]}"#, "the body has no `model`"),
        (r#"{"model":null}"#, "the body has no `model`"),
        (r#"{"model":""}"#, "`model` must be a non-empty string"),
        (r#"{"model":7}"#, "`model` must be a non-empty string"),
        (r#"{"model":-7.5e3}"#, "`model` must be a non-empty string"),
        (r#"{"model":true}"#, "`model` must be a non-empty string"),
        (
            r#"{"model":["front-gpt"]}"#,
            "`model` must be a non-empty string",
        ),
        (
            r#"{"model":{"name":"front-gpt"}}"#,
            "`model` must be a non-empty string",
        ),
    ] {
        let r = chat(body.to_owned()).await;
        assert_eq!(r.status, 400, "{body}: {}", r.text());
        let v = r.expect_json();
        assert_eq!(v["error"]["message"], want, "{body}");
        assert_eq!(v["error"]["type"], "invalid_request_error", "{body}");
    }
    // Malformed JSON, in the model's value or after it, is still refused as malformed.
    for body in [
        r#"{"model":[1,}"#,
        r#"{"model":{"a":}}"#,
        r#"{"model":"front-gpt","messages":[}"#,
        r#"{"model":"front-gpt","model":"front-gpt"}"#,
    ] {
        let r = chat(body.to_owned()).await;
        assert_eq!(r.status, 400, "{body}: {}", r.text());
        let msg = r.expect_json()["error"]["message"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(msg.starts_with("malformed JSON body: "), "{body}: {msg}");
    }
    gw.shutdown().await;
}
