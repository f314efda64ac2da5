//! Status, apply and verify: the pre-serve stage.
//!
//! The common case (nothing pending) costs one query and takes no lock. Only when something is
//! pending is the lock taken, and the table re-read under it, because another replica may have
//! done the work while this one waited.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sqlx::PgConnection;

use super::history::{self, AppliedMigration};
use super::{MigrateError, Migration, MigrationSet, lock};

/// What to do when the database has applied versions this binary does not embed (typically
/// after rolling a deploy back).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnknownPolicy {
    /// Log a warning, report it in status and health, and go on.
    Warn,
    /// Refuse to go on.
    Error,
}

/// Knobs of a run.
#[derive(Debug, Clone)]
pub struct MigrateOptions {
    /// Longest wait for another runner's lock.
    pub lock_wait_timeout: Duration,
    /// How often the holder is logged while waiting.
    pub lock_log_interval: Duration,
    pub on_unknown_applied: UnknownPolicy,
    pub allow_out_of_order: bool,
}

impl Default for MigrateOptions {
    fn default() -> Self {
        Self {
            lock_wait_timeout: Duration::from_secs(300),
            lock_log_interval: Duration::from_secs(5),
            on_unknown_applied: UnknownPolicy::Warn,
            allow_out_of_order: false,
        }
    }
}

/// The embedded set compared with `_sqlx_migrations`.
#[derive(Debug, Clone)]
pub struct Status {
    /// Whether `_sqlx_migrations` exists.
    pub table_exists: bool,
    /// Every row, by version.
    pub applied: Vec<AppliedMigration>,
    /// Embedded versions with no row, in order.
    pub pending: Vec<i64>,
    /// Versions whose row checksum differs from the embedded file.
    pub mismatched: Vec<i64>,
    /// Versions recorded with `success = false`.
    pub dirty: Vec<i64>,
    /// Applied versions this binary does not embed.
    pub unknown: Vec<i64>,
}

impl Status {
    pub fn compare(set: &MigrationSet, rows: Option<Vec<AppliedMigration>>) -> Self {
        let table_exists = rows.is_some();
        let applied = rows.unwrap_or_default();
        let by_version: BTreeMap<i64, &AppliedMigration> =
            applied.iter().map(|r| (r.version, r)).collect();
        let pending = set
            .iter()
            .filter(|m| !by_version.contains_key(&m.version))
            .map(|m| m.version)
            .collect();
        let mismatched = set
            .iter()
            .filter(|m| {
                by_version
                    .get(&m.version)
                    .is_some_and(|r| r.checksum != m.up.checksum)
            })
            .map(|m| m.version)
            .collect();
        let dirty = applied
            .iter()
            .filter(|r| !r.success)
            .map(|r| r.version)
            .collect();
        let unknown = applied
            .iter()
            .filter(|r| set.get(r.version).is_none())
            .map(|r| r.version)
            .collect();
        Self {
            table_exists,
            applied,
            pending,
            mismatched,
            dirty,
            unknown,
        }
    }

    /// Newest version recorded as successfully applied.
    pub fn newest_applied(&self) -> Option<i64> {
        self.applied
            .iter()
            .filter(|r| r.success)
            .map(|r| r.version)
            .max()
    }

    /// Every embedded migration applied with a matching checksum, nothing dirty.
    pub fn is_up_to_date(&self) -> bool {
        self.pending.is_empty() && self.mismatched.is_empty() && self.dirty.is_empty()
    }

    /// Dirty rows and edited files stop everything, before any lock is taken; unknown versions
    /// stop only under the strict policy.
    fn check_integrity(
        &self,
        set: &MigrationSet,
        opts: &MigrateOptions,
    ) -> Result<(), MigrateError> {
        if let Some(&version) = self.dirty.first() {
            let description = self
                .applied
                .iter()
                .find(|r| r.version == version)
                .map(|r| r.description.clone())
                .unwrap_or_default();
            return Err(MigrateError::Dirty {
                version,
                description,
            });
        }
        if let Some(&version) = self.mismatched.first() {
            let embedded = set.get(version).expect("mismatched versions are embedded");
            let applied = self
                .applied
                .iter()
                .find(|r| r.version == version)
                .expect("mismatched versions are applied");
            return Err(MigrateError::ChecksumMismatch {
                version,
                file: embedded.up.file.clone(),
                applied: history::hex(&applied.checksum[..applied.checksum.len().min(8)]),
                embedded: history::hex(&embedded.up.checksum[..8]),
            });
        }
        if !self.unknown.is_empty() {
            match opts.on_unknown_applied {
                UnknownPolicy::Error => {
                    return Err(MigrateError::UnknownApplied {
                        versions: self.unknown.clone(),
                    });
                }
                UnknownPolicy::Warn => tracing::warn!(
                    versions = ?self.unknown,
                    "Database has applied migration(s) this binary does not embed (a newer release ran against it); serving anyway"
                ),
            }
        }
        Ok(())
    }

