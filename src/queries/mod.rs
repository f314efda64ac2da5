//! The queries a release runs, as sqlx's offline data records them (`.sqlx/query-*.json`, one
//! file per `query!`-family macro): the SQL, the parameter types, the result columns with their
//! types, nullability and origin, and the hash. The binary embeds its own set at build time
//! (`build.rs` writes an `include_str!` of each file); another release's set comes from a `.sqlx/` directory
//! (`migrate compat --queries DIR`) or from the bookkeeping table of serving releases
//! (`crate::releases`), where each instance records the files it was built with.
//!
//! This module owns reading and naming those files; `crate::compat` judges them against a
//! schema and [`readiness`] prepares the binary's own set against the live one.

pub mod readiness;

use std::path::Path;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

mod embedded_files {
    include!(concat!(env!("OUT_DIR"), "/query_set.rs"));
}

/// A type as sqlx describes it (a `.sqlx` file's `type_info`): `"Text"`, `"Int4Array"`, or
/// `{"Custom": {"name": …, "kind": …}}` for a type of the database's own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SqlType(pub serde_json::Value);

impl SqlType {
    /// The same type: equal once the OIDs are left out (a custom type's OID differs between the
    /// database `cargo sqlx prepare` ran on and any other; its name and kind do not).
    pub fn same_as(&self, other: &SqlType) -> bool {
        without_oids(&self.0) == without_oids(&other.0)
    }

    /// PostgreSQL's name for people: `text`, `int4[]`, `my_enum`.
    pub fn name(&self) -> String {
        match &self.0 {
            serde_json::Value::String(s) => match s.strip_suffix("Array") {
                Some(element) => format!("{}[]", element.to_lowercase()),
                None => s.to_lowercase(),
            },
            serde_json::Value::Object(map) => {
                let inner = map.values().next();
                match inner {
                    Some(serde_json::Value::Object(custom)) => custom
                        .get("name")
                        .and_then(|n| n.as_str())
                        .map_or_else(|| self.0.to_string(), str::to_string),
                    Some(serde_json::Value::String(name)) => name.clone(),
                    Some(other) => other.to_string(),
                    None => self.0.to_string(),
                }
            }
            other => other.to_string(),
        }
    }
}

fn without_oids(value: &serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Object(map) => serde_json::Value::Object(
            map.iter()
                .filter(|(k, _)| k.as_str() != "oid")
                .map(|(k, v)| (k.clone(), without_oids(v)))
                .collect(),
        ),
        serde_json::Value::Array(items) => {
            serde_json::Value::Array(items.iter().map(without_oids).collect())
        }
        other => other.clone(),
    }
}

/// What a query sends: a type per parameter (PostgreSQL always says), or only a count.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Parameters {
    Types(Vec<SqlType>),
    Count(usize),
    Unknown,
}

/// A result column as the release decodes it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Column {
    /// The column's name in the result, with sqlx's overrides (`"e!"`, `"x?"`) as written.
    pub name: String,
    #[serde(rename = "type")]
    pub ty: SqlType,
    /// `Some(false)`: the release decodes it as never NULL (unless the name overrides it).
    pub nullable: Option<bool>,
    /// `table.column` when the column comes straight from a table.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
}

impl Column {
    /// How a finding names the column: its origin, else its name.
    pub fn label(&self) -> String {
        self.origin.clone().unwrap_or_else(|| self.name.clone())
    }

    /// The release decodes it as a non-NULL value: described NOT NULL and not overridden by
    /// `?` (sqlx's "nullable") or `!` (the author vouches for it whatever PostgreSQL says).
    pub fn decoded_not_null(&self) -> bool {
        self.nullable == Some(false) && !self.name.ends_with('?') && !self.name.ends_with('!')
    }
}

/// One query of a release.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Query {
    /// sqlx's hash of the SQL (the file's name is `query-<hash>.json`).
    pub hash: String,
    pub sql: String,
    pub parameters: Parameters,
    pub columns: Vec<Column>,
    /// The file as sqlx wrote it, kept to record the set in the database unchanged.
    #[serde(skip)]
    raw: serde_json::Value,
}

