//! Connections: one dedicated session for migrations (with its guards and its own
//! `application_name`, to `database.migration_url`), connecting with retries, and the request
//! pool (to `database.url`, which may be a transaction-mode pooler) with its connection budget.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgConnection, Postgres, Row};
use tracing::Instrument;

use crate::config::{DatabaseSettings, DatabaseUrl, Environment, Settings};
use crate::migrate::lock::Connector;

/// `application_name` of the migration session, visible in `pg_stat_activity`.
pub const MIGRATE_APP_NAME: &str = "agent-backend migrate";
/// `application_name` of the request pool's sessions.
pub const SERVE_APP_NAME: &str = "agent-backend";

/// Why the database could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// `hint`: what to check, for the last attempt's cause ([`unreachable_hint`]).
    #[error("database unreachable after {attempts} attempt(s) at {url}: {cause}; {hint}")]
    Unreachable {
        attempts: u32,
        url: String,
        cause: String,
        hint: String,
    },
    #[error("cannot connect to the database at {url}: {cause}")]
    Refused { url: String, cause: String },
}

fn base_options(url: &DatabaseUrl, application_name: &str) -> PgConnectOptions {
    url.connect_options()
        .application_name(application_name)
        // Migration SQL and request queries are not log material; slow ones still warn.
        .log_statements(log::LevelFilter::Trace)
        .log_slow_statements(log::LevelFilter::Warn, Duration::from_secs(1))
}

/// Options for the migration session, to `database.migration_url`: `lock_timeout` and
/// `statement_timeout` from `[migrations]` as session defaults (set in the start-up packet: no
/// extra round trip).
///
/// No "slow statement" warnings on this session: its long waits (for the migration lock, for a
/// busy table) are bounded by the engine and reported in its own words, and each migration's
/// duration is logged when it is applied.
pub fn migration_session_options(settings: &Settings) -> PgConnectOptions {
    let m = &settings.migrations;
    base_options(settings.database.migration_url(), MIGRATE_APP_NAME)
        .log_slow_statements(log::LevelFilter::Off, Duration::from_secs(1))
        .options([
            ("lock_timeout", format!("{}ms", m.lock_timeout.as_millis())),
            (
                "statement_timeout",
                format!("{}ms", m.statement_timeout.as_millis()),
            ),
        ])
}

/// A second connection like the migration session's, for the pooler check before the
/// migration lock ([`crate::migrate::lock::check_session`]): one attempt, bounded by
/// `connect_timeout`.
pub fn session_check(settings: &Settings) -> Connector {
    let options = migration_session_options(settings);
    let timeout = settings.database.connect_timeout;
    Connector::new(move || {
        let options = options.clone();
        Box::pin(async move {
            tokio::time::timeout(timeout, options.connect())
                .await
                .unwrap_or(Err(sqlx::Error::PoolTimedOut))
        })
    })
}

/// Errors not worth retrying: bad credentials, unknown database, bad TLS set-up, a pooler
/// refusing the migration session's start-up options.
fn is_permanent(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => {
            db.code()
                .is_some_and(|c| c.starts_with("28") || c == "3D000")
                || db.message().contains("unsupported startup parameter")
        }
        sqlx::Error::Configuration(_) | sqlx::Error::Tls(_) => true,
        e => tls_refusal(e).is_some(),
    }
}

/// The TLS handshake's verdict on the server (an untrusted or mismatched certificate), which
/// sqlx reports as an I/O error: no retry changes it.
fn tls_refusal(e: &sqlx::Error) -> Option<&rustls::Error> {
    match e {
        sqlx::Error::Io(io) => io.get_ref()?.downcast_ref::<rustls::Error>(),
        _ => None,
    }
}

fn is_missing_database(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.code().as_deref() == Some("3D000"))
}

/// One line, no URL (sqlx's messages do not include it), and what to check in `var` for the
/// refusals that have one usual cause.
fn cause(e: &sqlx::Error, var: &str) -> String {
    let text = crate::migrate::error_text(e);
    let hint = match e {
        sqlx::Error::Database(db) => match db.code().as_deref() {
            Some("28P01") => format!("; check the user name and password in {var}"),
            Some("28000") => format!("; check the user name in {var} (and pg_hba.conf)"),
            Some("3D000") => format!("; check the database name (the path) in {var}"),
            // PgBouncer's refusal of the start-up packet's `options` (the migration guards).
            _ if text.contains("unsupported startup parameter") => format!(
                "; {var} points at a connection pooler: migrations need a direct connection to \
                 PostgreSQL (set DATABASE_MIGRATION_URL to it)"
            ),
            _ => String::new(),
        },
        e if tls_refusal(e).is_some() => format!(
            "; the server's certificate is not trusted for this host: check the host in {var} and \
             its sslmode, and that the CA that signed it is in the system's CA store (the \
             image's /etc/ssl/certs, or SSL_CERT_FILE)"
        ),
        _ => String::new(),
    };
    format!("{text}{hint}")
}

