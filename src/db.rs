//! Connections: one dedicated session for migrations (with its guards and its own
//! `application_name`), connecting with retries, and the request pool.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgConnection, Postgres};
use tracing::Instrument;

use crate::config::{DatabaseSettings, Environment, Settings};

/// `application_name` of the migration session, visible in `pg_stat_activity`.
pub const MIGRATE_APP_NAME: &str = "agent-backend migrate";
/// `application_name` of the request pool's sessions.
pub const SERVE_APP_NAME: &str = "agent-backend";

/// Why the database could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error(
        "database unreachable after {attempts} attempt(s) at {url}: {cause}; check DATABASE_URL and \
         that PostgreSQL is running (locally: pg_ctlcluster <version> main start)"
    )]
    Unreachable {
        attempts: u32,
        url: String,
        cause: String,
    },
    #[error("cannot connect to the database at {url}: {cause}")]
    Refused { url: String, cause: String },
}

fn base_options(db: &DatabaseSettings, application_name: &str) -> PgConnectOptions {
    db.url
        .connect_options()
        .application_name(application_name)
        // Migration SQL and request queries are not log material; slow ones still warn.
        .log_statements(log::LevelFilter::Trace)
        .log_slow_statements(log::LevelFilter::Warn, Duration::from_secs(1))
}

/// Options for the migration session: `lock_timeout` and `statement_timeout` from
/// `[migrations]` as session defaults (set in the start-up packet: no extra round trip).
///
/// No "slow statement" warnings on this session: its long waits (for the migration lock, for a
/// busy table) are bounded by the engine and reported in its own words, and each migration's
/// duration is logged when it is applied.
pub fn migrate_options(settings: &Settings) -> PgConnectOptions {
    let m = &settings.migrations;
    base_options(&settings.database, MIGRATE_APP_NAME)
        .log_slow_statements(log::LevelFilter::Off, Duration::from_secs(1))
        .options([
            ("lock_timeout", format!("{}ms", m.lock_timeout.as_millis())),
            (
                "statement_timeout",
                format!("{}ms", m.statement_timeout.as_millis()),
            ),
        ])
}

/// Errors not worth retrying: bad credentials, unknown database, bad TLS set-up.
fn is_permanent(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|c| c.starts_with("28") || c == "3D000"),
        sqlx::Error::Configuration(_) | sqlx::Error::Tls(_) => true,
        _ => false,
    }
}

fn is_missing_database(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.code().as_deref() == Some("3D000"))
}

/// One line, no URL (sqlx's messages do not include it), and what to check for the refusals
/// that have one usual cause.
fn cause(e: &sqlx::Error) -> String {
    let text = crate::migrate::error_text(e);
    let hint = match e {
        sqlx::Error::Database(db) => match db.code().as_deref() {
            Some("28P01") => "; check the user name and password in DATABASE_URL",
            Some("28000") => "; check the user name in DATABASE_URL (and pg_hba.conf)",
            Some("3D000") => "; check the database name (the path) in DATABASE_URL",
            _ => "",
        },
        _ => "",
    };
    format!("{text}{hint}")
}

/// Connects, retrying per `[database]` and logging each failed attempt. In development a
/// missing database is created first.
pub async fn connect_with_retries(
    settings: &Settings,
    options: &PgConnectOptions,
) -> Result<PgConnection, DbError> {
    let db = &settings.database;
    let attempts = db.connect_attempts;
    let mut created = false;
    let mut attempt = 1;
    loop {
        let result = tokio::time::timeout(db.connect_timeout, options.connect())
            .await
            .unwrap_or_else(|_| Err(sqlx::Error::PoolTimedOut));
        let error = match result {
            Ok(conn) => return Ok(conn),
            Err(sqlx::Error::PoolTimedOut) => {
                format!("connect timed out after {:?}", db.connect_timeout)
            }
            Err(e)
                if is_missing_database(&e)
                    && settings.environment == Environment::Development
                    && !created =>
            {
                create_database(settings).await?;
                created = true;
                continue;
            }
            Err(e) if is_permanent(&e) => {
                return Err(DbError::Refused {
                    url: db.url.masked(),
                    cause: cause(&e),
                });
            }
            Err(e) => cause(&e),
        };
        if attempt >= attempts {
            return Err(DbError::Unreachable {
                attempts,
                url: db.url.masked(),
                cause: error,
            });
        }
        let delay = db.connect_retry_delay;
        tracing::warn!(
            attempt,
            attempts,
            "Database connection attempt {attempt}/{attempts} failed: {error}; retrying in {}",
            human(delay)
        );
        tokio::time::sleep(delay).await;
        attempt += 1;
    }
}

