//! `server migrate snapshot | drift | test`: the schema itself, not only the bookkeeping rows.
//!
//! - `snapshot` prints the schema of the configured database (or of a scratch database migrated
//!   with the embedded set, `--fresh`), writes it to a file, or checks a file against it (a stale
//!   committed `schema.snapshot` fails like `cargo sqlx prepare --check` does for `.sqlx/`);
//! - `drift` compares the configured database with the embedded snapshot;
//! - `test` runs every migration up, down and up again on a scratch (or given empty) database.
//!
//! `drift` and `test` print a typed view; `snapshot` prints the snapshot's own text format.

use std::path::PathBuf;

use clap::Args;
use serde::Serialize;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection};

use super::ctx::Ctx;
use super::output::{Text, View, write_stdout};
use crate::config::Settings;
use crate::db;
use crate::error::{AppError, Exit};
use crate::migrate::MigrateError;
use crate::migrate::roundtrip::{self, RoundTrip};
use crate::migrate::snapshot::{self, Drift, Snapshot};

#[derive(Debug, Args)]
pub struct SnapshotArgs {
    /// Snapshot a scratch database (created, migrated, dropped) instead of the configured one.
    #[arg(long)]
    fresh: bool,
    /// Write the snapshot to FILE (e.g. schema.snapshot) instead of printing it.
    #[arg(long, conflicts_with = "check")]
    write: Option<PathBuf>,
    /// Compare FILE with the snapshot: exit 0 equal, 11 stale (with the differences).
    #[arg(long)]
    check: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct TestArgs {
    /// An empty database to use instead of a scratch one.
    #[arg(long)]
    database_url: Option<String>,
}

/// A database created for one command and dropped after it, on the configured server.
struct Scratch {
    database: db::ScratchDatabase,
    options: PgConnectOptions,
}

impl Scratch {
    async fn create(admin: &mut PgConnection, settings: &Settings) -> Result<Self, MigrateError> {
        let database = db::ScratchDatabase::create(admin, "agent_backend_scratch")
            .await
            .map_err(MigrateError::db(
                "creating a scratch database (the user needs CREATEDB; or pass --database-url of an empty database)",
            ))?;
        Ok(Self {
            options: db::migration_session_options(&settings.database, &settings.migrations)
                .database(database.name()),
            database,
        })
    }

