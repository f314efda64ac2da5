//! The `_sqlx_migrations` table: sqlx 0.9's columns and meaning, nothing added.
//!
//! | column         | meaning                                                        |
//! |----------------|----------------------------------------------------------------|
//! | version        | migration version (primary key)                                |
//! | description    | from the file name, `_` read as spaces                         |
//! | installed_on   | when it was applied                                            |
//! | success        | `false` = started outside a transaction and not finished: dirty |
//! | checksum       | SHA-384 of the up file's bytes                                 |
//! | execution_time | nanoseconds (`-1` where unknown, as sqlx writes it)            |
//!
//! The table's name comes from `sqlx.toml` (`table-name`, `_sqlx_migrations` by default) and is
//! interpolated as written, as sqlx does: unqualified, it lives in the first schema of
//! `search_path`; qualified, its schema is created first when `create-schemas` lists it.

use sqlx::PgConnection;
use sqlx::postgres::PgDatabaseError;
use time::OffsetDateTime;

use migrate_source::manifest::{self, Migration, Script};

use crate::error::MigrateError;

/// Where a set records itself: sqlx's bookkeeping table and the schemas created before it
/// (`sqlx.toml`'s `table-name` and `create-schemas`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bookkeeping {
    /// The table as written in `sqlx.toml`: interpolated into SQL as is, as sqlx does.
    pub table: String,
    pub create_schemas: Vec<String>,
}

impl Default for Bookkeeping {
    fn default() -> Self {
        Self {
            table: manifest::DEFAULT_TABLE.to_string(),
            create_schemas: Vec::new(),
        }
    }
}

/// What `migrate repair` records for a dirty row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepairAction {
    /// The operator finished the migration by hand: the row becomes `success = true`.
    MarkApplied,
    /// The operator undid its effects by hand: the row goes, so the next run applies it again.
    MarkReverted,
}

/// sqlx 0.9's `ensure_migrations_table`, byte for byte in meaning.
fn create_table(table: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {table} (
    version BIGINT PRIMARY KEY,
    description TEXT NOT NULL,
    installed_on TIMESTAMPTZ NOT NULL DEFAULT now(),
    success BOOLEAN NOT NULL,
    checksum BYTEA NOT NULL,
    execution_time BIGINT NOT NULL
)"
    )
}

/// One row of `_sqlx_migrations`.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
pub struct AppliedMigration {
    pub version: i64,
    pub description: String,
    #[serde(with = "time::serde::rfc3339")]
    pub installed_on: OffsetDateTime,
    pub success: bool,
    #[serde(serialize_with = "hex_bytes")]
    pub checksum: Vec<u8>,
    pub execution_time: i64,
}

impl AppliedMigration {
    /// `success = false`: a migration started and not (yet) finished, or a failed one.
    pub fn is_dirty(&self) -> bool {
        !self.success
    }
}

fn hex_bytes<S: serde::Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex(bytes))
}

/// Lower-case hex of a checksum: one allocation (a `format!` per byte cost ~28 k instructions
/// per applied migration, more than its round trip's share of the engine; bench/profile.py).
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// Reads every row, or `None` when the table does not exist yet. One round trip, no lock: a
/// missing table (or a missing schema of a qualified one) is PostgreSQL's `undefined_table`
/// (`invalid_schema_name`) error rather than a catalog query first.
pub async fn read(
    conn: &mut PgConnection,
    table: &str,
) -> Result<Option<Vec<AppliedMigration>>, MigrateError> {
    let rows = sqlx::query_as::<_, AppliedMigration>(sqlx::AssertSqlSafe(format!(
        "SELECT version, description, installed_on, success, checksum, execution_time \
         FROM {table} ORDER BY version"
    )))
    .fetch_all(conn)
    .await;
    match rows {
        Ok(rows) => Ok(Some(rows)),
        Err(sqlx::Error::Database(e)) if matches!(e.code().as_deref(), Some("42P01" | "3F000")) => {
            Ok(None)
        }
        Err(e) => Err(MigrateError::db("reading the migration table")(e)),
    }
}