fn human(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// Development convenience: `CREATE DATABASE` for the name in `DATABASE_URL`, through the
/// `postgres` maintenance database (as `createdb` and `sqlx database create` do).
async fn create_database(settings: &Settings) -> Result<(), DbError> {
    let name = settings.database.url.database_name();
    let maintenance = base_options(&settings.database, MIGRATE_APP_NAME).database("postgres");
    let refused = |cause: String| DbError::Refused {
        url: settings.database.url.masked(),
        cause,
    };
    let mut conn = maintenance
        .connect()
        .await
        .map_err(|e| refused(cause(&e)))?;
    let sql = format!("CREATE DATABASE \"{}\"", name.replace('"', "\"\""));
    match sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(&mut conn)
        .await
    {
        // 42P04: another process created it first.
        Ok(_) => tracing::info!(database = %name, "Created missing database {name} (development)"),
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P04") => {}
        Err(e) => {
            return Err(refused(format!("creating database {name}: {}", cause(&e))));
        }
    }
    let _ = conn.close().await;
    Ok(())
}

/// The request pool. Lazy: connections open on first use, so start-up does not wait on them;
/// a request that cannot get one within `acquire_timeout` gets a 503.
pub fn pool(settings: &Settings) -> PgPool {
    pool_with_sessions(settings).0
}

/// [`pool`], and the registry of its server sessions, which shutdown needs to end the ones still
/// working when its grace is over.
pub fn pool_with_sessions(settings: &Settings) -> (PgPool, Sessions) {
    let db = &settings.database;
    let sessions = Sessions::default();
    let keep = 2 * db.max_connections as usize + 8;
    let pool = PgPoolOptions::new()
        .max_connections(db.max_connections)
        .min_connections(db.min_connections)
        .acquire_timeout(db.acquire_timeout)
        .after_connect({
            let sessions = sessions.clone();
            move |conn, _| {
                let sessions = sessions.clone();
                Box::pin(async move { sessions.record(conn, keep).await })
            }
        })
        .connect_lazy_with(base_options(db, SERVE_APP_NAME));
    (pool, sessions)
}

/// A pooled connection for a request handler: the wait is timed
/// (`db_pool_acquire_duration_seconds`), counted while it lasts (`db_pool_acquire_waiting`),
/// counted when it times out (`db_pool_acquire_timeouts_total`) and traced (`db.acquire`).
pub async fn acquire(pool: &PgPool) -> Result<PoolConnection<Postgres>, sqlx::Error> {
    let started = std::time::Instant::now();
    let waiting = crate::monitoring::Waiting::begin();
    let acquired = pool
        .acquire()
        .instrument(tracing::info_span!("db.acquire"))
        .await;
    drop(waiting);
    match &acquired {
        Ok(_) => crate::monitoring::acquired(started.elapsed()),
        Err(sqlx::Error::PoolTimedOut) => crate::monitoring::acquire_timed_out(),
        Err(_) => {}
    }
    acquired
}

/// The span of one API query, named after the operation that runs it.
pub fn query_span(operation: &'static str) -> tracing::Span {
    tracing::info_span!(
        "db.query",
        otel.name = operation,
        db.system.name = "postgresql",
        db.operation.name = operation,
    )
}

/// One server session: its process id and start time (a pid alone may be reused).
type Session = (i32, time::OffsetDateTime);

/// The request pool's server sessions, recorded as each connection opens. Entries of closed
/// connections are pruned once the list outgrows twice the pool; they never match anyway, since
/// a session is named by pid and start time together.
#[derive(Clone, Default)]
pub struct Sessions(Arc<Mutex<Vec<Session>>>);

impl Sessions {
    fn list(&self) -> MutexGuard<'_, Vec<Session>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn record(&self, conn: &mut PgConnection, keep: usize) -> Result<(), sqlx::Error> {
        let me: Session = sqlx::query_as(
            "SELECT pid, backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid()",
        )
        .fetch_one(&mut *conn)
        .await?;
        let known = {
            let mut list = self.list();
            list.push(me);
            (list.len() > keep).then(|| list.clone())
        };
        if let Some(known) = known {
            let (pids, starts): (Vec<i32>, Vec<_>) = known.iter().copied().unzip();
            let alive: Vec<Session> = sqlx::query_as(
                "SELECT a.pid, a.backend_start FROM pg_stat_activity a \
                 JOIN unnest($1::int4[], $2::timestamptz[]) s(pid, started) \
                   ON a.pid = s.pid AND a.backend_start = s.started",
            )
            .bind(pids)
            .bind(starts)
            .fetch_all(&mut *conn)
            .await?;
            self.list()
                .retain(|s| !known.contains(s) || alive.contains(s));
        }
        Ok(())
    }
}

/// Ends (`pg_terminate_backend`) the pool's sessions that are not idle, so that the queries of
/// requests cut by shutdown stop and their transactions roll back, and waits until they are
/// gone; all within `budget`, over a connection of its own (the pool may be exhausted). Returns
/// how many sessions were ended.
pub async fn end_busy_sessions(
    db: &DatabaseSettings,
    sessions: &Sessions,
    budget: Duration,
) -> Result<i64, String> {
    let (pids, starts): (Vec<i32>, Vec<_>) = sessions.list().iter().copied().unzip();
    let work = async {
        let mut conn = base_options(db, SERVE_APP_NAME).connect().await?;
        // MATERIALIZED: the targets are chosen first. A plain join would let the planner push
        // `pg_terminate_backend` down to the scan of pg_stat_activity, ending every session.
        let ended: Vec<i32> = sqlx::query_scalar(
            "WITH targets AS MATERIALIZED ( \
               SELECT a.pid FROM pg_stat_activity a \
               JOIN unnest($1::int4[], $2::timestamptz[]) s(pid, started) \
                 ON a.pid = s.pid AND a.backend_start = s.started \
               WHERE a.state IS DISTINCT FROM 'idle' \
             ) \
             SELECT pid FROM targets WHERE pg_terminate_backend(pid)",
        )
        .bind(pids)
        .bind(starts)
        .fetch_all(&mut conn)
        .await?;
        // pg_terminate_backend only signals: wait until the sessions have rolled back and gone.
        while !ended.is_empty() {
            let left: i64 =
                sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1)")
                    .bind(&ended)
                    .fetch_one(&mut conn)
                    .await?;
            if left == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let _ = conn.close().await;
        Ok::<_, sqlx::Error>(ended.len() as i64)
    };
    match tokio::time::timeout(budget, work).await {
        Ok(Ok(n)) => Ok(n),
        Ok(Err(e)) => Err(cause(&e)),
        Err(_) => Err(format!("no answer within {} ms", budget.as_millis())),
    }
}
