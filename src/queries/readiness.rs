//! Readiness knows its own queries: the instance prepares every query of its embedded set
//! against the live schema (Parse only, never Execute) and `/health/ready` fails with
//! `"queries"` while one does not prepare (a column dropped by hand, a migration applied by
//! someone else).
//!
//! All statements go in one simple-query batch (`PREPARE …; DEALLOCATE …;` for each): one round trip
//! when every query prepares. Only when the batch fails is each query prepared alone, so that
//! every failing one is named, not just the first.

use std::sync::{Arc, RwLock};

use serde::Serialize;
use sqlx::PgConnection;

use super::{Query, QuerySet};

/// A query of the set that PostgreSQL refused to prepare.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Unprepared {
    pub hash: String,
    /// The first line of its SQL.
    pub query: String,
    /// PostgreSQL's error, e.g. `column "content" does not exist`.
    pub error: String,
}

/// The last verdict over the instance's own queries, shared with the health routes.
#[derive(Debug, Clone, Default)]
pub struct QueryHealth(Arc<RwLock<Option<Vec<Unprepared>>>>);

impl QueryHealth {
    /// `None` until checked; then the queries that did not prepare (empty: all did).
    pub fn unprepared(&self) -> Option<Vec<Unprepared>> {
        self.0.read().ok().and_then(|v| v.clone())
    }

    fn set(&self, verdict: Vec<Unprepared>) {
        if let Ok(mut slot) = self.0.write() {
            *slot = Some(verdict);
        }
    }

    /// Prepares `set` on `conn` and keeps the verdict. A connection error keeps the previous
    /// verdict (the database check reports the connection) and is returned.
    pub async fn refresh(
        &self,
        conn: &mut PgConnection,
        set: &QuerySet,
    ) -> Result<(), sqlx::Error> {
        let verdict = prepare_all(conn, set).await?;
        // Logged when the verdict changes, not at every heartbeat.
        let previous = self.unprepared();
        if previous.as_ref() == Some(&verdict) {
            return Ok(());
        }
        if verdict.is_empty() && previous.is_some() {
            tracing::info!("Every query of the release prepares against the live schema again");
        }
        for q in &verdict {
            tracing::warn!(
                query = %q.hash,
                "Query {} no longer prepares against the live schema: {} ({})",
                &q.hash[..q.hash.len().min(12)],
                q.error,
                q.query
            );
        }
        self.set(verdict);
        Ok(())
    }
}

/// Prepares every query of `set`; the ones PostgreSQL refuses, with its error.
pub async fn prepare_all(
    conn: &mut PgConnection,
    set: &QuerySet,
) -> Result<Vec<Unprepared>, sqlx::Error> {
    if set.is_empty() {
        return Ok(Vec::new());
    }
    // Each statement deallocated at once: PREPARE is not transactional, so a batch cut by a
    // failing one leaves nothing behind on the (pooled) connection.
    let mut batch = String::new();
    for (i, q) in set.queries().iter().enumerate() {
        batch.push_str(&prepare_sql(i, q));
        batch.push_str(&format!("DEALLOCATE _agent_ready_{i};\n"));
    }
    match sqlx::raw_sql(sqlx::AssertSqlSafe(batch))
        .execute(&mut *conn)
        .await
    {
        Ok(_) => return Ok(Vec::new()),
        Err(sqlx::Error::Database(_)) => {}
        Err(e) => return Err(e),
    }
    // One at a time, to name every query that fails (the batch stopped at the first).
    let mut failed = Vec::new();
    for (i, q) in set.queries().iter().enumerate() {
        let one = format!("{}DEALLOCATE _agent_ready_{i};\n", prepare_sql(i, q));
        match sqlx::raw_sql(sqlx::AssertSqlSafe(one))
            .execute(&mut *conn)
            .await
        {
            Ok(_) => {}
            Err(sqlx::Error::Database(e)) => failed.push(Unprepared {
                hash: q.hash.clone(),
                query: q.first_line(),
                error: e.message().to_string(),
            }),
            Err(e) => return Err(e),
        }
    }
    Ok(failed)
}

/// `PREPARE` with PostgreSQL inferring the parameter types, as sqlx's Parse does. The SQL ends
/// on its own line, so a trailing `--` comment cannot swallow the `;`.
fn prepare_sql(i: usize, q: &Query) -> String {
    format!("PREPARE _agent_ready_{i} AS {}\n;\n", q.sql)
}
