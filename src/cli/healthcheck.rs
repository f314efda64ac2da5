//! `server healthcheck [--ready] [--timeout D]`: the image's HEALTHCHECK (it has no curl).

use std::time::Duration;

use clap::Args;

use crate::config::{ConfigError, Settings};
use crate::error::{AppError, Exit};
use crate::http;

#[derive(Debug, Args)]
pub struct HealthcheckArgs {
    /// Probe readiness (database and schema) instead of liveness.
    #[arg(long)]
    ready: bool,
    /// Give up after this long (e.g. 500ms, 3s).
    #[arg(long, default_value = "3s", value_parser = crate::config::parse_duration)]
    timeout: Duration,
}

/// Exit 0 when the local server answers 2xx, 1 otherwise: Docker's HEALTHCHECK reads only 0
/// and 1, so a bad configuration is 1 here too. The answer is the output: "healthy: …" on
/// stdout, or "unhealthy: …" on stderr.
pub fn exec(settings: Result<Settings, ConfigError>, args: HealthcheckArgs) -> Exit {
    let path = if args.ready {
        "/health/ready"
    } else {
        "/health/live"
    };
    let settings = match settings {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("unhealthy: {}", AppError::from(e));
            return Exit::Failure;
        }
    };
    let addr = http::probe::local_addr(&settings.server.host, settings.server.port);
    match http::probe::get(&addr, path, args.timeout) {
        Ok(status) => {
            super::output::write_stdout(&format!("healthy: {addr}{path} answered {status}\n"));
            Exit::Success
        }
        Err(e) => {
            eprintln!("unhealthy: {e}");
            Exit::Failure
        }
    }
}
