//! Rolling deploys: `server migrate compat`, the pre-deploy's refusal of a migration that breaks
//! a release still serving, the serving releases' table and heartbeat, and readiness over the
//! instance's own queries. Real PostgreSQL; the binary (or a release over a generated set, for
//! the next release's migrations) as a process.
//!
//! The serving release is either the built binary (it records its own embedded `.sqlx` set) or
//! a release whose queries are described here on the schema it was built against, with sqlx's
//! own describe (what `cargo sqlx prepare` writes), and recorded through `releases::record`.

use std::path::Path;

use agent_backend::queries::{QuerySet, describe_file};
use agent_backend::releases;
use sqlx::{Connection, PgConnection};

use crate::release::Release;
use crate::support::{
    Output, SetDir, TestDb, json, project_dir, rows, run_server, schema_snapshot, spawn_server,
    wait_until,
};

/// The project's migrations plus `extra` files: the next release's set.
pub(crate) fn next_set(extra: &[(&str, &str)]) -> SetDir {
    let set = SetDir::new(&[]);
    for entry in std::fs::read_dir(project_dir().join("migrations")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), set.dir.path().join(entry.file_name())).unwrap();
    }
    for (name, sql) in extra {
        set.write(name, sql);
    }
    set
}

pub(crate) const ERROR: (&str, &str) = ("APP_MIGRATIONS__ON_INCOMPATIBLE", "error");

/// Starts the built server on `db` until it has recorded its release, then stops it: its row
/// stays, heartbeat fresh, as a release still serving during a deploy.
async fn built_release_serving(db: &TestDb) {
    let mut server = spawn_server(&db.url, &[]).await;
    let mut conn = db.connect().await;
    wait_until(
        &mut conn,
        "SELECT to_regclass('_agent_releases') IS NOT NULL",
        "the serving releases' table",
    )
    .await;
    wait_until(
        &mut conn,
        "SELECT count(*) = 1 FROM _agent_releases",
        "the release recorded as serving",
    )
    .await;
    // Recorded exactly as the binary carries it.
    let (hash, version): (String, String) =
        sqlx::query_as("SELECT query_set_hash, version FROM _agent_releases")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(hash, QuerySet::embedded().hash());
    assert_eq!(version, releases::VERSION);
    server.signal("TERM");
    assert_eq!(server.wait().await, Some(0));
}

