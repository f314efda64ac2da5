//! squawk's findings, mapped onto this project's rules and judged with what the set knows: a
//! table the file created is not live, a binary-coercible type change rewrites nothing, a
//! validated NOT NULL check makes SET NOT NULL cheap, a non-volatile default is evaluated once.

use squawk_linter::Violation;
use squawk_syntax::ast::{self, AstNode};
use squawk_syntax::{SyntaxKind, SyntaxNode};

use super::file::FileLint;
use super::rules::{
    BAN_CHAR_FIELD, COLUMN_TYPE, DROP_FUNCTION, DROP_VIEW, IDENTIFIER_TOO_LONG, NOT_VALID,
    PREFER_BIGINT, PREFER_IDENTITY, PREFER_TEXT_FIELD, PREFER_TIMESTAMPTZ, SET_NOT_NULL,
    SQUAWK_RULES, TRANSACTION_NESTING, UNIQUE, VOLATILE_DEFAULT,
};
use super::syntax::{Lines, first_line, key_of, snippet};
use super::types::{SqlType, default_rewrite};
use crate::file::Hit;

/// Where a finding is, and the live tables it is on.
struct At<'a> {
    node: &'a SyntaxNode,
    /// The statement's clause the finding is about (e.g. one action of an ALTER TABLE).
    clause: &'a SyntaxNode,
    /// The clause as one line of SQL.
    what: &'a str,
    line: usize,
    /// The first live table, and "on live table t, u".
    table: &'a str,
    on: &'a str,
}

