//! `server migrate …` as processes: output (JSON parsed), exit codes, and what each changes.

use agent_backend::migrate::embedded;
use serde_json::json;

use crate::support::{
    TestDb, hold_migration_lock, json, rows, run_ok, run_server, schema_snapshot, table_exists,
};

fn versions() -> Vec<i64> {
    embedded::migrations().iter().map(|m| m.version).collect()
}

#[tokio::test]
async fn status_history_show_verify_report_and_exit_by_state() {
    let db = TestDb::migrated().await;
    let newest = *versions().last().unwrap();

    let status = run_ok(&db.url, &[], &["migrate", "status", "--json"]).await;
    let s = json(&status);
    assert_eq!(s["up_to_date"], true);
    assert_eq!(s["applied_newest"], newest);
    assert_eq!(s["embedded_count"], versions().len());

    let history = run_server(&db.url, &[], &["migrate", "history", "--verbose", "--json"]).await;
    assert_eq!(history.code, Some(0));
    let h = json(&history);
    let listed: Vec<i64> = crate::support::versions_in(&h);
    assert_eq!(listed, versions());
    assert!(
        h.as_array()
            .unwrap()
            .iter()
            .all(|r| r["checksum"] == "matches" && r["reversible"] == true)
    );

    let show = run_server(
        &db.url,
        &[],
        &["migrate", "show", &newest.to_string(), "--json"],
    )
    .await;
    assert_eq!(show.code, Some(0));
    let m = json(&show);
    assert_eq!(m["state"], "applied");
    assert_eq!(m["embedded_checksum"], m["applied_checksum"]);
    assert!(m["up_sql"].as_str().unwrap().contains("CREATE TABLE"));
    assert!(m["down_sql"].as_str().unwrap().contains("DROP TABLE"));
    let unknown = run_server(&db.url, &[], &["migrate", "show", "42"]).await;
    assert_eq!(unknown.code, Some(9));
    // It says what each side has and where to look next.
    assert!(
        unknown.stderr.contains(&format!(
            "version 42 is neither embedded in this binary (newest {newest}, {} migration(s)) nor \
             applied to this database (newest {newest})",
            versions().len()
        )) && unknown
            .stderr
            .contains("`server migrate history` lists the applied versions")
            && unknown
                .stderr
                .contains("Which binary answers which question"),
        "{}",
        unknown.stderr
    );

    let verify = run_server(&db.url, &[], &["migrate", "verify", "--json"]).await;
    assert_eq!(verify.code, Some(0));
    assert_eq!(json(&verify)["ok"], true);

    // Pending: exit 8 from status and verify.
    let mut conn = db.connect().await;
    sqlx::query("DELETE FROM _sqlx_migrations WHERE version = $1")
        .bind(newest)
        .execute(&mut conn)
        .await
        .unwrap();
    let status = run_server(&db.url, &[], &["migrate", "status", "--json"]).await;
    assert_eq!(status.code, Some(8));
    assert_eq!(json(&status)["pending"][0]["version"], newest);
    let verify = run_server(&db.url, &[], &["migrate", "verify", "--json"]).await;
    assert_eq!(verify.code, Some(8));
    let checks = json(&verify)["checks"].as_array().unwrap().clone();
    let at = |level: &str| -> Vec<_> {
        checks
            .iter()
            .filter(|c| c["level"] == level)
            .map(|c| c["check"].clone())
            .collect()
    };
    assert_eq!(at("fail"), [json!("pending")]);
    // Drift is not compared while a migration is pending: not a failure, and not `ok` either.
    assert_eq!(at("skipped"), [json!("drift")]);
    assert!(
        checks
            .iter()
            .all(|c| (c["ok"] == true) == (c["level"] == "ok"))
    );
    let text = run_server(&db.url, &[], &["migrate", "verify"]).await;
    assert!(
        text.stdout.contains("FAIL  pending")
            && text.stdout.contains("-     drift         not compared: "),
        "{}",
        text.stdout
    );

    // Dirty: exit 6, and the human status names it.
    sqlx::query("UPDATE _sqlx_migrations SET success = false WHERE version = $1")
        .bind(versions()[0])
        .execute(&mut conn)
        .await
        .unwrap();
    let status = run_server(&db.url, &[], &["migrate", "status"]).await;
    assert_eq!(status.code, Some(6));
    assert!(
        status
            .stdout
            .contains(&format!("Dirty:              {}", versions()[0])),
        "{}",
        status.stdout
    );
}

