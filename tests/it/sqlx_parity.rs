//! This project's reading of a migration directory against sqlx 0.9's own, on generated
//! directories (differential, property-based) and on the database (rows, rollback, `sqlx.toml`).
//!
//! The claim under test: whatever `sqlx::migrate::Migrator::new(dir)` accepts, the build accepts
//! with the same versions, descriptions, types, `no_tx` flags, SQL and checksums, except the sets
//! that would break an invariant when they run (two files for one version and direction, simple
//! and `.up.sql` files for one version), which are refused; whatever sqlx refuses, the build
//! refuses too.

use std::collections::BTreeMap;
use std::path::Path;

use agent_backend::migrate::manifest::{Manifest, MigrationKind, NoteKind, Rule};
use agent_backend::migrate::{
    MigrateError, MigrateOptions, MigrationSet, Migrator, SourceError, read_dir, sqlx_toml,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use sqlx::migrate::{Migration, MigrationType, ResolveConfig, ResolveWith};

use crate::support::{SetDir, TestDb};

/// One migration as both sides describe it: (version, type) identifies it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Row {
    description: Option<String>,
    sql: String,
    checksum: Vec<u8>,
    no_tx: bool,
}

type Rows = BTreeMap<(i64, MigrationType), Row>;

fn sqlx_rows(migrations: &[Migration]) -> Result<Rows, String> {
    let mut rows = Rows::new();
    for m in migrations {
        let row = Row {
            description: Some(m.description.to_string()),
            sql: m.sql.as_str().to_string(),
            checksum: m.checksum.to_vec(),
            no_tx: m.no_tx,
        };
        if rows.insert((m.version, m.migration_type), row).is_some() {
            return Err(format!(
                "sqlx read two {:?} {}",
                m.migration_type, m.version
            ));
        }
    }
    Ok(rows)
}

fn our_rows(manifest: &Manifest) -> Rows {
    let mismatched: Vec<&str> = manifest
        .notes
        .iter()
        .filter(|n| matches!(n.kind, NoteKind::DescriptionMismatch { .. }))
        .map(|n| n.file.as_str())
        .collect();
    let mut rows = Rows::new();
    for spec in &manifest.specs {
        let ty = match spec.kind {
            MigrationKind::Simple => MigrationType::Simple,
            MigrationKind::Reversible => MigrationType::ReversibleUp,
        };
        let script_row = |s: &agent_backend::migrate::Script, description: Option<String>| Row {
            description,
            sql: s.sql.clone(),
            checksum: s.checksum.to_vec(),
            no_tx: s.no_tx,
        };
        rows.insert(
            (spec.version, ty),
            script_row(&spec.up, Some(spec.description.clone())),
        );
        if let Some(down) = &spec.down {
            // The down file's own description is not kept (the up's is recorded); where they
            // differ, a note says so and the comparison below checks sqlx saw them differ.
            let description =
                (!mismatched.contains(&down.file.as_str())).then(|| spec.description.clone());
            rows.insert(
                (spec.version, MigrationType::ReversibleDown),
                script_row(down, description),
            );
        }
    }
    for lone in &manifest.lone_downs {
        rows.insert(
            (lone.version, MigrationType::ReversibleDown),
            Row {
                description: Some(lone.description.clone()),
                sql: lone.script.sql.clone(),
                checksum: lone.script.checksum.to_vec(),
                no_tx: lone.script.no_tx,
            },
        );
    }
    rows
}

/// How one generated directory came out.
#[derive(Debug, Default)]
struct Tally {
    both_accept: usize,
    both_refuse: usize,
    stricter: usize,
    notes: usize,
}

