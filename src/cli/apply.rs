//! `migrate apply [--to V] [--dry-run] [--allow-out-of-order]`, and the dry-run plan view it
//! shares with `migrate rollback`.

use std::time::Duration;

use clap::Args;
use serde::Serialize;

use super::ctx::Ctx;
use super::output::{Done, Text, View};
use crate::error::{AppError, Exit};
use crate::migrate::{Step, embedded};

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// Stop after this version.
    #[arg(long)]
    to: Option<i64>,
    /// Print, in order, what would run (SQL and transaction mode); change nothing, take no lock.
    #[arg(long)]
    dry_run: bool,
    /// Apply pending versions older than the newest applied one.
    #[arg(long)]
    allow_out_of_order: bool,
}

pub async fn exec(ctx: &mut Ctx<'_>, args: ApplyArgs) -> Result<Exit, AppError> {
    if args.allow_out_of_order {
        ctx.migrator.allow_out_of_order();
    }
    if args.dry_run {
        let status = ctx.migrator.inspect(&mut ctx.conn).await?;
        let plan = ctx.migrator.plan_apply(&status, args.to)?;
        ctx.out.emit(&PlanView::new("apply", &plan));
        return Ok(Exit::Success);
    }
    let report = ctx.migrator.apply(&mut ctx.conn, args.to).await?;
    let sentence = if report.applied.is_empty() {
        "Nothing to apply: schema up to date".to_string()
    } else {
        format!(
            "Migrations completed successfully: applied {} (newest now {})",
            report.applied.len(),
            report.newest.map_or("none".into(), |v| v.to_string())
        )
    };
    ctx.out.emit(&Done::new(
        Applied {
            applied: timings(&report.applied),
            newest: report.newest,
            unknown: report.unknown,
        },
        sentence,
    ));
    Ok(Exit::Success)
}

#[derive(Serialize)]
struct Applied {
    applied: Vec<Timing>,
    newest: Option<i64>,
    unknown: Vec<i64>,
}

/// What a run did, a migration each: `{version, elapsed_ms}`.
#[derive(Serialize)]
pub struct Timing {
    version: i64,
    elapsed_ms: u64,
}

pub fn timings(done: &[(i64, Duration)]) -> Vec<Timing> {
    done.iter()
        .map(|(version, took)| Timing {
            version: *version,
            elapsed_ms: took.as_millis() as u64,
        })
        .collect()
}

/// A dry run: the steps in order, with their SQL and transaction mode.
#[derive(Serialize)]
pub struct PlanView {
    dry_run: bool,
    action: &'static str,
    steps: Vec<StepView>,
}

#[derive(Serialize)]
struct StepView {
    version: i64,
    description: String,
    file: String,
    transaction: bool,
    settings: Vec<(String, String)>,
    sql: String,
}

impl PlanView {
    pub fn new(action: &'static str, plan: &[Step<'_>]) -> Self {
        Self {
            dry_run: true,
            action,
            steps: plan
                .iter()
                .map(|s| StepView {
                    version: s.migration.version,
                    description: s.migration.description.clone(),
                    file: s.script.file.clone(),
                    transaction: !s.script.no_tx,
                    settings: s.script.settings.clone(),
                    sql: s.script.sql.clone(),
                })
                .collect(),
        }
    }
}

impl View for PlanView {
    fn text(&self, out: &mut Text) {
        let action = self.action;
        if self.steps.is_empty() {
            out.line(format_args!("Dry run: nothing to {action}."));
            return;
        }
        let total = self.steps.len();
        out.line(format_args!(
            "Dry run: would {action} {total} migration(s), in this order; nothing was changed."
        ));
        for (i, s) in self.steps.iter().enumerate() {
            let mode = if s.transaction {
                "in a transaction"
            } else {
                "outside a transaction"
            };
            let settings: String = s
                .settings
                .iter()
                .map(|(k, v)| format!(", {k}={v}"))
                .collect();
            out.line(format_args!(
                "\n-- [{}/{total}] {} {} ({}/{}), {mode}{settings}",
                i + 1,
                s.version,
                s.description,
                embedded::dir_name(),
                s.file,
            ));
            out.line(s.sql.trim_end());
        }
    }
}
