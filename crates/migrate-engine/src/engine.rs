//! Status, apply and verify: the pre-serve stage.
//!
//! The common case (nothing pending) costs one query and takes no lock. Only when something is
//! pending is the lock taken, and the table re-read under it, because another replica may have
//! done the work while this one waited.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::PgConnection;
use tracing::Instrument;

use crate::dirty::{Direction, DirtyReport, InvalidIndex, describe_row};
pub use crate::history::RepairAction;
use crate::history::{self, AppliedMigration};
use crate::snapshot::{Drift, Snapshot};
use crate::status::{Policy, Status, UnknownAppliedPolicy, Verdict};
pub use crate::step::Step;
use crate::step::{apply_one, revert_one};
use migrate_source::manifest::Migration;

use crate::error::MigrateError;
use crate::lock;
use crate::observer::{Observer, Quiet};
use crate::set::MigrationSet;

/// Knobs of a run.
#[derive(Debug, Clone)]
pub struct MigrateOptions {
    /// Longest wait for another runner's lock.
    pub lock_wait_timeout: Duration,
    /// How often the holder is logged while waiting.
    pub lock_log_interval: Duration,
    /// How statuses and drift are judged.
    pub policy: Policy,
    pub allow_out_of_order: bool,
    /// Extra attempts of a transactional migration whose `lock_timeout` expired.
    pub lock_retries: u32,
    /// Wait before the first retry; doubled for each next one (at most 30 s).
    pub lock_retry_backoff: Duration,
    /// Before the lock is taken, check with a second connection from this that the migration
    /// connection is a session of its own, not a transaction-mode pooler's
    /// ([`lock::check_session`]). `None`: no check (a connection the caller knows is direct).
    pub session_check: Option<lock::Connector>,
    /// Told of lock waits and given each migration's span ([`Observer`]); [`Quiet`] by default.
    pub observer: Arc<dyn Observer>,
}

impl Default for MigrateOptions {
    fn default() -> Self {
        Self {
            lock_wait_timeout: Duration::from_secs(300),
            lock_log_interval: Duration::from_secs(5),
            policy: Policy::default(),
            allow_out_of_order: false,
            lock_retries: 3,
            lock_retry_backoff: Duration::from_secs(1),
            session_check: None,
            observer: Arc::new(Quiet),
        }
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

    /// This migrator for a database no other runner can reach (a scratch database a command
    /// created for itself, `migrate test`'s empty target): no session check before the lock,
    /// which there excludes nobody.
    pub fn for_private_database(&self) -> Self {
        Self::new(
            self.set,
            MigrateOptions {
                session_check: None,
                ..self.opts.clone()
            },
        )
    }

    pub fn set(&self) -> &'a MigrationSet {
        self.set
    }

    /// Lets `apply` run pending versions older than the newest applied one.
    pub fn allow_out_of_order(&mut self) {
        self.opts.allow_out_of_order = true;
    }

    /// How this migrator judges statuses and drift.
    pub fn policy(&self) -> &Policy {
        &self.opts.policy
    }

    /// A migrator that only reads and judges (`/health`): `policy` decides, nothing runs.
    pub fn judge(set: &'a MigrationSet, policy: Policy) -> Self {
        Self::new(
            set,
            MigrateOptions {
                policy,
                ..MigrateOptions::default()
            },
        )
    }

    /// [`Migrator::status`] and what it means under this migrator's policy: the verdict the
    /// pre-serve stage, `migrate status`/`verify` and readiness share. One query; no lock.
    pub async fn verdict(
        &self,
        conn: &mut PgConnection,
    ) -> Result<(Status, Verdict), MigrateError> {
        let status = self.status(conn).await?;
        let verdict = self.opts.policy.verdict(&status);
        Ok((status, verdict))
    }

    /// /// Compares the table with the set. One query; no lock, no writes.
    pub async fn status(&self, conn: &mut PgConnection) -> Result<Status, MigrateError> {
        Ok(Status::compare(
            self.set,
            history::read(conn, &self.set.bookkeeping().table).await?,
        ))
    }

    /// The live schema against the set's snapshot (of its newest version), when the
    /// bookkeeping says the database is at that version, leaving out what the policy ignores.
    /// Two queries, no lock, no writes; none for a set without a snapshot.
    pub async fn drift(&self, conn: &mut PgConnection) -> Result<Drift, MigrateError> {
        let Some(expected) = self.set.snapshot() else {
            return Ok(Drift::no_snapshot());
        };
        let status = self.status(conn).await?;
        let actual = Snapshot::take(conn, &self.set.bookkeeping().table).await?;
        Ok(self.opts.policy.judge_drift(&status, expected, &actual))
    }

