//! `ProbeDefaults::from_env` reads LiteLLM's variables. The process environment is not
//! mutated (that is `unsafe` in edition 2024): the test re-runs itself as a child process
//! with the variables set.

use std::process::Command;

use tower_health_routing::probe::ProbeDefaults;

const CHILD: &str = "TOWER_HEALTH_ROUTING_ENV_CHILD";

/// The libtest name of test `f` of this module (`probe_env::f` inside the grouped binary).
fn test_name(f: &str) -> String {
    match module_path!().split_once("::") {
        Some((_crate, module)) => format!("{module}::{f}"),
        None => f.to_owned(),
    }
}

#[test]
fn from_env_reads_litellms_variables() {
    if std::env::var_os(CHILD).is_some() {
        let d = ProbeDefaults::from_env().expect("valid values");
        assert_eq!(&*d.prompt, "env prompt");
        assert_eq!((d.max_tokens, d.max_tokens_reasoning), (Some(9), Some(90)));
        return;
    }
    let exe = std::env::current_exe().expect("test binary");
    let status = Command::new(exe)
        .args([
            "--exact",
            &test_name("from_env_reads_litellms_variables"),
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .env("DEFAULT_HEALTH_CHECK_PROMPT", "env prompt")
        .env("BACKGROUND_HEALTH_CHECK_MAX_TOKENS", "9")
        .env("BACKGROUND_HEALTH_CHECK_MAX_TOKENS_REASONING", "90")
        .output()
        .expect("child runs");
    let out = String::from_utf8_lossy(&status.stdout);
    assert!(status.status.success(), "child failed: {out}");
    assert!(out.contains("1 passed"), "the child ran no test: {out}");
}

#[test]
fn bad_values_are_errors_naming_the_variable() {
    if std::env::var_os(CHILD).is_some() {
        let e = ProbeDefaults::from_env().expect_err("not a number");
        assert_eq!(e.field(), "env.BACKGROUND_HEALTH_CHECK_MAX_TOKENS");
        return;
    }
    let exe = std::env::current_exe().expect("test binary");
    let status = Command::new(exe)
        .args([
            "--exact",
            &test_name("bad_values_are_errors_naming_the_variable"),
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .env("BACKGROUND_HEALTH_CHECK_MAX_TOKENS", "sixteen")
        .output()
        .expect("child runs");
    let out = String::from_utf8_lossy(&status.stdout);
    assert!(status.status.success(), "child failed: {out}");
    assert!(out.contains("1 passed"), "the child ran no test: {out}");
}
