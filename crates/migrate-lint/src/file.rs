//! The lint of one file: what the file has created so far (exempt from the live-traffic
//! rules), the live tables and objects a statement touches, and whether a lock wait is bounded
//! by a `lock_timeout` at that point of the file; what the set's earlier files left
//! ([`SetState`]) and the raw findings ([`Hit`]) before severities and allows.

use std::collections::{BTreeMap, BTreeSet};

use squawk_syntax::SyntaxKind;
use squawk_syntax::ast::{self, AstNode};

use super::rules::{CONCURRENTLY_IN_TX, LOCK_TIMEOUT};
use super::syntax::{created_view_or_function, key_of, relation_table, table_key, table_of_alter};
use crate::config::Options;
use crate::types::SqlType;
use migrate_source::duration::{Bare, Span};

pub(super) struct FileLint<'s> {
    pub(super) hits: Vec<Hit>,
    /// Tables, views and materialized views created by this file (exempt from the live-traffic
    /// rules).
    pub(super) created: BTreeSet<String>,
    /// Functions created by this file.
    pub(super) created_functions: BTreeSet<String>,
    /// Indexes created by this file.
    pub(super) created_indexes: BTreeSet<String>,
    /// Views and functions created by a later statement of this file, with its index: dropping
    /// one and re-creating it in the same transaction is a replacement, not a removal.
    recreated: Vec<(usize, String)>,
    transactional: bool,
    statements: usize,
    lock_timeout_off: bool,
    engine_lock_timeout_off: bool,
    lock_timeout_reported: bool,
    pub(super) state: &'s mut SetState,
}

/// Whether a `lock_timeout` value (a header's, or a `SET`'s, quotes and all) is zero: the
/// guard off. A value that does not read as a duration is not taken as zero.
pub(super) fn is_zero_setting(value: &str) -> bool {
    let value = value.trim().trim_matches(|c| c == '\'' || c == '"');
    Span::parse(value, Bare::Millis).is_ok_and(Span::is_zero)
}

impl<'s> FileLint<'s> {
    /// `header_off`: the file's `-- lock_timeout:` header, when it has one, is zero.
    pub(super) fn new(
        hits: Vec<Hit>,
        stmts: &[ast::Stmt],
        transactional: bool,
        header_off: Option<bool>,
        options: Options,
        state: &'s mut SetState,
    ) -> Self {
        Self {
            hits,
            created: BTreeSet::new(),
            created_functions: BTreeSet::new(),
            created_indexes: BTreeSet::new(),
            recreated: stmts
                .iter()
                .enumerate()
                .filter_map(|(i, s)| created_view_or_function(s).map(|name| (i, name)))
                .collect(),
            transactional,
            statements: stmts.len(),
            lock_timeout_off: header_off.unwrap_or(options.engine_lock_timeout_off),
            engine_lock_timeout_off: options.engine_lock_timeout_off,
            lock_timeout_reported: false,
            state,
        }
    }

    pub(super) fn hit(&mut self, line: usize, rule: &'static str, message: String) {
        self.hits.push(Hit {
            line,
            rule,
            message,
            uncertain: false,
        });
    }

    pub(super) fn is_live(&self, table: &str) -> bool {
        !self.created.contains(table)
    }

    /// A statement that waits for a lock on a live table: reported (once per file) when no
    /// lock_timeout bounds that wait.
    pub(super) fn takes_lock(&mut self, line: usize, what: &str) {
        if self.lock_timeout_off && !self.lock_timeout_reported {
            self.lock_timeout_reported = true;
            self.hit(
                line,
                LOCK_TIMEOUT,
                format!("{what} runs with lock_timeout off"),
            );
        }
    }

    /// An index's table as the set knows it; an index the set does not know is taken as a
    /// live table of its own name.
    fn table_of_index(&self, index: String) -> String {
        self.state.indexes.get(&index).cloned().unwrap_or(index)
    }

    /// The live tables a statement works on (empty: none, or not a table statement).
    pub(super) fn live_tables(&self, stmt: &ast::Stmt) -> Vec<String> {
        let tables: Vec<String> = match stmt {
            ast::Stmt::AlterTable(at) => table_of_alter(at).into_iter().collect(),
            ast::Stmt::CreateIndex(ci) => relation_table(ci.table_relation_name())
                .into_iter()
                .collect(),
            ast::Stmt::DropTable(dt) => dt
                .table_name_refs()
                .filter_map(|t| table_key(Some(t)))
                .collect(),
            ast::Stmt::Truncate(t) => t
                .table_list()
                .map(|l| {
                    l.table_relation_names()
                        .filter_map(|r| relation_table(Some(r)))
                        .collect()
                })
                .unwrap_or_default(),
            ast::Stmt::DropIndex(di) => di
                .index_refs()
                .filter_map(|i| key_of(i.path_ref()))
                .filter(|i| !self.created_indexes.contains(i))
                .map(|i| self.table_of_index(i))
                .collect(),
            ast::Stmt::Reindex(r) => match r.reindex_target() {
                Some(ast::ReindexTarget::ReindexTargetTable(t)) => {
                    table_key(t.table_name_ref()).into_iter().collect()
                }
                Some(ast::ReindexTarget::ReindexTargetIndex(i)) => {
                    key_of(i.index_ref().and_then(|i| i.path_ref()))
                        .map(|i| self.table_of_index(i))
                        .into_iter()
                        .collect()
                }
                // A schema, the database, the system catalogs: live by definition.
                _ => vec!["(every table)".to_string()],
            },
            _ => return Vec::new(),
        };
        tables.into_iter().filter(|t| self.is_live(t)).collect()
    }

