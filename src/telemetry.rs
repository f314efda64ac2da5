//! Logging: human-readable lines in development and test, JSON lines in production, to stderr
//! (stdout stays free for command output such as `server config`).
//!
//! Level: `log.level` from config, `debug` when `DEBUG=true`, `RUST_LOG` over both. Nothing
//! here masks secrets: they never reach a log call (see `config::DatabaseUrl`).

use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, Settings};

/// Installs the global subscriber. Safe to call once per process.
pub fn init(settings: &Settings) {
    let level = if settings.debug {
        "debug".to_string()
    } else {
        settings.log.level.clone()
    };
    // Our crate at the configured level; dependencies one notch quieter unless RUST_LOG says.
    let default = format!("{level},agent_backend={level},sqlx=warn,poem=info");
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| EnvFilter::try_new(v).ok())
        .unwrap_or_else(|| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match settings.log.format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
    };
    // Already installed (tests calling in twice): keep the first.
    let _ = result;
}
