//! The operations guide's emergency procedure and its expand/contract recipes, run as written.
//!
//! Each case in docs/operations.md has a command block marked `<!-- guide-test: NAME -->`. Each
//! test here creates that failure, then runs the block's commands, every one and in the guide's
//! order, against the binary: `/app/server …` as a `server` process (the built one, or a release
//! over a generated set where the case needs another set), `psql "$EXTERNAL_DATABASE_URL" -c
//! "…"` as that SQL on the test's database, a workstation's `git …` (or shell loop over it) in
//! the test's repository. `<placeholders>` are filled from what earlier commands printed, as a
//! person would. A command added, removed, reworded or moved in the
//! guide fails its test until the test does the same.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sqlx::{Connection, PgConnection, Row};

use crate::release::{Release, finish};
use crate::support::{
    Output, SetDir, TestDb, hold_migration_lock, project_dir, rows, run_server, spawn_serving,
    table_exists, wait_until,
};

const SERVER: &str = "/app/server ";
const PSQL: &str = "psql \"$EXTERNAL_DATABASE_URL\" -c \"";

/// The commands of the guide's block `name`: its lines that are neither blank nor comments.
fn guide_commands(name: &str) -> Vec<String> {
    let path = project_dir().join("docs/operations.md");
    let text = std::fs::read_to_string(&path).unwrap();
    let marker = format!("<!-- guide-test: {name} -->");
    let (_, after) = text
        .split_once(&marker)
        .unwrap_or_else(|| panic!("docs/operations.md has no block {marker}"));
    let block = after
        .trim_start()
        .strip_prefix("```sh\n")
        .unwrap_or_else(|| panic!("{marker} is not followed by a ```sh block"));
    let (block, _) = block.split_once("\n```").expect("the block ends");
    block
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

/// Which `server` a step runs: the built one, or a release over a generated set.
#[derive(Clone, Copy)]
enum Image<'a> {
    Built,
    Release(&'a Path),
}

impl Image<'_> {
    async fn run(&self, url: &str, env: &[(&str, &str)], args: &[&str]) -> Output {
        match self {
            Image::Built => run_server(url, env, args).await,
            Image::Release(dir) => Release { dir }.run(url, env, args).await,
        }
    }
}

/// What a step printed: a `server` process's output, the rows of an SQL command, or a
/// workstation's shell command's output.
enum Outcome {
    Server(Output),
    Sql(Vec<sqlx::postgres::PgRow>),
    Shell(Output),
}

impl Outcome {
    fn server(self) -> Output {
        match self {
            Outcome::Server(out) => out,
            _ => panic!("expected a server command"),
        }
    }

    fn sql(self) -> Vec<sqlx::postgres::PgRow> {
        match self {
            Outcome::Sql(rows) => rows,
            _ => panic!("expected an SQL command"),
        }
    }

    fn shell(self) -> Output {
        match self {
            Outcome::Shell(out) => out,
            _ => panic!("expected a shell command"),
        }
    }
}

/// Walks one guide block, command by command.
struct Guide<'a> {
    name: &'static str,
    commands: std::vec::IntoIter<String>,
    db: &'a TestDb,
    /// Values for the block's `<placeholders>`, learnt along the way.
    known: BTreeMap<&'static str, String>,
    /// The workstation's clone of the repository, where `git` commands run.
    repo: Option<PathBuf>,
}

impl<'a> Guide<'a> {
    fn new(name: &'static str, db: &'a TestDb) -> Self {
        Self {
            name,
            commands: guide_commands(name).into_iter(),
            db,
            known: BTreeMap::new(),
            repo: None,
        }
    }

    /// The block's `git` commands run in `repo`.
    fn in_repo(mut self, repo: &Path) -> Self {
        self.repo = Some(repo.to_path_buf());
        self
    }

    fn learn(&mut self, placeholder: &'static str, value: impl ToString) {
        self.known.insert(placeholder, value.to_string());
    }

    /// The guide's next command, placeholders filled.
    fn next_command(&mut self) -> String {
        let raw = self
            .commands
            .next()
            .unwrap_or_else(|| panic!("{}: the guide's block has fewer commands", self.name));
        let mut command = raw.clone();
        for (placeholder, value) in &self.known {
            command = command.replace(&format!("<{placeholder}>"), value);
        }
        assert!(
            !command.contains('<'),
            "{}: `{raw}` needs a value the test has not learnt",
            self.name
        );
        command
    }

    /// Runs the guide's next command, which must be `expected` (placeholders unfilled).
    async fn step(&mut self, expected: &str, image: Image<'_>, env: &[(&str, &str)]) -> Outcome {
        let command = self.next_command();
        let mut template = expected.to_string();
        for (placeholder, value) in &self.known {
            template = template.replace(&format!("<{placeholder}>"), value);
        }
        assert_eq!(command, template, "{}: the guide's next command", self.name);
        if let Some(args) = command.strip_prefix(SERVER) {
            let args: Vec<&str> = args.split_whitespace().collect();
            Outcome::Server(image.run(&self.db.url, env, &args).await)
        } else if let Some(sql) = command.strip_prefix(PSQL) {
            let sql = sql.strip_suffix('"').expect("the SQL ends the line");
            let mut conn = self.db.connect().await;
            let rows = sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
                .fetch_all(&mut conn)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
            let _ = conn.close().await;
            Outcome::Sql(rows)
        } else if let (Some(repo), true) = (
            &self.repo,
            command.starts_with("git ") || command.starts_with("for "),
        ) {
            let out = tokio::process::Command::new("bash")
                .args(["-c", &command])
                .current_dir(repo)
                .output()
                .await
                .unwrap();
            Outcome::Shell(Output {
                code: out.status.code(),
                stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            })
        } else {
            panic!("{}: a command the test cannot run: {command}", self.name);
        }
    }

    /// [`Guide::step`] for a `server` command that must exit with `code`; its output.
    async fn server_ok(
        &mut self,
        expected: &str,
        image: Image<'_>,
        env: &[(&str, &str)],
        code: i32,
    ) -> Output {
        let out = self.step(expected, image, env).await.server();
        ok(&out, code);
        out
    }