impl Query {
    /// How reports name a query: the start of its SQL on one line (whitespace collapsed, at
    /// most 100 characters; a first line such as `WITH c AS (` alone says too little).
    pub fn first_line(&self) -> String {
        let words: Vec<&str> = self.sql.split_whitespace().collect();
        let line = words.join(" ");
        if line.chars().count() > 100 {
            line.chars().take(99).collect::<String>() + "…"
        } else {
            line
        }
    }

    /// The hash's first 12 characters.
    pub fn short_hash(&self) -> &str {
        &self.hash[..self.hash.len().min(12)]
    }

    fn parse(raw: serde_json::Value) -> Result<Self, String> {
        let file: File = serde_json::from_value(raw.clone()).map_err(|e| e.to_string())?;
        let d = file.describe;
        if d.nullable.len() != d.columns.len() {
            return Err(format!(
                "{} columns but {} nullability entries",
                d.columns.len(),
                d.nullable.len()
            ));
        }
        let columns = d
            .columns
            .into_iter()
            .zip(d.nullable)
            .map(|(c, nullable)| Column {
                name: c.name,
                ty: SqlType(c.type_info),
                nullable,
                origin: c.origin.get("Table").and_then(|t| {
                    Some(format!(
                        "{}.{}",
                        t.get("table")?.as_str()?,
                        t.get("name")?.as_str()?
                    ))
                }),
            })
            .collect();
        Ok(Self {
            hash: file.hash,
            sql: file.query,
            parameters: match d.parameters {
                Some(FileParameters::Left(types)) => {
                    Parameters::Types(types.into_iter().map(SqlType).collect())
                }
                Some(FileParameters::Right(n)) => Parameters::Count(n),
                None => Parameters::Unknown,
            },
            columns,
            raw,
        })
    }
}

#[derive(Deserialize)]
struct File {
    query: String,
    describe: FileDescribe,
    hash: String,
}

#[derive(Deserialize)]
struct FileDescribe {
    columns: Vec<FileColumn>,
    parameters: Option<FileParameters>,
    nullable: Vec<Option<bool>>,
}

#[derive(Deserialize)]
enum FileParameters {
    Left(Vec<serde_json::Value>),
    Right(usize),
}

#[derive(Deserialize)]
struct FileColumn {
    name: String,
    type_info: serde_json::Value,
    /// `{"Table": {"table": …, "name": …}}`, `"Expression"` or `"Unknown"`.
    #[serde(default)]
    origin: serde_json::Value,
}

/// Why a query set could not be read.
#[derive(Debug, thiserror::Error)]
pub enum QuerySetError {
    #[error("{dir}: {error}")]
    Dir { dir: String, error: std::io::Error },
    #[error("{file}: not a sqlx query file: {reason}")]
    File { file: String, reason: String },
}

/// A release's queries, ordered by hash.
#[derive(Debug, Clone, PartialEq)]
pub struct QuerySet {
    queries: Vec<Query>,
    hash: String,
}

