//! `server migrate …`: the operator's commands over the embedded set and `_sqlx_migrations`.
//!
//! Each command connects like the pre-serve stage (retries, migration session guards), asks the
//! engine, and prints a human table or, with `--json`, one JSON document on stdout. Logs stay
//! on stderr. Commands that change the database take the migration lock; reading ones do not.

use std::io::{BufRead, IsTerminal, Write};

use serde_json::{Value, json};
use sqlx::{Connection, PgConnection};

use crate::app::{AppError, migrate_options};

/// `println!` that ignores a closed stdout (`server migrate history | head` must not panic).
macro_rules! out {
    ($($t:tt)*) => {{
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}

/// `print!`, likewise.
macro_rules! outp {
    ($($t:tt)*) => {{
        let _ = write!(std::io::stdout(), $($t)*);
    }};
}
use crate::config::Settings;
use crate::db;
use crate::exit::Exit;
use crate::migrate::history::{AppliedMigration, hex};
use crate::migrate::{
    Direction, DirtyReport, Migration, MigrationSet, Migrator, RepairAction, Script, Status,
    UnknownPolicy, embedded,
};
use crate::schema_ops;

/// A `migrate` subcommand, already parsed.
#[derive(Debug, Clone)]
pub enum Op {
    Status,
    History {
        verbose: bool,
    },
    Show {
        version: i64,
    },
    Apply {
        to: Option<i64>,
        dry_run: bool,
        allow_out_of_order: bool,
    },
    Rollback {
        target: i64,
        yes: bool,
        dry_run: bool,
    },
    Verify,
    Repair {
        version: Option<i64>,
        action: Option<RepairAction>,
        yes: bool,
    },
    Snapshot {
        fresh: bool,
        write: Option<std::path::PathBuf>,
        check: Option<std::path::PathBuf>,
    },
    Drift,
    Test {
        database_url: Option<String>,
    },
}

/// Runs one operation over `set` (the binary's embedded set); `Ok` carries the exit code for
/// outcomes that are not errors (pending migrations, a refused confirmation).
pub async fn run(
    settings: &Settings,
    set: &MigrationSet,
    op: Op,
    json_out: bool,
) -> Result<Exit, AppError> {
    let mut opts = migrate_options(settings);
    if let Op::Apply {
        allow_out_of_order: true,
        ..
    } = op
    {
        opts.allow_out_of_order = true;
    }
    let migrator = Migrator::new(set, opts);
    let mut conn = db::connect_with_retries(settings, &db::migrate_options(settings))
        .await
        .inspect_err(|e| tracing::error!("{e}"))?;
    let out = Printer { json: json_out };
    let result = dispatch(settings, &migrator, &mut conn, op, &out).await;
    let _ = conn.close().await;
    if let Err(e) = &result {
        tracing::error!("{e}");
    }
    result
}

async fn dispatch(
    settings: &Settings,
    migrator: &Migrator<'_>,
    conn: &mut PgConnection,
    op: Op,
    out: &Printer,
) -> Result<Exit, AppError> {
    let set = migrator.set();
    match op {
        Op::Snapshot {
            fresh,
            write,
            check,
        } => {
            schema_ops::snapshot(
                settings,
                migrator,
                conn,
                fresh,
                write.as_deref(),
                check.as_deref(),
            )
            .await
        }
        Op::Drift => schema_ops::drift(settings, migrator, conn, out.json).await,
        Op::Test { database_url } => {
            schema_ops::test(settings, migrator, conn, database_url.as_deref(), out.json).await
        }
        Op::Status => {
            let status = migrator.inspect(conn).await?;
            out.status(settings, set, &status);
            Ok(status_exit(&status, settings))
        }
        Op::History { verbose } => {
            let status = migrator.status(conn).await?;
            out.history(set, &status, verbose);
            Ok(Exit::Success)
        }
        Op::Show { version } => {
            let status = migrator.inspect(conn).await?;
            let row = status.applied.iter().find(|r| r.version == version);
            let embedded = set.get(version);
            if row.is_none() && embedded.is_none() {
                eprintln!("server: version {version} is neither embedded nor applied");
                return Ok(Exit::Refused);
            }
            out.show(version, embedded, row, status.holder.is_some());
            Ok(Exit::Success)
        }
        Op::Apply {
            to, dry_run: true, ..
        } => {
            let status = migrator.inspect(conn).await?;
            let plan = migrator.plan_apply(&status, to)?;
            out.plan(
                "apply",
                &plan.iter().map(|m| (*m, &m.up)).collect::<Vec<_>>(),
            );
            Ok(Exit::Success)
        }
        Op::Apply { to, .. } => {
            let report = migrator.apply(conn, to).await?;
            let applied: Vec<Value> = report
                .applied
                .iter()
                .map(|(v, d)| json!({ "version": v, "elapsed_ms": d.as_millis() as u64 }))
                .collect();
            out.done(
                json!({ "applied": applied, "newest": report.newest, "unknown": report.unknown }),
                &if report.applied.is_empty() {
                    "Nothing to apply: schema up to date".to_string()
                } else {
                    format!(
                        "Migrations completed successfully: applied {} (newest now {})",
                        report.applied.len(),
                        report.newest.map_or("none".into(), |v| v.to_string())
                    )
                },
            );
            Ok(Exit::Success)
        }
        Op::Rollback {
            target,
            yes,
            dry_run,
        } => {
            let status = migrator.inspect(conn).await?;
            let plan = migrator.plan_rollback(&status, target)?;
            if plan.is_empty() {
                out.done(
                    json!({ "reverted": [] }),
                    &format!("Nothing to roll back: no applied migration is newer than {target}"),
                );
                return Ok(Exit::Success);
            }
            let steps: Vec<(&Migration, &Script)> = plan
                .iter()
                .map(|m| {
                    (
                        *m,
                        m.down
                            .as_ref()
                            .expect("planned rollbacks have a down migration"),
                    )
                })
                .collect();
            if dry_run {
                out.plan("rollback", &steps);
                return Ok(Exit::Success);
            }
            let dropped: Vec<String> = steps.iter().flat_map(|(_, d)| dropped(&d.sql)).collect();
            let question = format!(
                "Revert {} migration(s) on {}, newest first, running {} down file(s): {}? \
                 Each drops what its up file created, with the data in it{}.",
                steps.len(),
                settings.database.migration_url().masked(),
                steps.len(),
                steps
                    .iter()
                    .map(|(m, down)| format!("{} (migrations/{})", m.version, down.file))
                    .collect::<Vec<_>>()
                    .join(", "),
                if dropped.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", dropped.join(", "))
                },
            );
            if !confirm(&question, yes) {
                return Ok(Exit::Refused);
            }
            let reverted = migrator.rollback(conn, target).await?;
            let list: Vec<Value> = reverted
                .iter()
                .map(|(v, d)| json!({ "version": v, "elapsed_ms": d.as_millis() as u64 }))
                .collect();
            out.done(
                json!({ "reverted": list }),
                &format!("Rolled back {} migration(s) to {target}", reverted.len()),
            );
            Ok(Exit::Success)
        }
        Op::Verify => {
            let status = migrator.inspect(conn).await?;
            let strict = settings.migrations.on_unknown_applied == UnknownPolicy::Error;
            let checks = [
                ("connectivity", true, "database answered".to_string()),
                (
                    "checksums",
                    status.mismatched.is_empty(),
                    list_or("all match", &status.mismatched),
                ),
                (
                    "pending",
                    status.pending.is_empty(),
                    list_or("nothing pending", &status.pending),
                ),
                (
                    "dirty",
                    status.stuck_dirty().is_empty(),
                    list_or("nothing dirty", status.stuck_dirty()),
                ),
                (
                    "in_progress",
                    status.in_progress().is_empty(),
                    match &status.holder {
                        Some(h) if !status.in_progress().is_empty() => format!(
                            "{} running while {h} holds the migration lock",
                            list_or("", status.in_progress())
                        ),
                        _ => "no migration running".to_string(),
                    },
                ),
                (
                    "unknown",
                    !strict || status.unknown.is_empty(),
                    list_or("every applied version is embedded", &status.unknown),
                ),
            ];
            let drift = migrator
                .drift(
                    conn,
                    embedded::snapshot(),
                    &settings.migrations.drift_ignore(),
                )
                .await?;
            let strict_drift = settings.migrations.on_drift == UnknownPolicy::Error;
            let mut checks = checks.to_vec();
            checks.push(("drift", !strict_drift || drift.is_clean(), drift.summary()));
            out.checks(&checks);
            let exit = status_exit(&status, settings);
            Ok(
                if exit == Exit::Success && strict_drift && !drift.is_clean() {
                    Exit::SchemaDiffers
                } else {
                    exit
                },
            )
        }
        Op::Repair {
            version,
            action,
            yes,
        } => {
            let Some(report) = migrator.diagnose_dirty(conn, version).await? else {
                let what = match version {
                    Some(v) => format!("Nothing to repair: migration {v} is not recorded as dirty"),
                    None => "Nothing to repair: no migration is recorded as dirty".to_string(),
                };
                out.done(json!({ "repaired": null }), &what);
                return Ok(Exit::Success);
            };
            let Some(action) = action.filter(|_| yes) else {
                out.dirty(&report, true);
                eprintln!(
                    "server: repair records a decision only with --mark-applied or --mark-reverted, and --yes; \
                     nothing was changed"
                );
                return Ok(Exit::Refused);
            };
            if !out.json {
                out.dirty(&report, false);
            }
            let version = report.row.version;
            migrator.repair(conn, &report.row, action).await?;
            let what = match action {
                RepairAction::MarkApplied => "marked applied (success = true)",
                RepairAction::MarkReverted => {
                    "marked reverted (row removed; the next run applies it again)"
                }
            };
            out.done(
                json!({ "repaired": version, "action": what, "row": report.row }),
                &format!("Migration {version} {what}"),
            );
            Ok(Exit::Success)
        }
    }
}

/// 0 up to date, 6 integrity problem (dirty with no live lock holder, edited, strict unknown),
/// 8 only pending or in progress (a dirty row while a live session holds the migration lock).
fn status_exit(status: &Status, settings: &Settings) -> Exit {
    let strict = settings.migrations.on_unknown_applied == UnknownPolicy::Error;
    if !status.stuck_dirty().is_empty()
        || !status.mismatched.is_empty()
        || (strict && !status.unknown.is_empty())
    {
        Exit::Integrity
    } else if !status.pending.is_empty() || !status.in_progress().is_empty() {
        Exit::Pending
    } else {
        Exit::Success
    }
}

fn list_or(ok: &str, versions: &[i64]) -> String {
    if versions.is_empty() {
        ok.to_string()
    } else {
        versions
            .iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }
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

struct Printer {
    json: bool,
}

impl Printer {
    fn emit(&self, value: &Value) {
        out!(
            "{}",
            serde_json::to_string_pretty(value).unwrap_or_default()
        );
    }

    fn status(&self, settings: &Settings, set: &crate::migrate::MigrationSet, status: &Status) {
        let pending: Vec<Value> = status
            .pending
            .iter()
            .filter_map(|&v| set.get(v))
            .map(|m| json!({ "version": m.version, "description": m.description }))
            .collect();
        let state = match status_exit(status, settings) {
            Exit::Success => "up to date",
            Exit::Pending if !status.in_progress().is_empty() => "migration in progress",
            Exit::Pending => "pending",
            _ => "needs attention",
        };
        if self.json {
            return self.emit(&json!({
                "database": settings.database.migration_url().masked(),
                "state": state,
                "up_to_date": status.is_up_to_date(),
                "applied_newest": status.newest_applied(),
                "applied_count": status.applied.len(),
                "embedded_newest": set.newest(),
                "embedded_count": set.len(),
                "pending": pending,
                "dirty": status.stuck_dirty(),
                "in_progress": status.in_progress(),
                "checksum_mismatch": status.mismatched,
                "unknown_applied": status.unknown,
                "lock_holder": status.holder,
            }));
        }
        let none = |v: &[i64]| list_or("none", v);
        out!(
            "Database:           {}",
            settings.database.migration_url().masked()
        );
        out!(
            "Applied:            {} ({} row(s))",
            status
                .newest_applied()
                .map_or("none".into(), |v| v.to_string()),
            status.applied.len()
        );
        out!(
            "Embedded:           {} ({} migration(s))",
            set.newest().map_or("none".into(), |v| v.to_string()),
            set.len()
        );
        out!("Pending:            {}", none(&status.pending));
        for m in status.pending.iter().filter_map(|&v| set.get(v)) {
            out!("  {} {}", m.version, m.description);
        }
        out!("Dirty:              {}", none(status.stuck_dirty()));
        if !status.in_progress().is_empty() {
            out!(
                "In progress:        {} (success = false while the lock holder runs it)",
                none(status.in_progress())
            );
        }
        out!("Checksum mismatch:  {}", none(&status.mismatched));
        out!("Applied, unknown:   {}", none(&status.unknown));
        match &status.holder {
            Some(h) => out!("Migration lock:     held by {h}"),
            None => out!("Migration lock:     free"),
        }
        out!("State:              {state}");
    }

    fn history(&self, set: &crate::migrate::MigrationSet, status: &Status, verbose: bool) {
        let rows: Vec<Value> = status
            .applied
            .iter()
            .map(|r| {
                let embedded = set.get(r.version);
                let checksum = match embedded {
                    None => "unknown",
                    Some(m) if m.up.checksum[..] == r.checksum[..] => "matches",
                    Some(_) => "differs",
                };
                let mut row = json!({
                    "version": r.version,
                    "description": r.description,
                    "installed_on": fmt_time(r),
                    "execution_ms": (r.execution_time >= 0).then(|| r.execution_time as f64 / 1e6),
                    "success": r.success,
                    "checksum": checksum,
                });
                if verbose {
                    row["applied_checksum"] = json!(hex(&r.checksum));
                    row["embedded_checksum"] = json!(embedded.map(|m| hex(&m.up.checksum)));
                    row["reversible"] = json!(embedded.is_some_and(|m| m.down.is_some()));
                }
                row
            })
            .collect();
        if self.json {
            return self.emit(&Value::Array(rows));
        }
        if rows.is_empty() {
            out!("No migration applied yet.");
            return;
        }
        out!(
            "{:<16} {:<32} {:<22} {:>12} {:<7} {:<8}{}",
            "VERSION",
            "DESCRIPTION",
            "INSTALLED ON",
            "TIME (ms)",
            "SUCCESS",
            "CHECKSUM",
            if verbose {
                "  REVERSIBLE  APPLIED CHECKSUM"
            } else {
                ""
            }
        );
        for r in &rows {
            let time = r["execution_ms"]
                .as_f64()
                .map_or("-".into(), |ms| format!("{ms:.1}"));
            outp!(
                "{:<16} {:<32} {:<22} {:>12} {:<7} {:<8}",
                r["version"].to_string(),
                truncate(r["description"].as_str().unwrap_or(""), 32),
                r["installed_on"].as_str().unwrap_or(""),
                time,
                r["success"].to_string(),
                r["checksum"].as_str().unwrap_or("")
            );
            if verbose {
                outp!(
                    "  {:<10}  {}",
                    if r["reversible"] == json!(true) {
                        "yes"
                    } else {
                        "no"
                    },
                    r["applied_checksum"].as_str().unwrap_or("")
                );
            }
            out!();
        }
    }

    /// `locked`: a live session holds the migration lock, so a dirty row is in progress.
    fn show(
        &self,
        version: i64,
        embedded: Option<&Migration>,
        row: Option<&AppliedMigration>,
        locked: bool,
    ) {
        let state = match (embedded, row) {
            (_, None) => "pending",
            (_, Some(r)) if !r.success && locked => {
                "in progress (success = false while the lock holder runs it)"
            }
            (_, Some(r)) if !r.success => "dirty",
            (None, Some(_)) => "applied (not embedded in this binary)",
            (Some(m), Some(r)) if m.up.checksum[..] != r.checksum[..] => "checksum mismatch",
            _ => "applied",
        };
        let value = json!({
            "version": version,
            "description": embedded.map(|m| m.description.clone()).or(row.map(|r| r.description.clone())),
            "state": state,
            "kind": embedded.map(|m| m.kind.as_str()),
            "transaction": embedded.map(|m| !m.up.no_tx),
            "settings": embedded.map(|m| m.up.settings.clone()),
            "file": embedded.map(|m| m.up.file.clone()),
            "embedded_checksum": embedded.map(|m| hex(&m.up.checksum)),
            "applied_checksum": row.map(|r| hex(&r.checksum)),
            "installed_on": row.map(fmt_time),
            "up_sql": embedded.map(|m| m.up.sql.clone()),
            "down_sql": embedded.and_then(|m| m.down.as_ref().map(|d| d.sql.clone())),
        });
        if self.json {
            return self.emit(&value);
        }
        for key in [
            "version",
            "description",
            "state",
            "kind",
            "transaction",
            "file",
            "installed_on",
            "embedded_checksum",
            "applied_checksum",
        ] {
            let v = &value[key];
            let text = v.as_str().map_or_else(|| v.to_string(), str::to_string);
            out!(
                "{:<18} {}",
                format!("{key}:"),
                if v.is_null() { "-".into() } else { text }
            );
        }
        for (title, key) in [("Up SQL", "up_sql"), ("Down SQL", "down_sql")] {
            out!("\n-- {title} --");
            out!("{}", value[key].as_str().unwrap_or("(none)").trim_end());
        }
    }

    fn plan(&self, action: &str, steps: &[(&Migration, &Script)]) {
        let items: Vec<Value> = steps
            .iter()
            .map(|(m, s)| {
                json!({
                    "version": m.version,
                    "description": m.description,
                    "file": s.file,
                    "transaction": !s.no_tx,
                    "settings": s.settings,
                    "sql": s.sql,
                })
            })
            .collect();
        if self.json {
            return self.emit(&json!({ "dry_run": true, "action": action, "steps": items }));
        }
        if steps.is_empty() {
            out!("Dry run: nothing to {action}.");
            return;
        }
        out!(
            "Dry run: would {action} {} migration(s), in this order; nothing was changed.",
            steps.len()
        );
        for (i, (m, s)) in steps.iter().enumerate() {
            let mode = if s.no_tx {
                "outside a transaction"
            } else {
                "in a transaction"
            };
            let settings: Vec<String> =
                s.settings.iter().map(|(k, v)| format!("{k}={v}")).collect();
            out!(
                "\n-- [{}/{}] {} {} ({}/{}), {mode}{}",
                i + 1,
                steps.len(),
                m.version,
                m.description,
                embedded::dir_name(),
                s.file,
                if settings.is_empty() {
                    String::new()
                } else {
                    format!(", {}", settings.join(", "))
                }
            );
            out!("{}", s.sql.trim_end());
        }
    }

    /// `migrate repair`'s view of a dirty row: the row, what ran, what to check first, and (when
    /// `next`) the commands that record a decision.
    fn dirty(&self, report: &DirtyReport<'_>, next: bool) {
        let row = &report.row;
        let v = row.version;
        let commands = [
            format!("server migrate repair --version {v} --mark-applied --yes"),
            format!("server migrate repair --version {v} --mark-reverted --yes"),
        ];
        if self.json {
            return self.emit(&json!({
                "repaired": null,
                "dirty": row,
                "direction": report.script.map(|(d, _)| d),
                "file": report.script.map(|(_, s)| s.file.clone()),
                "sql": report.script.map(|(_, s)| s.sql.clone()),
                "failing_statement": report.failing_statement(),
                "lock_holder": report.holder,
                "invalid_indexes": report.invalid_indexes,
                "next": if next { json!(commands) } else { json!([]) },
            }));
        }
        out!(
            "Migration {v} ({}) is recorded with success = false (dirty).",
            row.description
        );
        out!(
            "Row: version {v}, installed_on {}, execution_time {}, checksum {}…",
            fmt_time(row),
            row.execution_time,
            &hex(&row.checksum)[..16.min(row.checksum.len() * 2)]
        );
        match report.script {
            Some((direction, script)) => {
                out!(
                    "What ran: its {} file migrations/{}, {}{}:",
                    match direction {
                        Direction::Up => "up",
                        Direction::Down => "down (a rollback)",
                    },
                    script.file,
                    if script.no_tx {
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
                );
                for line in script.sql.trim_end().lines() {
                    out!("    {line}");
                }
            }
            None => out!("What ran: unknown (this binary does not embed that file)"),
        }
        match report.failing_statement() {
            Some(stmt) => out!(
                "Failing statement: {} (a `-- no-transaction` file runs one statement)",
                stmt.replace('\n', " ")
            ),
            None => out!("Failing statement: unknown (check which of its statements took effect)"),
        }
        out!("Check first:");
        match &report.holder {
            Some(h) => out!(
                "  1. The migration lock is held by {h}: a live runner may still be applying it. \
                 Do not repair; wait for it (`server migrate status`), or end it only when it is stuck \
                 (docs/operations.md, \"The migration lock is held\")."
            ),
            None => out!(
                "  1. The migration lock is free: no runner is applying it now. To be sure, no `active` row \
                 of `SELECT pid, state, query_start, query FROM pg_stat_activity WHERE datname = \
                 current_database() AND application_name = 'agent-backend migrate';` is running it."
            ),
        }
        if report.invalid_indexes.is_empty() {
            out!("  2. INVALID indexes: none.");
        } else {
            out!(
                "  2. INVALID indexes (a failed CREATE INDEX CONCURRENTLY leaves one; fix its cause, then \
                 DROP INDEX CONCURRENTLY it): {}",
                report.invalid_indexes.join(", ")
            );
        }
        if next {
            out!("Then, with its objects as you want them:");
            out!("  - you finished it by hand:  {}", commands[0]);
            out!(
                "  - you undid it by hand:     {}  (the next run applies it again)",
                commands[1]
            );
            out!("Nothing was changed.");
        }
    }

    fn checks(&self, checks: &[(&str, bool, String)]) {
        if self.json {
            let list: Vec<Value> = checks
                .iter()
                .map(|(name, ok, detail)| json!({ "check": name, "ok": ok, "detail": detail }))
                .collect();
            return self.emit(&json!({ "ok": checks.iter().all(|c| c.1), "checks": list }));
        }
        for (name, ok, detail) in checks {
            out!(
                "{:<5} {:<13} {detail}",
                if *ok { "ok" } else { "FAIL" },
                name
            );
        }
    }

    fn done(&self, value: Value, human: &str) {
        if self.json {
            self.emit(&value);
        } else {
            out!("{human}");
        }
    }
}

fn fmt_time(r: &AppliedMigration) -> String {
    r.installed_on
        .format(&time::format_description::well_known::Rfc3339)
        .map(|s| s.chars().take(19).collect::<String>() + "Z")
        .unwrap_or_default()
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        s.chars().take(n - 1).collect::<String>() + "…"
    }
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