/// What to check when `options`' server could not be reached: by the last attempt's failure
/// (`None`: no answer within `timeout`). Only a server on this machine gets the local hint.
fn unreachable_hint(
    failure: Option<&sqlx::Error>,
    options: &PgConnectOptions,
    var: &str,
    timeout: Duration,
) -> String {
    let (host, port) = (options.get_host(), options.get_port());
    let local = options.get_socket().is_some()
        || host.starts_with('/')
        || host == "localhost"
        || host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    let Some(failure) = failure else {
        return format!(
            "no answer from {host}:{port} within {}: a wrong host or port, a firewall or the \
             database's IP access list (Render's external URL admits only the addresses on it), \
             or a server that is not PostgreSQL and waits for more; check {var}",
            human(timeout)
        );
    };
    if let Some(answered) = not_postgres(failure) {
        return format!(
            "something other than PostgreSQL answers on {host}:{port}{answered}: check {var} (its \
             host and port: PostgreSQL's is usually 5432, PgBouncer's 6432)"
        );
    }
    match failure {
        e if crate::migrate::error_text(e).contains("failed to lookup address information") => {
            format!(
                "the host name {host} does not resolve (DNS): check {var} (its host); a Render \
                 database's internal host name resolves only inside Render, in its region: from \
                 elsewhere use the database's external URL"
            )
        }
        sqlx::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused && local => {
            format!(
                "nothing listens on {host}:{port}: check {var} (its port) and that PostgreSQL runs \
                 on this machine (pg_ctlcluster <version> main start)"
            )
        }
        sqlx::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => format!(
            "nothing listens on {host}:{port}: check {var} (its port) and the database's status \
             (Render dashboard: the database's page)"
        ),
        _ => format!("check {var} and the database's status"),
    }
}

/// `Some(what it answered)` for a start-up answer no PostgreSQL (or PgBouncer) gives: a first
/// byte that is neither `S` nor `N` to the TLS request, or a message whose length field is
/// text (`HTTP/1.1 400` read as the type `H` and a length of `TTP/`, over a gigabyte).
fn not_postgres(e: &sqlx::Error) -> Option<String> {
    const HTTP: &str = " (it answered like an HTTP server: a web service's port, or a proxy?)";
    match e {
        sqlx::Error::Protocol(message) => {
            let first = message.split("from SSLRequest: 0x").nth(1)?;
            let byte = u8::from_str_radix(first.get(..2)?, 16).ok()?;
            Some(match byte {
                b'H' => HTTP.to_string(),
                b if b.is_ascii_graphic() => format!(" (it answered {:?})", b as char),
                _ => String::new(),
            })
        }
        sqlx::Error::Io(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            let text = io.to_string();
            let length: u32 = text
                .strip_prefix("expected to read ")?
                .split(' ')
                .next()?
                .parse()
                .ok()?;
            // sqlx reports the length give or take its own framing: its first bytes are `TTP`.
            match &length.to_be_bytes()[..3] {
                b"TTP" => Some(HTTP.to_string()),
                _ if length > 1 << 20 => Some(String::new()),
                _ => None,
            }
        }
        _ => None,
    }
}

// What a lost connection is: the engine's classification, one for the stage and the API.
pub use crate::migrate::{is_connection_lost, is_lost_session};

/// `database.connect_attempts` attempts, `database.connect_retry_delay` apart, shared by
/// connecting and by the pre-serve stage's reruns after a lost connection: every failure spends
/// one, so a database that keeps going away ends the stage within the configured budget.
pub struct Attempts<'a> {
    settings: &'a Settings,
    attempt: u32,
}

impl<'a> Attempts<'a> {
    pub fn new(settings: &'a Settings) -> Self {
        Self {
            settings,
            attempt: 1,
        }
    }

