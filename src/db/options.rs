//! Connect options: the migration session's (`database.migration_url`, its guards) and the
//! pool's (`database.url`), and one connect within `database.connect_timeout`.

use std::time::Duration;

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, PgConnection};

use crate::config::{DatabaseSettings, DatabaseUrl, MigrationSettings};
use crate::migrate::lock::Connector;

/// `application_name` of the migration session, visible in `pg_stat_activity`.
pub const MIGRATE_APP_NAME: &str = "agent-backend migrate";
/// `application_name` of the event listener's session (`crate::events::listener`).
pub const LISTEN_APP_NAME: &str = "agent-backend listener";
/// `application_name` of the request pool's sessions.
pub const SERVE_APP_NAME: &str = "agent-backend";

pub(super) fn base_options(url: &DatabaseUrl, application_name: &str) -> PgConnectOptions {
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
pub fn migration_session_options(db: &DatabaseSettings, m: &MigrationSettings) -> PgConnectOptions {
    base_options(db.migration_url(), MIGRATE_APP_NAME)
        .log_slow_statements(log::LevelFilter::Off, Duration::from_secs(1))
        .options([
            ("lock_timeout", format!("{}ms", m.lock_timeout.as_millis())),
            (
                "statement_timeout",
                format!("{}ms", m.statement_timeout.as_millis()),
            ),
        ])
}

/// Options for the event listener's session: to `database.migration_url` (the direct URL: a
/// `LISTEN` needs a session of its own, which a transaction-mode pooler does not lend), else
/// `database.url`.
pub fn listener_options(db: &DatabaseSettings) -> PgConnectOptions {
    base_options(db.migration_url(), LISTEN_APP_NAME)
}

/// One connection within `timeout`. A connect that gets no answer in time is an I/O error of
/// kind `TimedOut` that names the server and the wait ("timed out connecting to
/// db.example:5432 after 5s"), so it reads as what happened and counts as a lost connection.
pub async fn connect(
    options: &PgConnectOptions,
    timeout: Duration,
) -> Result<PgConnection, sqlx::Error> {
    tokio::time::timeout(timeout, options.connect())
        .await
        .unwrap_or_else(|_| {
            Err(sqlx::Error::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!(
                    "timed out connecting to {} after {}",
                    server(options),
                    crate::migrate::duration::render(timeout)
                ),
            )))
        })
}

/// `host:port`, or the socket path.
pub(super) fn server(options: &PgConnectOptions) -> String {
    match options.get_socket() {
        Some(socket) => socket.display().to_string(),
        None => format!("{}:{}", options.get_host(), options.get_port()),
    }
}

/// A second connection like the migration session's, for the pooler check before the
/// migration lock ([`crate::migrate::lock::check_session`]): one attempt, bounded by
/// `connect_timeout`.
pub fn session_check(db: &DatabaseSettings, m: &MigrationSettings) -> Connector {
    let options = migration_session_options(db, m);
    let timeout = db.connect_timeout;
    Connector::new(move || {
        let options = options.clone();
        Box::pin(async move { connect(&options, timeout).await })
    })
}
