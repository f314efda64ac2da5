//! Test harness: per-test databases, migration sets written to temp dirs, the application in
//! process, the server process.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use agent_backend::config::Settings;
use agent_backend::db;
use agent_backend::http::{self, AppState};
use agent_backend::migrate::{MigrateOptions, MigrationSet, Migrator, embedded};
use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use poem::EndpointExt;
use poem::endpoint::BoxEndpoint;
use poem::test::TestClient;
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::OnceCell;

pub fn admin_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

/// The connect options of another database on the same server.
pub fn options_for(database: &str) -> PgConnectOptions {
    admin_url()
        .parse::<PgConnectOptions>()
        .expect("TEST_DATABASE_URL parses")
        .database(database)
}

/// The URL of another database on the same server (the admin URL's query kept as it is).
pub fn url_for(database: &str) -> String {
    let mut url = reqwest::Url::parse(&admin_url()).expect("TEST_DATABASE_URL parses");
    url.set_path(database);
    url.to_string()
}

pub async fn admin() -> PgConnection {
    PgConnection::connect(&admin_url()).await.unwrap_or_else(|e| {
        panic!(
            "the tests need PostgreSQL at {} ({e}). Start the local cluster \
             (`pg_ctlcluster $(ls /etc/postgresql) main start`), run `bash .ci/run` (which starts or \
             installs it), or point TEST_DATABASE_URL at a server where this user may CREATE DATABASE.",
            admin_url()
        )
    })
}

async fn exec(conn: &mut PgConnection, sql: String) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.clone()))
        .execute(conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// A database of its own for one test, dropped (with its sessions) when the value goes.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    /// A new empty database.
    pub async fn empty() -> Self {
        Self::create(None).await
    }

    /// A new database already migrated to the embedded set (copied from a template).
    pub async fn migrated() -> Self {
        let template = template().await;
        Self::create(Some(template)).await
    }

    async fn create(template: Option<&str>) -> Self {
        let name = format!("ab_test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = admin().await;
        let sql = match template {
            Some(t) => format!("CREATE DATABASE {name} TEMPLATE {t}"),
            None => format!("CREATE DATABASE {name}"),
        };
        exec(&mut admin, sql).await;
        let _ = admin.close().await;
        let url = url_for(&name);
        Self { name, url }
    }

    pub async fn connect(&self) -> PgConnection {
        PgConnection::connect(&self.url)
            .await
            .expect("connect to test database")
    }

    /// Drops the database now (sessions included): the "database went away" case.
    pub async fn drop_now(&self) {
        let mut admin = admin().await;
        exec(
            &mut admin,
            format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        )
        .await;
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs outside any async context guarantee: use a runtime of our own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(mut admin) = PgConnection::connect(&admin_url()).await {
                    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .execute(&mut admin)
                    .await;
                }
            });
        })
        .join();
    }
}

/// A database migrated to the embedded set, named by the set's checksums so a changed set
/// gets a new template. Built once per test run; never connected to afterwards, so
/// `CREATE DATABASE … TEMPLATE` can copy it concurrently.
async fn template() -> &'static str {
    static TEMPLATE: OnceCell<String> = OnceCell::const_new();
    TEMPLATE
        .get_or_init(|| async {
            let mut hash = 0u64;
            for m in embedded::migrations().iter() {
                for b in m.up.checksum {
                    hash = hash.wrapping_mul(31).wrapping_add(u64::from(b));
                }
            }
            let name = format!("ab_tmpl_{hash:016x}");
            let mut admin = admin().await;
            let exists: bool =
                sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
                    .bind(&name)
                    .fetch_one(&mut admin)
                    .await
                    .unwrap();
            if !exists {
                let building = format!("{name}_b{}", uuid::Uuid::new_v4().simple());
                exec(&mut admin, format!("CREATE DATABASE {building}")).await;
                let mut conn = PgConnection::connect(&url_for(&building)).await.unwrap();
                Migrator::new(embedded::migrations(), MigrateOptions::default())
                    .run(&mut conn)
                    .await
                    .unwrap();
                conn.close().await.unwrap();
                let renamed = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                    "ALTER DATABASE {building} RENAME TO {name}"
                )))
                .execute(&mut admin)
                .await;
                if renamed.is_err() {
                    // Another test run published it first.
                    exec(&mut admin, format!("DROP DATABASE {building}")).await;
                }
            }
            name
        })
        .await
}

