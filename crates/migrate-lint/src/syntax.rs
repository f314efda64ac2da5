//! Reading squawk's syntax tree the way the rules need it: names as keys, lines, snippets.

use squawk_syntax::SyntaxNode;
use squawk_syntax::ast::{self, AstNode};

/// Byte offset → 1-based line.
pub(super) struct Lines(Vec<usize>);

impl Lines {
    pub(super) fn new(text: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Self(starts)
    }

    pub(super) fn line(&self, offset: impl Into<u32>) -> usize {
        let offset = offset.into() as usize;
        self.0.partition_point(|&start| start <= offset)
    }
}

/// The line of a statement's first token (not of the comments before it).
pub(super) fn stmt_line(stmt: &ast::Stmt, lines: &Lines) -> usize {
    first_line(stmt.syntax(), lines)
}

/// The line of a node's first token that is not whitespace or a comment.
pub(super) fn first_line(node: &SyntaxNode, lines: &Lines) -> usize {
    let start = node
        .descendants_with_tokens()
        .filter_map(|e| e.into_token())
        .find(|t| !t.kind().is_trivia())
        .map_or(node.text_range().start(), |t| t.text_range().start());
    lines.line(start)
}

/// A name's last part, case-folded unless quoted (`public."Users"` → `Users`).
pub(super) fn name_key(node: &SyntaxNode) -> String {
    let text = node.text().to_string();
    let last = text.rsplit('.').next().unwrap_or("").trim();
    match last.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
        Some(quoted) => quoted.replace("\"\"", "\""),
        None => last.to_lowercase(),
    }
}

pub(super) fn key_of<N: AstNode>(node: Option<N>) -> Option<String> {
    node.map(|n| name_key(n.syntax()))
}

/// One line of SQL for a message: whitespace collapsed, long text cut.
pub(super) fn snippet(node: &SyntaxNode) -> String {
    let text = node.text().to_string();
    let words: Vec<&str> = text.split_whitespace().collect();
    let mut s = words.join(" ");
    if s.chars().count() > 90 {
        s = s.chars().take(87).collect::<String>() + "…";
    }
    s.trim_end_matches(';').to_string()
}

/// The table a `TableNameRef` names.
pub(super) fn table_key(table: Option<ast::TableNameRef>) -> Option<String> {
    key_of(table.and_then(|t| t.path_ref()))
}

/// The table of a `TableRelationName` (`[ONLY] name [*]`).
pub(super) fn relation_table(relation: Option<ast::TableRelationName>) -> Option<String> {
    table_key(relation.and_then(|r| r.table_name_ref()))
}

/// The relation a `RelationNameRef` names (LOCK, UPDATE, DELETE, CREATE TRIGGER … ON).
pub(super) fn relation_key(relation: Option<ast::RelationNameRef>) -> Option<String> {
    key_of(relation.and_then(|r| r.path_ref()))
}

pub(super) fn table_of_alter(at: &ast::AlterTable) -> Option<String> {
    relation_table(at.table_relation_name())
}

pub(super) fn created_view_or_function(stmt: &ast::Stmt) -> Option<String> {
    match stmt {
        ast::Stmt::CreateView(v) => key_of(v.view().and_then(|v| v.path())),
        ast::Stmt::CreateMaterializedView(v) => key_of(v.view().and_then(|v| v.path())),
        ast::Stmt::CreateFunction(f) => key_of(f.name().and_then(|n| n.path())),
        _ => None,
    }
}

/// `col IS NOT NULL` (parentheses allowed): the column.
pub(super) fn not_null_check_column(expr: &ast::Expr) -> Option<String> {
    match expr {
        ast::Expr::ParenExpr(p) => p.expr().as_ref().and_then(not_null_check_column),
        ast::Expr::BinExpr(b) if matches!(b.op(), Some(ast::BinOp::IsNot(_))) => {
            let is_null = matches!(b.rhs(), Some(ast::Expr::Literal(l)) if l.syntax().text() == "null" || l.syntax().text().to_string().eq_ignore_ascii_case("null"));
            match b.lhs() {
                Some(ast::Expr::NameRef(n)) if is_null => Some(n.text()),
                _ => None,
            }
        }
        ast::Expr::PostfixExpr(p)
            if p.syntax()
                .text()
                .to_string()
                .to_lowercase()
                .split_whitespace()
                .collect::<Vec<_>>()
                .ends_with(&["is", "not", "null"]) =>
        {
            match p.expr() {
                Some(ast::Expr::NameRef(n)) => Some(n.text()),
                _ => None,
            }
        }
        _ => None,
    }
}

/// A WHERE whose every AND-ed term only tests NULL-ness or a boolean column: the classic
/// backfill `UPDATE t SET c = … WHERE c IS NULL`, which touches every row.
pub(super) fn null_only(e: &ast::Expr) -> bool {
    match e {
        ast::Expr::ParenExpr(p) => p.expr().as_ref().is_some_and(null_only),
        ast::Expr::BinExpr(b) => match b.op() {
            Some(ast::BinOp::And(_)) => {
                b.lhs().as_ref().is_some_and(null_only) && b.rhs().as_ref().is_some_and(null_only)
            }
            Some(ast::BinOp::Is(_) | ast::BinOp::IsNot(_)) => {
                matches!(b.rhs(), Some(ast::Expr::Literal(_)))
                    && b.lhs().as_ref().is_some_and(null_only)
            }
            _ => false,
        },
        ast::Expr::PostfixExpr(p) => p.expr().as_ref().is_some_and(null_only),
        ast::Expr::PrefixExpr(p) => p.expr().as_ref().is_some_and(null_only),
        ast::Expr::NameRef(_) | ast::Expr::FieldExpr(_) | ast::Expr::Literal(_) => true,
        _ => false,
    }
}