    fn check_order(&self, opts: &MigrateOptions) -> Result<(), MigrateError> {
        let Some(newest_applied) = self.newest_applied() else {
            return Ok(());
        };
        let older: Vec<i64> = self
            .pending
            .iter()
            .copied()
            .filter(|&v| v < newest_applied)
            .collect();
        if older.is_empty() || opts.allow_out_of_order {
            return Ok(());
        }
        Err(MigrateError::OutOfOrder {
            pending: older,
            newest_applied,
        })
    }
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct RunReport {
    /// Versions applied by this run, with how long each took.
    pub applied: Vec<(i64, Duration)>,
    /// Size of the embedded set.
    pub embedded: usize,
    /// Newest applied version at the end.
    pub newest: Option<i64>,
    /// Applied versions the binary does not embed (warned about).
    pub unknown: Vec<i64>,
    /// Whether the lock was taken.
    pub locked: bool,
    pub elapsed: Duration,
}

/// Applies a [`MigrationSet`] to one connection.
pub struct Migrator<'a> {
    set: &'a MigrationSet,
    opts: MigrateOptions,
}

impl<'a> Migrator<'a> {
    pub fn new(set: &'a MigrationSet, opts: MigrateOptions) -> Self {
        Self { set, opts }
    }

    /// Compares the table with the set. One query; no lock, no writes.
    pub async fn status(&self, conn: &mut PgConnection) -> Result<Status, MigrateError> {
        Ok(Status::compare(self.set, history::read(conn).await?))
    }

    /// The pre-serve stage: status, then (only if something is pending) lock, re-read, apply in
    /// order, verify, unlock.
    pub async fn run(&self, conn: &mut PgConnection) -> Result<RunReport, MigrateError> {
        let started = Instant::now();
        let status = self.status(conn).await?;
        status.check_integrity(self.set, &self.opts)?;
        if status.pending.is_empty() {
            return Ok(RunReport {
                applied: Vec::new(),
                embedded: self.set.len(),
                newest: status.newest_applied(),
                unknown: status.unknown,
                locked: false,
                elapsed: started.elapsed(),
            });
        }

        let key = lock::key_for(conn).await?;
        lock::acquire(
            conn,
            key,
            self.opts.lock_wait_timeout,
            self.opts.lock_log_interval,
        )
        .await?;
        let outcome = self.apply_locked(conn).await;
        // Release on every path; if the connection itself broke, the lock went with it.
        let released = lock::release(conn, key).await;
        let (applied, status) = outcome?;
        released?;
        Ok(RunReport {
            applied,
            embedded: self.set.len(),
            newest: status.newest_applied(),
            unknown: status.unknown,
            locked: true,
            elapsed: started.elapsed(),
        })
    }

    async fn apply_locked(
        &self,
        conn: &mut PgConnection,
    ) -> Result<(Vec<(i64, Duration)>, Status), MigrateError> {
        let mut status = self.status(conn).await?;
        if !status.table_exists {
            history::ensure_table(conn).await?;
        }
        status.check_integrity(self.set, &self.opts)?;
        status.check_order(&self.opts)?;

        let total = status.pending.len();
        let mut applied = Vec::with_capacity(total);
        for (i, &version) in status.pending.iter().enumerate() {
            let m = self
                .set
                .get(version)
                .expect("pending versions are embedded");
            tracing::info!(
                version,
                file = %m.up.file,
                no_tx = m.up.no_tx,
                "Applying migration {} of {total}: {version} {}",
                i + 1,
                m.description
            );
            let took = apply_one(conn, m).await?;
            tracing::info!(
                version,
                elapsed_ms = took.as_millis() as u64,
                "Applied migration {version}"
            );
            applied.push((version, took));
        }

        status = self.status(conn).await?;
        if !status.is_up_to_date() {
            return Err(MigrateError::VerifyFailed(format!(
                "pending {:?}, checksum mismatches {:?}, dirty {:?}",
                status.pending, status.mismatched, status.dirty
            )));
        }
        Ok((applied, status))
    }
}

/// Runs one migration with its bookkeeping: in one implicit transaction (one round trip), or,
/// for `-- no-transaction` files, between a committed `success = false` row and its flip.
async fn apply_one(conn: &mut PgConnection, m: &Migration) -> Result<Duration, MigrateError> {
    let started = Instant::now();
    let failed = |e: sqlx::Error, dirty: bool| MigrateError::Failed {
        version: m.version,
        file: m.up.file.clone(),
        message: history::describe_sql_error(&e, &m.up.sql),
        dirty,
    };
    if m.up.no_tx {
        history::insert_started(conn, m).await?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(m.up.sql.clone()))
            .execute(&mut *conn)
            .await
            .map_err(|e| failed(e, true))?;
        let took = started.elapsed();
        history::mark_succeeded(
            conn,
            m.version,
            i64::try_from(took.as_nanos()).unwrap_or(i64::MAX),
        )
        .await?;
        Ok(took)
    } else {
        sqlx::raw_sql(sqlx::AssertSqlSafe(history::transactional_batch(m)))
            .execute(&mut *conn)
            .await
            .map_err(|e| failed(e, false))?;
        Ok(started.elapsed())
    }
}
