//! The two ways the binary runs: the pre-serve stage alone (`--migrate-only`), or the stage and
//! then the HTTP server. Both start from loaded [`Settings`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::{Connection, PgConnection};
use tracing::Instrument;

use crate::compat::{self, gate::GateError};
use crate::config::Settings;
use crate::db::{self, DbError};
use crate::error::AppError;
use crate::http::{self, AppState};
use crate::migrate::snapshot::Drift;
use crate::migrate::{
    MigrateError, MigrateOptions, Migration, MigrationSet, Migrator, Observer, RunReport, embedded,
};
use crate::queries::QuerySet;
use crate::queries::readiness::QueryHealth;
use crate::releases;
use crate::{monitoring, telemetry};

/// The engine over `set` as the configuration asks: lock waits and retries, the policy that
/// judges statuses and drift, and the pooler check before the lock.
pub fn migrator<'a>(settings: &Settings, set: &'a MigrationSet) -> Migrator<'a> {
    let m = &settings.migrations;
    Migrator::new(
        set,
        MigrateOptions {
            lock_wait_timeout: m.lock_wait_timeout,
            policy: m.policy(),
            allow_out_of_order: m.allow_out_of_order,
            lock_retries: m.lock_retries,
            session_check: Some(db::session_check(&settings.database, m)),
            observer: Arc::new(StageObserver),
            ..MigrateOptions::default()
        },
    )
}

/// What the engine reports as it runs, recorded by the binary: the lock wait as a gauge
/// ([`monitoring::lock_wait`]), each migration as a `migration V` span when traces are
/// exported ([`telemetry::traced`]).
struct StageObserver;

impl Observer for StageObserver {
    fn lock_waited(&self, waited: Duration) {
        monitoring::lock_wait(waited);
    }

    fn migration_span(&self, m: &Migration) -> tracing::Span {
        telemetry::traced(|| {
            tracing::info_span!(
                target: "agent_backend::migrate::engine",
                "migration",
                otel.name = format!("migration {}", m.version),
                version = m.version,
                file = %m.up.file,
            )
        })
    }
}

/// Whether a missing database is created on connect: in development only.
fn creates_missing(settings: &Settings) -> bool {
    settings.environment == crate::config::Environment::Development
}

/// The migration session: `database.migration_url`, with retries and the session guards.
pub async fn migration_session(settings: &Settings) -> Result<PgConnection, DbError> {
    let options = db::migration_session_options(&settings.database, &settings.migrations);
    db::connect_with_retries(&settings.database, &options, creates_missing(settings)).await
}

/// Connect (with retries), status, apply what is pending under the lock, verify; run again
/// after a lost connection, within the same retries. Logs the outcome in the words the
/// operations guide tells people to watch for.
pub async fn pre_serve(settings: &Settings) -> Result<RunReport, AppError> {
    pre_serve_with(settings, embedded::migrations()).await
}

