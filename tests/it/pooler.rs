//! Behind a real PgBouncer in transaction mode (Debian's `pgbouncer`, installed by `.ci/run`):
//! the API works through it, migrations through it are refused before the lock is taken, and
//! with `DATABASE_MIGRATION_URL` direct, replicas serving through it migrate exactly once.
//!
//! Each test starts its own PgBouncer, in the foreground on a free loopback port, in front of
//! the tests' PostgreSQL (trust authentication, as the harness assumes), and kills it on drop.
//!
//! sqlx runs every query as a named prepared statement, parsed and bound in two protocol
//! round trips: in transaction mode only PgBouncer 1.21+ with `max_prepared_statements` keeps
//! that working when clients share its server connections. Older PgBouncers (Debian 12 ships
//! 1.18) answer concurrent clients with `prepared statement "sqlx_s_1" already exists`, so the
//! checks that need concurrent clients on the pooled side run only on a PgBouncer that has it.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use agent_backend::migrate::embedded;
use sqlx::{ConnectOptions, Connection};

use crate::support::{
    TestDb, admin_url, json, rows, run_server, schema_snapshot, spawn_server, table_exists,
};

/// A PgBouncer process with `pool_mode = transaction`, killed on drop.
struct PgBouncer {
    child: Child,
    port: u16,
    /// 1.21 or newer, started with `max_prepared_statements`: concurrent sqlx clients work.
    prepared_statements: bool,
    _dir: tempfile::TempDir,
}

/// `pgbouncer --version`'s (major, minor).
fn version(binary: &str) -> (u32, u32) {
    let out = Command::new(binary).arg("--version").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let number = text
        .split_whitespace()
        .nth(1)
        .unwrap_or_else(|| panic!("pgbouncer --version: {text}"));
    let mut parts = number.split('.').map(|p| p.parse::<u32>().unwrap());
    (parts.next().unwrap(), parts.next().unwrap())
}

