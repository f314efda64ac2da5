//! `server migrate lint` as a process: no database, the report names file:line, exit 10 on a
//! deny finding, the severity file beside the directory, `--json` parses.

use std::collections::BTreeSet;
use std::path::Path;

use agent_backend::migrate::lint::{self, Options, Severities, Source};

use sqlx::Connection;

use crate::support::{TestDb, json, run_server};

/// Never connected to: `migrate lint` needs no database.
const NO_DB: &str = "postgres://postgres@127.0.0.1:1/none";

/// `<tmp>/migrations/` with `files`, and `<tmp>/migration-lint.toml` when `config` is given.
fn set(files: &[(&str, &str)], config: Option<&str>) -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("migrations");
    std::fs::create_dir(&dir).unwrap();
    for (name, sql) in files {
        std::fs::write(dir.join(name), sql).unwrap();
    }
    if let Some(text) = config {
        std::fs::write(root.path().join("migration-lint.toml"), text).unwrap();
    }
    root
}

fn dir_of(root: &tempfile::TempDir) -> String {
    root.path().join("migrations").display().to_string()
}

const UNSAFE: &[(&str, &str)] = &[
    (
        "1_create_items.sql",
        "CREATE TABLE items (id bigint PRIMARY KEY, name text);\nCREATE INDEX items_name_idx ON items (name);\n",
    ),
    (
        "2_index_items.sql",
        "-- Added later: items is live now.\nCREATE INDEX items_name_idx2 ON items (name);\n",
    ),
    (
        "3_drop_name.sql",
        "-- lint:allow drop-column: no release reads items.name since 2026.11\nALTER TABLE items DROP COLUMN name;\nUPDATE items SET id = id;\n",
    ),
];

const SAFE: &[(&str, &str)] = &[
    (
        "1_create_items.sql",
        "CREATE TABLE items (id bigint PRIMARY KEY, name text);\nCREATE INDEX items_name_idx ON items (name);\n",
    ),
    (
        "2_index_items.sql",
        "-- no-transaction\nCREATE INDEX CONCURRENTLY items_name_idx2 ON items (name);\n",
    ),
];

#[tokio::test]
async fn unsafe_set_exits_10_naming_file_and_line() {
    let root = set(UNSAFE, None);
    let dir = dir_of(&root);
    let out = run_server(NO_DB, &[], &["migrate", "lint", &dir]).await;
    assert_eq!(out.code, Some(10), "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains(&format!(
            "deny    {dir}/2_index_items.sql:2: create-index-not-concurrent: CREATE INDEX items_name_idx2 ON items (name) on live table items"
        )),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains(&format!("allowed {dir}/3_drop_name.sql:2: drop-column")),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains(&format!("warn    {dir}/3_drop_name.sql:3: unbounded-dml"))
    );
    // The same-file index of migration 1 is exempt.
    assert!(!out.stdout.contains("1_create_items.sql"), "{}", out.stdout);
    assert!(
        out.stdout
            .contains("1 deny, 1 warn, 1 allowed in 3 migration file(s) (severities: defaults)"),
        "{}",
        out.stdout
    );

    let out = run_server(NO_DB, &[], &["migrate", "lint", &dir, "--json"]).await;
    assert_eq!(out.code, Some(10));
    let doc = json(&out);
    assert_eq!(doc["ok"], false);
    assert_eq!(doc["deny"], 1);
    assert_eq!(doc["severities"]["create-index-not-concurrent"], "deny");
    let findings = doc["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 3);
    assert_eq!(findings[0]["file"], format!("{dir}/2_index_items.sql"));
    assert_eq!(findings[0]["line"], 2);
    assert_eq!(findings[0]["rule"], "create-index-not-concurrent");
    assert_eq!(findings[0]["level"], "deny");
    assert!(
        findings[0]["fix"]
            .as_str()
            .unwrap()
            .contains("CONCURRENTLY")
    );
    assert_eq!(
        findings[1]["allowed_reason"],
        "no release reads items.name since 2026.11"
    );
}

