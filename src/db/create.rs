//! Development convenience: the database the migration URL names, created when missing.

use sqlx::{ConnectOptions, Connection};

use super::DbError;
use super::diagnosis::cause;
use super::options::{MIGRATE_APP_NAME, base_options};
use crate::config::DatabaseUrl;

/// Development convenience: `CREATE DATABASE` for the name in the migration URL, through the
/// `postgres` maintenance database (as `createdb` and `sqlx database create` do).
pub(super) async fn create_database(url: &DatabaseUrl, var: &str) -> Result<(), DbError> {
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
