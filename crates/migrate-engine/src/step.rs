//! One migration's SQL and its bookkeeping row, together: applied in one implicit transaction
//! (one round trip), or, for `-- no-transaction` files, between a committed `success = false`
//! row and its flip. Reverting likewise. The caller holds the migration lock.

use std::time::{Duration, Instant};

use sqlx::PgConnection;

use migrate_source::manifest::{Migration, Script};

use crate::error::MigrateError;
use crate::history;

/// One migration of a plan and the file that runs for it: its up file in an apply, its down
/// file in a rollback (a rollback is planned only when every down file exists).
#[derive(Debug, Clone, Copy)]
pub struct Step<'a> {
    pub migration: &'a Migration,
    pub script: &'a Script,
}

/// Runs a script's SQL, wrapped in its header settings when it has any.
async fn with_settings<T>(
    conn: &mut PgConnection,
    script: &Script,
    run: impl AsyncFnOnce(&mut PgConnection) -> Result<T, sqlx::Error>,
) -> Result<T, sqlx::Error> {
    if script.settings.is_empty() {
        return run(conn).await;
    }
    let each = |statement: fn(&str, &str) -> String| -> String {
        script
            .settings
            .iter()
            .map(|(k, v)| statement(k, v))
            .collect()
    };
    let set = each(|k, v| format!("SET {k} = '{v}';"));
    let reset = each(|k, _| format!("RESET {k};"));
    sqlx::raw_sql(sqlx::AssertSqlSafe(set))
        .execute(&mut *conn)
        .await?;
    let result = run(&mut *conn).await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(reset))
        .execute(&mut *conn)
        .await?;
    result
}

/// A script's failure: its SQL failed ([`MigrateError::Failed`], `dirty` when it ran outside a
/// transaction), or, in a transaction, the connection was lost under it
/// ([`MigrateError::ConnectionLost`]: rolled back, unless the commit landed). A `-- no-transaction`
/// script cut part-way stays `Failed` and dirty: what it did is unknown.
fn failure(
    e: sqlx::Error,
    dirty: bool,
    version: i64,
    script: &Script,
    doing: &str,
) -> MigrateError {
    if !dirty && crate::lost::is_connection_lost(&e) {
        return MigrateError::ConnectionLost {
            action: format!("{doing} migration {version} (migrations/{})", script.file),
            source: e,
        };
    }
    MigrateError::Failed {
        version,
        file: script.file.clone(),
        message: history::describe_sql_error(&e, &script.sql),
        dirty,
    }
}

/// Runs one migration with its bookkeeping: in one implicit transaction (one round trip), or,
/// for `-- no-transaction` files, between a committed `success = false` row and its flip.
pub(super) async fn apply_one(
    conn: &mut PgConnection,
    table: &str,
    m: &Migration,
) -> Result<Duration, MigrateError> {
    let started = Instant::now();
    let failed = |e: sqlx::Error, dirty: bool| failure(e, dirty, m.version, &m.up, "applying");
    if m.up.no_tx {
        history::insert_started(conn, table, m).await?;
        let sql = m.up.sql.clone();
        with_settings(conn, &m.up, async |c: &mut PgConnection| {
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(c).await
        })
        .await
        .map_err(|e| failed(e, true))?;
        let took = started.elapsed();
        history::mark_succeeded(
            conn,
            table,
            m.version,
            i64::try_from(took.as_nanos()).unwrap_or(i64::MAX),
        )
        .await?;
        Ok(took)
    } else {
        let batch = history::transactional_batch(table, m);
        with_settings(conn, &m.up, async |c: &mut PgConnection| {
            sqlx::raw_sql(sqlx::AssertSqlSafe(batch)).execute(c).await
        })
        .await
        .map_err(|e| {
            if matches!(&e, sqlx::Error::Database(db) if db.code().as_deref() == Some("55P03")) {
                MigrateError::LockNotAvailable {
                    version: m.version,
                    file: m.up.file.clone(),
                    message: history::describe_sql_error(&e, &m.up.sql),
                    attempts: 1,
                    holders: String::new(),
                }
            } else {
                failed(e, false)
            }
        })?;
        Ok(started.elapsed())
    }
}

/// Reverts one migration with its down SQL and deletes its row, atomically when the down file
/// is transactional; otherwise the row is marked dirty first, so a failure stays visible.
pub(super) async fn revert_one(
    conn: &mut PgConnection,
    table: &str,
    step: Step<'_>,
) -> Result<Duration, MigrateError> {
    let (m, down) = (step.migration, step.script);
    let started = Instant::now();
    let failed = |e: sqlx::Error, dirty: bool| failure(e, dirty, m.version, down, "reverting");
    if down.no_tx {
        history::mark_dirty(conn, table, m.version).await?;
        let sql = down.sql.clone();
        with_settings(conn, down, async |c: &mut PgConnection| {
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(c).await
        })
        .await
        .map_err(|e| failed(e, true))?;
        history::delete(conn, table, m.version).await?;
    } else {
        let batch = history::revert_batch(table, m.version, down);
        with_settings(conn, down, async |c: &mut PgConnection| {
            sqlx::raw_sql(sqlx::AssertSqlSafe(batch)).execute(c).await
        })
        .await
        .map_err(|e| failed(e, false))?;
    }
    Ok(started.elapsed())
}