fn compare(
    dir: &Path,
    toml: Option<&str>,
    rt: &tokio::runtime::Runtime,
    tally: &mut Tally,
) -> Result<(), TestCaseError> {
    let config = sqlx_toml::parse(toml).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let mut resolve = ResolveConfig::new();
    resolve.ignore_chars(config.ignored_chars.iter().copied());
    let theirs = rt
        .block_on(sqlx::migrate::Migrator::new(ResolveWith(
            dir.to_path_buf(),
            resolve,
        )))
        .map(|m| m.iter().cloned().collect::<Vec<_>>());
    let ours = read_dir(dir, &config);
    match (theirs, ours) {
        (Ok(theirs), Ok(ours)) => {
            let theirs = sqlx_rows(&theirs).map_err(TestCaseError::fail)?;
            let ours_rows = our_rows(&ours);
            prop_assert_eq!(theirs.len(), ours_rows.len(), "same migrations");
            for (key, our) in &ours_rows {
                let their = theirs.get(key);
                prop_assert!(their.is_some(), "sqlx did not read {:?}", key);
                let their = their.expect("checked");
                prop_assert_eq!(&our.sql, &their.sql, "{:?}", key);
                prop_assert_eq!(&our.checksum, &their.checksum, "{:?}", key);
                prop_assert_eq!(our.no_tx, their.no_tx, "{:?}", key);
                match &our.description {
                    Some(d) => prop_assert_eq!(Some(d), their.description.as_ref(), "{:?}", key),
                    None => {
                        let up = theirs
                            .get(&(key.0, MigrationType::ReversibleUp))
                            .or_else(|| theirs.get(&(key.0, MigrationType::Simple)));
                        prop_assert_ne!(
                            up.and_then(|u| u.description.as_ref()),
                            their.description.as_ref(),
                            "a mismatch note where sqlx saw the same description"
                        );
                    }
                }
            }
            tally.both_accept += 1;
            tally.notes += ours.notes.len();
        }
        (Err(theirs), Err(SourceError::Invalid(errors))) => {
            let message = theirs.to_string();
            // sqlx stops at the first bad file it meets (in directory order); the build names
            // every broken file, so it names that one too (perhaps for another of its faults).
            prop_assert!(
                errors.iter().any(|e| {
                    message.contains(&format!("\"{}\"", e.file))
                        || message.contains(&format!("/{}:", e.file))
                }),
                "sqlx refused ({message}); ours named other files: {errors:?}"
            );
            tally.both_refuse += 1;
        }
        (Ok(theirs), Err(SourceError::Invalid(errors))) => {
            // Only the documented stricter refusals, each justified by what sqlx read.
            for e in &errors {
                let count = |version: i64, ty: MigrationType| {
                    theirs
                        .iter()
                        .filter(|m| m.version == version && m.migration_type == ty)
                        .count()
                };
                let justified = match &e.rule {
                    Rule::DuplicateVersion { version, .. } => [
                        MigrationType::Simple,
                        MigrationType::ReversibleUp,
                        MigrationType::ReversibleDown,
                    ]
                    .into_iter()
                    .any(|ty| count(*version, ty) > 1),
                    Rule::MixedKinds { .. } => theirs.iter().any(|m| {
                        m.migration_type == MigrationType::Simple
                            && count(m.version, MigrationType::ReversibleUp) > 0
                    }),
                    _ => false,
                };
                prop_assert!(justified, "refused what sqlx runs: {}", e);
            }
            tally.stricter += 1;
        }
        (Err(theirs), Ok(_)) => {
            return Err(TestCaseError::fail(format!(
                "sqlx refused ({theirs}) what the build accepts"
            )));
        }
        (_, Err(e)) => return Err(TestCaseError::fail(format!("reading failed: {e}"))),
    }
    Ok(())
}

fn version() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        10 => prop::sample::select(vec!["1", "2", "3", "4", "20261126093000"]),
        3 => prop::sample::select(vec!["01", "002", "+3", "9223372036854775807"]),
        1 => prop::sample::select(vec!["0", "-4", "9223372036854775808", "v1", "", " 1"]),
    ]
}

fn description() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "create_users",
        "add-index",
        "v1.2_fix",
        "ünïcødé_名前",
        "a__b",
        "",
        "x.sql",
        "x.up",
        "dots.and-dashes_here",
    ])
}

fn suffix() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        12 => prop::sample::select(vec![".sql", ".up.sql", ".down.sql"]),
        2 => prop::sample::select(vec![".txt", ".SQL", ".sql.bak", ".up.sql.sql", ".down.sql.sql"]),
    ]
}

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        12 => (version(), description(), suffix()).prop_map(|(v, d, s)| format!("{v}_{d}{s}")),
        1 => prop::sample::select(vec![
            "README.md",
            "nounderscore.sql",
            ".gitkeep",
            ".hidden_x.sql",
            "_leading.sql",
            "schema.snapshot",
        ])
        .prop_map(String::from),
    ]
}

fn content() -> impl Strategy<Value = Vec<u8>> {
    prop::sample::select(vec![
        &b""[..],
        b"   \n\t\n",
        b"-- nothing to undo\n",
        b"CREATE TABLE t (id int);\n",
        b"CREATE TABLE t (id int);\r\nCREATE INDEX t_id ON t (id);\r\n",
        b"\xef\xbb\xbfCREATE TABLE t (id int);\n",
        b"\xef\xbb\xbf-- no-transaction\nCREATE INDEX CONCURRENTLY i ON t (id);\n",
        b"-- no-transaction\nCREATE INDEX CONCURRENTLY i ON t (id);\n",
        b"--no-transaction\nCREATE INDEX i ON t (id);\n",
        b"-- no-transactional\nSELECT 1;\n",
        b" -- no-transaction\nSELECT 1;\n",
        b"\n-- no-transaction\nSELECT 1;\n",
        b"-- no-transaction\r\nSELECT 1;\r\n",
        b"-- lock_timeout: 5s\nALTER TABLE t ADD COLUMN c int;\n",
        b"SELECT 'caf\xc3\xa9 \t tab';\n",
        b"SELECT 'caf\xe9';\n",
        b"CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1; $$;\n",
    ])
    .prop_map(<[u8]>::to_vec)
}

