//! ALTER TABLE, action by action: the project's checks squawk does not make (a CHECK or serial
//! on a new column of a live table), and the column types, renames and NOT NULL checks that
//! later statements and files rely on.

use squawk_syntax::ast::{self, AstNode};

use super::file::FileLint;
use super::rules::{NOT_VALID, VOLATILE_DEFAULT};
use super::syntax::{key_of, not_null_check_column, snippet, table_of_alter};
use super::types::SqlType;

impl FileLint<'_> {
    pub(super) fn alter_table(&mut self, line: usize, at: &ast::AlterTable) {
        let Some(table) = table_of_alter(at) else {
            return;
        };
        let live = self.is_live(&table);
        for action in at.actions() {
            match action {
                ast::AlterTableAction::AddColumn(add) => self.add_column(line, &table, live, &add),
                ast::AlterTableAction::AlterColumn(alter) => {
                    if let (Some(col), Some(ast::AlterColumnOption::SetType(set))) =
                        (key_of(alter.column_name_ref()), alter.option())
                        && let Some(ty) = set.ty()
                    {
                        let ty = SqlType::parse(&ty.syntax().text().to_string());
                        self.state.columns.insert((table.clone(), col), ty);
                    }
                }
                ast::AlterTableAction::DropColumn(drop) => {
                    if let Some(col) = key_of(drop.column_name_ref()) {
                        self.state.columns.remove(&(table.clone(), col));
                    }
                }
                ast::AlterTableAction::RenameColumn(rename) => {
                    if let (Some(old), Some(new)) = (
                        key_of(rename.column_name_ref()),
                        key_of(rename.column_name()),
                    ) && let Some(ty) = self.state.columns.remove(&(table.clone(), old))
                    {
                        self.state.columns.insert((table.clone(), new), ty);
                    }
                }
                ast::AlterTableAction::TableRenameTo(rename) => {
                    if let Some(new) = key_of(rename.table_name().and_then(|t| t.path())) {
                        self.rename_table(&table, new, live);
                    }
                }
                ast::AlterTableAction::AddConstraint(add) => self.add_constraint(&table, &add),
                ast::AlterTableAction::ValidateConstraint(validate) => {
                    if let Some(name) =
                        key_of(validate.constraint_name_ref().and_then(|c| c.path_ref()))
                        && let Some(col) = self.state.not_valid_not_null.remove(&name)
                    {
                        self.state.validated_not_null.insert(col);
                    }
                }
                _ => {}
            }
        }
        if live {
            self.takes_lock(line, "ALTER TABLE");
        }
    }

    fn add_column(&mut self, line: usize, table: &str, live: bool, add: &ast::AddColumn) {
        let (Some(col), Some(ty)) = (key_of(add.column_name()), add.ty()) else {
            return;
        };
        let ty = SqlType::parse(&ty.syntax().text().to_string());
        // squawk checks CHECK constraints only in ADD CONSTRAINT; one on a new column is
        // validated by a scan too (checked on PostgreSQL 15).
        if live
            && add
                .constraints()
                .any(|c| matches!(c, ast::Constraint::CheckConstraint(_)))
        {
            self.hit(
                line,
                NOT_VALID,
                format!(
                    "{} on live table {table}: its CHECK is validated by scanning every row under the ADD COLUMN's ACCESS EXCLUSIVE lock",
                    snippet(add.syntax())
                ),
            );
        }
        if live && ty.is_serial() {
            self.hit(
                line,
                VOLATILE_DEFAULT,
                format!(
                    "{} on live table {table}: type {ty} is a nextval() default for every row",
                    snippet(add.syntax())
                ),
            );
        }
        self.state.columns.insert((table.to_string(), col), ty);
    }

    /// The columns' types follow the table to its new name; a table this file created keeps
    /// its exemption under it.
    fn rename_table(&mut self, table: &str, new: String, live: bool) {
        let moved: Vec<_> = self
            .state
            .columns
            .iter()
            .filter(|((t, _), _)| t == table)
            .map(|((_, c), ty)| (c.clone(), ty.clone()))
            .collect();
        self.state.columns.retain(|(t, _), _| t != table);
        for (c, ty) in moved {
            self.state.columns.insert((new.clone(), c), ty);
        }
        if !live {
            self.created.insert(new);
        }
    }

    /// `CHECK (col IS NOT NULL)`: validated now, or NOT VALID under a name a later
    /// VALIDATE CONSTRAINT completes.
    fn add_constraint(&mut self, table: &str, add: &ast::AddConstraint) {
        let Some(ast::Constraint::CheckConstraint(check)) = add.constraint() else {
            return;
        };
        let Some(col) = check.expr().as_ref().and_then(not_null_check_column) else {
            return;
        };
        let key = (table.to_string(), col);
        let not_valid = add.constraint().is_some_and(|c| c.is_not_valid());
        let name = key_of(
            check
                .constraint_name_clause()
                .and_then(|c| c.constraint_name()),
        );
        match (not_valid, name) {
            (false, _) => {
                self.state.validated_not_null.insert(key);
            }
            (true, Some(n)) => {
                self.state.not_valid_not_null.insert(n, key);
            }
            (true, None) => {}
        }
    }
}