    /// The block's `migrate verify`, which must pass with no drift.
    async fn verify_without_drift(&mut self, image: Image<'_>) {
        let verify = self
            .server_ok("/app/server migrate verify", image, &[], 0)
            .await;
        crate::support::assert_shows(&verify.stdout, "ok    drift         no drift");
    }

    fn done(mut self) {
        assert_eq!(
            self.commands.next(),
            None,
            "{}: the guide's block has more commands than the test ran",
            self.name
        );
    }
}

/// The text after `prefix` up to the end of its line.
fn after<'t>(text: &'t str, prefix: &str) -> &'t str {
    let (_, rest) = text
        .split_once(prefix)
        .unwrap_or_else(|| panic!("no `{prefix}` in:\n{text}"));
    rest.lines().next().unwrap_or("").trim()
}

/// The first INVALID index `repair` listed, as (index, table, definition).
fn invalid_index(repair: &str) -> (String, String, String) {
    let (_, list) = repair
        .split_once("with their table and columns:\n")
        .unwrap_or_else(|| panic!("no INVALID index listed in:\n{repair}"));
    let first = list.lines().next().unwrap().trim();
    let (index, rest) = first.split_once(" on ").unwrap();
    let (table, definition) = rest.split_once(": ").unwrap();
    (index.to_string(), table.to_string(), definition.to_string())
}

/// The columns of an index definition, as written in its parenthesis after `USING method`.
fn index_columns(definition: &str) -> String {
    let (_, using) = definition.split_once(" USING ").unwrap();
    let (_, columns) = using.split_once('(').unwrap();
    columns.strip_suffix(')').unwrap().to_string()
}

/// The product's migration files, and `extra` after them: the next release's set.
fn product_and(extra: &[(&str, &str)]) -> SetDir {
    let dir = SetDir::new(extra);
    for entry in std::fs::read_dir(project_dir().join("migrations")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.dir.path().join(path.file_name().unwrap())).unwrap();
    }
    dir
}

/// Writes the snapshot `set`'s migrations produce on a scratch database (as `migrate snapshot
/// --fresh --write` does for the project) into the set's directory: the release carries it.
async fn with_snapshot(set: &SetDir, db: &TestDb) {
    let file = set.dir.path().join("schema.snapshot");
    let out = Image::Release(set.dir.path())
        .run(
            &db.url,
            &[],
            &[
                "migrate",
                "snapshot",
                "--fresh",
                "--write",
                file.to_str().unwrap(),
            ],
        )
        .await;
    ok(&out, 0);
}

/// `url` with a session setting for its connections (`options=-c name=value`).
fn with_setting(url: &str, name: &str, value: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}options=-c%20{name}%3D{value}")
}

/// No row of the guide's `pg_stat_activity` query is `active` (a finished command's session may
/// still be going away, `idle`).
fn no_active_session(rows: &[sqlx::postgres::PgRow]) -> bool {
    rows.iter()
        .all(|r| r.get::<Option<String>, _>("state").as_deref() != Some("active"))
}

async fn index_is_valid(conn: &mut PgConnection, index: &str) -> bool {
    sqlx::query_scalar("SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass($1)")
        .bind(index)
        .fetch_optional(conn)
        .await
        .unwrap()
        .unwrap_or(false)
}

fn ok(out: &Output, code: i32) {
    assert_eq!(
        out.code,
        Some(code),
        "stdout:\n{}\nstderr:\n{}",
        out.stdout,
        out.stderr
    );
}

#[tokio::test]
async fn sql_error_correct_the_file_that_never_ran_and_redeploy() {
    let db = TestDb::empty().await;
    let accounts = (
        "1_accounts.sql",
        "CREATE TABLE accounts (id int PRIMARY KEY, email text);\n",
    );
    let old = SetDir::new(&[accounts]);
    let broken = SetDir::new(&[
        accounts,
        (
            "2_accounts_nickname.sql",
            "ALTER TABLE accounts\n  ADD COLUMN nickname text NOT NUL;\n",
        ),
    ]);
    let fixed = SetDir::new(&[
        accounts,
        (
            "2_accounts_nickname.sql",
            "ALTER TABLE accounts ADD COLUMN nickname text;\n",
        ),
    ]);
    let old = Image::Release(old.dir.path());
    let new = Image::Release(broken.dir.path());
    ok(&old.run(&db.url, &[], &["--migrate-only"]).await, 0);

    // The deploy's pre-deploy fails: exit 5, rolled back, nothing recorded.
    let predeploy = new.run(&db.url, &[], &["--migrate-only"]).await;
    ok(&predeploy, 5);
    assert!(
        predeploy
            .stderr
            .contains("migration 2 (migrations/2_accounts_nickname.sql) failed")
            && predeploy
                .stderr
                .contains("syntax error at or near \"NUL\" (line 2, column 32)")
            && predeploy.stderr.contains("rolled back, nothing recorded"),
        "{}",
        predeploy.stderr
    );
    // A Render Shell runs the serving (old) image: it sees nothing wrong.
    let shell = old.run(&db.url, &[], &["migrate", "status"]).await;
    ok(&shell, 0);
    assert!(shell.stdout.contains("State:              up to date"));

    let mut guide = Guide::new("sql-error", &db);
    let status = guide
        .server_ok("/app/server migrate status", new, &[], 8)
        .await;
    crate::support::assert_shows(&status.stdout, "Pending:            2");

    // A "fixed new migration" beside the broken one fails the same way: it still runs first.
    let beside = SetDir::new(&[
        accounts,
        (
            "2_accounts_nickname.sql",
            "ALTER TABLE acounts ADD COLUMN nickname text;\n",
        ),
        (
            "3_accounts_nickname_fixed.sql",
            "ALTER TABLE accounts ADD COLUMN nickname text;\n",
        ),
    ]);
    let out = Image::Release(beside.dir.path())
        .run(&db.url, &[], &["--migrate-only"])
        .await;
    ok(&out, 5);
    assert!(out.stderr.contains("migrations/2_accounts_nickname.sql"));

    // Corrected in git, redeployed: the pre-deploy of the fixed image.
    let new = Image::Release(fixed.dir.path());
    guide
        .server_ok("/app/server --migrate-only", new, &[], 0)
        .await;
    guide
        .server_ok("/app/server migrate verify", new, &[], 0)
        .await;
    guide.done();
}

