//! The two ways the binary runs: the pre-serve stage alone (`--migrate-only`), or the stage and
//! then the HTTP server. Both start from loaded [`Settings`].

use std::time::Instant;

use sqlx::Connection;
use tracing::Instrument;

use crate::config::{ConfigError, Settings};
use crate::db::{self, DbError};
use crate::http::{self, AppState};
use crate::migrate::snapshot::Drift;
use crate::migrate::snapshot::Snapshot;
use crate::migrate::{MigrateError, MigrateOptions, MigrationSet, Migrator, RunReport, embedded};
use crate::monitoring;

/// Why `server` stopped with a failure; [`crate::exit::Exit`] maps it to an exit code.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("configuration error: {0}")]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Database(#[from] DbError),
    #[error(transparent)]
    Migrate(#[from] MigrateError),
    #[error("HTTP server: {0}")]
    Serve(std::io::Error),
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    /// A file or value named on the command line that cannot be used (exit 2).
    #[error("{0}")]
    Input(String),
    #[error(transparent)]
    Metrics(#[from] monitoring::MetricsError),
}

pub fn migrate_options(settings: &Settings) -> MigrateOptions {
    MigrateOptions {
        lock_wait_timeout: settings.migrations.lock_wait_timeout,
        on_unknown_applied: settings.migrations.on_unknown_applied,
        allow_out_of_order: settings.migrations.allow_out_of_order,
        lock_retries: settings.migrations.lock_retries,
        session_check: Some(db::session_check(settings)),
        ..MigrateOptions::default()
    }
}

/// Connect (with retries), status, apply what is pending under the lock, verify. Logs the
/// outcome in the words the operations guide tells people to watch for.
pub async fn pre_serve(settings: &Settings) -> Result<RunReport, AppError> {
    pre_serve_with(settings, embedded::migrations(), Some(embedded::snapshot())).await
}

/// [`pre_serve`] over any validated set. The binary passes only the embedded one (and its
/// snapshot); benchmarks pass generated sets through this same code. After migrations were
/// applied, the schema is compared with `expected` and the drift is logged (a warning, never
/// a failure: `/health` and `migrate verify` carry the policy).
pub async fn pre_serve_with(
    settings: &Settings,
    migrations: &MigrationSet,
    expected: Option<&Snapshot>,
) -> Result<RunReport, AppError> {
    let started = Instant::now();
    let result = async {
        let mut conn = db::connect_with_retries(settings, &db::migrate_options(settings)).await?;
        let migrator = Migrator::new(migrations, migrate_options(settings));
        let report = migrator.run(&mut conn).await;
        if let (Ok(r), Some(expected)) = (&report, expected)
            && !r.applied.is_empty()
        {
            match migrator
                .drift(&mut conn, expected, &settings.migrations.drift_ignore())
                .await
            {
                Ok(drift) => {
                    if let Drift::Checked { differences } = &drift {
                        monitoring::drift(differences.len());
                    }
                    if drift.is_clean() {
                        tracing::info!("Schema drift: {}", drift.summary())
                    } else {
                        tracing::warn!("Schema drift: {}", drift.summary())
                    }
                }
                Err(e) => tracing::warn!("Schema drift not checked: {e}"),
            }
        }
        // The gauges of the bookkeeping table, for a serving process (one query more).
        if report.is_ok()
            && monitoring::exporter().is_some()
            && let Ok(status) = migrator.status(&mut conn).await
        {
            monitoring::schema(&status);
        }
        let _ = conn.close().await;
        Ok::<_, AppError>(report?)
    }
    .instrument(tracing::info_span!("migrate.pre_serve"))
    .await;
    let elapsed = started.elapsed();
    let elapsed_ms = elapsed.as_millis() as u64;
    match &result {
        Ok(r) if r.applied.is_empty() => monitoring::stage(elapsed, "up_to_date", 0),
        Ok(r) => monitoring::stage(elapsed, "applied", r.applied.len()),
        Err(_) => monitoring::stage(elapsed, "failed", 0),
    }
    match &result {
        Ok(r) if r.applied.is_empty() => tracing::info!(
            embedded = r.embedded,
            newest = r.newest,
            elapsed_ms,
            "Schema up to date: {} embedded migration(s) applied, newest {}, checked in {elapsed_ms} ms",
            r.embedded,
            r.newest
                .map_or_else(|| "none".to_string(), |v| v.to_string()),
        ),
        Ok(r) => tracing::info!(
            applied = r.applied.len(),
            embedded = r.embedded,
            newest = r.newest,
            elapsed_ms,
            "Migrations completed successfully: applied {} of {} embedded, newest {}, in {elapsed_ms} ms",
            r.applied.len(),
            r.embedded,
            r.newest
                .map_or_else(|| "none".to_string(), |v| v.to_string()),
        ),
        Err(e) => tracing::error!(elapsed_ms, "Migration failed: {e}"),
    }
    result
}

/// The committed schema snapshot when `set` is the embedded set; other sets (tests, benchmarks)
/// have none, and their runs skip the drift log.
pub fn expected_snapshot(set: &MigrationSet) -> Option<&'static Snapshot> {
    std::ptr::eq(set, embedded::migrations()).then(embedded::snapshot)
}

/// `server --migrate-only`: the stage, then exit.
pub async fn migrate_only(settings: &Settings) -> Result<(), AppError> {
    pre_serve(settings).await.map(|_| ())
}

/// How often histogram samples are folded into buckets when nobody scrapes.
const UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Longest `serve` waits for the pool to close after the server stopped.
const POOL_CLOSE_BUDGET: std::time::Duration = std::time::Duration::from_millis(200);

/// `server`: the stage, then serve until SIGTERM/SIGINT, then close the pool.
pub async fn serve(settings: &Settings) -> Result<(), AppError> {
    serve_with(settings, embedded::migrations()).await
}

/// [`serve`] over any validated set (see [`pre_serve_with`]).
pub async fn serve_with(
    settings: &Settings,
    migrations: &'static MigrationSet,
) -> Result<(), AppError> {
    // Before the stage, so that its figures are recorded.
    let exporter = if settings.metrics.enabled {
        let exporter = monitoring::install()?;
        monitoring::build_info(migrations);
        Some(exporter)
    } else {
        None
    };
    pre_serve_with(settings, migrations, expected_snapshot(migrations)).await?;
    let (pool, sessions) = db::pool_with_sessions(settings);
    db::check_budget(&pool, settings).await;
    let state = AppState::new(settings, pool.clone(), migrations).with_sessions(sessions);
    let upkeep = exporter.map(|exporter| {
        tokio::spawn(async move {
            let mut every = tokio::time::interval(UPKEEP_EVERY);
            loop {
                every.tick().await;
                exporter.upkeep();
            }
        })
    });
    let served = http::serve(settings, state).await;
    if let Some(upkeep) = upkeep {
        upkeep.abort();
    }
    // Bounded: a connection still out (its session ended, its request dropped) is not waited
    // for; the process exit closes it.
    if tokio::time::timeout(POOL_CLOSE_BUDGET, pool.close())
        .await
        .is_err()
    {
        tracing::warn!(
            "Closing the database pool took over {} ms; exiting anyway",
            POOL_CLOSE_BUDGET.as_millis()
        );
    }
    served.map_err(AppError::Serve)?;
    tracing::info!("Server stopped");
    Ok(())
}
