//! A `-- no-transaction` migration that is still running: its `success = false` row is the
//! in-progress mark, not a dirty database. Second runners wait for the lock (or time out with
//! exit 7, never 6), and `repair` racing it refuses and changes nothing.
//!
//! The long migration loops until the test opens a gate (a row in table `gate`), so the test
//! decides when it ends and waits only on state PostgreSQL shows.

use sqlx::PgConnection;

use crate::release::{Release, finish};
use crate::support::{LOCK_REQUESTED, SetDir, TestDb, wait_until};

/// A set whose migration 2 runs outside a transaction until `gate` has a row.
pub fn gated_set() -> SetDir {
    SetDir::new(&[
        ("1_gate.sql", "CREATE TABLE gate (open boolean NOT NULL);\n"),
        (
            "2_long_build.sql",
            "-- no-transaction\n\
             DO $$ BEGIN WHILE NOT EXISTS (SELECT 1 FROM gate) LOOP PERFORM pg_sleep(0.02); END LOOP; END $$;\n",
        ),
    ])
}

/// True once a migration session runs migration 2 (its in-progress row is committed before).
const LONG_BUILD_RUNNING: &str = "SELECT EXISTS (SELECT 1 FROM pg_stat_activity \
     WHERE datname = current_database() AND application_name = 'agent-backend migrate' \
     AND state = 'active' AND query LIKE '%DO $$%FROM gate%')";

/// Starts the first runner (`--migrate-only`) and waits until it is inside migration 2.
pub async fn start_long_build(
    db: &TestDb,
    release: &Release<'_>,
    observer: &mut PgConnection,
) -> tokio::process::Child {
    let child = release.spawn(&db.url, &[], &["--migrate-only"]);
    wait_until(
        observer,
        LONG_BUILD_RUNNING,
        "the first runner inside its no-transaction migration",
    )
    .await;
    assert_eq!(
        crate::support::marks(observer).await,
        [(1, true), (2, false)],
        "the in-progress mark"
    );
    child
}

/// An empty database, the gated set, an observer's connection, and the first runner inside
/// migration 2 ([`start_long_build`]).
async fn long_build_started() -> (TestDb, SetDir, PgConnection, tokio::process::Child) {
    let db = TestDb::empty().await;
    let dir = gated_set();
    let mut conn = db.connect().await;
    let first = start_long_build(
        &db,
        &Release {
            dir: dir.dir.path(),
        },
        &mut conn,
    )
    .await;
    (db, dir, conn, first)
}

pub async fn open_gate(conn: &mut PgConnection) {
    sqlx::query("INSERT INTO gate VALUES (true)")
        .execute(conn)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_second_runner_waits_for_a_running_no_transaction_migration_then_exits_0() {
    let (db, dir, mut conn, first) = long_build_started().await;
    let release = Release {
        dir: dir.dir.path(),
    };

    // What a replica starting beside the pre-deploy sees: a success = false row.
    let status = release.run(&db.url, &[], &["migrate", "status"]).await;
    assert_eq!(status.code, Some(8), "{}{}", status.stdout, status.stderr);
    crate::support::assert_shows(&status.stdout, "In progress:        2");
    crate::support::assert_shows(&status.stdout, "Dirty:              none");
    assert!(
        status.stdout.contains("Migration lock:     held by pid")
            && status.stdout.contains("agent-backend migrate"),
        "{}",
        status.stdout
    );

    let show = release.run(&db.url, &[], &["migrate", "show", "2"]).await;
    crate::support::assert_shows(&show.stdout, "state:             in progress");

    // Commands that plan without waiting for the lock say it is running, not dirty.
    for args in [
        &["migrate", "rollback", "0", "--yes"][..],
        &["migrate", "apply", "--dry-run"][..],
    ] {
        let out = release.run(&db.url, &[], args).await;
        assert_eq!(out.code, Some(9), "{args:?}: {}", out.stderr);
        crate::support::assert_shows(&out.stderr, "migration 2 is still being applied");
    }

    let second = release.spawn(&db.url, &[], &["--migrate-only"]);
    wait_until(
        &mut conn,
        LOCK_REQUESTED,
        "the second runner queued on the lock",
    )
    .await;
    open_gate(&mut conn).await;

    let first = finish(first).await;
    let second = finish(second).await;
    assert_eq!(first.code, Some(0), "{}", first.stderr);
    assert_eq!(second.code, Some(0), "{}", second.stderr);
    assert!(
        second
            .stderr
            .contains("Waiting for the migration lock held by pid"),
        "{}",
        second.stderr
    );
    crate::support::assert_shows(&second.stderr, "Schema up to date");
    assert!(!second.stderr.contains("dirty"), "{}", second.stderr);
    let marks: Vec<(i64, bool)> = crate::support::marks(&mut conn).await;
    assert_eq!(marks, [(1, true), (2, true)]);
}

#[tokio::test]
async fn with_a_short_lock_wait_the_second_runner_exits_7_never_6() {
    let (db, dir, mut conn, first) = long_build_started().await;
    let release = Release {
        dir: dir.dir.path(),
    };

    let env = [("APP_MIGRATIONS__LOCK_WAIT_TIMEOUT", "1s")];
    let second = release.run(&db.url, &env, &["--migrate-only"]).await;
    assert_eq!(second.code, Some(7), "{}", second.stderr);
    assert!(
        second.stderr.contains("waiting for the migration lock")
            && second.stderr.contains("agent-backend migrate"),
        "{}",
        second.stderr
    );
    assert!(
        !second.stderr.contains("database is dirty"),
        "{}",
        second.stderr
    );

    open_gate(&mut conn).await;
    let first = finish(first).await;
    assert_eq!(first.code, Some(0), "{}", first.stderr);
}

#[tokio::test]
async fn repair_racing_a_finishing_migration_refuses_and_changes_nothing() {
    let (db, dir, mut conn, first) = long_build_started().await;
    let release = Release {
        dir: dir.dir.path(),
    };

    // The operator sees row 2 with success = false and decides to mark it reverted; the
    // migration finishes while repair waits for the lock.
    let repair = release.spawn(
        &db.url,
        &[],
        &[
            "migrate",
            "repair",
            "--version",
            "2",
            "--mark-reverted",
            "--yes",
        ],
    );
    wait_until(&mut conn, LOCK_REQUESTED, "repair queued on the lock").await;
    open_gate(&mut conn).await;

    let first = finish(first).await;
    let repair = finish(repair).await;
    assert_eq!(first.code, Some(0), "{}", first.stderr);
    assert_eq!(repair.code, Some(9), "{}{}", repair.stdout, repair.stderr);
    assert!(
        repair.stderr.contains("changed while `repair` waited")
            && repair.stderr.contains("it is now success = true"),
        "{}",
        repair.stderr
    );
    assert!(
        !repair.stdout.contains("marked reverted"),
        "{}",
        repair.stdout
    );
    let marks: Vec<(i64, bool)> = crate::support::marks(&mut conn).await;
    assert_eq!(
        marks,
        [(1, true), (2, true)],
        "the row is the finished migration's"
    );
}
