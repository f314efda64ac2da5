//! What `migrate repair` shows about a dirty row ([`DirtyReport`], built by
//! [`Migrator::diagnose_dirty`](super::Migrator::diagnose_dirty)): which file ran, the failing
//! statement, and phrases for the rows it compares.

use serde::Serialize;

use migrate_source::manifest::{Migration, Script};

use crate::history::AppliedMigration;
use crate::lock;

/// Which file of a migration left a dirty row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Up,
    Down,
}

/// See [`Migrator::diagnose_dirty`].
#[derive(Debug, Clone)]
pub struct DirtyReport<'a> {
    pub row: AppliedMigration,
    /// The row's migration, when this binary embeds it.
    pub embedded: Option<&'a Migration>,
    /// The file that was running when the row was left dirty, when the row says which (this
    /// binary's runner writes `execution_time = -1` before an up file, and marks an applied row
    /// dirty only for a `-- no-transaction` down file).
    pub script: Option<(Direction, &'a Script)>,
    /// A live session holding the migration lock: it may still be running this migration.
    pub holder: Option<lock::Holder>,
    /// Every INVALID index outside the system schemas.
    pub invalid_indexes: Vec<InvalidIndex>,
}

/// An INVALID index (what a failed or interrupted `CREATE INDEX CONCURRENTLY` leaves), with its
/// definition: the table and columns whose duplicates a unique one tripped on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct InvalidIndex {
    pub index: String,
    pub table: String,
    /// `pg_get_indexdef`, as `pg_indexes.indexdef` shows it.
    pub definition: String,
}

impl DirtyReport<'_> {
    /// The statement that failed or was interrupted, when it is known: a `-- no-transaction`
    /// file holds one statement, so it is that one.
    pub fn failing_statement(&self) -> Option<String> {
        let (_, script) = self.script?;
        let statements = statements(&script.sql);
        (statements.len() == 1).then(|| statements[0].clone())
    }
}

/// The statements of a script, comments and blank lines dropped, split on `;` at line ends
/// (good enough for the one-statement files that run outside a transaction).
fn statements(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in sql.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with("--") {
            continue;
        }
        if !current.is_empty() {
            current.push('\n');
        }
        current.push_str(line.trim_end());
        if trimmed.ends_with(';') {
            out.push(std::mem::take(&mut current));
        }
    }
    if !current.trim().is_empty() {
        out.push(current);
    }
    out
}

/// A row as one phrase, for "it was …, it is now …".
pub(super) fn describe_row(row: Option<&AppliedMigration>) -> String {
    match row {
        None => "gone (no row)".to_string(),
        Some(r) => format!(
            "success = {}, installed_on {}, execution_time {}",
            r.success,
            r.installed_on
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_else(|_| r.installed_on.to_string()),
            r.execution_time
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::statements;

    #[test]
    fn statements_skip_comments_and_split_at_line_ends() {
        let sql =
            "-- no-transaction\n-- lock_timeout: 1s\n\nCREATE INDEX CONCURRENTLY i\n  ON t (c);\n";
        assert_eq!(
            statements(sql),
            ["CREATE INDEX CONCURRENTLY i\n  ON t (c);"]
        );
        assert_eq!(statements("SELECT 1;\nSELECT 2;").len(), 2);
        assert_eq!(statements("SELECT 1"), ["SELECT 1"]);
    }
}
