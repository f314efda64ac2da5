//! `server migrate snapshot | drift | test`: the schema itself, not only the bookkeeping rows.
//!
//! - `snapshot` prints the schema of the configured database (or of a scratch database migrated
//!   with the embedded set, `--fresh`), writes it to a file, or checks a file against it (a stale
//!   committed `schema.snapshot` fails like `cargo sqlx prepare --check` does for `.sqlx/`);
//! - `drift` compares the configured database with the embedded snapshot;
//! - `test` runs every migration up, down and up again on a scratch (or given empty) database.
//!
//! Output is a typed view, printed as text or as one JSON document (`--json`).

use std::io::Write;
use std::path::Path;

use serde::Serialize;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection};

use crate::app::AppError;
use crate::config::Settings;
use crate::db;
use crate::exit::Exit;
use crate::migrate::roundtrip::{self, RoundTrip};
use crate::migrate::snapshot::{self, Drift, Snapshot};
use crate::migrate::{MigrateError, Migrator, embedded};

fn print(text: &str) {
    let _ = write!(std::io::stdout(), "{text}");
}

fn print_json<T: Serialize>(value: &T) {
    print(&format!(
        "{}\n",
        serde_json::to_string_pretty(value).unwrap_or_default()
    ));
}

/// A database created for one command and dropped after it, on the configured server.
struct Scratch {
    name: String,
    options: PgConnectOptions,
}

impl Scratch {
    async fn create(admin: &mut PgConnection, settings: &Settings) -> Result<Self, MigrateError> {
        let name = format!(
            "agent_backend_scratch_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(admin)
            .await
            .map_err(MigrateError::db(
                "creating a scratch database (the user needs CREATEDB; or pass --database-url of an empty database)",
            ))?;
        Ok(Self {
            options: db::migrate_options(settings).database(&name),
            name,
        })
    }

    async fn connect(&self) -> Result<PgConnection, MigrateError> {
        self.options
            .connect()
            .await
            .map_err(MigrateError::db("connecting to the scratch database"))
    }

    async fn drop(self, admin: &mut PgConnection) {
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
    scratch.drop(admin).await;
    result
}

/// `migrate snapshot [--fresh] [--write FILE | --check FILE]`.
pub async fn snapshot(
    settings: &Settings,
    migrator: &Migrator<'_>,
    conn: &mut PgConnection,
    fresh: bool,
    write: Option<&Path>,
    check: Option<&Path>,
) -> Result<Exit, AppError> {
    let table = migrator.set().bookkeeping().table.clone();
    let taken = if fresh {
        with_scratch(conn, settings, async |scratch: &mut PgConnection| {
            migrator.for_private_database().run(scratch).await?;
            Snapshot::take(scratch, &table).await
        })
        .await?
    } else {
        Snapshot::take(conn, &table).await?
    };
    let text = taken.render();
    if let Some(path) = write {
        std::fs::write(path, &text).map_err(|e| AppError::Io(path.display().to_string(), e))?;
        eprintln!("Wrote {} ({} objects)", path.display(), taken.objects.len());
        return Ok(Exit::Success);
    }
    if let Some(path) = check {
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
        print(&snapshot::render_diff(&differences));
        eprintln!(
            "server: {} is stale: {} difference(s) from the schema the migrations produce; \
             rewrite it with `server migrate snapshot --fresh --write {}` and commit it",
            path.display(),
            differences.len(),
            path.display()
        );
        return Ok(Exit::SchemaDiffers);
    }
    print(&text);
    Ok(Exit::Success)
}

#[derive(Serialize)]
struct DriftView<'a> {
    database: String,
    ok: bool,
    #[serde(flatten)]
    drift: &'a Drift,
}

/// `migrate drift`: exit 0 clean, 11 drift, 9 not comparable (the database is not at the
/// snapshot's version).
pub async fn drift(
    settings: &Settings,
    migrator: &Migrator<'_>,
    conn: &mut PgConnection,
    json: bool,
) -> Result<Exit, AppError> {
    let drift = migrator
        .drift(
            conn,
            embedded::snapshot(),
            &settings.migrations.drift_ignore(),
        )
        .await?;
    if json {
        print_json(&DriftView {
            database: settings.database.migration_url().masked(),
            ok: drift.is_clean(),
            drift: &drift,
        });
    } else {
        match &drift {
            Drift::Checked { differences } if !differences.is_empty() => {
                print(&format!(
                    "Schema drift: {} difference(s) from the embedded snapshot\n",
                    differences.len()
                ));
                for d in differences {
                    print(&format!("  {d}\n"));
                }
            }
            other => print(&format!("{}\n", capitalize(&other.summary()))),
        }
    }
    Ok(match drift {
        Drift::Checked { differences } if differences.is_empty() => Exit::Success,
        Drift::Checked { .. } => Exit::SchemaDiffers,
        Drift::NotComparable { .. } => Exit::Refused,
    })
}

fn capitalize(s: &str) -> String {
    let mut chars = s.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// `migrate test [--database-url URL]`: the round trip on a scratch database (created and
/// dropped on the configured server) or on the given empty one.
pub async fn test(
    settings: &Settings,
    migrator: &Migrator<'_>,
    conn: &mut PgConnection,
    database_url: Option<&str>,
    json: bool,
) -> Result<Exit, AppError> {
    let expected = embedded::snapshot();
    let migrator = &migrator.for_private_database();
    let report = match database_url {
        Some(url) => {
            let url = crate::config::DatabaseUrl::parse(url)
                .map_err(|e| AppError::Input(format!("--database-url: {e}")))?;
            let mut target = url
                .connect_options()
                .connect()
                .await
                .map_err(MigrateError::db("connecting to --database-url"))?;
            let report = roundtrip::round_trip(migrator, &mut target, Some(expected)).await;
            let _ = target.close().await;
            report?
        }
        None => {
            with_scratch(conn, settings, async |scratch: &mut PgConnection| {
                roundtrip::round_trip(migrator, scratch, Some(expected)).await
            })
            .await?
        }
    };
    if json {
        print_json(&TestView {
            ok: report.passed(),
            report: &report,
        });
    } else {
        print_round_trip(&report);
    }
    Ok(if report.passed() {
        Exit::Success
    } else {
        Exit::SchemaDiffers
    })
}

#[derive(Serialize)]
struct TestView<'a> {
    ok: bool,
    #[serde(flatten)]
    report: &'a RoundTrip,
}

fn print_round_trip(report: &RoundTrip) {
    print(&format!(
        "Applied {} migration(s); {} down migration(s) restored the schema\n",
        report.applied.len(),
        report.reverted.len()
    ));
    if let Some((version, differences)) = &report.down_mismatch {
        print(&format!(
            "FAIL: the down migration of {version} does not restore the schema its up migration \
             found ({} difference(s); - before up, + after down):\n{}",
            differences.len(),
            snapshot::render_diff(differences)
        ));
    }
    match &report.final_differences {
        Some(d) if !d.is_empty() => print(&format!(
            "FAIL: the migrated schema differs from the embedded snapshot ({} difference(s); \
             - snapshot, + migrated):\n{}",
            d.len(),
            snapshot::render_diff(d)
        )),
        Some(_) => print("ok: the migrated schema equals the embedded snapshot\n"),
        None => {}
    }
}