/// A migration directory written for one test.
pub struct SetDir {
    pub dir: tempfile::TempDir,
}

impl SetDir {
    pub fn new(files: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        for (name, sql) in files {
            std::fs::write(dir.path().join(name), sql).unwrap();
        }
        Self { dir }
    }

    pub fn write(&self, name: &str, sql: &str) {
        std::fs::write(self.dir.path().join(name), sql).unwrap();
    }

    pub fn set(&self) -> MigrationSet {
        MigrationSet::from_dir(self.dir.path()).unwrap()
    }
}

pub fn project_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The application's routes over `db`, served in this process: what the binary serves (the
/// same [`agent_backend::http::routes`], middleware included) without the socket, the signals
/// or the pre-serve stage (`db` is migrated already). `config` is TOML over `config/` and
/// `test.toml`, as `APP_…` variables would be over a process (`server.body_limit_bytes = 2048`).
pub fn app(db: &TestDb, config: &str) -> TestClient<BoxEndpoint<'static>> {
    let settings = settings(db, config);
    let state = AppState::new(
        &settings,
        db::pool(&settings.database),
        embedded::migrations(),
    );
    TestClient::new(http::routes(&settings, state).map_to_response().boxed())
}

/// The test settings over `db`: `config/`, `test.toml`, then `config` (TOML).
pub fn settings(db: &TestDb, config: &str) -> Settings {
    let config_dir = project_dir().join("config");
    Figment::new()
        .merge(Toml::file_exact(config_dir.join("default.toml")))
        .merge(Toml::file_exact(config_dir.join("test.toml")))
        .merge(Toml::string(config))
        .merge(Serialized::default("environment", "test"))
        .merge(Serialized::default("database.url", &db.url))
        .extract()
        .unwrap_or_else(|e| panic!("test settings ({config}): {e}"))
}

/// `server` with a clean environment: test config, the given database, then `env`.
pub fn server_cmd(database_url: &str, env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_server"));
    clean_env(&mut cmd, database_url, env);
    cmd
}

/// What every `server` a test runs gets: nothing of the test's environment, the test
/// configuration, the given database, then `env`; no stdin; killed when dropped.
pub fn clean_env(cmd: &mut Command, database_url: &str, env: &[(&str, &str)]) {
    cmd.env_clear()
        .env("ENVIRONMENT", "test")
        .env("CONFIG_DIR", project_dir().join("config"))
        .env("DATABASE_URL", database_url)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .kill_on_drop(true);
}

pub struct Output {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// `text` (a process's stdout or stderr) contains `wanted`; else the whole text is shown.
#[track_caller]
pub fn assert_shows(text: &str, wanted: &str) {
    assert!(text.contains(wanted), "{wanted:?} not in:\n{text}");
}

impl Output {
    /// Neither stdout nor stderr contains `secret` (a password, a key).
    pub fn assert_never_shows(&self, secret: &str) {
        assert!(
            !self.stdout.contains(secret) && !self.stderr.contains(secret),
            "{}{}",
            self.stdout,
            self.stderr
        );
    }
}

/// Runs `server ARGS` to completion (bounded: a hung process fails the test).
pub async fn run_server(database_url: &str, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut cmd = server_cmd(database_url, env);
    cmd.args(args);
    let out = tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .expect("server did not finish within 120 s")
        .expect("spawn server");
    Output {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// [`run_server`] that must exit 0 (its stderr shown otherwise).
pub async fn run_ok(database_url: &str, env: &[(&str, &str)], args: &[&str]) -> Output {
    let out = run_server(database_url, env, args).await;
    assert_eq!(out.code, Some(0), "server {args:?}: {}", out.stderr);
    out
}

/// A serving `server` process and the address it bound.
pub struct Running {
    pub child: Child,
    pub base: String,
    /// The log lines up to and including "Listening on".
    pub startup: Vec<String>,
    pub stderr: tokio::task::JoinHandle<Vec<String>>,
}

/// Starts `server` (port 0) and waits until it logs the address it listens on: it opens the
/// port only after the pre-serve stage succeeded.
pub async fn spawn_server(database_url: &str, env: &[(&str, &str)]) -> Running {
    spawn_serving(server_cmd(database_url, env)).await
}

/// [`spawn_server`] for any command that serves (e.g. a [`crate::release::Release`]).
pub async fn spawn_serving(mut cmd: Command) -> Running {
    cmd.stdout(Stdio::null()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn server");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    let base = tokio::time::timeout(Duration::from_secs(60), async {
        let seen = &mut seen;
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(rest) = line.split("Listening on ").nth(1) {
                // Text logs end the URL with a space, JSON logs with a quote.
                let url = rest
                    .split(|c: char| c.is_whitespace() || c == '"')
                    .next()
                    .unwrap()
                    .to_string();
                seen.push(line);
                return url;
            }
            seen.push(line);
        }
        panic!("server exited before listening:\n{}", seen.join("\n"));
    })
    .await
    .expect("server did not start listening within 60 s");
    // Keep draining stderr so the child never blocks on a full pipe.
    let stderr = tokio::spawn(async move {
        let mut rest = Vec::new();
        while let Ok(Some(line)) = lines.next_line().await {
            rest.push(line);
        }
        rest
    });
    Running {
        child,
        base,
        startup: seen,
        stderr,
    }
}

impl Running {
    pub fn signal(&self, name: &str) {
        let pid = self.child.id().expect("running").to_string();
        let status = std::process::Command::new("kill")
            .args(["-s", name, &pid])
            .status()
            .unwrap();
        assert!(status.success());
    }