fn directory() -> impl Strategy<Value = BTreeMap<String, Vec<u8>>> {
    prop::collection::btree_map(name(), content(), 0..8)
}

/// sqlx.toml variants: none, CR ignored (the CRLF answer), and sqlx's documented whitespace set.
const TOMLS: [Option<&str>; 3] = [
    None,
    Some("[migrate]\nignored-chars = [\"\\r\"]\n"),
    Some("[migrate]\nignored-chars = [\" \", \"\\t\", \"\\r\", \"\\n\", \"\\uFEFF\"]\n"),
];

#[test]
fn generated_directories_read_like_sqlx_reads_them() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut total = Tally::default();
    for toml in TOMLS {
        let tally = std::cell::RefCell::new(Tally::default());
        let mut runner = TestRunner::new(Config {
            cases: 1500,
            failure_persistence: None,
            ..Config::default()
        });
        runner
            .run(&directory(), |files| {
                let dir = tempfile::tempdir().unwrap();
                for (name, bytes) in &files {
                    std::fs::write(dir.path().join(name), bytes).unwrap();
                }
                compare(dir.path(), toml, &rt, &mut tally.borrow_mut())
            })
            .unwrap_or_else(|e| panic!("with sqlx.toml {toml:?}: {e}"));
        let tally = tally.into_inner();
        total.both_accept += tally.both_accept;
        total.both_refuse += tally.both_refuse;
        total.stricter += tally.stricter;
        total.notes += tally.notes;
    }
    eprintln!("sqlx parity over 4500 directories: {total:?}");
    // Every outcome must have been exercised, or the generator has gone blind.
    assert!(total.both_accept > 1000, "{total:?}");
    assert!(total.both_refuse > 100, "{total:?}");
    assert!(total.stricter > 100, "{total:?}");
    assert!(total.notes > 1000, "{total:?}");
}

#[test]
fn realistic_edge_cases_read_like_sqlx() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = SetDir::new(&[
        ("20220101000000_init.up.sql", "CREATE TABLE a (id int);\n"),
        ("20220101000000_init.down.sql", ""),
        (
            "20220102000000_add_b.up.sql",
            "CREATE TABLE b (id int);\r\n",
        ),
        ("20220103000000_seed.sql", "INSERT INTO a VALUES (1);\n"),
        (
            "20220104000000_idx.up.sql",
            "-- no-transaction\nCREATE INDEX CONCURRENTLY a_id ON a (id);\n",
        ),
        (
            "20220104000000_idx.down.sql",
            "-- no-transaction\nDROP INDEX CONCURRENTLY a_id;\n",
        ),
        ("README.md", "# migrations\n"),
    ]);
    for toml in TOMLS {
        let mut tally = Tally::default();
        compare(dir.dir.path(), toml, &rt, &mut tally).unwrap();
        assert_eq!(tally.both_accept, 1);
    }
}

fn opts() -> MigrateOptions {
    MigrateOptions {
        lock_wait_timeout: std::time::Duration::from_secs(30),
        ..MigrateOptions::default()
    }
}

async fn rows_of(db: &TestDb, table: &str) -> Vec<(i64, String, bool, Vec<u8>)> {
    let mut conn = db.connect().await;
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT version, description, success, checksum FROM {table} ORDER BY version"
    )))
    .fetch_all(&mut conn)
    .await
    .unwrap()
}

/// Two empty databases, one migrated by this engine over `set`, the other by sqlx's
/// `migrator` (over the same directory).
async fn migrated_by_both(
    set: &MigrationSet,
    migrator: &sqlx::migrate::Migrator,
) -> (TestDb, TestDb) {
    let ours = TestDb::empty().await;
    let theirs = TestDb::empty().await;
    Migrator::new(set, opts())
        .run(&mut ours.connect().await)
        .await
        .unwrap();
    migrator.run(&mut theirs.connect().await).await.unwrap();
    (ours, theirs)
}

async fn relation_exists(db: &TestDb, name: &str) -> bool {
    let mut conn = db.connect().await;
    crate::support::table_exists(&mut conn, name).await
}