#[tokio::test]
async fn safe_set_exits_0() {
    let root = set(SAFE, None);
    let out = run_server(NO_DB, &[], &["migrate", "lint", &dir_of(&root), "--json"]).await;
    assert_eq!(out.code, Some(0), "{}\n{}", out.stdout, out.stderr);
    let doc = json(&out);
    assert_eq!(doc["ok"], true);
    assert_eq!(doc["files"], 2);
    assert_eq!(doc["findings"], serde_json::json!([]));
}

#[tokio::test]
async fn severity_file_beside_the_directory_or_given_is_used() {
    let root = set(
        UNSAFE,
        Some("[rules]\ncreate-index-not-concurrent = \"warn\"\nunbounded-dml = \"off\"\n"),
    );
    let dir = dir_of(&root);
    let out = run_server(NO_DB, &[], &["migrate", "lint", &dir, "--json"]).await;
    assert_eq!(out.code, Some(0), "{}\n{}", out.stdout, out.stderr);
    let doc = json(&out);
    assert_eq!(doc["deny"], 0);
    assert_eq!(doc["warn"], 1);
    assert_eq!(doc["findings"][0]["level"], "warn");
    assert!(
        doc["config"]
            .as_str()
            .unwrap()
            .ends_with("migration-lint.toml")
    );

    // --config wins over the file beside the directory; a bad one is exit 3, naming it.
    let bad = root.path().join("bad.toml");
    std::fs::write(&bad, "create-index = \"warn\"\n").unwrap();
    let out = run_server(
        NO_DB,
        &[],
        &[
            "migrate",
            "lint",
            &dir,
            "--config",
            &bad.display().to_string(),
        ],
    )
    .await;
    assert_eq!(out.code, Some(3), "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stderr
            .contains("bad.toml:1: unknown rule \"create-index\""),
        "{}",
        out.stderr
    );
}

#[tokio::test]
async fn engine_lock_timeout_off_in_config_is_followed() {
    let root = set(
        &[("1_x.sql", "ALTER TABLE items ADD COLUMN note text;\n")],
        None,
    );
    let dir = dir_of(&root);
    let on = run_server(NO_DB, &[], &["migrate", "lint", &dir, "--json"]).await;
    assert_eq!(json(&on)["findings"], serde_json::json!([]));
    let off = run_server(
        NO_DB,
        &[("APP_MIGRATIONS__LOCK_TIMEOUT", "0s")],
        &["migrate", "lint", &dir, "--json"],
    )
    .await;
    assert_eq!(off.code, Some(0), "warn only: {}", off.stderr);
    let doc = json(&off);
    assert_eq!(doc["engine_lock_timeout_off"], true);
    assert_eq!(doc["findings"][0]["rule"], "lock-timeout-missing");
}

#[tokio::test]
async fn missing_directory_is_a_usage_error_and_the_embedded_set_passes() {
    let out = run_server(NO_DB, &[], &["migrate", "lint", "/nonexistent/migrations"]).await;
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("/nonexistent/migrations"));

    // The product's own migrations: no deny finding (the build would have failed), and no
    // warning either.
    let out = run_server(NO_DB, &[], &["migrate", "lint", "--json"]).await;
    assert_eq!(out.code, Some(0), "{}\n{}", out.stdout, out.stderr);
    let doc = json(&out);
    assert_eq!(doc["ok"], true);
    assert_eq!(doc["warn"], 0, "{doc}");
    assert!(doc["files"].as_u64().unwrap() >= 3);
    assert!(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("migration-lint.toml")
            .is_file()
    );
}

/// A build step or a shell without secrets: production configuration that cannot fully load
/// (no DATABASE_URL, no API keys) still lints, with a note saying what it read instead.
#[test]
fn lints_without_a_loadable_configuration() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_server"))
        .args(["migrate", "lint", "--json"])
        .env_clear()
        .env("ENVIRONMENT", "production")
        .env(
            "CONFIG_DIR",
            Path::new(env!("CARGO_MANIFEST_DIR")).join("config"),
        )
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("note: "), "{stderr}");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["ok"], true);
}

