//! The database a compat check migrates and describes on: one it creates on the configured
//! server and drops afterwards (needs CREATEDB), an empty one named on the command line
//! (`--database-url`), or `migrations.compat_scratch_url`, a database of its own that the
//! check empties before each use (every schema dropped, `public` recreated) — for a user
//! without CREATEDB.

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection};

use tracing::Instrument;

use super::CompatError;

/// Which database the check uses.
pub enum Scratch<'a> {
    /// Created on the server `admin` is connected to, with `options` (the migration
    /// session's) naming it; dropped afterwards.
    Create {
        admin: &'a mut PgConnection,
        options: PgConnectOptions,
    },
    /// A given database that must be empty (`migrate compat --database-url`).
    Empty(PgConnectOptions),
    /// `migrations.compat_scratch_url`: emptied first.
    Reset(PgConnectOptions),
}

const USER_OBJECTS: &str = "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
     WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') \
       AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'";

const RESET: &str = r#"DO $reset$
DECLARE s text;
BEGIN
  FOR s IN SELECT nspname FROM pg_namespace
           WHERE nspname NOT IN ('pg_catalog', 'information_schema') AND nspname NOT LIKE 'pg\_%'
  LOOP
    EXECUTE format('DROP SCHEMA %I CASCADE', s);
  END LOOP;
  CREATE SCHEMA IF NOT EXISTS public;
END
$reset$"#;

impl Scratch<'_> {
    /// Runs `work` connected to the scratch database; a created one is dropped afterwards
    /// whatever happened.
    pub async fn with<T>(
        self,
        work: impl AsyncFnOnce(&mut PgConnection) -> Result<T, CompatError>,
    ) -> Result<T, CompatError> {
        match self {
            Scratch::Create { admin, options } => {
                let database =
                    match crate::db::ScratchDatabase::create(admin, "agent_backend_compat").await {
                        Ok(database) => database,
                        Err(sqlx::Error::Database(d)) if d.code().as_deref() == Some("42501") => {
                            return Err(CompatError::Scratch(format!(
                                "cannot create a scratch database ({}); set \
                                 migrations.compat_scratch_url to a database of its own",
                                d.message()
                            )));
                        }
                        Err(e) => {
                            return Err(CompatError::Database {
                                context: "creating a scratch database".into(),
                                source: e,
                            });
                        }
                    };
                let span = tracing::info_span!("compat.scratch", database = %database.name());
                let result = async {
                    let mut conn = options
                        .database(database.name())
                        .connect()
                        .await
                        .map_err(CompatError::db("connecting to the scratch database"))?;
                    let value = work(&mut conn).await;
                    let _ = conn.close().await;
                    value
                }
                .instrument(span)
                .await;
                database.drop(admin).await;
                result
            }
            Scratch::Empty(options) => given(options, false, work).await,
            Scratch::Reset(options) => given(options, true, work).await,
        }
    }
}

/// A database named by URL: emptied first (`reset`), else refused unless empty.
async fn given<T>(
    options: PgConnectOptions,
    reset: bool,
    work: impl AsyncFnOnce(&mut PgConnection) -> Result<T, CompatError>,
) -> Result<T, CompatError> {
    let mut conn = options
        .connect()
        .await
        .map_err(CompatError::db("connecting to the scratch database"))?;
    let span =
        tracing::info_span!("compat.scratch", database = %options.get_database().unwrap_or(""));
    let result = async {
        if reset {
            sqlx::raw_sql(RESET)
                .execute(&mut conn)
                .await
                .map_err(CompatError::db("emptying migrations.compat_scratch_url"))?;
        } else {
            let objects: i64 = sqlx::query_scalar(USER_OBJECTS)
                .fetch_one(&mut conn)
                .await
                .map_err(CompatError::db("reading the scratch database's catalogs"))?;
            if objects > 0 {
                return Err(CompatError::Scratch(format!(
                    "the scratch database is not empty ({objects} relation(s)); name an empty one"
                )));
            }
        }
        work(&mut conn).await
    }
    .instrument(span)
    .await;
    let _ = conn.close().await;
    result
}