impl FileLint<'_> {
    /// A squawk finding, mapped to this project's rule and judged with what the set knows.
    /// Reported at the line of the clause it is about (one action of an ALTER TABLE, one
    /// column of a CREATE TABLE), so that a long statement points at the right line.
    pub(super) fn squawk(
        &mut self,
        index: usize,
        stmt: &ast::Stmt,
        root: &SyntaxNode,
        lines: &Lines,
        v: &Violation,
    ) {
        let Some(&(_, rule)) = SQUAWK_RULES.iter().find(|(r, _)| *r == v.code) else {
            return;
        };
        let covering = root.covering_element(v.text_range);
        let Some(node) = covering
            .as_node()
            .cloned()
            .or_else(|| covering.as_token().and_then(|t| t.parent()))
        else {
            return;
        };
        let clause = node
            .ancestors()
            .find(|n| n.parent().as_ref() == Some(stmt.syntax()))
            .unwrap_or_else(|| stmt.syntax().clone());
        let line = first_line(&clause, lines);

        match rule {
            // Not about a table's traffic: reported wherever they are.
            TRANSACTION_NESTING | IDENTIFIER_TOO_LONG | BAN_CHAR_FIELD | PREFER_TIMESTAMPTZ
            | PREFER_TEXT_FIELD | PREFER_BIGINT | PREFER_IDENTITY => {
                // The column a type rule is about, rather than the bare type.
                let node = node
                    .ancestors()
                    .find(|n| {
                        matches!(
                            n.kind(),
                            SyntaxKind::COLUMN | SyntaxKind::ADD_COLUMN | SyntaxKind::ALTER_COLUMN
                        )
                    })
                    .unwrap_or(node);
                self.hit(first_line(&node, lines), rule, snippet(&node));
            }
            DROP_VIEW | DROP_FUNCTION => {
                self.drop_object(index, stmt, line, rule);
            }
            _ => {
                let live = self.live_tables(stmt);
                let Some(table) = live.first() else {
                    return;
                };
                let at = At {
                    node: &node,
                    clause: &clause,
                    what: &snippet(&clause),
                    line,
                    table,
                    on: &format!("on live table {}", live.join(", ")),
                };
                self.on_live_table(rule, &at);
            }
        }
    }

    fn drop_object(&mut self, index: usize, stmt: &ast::Stmt, line: usize, rule: &'static str) {
        let live = self.live_objects(index, stmt);
        if live.is_empty() {
            return;
        }
        let kind = if rule == DROP_VIEW {
            "view"
        } else {
            "function"
        };
        self.hit(
            line,
            rule,
            format!(
                "{} drops {kind} {} created before this migration",
                snippet(stmt.syntax()),
                live.join(", ")
            ),
        );
    }

    fn on_live_table(&mut self, rule: &'static str, at: &At<'_>) {
        match rule {
            VOLATILE_DEFAULT => self.volatile_default(at),
            COLUMN_TYPE => self.column_type(at),
            SET_NOT_NULL => self.set_not_null(at),
            NOT_VALID => self.not_valid(at),
            _ => self.hit(at.line, rule, format!("{} {}", at.what, at.on)),
        }
    }

    fn volatile_default(&mut self, at: &At<'_>) {
        let Some(add) = at.node.ancestors().find_map(ast::AddColumn::cast) else {
            return;
        };
        if let Some((why, certain)) = default_rewrite(&add) {
            self.hits.push(Hit {
                line: at.line,
                rule: VOLATILE_DEFAULT,
                message: format!("{} {}: {why}", at.what, at.on),
                uncertain: !certain,
            });
        }
    }

    fn column_type(&mut self, at: &At<'_>) {
        let Some(alter) = at.node.ancestors().find_map(ast::AlterColumn::cast) else {
            // ALTER TYPE … ALTER ATTRIBUTE of a composite type.
            return self.hit(at.line, COLUMN_TYPE, at.what.to_string());
        };
        let column = key_of(alter.column_name_ref()).unwrap_or_default();
        let Some(ast::AlterColumnOption::SetType(set)) = alter.option() else {
            return;
        };
        let to = set
            .ty()
            .map(|t| SqlType::parse(&t.syntax().text().to_string()));
        let from = self
            .state
            .columns
            .get(&(at.table.to_string(), column.clone()));
        let (what, on) = (at.what, at.on);
        let message = match (from, &to) {
            (Some(from), Some(to))
                // USING computes every row; COLLATE rebuilds the indexes.
                if set.using_expr().is_none()
                    && set.collate().is_none()
                    && from.binary_coercible_to(to) =>
            {
                return;
            }
            (Some(from), Some(to)) => format!(
                "{what} {on}: {from} → {to} is not binary-coercible, so PostgreSQL rewrites the table and its indexes"
            ),
            _ => format!(
                "{what} {on}: the lint does not know {column}'s type before the change (not declared by an earlier migration of this set), so it assumes a rewrite"
            ),
        };
        self.hit(at.line, COLUMN_TYPE, message);
    }

    fn set_not_null(&mut self, at: &At<'_>) {
        let column = at
            .node
            .ancestors()
            .find_map(ast::AlterColumn::cast)
            .and_then(|a| key_of(a.column_name_ref()))
            .unwrap_or_default();
        if !self
            .state
            .validated_not_null
            .contains(&(at.table.to_string(), column.clone()))
        {
            self.hit(
                at.line,
                SET_NOT_NULL,
                format!(
                    "{} {} without a validated CHECK ({column} IS NOT NULL)",
                    at.what, at.on
                ),
            );
        }
    }

    fn not_valid(&mut self, at: &At<'_>) {
        let node = at.node;
        let index_backed = node.ancestors().chain(node.descendants()).any(|n| {
            matches!(
                n.kind(),
                SyntaxKind::UNIQUE_CONSTRAINT
                    | SyntaxKind::PRIMARY_KEY_CONSTRAINT
                    | SyntaxKind::EXCLUDE_CONSTRAINT
            )
        });
        // A foreign key on a column this statement adds without any DEFAULT clause: every
        // row is NULL and PostgreSQL skips the validation scan (checked on PostgreSQL 15: no
        // seq scan; `DEFAULT NULL` does scan).
        let references = node.ancestors().chain(node.descendants()).any(|n| {
            matches!(
                n.kind(),
                SyntaxKind::REFERENCES_CONSTRAINT | SyntaxKind::FOREIGN_KEY_CONSTRAINT
            )
        });
        let new_null_column = node
            .ancestors()
            .find_map(ast::AddColumn::cast)
            .is_some_and(|add| {
                !add.constraints()
                    .any(|c| matches!(c, ast::Constraint::DefaultConstraint(_)))
            });
        if references && new_null_column {
            return;
        }
        if !index_backed {
            self.hit(
                at.line,
                NOT_VALID,
                format!("{} {} without NOT VALID", at.what, at.on),
            );
        } else if at
            .clause
            .descendants()
            .any(|n| n.kind() == SyntaxKind::EXCLUDE_CONSTRAINT)
        {
            // squawk has no rule of its own for EXCLUDE: it builds an index too.
            self.hit(at.line, UNIQUE, format!("{} {}", at.what, at.on));
        }
    }
}
