//! The migration engine against a real PostgreSQL, driven as a library.

use std::time::Duration;

use agent_backend::migrate::{
    MigrateError, MigrateOptions, MigrationSet, Migrator, Policy, UnknownAppliedPolicy, embedded,
    lock,
};

use crate::support::{SetDir, TestDb, hold_migration_lock, rows, table_exists};

fn opts() -> MigrateOptions {
    MigrateOptions {
        lock_wait_timeout: Duration::from_secs(30),
        ..MigrateOptions::default()
    }
}

async fn run(
    db: &TestDb,
    set: &MigrationSet,
    opts: MigrateOptions,
) -> Result<agent_backend::migrate::RunReport, MigrateError> {
    let mut conn = db.connect().await;
    Migrator::new(set, opts).run(&mut conn).await
}

#[tokio::test]
async fn empty_database_gets_every_migration_with_sqlx_rows() {
    let db = TestDb::empty().await;
    let set = embedded::migrations();
    let report = run(&db, set, opts()).await.unwrap();
    assert_eq!(report.applied.len(), set.len());
    assert!(report.locked);
    assert_eq!(report.newest, set.newest());

    let mut conn = db.connect().await;
    let rows = rows(&mut conn).await;
    let expected: Vec<_> = set
        .iter()
        .map(|m| (m.version, true, m.up.checksum.to_vec()))
        .collect();
    assert_eq!(rows, expected);
    for table in [
        "conversations",
        "messages",
        "ui_artifacts",
        "ui_artifact_versions",
    ] {
        assert!(table_exists(&mut conn, table).await, "{table}");
    }
    let (descriptions, times): (Vec<String>, Vec<i64>) = sqlx::query_as::<_, (String, i64)>(
        "SELECT description, execution_time FROM _sqlx_migrations ORDER BY version",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap()
    .into_iter()
    .unzip();
    assert_eq!(
        descriptions,
        set.iter()
            .map(|m| m.description.clone())
            .collect::<Vec<_>>()
    );
    assert!(times.iter().all(|&t| t >= 0), "{times:?}");
}

#[tokio::test]
async fn second_run_applies_nothing_and_takes_no_lock() {
    let db = TestDb::migrated().await;
    // Another session holds the migration key: a run that tried to lock would time out.
    let (mut holder, key) = hold_migration_lock(&db, "test-holder").await;

    let report = run(
        &db,
        embedded::migrations(),
        MigrateOptions {
            lock_wait_timeout: Duration::from_millis(200),
            ..opts()
        },
    )
    .await
    .unwrap();
    assert!(report.applied.is_empty());
    assert!(!report.locked);
    lock::release(&mut holder, key).await.unwrap();
}

#[tokio::test]
async fn edited_file_is_a_mismatch_naming_it_and_is_never_reapplied() {
    let db = TestDb::empty().await;
    let dir = SetDir::new(&[("1_create_a.sql", "CREATE TABLE a (id int);")]);
    run(&db, &dir.set(), opts()).await.unwrap();

    dir.write("1_create_a.sql", "CREATE TABLE a (id bigint);");
    dir.write("2_create_b.sql", "CREATE TABLE b (id int);");
    let err = run(&db, &dir.set(), opts()).await.unwrap_err();
    assert!(
        matches!(&err, MigrateError::ChecksumMismatch { version: 1, file, .. } if file == "1_create_a.sql"),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(message.contains("migrations/1_create_a.sql"), "{message}");
    let mut conn = db.connect().await;
    assert_eq!(rows(&mut conn).await.len(), 1, "nothing else applied");
    assert!(!table_exists(&mut conn, "b").await);
}

#[tokio::test]
async fn dirty_row_stops_everything() {
    let db = TestDb::empty().await;
    let dir = SetDir::new(&[
        ("1_a.sql", "CREATE TABLE a ();"),
        ("2_b.sql", "CREATE TABLE b ();"),
    ]);
    run(&db, &dir.set(), opts()).await.unwrap();
    let mut conn = db.connect().await;
    sqlx::query("UPDATE _sqlx_migrations SET success = false WHERE version = 2")
        .execute(&mut conn)
        .await
        .unwrap();
    dir.write("3_c.sql", "CREATE TABLE c ();");

    let err = run(&db, &dir.set(), opts()).await.unwrap_err();
    assert!(
        matches!(err, MigrateError::Dirty { version: 2, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("migrate repair"), "{err}");
    assert!(!table_exists(&mut conn, "c").await);
}

#[tokio::test]
async fn failing_migration_is_rolled_back_unrecorded_and_named() {
    let db = TestDb::empty().await;
    let dir = SetDir::new(&[
        ("1_ok.sql", "CREATE TABLE ok ();"),
        ("2_broken.sql", "CREATE TABLE half ();\n\nSELEC 1;\n"),
        ("3_after.sql", "CREATE TABLE after ();"),
    ]);
    let err = run(&db, &dir.set(), opts()).await.unwrap_err();
    let MigrateError::Failed {
        version,
        file,
        message,
        dirty,
    } = &err
    else {
        panic!("{err:?}");
    };
    assert_eq!(
        (*version, file.as_str(), *dirty),
        (2, "2_broken.sql", false)
    );
    assert!(message.contains("42601"), "{message}");
    assert!(message.contains("line 3, column 1"), "{message}");
    assert!(err.to_string().contains("migrations/2_broken.sql"));

    let mut conn = db.connect().await;
    assert_eq!(crate::support::recorded_versions(&mut conn).await, [1]);
    assert!(table_exists(&mut conn, "ok").await);
    assert!(
        !table_exists(&mut conn, "half").await,
        "the failed migration's DDL is rolled back"
    );
    assert!(
        !table_exists(&mut conn, "after").await,
        "the run stops at the failure"
    );
    // The lock was released: another session can take it at once.
    let key = lock::key_for(&mut conn).await.unwrap();
    let free: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(key)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert!(free);
}

#[tokio::test]
async fn no_transaction_migration_runs_outside_a_transaction() {
    let db = TestDb::empty().await;
    let dir = SetDir::new(&[
        ("1_t.sql", "CREATE TABLE t (c int);"),
        (
            "2_idx.sql",
            "-- no-transaction\nCREATE INDEX CONCURRENTLY t_c_idx ON t (c);",
        ),
    ]);
    run(&db, &dir.set(), opts()).await.unwrap();
    let mut conn = db.connect().await;
    assert!(rows(&mut conn).await.iter().all(|r| r.1));
    assert!(table_exists(&mut conn, "t_c_idx").await);
}

#[tokio::test]
async fn failed_no_transaction_migration_leaves_a_dirty_mark() {
    let db = TestDb::empty().await;
    let dir = SetDir::new(&[(
        "1_idx.sql",
        "-- no-transaction\nCREATE INDEX CONCURRENTLY i ON missing (c);",
    )]);
    let err = run(&db, &dir.set(), opts()).await.unwrap_err();
    assert!(
        matches!(err, MigrateError::Failed { dirty: true, .. }),
        "{err:?}"
    );
    let mut conn = db.connect().await;
    assert_eq!(
        rows(&mut conn)
            .await
            .iter()
            .map(|r| (r.0, r.1))
            .collect::<Vec<_>>(),
        [(1, false)]
    );
    let again = run(&db, &dir.set(), opts()).await.unwrap_err();
    assert!(
        matches!(again, MigrateError::Dirty { version: 1, .. }),
        "{again:?}"
    );
}

#[tokio::test]
async fn out_of_order_pending_versions_need_the_switch() {
    let db = TestDb::empty().await;
    let dir = SetDir::new(&[("2_b.sql", "CREATE TABLE b ();")]);
    run(&db, &dir.set(), opts()).await.unwrap();
    dir.write("1_a.sql", "CREATE TABLE a ();");
    let err = run(&db, &dir.set(), opts()).await.unwrap_err();
    assert!(
        matches!(&err, MigrateError::OutOfOrder { pending, newest_applied: 2 } if pending == &[1]),
        "{err:?}"
    );
    let report = run(
        &db,
        &dir.set(),
        MigrateOptions {
            allow_out_of_order: true,
            ..opts()
        },
    )
    .await
    .unwrap();
    assert_eq!(report.applied.iter().map(|a| a.0).collect::<Vec<_>>(), [1]);
}

#[tokio::test]
async fn unknown_applied_versions_warn_by_default_and_stop_when_strict() {
    let db = TestDb::empty().await;
    let newer = SetDir::new(&[
        ("1_a.sql", "CREATE TABLE a ();"),
        ("2_b.sql", "CREATE TABLE b ();"),
    ]);
    run(&db, &newer.set(), opts()).await.unwrap();
    let older = SetDir::new(&[("1_a.sql", "CREATE TABLE a ();")]);

    let report = run(&db, &older.set(), opts()).await.unwrap();
    assert_eq!(report.unknown, [2]);
    let err = run(
        &db,
        &older.set(),
        MigrateOptions {
            policy: Policy {
                on_unknown_applied: UnknownAppliedPolicy::Error,
                ..Policy::default()
            },
            ..opts()
        },
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, MigrateError::UnknownApplied { versions } if versions == &[2]),
        "{err:?}"
    );
}

#[tokio::test]
async fn lock_wait_times_out_naming_the_holder() {
    let db = TestDb::empty().await;
    let _holder = hold_migration_lock(&db, "lock-holder-test").await;

    let err = run(
        &db,
        embedded::migrations(),
        MigrateOptions {
            lock_wait_timeout: Duration::from_millis(600),
            lock_log_interval: Duration::from_millis(200),
            ..opts()
        },
    )
    .await
    .unwrap_err();
    let MigrateError::LockTimeout { holder: who, .. } = &err else {
        panic!("{err:?}");
    };
    assert!(who.contains("lock-holder-test"), "{who}");
    let mut conn = db.connect().await;
    assert!(
        !table_exists(&mut conn, "_sqlx_migrations").await,
        "nothing ran without the lock"
    );
}

#[tokio::test]
async fn database_migrated_by_sqlx_is_accepted_and_the_reverse() {
    let sqlx_first = TestDb::empty().await;
    let migrator = sqlx::migrate::Migrator::new(crate::support::project_dir().join("migrations"))
        .await
        .unwrap();
    let mut conn = sqlx_first.connect().await;
    migrator.run(&mut conn).await.unwrap();
    let report = run(&sqlx_first, embedded::migrations(), opts())
        .await
        .unwrap();
    assert!(
        report.applied.is_empty(),
        "server accepts sqlx's rows as applied"
    );
    assert!(report.unknown.is_empty());

    let server_first = TestDb::empty().await;
    run(&server_first, embedded::migrations(), opts())
        .await
        .unwrap();
    let mut conn2 = server_first.connect().await;
    // sqlx validates every row (checksums, dirty, unknown versions) and would re-run or fail
    // on anything it did not recognise.
    migrator.run(&mut conn2).await.unwrap();

    let columns =
        "SELECT version, description, success, checksum FROM _sqlx_migrations ORDER BY version";
    let a: Vec<(i64, String, bool, Vec<u8>)> =
        sqlx::query_as(columns).fetch_all(&mut conn).await.unwrap();
    let b: Vec<(i64, String, bool, Vec<u8>)> =
        sqlx::query_as(columns).fetch_all(&mut conn2).await.unwrap();
    assert_eq!(
        a, b,
        "rows written by sqlx and by server are interchangeable"
    );
}

#[tokio::test]
async fn lock_key_is_the_one_sqlx_migrator_takes() {
    let db = TestDb::empty().await;
    let (mut holder, key) = hold_migration_lock(&db, "test-holder").await;

    let url = db.url.clone();
    let sqlx_run = tokio::spawn(async move {
        let migrator =
            sqlx::migrate::Migrator::new(crate::support::project_dir().join("migrations"))
                .await
                .unwrap();
        let pool = sqlx::PgPool::connect(&url).await.unwrap();
        migrator.run(&pool).await
    });

    // sqlx's Migrator must be queued behind our key: wait until pg_locks shows its waiting
    // request for exactly that key.
    let mut observer = db.connect().await;
    let waiting = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let n: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted \
                 AND classid::bigint = ($1 >> 32) AND objid::bigint = ($1 & 4294967295) AND objsubid = 1",
            )
            .bind(key)
            .fetch_one(&mut observer)
            .await
            .unwrap();
            if n > 0 {
                return;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(waiting.is_ok(), "sqlx's Migrator never waited on key {key}");
    assert!(!sqlx_run.is_finished());

    lock::release(&mut holder, key).await.unwrap();
    sqlx_run.await.unwrap().unwrap();
}

#[tokio::test]
async fn header_settings_guard_one_migration_only() {
    let db = TestDb::empty().await;
    let dir = SetDir::new(&[
        (
            "1_guarded.sql",
            "-- statement_timeout: 50ms\nSELECT pg_sleep(2);",
        ),
        ("2_after.sql", "CREATE TABLE after ();"),
    ]);
    let err = run(&db, &dir.set(), opts()).await.unwrap_err();
    let MigrateError::Failed {
        version: 1,
        message,
        ..
    } = &err
    else {
        panic!("{err:?}");
    };
    assert!(
        message.contains("57014"),
        "statement_timeout from the header applied: {message}"
    );

    // The setting is reset afterwards: a later migration on the same session is unaffected.
    let dir = SetDir::new(&[
        ("1_guarded.sql", "-- statement_timeout: 5s\nSELECT 1;"),
        ("2_slowish.sql", "SELECT pg_sleep(0.2);"),
    ]);
    let db = TestDb::empty().await;
    let mut conn = db.connect().await;
    Migrator::new(&dir.set(), opts())
        .run(&mut conn)
        .await
        .unwrap();
    let timeout: String = sqlx::query_scalar("SHOW statement_timeout")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(timeout, "0");
}
