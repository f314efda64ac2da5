//! The migration lock: the PostgreSQL advisory lock sqlx 0.9's `Migrator` takes, so `server`
//! and any service migrating with sqlx never run migrations at the same time on one database.
//!
//! sqlx waits forever in `pg_advisory_lock`. Here the wait is bounded, and while it lasts the
//! holder (pid, application_name, client, since when) is logged every few seconds. The lock is
//! session-scoped: released explicitly on every exit path, and by PostgreSQL when a killed
//! runner's connection goes away.
//!
//! A session lock needs a session: through a transaction-mode pooler (PgBouncer's
//! `pool_mode = transaction`) the PostgreSQL backend that took the lock goes back to the pool
//! after each statement and serves other clients, which then "hold" the lock too (advisory locks
//! are re-entrant per backend). [`check_session`] finds that out before the lock is taken.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::{Connection, PgConnection, Row};

use crate::error::MigrateError;
use crate::observer::Observer;

/// sqlx 0.9's `generate_lock_id`: CRC-32 (ISO-HDLC) of the database name times 0x3d32ad9e.
pub fn key(database_name: &str) -> i64 {
    const CRC_IEEE: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);
    0x3d32ad9e * i64::from(CRC_IEEE.checksum(database_name.as_bytes()))
}

/// The key for the database this connection is on (sqlx asks `current_database()` too).
pub async fn key_for(conn: &mut PgConnection) -> Result<i64, MigrateError> {
    let name: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(conn)
        .await
        .map_err(MigrateError::db("reading current_database()"))?;
    Ok(key(&name))
}

/// Takes the lock, waiting at most `timeout` and logging the holder every `log_every`; the
/// `observer` hears how long it waited, taken or not.
pub async fn acquire(
    conn: &mut PgConnection,
    key: i64,
    timeout: Duration,
    log_every: Duration,
    observer: &dyn Observer,
) -> Result<(), MigrateError> {
    let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(key)
        .fetch_one(&mut *conn)
        .await
        .map_err(MigrateError::db("taking the migration lock"))?;
    if got {
        observer.lock_waited(Duration::ZERO);
        return Ok(());
    }
    let started = Instant::now();
    loop {
        let holder = describe_holder(conn, key).await;
        let waited = started.elapsed();
        let Some(remaining) = timeout.checked_sub(waited).filter(|d| !d.is_zero()) else {
            observer.lock_waited(waited);
            reset_lock_timeout(conn).await?;
            return Err(MigrateError::LockTimeout {
                key,
                waited,
                holder,
            });
        };
        tracing::info!(target: "agent_backend::migrate::lock",
            key,
            holder = %holder,
            waited_s = waited.as_secs(),
            timeout_s = timeout.as_secs(),
            "Waiting for the migration lock held by {holder}"
        );
        // Block in the server (no polling latency) for one logging interval at most:
        // `lock_timeout` bounds advisory-lock waits like any other lock wait.
        let slice = remaining.min(log_every).as_millis().max(1);
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("SET lock_timeout = {slice}")))
            .execute(&mut *conn)
            .await
            .map_err(MigrateError::db("setting lock_timeout for the lock wait"))?;
        match sqlx::query("SELECT pg_advisory_lock($1)")
            .bind(key)
            .execute(&mut *conn)
            .await
        {
            Ok(_) => {
                observer.lock_waited(started.elapsed());
                tracing::info!(target: "agent_backend::migrate::lock",
                    key,
                    waited_ms = started.elapsed().as_millis() as u64,
                    "Migration lock acquired"
                );
                return reset_lock_timeout(conn).await;
            }
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("55P03") => continue,
            Err(e) => return Err(MigrateError::db("waiting for the migration lock")(e)),
        }
    }
}