/// [`pre_serve`] over any validated set. The binary passes only the embedded one; benchmarks
/// pass generated sets through this same code. After migrations were applied, the schema is
/// compared with the set's snapshot, when it has one, and the drift is logged (a warning,
/// never a failure: `/health` and `migrate verify` carry the policy). A failure is returned as
/// [`AppError::Stage`] ("Migration failed: …"), for the caller to report.
pub async fn pre_serve_with(
    settings: &Settings,
    migrations: &MigrationSet,
) -> Result<RunReport, AppError> {
    let started = Instant::now();
    let result = async {
        let migrator = migrator(settings, migrations);
        let (mut conn, report) = run_with_reconnects(settings, &migrator).await?;
        if let Ok(r) = &report
            && !r.applied.is_empty()
            && migrations.snapshot().is_some()
        {
            match migrator.drift(&mut conn).await {
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
    let report = result.map_err(|e| {
        monitoring::stage(elapsed, "failed", 0);
        AppError::Stage(Box::new(e))
    })?;
    let newest = report
        .newest
        .map_or_else(|| "none".to_string(), |v| v.to_string());
    if report.applied.is_empty() {
        monitoring::stage(elapsed, "up_to_date", 0);
        tracing::info!(
            embedded = report.embedded,
            newest = report.newest,
            elapsed_ms,
            "Schema up to date: {} embedded migration(s) applied, newest {newest}, checked in {elapsed_ms} ms",
            report.embedded,
        );
    } else {
        monitoring::stage(elapsed, "applied", report.applied.len());
        tracing::info!(
            applied = report.applied.len(),
            embedded = report.embedded,
            newest = report.newest,
            elapsed_ms,
            "Migrations completed successfully: applied {} of {} embedded, newest {newest}, in {elapsed_ms} ms",
            report.applied.len(),
            report.embedded,
        );
    }
    Ok(report)
}

/// Connects and runs the stage, and again from a new connection's status read each time the
/// connection is lost under it ([`MigrateError::ConnectionLost`]: nothing was left half-done,
/// and whether a migration whose commit was cut landed is for the status read to tell). The
/// retries spend the connection attempts' budget (`database.connect_attempts`,
/// `connect_retry_delay`): when it is spent the stage fails as unreachable (exit 4). Each
/// rerun re-takes the migration lock, which the lost session released.
async fn run_with_reconnects(
    settings: &Settings,
    migrator: &Migrator<'_>,
) -> Result<(PgConnection, Result<RunReport, GateError>), DbError> {
    let options = db::migration_session_options(&settings.database, &settings.migrations);
    let mut attempts = db::Attempts::new(&settings.database);
    loop {
        let mut conn =
            db::connect_within(&mut attempts, &options, creates_missing(settings)).await?;
        // The compat check against the serving releases runs there, before the lock.
        match compat::gate::run(settings, migrator, &mut conn).await {
            Err(GateError::Migrate(lost @ MigrateError::ConnectionLost { .. })) => {
                let cause = lost.to_string();
                let hint = || {
                    let var = settings.database.migration_url_var();
                    format!("check {var} and the database's status")
                };
                attempts
                    .failed(cause.clone(), hint, |attempt, attempts, delay| {
                        tracing::warn!(
                            attempt,
                            attempts,
                            "Migration stage attempt {attempt}/{attempts} {cause}; retrying in \
                             {delay} from the status read"
                        )
                    })
                    .await?;
            }
            report => return Ok((conn, report)),
        }
    }
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
    pre_serve_with(settings, migrations).await?;
    let (pool, sessions) = db::pool_with_sessions(&settings.database);
    db::check_budget(&pool, &settings.database, settings.server.instances).await;
    // The binary's own queries against the live schema, once before serving (one round trip),
    // then the release's record and heartbeat, off the request path. A generated set (tests,
    // benchmarks) is not this build's schema: its release carries no queries.
    let queries = if std::ptr::eq(migrations, embedded::migrations()) {
        QuerySet::embedded()
    } else {
        QuerySet::none()
    };
    let query_health = QueryHealth::default();
    if let Err(e) = async {
        let mut conn = pool.acquire().await?;
        query_health.refresh(&mut conn, queries).await
    }
    .await
    {
        tracing::warn!("Own queries not prepared at start-up: {e}");
    }
    let heartbeat = (!queries.is_empty()).then(|| {
        releases::spawn_heartbeat(
            pool.clone(),
            releases::table_for(&migrations.bookkeeping().table),
            queries,
            releases::heartbeat_every(settings.migrations.serving_window),
            query_health.clone(),
        )
    });
    // Expired Idempotency-Keys, swept off the request path (the embedded set has their table).
    let sweep = std::ptr::eq(migrations, embedded::migrations()).then(|| {
        crate::api::idempotency::spawn_sweep(pool.clone(), settings.idempotency.sweep_every)
    });
    let state = AppState::new(settings, pool.clone(), migrations)
        .with_sessions(sessions)
        .with_queries(query_health);
    let listener = crate::events::listener::spawn(
        state.events.clone(),
        db::listener_options(&settings.database),
        settings.database.connect_timeout,
    );
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
    if let Some(heartbeat) = heartbeat {
        heartbeat.abort();
    }
    listener.abort();
    if let Some(sweep) = sweep {
        sweep.abort();
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