    pub async fn wait(&mut self) -> Option<i32> {
        tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("server did not exit within 30 s")
            .unwrap()
            .code()
    }
}

/// Rows of `_sqlx_migrations` as (version, success, checksum).
pub async fn rows(conn: &mut PgConnection) -> Vec<(i64, bool, Vec<u8>)> {
    sqlx::query_as("SELECT version, success, checksum FROM _sqlx_migrations ORDER BY version")
        .fetch_all(conn)
        .await
        .unwrap()
}

/// The versions recorded in `_sqlx_migrations`, oldest first.
pub async fn recorded_versions(conn: &mut PgConnection) -> Vec<i64> {
    rows(conn).await.iter().map(|r| r.0).collect()
}

/// The `version` of each object of a JSON list (`migrate history --json`, a plan's `steps`).
pub fn versions_in(list: &serde_json::Value) -> Vec<i64> {
    list.as_array()
        .expect("a JSON list")
        .iter()
        .map(|item| item["version"].as_i64().expect("a version"))
        .collect()
}

/// `(version, success)` of each row of `_sqlx_migrations`, oldest first.
pub async fn marks(conn: &mut PgConnection) -> Vec<(i64, bool)> {
    rows(conn).await.iter().map(|r| (r.0, r.1)).collect()
}

pub async fn table_exists(conn: &mut PgConnection, name: &str) -> bool {
    sqlx::query_scalar::<_, Option<String>>("SELECT to_regclass($1)::text")
        .bind(name)
        .fetch_one(conn)
        .await
        .unwrap()
        .is_some()
}

/// The public schema as text (columns, indexes, constraints), for before/after comparisons;
/// the serving releases' table (`_agent_releases`, written by every serving instance) left out.
pub async fn schema_snapshot(conn: &mut PgConnection) -> String {
    sqlx::query_scalar::<_, Option<String>>(
        "SELECT string_agg(x, E'\\n' ORDER BY x) FROM ( \
           SELECT format('col %s.%s %s %s %s', table_name, column_name, data_type, is_nullable, column_default) AS x \
             FROM information_schema.columns WHERE table_schema = 'public' \
           UNION ALL SELECT format('idx %s', indexdef) FROM pg_indexes WHERE schemaname = 'public' \
           UNION ALL SELECT format('con %s %s', conname, pg_get_constraintdef(oid)) \
             FROM pg_constraint WHERE connamespace = 'public'::regnamespace \
         ) s WHERE x NOT LIKE '%\\_agent\\_releases%'",
    )
    .fetch_one(conn)
    .await
    .unwrap()
    .unwrap_or_default()
}

/// Parses a command's stdout as JSON, failing the test with the output when it is not.
pub fn json(out: &Output) -> serde_json::Value {
    serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}\n{}", out.stdout, out.stderr))
}