/// A release's `.sqlx/` directory: `sqls` described on `conn`'s schema.
pub(crate) async fn describe_release(conn: &mut PgConnection, sqls: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for sql in sqls {
        let (name, text) = describe_file(conn, sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

/// Records the queries of `dir` as release `version`, serving now.
pub(crate) async fn record(conn: &mut PgConnection, version: &str, dir: &Path) {
    let set = QuerySet::from_dir(dir).unwrap();
    releases::record(conn, releases::TABLE, version, &set)
        .await
        .unwrap();
}

/// Makes release `version`'s heartbeat older than the serving window.
pub(crate) async fn expire(conn: &mut PgConnection, version: &str) {
    let done = sqlx::query(
        "UPDATE _agent_releases SET heartbeat_at = now() - interval '1 hour' WHERE version = $1",
    )
    .bind(version)
    .execute(conn)
    .await
    .unwrap();
    assert_eq!(done.rows_affected(), 1);
}

async fn messages(conn: &mut PgConnection) -> Vec<(String, String)> {
    sqlx::query_as("SELECT role, content FROM messages ORDER BY seq")
        .fetch_all(conn)
        .await
        .unwrap()
}

fn show(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.code, out.stdout, out.stderr
    )
}

const RENAME: (&str, &str) = (
    "20991201000001_rename_message_content.up.sql",
    "ALTER TABLE messages RENAME COLUMN content TO body;\n",
);

#[tokio::test]
async fn a_rename_is_refused_while_the_release_that_reads_it_serves_and_nothing_is_applied() {
    let db = TestDb::migrated().await;
    let mut conn = db.connect().await;
    sqlx::raw_sql(
        "INSERT INTO conversations (id, title) VALUES ('00000000-0000-0000-0000-000000000001', 't');
         INSERT INTO messages (conversation_id, seq, role, content)
         VALUES ('00000000-0000-0000-0000-000000000001', 1, 'user', 'hello');",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    built_release_serving(&db).await;
    let (schema, bookkeeping, data) = (
        schema_snapshot(&mut conn).await,
        rows(&mut conn).await,
        messages(&mut conn).await,
    );

    let next = next_set(&[RENAME]);
    let release = Release {
        dir: next.dir.path(),
    };
    let out = release.run(&db.url, &[ERROR], &["--migrate-only"]).await;
    assert_eq!(out.code, Some(14), "{}", show(&out));
    assert!(
        out.stderr.contains("column \"content\" does not exist")
            && out
                .stderr
                .contains("SELECT id, conversation_id, seq, role, content, parts"),
        "{}",
        show(&out)
    );
    assert!(out.stderr.contains("nothing applied"), "{}", show(&out));
    // What was applied, was applied to the scratch database only.
    for line in out
        .stderr
        .lines()
        .filter(|l| l.contains("Applied migration"))
    {
        assert!(
            line.contains("compat.scratch{database=agent_backend_compat_"),
            "{line}"
        );
    }
    // Nothing applied: the schema, the bookkeeping rows and the data are as they were.
    assert_eq!(schema_snapshot(&mut conn).await, schema);
    assert_eq!(rows(&mut conn).await, bookkeeping);
    assert_eq!(messages(&mut conn).await, data);

    // `migrate compat` names the same breaks, one per query that reads or writes the column.
    let out = release
        .run(&db.url, &[], &["migrate", "compat", "--json"])
        .await;
    assert_eq!(out.code, Some(14), "{}", show(&out));
    let report = json(&out);
    assert_eq!(report["ok"], false);
    assert_eq!(report["source"], "database");
    let findings = report["findings"].as_array().unwrap();
    let reading_content = QuerySet::embedded()
        .queries()
        .iter()
        .filter(|q| q.sql.contains("content"))
        .count();
    assert_eq!(findings.len(), reading_content, "{findings:#?}");
    for f in findings {
        assert_eq!(f["release"], releases::VERSION);
        // `column "content" does not exist` (`column m.content …` where the query qualifies
        // it), or for the INSERT `… of relation "messages" …`.
        let cause = f["cause"].as_str().unwrap();
        assert!(
            cause.starts_with("column \"content\"") || cause.starts_with("column m.content "),
            "{f}"
        );
        assert_eq!(f["hash"].as_str().unwrap().len(), 64);
    }

    // Under "warn" the deploy goes on, each break logged.
    let out = release
        .run(
            &db.url,
            &[("APP_MIGRATIONS__ON_INCOMPATIBLE", "warn")],
            &["--migrate-only"],
        )
        .await;
    assert_eq!(out.code, Some(0), "{}", show(&out));
    assert!(out.stderr.contains("Incompatible with a serving release"));
    assert!(out.stderr.contains("applying anyway"));
}

/// A migration user without CREATEDB: the check says so in one line and follows the policy
/// ("error" applies nothing, "warn" applies unchecked); `migrations.compat_scratch_url` names a
/// database the check empties and uses instead.
#[tokio::test]
async fn without_createdb_the_policy_decides_and_compat_scratch_url_is_used_instead() {
    let db = TestDb::migrated().await;
    let mut conn = db.connect().await;
    built_release_serving(&db).await;
    // Owner rights on the tables through membership; CREATEDB is an attribute, never inherited.
    let role = format!("ab_nocreatedb_{}", &db.name[db.name.len() - 8..]);
    let mut admin = PgConnection::connect(&crate::support::admin_url())
        .await
        .unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE ROLE {role} LOGIN NOCREATEDB; GRANT postgres TO {role}"
    )))
    .execute(&mut admin)
    .await
    .unwrap();
    let mut url = reqwest::Url::parse(&db.url).unwrap();
    url.set_username(&role).unwrap();
    let url = url.to_string();
    let schema = schema_snapshot(&mut conn).await;
    let next = next_set(&[RENAME]);
    let release = Release {
        dir: next.dir.path(),
    };

    let out = release.run(&url, &[ERROR], &["--migrate-only"]).await;
    assert_eq!(out.code, Some(14), "{}", show(&out));
    let line = out
        .stderr
        .lines()
        .find(|l| l.contains("cannot create a scratch database"))
        .unwrap_or_else(|| panic!("{}", show(&out)));
    assert!(
        line.contains("permission denied")
            && line.contains("migrations.compat_scratch_url")
            && line.contains("nothing applied"),
        "{line}"
    );
    assert_eq!(schema_snapshot(&mut conn).await, schema);

    // A scratch database of its own, left with objects in it: emptied, then used; the rename
    // is found and refused as with a created one.
    let scratch = TestDb::migrated().await;
    let out = release
        .run(
            &url,
            &[ERROR, ("APP_MIGRATIONS__COMPAT_SCRATCH_URL", &scratch.url)],
            &["--migrate-only"],
        )
        .await;
    assert_eq!(out.code, Some(14), "{}", show(&out));
    assert!(
        out.stderr.contains("column \"content\" does not exist"),
        "{}",
        show(&out)
    );
    assert_eq!(schema_snapshot(&mut conn).await, schema);

    // Under "warn" the deploy goes on unchecked, and says so.
    let out = release
        .run(
            &url,
            &[("APP_MIGRATIONS__ON_INCOMPATIBLE", "warn")],
            &["--migrate-only"],
        )
        .await;
    assert_eq!(out.code, Some(0), "{}", show(&out));
    assert!(out.stderr.contains("applying unchecked"), "{}", show(&out));
    assert_ne!(schema_snapshot(&mut conn).await, schema);

    drop(conn);
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "REASSIGN OWNED BY {role} TO postgres; DROP OWNED BY {role}; DROP ROLE {role}"
    )))
    .execute(&mut admin)
    .await
    .unwrap();
}