/// sqlx's `create_schema_if_not_exists` for each schema, then `ensure_migrations_table`; under
/// the lock, before anything is applied, as sqlx does.
pub async fn ensure_table(
    conn: &mut PgConnection,
    bookkeeping: &Bookkeeping,
) -> Result<(), MigrateError> {
    for schema in &bookkeeping.create_schemas {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "CREATE SCHEMA IF NOT EXISTS {schema};"
        )))
        .execute(&mut *conn)
        .await
        .map_err(MigrateError::db("creating a schema listed in sqlx.toml"))?;
    }
    sqlx::raw_sql(sqlx::AssertSqlSafe(create_table(&bookkeeping.table)))
        .execute(conn)
        .await
        .map_err(MigrateError::db("creating the migration table"))?;
    Ok(())
}

/// An `E''` literal: means the same whatever `standard_conforming_strings` says.
fn literal(s: &str) -> String {
    format!("E'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

/// The migration and its bookkeeping row as ONE simple-protocol query. PostgreSQL runs the
/// statements of a multi-statement query as one implicit transaction: a failure anywhere rolls
/// back the migration and its row together, and a success costs a single round trip.
/// `execution_time` is measured by the server from receipt of the query (nanoseconds, as sqlx).
pub fn transactional_batch(table: &str, m: &Migration) -> String {
    format!(
        "{sql}\n;\nINSERT INTO {table} (version, description, success, checksum, execution_time) \
         VALUES ({version}, {description}, TRUE, decode('{checksum}', 'hex'), \
         (extract(epoch FROM clock_timestamp() - statement_timestamp()) * 1000000000)::bigint)",
        sql = m.up.sql,
        version = m.version,
        description = literal(&m.description),
        checksum = hex(&m.up.checksum),
    )
}

/// Before a non-transactional migration runs: a `success = false` row, committed, so a failure or
/// a crash part-way leaves a visible dirty mark (sqlx reads it as dirty too).
pub async fn insert_started(
    conn: &mut PgConnection,
    table: &str,
    m: &Migration,
) -> Result<(), MigrateError> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO {table} (version, description, success, checksum, execution_time) \
         VALUES ($1, $2, FALSE, $3, -1)"
    )))
    .bind(m.version)
    .bind(&m.description)
    .bind(&m.up.checksum[..])
    .execute(conn)
    .await
    .map_err(MigrateError::db(
        "recording a non-transactional migration as started",
    ))?;
    Ok(())
}

pub async fn mark_succeeded(
    conn: &mut PgConnection,
    table: &str,
    version: i64,
    execution_time_ns: i64,
) -> Result<(), MigrateError> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE {table} SET success = TRUE, execution_time = $2 WHERE version = $1"
    )))
    .bind(version)
    .bind(execution_time_ns)
    .execute(conn)
    .await
    .map_err(MigrateError::db(
        "recording a non-transactional migration as finished",
    ))?;
    Ok(())
}

/// A down migration and the removal of its row as one implicit transaction (one round trip).
pub fn revert_batch(table: &str, version: i64, down: &Script) -> String {
    format!(
        "{sql}\n;\nDELETE FROM {table} WHERE version = {version}",
        sql = down.sql
    )
}

/// Before a non-transactional down migration runs: the row turns dirty, committed.
pub async fn mark_dirty(
    conn: &mut PgConnection,
    table: &str,
    version: i64,
) -> Result<(), MigrateError> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE {table} SET success = FALSE WHERE version = $1"
    )))
    .bind(version)
    .execute(conn)
    .await
    .map_err(MigrateError::db(
        "marking a non-transactional revert as started",
    ))?;
    Ok(())
}

pub async fn delete(
    conn: &mut PgConnection,
    table: &str,
    version: i64,
) -> Result<(), MigrateError> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DELETE FROM {table} WHERE version = $1"
    )))
    .bind(version)
    .execute(conn)
    .await
    .map_err(MigrateError::db("deleting a reverted migration's row"))?;
    Ok(())
}

