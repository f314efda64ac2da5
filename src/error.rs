//! Why `server` stops, and the one mapping from that to an exit code.
//!
//! Every command returns `Result<Exit, AppError>`: `Ok` carries outcomes that are not failures
//! (pending migrations, a refused confirmation), `Err` a failure. Library code returns its own
//! `thiserror` enums (`ConfigError`, `DbError`, `MigrateError`, …), which convert into
//! [`AppError`]. Only `cli::run_with` reports an `AppError` (one line on stderr, through the
//! logger once it exists), so each failure is reported exactly once.

use std::process::ExitCode;

use crate::config::ConfigError;
use crate::db::DbError;
use crate::migrate::{MigrateError, Verdict};
use crate::monitoring::MetricsError;

/// Why `server` stopped with a failure; [`Exit::from`] maps it to an exit code.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("configuration error: {0}")]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Database(#[from] DbError),
    #[error(transparent)]
    Migrate(#[from] MigrateError),
    /// A failure of the pre-serve stage (connect, apply, verify), named in the words the
    /// operations guide tells people to watch for. Its exit code is its cause's.
    #[error("Migration failed: {0}")]
    Stage(Box<AppError>),
    #[error("HTTP server: {0}")]
    Serve(std::io::Error),
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    /// A file or value named on the command line that cannot be used (exit 2).
    #[error("{0}")]
    Input(String),
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    /// The pending migrations break a release still serving, or that could not be checked
    /// under `migrations.on_incompatible = "error"` (`crate::compat::gate`); nothing applied.
    #[error("{0}")]
    Incompatible(String),
}

impl From<crate::compat::gate::GateError> for AppError {
    fn from(e: crate::compat::gate::GateError) -> Self {
        match e {
            crate::compat::gate::GateError::Migrate(m) => AppError::Migrate(m),
            other => AppError::Incompatible(other.to_string()),
        }
    }
}

/// Exit codes of `server`, stable for scripts and deploy hooks. The README lists them.
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
    /// Database unreachable after the configured retries (the pre-serve stage's reruns after a
    /// lost connection included), refused the credentials, or lost under a command.
    DatabaseUnreachable = 4,
    /// A migration's SQL (or a bookkeeping statement) failed: rolled back when transactional; a
    /// `-- no-transaction` one is not rolled back and leaves a dirty row, also when a lost
    /// connection cut it.
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
    /// A schema that breaks a release's queries: `migrate compat` found a break, or the
    /// pre-deploy refused pending migrations that break a release still serving (or could not
    /// check them under `on_incompatible = "error"`). Nothing was applied.
    Incompatible = 14,
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
            AppError::Migrate(m) => Exit::from(m),
            AppError::Stage(cause) => Exit::from(&**cause),
            AppError::Input(_) => Exit::Usage,
            AppError::Incompatible(_) => Exit::Incompatible,
            AppError::Serve(_) | AppError::Runtime(_) | AppError::Io(..) | AppError::Metrics(_) => {
                Exit::Failure
            }
        }
    }
}

impl From<&MigrateError> for Exit {
    fn from(e: &MigrateError) -> Self {
        match e {
            MigrateError::Database { .. }
            | MigrateError::Failed { .. }
            | MigrateError::VerifyFailed(_) => Exit::MigrationFailed,
            MigrateError::ChecksumMismatch { .. }
            | MigrateError::Dirty { .. }
            | MigrateError::UnknownApplied { .. }
            | MigrateError::OutOfOrder { .. } => Exit::Integrity,
            MigrateError::ConnectionLost { .. } => Exit::DatabaseUnreachable,
            MigrateError::LockTimeout { .. } => Exit::LockTimeout,
            MigrateError::LockNotAvailable { .. } => Exit::LockNotAvailable,
            MigrateError::PooledSession { .. } => Exit::PooledSession,
            MigrateError::UnknownTarget(_)
            | MigrateError::UnknownRollbackTarget(_)
            | MigrateError::NotEmptyDatabase
            | MigrateError::RepairStale { .. }
            | MigrateError::InProgress { .. }
            | MigrateError::NoDownMigration { .. } => Exit::Refused,
        }
    }
}

/// `migrate status` and `verify`: 0 up to date, 8 pending or in progress, 6 needs a person.
impl From<Verdict> for Exit {
    fn from(v: Verdict) -> Self {
        match v {
            Verdict::UpToDate => Exit::Success,
            Verdict::Pending | Verdict::InProgress => Exit::Pending,
            Verdict::NeedsAttention => Exit::Integrity,
        }
    }
}
