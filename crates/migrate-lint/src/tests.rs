//! The lint's behaviour on SQL, rule by rule.

use super::types::SqlType;
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
    assert!(rules("CREATE TABLE t (c int);\nALTER TABLE t ALTER COLUMN c TYPE bigint;").is_empty());
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
        rules("ALTER TABLE m ADD CONSTRAINT m_c_fk FOREIGN KEY (c) REFERENCES c (id) NOT VALID;")
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
    assert!(rules("ALTER TABLE t ADD CONSTRAINT t_c_key UNIQUE USING INDEX t_c_idx;").is_empty());
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
    assert!(rules("CREATE TABLE t (c int);\nCREATE INDEX i ON t (c);\nDROP INDEX i;").is_empty());
}

#[test]
fn renames() {
    assert_eq!(rules("ALTER TABLE t RENAME COLUMN a TO b;"), [RENAME]);
    assert_eq!(rules("ALTER TABLE t RENAME TO u;"), [RENAME]);
    assert!(rules("CREATE TABLE t (a int);\nALTER TABLE t RENAME COLUMN a TO b;").is_empty());
    // A new table renamed stays exempt under its new name.
    assert!(
        rules(
            "CREATE TABLE t_new (a int);\nALTER TABLE t_new RENAME TO u;\nCREATE INDEX i ON u (a);"
        )
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
fn down_files_may_drop_what_they_revert() {
    // drop-table is off in down files (a down file drops what its up file made).
    let report = lint(&[
        ("1_a.up.sql", "CREATE TABLE a (c int);"),
        ("1_a.down.sql", "DROP TABLE a;\nDROP TABLE other;"),
    ]);
    assert!(report.findings.is_empty(), "{report}");
    assert_eq!(report.files, 2);
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
    let docs = include_str!("../../../docs/migration-lint.md");
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

#[test]
fn down_files_are_linted_with_their_own_levels() {
    // Up: a table, then a widening of one of its columns; the downs revert them newest first.
    let report = lint(&[
        (
            "1_t.up.sql",
            "CREATE TABLE t (id bigint PRIMARY KEY, name varchar(50));",
        ),
        (
            "2_wider.up.sql",
            "ALTER TABLE t ALTER COLUMN name TYPE text;",
        ),
        // Narrowing back rewrites the table under ACCESS EXCLUSIVE: denied in a rollback too.
        (
            "2_wider.down.sql",
            "ALTER TABLE t ALTER COLUMN name TYPE varchar(50);",
        ),
        // Dropping what the up file made is what a down file is for.
        ("1_t.down.sql", "DROP TABLE t;"),
    ]);
    let found: Vec<(&str, &str, Level)> = report
        .findings
        .iter()
        .map(|f| (f.file.as_str(), f.rule, f.level))
        .collect();
    assert_eq!(
        found,
        [("2_wider.down.sql", COLUMN_TYPE, Level::Deny)],
        "{report}"
    );
    assert_eq!(report.files, 4);
    // The order a set gives: ups in version order, then downs newest first.
    let set = migrate_source::manifest::build(
        &[
            ("1_a.up.sql", "SELECT 1;"),
            ("1_a.down.sql", "SELECT 2;"),
            ("2_b.up.sql", "SELECT 3;"),
            ("2_b.down.sql", "SELECT 4;"),
        ]
        .map(|(name, sql)| migrate_source::manifest::SourceFile {
            name: name.to_string(),
            bytes: sql.as_bytes().to_vec(),
        }),
        &migrate_source::manifest::ReadOptions::default(),
    )
    .expect("a valid set");
    let order: Vec<&str> = sources(&set.specs).iter().map(|s| s.file).collect();
    assert_eq!(
        order,
        ["1_a.up.sql", "2_b.up.sql", "2_b.down.sql", "1_a.down.sql"]
    );
}
