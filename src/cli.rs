//! The command line: `server [--migrate-only] [COMMAND]`, and dispatch to [`crate::app`].

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::app::{self, AppError};
use crate::config::Settings;
use crate::exit::Exit;
use crate::http;
use crate::lint_cmd;
use crate::migrate::{MigrationSet, RepairAction, embedded};
use crate::ops::{self, Op};
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

Environment: DATABASE_URL, DATABASE_MIGRATION_URL (migrations; default DATABASE_URL), HOST,
PORT, ENVIRONMENT (development|test|production), DEBUG, API_KEYS, CONFIG_DIR, RUST_LOG, and any config key as APP_<SECTION>__<KEY> (e.g. APP_DATABASE__MAX_CONNECTIONS=20).

Exit codes: 0 success, 1 other failure, 2 bad command line, 3 bad configuration,
4 database unreachable, 5 migration failed (rolled back if transactional; a -- no-transaction
one is left dirty), 6 checksum mismatch / dirty database / unknown or out-of-order versions,
7 timed out waiting for the migration lock, 8 migrations pending or in progress (status,
verify), 9 refused: nothing changed (no confirmation, no down migration, unknown version or
rollback target, a dirty row that changed before repair could act, a migration in progress),
10 migrate lint: a finding of a rule set to deny, 11 the schema differs (drift, a stale snapshot,
a down migration that does not restore it), 12 a migration could not take its locks within
lock_timeout after its retries, 13 the migration connection goes through a transaction-mode
pooler (set DATABASE_MIGRATION_URL to a direct connection; nothing changed).";

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
    /// Inspect and operate migrations: status, history, show, apply, rollback, verify, repair,
    /// lint.
    Migrate(MigrateArgs),
    /// Probe the local server's health: exit 0 healthy, 1 not (a container's HEALTHCHECK).
    ///
    /// GETs /health/live, or /health/ready with --ready, on HOST:PORT from the configuration
    /// (a wildcard HOST is probed on loopback). The image has no curl; this is its probe.
    Healthcheck {
        /// Probe readiness (database and schema) instead of liveness.
        #[arg(long)]
        ready: bool,
        /// Give up after this long (e.g. 500ms, 3s).
        #[arg(long, default_value = "3s", value_parser = crate::config::parse_duration)]
        timeout: Duration,
    },
}

#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// Print one JSON document on stdout instead of a table.
    #[arg(long, global = true)]
    pub json: bool,

    #[command(subcommand)]
    pub command: MigrateCommand,
}

