//! The request pool's server sessions (pid and start), recorded as connections open, and
//! ending the busy ones when shutdown's grace is over.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use sqlx::{ConnectOptions, Connection, PgConnection};

use super::diagnosis::cause;
use super::options::{SERVE_APP_NAME, base_options};
use crate::config::DatabaseSettings;

/// One server session: its process id and start time (a pid alone may be reused).
type Session = (i32, time::OffsetDateTime);

/// The request pool's server sessions, recorded as each connection opens. Entries of closed
/// connections are pruned once the list outgrows twice the pool; they never match anyway, since
/// a session is named by pid and start time together.
#[derive(Clone, Default)]
pub struct Sessions(Arc<Mutex<Vec<Session>>>);

impl Sessions {
    fn list(&self) -> MutexGuard<'_, Vec<Session>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) async fn record(
        &self,
        conn: &mut PgConnection,
        keep: usize,
    ) -> Result<(), sqlx::Error> {
        let me: Session = sqlx::query_as(
            "SELECT pid, backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid()",
        )
        .fetch_one(&mut *conn)
        .await?;
        let known = {
            let mut list = self.list();
            list.push(me);
            (list.len() > keep).then(|| list.clone())
        };
        if let Some(known) = known {
            let (pids, starts): (Vec<i32>, Vec<_>) = known.iter().copied().unzip();
            let alive: Vec<Session> = sqlx::query_as(
                "SELECT a.pid, a.backend_start FROM pg_stat_activity a \
                 JOIN unnest($1::int4[], $2::timestamptz[]) s(pid, started) \
                   ON a.pid = s.pid AND a.backend_start = s.started",
            )
            .bind(pids)
            .bind(starts)
            .fetch_all(&mut *conn)
            .await?;
            self.list()
                .retain(|s| !known.contains(s) || alive.contains(s));
        }
        Ok(())
    }
}

/// Ends (`pg_terminate_backend`) the pool's sessions that are not idle, so that the queries of
/// requests cut by shutdown stop and their transactions roll back, and waits until they are
/// gone; all within `budget`, over a connection of its own (the pool may be exhausted). Returns
/// how many sessions were ended.
pub async fn end_busy_sessions(
    db: &DatabaseSettings,
    sessions: &Sessions,
    budget: Duration,
) -> Result<i64, String> {
    let (pids, starts): (Vec<i32>, Vec<_>) = sessions.list().iter().copied().unzip();
    let work = async {
        let mut conn = base_options(&db.url, SERVE_APP_NAME).connect().await?;
        // MATERIALIZED: the targets are chosen first. A plain join would let the planner push
        // `pg_terminate_backend` down to the scan of pg_stat_activity, ending every session.
        let ended: Vec<i32> = sqlx::query_scalar(
            "WITH targets AS MATERIALIZED ( \
               SELECT a.pid FROM pg_stat_activity a \
               JOIN unnest($1::int4[], $2::timestamptz[]) s(pid, started) \
                 ON a.pid = s.pid AND a.backend_start = s.started \
               WHERE a.state IS DISTINCT FROM 'idle' \
             ) \
             SELECT pid FROM targets WHERE pg_terminate_backend(pid)",
        )
        .bind(pids)
        .bind(starts)
        .fetch_all(&mut conn)
        .await?;
        // pg_terminate_backend only signals: wait until the sessions have rolled back and gone.
        while !ended.is_empty() {
            let left: i64 =
                sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1)")
                    .bind(&ended)
                    .fetch_one(&mut conn)
                    .await?;
            if left == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let _ = conn.close().await;
        Ok::<_, sqlx::Error>(ended.len() as i64)
    };
    match tokio::time::timeout(budget, work).await {
        Ok(Ok(n)) => Ok(n),
        Ok(Err(e)) => Err(cause(&e, "DATABASE_URL")),
        Err(_) => Err(format!("no answer within {} ms", budget.as_millis())),
    }
}
