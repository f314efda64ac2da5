//! A migration runner killed with SIGKILL in the middle of a slow migration.
//!
//! The runner is this test binary re-executed (`runner_entry_point`), running the engine on a
//! generated migration directory: the same engine code as `server`, with a slow step the
//! product's own set does not have. The slow step sleeps only in the runner's session (a custom
//! setting in its connection), so the re-run after the crash does not.

use std::time::Duration;

use agent_backend::migrate::{MigrateError, MigrateOptions, MigrationSet, Migrator, RepairAction};
use sqlx::{ConnectOptions, Connection, PgConnection};
use tokio::process::Command;

use crate::support::{SetDir, TestDb, rows, table_exists};

const SLEEP: &str =
    "SELECT pg_sleep(coalesce(nullif(current_setting('crash.sleep', true), ''), '0')::float8);";

/// Entry point of the runner process (not a test of its own): migrates `CRASH_RUNNER_URL` with
/// the set in `CRASH_RUNNER_DIR`, sleeping 60 s in the slow step.
#[tokio::test]
#[ignore = "entry point of the crash tests' runner process"]
async fn runner_entry_point() {
    let dir = std::env::var("CRASH_RUNNER_DIR").expect("CRASH_RUNNER_DIR");
    let url = std::env::var("CRASH_RUNNER_URL").expect("CRASH_RUNNER_URL");
    let options: sqlx::postgres::PgConnectOptions = url.parse().unwrap();
    let mut conn = options
        .application_name("crash-runner")
        .options([("crash.sleep", "60")])
        .connect()
        .await
        .unwrap();
    let set = MigrationSet::from_dir(std::path::Path::new(&dir)).unwrap();
    Migrator::new(&set, MigrateOptions::default())
        .run(&mut conn)
        .await
        .unwrap();
}

/// Starts the runner and waits until its session is inside the slow statement.
async fn start_runner_and_wait_for_sleep(db: &TestDb, dir: &SetDir) -> tokio::process::Child {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "crash::runner_entry_point",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("CRASH_RUNNER_DIR", dir.dir.path())
        .env("CRASH_RUNNER_URL", &db.url)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut observer = db.connect().await;
    let started = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let sleeping: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE datname = current_database() \
                 AND application_name = 'crash-runner' AND state = 'active' AND wait_event = 'PgSleep')",
            )
            .fetch_one(&mut observer)
            .await
            .unwrap();
            if sleeping {
                return;
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!("runner exited early: {status}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(
        started.is_ok(),
        "the runner never reached its slow statement"
    );
    child
}

fn kill9(child: &tokio::process::Child) {
    let pid = child.id().unwrap().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-9", &pid])
            .status()
            .unwrap()
            .success()
    );
}

async fn run_again(
    db: &TestDb,
    set: &MigrationSet,
) -> Result<agent_backend::migrate::RunReport, MigrateError> {
    let mut conn = PgConnection::connect(&db.url).await.unwrap();
    // The dead runner's session goes when PostgreSQL notices (client_connection_check_interval);
    // until then its lock is held, and this run waits for it.
    Migrator::new(
        set,
        MigrateOptions {
            lock_wait_timeout: Duration::from_secs(60),
            ..MigrateOptions::default()
        },
    )
    .run(&mut conn)
    .await
}

#[tokio::test]
async fn killed_in_a_transactional_migration_then_rerun_is_consistent_and_complete() {
    let db = TestDb::empty().await;
    let dir = SetDir::new(&[
        ("1_first.sql", "CREATE TABLE first ();"),
        ("2_slow.sql", &format!("CREATE TABLE slow ();\n{SLEEP}")),
        ("3_last.sql", "CREATE TABLE last ();"),
    ]);
    let mut child = start_runner_and_wait_for_sleep(&db, &dir).await;
    kill9(&child);
    let _ = child.wait().await;

    let mut conn = db.connect().await;
    assert_eq!(
        crate::support::recorded_versions(&mut conn).await,
        [1],
        "2 not recorded"
    );
    let report = run_again(&db, &dir.set()).await.unwrap();
    assert_eq!(
        report.applied.iter().map(|a| a.0).collect::<Vec<_>>(),
        [2, 3]
    );
    assert!(rows(&mut conn).await.iter().all(|r| r.1));
    for t in ["first", "slow", "last"] {
        assert!(table_exists(&mut conn, t).await, "{t}");
    }
}

#[tokio::test]
async fn killed_in_a_non_transactional_migration_leaves_it_dirty_until_repaired() {
    let db = TestDb::empty().await;
    let dir = SetDir::new(&[
        ("1_first.sql", "CREATE TABLE first (c int);"),
        ("2_slow.sql", &format!("-- no-transaction\n{SLEEP}")),
        ("3_last.sql", "CREATE TABLE last ();"),
    ]);
    let mut child = start_runner_and_wait_for_sleep(&db, &dir).await;
    kill9(&child);
    let _ = child.wait().await;

    let mut conn = db.connect().await;
    let marks: Vec<(i64, bool)> = crate::support::marks(&mut conn).await;
    assert_eq!(
        marks,
        [(1, true), (2, false)],
        "the interrupted migration is visibly dirty"
    );
    // What the pre-serve stage of `server` does: refuse.
    let err = run_again(&db, &dir.set()).await.unwrap_err();
    assert!(
        matches!(err, MigrateError::Dirty { version: 2, .. }),
        "{err:?}"
    );

    // The operator checked that nothing of it remained, and says so.
    let set = dir.set();
    let migrator = Migrator::new(&set, MigrateOptions::default());
    let seen = migrator
        .diagnose_dirty(&mut conn, None)
        .await
        .unwrap()
        .expect("2 is dirty")
        .row;
    assert_eq!(seen.version, 2);
    migrator
        .repair(&mut conn, &seen, RepairAction::MarkReverted)
        .await
        .unwrap();
    let report = run_again(&db, &set).await.unwrap();
    assert_eq!(
        report.applied.iter().map(|a| a.0).collect::<Vec<_>>(),
        [2, 3]
    );
    assert!(rows(&mut conn).await.iter().all(|r| r.1));
}
