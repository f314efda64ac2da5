//! The request pool (to `database.url`), a request's `acquire` (timed, counted, traced) and
//! the span of an API query.

use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{Connection, Postgres};
use tracing::Instrument;

use super::Sessions;
use super::options::{SERVE_APP_NAME, base_options};
use crate::config::DatabaseSettings;

/// The request pool. Lazy: connections open on first use, so start-up does not wait on them;
/// a request that cannot get one within `acquire_timeout` gets a 503. A connection idle for
/// `idle_check_after` or longer is pinged before use and replaced if it is gone; one in steady
/// use answered its last query moments ago and is trusted. Release flushes what a request
/// left queued without a round trip of its own (vendor/README.md).
pub fn pool(db: &DatabaseSettings) -> PgPool {
    pool_with_sessions(db).0
}

/// [`pool`], and the registry of its server sessions, which shutdown needs to end the ones still
/// working when its grace is over.
pub fn pool_with_sessions(db: &DatabaseSettings) -> (PgPool, Sessions) {
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
