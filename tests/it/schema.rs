//! The schema itself: `migrate snapshot`, `migrate drift`, `migrate verify`'s drift check,
//! `/health`'s drift report, `migrate test`'s round trip, and lock-timeout retries.

use std::time::Duration;

use agent_backend::error::Exit;
use agent_backend::migrate::roundtrip::round_trip;
use agent_backend::migrate::snapshot::{Difference, Snapshot};
use agent_backend::migrate::{MigrateError, MigrateOptions, Migrator};
use sqlx::PgConnection;

use crate::support::{SetDir, TestDb, json, project_dir, run_ok, run_server, spawn_server, until};

async fn exec(db: &TestDb, sql: &str) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
        .execute(&mut db.connect().await)
        .await
        .unwrap();
}

#[tokio::test]
async fn drift_is_clean_after_migrating_and_names_every_hand_made_change() {
    let db = TestDb::migrated().await;
    let clean = run_server(&db.url, &[], &["migrate", "drift"]).await;
    assert_eq!(clean.code, Some(0), "{}{}", clean.stdout, clean.stderr);
    assert!(clean.stdout.contains("No drift"), "{}", clean.stdout);

    exec(
        &db,
        "ALTER TABLE conversations ADD COLUMN hotfix int; \
         DROP INDEX conversations_created_at_id_idx; \
         CREATE TABLE stray (id int); \
         ALTER TABLE messages ALTER COLUMN tool_call_id SET NOT NULL;",
    )
    .await;
    let drift = run_server(&db.url, &[], &["migrate", "drift"]).await;
    assert_eq!(
        drift.code,
        Some(Exit::SchemaDiffers as i32),
        "{}",
        drift.stderr
    );
    for expected in [
        "extra column public.conversations.hotfix: integer",
        // What restores it, as the snapshot has it (and `--json` in `expected`).
        "missing index public.conversations_created_at_id_idx: CREATE INDEX \
         conversations_created_at_id_idx ON public.conversations USING btree (created_at DESC, id DESC)",
        "extra table public.stray",
        "extra column public.stray.id",
        "changed column public.messages.tool_call_id: expected `text`, found `text NOT NULL`",
    ] {
        assert!(
            drift.stdout.contains(expected),
            "{expected}\n{}",
            drift.stdout
        );
    }

    let as_json = run_server(&db.url, &[], &["migrate", "drift", "--json"]).await;
    let doc = json(&as_json);
    assert_eq!(doc["ok"], false);
    assert_eq!(doc["state"], "checked");
    let differences = doc["differences"].as_array().unwrap();
    assert_eq!(differences.len(), 5);
    let missing = differences
        .iter()
        .find(|d| d["change"] == "missing")
        .unwrap();
    assert!(
        drift.stdout.contains(&format!(
            "missing index public.conversations_created_at_id_idx: {}",
            missing["expected"].as_str().unwrap()
        )),
        "the text shows what --json has: {missing}\n{}",
        drift.stdout
    );

    // Someone else's objects can be left out by configuration.
    let ignored = run_server(
        &db.url,
        &[(
            "APP_MIGRATIONS__DRIFT_IGNORE",
            "[\"public.stray*\", \"public.conversations.hotfix\"]",
        )],
        &["migrate", "drift", "--json"],
    )
    .await;
    assert_eq!(json(&ignored)["differences"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn drift_is_not_compared_when_the_database_is_behind_or_ahead() {
    let behind = TestDb::empty().await;
    let out = run_server(&behind.url, &[], &["migrate", "drift"]).await;
    assert_eq!(out.code, Some(Exit::Refused as i32));
    assert!(out.stdout.contains("behind"), "{}", out.stdout);

    let ahead = TestDb::migrated().await;
    exec(
        &ahead,
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (99990101000000, 'from the future', true, '\\x00', 0)",
    )
    .await;
    let out = run_server(&ahead.url, &[], &["migrate", "drift"]).await;
    assert_eq!(out.code, Some(Exit::Refused as i32));
    assert!(out.stdout.contains("ahead"), "{}", out.stdout);
}

#[tokio::test]
async fn verify_reports_drift_and_fails_on_it_only_when_strict() {
    let db = TestDb::migrated().await;
    exec(&db, "CREATE INDEX hand_made ON messages (created_at);").await;
    let lenient = run_ok(&db.url, &[], &["migrate", "verify", "--json"]).await;
    let checks = json(&lenient)["checks"].clone();
    let drift = checks
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "drift")
        .unwrap()
        .clone();
    assert!(
        drift["detail"]
            .as_str()
            .unwrap()
            .contains("extra index public.hand_made")
    );
    // A finding the policy does not fail on is a warning, not `ok`, in JSON and in text alike.
    assert_eq!(drift["level"], "warn");
    assert_eq!(drift["ok"], false);
    assert_eq!(json(&lenient)["ok"], true);
    let text = run_server(&db.url, &[], &["migrate", "verify"]).await;
    assert_eq!(text.code, Some(0));
    assert!(
        text.stdout.contains(
            "WARN  drift         1 difference(s) from the embedded snapshot; reported, not failed \
             (on_drift = \"warn\"):"
        ) && text
            .stdout
            .contains("extra index public.hand_made: CREATE INDEX hand_made ON public.messages")
            && !text.stdout.contains("ok    drift"),
        "{}",
        text.stdout
    );

    let strict = run_server(
        &db.url,
        &[("APP_MIGRATIONS__ON_DRIFT", "error")],
        &["migrate", "verify"],
    )
    .await;
    assert_eq!(
        strict.code,
        Some(Exit::SchemaDiffers as i32),
        "{}",
        strict.stdout
    );
    assert!(
        strict
            .stdout
            .contains("FAIL  drift         1 difference(s)"),
        "{}",
        strict.stdout
    );
}

#[tokio::test]
async fn health_reports_drift_and_readiness_fails_on_it_only_when_strict() {
    let db = TestDb::migrated().await;
    exec(&db, "ALTER TABLE ui_artifacts ADD COLUMN hotfix text;").await;
    for (policy, ready_status) in [("warn", 200), ("error", 503)] {
        let server = spawn_server(&db.url, &[("APP_MIGRATIONS__ON_DRIFT", policy)]).await;
        let health: serde_json::Value = reqwest::get(format!("{}/health", server.base))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let drift = &health["migrations"]["drift"];
        assert_eq!(drift["ok"], false, "{health}");
        assert_eq!(drift["differences"][0]["change"], "extra");
        assert_eq!(
            drift["differences"][0]["name"],
            "public.ui_artifacts.hotfix"
        );
        let ready = reqwest::get(format!("{}/health/ready", server.base))
            .await
            .unwrap();
        assert_eq!(ready.status().as_u16(), ready_status, "on_drift = {policy}");
        if ready_status == 503 {
            let body: serde_json::Value = ready.json().await.unwrap();
            assert_eq!(body["failed"], serde_json::json!(["drift"]));
        }
    }
}

#[tokio::test]
async fn committed_snapshot_is_current_and_a_stale_one_fails_with_a_diff() {
    let db = TestDb::empty().await;
    let committed = project_dir().join("schema.snapshot");
    let current = run_server(
        &db.url,
        &[],
        &[
            "migrate",
            "snapshot",
            "--fresh",
            "--check",
            committed.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(
        current.code,
        Some(0),
        "{}{}",
        current.stdout,
        current.stderr
    );

    let text = std::fs::read_to_string(&committed).unwrap();
    let mut stale = Snapshot::parse(&text).unwrap();
    let removed = stale
        .objects
        .keys()
        .find(|k| k.kind == "index")
        .unwrap()
        .clone();
    stale.objects.remove(&removed);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("schema.snapshot");
    std::fs::write(&path, stale.render()).unwrap();
    let out = run_server(
        &db.url,
        &[],
        &[
            "migrate",
            "snapshot",
            "--fresh",
            "--check",
            path.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(out.code, Some(Exit::SchemaDiffers as i32));
    crate::support::assert_shows(&out.stdout, &format!("+ {removed}"));
    assert!(out.stderr.contains("--fresh --write"), "{}", out.stderr);
    // A file that is not a snapshot at all is a bad argument, not a stale snapshot.
    std::fs::write(&path, "CREATE TABLE t ();\n").unwrap();
    let bad = run_server(
        &db.url,
        &[],
        &["migrate", "snapshot", "--check", path.to_str().unwrap()],
    )
    .await;
    assert_eq!(bad.code, Some(Exit::Usage as i32), "{}", bad.stderr);
    crate::support::assert_shows(&bad.stderr, "not a schema snapshot");
}

#[tokio::test]
async fn migrate_test_round_trips_the_product_migrations() {
    let db = TestDb::empty().await;
    let out = run_server(&db.url, &[], &["migrate", "test", "--json"]).await;
    assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
    let doc = json(&out);
    assert_eq!(doc["ok"], true);
    assert_eq!(
        doc["reverted"].as_array().unwrap().len(),
        agent_backend::migrate::embedded::migrations().len()
    );
    // On a database that is not empty it refuses before running anything.
    let used = TestDb::migrated().await;
    let refused = run_server(
        &db.url,
        &[],
        &["migrate", "test", "--database-url", &used.url],
    )
    .await;
    assert_eq!(refused.code, Some(Exit::Refused as i32));
    crate::support::assert_shows(&refused.stderr, "needs an empty database");
}

#[tokio::test]
async fn round_trip_catches_a_down_that_forgets_an_index_and_an_up_that_differs() {
    let dir = SetDir::new(&[
        ("1_t.up.sql", "CREATE TABLE t (c int);"),
        ("1_t.down.sql", "DROP TABLE t;"),
        ("2_idx.up.sql", "CREATE INDEX t_c ON t (c);"),
        ("2_idx.down.sql", "SELECT 1; -- forgot DROP INDEX t_c"),
    ]);
    let set = dir.set();
    let db = TestDb::empty().await;
    let mut conn = db.connect().await;
    let report = round_trip(&Migrator::new(&set, opts()), &mut conn, None)
        .await
        .unwrap();
    assert!(!report.passed());
    let (version, differences) = report.down_mismatch.unwrap();
    assert_eq!(version, 2);
    assert!(
        matches!(&differences[..], [Difference::Extra { kind, name, .. }] if kind == "index" && name == "public.t_c"),
        "{differences:?}"
    );

    // An up file that makes something other than the snapshot says.
    let fixed = SetDir::new(&[
        ("1_t.up.sql", "CREATE TABLE t (c bigint);"),
        ("1_t.down.sql", "DROP TABLE t;"),
    ]);
    let expected = {
        let reference = TestDb::empty().await;
        let mut c = reference.connect().await;
        sqlx::raw_sql("CREATE TABLE t (c int);")
            .execute(&mut c)
            .await
            .unwrap();
        Snapshot::take(&mut c, "_sqlx_migrations").await.unwrap()
    };
    let db = TestDb::empty().await;
    let report = round_trip(
        &Migrator::new(&fixed.set(), opts()),
        &mut db.connect().await,
        Some(&expected),
    )
    .await
    .unwrap();
    assert!(report.down_mismatch.is_none());
    assert_eq!(
        report.final_differences.unwrap(),
        [Difference::Changed {
            kind: "column".into(),
            name: "public.t.c".into(),
            expected: "integer".into(),
            actual: "bigint".into(),
        }]
    );
}

fn opts() -> MigrateOptions {
    MigrateOptions {
        lock_wait_timeout: Duration::from_secs(30),
        lock_retry_backoff: Duration::from_millis(200),
        ..MigrateOptions::default()
    }
}

/// Whether the session named `application_name` waits on a heavyweight lock right now.
async fn waiting_on_lock(observer: &mut PgConnection, application_name: &str) -> bool {
    sqlx::query_scalar::<_, bool>(
        "SELECT count(*) > 0 FROM pg_stat_activity \
         WHERE application_name = $1 AND wait_event_type = 'Lock'",
    )
    .bind(application_name)
    .fetch_one(observer)
    .await
    .unwrap()
}

/// Table `t` migrated, `2_add.sql` (an `ALTER TABLE t` under `lock_timeout`) pending, and a
/// session holding a lock on `t` that the ALTER must wait for, until it commits.
async fn t_applied_and_locked(lock_timeout: &str) -> (SetDir, TestDb, PgConnection) {
    let dir = SetDir::new(&[("1_t.sql", "CREATE TABLE t (c int);")]);
    let db = TestDb::empty().await;
    Migrator::new(&dir.set(), opts())
        .run(&mut db.connect().await)
        .await
        .unwrap();
    dir.write(
        "2_add.sql",
        &format!("-- lock_timeout: {lock_timeout}\nALTER TABLE t ADD COLUMN d int;"),
    );
    let mut holder = db.connect().await;
    sqlx::raw_sql("BEGIN; LOCK TABLE t IN ACCESS SHARE MODE;")
        .execute(&mut holder)
        .await
        .unwrap();
    (dir, db, holder)
}

#[tokio::test]
async fn a_migration_blocked_by_a_lock_is_retried_and_succeeds_once_it_is_released() {
    let (dir, db, mut holder) = t_applied_and_locked("300ms").await;
    let set = dir.set();
    let url = db.url.clone();
    let migrating = tokio::spawn(async move {
        let options: sqlx::postgres::PgConnectOptions = url.parse().unwrap();
        let mut conn = sqlx::ConnectOptions::connect(&options.application_name("retry-under-test"))
            .await
            .unwrap();
        Migrator::new(&set, opts()).run(&mut conn).await
    });
    // The first attempt waits on the lock, then gives up (lock_timeout) while it is still held.
    let mut observer = db.connect().await;
    until("the migration waits on the lock", async || {
        waiting_on_lock(&mut observer, "retry-under-test").await
    })
    .await;
    until("the first attempt gave up", async || {
        !waiting_on_lock(&mut observer, "retry-under-test").await
    })
    .await;
    sqlx::raw_sql("COMMIT").execute(&mut holder).await.unwrap();
    let report = migrating.await.unwrap().unwrap();
    assert_eq!(report.applied.len(), 1, "applied on a later attempt");
}

#[tokio::test]
async fn a_lock_held_through_every_retry_fails_naming_the_holder_and_records_nothing() {
    let (dir, db, mut holder) = t_applied_and_locked("100ms").await;
    let holder_pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut holder)
        .await
        .unwrap();
    let options = MigrateOptions {
        lock_retries: 2,
        lock_retry_backoff: Duration::from_millis(50),
        ..opts()
    };
    let error = Migrator::new(&dir.set(), options)
        .run(&mut db.connect().await)
        .await
        .unwrap_err();
    match &error {
        MigrateError::LockNotAvailable {
            version,
            attempts,
            holders,
            ..
        } => {
            assert_eq!((*version, *attempts), (2, 3));
            assert!(holders.contains(&format!("pid {holder_pid}")), "{holders}");
        }
        other => panic!("{other}"),
    }
    assert_eq!(
        Exit::from(&agent_backend::error::AppError::Migrate(error)),
        Exit::LockNotAvailable
    );
    let rows = crate::support::rows(&mut db.connect().await).await;
    assert_eq!(rows.len(), 1, "version 2 not recorded");
}