/// Without a loadable configuration, `migrations.lock_timeout` is still read through the same
/// layers as a full load: `ENVIRONMENT`'s file and the `APP_` variables count, not only the
/// files.
#[test]
fn the_fallback_reads_lock_timeout_through_the_same_layers() {
    let root = set(
        &[("1_x.sql", "ALTER TABLE items ADD COLUMN note text;\n")],
        None,
    );
    let run = |vars: &[(&str, &str)]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_server"))
            .args(["migrate", "lint", &dir_of(&root), "--json"])
            .env_clear()
            .env("ENVIRONMENT", "production")
            .env(
                "CONFIG_DIR",
                Path::new(env!("CARGO_MANIFEST_DIR")).join("config"),
            )
            .envs(vars.iter().copied())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(stderr.contains("note: "), "{stderr}");
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        doc["engine_lock_timeout_off"].clone()
    };
    assert_eq!(run(&[]), false);
    assert_eq!(run(&[("APP_MIGRATIONS__LOCK_TIMEOUT", "0m")]), true);
    assert_eq!(run(&[("APP_MIGRATIONS__LOCK_TIMEOUT", "soon")]), false);
}

/// The corpus files, in version order: (file name, SQL).
fn corpus() -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lint_corpus");
    let mut files: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "sql"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&p).unwrap())
        })
        .collect();
    files.sort();
    files
}

/// The corpus is real PostgreSQL: applied in order to a new database the way sqlx runs it (each
/// file in a transaction unless it starts with `-- no-transaction`), every file succeeds except
/// the one whose expected finding is that PostgreSQL refuses it.
#[tokio::test]
async fn corpus_applies_to_postgresql() {
    let db = TestDb::empty().await;
    let mut conn = db.connect().await;
    for (file, sql) in corpus() {
        let result = if sql.starts_with("-- no-transaction") {
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql.clone()))
                .execute(&mut conn)
                .await
                .map(drop)
        } else {
            let mut tx = conn.begin().await.unwrap();
            match sqlx::raw_sql(sqlx::AssertSqlSafe(sql.clone()))
                .execute(&mut *tx)
                .await
            {
                Ok(_) => tx.commit().await,
                Err(e) => Err(e),
            }
        };
        if sql.contains("-- expect: concurrently-in-transaction") {
            let e = result.expect_err(&file).to_string();
            assert!(
                e.contains("cannot run inside a transaction block"),
                "{file}: {e}"
            );
        } else {
            result.unwrap_or_else(|e| panic!("{file}: {e}"));
        }
    }
}

/// `tests/lint_corpus/`: realistic PostgreSQL migrations (functions with volatility and COST,
/// triggers, DO blocks, sequences, policies, partitions, enums, views, extensions, comments,
/// dollar quoting, grants, generated and identity columns, exclusion constraints), each file
/// stating its expected findings as `-- expect: <rule>[, <rule>]` on the line before the
/// statement or clause. Linted as one set in version order: every statement parses, every
/// expected finding is reported at its line, and nothing else is (so no false deny).
#[test]
fn corpus_findings_are_exactly_the_expected_ones() {
    let files = corpus();
    let sources: Vec<Source<'_>> = files
        .iter()
        .map(|(file, sql)| Source { file, sql })
        .collect();
    let report = lint::lint_set(&sources, &Severities::default(), Options::default());

    let mut expected = BTreeSet::new();
    for (file, sql) in &files {
        let lines: Vec<&str> = sql.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let Some(rules) = line.trim().strip_prefix("-- expect:") else {
                continue;
            };
            let target = (i + 1..lines.len())
                .find(|&j| {
                    let t = lines[j].trim();
                    !t.is_empty() && !t.starts_with("--")
                })
                .unwrap_or_else(|| panic!("{file}:{}: `-- expect:` with nothing after it", i + 1));
            for rule in rules.split(',') {
                let rule = rule.trim();
                assert!(
                    lint::rule(rule).is_some(),
                    "{file}:{}: unknown rule {rule}",
                    i + 1
                );
                expected.insert((file.clone(), target + 1, rule.to_string()));
            }
        }
    }
    let found: BTreeSet<(String, usize, String)> = report
        .findings
        .iter()
        .map(|f| (f.file.clone(), f.line, f.rule.to_string()))
        .collect();

    assert!(
        report.findings.iter().all(|f| f.rule != lint::PARSE_ERROR),
        "parse errors:\n{report}"
    );
    let missing: Vec<_> = expected.difference(&found).collect();
    let unexpected: Vec<_> = found.difference(&expected).collect();
    assert!(
        missing.is_empty() && unexpected.is_empty(),
        "missing: {missing:#?}\nunexpected: {unexpected:#?}\nreport:\n{report}"
    );
    assert_eq!(report.files, files.len());
    assert!(report.statements >= 100, "{} statements", report.statements);
    assert!(report.denies() > 0 && report.allowed() == 2, "{report}");
}

