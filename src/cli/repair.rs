//! `migrate repair [--version V] [--mark-applied | --mark-reverted] [--yes]`: everything a
//! person needs to decide about a dirty row, and the decision recorded under the lock.

use clap::Args;
use serde::Serialize;

use super::ctx::Ctx;
use super::output::{Done, Text, View, timestamp};
use crate::error::{AppError, Exit};
use crate::migrate::history::{AppliedMigration, hex};
use crate::migrate::{Direction, DirtyReport, InvalidIndex, Migration, RepairAction, lock};

#[derive(Debug, Args)]
pub struct RepairArgs {
    /// The dirty version to show or repair (default: the oldest dirty one).
    #[arg(long)]
    version: Option<i64>,
    /// You finished the migration by hand: record it as applied.
    #[arg(long, conflicts_with = "mark_reverted")]
    mark_applied: bool,
    /// You undid its effects by hand: remove the row so it is applied again.
    #[arg(long)]
    mark_reverted: bool,
    /// Confirm (required).
    #[arg(long)]
    yes: bool,
}

impl RepairArgs {
    /// The decision, when one was given and confirmed.
    fn action(&self) -> Option<RepairAction> {
        let action = match (self.mark_applied, self.mark_reverted) {
            (true, _) => RepairAction::MarkApplied,
            (_, true) => RepairAction::MarkReverted,
            _ => return None,
        };
        self.yes.then_some(action)
    }
}

#[derive(Serialize)]
struct Repaired {
    repaired: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    action: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    row: Option<AppliedMigration>,
}

pub async fn exec(ctx: &mut Ctx<'_>, args: RepairArgs) -> Result<Exit, AppError> {
    let Some(report) = ctx
        .migrator
        .diagnose_dirty(&mut ctx.conn, args.version)
        .await?
    else {
        let what = match args.version {
            Some(v) => format!("Nothing to repair: migration {v} is not recorded as dirty"),
            None => "Nothing to repair: no migration is recorded as dirty".to_string(),
        };
        let nothing = Repaired {
            repaired: None,
            action: None,
            row: None,
        };
        ctx.out.emit(&Done::new(nothing, what));
        return Ok(Exit::Success);
    };
    let Some(action) = args.action() else {
        ctx.out.emit(&DirtyView::new(&report, true));
        // A look (no flag) is what the guide asks for first: it succeeds. A decision without its
        // confirmation, or a confirmation without a decision, is refused.
        let missing = match (args.mark_applied || args.mark_reverted, args.yes) {
            (false, false) => return Ok(Exit::Success),
            (true, _) => "add --yes to record that decision",
            (false, true) => "--yes confirms a decision: add --mark-applied or --mark-reverted",
        };
        eprintln!("server: {missing}; nothing was changed");
        return Ok(Exit::Refused);
    };
    if !ctx.out.is_json() {
        ctx.out.emit(&DirtyView::new(&report, false));
    }
    let version = report.row.version;
    ctx.migrator
        .repair(&mut ctx.conn, &report.row, action)
        .await?;
    let what = match action {
        RepairAction::MarkApplied => "marked applied (success = true)",
        RepairAction::MarkReverted => {
            "marked reverted (row removed; the next run applies it again)"
        }
    };
    let repaired = Repaired {
        repaired: Some(version),
        action: Some(what),
        row: Some(report.row),
    };
    ctx.out
        .emit(&Done::new(repaired, format!("Migration {version} {what}")));
    Ok(Exit::Success)
}

/// A dirty row: the row, what ran, what to check first, and (when `next`) the commands that
/// record a decision.
#[derive(Serialize)]
struct DirtyView<'a> {
    repaired: Option<i64>,
    dirty: &'a AppliedMigration,
    direction: Option<Direction>,
    file: Option<&'a str>,
    sql: Option<&'a str>,
    failing_statement: Option<String>,
    lock_holder: &'a Option<lock::Holder>,
    invalid_indexes: &'a [InvalidIndex],
    next: Vec<String>,
    #[serde(skip)]
    no_tx: bool,
    #[serde(skip)]
    embedded: Option<&'a Migration>,
}