#[tokio::test]
async fn dirty_after_a_killed_index_build_drop_the_invalid_index_and_mark_reverted() {
    let db = TestDb::empty().await;
    let set = SetDir::new(&[
        (
            "1_items.sql",
            "CREATE TABLE items (id int PRIMARY KEY, sku text);\n\
             INSERT INTO items SELECT g, 'sku-' || g FROM generate_series(1, 100) g;\n",
        ),
        (
            "2_items_sku_idx.sql",
            "-- no-transaction\nCREATE INDEX CONCURRENTLY items_sku_idx ON items (sku);\n",
        ),
    ]);
    let image = Image::Release(set.dir.path());
    ok(
        &image
            .run(&db.url, &[], &["migrate", "apply", "--to", "1"])
            .await,
        0,
    );

    // A writer's open transaction makes the index build wait after it created the (still
    // INVALID) index; then the deploy is killed.
    let mut writer = db.connect().await;
    sqlx::raw_sql("BEGIN; INSERT INTO items VALUES (1000, 'late');")
        .execute(&mut writer)
        .await
        .unwrap();
    let mut runner = Release {
        dir: set.dir.path(),
    }
    .spawn(
        &db.url,
        &[("APP_MIGRATIONS__LOCK_TIMEOUT", "0s")],
        &["--migrate-only"],
    );
    let mut observer = db.connect().await;
    wait_until(
        &mut observer,
        "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE datname = current_database() \
         AND application_name = 'agent-backend migrate' AND wait_event_type = 'Lock' \
         AND query LIKE '%CREATE INDEX CONCURRENTLY%')",
        "the index build waiting for the writer",
    )
    .await;
    runner.start_kill().expect("SIGKILL the runner");
    let _ = finish(runner).await;
    wait_until(
        &mut observer,
        "SELECT NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE datname = current_database() \
         AND application_name = 'agent-backend migrate')",
        "PostgreSQL ending the killed runner's session",
    )
    .await;
    sqlx::raw_sql("ROLLBACK")
        .execute(&mut writer)
        .await
        .unwrap();

    let mut guide = Guide::new("dirty-after-kill", &db);
    let status = guide
        .server_ok("/app/server migrate status", image, &[], 6)
        .await;
    assert!(status.stdout.contains("Migration lock:     free"));
    guide.learn("version", after(&status.stdout, "Dirty:"));
    assert_eq!(guide.known["version"], "2");

    // A look: it changes nothing and succeeds (a job running it does not appear failed).
    let repair = guide
        .server_ok("/app/server migrate repair", image, &[], 0)
        .await;
    assert!(
        repair
            .stdout
            .contains("Failing statement: CREATE INDEX CONCURRENTLY items_sku_idx ON items (sku);")
            && repair.stdout.contains("The migration lock is free")
            && repair.stdout.contains("Nothing was changed."),
        "{}",
        repair.stdout
    );
    let (index, table, definition) = invalid_index(&repair.stdout);
    assert_eq!((index.as_str(), table.as_str()), ("items_sku_idx", "items"));
    assert_eq!(
        definition,
        "CREATE INDEX items_sku_idx ON public.items USING btree (sku)"
    );
    assert!(!index_is_valid(&mut observer, &index).await);
    guide.learn("index", index.clone());

    let sessions = guide
        .step(
            "psql \"$EXTERNAL_DATABASE_URL\" -c \"SELECT pid, state, query_start, query FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'agent-backend migrate';\"",
            image,
            &[],
        )
        .await
        .sql();
    assert!(no_active_session(&sessions), "no migrate session runs it");
    guide
        .step(
            "psql \"$EXTERNAL_DATABASE_URL\" -c \"DROP INDEX CONCURRENTLY <index>;\"",
            image,
            &[],
        )
        .await
        .sql();
    let repaired = guide
        .server_ok(
            "/app/server migrate repair --version <version> --mark-reverted --yes",
            image,
            &[],
            0,
        )
        .await;
    assert!(repaired.stdout.contains("Migration 2 marked reverted"));
    guide
        .server_ok("/app/server --migrate-only", image, &[], 0)
        .await;
    guide
        .server_ok("/app/server migrate verify", image, &[], 0)
        .await;
    guide.done();
    assert!(index_is_valid(&mut observer, &index).await);
}

