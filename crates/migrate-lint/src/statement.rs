//! This project's own rules, statement by statement (TRUNCATE, LOCK TABLE, VACUUM FULL,
//! CLUSTER, CREATE TRIGGER, unbounded UPDATE/DELETE, lock waits without a lock_timeout), and
//! what each statement tells later statements and files (tables, columns, indexes created).

use squawk_syntax::ast::{self, AstNode};

use super::file::FileLint;
use super::rules::{CLUSTER, CREATE_TRIGGER, LOCK_TABLE, TRUNCATE, UNBOUNDED_DML, VACUUM_FULL};
use super::syntax::{
    created_view_or_function, key_of, not_null_check_column, null_only, relation_key,
    relation_table, snippet, table_key,
};
use super::types::SqlType;

impl FileLint<'_> {
    /// This project's own rules, and what the statement tells later statements and files.
    pub(super) fn statement(&mut self, index: usize, line: usize, stmt: &ast::Stmt) {
        match stmt {
            ast::Stmt::CreateTable(ct) => self.create_table(line, ct),
            ast::Stmt::CreateTableAs(c) => {
                if let Some(t) = key_of(c.table_name().and_then(|t| t.path())) {
                    self.created.insert(t);
                }
            }
            ast::Stmt::CreateView(_) | ast::Stmt::CreateMaterializedView(_) => {
                if let Some(v) = created_view_or_function(stmt) {
                    self.created.insert(v);
                }
            }
            ast::Stmt::CreateFunction(_) => {
                if let Some(f) = created_view_or_function(stmt) {
                    self.created_functions.insert(f);
                }
            }
            ast::Stmt::CreateIndex(ci) => self.create_index(line, ci),
            ast::Stmt::AlterTable(at) => self.alter_table(line, at),
            ast::Stmt::DropTable(dt) => self.drop_table(line, stmt, dt),
            ast::Stmt::DropIndex(_) | ast::Stmt::Reindex(_)
                if !self.live_tables(stmt).is_empty() =>
            {
                self.takes_lock(line, "DROP INDEX / REINDEX");
            }
            ast::Stmt::Truncate(_) => self.truncate(line, stmt),
            ast::Stmt::Lock(lock) => self.lock(line, lock),
            ast::Stmt::Vacuum(vacuum) if vacuum.is_full() => self.vacuum_full(line, vacuum),
            ast::Stmt::Cluster(cluster) => self.cluster(line, cluster),
            ast::Stmt::CreateTrigger(trigger) => self.create_trigger(line, trigger),
            ast::Stmt::DropView(_)
            | ast::Stmt::DropMaterializedView(_)
            | ast::Stmt::DropFunction(_)
                if !self.live_objects(index, stmt).is_empty() =>
            {
                self.takes_lock(line, "DROP VIEW / FUNCTION");
            }
            ast::Stmt::Update(u) if u.from_clause().is_none() => {
                let table = relation_key(u.relation_name().and_then(|r| r.relation_name_ref()));
                self.dml(line, "UPDATE", table, u.where_clause_or_current_of());
            }
            ast::Stmt::Delete(d) if d.using_clause().is_none() => {
                let table = relation_key(d.relation_name().and_then(|r| r.relation_name_ref()));
                self.dml(line, "DELETE FROM", table, d.where_clause_or_current_of());
            }
            ast::Stmt::Set(_) | ast::Stmt::Reset(_) => self.lock_timeout_setting(stmt),
            _ => {}
        }
    }

    /// The table's columns and validated NOT NULL checks; a foreign key to a live table locks
    /// that table.
    fn create_table(&mut self, line: usize, ct: &ast::CreateTable) {
        let Some(table) = key_of(ct.table_name().and_then(|t| t.path())) else {
            return;
        };
        self.created.insert(table.clone());
        self.state.columns.retain(|(t, _), _| *t != table);
        let mut references_live = false;
        for arg in ct.table_arg_list().into_iter().flat_map(|l| l.args()) {
            if let ast::TableArg::Column(col) = &arg
                && let (Some(name), Some(ty)) = (key_of(col.name()), col.ty())
            {
                let ty = SqlType::parse(&ty.syntax().text().to_string());
                self.state.columns.insert((table.clone(), name), ty);
            }
            if let ast::TableArg::TableConstraint(ast::TableConstraint::CheckConstraint(check)) =
                &arg
                && let Some(col) = check.expr().as_ref().and_then(not_null_check_column)
            {
                self.state.validated_not_null.insert((table.clone(), col));
            }
            for n in arg.syntax().descendants() {
                let target = ast::ForeignKeyConstraint::cast(n.clone())
                    .and_then(|fk| key_of(fk.table_name_ref()))
                    .or_else(|| ast::ReferencesConstraint::cast(n).and_then(|r| key_of(r.table())));
                if target.is_some_and(|t| t != table && self.is_live(&t)) {
                    references_live = true;
                }
            }
        }
        if references_live {
            self.takes_lock(line, "CREATE TABLE with a foreign key to a live table");
        }
    }

    fn create_index(&mut self, line: usize, ci: &ast::CreateIndex) {
        let table = relation_table(ci.table_relation_name());
        if let (Some(index), Some(table)) =
            (key_of(ci.index().and_then(|i| i.path())), table.clone())
        {
            self.state.indexes.insert(index.clone(), table);
            self.created_indexes.insert(index);
        }
        if table.is_some_and(|t| self.is_live(&t)) {
            self.takes_lock(line, "CREATE INDEX");
        }
    }

    fn drop_table(&mut self, line: usize, stmt: &ast::Stmt, dt: &ast::DropTable) {
        let live = self.live_tables(stmt);
        for t in dt.table_name_refs().filter_map(|t| table_key(Some(t))) {
            self.state.columns.retain(|(table, _), _| *table != t);
        }
        if !live.is_empty() {
            self.takes_lock(line, "DROP TABLE");
        }
    }

    fn truncate(&mut self, line: usize, stmt: &ast::Stmt) {
        let what = snippet(stmt.syntax());
        let live = self.live_tables(stmt);
        self.per_live_table(line, TRUNCATE, "TRUNCATE", &live, |table| {
            format!("{what} on live table {table}")
        });
    }

    fn lock(&mut self, line: usize, lock: &ast::Lock) {
        let tables: Vec<String> = lock
            .relation_list()
            .into_iter()
            .flat_map(|l| l.relation_names())
            .filter_map(|r| relation_key(r.relation_name_ref()))
            .filter(|t| self.is_live(t))
            .collect();
        self.per_live_table(line, LOCK_TABLE, "LOCK TABLE", &tables, |table| {
            format!("LOCK TABLE {table}")
        });
    }

    /// One finding per live table, then the statement's lock wait.
    fn per_live_table(
        &mut self,
        line: usize,
        rule: &'static str,
        what: &str,
        live: &[String],
        message: impl Fn(&str) -> String,
    ) {
        if live.is_empty() {
            return;
        }
        for table in live {
            self.hit(line, rule, message(table));
        }
        self.takes_lock(line, what);
    }

    fn vacuum_full(&mut self, line: usize, vacuum: &ast::Vacuum) {
        let tables: Vec<String> = vacuum
            .table_and_columns_list()
            .into_iter()
            .flat_map(|l| l.table_and_columnss())
            .filter_map(|t| relation_table(t.table_relation_name()))
            .collect();
        self.rewrite_all(
            line,
            VACUUM_FULL,
            "VACUUM FULL",
            &tables,
            "every table of the database",
        );
    }

    fn cluster(&mut self, line: usize, cluster: &ast::Cluster) {
        let table = table_key(cluster.table_name_ref()).or_else(|| {
            table_key(
                cluster
                    .cluster_legacy()
                    .and_then(|l| l.on_path())
                    .and_then(|p| p.table_name_ref()),
            )
        });
        self.rewrite_all(
            line,
            CLUSTER,
            "CLUSTER",
            &table.into_iter().collect::<Vec<_>>(),
            "every clustered table",
        );
    }

    fn create_trigger(&mut self, line: usize, trigger: &ast::CreateTrigger) {
        let Some(table) = relation_key(trigger.on_relation().and_then(|r| r.relation_name_ref()))
        else {
            return;
        };
        if self.is_live(&table) {
            let name = key_of(trigger.trigger()).unwrap_or_default();
            self.hit(
                line,
                CREATE_TRIGGER,
                format!("CREATE TRIGGER {name} on live table {table}"),
            );
            self.takes_lock(line, "CREATE TRIGGER");
        }
    }

    /// VACUUM FULL and CLUSTER: a rewrite of the named tables (or of all of them).
    fn rewrite_all(
        &mut self,
        line: usize,
        rule: &'static str,
        what: &str,
        tables: &[String],
        all: &str,
    ) {
        let live: Vec<&String> = tables.iter().filter(|t| self.is_live(t)).collect();
        if !tables.is_empty() && live.is_empty() {
            return;
        }
        let target = if tables.is_empty() {
            all.to_string()
        } else {
            format!(
                "live table {}",
                live.iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        self.hit(line, rule, format!("{what} on {target}"));
        self.takes_lock(line, what);
    }

    /// An UPDATE or DELETE (without FROM / USING) of a live table: unbounded when it has no
    /// WHERE, or one that only tests NULL-ness.
    fn dml(
        &mut self,
        line: usize,
        verb: &str,
        table: Option<String>,
        bound: Option<ast::WhereClauseOrCurrentOf>,
    ) {
        let Some(table) = table.filter(|t| self.is_live(t)) else {
            return;
        };
        let message = match bound {
            None => format!("{verb} {table} without WHERE (every row of a live table)"),
            Some(ast::WhereClauseOrCurrentOf::WhereClause(w)) => match w.expr() {
                Some(e) if null_only(&e) => format!(
                    "{verb} {table} WHERE {} (only tests NULL-ness: every row of a live table)",
                    snippet(e.syntax())
                ),
                _ => return,
            },
            Some(_) => return,
        };
        self.hit(line, UNBOUNDED_DML, message);
    }
}