#[tokio::test]
async fn the_rename_as_expand_and_contract_passes_each_step_once_the_old_release_expires() {
    let db = TestDb::migrated().await;
    let mut conn = db.connect().await;
    // Release 0 (this build) reads and writes `content`.
    record(&mut conn, "r0", &project_dir().join(".sqlx")).await;

    // Deploy 1, expand: `body` added, kept equal to `content` by a trigger, backfilled.
    let expand = crate::guide::EXPAND_BODY;
    let set1 = next_set(&[expand]);
    let out = Release {
        dir: set1.dir.path(),
    }
    .run(&db.url, &[ERROR], &["--migrate-only"])
    .await;
    assert_eq!(out.code, Some(0), "{}", show(&out));
    assert!(
        out.stderr.contains("Compat check: 1 release(s)") && out.stderr.contains(": 0 break(s)"),
        "{}",
        show(&out)
    );
    // Release 1 writes both columns and still reads `content`.
    let r1 = describe_release(&mut conn, &crate::guide::SWITCHING_QUERIES).await;
    record(&mut conn, "r1", r1.path()).await;
    expire(&mut conn, "r0").await;

    // Deploy 2, switch reads: release 2 reads and writes `body` only (the trigger fills
    // `content` for release 1). No migration; the schema still suits release 1.
    let r2 = describe_release(&mut conn, &crate::guide::SWITCHED_QUERIES).await;
    let r1_dir = r1.path().to_str().unwrap();
    let out = Release {
        dir: set1.dir.path(),
    }
    .run(&db.url, &[], &["migrate", "compat", "--queries", r1_dir])
    .await;
    assert_eq!(out.code, Some(0), "{}", show(&out));
    record(&mut conn, "r2", r2.path()).await;

    // Deploy 3, contract: `content` dropped. Refused while release 1 still serves …
    let contract = crate::guide::CONTRACT_CONTENT;
    let set3 = next_set(&[expand, contract]);
    let release3 = Release {
        dir: set3.dir.path(),
    };
    let out = release3.run(&db.url, &[ERROR], &["--migrate-only"]).await;
    assert_eq!(out.code, Some(14), "{}", show(&out));
    assert!(
        out.stderr.contains("release r1: query")
            && out.stderr.contains("column \"content\" does not exist")
            && !out.stderr.contains("release r2: query"),
        "{}",
        show(&out)
    );
    let out = release3
        .run(&db.url, &[], &["migrate", "compat", "--json"])
        .await;
    let report = json(&out);
    let breaking: Vec<&str> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["release"].as_str().unwrap())
        .collect();
    assert_eq!(breaking, ["r1", "r1"], "{report:#}");
    // … and applied once its heartbeat is older than the window.
    expire(&mut conn, "r1").await;
    let out = release3.run(&db.url, &[ERROR], &["--migrate-only"]).await;
    assert_eq!(out.code, Some(0), "{}", show(&out));
    assert!(
        out.stderr.contains("Applied migration 20270101000002"),
        "{}",
        show(&out)
    );
}