impl QuerySet {
    /// The set this binary was built with.
    pub fn embedded() -> &'static QuerySet {
        static SET: OnceLock<QuerySet> = OnceLock::new();
        SET.get_or_init(|| {
            // build.rs embeds only what `cargo sqlx prepare` wrote; `tests::embedded_set_parses`
            // reads every file, so a file this cannot read fails the tests, not a release.
            QuerySet::from_files(
                embedded_files::QUERY_FILES
                    .iter()
                    .map(|(name, text)| (name.to_string(), text.to_string())),
            )
            .unwrap_or_else(|e| panic!("the embedded query set: {e}"))
        })
    }

    /// No queries: the release of a generated migration set (tests, benchmarks).
    pub fn none() -> &'static QuerySet {
        static NONE: OnceLock<QuerySet> = OnceLock::new();
        NONE.get_or_init(|| QuerySet::new(Vec::new()))
    }

    /// `query-*.json` files, by name and text.
    pub fn from_files(
        files: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, QuerySetError> {
        let mut queries = Vec::new();
        for (name, text) in files {
            let bad = |reason: String| QuerySetError::File {
                file: name.clone(),
                reason,
            };
            let raw: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
            let query = Query::parse(raw).map_err(&bad)?;
            if name != format!("query-{}.json", query.hash) {
                return Err(bad(format!("its hash is {}", query.hash)));
            }
            queries.push(query);
        }
        Ok(Self::new(queries))
    }

    /// Every `query-*.json` of a `.sqlx/` directory.
    pub fn from_dir(dir: &Path) -> Result<Self, QuerySetError> {
        let io = |error| QuerySetError::Dir {
            dir: dir.display().to_string(),
            error,
        };
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io)? {
            let entry = entry.map_err(io)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with("query-") && name.ends_with(".json") {
                files.push((name, std::fs::read_to_string(entry.path()).map_err(io)?));
            }
        }
        Self::from_files(files)
    }

    /// The set as recorded in the database: the files' JSON, in an array.
    pub fn from_json(value: serde_json::Value) -> Result<Self, QuerySetError> {
        let serde_json::Value::Array(items) = value else {
            return Err(QuerySetError::File {
                file: "recorded query set".to_string(),
                reason: "not an array".to_string(),
            });
        };
        let queries = items
            .into_iter()
            .map(|raw| {
                Query::parse(raw).map_err(|reason| QuerySetError::File {
                    file: "recorded query set".to_string(),
                    reason,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::new(queries))
    }

    fn new(mut queries: Vec<Query>) -> Self {
        queries.sort_by(|a, b| a.hash.cmp(&b.hash));
        queries.dedup_by(|a, b| a.hash == b.hash);
        let mut digest = Sha256::new();
        for q in &queries {
            digest.update(q.hash.as_bytes());
            digest.update(b"\n");
        }
        let hash = digest
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Self { queries, hash }
    }

    /// The files' JSON in an array, as [`QuerySet::from_json`] reads it.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::Value::Array(self.queries.iter().map(|q| q.raw.clone()).collect())
    }

    /// SHA-256 of the queries' hashes, sorted, one a line: the set's identity.
    pub fn hash(&self) -> &str {
        &self.hash
    }

    pub fn queries(&self) -> &[Query] {
        &self.queries
    }

    pub fn len(&self) -> usize {
        self.queries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queries.is_empty()
    }
}

/// What `cargo sqlx prepare` writes for `sql` on `conn`'s schema: the file's name and JSON
/// (sqlx's describe: Parse/Describe, never Execute). For the tests and benchmarks that make the
/// query sets of releases that are not this build.
pub async fn describe_file(
    conn: &mut sqlx::PgConnection,
    sql: &str,
) -> Result<(String, String), sqlx::Error> {
    use sqlx::{Executor, SqlSafeStr};
    let described = (&mut *conn)
        .describe(sqlx::AssertSqlSafe(sql.to_string()).into_sql_str())
        .await?;
    let hash: String = Sha256::digest(sql.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let file = serde_json::json!({
        "db_name": "PostgreSQL",
        "query": sql,
        "describe": described,
        "hash": hash,
    });
    Ok((
        format!("query-{hash}.json"),
        serde_json::to_string_pretty(&file).unwrap_or_default(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_set_parses() {
        let set = QuerySet::embedded();
        assert_eq!(set.len(), embedded_files::QUERY_FILES.len());
        assert!(!set.is_empty());
        for q in set.queries() {
            assert_eq!(q.hash.len(), 64);
            assert!(!q.first_line().is_empty());
        }
    }

    #[test]
    fn recorded_json_round_trips() {
        let set = QuerySet::embedded();
        let back = QuerySet::from_json(set.to_json()).expect("reads its own JSON");
        assert_eq!(&back, set);
        assert_eq!(back.hash(), set.hash());
    }

    #[test]
    fn type_names_and_oids() {
        let text = SqlType(serde_json::json!("Text"));
        assert_eq!(text.name(), "text");
        assert_eq!(SqlType(serde_json::json!("Int4Array")).name(), "int4[]");
        let a = SqlType(
            serde_json::json!({"Custom": {"name": "mood", "oid": 1, "kind": {"Enum": ["a"]}}}),
        );
        let b = SqlType(
            serde_json::json!({"Custom": {"name": "mood", "oid": 2, "kind": {"Enum": ["a"]}}}),
        );
        assert_eq!(a.name(), "mood");
        assert!(a.same_as(&b));
        assert!(!a.same_as(&text));
    }
}