#[tokio::test]
async fn dirty_after_a_failed_unique_index_fix_the_duplicates_first() {
    let db = TestDb::empty().await;
    let set = SetDir::new(&[
        (
            "1_users.sql",
            "CREATE TABLE users (id int PRIMARY KEY, email text NOT NULL);\n",
        ),
        (
            "2_users_email_key.sql",
            "-- no-transaction\nCREATE UNIQUE INDEX CONCURRENTLY users_email_key ON users (email);\n",
        ),
    ]);
    let image = Image::Release(set.dir.path());
    ok(
        &image
            .run(&db.url, &[], &["migrate", "apply", "--to", "1"])
            .await,
        0,
    );
    let mut conn = db.connect().await;
    sqlx::raw_sql(
        "INSERT INTO users VALUES (1, 'a@example.com'), (2, 'a@example.com'), (3, 'b@example.com')",
    )
    .execute(&mut conn)
    .await
    .unwrap();

    // The pre-deploy: exit 5, and the migration is not rolled back: dirty.
    let predeploy = image.run(&db.url, &[], &["--migrate-only"]).await;
    ok(&predeploy, 5);
    assert!(
        predeploy.stderr.contains("23505")
            && predeploy.stderr.contains("recorded as dirty")
            && !predeploy.stderr.contains("rolled back"),
        "{}",
        predeploy.stderr
    );
    // An instance starting now: dirty with no live holder is exit 6.
    ok(&image.run(&db.url, &[], &["--migrate-only"]).await, 6);

    // The deploy log that named the duplicated key may be gone: the guide does not use it.
    let mut guide = Guide::new("dirty-after-failed-unique-index", &db);
    let repair = guide
        .server_ok("/app/server migrate repair", image, &[], 0)
        .await;
    assert!(
        repair.stdout.contains(
            "Failing statement: CREATE UNIQUE INDEX CONCURRENTLY users_email_key ON users (email);"
        ),
        "{}",
        repair.stdout
    );
    // repair lists the index with its definition, table and columns included.
    let (index, _, definition) = invalid_index(&repair.stdout);
    assert_eq!(index_columns(&definition), "email");
    guide.learn(
        "version",
        after(&repair.stdout, "Migration ")
            .split(' ')
            .next()
            .unwrap(),
    );
    guide.learn("index", &index);

    let sessions = guide
        .step(
            "psql \"$EXTERNAL_DATABASE_URL\" -c \"SELECT pid, state, query_start, query FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'agent-backend migrate';\"",
            image,
            &[],
        )
        .await
        .sql();
    assert!(no_active_session(&sessions));
    // The guide's query finds the INVALID index's table and columns in the catalog alone.
    let found = guide
        .step(
            "psql \"$EXTERNAL_DATABASE_URL\" -c \"SELECT tablename, indexdef FROM pg_indexes WHERE indexname = '<index>';\"",
            image,
            &[],
        )
        .await
        .sql();
    assert_eq!(found.len(), 1);
    let indexdef: String = found[0].get("indexdef");
    assert_eq!(indexdef, definition);
    guide.learn("table", found[0].get::<String, _>("tablename"));
    guide.learn("columns", index_columns(&indexdef));
    assert_eq!(
        (&guide.known["table"][..], &guide.known["columns"][..]),
        ("users", "email")
    );
    let duplicates = guide
        .step(
            "psql \"$EXTERNAL_DATABASE_URL\" -c \"SELECT <columns>, count(*) FROM <table> GROUP BY <columns> HAVING count(*) > 1;\"",
            image,
            &[],
        )
        .await
        .sql();
    assert_eq!(duplicates.len(), 1);
    assert_eq!(duplicates[0].get::<String, _>(0), "a@example.com");
    // The reviewed data fix.
    sqlx::query("DELETE FROM users WHERE id = 2")
        .execute(&mut conn)
        .await
        .unwrap();
    guide
        .step(
            "psql \"$EXTERNAL_DATABASE_URL\" -c \"DROP INDEX CONCURRENTLY <index>;\"",
            image,
            &[],
        )
        .await
        .sql();
    guide
        .server_ok(
            "/app/server migrate repair --version <version> --mark-reverted --yes",
            image,
            &[],
            0,
        )
        .await;
    guide
        .server_ok("/app/server --migrate-only", image, &[], 0)
        .await;
    guide
        .server_ok("/app/server migrate verify", image, &[], 0)
        .await;
    guide.done();
    assert!(index_is_valid(&mut conn, &index).await);
    assert!(rows(&mut conn).await.iter().all(|r| r.1));
}

#[tokio::test]
async fn lock_held_by_a_stuck_session_end_it_then_retry() {
    let db = TestDb::empty().await;
    // A left-over migrate session (a job whose client hung) holds the lock.
    let (_stuck, _key) = hold_migration_lock(&db, "agent-backend%20migrate").await;
    let predeploy = run_server(
        &db.url,
        &[("APP_MIGRATIONS__LOCK_WAIT_TIMEOUT", "1s")],
        &["--migrate-only"],
    )
    .await;
    ok(&predeploy, 7);

    let mut guide = Guide::new("lock-held", &db);
    let status = guide
        .server_ok("/app/server migrate status", Image::Built, &[], 8)
        .await;
    let pid = after(&status.stdout, "Migration lock:     held by pid ")
        .split(' ')
        .next()
        .unwrap()
        .to_string();
    crate::support::assert_shows(&predeploy.stderr, &format!("pid {pid} "));
    guide.learn("pid", &pid);

    let session = guide
        .step(
            "psql \"$EXTERNAL_DATABASE_URL\" -c \"SELECT pid, application_name, client_addr, backend_start, state, state_change, query FROM pg_stat_activity WHERE pid = <pid>;\"",
            Image::Built,
            &[],
        )
        .await
        .sql();
    assert_eq!(session.len(), 1);
    // The guide's table: ours, and idle: stuck, end it.
    assert_eq!(
        session[0].get::<String, _>("application_name"),
        "agent-backend migrate"
    );
    assert_eq!(
        session[0].get::<String, _>("state"),
        "idle",
        "stuck, not working"
    );
    let ended = guide
        .step(
            "psql \"$EXTERNAL_DATABASE_URL\" -c \"SELECT pg_terminate_backend(<pid>);\"",
            Image::Built,
            &[],
        )
        .await
        .sql();
    assert!(ended[0].get::<bool, _>(0));
    guide
        .server_ok("/app/server --migrate-only", Image::Built, &[], 0)
        .await;
    guide.done();
}

