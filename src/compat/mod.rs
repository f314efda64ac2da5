//! Compatibility of a schema with the queries releases run: `server migrate compat` and the
//! pre-deploy's refusal of a migration that would break a release still serving.
//!
//! On a database migrated with the set to check (a scratch one), every query of each release is
//! described (Parse/Describe — sqlx's `Executor::describe`, the macros' own call), never
//! executed, and what PostgreSQL says now is compared with what the release expects
//! ([`compare`]): its error if it no longer parses (`column "content" does not exist`), each
//! parameter's and result column's type, a result column the release decodes as NOT NULL that
//! became nullable, and, for an INSERT, a NOT NULL column without a default that it leaves out
//! ([`inserts`]). sqlx's describe may also run `EXPLAIN` (no `ANALYZE`) of the prepared
//! statement to infer the nullability of expressions: that plans the query and does not run it.
//!
//! [`scratch`] owns the scratch database; [`gate`] is the pre-deploy's check before the
//! migration lock. The releases serving come from `crate::releases`.

pub mod compare;
pub mod gate;
pub mod inserts;
pub mod scratch;

use std::collections::HashMap;
use std::time::Instant;

use serde::Serialize;
use sqlx::PgConnection;

use crate::releases::Release;

/// One query of one release that the schema breaks.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    pub release: String,
    /// The query's hash (its `.sqlx/query-<hash>.json`).
    pub hash: String,
    /// The first line of its SQL.
    pub query: String,
    /// What breaks: PostgreSQL's error, a type change, a column that became nullable.
    pub cause: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "release {}: query {} ({}): {}",
            self.release,
            &self.hash[..self.hash.len().min(12)],
            self.query,
            self.cause
        )
    }
}

/// A release as a report names it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Checked {
    pub version: String,
    pub query_set_hash: String,
    pub queries: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heartbeat_age_seconds: Option<i64>,
}

/// What a check found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub releases: Vec<Checked>,
    /// Distinct queries described.
    pub described: usize,
    pub findings: Vec<Finding>,
    pub elapsed_ms: u64,
}

impl Report {
    pub fn is_compatible(&self) -> bool {
        self.findings.is_empty()
    }

    /// "2 release(s), 18 queries: 0 breaks".
    pub fn summary(&self) -> String {
        format!(
            "{} release(s), {} distinct queries described in {} ms: {} break(s)",
            self.releases.len(),
            self.described,
            self.elapsed_ms,
            self.findings.len()
        )
    }
}

/// Why a check did not complete (the database failed under it: not a verdict on the queries).
#[derive(Debug, thiserror::Error)]
pub enum CompatError {
    #[error("{context}: {source}")]
    Database {
        context: String,
        #[source]
        source: sqlx::Error,
    },
    /// The scratch database is unusable: none can be created (no CREATEDB) and none is
    /// configured, the one given is not empty, or its description is unreadable.
    #[error("{0}")]
    Scratch(String),
    /// Applying the migrations to the scratch database failed.
    #[error("applying the migrations to the scratch database: {0}")]
    Migrate(#[from] crate::migrate::MigrateError),
}

impl CompatError {
    pub fn db(context: impl Into<String>) -> impl FnOnce(sqlx::Error) -> Self {
        let context = context.into();
        move |source| Self::Database { context, source }
    }
}

/// Describes every query of `releases` on `conn` (a database at the schema to check) and
/// compares each with what its release expects. A query several releases share is described
/// once.
pub async fn check(conn: &mut PgConnection, releases: &[Release]) -> Result<Report, CompatError> {
    let started = Instant::now();
    let mut causes: HashMap<&str, Vec<String>> = HashMap::new();
    let mut findings = Vec::new();
    for release in releases {
        for query in release.queries.queries() {
            if !causes.contains_key(query.hash.as_str()) {
                let found = compare::query(conn, query).await?;
                causes.insert(&query.hash, found);
            }
            for cause in &causes[query.hash.as_str()] {
                findings.push(Finding {
                    release: release.version.clone(),
                    hash: query.hash.clone(),
                    query: query.first_line(),
                    cause: cause.clone(),
                });
            }
        }
    }
    Ok(Report {
        releases: releases
            .iter()
            .map(|r| Checked {
                version: r.version.clone(),
                query_set_hash: r.queries.hash().to_string(),
                queries: r.queries.len(),
                heartbeat_age_seconds: r.heartbeat_age_seconds,
            })
            .collect(),
        described: causes.len(),
        findings,
        elapsed_ms: started.elapsed().as_millis() as u64,
    })
}