#[tokio::test]
async fn empty_down_file_runs_and_rolls_back_like_sqlx() {
    let dir = SetDir::new(&[
        ("1_create_a.up.sql", "CREATE TABLE a (id int);\n"),
        ("1_create_a.down.sql", ""),
        ("2_create_b.up.sql", "CREATE TABLE b (id int);\n"),
        ("2_create_b.down.sql", "DROP TABLE b;\n"),
    ]);
    let set = dir.set();
    let sqlx_migrator = sqlx::migrate::Migrator::new(dir.dir.path()).await.unwrap();

    let (ours, theirs) = migrated_by_both(&set, &sqlx_migrator).await;
    assert_eq!(
        rows_of(&ours, "_sqlx_migrations").await,
        rows_of(&theirs, "_sqlx_migrations").await
    );
    // Each accepts the other's database: nothing to apply, nothing unknown.
    sqlx_migrator.run(&mut ours.connect().await).await.unwrap();
    let report = Migrator::new(&set, opts())
        .run(&mut theirs.connect().await)
        .await
        .unwrap();
    assert!(report.applied.is_empty());

    Migrator::new(&set, opts())
        .rollback(&mut ours.connect().await, 0)
        .await
        .unwrap();
    sqlx_migrator
        .undo(&mut theirs.connect().await, 0)
        .await
        .unwrap();
    for db in [&ours, &theirs] {
        assert!(rows_of(db, "_sqlx_migrations").await.is_empty());
        assert!(
            relation_exists(db, "a").await,
            "the empty down drops nothing"
        );
        assert!(!relation_exists(db, "b").await);
    }
}

#[tokio::test]
async fn up_files_without_down_run_like_sqlx_and_rollback_refuses_to_skip_them() {
    let dir = SetDir::new(&[
        ("1_create_a.up.sql", "CREATE TABLE a (id int);\n"),
        ("1_create_a.down.sql", "DROP TABLE a;\n"),
        ("2_create_b.up.sql", "CREATE TABLE b (id int);\n"),
        ("3_orphan.down.sql", "DROP TABLE nothing;\n"),
    ]);
    let set = dir.set();
    assert_eq!(set.len(), 2);
    let sqlx_migrator = sqlx::migrate::Migrator::new(dir.dir.path()).await.unwrap();
    let (ours, theirs) = migrated_by_both(&set, &sqlx_migrator).await;
    assert_eq!(
        rows_of(&ours, "_sqlx_migrations").await,
        rows_of(&theirs, "_sqlx_migrations").await
    );
    // sqlx's undo silently skips version 2 (no down file) and reverts 1 under it; this binary
    // refuses and changes nothing, since the schema would no longer match the rows.
    let refused = Migrator::new(&set, opts())
        .rollback(&mut ours.connect().await, 0)
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, MigrateError::NoDownMigration { versions } if versions == &[2]),
        "{refused}"
    );
    assert_eq!(rows_of(&ours, "_sqlx_migrations").await.len(), 2);
    assert!(relation_exists(&ours, "a").await);
}

#[tokio::test]
async fn sqlx_toml_table_schemas_and_ignored_chars_match_sqlx() {
    let toml = "[migrate]\ntable-name = \"ops.schema_history\"\ncreate-schemas = [\"ops\"]\nignored-chars = [\"\\r\"]\n";
    let config = sqlx_toml::parse(Some(toml)).unwrap();
    let dir = SetDir::new(&[
        ("1_create_a.up.sql", "CREATE TABLE a (id int);\r\n"),
        ("1_create_a.down.sql", "DROP TABLE a;\r\n"),
        ("2_create_b.sql", "CREATE TABLE b (id int);\n"),
    ]);
    let set = MigrationSet::from_dir_with(dir.dir.path(), &config).unwrap();
    let mut resolve = ResolveConfig::new();
    resolve.ignore_char('\r');
    let mut sqlx_migrator =
        sqlx::migrate::Migrator::new(ResolveWith(dir.dir.path().to_path_buf(), resolve))
            .await
            .unwrap();
    sqlx_migrator.dangerous_set_table_name("ops.schema_history");
    sqlx_migrator.create_schema("ops");

    let (ours, theirs) = migrated_by_both(&set, &sqlx_migrator).await;
    let rows = rows_of(&ours, "ops.schema_history").await;
    assert_eq!(rows, rows_of(&theirs, "ops.schema_history").await);
    assert_eq!(rows.len(), 2);
    assert_eq!(
        rows[0].3,
        agent_backend::migrate::manifest::checksum(b"CREATE TABLE a (id int);\n"),
        "the CR is left out of the checksum"
    );
    for db in [&ours, &theirs] {
        assert!(!relation_exists(db, "public._sqlx_migrations").await);
    }
    sqlx_migrator.run(&mut ours.connect().await).await.unwrap();
    let report = Migrator::new(&set, opts())
        .run(&mut theirs.connect().await)
        .await
        .unwrap();
    assert!(report.applied.is_empty());
    assert!(report.unknown.is_empty());
}