/// `git ARGS` in `repo`, as the developer who made its history.
fn git(repo: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .args(["-c", "user.name=dev", "-c", "user.email=dev@example.com"])
        .args(args)
        .current_dir(repo)
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[tokio::test]
async fn edited_file_find_the_revision_that_ran_by_its_checksum_and_restore_it() {
    let db = TestDb::empty().await;
    // The repository: the file as it ran, then edited in place.
    let repo = tempfile::tempdir().unwrap();
    let migrations = repo.path().join("migrations");
    std::fs::create_dir(&migrations).unwrap();
    git(repo.path(), &["init", "-q"]);
    let file = migrations.join("1_notes.sql");
    let original = "CREATE TABLE notes (id int PRIMARY KEY);\n";
    std::fs::write(&file, original).unwrap();
    git(repo.path(), &["add", "."]);
    git(repo.path(), &["commit", "-qm", "notes"]);
    let ran = git(repo.path(), &["log", "-1", "--format=%h"]);
    let released = SetDir::new(&[("1_notes.sql", original)]);
    ok(
        &Image::Release(released.dir.path())
            .run(&db.url, &[], &["--migrate-only"])
            .await,
        0,
    );
    std::fs::write(
        &file,
        "CREATE TABLE notes (id int PRIMARY KEY, body text);\n",
    )
    .unwrap();
    git(repo.path(), &["commit", "-qam", "notes: body"]);
    let edited = git(repo.path(), &["log", "-1", "--format=%h"]);

    let new = Image::Release(&migrations);
    let predeploy = new.run(&db.url, &[], &["--migrate-only"]).await;
    ok(&predeploy, 6);
    assert!(predeploy.stderr.contains("was edited after it ran"));

    let mut guide = Guide::new("edited-file", &db).in_repo(repo.path());
    let status = guide
        .server_ok("/app/server migrate status", new, &[], 6)
        .await;
    guide.learn("version", after(&status.stdout, "Checksum mismatch:"));
    let show = guide
        .server_ok("/app/server migrate show <version>", new, &[], 0)
        .await;
    assert!(
        show.stdout.contains("checksum mismatch")
            && show.stdout.contains("body text")
            && show.stdout.contains("SHA-384 of the up file's bytes"),
        "{}",
        show.stdout
    );
    let applied = after(&show.stdout, "applied_checksum:").to_string();
    let embedded = after(&show.stdout, "embedded_checksum:").to_string();
    guide.learn("file", after(&show.stdout, "file:"));

    // Each revision's SHA-384: the applied checksum is the revision that ran, the embedded one
    // the edit.
    let revisions = guide
        .step(
            "for c in $(git log --format=%h -- migrations/<file>); do echo \"$c $(git show \"$c:migrations/<file>\" | sha384sum)\"; done",
            new,
            &[],
        )
        .await
        .shell();
    ok(&revisions, 0);
    let by_hash: BTreeMap<&str, &str> = revisions
        .stdout
        .lines()
        .map(|l| {
            let mut words = l.split_whitespace();
            let commit = words.next().unwrap();
            (words.next().unwrap(), commit)
        })
        .collect();
    assert_eq!(
        by_hash.get(applied.as_str()),
        Some(&ran.as_str()),
        "{}",
        revisions.stdout
    );
    assert_eq!(by_hash.get(embedded.as_str()), Some(&edited.as_str()));
    guide.learn("commit", &ran);
    ok(
        &guide
            .step("git checkout <commit> -- migrations/<file>", new, &[])
            .await
            .shell(),
        0,
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), original);

    // The change, in a new migration beside it; committed, pushed, deployed.
    std::fs::write(
        migrations.join("2_notes_body.sql"),
        "ALTER TABLE notes ADD COLUMN body text;\n",
    )
    .unwrap();
    guide
        .server_ok("/app/server --migrate-only", new, &[], 0)
        .await;
    guide.done();
    let mut conn = db.connect().await;
    let body: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM information_schema.columns \
         WHERE table_name = 'notes' AND column_name = 'body')",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert!(body);
}

#[tokio::test]
async fn rollback_of_the_newest_migration_service_first_then_the_schema() {
    let db = TestDb::empty().await;
    let first = [
        (
            "1_teams.up.sql",
            "CREATE TABLE teams (id int PRIMARY KEY);\n",
        ),
        ("1_teams.down.sql", "DROP TABLE teams;\n"),
    ];
    let old = SetDir::new(&first);
    let newer = SetDir::new(&[
        first[0],
        first[1],
        (
            "2_badges.up.sql",
            "CREATE TABLE badges (id int PRIMARY KEY);\n",
        ),
        ("2_badges.down.sql", "DROP TABLE badges;\n"),
    ]);
    let newer_image = Image::Release(newer.dir.path());
    ok(&newer_image.run(&db.url, &[], &["--migrate-only"]).await, 0);

    // 1. The service rolls back: the old release serves, ready, with version 2 unknown to it.
    let mut serving = spawn_serving(
        Release {
            dir: old.dir.path(),
        }
        .cmd(&db.url, &[], &[]),
    )
    .await;
    let ready = |base: String| async move {
        reqwest::get(format!("{base}/health/ready"))
            .await
            .unwrap()
            .status()
    };
    assert_eq!(ready(serving.base.clone()).await, 200);

    // 2. The down migration, from the newer image.
    let mut guide = Guide::new("rollback-newest", &db);
    guide.learn("previous", 1);
    let plan = guide
        .server_ok(
            "/app/server migrate rollback <previous> --dry-run",
            newer_image,
            &[],
            0,
        )
        .await;
    assert!(
        plan.stdout.contains("would rollback 1 migration(s)")
            && plan.stdout.contains("2_badges.down.sql"),
        "{}",
        plan.stdout
    );
    guide
        .server_ok(
            "/app/server migrate rollback <previous> --yes",
            newer_image,
            &[],
            0,
        )
        .await;
    let mut conn = db.connect().await;
    assert!(!table_exists(&mut conn, "badges").await);
    assert_eq!(
        ready(serving.base.clone()).await,
        200,
        "the serving release"
    );
    // The newer binary's view: exactly the reverted version pending, nothing else failing.
    let newer_view = guide
        .server_ok("/app/server migrate verify", newer_image, &[], 8)
        .await;
    let failing: Vec<&str> = newer_view
        .stdout
        .lines()
        .filter(|l| l.starts_with("FAIL"))
        .collect();
    assert_eq!(failing, ["FAIL  pending       2"], "{}", newer_view.stdout);
    let old_view = guide
        .step(
            "/app/server migrate verify",
            Image::Release(old.dir.path()),
            &[],
        )
        .await
        .server();
    ok(&old_view, 0);
    assert!(
        old_view
            .stdout
            .contains("ok    unknown       every applied version is embedded"),
        "{}",
        old_view.stdout
    );
    guide.done();
    serving.signal("TERM");
    assert_eq!(serving.wait().await, Some(0));
}

/// The next release's migration: a table of its own, with a key and an index.
const COMMENTS_UP: (&str, &str) = (
    "20991201000001_create_ui_artifact_comments.up.sql",
    "CREATE TABLE ui_artifact_comments (\n    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),\n    \
     artifact_id uuid NOT NULL REFERENCES ui_artifacts (id) ON DELETE CASCADE,\n    \
     body text NOT NULL\n);\n\
     CREATE INDEX ui_artifact_comments_artifact_id_idx ON ui_artifact_comments (artifact_id);\n",
);
const COMMENTS_DOWN: (&str, &str) = (
    "20991201000001_create_ui_artifact_comments.down.sql",
    "DROP TABLE ui_artifact_comments;\n",
);

