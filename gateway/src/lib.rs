//! `thr-gateway`: an OpenAI-compatible LLM gateway built from `tower-health-routing`.
//!
//! Install with `cargo install --path gateway` (or build with
//! `cargo build --release -p thr-gateway`), then run
//! `thr-gateway --config examples/config.yaml --host 127.0.0.1 [--port 4000]` (off loopback
//! the gateway needs a strong master key: see [`boot`]).
//!
//! axum, `HealthRoutingLayer`, the background probe loop, the health endpoints, and a hyper
//! client that forwards each request to the deployment the layer chose.
//!
//! * API: `POST /v1/chat/completions`, `/v1/completions`, `/v1/embeddings`,
//!   `/v1/images/generations`, `/v1/audio/speech`, `/v1/audio/transcriptions`, `/v1/rerank`,
//!   `/v1/responses` (also without `/v1`), `GET /v1/models`. The route is the body's `model`.
//! * Health: `/health`, `/health/readiness`, `/health/liveliness`, `/health/shared-status`,
//!   `/health/services` (the library's `HealthEndpoints`), `/health/drain` ([`drain`]);
//!   Prometheus metrics on `/metrics` (behind the master key unless
//!   `litellm_settings.require_auth_for_metrics_endpoint: false`, as LiteLLM; no label
//!   carries a secret). Every route and its access: [`routes::table`].
//! * Safe by default: the master-key boot check ([`boot`]), request limits and HTTP/1
//!   strictness ([`limits`]), drain on `/health/drain` and SIGTERM ([`drain`]).
//! * `--health`: ask a running gateway's `/health` and print a table, like `litellm --health`
//!   (exit code 1 when a deployment is unhealthy, 2 when the gateway cannot be asked).
//!
//! Logs go through `tracing` to stdout; set `RUST_LOG` (default `info`). Colour codes only
//! when stdout is a terminal (and `NO_COLOR` is unset); `--log-format json` (or LiteLLM's
//! `JSON_LOGS=True`) writes one JSON object per line.
//!
//! `examples/config.yaml` points at the demo's fake upstreams: start them first with
//! `cargo run --release --example demo -- --serve-upstreams` (see the top of that file).
//!
//! The library target holds the whole gateway ([`app`], the [`health_cli`] client, the
//! start-up checks of [`dropin`], the [`Cli`] and [`run`]); `src/main.rs` only parses the command line and calls [`run`].

pub mod app;
pub mod boot;
pub mod budget;
pub mod drain;
pub mod dropin;
pub mod fallback;
pub mod forward;
pub mod gate;
pub mod headers;
pub mod health_cli;
pub mod limits;
pub mod models;
pub mod multipart;
pub mod routes;
pub mod sanity;
pub mod usage;

use std::{io::IsTerminal, net::SocketAddr, path::PathBuf, process::ExitCode, time::Duration};

use clap::{Parser, ValueEnum};
use tower_health_routing::{BoxError, Config};

