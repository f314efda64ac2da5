//! The pre-deploy's refusal: when migrations are pending, the releases recorded as serving are
//! checked against the schema the set produces, on a scratch database, before the migration
//! lock is taken and anything is applied. Nothing pending costs what it did: one status read.
//!
//! Policy (`migrations.on_incompatible`): `error` applies nothing and fails with exit 14,
//! naming the queries; `warn` logs the breaks and applies. A check that cannot run (no scratch
//! database: no CREATEDB and no `migrations.compat_scratch_url`) is said in one line and judged
//! by the same policy: `error` refuses, `warn` applies unchecked. No release recorded as
//! serving: nothing to check.

use std::time::Instant;

use sqlx::PgConnection;

use super::scratch::Scratch;
use super::{CompatError, Report};
use crate::config::{OnIncompatible, Settings};
use crate::db;
use crate::migrate::{MigrateError, Migrator, RunReport};
use crate::releases;

/// Why the gated stage stopped.
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    #[error(transparent)]
    Migrate(#[from] MigrateError),
    /// The pending migrations break a serving release (exit 14).
    #[error("{}", incompatible_text(.0))]
    Incompatible(Box<Report>),
    /// The check could not run and the policy refuses to apply unchecked (exit 14).
    #[error(
        "compatibility with the serving releases not checked: {0}; nothing applied (migrations.on_incompatible = \"error\")"
    )]
    Unchecked(String),
}

fn incompatible_text(report: &Report) -> String {
    let queries: Vec<String> = report.findings.iter().map(|f| f.to_string()).collect();
    format!(
        "the pending migrations break {} quer(ies) of the release(s) still serving; nothing \
         applied: {}",
        report.findings.len(),
        queries.join("; ")
    )
}

/// The stage's run: status; when something is pending, the compat check; then the engine.
pub async fn run(
    settings: &Settings,
    migrator: &Migrator<'_>,
    conn: &mut PgConnection,
) -> Result<RunReport, GateError> {
    let started = Instant::now();
    let status = migrator.status(conn).await?;
    let dirty = status.dirty_row(None).is_some();
    if !dirty && migrator.plan_apply(&status, None)?.is_empty() {
        // The engine's own no-op answer, without reading the table a second time.
        return Ok(RunReport {
            applied: Vec::new(),
            embedded: migrator.set().len(),
            newest: status.newest_applied(),
            unknown: status.unknown,
            locked: false,
            elapsed: started.elapsed(),
        });
    }
    // A dirty row is the engine's to resolve under the lock (a migration in progress).
    if !dirty {
        check_serving(settings, migrator, conn).await?;
    }
    let report = migrator.run(conn).await?;
    if !report.applied.is_empty() {
        let table = releases::table_for(&migrator.set().bookkeeping().table);
        if let Err(e) = releases::ensure_table(conn, &table).await {
            tracing::warn!("could not create {table} (serving releases are recorded there): {e}");
        }
    }
    Ok(report)
}

/// The serving releases against the pending set, as the policy says.
async fn check_serving(
    settings: &Settings,
    migrator: &Migrator<'_>,
    conn: &mut PgConnection,
) -> Result<(), GateError> {
    let m = &settings.migrations;
    let table = releases::table_for(&migrator.set().bookkeeping().table);
    let serving = releases::serving(conn, &table, m.serving_window)
        .await
        .map_err(MigrateError::db("reading the serving releases"))?;
    if serving.is_empty() {
        tracing::info!("Compat check: no release recorded as serving in {table}; nothing to check");
        return Ok(());
    }
    let scratch = match &m.compat_scratch_url {
        Some(url) => Scratch::Reset(url.connect_options()),
        None => Scratch::Create {
            admin: &mut *conn,
            options: db::migration_session_options(&settings.database, &settings.migrations),
        },
    };
    let private = migrator.for_private_database();
    let checked = scratch
        .with(async |scratch: &mut PgConnection| {
            private.run(scratch).await?;
            super::check(scratch, &serving).await
        })
        .await;
    let policy = m.on_incompatible;
    match checked {
        Ok(report) if report.is_compatible() => {
            tracing::info!("Compat check: {}", report.summary());
            Ok(())
        }
        Ok(report) => {
            for finding in &report.findings {
                if policy == OnIncompatible::Error {
                    tracing::error!("Incompatible with a serving release: {finding}");
                } else {
                    tracing::warn!("Incompatible with a serving release: {finding}");
                }
            }
            match policy {
                OnIncompatible::Error => Err(GateError::Incompatible(Box::new(report))),
                OnIncompatible::Warn => {
                    tracing::warn!(
                        "Compat check: {}; applying anyway (migrations.on_incompatible = \"warn\")",
                        report.summary()
                    );
                    Ok(())
                }
            }
        }
        Err(e) => unchecked(policy, e),
    }
}

fn unchecked(policy: OnIncompatible, e: CompatError) -> Result<(), GateError> {
    match policy {
        OnIncompatible::Error => Err(GateError::Unchecked(e.to_string())),
        OnIncompatible::Warn => {
            tracing::warn!(
                "Compat check not run: {e}; applying unchecked (migrations.on_incompatible = \"warn\")"
            );
            Ok(())
        }
    }
}
