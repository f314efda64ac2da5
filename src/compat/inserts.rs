//! What Describe cannot see in an INSERT: a column the statement leaves out that the schema now
//! requires (NOT NULL, no default, not identity or generated) fails only when it runs — a
//! DEFAULT dropped that the release relies on, or a NOT NULL column added without one.
//!
//! The statement is parsed with squawk's parser (every INSERT, in CTEs too); each target
//! table's required columns are read from the catalogs and compared with the column list. An
//! INSERT without a column list fills columns by position: it is left to Describe (too many
//! values is a parse error there). A table with a BEFORE INSERT row trigger is not judged: the
//! trigger may fill the column (the expand step of a rename does), and only running it would tell.

use sqlx::PgConnection;
use squawk_syntax::ast::{self, AstNode};

use super::CompatError;

/// An INSERT's target and the columns it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Insert {
    /// As written, for `to_regclass` (which folds case and reads quotes as PostgreSQL does).
    pub table: String,
    /// Case-folded unless quoted; `None` without a column list.
    pub columns: Option<Vec<String>>,
}

/// Every INSERT of `sql`.
pub fn inserts(sql: &str) -> Vec<Insert> {
    let parse = squawk_syntax::SourceFile::parse(sql);
    parse
        .tree()
        .syntax()
        .descendants()
        .filter_map(ast::Insert::cast)
        .filter_map(|insert| {
            let table = insert
                .relation_name_ref()?
                .path_ref()?
                .syntax()
                .text()
                .to_string();
            let default_values = matches!(
                insert.insert_source(),
                Some(ast::InsertSource::DefaultValues(_))
            );
            let columns = match insert.column_target_list() {
                Some(list) => Some(
                    list.column_targets()
                        .map(|c| column_key(&c.syntax().text().to_string()))
                        .collect(),
                ),
                None if default_values => Some(Vec::new()),
                None => None,
            };
            Some(Insert {
                table: table.trim().to_string(),
                columns,
            })
        })
        .collect()
}

/// `col`, `"Col"`, `col.field`, `col[1]` → the column's name as the catalogs spell it.
fn column_key(text: &str) -> String {
    let text = text.trim();
    if let Some(rest) = text.strip_prefix('"') {
        let end = rest.find('"').unwrap_or(rest.len());
        return rest[..end].to_string();
    }
    text.split(['.', '[', ' '])
        .next()
        .unwrap_or("")
        .to_lowercase()
}

/// Required columns of each INSERT's table that the INSERT leaves out.
pub async fn omitted_required(
    conn: &mut PgConnection,
    sql: &str,
) -> Result<Vec<String>, CompatError> {
    let mut causes = Vec::new();
    for insert in inserts(sql) {
        let Some(columns) = insert.columns else {
            continue;
        };
        let missing: Vec<String> = sqlx::query_scalar(
            "SELECT a.attname::text FROM pg_attribute a \
             WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped \
               AND a.attnotnull AND NOT a.atthasdef AND a.attidentity = '' AND a.attgenerated = '' \
               AND NOT a.attname::text = ANY($2) \
               AND NOT EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = a.attrelid \
                               AND NOT t.tgisinternal AND t.tgtype & 7 = 7) \
             ORDER BY a.attnum",
        )
        .bind(&insert.table)
        .bind(&columns)
        .fetch_all(&mut *conn)
        .await
        .map_err(CompatError::db(
            "reading the required columns of an INSERT's table",
        ))?;
        for column in missing {
            causes.push(format!(
                "INSERT INTO {} leaves out {column}, which is NOT NULL without a default now",
                insert.table
            ));
        }
    }
    Ok(causes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_inserts_in_ctes_and_their_columns() {
        let sql = "WITH a AS (INSERT INTO ui_artifacts (conversation_id, \"Kind\", title) \
                   VALUES ($1, $2, $3) RETURNING id) \
                   INSERT INTO public.ui_artifact_versions (artifact_id, version) SELECT id, 1 FROM a";
        // The outer statement first, then the one in its CTE.
        let found = inserts(sql);
        assert_eq!(
            found,
            vec![
                Insert {
                    table: "public.ui_artifact_versions".into(),
                    columns: Some(vec!["artifact_id".into(), "version".into()]),
                },
                Insert {
                    table: "ui_artifacts".into(),
                    columns: Some(vec![
                        "conversation_id".into(),
                        "Kind".into(),
                        "title".into()
                    ]),
                },
            ]
        );
        assert_eq!(
            inserts("INSERT INTO t DEFAULT VALUES")[0].columns,
            Some(Vec::new())
        );
        assert_eq!(inserts("INSERT INTO t VALUES (1)")[0].columns, None);
        assert!(inserts("SELECT 1").is_empty());
    }
}