/// The command line of `thr-gateway`.
#[derive(Parser, Debug)]
#[command(
    name = "thr-gateway",
    version,
    about = "An OpenAI-compatible gateway with health-check-driven routing"
)]
pub struct Cli {
    /// LiteLLM-style config.yaml.
    #[arg(long, required_unless_present = "health")]
    pub config: Option<PathBuf>,
    /// Port to listen on.
    #[arg(long, default_value_t = 4000)]
    pub port: u16,
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0")]
    pub host: std::net::IpAddr,
    /// Runtime worker threads (default: one per core). `1` runs a single-threaded event
    /// loop, like one nginx worker: no cross-thread wake-ups.
    #[arg(long)]
    pub workers: Option<usize>,
    /// Seconds to wait for an upstream's response headers [default: 600]. Given, it
    /// overrides the config's `router_settings.timeout` / `litellm_settings.request_timeout`;
    /// a deployment's own `timeout` / `stream_timeout` still wins.
    #[arg(long)]
    pub timeout: Option<f64>,
    /// Query a running gateway's /health and print it.
    #[arg(long)]
    pub health: bool,
    /// With --health: the gateway's URL.
    #[arg(long, default_value = "http://127.0.0.1:4000")]
    pub url: String,
    /// With --health: the master key.
    #[arg(long, env = "LITELLM_MASTER_KEY", hide_env_values = true)]
    pub key: Option<String>,
    /// The largest request body, MiB (default 64; config: `general_settings.max_request_size_mb`).
    #[arg(long)]
    pub max_request_size_mb: Option<f64>,
    /// The largest request head (request line and headers), KiB (default 64; config:
    /// `general_settings.max_request_header_size_kb`). Larger: 431, connection closed.
    #[arg(long)]
    pub max_header_size_kb: Option<f64>,
    /// Seconds a client has to send a request's headers (default 30; config:
    /// `general_settings.header_read_timeout`).
    #[arg(long)]
    pub header_read_timeout: Option<f64>,
    /// The most client connections served at once (default 4096; config:
    /// `general_settings.max_connections`).
    #[arg(long)]
    pub max_connections: Option<usize>,
    /// Log line format (default `text`; `json` when the environment has LiteLLM's
    /// `JSON_LOGS=True`).
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,
}

/// How log lines are written to stdout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines; colour codes only when stdout is a terminal.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

impl LogFormat {
    /// `--log-format` if given, else `json` when `JSON_LOGS` is `true` (any case, as
    /// LiteLLM reads it), else `text`.
    pub fn resolve(flag: Option<Self>, json_logs_env: Option<&str>) -> Self {
        match flag {
            Some(f) => f,
            None if json_logs_env.is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) => {
                Self::Json
            }
            None => Self::Text,
        }
    }
}