/// Back to the session's own `lock_timeout` (the migration guard set at connect time).
async fn reset_lock_timeout(conn: &mut PgConnection) -> Result<(), MigrateError> {
    sqlx::raw_sql("RESET lock_timeout")
        .execute(conn)
        .await
        .map_err(MigrateError::db("resetting lock_timeout"))?;
    Ok(())
}

pub async fn release(conn: &mut PgConnection, key: i64) -> Result<(), MigrateError> {
    sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(key)
        .execute(conn)
        .await
        .map_err(MigrateError::db("releasing the migration lock"))?;
    Ok(())
}

/// Opens another connection to the migration connection's endpoint (same URL and options), for
/// [`check_session`]. The caller that connects makes it; the engine only calls it.
#[derive(Clone)]
pub struct Connector(Arc<dyn Fn() -> ConnectFuture + Send + Sync>);

type ConnectFuture = Pin<Box<dyn Future<Output = Result<PgConnection, sqlx::Error>> + Send>>;

impl Connector {
    pub fn new(connect: impl Fn() -> ConnectFuture + Send + Sync + 'static) -> Self {
        Self(Arc::new(connect))
    }
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Connector")
    }
}

/// Refuses a migration connection that is not a PostgreSQL session of its own (a
/// transaction-mode pooler), before the lock is taken: while `conn` sits idle outside a
/// transaction, a second connection opens a transaction, then `conn` asks for its backend again.
/// A real session keeps its backend and never lends it; a pooler lends it (PgBouncer reuses the
/// most recently released server first, so the second connection gets it) or moves `conn`.
/// Costs one connection and three round trips (simple-protocol statements, which any pooler
/// passes through), and only runs when the lock is about to be taken.
pub async fn check_session(
    conn: &mut PgConnection,
    connect: &Connector,
) -> Result<(), MigrateError> {
    const ACTION: &str = "checking the migration connection for a transaction-mode pooler";
    let first = backend_pid(conn).await?;
    let mut other = (connect.0)().await.map_err(MigrateError::db(ACTION))?;
    let lent = async {
        sqlx::raw_sql("BEGIN; SELECT pg_backend_pid()")
            .fetch_one(&mut other)
            .await?
            .try_get::<i32, _>(0)
    }
    .await;
    let again = backend_pid(conn).await;
    // Ends its transaction with it.
    let _ = other.close().await;
    let lent = lent.map_err(MigrateError::db(ACTION))?;
    let again = again?;
    let evidence = if lent == first {
        format!("its PostgreSQL backend, pid {first}, served another connection while it sat idle")
    } else if again != first {
        format!(
            "its statements ran on PostgreSQL backend pid {first}, then on pid {again}, outside a transaction"
        )
    } else {
        return Ok(());
    };
    Err(MigrateError::PooledSession { evidence })
}

/// A query that answers whether the backend running it holds the lock `key`: after [`acquire`],
/// a real session always does; through a transaction-mode pooler the next statement may run on
/// another backend (a pooler that hands servers out round-robin can slip past
/// [`check_session`]). Plain SQL with the key inlined (an integer), so the engine sends it in the
/// same simple-protocol round trip as its session settings.
pub fn held_here_sql(key: i64) -> String {
    format!(
        "SELECT EXISTS (SELECT 1 FROM pg_locks \
           WHERE locktype = 'advisory' AND granted AND objsubid = 1 AND pid = pg_backend_pid() \
             AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
             AND classid::bigint = ({key} >> 32) AND objid::bigint = ({key} & 4294967295))"
    )
}

async fn backend_pid(conn: &mut PgConnection) -> Result<i32, MigrateError> {
    sqlx::raw_sql("SELECT pg_backend_pid()")
        .fetch_one(conn)
        .await
        .and_then(|row| row.try_get::<i32, _>(0))
        .map_err(MigrateError::db("reading pg_backend_pid()"))
}