    /// Views or functions a DROP removes that the release still serving may use: created
    /// before this file, and not re-created later in this (transactional) file.
    pub(super) fn live_objects(&self, index: usize, stmt: &ast::Stmt) -> Vec<String> {
        let (names, created): (Vec<String>, &BTreeSet<String>) = match stmt {
            ast::Stmt::DropView(d) => (
                d.view_refs().filter_map(|v| key_of(v.path_ref())).collect(),
                &self.created,
            ),
            ast::Stmt::DropMaterializedView(d) => (
                d.view_refs().filter_map(|v| key_of(v.path_ref())).collect(),
                &self.created,
            ),
            ast::Stmt::DropFunction(d) => (
                d.function_sig_list()
                    .map(|l| {
                        l.function_sigs()
                            .filter_map(|s| {
                                key_of(s.function_name_ref().and_then(|n| n.path_ref()))
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
                &self.created_functions,
            ),
            _ => return Vec::new(),
        };
        names
            .into_iter()
            .filter(|n| !created.contains(n))
            .filter(|n| {
                !(self.transactional && self.recreated.iter().any(|(i, r)| *i > index && r == n))
            })
            .collect()
    }

    /// CONCURRENTLY inside a transaction: PostgreSQL refuses it. Not squawk's
    /// `ban-concurrent-index-creation-in-transaction`, which takes a one-statement file as
    /// running outside a transaction; sqlx wraps every file without `-- no-transaction` in one.
    pub(super) fn concurrently(&mut self, line: usize, stmt: &ast::Stmt) {
        let kind = match stmt {
            ast::Stmt::CreateIndex(_) => "CREATE INDEX",
            ast::Stmt::DropIndex(_) => "DROP INDEX",
            ast::Stmt::Reindex(_) => "REINDEX",
            ast::Stmt::AlterTable(_) => "DETACH PARTITION",
            _ => return,
        };
        let concurrently = stmt
            .syntax()
            .descendants_with_tokens()
            .any(|e| e.kind() == SyntaxKind::CONCURRENTLY_KW);
        if concurrently && (self.transactional || self.statements > 1) {
            let why = if self.transactional {
                "the file runs in a transaction (it does not start with `-- no-transaction`)"
            } else {
                "the file has more than one statement, which PostgreSQL runs as one implicit transaction"
            };
            self.hit(
                line,
                CONCURRENTLY_IN_TX,
                format!("{kind} … CONCURRENTLY will fail: {why}"),
            );
        }
    }

    /// `SET [SESSION|LOCAL] lock_timeout …` / `RESET lock_timeout` / `RESET ALL`.
    pub(super) fn lock_timeout_setting(&mut self, stmt: &ast::Stmt) {
        let text = stmt.syntax().text().to_string().to_lowercase();
        let words: Vec<&str> = text
            .split(|c: char| c.is_whitespace() || c == '=' || c == ';')
            .filter(|w| !w.is_empty())
            .collect();
        match words.as_slice() {
            ["set", rest @ ..] => {
                let rest = match rest {
                    ["session" | "local", rest @ ..] => rest,
                    rest => rest,
                };
                if let ["lock_timeout", rest @ ..] = rest {
                    let value = match rest {
                        ["to", v, ..] | [v, ..] => *v,
                        [] => return,
                    };
                    self.lock_timeout_off = is_zero_setting(value)
                        || (value == "default" && self.engine_lock_timeout_off);
                }
            }
            ["reset", "lock_timeout" | "all", ..] => {
                self.lock_timeout_off = self.engine_lock_timeout_off;
            }
            _ => {}
        }
    }
}

/// What earlier files of the set left that later ones can rely on.
#[derive(Debug, Default)]
pub(crate) struct SetState {
    /// (table, column) with a validated `CHECK (column IS NOT NULL)`.
    pub(crate) validated_not_null: BTreeSet<(String, String)>,
    /// Constraint name → (table, column) of a `CHECK (column IS NOT NULL) NOT VALID`.
    pub(crate) not_valid_not_null: BTreeMap<String, (String, String)>,
    /// (table, column) → the column's type as the set declared it.
    pub(crate) columns: BTreeMap<(String, String), SqlType>,
    /// Index → its table.
    pub(crate) indexes: BTreeMap<String, String>,
}

/// A raw finding before severities and allows are applied. `uncertain` caps a deny rule at
/// warn: the lint suspects but cannot know (e.g. a default calling a function it does not know).
pub(crate) struct Hit {
    pub(crate) line: usize,
    pub(crate) rule: &'static str,
    pub(crate) message: String,
    pub(crate) uncertain: bool,
}