#[tokio::test]
async fn dry_runs_change_nothing_and_take_no_lock() {
    let db = TestDb::empty().await;
    let mut conn = db.connect().await;
    let before = schema_snapshot(&mut conn).await;
    // Another session holds the migration lock: a dry run must not wait for it.
    let (holder, _key) = hold_migration_lock(&db, "test-holder").await;
    let env = [("APP_MIGRATIONS__LOCK_WAIT_TIMEOUT", "1s")];

    let plan = run_ok(&db.url, &env, &["migrate", "apply", "--dry-run", "--json"]).await;
    let p = json(&plan);
    let planned: Vec<i64> = crate::support::versions_in(&p["steps"]);
    assert_eq!(planned, versions());
    assert!(
        p["steps"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["transaction"] == true && s["sql"].is_string())
    );
    assert_eq!(schema_snapshot(&mut conn).await, before);
    assert!(!table_exists(&mut conn, "_sqlx_migrations").await);
    sqlx::Connection::close(holder).await.unwrap();

    run_server(&db.url, &[], &["--migrate-only"]).await;
    let migrated = schema_snapshot(&mut conn).await;
    let rows_before = rows(&mut conn).await;
    let plan = run_ok(
        &db.url,
        &[],
        &["migrate", "rollback", "0", "--dry-run", "--json"],
    )
    .await;
    let newest_first: Vec<i64> = crate::support::versions_in(&json(&plan)["steps"]);
    assert_eq!(
        newest_first,
        versions().into_iter().rev().collect::<Vec<_>>()
    );
    assert_eq!(schema_snapshot(&mut conn).await, migrated);
    assert_eq!(rows(&mut conn).await, rows_before);
}

#[tokio::test]
async fn apply_rollback_apply_round_trip_gives_the_same_schema() {
    let db = TestDb::empty().await;
    let mut conn = db.connect().await;
    run_ok(&db.url, &[], &["migrate", "apply"]).await;
    let first = schema_snapshot(&mut conn).await;

    let back = run_ok(
        &db.url,
        &[],
        &["migrate", "rollback", "0", "--yes", "--json"],
    )
    .await;
    assert_eq!(
        json(&back)["reverted"].as_array().unwrap().len(),
        versions().len()
    );
    assert!(rows(&mut conn).await.is_empty());
    assert!(!table_exists(&mut conn, "conversations").await);

    run_ok(&db.url, &[], &["migrate", "apply"]).await;
    assert_eq!(schema_snapshot(&mut conn).await, first);
}

#[tokio::test]
async fn apply_to_stops_at_the_target_and_refuses_unknown_ones() {
    let db = TestDb::empty().await;
    let first = versions()[0].to_string();
    run_ok(&db.url, &[], &["migrate", "apply", "--to", &first]).await;
    let mut conn = db.connect().await;
    assert_eq!(rows(&mut conn).await.len(), 1);
    let out = run_server(&db.url, &[], &["migrate", "apply", "--to", "12345"]).await;
    assert_eq!(out.code, Some(9), "{}", out.stderr);
    assert_eq!(rows(&mut conn).await.len(), 1);
}

#[tokio::test]
async fn rollback_refuses_without_yes_or_without_down_sql() {
    let db = TestDb::migrated().await;
    let mut conn = db.connect().await;
    let before = schema_snapshot(&mut conn).await;
    let out = run_server(&db.url, &[], &["migrate", "rollback", "0"]).await;
    assert_eq!(out.code, Some(9), "{}", out.stderr);
    assert!(out.stderr.contains("--yes"), "{}", out.stderr);

    // A version this binary does not embed has no down SQL here: refuse, change nothing.
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (99990101000000, 'from a newer release', true, '\\x00', 1)",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let out = run_server(&db.url, &[], &["migrate", "rollback", "0", "--yes"]).await;
    assert_eq!(out.code, Some(9), "{}", out.stderr);
    assert!(out.stderr.contains("99990101000000"), "{}", out.stderr);
    assert_eq!(schema_snapshot(&mut conn).await, before);
    assert_eq!(rows(&mut conn).await.len(), versions().len() + 1);
}