#[derive(Debug, Subcommand)]
pub enum MigrateCommand {
    /// Applied and embedded versions, pending list, dirty / in-progress / checksum-mismatch /
    /// unknown flags, and who holds the migration lock. Exit 0 up to date, 8 pending or a
    /// migration in progress, 6 dirty or mismatched.
    Status,
    /// Every applied migration: version, description, installed_on, execution time, checksum.
    History {
        /// Also show checksums and reversibility.
        #[arg(long)]
        verbose: bool,
    },
    /// One migration: description, state, embedded vs applied checksum, up and down SQL.
    Show { version: i64 },
    /// Apply pending migrations (all, or up to --to) under the migration lock.
    Apply {
        /// Stop after this version.
        #[arg(long)]
        to: Option<i64>,
        /// Print, in order, what would run (SQL and transaction mode); change nothing, take no lock.
        #[arg(long)]
        dry_run: bool,
        /// Apply pending versions older than the newest applied one.
        #[arg(long)]
        allow_out_of_order: bool,
    },
    /// Revert, newest first, every applied migration newer than VERSION with its embedded down
    /// SQL. VERSION is 0 (revert all) or an applied or embedded version; anything else is
    /// refused (exit 9). Changes nothing if a needed down migration is missing.
    Rollback {
        /// The newest version to keep: 0, or an applied or embedded version.
        version: i64,
        /// Confirm without asking (required when not on a terminal).
        #[arg(long)]
        yes: bool,
        /// Print what would be reverted; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Connectivity, checksums, nothing pending, nothing dirty. Exit 0 only when all hold.
    Verify,
    /// Leave a dirty state (a `success = false` row) after fixing the schema by hand.
    ///
    /// Without a flag: shows the row, the SQL that ran, the failing statement, the lock's holder,
    /// INVALID indexes and what to check, and changes nothing. With --mark-applied or
    /// --mark-reverted and --yes: under the migration lock, reads the row again and records the
    /// decision only if it is unchanged (else exit 9: the migration finished meanwhile).
    Repair {
        /// The dirty version to show or repair (default: the oldest dirty one).
        #[arg(long)]
        version: Option<i64>,
        /// You finished the migration by hand: record it as applied.
        #[arg(long, conflicts_with = "mark_reverted")]
        mark_applied: bool,
        /// You undid its effects by hand: remove the row so it is applied again.
        #[arg(long)]
        mark_reverted: bool,
        /// Confirm (required).
        #[arg(long)]
        yes: bool,
    },
    /// Print the database's schema as deterministic text; `--write FILE` writes it, `--check FILE`
    /// compares a committed snapshot with it (exit 11 with a diff when stale). `--fresh` reads a
    /// scratch database migrated with the embedded set instead (needs CREATEDB).
    Snapshot {
        /// Snapshot a scratch database (created, migrated, dropped) instead of the configured one.
        #[arg(long)]
        fresh: bool,
        /// Write the snapshot to FILE (e.g. schema.snapshot) instead of printing it.
        #[arg(long, conflicts_with = "check")]
        write: Option<PathBuf>,
        /// Compare FILE with the snapshot: exit 0 equal, 11 stale (with the differences).
        #[arg(long)]
        check: Option<PathBuf>,
    },
    /// Compare the database's schema with the embedded snapshot of the newest migration: exit 0
    /// clean, 11 drift (every difference named), 9 not comparable (pending, dirty or newer).
    Drift,
    /// Round-trip every migration (up, down, up) on a scratch database and compare the result
    /// with the embedded snapshot: exit 0 pass, 11 a down that does not restore the schema or a
    /// result that differs from the snapshot.
    Test {
        /// An empty database to use instead of a scratch one.
        #[arg(long)]
        database_url: Option<String>,
    },
    /// The migration safety lint (the build's): dangerous DDL in the embedded set, or in the
    /// `.sql` files of DIR. Needs no database. Exit 0 without a deny finding, 10 with one.
    Lint {
        /// A migration directory to lint instead of the embedded set.
        dir: Option<PathBuf>,
        /// Severity file (default: the one embedded at build time; for DIR,
        /// DIR/../migration-lint.toml when present, else the defaults).
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

impl MigrateCommand {
    fn into_op(self) -> Op {
        match self {
            MigrateCommand::Status => Op::Status,
            MigrateCommand::History { verbose } => Op::History { verbose },
            MigrateCommand::Show { version } => Op::Show { version },
            MigrateCommand::Apply {
                to,
                dry_run,
                allow_out_of_order,
            } => Op::Apply {
                to,
                dry_run,
                allow_out_of_order,
            },
            MigrateCommand::Rollback {
                version,
                yes,
                dry_run,
            } => Op::Rollback {
                target: version,
                yes,
                dry_run,
            },
            MigrateCommand::Verify => Op::Verify,
            MigrateCommand::Repair {
                version,
                mark_applied,
                mark_reverted,
                yes,
            } => Op::Repair {
                version,
                action: match (mark_applied, mark_reverted) {
                    (true, _) => Some(RepairAction::MarkApplied),
                    (_, true) => Some(RepairAction::MarkReverted),
                    _ => None,
                },
                yes,
            },
            MigrateCommand::Snapshot {
                fresh,
                write,
                check,
            } => Op::Snapshot {
                fresh,
                write,
                check,
            },
            MigrateCommand::Drift => Op::Drift,
            MigrateCommand::Test { database_url } => Op::Test { database_url },
            MigrateCommand::Lint { .. } => {
                unreachable!("`migrate lint` is run by `run`, without a database")
            }
        }
    }
}

/// Runs the parsed command line and returns the process exit code.
pub fn run(cli: Cli) -> ExitCode {
    run_with(cli, embedded::migrations()).into()
}

/// [`run`] over any validated set. `server` passes only its embedded one; the integration tests
/// pass generated sets (a release that is not this build) through this same code.
pub fn run_with(cli: Cli, set: &'static MigrationSet) -> Exit {
    match cli.command {
        Some(Command::Healthcheck { ready, timeout }) => {
            return healthcheck(&cli.config_dir, ready, timeout);
        }
        Some(Command::Migrate(MigrateArgs {
            json,
            command: MigrateCommand::Lint { dir, config },
        })) => {
            // No database and no secrets needed: a configuration that is incomplete here (say,
            // production without DATABASE_URL in a build step) still has its lock_timeout.
            let lock_timeout_off = match Settings::load(&cli.config_dir) {
                Ok(settings) => settings.migrations.lock_timeout.is_zero(),
                Err(e) => {
                    eprintln!(
                        "server: note: {}; linting with migrations.lock_timeout from the files in {}",
                        AppError::from(e),
                        cli.config_dir.display()
                    );
                    lint_cmd::lock_timeout_off_in_files(&cli.config_dir)
                }
            };
            return lint_cmd::run(lock_timeout_off, dir.as_deref(), config.as_deref(), json);
        }
        _ => {}
    }
    let settings = match Settings::load(&cli.config_dir) {
        Ok(settings) => settings,
        Err(e) => {
            // No logger yet (its format is configuration): one plain line on stderr.
            eprintln!("server: {}", AppError::from(e));
            return Exit::Config;
        }
    };
    if cli.migrate_only && cli.command.is_some() {
        eprintln!("server: --migrate-only takes no command");
        return Exit::Usage;
    }
    let op = match cli.command {
        Some(Command::Config) => {
            print!("{}", settings.to_masked_toml());
            return Exit::Success;
        }
        Some(Command::Migrate(args)) => Some((args.command.into_op(), args.json)),
        Some(Command::Healthcheck { .. }) | None => None,
    };

    let telemetry = telemetry::init(&settings);
    // One thread is plenty for everything but serving, and starts faster.
    let runtime = if op.is_some() || cli.migrate_only {
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
            match op {
                Some((op, json)) => ops::run(&settings, set, op, json).await,
                None if cli.migrate_only => {
                    app::pre_serve_with(&settings, set, app::expected_snapshot(set))
                        .await
                        .map(|_| Exit::Success)
                }
                None => app::serve_with(&settings, set)
                    .await
                    .map(|()| Exit::Success),
            }
        }),
        Err(e) => Err(AppError::Runtime(e)),
    };
    let exit = match result {
        Ok(code) => code,
        Err(e) => {
            // The stage has logged "Migration failed: …"; other failures are logged here.
            if !matches!(e, AppError::Database(_) | AppError::Migrate(_)) {
                tracing::error!("{e}");
            }
            Exit::from(&e)
        }
    };
    // Outside the runtime, which is gone by now: the flush blocks.
    telemetry.shutdown();
    exit
}

/// `server healthcheck`: exit 0 when the local server answers 2xx, 1 otherwise (Docker's
/// HEALTHCHECK reads only 0 and 1, so a bad configuration is 1 here too).
fn healthcheck(config_dir: &std::path::Path, ready: bool, timeout: Duration) -> Exit {
    let path = if ready {
        "/health/ready"
    } else {
        "/health/live"
    };
    let settings = match Settings::load(config_dir) {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("unhealthy: {}", AppError::from(e));
            return Exit::Failure;
        }
    };
    let addr = http::probe::local_addr(&settings.server.host, settings.server.port);
    let probe = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
        .and_then(|rt| {
            rt.block_on(http::probe::get(&addr, path, timeout))
                .map_err(|e| e.to_string())
        });
    match probe {
        Ok(status) => {
            println!("healthy: {addr}{path} answered {status}");
            Exit::Success
        }
        Err(e) => {
            eprintln!("unhealthy: {e}");
            Exit::Failure
        }
    }
}
