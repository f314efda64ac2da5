//! The `server` binary as a process: exit codes, `--migrate-only`, serving, signals.

use agent_backend::migrate::embedded;

use sqlx::ConnectOptions;

use crate::support::{
    TestDb, hold_migration_lock, options_for, project_dir, rows, run_ok, run_server, spawn_server,
    table_exists, url_for,
};

/// A database URL nothing listens on (port 1 is never a PostgreSQL server).
const UNREACHABLE: &str = "postgres://postgres@127.0.0.1:1/nothing";

#[tokio::test]
async fn version_names_embedded_migrations() {
    let out = run_server(UNREACHABLE, &[], &["--version"]).await;
    assert_eq!(out.code, Some(0));
    let set = embedded::migrations();
    let expected = format!(
        "server {} ({} embedded migrations, newest {})",
        env!("CARGO_PKG_VERSION"),
        set.len(),
        set.newest().unwrap()
    );
    assert_eq!(out.stdout.trim(), expected);
}

#[tokio::test]
async fn migrate_only_with_a_command_is_a_usage_error_that_touches_nothing() {
    let db = TestDb::empty().await;
    let out = run_server(&db.url, &[], &["--migrate-only", "migrate", "apply"]).await;
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("--migrate-only"), "{}", out.stderr);
    let untouched: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NULL")
        .fetch_one(&mut db.connect().await)
        .await
        .unwrap();
    assert!(untouched, "nothing may run");
}

#[tokio::test]
async fn migrate_only_applies_then_finds_nothing_to_do() {
    let db = TestDb::empty().await;
    let first = run_ok(&db.url, &[], &["--migrate-only"]).await;
    crate::support::assert_shows(&first.stderr, "Migrations completed successfully");
    // At info, the plan once and one line per migration, when it has committed.
    let set = embedded::migrations();
    let versions: Vec<i64> = set.iter().map(|m| m.version).collect();
    let plan = format!(
        "Applying {} migration(s): {} to {}",
        versions.len(),
        versions[0],
        versions[versions.len() - 1]
    );
    assert_eq!(first.stderr.matches(&plan).count(), 1, "{}", first.stderr);
    for v in &versions {
        let applied = format!("Applied migration {v} in");
        assert_eq!(
            first.stderr.matches(&applied).count(),
            1,
            "{}",
            first.stderr
        );
    }
    assert!(
        !first.stderr.contains("Applying migration 1 of"),
        "{}",
        first.stderr
    );
    let mut conn = db.connect().await;
    assert_eq!(rows(&mut conn).await.len(), set.len());

    let second = run_ok(&db.url, &[], &["--migrate-only"]).await;
    crate::support::assert_shows(&second.stderr, "Schema up to date");
}

