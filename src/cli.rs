//! The command line: `server [--migrate-only] [COMMAND]`, and dispatch to [`crate::app`].

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::app::{self, AppError};
use crate::config::Settings;
use crate::exit::Exit;
use crate::telemetry;

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

Environment: DATABASE_URL, HOST, PORT, ENVIRONMENT (development|test|production), DEBUG,
CONFIG_DIR, and any config key as APP_<SECTION>__<KEY> (e.g. APP_DATABASE__MAX_CONNECTIONS=20).

Exit codes: 0 success, 1 other failure, 2 bad command line, 3 bad configuration,
4 database unreachable, 5 migration failed, 6 checksum mismatch / dirty database / unknown or
out-of-order versions, 7 timed out waiting for the migration lock.";

/// agent-backend: the API server of the UI agent product, carrying its own database migrations.
#[derive(Debug, Parser)]
#[command(name = "server", version = VERSION, about, after_help = AFTER_HELP)]
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
}

/// Runs the parsed command line and returns the process exit code.
pub fn run(cli: Cli) -> ExitCode {
    let settings = match Settings::load(&cli.config_dir) {
        Ok(settings) => settings,
        Err(e) => {
            // No logger yet (its format is configuration): one plain line on stderr.
            eprintln!("server: {}", AppError::from(e));
            return Exit::Config.into();
        }
    };
    if let Some(Command::Config) = cli.command {
        print!("{}", settings.to_masked_toml());
        return Exit::Success.into();
    }
    if cli.migrate_only && cli.command.is_some() {
        eprintln!("server: --migrate-only takes no command");
        return Exit::Usage.into();
    }

    telemetry::init(&settings);
    let runtime = if cli.migrate_only {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
    };
    let result = match runtime {
        Ok(rt) => rt.block_on(async {
            if cli.migrate_only {
                app::migrate_only(&settings).await
            } else {
                app::serve(&settings).await
            }
        }),
        Err(e) => Err(AppError::Runtime(e)),
    };
    match result {
        Ok(()) => Exit::Success.into(),
        Err(e) => {
            // The stage has logged "Migration failed: …"; other failures are logged here.
            if !matches!(e, AppError::Database(_) | AppError::Migrate(_)) {
                tracing::error!("{e}");
            }
            Exit::from(&e).into()
        }
    }
}
