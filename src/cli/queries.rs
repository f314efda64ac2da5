//! `server queries [--json]`: the query set this binary carries (its `.sqlx/` at build time):
//! each query's hash, SQL, parameter types and result columns (type, nullability), and the
//! set's hash, as the serving-releases table records it.

use clap::Args;
use serde::Serialize;

use super::output::{Column, Output, Table, Text, View, truncate};
use crate::error::Exit;
use crate::queries::{Parameters, QuerySet};

#[derive(Debug, Args)]
pub struct QueriesArgs {
    /// Print one JSON document on stdout instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct QueryView {
    hash: String,
    sql: String,
    parameters: Vec<String>,
    columns: Vec<ColumnView>,
}

#[derive(Serialize)]
struct ColumnView {
    name: String,
    #[serde(rename = "type")]
    ty: String,
    nullable: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    origin: Option<String>,
}

#[derive(Serialize)]
struct QueriesView {
    version: &'static str,
    query_set_hash: String,
    count: usize,
    queries: Vec<QueryView>,
}

impl View for QueriesView {
    fn text(&self, out: &mut Text) {
        out.line(format_args!(
            "{} queries, query set {} (release {})",
            self.count, self.query_set_hash, self.version
        ));
        let table = Table::new(vec![
            Column::left("HASH", 12),
            Column::right("PARAMS", 6),
            Column::right("COLUMNS", 7),
            Column::left("QUERY", 0).after("  "),
        ]);
        table.header(out);
        for q in &self.queries {
            let first = q
                .sql
                .lines()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .unwrap_or("");
            table.row(
                out,
                &[
                    q.hash[..12].to_string(),
                    q.parameters.len().to_string(),
                    q.columns.len().to_string(),
                    truncate(first, 90),
                ],
            );
        }
    }
}

pub fn exec(args: QueriesArgs) -> Exit {
    let set = QuerySet::embedded();
    let queries = set
        .queries()
        .iter()
        .map(|q| QueryView {
            hash: q.hash.clone(),
            sql: q.sql.clone(),
            parameters: match &q.parameters {
                Parameters::Types(types) => types.iter().map(|t| t.name()).collect(),
                Parameters::Count(n) => vec!["unknown".to_string(); *n],
                Parameters::Unknown => Vec::new(),
            },
            columns: q
                .columns
                .iter()
                .map(|c| ColumnView {
                    name: c.name.clone(),
                    ty: c.ty.name(),
                    nullable: c.nullable,
                    origin: c.origin.clone(),
                })
                .collect(),
        })
        .collect();
    Output::new(args.json).emit(&QueriesView {
        version: crate::releases::VERSION,
        query_set_hash: set.hash().to_string(),
        count: set.len(),
        queries,
    });
    Exit::Success
}