#[tokio::test]
async fn unreachable_database_exits_4_after_the_configured_retries() {
    let env = [
        ("APP_DATABASE__CONNECT_ATTEMPTS", "3"),
        ("APP_DATABASE__CONNECT_RETRY_DELAY", "50ms"),
    ];
    let out = run_server(UNREACHABLE, &env, &["--migrate-only"]).await;
    assert_eq!(out.code, Some(4), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("Database connection attempt 1/3 failed"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("Database connection attempt 2/3 failed"),
        "{}",
        out.stderr
    );
    assert!(
        !out.stderr.contains("attempt 3/3 failed"),
        "no retry after the last attempt"
    );
    assert!(
        out.stderr
            .contains("Migration failed: database unreachable after 3 attempt(s)")
    );
}

#[tokio::test]
async fn failing_migration_exits_5_and_records_nothing() {
    let db = TestDb::empty().await;
    let mut conn = db.connect().await;
    // The first product migration creates `conversations`: make it fail.
    sqlx::raw_sql("CREATE TABLE conversations (squatter int)")
        .execute(&mut conn)
        .await
        .unwrap();
    let out = run_server(&db.url, &[], &["--migrate-only"]).await;
    assert_eq!(out.code, Some(5), "{}", out.stderr);
    let first = embedded::migrations().iter().next().unwrap();
    assert!(
        out.stderr
            .contains(&format!("migrations/{}", first.up.file)),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("42P07"), "{}", out.stderr);
    assert!(rows(&mut conn).await.is_empty());
}

#[tokio::test]
async fn checksum_mismatch_and_dirty_database_exit_6() {
    let db = TestDb::migrated().await;
    let mut conn = db.connect().await;
    let first = embedded::migrations().iter().next().unwrap();
    sqlx::query("UPDATE _sqlx_migrations SET checksum = '\\x00' WHERE version = $1")
        .bind(first.version)
        .execute(&mut conn)
        .await
        .unwrap();
    let out = run_server(&db.url, &[], &["--migrate-only"]).await;
    assert_eq!(out.code, Some(6), "{}", out.stderr);
    assert!(out.stderr.contains(&first.up.file), "{}", out.stderr);

    sqlx::query("UPDATE _sqlx_migrations SET checksum = $2, success = false WHERE version = $1")
        .bind(first.version)
        .bind(&first.up.checksum[..])
        .execute(&mut conn)
        .await
        .unwrap();
    let out = run_server(&db.url, &[], &["--migrate-only"]).await;
    assert_eq!(out.code, Some(6), "{}", out.stderr);
    assert!(out.stderr.contains("dirty"), "{}", out.stderr);
}

#[tokio::test]
async fn lock_wait_timeout_exits_7() {
    let db = TestDb::empty().await;
    let _holder = hold_migration_lock(&db, "test-holder").await;
    let env = [("APP_MIGRATIONS__LOCK_WAIT_TIMEOUT", "1s")];
    let out = run_server(&db.url, &env, &["--migrate-only"]).await;
    assert_eq!(out.code, Some(7), "{}", out.stderr);
    crate::support::assert_shows(&out.stderr, "waiting for the migration lock");
}

#[tokio::test]
async fn bad_configuration_exits_3_naming_the_key() {
    let out = run_server(
        UNREACHABLE,
        &[("APP_DATABASE__MAX_CONECTIONS", "5")],
        &["--migrate-only"],
    )
    .await;
    assert_eq!(out.code, Some(3), "{}", out.stderr);
    assert!(
        out.stderr.to_lowercase().contains("max_conections"),
        "{}",
        out.stderr
    );
    assert_eq!(
        out.stderr.trim().lines().count(),
        1,
        "one-line cause: {}",
        out.stderr
    );

    let out = run_server(UNREACHABLE, &[("PORT", "http")], &["config"]).await;
    assert_eq!(out.code, Some(3));
    assert!(
        out.stderr.to_lowercase().contains("server.port"),
        "{}",
        out.stderr
    );

    let out = run_server(UNREACHABLE, &[("ENVIRONMENT", "staging")], &["config"]).await;
    assert_eq!(out.code, Some(3));
    assert!(out.stderr.contains("ENVIRONMENT"), "{}", out.stderr);
}

/// Every kind of configuration error, from each kind of source (a file, a named variable, an
/// `APP_` variable, a secret read literally), names the key and the source in the reader's
/// words: never a Rust source location, type or serde's vocabulary.
#[tokio::test]
async fn no_configuration_error_names_rust_source_or_types() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        project_dir().join("config/default.toml"),
        dir.path().join("default.toml"),
    )
    .unwrap();
    let config_dir = dir.path().to_str().unwrap().to_string();
    let production = [("ENVIRONMENT", "production")];
    // (test.toml, the environment, what the error must name: the key and
    // where its value came from; a check after loading, `server.host`'s, names the key alone)
    #[allow(clippy::type_complexity)]
    let cases: &[(&str, &[(&str, &str)], &[&str])] = &[
        ("", &[("API_KEYS", "short")], &["auth.api_keys", "API_KEYS"]),
        (
            "",
            &[("APP_AUTH__API_KEYS", "[1,2]")],
            &["auth.api_keys", "APP_AUTH__API_KEYS"],
        ),
        (
            "",
            &[("METRICS_TOKEN", "short")],
            &["metrics.token", "METRICS_TOKEN"],
        ),
        (
            "",
            &[("DATABASE_URL", "postgres://u:p@[bad/x")],
            &["database.url", "DATABASE_URL"],
        ),
        (
            "",
            &[("DATABASE_URL", "postgres://h/x?sslmode=bogus")],
            &["database.url", "DATABASE_URL"],
        ),
        (
            "",
            &[("DATABASE_MIGRATION_URL", "mysql://x")],
            &["database.migration_url", "DATABASE_MIGRATION_URL"],
        ),
        ("", &[("PORT", "http")], &["server.port", "PORT"]),
        ("", &[("PORT", "99999")], &["server.port", "PORT"]),
        ("", &[("HOST", "not a host")], &["server.host"]),
        ("", &[("DEBUG", "maybe")], &["debug", "DEBUG"]),
        (
            "",
            &[("APP_DATABASE__MAX_CONNECTIONS", "abc")],
            &["database.max_connections", "APP_DATABASE__MAX_CONNECTIONS"],
        ),
        (
            "",
            &[("APP_SERVER__SHUTDOWN_GRACE", "5")],
            &["server.shutdown_grace", "APP_SERVER__SHUTDOWN_GRACE"],
        ),
        (
            "",
            &[("APP_SERVER__SHUTDOWN_GRACE", "true")],
            &["server.shutdown_grace", "APP_SERVER__SHUTDOWN_GRACE"],
        ),
        (
            "",
            &[("APP_MIGRATIONS__DRIFT_IGNORE", "5")],
            &["migrations.drift_ignore", "APP_MIGRATIONS__DRIFT_IGNORE"],
        ),
        (
            "",
            &[("APP_MIGRATIONS__ON_DRIFT", "loud")],
            &["migrations.on_drift", "APP_MIGRATIONS__ON_DRIFT"],
        ),
        (
            "",
            &[("APP_SERVER__FOO", "1")],
            &["server.foo", "APP_SERVER__FOO"],
        ),
        ("", &[("APP_SERVER", "5")], &["server", "APP_SERVER"]),
        ("", &production, &["auth.api_keys", "API_KEYS"]),
        (
            "[server]\nport = \"x\"\n",
            &[],
            &["server.port", "test.toml"],
        ),
        (
            "[auth]\napi_keys = 5\n",
            &[],
            &["auth.api_keys", "test.toml"],
        ),
        (
            "[database]\nconnect_attempts = \"x\"\n",
            &[],
            &["database.connect_attempts", "test.toml"],
        ),
        (
            "[database]\nmax_connections = -1\n",
            &[],
            &["database.max_connections", "test.toml"],
        ),
        (
            "[migrations]\nlock_wait_timeout = 3\n",
            &[],
            &["migrations.lock_wait_timeout", "test.toml"],
        ),
        ("[log]\nlevel = 5\n", &[], &["log.level", "test.toml"]),
        ("[bogus]\na = 1\n", &[], &["bogus", "test.toml"]),
        (
            "this is = not toml [",
            &[],
            &["TOML parse error at line 1, column 6", "test.toml"],
        ),
    ];
    for (file, env, names) in cases {
        std::fs::write(dir.path().join("test.toml"), file).unwrap();
        let mut env = env.to_vec();
        env.push(("CONFIG_DIR", &config_dir));
        let out = run_server(UNREACHABLE, &env, &["config"]).await;
        let case = format!("{file:?} {env:?}");
        assert_eq!(out.code, Some(3), "{case}: {}", out.stderr);
        let line = out.stderr.trim();
        assert_eq!(line.lines().count(), 1, "{case}: one line: {line}");
        for name in *names {
            assert!(line.contains(name), "{case}: names {name}: {line}");
        }
        for rust in [
            ".rs:",
            "::",
            "alloc",
            "String",
            "untagged",
            "expected u",
            "expected i",
            "Raw",
            "for key \"",
            "`APP_` environment",
            "error with configuration",
        ] {
            assert!(!line.contains(rust), "{case}: {rust:?} in: {line}");
        }
    }
}