/// `migrate repair`: a dirty row becomes applied, or goes.
pub async fn record_repair(
    conn: &mut PgConnection,
    table: &str,
    version: i64,
    action: RepairAction,
) -> Result<(), MigrateError> {
    let sql = match action {
        RepairAction::MarkApplied => {
            format!("UPDATE {table} SET success = TRUE WHERE version = $1 AND NOT success")
        }
        RepairAction::MarkReverted => {
            format!("DELETE FROM {table} WHERE version = $1 AND NOT success")
        }
    };
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(version)
        .execute(conn)
        .await
        .map_err(MigrateError::db("recording the repair"))?;
    Ok(())
}

/// PostgreSQL's error for a migration's SQL, with the line and column in the file when the
/// server gives a position inside it.
pub fn describe_sql_error(error: &sqlx::Error, sql: &str) -> String {
    let sqlx::Error::Database(db) = error else {
        return error.to_string();
    };
    let Some(pg) = db.try_downcast_ref::<PgDatabaseError>() else {
        return db.to_string();
    };
    let mut out = format!(
        "{} {}: {}",
        format!("{:?}", pg.severity()).to_uppercase(),
        pg.code(),
        pg.message()
    );
    if let Some(sqlx::postgres::PgErrorPosition::Original(pos)) = pg.position() {
        match line_col(sql, pos) {
            Some((line, col)) => out.push_str(&format!(" (line {line}, column {col})")),
            None => out.push_str(" (in the bookkeeping statement after the file's SQL)"),
        }
    }
    if let Some(detail) = pg.detail() {
        out.push_str(&format!("; detail: {detail}"));
    }
    if let Some(hint) = pg.hint() {
        out.push_str(&format!("; hint: {hint}"));
    }
    if let Some(cause) = where_the_cause_may_be(pg.code()) {
        out.push_str(&format!("; {cause}"));
    }
    out.replace('\n', " ")
}

/// For errors about an object that exists already or is missing, where to look: the database
/// may have been changed outside the migrations, and then the file is right.
fn where_the_cause_may_be(sqlstate: &str) -> Option<&'static str> {
    match sqlstate {
        // duplicate_table (any relation: table, index, view, sequence), _column, _object,
        // _schema, _function.
        "42P07" | "42701" | "42710" | "42P06" | "42723" => Some(
            "the database already has it: if it was made outside the migrations (by hand, by another \
             tool), the file is right and the database is not (`server migrate drift` with the serving \
             release's binary lists what no migration made; docs/operations.md, \"A migration failed \
             with an SQL error\")",
        ),
        // undefined_table, _column, _object, _function.
        "42P01" | "42703" | "42704" | "42883" => Some(
            "a typo in the file, or the object was changed outside the migrations (`server migrate \
             drift` with the serving release's binary shows it)",
        ),
        _ => None,
    }
}

/// 1-based line and column of PostgreSQL's 1-based character position, if it falls in `sql`.
fn line_col(sql: &str, position: usize) -> Option<(usize, usize)> {
    let (mut line, mut col) = (1, 1);
    for (i, c) in sql.chars().enumerate() {
        if i + 1 == position {
            return Some((line, col));
        }
        if c == '\n' {
            line += 1;
            col = 1;
        } else {
            col += 1;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_lower_case_two_digits_per_byte() {
        assert_eq!(hex(&[0x00, 0x0f, 0xa0, 0xff, 0x3c]), "000fa0ff3c");
        assert_eq!(hex(&[]), "");
    }

    #[test]
    fn line_col_counts_characters_not_bytes() {
        let sql = "SELECT 'é';\nSELEC 1;";
        assert_eq!(line_col(sql, 1), Some((1, 1)));
        assert_eq!(line_col(sql, 13), Some((2, 1)));
        assert_eq!(line_col(sql, 100), None);
    }

    #[test]
    fn literal_escapes_quotes_and_backslashes() {
        assert_eq!(literal(r"it's a \ test"), r"E'it''s a \\ test'");
    }
}
