//! The migration safety lint: dangerous DDL is reported at build time, before it reaches
//! production.
//!
//! One crate for two users: `build.rs` (a build-dependency), which lints `migrations/` on every
//! build, and the binary, which runs the same rules for `server migrate lint [DIR]`. It depends
//! on `std`, squawk's crates, `toml`, `serde` and `migrate-source` (the manifest and the
//! duration grammar) only: no database, no configuration.
//!
//! Reading and detecting is squawk's: `squawk-syntax` parses each file with a PostgreSQL grammar
//! (a lossless tree, error-tolerant: a statement it cannot read is reported and the rest is
//! still linted), and `squawk-linter` finds the dangerous DDL its rules know. This file is the
//! project's policy on top: it maps squawk's rules onto this project's rule ids, drops what
//! cannot hurt production (tables created in the same file, binary-coercible type changes,
//! non-volatile defaults, a validated NOT NULL check from an earlier migration), applies the
//! severities of `migration-lint.toml` and the `-- lint:allow <rule>: <reason>` comments, and
//! adds the few rules squawk has no equivalent for (see docs/migration-lint.md for the map).
//!
//! One job per file: [`rules`] (ids, levels, texts, squawk's map), [`config`] (the severity
//! file), this file (a set, file by
//! file), `file` (what a file created, live tables, the lock_timeout in force), `squawk`
//! (squawk's findings judged), `statement` and `alter` (the project's own rules), `types` (type
//! changes and defaults), `allow` (allow comments), `syntax` (names and lines), [`report`]
//! (findings and the report).
//!
//! What is linted: the up side of every migration (`.up.sql` and simple `.sql` files), in
//! version order, then the down files newest first, as a rollback runs them, with levels of
//! their own (`rules::down_default`, the severity file's `[down]` table): a rollback runs in an
//! emergency, under load, so the lock and rewrite rules keep their level, while dropping or
//! renaming back what the up file made — a down file's purpose — is off.
//!
//! "Live" table: a table that exists before the migration file runs, i.e. any table the file
//! did not create itself (a table created by an earlier migration is in production and serving
//! traffic). A table created by the same file is empty and unseen by the running release, so
//! the rules about locks and the previous release skip it. Names are compared by their last
//! part (`public.t` and `t` are one table), case-folded unless quoted. Because the set is read
//! in order, the lint also knows each column's type from the earlier files, which is what tells
//! a binary-coercible `ALTER COLUMN … TYPE` (no rewrite) from one that rewrites the table.

use std::collections::{BTreeMap, BTreeSet};

use squawk_linter::{Linter, Violation};
use squawk_syntax::ast::{self, AstNode};
use squawk_syntax::{Parse, SourceFile};

use migrate_source::manifest::{Migration, NO_TRANSACTION_MARKER, header_settings};

mod allow;
mod alter;
pub mod config;
mod file;
pub mod report;
pub mod rules;
mod squawk;
mod statement;
mod syntax;
mod types;

pub use config::{CONFIG_FILE, Options, Severities};
pub use report::{Finding, Report};
pub use rules::*;

use file::{FileLint, Hit, SetState, is_zero_setting};
use syntax::{Lines, stmt_line};

/// One file to lint: an up or simple migration, in version order.
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    pub file: &'a str,
    pub sql: &'a str,
}

/// The files the lint reads from a validated set: each migration's up (or simple) side in
/// version order, then the down files newest first, as a rollback runs them.
pub fn sources<'a>(specs: impl IntoIterator<Item = &'a Migration>) -> Vec<Source<'a>> {
    let specs: Vec<&Migration> = specs.into_iter().collect();
    let ups = specs.iter().map(|s| Source {
        file: &s.up.file,
        sql: &s.up.sql,
    });
    let downs = specs.iter().rev().filter_map(|s| {
        s.down.as_ref().map(|d| Source {
            file: &d.file,
            sql: &d.sql,
        })
    });
    ups.chain(downs).collect()
}

