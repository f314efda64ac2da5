//! What can go wrong while checking or applying migrations, one variant per thing an operator
//! acts on differently.

use std::time::Duration;

/// A migration run's failure. `Display` is one line that says what happened and what to do.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// A bookkeeping query failed (permissions, a full disk, …).
    #[error("database error while {action}: {}", error_text(.source))]
    Database {
        action: &'static str,
        #[source]
        source: sqlx::Error,
    },

    /// The connection failed under the run ([`crate::is_connection_lost`]), outside a
    /// `-- no-transaction` migration's SQL: a transactional migration in flight rolled back,
    /// unless its commit had landed, and a new status read shows which (as it shows the dirty
    /// row of a no-transaction migration whose bookkeeping was cut). The pre-serve stage
    /// reconnects and runs again from there. A no-transaction migration's SQL cut part-way is
    /// [`MigrateError::Failed`] instead (dirty): what it did is unknown.
    #[error("lost the database connection while {action}: {}", error_text(.source))]
    ConnectionLost {
        action: String,
        #[source]
        source: sqlx::Error,
    },

    /// The migration's SQL failed. A transactional migration was rolled back with its row; a
    /// `-- no-transaction` one was not: whatever it did stays, and its row is dirty.
    #[error("migration {version} (migrations/{file}) failed: {message}{}", if *.dirty {
        "; it ran outside a transaction and is recorded as dirty (success = false): finish or undo it by hand, then run `server migrate repair`"
    } else { "; rolled back, nothing recorded" })]
    Failed {
        version: i64,
        file: String,
        message: String,
        dirty: bool,
    },

    /// A transactional migration's `lock_timeout` expired on every attempt: another session held
    /// a conflicting lock. Rolled back each time; nothing recorded.
    #[error(
        "migration {version} ({file}) could not take its locks within lock_timeout in {attempts} \
         attempt(s): {message}; sessions holding table locks: {holders}; rolled back, nothing \
         recorded: run it again when they finish, or end them (pg_terminate_backend)"
    )]
    LockNotAvailable {
        version: i64,
        file: String,
        message: String,
        attempts: u32,
        holders: String,
    },

    /// An applied migration's recorded checksum differs from the embedded file.
    #[error(
        "migration {version} was applied with a different checksum: migrations/{file} was edited after it ran \
         (applied {applied}…, embedded {embedded}…); restore the file or add a new migration"
    )]
    ChecksumMismatch {
        version: i64,
        file: String,
        applied: String,
        embedded: String,
    },

    /// A row with `success = false`: a migration stopped part-way outside a transaction.
    #[error(
        "database is dirty: migration {version} ({description}) is recorded with success = false after \
         failing part-way; check its objects by hand, then run `server migrate repair`"
    )]
    Dirty { version: i64, description: String },

    /// A `success = false` row while a live session holds the migration lock: the migration is
    /// most likely still running. Reported by commands that do not wait for the lock.
    #[error(
        "migration {version} is still being applied: its row is success = false while {holder} holds the \
         migration lock; wait for it (`server migrate status`), then run this again; nothing was changed"
    )]
    InProgress { version: i64, holder: String },

    /// Another runner held the migration lock for longer than the configured wait.
    #[error(
        "timed out after {}s waiting for the migration lock (key {key}), held by {holder}; let \
         that session finish and run again; end it only if it is stuck (docs/operations.md, \
         \"The migration lock is held\": who it is decides)",
        .waited.as_secs()
    )]
    LockTimeout {
        key: i64,
        waited: Duration,
        holder: String,
    },

    /// Applied versions this binary does not embed, with `on_unknown_applied = "error"`.
    #[error(
        "database has applied migration(s) this binary does not embed: {versions:?} (a newer release ran \
         against it); deploy that release or set migrations.on_unknown_applied = \"warn\""
    )]
    UnknownApplied { versions: Vec<i64> },

    /// A pending version older than the newest applied one.
    #[error(
        "pending migration(s) {pending:?} are older than the newest applied migration {newest_applied}; \
         applying them out of order needs migrations.allow_out_of_order = true"
    )]
    OutOfOrder {
        pending: Vec<i64>,
        newest_applied: i64,
    },

    /// `apply --to` names a version this binary does not embed.
    #[error("version {0} is not an embedded migration; `server migrate status` lists them")]
    UnknownTarget(i64),

    /// `rollback` names a version that is neither 0 nor applied nor embedded (a typo would
    /// otherwise revert everything above it).
    #[error(
        "rollback target {0} is neither 0 nor a version that is applied or embedded; nothing was changed \
         (`server migrate history` lists the applied versions; `0` reverts them all)"
    )]
    UnknownRollbackTarget(i64),

    /// `migrate test` was given a database that already holds a migration table or tables:
    /// its round trip would judge someone else's schema. Nothing ran.
    #[error(
        "`migrate test` needs an empty database (no migration table, no tables); nothing was run: \
         give it a new one with --database-url, or let it create a scratch database"
    )]
    NotEmptyDatabase,

    /// The dirty row `repair` was asked about changed before it could act (typically: the
    /// migration was still running and has finished); nothing was changed.
    #[error(
        "migration {version} changed while `repair` waited for the migration lock: it was {seen}, it is now \
         {now}; nothing was changed (run `server migrate repair` again to see the current state)"
    )]
    RepairStale {
        version: i64,
        seen: String,
        now: String,
    },

    /// A rollback would need down migrations this binary does not have; nothing was changed.
    #[error(
        "cannot roll back: applied migration(s) {versions:?} have no embedded down migration \
         (simple migrations, or versions this binary does not embed); nothing was changed"
    )]
    NoDownMigration { versions: Vec<i64> },

    /// The migration connection is not a session of its own: a transaction-mode pooler hands its
    /// PostgreSQL backend to other clients between transactions, so the session advisory lock
    /// would not keep other runners out. Found before the lock was taken; nothing was changed.
    #[error(
        "the migration connection goes through a transaction-mode connection pooler ({evidence}), so the \
         migration lock (a session advisory lock) would not keep other runners out; nothing was changed: \
         set DATABASE_MIGRATION_URL to a direct connection to PostgreSQL, not through the pooler \
         (DATABASE_URL may stay on it)"
    )]
    PooledSession { evidence: String },

    /// After applying, the table does not show every embedded migration applied and matching.
    #[error("verification after applying failed: {0}")]
    VerifyFailed(String),
}

