//! `migrate history` and `migrate show`: the rows of the bookkeeping table beside the embedded
//! files.

use clap::Args;
use serde::Serialize;

use super::ctx::Ctx;
use super::output::{Column, Table, Text, View, timestamp, truncate};
use crate::error::{AppError, Exit};
use crate::migrate::history::{AppliedMigration, hex};
use crate::migrate::{Migration, MigrationSet};

#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Also show checksums and reversibility.
    #[arg(long)]
    verbose: bool,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    version: i64,
}

#[derive(Serialize)]
#[serde(transparent)]
struct HistoryView {
    rows: Vec<HistoryRow>,
}

#[derive(Serialize)]
struct HistoryRow {
    version: i64,
    description: String,
    installed_on: String,
    execution_ms: Option<f64>,
    success: bool,
    /// `matches`, `differs` (the file was edited) or `unknown` (not embedded).
    checksum: &'static str,
    #[serde(flatten)]
    verbose: Option<Verbose>,
}

#[derive(Serialize)]
struct Verbose {
    applied_checksum: String,
    embedded_checksum: Option<String>,
    reversible: bool,
}

impl HistoryRow {
    fn new(set: &MigrationSet, r: &AppliedMigration, verbose: bool) -> Self {
        let embedded = set.get(r.version);
        Self {
            version: r.version,
            description: r.description.clone(),
            installed_on: timestamp(&r.installed_on),
            execution_ms: (r.execution_time >= 0).then(|| r.execution_time as f64 / 1e6),
            success: r.success,
            checksum: match embedded {
                None => "unknown",
                Some(m) if m.up.checksum[..] == r.checksum[..] => "matches",
                Some(_) => "differs",
            },
            verbose: verbose.then(|| Verbose {
                applied_checksum: hex(&r.checksum),
                embedded_checksum: embedded.map(|m| hex(&m.up.checksum)),
                reversible: embedded.is_some_and(|m| m.down.is_some()),
            }),
        }
    }
}

impl View for HistoryView {
    fn text(&self, out: &mut Text) {
        if self.rows.is_empty() {
            out.line("No migration applied yet.");
            return;
        }
        let mut columns = vec![
            Column::left("VERSION", 16),
            Column::left("DESCRIPTION", 32),
            Column::left("INSTALLED ON", 22),
            Column::right("TIME (ms)", 12),
            Column::left("SUCCESS", 7),
            Column::left("CHECKSUM", 8),
        ];
        let verbose = self.rows.iter().any(|r| r.verbose.is_some());
        if verbose {
            columns.push(Column::left("REVERSIBLE", 10).after("  "));
            columns.push(Column::left("APPLIED CHECKSUM", 0).after("  "));
        }
        let table = Table::new(columns);
        table.header(out);
        for r in &self.rows {
            let mut cells = vec![
                r.version.to_string(),
                truncate(&r.description, 32),
                r.installed_on.clone(),
                r.execution_ms.map_or("-".into(), |ms| format!("{ms:.1}")),
                r.success.to_string(),
                r.checksum.to_string(),
            ];
            if let Some(v) = &r.verbose {
                cells.push(if v.reversible { "yes" } else { "no" }.to_string());
                cells.push(v.applied_checksum.clone());
            }
            table.row(out, &cells);
        }
    }
}

/// `migrate history [--verbose]`.
pub async fn history(ctx: &mut Ctx<'_>, args: HistoryArgs) -> Result<Exit, AppError> {
    let status = ctx.migrator.status(&mut ctx.conn).await?;
    let set = ctx.migrator.set();
    ctx.out.emit(&HistoryView {
        rows: status
            .applied
            .iter()
            .map(|r| HistoryRow::new(set, r, args.verbose))
            .collect(),
    });
    Ok(Exit::Success)
}

#[derive(Serialize)]
struct ShowView {
    version: i64,
    description: Option<String>,
    state: &'static str,
    kind: Option<&'static str>,
    transaction: Option<bool>,
    settings: Option<Vec<(String, String)>>,
    file: Option<String>,
    embedded_checksum: Option<String>,
    applied_checksum: Option<String>,
    installed_on: Option<String>,
    up_sql: Option<String>,
    down_sql: Option<String>,
}

