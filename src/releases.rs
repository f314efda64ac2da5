//! Which releases are serving: the bookkeeping table of releases (`_agent_releases`, in the
//! schema of the configured migrations table; sqlx's table is never touched). A serving
//! instance records its release after the pre-serve stage — its version, the hash of its query
//! set and the set itself (the `.sqlx` files' JSON) — and refreshes `heartbeat_at` while it
//! serves, from a task of its own (off the request path). A release whose heartbeat is older
//! than `migrations.serving_window` no longer counts. The pre-deploy's compat check
//! (`crate::compat::gate`) and `migrate compat --from-database` read it.
//!
//! One row per query set: instances of one release share it, and two builds with the same
//! queries are the same release for compatibility.

use std::time::Duration;

use sqlx::{PgConnection, PgPool, Row};

use crate::queries::QuerySet;
use crate::queries::readiness::QueryHealth;

/// A release whose queries are checked: one recorded as serving, or a `.sqlx/` directory.
#[derive(Debug, Clone)]
pub struct Release {
    /// Its version (`CARGO_PKG_VERSION` of a serving one), or the directory it was read from.
    pub version: String,
    pub queries: QuerySet,
    /// Seconds since a serving release's last heartbeat.
    pub heartbeat_age_seconds: Option<i64>,
}

/// The table's own name, beside the migrations table (the snapshot's, which leaves it out).
pub const TABLE: &str = crate::migrate::snapshot::RELEASES_TABLE;

/// This binary's version, as its row names it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The releases table in the schema of `bookkeeping_table` (`_sqlx_migrations` or
/// `schema._sqlx_migrations` as `sqlx.toml` names it).
pub fn table_for(bookkeeping_table: &str) -> String {
    match bookkeeping_table.rsplit_once('.') {
        Some((schema, _)) => format!("{schema}.{TABLE}"),
        None => TABLE.to_string(),
    }
}

/// `CREATE TABLE IF NOT EXISTS`: by the pre-deploy after it applied migrations, or by an
/// instance whose first record found no table.
pub async fn ensure_table(conn: &mut PgConnection, table: &str) -> Result<(), sqlx::Error> {
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE TABLE IF NOT EXISTS {table} (\n\
         \x20   query_set_hash text PRIMARY KEY,\n\
         \x20   version text NOT NULL,\n\
         \x20   queries jsonb NOT NULL,\n\
         \x20   first_seen timestamptz NOT NULL DEFAULT now(),\n\
         \x20   heartbeat_at timestamptz NOT NULL DEFAULT now()\n\
         )"
    )))
    .execute(conn)
    .await
    .map(|_| ())
}

/// Records `set` as serving (or refreshes its row), creating the table when it is missing.
pub async fn record(
    conn: &mut PgConnection,
    table: &str,
    version: &str,
    set: &QuerySet,
) -> Result<(), sqlx::Error> {
    let upsert = || {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO {table} (query_set_hash, version, queries) VALUES ($1, $2, $3) \
             ON CONFLICT (query_set_hash) DO UPDATE \
             SET version = EXCLUDED.version, heartbeat_at = now()"
        )))
        .bind(set.hash())
        .bind(version)
        .bind(set.to_json())
    };
    match upsert().execute(&mut *conn).await {
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P01") => {
            ensure_table(conn, table).await?;
            upsert().execute(&mut *conn).await.map(|_| ())
        }
        other => other.map(|_| ()),
    }
}

/// Refreshes the heartbeat of `set`'s row; `false` when the row is gone (recorded again).
async fn beat(conn: &mut PgConnection, table: &str, set: &QuerySet) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE {table} SET heartbeat_at = now() WHERE query_set_hash = $1"
    )))
    .bind(set.hash())
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The releases whose heartbeat is younger than `window`; none when the table does not exist.
pub async fn serving(
    conn: &mut PgConnection,
    table: &str,
    window: Duration,
) -> Result<Vec<Release>, sqlx::Error> {
    let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(table)
        .fetch_one(&mut *conn)
        .await?;
    if !exists {
        return Ok(Vec::new());
    }
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT version, queries, extract(epoch FROM now() - heartbeat_at)::bigint AS age \
         FROM {table} WHERE heartbeat_at > now() - make_interval(secs => $1) \
         ORDER BY first_seen, query_set_hash"
    )))
    .bind(window.as_secs_f64())
    .fetch_all(&mut *conn)
    .await?;
    let mut releases = Vec::new();
    for row in rows {
        let version: String = row.try_get("version")?;
        let queries: serde_json::Value = row.try_get("queries")?;
        match QuerySet::from_json(queries) {
            Ok(queries) => releases.push(Release {
                version,
                queries,
                heartbeat_age_seconds: row.try_get("age")?,
            }),
            Err(e) => tracing::warn!("release {version} in {table}: {e}; not checked"),
        }
    }
    Ok(releases)
}

/// How often a serving instance refreshes its heartbeat: a fifth of the window (at least a
/// second), so a live release never looks expired.
pub fn heartbeat_every(window: Duration) -> Duration {
    (window / 5).max(Duration::from_secs(1))
}

/// The serving instance's task: record the release, then refresh the heartbeat (and re-prepare
/// the instance's own queries for readiness) every [`heartbeat_every`]. Failures are logged
/// once until the next success; the task never stops the server.
pub fn spawn_heartbeat(
    pool: PgPool,
    table: String,
    set: &'static QuerySet,
    every: Duration,
    health: QueryHealth,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut recorded = false;
        let mut failing = false;
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first tick is at once: it records the release; the start-up check already ran.
        let mut first = true;
        loop {
            tick.tick().await;
            let outcome = async {
                let mut conn = pool.acquire().await?;
                if !recorded || !beat(&mut conn, &table, set).await? {
                    record(&mut conn, &table, VERSION, set).await?;
                    recorded = true;
                    tracing::info!(
                        version = VERSION,
                        query_set = set.hash(),
                        "Release {VERSION} recorded as serving in {table} (query set {}, {} queries)",
                        &set.hash()[..12],
                        set.len()
                    );
                }
                if !first {
                    health.refresh(&mut conn, set).await?;
                }
                Ok::<_, sqlx::Error>(())
            }
            .await;
            first = false;
            match outcome {
                Ok(()) => failing = false,
                Err(e) if !failing => {
                    failing = true;
                    tracing::warn!(
                        "Release heartbeat in {table} failed: {e}; retrying every {every:?}"
                    );
                }
                Err(_) => {}
            }
        }
    })
}