/// `migrate compat --queries .sqlx` (this build's queries) over the project's set plus one
/// migration, as a release process on an empty configured database.
async fn compat_after(migration: &str) -> (Option<i32>, Vec<String>) {
    let db = TestDb::empty().await;
    let set = next_set(&[("20991201000001_change.up.sql", migration)]);
    let sqlx_dir = project_dir().join(".sqlx");
    let out = Release {
        dir: set.dir.path(),
    }
    .run(
        &db.url,
        &[],
        &[
            "migrate",
            "compat",
            "--json",
            "--queries",
            sqlx_dir.to_str().unwrap(),
        ],
    )
    .await;
    let report = json(&out);
    let causes = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            format!(
                "{} | {}",
                f["query"].as_str().unwrap(),
                f["cause"].as_str().unwrap()
            )
        })
        .collect();
    (out.code, causes)
}

fn assert_caught(found: &(Option<i32>, Vec<String>), query: &str, cause: &str) {
    assert_eq!(found.0, Some(14), "{:#?}", found.1);
    assert!(
        found
            .1
            .iter()
            .any(|f| f.starts_with(query) && f.contains(cause)),
        "no finding for {query:?} with {cause:?} in {:#?}",
        found.1
    );
}

#[tokio::test]
async fn a_dropped_default_an_old_insert_relies_on_is_caught() {
    let found =
        compat_after("ALTER TABLE conversations ALTER COLUMN created_at DROP DEFAULT;").await;
    assert_caught(
        &found,
        "INSERT INTO conversations (title, metadata)",
        "INSERT INTO conversations leaves out created_at, which is NOT NULL without a default now",
    );
}

#[tokio::test]
async fn an_added_not_null_column_without_default_is_caught() {
    let found = compat_after("ALTER TABLE conversations ADD COLUMN owner text NOT NULL;").await;
    assert_caught(
        &found,
        "INSERT INTO conversations (title, metadata)",
        "leaves out owner",
    );
}

#[tokio::test]
async fn a_type_change_is_caught() {
    let found = compat_after("ALTER TABLE ui_artifacts ALTER COLUMN version TYPE bigint;").await;
    assert_caught(
        &found,
        "SELECT version FROM ui_artifacts WHERE id = $1",
        "ui_artifacts.version: int4 → int8",
    );
    // A text column turned into an enum: the release sends text, and decodes text.
    let found = compat_after(
        "CREATE TYPE message_role AS ENUM ('user', 'assistant', 'system', 'tool');\n\
         ALTER TABLE messages DROP CONSTRAINT messages_role_known,\n\
           ALTER COLUMN role TYPE message_role USING role::message_role;",
    )
    .await;
    assert_caught(
        &found,
        "SELECT id, conversation_id, seq, role, content",
        "messages.role: text → message_role",
    );
    assert_caught(
        &found,
        "WITH c AS (",
        "column \"role\" is of type message_role but expression is of type text",
    );
}

#[tokio::test]
async fn a_column_made_nullable_is_caught() {
    let found = compat_after("ALTER TABLE messages ALTER COLUMN role DROP NOT NULL;").await;
    assert_caught(
        &found,
        "SELECT id, conversation_id, seq, role, content",
        "messages.role became nullable (the release decodes it as NOT NULL)",
    );
}