/// `server migrate lint DIR` run from `cwd`, DIR as the user typed it.
fn lint_in(cwd: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_server"))
        .current_dir(cwd)
        .args(["migrate", "lint"])
        .args(args)
        .env("DATABASE_URL", NO_DB)
        .env(
            "CONFIG_DIR",
            Path::new(env!("CARGO_MANIFEST_DIR")).join("config"),
        )
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn paths_are_shown_under_the_directory_given() {
    let root = set(UNSAFE, None);
    let (code, stdout, stderr) = lint_in(root.path(), &["migrations"]);
    assert_eq!(code, Some(10), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("deny    migrations/2_index_items.sql:2: create-index-not-concurrent"),
        "{stdout}"
    );
    std::fs::rename(root.path().join("migrations"), root.path().join("db")).unwrap();
    let (code, stdout, _) = lint_in(root.path(), &["db/", "--json"]);
    assert_eq!(code, Some(10));
    let doc: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(doc["valid"], true);
    assert_eq!(doc["findings"][0]["file"], "db/2_index_items.sql");
}

/// A directory the build would refuse: the reasons name DIR's files, and `--json` still prints
/// one JSON document (exit 10 either way).
#[test]
fn an_invalid_set_is_reported_under_its_directory_and_as_json() {
    let root = set(
        &[
            ("1_a.sql", "CREATE TABLE a (c int);\n"),
            ("1_b.sql", "CREATE TABLE b (c int);\n"),
            ("v2_c.sql", "DROP TABLE c;\n"),
        ],
        None,
    );
    let (code, stdout, stderr) = lint_in(root.path(), &["migrations"]);
    assert_eq!(code, Some(10), "{stdout}\n{stderr}");
    assert!(stderr.contains("server: migrations/1_"), "{stderr}");
    assert!(stderr.contains("server: migrations/v2_c.sql: "), "{stderr}");
    assert!(stderr.contains("nothing was linted"), "{stderr}");

    let elsewhere = tempfile::tempdir().unwrap();
    let dir = root.path().join("migrations").display().to_string();
    let (code, stdout, stderr) = lint_in(elsewhere.path(), &[&dir, "--json"]);
    assert_eq!(code, Some(10), "{stdout}\n{stderr}");
    let doc: serde_json::Value = serde_json::from_str(&stdout).expect("one JSON document");
    assert_eq!(doc["ok"], false);
    assert_eq!(doc["valid"], false);
    let errors = doc["errors"].as_array().unwrap();
    assert!(errors.len() >= 2, "{doc}");
    for e in errors {
        let file = e["file"].as_str().unwrap();
        assert!(file.starts_with(&format!("{dir}/")), "{doc}");
        assert!(!e["message"].as_str().unwrap().is_empty());
    }
    assert!(
        errors
            .iter()
            .any(|e| e["file"] == format!("{dir}/v2_c.sql")),
        "{doc}"
    );
}

/// The corpus through the binary: the report a user sees, exit 10 for its deny findings.
#[test]
fn the_corpus_through_server_migrate_lint() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let (code, stdout, stderr) = lint_in(repo, &["tests/lint_corpus", "--json"]);
    assert_eq!(code, Some(10), "{stderr}");
    let doc: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(doc["valid"], true);
    assert!(doc["statements"].as_u64().unwrap() >= 100);
    let findings = doc["findings"].as_array().unwrap();
    assert!(findings.iter().all(|f| f["rule"] != "parse-error"));
    assert!(findings.iter().all(|f| {
        f["file"]
            .as_str()
            .unwrap()
            .starts_with("tests/lint_corpus/2026")
    }));
}
