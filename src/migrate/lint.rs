//! The migration safety lint: dangerous DDL is reported at build time, before it reaches
//! production.
//!
//! Like `manifest.rs`, this file is compiled twice: by `build.rs` (through `#[path]`, next to
//! `manifest`), which lints `migrations/` on every build, and by the library, which runs the same
//! rules for `server migrate lint [DIR]`. It therefore depends on `std`, squawk's crates and
//! `super::manifest` only, never on `crate::`.
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
//! What is linted: the up side of every migration (`.up.sql` and simple `.sql` files), in
//! version order. Down files are not linted: they run only in a deliberate rollback and exist to
//! drop what their up file created, so the live-traffic rules would flag every one of them.
//!
//! "Live" table: a table that exists before the migration file runs, i.e. any table the file
//! did not create itself (a table created by an earlier migration is in production and serving
//! traffic). A table created by the same file is empty and unseen by the running release, so
//! the rules about locks and the previous release skip it. Names are compared by their last
//! part (`public.t` and `t` are one table), case-folded unless quoted. Because the set is read
//! in order, the lint also knows each column's type from the earlier files, which is what tells
//! a binary-coercible `ALTER COLUMN … TYPE` (no rewrite) from one that rewrites the table.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use squawk_linter::{Linter, Rule as Squawk, Violation};
use squawk_syntax::ast::{self, AstNode};
use squawk_syntax::{SourceFile, SyntaxKind, SyntaxNode};

use super::duration::{Bare, Span};
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
pub const DROP_VIEW: &str = "drop-view";
pub const DROP_FUNCTION: &str = "drop-function";
pub const RENAME: &str = "rename";
pub const TRUNCATE: &str = "truncate";
pub const VACUUM_FULL: &str = "vacuum-full";
pub const CLUSTER: &str = "cluster";
pub const REINDEX: &str = "reindex-not-concurrent";
pub const TRANSACTION_NESTING: &str = "transaction-nesting";
pub const CREATE_TRIGGER: &str = "create-trigger";
pub const DROP_INDEX: &str = "drop-index-not-concurrent";
pub const DETACH_PARTITION: &str = "detach-partition-not-concurrent";
pub const REQUIRED_FIELD: &str = "add-column-required";
pub const LOCK_TABLE: &str = "lock-table";
pub const UNBOUNDED_DML: &str = "unbounded-dml";
pub const LOCK_TIMEOUT: &str = "lock-timeout-missing";
pub const IDENTIFIER_TOO_LONG: &str = "identifier-too-long";
pub const BAN_CHAR_FIELD: &str = "ban-char-field";
pub const PREFER_TIMESTAMPTZ: &str = "prefer-timestamptz";
pub const PREFER_TEXT_FIELD: &str = "prefer-text-field";
pub const PREFER_BIGINT: &str = "prefer-bigint-over-int";
pub const PREFER_IDENTITY: &str = "prefer-identity";
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
        why: "a volatile default (or serial, identity, stored generated column) rewrites the whole table under an ACCESS EXCLUSIVE lock; a non-volatile one (a constant, now(), to_timestamp(0)) is evaluated once and rewrites nothing",
        fix: "add the column without a default (or with a non-volatile one), set the default in a later statement, and backfill in batches",
    },
    RuleInfo {
        id: COLUMN_TYPE,
        default: Level::Deny,
        why: "a type change that is not binary-coercible (e.g. int → bigint, varchar(n) narrowing, anything to char(n)) rewrites the table and its indexes under an ACCESS EXCLUSIVE lock, and the previous release may not read the new type",
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
        why: "adding a UNIQUE, PRIMARY KEY or EXCLUDE constraint builds its index under an ACCESS EXCLUSIVE lock, blocking reads and writes for the whole build",
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
        id: DROP_VIEW,
        default: Level::Deny,
        why: "the release still serving during a rolling deploy may query the view and starts failing",
        fix: "CREATE OR REPLACE VIEW (or drop and re-create it in the same transactional migration); drop it only once no release uses it, with an allow comment saying so",
    },
    RuleInfo {
        id: DROP_FUNCTION,
        default: Level::Deny,
        why: "the release still serving during a rolling deploy (or a trigger, default or view) may call the function and starts failing",
        fix: "CREATE OR REPLACE FUNCTION (or drop and re-create it in the same transactional migration); drop it only once nothing calls it, with an allow comment saying so",
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
        id: REINDEX,
        default: Level::Deny,
        why: "REINDEX without CONCURRENTLY rebuilds the index while blocking every write to the table (and reads that use the index) for the whole rebuild",
        fix: "REINDEX … CONCURRENTLY, alone in a `-- no-transaction` migration",
    },
    RuleInfo {
        id: TRANSACTION_NESTING,
        default: Level::Deny,
        why: "the engine runs a migration and its bookkeeping row in one transaction (or, for `-- no-transaction`, none): a BEGIN/COMMIT/ROLLBACK in the file ends that transaction early or leaves one open",
        fix: "remove the transaction control statements; use `-- no-transaction` for a statement that must run outside a transaction",
    },
    RuleInfo {
        id: CREATE_TRIGGER,
        default: Level::Warn,
        why: "CREATE TRIGGER on a live table takes a SHARE ROW EXCLUSIVE lock (brief, but it blocks writes while it waits behind a long transaction), and the new trigger runs on every write of the release still serving",
        fix: "keep the engine's lock_timeout on, and make sure the trigger function copes with rows written by the previous release",
    },
    RuleInfo {
        id: DROP_INDEX,
        default: Level::Warn,
        why: "DROP INDEX without CONCURRENTLY takes an ACCESS EXCLUSIVE lock on the table (brief, but reads and writes queue behind it while it waits)",
        fix: "DROP INDEX CONCURRENTLY, alone in a `-- no-transaction` migration",
    },
    RuleInfo {
        id: DETACH_PARTITION,
        default: Level::Warn,
        why: "DETACH PARTITION without CONCURRENTLY takes an ACCESS EXCLUSIVE lock on the partitioned table",
        fix: "DETACH PARTITION … CONCURRENTLY, alone in a `-- no-transaction` migration (PostgreSQL 14+)",
    },
    RuleInfo {
        id: REQUIRED_FIELD,
        default: Level::Warn,
        why: "ADD COLUMN … NOT NULL without a default fails on a table that has rows: the migration fails at deploy time",
        fix: "add the column nullable (or with a non-volatile default), backfill, then add the NOT NULL the safe way",
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
        id: IDENTIFIER_TOO_LONG,
        default: Level::Warn,
        why: "PostgreSQL silently truncates identifiers to 63 bytes, so the object gets another name than the one written (and two long names can collide)",
        fix: "use a name of at most 63 bytes",
    },
    RuleInfo {
        id: BAN_CHAR_FIELD,
        default: Level::Warn,
        why: "char(n) pads with spaces, compares surprisingly, and every later change of its length rewrites the table",
        fix: "use text (or varchar(n), which can be widened without a rewrite)",
    },
    RuleInfo {
        id: PREFER_TIMESTAMPTZ,
        default: Level::Warn,
        why: "timestamp without time zone stores a wall-clock time whose meaning depends on the session's TimeZone",
        fix: "use timestamptz",
    },
    RuleInfo {
        id: PREFER_TEXT_FIELD,
        default: Level::Off,
        why: "a varchar(n) limit is a schema change every time it must grow (cheap since widening is binary-coercible, but still a migration)",
        fix: "use text, with a CHECK constraint on length where a limit matters",
    },
    RuleInfo {
        id: PREFER_BIGINT,
        default: Level::Off,
        why: "an int key can run out of values, and int → bigint later rewrites the table",
        fix: "use bigint for keys and counters that grow",
    },
    RuleInfo {
        id: PREFER_IDENTITY,
        default: Level::Off,
        why: "serial creates a sequence with loose ownership and permissions; identity columns are the SQL-standard replacement",
        fix: "use GENERATED BY DEFAULT AS IDENTITY",
    },
    RuleInfo {
        id: PARSE_ERROR,
        default: Level::Warn,
        why: "the lint's PostgreSQL parser could not read the statement, so no rule checked it",
        fix: "review the statement by hand, or allow this rule in the file with the reason",
    },
];