    async fn connect(&self) -> Result<PgConnection, MigrateError> {
        self.options
            .connect()
            .await
            .map_err(MigrateError::db("connecting to the scratch database"))
    }
}

/// Runs `work` on a new scratch database, dropping it afterwards whatever happened.
async fn with_scratch<T>(
    admin: &mut PgConnection,
    settings: &Settings,
    work: impl AsyncFnOnce(&mut PgConnection) -> Result<T, MigrateError>,
) -> Result<T, MigrateError> {
    let scratch = Scratch::create(admin, settings).await?;
    let result = async {
        let mut conn = scratch.connect().await?;
        let value = work(&mut conn).await;
        let _ = conn.close().await;
        value
    }
    .await;
    scratch.database.drop(admin).await;
    result
}

/// `migrate snapshot [--fresh] [--write FILE | --check FILE]`.
pub async fn snapshot(ctx: &mut Ctx<'_>, args: SnapshotArgs) -> Result<Exit, AppError> {
    let migrator = &ctx.migrator;
    let table = migrator.set().bookkeeping().table.clone();
    let taken = if args.fresh {
        with_scratch(
            &mut ctx.conn,
            ctx.settings,
            async |scratch: &mut PgConnection| {
                migrator.for_private_database().run(scratch).await?;
                Snapshot::take(scratch, &table).await
            },
        )
        .await?
    } else {
        Snapshot::take(&mut ctx.conn, &table).await?
    };
    let text = taken.render();
    if let Some(path) = &args.write {
        std::fs::write(path, &text).map_err(|e| AppError::Io(path.display().to_string(), e))?;
        eprintln!("Wrote {} ({} objects)", path.display(), taken.objects.len());
        return Ok(Exit::Success);
    }
    if let Some(path) = &args.check {
        let committed = std::fs::read_to_string(path)
            .map_err(|e| AppError::Io(path.display().to_string(), e))?;
        let committed = Snapshot::parse(&committed)
            .map_err(|e| AppError::Input(format!("{}: {e}", path.display())))?;
        let differences = committed.diff(&taken);
        if differences.is_empty() {
            eprintln!(
                "{} is up to date ({} objects)",
                path.display(),
                taken.objects.len()
            );
            return Ok(Exit::Success);
        }
        write_stdout(&snapshot::render_diff(&differences));
        eprintln!(
            "server: {} is stale: {} difference(s) from the schema the migrations produce; \
             rewrite it with `server migrate snapshot --fresh --write {}` and commit it",
            path.display(),
            differences.len(),
            path.display()
        );
        return Ok(Exit::SchemaDiffers);
    }
    write_stdout(&text);
    Ok(Exit::Success)
}

#[derive(Serialize)]
struct DriftView {
    database: String,
    ok: bool,
    #[serde(flatten)]
    drift: Drift,
}

impl View for DriftView {
    fn text(&self, out: &mut Text) {
        match &self.drift {
            Drift::Checked { differences } if !differences.is_empty() => {
                out.line(format_args!(
                    "Schema drift: {} difference(s) from the embedded snapshot",
                    differences.len()
                ));
                for d in differences {
                    out.line(format_args!("  {d}"));
                }
            }
            other => out.line(capitalize(&other.summary())),
        }
    }
}

/// `migrate drift`: exit 0 clean, 11 drift, 9 not comparable (the database is not at the
/// snapshot's version).
pub async fn drift(ctx: &mut Ctx<'_>) -> Result<Exit, AppError> {
    let drift = ctx.migrator.drift(&mut ctx.conn).await?;
    let exit = match &drift {
        Drift::Checked { differences } if differences.is_empty() => Exit::Success,
        Drift::Checked { .. } => Exit::SchemaDiffers,
        Drift::NotComparable { .. } => Exit::Refused,
    };
    ctx.out.emit(&DriftView {
        database: ctx.settings.database.migration_url().masked(),
        ok: drift.is_clean(),
        drift,
    });
    Ok(exit)
}

fn capitalize(s: &str) -> String {
    let mut chars = s.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// `migrate test [--database-url URL]`: the round trip on a scratch database (created and
/// dropped on the configured server) or on the given empty one, compared with the set's
/// snapshot.
pub async fn test(ctx: &mut Ctx<'_>, args: TestArgs) -> Result<Exit, AppError> {
    let expected = ctx.migrator.set().snapshot();
    let migrator = &ctx.migrator.for_private_database();
    let report = match &args.database_url {
        Some(url) => {
            let url = crate::config::DatabaseUrl::parse(url)
                .map_err(|e| AppError::Input(format!("--database-url: {e}")))?;
            let mut target = url
                .connect_options()
                .connect()
                .await
                .map_err(MigrateError::db("connecting to --database-url"))?;
            let report = roundtrip::round_trip(migrator, &mut target, expected).await;
            let _ = target.close().await;
            report?
        }
        None => {
            with_scratch(
                &mut ctx.conn,
                ctx.settings,
                async |scratch: &mut PgConnection| {
                    roundtrip::round_trip(migrator, scratch, expected).await
                },
            )
            .await?
        }
    };
    let passed = report.passed();
    ctx.out.emit(&TestView { ok: passed, report });
    Ok(if passed {
        Exit::Success
    } else {
        Exit::SchemaDiffers
    })
}

#[derive(Serialize)]
struct TestView {
    ok: bool,
    #[serde(flatten)]
    report: RoundTrip,
}

impl View for TestView {
    fn text(&self, out: &mut Text) {
        let report = &self.report;
        out.line(format_args!(
            "Applied {} migration(s); {} down migration(s) restored the schema",
            report.applied.len(),
            report.reverted.len()
        ));
        if let Some((version, differences)) = &report.down_mismatch {
            out.line(format_args!(
                "FAIL: the down migration of {version} does not restore the schema its up migration \
                 found ({} difference(s); - before up, + after down):\n{}",
                differences.len(),
                snapshot::render_diff(differences).trim_end_matches('\n')
            ));
        }
        match &report.final_differences {
            Some(d) if !d.is_empty() => out.line(format_args!(
                "FAIL: the migrated schema differs from the embedded snapshot ({} difference(s); \
                 - snapshot, + migrated):\n{}",
                d.len(),
                snapshot::render_diff(d).trim_end_matches('\n')
            )),
            Some(_) => out.line("ok: the migrated schema equals the embedded snapshot"),
            None => {}
        }
    }
}
