//! The connection budget: the request pool (times `server.instances`, plus each instance's
//! event listener and a migration session) against the connection slots PostgreSQL allows.

use sqlx::Row;
use sqlx::postgres::PgPool;

use crate::config::DatabaseSettings;

/// Sessions each instance needs beside its pool: the event listener's and a migration session.
const SESSIONS_BESIDE_POOL: u32 = 2;

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

    /// The warning when `instances` instances, each with a pool of `pool_max`, its event
    /// listener's session (`events::listener`) and one migration session (the pre-deploy
    /// command or a `server migrate` job beside them), need more connections than PostgreSQL
    /// allows; `None` when they fit.
    pub fn shortfall(&self, pool_max: u32, instances: u32) -> Option<String> {
        let available = self.available();
        let share = available / instances.max(1);
        let need = pool_max + SESSIONS_BESIDE_POOL;
        (share < need).then(|| {
            format!(
                "Connection budget exceeded: {instances} instance(s) (server.instances) × ({pool_max} pooled \
                 (database.max_connections) + 1 event listener + 1 migration session) = {} connections, but PostgreSQL allows \
                 {available} ({} max_connections − {} superuser_reserved_connections − {} \
                 reserved_connections), {share} per instance; at peak, connections will fail with \
                 \"too many clients\": set database.max_connections to at most {} or put a \
                 transaction-mode pooler in front of DATABASE_URL (docs/operations.md)",
                instances * need,
                self.max_connections,
                self.superuser_reserved,
                self.reserved,
                share.saturating_sub(SESSIONS_BESIDE_POOL).max(1),
            )
        })
    }
}

/// Logs the request pool's maximum and checks it against PostgreSQL's connection limit (one
/// simple-protocol query on a pool connection, which the first request reuses). When
/// `DATABASE_URL` is not the migration URL it is taken to be a pooler: PostgreSQL then sees the
/// pooler's connections, not this pool's, and only the figures are logged. Never fails start-up:
/// a database that does not answer is readiness's business.
pub async fn check_budget(pool: &PgPool, db: &DatabaseSettings, instances: u32) {
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
             keep its pool size plus {instances} event listener(s) and {instances} migration \
             session(s) within that",
            limits.available()
        ),
        Some(warning) => tracing::warn!(available = limits.available(), "{warning}"),
        None => tracing::info!(
            available = limits.available(),
            "Connection budget: {instances} instance(s) × ({} pooled + 1 event listener + 1 migration \
             session) fit in the {} \
             connections PostgreSQL allows",
            db.max_connections,
            limits.available()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::ConnectionLimits;

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
        assert_eq!(render.shortfall(46, 2), None); // 97 / 2 = 48 = 46 + 2
        let warning = render.shortfall(47, 2).expect("47 + 2 > 48");
        assert!(warning.contains("2 instance(s)"), "{warning}");
        assert!(warning.contains("at most 46"), "{warning}");
        assert!(render.shortfall(10, 9).is_some(), "97 / 9 = 10 < 12");
        // PostgreSQL 16+ reserves more.
        let pg16 = ConnectionLimits {
            reserved: 10,
            ..render
        };
        assert_eq!(pg16.available(), 87);
        assert!(pg16.shortfall(42, 2).is_some());
        assert_eq!(pg16.shortfall(41, 2), None);
    }
}