#[tokio::test]
async fn passwords_never_reach_output_or_logs() {
    let secret = "Sup3rS3cretPw";
    let url = format!("postgres://postgres:{secret}@127.0.0.1:1/nothing");
    let config = run_server(&url, &[], &["config"]).await;
    assert_eq!(config.code, Some(0));
    assert!(
        config
            .stdout
            .contains("postgres://postgres:***@127.0.0.1:1/nothing"),
        "{}",
        config.stdout
    );
    let env = [
        ("APP_DATABASE__CONNECT_ATTEMPTS", "2"),
        ("APP_DATABASE__CONNECT_RETRY_DELAY", "10ms"),
    ];
    let failed = run_server(&url, &env, &["--migrate-only"]).await;
    assert_eq!(failed.code, Some(4));
    let bad_url = format!("postgres://postgres:{secret}@127.0.0.1:notaport/x");
    let invalid = run_server(&bad_url, &[], &["--migrate-only"]).await;
    assert_eq!(invalid.code, Some(3));
    for out in [config, failed, invalid] {
        out.assert_never_shows(secret);
    }
}

#[tokio::test]
async fn four_concurrent_runners_apply_each_migration_exactly_once() {
    let db = TestDb::empty().await;
    let runs = (0..4).map(|_| {
        let url = db.url.clone();
        async move { run_server(&url, &[], &["--migrate-only"]).await }
    });
    let outs = futures_join_all(runs).await;
    for out in &outs {
        // A migration applied twice would fail on its CREATE TABLE (exit 5).
        assert_eq!(out.code, Some(0), "{}", out.stderr);
    }
    let applied_by_runner: usize = outs
        .iter()
        .filter(|o| o.stderr.contains("Migrations completed successfully"))
        .count();
    assert!(applied_by_runner >= 1);
    let mut conn = db.connect().await;
    let rows = rows(&mut conn).await;
    assert_eq!(rows.len(), embedded::migrations().len());
    assert!(rows.iter().all(|r| r.1));
}

