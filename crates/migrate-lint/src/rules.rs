//! The rules: their ids, default levels and texts, and which of squawk's rules reports as which.

use squawk_linter::Rule as Squawk;

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

    pub(super) fn parse(s: &str) -> Option<Self> {
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

/// A rule's default level in a down file. A down file runs in a rollback: in an emergency,
/// under load, so the rules about locks and rewrites keep their level (narrowing a column there
/// rewrites the table). Dropping or renaming back what its up file made is what a down file is
/// for, and the release it restores does not use it: those rules are off.
pub fn down_default(id: &str) -> Level {
    match id {
        DROP_COLUMN | DROP_TABLE | DROP_VIEW | DROP_FUNCTION | RENAME => Level::Off,
        _ => rule(id).map_or(Level::Deny, |r| r.default),
    }
}

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