#[tokio::test]
async fn database_ahead_of_the_binary_serves_by_default_and_is_strict_on_request() {
    let db = TestDb::migrated().await;
    let mut conn = db.connect().await;
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (99990101000000, 'from a newer release', true, '\\x00', 1)",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let out = run_ok(&db.url, &[], &["--migrate-only"]).await;
    assert!(out.stderr.contains("does not embed"), "{}", out.stderr);
    let status = run_server(&db.url, &[], &["migrate", "status", "--json"]).await;
    assert_eq!(
        json(&status)["unknown_applied"],
        json!([99990101000000_i64])
    );
    let strict = [("APP_MIGRATIONS__ON_UNKNOWN_APPLIED", "error")];
    let out = run_server(&db.url, &strict, &["--migrate-only"]).await;
    assert_eq!(out.code, Some(6), "{}", out.stderr);
}

#[tokio::test]
async fn repair_records_the_operators_decision() {
    let db = TestDb::migrated().await;
    let mut conn = db.connect().await;
    let newest = *versions().last().unwrap();
    let mark_dirty = "UPDATE _sqlx_migrations SET success = false WHERE version = $1";
    sqlx::query(mark_dirty)
        .bind(newest)
        .execute(&mut conn)
        .await
        .unwrap();

    let refused = run_server(&db.url, &[], &["--migrate-only"]).await;
    assert_eq!(refused.code, Some(6));
    crate::support::assert_shows(&refused.stderr, "migrate repair");
    // A look changes nothing and succeeds: a Render job running it does not appear failed.
    let explain = run_ok(&db.url, &[], &["migrate", "repair", "--json"]).await;
    let view = json(&explain);
    assert_eq!(view["dirty"]["version"], newest);
    assert_eq!(view["lock_holder"], serde_json::Value::Null);
    assert_eq!(
        view["next"][1],
        format!("server migrate repair --version {newest} --mark-reverted --yes")
    );
    let explain = run_ok(&db.url, &[], &["migrate", "repair"]).await;
    assert!(
        explain.stdout.contains("--mark-applied") && explain.stdout.contains("--mark-reverted"),
        "{}",
        explain.stdout
    );
    // A row this binary's runner never leaves (a finished run's time, marked by hand): the
    // binary embeds the file and says so, with its SQL to check against.
    let migration = embedded::migrations().get(newest).unwrap();
    let file = &migration.up.file;
    let first_line = migration
        .up
        .sql
        .lines()
        .find(|l| l.starts_with("CREATE"))
        .unwrap();
    assert!(
        explain
            .stdout
            .contains(&format!("This binary embeds migrations/{file}"))
            && explain.stdout.contains(first_line)
            && !explain.stdout.contains("does not embed"),
        "{}",
        explain.stdout
    );
    // A decision without its confirmation, or a confirmation without a decision: refused.
    for (args, says) in [
        (&["migrate", "repair", "--mark-applied"][..], "add --yes"),
        (
            &["migrate", "repair", "--yes"][..],
            "add --mark-applied or --mark-reverted",
        ),
    ] {
        let out = run_server(&db.url, &[], args).await;
        assert_eq!(out.code, Some(9), "{args:?}: {}", out.stderr);
        assert!(out.stderr.contains(says), "{args:?}: {}", out.stderr);
    }
    assert!(
        rows(&mut conn).await.iter().any(|r| !r.1),
        "nothing changed without --yes"
    );

    // The operator finished it by hand.
    run_ok(
        &db.url,
        &[],
        &["migrate", "repair", "--mark-applied", "--yes"],
    )
    .await;
    assert_eq!(
        run_server(&db.url, &[], &["--migrate-only"]).await.code,
        Some(0)
    );

    // The operator undid it by hand: the row goes and the next run applies it again.
    sqlx::query(mark_dirty)
        .bind(newest)
        .execute(&mut conn)
        .await
        .unwrap();
    // Undone by hand as its down file would, whichever migration is the newest.
    let before = schema_snapshot(&mut conn).await;
    let down = migration
        .down
        .as_ref()
        .expect("the newest migration has a down file");
    sqlx::raw_sql(sqlx::AssertSqlSafe(down.sql.clone()))
        .execute(&mut conn)
        .await
        .unwrap();
    assert_ne!(schema_snapshot(&mut conn).await, before);
    let reverted = run_ok(
        &db.url,
        &[],
        &["migrate", "repair", "--mark-reverted", "--yes", "--json"],
    )
    .await;
    assert_eq!(json(&reverted)["repaired"], newest);
    run_ok(&db.url, &[], &["--migrate-only"]).await;
    assert_eq!(schema_snapshot(&mut conn).await, before);

    let nothing = run_server(
        &db.url,
        &[],
        &["migrate", "repair", "--mark-applied", "--yes"],
    )
    .await;
    assert_eq!(nothing.code, Some(0));
    assert!(nothing.stdout.contains("Nothing to repair"));
}