    /// After the current attempt failed with `cause`: the last one is
    /// [`DbError::Unreachable`] with `hint` (what to check); otherwise `log` is told the
    /// attempt, the budget and the delay, then the delay passes.
    pub async fn failed(
        &mut self,
        cause: String,
        hint: impl FnOnce() -> String,
        log: impl FnOnce(u32, u32, &str),
    ) -> Result<(), DbError> {
        let db = &self.settings.database;
        let attempts = db.connect_attempts;
        if self.attempt >= attempts {
            return Err(DbError::Unreachable {
                attempts,
                url: db.migration_url().masked(),
                cause,
                hint: hint(),
            });
        }
        log(self.attempt, attempts, &human(db.connect_retry_delay));
        tokio::time::sleep(db.connect_retry_delay).await;
        self.attempt += 1;
        Ok(())
    }
}

/// Connects the migration session (`options` are [`migration_session_options`], possibly for another
/// database on the same server), retrying per `[database]` and logging each failed attempt;
/// errors name `database.migration_url`. In development a missing database is created first.
pub async fn connect_with_retries(
    settings: &Settings,
    options: &PgConnectOptions,
) -> Result<PgConnection, DbError> {
    connect_within(&mut Attempts::new(settings), options).await
}

/// [`connect_with_retries`] spending `attempts`, which the caller may have spent some of.
pub async fn connect_within(
    attempts: &mut Attempts<'_>,
    options: &PgConnectOptions,
) -> Result<PgConnection, DbError> {
    let settings = attempts.settings;
    let db = &settings.database;
    let (url, var) = (db.migration_url(), db.migration_url_var());
    let mut created = false;
    loop {
        let result = tokio::time::timeout(db.connect_timeout, options.connect())
            .await
            .unwrap_or_else(|_| Err(sqlx::Error::PoolTimedOut));
        let (error, failure) = match result {
            Ok(conn) => return Ok(conn),
            Err(sqlx::Error::PoolTimedOut) => (
                format!("connect timed out after {:?}", db.connect_timeout),
                None,
            ),
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
                    url: url.masked(),
                    cause: cause(&e, var),
                });
            }
            Err(e) => (cause(&e, var), Some(e)),
        };
        let hint = || unreachable_hint(failure.as_ref(), options, var, db.connect_timeout);
        attempts
            .failed(error.clone(), hint, |attempt, attempts, delay| {
                tracing::warn!(
                    attempt,
                    attempts,
                    "Database connection attempt {attempt}/{attempts} failed: {error}; retrying in {delay}"
                )
            })
            .await?;
    }
}