#[tokio::test]
async fn a_dropped_table_is_caught() {
    let found = compat_after("DROP TABLE ui_artifact_versions;").await;
    assert_caught(
        &found,
        "SELECT artifact_id, version, title, spec, created_at FROM ui_artifact_versions",
        "relation \"ui_artifact_versions\" does not exist",
    );
}

#[tokio::test]
async fn a_migration_that_only_adds_things_has_no_finding() {
    let found = compat_after(
        "ALTER TABLE conversations ADD COLUMN note text;\n\
         ALTER TABLE messages ADD COLUMN tokens integer NOT NULL DEFAULT 0;\n\
         CREATE INDEX messages_role_idx ON messages (role);\n\
         CREATE TABLE tags (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name text NOT NULL);",
    )
    .await;
    assert_eq!(found, (Some(0), Vec::new()));
}

/// Every earlier commit that changed `.sqlx/` or `migrations/`: its queries against this
/// branch's migrations. A commit without `.sqlx/` has no queries to break.
#[tokio::test]
async fn no_false_break_on_our_own_history() {
    let git = |args: &[&str]| {
        let out = std::process::Command::new("git")
            .args(args)
            .current_dir(project_dir())
            .output()
            .expect("git");
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let commits = git(&["log", "--format=%H", "--", ".sqlx", "migrations"]);
    let db = TestDb::empty().await;
    let mut checked = 0;
    for commit in commits.lines() {
        let files = git(&["ls-tree", "--name-only", commit, ".sqlx/"]);
        if files.trim().is_empty() {
            continue;
        }
        let dir = tempfile::tempdir().unwrap();
        for file in files.lines() {
            let text = git(&["show", &format!("{commit}:{file}")]);
            let name = Path::new(file).file_name().unwrap();
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        let out = run_server(
            &db.url,
            &[],
            &[
                "migrate",
                "compat",
                "--queries",
                dir.path().to_str().unwrap(),
            ],
        )
        .await;
        assert_eq!(out.code, Some(0), "commit {commit}: {}", show(&out));
        checked += 1;
    }
    assert!(checked > 0, "no commit with .sqlx/ in {commits}");
}

#[tokio::test]
async fn readiness_names_the_own_queries_that_no_longer_prepare() {
    let db = TestDb::migrated().await;
    let mut conn = db.connect().await;
    // A column dropped by hand: no migration is pending, so the instance serves.
    sqlx::raw_sql("ALTER TABLE messages DROP COLUMN tool_call_id")
        .execute(&mut conn)
        .await
        .unwrap();
    let mut server = spawn_server(&db.url, &[]).await;
    let ready = reqwest::get(format!("{}/health/ready", server.base))
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["failed"], serde_json::json!(["queries"]), "{body:#}");
    let unprepared = body["checks"]["queries"]["unprepared"].as_array().unwrap();
    let expected = QuerySet::embedded()
        .queries()
        .iter()
        .filter(|q| q.sql.contains("tool_call_id"))
        .count();
    assert_eq!(unprepared.len(), expected, "{body:#}");
    for q in unprepared {
        let error = q["error"].as_str().unwrap();
        assert!(
            error.starts_with("column \"tool_call_id\"")
                || error.starts_with("column m.tool_call_id "),
            "{q}"
        );
    }
    server.signal("TERM");
    assert_eq!(server.wait().await, Some(0));
    let _ = conn.close().await;
}

#[tokio::test]
async fn a_healthy_instance_is_ready_with_its_queries_prepared() {
    let db = TestDb::migrated().await;
    let mut server = spawn_server(&db.url, &[]).await;
    let ready = reqwest::get(format!("{}/health/ready", server.base))
        .await
        .unwrap();
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["status"], "ready", "{body:#}");
    assert_eq!(body["checks"]["queries"]["ok"], true);
    server.signal("TERM");
    assert_eq!(server.wait().await, Some(0));
}
