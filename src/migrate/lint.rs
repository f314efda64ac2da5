//! The migration safety lint: dangerous DDL is reported at build time, before it reaches
//! production.
//!
//! Like `manifest.rs`, this file is compiled twice: by `build.rs` (through `#[path]`, next to
//! `manifest`), which lints `migrations/` on every build, and by the library, which runs the same
//! rules for `server migrate lint [DIR]`. It therefore depends on `std`, `sqlparser` and
//! `super::manifest` only, never on `crate::`.
//!
//! How a file is read: sqlparser's tokenizer (PostgreSQL dialect) splits it into statements at
//! top-level `;` (so strings, `$$` bodies and comments are never cut), each statement is parsed
//! on its own, and its line is the line of its first token. A statement sqlparser cannot parse
//! is reported as `parse-error` (a warning by default) and the next one is linted; a file the
//! tokenizer cannot read (an unterminated string) is reported once and skipped.
//!
//! What is linted: the up side of every migration (`.up.sql` and simple `.sql` files), in
//! version order. Down files are not linted: they run only in a deliberate rollback and exist to
//! drop what their up file created, so the live-traffic rules would flag every one of them.
//!
//! "Live" table: a table that exists before the migration file runs, i.e. any table the file
//! did not create itself (a table created by an earlier migration is in production and serving
//! traffic). A table created by the same file is empty and unseen by the running release, so
//! the rules about locks and the previous release skip it. Names are compared by their last
//! part (`public.t` and `t` are one table), case-folded unless quoted.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use sqlparser::ast::{
    AlterColumnOperation, AlterTableOperation, BinaryOperator, ColumnOption, Expr,
    GeneratedExpressionMode, Ident, ObjectName, ObjectNamePart, ObjectType, RenameTableNameKind,
    Reset, Set, Statement, TableConstraint, TableFactor,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer, Whitespace};

use super::manifest::{NO_TRANSACTION_MARKER, Spec, header_settings};

/// The severity file's name, next to `migrations/` (never inside it).
pub const CONFIG_FILE: &str = "migration-lint.toml";

/// What a rule's finding does: fail the build (`Deny`), show as a warning (`Warn`), or nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Off,
    Warn,
    Deny,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Off => "off",
            Level::Warn => "warn",
            Level::Deny => "deny",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "off" => Some(Level::Off),
            "warn" => Some(Level::Warn),
            "deny" => Some(Level::Deny),
            _ => None,
        }
    }
}

/// One rule: its id, its default level, and the text every finding carries.
#[derive(Debug)]
pub struct RuleInfo {
    pub id: &'static str,
    pub default: Level,
    /// Why it is dangerous.
    pub why: &'static str,
    /// The safe alternative.
    pub fix: &'static str,
}

pub const CREATE_INDEX: &str = "create-index-not-concurrent";
pub const CONCURRENTLY_IN_TX: &str = "concurrently-in-transaction";
pub const VOLATILE_DEFAULT: &str = "add-column-volatile-default";
pub const COLUMN_TYPE: &str = "alter-column-type";
pub const SET_NOT_NULL: &str = "set-not-null";
pub const NOT_VALID: &str = "constraint-missing-not-valid";
pub const UNIQUE: &str = "add-unique-constraint";
pub const DROP_COLUMN: &str = "drop-column";
pub const DROP_TABLE: &str = "drop-table";
pub const RENAME: &str = "rename";
pub const TRUNCATE: &str = "truncate";
pub const VACUUM_FULL: &str = "vacuum-full";
pub const CLUSTER: &str = "cluster";
pub const LOCK_TABLE: &str = "lock-table";
pub const UNBOUNDED_DML: &str = "unbounded-dml";
pub const LOCK_TIMEOUT: &str = "lock-timeout-missing";
pub const PARSE_ERROR: &str = "parse-error";
/// Not a rule that can be configured or allowed: a malformed `-- lint:allow` comment.
pub const INVALID_ALLOW: &str = "invalid-allow";

/// Every configurable rule, in the order the docs list them.
pub const RULES: &[RuleInfo] = &[
    RuleInfo {
        id: CREATE_INDEX,
        default: Level::Deny,
        why: "CREATE INDEX without CONCURRENTLY holds a SHARE lock that blocks every write to the table for the whole build",
        fix: "use CREATE INDEX CONCURRENTLY, alone in a `-- no-transaction` migration",
    },
    RuleInfo {
        id: CONCURRENTLY_IN_TX,
        default: Level::Deny,
        why: "CONCURRENTLY cannot run inside a transaction block (a transactional migration, or a file with several statements, which PostgreSQL runs as one implicit transaction): the migration fails at deploy time",
        fix: "put the statement alone in a file starting with `-- no-transaction`",
    },
    RuleInfo {
        id: VOLATILE_DEFAULT,
        default: Level::Deny,
        why: "a volatile default (or serial, identity, stored generated column) rewrites the whole table under an ACCESS EXCLUSIVE lock",
        fix: "add the column without a default (or with a constant one), set the default in a later statement, and backfill in batches",
    },
    RuleInfo {
        id: COLUMN_TYPE,
        default: Level::Deny,
        why: "changing a column's type rewrites the table (and its indexes) under an ACCESS EXCLUSIVE lock, and the previous release may not read the new type",
        fix: "add a new column, write both from the application, backfill in batches, then switch reads and drop the old column (expand/contract)",
    },
    RuleInfo {
        id: SET_NOT_NULL,
        default: Level::Deny,
        why: "SET NOT NULL scans the whole table under an ACCESS EXCLUSIVE lock unless a validated CHECK (col IS NOT NULL) proves it",
        fix: "ADD CONSTRAINT c CHECK (col IS NOT NULL) NOT VALID, VALIDATE CONSTRAINT c in a later migration, then SET NOT NULL (and drop c)",
    },
    RuleInfo {
        id: NOT_VALID,
        default: Level::Deny,
        why: "adding a FOREIGN KEY or CHECK constraint validates every row while holding a lock that blocks writes (both tables for a foreign key)",
        fix: "add it with NOT VALID (new rows are checked at once), then VALIDATE CONSTRAINT in a later migration, which takes only a SHARE UPDATE EXCLUSIVE lock",
    },
    RuleInfo {
        id: UNIQUE,
        default: Level::Deny,
        why: "adding a UNIQUE or PRIMARY KEY constraint builds its index under an ACCESS EXCLUSIVE lock, blocking reads and writes for the whole build",
        fix: "CREATE UNIQUE INDEX CONCURRENTLY (in a `-- no-transaction` migration), then ADD CONSTRAINT … UNIQUE USING INDEX",
    },
    RuleInfo {
        id: DROP_COLUMN,
        default: Level::Deny,
        why: "the release still serving during a rolling deploy reads and writes the column and starts failing",
        fix: "expand/contract: stop using the column in one release, drop it in a migration of a later one (then allow this rule with that reason)",
    },
    RuleInfo {
        id: DROP_TABLE,
        default: Level::Deny,
        why: "the release still serving during a rolling deploy uses the table and starts failing; the data is gone",
        fix: "expand/contract: stop using the table in one release, drop it in a migration of a later one (then allow this rule with that reason)",
    },
    RuleInfo {
        id: RENAME,
        default: Level::Deny,
        why: "the release still serving during a rolling deploy uses the old name and starts failing",
        fix: "expand/contract: add the new column or table, write both, backfill, switch reads, then drop the old one; or a view with the old name",
    },
    RuleInfo {
        id: TRUNCATE,
        default: Level::Deny,
        why: "TRUNCATE takes an ACCESS EXCLUSIVE lock and deletes every row of a live table",
        fix: "delete the rows that must go in bounded batches, or drop a table no release uses any more",
    },
    RuleInfo {
        id: VACUUM_FULL,
        default: Level::Deny,
        why: "VACUUM FULL rewrites the table under an ACCESS EXCLUSIVE lock, blocking reads and writes until it ends (and cannot run in a transaction)",
        fix: "rely on autovacuum, or use pg_repack / pg_squeeze outside migrations",
    },
    RuleInfo {
        id: CLUSTER,
        default: Level::Deny,
        why: "CLUSTER rewrites the table under an ACCESS EXCLUSIVE lock, blocking reads and writes until it ends",
        fix: "use pg_repack --order-by outside migrations, or leave the physical order alone",
    },
    RuleInfo {
        id: LOCK_TABLE,
        default: Level::Warn,
        why: "an explicit LOCK TABLE on a live table queues all traffic behind it for the rest of the migration's transaction",
        fix: "let each statement take the weakest lock it needs; keep a migration that must lock short and with a lock_timeout",
    },
    RuleInfo {
        id: UNBOUNDED_DML,
        default: Level::Warn,
        why: "an UPDATE or DELETE over a whole live table (no WHERE, or one that only tests for NULL) locks every row it touches for the whole migration and bloats the table",
        fix: "backfill in bounded batches (a key range, or WHERE id IN (SELECT … LIMIT n)) outside the schema migration",
    },
    RuleInfo {
        id: LOCK_TIMEOUT,
        default: Level::Warn,
        why: "the engine's default lock_timeout is turned off here, so a statement waiting for a lock on a busy table queues all traffic behind it without limit",
        fix: "give the file a header `-- lock_timeout: 5s` (or SET lock_timeout before the statement), or keep the engine's default on",
    },
    RuleInfo {
        id: PARSE_ERROR,
        default: Level::Warn,
        why: "the lint's SQL parser could not read the statement, so no rule checked it",
        fix: "review the statement by hand, or allow this rule in the file with the reason",
    },
];

