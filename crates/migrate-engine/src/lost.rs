//! What a lost connection is: the one classification the engine (a lost run is rerun from a
//! fresh status read) and the binary (the API's 503, the stage's retries) share.

/// SQLSTATEs of a session that went away: class 08 (connection exception), 57P01
/// (`admin_shutdown`: a restart, a failover, `pg_terminate_backend`), 57P02 (`crash_shutdown`),
/// 57P03 (`cannot_connect_now`: starting up or shutting down).
pub fn is_lost_session(code: &str) -> bool {
    code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03")
}

/// The connection itself failed, not the statement: an I/O error (reset, EOF), a connect that
/// timed out, or PostgreSQL ending the session ([`is_lost_session`]). Whatever was in flight in
/// a transaction rolled back, unless its commit had already landed.
pub fn is_connection_lost(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|c| is_lost_session(&c)),
        _ => false,
    }
}
