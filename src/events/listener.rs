//! The instance's one `LISTEN` session, feeding the [`Hub`].
//!
//! It connects to `database.migration_url` (the direct URL: a transaction-mode pooler lends a
//! server session per transaction and cannot hold a `LISTEN`), or `database.url` when no
//! migration URL is set. When the session is lost (PostgreSQL restarted, the backend terminated,
//! the network cut), it connects again with backoff, 100 ms doubling to 5 s; each time it is
//! listening again it tells every stream to resync, reading from the log what the gap hid.

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use tokio::task::JoinHandle;

use super::{CHANNEL, Hub};

const FIRST_DELAY: Duration = Duration::from_millis(100);
const MAX_DELAY: Duration = Duration::from_secs(5);

/// Listens until the task is aborted (`app::serve` does, after the server stopped).
pub fn spawn(hub: Hub, options: PgConnectOptions, connect_timeout: Duration) -> JoinHandle<()> {
    tokio::spawn(run(hub, options, connect_timeout))
}

async fn run(hub: Hub, options: PgConnectOptions, connect_timeout: Duration) {
    let mut delay = FIRST_DELAY;
    let mut failures = 0u32;
    loop {
        match listen(&options, connect_timeout).await {
            Ok(mut listener) => {
                if failures > 0 {
                    tracing::info!(
                        "Event listener listening again after {failures} failed attempt(s)"
                    );
                }
                delay = FIRST_DELAY;
                failures = 0;
                crate::monitoring::event_listener(true);
                hub.resync();
                let lost = loop {
                    match listener.try_recv().await {
                        Ok(Some(notification)) => hub.notify(notification.payload()),
                        Ok(None) => break "the connection was closed".to_string(),
                        Err(e) => break e.to_string(),
                    }
                };
                crate::monitoring::event_listener(false);
                tracing::warn!(
                    "Event listener lost its session ({lost}); reconnecting, streams catch up \
                     from the log"
                );
            }
            Err(e) => {
                failures += 1;
                // The first failure and then every tenth: a long outage is not a log flood.
                if failures == 1 || failures.is_multiple_of(10) {
                    tracing::warn!(
                        attempt = failures,
                        "Event listener cannot listen ({e}); retrying with backoff up to {}s",
                        MAX_DELAY.as_secs()
                    );
                }
            }
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(MAX_DELAY);
    }
}

/// A new session, listening on [`CHANNEL`]. A pool of its own and of one connection: sqlx's
/// listener wants one, and a fresh one per attempt never hands back the dead session.
async fn listen(options: &PgConnectOptions, timeout: Duration) -> Result<PgListener, sqlx::Error> {
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(timeout)
        .idle_timeout(None)
        .max_lifetime(None)
        .connect_lazy_with(options.clone());
    let mut listener = PgListener::connect_with(&pool).await?;
    listener.eager_reconnect(false);
    listener.listen(CHANNEL).await?;
    Ok(listener)
}