pub fn rule(id: &str) -> Option<&'static RuleInfo> {
    RULES.iter().find(|r| r.id == id)
}

/// The level of each rule: the defaults, overridden by the severity file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Severities {
    levels: BTreeMap<&'static str, Level>,
}

impl Default for Severities {
    fn default() -> Self {
        Self {
            levels: RULES.iter().map(|r| (r.id, r.default)).collect(),
        }
    }
}

impl Severities {
    pub fn level(&self, id: &str) -> Level {
        // INVALID_ALLOW (not configurable) is always an error.
        self.levels.get(id).copied().unwrap_or(Level::Deny)
    }

    /// Reads the severity file: optional `[rules]` header, then `rule-id = "deny" | "warn" |
    /// "off"` lines (`#` comments, blank lines). A TOML subset, read by hand so that `build.rs`
    /// needs no TOML crate. Errors name `label:line`.
    pub fn parse(label: &str, text: &str) -> Result<Self, String> {
        let mut out = Self::default();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or("").trim();
            let at = format!("{label}:{}", i + 1);
            if line.is_empty() || line == "[rules]" {
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                return Err(format!(
                    "{at}: expected `rule-id = \"deny\" | \"warn\" | \"off\"`, found {line:?}"
                ));
            };
            let key = key.trim().trim_matches('"');
            let value = value.trim().trim_matches('"');
            let Some(info) = rule(key) else {
                return Err(format!(
                    "{at}: unknown rule {key:?}; known rules: {}",
                    RULES.iter().map(|r| r.id).collect::<Vec<_>>().join(", ")
                ));
            };
            let Some(level) = Level::parse(value) else {
                return Err(format!(
                    "{at}: unknown level {value:?} for {key}; use \"deny\", \"warn\" or \"off\""
                ));
            };
            out.levels.insert(info.id, level);
        }
        Ok(out)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&'static str, Level)> + '_ {
        self.levels.iter().map(|(k, v)| (*k, *v))
    }
}

/// Whether `[migrations] lock_timeout` in a config file's text is zero (the engine's default
/// guard turned off): `Some(true)` zero, `Some(false)` set and non-zero, `None` not set.
pub fn config_lock_timeout_off(text: &str) -> Option<bool> {
    let mut section = "";
    let mut found = None;
    for raw in text.lines() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.starts_with('[') {
            section = line;
            continue;
        }
        if section == "[migrations]"
            && let Some((key, value)) = line.split_once('=')
            && key.trim() == "lock_timeout"
        {
            found = Some(is_zero_duration(value));
        }
    }
    found
}

/// Whether the engine's default lock_timeout is off across config file texts given in layer
/// order (a later file that sets it wins; none setting it: on).
pub fn layered_lock_timeout_off(texts: impl IntoIterator<Item = impl AsRef<str>>) -> bool {
    texts
        .into_iter()
        .filter_map(|text| config_lock_timeout_off(text.as_ref()))
        .last()
        .unwrap_or(false)
}

/// `0`, `'0'`, `"0s"`, `0ms`, … (a duration whose number is zero).
fn is_zero_duration(value: &str) -> bool {
    let v = value.trim().trim_matches(|c| c == '\'' || c == '"').trim();
    let digits = v.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    !digits.is_empty() && digits.bytes().all(|b| b == b'0')
}

/// Context the rules need that the SQL does not carry.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// The engine's default `lock_timeout` (`migrations.lock_timeout`) is 0: files without a
    /// `-- lock_timeout:` header run without one.
    pub engine_lock_timeout_off: bool,
}

/// One file to lint: an up or simple migration, in version order.
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    pub file: &'a str,
    pub sql: &'a str,
}

/// The files the lint reads from a validated set: each migration's up (or simple) side. Down
/// files run only in a deliberate rollback and drop things by nature.
pub fn up_sources<'a>(specs: impl IntoIterator<Item = &'a Spec>) -> Vec<Source<'a>> {
    specs
        .into_iter()
        .map(|s| Source {
            file: &s.up.file,
            sql: &s.up.sql,
        })
        .collect()
}

/// One finding. `level` is `Deny` or `Warn`; `allowed` holds the reason of the file's
/// `-- lint:allow` comment when one covers it (it then neither warns nor fails).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub file: String,
    pub line: usize,
    pub rule: &'static str,
    pub level: Level,
    pub message: String,
    pub allowed: Option<String>,
}

impl Finding {
    /// `<prefix><file>:<line>: <rule>: <message> (<why>; <fix>)`, one line.
    pub fn render(&self, prefix: &str) -> String {
        let mut s = format!(
            "{prefix}{}:{}: {}: {}",
            self.file, self.line, self.rule, self.message
        );
        if let Some(info) = rule(self.rule) {
            s.push_str(&format!(" ({}; instead: {})", info.why, info.fix));
        }
        if let Some(reason) = &self.allowed {
            s.push_str(&format!(" [allowed: {reason}]"));
        }
        s
    }

    pub fn is_deny(&self) -> bool {
        self.allowed.is_none() && self.level == Level::Deny
    }

    pub fn is_warn(&self) -> bool {
        self.allowed.is_none() && self.level == Level::Warn
    }

    /// `deny`, `warn` or `allowed`.
    pub fn status(&self) -> &'static str {
        if self.allowed.is_some() {
            "allowed"
        } else {
            self.level.as_str()
        }
    }
}

/// The lint of a set: findings in file, then line order.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub files: usize,
    pub findings: Vec<Finding>,
}

impl Report {
    pub fn denies(&self) -> usize {
        self.findings.iter().filter(|f| f.is_deny()).count()
    }

    pub fn warnings(&self) -> usize {
        self.findings.iter().filter(|f| f.is_warn()).count()
    }

    pub fn allowed(&self) -> usize {
        self.findings.iter().filter(|f| f.allowed.is_some()).count()
    }

