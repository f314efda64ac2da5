//! `server migrate …`: the operator's commands over the embedded set and the bookkeeping table.
//!
//! Each command connects like the pre-serve stage (retries, the migration session's guards),
//! asks the engine, and prints a view. Commands that change the database do it through the
//! engine, under its lock; reading ones take no lock.

use clap::{Args, Subcommand};
use sqlx::Connection;

use super::ctx::Ctx;
use super::output::Output;
use super::{apply, compat, history, lint, repair, rollback, schema, status};
use crate::app;
use crate::config::Settings;
use crate::error::{AppError, Exit};
use crate::migrate::MigrationSet;

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
    #[command(flatten)]
    Db(DbCommand),
    /// The migration safety lint (the build's): dangerous DDL in the embedded set, or in the
    /// `.sql` files of DIR. Needs no database. Exit 0 without a deny finding, 10 with one.
    Lint(lint::LintArgs),
}

/// The commands that talk to the database.
#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Applied and embedded versions, pending list, dirty / in-progress / checksum-mismatch /
    /// unknown flags, and who holds the migration lock. Exit 0 up to date, 8 pending or a
    /// migration in progress, 6 dirty or mismatched.
    Status,
    /// Every applied migration: version, description, installed_on, execution time, checksum.
    History(history::HistoryArgs),
    /// One migration: description, state, embedded vs applied checksum, up and down SQL.
    Show(history::ShowArgs),
    /// Apply pending migrations (all, or up to --to) under the migration lock.
    Apply(apply::ApplyArgs),
    /// Revert, newest first, every applied migration newer than VERSION with its embedded down
    /// SQL. VERSION is 0 (revert all) or an applied or embedded version; anything else is
    /// refused (exit 9). Changes nothing if a needed down migration is missing.
    Rollback(rollback::RollbackArgs),
    /// Connectivity, checksums, nothing pending, nothing dirty, unknown versions, drift: each
    /// `ok`, `FAIL`, or `WARN` (a finding the policy reports, e.g. drift under on_drift =
    /// "warn"). Exit 0 only when none fails.
    Verify,
    /// Leave a dirty state (a `success = false` row) after fixing the schema by hand.
    ///
    /// Without a flag (a look, exit 0): shows the row, the SQL that ran, the failing statement,
    /// the lock's holder, INVALID indexes with their definitions and what to check, and changes
    /// nothing. With --mark-applied or --mark-reverted and --yes: under the migration lock,
    /// reads the row again and records the decision only if it is unchanged (else exit 9: the
    /// migration finished meanwhile).
    Repair(repair::RepairArgs),
    /// Print the database's schema as deterministic text; `--write FILE` writes it, `--check FILE`
    /// compares a committed snapshot with it (exit 11 with a diff when stale). `--fresh` reads a
    /// scratch database migrated with the embedded set instead (needs CREATEDB).
    Snapshot(schema::SnapshotArgs),
    /// Compare the database's schema with the embedded snapshot of the newest migration: exit 0
    /// clean, 11 drift (every difference named), 9 not comparable (pending, dirty or newer).
    Drift,
    /// Round-trip every migration (up, down, up) on a scratch database and compare the result
    /// with the embedded snapshot: exit 0 pass, 11 a down that does not restore the schema or a
    /// result that differs from the snapshot.
    Test(schema::TestArgs),
    /// Would the embedded migrations break a release? Applies them to a scratch database and
    /// describes (never executes) every query of the releases recorded as serving
    /// (`--from-database`, the default) or of `.sqlx/` directories (`--queries DIR`), comparing
    /// parameter and result column types and nullability: exit 0 compatible, 14 a break (each
    /// named: release, query, cause).
    Compat(compat::CompatArgs),
}

/// Connects, runs one command, closes the session. `Ok` carries the exit code of outcomes that
/// are not failures (pending migrations, a refused confirmation).
pub async fn exec(
    settings: &Settings,
    set: &MigrationSet,
    command: DbCommand,
    out: Output,
) -> Result<Exit, AppError> {
    let mut ctx = Ctx {
        settings,
        migrator: app::migrator(settings, set),
        conn: app::migration_session(settings).await?,
        out,
    };
    let result = match command {
        DbCommand::Status => status::status(&mut ctx).await,
        DbCommand::Verify => status::verify(&mut ctx).await,
        DbCommand::History(args) => history::history(&mut ctx, args).await,
        DbCommand::Show(args) => history::show(&mut ctx, args).await,
        DbCommand::Apply(args) => apply::exec(&mut ctx, args).await,
        DbCommand::Rollback(args) => rollback::exec(&mut ctx, args).await,
        DbCommand::Repair(args) => repair::exec(&mut ctx, args).await,
        DbCommand::Snapshot(args) => schema::snapshot(&mut ctx, args).await,
        DbCommand::Drift => schema::drift(&mut ctx).await,
        DbCommand::Test(args) => schema::test(&mut ctx, args).await,
        DbCommand::Compat(args) => compat::exec(&mut ctx, args).await,
    };
    let _ = ctx.conn.close().await;
    result
}