/// The project rule each squawk-linter rule reports as, for the squawk rules this lint runs.
/// Squawk rules not listed are not run; docs/migration-lint.md says why for each.
pub const SQUAWK_RULES: &[(Squawk, &str)] = &[
    (Squawk::RequireConcurrentIndexCreation, CREATE_INDEX),
    (Squawk::AddingFieldWithDefault, VOLATILE_DEFAULT),
    (Squawk::ChangingColumnType, COLUMN_TYPE),
    (Squawk::AddingNotNullableField, SET_NOT_NULL),
    (Squawk::ConstraintMissingNotValid, NOT_VALID),
    (Squawk::AddingForeignKeyConstraint, NOT_VALID),
    (Squawk::DisallowedUniqueConstraint, UNIQUE),
    (Squawk::AddingSerialPrimaryKeyField, UNIQUE),
    (Squawk::BanDropColumn, DROP_COLUMN),
    (Squawk::BanDropTable, DROP_TABLE),
    (Squawk::BanDropView, DROP_VIEW),
    (Squawk::BanDropFunction, DROP_FUNCTION),
    (Squawk::RenamingColumn, RENAME),
    (Squawk::RenamingTable, RENAME),
    (Squawk::BanTruncateCascade, TRUNCATE),
    (Squawk::RequireConcurrentReindex, REINDEX),
    (Squawk::TransactionNesting, TRANSACTION_NESTING),
    (Squawk::BanUncommittedTransaction, TRANSACTION_NESTING),
    (Squawk::RequireConcurrentIndexDeletion, DROP_INDEX),
    (Squawk::RequireConcurrentPartitionDetach, DETACH_PARTITION),
    (Squawk::AddingRequiredField, REQUIRED_FIELD),
    (Squawk::IdentifierTooLong, IDENTIFIER_TOO_LONG),
    (Squawk::BanCharField, BAN_CHAR_FIELD),
    (Squawk::PreferTimestampTz, PREFER_TIMESTAMPTZ),
    (Squawk::PreferTextField, PREFER_TEXT_FIELD),
    (Squawk::PreferBigintOverInt, PREFER_BIGINT),
    (Squawk::PreferIdentity, PREFER_IDENTITY),
];

/// A rule by its id, or by the name of the squawk rule it reports (`ban-drop-column` is
/// `drop-column`), so that a severity file or allow comment written for squawk reads the same.
pub fn rule(id: &str) -> Option<&'static RuleInfo> {
    RULES.iter().find(|r| r.id == id).or_else(|| {
        let ours = SQUAWK_RULES
            .iter()
            .find(|(squawk, _)| squawk.to_string() == id)?
            .1;
        RULES.iter().find(|r| r.id == ours)
    })
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

/// Whether a `lock_timeout` value (a header's, a `SET`'s or a config file's, quotes and all) is
/// zero: the guard off. A value that does not read as a duration is not taken as zero.
fn is_zero_duration(value: &str) -> bool {
    let value = value.trim().trim_matches(|c| c == '\'' || c == '"');
    Span::parse(value, Bare::Millis).is_ok_and(Span::is_zero)
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
    /// Statements read, over all files.
    pub statements: usize,
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
        let (findings, statements) = lint_file(source, severities, options, &mut state);
        report.findings.extend(findings);
        report.statements += statements;
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
    /// (table, column) → the column's type as the set declared it.
    columns: BTreeMap<(String, String), SqlType>,
    /// Index → its table.
    indexes: BTreeMap<String, String>,
}

/// A raw finding before severities and allows are applied. `uncertain` caps a deny rule at
/// warn: the lint suspects but cannot know (e.g. a default calling a function it does not know).
struct Hit {
    line: usize,
    rule: &'static str,
    message: String,
    uncertain: bool,
}

/// Byte offset → 1-based line.
struct Lines(Vec<usize>);

impl Lines {
    fn new(text: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Self(starts)
    }

    fn line(&self, offset: impl Into<u32>) -> usize {
        let offset = offset.into() as usize;
        self.0.partition_point(|&start| start <= offset)
    }
}