    pub fn summary(&self) -> String {
        format!(
            "{} deny, {} warn, {} allowed in {} migration file(s)",
            self.denies(),
            self.warnings(),
            self.allowed(),
            self.files
        )
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for finding in &self.findings {
            writeln!(f, "{:<7} {}", finding.status(), finding.render(""))?;
        }
        write!(f, "{}", self.summary())
    }
}

/// Lints a set's up/simple files (down files are skipped), in the order given (version order).
pub fn lint_set(sources: &[Source<'_>], severities: &Severities, options: Options) -> Report {
    let mut state = SetState::default();
    let mut report = Report::default();
    for source in sources {
        if source.file.ends_with(".down.sql") {
            continue;
        }
        report.files += 1;
        report
            .findings
            .extend(lint_file(source, severities, options, &mut state));
    }
    report
}

/// What earlier files of the set left that later ones can rely on.
#[derive(Debug, Default)]
struct SetState {
    /// (table, column) with a validated `CHECK (column IS NOT NULL)`.
    validated_not_null: BTreeSet<(String, String)>,
    /// Constraint name → (table, column) of a `CHECK (column IS NOT NULL) NOT VALID`.
    not_valid_not_null: BTreeMap<String, (String, String)>,
}

/// A raw finding before severities and allows are applied.
struct Hit {
    line: usize,
    rule: &'static str,
    message: String,
}

struct FileLint<'s> {
    hits: Vec<Hit>,
    /// Tables created by this file (exempt from the live-traffic rules).
    created: BTreeSet<String>,
    /// Constraints this file added NOT VALID (validating them here holds the add's lock).
    added_not_valid: BTreeSet<String>,
    transactional: bool,
    statements: usize,
    lock_timeout_off: bool,
    engine_lock_timeout_off: bool,
    lock_timeout_reported: bool,
    state: &'s mut SetState,
}