impl ShowView {
    /// `locked`: a live session holds the migration lock, so a dirty row is in progress.
    fn new(
        version: i64,
        embedded: Option<&Migration>,
        row: Option<&AppliedMigration>,
        locked: bool,
    ) -> Self {
        let state = match (embedded, row) {
            (_, None) => "pending",
            (_, Some(r)) if r.is_dirty() && locked => {
                "in progress (success = false while the lock holder runs it)"
            }
            (_, Some(r)) if r.is_dirty() => "dirty",
            (None, Some(_)) => "applied (not embedded in this binary)",
            (Some(m), Some(r)) if m.up.checksum[..] != r.checksum[..] => "checksum mismatch",
            _ => "applied",
        };
        Self {
            version,
            description: embedded
                .map(|m| m.description.clone())
                .or(row.map(|r| r.description.clone())),
            state,
            kind: embedded.map(|m| m.kind.as_str()),
            transaction: embedded.map(|m| !m.up.no_tx),
            settings: embedded.map(|m| m.up.settings.clone()),
            file: embedded.map(|m| m.up.file.clone()),
            embedded_checksum: embedded.map(|m| hex(&m.up.checksum)),
            applied_checksum: row.map(|r| hex(&r.checksum)),
            installed_on: row.map(|r| timestamp(&r.installed_on)),
            up_sql: embedded.map(|m| m.up.sql.clone()),
            down_sql: embedded.and_then(|m| m.down.as_ref().map(|d| d.sql.clone())),
        }
    }
}

impl View for ShowView {
    fn text(&self, out: &mut Text) {
        let dash = |v: Option<String>| v.unwrap_or_else(|| "-".to_string());
        let fields = [
            ("version:", Some(self.version.to_string())),
            ("description:", self.description.clone()),
            ("state:", Some(self.state.to_string())),
            ("kind:", self.kind.map(str::to_string)),
            ("transaction:", self.transaction.map(|t| t.to_string())),
            ("file:", self.file.clone()),
            ("installed_on:", self.installed_on.clone()),
            ("embedded_checksum:", self.embedded_checksum.clone()),
            ("applied_checksum:", self.applied_checksum.clone()),
        ];
        for (label, value) in fields {
            out.field(label, 18, dash(value));
        }
        if self.applied_checksum.is_some()
            && self.embedded_checksum.is_some()
            && self.embedded_checksum != self.applied_checksum
        {
            out.line(
                "The checksums are the SHA-384 of the up file's bytes (sqlx's checksum; characters in \
                 sqlx.toml's ignored-chars left out): `sha384sum` of each revision of the file in git \
                 finds the one that ran (applied_checksum) and the one embedded.",
            );
        }
        for (title, sql) in [("Up SQL", &self.up_sql), ("Down SQL", &self.down_sql)] {
            out.line(format_args!("\n-- {title} --"));
            out.line(sql.as_deref().unwrap_or("(none)").trim_end());
        }
    }
}

/// `migrate show VERSION`: exit 9 when the version is neither embedded nor applied.
pub async fn show(ctx: &mut Ctx<'_>, args: ShowArgs) -> Result<Exit, AppError> {
    let version = args.version;
    let status = ctx.migrator.inspect(&mut ctx.conn).await?;
    let embedded = ctx.migrator.set().get(version);
    let row = status.row(version);
    if row.is_none() && embedded.is_none() {
        let set = ctx.migrator.set();
        let newest = |v: Option<i64>| v.map_or("none".to_string(), |v| v.to_string());
        eprintln!(
            "server: version {version} is neither embedded in this binary (newest {}, {} \
             migration(s)) nor applied to this database (newest {}); `server migrate history` lists \
             the applied versions, `server migrate status` the embedded and pending ones. A version \
             only a newer release has is shown by that release's binary (docs/operations.md, \
             \"Which binary answers which question\")",
            newest(set.newest()),
            set.len(),
            newest(status.newest_applied())
        );
        return Ok(Exit::Refused);
    }
    ctx.out.emit(&ShowView::new(
        version,
        embedded,
        row,
        status.holder.is_some(),
    ));
    Ok(Exit::Success)
}