struct FileLint<'s> {
    hits: Vec<Hit>,
    /// Tables, views and materialized views created by this file (exempt from the live-traffic
    /// rules).
    created: BTreeSet<String>,
    /// Functions created by this file.
    created_functions: BTreeSet<String>,
    /// Indexes created by this file.
    created_indexes: BTreeSet<String>,
    /// Views and functions created by a later statement of this file, with its index: dropping
    /// one and re-creating it in the same transaction is a replacement, not a removal.
    recreated: Vec<(usize, String)>,
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
) -> (Vec<Finding>, usize) {
    let parse = SourceFile::parse(source.sql);
    let root = parse.syntax_node();
    let lines = Lines::new(source.sql);

    let mut hits = Vec::new();
    let allows = read_allows(&root, &lines, &mut hits);
    let mut error_lines = BTreeSet::new();
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

    let transactional = !source.sql.starts_with(NO_TRANSACTION_MARKER);
    let mut linter = Linter::from(
        SQUAWK_RULES
            .iter()
            .filter(|(_, id)| severities.level(id) != Level::Off)
            .map(|(rule, _)| *rule),
    );
    // squawk's default PostgreSQL version (15): the rules used here read alike from 12 on.
    linter.settings.assume_in_transaction = transactional;
    let violations = linter.lint(&parse, source.sql);

    let stmts: Vec<ast::Stmt> = parse.tree().stmts().collect();
    let mut by_stmt: Vec<Vec<Violation>> = vec![Vec::new(); stmts.len()];
    for v in violations {
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

    let header_timeout = header_settings(source.sql)
        .unwrap_or_default()
        .into_iter()
        .find(|(k, _)| k == "lock_timeout")
        .map(|(_, v)| is_zero_duration(&v));
    let mut lint = FileLint {
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
        lock_timeout_off: header_timeout.unwrap_or(options.engine_lock_timeout_off),
        engine_lock_timeout_off: options.engine_lock_timeout_off,
        lock_timeout_reported: false,
        state,
    };
    for (i, (stmt, violations)) in stmts.iter().zip(by_stmt).enumerate() {
        let line = stmt_line(stmt, &lines);
        lint.concurrently(line, stmt);
        for v in &violations {
            lint.squawk(i, stmt, &root, &lines, v);
        }
        lint.statement(i, line, stmt);
    }

    let mut seen = BTreeSet::new();
    let mut out: Vec<Finding> = lint
        .hits
        .into_iter()
        .filter(|h| seen.insert((h.line, h.rule, h.message.clone())))
        .filter_map(|h| {
            let mut level = severities.level(h.rule);
            if h.uncertain {
                level = level.min(Level::Warn);
            }
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
    (out, stmts.len())
}

/// `-- lint:allow <rule>: <reason>` comments: rule → reason. A comment without a reason, or
/// naming an unknown rule, is an `invalid-allow` hit (always an error); so is squawk's own
/// `-- squawk-ignore`, which squawk would honour without a reason.
fn read_allows(
    root: &SyntaxNode,
    lines: &Lines,
    hits: &mut Vec<Hit>,
) -> BTreeMap<&'static str, String> {
    let mut allows = BTreeMap::new();
    for token in root
        .descendants_with_tokens()
        .filter_map(|e| e.into_token())
        .filter(|t| t.kind() == SyntaxKind::COMMENT)
    {
        let Some(comment) = token.text().strip_prefix("--").map(str::trim) else {
            continue;
        };
        let line = lines.line(token.text_range().start());
        let mut invalid = |message: String| {
            hits.push(Hit {
                line,
                rule: INVALID_ALLOW,
                message,
                uncertain: false,
            })
        };
        if comment.starts_with("squawk-ignore") {
            invalid(
                "squawk's ignore comments are not read here (they carry no reason); write `-- lint:allow <rule>: <reason>`"
                    .to_string(),
            );
            continue;
        }
        let Some(rest) = comment.strip_prefix("lint:allow") else {
            continue;
        };
        let (id, reason) = rest.split_once(':').unwrap_or((rest, ""));
        let (id, reason) = (id.trim(), reason.trim());
        match rule(id) {
            None => invalid(format!(
                "`lint:allow` names unknown rule {id:?}; write `-- lint:allow <rule>: <reason>` with one of: {}",
                RULES.iter().map(|r| r.id).collect::<Vec<_>>().join(", ")
            )),
            Some(_) if reason.is_empty() => invalid(format!(
                "`lint:allow {id}` without a reason; write `-- lint:allow {id}: <why it is safe here>`"
            )),
            Some(info) => {
                allows.insert(info.id, reason.to_string());
            }
        }
    }
    allows
}

/// The line of a statement's first token (not of the comments before it).
fn stmt_line(stmt: &ast::Stmt, lines: &Lines) -> usize {
    first_line(stmt.syntax(), lines)
}

/// The line of a node's first token that is not whitespace or a comment.
fn first_line(node: &SyntaxNode, lines: &Lines) -> usize {
    let start = node
        .descendants_with_tokens()
        .filter_map(|e| e.into_token())
        .find(|t| !t.kind().is_trivia())
        .map_or(node.text_range().start(), |t| t.text_range().start());
    lines.line(start)
}

/// A name's last part, case-folded unless quoted (`public."Users"` → `Users`).
fn name_key(node: &SyntaxNode) -> String {
    let text = node.text().to_string();
    let last = text.rsplit('.').next().unwrap_or("").trim();
    match last.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
        Some(quoted) => quoted.replace("\"\"", "\""),
        None => last.to_lowercase(),
    }
}

fn key_of<N: AstNode>(node: Option<N>) -> Option<String> {
    node.map(|n| name_key(n.syntax()))
}

/// One line of SQL for a message: whitespace collapsed, long text cut.
fn snippet(node: &SyntaxNode) -> String {
    let text = node.text().to_string();
    let words: Vec<&str> = text.split_whitespace().collect();
    let mut s = words.join(" ");
    if s.chars().count() > 90 {
        s = s.chars().take(87).collect::<String>() + "…";
    }
    s.trim_end_matches(';').to_string()
}

fn table_of_alter(at: &ast::AlterTable) -> Option<String> {
    key_of(
        at.table_relation_name()
            .and_then(|r| r.table_name_ref())
            .and_then(|t| t.path_ref()),
    )
}

fn created_view_or_function(stmt: &ast::Stmt) -> Option<String> {
    match stmt {
        ast::Stmt::CreateView(v) => key_of(v.view().and_then(|v| v.path())),
        ast::Stmt::CreateMaterializedView(v) => key_of(v.view().and_then(|v| v.path())),
        ast::Stmt::CreateFunction(f) => key_of(f.name().and_then(|n| n.path())),
        _ => None,
    }
}

impl FileLint<'_> {
    fn hit(&mut self, line: usize, rule: &'static str, message: String) {
        self.hits.push(Hit {
            line,
            rule,
            message,
            uncertain: false,
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

    /// The live tables a statement works on (empty: none, or not a table statement).
    fn live_tables(&self, stmt: &ast::Stmt) -> Vec<String> {
        let tables: Vec<String> = match stmt {
            ast::Stmt::AlterTable(at) => table_of_alter(at).into_iter().collect(),
            ast::Stmt::CreateIndex(ci) => key_of(
                ci.table_relation_name()
                    .and_then(|r| r.table_name_ref())
                    .and_then(|t| t.path_ref()),
            )
            .into_iter()
            .collect(),
            ast::Stmt::DropTable(dt) => dt
                .table_name_refs()
                .filter_map(|t| key_of(t.path_ref()))
                .collect(),
            ast::Stmt::Truncate(t) => t
                .table_list()
                .map(|l| {
                    l.table_relation_names()
                        .filter_map(|r| key_of(r.table_name_ref().and_then(|t| t.path_ref())))
                        .collect()
                })
                .unwrap_or_default(),
            ast::Stmt::DropIndex(di) => {
                return di
                    .index_refs()
                    .filter_map(|i| key_of(i.path_ref()))
                    .filter(|i| !self.created_indexes.contains(i))
                    // An index the set does not know: its table is taken as live.
                    .map(|i| self.state.indexes.get(&i).cloned().unwrap_or(i))
                    .filter(|t| self.is_live(t))
                    .collect();
            }
            ast::Stmt::Reindex(r) => match r.reindex_target() {
                Some(ast::ReindexTarget::ReindexTargetTable(t)) => {
                    key_of(t.table_name_ref().and_then(|t| t.path_ref()))
                        .into_iter()
                        .collect()
                }
                Some(ast::ReindexTarget::ReindexTargetIndex(i)) => {
                    key_of(i.index_ref().and_then(|i| i.path_ref()))
                        .map(|i| self.state.indexes.get(&i).cloned().unwrap_or(i))
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
    fn live_objects(&self, index: usize, stmt: &ast::Stmt) -> Vec<String> {
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
    fn concurrently(&mut self, line: usize, stmt: &ast::Stmt) {
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

    /// A squawk finding, mapped to this project's rule and judged with what the set knows.
    /// Reported at the line of the clause it is about (one action of an ALTER TABLE, one
    /// column of a CREATE TABLE), so that a long statement points at the right line.
    fn squawk(
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
        // The statement's clause the finding is about (e.g. one action of an ALTER TABLE).
        let clause = node
            .ancestors()
            .find(|n| n.parent().as_ref() == Some(stmt.syntax()))
            .unwrap_or_else(|| stmt.syntax().clone());
        let what = snippet(&clause);
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
                let live = self.live_objects(index, stmt);
                if !live.is_empty() {
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
            }
            _ => {
                let live = self.live_tables(stmt);
                let Some(table) = live.first().cloned() else {
                    return;
                };
                let on = format!("on live table {}", live.join(", "));
                match rule {
                    VOLATILE_DEFAULT => {
                        let Some(add) = node.ancestors().find_map(ast::AddColumn::cast) else {
                            return;
                        };
                        if let Some((why, certain)) = default_rewrite(&add) {
                            self.hits.push(Hit {
                                line,
                                rule,
                                message: format!("{what} {on}: {why}"),
                                uncertain: !certain,
                            });
                        }
                    }
                    COLUMN_TYPE => {
                        let Some(alter) = node.ancestors().find_map(ast::AlterColumn::cast) else {
                            // ALTER TYPE … ALTER ATTRIBUTE of a composite type.
                            return self.hit(line, rule, what);
                        };
                        let column = key_of(alter.column_name_ref()).unwrap_or_default();
                        let Some(ast::AlterColumnOption::SetType(set)) = alter.option() else {
                            return;
                        };
                        let to = set
                            .ty()
                            .map(|t| SqlType::parse(&t.syntax().text().to_string()));
                        let from = self.state.columns.get(&(table.clone(), column.clone()));
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
                        self.hit(line, rule, message);
                    }
                    SET_NOT_NULL => {
                        let column = node
                            .ancestors()
                            .find_map(ast::AlterColumn::cast)
                            .and_then(|a| key_of(a.column_name_ref()))
                            .unwrap_or_default();
                        if !self
                            .state
                            .validated_not_null
                            .contains(&(table.clone(), column.clone()))
                        {
                            self.hit(
                                line,
                                rule,
                                format!(
                                    "{what} {on} without a validated CHECK ({column} IS NOT NULL)"
                                ),
                            );
                        }
                    }
                    NOT_VALID => {
                        let mut kinds = node.ancestors().chain(node.descendants());
                        let index_backed = kinds.any(|n| {
                            matches!(
                                n.kind(),
                                SyntaxKind::UNIQUE_CONSTRAINT
                                    | SyntaxKind::PRIMARY_KEY_CONSTRAINT
                                    | SyntaxKind::EXCLUDE_CONSTRAINT
                            )
                        });
                        // A foreign key on a column this statement adds without any DEFAULT
                        // clause: every row is NULL and PostgreSQL skips the validation scan
                        // (checked on PostgreSQL 15: no seq scan; `DEFAULT NULL` does scan).
                        let references = node.ancestors().chain(node.descendants()).any(|n| {
                            matches!(
                                n.kind(),
                                SyntaxKind::REFERENCES_CONSTRAINT
                                    | SyntaxKind::FOREIGN_KEY_CONSTRAINT
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
                            self.hit(line, rule, format!("{what} {on} without NOT VALID"));
                        } else if clause
                            .descendants()
                            .any(|n| n.kind() == SyntaxKind::EXCLUDE_CONSTRAINT)
                        {
                            // squawk has no rule of its own for EXCLUDE: it builds an index too.
                            self.hit(line, UNIQUE, format!("{what} {on}"));
                        }
                    }
                    _ => self.hit(line, rule, format!("{what} {on}")),
                }
            }
        }
    }

    /// This project's own rules, and what the statement tells later statements and files.
    fn statement(&mut self, index: usize, line: usize, stmt: &ast::Stmt) {
        match stmt {
            ast::Stmt::CreateTable(ct) => {
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
                    if let ast::TableArg::TableConstraint(ast::TableConstraint::CheckConstraint(
                        check,
                    )) = &arg
                        && let Some(col) = check.expr().as_ref().and_then(not_null_check_column)
                    {
                        self.state.validated_not_null.insert((table.clone(), col));
                    }
                    for n in arg.syntax().descendants() {
                        let target = ast::ForeignKeyConstraint::cast(n.clone())
                            .and_then(|fk| key_of(fk.table_name_ref()))
                            .or_else(|| {
                                ast::ReferencesConstraint::cast(n).and_then(|r| key_of(r.table()))
                            });
                        if target.is_some_and(|t| t != table && self.is_live(&t)) {
                            references_live = true;
                        }
                    }
                }
                if references_live {
                    self.takes_lock(line, "CREATE TABLE with a foreign key to a live table");
                }
            }
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
            ast::Stmt::CreateIndex(ci) => {
                let table = key_of(
                    ci.table_relation_name()
                        .and_then(|r| r.table_name_ref())
                        .and_then(|t| t.path_ref()),
                );
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
            ast::Stmt::AlterTable(at) => self.alter_table(line, at),
            ast::Stmt::DropTable(_) => {
                let live = self.live_tables(stmt);
                if let ast::Stmt::DropTable(dt) = stmt {
                    for t in dt.table_name_refs().filter_map(|t| key_of(t.path_ref())) {
                        self.state.columns.retain(|(table, _), _| *table != t);
                    }
                }
                if !live.is_empty() {
                    self.takes_lock(line, "DROP TABLE");
                }
            }
            ast::Stmt::DropIndex(_) | ast::Stmt::Reindex(_)
                if !self.live_tables(stmt).is_empty() =>
            {
                self.takes_lock(line, "DROP INDEX / REINDEX");
            }
            ast::Stmt::Truncate(_) => {
                let live = self.live_tables(stmt);
                if !live.is_empty() {
                    let what = snippet(stmt.syntax());
                    for table in &live {
                        self.hit(line, TRUNCATE, format!("{what} on live table {table}"));
                    }
                    self.takes_lock(line, "TRUNCATE");
                }
            }
            ast::Stmt::Lock(lock) => {
                let tables: Vec<String> = lock
                    .relation_list()
                    .into_iter()
                    .flat_map(|l| l.relation_names())
                    .filter_map(|r| key_of(r.relation_name_ref().and_then(|r| r.path_ref())))
                    .filter(|t| self.is_live(t))
                    .collect();
                for table in &tables {
                    self.hit(line, LOCK_TABLE, format!("LOCK TABLE {table}"));
                }
                if !tables.is_empty() {
                    self.takes_lock(line, "LOCK TABLE");
                }
            }
            ast::Stmt::Vacuum(vacuum) if vacuum.is_full() => {
                let tables: Vec<String> = vacuum
                    .table_and_columns_list()
                    .into_iter()
                    .flat_map(|l| l.table_and_columnss())
                    .filter_map(|t| {
                        key_of(
                            t.table_relation_name()
                                .and_then(|r| r.table_name_ref())
                                .and_then(|t| t.path_ref()),
                        )
                    })
                    .collect();
                self.rewrite_all(
                    line,
                    VACUUM_FULL,
                    "VACUUM FULL",
                    &tables,
                    "every table of the database",
                );
            }
            ast::Stmt::Cluster(cluster) => {
                let table =
                    key_of(cluster.table_name_ref().and_then(|t| t.path_ref())).or_else(|| {
                        key_of(
                            cluster
                                .cluster_legacy()
                                .and_then(|l| l.on_path())
                                .and_then(|p| p.table_name_ref())
                                .and_then(|t| t.path_ref()),
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
            ast::Stmt::CreateTrigger(trigger) => {
                let Some(table) = key_of(
                    trigger
                        .on_relation()
                        .and_then(|r| r.relation_name_ref())
                        .and_then(|r| r.path_ref()),
                ) else {
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
            ast::Stmt::DropView(_)
            | ast::Stmt::DropMaterializedView(_)
            | ast::Stmt::DropFunction(_)
                if !self.live_objects(index, stmt).is_empty() =>
            {
                self.takes_lock(line, "DROP VIEW / FUNCTION");
            }
            ast::Stmt::Update(u) => {
                let table = key_of(
                    u.relation_name()
                        .and_then(|r| r.relation_name_ref())
                        .and_then(|r| r.path_ref()),
                );
                if let Some(table) = table
                    && self.is_live(&table)
                    && u.from_clause().is_none()
                {
                    self.unbounded(line, "UPDATE", &table, u.where_clause_or_current_of());
                }
            }
            ast::Stmt::Delete(d) => {
                let table = key_of(
                    d.relation_name()
                        .and_then(|r| r.relation_name_ref())
                        .and_then(|r| r.path_ref()),
                );
                if let Some(table) = table
                    && self.is_live(&table)
                    && d.using_clause().is_none()
                {
                    self.unbounded(line, "DELETE FROM", &table, d.where_clause_or_current_of());
                }
            }
            ast::Stmt::Set(_) | ast::Stmt::Reset(_) => self.lock_timeout_setting(stmt),
            _ => {}
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

    fn unbounded(
        &mut self,
        line: usize,
        verb: &str,
        table: &str,
        bound: Option<ast::WhereClauseOrCurrentOf>,
    ) {
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

    /// `SET [SESSION|LOCAL] lock_timeout …` / `RESET lock_timeout` / `RESET ALL`.
    fn lock_timeout_setting(&mut self, stmt: &ast::Stmt) {
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
                    self.lock_timeout_off = is_zero_duration(value)
                        || (value == "default" && self.engine_lock_timeout_off);
                }
            }
            ["reset", "lock_timeout" | "all", ..] => {
                self.lock_timeout_off = self.engine_lock_timeout_off;
            }
            _ => {}
        }
    }

    fn alter_table(&mut self, line: usize, at: &ast::AlterTable) {
        let Some(table) = table_of_alter(at) else {
            return;
        };
        let live = self.is_live(&table);
        for action in at.actions() {
            match action {
                ast::AlterTableAction::AddColumn(add) => {
                    let (Some(col), Some(ty)) = (key_of(add.column_name()), add.ty()) else {
                        continue;
                    };
                    let ty = SqlType::parse(&ty.syntax().text().to_string());
                    // squawk checks CHECK constraints only in ADD CONSTRAINT; one on a new
                    // column is validated by a scan too (checked on PostgreSQL 15).
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
                    self.state.columns.insert((table.clone(), col), ty);
                }
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
                        let moved: Vec<_> = self
                            .state
                            .columns
                            .iter()
                            .filter(|((t, _), _)| *t == table)
                            .map(|((_, c), ty)| (c.clone(), ty.clone()))
                            .collect();
                        self.state.columns.retain(|(t, _), _| *t != table);
                        for (c, ty) in moved {
                            self.state.columns.insert((new.clone(), c), ty);
                        }
                        if !live {
                            // A new table renamed keeps its exemption under the new name.
                            self.created.insert(new);
                        }
                    }
                }
                ast::AlterTableAction::AddConstraint(add) => {
                    if let Some(ast::Constraint::CheckConstraint(check)) = add.constraint()
                        && let Some(col) = check.expr().as_ref().and_then(not_null_check_column)
                    {
                        let key = (table.clone(), col);
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
}

/// `col IS NOT NULL` (parentheses allowed): the column.
fn not_null_check_column(expr: &ast::Expr) -> Option<String> {
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
fn null_only(e: &ast::Expr) -> bool {
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

/// Functions PostgreSQL marks VOLATILE that show up in defaults: a default calling one is
/// evaluated per row, so adding the column rewrites the table.
const VOLATILE_FUNCTIONS: &[&str] = &[
    "random",
    "random_normal",
    "gen_random_uuid",
    "gen_random_bytes",
    "uuid_generate_v1",
    "uuid_generate_v1mc",
    "uuid_generate_v4",
    "uuidv4",
    "uuidv7",
    "clock_timestamp",
    "timeofday",
    "nextval",
    "currval",
    "lastval",
    "txid_current",
    "pg_current_xact_id",
    "setseed",
];

/// Functions known to be STABLE or IMMUTABLE that show up in defaults: evaluated once when the
/// column is added (PostgreSQL 11+), no rewrite. A function on neither list is unknown: the
/// finding is a warning (it may be volatile), never a deny.
const NON_VOLATILE_FUNCTIONS: &[&str] = &[
    "now",
    "transaction_timestamp",
    "statement_timestamp",
    "to_timestamp",
    "to_date",
    "to_char",
    "to_number",
    "make_date",
    "make_time",
    "make_timestamp",
    "make_timestamptz",
    "make_interval",
    "date_trunc",
    "date_part",
    "extract",
    "timezone",
    "coalesce",
    "nullif",
    "greatest",
    "least",
    "lower",
    "upper",
    "length",
    "concat",
    "concat_ws",
    "format",
    "replace",
    "substring",
    "trim",
    "md5",
    "encode",
    "decode",
    "abs",
    "round",
    "to_jsonb",
    "to_json",
    "jsonb_build_object",
    "jsonb_build_array",
    "json_build_object",
    "json_build_array",
    "array_fill",
    "current_setting",
    "current_database",
    "current_schema",
    "uuid_nil",
    "inet_client_addr",
];

/// Why adding this column rewrites the table (PostgreSQL 11+), and whether the lint is sure.
fn default_rewrite(add: &ast::AddColumn) -> Option<(String, bool)> {
    for constraint in add.constraints() {
        match constraint {
            ast::Constraint::DefaultConstraint(d) => {
                let expr = d.expr()?;
                let mut unknown = None;
                for call in expr.syntax().descendants().filter_map(ast::CallExpr::cast) {
                    let name = call
                        .expr()
                        .map(|e| name_key(e.syntax()))
                        .or_else(|| call.syntax().first_token().map(|t| t.text().to_lowercase()))
                        .unwrap_or_default();
                    if VOLATILE_FUNCTIONS.contains(&name.as_str()) {
                        return Some((
                            format!("{name}() is volatile: evaluated for every row"),
                            true,
                        ));
                    }
                    if !NON_VOLATILE_FUNCTIONS.contains(&name.as_str()) {
                        unknown.get_or_insert(name);
                    }
                }
                if let Some(name) = unknown {
                    return Some((
                        format!(
                            "the lint does not know whether {name}() is volatile; if it is, the table is rewritten"
                        ),
                        false,
                    ));
                }
            }
            ast::Constraint::GeneratedConstraint(g) => {
                let text = g.syntax().text().to_string().to_lowercase();
                if text.contains("identity") {
                    return Some((
                        "an identity column gets one value per row".to_string(),
                        true,
                    ));
                }
                if text.contains("stored") {
                    return Some((
                        "a stored generated column is computed for every row".to_string(),
                        true,
                    ));
                }
                // VIRTUAL (PostgreSQL 18): computed on read, nothing is written.
            }
            _ => {}
        }
    }
    None
}

/// A column type as far as rewrites go: canonical name, type modifiers, array or not.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SqlType {
    name: String,
    mods: Vec<u32>,
    array: bool,
}

impl SqlType {
    fn parse(text: &str) -> Self {
        let mut t = text
            .to_lowercase()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        let mut array = false;
        if let Some(i) = t.find('[') {
            array = true;
            t.truncate(i);
        }
        if let Some(stripped) = t.strip_suffix(" array") {
            array = true;
            t = stripped.to_string();
        }
        let mut mods = Vec::new();
        if let (Some(a), Some(b)) = (t.find('('), t.find(')'))
            && a < b
        {
            mods = t[a + 1..b]
                .split(',')
                .filter_map(|m| m.trim().parse().ok())
                .collect();
            t = format!("{} {}", &t[..a], &t[b + 1..]);
        }
        let t = t.split_whitespace().collect::<Vec<_>>().join(" ");
        let t = t.trim_start_matches("pg_catalog.").trim_matches('"');
        let name = match t {
            "character varying" | "varchar" => "varchar",
            "character" | "char" | "bpchar" => "bpchar",
            "int" | "integer" | "int4" => "int4",
            "smallint" | "int2" => "int2",
            "bigint" | "int8" => "int8",
            "decimal" | "numeric" => "numeric",
            "timestamp" | "timestamp without time zone" => "timestamp",
            "timestamptz" | "timestamp with time zone" => "timestamptz",
            "time" | "time without time zone" => "time",
            "timetz" | "time with time zone" => "timetz",
            "bit varying" | "varbit" => "varbit",
            "double precision" | "float8" => "float8",
            "real" | "float4" => "float4",
            "boolean" | "bool" => "bool",
            "serial" | "serial4" => "serial",
            "bigserial" | "serial8" => "bigserial",
            "smallserial" | "serial2" => "smallserial",
            other => other,
        };
        Self {
            name: name.to_string(),
            mods,
            array,
        }
    }

    fn is_serial(&self) -> bool {
        matches!(self.name.as_str(), "serial" | "bigserial" | "smallserial")
    }

    /// Whether `ALTER COLUMN … TYPE to` keeps the table and its indexes as they are
    /// (binary-coercible, or a widened type modifier). Each case was checked on PostgreSQL:
    /// `pg_relation_filenode` of the table and of an index on the column unchanged.
    fn binary_coercible_to(&self, to: &SqlType) -> bool {
        if self == to {
            return true;
        }
        if self.array || to.array {
            return false;
        }
        // A length or precision limit that only grows (or goes away).
        let widened = |from: &[u32], to: &[u32], unlimited: u32| match (from.first(), to.first()) {
            (_, None) => true,
            (Some(a), Some(b)) => b >= a,
            (None, Some(b)) => *b >= unlimited,
        };
        match (self.name.as_str(), to.name.as_str()) {
            ("varchar", "varchar") | ("varbit", "varbit") => {
                widened(&self.mods, &to.mods, u32::MAX)
            }
            ("varchar", "text") | ("cidr", "inet") | ("xml", "text") => true,
            ("text", "varchar") => to.mods.is_empty(),
            ("numeric", "numeric") => match (self.mods.as_slice(), to.mods.as_slice()) {
                (_, []) => true,
                ([p, rest @ ..], [p2, rest2 @ ..]) => {
                    p2 >= p && rest.first().unwrap_or(&0) == rest2.first().unwrap_or(&0)
                }
                _ => false,
            },
            (a, b)
                if a == b
                    && matches!(
                        a,
                        "timestamp" | "timestamptz" | "time" | "timetz" | "interval"
                    ) =>
            {
                widened(&self.mods, &to.mods, 6)
            }
            _ => false,
        }
    }
}

impl fmt::Display for SqlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        if !self.mods.is_empty() {
            let mods: Vec<String> = self.mods.iter().map(u32::to_string).collect();
            write!(f, "({})", mods.join(","))?;
        }
        if self.array {
            f.write_str("[]")?;
        }
        Ok(())
    }
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
            "ALTER TABLE t ADD COLUMN c uuid DEFAULT uuid_generate_v4();",
            "ALTER TABLE t ADD COLUMN c bigint DEFAULT nextval('s');",
        ] {
            assert_eq!(rules(sql), [VOLATILE_DEFAULT], "{sql}");
            assert_eq!(lint(&[("1_x.sql", sql)]).denies(), 1, "{sql}");
        }
        // A function the lint does not know may be volatile: a warning, never a deny.
        let report = lint(&[(
            "1_x.sql",
            "ALTER TABLE t ADD COLUMN c int DEFAULT my_counter();",
        )]);
        assert_eq!(report.findings.len(), 1);
        assert_eq!(report.findings[0].rule, VOLATILE_DEFAULT);
        assert_eq!(report.findings[0].level, Level::Warn);
        for sql in [
            "ALTER TABLE t ADD COLUMN c timestamptz NOT NULL DEFAULT now();",
            "ALTER TABLE t ADD COLUMN created_at timestamptz NOT NULL DEFAULT to_timestamp(0);",
            "ALTER TABLE t ADD COLUMN c timestamptz DEFAULT CURRENT_TIMESTAMP;",
            "ALTER TABLE t ADD COLUMN c timestamptz DEFAULT now() + interval '1 day';",
            "ALTER TABLE t ADD COLUMN c date DEFAULT CAST('2026-01-01' AS date);",
            "ALTER TABLE t ADD COLUMN c text DEFAULT lower('X');",
            "ALTER TABLE t ADD COLUMN c int GENERATED ALWAYS AS (a + 1) VIRTUAL;",
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

    /// The type before the change comes from the earlier files of the set.
    #[test]
    fn binary_coercible_type_changes_are_not_findings() {
        let create = "CREATE TABLE t (a varchar(64), b varchar(50), c numeric(10,2), d cidr, e xml, f int, g timestamp, h char(10), i text, j timestamptz(3), k varchar(64)[]);";
        let changes = |sql: &str| -> Vec<&'static str> {
            lint(&[("1_a.sql", create), ("2_b.sql", sql)])
                .findings
                .iter()
                .filter(|f| f.file == "2_b.sql")
                .map(|f| f.rule)
                .collect()
        };
        for sql in [
            "ALTER TABLE t ALTER COLUMN a TYPE text;",
            "ALTER TABLE t ALTER COLUMN b TYPE varchar(255);",
            "ALTER TABLE t ALTER COLUMN b TYPE character varying;",
            "ALTER TABLE t ALTER COLUMN c TYPE numeric(12,2);",
            "ALTER TABLE t ALTER COLUMN c TYPE numeric;",
            "ALTER TABLE t ALTER COLUMN d SET DATA TYPE inet;",
            "ALTER TABLE t ALTER COLUMN e TYPE text;",
            "ALTER TABLE t ALTER COLUMN i TYPE varchar;",
            "ALTER TABLE t ALTER COLUMN j TYPE timestamp with time zone;",
            "ALTER TABLE public.t ALTER COLUMN a TYPE varchar(64);",
        ] {
            assert!(changes(sql).is_empty(), "{sql}: {:?}", changes(sql));
        }
        for sql in [
            "ALTER TABLE t ALTER COLUMN b TYPE varchar(20);",
            "ALTER TABLE t ALTER COLUMN c TYPE numeric(12,4);",
            "ALTER TABLE t ALTER COLUMN c TYPE numeric(8,2);",
            "ALTER TABLE t ALTER COLUMN f TYPE bigint;",
            "ALTER TABLE t ALTER COLUMN g TYPE timestamptz;",
            "ALTER TABLE t ALTER COLUMN h TYPE text;",
            "ALTER TABLE t ALTER COLUMN i TYPE varchar(100);",
            "ALTER TABLE t ALTER COLUMN k TYPE text[];",
            "ALTER TABLE t ALTER COLUMN a TYPE text USING a || '';",
            "ALTER TABLE t ALTER COLUMN i TYPE text COLLATE \"C\";",
            // A column the set did not declare: assumed to rewrite.
            "ALTER TABLE t ALTER COLUMN zz TYPE text;",
        ] {
            assert_eq!(changes(sql), [COLUMN_TYPE], "{sql}");
        }
        // The type is followed through changes and renames.
        let report = lint(&[
            ("1_a.sql", create),
            ("2_b.sql", "ALTER TABLE t ALTER COLUMN b TYPE varchar(100);"),
            (
                "3_c.sql",
                "ALTER TABLE t RENAME COLUMN b TO bb;\n-- lint:allow rename: test",
            ),
            ("4_d.sql", "ALTER TABLE t ALTER COLUMN bb TYPE varchar(80);"),
        ]);
        let found: Vec<_> = report
            .findings
            .iter()
            .filter(|f| f.file != "1_a.sql")
            .map(|f| (f.file.as_str(), f.rule))
            .collect();
        assert_eq!(found, [("3_c.sql", RENAME), ("4_d.sql", COLUMN_TYPE)]);
    }

    #[test]
    fn sql_type_widening_matches_postgresql() {
        let ok = |a: &str, b: &str| SqlType::parse(a).binary_coercible_to(&SqlType::parse(b));
        // Each checked on PostgreSQL 15: table and index filenodes unchanged.
        assert!(ok("varchar(64)", "text"));
        assert!(ok("character varying(50)", "varchar(255)"));
        assert!(ok("varchar(50)", "varchar"));
        assert!(ok("text", "varchar"));
        assert!(ok("numeric(10, 2)", "numeric(12,2)"));
        assert!(ok("numeric(10,2)", "numeric"));
        assert!(ok("varbit(8)", "bit varying(16)"));
        assert!(ok("cidr", "inet"));
        assert!(ok("xml", "text"));
        assert!(ok("timestamp(3)", "timestamp(6)"));
        assert!(ok("time(3) without time zone", "time"));
        assert!(ok("interval(3)", "interval(6)"));
        // Each rewrote the table or rebuilt its index there.
        assert!(!ok("varchar(255)", "varchar(50)"));
        assert!(!ok("text", "varchar(100)"));
        assert!(!ok("char(10)", "char(20)"));
        assert!(!ok("char(10)", "text"));
        assert!(!ok("numeric", "numeric(10,2)"));
        assert!(!ok("numeric(10,2)", "numeric(12,4)"));
        assert!(!ok("timestamp", "timestamptz"));
        assert!(!ok("timestamptz", "timestamp"));
        assert!(!ok("timestamp(6)", "timestamp(3)"));
        assert!(!ok("inet", "cidr"));
        assert!(!ok("int", "bigint"));
        assert!(!ok("varchar(64)[]", "text[]"));
        assert!(!ok("json", "jsonb"));
    }

    #[test]
    fn dropping_views_and_functions_the_serving_release_may_use() {
        let earlier = (
            "1_a.sql",
            "CREATE VIEW v AS SELECT 1 AS x;\nCREATE MATERIALIZED VIEW m AS SELECT 1 AS x;\nCREATE FUNCTION f(a int) RETURNS int LANGUAGE sql AS $$ SELECT a $$;",
        );
        let found = |sql: &str| -> Vec<&'static str> {
            lint(&[earlier, ("2_b.sql", sql)])
                .findings
                .iter()
                .map(|f| f.rule)
                .collect()
        };
        assert_eq!(found("DROP VIEW v;"), [DROP_VIEW]);
        assert_eq!(found("DROP MATERIALIZED VIEW IF EXISTS m;"), [DROP_VIEW]);
        assert_eq!(found("DROP FUNCTION f(int);"), [DROP_FUNCTION]);
        // Re-created in the same transaction: a replacement, never missing for the old release.
        assert!(found("DROP VIEW v;\nCREATE VIEW v AS SELECT 2 AS x, 3 AS y;").is_empty());
        assert!(
            found("DROP FUNCTION f(int);\nCREATE FUNCTION f(a int) RETURNS bigint LANGUAGE sql AS $$ SELECT a $$;")
                .is_empty()
        );
        // Created in the same file: nobody uses it yet.
        assert!(found("CREATE VIEW w AS SELECT 1;\nDROP VIEW w;").is_empty());
    }

    #[test]
    fn triggers_on_live_tables_and_transaction_control() {
        let trigger =
            "CREATE TRIGGER t_touch BEFORE UPDATE ON t FOR EACH ROW EXECUTE FUNCTION touch();";
        assert_eq!(rules(trigger), [CREATE_TRIGGER]);
        assert_eq!(lint(&[("1_x.sql", trigger)]).warnings(), 1);
        assert!(rules(&format!("CREATE TABLE t (c int);\n{trigger}")).is_empty());
        assert_eq!(
            rules("BEGIN;\nALTER TABLE t ADD COLUMN c text;\nCOMMIT;"),
            [TRANSACTION_NESTING, TRANSACTION_NESTING]
        );
        assert_eq!(rules("REINDEX TABLE t;"), [REINDEX]);
        assert!(rules("CREATE TABLE t (c int);\nREINDEX TABLE t;").is_empty());
    }

    #[test]
    fn squawk_rule_names_are_aliases() {
        let report = lint(&[(
            "1_x.sql",
            "-- lint:allow ban-drop-column: no release reads t.c since 2026.11\nALTER TABLE t DROP COLUMN c;",
        )]);
        assert_eq!(report.allowed(), 1, "{report}");
        let s = Severities::parse(
            CONFIG_FILE,
            "require-concurrent-index-creation = \"warn\"\n",
        )
        .expect("a squawk name is accepted");
        assert_eq!(s.level(CREATE_INDEX), Level::Warn);
    }

    #[test]
    fn squawk_ignore_comments_are_refused() {
        assert_eq!(
            rules("-- squawk-ignore ban-drop-table\nDROP TABLE t;"),
            [INVALID_ALLOW]
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
        // A new column without a DEFAULT clause is all NULL: no validation scan.
        assert!(rules("ALTER TABLE m ADD COLUMN c bigint REFERENCES c (id);").is_empty());
        for sql in [
            "ALTER TABLE m ADD COLUMN c bigint DEFAULT 1 REFERENCES c (id);",
            "ALTER TABLE m ADD COLUMN c bigint DEFAULT NULL REFERENCES c (id);",
            "ALTER TABLE m ADD COLUMN c int CHECK (c > 0);",
        ] {
            assert_eq!(rules(sql), [NOT_VALID], "{sql}");
        }
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
        // Dropping an index is brief: a warning, and none for an index made in the same file.
        assert_eq!(rules("DROP INDEX i;"), [DROP_INDEX]);
        assert!(
            rules("CREATE TABLE t (c int);\nCREATE INDEX i ON t (c);\nDROP INDEX i;").is_empty()
        );
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
        // The parser reads on after an unterminated string: what came before is still linted.
        assert_eq!(
            hits("DROP TABLE t;\nSELECT 'unterminated"),
            [(DROP_TABLE, 1), (PARSE_ERROR, 2)]
        );
        // A $$ body with semicolons is one statement, not cut at its `;`.
        assert!(
            rules(
                "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1; SELECT 2; $$;\nCREATE TABLE t (c int);"
            )
            .is_empty()
        );
        // Statements the previous (general-purpose) parser could not read.
        for sql in [
            "ALTER SEQUENCE t_id_seq OWNED BY t.id;",
            "CREATE FUNCTION f() RETURNS trigger LANGUAGE plpgsql VOLATILE COST 100 AS $$ BEGIN NEW.x := 1; RETURN NEW; END; $$;",
            "CREATE FUNCTION g(a int) RETURNS int LANGUAGE sql IMMUTABLE PARALLEL SAFE RETURN a + 1;",
            "DO $do$ BEGIN PERFORM 1; END $do$;",
            "CREATE POLICY p ON t USING (owner = current_user);",
            "ALTER TYPE mood ADD VALUE IF NOT EXISTS 'meh' BEFORE 'sad';",
            "CREATE TABLE p1 PARTITION OF p FOR VALUES FROM (1) TO (10);",
            "COMMENT ON COLUMN t.c IS $$it's here$$;",
            "GRANT USAGE, SELECT ON SEQUENCE s TO reporting;",
        ] {
            assert!(rules(sql).is_empty(), "{sql}: {:?}", rules(sql));
        }
        assert!(rules("CREATE TABLE t (c int);\nSELECT 1;").is_empty());
        // Statements with nothing between them: each finding stays with its own statement.
        assert_eq!(
            rules("CREATE TABLE a (c int);DROP TABLE b;DROP TABLE a;"),
            [DROP_TABLE]
        );
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
                "migrations/7_x.sql:2: create-index-not-concurrent: CREATE INDEX i ON t (c) on live table t"
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
        for (squawk, ours) in SQUAWK_RULES {
            assert!(ids.contains(ours), "{squawk} maps to unknown rule {ours}");
        }
        let docs = include_str!("../../docs/migration-lint.md");
        for r in RULES {
            assert!(
                docs.contains(&format!("`{}`", r.id)),
                "{} not in the docs",
                r.id
            );
        }
        for (squawk, _) in SQUAWK_RULES {
            assert!(
                docs.contains(&format!("`{squawk}`")),
                "squawk's {squawk} not in the docs"
            );
        }
    }
}