fn human(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// Development convenience: `CREATE DATABASE` for the name in the migration URL, through the
/// `postgres` maintenance database (as `createdb` and `sqlx database create` do).
async fn create_database(settings: &Settings) -> Result<(), DbError> {
    let (url, var) = (
        settings.database.migration_url(),
        settings.database.migration_url_var(),
    );
    let name = url.database_name();
    let maintenance = base_options(url, MIGRATE_APP_NAME).database("postgres");
    let refused = |cause: String| DbError::Refused {
        url: url.masked(),
        cause,
    };
    let mut conn = maintenance
        .connect()
        .await
        .map_err(|e| refused(cause(&e, var)))?;
    let sql = format!("CREATE DATABASE \"{}\"", name.replace('"', "\"\""));
    match sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(&mut conn)
        .await
    {
        // 42P04: another process created it first.
        Ok(_) => tracing::info!(database = %name, "Created missing database {name} (development)"),
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P04") => {}
        Err(e) => {
            return Err(refused(format!(
                "creating database {name}: {}",
                cause(&e, var)
            )));
        }
    }
    let _ = conn.close().await;
    Ok(())
}

/// The request pool. Lazy: connections open on first use, so start-up does not wait on them;
/// a request that cannot get one within `acquire_timeout` gets a 503. A connection idle for
/// `idle_check_after` or longer is pinged before use and replaced if it is gone; one in steady
/// use answered its last query moments ago and is trusted. Release flushes what a request
/// left queued without a round trip of its own (vendor/README.md).
pub fn pool(settings: &Settings) -> PgPool {
    pool_with_sessions(settings).0
}

/// [`pool`], and the registry of its server sessions, which shutdown needs to end the ones still
/// working when its grace is over.
pub fn pool_with_sessions(settings: &Settings) -> (PgPool, Sessions) {
    let db = &settings.database;
    let sessions = Sessions::default();
    let keep = 2 * db.max_connections as usize + 8;
    let options = PgPoolOptions::new()
        .max_connections(db.max_connections)
        .min_connections(db.min_connections)
        .acquire_timeout(db.acquire_timeout)
        .test_before_acquire(false)
        .before_acquire({
            let after = db.idle_check_after;
            move |conn, meta| {
                Box::pin(async move {
                    if meta.idle_for >= after {
                        conn.ping().await?;
                    }
                    Ok(true)
                })
            }
        });
    // Behind a transaction-mode pooler a connection has no server session of its own: the pid
    // it saw at connect time serves other clients (other replicas) later, and ending it at
    // shutdown could cut their queries. There, closing the client connection is the cancel:
    // the pooler drops the server connection of a transaction left open.
    let options = if db.is_pooled() {
        options
    } else {
        options.after_connect({
            let sessions = sessions.clone();
            move |conn, _| {
                let sessions = sessions.clone();
                Box::pin(async move { sessions.record(conn, keep).await })
            }
        })
    };
    let pool = options.connect_lazy_with(base_options(&db.url, SERVE_APP_NAME));
    (pool, sessions)
}

/// A pooled connection for a request handler: the wait is timed
/// (`db_pool_acquire_duration_seconds`), counted while it lasts (`db_pool_acquire_waiting`),
/// counted when it times out (`db_pool_acquire_timeouts_total`) and traced (`db.acquire`, when
/// spans are exported).
pub async fn acquire(pool: &PgPool) -> Result<PoolConnection<Postgres>, sqlx::Error> {
    let started = std::time::Instant::now();
    let waiting = crate::monitoring::Waiting::begin();
    // Boxed: sqlx's acquire future holds a whole connection attempt (TLS handshake included)
    // and is several kilobytes. Held inline, it was copied into `instrument` and into this
    // future, and it made every future around a handler as large, which each of poem's boxed
    // endpoint layers copies again; boxed, it is copied once (bench/profile.py).
    let acquire = Box::pin(pool.acquire());
    let acquired = acquire
        .instrument(crate::telemetry::traced(|| {
            tracing::info_span!("db.acquire")
        }))
        .await;
    drop(waiting);
    match &acquired {
        Ok(_) => crate::monitoring::acquired(started.elapsed()),
        Err(sqlx::Error::PoolTimedOut) => crate::monitoring::acquire_timed_out(),
        Err(_) => {}
    }
    acquired
}

/// The span of one API query, named after the operation that runs it (traces only).
pub fn query_span(operation: &'static str) -> tracing::Span {
    crate::telemetry::traced(|| {
        tracing::info_span!(
            "db.query",
            otel.name = operation,
            db.system.name = "postgresql",
            db.operation.name = operation,
        )
    })
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
        let mut conn = base_options(&db.url, SERVE_APP_NAME).connect().await?;
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
        Ok(Err(e)) => Err(cause(&e, "DATABASE_URL")),
        Err(_) => Err(format!("no answer within {} ms", budget.as_millis())),
    }
}

/// PostgreSQL's connection slots for ordinary roles: `max_connections` less
/// `superuser_reserved_connections` and (PostgreSQL 16+) `reserved_connections`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    pub max_connections: u32,
    pub superuser_reserved: u32,
    pub reserved: u32,
}

impl ConnectionLimits {
    pub fn available(&self) -> u32 {
        self.max_connections
            .saturating_sub(self.superuser_reserved)
            .saturating_sub(self.reserved)
    }

    /// The warning when `instances` instances, each with a pool of `pool_max` and one migration
    /// session (the pre-deploy command or a `server migrate` job beside them), need more
    /// connections than PostgreSQL allows; `None` when they fit.
    pub fn shortfall(&self, pool_max: u32, instances: u32) -> Option<String> {
        let available = self.available();
        let share = available / instances.max(1);
        let need = pool_max + 1;
        (share < need).then(|| {
            format!(
                "Connection budget exceeded: {instances} instance(s) (server.instances) × ({pool_max} pooled \
                 (database.max_connections) + 1 migration session) = {} connections, but PostgreSQL allows \
                 {available} ({} max_connections − {} superuser_reserved_connections − {} \
                 reserved_connections), {share} per instance; at peak, connections will fail with \
                 \"too many clients\": set database.max_connections to at most {} or put a \
                 transaction-mode pooler in front of DATABASE_URL (docs/operations.md)",
                instances * need,
                self.max_connections,
                self.superuser_reserved,
                self.reserved,
                share.saturating_sub(1).max(1),
            )
        })
    }
}