#[tokio::test]
async fn eight_concurrent_runners_apply_each_migration_exactly_once_over_trials() {
    for trial in 0..3 {
        let db = TestDb::empty().await;
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let url = db.url.clone();
                tokio::spawn(async move { run_server(&url, &[], &["--migrate-only"]).await })
            })
            .collect();
        for h in handles {
            let out = h.await.unwrap();
            // A migration applied twice fails on its CREATE TABLE (exit 5).
            assert_eq!(out.code, Some(0), "trial {trial}: {}", out.stderr);
        }
        let mut conn = db.connect().await;
        let rows = rows(&mut conn).await;
        assert_eq!(
            rows.iter().map(|r| r.0).collect::<Vec<_>>(),
            versions(),
            "trial {trial}"
        );
        assert!(rows.iter().all(|r| r.1));
    }
}

#[tokio::test]
async fn rollback_to_a_version_neither_applied_nor_embedded_exits_9_and_changes_nothing() {
    let db = TestDb::migrated().await;
    let mut conn = db.connect().await;
    let schema = schema_snapshot(&mut conn).await;
    let rows_before = rows(&mut conn).await;
    // One digit short of an applied version: it used to revert everything above it.
    let typo = (versions()[1] / 10).to_string();
    for args in [
        vec!["migrate", "rollback", typo.as_str(), "--yes"],
        vec!["migrate", "rollback", typo.as_str(), "--dry-run"],
        vec!["migrate", "rollback", "--yes", "--", "-1"],
    ] {
        let out = run_server(&db.url, &[], &args).await;
        assert_eq!(out.code, Some(9), "{args:?}: {}", out.stderr);
        assert!(
            out.stderr
                .contains("is neither 0 nor a version that is applied or embedded"),
            "{}",
            out.stderr
        );
        assert_eq!(schema_snapshot(&mut conn).await, schema);
        assert_eq!(rows(&mut conn).await, rows_before);
    }

    // An applied version the binary does not embed is a valid target.
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (99990101000000, 'from a newer release', true, '\\x00', 1)",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let out = run_ok(
        &db.url,
        &[],
        &["migrate", "rollback", "99990101000000", "--yes"],
    )
    .await;
    crate::support::assert_shows(&out.stdout, "Nothing to roll back");
}

#[tokio::test]
async fn rollback_prompt_says_how_many_migrations_and_which_down_files_run() {
    let db = TestDb::migrated().await;
    let first = versions()[0].to_string();
    // No terminal, no --yes: the question is printed and refused.
    let out = run_server(&db.url, &[], &["migrate", "rollback", &first]).await;
    assert_eq!(out.code, Some(9), "{}", out.stderr);
    let reverted = &embedded::migrations().iter().collect::<Vec<_>>()[1..];
    assert!(
        out.stderr
            .contains(&format!("Revert {} migration(s)", reverted.len())),
        "{}",
        out.stderr
    );
    for m in reverted {
        let down = &m.down.as_ref().unwrap().file;
        assert!(out.stderr.contains(down.as_str()), "{down}: {}", out.stderr);
    }
    for table in ["ui_artifact_versions", "ui_artifacts", "messages"] {
        assert!(
            out.stderr.contains(&format!("table {table}")),
            "{table}: {}",
            out.stderr
        );
    }
    assert!(
        !out.stderr.contains("table conversations"),
        "{}",
        out.stderr
    );
    let plan = run_server(&db.url, &[], &["migrate", "rollback", &first, "--dry-run"]).await;
    assert!(
        plan.stdout
            .contains(&format!("would rollback {} migration(s)", reverted.len())),
        "{}",
        plan.stdout
    );
}

#[tokio::test]
async fn status_shows_who_holds_the_migration_lock() {
    let db = TestDb::migrated().await;
    let (holder, _key) = hold_migration_lock(&db, "deploy-42").await;
    let status = run_ok(&db.url, &[], &["migrate", "status"]).await;
    assert!(
        status.stdout.contains("Migration lock:     held by pid")
            && status.stdout.contains("\"deploy-42\""),
        "{}",
        status.stdout
    );
    let status = run_server(&db.url, &[], &["migrate", "status", "--json"]).await;
    assert_eq!(
        json(&status)["lock_holder"]["application_name"],
        "deploy-42"
    );
    sqlx::Connection::close(holder).await.unwrap();
    let status = run_server(&db.url, &[], &["migrate", "status", "--json"]).await;
    assert_eq!(json(&status)["lock_holder"], serde_json::Value::Null);
}