impl PgBouncer {
    async fn start() -> Self {
        let admin: sqlx::postgres::PgConnectOptions = admin_url().parse().unwrap();
        let (host, pg_port, user) = (admin.get_host(), admin.get_port(), admin.get_username());
        let binary = ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .unwrap_or_else(|| {
                panic!(
                    "pgbouncer is not installed: apt-get install -y pgbouncer (bash .ci/run does)"
                )
            });
        let prepared_statements = version(binary) >= (1, 21);
        let dir = tempfile::tempdir().unwrap();
        // Run as root (CI), PgBouncer refuses to start unless told which user to become; that
        // user must read the directory.
        let root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.trim_ascii() == b"0");
        set_mode(dir.path(), 0o755);
        // A port that was free a moment ago may be taken by the time PgBouncer binds it: try
        // a few.
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let ini = dir.path().join("pgbouncer.ini");
            let userlist = dir.path().join("userlist.txt");
            std::fs::write(&userlist, format!("\"{user}\" \"\"\n")).unwrap();
            std::fs::write(
                &ini,
                format!(
                    "[databases]\n\
                     * = host={host} port={pg_port}\n\
                     [pgbouncer]\n\
                     listen_addr = 127.0.0.1\n\
                     listen_port = {port}\n\
                     unix_socket_dir =\n\
                     auth_type = trust\n\
                     auth_file = {userlist}\n\
                     admin_users = {user}\n\
                     pool_mode = transaction\n\
                     default_pool_size = 20\n\
                     max_client_conn = 500\n\
                     ignore_startup_parameters = extra_float_digits, options\n\
                     {prepared}",
                    userlist = userlist.display(),
                    prepared = if prepared_statements {
                        "max_prepared_statements = 200\n"
                    } else {
                        ""
                    },
                ),
            )
            .unwrap();
            set_mode(&ini, 0o644);
            set_mode(&userlist, 0o644);
            let mut cmd = Command::new(binary);
            cmd.arg("-q");
            if root {
                cmd.args(["-u", "postgres"]);
            }
            let mut child = cmd
                .arg(&ini)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run {binary}: {e}"));
            let url = format!("postgres://{user}@127.0.0.1:{port}/postgres");
            let started = Instant::now();
            // Ready when it accepts a connection and answers a query; gone when it exited.
            loop {
                if let Some(status) = child.try_wait().unwrap() {
                    let mut err = String::new();
                    if let Some(mut e) = child.stderr.take() {
                        let _ = std::io::Read::read_to_string(&mut e, &mut err);
                    }
                    if err.contains("Address already in use") {
                        break;
                    }
                    panic!("pgbouncer exited ({status}) before accepting connections: {err}");
                }
                if answers(&url).await {
                    return Self {
                        child,
                        port,
                        prepared_statements,
                        _dir: dir,
                    };
                }
                assert!(
                    started.elapsed() < Duration::from_secs(30),
                    "pgbouncer did not accept connections on port {port} within 30 s"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        panic!("pgbouncer found no free port in 5 attempts");
    }

    /// The URL of `database` through the pooler.
    fn url(&self, database: &str) -> String {
        let admin: sqlx::postgres::PgConnectOptions = admin_url().parse().unwrap();
        format!(
            "postgres://{}@127.0.0.1:{}/{database}",
            admin.get_username(),
            self.port
        )
    }

    /// `SHOW CLIENTS` on PgBouncer's admin console, one line per client connection.
    fn clients(&self) -> String {
        let out = Command::new("psql")
            .args(["-X", "-tA", "-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", "postgres", "-d", "pgbouncer", "-c", "SHOW CLIENTS"])
            .output()
            .expect("psql");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

async fn answers(url: &str) -> bool {
    let Ok(options) = url.parse::<sqlx::postgres::PgConnectOptions>() else {
        return false;
    };
    match options.connect().await {
        Ok(mut conn) => {
            let ok = sqlx::raw_sql("SELECT 1").execute(&mut conn).await.is_ok();
            let _ = conn.close().await;
            ok
        }
        Err(_) => false,
    }
}

#[tokio::test]
async fn the_api_works_through_pgbouncer_in_transaction_mode() {
    let db = TestDb::migrated().await;
    let bouncer = PgBouncer::start().await;
    // Without prepared-statement support in PgBouncer, sqlx works through it only while it is
    // PgBouncer's one client (its statements then stay on the server PgBouncer keeps handing
    // back): a pool of one. docs/operations.md asks for PgBouncer 1.21+ in production.
    let pool_max = if bouncer.prepared_statements {
        "10"
    } else {
        "1"
    };
    let server = spawn_server(
        &bouncer.url(&db.name),
        &[
            ("DATABASE_MIGRATION_URL", &db.url),
            ("APP_DATABASE__MAX_CONNECTIONS", pool_max),
        ],
    )
    .await;
    let http = reqwest::Client::new();

    // One request after another: create, read, append, list.
    let created = http
        .post(format!("{}/api/v1/conversations", server.base))
        .json(&serde_json::json!({ "title": "through the pooler" }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status().as_u16(), 201);
    let id = created.json::<serde_json::Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let conversation = format!("{}/api/v1/conversations/{id}", server.base);
    let read = http.get(&conversation).send().await.unwrap();
    assert_eq!(read.status().as_u16(), 200);
    let read = read.json::<serde_json::Value>().await.unwrap();
    assert_eq!(read["title"], "through the pooler", "{read}");
    let appended = http
        .post(format!("{conversation}/messages"))
        .json(&serde_json::json!({ "role": "user", "content": "hello" }))
        .send()
        .await
        .unwrap();
    assert_eq!(appended.status().as_u16(), 201);
    let mut expected_messages = 1;
    if bouncer.prepared_statements {
        // Appends in parallel: several pool connections multiplexed on PgBouncer's servers.
        let appends = (0..8).map(|i| {
            let (http, url) = (http.clone(), format!("{conversation}/messages"));
            tokio::spawn(async move {
                http.post(url)
                    .json(&serde_json::json!({ "role": "user", "content": format!("m{i}") }))
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            })
        });
        for append in appends {
            assert_eq!(append.await.unwrap(), 201);
        }
        expected_messages += 8;
    }
    let listed = http
        .get(format!("{conversation}/messages"))
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status().as_u16(), 200);
    let page = listed.json::<serde_json::Value>().await.unwrap();
    assert_eq!(
        page["items"].as_array().unwrap().len(),
        expected_messages,
        "{page}"
    );

    // The pool's connections are PgBouncer's clients, on this database.
    let clients = bouncer.clients();
    assert!(
        clients
            .lines()
            .any(|l| l.contains(&db.name) && l.contains("agent-backend")),
        "SHOW CLIENTS:\n{clients}"
    );
    // /health shows the pool: its maximum, and connections open, idle and in use.
    let health: serde_json::Value = http
        .get(format!("{}/health", server.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let pool = &health["pool"];
    assert_eq!(pool["max"].to_string(), pool_max, "{health}");
    let size = pool["size"].as_u64().unwrap();
    assert!(size >= 1, "{health}");
    assert_eq!(
        pool["idle"].as_u64().unwrap() + pool["in_use"].as_u64().unwrap(),
        size,
        "{health}"
    );
}

#[tokio::test]
async fn migrations_through_pgbouncer_are_refused_before_the_lock() {
    let db = TestDb::empty().await;
    let bouncer = PgBouncer::start().await;
    let pooled = bouncer.url(&db.name);

    for args in [&["--migrate-only"][..], &["migrate", "apply"]] {
        let out = run_server(&pooled, &[], args).await;
        assert_eq!(out.code, Some(13), "{args:?}: {}", out.stderr);
        let message = out
            .stderr
            .lines()
            .find(|l| l.contains("transaction-mode connection pooler"))
            .unwrap_or_else(|| panic!("{args:?}: no refusal in\n{}", out.stderr));
        assert!(message.contains("DATABASE_MIGRATION_URL"), "{message}");
    }
    // Nothing was changed: no bookkeeping table, no schema, no lock left behind.
    let mut conn = db.connect().await;
    assert!(!table_exists(&mut conn, "_sqlx_migrations").await);
    assert_eq!(schema_snapshot(&mut conn).await, "");
    let advisory: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database \
         WHERE d.datname = current_database() AND l.locktype = 'advisory'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(advisory, 0);

    // The check runs only when the lock is about to be taken: on an up-to-date database the
    // no-op start-up check through the pooler passes (one query, no lock).
    let migrated = TestDb::migrated().await;
    let out = run_server(&bouncer.url(&migrated.name), &[], &["--migrate-only"]).await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(out.stderr.contains("Schema up to date"), "{}", out.stderr);

    // The same run with DATABASE_MIGRATION_URL direct applies everything.
    let out = run_server(
        &pooled,
        &[("DATABASE_MIGRATION_URL", &db.url)],
        &["--migrate-only"],
    )
    .await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert_eq!(rows(&mut conn).await.len(), embedded::migrations().len());
    // `migrate` commands report the database they connected to: the migration URL.
    let status = run_server(
        &pooled,
        &[("DATABASE_MIGRATION_URL", &db.url)],
        &["migrate", "status", "--json"],
    )
    .await;
    assert_eq!(status.code, Some(0), "{}", status.stderr);
    assert_eq!(json(&status)["database"], db.url.as_str());
}

#[tokio::test]
async fn eight_replicas_serving_through_pgbouncer_with_a_direct_migration_url_migrate_once() {
    let db = TestDb::empty().await;
    let reference = TestDb::migrated().await;
    let bouncer = PgBouncer::start().await;
    let pooled = bouncer.url(&db.name);

    let starts: Vec<_> = (0..8)
        .map(|_| {
            let (pooled, direct) = (pooled.clone(), db.url.clone());
            tokio::spawn(async move {
                spawn_server(&pooled, &[("DATABASE_MIGRATION_URL", &direct)]).await
            })
        })
        .collect();
    let mut servers = Vec::new();
    for start in starts {
        // A migration applied twice fails on its CREATE TABLE (exit 5): that runner would
        // never listen, and spawn_server would fail.
        servers.push(start.await.unwrap());
    }
    // Each embedded migration was applied by exactly one of them.
    for m in embedded::migrations().iter() {
        let line = format!("Applied migration {} in", m.version);
        let appliers = servers
            .iter()
            .filter(|s| s.startup.iter().any(|l| l.contains(&line)))
            .count();
        assert_eq!(
            appliers, 1,
            "migration {} applied by {appliers} runners",
            m.version
        );
    }
    let mut conn = db.connect().await;
    let recorded = rows(&mut conn).await;
    assert_eq!(
        recorded.iter().map(|r| r.0).collect::<Vec<_>>(),
        embedded::migrations()
            .iter()
            .map(|m| m.version)
            .collect::<Vec<_>>()
    );
    assert!(recorded.iter().all(|r| r.1));
    let mut expected = reference.connect().await;
    assert_eq!(
        schema_snapshot(&mut conn).await,
        schema_snapshot(&mut expected).await
    );
    // Every replica's pool is a client of the pooler (its start-up budget query went through
    // it) and, where PgBouncer keeps prepared statements working across clients, each is ready
    // through it.
    let clients = bouncer.clients();
    assert!(
        clients.lines().filter(|l| l.contains(&db.name)).count() >= 8,
        "SHOW CLIENTS:\n{clients}"
    );
    if bouncer.prepared_statements {
        for server in &servers {
            let ready = reqwest::get(format!("{}/health/ready", server.base))
                .await
                .unwrap();
            assert_eq!(ready.status().as_u16(), 200);
        }
    }
}

#[tokio::test]
async fn start_up_logs_the_pool_and_warns_when_replicas_exceed_the_connection_limit() {
    let db = TestDb::migrated().await;
    let mut conn = db.connect().await;
    let max: String = sqlx::query_scalar("SELECT current_setting('max_connections')")
        .fetch_one(&mut conn)
        .await
        .unwrap();

    // As many instances as PostgreSQL has slots: under one connection each, fewer than a pool
    // of 10 plus the migration session.
    let crowded = spawn_server(&db.url, &[("APP_SERVER__INSTANCES", &max)]).await;
    let log = crowded.startup.join("\n");
    assert!(
        log.contains("Request pool: at most 10 connection(s)"),
        "{log}"
    );
    assert!(
        log.contains(&format!("Connection budget exceeded: {max} instance(s)")),
        "{log}"
    );

    let alone = spawn_server(&db.url, &[]).await;
    let log = alone.startup.join("\n");
    assert!(
        log.contains("Connection budget: 1 instance(s) × (10 pooled + 1 migration session) fit"),
        "{log}"
    );
    assert!(!log.contains("exceeded"), "{log}");
}

#[tokio::test]
async fn the_migration_url_is_masked_and_named_when_it_fails() {
    let db = TestDb::empty().await;
    let secret = "s3cr3t-migration-pw";
    let unreachable = format!("postgres://postgres:{secret}@127.0.0.1:1/nothing");
    let env = [
        ("DATABASE_MIGRATION_URL", unreachable.as_str()),
        ("APP_DATABASE__CONNECT_ATTEMPTS", "1"),
    ];
    let config = run_server(&db.url, &env, &["config"]).await;
    assert_eq!(config.code, Some(0), "{}", config.stderr);
    assert!(
        config
            .stdout
            .contains("migration_url = \"postgres://postgres:***@127.0.0.1:1/nothing\""),
        "{}",
        config.stdout
    );
    // Migrations connect there, not to DATABASE_URL (which is up): exit 4, naming the variable.
    let failed = run_server(&db.url, &env, &["--migrate-only"]).await;
    assert_eq!(failed.code, Some(4), "{}", failed.stderr);
    assert!(
        failed.stderr.contains("check DATABASE_MIGRATION_URL"),
        "{}",
        failed.stderr
    );
    let status = run_server(&db.url, &env, &["migrate", "status"]).await;
    assert_eq!(status.code, Some(4), "{}", status.stderr);
    let bad = run_server(
        &db.url,
        &[(
            "DATABASE_MIGRATION_URL",
            &format!("mysql://u:{secret}@h/db"),
        )],
        &["config"],
    )
    .await;
    assert_eq!(bad.code, Some(3));
    assert!(
        bad.stderr.contains("database.migration_url"),
        "{}",
        bad.stderr
    );
    for out in [config, failed, status, bad] {
        assert!(
            !out.stdout.contains(secret) && !out.stderr.contains(secret),
            "{}{}",
            out.stdout,
            out.stderr
        );
    }
}

/// The second guard, after the lock is taken: the statement that follows `pg_advisory_lock`
/// must run on the backend holding the lock. Through the pooler, a client that takes the
/// backend in between (as another runner's transaction would) moves the next statement.
#[tokio::test]
async fn the_lock_is_confirmed_on_the_backend_that_runs_the_next_statement() {
    use agent_backend::migrate::lock;
    let db = TestDb::empty().await;
    let bouncer = PgBouncer::start().await;
    let held_here = async |conn: &mut sqlx::PgConnection, key: i64| -> bool {
        sqlx::Row::get(
            &sqlx::raw_sql(sqlx::AssertSqlSafe(lock::held_here_sql(key)))
                .fetch_one(conn)
                .await
                .unwrap(),
            0,
        )
    };

    // A session: true right after taking it, false once released.
    let mut direct = db.connect().await;
    let key = lock::key_for(&mut direct).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "SELECT pg_advisory_lock({key})"
    )))
    .execute(&mut direct)
    .await
    .unwrap();
    assert!(held_here(&mut direct, key).await);
    lock::release(&mut direct, key).await.unwrap();
    assert!(!held_here(&mut direct, key).await);

    // Through the pooler: the lock stays on the backend that took it, which another client's
    // transaction now occupies; this connection's next statement runs elsewhere.
    let pooled: sqlx::postgres::PgConnectOptions = bouncer.url(&db.name).parse().unwrap();
    let mut runner = pooled.connect().await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "SELECT pg_advisory_lock({key})"
    )))
    .execute(&mut runner)
    .await
    .unwrap();
    let mut other = pooled.connect().await.unwrap();
    sqlx::raw_sql("BEGIN; SELECT 1")
        .execute(&mut other)
        .await
        .unwrap();
    assert!(!held_here(&mut runner, key).await);
    let _ = other.close().await;
    let _ = runner.close().await;
}
