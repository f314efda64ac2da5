//! The pre-serve stage survives a lost connection (issue 25): `server` and `--migrate-only` as
//! processes, their sessions ended by `pg_terminate_backend` (this test's database only) or cut
//! by a proxy of the test's own ([`crate::proxy`]) at a chosen query: before a migration's
//! commit or right after it landed, in a `-- no-transaction` migration, or for longer than the
//! retries.

use std::time::{Duration, Instant};

use agent_backend::migrate::embedded;
use sqlx::PgConnection;

use crate::proxy::{Afterwards, Cut, Plan, Proxy};
use crate::release::Release;
use crate::support::{
    SetDir, TestDb, admin, hold_migration_lock, rows, run_server, spawn_server, until, wait_until,
};

/// The line the stage logs for each rerun.
const RETRY: &str = "Migration stage attempt";

fn versions() -> Vec<i64> {
    embedded::migrations().iter().map(|m| m.version).collect()
}

/// The transactional batch of migration `version` (its SQL and its bookkeeping row, one
/// implicit transaction that commits when PostgreSQL has run the query).
fn batch_of(version: i64) -> String {
    format!("VALUES ({version}, ")
}

async fn assert_applied_once_each(conn: &mut PgConnection, what: &str) {
    let rows = rows(conn).await;
    assert_eq!(
        rows.iter().map(|r| r.0).collect::<Vec<_>>(),
        versions(),
        "{what}"
    );
    assert!(rows.iter().all(|r| r.1), "{what}: every row success = true");
    let locks: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database \
         WHERE d.datname = current_database() AND l.locktype = 'advisory'",
    )
    .fetch_one(conn)
    .await
    .unwrap();
    assert_eq!(locks, 0, "{what}: no migration lock left behind");
}

/// The connection is cut around the commit of the second migration, in both orders, through
/// `--migrate-only` with the configured retries (test.toml: 2 attempts, 100 ms apart). Commit
/// landed (cut after PostgreSQL's answer): the rerun's status read sees it applied and applies
/// only the third. Commit did not land (cut before the batch reached PostgreSQL): the rerun
/// applies the second again, then the third. Either way each migration ran once: a second run
/// of a `CREATE TABLE` would fail the stage.
#[tokio::test]
async fn a_commit_cut_is_decided_by_the_next_attempts_status_read_in_both_orders() {
    let all = versions();
    let (second, third) = (all[1], all[2]);
    for (cut, landed) in [(Cut::AfterAnswer, true), (Cut::Before, false)] {
        let db = TestDb::empty().await;
        let proxy = Proxy::start(
            &db.url,
            Plan {
                needle: batch_of(second),
                cut,
                times: Some(1),
                afterwards: Afterwards::Pass,
            },
        )
        .await;
        let out = run_server(&proxy.url(&db.url), &[], &["--migrate-only"]).await;
        let what = format!("cut {cut:?}: {}", out.stderr);
        assert_eq!(out.code, Some(0), "{what}");
        assert_eq!(proxy.cuts(), 1, "{what}");
        assert!(
            out.stderr.contains(&format!(
                "{RETRY} 1/2 lost the database connection while applying migration {second}"
            )),
            "{what}"
        );
        let applied_second = format!("Applied migration {second} ");
        assert_eq!(
            out.stderr.matches(&applied_second).count(),
            usize::from(!landed),
            "the rerun applies {second} only if its commit did not land: {what}"
        );
        assert_eq!(
            out.stderr
                .matches(&format!("Applied migration {third} "))
                .count(),
            1,
            "{what}"
        );
        assert!(!out.stderr.contains("Migration failed"), "{what}");
        assert_applied_once_each(&mut db.connect().await, &what).await;
    }
}