#[tokio::test]
async fn sql_error_caused_in_the_database_put_the_database_back_not_the_file() {
    // The serving release is this build; the next one adds a table that someone already made
    // by hand, with a primary key (whose index name the migration's would clash with too).
    let db = TestDb::migrated().await;
    let next = product_and(&[COMMENTS_UP, COMMENTS_DOWN]);
    with_snapshot(&next, &db).await;
    let new = Image::Release(next.dir.path());
    let old = Image::Built;
    let mut conn = db.connect().await;
    sqlx::raw_sql(
        "CREATE TABLE ui_artifact_comments (id uuid PRIMARY KEY, note text); \
         INSERT INTO ui_artifact_comments VALUES (gen_random_uuid(), 'a'), (gen_random_uuid(), 'b');",
    )
    .execute(&mut conn)
    .await
    .unwrap();

    let predeploy = new.run(&db.url, &[], &["--migrate-only"]).await;
    ok(&predeploy, 5);
    assert!(
        predeploy.stderr.contains(
            "ERROR 42P07: relation \"ui_artifact_comments\" already exists; the database already \
             has it: if it was made outside the migrations"
        ) && predeploy.stderr.contains("rolled back, nothing recorded"),
        "{}",
        predeploy.stderr
    );
    let table = after(&predeploy.stderr, "relation \"")
        .split('"')
        .next()
        .unwrap()
        .to_string();

    let mut guide = Guide::new("sql-error-in-the-database", &db);
    let status = guide
        .server_ok("/app/server migrate status", new, &[], 8)
        .await;
    assert!(
        status.stdout.contains("Pending:            20991201000001")
            && status.stdout.contains("Dirty:              none"),
        "{}",
        status.stdout
    );
    // The serving release: the database is at its newest migration, so drift is compared.
    let drift = guide
        .server_ok("/app/server migrate drift", old, &[], 11)
        .await;
    assert!(
        drift
            .stdout
            .contains(&format!("extra table public.{table}"))
            && drift
                .stdout
                .contains(&format!("extra index public.{table}_pkey")),
        "{}",
        drift.stdout
    );
    guide.learn("table", &table);
    let count = guide
        .step(
            "psql \"$EXTERNAL_DATABASE_URL\" -c \"SELECT count(*) FROM <table>;\"",
            old,
            &[],
        )
        .await
        .sql();
    assert_eq!(count[0].get::<i64, _>(0), 2);
    guide
        .step(
            "psql \"$EXTERNAL_DATABASE_URL\" -c \"CREATE SCHEMA by_hand; ALTER TABLE <table> SET SCHEMA by_hand;\"",
            old,
            &[],
        )
        .await
        .sql();
    // The same release again: the file was right.
    guide
        .server_ok("/app/server --migrate-only", new, &[], 0)
        .await;
    let kept: i64 = sqlx::query_scalar("SELECT count(*) FROM by_hand.ui_artifact_comments")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(kept, 2, "nothing was lost");
    guide
        .step(
            "psql \"$EXTERNAL_DATABASE_URL\" -c \"DROP TABLE by_hand.<table>; DROP SCHEMA by_hand;\"",
            new,
            &[],
        )
        .await
        .sql();
    guide.verify_without_drift(new).await;
    guide.done();
}