/// A sqlx error as one line, without the source locations sqlx appends: `at line N` of
/// PostgreSQL's errors is the line of PostgreSQL's own C source that raised it, and a protocol
/// error ends with sqlx's module and line (`(sqlx_postgres::connection::tls:95)`); both send
/// readers to files that are not theirs.
pub fn error_text(error: &sqlx::Error) -> String {
    let text = match error {
        sqlx::Error::Database(db) => match db.code() {
            Some(code) => format!("{} (SQLSTATE {code})", db.message()),
            None => db.message().to_string(),
        },
        other => {
            let text = other.to_string();
            match text.rsplit_once(" (") {
                Some((message, location)) if is_rust_location(location) => message.to_string(),
                _ => text,
            }
        }
    };
    text.replace('\n', " ")
}

/// `sqlx_postgres::connection::tls:95)`: a Rust module path and a line, closing a message.
fn is_rust_location(tail: &str) -> bool {
    tail.strip_suffix(')')
        .and_then(|t| t.rsplit_once(':'))
        .is_some_and(|(path, line)| {
            path.contains("::")
                && path
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_:".contains(&b))
                && !line.is_empty()
                && line.bytes().all(|b| b.is_ascii_digit())
        })
}

impl MigrateError {
    /// A bookkeeping query's failure: [`MigrateError::ConnectionLost`] when the connection went,
    /// else [`MigrateError::Database`].
    pub fn db(action: &'static str) -> impl FnOnce(sqlx::Error) -> Self {
        move |source| {
            if crate::lost::is_connection_lost(&source) {
                Self::ConnectionLost {
                    action: action.to_string(),
                    source,
                }
            } else {
                Self::Database { action, source }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::error_text;

    #[test]
    fn error_text_drops_sqlx_source_locations() {
        let protocol = sqlx::Error::Protocol(
            "unexpected response from SSLRequest: 0x48 (sqlx_postgres::connection::tls:95)".into(),
        );
        assert_eq!(
            error_text(&protocol),
            "encountered unexpected or invalid data: unexpected response from SSLRequest: 0x48"
        );
        // A parenthesis that is not a Rust location stays.
        let other = sqlx::Error::Protocol("bad message (type 0x48)".into());
        assert!(error_text(&other).ends_with("(type 0x48)"));
    }
}