/// Runs futures concurrently on the runtime and collects their outputs in order.
async fn futures_join_all<F>(futures: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

#[tokio::test]
async fn serves_ready_after_migrating_and_503_when_the_database_goes() {
    let db = TestDb::empty().await;
    let mut server = spawn_server(&db.url, &[]).await;
    let mut conn = db.connect().await;
    // The port opened, so the stage ran first.
    assert!(table_exists(&mut conn, "conversations").await);
    drop(conn);
    let http = reqwest::Client::new();

    let live = http
        .get(format!("{}/health/live", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), 200);
    let ready = http
        .get(format!("{}/health/ready", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["status"], "ready");
    assert_eq!(
        body["checks"]["schema"]["applied"],
        embedded::migrations().newest().unwrap()
    );
    let summary: serde_json::Value =
        crate::support::json_body(http.get(format!("{}/health", server.base))).await;
    assert_eq!(summary["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(
        summary["migrations"]["embedded"],
        embedded::migrations().len()
    );

    db.drop_now().await;
    let ready = http
        .get(format!("{}/health/ready", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["failed"], serde_json::json!(["database"]));
    let live = http
        .get(format!("{}/health/live", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(
        live.status(),
        200,
        "liveness does not depend on the database"
    );

    server.signal("TERM");
    assert_eq!(server.wait().await, Some(0));
}

#[tokio::test]
async fn schema_behind_the_binary_is_not_ready() {
    let db = TestDb::migrated().await;
    let server = spawn_server(&db.url, &[]).await;
    let mut conn = db.connect().await;
    let newest = embedded::migrations().newest().unwrap();
    sqlx::query("DELETE FROM _sqlx_migrations WHERE version = $1")
        .bind(newest)
        .execute(&mut conn)
        .await
        .unwrap();
    let ready = reqwest::get(format!("{}/health/ready", server.base))
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["failed"], serde_json::json!(["schema"]));
    assert_eq!(
        body["checks"]["schema"]["pending"],
        serde_json::json!([newest])
    );
}

#[tokio::test]
async fn stage_failure_never_opens_the_port() {
    let db = TestDb::migrated().await;
    let mut conn = db.connect().await;
    sqlx::query("UPDATE _sqlx_migrations SET success = false")
        .execute(&mut conn)
        .await
        .unwrap();
    let out = run_server(&db.url, &[], &[]).await;
    assert_eq!(out.code, Some(6), "{}", out.stderr);
    assert!(out.stderr.contains("Migration failed:"), "{}", out.stderr);
    assert!(!out.stderr.contains("Listening on"), "{}", out.stderr);
}

#[tokio::test]
async fn sigterm_and_sigint_stop_the_server_with_exit_0() {
    for signal in ["TERM", "INT"] {
        let db = TestDb::migrated().await;
        let mut server = spawn_server(&db.url, &[]).await;
        server.signal(signal);
        assert_eq!(server.wait().await, Some(0), "SIG{signal}");
        let log = server.stderr.await.unwrap().join("\n");
        assert!(log.contains("Server stopped"), "{log}");
    }
}

#[tokio::test]
async fn development_creates_a_missing_database() {
    let name = format!("ab_test_{}", uuid::Uuid::new_v4().simple());
    let db = TestDb {
        name: name.clone(),
        url: url_for(&name),
    };
    run_ok(
        &db.url,
        &[("ENVIRONMENT", "development")],
        &["--migrate-only"],
    )
    .await;
    let mut conn = db.connect().await;
    assert_eq!(rows(&mut conn).await.len(), embedded::migrations().len());

    let missing = format!("ab_test_{}", uuid::Uuid::new_v4().simple());
    let out = run_server(&url_for(&missing), &[], &["--migrate-only"]).await;
    assert_eq!(
        out.code,
        Some(4),
        "only development creates databases: {}",
        out.stderr
    );
}

#[tokio::test]
async fn sslmode_in_database_url_is_honoured() {
    let db = TestDb::migrated().await;
    let mut conn = db.connect().await;
    let ssl: String = sqlx::query_scalar("SHOW ssl")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    let require = format!(
        "{}?sslmode=require",
        db.url.replace("postgres://", "postgresql://")
    );
    let out = run_server(&require, &[], &["--migrate-only"]).await;
    if ssl == "on" {
        assert_eq!(
            out.code,
            Some(0),
            "TLS required and offered: {}",
            out.stderr
        );
        // A self-signed local certificate does not pass full verification.
        let verify = format!("{}?sslmode=verify-full", db.url);
        let out = run_server(&verify, &[], &["--migrate-only"]).await;
        assert_eq!(out.code, Some(4), "{}", out.stderr);
    } else {
        assert_eq!(
            out.code,
            Some(4),
            "TLS required but the server has ssl=off: {}",
            out.stderr
        );
    }
}

/// Each way of not reaching PostgreSQL has its own hint: a name that does not resolve, a port
/// where another kind of server answers (here an HTTP one, with and without the TLS request
/// first), nothing listening on this machine. Only the last names the local cluster's command.
#[tokio::test]
async fn unreachable_hints_tell_dns_from_another_server_from_nothing_listening() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let http = tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        loop {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 512];
            let _ = socket.read(&mut buf).await;
            let _ = socket
                .write_all(
                    b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                )
                .await;
        }
    });
    let one = [("APP_DATABASE__CONNECT_ATTEMPTS", "1")];
    let http_url = format!("postgres://postgres@127.0.0.1:{port}/x");
    let http_plain = format!("{http_url}?sslmode=disable");
    let cases = [
        (
            "postgres://postgres@db.example.invalid/x",
            "the host name db.example.invalid does not resolve (DNS): check DATABASE_URL (its host)",
        ),
        (
            http_url.as_str(),
            "something other than PostgreSQL answers on 127.0.0.1:",
        ),
        (
            http_plain.as_str(),
            "something other than PostgreSQL answers on 127.0.0.1:",
        ),
        (UNREACHABLE, "nothing listens on 127.0.0.1:1"),
    ];
    for (url, hint) in cases {
        let out = run_server(url, &one, &["migrate", "status"]).await;
        assert_eq!(out.code, Some(4), "{url}: {}", out.stderr);
        assert!(out.stderr.contains(hint), "{url}: {}", out.stderr);
        let local = url == UNREACHABLE;
        assert_eq!(
            out.stderr.contains("pg_ctlcluster"),
            local,
            "{url}: {}",
            out.stderr
        );
        if url.contains(&port.to_string()) {
            assert!(out.stderr.contains("HTTP server"), "{url}: {}", out.stderr);
            assert!(!out.stderr.contains("does not resolve"), "{}", out.stderr);
        }
        // sqlx's module and line (`(sqlx_postgres::…:95)`) is no file of the reader's.
        assert!(!out.stderr.contains("sqlx_postgres::"), "{}", out.stderr);
    }
    http.abort();
}

#[tokio::test]
async fn connection_errors_carry_no_postgresql_source_line() {
    let missing = format!("ab_test_{}", uuid::Uuid::new_v4().simple());
    let database = run_server(&url_for(&missing), &[], &["migrate", "status"]).await;
    assert_eq!(database.code, Some(4), "{}", database.stderr);
    assert!(
        database.stderr.contains(&format!(
            "database \"{missing}\" does not exist (SQLSTATE 3D000)"
        )),
        "{}",
        database.stderr
    );
    let role_url = options_for("postgres")
        .username("no_such_role_ab")
        .to_url_lossy()
        .to_string();
    let role = run_server(&role_url, &[], &["--migrate-only"]).await;
    assert_eq!(role.code, Some(4), "{}", role.stderr);
    assert!(role.stderr.contains("no_such_role_ab"), "{}", role.stderr);
    for out in [database, role] {
        // sqlx appends PostgreSQL's C source line ("at line 948"): not a line of any file of ours.
        assert!(!out.stderr.contains(" at line "), "{}", out.stderr);
    }
}

#[tokio::test]
async fn unset_database_url_in_production_says_so() {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_server"));
    cmd.env_clear()
        .env("ENVIRONMENT", "production")
        .env("CONFIG_DIR", crate::support::project_dir().join("config"))
        .env("API_KEYS", "a-production-key-0123456789")
        .arg("--migrate-only");
    let out = cmd.output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("DATABASE_URL is not set"), "{stderr}");
    assert!(!stderr.contains("missing field"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
}

/// A server certificate the system's CA store does not vouch for is a refusal, not a blip: one
/// attempt, exit 4, and a hint about the host, sslmode and the CA store instead of retries.
#[tokio::test]
async fn an_untrusted_server_certificate_is_refused_without_retries() {
    let dir = tempfile::tempdir().unwrap();
    let other_ca = rcgen::generate_simple_self_signed(vec!["elsewhere".into()]).unwrap();
    let store = dir.path().join("ca.pem");
    std::fs::write(&store, other_ca.cert.pem()).unwrap();
    let empty_dir = dir.path().join("certs");
    std::fs::create_dir(&empty_dir).unwrap();
    let url = options_for("postgres")
        .host("localhost")
        .ssl_mode(sqlx::postgres::PgSslMode::VerifyFull)
        .to_url_lossy()
        .to_string();
    let env = [
        ("SSL_CERT_FILE", store.to_str().unwrap()),
        ("SSL_CERT_DIR", empty_dir.to_str().unwrap()),
        ("APP_DATABASE__CONNECT_ATTEMPTS", "5"),
    ];
    let out = run_server(&url, &env, &["migrate", "status"]).await;
    assert_eq!(out.code, Some(4), "{}", out.stderr);
    assert!(out.stderr.contains("UnknownIssuer"), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("the server's certificate is not trusted for this host"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("retrying"), "{}", out.stderr);
}