#[tokio::test]
async fn drift_before_redeploying_is_asked_of_the_binary_the_database_is_at() {
    // The next release makes messages.tool_call_id required: fine on a fresh database, refused
    // here, where a message has none. Meanwhile someone dropped an index by hand.
    let db = TestDb::migrated().await;
    let next = product_and(&[(
        "20991201000001_messages_tool_call_id_required.sql",
        "ALTER TABLE messages ALTER COLUMN tool_call_id SET NOT NULL;\n",
    )]);
    with_snapshot(&next, &db).await;
    let new = Image::Release(next.dir.path());
    let old = Image::Built;
    let mut conn = db.connect().await;
    sqlx::raw_sql(
        "INSERT INTO conversations (id, title) VALUES ('00000000-0000-0000-0000-000000000001', 't'); \
         INSERT INTO messages (conversation_id, seq, role, content) \
         VALUES ('00000000-0000-0000-0000-000000000001', 1, 'user', 'hi'); \
         DROP INDEX ui_artifacts_conversation_idx;",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    ok(&new.run(&db.url, &[], &["--migrate-only"]).await, 5);

    let mut guide = Guide::new("drift-before-redeploy", &db);
    let behind = guide
        .server_ok("/app/server migrate drift", new, &[], 9)
        .await;
    assert!(
        behind.stdout.contains(
            "Not compared: the database is behind the snapshot: migration(s) 20991201000001 of \
             this binary are pending; check drift with the binary whose newest migration the \
             database has"
        ),
        "{}",
        behind.stdout
    );
    let drift = guide
        .server_ok("/app/server migrate drift", old, &[], 11)
        .await;
    let definition = after(
        &drift.stdout,
        "missing index public.ui_artifacts_conversation_idx: ",
    )
    .to_string();
    assert!(
        definition.starts_with("CREATE INDEX ui_artifacts_conversation_idx ON public.ui_artifacts")
    );
    guide.learn("definition", &definition);
    guide
        .step(
            "psql \"$EXTERNAL_DATABASE_URL\" -c \"<definition>;\"",
            old,
            &[],
        )
        .await
        .sql();
    guide.verify_without_drift(old).await;
    guide.done();
}

#[tokio::test]
async fn killed_during_a_transactional_migration_it_is_pending_and_the_rerun_applies_it() {
    let db = TestDb::empty().await;
    // The second migration sleeps, only in a session that asks it to (the killed runner's).
    let set = SetDir::new(&[
        (
            "1_gadgets.sql",
            "CREATE TABLE gadgets (id int PRIMARY KEY);\n",
        ),
        (
            "2_widgets.sql",
            "CREATE TABLE widgets (id int PRIMARY KEY);\n\
             SELECT pg_sleep(coalesce(nullif(current_setting('guide.sleep', true), ''), '0')::float8);\n",
        ),
    ]);
    let image = Image::Release(set.dir.path());
    let mut runner = Release {
        dir: set.dir.path(),
    }
    .spawn(
        &with_setting(&db.url, "guide.sleep", "600"),
        &[],
        &["--migrate-only"],
    );
    let mut observer = db.connect().await;
    wait_until(
        &mut observer,
        "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE datname = current_database() \
         AND application_name = 'agent-backend migrate' AND wait_event = 'PgSleep')",
        "the runner inside its second migration",
    )
    .await;
    let backend: i32 = sqlx::query_scalar(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() \
         AND application_name = 'agent-backend migrate' AND wait_event = 'PgSleep'",
    )
    .fetch_one(&mut observer)
    .await
    .unwrap();
    runner.start_kill().expect("SIGKILL the runner");
    let killed = finish(runner).await;
    assert_eq!(killed.code, None, "killed by a signal");

    let mut guide = Guide::new("killed-transactional", &db);
    let status = guide
        .server_ok("/app/server migrate status", image, &[], 8)
        .await;
    assert!(
        status.stdout.contains("Pending:            2")
            && status.stdout.contains("Dirty:              none"),
        "{}",
        status.stdout
    );
    // Until PostgreSQL notices the runner is gone, its session still holds the lock.
    let lock = after(&status.stdout, "Migration lock:");
    assert!(
        lock == "free"
            || lock.starts_with(&format!(
                "held by pid {backend} (application_name \"agent-backend migrate\""
            )),
        "{lock}"
    );
    let rerun = guide
        .server_ok("/app/server --migrate-only", image, &[], 0)
        .await;
    crate::support::assert_shows(&rerun.stderr, "Applied migration 2");
    guide
        .server_ok("/app/server migrate verify", image, &[], 0)
        .await;
    guide.done();
    let gone: bool =
        sqlx::query_scalar("SELECT NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1)")
            .bind(backend)
            .fetch_one(&mut observer)
            .await
            .unwrap();
    assert!(gone, "the killed runner's session is gone, with its lock");
}

#[tokio::test]
async fn lock_held_by_another_applications_migrator_at_work_wait_for_it() {
    let db = TestDb::empty().await;
    // Another service's migrator holds the key and is busy: its query waits on a lock the
    // test releases when that migrator is "done".
    let (mut foreign, _key) = hold_migration_lock(&db, "billing-service%20migrate").await;
    let mut gate = db.connect().await;
    sqlx::query("SELECT pg_advisory_lock(4242)")
        .execute(&mut gate)
        .await
        .unwrap();
    let work = tokio::spawn(async move {
        sqlx::query("SELECT pg_advisory_lock(4242)")
            .execute(&mut foreign)
            .await
            .unwrap();
        sqlx::query("SELECT pg_advisory_unlock_all()")
            .execute(&mut foreign)
            .await
            .unwrap();
    });
    let mut observer = db.connect().await;
    wait_until(
        &mut observer,
        "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE datname = current_database() \
         AND application_name = 'billing-service migrate' AND state = 'active')",
        "the other migrator at work",
    )
    .await;
    let predeploy = run_server(
        &db.url,
        &[("APP_MIGRATIONS__LOCK_WAIT_TIMEOUT", "1s")],
        &["--migrate-only"],
    )
    .await;
    ok(&predeploy, 7);
    crate::support::assert_shows(&predeploy.stderr, "end it only if it is stuck");

    let mut guide = Guide::new("lock-held-foreign", &db);
    let status = guide
        .server_ok("/app/server migrate status", Image::Built, &[], 8)
        .await;
    let holder = after(&status.stdout, "Migration lock:     held by pid ").to_string();
    assert!(
        holder.contains("(application_name \"billing-service migrate\"")
            && holder.contains("state active"),
        "{holder}"
    );
    guide.learn("pid", holder.split(' ').next().unwrap());
    let session = guide
        .step(
            "psql \"$EXTERNAL_DATABASE_URL\" -c \"SELECT pid, application_name, client_addr, backend_start, state, state_change, query FROM pg_stat_activity WHERE pid = <pid>;\"",
            Image::Built,
            &[],
        )
        .await
        .sql();
    // The guide's table: not ours, and active: leave it, wait for it.
    assert_eq!(
        session[0].get::<String, _>("application_name"),
        "billing-service migrate"
    );
    assert_eq!(session[0].get::<String, _>("state"), "active");

    // The retry waits for the lock, naming its holder; the other migrator then finishes.
    let (rerun, ()) = tokio::join!(
        async {
            guide
                .step("/app/server --migrate-only", Image::Built, &[])
                .await
                .server()
        },
        async {
            wait_until(
                &mut observer,
                "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE datname = current_database() \
                 AND application_name = 'agent-backend migrate' AND wait_event = 'advisory')",
                "the retry waiting for the lock",
            )
            .await;
            sqlx::query("SELECT pg_advisory_unlock(4242)")
                .execute(&mut gate)
                .await
                .unwrap();
        }
    );
    ok(&rerun, 0);
    assert!(
        rerun.stderr.contains(&format!(
            "Waiting for the migration lock held by pid {} (application_name \"billing-service migrate\"",
            guide.known["pid"]
        )) && rerun.stderr.contains("Migrations completed successfully"),
        "{}",
        rerun.stderr
    );
    guide.done();
    work.await.unwrap();
}

/// The expand migration of the guide's rename recipe, as docs/operations.md writes it (also the
/// rolling-deploy checks' rename, `compat.rs`).
pub(crate) const EXPAND_BODY: (&str, &str) = (
    "20270101000001_expand_message_body.up.sql",
    "ALTER TABLE messages ADD COLUMN body text;\n\
     CREATE FUNCTION messages_sync_body() RETURNS trigger LANGUAGE plpgsql AS $$\n\
     BEGIN\n\
       NEW.body := coalesce(NEW.body, NEW.content);\n\
       NEW.content := coalesce(NEW.content, NEW.body);\n\
       RETURN NEW;\n\
     END $$;\n\
     CREATE TRIGGER messages_sync_body BEFORE INSERT OR UPDATE ON messages\n\
       FOR EACH ROW EXECUTE FUNCTION messages_sync_body();\n\
     UPDATE messages SET body = content WHERE body IS NULL;\n",
);

/// The rename's releases between the expand and the contract: the one that writes both
/// columns and still reads `content`, then the one that reads and writes `body` only.
pub(crate) const SWITCHING_QUERIES: [&str; 2] = [
    "SELECT id, content FROM messages WHERE conversation_id = $1 ORDER BY seq",
    "INSERT INTO messages (conversation_id, seq, role, content, body) \
     VALUES ($1, $2, $3, $4, $4) RETURNING id",
];
pub(crate) const SWITCHED_QUERIES: [&str; 2] = [
    "SELECT id, body FROM messages WHERE conversation_id = $1 ORDER BY seq",
    "INSERT INTO messages (conversation_id, seq, role, body) VALUES ($1, $2, $3, $4) \
     RETURNING id",
];

pub(crate) const CONTRACT_CONTENT: (&str, &str) = (
    "20270101000002_contract_message_content.up.sql",
    "DROP TRIGGER messages_sync_body ON messages;\n\
     DROP FUNCTION messages_sync_body();\n\
     ALTER TABLE messages DROP COLUMN content;\n",
);

#[tokio::test]
async fn a_rename_as_expand_and_contract_each_step_with_its_verdict() {
    use crate::compat::{ERROR, describe_release, expire, record};
    let db = TestDb::migrated().await;
    let mut conn = db.connect().await;
    // The release serving before deploy 1: this build (it reads and writes `content`).
    record(&mut conn, "0.1.0", &project_dir().join(".sqlx")).await;
    let deploy1 = product_and(&[EXPAND_BODY]);
    let deploy3 = product_and(&[EXPAND_BODY, CONTRACT_CONTENT]);

    let mut guide = Guide::new("expand-contract-rename", &db);
    let out = guide
        .step(
            "/app/server --migrate-only",
            Image::Release(deploy1.dir.path()),
            &[ERROR],
        )
        .await
        .server();
    ok(&out, 0);
    // As many queries as this build's .sqlx/ holds, whatever a branch adds.
    let queries = agent_backend::queries::QuerySet::embedded().len();
    assert!(
        out.stderr.contains(&format!(
            "Compat check: 1 release(s), {queries} distinct queries"
        )) && out.stderr.contains(": 0 break(s)"),
        "{}",
        out.stderr
    );
    // Deploy 1's code: writes both columns, reads `content`; it serves now, and the release
    // before it is gone.
    let r1 = describe_release(&mut conn, &crate::guide::SWITCHING_QUERIES).await;
    record(&mut conn, "deploy-1", r1.path()).await;
    expire(&mut conn, "0.1.0").await;
    guide.learn("deploy-1-sqlx", r1.path().display());
    let out = guide
        .step(
            "/app/server migrate compat --queries <deploy-1-sqlx>",
            Image::Release(deploy1.dir.path()),
            &[],
        )
        .await
        .server();
    ok(&out, 0);
    crate::support::assert_shows(&out.stdout, "ok: 1 release(s), 2 distinct queries");
    // Deploy 2's code reads and writes `body` only.
    let r2 = describe_release(&mut conn, &crate::guide::SWITCHED_QUERIES).await;
    record(&mut conn, "deploy-2", r2.path()).await;

    let contract = Image::Release(deploy3.dir.path());
    let out = guide
        .server_ok("/app/server --migrate-only", contract, &[ERROR], 14)
        .await;
    assert!(
        out.stderr.contains(
            "Incompatible with a serving release: release deploy-1: query"
        ) && out.stderr.contains("(SELECT id, content FROM messages WHERE conversation_id = $1 ORDER BY seq): column \"content\" does not exist")
            && out.stderr.contains("nothing applied")
            && !out.stderr.contains("release deploy-2"),
        "{}",
        out.stderr
    );
    assert!(table_has_column(&mut conn, "messages", "content").await);
    let out = guide
        .server_ok("/app/server migrate compat", contract, &[], 14)
        .await;
    crate::support::assert_shows(&out.stdout, "release deploy-1: query set");
    crate::support::assert_shows(&out.stdout, "release deploy-2: query set");
    assert!(
        out.stdout
            .contains("FAIL: 2 release(s), 4 distinct queries"),
        "{}",
        out.stdout
    );
    // Deploy 1's instances stopped: its heartbeat ages past the window.
    expire(&mut conn, "deploy-1").await;
    let out = guide
        .server_ok("/app/server --migrate-only", contract, &[ERROR], 0)
        .await;
    crate::support::assert_shows(&out.stderr, "Applied migration 20270101000002");
    assert!(!table_has_column(&mut conn, "messages", "content").await);
    guide.done();
}

#[tokio::test]
async fn a_column_drop_waits_for_the_release_that_reads_it() {
    use crate::compat::{ERROR, describe_release, expire, record};
    let db = TestDb::migrated().await;
    let mut conn = db.connect().await;
    // The release before deploy 1 reads `tool_call_id` (this build); deploy 1's does not.
    record(&mut conn, "0.1.0", &project_dir().join(".sqlx")).await;
    let r1 = describe_release(
        &mut conn,
        &[
            "SELECT id, role, content FROM messages WHERE conversation_id = $1 ORDER BY seq",
            "INSERT INTO messages (conversation_id, seq, role, content) VALUES ($1, $2, $3, $4) \
             RETURNING id",
        ],
    )
    .await;
    record(&mut conn, "deploy-1", r1.path()).await;
    let deploy2 = product_and(&[(
        "20270101000003_drop_message_tool_call_id.up.sql",
        "ALTER TABLE messages DROP COLUMN tool_call_id;\n",
    )]);
    let contract = Image::Release(deploy2.dir.path());

    let mut guide = Guide::new("expand-contract-drop", &db);
    let out = guide
        .server_ok("/app/server --migrate-only", contract, &[ERROR], 14)
        .await;
    assert!(
        out.stderr.contains("release 0.1.0: query")
            && out
                .stderr
                .contains("column \"tool_call_id\" does not exist")
            && !out.stderr.contains("release deploy-1"),
        "{}",
        out.stderr
    );
    assert!(table_has_column(&mut conn, "messages", "tool_call_id").await);
    expire(&mut conn, "0.1.0").await;
    let out = guide
        .server_ok("/app/server --migrate-only", contract, &[ERROR], 0)
        .await;
    assert!(
        out.stderr
            .contains("Compat check: 1 release(s), 2 distinct queries")
            && out.stderr.contains(": 0 break(s)"),
        "{}",
        out.stderr
    );
    assert!(!table_has_column(&mut conn, "messages", "tool_call_id").await);
    guide.done();
}

async fn table_has_column(conn: &mut PgConnection, table: &str, column: &str) -> bool {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM information_schema.columns \
         WHERE table_schema = 'public' AND table_name = $1 AND column_name = $2)",
    )
    .bind(table)
    .bind(column)
    .fetch_one(conn)
    .await
    .unwrap()
}