fn lint_file(
    source: &Source<'_>,
    severities: &Severities,
    options: Options,
    state: &mut SetState,
) -> Vec<Finding> {
    let finish = |hits: Vec<Hit>, allows: &BTreeMap<&'static str, String>| {
        let mut out: Vec<Finding> = hits
            .into_iter()
            .filter_map(|h| {
                let level = severities.level(h.rule);
                (level != Level::Off).then(|| Finding {
                    file: source.file.to_string(),
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
    };

    let dialect = PostgreSqlDialect {};
    let tokens = match Tokenizer::new(&dialect, source.sql).tokenize_with_location() {
        Ok(tokens) => tokens,
        Err(e) => {
            let hit = Hit {
                line: e.location.line as usize,
                rule: PARSE_ERROR,
                message: format!("cannot tokenize the file ({}); file not linted", e.message),
            };
            return finish(vec![hit], &BTreeMap::new());
        }
    };

    let mut hits = Vec::new();
    let allows = read_allows(&tokens, &mut hits);
    let header_timeout = header_settings(source.sql)
        .unwrap_or_default()
        .into_iter()
        .find(|(k, _)| k == "lock_timeout")
        .map(|(_, v)| is_zero_duration(&v));
    let statements = split_statements(&tokens);
    let mut lint = FileLint {
        hits,
        created: BTreeSet::new(),
        added_not_valid: BTreeSet::new(),
        transactional: !source.sql.starts_with(NO_TRANSACTION_MARKER),
        statements: statements.len(),
        lock_timeout_off: header_timeout.unwrap_or(options.engine_lock_timeout_off),
        engine_lock_timeout_off: options.engine_lock_timeout_off,
        lock_timeout_reported: false,
        state,
    };
    for stmt in statements {
        lint.statement(stmt);
    }
    finish(lint.hits, &allows)
}

/// `-- lint:allow <rule>: <reason>` comments: rule → reason. A comment without a reason, or
/// naming an unknown rule, is an `invalid-allow` hit (always an error).
fn read_allows(tokens: &[TokenWithSpan], hits: &mut Vec<Hit>) -> BTreeMap<&'static str, String> {
    let mut allows = BTreeMap::new();
    for t in tokens {
        let Token::Whitespace(Whitespace::SingleLineComment { comment, .. }) = &t.token else {
            continue;
        };
        let Some(rest) = comment.trim().strip_prefix("lint:allow") else {
            continue;
        };
        let line = t.span.start.line as usize;
        let (id, reason) = rest.split_once(':').unwrap_or((rest, ""));
        let (id, reason) = (id.trim(), reason.trim());
        match rule(id) {
            None => hits.push(Hit {
                line,
                rule: INVALID_ALLOW,
                message: format!(
                    "`lint:allow` names unknown rule {id:?}; write `-- lint:allow <rule>: <reason>` with one of: {}",
                    RULES.iter().map(|r| r.id).collect::<Vec<_>>().join(", ")
                ),
            }),
            Some(_) if reason.is_empty() => hits.push(Hit {
                line,
                rule: INVALID_ALLOW,
                message: format!(
                    "`lint:allow {id}` without a reason; write `-- lint:allow {id}: <why it is safe here>`"
                ),
            }),
            Some(info) => {
                allows.insert(info.id, reason.to_string());
            }
        }
    }
    allows
}

/// One statement's tokens (no whitespace or comments) and its first line.
struct Stmt {
    line: usize,
    tokens: Vec<TokenWithSpan>,
}

impl Stmt {
    fn word(&self, i: usize) -> Option<String> {
        match self.tokens.get(i).map(|t| &t.token) {
            Some(Token::Word(w)) => Some(w.value.to_ascii_uppercase()),
            _ => None,
        }
    }

    fn has_word(&self, word: &str) -> bool {
        self.tokens
            .iter()
            .any(|t| matches!(&t.token, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(word)))
    }
}

/// Splits at top-level `;` tokens; the tokenizer has already kept strings, `$$` bodies and
/// comments whole.
fn split_statements(tokens: &[TokenWithSpan]) -> Vec<Stmt> {
    let mut out = Vec::new();
    let mut current: Vec<TokenWithSpan> = Vec::new();
    for t in tokens {
        match &t.token {
            Token::Whitespace(_) => {}
            Token::SemiColon | Token::EOF => {
                if let Some(first) = current.first() {
                    out.push(Stmt {
                        line: first.span.start.line as usize,
                        tokens: std::mem::take(&mut current),
                    });
                }
            }
            _ => current.push(t.clone()),
        }
    }
    if let Some(first) = current.first() {
        out.push(Stmt {
            line: first.span.start.line as usize,
            tokens: current,
        });
    }
    out
}

/// Last part of a name, case-folded unless quoted.
fn ident_key(ident: &Ident) -> String {
    if ident.quote_style.is_some() {
        ident.value.clone()
    } else {
        ident.value.to_lowercase()
    }
}

fn table_key(name: &ObjectName) -> String {
    match name.0.last() {
        Some(ObjectNamePart::Identifier(ident)) => ident_key(ident),
        _ => name.to_string().to_lowercase(),
    }
}

impl FileLint<'_> {
    fn hit(&mut self, line: usize, rule: &'static str, message: String) {
        self.hits.push(Hit {
            line,
            rule,
            message,
        });
    }

    fn is_live(&self, table: &str) -> bool {
        !self.created.contains(table)
    }

    /// A statement that waits for a lock on a live table: reported (once per file) when no
    /// lock_timeout bounds that wait.
    fn takes_lock(&mut self, line: usize, what: &str) {
        if self.lock_timeout_off && !self.lock_timeout_reported {
            self.lock_timeout_reported = true;
            self.hit(
                line,
                LOCK_TIMEOUT,
                format!("{what} runs with lock_timeout off"),
            );
        }
    }

    fn statement(&mut self, stmt: Stmt) {
        let line = stmt.line;
        let first = stmt.word(0).unwrap_or_default();

        // Rules read from tokens, whether or not the parser knows the statement.
        if stmt.has_word("CONCURRENTLY")
            && (matches!(first.as_str(), "CREATE" | "DROP" | "REINDEX")
                || (first == "ALTER" && stmt.has_word("DETACH")))
            && (self.transactional || self.statements > 1)
        {
            let why = if self.transactional {
                "the file runs in a transaction (it does not start with `-- no-transaction`)"
            } else {
                "the file has more than one statement, which PostgreSQL runs as one implicit transaction"
            };
            self.hit(
                line,
                CONCURRENTLY_IN_TX,
                format!("{first} … CONCURRENTLY will fail: {why}"),
            );
        }
        match first.as_str() {
            "VACUUM" => return self.vacuum(&stmt),
            "CLUSTER" => return self.cluster(&stmt),
            "REINDEX" => return self.takes_lock(line, "REINDEX"),
            "DROP" if stmt.word(1).as_deref() == Some("INDEX") && stmt.has_word("CONCURRENTLY") => {
                return self.takes_lock(line, "DROP INDEX CONCURRENTLY");
            }
            _ => {}
        }

        let mut parser =
            Parser::new(&PostgreSqlDialect {}).with_tokens_with_locations(stmt.tokens.clone());
        let parsed = parser.parse_statement().and_then(|s| {
            if parser.peek_token().token == Token::EOF {
                Ok(s)
            } else {
                parser.expected("end of statement", parser.peek_token())
            }
        });
        match parsed {
            Ok(s) => self.parsed(line, &s),
            Err(e) => self.hit(
                line,
                PARSE_ERROR,
                format!("{first} statement not understood by the lint's parser ({e}); not checked"),
            ),
        }
    }

    fn vacuum(&mut self, stmt: &Stmt) {
        if !stmt.has_word("FULL") {
            return;
        }
        let table = last_name_word(stmt);
        if table.as_ref().is_some_and(|t| !self.is_live(t)) {
            return;
        }
        let target = table.map_or("every table of the database".to_string(), |t| {
            format!("live table {t}")
        });
        self.hit(stmt.line, VACUUM_FULL, format!("VACUUM FULL on {target}"));
        self.takes_lock(stmt.line, "VACUUM FULL");
    }

    fn cluster(&mut self, stmt: &Stmt) {
        // CLUSTER [VERBOSE] [table [USING index]]
        let at = if stmt.word(1).as_deref() == Some("VERBOSE") {
            2
        } else {
            1
        };
        let table = match stmt.tokens.get(at).map(|t| &t.token) {
            Some(Token::Word(_)) => {
                // The last part of a dotted name.
                let mut i = at;
                while matches!(
                    stmt.tokens.get(i + 1).map(|t| &t.token),
                    Some(Token::Period)
                ) {
                    i += 2;
                }
                match stmt.tokens.get(i).map(|t| &t.token) {
                    Some(Token::Word(w)) => Some(word_key(w)),
                    _ => None,
                }
            }
            _ => None,
        };
        if table.as_ref().is_some_and(|t| !self.is_live(t)) {
            return;
        }
        let target = table.map_or("every clustered table".to_string(), |t| {
            format!("live table {t}")
        });
        self.hit(stmt.line, CLUSTER, format!("CLUSTER on {target}"));
        self.takes_lock(stmt.line, "CLUSTER");
    }

    fn parsed(&mut self, line: usize, s: &Statement) {
        match s {
            Statement::CreateTable(ct) => {
                let table = table_key(&ct.name);
                self.created.insert(table.clone());
                // A validated NOT NULL check written in CREATE TABLE counts like any other.
                for c in &ct.constraints {
                    if let TableConstraint::Check(check) = c
                        && let Some(col) = not_null_check_column(&check.expr)
                    {
                        self.state.validated_not_null.insert((table.clone(), col));
                    }
                }
                let references_live = ct.constraints.iter().any(|c| {
                    matches!(c, TableConstraint::ForeignKey(fk) if self.is_live(&table_key(&fk.foreign_table)))
                }) || ct.columns.iter().any(|col| {
                    col.options.iter().any(|o| {
                        matches!(&o.option, ColumnOption::ForeignKey(fk) if self.is_live(&table_key(&fk.foreign_table)))
                    })
                });
                if references_live {
                    self.takes_lock(line, "CREATE TABLE with a foreign key to a live table");
                }
            }
            Statement::CreateIndex(ci) => {
                let table = table_key(&ci.table_name);
                if !self.is_live(&table) {
                    return;
                }
                if !ci.concurrently {
                    let name = ci.name.as_ref().map_or(String::new(), |n| format!(" {n}"));
                    self.hit(
                        line,
                        CREATE_INDEX,
                        format!("CREATE INDEX{name} on live table {table} without CONCURRENTLY"),
                    );
                }
                self.takes_lock(line, "CREATE INDEX");
            }
            Statement::AlterTable(at) => {
                let table = table_key(&at.name);
                if !self.is_live(&table) {
                    // Still track constraints: a later file may rely on them.
                    for op in &at.operations {
                        if let AlterTableOperation::AddConstraint {
                            constraint: TableConstraint::Check(check),
                            ..
                        } = op
                            && let Some(col) = not_null_check_column(&check.expr)
                        {
                            self.state.validated_not_null.insert((table.clone(), col));
                        }
                        if let AlterTableOperation::RenameTable {
                            table_name: RenameTableNameKind::As(new) | RenameTableNameKind::To(new),
                        } = op
                        {
                            self.created.insert(table_key(new));
                        }
                    }
                    return;
                }
                for op in &at.operations {
                    self.alter_op(line, &table, op);
                }
                self.takes_lock(line, "ALTER TABLE");
            }
            Statement::Drop {
                object_type, names, ..
            } => match object_type {
                ObjectType::Table => {
                    for name in names {
                        let table = table_key(name);
                        if self.is_live(&table) {
                            self.hit(line, DROP_TABLE, format!("DROP TABLE {table}"));
                            self.takes_lock(line, "DROP TABLE");
                        }
                    }
                }
                ObjectType::Index => self.takes_lock(line, "DROP INDEX"),
                _ => {}
            },
            Statement::RenameTable(renames) => {
                for r in renames {
                    let table = table_key(&r.old_name);
                    if self.is_live(&table) {
                        self.hit(
                            line,
                            RENAME,
                            format!("RENAME TABLE {table} to {}", r.new_name),
                        );
                    }
                }
            }
            Statement::Truncate(t) => {
                for target in &t.table_names {
                    let table = table_key(&target.name);
                    if self.is_live(&table) {
                        self.hit(line, TRUNCATE, format!("TRUNCATE live table {table}"));
                        self.takes_lock(line, "TRUNCATE");
                    }
                }
            }
            Statement::Lock(lock) => {
                for target in &lock.tables {
                    let table = table_key(&target.name);
                    if self.is_live(&table) {
                        self.hit(line, LOCK_TABLE, format!("LOCK TABLE {table}"));
                        self.takes_lock(line, "LOCK TABLE");
                    }
                }
            }
            Statement::Update(u) => {
                if let TableFactor::Table { name, .. } = &u.table.relation {
                    let table = table_key(name);
                    if self.is_live(&table)
                        && is_unbounded(u.selection.as_ref())
                        && u.from.is_none()
                    {
                        self.hit(
                            line,
                            UNBOUNDED_DML,
                            format!("UPDATE {table} {}", bound_text(u.selection.as_ref())),
                        );
                    }
                }
            }
            Statement::Delete(d) => {
                let tables = match &d.from {
                    sqlparser::ast::FromTable::WithFromKeyword(t)
                    | sqlparser::ast::FromTable::WithoutKeyword(t) => t,
                };
                for t in tables {
                    if let TableFactor::Table { name, .. } = &t.relation {
                        let table = table_key(name);
                        if self.is_live(&table)
                            && is_unbounded(d.selection.as_ref())
                            && d.using.is_none()
                        {
                            self.hit(
                                line,
                                UNBOUNDED_DML,
                                format!("DELETE FROM {table} {}", bound_text(d.selection.as_ref())),
                            );
                        }
                    }
                }
            }
            Statement::Set(Set::SingleAssignment {
                variable, values, ..
            }) if table_key(variable) == "lock_timeout" => {
                self.lock_timeout_off = values
                    .first()
                    .is_some_and(|v| is_zero_duration(&v.to_string()));
            }
            Statement::Reset(r) => {
                if let Reset::ConfigurationParameter(name) = &r.reset
                    && table_key(name) == "lock_timeout"
                {
                    self.lock_timeout_off = self.engine_lock_timeout_off;
                }
                if matches!(r.reset, Reset::ALL) {
                    self.lock_timeout_off = self.engine_lock_timeout_off;
                }
            }
            _ => {}
        }
    }

    fn alter_op(&mut self, line: usize, table: &str, op: &AlterTableOperation) {
        match op {
            AlterTableOperation::AddColumn { column_def, .. } => {
                if let Some(what) = rewriting_column(column_def) {
                    self.hit(
                        line,
                        VOLATILE_DEFAULT,
                        format!(
                            "ADD COLUMN {} on live table {table} with {what}",
                            column_def.name
                        ),
                    );
                }
            }
            AlterTableOperation::AlterColumn {
                column_name,
                op: AlterColumnOperation::SetDataType { data_type, .. },
            } => self.hit(
                line,
                COLUMN_TYPE,
                format!("ALTER COLUMN {column_name} TYPE {data_type} on live table {table}"),
            ),
            AlterTableOperation::AlterColumn {
                column_name,
                op: AlterColumnOperation::SetNotNull,
            } => {
                let key = (table.to_string(), ident_key(column_name));
                if !self.state.validated_not_null.contains(&key) {
                    self.hit(
                        line,
                        SET_NOT_NULL,
                        format!(
                            "SET NOT NULL on {table}.{column_name} without a validated CHECK ({column_name} IS NOT NULL)"
                        ),
                    );
                }
            }
            AlterTableOperation::AddConstraint {
                constraint,
                not_valid,
            } => self.add_constraint(line, table, constraint, *not_valid),
            AlterTableOperation::ValidateConstraint { name } => {
                let key = ident_key(name);
                if self.transactional && self.added_not_valid.contains(&key) {
                    self.hit(
                        line,
                        NOT_VALID,
                        format!(
                            "VALIDATE CONSTRAINT {name} in the same transaction that added it NOT VALID keeps the add's lock through the validation scan"
                        ),
                    );
                }
                if let Some(col) = self.state.not_valid_not_null.remove(&key) {
                    self.state.validated_not_null.insert(col);
                }
            }
            AlterTableOperation::DropColumn { column_names, .. } => {
                let names: Vec<String> = column_names.iter().map(ToString::to_string).collect();
                self.hit(
                    line,
                    DROP_COLUMN,
                    format!("DROP COLUMN {} on live table {table}", names.join(", ")),
                );
            }
            AlterTableOperation::RenameColumn {
                old_column_name,
                new_column_name,
            } => self.hit(
                line,
                RENAME,
                format!(
                    "RENAME COLUMN {old_column_name} TO {new_column_name} on live table {table}"
                ),
            ),
            AlterTableOperation::RenameTable { table_name } => self.hit(
                line,
                RENAME,
                format!("RENAME live table {table} {table_name}"),
            ),
            _ => {}
        }
    }

    fn add_constraint(
        &mut self,
        line: usize,
        table: &str,
        constraint: &TableConstraint,
        not_valid: bool,
    ) {
        let name = constraint_name(constraint).map(|n| ident_key(&n));
        let label = name.clone().map_or(String::new(), |n| format!(" {n}"));
        match constraint {
            TableConstraint::ForeignKey(_) | TableConstraint::Check(_) => {
                let kind = if matches!(constraint, TableConstraint::ForeignKey(_)) {
                    "FOREIGN KEY"
                } else {
                    "CHECK"
                };
                if not_valid {
                    if let Some(n) = &name {
                        self.added_not_valid.insert(n.clone());
                    }
                } else {
                    self.hit(
                        line,
                        NOT_VALID,
                        format!(
                            "ADD CONSTRAINT{label} {kind} on live table {table} without NOT VALID"
                        ),
                    );
                }
                if let TableConstraint::Check(check) = constraint
                    && let Some(col) = not_null_check_column(&check.expr)
                {
                    let key = (table.to_string(), col);
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
            TableConstraint::Unique(_) | TableConstraint::PrimaryKey(_) => {
                let kind = if matches!(constraint, TableConstraint::Unique(_)) {
                    "UNIQUE"
                } else {
                    "PRIMARY KEY"
                };
                self.hit(
                    line,
                    UNIQUE,
                    format!(
                        "ADD CONSTRAINT{label} {kind} on live table {table} builds its index under the lock (no USING INDEX)"
                    ),
                );
            }
            _ => {}
        }
    }
}

fn word_key(w: &sqlparser::tokenizer::Word) -> String {
    if w.quote_style.is_some() {
        w.value.clone()
    } else {
        w.value.to_lowercase()
    }
}

/// The table of `VACUUM [FULL] [(options)] [table]`: the last word, if it is not an option.
fn last_name_word(stmt: &Stmt) -> Option<String> {
    match stmt.tokens.last().map(|t| &t.token) {
        Some(Token::Word(w))
            if w.quote_style.is_some()
                || !["FULL", "VACUUM", "FREEZE", "VERBOSE", "ANALYZE"]
                    .contains(&w.value.to_ascii_uppercase().as_str()) =>
        {
            Some(word_key(w))
        }
        _ => None,
    }
}

fn constraint_name(c: &TableConstraint) -> Option<Ident> {
    match c {
        TableConstraint::Unique(u) => u.name.clone(),
        TableConstraint::PrimaryKey(p) => p.name.clone(),
        TableConstraint::ForeignKey(f) => f.name.clone(),
        TableConstraint::Check(c) => c.name.clone(),
        _ => None,
    }
}

/// `col IS NOT NULL` (parentheses allowed): the column.
fn not_null_check_column(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Nested(inner) => not_null_check_column(inner),
        Expr::IsNotNull(inner) => match inner.as_ref() {
            Expr::Identifier(ident) => Some(ident_key(ident)),
            Expr::CompoundIdentifier(parts) => parts.last().map(ident_key),
            _ => None,
        },
        _ => None,
    }
}

/// No WHERE, or one whose every AND-ed term only tests NULL-ness or a boolean column: the
/// classic backfill `UPDATE t SET c = … WHERE c IS NULL`, which touches every row.
fn is_unbounded(selection: Option<&Expr>) -> bool {
    fn null_only(e: &Expr) -> bool {
        match e {
            Expr::Nested(inner) => null_only(inner),
            Expr::BinaryOp {
                left,
                op: BinaryOperator::And,
                right,
            } => null_only(left) && null_only(right),
            Expr::IsNull(_)
            | Expr::IsNotNull(_)
            | Expr::IsTrue(_)
            | Expr::IsFalse(_)
            | Expr::IsNotTrue(_)
            | Expr::IsNotFalse(_)
            | Expr::Identifier(_)
            | Expr::CompoundIdentifier(_)
            | Expr::Value(_) => true,
            Expr::UnaryOp { expr, .. } => null_only(expr),
            _ => false,
        }
    }
    selection.is_none_or(null_only)
}

fn bound_text(selection: Option<&Expr>) -> String {
    match selection {
        None => "without WHERE (every row of a live table)".to_string(),
        Some(e) => format!("WHERE {e} (only tests NULL-ness: every row of a live table)"),
    }
}

/// Functions PostgreSQL marks VOLATILE that show up in defaults.
const VOLATILE_FUNCTIONS: &[&str] = &[
    "random",
    "gen_random_uuid",
    "uuid_generate_v1",
    "uuid_generate_v1mc",
    "uuid_generate_v4",
    "uuidv4",
    "uuidv7",
    "clock_timestamp",
    "timeofday",
    "nextval",
    "txid_current",
    "pg_current_xact_id",
    "setseed",
];

/// Functions and function-like keywords known to be STABLE or IMMUTABLE: a default using only
/// these is evaluated once for the table (no rewrite). Anything else is treated as possibly
/// volatile and named in the message.
const NON_VOLATILE_FUNCTIONS: &[&str] = &[
    "now",
    "current_timestamp",
    "current_date",
    "current_time",
    "localtimestamp",
    "localtime",
    "transaction_timestamp",
    "statement_timestamp",
    "cast",
    "coalesce",
    "nullif",
    "greatest",
    "least",
    "lower",
    "upper",
    "length",
    "concat",
    "array",
    "row",
    "to_jsonb",
    "to_json",
    "jsonb_build_object",
    "jsonb_build_array",
    "json_build_object",
    "json_build_array",
    "make_interval",
    "date_trunc",
    "timezone",
    "extract",
    "abs",
    "interval",
];

/// Why adding this column rewrites the table, if it does.
fn rewriting_column(col: &sqlparser::ast::ColumnDef) -> Option<String> {
    let ty = col.data_type.to_string().to_lowercase();
    if [
        "serial",
        "bigserial",
        "smallserial",
        "serial2",
        "serial4",
        "serial8",
    ]
    .contains(&ty.as_str())
    {
        return Some(format!("type {ty} (a nextval() default for every row)"));
    }
    for o in &col.options {
        match &o.option {
            ColumnOption::Default(expr) => {
                let sql = expr.to_string();
                if let Some(f) = functions_in(&sql)
                    .into_iter()
                    .find(|f| !NON_VOLATILE_FUNCTIONS.contains(&f.as_str()))
                {
                    let kind = if VOLATILE_FUNCTIONS.contains(&f.as_str()) {
                        "volatile"
                    } else {
                        "possibly volatile (unknown)"
                    };
                    return Some(format!("DEFAULT {sql}: {f}() is {kind}"));
                }
            }
            ColumnOption::Generated {
                generation_expr: Some(_),
                generation_expr_mode,
                ..
            } if *generation_expr_mode != Some(GeneratedExpressionMode::Virtual) => {
                return Some("a stored generated expression".to_string());
            }
            ColumnOption::Generated {
                generation_expr: None,
                ..
            }
            | ColumnOption::Identity(_) => return Some("an identity (one value per row)".into()),
            _ => {}
        }
    }
    None
}

/// Names followed by `(` in an expression's SQL: the functions it calls.
fn functions_in(sql: &str) -> Vec<String> {
    let Ok(tokens) = Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize() else {
        return vec!["(unreadable expression)".to_string()];
    };
    let tokens: Vec<&Token> = tokens
        .iter()
        .filter(|t| !matches!(t, Token::Whitespace(_)))
        .collect();
    tokens
        .windows(2)
        .filter_map(|w| match (w[0], w[1]) {
            (Token::Word(word), Token::LParen) => Some(word.value.to_lowercase()),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lint_with(files: &[(&str, &str)], options: Options) -> Report {
        let sources: Vec<Source<'_>> = files
            .iter()
            .map(|(file, sql)| Source { file, sql })
            .collect();
        lint_set(&sources, &Severities::default(), options)
    }

    fn lint(files: &[(&str, &str)]) -> Report {
        lint_with(files, Options::default())
    }

    /// (rule, line) of every finding of one file `1_x.sql`.
    fn hits(sql: &str) -> Vec<(&'static str, usize)> {
        lint(&[("1_x.sql", sql)])
            .findings
            .iter()
            .map(|f| (f.rule, f.line))
            .collect()
    }

    fn rules(sql: &str) -> Vec<&'static str> {
        hits(sql).into_iter().map(|(r, _)| r).collect()
    }

    const NO_TX: &str = "-- no-transaction\n";

    #[test]
    fn create_index_without_concurrently_on_a_live_table() {
        assert_eq!(
            hits("-- comment\n\nCREATE INDEX i ON t (c);"),
            [(CREATE_INDEX, 3)]
        );
        assert_eq!(
            rules("CREATE UNIQUE INDEX i ON public.t (c);"),
            [CREATE_INDEX]
        );
        assert!(rules(&format!("{NO_TX}CREATE INDEX CONCURRENTLY i ON t (c);")).is_empty());
        // Same file created the table: exempt.
        assert!(rules("CREATE TABLE t (c int);\nCREATE INDEX i ON t (c);").is_empty());
    }

    #[test]
    fn a_table_created_by_an_earlier_migration_is_live() {
        let report = lint(&[
            ("1_a.sql", "CREATE TABLE t (c int);"),
            ("2_b.sql", "CREATE INDEX i ON t (c);"),
        ]);
        let found: Vec<_> = report
            .findings
            .iter()
            .map(|f| (f.file.as_str(), f.rule))
            .collect();
        assert_eq!(found, [("2_b.sql", CREATE_INDEX)]);
    }

    #[test]
    fn concurrently_needs_a_file_of_its_own_without_transaction() {
        assert_eq!(
            rules("CREATE INDEX CONCURRENTLY i ON t (c);"),
            [CONCURRENTLY_IN_TX]
        );
        assert_eq!(
            rules(&format!(
                "{NO_TX}CREATE INDEX CONCURRENTLY i ON t (c);\nCREATE INDEX CONCURRENTLY j ON t (d);"
            )),
            [CONCURRENTLY_IN_TX, CONCURRENTLY_IN_TX]
        );
        // DROP INDEX CONCURRENTLY is read from tokens: no parse error either way.
        assert_eq!(rules("DROP INDEX CONCURRENTLY i;"), [CONCURRENTLY_IN_TX]);
        assert!(rules(&format!("{NO_TX}DROP INDEX CONCURRENTLY i;")).is_empty());
        assert!(rules(&format!("{NO_TX}CREATE INDEX CONCURRENTLY i ON t (c);")).is_empty());
        // Not a header: sqlx reads the marker only at the very start.
        assert_eq!(
            rules("\n-- no-transaction\nCREATE INDEX CONCURRENTLY i ON t (c);"),
            [CONCURRENTLY_IN_TX]
        );
    }

    #[test]
    fn add_column_with_a_volatile_default() {
        for sql in [
            "ALTER TABLE t ADD COLUMN c uuid NOT NULL DEFAULT gen_random_uuid();",
            "ALTER TABLE t ADD COLUMN c timestamptz DEFAULT clock_timestamp();",
            "ALTER TABLE t ADD COLUMN c double precision DEFAULT random() * 10;",
            "ALTER TABLE t ADD COLUMN c bigserial;",
            "ALTER TABLE t ADD COLUMN c int GENERATED ALWAYS AS (a + 1) STORED;",
            "ALTER TABLE t ADD COLUMN c bigint GENERATED ALWAYS AS IDENTITY;",
            "ALTER TABLE t ADD COLUMN c int DEFAULT my_counter();",
        ] {
            assert_eq!(rules(sql), [VOLATILE_DEFAULT], "{sql}");
        }
        for sql in [
            "ALTER TABLE t ADD COLUMN c timestamptz NOT NULL DEFAULT now();",
            "ALTER TABLE t ADD COLUMN c int NOT NULL DEFAULT 0;",
            "ALTER TABLE t ADD COLUMN c jsonb NOT NULL DEFAULT '{}'::jsonb;",
            "ALTER TABLE t ADD COLUMN c text;",
            "CREATE TABLE t (a int);\nALTER TABLE t ADD COLUMN c uuid DEFAULT gen_random_uuid();",
        ] {
            assert!(rules(sql).is_empty(), "{sql}: {:?}", rules(sql));
        }
    }

    #[test]
    fn alter_column_type() {
        assert_eq!(
            rules("ALTER TABLE t ALTER COLUMN c TYPE bigint;"),
            [COLUMN_TYPE]
        );
        assert_eq!(
            rules("ALTER TABLE t ALTER COLUMN c SET DATA TYPE text USING c::text;"),
            [COLUMN_TYPE]
        );
        assert!(rules("ALTER TABLE t ALTER COLUMN c SET DEFAULT 1;").is_empty());
        assert!(
            rules("CREATE TABLE t (c int);\nALTER TABLE t ALTER COLUMN c TYPE bigint;").is_empty()
        );
    }

    #[test]
    fn set_not_null_needs_a_validated_check() {
        assert_eq!(
            rules("ALTER TABLE t ALTER COLUMN c SET NOT NULL;"),
            [SET_NOT_NULL]
        );
        // The safe sequence, across migrations: no finding at all.
        let report = lint(&[
            (
                "1_a.sql",
                "ALTER TABLE t ADD CONSTRAINT t_c_nn CHECK (c IS NOT NULL) NOT VALID;",
            ),
            ("2_b.sql", "ALTER TABLE t VALIDATE CONSTRAINT t_c_nn;"),
            (
                "3_c.sql",
                "ALTER TABLE t ALTER COLUMN c SET NOT NULL;\nALTER TABLE t DROP CONSTRAINT t_c_nn;",
            ),
        ]);
        assert!(report.findings.is_empty(), "{report}");
        // A check that is never validated does not count.
        let report = lint(&[
            (
                "1_a.sql",
                "ALTER TABLE t ADD CONSTRAINT t_c_nn CHECK (c IS NOT NULL) NOT VALID;",
            ),
            ("2_b.sql", "ALTER TABLE t ALTER COLUMN c SET NOT NULL;"),
        ]);
        let found: Vec<_> = report.findings.iter().map(|f| f.rule).collect();
        assert_eq!(found, [SET_NOT_NULL]);
    }

    #[test]
    fn foreign_key_and_check_need_not_valid() {
        assert_eq!(
            rules("ALTER TABLE m ADD CONSTRAINT m_c_fk FOREIGN KEY (c) REFERENCES c (id);"),
            [NOT_VALID]
        );
        assert_eq!(
            rules("ALTER TABLE m ADD CONSTRAINT m_n CHECK (n > 0);"),
            [NOT_VALID]
        );
        assert!(
            rules(
                "ALTER TABLE m ADD CONSTRAINT m_c_fk FOREIGN KEY (c) REFERENCES c (id) NOT VALID;"
            )
            .is_empty()
        );
        assert!(rules("ALTER TABLE m ADD CONSTRAINT m_n CHECK (n > 0) NOT VALID;").is_empty());
        // Validating in the same transaction keeps the ACCESS EXCLUSIVE lock through the scan.
        assert_eq!(
            rules(
                "ALTER TABLE m ADD CONSTRAINT m_n CHECK (n > 0) NOT VALID;\nALTER TABLE m VALIDATE CONSTRAINT m_n;"
            ),
            [NOT_VALID]
        );
    }

    #[test]
    fn unique_constraint_needs_a_concurrent_index_first() {
        assert_eq!(
            rules("ALTER TABLE t ADD CONSTRAINT t_c_key UNIQUE (c);"),
            [UNIQUE]
        );
        assert_eq!(rules("ALTER TABLE t ADD PRIMARY KEY (id);"), [UNIQUE]);
        assert!(
            rules("ALTER TABLE t ADD CONSTRAINT t_c_key UNIQUE USING INDEX t_c_idx;").is_empty()
        );
        assert!(
            rules("CREATE TABLE t (c int);\nALTER TABLE t ADD CONSTRAINT t_c_key UNIQUE (c);")
                .is_empty()
        );
    }

    #[test]
    fn drop_column_and_drop_table() {
        assert_eq!(rules("ALTER TABLE t DROP COLUMN c;"), [DROP_COLUMN]);
        assert_eq!(rules("DROP TABLE IF EXISTS t;"), [DROP_TABLE]);
        assert!(rules("CREATE TABLE t (c int, d int);\nALTER TABLE t DROP COLUMN d;").is_empty());
        assert!(rules("CREATE TABLE t (c int);\nDROP TABLE t;").is_empty());
        assert!(rules("DROP INDEX i;").is_empty());
    }

    #[test]
    fn renames() {
        assert_eq!(rules("ALTER TABLE t RENAME COLUMN a TO b;"), [RENAME]);
        assert_eq!(rules("ALTER TABLE t RENAME TO u;"), [RENAME]);
        assert!(rules("CREATE TABLE t (a int);\nALTER TABLE t RENAME COLUMN a TO b;").is_empty());
        // A new table renamed stays exempt under its new name.
        assert!(
            rules("CREATE TABLE t_new (a int);\nALTER TABLE t_new RENAME TO u;\nCREATE INDEX i ON u (a);")
                .is_empty()
        );
    }

    #[test]
    fn truncate_vacuum_full_cluster_lock() {
        assert_eq!(rules("TRUNCATE t;"), [TRUNCATE]);
        assert_eq!(rules("TRUNCATE TABLE a, b;"), [TRUNCATE, TRUNCATE]);
        assert_eq!(rules("VACUUM FULL t;"), [VACUUM_FULL]);
        assert_eq!(rules("VACUUM (FULL, ANALYZE) public.t;"), [VACUUM_FULL]);
        assert_eq!(rules("VACUUM FULL;"), [VACUUM_FULL]);
        assert_eq!(rules("CLUSTER t USING t_pkey;"), [CLUSTER]);
        assert_eq!(rules("CLUSTER VERBOSE;"), [CLUSTER]);
        assert_eq!(
            rules("LOCK TABLE t IN ACCESS EXCLUSIVE MODE;"),
            [LOCK_TABLE]
        );
        for sql in [
            "VACUUM t;",
            "VACUUM (ANALYZE) t;",
            "CREATE TABLE t (c int);\nTRUNCATE t;",
            "CREATE TABLE t (c int);\nVACUUM FULL t;",
            "CREATE TABLE t (c int);\nCLUSTER t USING i;",
            "CREATE TABLE t (c int);\nLOCK TABLE t;",
        ] {
            assert!(rules(sql).is_empty(), "{sql}: {:?}", rules(sql));
        }
    }

    #[test]
    fn unbounded_update_and_delete() {
        for sql in [
            "UPDATE t SET c = 0;",
            "UPDATE t SET c = 0 WHERE c IS NULL;",
            "UPDATE t SET c = 0 WHERE (c IS NULL AND archived);",
            "DELETE FROM t;",
        ] {
            assert_eq!(rules(sql), [UNBOUNDED_DML], "{sql}");
        }
        for sql in [
            "UPDATE t SET c = 0 WHERE id BETWEEN 1 AND 10000;",
            "UPDATE t SET c = 0 WHERE c IS NULL AND id < 10000;",
            "DELETE FROM t WHERE id IN (SELECT id FROM t WHERE c IS NULL LIMIT 1000);",
            "DELETE FROM t WHERE id = 'x';",
            "CREATE TABLE t (c int);\nUPDATE t SET c = 0;",
        ] {
            assert!(rules(sql).is_empty(), "{sql}: {:?}", rules(sql));
        }
    }

    #[test]
    fn lock_timeout_missing_where_the_default_is_off() {
        let alter = "ALTER TABLE t ADD COLUMN c text;";
        // The file turns the guard off itself.
        assert_eq!(
            hits(&format!("-- lock_timeout: 0\n{alter}")),
            [(LOCK_TIMEOUT, 2)]
        );
        assert!(rules(&format!("-- lock_timeout: 10s\n{alter}")).is_empty());
        assert!(rules(alter).is_empty());

        // The engine's default is off (config): every file needs its own.
        let off = Options {
            engine_lock_timeout_off: true,
        };
        let found = |sql: &str| -> Vec<&'static str> {
            lint_with(&[("1_x.sql", sql)], off)
                .findings
                .iter()
                .map(|f| f.rule)
                .collect()
        };
        assert_eq!(found(&format!("{alter}\n{alter}")), [LOCK_TIMEOUT]);
        assert!(found(&format!("-- lock_timeout: 5s\n{alter}")).is_empty());
        assert!(found(&format!("SET lock_timeout = '5s';\n{alter}")).is_empty());
        assert_eq!(
            found(&format!(
                "SET lock_timeout = '5s';\nRESET lock_timeout;\n{alter}"
            )),
            [LOCK_TIMEOUT]
        );
        // Only new tables: nothing to wait for.
        assert!(found("CREATE TABLE t (c int);\nCREATE INDEX i ON t (c);").is_empty());
    }

    #[test]
    fn config_lock_timeout_is_read_from_the_migrations_section() {
        assert_eq!(
            config_lock_timeout_off("[migrations]\nlock_timeout = \"0s\"\n"),
            Some(true)
        );
        assert_eq!(
            config_lock_timeout_off("[migrations]\nlock_timeout = \"5s\" # guard\n"),
            Some(false)
        );
        assert_eq!(
            config_lock_timeout_off("[other]\nlock_timeout = \"0s\"\n"),
            None
        );

        // Layers: the later file that sets it wins; a layer that does not set it changes nothing.
        let off = "[migrations]\nlock_timeout = \"0s\"\n";
        let on = "[migrations]\nlock_timeout = \"5s\"\n";
        assert!(layered_lock_timeout_off([on, off]));
        assert!(!layered_lock_timeout_off([off, on]));
        assert!(layered_lock_timeout_off([off, "[server]\nport = 1\n"]));
        assert!(!layered_lock_timeout_off(Vec::<String>::new()));
    }

    #[test]
    fn unparsable_statements_warn_and_the_rest_is_still_linted() {
        let found = hits("FROBNICATE t;\nDROP TABLE t;\n");
        assert_eq!(found, [(PARSE_ERROR, 1), (DROP_TABLE, 2)]);
        let report = lint(&[("1_x.sql", "FROBNICATE t;")]);
        assert_eq!(report.findings[0].level, Level::Warn);
        // A file the tokenizer cannot read is reported once and skipped.
        assert_eq!(
            hits("DROP TABLE t;\nSELECT 'unterminated"),
            [(PARSE_ERROR, 2)]
        );
        // A $$ body with semicolons is one statement, not cut at its `;`.
        assert!(
            rules(
                "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1; SELECT 2; $$;\nCREATE TABLE t (c int);"
            )
            .iter()
            .all(|r| *r == PARSE_ERROR)
        );
        assert!(rules("CREATE TABLE t (c int);\nSELECT 1;").is_empty());
    }

    #[test]
    fn allow_comment_needs_a_known_rule_and_a_reason() {
        let report = lint(&[(
            "1_x.sql",
            "-- lint:allow drop-table: nothing reads t since release 41\nDROP TABLE t;",
        )]);
        assert_eq!(report.findings.len(), 1);
        let f = &report.findings[0];
        assert_eq!(f.rule, DROP_TABLE);
        assert_eq!(
            f.allowed.as_deref(),
            Some("nothing reads t since release 41")
        );
        assert!(!f.is_deny() && !f.is_warn());
        assert_eq!(report.denies(), 0);
        assert_eq!(report.allowed(), 1);

        // Without a reason: the allow is itself an error, and the finding stays.
        let report = lint(&[("1_x.sql", "-- lint:allow drop-table\nDROP TABLE t;")]);
        let found: Vec<_> = report
            .findings
            .iter()
            .map(|f| (f.rule, f.line, f.is_deny()))
            .collect();
        assert_eq!(found, [(INVALID_ALLOW, 1, true), (DROP_TABLE, 2, true)]);
        let report = lint(&[("1_x.sql", "-- lint:allow drop-table:   \nDROP TABLE t;")]);
        assert_eq!(report.denies(), 2);

        // Unknown rule.
        assert_eq!(
            rules("-- lint:allow drop-everything: sure\nSELECT 1;"),
            [INVALID_ALLOW]
        );
        // An allow covers its own file only.
        let report = lint(&[
            (
                "1_a.sql",
                "-- lint:allow drop-table: ok here\nDROP TABLE a;",
            ),
            ("2_b.sql", "DROP TABLE b;"),
        ]);
        assert_eq!(report.denies(), 1);
        assert_eq!(report.findings[1].file, "2_b.sql");
    }

    #[test]
    fn down_files_are_not_linted() {
        let report = lint(&[
            ("1_a.up.sql", "CREATE TABLE a (c int);"),
            ("1_a.down.sql", "DROP TABLE a;\nDROP TABLE other;"),
        ]);
        assert!(report.findings.is_empty(), "{report}");
        assert_eq!(report.files, 1);
    }

    #[test]
    fn severity_file_sets_levels_and_rejects_unknown_rules_and_levels() {
        let s = Severities::parse(
            CONFIG_FILE,
            "# comment\n[rules]\ndrop-table = \"warn\"\nunbounded-dml = \"deny\" # stricter\ntruncate = \"off\"\n",
        )
        .expect("valid");
        assert_eq!(s.level(DROP_TABLE), Level::Warn);
        assert_eq!(s.level(UNBOUNDED_DML), Level::Deny);
        assert_eq!(s.level(CREATE_INDEX), Level::Deny);
        let sources = [Source {
            file: "1_x.sql",
            sql: "DROP TABLE t;\nTRUNCATE u;",
        }];
        let report = lint_set(&sources, &s, Options::default());
        assert_eq!(report.findings.len(), 1);
        assert!(report.findings[0].is_warn());

        let e = Severities::parse(CONFIG_FILE, "[rules]\ndrop-tables = \"warn\"\n").unwrap_err();
        assert!(e.starts_with("migration-lint.toml:2: unknown rule"), "{e}");
        let e = Severities::parse(CONFIG_FILE, "drop-table = \"error\"\n").unwrap_err();
        assert!(e.starts_with("migration-lint.toml:1: unknown level"), "{e}");
        let e = Severities::parse(CONFIG_FILE, "invalid-allow = \"off\"\n").unwrap_err();
        assert!(e.contains("unknown rule"), "{e}");
    }

    #[test]
    fn rendering_names_file_line_rule_why_and_fix() {
        let report = lint(&[("7_x.sql", "\nCREATE INDEX i ON t (c);")]);
        let line = report.findings[0].render("migrations/");
        assert!(
            line.starts_with(
                "migrations/7_x.sql:2: create-index-not-concurrent: CREATE INDEX i on live table t"
            ),
            "{line}"
        );
        assert!(
            line.contains("blocks every write")
                && line.contains("instead: use CREATE INDEX CONCURRENTLY")
        );
        assert!(!line.contains('\n'));
        assert_eq!(
            report.summary(),
            "1 deny, 0 warn, 0 allowed in 1 migration file(s)"
        );
    }

    #[test]
    fn every_rule_is_documented_once() {
        let ids: BTreeSet<_> = RULES.iter().map(|r| r.id).collect();
        assert_eq!(ids.len(), RULES.len());
        let docs = include_str!("../../docs/migration-lint.md");
        for r in RULES {
            assert!(
                docs.contains(&format!("`{}`", r.id)),
                "{} not in the docs",
                r.id
            );
        }
    }
}
