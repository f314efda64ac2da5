//! A database made for one command on the server an admin session is connected to, and dropped
//! after it: `migrate snapshot --fresh`, `migrate test` and `migrate compat` each run their
//! work in one.

use sqlx::PgConnection;

/// A scratch database's name; [`ScratchDatabase::drop`] removes it.
pub struct ScratchDatabase {
    name: String,
}

impl ScratchDatabase {
    /// `CREATE DATABASE <prefix>_<12 hex digits>` through `admin` (the user needs CREATEDB).
    pub async fn create(admin: &mut PgConnection, prefix: &str) -> Result<Self, sqlx::Error> {
        let name = format!(
            "{prefix}_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(admin)
            .await?;
        Ok(Self { name })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Drops it, ending any session left on it. A failure is logged, not returned: the
    /// command's own outcome is what its caller reports.
    pub async fn drop(self, admin: &mut PgConnection) {
        let dropped = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        )))
        .execute(admin)
        .await;
        if let Err(e) = dropped {
            tracing::warn!("could not drop the scratch database {}: {e}", self.name);
        }
    }
}