/// A `-- no-transaction` migration cut part-way is not retried: it may have done part of its
/// work, so it stays what it is, dirty: exit 5 naming it, and the next run exits 6 until it is
/// repaired.
#[tokio::test]
async fn a_no_transaction_migration_cut_part_way_stays_dirty() {
    let dir = SetDir::new(&[
        ("1_items.sql", "CREATE TABLE items (sku text);"),
        (
            "2_items_sku.sql",
            "-- no-transaction\nCREATE INDEX CONCURRENTLY items_sku_idx ON items (sku);",
        ),
    ]);
    let release = Release {
        dir: dir.dir.path(),
    };
    let db = TestDb::empty().await;
    let proxy = Proxy::start(
        &db.url,
        Plan {
            needle: "CREATE INDEX CONCURRENTLY items_sku_idx".into(),
            cut: Cut::Before,
            times: Some(1),
            afterwards: Afterwards::Pass,
        },
    )
    .await;
    let cut = release
        .run(&proxy.url(&db.url), &[], &["--migrate-only"])
        .await;
    assert_eq!(cut.code, Some(5), "{}", cut.stderr);
    assert_eq!(proxy.cuts(), 1);
    assert!(
        cut.stderr
            .contains("migration 2 (migrations/2_items_sku.sql) failed")
            && cut.stderr.contains("recorded as dirty"),
        "{}",
        cut.stderr
    );
    assert!(!cut.stderr.contains(RETRY), "not retried: {}", cut.stderr);
    let next = release.run(&db.url, &[], &["--migrate-only"]).await;
    assert_eq!(next.code, Some(6), "{}", next.stderr);
    assert!(next.stderr.contains("database is dirty"), "{}", next.stderr);
}

/// The database kept away longer than the retries, two ways, through the proxy. Eight
/// instances whose every session is cut at its status read: each reruns the stage until its
/// attempts are spent, then exits 4 (unreachable), not 5. One instance cut once, then refused
/// at every connect: the stage's retry line, then the connect's, then exit 4. Nothing applied.
#[tokio::test]
async fn the_database_kept_away_longer_than_the_retries_exits_4_with_the_retry_lines() {
    let env = [
        ("APP_DATABASE__CONNECT_ATTEMPTS", "3"),
        ("APP_DATABASE__CONNECT_RETRY_DELAY", "100ms"),
    ];
    let status_read = "FROM _sqlx_migrations".to_string();

    let db = TestDb::empty().await;
    let proxy = Proxy::start(
        &db.url,
        Plan {
            needle: status_read.clone(),
            cut: Cut::Before,
            times: None,
            afterwards: Afterwards::Pass,
        },
    )
    .await;
    let url = proxy.url(&db.url);
    let runs: Vec<_> = (0..8)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { run_server(&url, &env, &["--migrate-only"]).await })
        })
        .collect();
    for run in runs {
        let out = run.await.unwrap();
        assert_eq!(out.code, Some(4), "{}", out.stderr);
        for attempt in ["1/3", "2/3"] {
            assert!(
                out.stderr.contains(&format!(
                    "{RETRY} {attempt} lost the database connection while reading the migration table"
                )),
                "{}",
                out.stderr
            );
        }
        assert!(!out.stderr.contains("attempt 3/3"), "{}", out.stderr);
        assert!(
            out.stderr
                .contains("Migration failed: database unreachable after 3 attempt(s)"),
            "{}",
            out.stderr
        );
    }
    assert_eq!(proxy.cuts(), 8 * 3);

    let proxy = Proxy::start(
        &db.url,
        Plan {
            needle: status_read,
            cut: Cut::Before,
            times: Some(1),
            afterwards: Afterwards::Refuse,
        },
    )
    .await;
    let out = run_server(&proxy.url(&db.url), &env, &["--migrate-only"]).await;
    assert_eq!(out.code, Some(4), "{}", out.stderr);
    for line in [
        "Migration stage attempt 1/3 lost the database connection while reading the migration table",
        "Database connection attempt 2/3 failed",
        "Migration failed: database unreachable after 3 attempt(s)",
    ] {
        assert!(out.stderr.contains(line), "{line}: {}", out.stderr);
    }
    assert!(rows_or_none(&mut db.connect().await).await.is_none());
}

async fn rows_or_none(conn: &mut PgConnection) -> Option<i64> {
    sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations")
        .fetch_one(conn)
        .await
        .ok()
}

