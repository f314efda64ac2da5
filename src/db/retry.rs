//! Connecting with retries: [`Attempts`], one budget (`database.connect_attempts`,
//! `connect_retry_delay` apart) for connecting and for the pre-serve stage's reruns.

use sqlx::PgConnection;
use sqlx::postgres::PgConnectOptions;

use super::DbError;
use super::create::create_database;
use super::diagnosis::{cause, is_missing_database, is_permanent, timed_out, unreachable_hint};
use crate::config::DatabaseSettings;
use crate::migrate::duration;

/// `database.connect_attempts` attempts, `database.connect_retry_delay` apart, shared by
/// connecting and by the pre-serve stage's reruns after a lost connection: every failure spends
/// one, so a database that keeps going away ends the stage within the configured budget.
pub struct Attempts<'a> {
    db: &'a DatabaseSettings,
    attempt: u32,
}

impl<'a> Attempts<'a> {
    pub fn new(db: &'a DatabaseSettings) -> Self {
        Self { db, attempt: 1 }
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
        let db = self.db;
        let attempts = db.connect_attempts;
        if self.attempt >= attempts {
            return Err(DbError::Unreachable {
                attempts,
                url: db.migration_url().masked(),
                cause,
                hint: hint(),
            });
        }
        log(
            self.attempt,
            attempts,
            &duration::render(db.connect_retry_delay),
        );
        tokio::time::sleep(db.connect_retry_delay).await;
        self.attempt += 1;
        Ok(())
    }
}

/// Connects the migration session (`options` are [`super::migration_session_options`], possibly
/// for another database on the same server), retrying per `[database]` and logging each failed
/// attempt; errors name `database.migration_url`. With `create_missing` (development) a missing
/// database is created first.
pub async fn connect_with_retries(
    db: &DatabaseSettings,
    options: &PgConnectOptions,
    create_missing: bool,
) -> Result<PgConnection, DbError> {
    connect_within(&mut Attempts::new(db), options, create_missing).await
}

/// [`connect_with_retries`] spending `attempts`, which the caller may have spent some of.
pub async fn connect_within(
    attempts: &mut Attempts<'_>,
    options: &PgConnectOptions,
    create_missing: bool,
) -> Result<PgConnection, DbError> {
    let db = attempts.db;
    let (url, var) = (db.migration_url(), db.migration_url_var());
    let mut created = false;
    loop {
        let (error, failure) = match super::connect(options, db.connect_timeout).await {
            Ok(conn) => return Ok(conn),
            Err(e) if let Some(what) = timed_out(&e) => (what, None),
            Err(e) if is_missing_database(&e) && create_missing && !created => {
                create_database(url, var).await?;
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