    /// [`Migrator::status`] plus who holds the migration lock, so that a dirty row being applied
    /// right now reads as in progress. Two more queries; no lock, no writes.
    pub async fn inspect(&self, conn: &mut PgConnection) -> Result<Status, MigrateError> {
        let mut status = self.status(conn).await?;
        let key = lock::key_for(conn).await?;
        let holder = lock::holder(conn, key).await?;
        if holder.is_none() && !status.dirty.is_empty() {
            // A runner flips its row before it releases the lock: it may have finished between
            // the two reads. Rows read after seeing the lock free are final.
            status = self.status(conn).await?;
        }
        status.holder = holder;
        Ok(status)
    }

    /// The pre-serve stage: apply everything pending.
    pub async fn run(&self, conn: &mut PgConnection) -> Result<RunReport, MigrateError> {
        self.apply(conn, None).await
    }

    /// What `apply` would run, in order, given a status: refuses a dirty or edited database,
    /// unknown versions under the strict policy, out-of-order versions unless allowed, and a
    /// target that is not an embedded version.
    pub fn plan_apply(
        &self,
        status: &Status,
        to: Option<i64>,
    ) -> Result<Vec<Step<'a>>, MigrateError> {
        if let Some(to) = to
            && self.set.get(to).is_none()
        {
            return Err(MigrateError::UnknownTarget(to));
        }
        status.check_integrity(self.set, self.opts.policy.on_unknown_applied)?;
        status.check_order(self.opts.allow_out_of_order)?;
        Ok(status
            .pending
            .iter()
            .filter(|&&v| to.is_none_or(|to| v <= to))
            .filter_map(|&v| self.set.get(v))
            .map(|m| Step {
                migration: m,
                script: &m.up,
            })
            .collect())
    }

    /// Status, then (only if something is pending up to `to`) lock, re-read, apply in order,
    /// verify, unlock.
    pub async fn apply(
        &self,
        conn: &mut PgConnection,
        to: Option<i64>,
    ) -> Result<RunReport, MigrateError> {
        let started = Instant::now();
        let status = self.status(conn).await?;
        if let Some(version) = status.dirty_row(None).map(|r| r.version) {
            // A `-- no-transaction` migration's row is `success = false` while it runs, under the
            // lock. Only under the lock is a dirty row known to be abandoned: wait for it
            // (bounded, holder logged), then decide on a fresh read.
            tracing::info!(target: "agent_backend::migrate::engine",
                version,
                "Migration {version} is recorded as started and not finished (success = false); \
                 taking the migration lock to see whether a live runner is still applying it"
            );
        } else if self.plan_apply(&status, to)?.is_empty() {
            return Ok(RunReport {
                applied: Vec::new(),
                embedded: self.set.len(),
                newest: status.newest_applied(),
                unknown: status.unknown,
                locked: false,
                elapsed: started.elapsed(),
            });
        }
        let (applied, status) = self
            .locked(conn, async |conn: &mut PgConnection| {
                self.apply_locked(conn, to).await
            })
            .await?;
        Ok(RunReport {
            applied,
            embedded: self.set.len(),
            newest: status.newest_applied(),
            unknown: status.unknown,
            locked: true,
            elapsed: started.elapsed(),
        })
    }

    /// Runs `work` holding the migration lock, releasing it on every path (if the connection
    /// itself broke, the lock went with it).
    async fn locked<T>(
        &self,
        conn: &mut PgConnection,
        work: impl AsyncFnOnce(&mut PgConnection) -> Result<T, MigrateError>,
    ) -> Result<T, MigrateError> {
        if let Some(connect) = &self.opts.session_check {
            lock::check_session(conn, connect).await?;
        }
        let key = lock::key_for(conn).await?;
        lock::acquire(
            conn,
            key,
            self.opts.lock_wait_timeout,
            self.opts.lock_log_interval,
            &*self.opts.observer,
        )
        .await?;
        let outcome = async {
            // PostgreSQL 14+: notice a vanished runner (kill -9, lost network) while a
            // statement runs, so its transaction and the lock go within a second instead of
            // when the statement would have finished. In the same round trip: the backend
            // that runs this statement holds the lock just taken (a session does; a pooler
            // may have moved the connection).
            let rows = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "SELECT set_config('client_connection_check_interval', '1s', false) \
                 WHERE current_setting('server_version_num')::int >= 140000; {}",
                lock::held_here_sql(key)
            )))
            .fetch_all(&mut *conn)
            .await
            .map_err(MigrateError::db("setting client_connection_check_interval"))?;
            let held = rows
                .last()
                .and_then(|row| sqlx::Row::try_get::<bool, _>(row, 0).ok())
                .unwrap_or(false);
            if !held {
                return Err(MigrateError::PooledSession {
                    evidence: "the migration lock it had just taken is not held by the PostgreSQL \
                               backend that ran its next statement"
                        .to_string(),
                });
            }
            work(&mut *conn).await
        }
        .await;
        let released = lock::release(conn, key).await;
        let value = outcome?;
        released?;
        Ok(value)
    }

    /// [`apply_one`], retried whole (it rolled back) while its `lock_timeout` expires, with
    /// backoff, naming the sessions that hold table locks (the strong_migrations pattern). A
    /// non-transactional migration is never retried: it may have done part of its work.
    async fn apply_with_retries(
        &self,
        conn: &mut PgConnection,
        m: &Migration,
    ) -> Result<Duration, MigrateError> {
        let table = &self.set.bookkeeping().table;
        let mut backoff = self.opts.lock_retry_backoff;
        let mut attempt = 1;
        loop {
            match apply_one(conn, table, m).await {
                Err(MigrateError::LockNotAvailable {
                    version,
                    file,
                    message,
                    ..
                }) => {
                    let holders = lock::table_lock_holders(conn).await;
                    if attempt > self.opts.lock_retries {
                        return Err(MigrateError::LockNotAvailable {
                            version,
                            file,
                            message,
                            attempts: attempt,
                            holders,
                        });
                    }
                    tracing::warn!(target: "agent_backend::migrate::engine",
                        version,
                        attempt,
                        "Migration {version} could not take its locks within lock_timeout \
                         (attempt {attempt} of {}); sessions holding table locks: {holders}; \
                         retrying in {} ms",
                        self.opts.lock_retries + 1,
                        backoff.as_millis()
                    );
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn apply_locked(
        &self,
        conn: &mut PgConnection,
        to: Option<i64>,
    ) -> Result<(Vec<(i64, Duration)>, Status), MigrateError> {
        let status = self.status(conn).await?;
        if !status.table_exists || !self.set.bookkeeping().create_schemas.is_empty() {
            history::ensure_table(conn, self.set.bookkeeping()).await?;
        }
        let plan = self.plan_apply(&status, to)?;
        let total = plan.len();
        if let (Some(first), Some(last)) = (plan.first(), plan.last()) {
            tracing::info!(target: "agent_backend::migrate::engine",
                pending = total,
                "Applying {total} migration(s): {} to {}",
                first.migration.version,
                last.migration.version
            );
        }
        let mut applied = Vec::with_capacity(total);
        for (i, Step { migration: m, .. }) in plan.into_iter().enumerate() {
            // At info, a migration is one line, when it has committed (below): the plan's line
            // and the last "Applied" line say which one is running.
            tracing::debug!(target: "agent_backend::migrate::engine",
                version = m.version,
                file = %m.up.file,
                no_tx = m.up.no_tx,
                "Applying migration {} of {total}: {} {}",
                i + 1,
                m.version,
                m.description
            );
            let took = self
                .apply_with_retries(conn, m)
                .instrument(self.opts.observer.migration_span(m))
                .await?;
            tracing::info!(target: "agent_backend::migrate::engine",
                version = m.version,
                elapsed_ms = took.as_millis() as u64,
                "Applied migration {} in {} ms",
                m.version,
                took.as_millis()
            );
            applied.push((m.version, took));
        }

        let status = self.status(conn).await?;
        let missing: Vec<i64> = status
            .pending
            .iter()
            .copied()
            .filter(|&v| to.is_none_or(|to| v <= to))
            .collect();
        if !missing.is_empty() || !status.mismatched.is_empty() || !status.dirty.is_empty() {
            return Err(MigrateError::VerifyFailed(format!(
                "pending {missing:?}, checksum mismatches {:?}, dirty {:?}",
                status.mismatched, status.dirty
            )));
        }
        Ok((applied, status))
    }

    /// What `rollback <target>` would revert, newest first: every applied version above
    /// `target`. Refuses (changing nothing) if `target` is neither 0 nor applied nor embedded,
    /// if any of them has no embedded down migration, if the database is dirty, or if an
    /// applied file was edited.
    pub fn plan_rollback(
        &self,
        status: &Status,
        target: i64,
    ) -> Result<Vec<Step<'a>>, MigrateError> {
        if target != 0
            && self.set.get(target).is_none()
            && !status.applied.iter().any(|r| r.version == target)
        {
            return Err(MigrateError::UnknownRollbackTarget(target));
        }
        // Reverting is how unknown versions' effects are undone: never refused for them.
        status.check_integrity(self.set, UnknownAppliedPolicy::Warn)?;
        let mut versions: Vec<i64> = status
            .applied
            .iter()
            .filter(|r| r.version > target)
            .map(|r| r.version)
            .collect();
        versions.sort_unstable_by(|a, b| b.cmp(a));
        let steps: Vec<Option<Step<'a>>> = versions
            .iter()
            .map(|&v| {
                let migration = self.set.get(v)?;
                let script = migration.down.as_ref()?;
                Some(Step { migration, script })
            })
            .collect();
        let missing: Vec<i64> = versions
            .iter()
            .zip(&steps)
            .filter(|(_, step)| step.is_none())
            .map(|(&v, _)| v)
            .collect();
        if !missing.is_empty() {
            return Err(MigrateError::NoDownMigration { versions: missing });
        }
        Ok(steps.into_iter().flatten().collect())
    }

    /// Reverts every applied migration newer than `target`, newest first, under the lock (an
    /// empty plan read under it reverts nothing).
    pub async fn rollback(
        &self,
        conn: &mut PgConnection,
        target: i64,
    ) -> Result<Vec<(i64, Duration)>, MigrateError> {
        let status = self.status(conn).await?;
        // A dirty row is decided under the lock, as in `apply`.
        if status.dirty_row(None).is_none() && self.plan_rollback(&status, target)?.is_empty() {
            return Ok(Vec::new());
        }
        self.locked(conn, async |conn: &mut PgConnection| {
            let status = self.status(conn).await?;
            let plan = self.plan_rollback(&status, target)?;
            let total = plan.len();
            let mut reverted = Vec::with_capacity(total);
            for (i, step) in plan.into_iter().enumerate() {
                let m = step.migration;
                tracing::info!(target: "agent_backend::migrate::engine",
                    version = m.version,
                    "Reverting migration {} of {total}: {} {}",
                    i + 1,
                    m.version,
                    m.description
                );
                let took = revert_one(conn, &self.set.bookkeeping().table, step).await?;
                reverted.push((m.version, took));
            }
            Ok(reverted)
        })
        .await
    }

    /// Records the operator's decision for the dirty row they saw (`seen`, as read before). Under
    /// the lock the row is read again, and only if it is still exactly `seen` is the decision
    /// recorded; otherwise (the migration finished, someone else repaired it) nothing changes.
    pub async fn repair(
        &self,
        conn: &mut PgConnection,
        seen: &AppliedMigration,
        action: RepairAction,
    ) -> Result<(), MigrateError> {
        self.locked(conn, async |conn: &mut PgConnection| {
            let status = self.status(conn).await?;
            let now = status.row(seen.version);
            if now != Some(seen) {
                return Err(MigrateError::RepairStale {
                    version: seen.version,
                    seen: describe_row(Some(seen)),
                    now: describe_row(now),
                });
            }
            history::record_repair(conn, &self.set.bookkeeping().table, seen.version, action).await
        })
        .await
    }

    /// What a person needs before repairing a dirty row: the row, what ran, who holds the lock,
    /// the INVALID indexes a failed `CREATE INDEX CONCURRENTLY` leaves. `None` when no row is
    /// dirty (or `version` is not). No lock, no writes.
    pub async fn diagnose_dirty(
        &self,
        conn: &mut PgConnection,
        version: Option<i64>,
    ) -> Result<Option<DirtyReport<'a>>, MigrateError> {
        let status = self.inspect(conn).await?;
        let Some(row) = status.dirty_row(version).cloned() else {
            return Ok(None);
        };
        let invalid_indexes = sqlx::query_as::<_, InvalidIndex>(
            "SELECT i.indexrelid::regclass::text AS index, i.indrelid::regclass::text AS table, \
                    pg_get_indexdef(i.indexrelid) AS definition \
             FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE NOT i.indisvalid AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
             ORDER BY 1",
        )
        .fetch_all(&mut *conn)
        .await
        .map_err(MigrateError::db("listing INVALID indexes"))?;
        let migration = self.set.get(row.version);
        // `insert_started` writes execution_time = -1 before an up file runs; a rollback's
        // non-transactional down file marks an applied row (with its real time) dirty instead.
        let script = migration.and_then(|m| {
            if row.execution_time < 0 {
                Some((Direction::Up, &m.up))
            } else {
                m.down
                    .as_ref()
                    .filter(|d| d.no_tx)
                    .map(|d| (Direction::Down, d))
            }
        });
        Ok(Some(DirtyReport {
            row,
            embedded: migration,
            script,
            holder: status.holder,
            invalid_indexes,
        }))
    }
}
