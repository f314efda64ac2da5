//! The command line: `server [--migrate-only] [COMMAND]`. One module per command, each taking
//! its clap arguments straight to the engine and printing a typed view ([`output`]).
//!
//! This module owns the edge: configuration is loaded once; the logger and the runtime are
//! started for the commands that need them; a failure is reported here, once (one line on
//! stderr, through the logger once it exists), and mapped to its exit code
//! ([`crate::error::Exit`]).

mod apply;
mod compat;
mod ctx;
mod healthcheck;
mod history;
mod lint;
mod migrate;
pub mod output;
mod queries;
mod repair;
mod rollback;
mod schema;
mod status;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::app;
use crate::config::{ConfigError, Settings};
use crate::error::{AppError, Exit};
use crate::migrate::{MigrationSet, embedded};
use crate::telemetry;

pub use migrate::{DbCommand, MigrateArgs, MigrateCommand};

const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("EMBEDDED_MIGRATIONS"),
    " embedded migrations, newest ",
    env!("NEWEST_MIGRATION"),
    ")"
);

const AFTER_HELP: &str = "\
With no command, `server` connects to the database (with retries), applies pending migrations
under sqlx's advisory lock, verifies the schema, and only then serves HTTP on HOST:PORT.

Environment: DATABASE_URL, DATABASE_MIGRATION_URL (migrations; default DATABASE_URL), HOST,
PORT, ENVIRONMENT (development|test|production), DEBUG, API_KEYS, CONFIG_DIR, RUST_LOG, and any config key as APP_<SECTION>__<KEY> (e.g. APP_DATABASE__MAX_CONNECTIONS=20).

Exit codes: 0 success (a look included: repair without flags, dry runs), 1 other failure,
2 bad command line, 3 bad configuration, 4 database unreachable or lost after the retries,
5 a migration's SQL failed (rolled back if transactional; a -- no-transaction one is left
dirty), 6 checksum mismatch / dirty database / unknown or out-of-order versions, 7 timed out
waiting for the migration lock, 8 migrations pending or in progress (status, verify),
9 refused: nothing changed (no confirmation, no down migration, unknown version or
rollback target, a dirty row that changed before repair could act, a migration in progress),
10 migrate lint: a finding of a rule set to deny, 11 the schema differs (drift, a stale snapshot,
a down migration that does not restore it), 12 a migration could not take its locks within
lock_timeout after its retries, 13 the migration connection goes through a transaction-mode
pooler (set DATABASE_MIGRATION_URL to a direct connection; nothing changed), 14 the schema
breaks a release's queries (migrate compat; the pre-deploy refused pending migrations that break
a release still serving, or could not check them; nothing applied).";

/// agent-backend: the API server of the UI agent product, carrying its own database migrations.
#[derive(Debug, Parser)]
#[command(name = "server", version = VERSION, about, after_help = AFTER_HELP)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Cli {
    /// Run the pre-serve stage (connect, apply pending migrations, verify) and exit: the Render
    /// pre-deploy command and the manual/emergency run.
    #[arg(long)]
    pub migrate_only: bool,

    /// Directory holding default.toml and <ENVIRONMENT>.toml.
    #[arg(long, env = "CONFIG_DIR", default_value = "config", global = true)]
    pub config_dir: PathBuf,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the effective configuration (all layers merged) as TOML, secrets masked.
    Config,
    /// Inspect and operate migrations: status, history, show, apply, rollback, verify, repair,
    /// lint.
    Migrate(MigrateArgs),
    /// Probe the local server's health: exit 0 healthy, 1 not (a container's HEALTHCHECK).
    ///
    /// GETs /health/live, or /health/ready with --ready, on HOST:PORT from the configuration
    /// (a wildcard HOST is probed on loopback). The image has no curl; this is its probe.
    Healthcheck(healthcheck::HealthcheckArgs),
    /// The queries this binary runs (its `.sqlx/` at build time): hash, SQL, parameter and
    /// result column types, nullability, and the query set's hash. Needs no database.
    Queries(queries::QueriesArgs),
}

/// Runs the parsed command line and returns the process exit code.
pub fn run(cli: Cli) -> ExitCode {
    run_with(cli, embedded::migrations()).into()
}

/// [`run`] over any validated set. `server` passes only its embedded one; the integration tests
/// pass generated sets (a release that is not this build) through this same code.
pub fn run_with(cli: Cli, set: &'static MigrationSet) -> Exit {
    let Cli {
        migrate_only,
        config_dir,
        command,
    } = cli;
    let settings = Settings::load(&config_dir);
    match command {
        // Docker reads only 0 and 1: every failure, a bad configuration too, is "unhealthy".
        Some(Command::Healthcheck(args)) => healthcheck::exec(settings, args),
        // Needs no database and no secrets (it runs in build steps too).
        Some(Command::Migrate(MigrateArgs {
            json,
            command: MigrateCommand::Lint(args),
        })) => lint::exec(settings, &config_dir, args, output::Output::new(json)),
        Some(Command::Queries(args)) => queries::exec(args),
        Some(Command::Config) => with_settings(settings, |settings| {
            output::write_stdout(&settings.to_masked_toml());
            Exit::Success
        }),
        Some(Command::Migrate(MigrateArgs {
            json,
            command: MigrateCommand::Db(command),
        })) => with_settings(settings, |settings| {
            in_runtime(settings, Runtime::OneThread, async |settings: &Settings| {
                migrate::exec(settings, set, command, output::Output::new(json)).await
            })
        }),
        None if migrate_only => with_settings(settings, |settings| {
            in_runtime(settings, Runtime::OneThread, async |settings: &Settings| {
                app::pre_serve_with(settings, set)
                    .await
                    .map(|_| Exit::Success)
            })
        }),
        None => with_settings(settings, |settings| {
            in_runtime(
                settings,
                Runtime::MultiThread,
                async |settings: &Settings| {
                    app::serve_with(settings, set).await.map(|()| Exit::Success)
                },
            )
        }),
    }
}

/// The one policy for a configuration that does not load: one plain line on stderr (there is
/// no logger yet: its format is configuration), exit 3.
fn with_settings(
    settings: Result<Settings, ConfigError>,
    then: impl FnOnce(&Settings) -> Exit,
) -> Exit {
    match settings {
        Ok(settings) => then(&settings),
        Err(e) => {
            let e = AppError::from(e);
            eprintln!("server: {e}");
            Exit::from(&e)
        }
    }
}

/// Serving wants every core; everything else is done faster on one thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Runtime {
    OneThread,
    MultiThread,
}

/// Starts the logger (and trace export) and the runtime, runs `work`, reports its failure once
/// and flushes the traces.
fn in_runtime(
    settings: &Settings,
    kind: Runtime,
    work: impl AsyncFnOnce(&Settings) -> Result<Exit, AppError>,
) -> Exit {
    let telemetry = telemetry::init(settings);
    let runtime = match kind {
        Runtime::OneThread => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        Runtime::MultiThread => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build(),
    };
    let result = match runtime {
        Ok(rt) => rt.block_on(work(settings)),
        Err(e) => Err(AppError::Runtime(e)),
    };
    let exit = result.unwrap_or_else(|e| {
        tracing::error!("{e}");
        Exit::from(&e)
    });
    // Outside the runtime, which is gone by now: the flush blocks.
    telemetry.shutdown();
    exit
}