/// Eight instances of `server` start at once on a fresh database while every session of that
/// database is terminated once (`pg_terminate_backend`, SQLSTATE 57P01, as a failover or a
/// restart does) at a moment inside their stage: 20 rounds. The test holds the migration lock
/// until all eight wait for it (so all are in the stage), then, chosen at random per round:
/// terminates while they all wait (its own holder with them), or releases the lock, waits until
/// the first instance is applying (`_sqlx_migrations` exists) and terminates 0–10 ms later, the
/// winner mid-apply or just past it and the rest queued. Every instance must serve and exit 0
/// on SIGTERM, with one row per version, all `success = true`, and no lock left; all eight
/// retried in the first kind of round, at least half in the second.
#[tokio::test]
async fn eight_instances_started_while_every_session_is_terminated_once_all_serve_over_20_rounds() {
    const ROUNDS: usize = 20;
    const INSTANCES: usize = 8;
    let started = Instant::now();
    let mut terminator = admin().await;
    let (mut retried_total, mut terminated_total, mut mid_apply_rounds) = (0, 0, 0);
    // Reruns of a stage cut inside a migration's transaction (rolled back or committed).
    let mut cut_applying = 0;
    for round in 0..ROUNDS {
        let db = TestDb::empty().await;
        let (holder, _) = hold_migration_lock(&db, "round-holder").await;
        let mut holder = Some(holder);
        let spawns: Vec<_> = (0..INSTANCES)
            .map(|_| {
                let url = db.url.clone();
                tokio::spawn(async move { spawn_server(&url, &[]).await })
            })
            .collect();
        let mut observer = db.connect().await;
        wait_until(
            &mut observer,
            &format!(
                "SELECT count(*) = {INSTANCES} FROM pg_locks l JOIN pg_database d \
                 ON d.oid = l.database AND d.datname = current_database() \
                 WHERE l.locktype = 'advisory' AND NOT l.granted"
            ),
            "every instance waiting for the migration lock",
        )
        .await;
        let random = uuid::Uuid::new_v4().as_u128();
        let mid_apply = random % 2 == 1;
        let moment = if mid_apply {
            // Closing the holder's session releases the lock; then as soon as the first
            // instance has created the table (under the lock, before its first migration),
            // plus a random 0–10 ms.
            drop(holder.take());
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                assert!(
                    Instant::now() < deadline,
                    "round {round}: nobody began applying"
                );
                let exists: bool =
                    sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
                        .fetch_one(&mut observer)
                        .await
                        .unwrap();
                if exists {
                    break;
                }
            }
            let delay = Duration::from_millis((random >> 1) as u64 % 11);
            tokio::time::sleep(delay).await;
            format!("{delay:?} after the first began applying")
        } else {
            "while all eight waited for the lock (the holder too)".to_string()
        };
        let ended: i64 = sqlx::query_scalar(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE datname = $1",
        )
        .bind(&db.name)
        .fetch_one(&mut terminator)
        .await
        .unwrap();
        drop((observer, holder));
        terminated_total += ended;

        let mut servers = Vec::new();
        for spawn in spawns {
            servers.push(spawn.await.unwrap());
        }
        let http = reqwest::Client::new();
        let mut retried = 0;
        for server in &servers {
            let url = format!("{}/health/ready", server.base);
            until("the instance ready", || {
                let (http, url) = (http.clone(), url.clone());
                async move { http.get(url).send().await.is_ok_and(|r| r.status() == 200) }
            })
            .await;
            retried += usize::from(server.startup.iter().any(|l| l.contains(RETRY)));
            cut_applying += server
                .startup
                .iter()
                .filter(|l| l.contains(RETRY) && l.contains("while applying migration"))
                .count();
        }
        let what = format!(
            "round {round}: terminated {ended} session(s) {moment}, {retried} of {INSTANCES} \
             instances retried"
        );
        assert_applied_once_each(&mut db.connect().await, &what).await;
        for server in &servers {
            server.signal("TERM");
        }
        for mut server in servers {
            assert_eq!(server.wait().await, Some(0), "{what}");
        }
        if mid_apply {
            mid_apply_rounds += 1;
            assert!(retried >= INSTANCES / 2, "{what}");
        } else {
            assert_eq!(retried, INSTANCES, "all were waiting: {what}");
        }
        retried_total += retried;
        eprintln!("{what}");
    }
    eprintln!(
        "{ROUNDS} rounds × {INSTANCES} instances ({mid_apply_rounds} cut mid-apply): every exit \
         0, {retried_total} stage retries ({cut_applying} inside a migration's transaction), \
         {terminated_total} sessions terminated, in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
