//! One query against the schema: prepared with the parameter types the release sends (as sqlx
//! does when the release runs it), described (Parse/Describe, never executed), and each result
//! column compared with what the release's `.sqlx` file recorded.

use sqlx::postgres::PgTypeInfo;
use sqlx::{Executor, PgConnection, SqlSafeStr};

use super::{CompatError, inserts};
use crate::queries::{Parameters, Query, QuerySet, SqlType};

/// What breaks `expected` on `conn`'s schema; empty when nothing does.
pub async fn query(conn: &mut PgConnection, expected: &Query) -> Result<Vec<String>, CompatError> {
    let sql = || sqlx::AssertSqlSafe(expected.sql.clone()).into_sql_str();
    let types: Vec<PgTypeInfo> = match &expected.parameters {
        Parameters::Types(types) => types.iter().map(declared).collect(),
        _ => Vec::new(),
    };
    // As the release runs it: its parameters typed as its Rust values are. PostgreSQL's own
    // coercions decide (text into a varchar column is fine; text into an enum is not).
    if let Err(e) = (&mut *conn).prepare_with(sql(), &types).await {
        return match e {
            sqlx::Error::Database(e) => Ok(vec![e.message().to_string()]),
            sqlx::Error::TypeNotFound { type_name } => {
                Ok(vec![format!("type {type_name} does not exist")])
            }
            e => Err(CompatError::Database {
                context: format!("preparing query {}", expected.short_hash()),
                source: e,
            }),
        };
    }
    // The statement just prepared (sqlx's cache is keyed by the SQL): its result columns and
    // their nullability as the release would see them.
    let described = (&mut *conn)
        .describe(sql())
        .await
        .map_err(|e| CompatError::Database {
            context: format!("describing query {}", expected.short_hash()),
            source: e,
        })?;
    // The description in the `.sqlx` file's own format, read by the same code as the files.
    let file = serde_json::json!({
        "query": expected.sql,
        "describe": described,
        "hash": expected.hash,
    });
    let now = QuerySet::from_json(serde_json::Value::Array(vec![file]))
        .map_err(|e| CompatError::Scratch(format!("reading sqlx's description: {e}")))?;
    let mut causes = now
        .queries()
        .first()
        .map(|now| differences(expected, now))
        .unwrap_or_default();
    causes.extend(inserts::omitted_required(conn, &expected.sql).await?);
    Ok(causes)
}

/// A recorded parameter type as sqlx declares it: built-in types by OID, a type of the
/// database's own by name (its OID differs from one database to the next).
fn declared(ty: &SqlType) -> PgTypeInfo {
    let value = match ty.0.get("Custom").and_then(|c| c.get("name")) {
        Some(name) => serde_json::json!({ "DeclareWithName": name }),
        None => ty.0.clone(),
    };
    serde_json::from_value(value).unwrap_or_else(|_| PgTypeInfo::with_name("unknown"))
}

/// Types whose values sqlx decodes alike (the same binary format): a change among them is not a
/// break.
fn decodes_alike(a: &SqlType, b: &SqlType) -> bool {
    const TEXT: [&str; 4] = ["text", "varchar", "bpchar", "name"];
    a.same_as(b) || (TEXT.contains(&a.name().as_str()) && TEXT.contains(&b.name().as_str()))
}

/// The result columns the release decodes (`old`) against those PostgreSQL describes now.
pub fn differences(old: &Query, new: &Query) -> Vec<String> {
    let mut causes = Vec::new();
    if old.columns.len() != new.columns.len() {
        causes.push(format!(
            "returns {} column(s) now; the release decodes {}",
            new.columns.len(),
            old.columns.len()
        ));
        return causes;
    }
    for (a, b) in old.columns.iter().zip(&new.columns) {
        let label = a.label();
        if !decodes_alike(&a.ty, &b.ty) {
            causes.push(format!("{label}: {} → {}", a.ty.name(), b.ty.name()));
        }
        if a.decoded_not_null() && b.nullable == Some(true) {
            causes.push(format!(
                "{label} became nullable (the release decodes it as NOT NULL)"
            ));
        }
    }
    causes
}