/// A session holding the lock, as `pg_stat_activity` shows it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
pub struct Holder {
    pub pid: i32,
    pub application_name: String,
    pub client: Option<String>,
    pub state: Option<String>,
    /// When its transaction (or, idle, its session) started, UTC.
    pub since: Option<String>,
    /// What it is running now (or ran last, when idle).
    pub query: Option<String>,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "pid {} (application_name {:?}, client {}, state {}, since {})",
            self.pid,
            self.application_name,
            self.client.as_deref().unwrap_or("local socket"),
            self.state.as_deref().unwrap_or("unknown"),
            self.since.as_deref().unwrap_or("unknown"),
        )
    }
}

/// The session holding the lock `key` on this database, if any: `pg_locks` for the advisory
/// lock, `pg_stat_activity` for who it is.
pub async fn holder(conn: &mut PgConnection, key: i64) -> Result<Option<Holder>, MigrateError> {
    sqlx::query_as::<_, Holder>(
        "SELECT a.pid, a.application_name, host(a.client_addr) AS client, a.state, \
                to_char(coalesce(a.xact_start, a.backend_start) AT TIME ZONE 'UTC', \
                        'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS since, \
                left(a.query, 200) AS query \
         FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
         WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 \
           AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
           AND l.classid::bigint = ($1 >> 32) AND l.objid::bigint = ($1 & 4294967295) \
         LIMIT 1",
    )
    .bind(key)
    .fetch_optional(conn)
    .await
    .map_err(MigrateError::db("looking up the migration lock's holder"))
}

/// Who holds the key, for the log and the timeout error; never fails the wait itself.
async fn describe_holder(conn: &mut PgConnection, key: i64) -> String {
    match holder(conn, key).await {
        Ok(Some(h)) => h.to_string(),
        Ok(None) => "a session that has just released it".to_string(),
        Err(e) => format!("an unknown session (pg_locks not readable: {e})"),
    }
}

/// Other sessions holding locks on this database's tables, for the log and error of a migration
/// whose `lock_timeout` expired: after the timeout nothing waits any more, so
/// `pg_blocking_pids` has nobody to ask about; the holders are the sessions to look at. Never
/// fails: a catalog error is reported in the text.
pub async fn table_lock_holders(conn: &mut PgConnection) -> String {
    let rows = sqlx::query_as::<_, (i32, String, Option<String>, Option<String>, String)>(
        "SELECT a.pid, a.application_name, a.state, \
                to_char(a.xact_start AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), \
                string_agg(DISTINCT l.relation::regclass::text || ' ' || l.mode, ', ') \
         FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
         WHERE l.locktype = 'relation' AND l.granted AND l.pid <> pg_backend_pid() \
           AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
           AND l.relation >= 16384 \
         GROUP BY a.pid, a.application_name, a.state, a.xact_start \
         ORDER BY a.xact_start NULLS LAST LIMIT 5",
    )
    .fetch_all(conn)
    .await;
    match rows {
        Ok(rows) if rows.is_empty() => "none now (the holder has finished)".to_string(),
        Ok(rows) => rows
            .iter()
            .map(|(pid, app, state, since, locks)| {
                format!(
                    "pid {pid} (application_name {app:?}, state {}, transaction since {}, holds {locks})",
                    state.as_deref().unwrap_or("unknown"),
                    since.as_deref().unwrap_or("unknown"),
                )
            })
            .collect::<Vec<_>>()
            .join("; "),
        Err(e) => format!("unknown (pg_locks not readable: {e})"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn key_matches_sqlx_formula() {
        // sqlx 0.9: 0x3d32ad9e * crc32_iso_hdlc(name), checked here against the CRC catalogue's
        // check value; the integration tests check the key against sqlx's own Migrator.
        const CRC: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);
        assert_eq!(CRC.checksum(b"123456789"), 0xcbf4_3926); // the catalogue's check value
        assert_eq!(super::key("123456789"), 0x3d32ad9e * 0xcbf4_3926_i64);
        assert!(super::key("a-very-long-database-name-that-is-still-valid") > 0);
    }
}