impl<'a> DirtyView<'a> {
    fn new(report: &'a DirtyReport<'a>, next: bool) -> Self {
        let v = report.row.version;
        Self {
            repaired: None,
            dirty: &report.row,
            direction: report.script.map(|(d, _)| d),
            file: report.script.map(|(_, s)| s.file.as_str()),
            sql: report.script.map(|(_, s)| s.sql.as_str()),
            failing_statement: report.failing_statement(),
            lock_holder: &report.holder,
            invalid_indexes: &report.invalid_indexes,
            next: if next {
                vec![
                    format!("server migrate repair --version {v} --mark-applied --yes"),
                    format!("server migrate repair --version {v} --mark-reverted --yes"),
                ]
            } else {
                Vec::new()
            },
            no_tx: report.script.is_some_and(|(_, s)| s.no_tx),
            embedded: report.embedded,
        }
    }

    fn what_ran(&self, out: &mut Text) {
        let (Some(direction), Some(file), Some(sql)) = (self.direction, self.file, self.sql) else {
            match self.embedded {
                None => out.line(format_args!(
                    "What ran: unknown: this binary does not embed migration {v}; the release that \
                     applied it does (its `server migrate show {v}` prints its SQL)",
                    v = self.dirty.version
                )),
                Some(m) => {
                    out.line(format_args!(
                        "What ran: the row does not say. This binary embeds migrations/{} ({}), but \
                         no runner of it leaves a row like this one (execution_time {} is a finished \
                         run's; one cut short has -1): a person or another tool set success = false. \
                         Its up file, to check its objects against:",
                        m.up.file,
                        if m.up.no_tx {
                            "-- no-transaction"
                        } else {
                            "one transaction: all of it or none is in the database"
                        },
                        self.dirty.execution_time
                    ));
                    out.indented("    ", m.up.sql.trim_end());
                }
            }
            return;
        };
        out.line(format_args!(
            "What ran: its {} file migrations/{file}, {}{}:",
            match direction {
                Direction::Up => "up",
                Direction::Down => "down (a rollback)",
            },
            if self.no_tx {
                "outside a transaction"
            } else {
                "in a transaction (all of it or none is in the database; this binary never \
                 leaves such a row dirty: another tool or a person did)"
            },
            if direction == Direction::Up {
                " (execution_time -1: it never finished)"
            } else {
                ""
            }
        ));
        out.indented("    ", sql.trim_end());
    }

    fn check_first(&self, out: &mut Text) {
        out.line("Check first:");
        match self.lock_holder {
            Some(h) => out.line(format_args!(
                "  1. The migration lock is held by {h}: a live runner may still be applying it. \
                 Do not repair; wait for it (`server migrate status`), or end it only when it is stuck \
                 (docs/operations.md, \"The migration lock is held\")."
            )),
            None => out.line(
                "  1. The migration lock is free: no runner is applying it now. To be sure, no `active` row \
                 of `SELECT pid, state, query_start, query FROM pg_stat_activity WHERE datname = \
                 current_database() AND application_name = 'agent-backend migrate';` is running it.",
            ),
        }
        if self.invalid_indexes.is_empty() {
            out.line("  2. INVALID indexes: none.");
        } else {
            out.line(
                "  2. INVALID indexes (a failed CREATE INDEX CONCURRENTLY leaves one; fix its cause, then \
                 DROP INDEX CONCURRENTLY it), with their table and columns:",
            );
            for i in self.invalid_indexes {
                out.line(format_args!(
                    "       {} on {}: {}",
                    i.index, i.table, i.definition
                ));
            }
        }
    }
}

impl View for DirtyView<'_> {
    fn text(&self, out: &mut Text) {
        let row = self.dirty;
        let v = row.version;
        out.line(format_args!(
            "Migration {v} ({}) is recorded with success = false (dirty).",
            row.description
        ));
        out.line(format_args!(
            "Row: version {v}, installed_on {}, execution_time {}, checksum {}…",
            timestamp(&row.installed_on),
            row.execution_time,
            &hex(&row.checksum)[..16.min(row.checksum.len() * 2)]
        ));
        self.what_ran(out);
        match &self.failing_statement {
            Some(stmt) => out.line(format_args!(
                "Failing statement: {} (a `-- no-transaction` file runs one statement)",
                stmt.replace('\n', " ")
            )),
            None => {
                out.line("Failing statement: unknown (check which of its statements took effect)")
            }
        }
        self.check_first(out);
        if let [applied, reverted] = self.next.as_slice() {
            out.line("Then, with its objects as you want them:");
            out.line(format_args!("  - you finished it by hand:  {applied}"));
            out.line(format_args!(
                "  - you undid it by hand:     {reverted}  (the next run applies it again)"
            ));
            out.line("Nothing was changed.");
        }
    }
}