/// Installs the global `tracing` subscriber: `RUST_LOG` filter (default `info`), stdout,
/// colour only on a terminal without `NO_COLOR`, text or JSON lines.
pub fn init_logging(format: LogFormat) {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let ansi = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Runs the gateway (or, with `--health`, the health client) as the binary does: logging,
/// the runtime, then serving until Ctrl-C or SIGTERM.
pub fn run(cli: Cli) -> ExitCode {
    let json_logs = std::env::var("JSON_LOGS").ok();
    init_logging(LogFormat::resolve(cli.log_format, json_logs.as_deref()));
    if let Err(e) = sanity::check_cli(&cli) {
        eprintln!("thr-gateway: {e}");
        return ExitCode::from(2);
    }
    let rt = match cli.workers {
        Some(1) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        Some(0) => {
            eprintln!("thr-gateway: --workers must be at least 1");
            return ExitCode::from(2);
        }
        Some(n) => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build(),
        None => tokio::runtime::Runtime::new(),
    };
    let rt = match rt {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("thr-gateway: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    if cli.health {
        return rt.block_on(health_cli::run(&cli.url, cli.key.as_deref()));
    }
    match rt.block_on(serve(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("thr-gateway: {e}");
            ExitCode::from(1)
        }
    }
}

/// The upstream timeout when neither `--timeout` nor the config sets one (LiteLLM's 600 s).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

async fn serve(cli: Cli) -> Result<(), BoxError> {
    let path = cli.config.clone().expect("clap requires --config");
    let mut config = Config::from_yaml_file(&path)?;
    sanity::warn_config(&config);
    // `check_cli` refused a timeout that is not a positive number of seconds.
    let timeout = match cli
        .timeout
        .and_then(|t| Duration::try_from_secs_f64(t).ok())
    {
        None => DEFAULT_TIMEOUT,
        Some(t) => {
            // The flag overrides the config's global timeouts.
            config.router.timeout = Some(t);
            t
        }
    };
    // No open proxy: the master-key boot check (see `boot`).
    if config.master_key.is_none()
        && let Ok(k) = std::env::var("LITELLM_MASTER_KEY")
    {
        config.master_key = Some(k.into());
    }
    let opt_out = config.server.dangerously_permit_weak_or_unset_master_key
        || boot::env_opt_out(std::env::var(boot::OPT_OUT_ENV).ok().as_deref());
    match boot::check(config.master_key.as_ref(), cli.host, opt_out) {
        boot::Verdict::Refuse(why) => return Err(why.into()),
        boot::Verdict::Start { key, warnings } => {
            for w in warnings {
                tracing::warn!("{w}");
            }
            config.master_key = key;
        }
    }
    let s = config.server.clone();
    if s.drain_endpoint_token.is_none()
        && let Ok(t) = std::env::var("DRAIN_ENDPOINT_TOKEN")
        && !t.is_empty()
    {
        config.server.drain_endpoint_token = Some(t.into());
    }
    let grace = match (
        s.graceful_shutdown_timeout,
        std::env::var("GRACEFUL_SHUTDOWN_TIMEOUT"),
    ) {
        (Some(g), _) => g,
        (None, Ok(v)) => v
            .trim()
            .parse::<f64>()
            .ok()
            .and_then(|f| Duration::try_from_secs_f64(f).ok())
            .ok_or("GRACEFUL_SHUTDOWN_TIMEOUT: expected seconds >= 0")?,
        (None, Err(_)) => drain::DEFAULT_GRACE,
    };
    let drain_settings = drain::DrainSettings {
        enabled: s.enable_drain_endpoint,
        token: config.server.drain_endpoint_token.clone(),
        grace,
    };
    if drain_settings.enabled && drain_settings.token.is_none() {
        tracing::warn!(
            "general_settings.enable_drain_endpoint is on without drain_endpoint_token (or \
             DRAIN_ENDPOINT_TOKEN): anyone who can reach /health/drain can take this instance \
             out of service"
        );
    }
    let max_body = match cli.max_request_size_mb.or(s.max_request_size_mb) {
        Some(mb) => limits::size_bytes(mb, 1 << 20, "max_request_size_mb")?,
        None => limits::DEFAULT_MAX_BODY_BYTES,
    };
    let max_header_bytes = match cli.max_header_size_kb.or(s.max_request_header_size_kb) {
        Some(kb) => limits::size_bytes(kb, 1 << 10, "max_request_header_size_kb")?,
        None => limits::DEFAULT_MAX_HEADER_BYTES,
    };
    let header_read_timeout = match cli.header_read_timeout {
        Some(t) => Duration::try_from_secs_f64(t)
            .ok()
            .filter(|d| !d.is_zero())
            .ok_or("--header-read-timeout: expected seconds > 0")?,
        None => s
            .header_read_timeout
            .unwrap_or(limits::DEFAULT_HEADER_READ_TIMEOUT),
    };
    let max_connections = match cli.max_connections.or(s.max_connections) {
        Some(0) => return Err("--max-connections: expected at least 1".into()),
        Some(n) => n,
        None => limits::DEFAULT_MAX_CONNECTIONS,
    };
    let limits = limits::Limits {
        max_header_bytes,
        header_read_timeout,
        max_connections,
    };
    // Metrics: the library records through the `metrics` facade; expose them on /metrics.
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let metrics_handle = recorder.handle();
    metrics::set_global_recorder(recorder)
        .map_err(|e| format!("cannot install the metrics recorder: {e}"))?;
    tower_health_routing::telemetry::describe();
    let upkeep = metrics_handle.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            upkeep.run_upkeep();
        }
    });
    let gw = app::Gateway::new(
        config,
        &app::Options {
            upstream_timeout: timeout,
            max_body,
            metrics: Some(metrics_handle),
            metrics_require_auth: s.require_auth_for_metrics_endpoint != Some(false),
            limits,
            drain: drain_settings,
        },
    )?;
    let addr = SocketAddr::new(cli.host, cli.port);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    // The bound address (the port the OS chose for `--port 0`).
    let addr = listener.local_addr().unwrap_or(addr);
    tracing::info!(%addr, config = %path.display(), "gateway listening");
    gw.serve(listener, shutdown_signal()).await
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    tracing::info!("shutting down: finishing in-flight requests");
}
