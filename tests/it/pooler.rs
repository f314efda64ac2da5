//! Behind a real PgBouncer in transaction mode: the API works through it with concurrent
//! clients, migrations through it are refused before the lock is taken, and with
//! `DATABASE_MIGRATION_URL` direct, replicas serving through it migrate exactly once.
//!
//! Each test starts its own PgBouncer, in the foreground on a free loopback port, in front of
//! the tests' PostgreSQL (trust authentication, as the harness assumes), and kills it on drop.
//!
//! sqlx runs every query as a named prepared statement, parsed and bound in two protocol
//! round trips: in transaction mode only PgBouncer 1.21+ with `max_prepared_statements` keeps
//! that working when clients share its server connections (older ones answer concurrent clients
//! with `prepared statement "sqlx_s_1" already exists`). That is what docs/operations.md asks
//! operators to run, so it is what these tests run: Debian 12 ships 1.18, and `.ci/pgbouncer.sh`
//! builds 1.24.1 from Debian 13's source into a fixed cache directory, where `binary` looks.
//! When none is found the tests run that script themselves (once, about a minute), so
//! `cargo test` needs nothing else here; if it cannot build one they fail saying how to get
//! one rather than skip: a skip would pass the suite without the one check this module exists
//! for, as it did on 1.18.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use agent_backend::migrate::embedded;
use sqlx::{ConnectOptions, Connection};

use crate::support::{
    TestDb, admin_url, json, project_dir, rows, run_ok, run_server, schema_snapshot, spawn_server,
    table_exists,
};

/// A PgBouncer 1.21+ process with `pool_mode = transaction` and `max_prepared_statements`,
/// killed on drop.
struct PgBouncer {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

/// Where `.ci/pgbouncer.sh` builds PgBouncer.
fn built_by_ci_script() -> Option<PathBuf> {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(cache.join("agent-backend/pgbouncer-1.24.1/bin/pgbouncer"))
}

/// `pgbouncer --version`'s (major, minor), or None when it does not run.
fn version(binary: &Path) -> Option<(u32, u32)> {
    let out = Command::new(binary).arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut parts = text.split_whitespace().nth(1)?.split('.');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// The PgBouncer to run: `$PGBOUNCER` if set (it must be 1.21+), else the first 1.21+ of the
/// one `.ci/pgbouncer.sh` builds, `pgbouncer` on `PATH` and Debian's.
fn binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let how = "bash .ci/pgbouncer.sh builds PgBouncer 1.24.1 from Debian's source (a minute) \
                   into ~/.cache/agent-backend/pgbouncer-1.24.1, where these tests look; or set \
                   PGBOUNCER to a pgbouncer 1.21+";
        if let Some(set) = std::env::var_os("PGBOUNCER").filter(|v| !v.is_empty()) {
            let set = PathBuf::from(set);
            let found = match version(&set) {
                Some(v) if v >= (1, 21) => return set,
                Some((major, minor)) => format!("PgBouncer {major}.{minor}"),
                None => "not a pgbouncer that answers --version".to_string(),
            };
            panic!(
                "PGBOUNCER={} is {found}; the pooler tests need PgBouncer 1.21+ (for sqlx's \
                 prepared statements in transaction mode): {how}",
                set.display()
            );
        }
        let path = std::env::var_os("PATH").unwrap_or_default();
        let candidates = built_by_ci_script()
            .into_iter()
            .chain(std::env::split_paths(&path).map(|d| d.join("pgbouncer")))
            .chain(["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"].map(PathBuf::from));
        let mut seen = Vec::new();
        for candidate in candidates {
            match version(&candidate) {
                Some(v) if v >= (1, 21) => return candidate,
                Some((major, minor)) => {
                    seen.push(format!("{} is {major}.{minor}", candidate.display()))
                }
                None => {}
            }
        }
        // None here: build one, as `.ci/run` would, so that `cargo test` needs nothing else on
        // this machine kind (the script is idempotent and swaps its install in whole).
        let script = project_dir().join(".ci/pgbouncer.sh");
        let built = Command::new("bash").arg(&script).output();
        match built {
            Ok(out) if out.status.success() => {
                let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
                let path = PathBuf::from(stdout.lines().last().unwrap_or_default().trim());
                if version(&path).is_some_and(|v| v >= (1, 21)) {
                    return path;
                }
                panic!(
                    "{} printed {}, not a PgBouncer 1.21+: {how}",
                    script.display(),
                    path.display()
                )
            }
            Ok(out) => panic!(
                "no PgBouncer 1.21+ found ({}) and {} failed: {}\n{how}",
                if seen.is_empty() {
                    "none installed".to_string()
                } else {
                    seen.join(", ")
                },
                script.display(),
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(e) => panic!("cannot run {}: {e}; {how}", script.display()),
        }
    })
}