/// Logs the request pool's maximum and checks it against PostgreSQL's connection limit (one
/// simple-protocol query on a pool connection, which the first request reuses). When
/// `DATABASE_URL` is not the migration URL it is taken to be a pooler: PostgreSQL then sees the
/// pooler's connections, not this pool's, and only the figures are logged. Never fails start-up:
/// a database that does not answer is readiness's business.
pub async fn check_budget(pool: &PgPool, settings: &Settings) {
    let db = &settings.database;
    let instances = settings.server.instances;
    tracing::info!(
        max_connections = db.max_connections,
        instances,
        "Request pool: at most {} connection(s) to {} per instance, {instances} instance(s) (server.instances)",
        db.max_connections,
        db.url.masked()
    );
    let limits = async {
        let mut conn = pool.acquire().await?;
        let row = sqlx::raw_sql(
            "SELECT current_setting('max_connections')::int, \
                    current_setting('superuser_reserved_connections')::int, \
                    coalesce(current_setting('reserved_connections', true)::int, 0)",
        )
        .fetch_one(&mut *conn)
        .await?;
        let get = |i: usize| row.try_get::<i32, _>(i).map(|v| v.max(0) as u32);
        Ok::<_, sqlx::Error>(ConnectionLimits {
            max_connections: get(0)?,
            superuser_reserved: get(1)?,
            reserved: get(2)?,
        })
    }
    .await;
    let limits = match limits {
        Ok(limits) => limits,
        Err(e) => {
            tracing::warn!(
                "Connection budget not checked: {}",
                crate::migrate::error_text(&e)
            );
            return;
        }
    };
    let pooled = db.is_pooled();
    match limits.shortfall(db.max_connections, instances) {
        _ if pooled => tracing::info!(
            available = limits.available(),
            "Connection budget: PostgreSQL allows {} connections; DATABASE_URL is not \
             DATABASE_MIGRATION_URL (a pooler), so PostgreSQL sees the pooler's server connections: \
             keep its pool size plus {instances} migration session(s) within that",
            limits.available()
        ),
        Some(warning) => tracing::warn!(available = limits.available(), "{warning}"),
        None => tracing::info!(
            available = limits.available(),
            "Connection budget: {instances} instance(s) × ({} pooled + 1 migration session) fit in the {} \
             connections PostgreSQL allows",
            db.max_connections,
            limits.available()
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;
    use std::time::Duration;

    use sqlx::postgres::PgConnectOptions;

    use super::{ConnectionLimits, unreachable_hint};

    /// The hint for a refused connection: the local cluster's command only for this machine.
    #[test]
    fn a_refused_remote_host_gets_no_local_hint() {
        let refused =
            || sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        let hint = |url: &str| {
            let options = PgConnectOptions::from_str(url).unwrap();
            unreachable_hint(
                Some(&refused()),
                &options,
                "DATABASE_URL",
                Duration::from_secs(5),
            )
        };
        for remote in [
            "postgres://u@dpg-abc-a.oregon-postgres.render.com/db",
            "postgres://u@10.0.0.7:5433/db",
        ] {
            let hint = hint(remote);
            assert!(!hint.contains("pg_ctlcluster"), "{remote}: {hint}");
            assert!(hint.contains("database's status"), "{remote}: {hint}");
        }
        for local in [
            "postgres://u@localhost/db",
            "postgres://u@127.0.0.1:1/db",
            "postgres://u@[::1]/db",
            "postgres://u@%2Fvar%2Frun%2Fpostgresql/db",
        ] {
            let hint = hint(local);
            assert!(hint.contains("pg_ctlcluster"), "{local}: {hint}");
        }
    }

    #[test]
    fn budget_counts_reserved_slots_instances_and_the_migration_session() {
        // Render's < 8 GB plans: max_connections 100; PostgreSQL's default 3 superuser slots.
        let render = ConnectionLimits {
            max_connections: 100,
            superuser_reserved: 3,
            reserved: 0,
        };
        assert_eq!(render.available(), 97);
        assert_eq!(render.shortfall(10, 2), None);
        assert_eq!(render.shortfall(47, 2), None); // 97 / 2 = 48 = 47 + 1
        let warning = render.shortfall(48, 2).expect("48 + 1 > 48");
        assert!(warning.contains("2 instance(s)"), "{warning}");
        assert!(warning.contains("at most 47"), "{warning}");
        assert!(render.shortfall(10, 9).is_some(), "97 / 9 = 10 < 11");
        // PostgreSQL 16+ reserves more.
        let pg16 = ConnectionLimits {
            reserved: 10,
            ..render
        };
        assert_eq!(pg16.available(), 87);
        assert!(pg16.shortfall(43, 2).is_some());
        assert_eq!(pg16.shortfall(42, 2), None);
    }
}
