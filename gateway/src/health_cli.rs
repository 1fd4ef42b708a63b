//! `gateway --health`: asks a running gateway's `/health` and prints a table.

use std::process::ExitCode;

use http_body_util::{BodyExt, Empty};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use serde_json::Value;

/// Asks the gateway at `url` (with the master key `key`, if any) for `/health`, prints
/// a table, and returns the exit code: 0 all healthy, 1 some unhealthy, 2 not asked.
pub async fn run(url: &str, key: Option<&str>) -> ExitCode {
    match fetch(url, key).await {
        Ok(report) => print(&report),
        Err(e) => {
            eprintln!("gateway --health: {e}");
            ExitCode::from(2)
        }
    }
}

async fn fetch(url: &str, key: Option<&str>) -> Result<Value, String> {
    let uri = format!("{}/health", url.trim_end_matches('/'));
    let mut req = http::Request::get(&uri);
    if let Some(k) = key {
        req = req.header("authorization", format!("Bearer {k}"));
    }
    let req = req
        .body(Empty::<bytes::Bytes>::new())
        .map_err(|e| format!("bad URL `{uri}`: {e}"))?;
    let client = Client::builder(TokioExecutor::new()).build_http();
    let resp = tokio::time::timeout(std::time::Duration::from_secs(120), client.request(req))
        .await
        .map_err(|_| format!("{uri} did not answer within 120 s"))?
        .map_err(|e| format!("cannot reach {uri}: {e}"))?;
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("reading {uri}: {e}"))?
        .to_bytes();
    if status == http::StatusCode::UNAUTHORIZED {
        return Err("401 Unauthorized: pass --key or set LITELLM_MASTER_KEY".to_owned());
    }
    serde_json::from_slice(&body)
        .map_err(|_| format!("{uri} answered {status} with a body that is not a health report"))
}

fn print(report: &Value) -> ExitCode {
    let list = |k: &str| {
        report
            .get(k)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let (healthy, unhealthy) = (list("healthy_endpoints"), list("unhealthy_endpoints"));
    println!(
        "{:<10} {:<32} {:<34} {:<30} ERROR",
        "STATUS", "MODEL", "MODEL_ID", "API_BASE"
    );
    let s = |e: &Value, k: &str| {
        e.get(k)
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| v.to_string())
            })
            .unwrap_or_default()
    };
    for (tag, entries) in [("healthy", &healthy), ("UNHEALTHY", &unhealthy)] {
        for e in entries {
            let err = match (s(e, "exception_status"), s(e, "error")) {
                (st, er) if st.is_empty() => er,
                (st, er) => format!("[{st}] {er}"),
            };
            println!(
                "{:<10} {:<32} {:<34} {:<30} {}",
                tag,
                s(e, "model"),
                s(e, "model_id"),
                s(e, "api_base"),
                err
            );
        }
    }
    println!("\n{} healthy, {} unhealthy", healthy.len(), unhealthy.len());
    if unhealthy.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
