//! Process exit codes: the one place errors become numbers. The README lists them.

use std::process::ExitCode;

use crate::app::AppError;
use crate::migrate::MigrateError;

/// Exit codes of `server`, stable for scripts and deploy hooks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    Success = 0,
    /// Anything not listed below (e.g. the port cannot be bound).
    Failure = 1,
    /// Bad command line (clap's own code).
    Usage = 2,
    /// Bad or missing configuration.
    Config = 3,
    /// Database unreachable after the configured retries, or refused the credentials.
    DatabaseUnreachable = 4,
    /// A migration's SQL (or its bookkeeping) failed: rolled back when transactional; a
    /// `-- no-transaction` one is not rolled back and leaves a dirty row.
    MigrationFailed = 5,
    /// Checksum mismatch, dirty database, unknown applied versions (strict), out-of-order.
    Integrity = 6,
    /// Timed out waiting for another runner's migration lock.
    LockTimeout = 7,
    /// `migrate status` / `migrate verify`: migrations are pending (nothing else wrong).
    Pending = 8,
    /// An operation refused to start: no confirmation, no down migration for a rollback, a
    /// version that is not embedded (or, for a rollback target, neither applied nor embedded),
    /// a dirty row that changed before `repair` could act, a plan asked for while a migration is
    /// in progress. Nothing was changed.
    Refused = 9,
    /// `migrate lint`: a finding of a rule set to deny (or a set that is not valid).
    LintDenied = 10,
    /// The schema differs from what is expected: drift from the embedded snapshot, a stale
    /// snapshot file (`snapshot --check`), or a down migration that does not restore it
    /// (`migrate test`).
    SchemaDiffers = 11,
    /// A migration could not take its table locks within `lock_timeout`, after the retries.
    LockNotAvailable = 12,
    /// The migration connection goes through a transaction-mode pooler, where the migration
    /// lock would not hold: refused before taking it, nothing changed (`DATABASE_MIGRATION_URL`).
    PooledSession = 13,
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> Self {
        ExitCode::from(e as u8)
    }
}

impl From<&AppError> for Exit {
    fn from(e: &AppError) -> Self {
        match e {
            AppError::Config(_) => Exit::Config,
            AppError::Database(_) => Exit::DatabaseUnreachable,
            AppError::Migrate(m) => match m {
                MigrateError::Database { .. }
                | MigrateError::Failed { .. }
                | MigrateError::VerifyFailed(_) => Exit::MigrationFailed,
                MigrateError::ChecksumMismatch { .. }
                | MigrateError::Dirty { .. }
                | MigrateError::UnknownApplied { .. }
                | MigrateError::OutOfOrder { .. } => Exit::Integrity,
                MigrateError::LockTimeout { .. } => Exit::LockTimeout,
                MigrateError::LockNotAvailable { .. } => Exit::LockNotAvailable,
                MigrateError::PooledSession { .. } => Exit::PooledSession,
                MigrateError::UnknownTarget(_)
                | MigrateError::UnknownRollbackTarget(_)
                | MigrateError::NotEmptyDatabase
                | MigrateError::RepairStale { .. }
                | MigrateError::InProgress { .. }
                | MigrateError::NoDownMigration { .. } => Exit::Refused,
            },
            AppError::Input(_) => Exit::Usage,
            AppError::Serve(_) | AppError::Runtime(_) | AppError::Io(..) | AppError::Metrics(_) => {
                Exit::Failure
            }
        }
    }
}
