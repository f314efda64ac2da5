//! `server migrate compat`: would the embedded migrations break the queries of a release?
//!
//! The releases come from the target database (`--from-database`, the default: those recorded
//! as serving within `migrations.serving_window`) or from `.sqlx/` directories (`--queries DIR`,
//! e.g. the previous commit's). The schema is the embedded set applied to a scratch database
//! (created and dropped on the configured server, or `--database-url` of an empty one, or
//! `migrations.compat_scratch_url`). Exit 0 compatible, 14 a break.

use std::path::PathBuf;

use clap::Args;
use serde::Serialize;
use sqlx::PgConnection;

use super::ctx::Ctx;
use super::output::{Text, View};
use crate::compat::scratch::Scratch;
use crate::compat::{self, Report};
use crate::config::DatabaseUrl;
use crate::db;
use crate::error::{AppError, Exit};
use crate::migrate::MigrateError;
use crate::queries::QuerySet;
use crate::releases::{self, Release};

#[derive(Debug, Args)]
pub struct CompatArgs {
    /// Check the releases recorded as serving in the configured database (the default).
    #[arg(long, conflicts_with = "queries")]
    from_database: bool,
    /// Check the queries of a `.sqlx/` directory (repeatable), e.g. the previous release's.
    #[arg(long, value_name = "DIR")]
    queries: Vec<PathBuf>,
    /// An empty database to migrate and describe on, instead of a scratch one.
    #[arg(long)]
    database_url: Option<String>,
}

#[derive(Serialize)]
struct CompatView {
    ok: bool,
    /// `database` or `directories`.
    source: &'static str,
    newest_migration: Option<i64>,
    #[serde(flatten)]
    report: Report,
}

impl View for CompatView {
    fn text(&self, out: &mut Text) {
        let r = &self.report;
        let newest = self
            .newest_migration
            .map_or_else(|| "none".to_string(), |v| v.to_string());
        if r.releases.is_empty() {
            out.line(format_args!(
                "No release recorded as serving in the database: nothing to check (embedded \
                 migrations up to {newest})"
            ));
            return;
        }
        for release in &r.releases {
            let age = release
                .heartbeat_age_seconds
                .map(|s| format!(", heartbeat {s} s ago"))
                .unwrap_or_default();
            out.line(format_args!(
                "release {}: query set {}, {} queries{age}",
                release.version,
                &release.query_set_hash[..12],
                release.queries
            ));
        }
        for finding in &r.findings {
            out.line(format_args!("BREAK {finding}"));
        }
        out.line(format_args!(
            "{}: {} against the embedded migrations up to {newest}",
            if self.ok { "ok" } else { "FAIL" },
            r.summary()
        ));
    }
}

/// `migrate compat [--from-database | --queries DIR…] [--database-url URL]`.
pub async fn exec(ctx: &mut Ctx<'_>, args: CompatArgs) -> Result<Exit, AppError> {
    let set = ctx.migrator.set();
    let (source, releases) = if args.queries.is_empty() {
        let table = releases::table_for(&set.bookkeeping().table);
        let serving = releases::serving(
            &mut ctx.conn,
            &table,
            ctx.settings.migrations.serving_window,
        )
        .await
        .map_err(MigrateError::db("reading the serving releases"))?;
        ("database", serving)
    } else {
        let mut from_dirs = Vec::new();
        for dir in &args.queries {
            let queries = QuerySet::from_dir(dir).map_err(|e| AppError::Input(e.to_string()))?;
            from_dirs.push(Release {
                version: dir.display().to_string(),
                queries,
                heartbeat_age_seconds: None,
            });
        }
        ("directories", from_dirs)
    };
    let report = if releases.is_empty() {
        Report {
            releases: Vec::new(),
            described: 0,
            findings: Vec::new(),
            elapsed_ms: 0,
        }
    } else {
        let scratch = match (
            &args.database_url,
            &ctx.settings.migrations.compat_scratch_url,
        ) {
            (Some(url), _) => Scratch::Empty(
                DatabaseUrl::parse_as("--database-url", url)
                    .map_err(AppError::Input)?
                    .connect_options(),
            ),
            (None, Some(url)) => Scratch::Reset(url.connect_options()),
            (None, None) => Scratch::Create {
                admin: &mut ctx.conn,
                options: db::migration_session_options(
                    &ctx.settings.database,
                    &ctx.settings.migrations,
                ),
            },
        };
        let private = ctx.migrator.for_private_database();
        scratch
            .with(async |scratch: &mut PgConnection| {
                private.run(scratch).await?;
                compat::check(scratch, &releases).await
            })
            .await
            .map_err(|e| AppError::Incompatible(format!("compat check: {e}")))?
    };
    let ok = report.is_compatible();
    ctx.out.emit(&CompatView {
        ok,
        source,
        newest_migration: set.newest(),
        report,
    });
    Ok(if ok {
        Exit::Success
    } else {
        Exit::Incompatible
    })
}