/// Lints a set's files in the order given ([`sources`]): up and simple files with
/// `severities`, down files (`.down.sql`) with its levels for down files, each with what the
/// files before it left (a down file after every up file, as in a rollback).
pub fn lint_set(sources: &[Source<'_>], severities: &Severities, options: Options) -> Report {
    let mut state = SetState::default();
    let mut report = Report::default();
    let down = severities.for_down();
    for source in sources {
        let severities = if source.file.ends_with(".down.sql") {
            &down
        } else {
            severities
        };
        report.files += 1;
        let (findings, statements) = lint_file(source, severities, options, &mut state);
        report.findings.extend(findings);
        report.statements += statements;
    }
    report
}

/// Lints one file with what the set's earlier files left in `state`: its findings (severities
/// and allow comments applied) and its number of statements.
fn lint_file(
    source: &Source<'_>,
    severities: &Severities,
    options: Options,
    state: &mut SetState,
) -> (Vec<Finding>, usize) {
    let parse = SourceFile::parse(source.sql);
    let root = parse.syntax_node();
    let lines = Lines::new(source.sql);

    let mut hits = Vec::new();
    let allows = allow::read_allows(&root, &lines, &mut hits);
    hits.extend(parse_errors(&parse, &lines));
    let transactional = !source.sql.starts_with(NO_TRANSACTION_MARKER);
    let stmts: Vec<ast::Stmt> = parse.tree().stmts().collect();
    let by_stmt = squawk_violations(&parse, source.sql, severities, transactional, &stmts);

    let header_off = header_settings(source.sql)
        .unwrap_or_default()
        .into_iter()
        .find(|(k, _)| k == "lock_timeout")
        .map(|(_, v)| is_zero_setting(&v));
    let mut lint = FileLint::new(hits, &stmts, transactional, header_off, options, state);
    for (i, (stmt, violations)) in stmts.iter().zip(by_stmt).enumerate() {
        let line = stmt_line(stmt, &lines);
        lint.concurrently(line, stmt);
        for v in &violations {
            lint.squawk(i, stmt, &root, &lines, v);
        }
        lint.statement(i, line, stmt);
    }
    let findings = findings(source.file, lint.hits, severities, &allows);
    (findings, stmts.len())
}

/// One `parse-error` hit per line the parser could not read.
fn parse_errors(parse: &Parse<SourceFile>, lines: &Lines) -> Vec<Hit> {
    let mut error_lines = BTreeSet::new();
    let mut hits = Vec::new();
    for e in parse.errors() {
        let line = lines.line(e.range().start());
        if error_lines.insert(line) {
            hits.push(Hit {
                line,
                rule: PARSE_ERROR,
                message: format!("{}; the statement was not fully read", e.message()),
                uncertain: false,
            });
        }
    }
    hits
}

/// squawk's findings for the rules not turned off, grouped by the statement they are in.
fn squawk_violations(
    parse: &Parse<SourceFile>,
    sql: &str,
    severities: &Severities,
    transactional: bool,
    stmts: &[ast::Stmt],
) -> Vec<Vec<Violation>> {
    let mut linter = Linter::from(
        SQUAWK_RULES
            .iter()
            .filter(|(_, id)| severities.level(id) != Level::Off)
            .map(|(rule, _)| *rule),
    );
    // squawk's default PostgreSQL version (15): the rules used here read alike from 12 on.
    linter.settings.assume_in_transaction = transactional;
    let mut by_stmt: Vec<Vec<Violation>> = vec![Vec::new(); stmts.len()];
    for v in linter.lint(parse, sql) {
        let at = v.text_range.start();
        // Half-open ranges first: a statement that starts right where the previous one ends
        // owns that offset.
        if let Some(i) = stmts
            .iter()
            .position(|s| s.syntax().text_range().contains(at))
            .or_else(|| {
                stmts
                    .iter()
                    .rposition(|s| s.syntax().text_range().contains_inclusive(at))
            })
        {
            by_stmt[i].push(v);
        }
    }
    by_stmt
}

/// Hits become findings: duplicates dropped, severities applied (an uncertain hit at most
/// warns), allow comments attached, in line order.
fn findings(
    file: &str,
    hits: Vec<Hit>,
    severities: &Severities,
    allows: &BTreeMap<&'static str, String>,
) -> Vec<Finding> {
    let mut seen = BTreeSet::new();
    let mut out: Vec<Finding> = hits
        .into_iter()
        .filter(|h| seen.insert((h.line, h.rule, h.message.clone())))
        .filter_map(|h| {
            let mut level = severities.level(h.rule);
            if h.uncertain {
                level = level.min(Level::Warn);
            }
            (level != Level::Off).then(|| Finding {
                file: file.to_string(),
                line: h.line,
                rule: h.rule,
                level,
                message: h.message,
                allowed: allows.get(h.rule).cloned(),
            })
        })
        .collect();
    out.sort_by_key(|f| f.line);
    out
}

#[cfg(test)]
mod tests;
