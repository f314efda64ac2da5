//! `migrate rollback VERSION [--yes] [--dry-run]`: revert, newest first, with confirmation.

use std::io::{BufRead, IsTerminal, Write};

use clap::Args;
use serde::Serialize;

use super::apply::{PlanView, Timing, timings};
use super::ctx::Ctx;
use super::output::Done;
use crate::error::{AppError, Exit};
use crate::migrate::Step;

#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// The newest version to keep: 0, or an applied or embedded version.
    version: i64,
    /// Confirm without asking (required when not on a terminal).
    #[arg(long)]
    yes: bool,
    /// Print what would be reverted; change nothing.
    #[arg(long)]
    dry_run: bool,
}

#[derive(Serialize)]
struct Reverted {
    reverted: Vec<Timing>,
}

pub async fn exec(ctx: &mut Ctx<'_>, args: RollbackArgs) -> Result<Exit, AppError> {
    let target = args.version;
    let status = ctx.migrator.inspect(&mut ctx.conn).await?;
    let plan = ctx.migrator.plan_rollback(&status, target)?;
    if plan.is_empty() {
        ctx.out.emit(&Done::new(
            Reverted { reverted: vec![] },
            format!("Nothing to roll back: no applied migration is newer than {target}"),
        ));
        return Ok(Exit::Success);
    }
    if args.dry_run {
        ctx.out.emit(&PlanView::new("rollback", &plan));
        return Ok(Exit::Success);
    }
    let database = ctx.settings.database.migration_url().masked();
    if !confirm(&question(&plan, &database), args.yes) {
        return Ok(Exit::Refused);
    }
    let reverted = ctx.migrator.rollback(&mut ctx.conn, target).await?;
    ctx.out.emit(&Done::new(
        Reverted {
            reverted: timings(&reverted),
        },
        format!("Rolled back {} migration(s) to {target}", reverted.len()),
    ));
    Ok(Exit::Success)
}

/// What the operator confirms: the database, the down files, what they drop.
fn question(plan: &[Step<'_>], database: &str) -> String {
    let dropped: Vec<String> = plan.iter().flat_map(|s| dropped(&s.script.sql)).collect();
    format!(
        "Revert {} migration(s) on {database}, newest first, running {} down file(s): {}? \
         Each drops what its up file created, with the data in it{}.",
        plan.len(),
        plan.len(),
        plan.iter()
            .map(|s| format!("{} (migrations/{})", s.migration.version, s.script.file))
            .collect::<Vec<_>>()
            .join(", "),
        if dropped.is_empty() {
            String::new()
        } else {
            format!(" ({})", dropped.join(", "))
        },
    )
}

/// What a down file drops, as "table t" / "column t.c", read from its `DROP TABLE` and
/// `ALTER TABLE … DROP COLUMN` statements (for the confirmation prompt; the dry run shows the
/// SQL itself).
fn dropped(sql: &str) -> Vec<String> {
    let text: String = sql
        .lines()
        .map(|l| l.split("--").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join(" ");
    let mut out = Vec::new();
    for statement in text.split(';') {
        let words: Vec<&str> = statement.split_whitespace().collect();
        let upper: Vec<String> = words.iter().map(|w| w.to_ascii_uppercase()).collect();
        let is = |i: usize, w: &str| upper.get(i).is_some_and(|u| u == w);
        let skip_if_exists = |i: usize| {
            if is(i, "IF") && is(i + 1, "EXISTS") {
                i + 2
            } else {
                i
            }
        };
        if is(0, "DROP") && is(1, "TABLE") {
            let names = words[skip_if_exists(2)..]
                .iter()
                .take_while(|w| !matches!(w.to_ascii_uppercase().as_str(), "CASCADE" | "RESTRICT"))
                .copied()
                .collect::<Vec<_>>()
                .join(" ");
            out.extend(
                names
                    .split(',')
                    .map(str::trim)
                    .filter(|n| !n.is_empty())
                    .map(|n| format!("table {n}")),
            );
        } else if is(0, "ALTER") && is(1, "TABLE") {
            let table_at = skip_if_exists(2);
            let table_at = if is(table_at, "ONLY") {
                table_at + 1
            } else {
                table_at
            };
            let Some(table) = words.get(table_at) else {
                continue;
            };
            for (i, _) in upper.iter().enumerate().filter(|(_, u)| *u == "DROP") {
                let column_at = if is(i + 1, "COLUMN") { i + 2 } else { continue };
                if let Some(column) = words.get(skip_if_exists(column_at)) {
                    out.push(format!("column {table}.{}", column.trim_end_matches(',')));
                }
            }
        }
    }
    out
}

/// `--yes`, or a "yes" typed at a terminal. Without a terminal and without `--yes`: refuse.
fn confirm(question: &str, yes: bool) -> bool {
    if yes {
        return true;
    }
    if !std::io::stdin().is_terminal() {
        eprintln!(
            "server: {question} Refusing without --yes (no terminal to ask on); nothing was changed."
        );
        return false;
    }
    eprint!("{question} Type 'yes' to continue: ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    let _ = std::io::stdin().lock().read_line(&mut answer);
    let ok = answer.trim() == "yes";
    if !ok {
        eprintln!("Not confirmed; nothing was changed.");
    }
    ok
}

#[cfg(test)]
mod tests {
    use super::dropped;

    #[test]
    fn dropped_names_tables_and_columns_of_down_files() {
        assert_eq!(
            dropped("-- undo\nDROP TABLE IF EXISTS a, b CASCADE;\nDROP TABLE c;"),
            ["table a", "table b", "table c"]
        );
        assert_eq!(
            dropped("ALTER TABLE t DROP COLUMN IF EXISTS x, DROP COLUMN y;"),
            ["column t.x", "column t.y"]
        );
        assert!(dropped("DROP INDEX CONCURRENTLY i;").is_empty());
    }
}
