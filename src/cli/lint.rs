//! `migrate lint [DIR] [--config FILE] [--json]`: the build's migration safety lint, on demand.

use std::path::{Path, PathBuf};

use clap::Args;

use super::output::Output;
use crate::config::{ConfigError, Settings};
use crate::error::{AppError, Exit};
use crate::lint_cmd;

#[derive(Debug, Args)]
pub struct LintArgs {
    /// A migration directory to lint instead of the embedded set.
    dir: Option<PathBuf>,
    /// Severity file (default: the one embedded at build time; for DIR,
    /// DIR/../migration-lint.toml when present, else the defaults).
    #[arg(long)]
    config: Option<PathBuf>,
}

/// Needs no database and no secrets: a configuration that is incomplete here (say, production
/// without DATABASE_URL in a build step) still has its `lock_timeout`, read from the files.
pub fn exec(
    settings: Result<Settings, ConfigError>,
    config_dir: &Path,
    args: LintArgs,
    out: Output,
) -> Exit {
    let lock_timeout_off = match settings {
        Ok(settings) => settings.migrations.lock_timeout.is_zero(),
        Err(e) => {
            eprintln!(
                "server: note: {}; linting with migrations.lock_timeout from the files in {}",
                AppError::from(e),
                config_dir.display()
            );
            lint_cmd::lock_timeout_off_in_files(config_dir)
        }
    };
    lint_cmd::run(
        lock_timeout_off,
        args.dir.as_deref(),
        args.config.as_deref(),
        out.is_json(),
    )
}