/// A session of its own holding the migration lock of `db` (as another runner would), with
/// `application_name = holder_name`. Returns the session and the key.
pub async fn hold_migration_lock(db: &TestDb, holder_name: &str) -> (PgConnection, i64) {
    let mut holder = PgConnection::connect(&format!("{}?application_name={holder_name}", db.url))
        .await
        .unwrap();
    let key = agent_backend::migrate::lock::key_for(&mut holder)
        .await
        .unwrap();
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(key)
        .execute(&mut holder)
        .await
        .unwrap();
    (holder, key)
}

/// Polls `sql` (a boolean query) on `conn` until it is true: waits on state PostgreSQL shows
/// (a session in a statement, a lock request), never on time alone. Fails after 60 s.
pub async fn wait_until(conn: &mut PgConnection, sql: &str, what: &str) {
    let reached = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let yes: bool = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string()))
                .fetch_one(&mut *conn)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
            if yes {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(reached.is_ok(), "never reached: {what}");
}

/// True while a session of this database waits for (has requested, not been granted) an
/// advisory lock: a runner queued behind the migration lock.
pub const LOCK_REQUESTED: &str = "SELECT EXISTS (SELECT 1 FROM pg_locks l \
     JOIN pg_database d ON d.oid = l.database AND d.datname = current_database() \
     WHERE l.locktype = 'advisory' AND NOT l.granted)";

/// Sends `request` and reads its answer's JSON body (any status).
pub async fn json_body(request: reqwest::RequestBuilder) -> serde_json::Value {
    request.send().await.unwrap().json().await.unwrap()
}

/// Re-checks a real condition every 20 ms until it gives a value, for at most 30 s (never a
/// sleep standing in for it).
pub async fn poll<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// [`poll`] for a condition.
pub async fn until(what: &str, mut check: impl AsyncFnMut() -> bool) {
    poll(what, async || check().await.then_some(())).await
}

/// Reads until the server closes the connection (or resets it), at most 20 s; returns what it
/// sent.
pub async fn read_until_closed(stream: &mut tokio::net::TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let read = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the server kept the connection open for 20 s");
    got
}

/// A JSON number's exact decimal value: sign, significant digits (no leading or trailing
/// zeros) and the power of ten of the last one. Zero is unsigned with no digits, so `-0`,
/// `0.00` and `0e5` are all zero; `1E+2`, `100` and `100.0` are one value.
fn decimal(number: &serde_json::Number) -> (bool, String, i64) {
    let text = number.to_string();
    let (negative, text) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.as_str()),
    };
    let (mantissa, exponent) = match text.split_once(['e', 'E']) {
        Some((m, e)) => (m, e.parse::<i64>().expect("exponent within i64")),
        None => (text, 0),
    };
    let (integer, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = format!("{integer}{fraction}");
    let significant = digits.trim_start_matches('0');
    if significant.is_empty() {
        return (false, String::new(), 0);
    }
    let trimmed = significant.trim_end_matches('0');
    let exponent = exponent - fraction.len() as i64 + (significant.len() - trimmed.len()) as i64;
    (negative, trimmed.to_string(), exponent)
}

/// Where two JSON values differ, compared as values: objects by keys (order ignored),
/// arrays element by element, numbers by their exact decimal value (never through `f64`),
/// strings and literals as they are. `None` when equal.
pub fn json_difference(
    left: &serde_json::Value,
    right: &serde_json::Value,
    path: &str,
) -> Option<String> {
    use serde_json::Value;
    match (left, right) {
        (Value::Number(a), Value::Number(b)) => {
            (decimal(a) != decimal(b)).then(|| format!("{path}: {a} ≠ {b}"))
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => a
            .iter()
            .zip(b)
            .enumerate()
            .find_map(|(i, (a, b))| json_difference(a, b, &format!("{path}[{i}]"))),
        (Value::Object(a), Value::Object(b))
            if a.len() == b.len() && a.keys().all(|k| b.contains_key(k)) =>
        {
            a.iter()
                .find_map(|(k, v)| json_difference(v, &b[k], &format!("{path}.{k}")))
        }
        (a, b) if a == b && !a.is_array() && !a.is_object() => None,
        (a, b) => Some(format!("{path}: {a} ≠ {b}")),
    }
}