impl PgBouncer {
    async fn start() -> Self {
        let admin: sqlx::postgres::PgConnectOptions = admin_url().parse().unwrap();
        let (host, pg_port, user) = (admin.get_host(), admin.get_port(), admin.get_username());
        let binary = binary();
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
                     max_prepared_statements = 200\n",
                    userlist = userlist.display(),
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
                .unwrap_or_else(|e| panic!("cannot run {}: {e}", binary.display()));
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

    /// `SHOW <what>` on PgBouncer's admin console (`CLIENTS`, `SERVERS`), one line per row.
    fn show(&self, what: &str) -> String {
        let out = Command::new("psql")
            .args(["-X", "-tA", "-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args([
                "-U",
                "postgres",
                "-d",
                "pgbouncer",
                "-c",
                &format!("SHOW {what}"),
            ])
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

/// Many requests at once over a pool of several connections: PgBouncer hands its server
/// connections from one client to another between transactions, and every statement sqlx
/// prepared on one server must still run wherever the next transaction lands.
#[tokio::test]
async fn the_api_works_through_pgbouncer_in_transaction_mode() {
    use serde_json::{Value, json};
    let db = TestDb::migrated().await;
    let bouncer = PgBouncer::start().await;
    let server = spawn_server(
        &bouncer.url(&db.name),
        &[
            ("DATABASE_MIGRATION_URL", &db.url),
            ("APP_DATABASE__MAX_CONNECTIONS", "8"),
        ],
    )
    .await;
    let http = reqwest::Client::new();
    let api = format!("{}/api/v1", server.base);

    // Twelve clients in parallel, each through every kind of endpoint: create, append, list,
    // create an artifact, update it under If-Match, read its versions, rename, archive.
    let clients = (0..12).map(|i| {
        let (http, api) = (http.clone(), api.clone());
        tokio::spawn(async move {
            let expect = async |request: reqwest::RequestBuilder, status: u16| -> Value {
                let response = request.send().await.unwrap();
                let got = response.status().as_u16();
                let body = response.text().await.unwrap();
                assert_eq!(got, status, "client {i}: {body}");
                serde_json::from_str(&body).unwrap_or(Value::Null)
            };
            let created = expect(
                http.post(format!("{api}/conversations"))
                    .json(&json!({ "title": format!("pooled {i}") })),
                201,
            )
            .await;
            let conversation = format!("{api}/conversations/{}", created["id"].as_str().unwrap());
            for m in 0..3 {
                expect(
                    http.post(format!("{conversation}/messages"))
                        .json(&json!({ "role": "user", "content": format!("c{i} m{m}") })),
                    201,
                )
                .await;
            }
            let page = expect(http.get(format!("{conversation}/messages")), 200).await;
            assert_eq!(page["items"].as_array().unwrap().len(), 3, "{page}");
            let artifact = expect(
                http.post(format!("{conversation}/artifacts"))
                    .json(&json!({ "kind": "chart", "title": "v1", "spec": { "i": i } })),
                201,
            )
            .await;
            let artifact = format!("{api}/artifacts/{}", artifact["id"].as_str().unwrap());
            expect(
                http.patch(&artifact)
                    .header("If-Match", "\"1\"")
                    .json(&json!({ "title": "v2" })),
                200,
            )
            .await;
            let versions = expect(http.get(format!("{artifact}/versions")), 200).await;
            assert_eq!(versions["items"].as_array().unwrap().len(), 2, "{versions}");
            expect(
                http.patch(&conversation)
                    .json(&json!({ "title": format!("renamed {i}") })),
                200,
            )
            .await;
            expect(http.post(format!("{conversation}/archive")), 200).await;
            let read = expect(http.get(&conversation), 200).await;
            assert_eq!(read["title"], format!("renamed {i}"), "{read}");
        })
    });
    for client in clients.collect::<Vec<_>>() {
        client.await.unwrap();
    }
    let listed = expect_ok(http.get(format!("{api}/conversations?archived=true&limit=100"))).await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 12, "{listed}");

    // The pool's connections are PgBouncer's clients on this database, several of them, and
    // PgBouncer served them on more than one PostgreSQL connection: statements moved between
    // servers, which is what breaks without max_prepared_statements.
    let clients = bouncer.show("CLIENTS");
    let ours = clients
        .lines()
        .filter(|l| l.contains(&db.name) && l.contains("agent-backend"))
        .count();
    assert!(ours >= 2, "SHOW CLIENTS:\n{clients}");
    let servers = bouncer.show("SERVERS");
    assert!(
        servers.lines().filter(|l| l.contains(&db.name)).count() >= 2,
        "SHOW SERVERS:\n{servers}"
    );
    // /health shows the pool: its maximum, and connections open, idle and in use.
    let health = expect_ok(http.get(format!("{}/health", server.base))).await;
    let pool = &health["pool"];
    assert_eq!(pool["max"], 8, "{health}");
    let size = pool["size"].as_u64().unwrap();
    assert!(size >= 2, "{health}");
    assert_eq!(
        pool["idle"].as_u64().unwrap() + pool["in_use"].as_u64().unwrap(),
        size,
        "{health}"
    );
}

async fn expect_ok(request: reqwest::RequestBuilder) -> serde_json::Value {
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let body = response.text().await.unwrap();
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
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
    let out = run_ok(&bouncer.url(&migrated.name), &[], &["--migrate-only"]).await;
    assert!(out.stderr.contains("Schema up to date"), "{}", out.stderr);

    // The same run with DATABASE_MIGRATION_URL direct applies everything.
    run_ok(
        &pooled,
        &[("DATABASE_MIGRATION_URL", &db.url)],
        &["--migrate-only"],
    )
    .await;
    assert_eq!(rows(&mut conn).await.len(), embedded::migrations().len());
    // `migrate` commands report the database they connected to: the migration URL.
    let status = run_ok(
        &pooled,
        &[("DATABASE_MIGRATION_URL", &db.url)],
        &["migrate", "status", "--json"],
    )
    .await;
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
    // it), and each is ready through it.
    let clients = bouncer.show("CLIENTS");
    assert!(
        clients.lines().filter(|l| l.contains(&db.name)).count() >= 8,
        "SHOW CLIENTS:\n{clients}"
    );
    for server in &servers {
        let ready = reqwest::get(format!("{}/health/ready", server.base))
            .await
            .unwrap();
        assert_eq!(ready.status().as_u16(), 200);
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
        log.contains("Connection budget: 1 instance(s) × (10 pooled + 1 event listener + 1 migration session) fit"),
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
    let config = run_ok(&db.url, &env, &["config"]).await;
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
    crate::support::assert_shows(&failed.stderr, "check DATABASE_MIGRATION_URL");
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
    crate::support::assert_shows(&bad.stderr, "database.migration_url");
    for out in [config, failed, status, bad] {
        out.assert_never_shows(secret);
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
