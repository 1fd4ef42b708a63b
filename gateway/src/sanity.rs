//! Command-line values that cannot work are refused at start-up, naming the flag; a config
//! that can start but serves nothing is warned about.

use tower_health_routing::Config;

use crate::Cli;

/// The most runtime worker threads `--workers` accepts.
pub const MAX_WORKERS: usize = 1024;

/// Checks the flags: `--timeout` must be a number of seconds above zero (a zero timeout
/// fails every request), `--workers` between 1 and [`MAX_WORKERS`]. The error names the
/// flag and the accepted range.
pub fn check_cli(cli: &Cli) -> Result<(), String> {
    if let Some(t) = cli.timeout {
        if !(t.is_finite() && t > 0.0) {
            return Err(format!(
                "--timeout must be a number of seconds greater than 0 (got {t}): a zero timeout \
                 fails every request"
            ));
        }
        if std::time::Duration::try_from_secs_f64(t).is_err() {
            return Err("--timeout is too large".to_owned());
        }
    }
    if let Some(n) = cli.workers
        && !(1..=MAX_WORKERS).contains(&n)
    {
        return Err(format!(
            "--workers must be between 1 and {MAX_WORKERS} (got {n})"
        ));
    }
    Ok(())
}

/// Warns (once, at start-up) about a config that starts but cannot serve: no deployment.
pub fn warn_config(config: &Config) {
    if config.deployments.is_empty() {
        tracing::warn!(
            "model_list is empty: the gateway starts, but every API request is answered 400 \
             (unknown model) until deployments are configured"
        );
    }
}
