//! The operations guide's emergency procedure, run as written.
//!
//! Each case in docs/operations.md has a command block marked `<!-- guide-test: NAME -->`. Each
//! test here creates that failure, then runs the block's commands, every one and in the guide's
//! order, against the binary: `/app/server …` as a `server` process (the built one, or a release
//! over a generated set where the case needs another set), `psql "$EXTERNAL_DATABASE_URL" -c
//! "…"` as that SQL on the test's database. `<placeholders>` are filled from what earlier
//! commands printed, as a person would. A command added, removed, reworded or moved in the
//! guide fails its test until the test does the same.

use std::collections::BTreeMap;
use std::path::Path;

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

/// What a step printed: a `server` process's output, or the rows of an SQL command.
enum Outcome {
    Server(Output),
    Sql(Vec<sqlx::postgres::PgRow>),
}

impl Outcome {
    fn server(self) -> Output {
        match self {
            Outcome::Server(out) => out,
            Outcome::Sql(_) => panic!("expected a server command"),
        }
    }

    fn sql(self) -> Vec<sqlx::postgres::PgRow> {
        match self {
            Outcome::Sql(rows) => rows,
            Outcome::Server(_) => panic!("expected an SQL command"),
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
}

impl<'a> Guide<'a> {
    fn new(name: &'static str, db: &'a TestDb) -> Self {
        Self {
            name,
            commands: guide_commands(name).into_iter(),
            db,
            known: BTreeMap::new(),
        }
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
        } else {
            panic!("{}: a command the test cannot run: {command}", self.name);
        }
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

/// The first INVALID index `repair` listed, as (index, table).
fn invalid_index(repair: &str) -> (String, String) {
    let list = after(repair, "DROP INDEX CONCURRENTLY it): ");
    let first = list.split(", ").next().unwrap();
    let (index, table) = first.split_once(" on ").unwrap();
    (index.to_string(), table.to_string())
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
        .step("/app/server migrate status", new, &[])
        .await
        .server();
    ok(&status, 8);
    assert!(
        status.stdout.contains("Pending:            2"),
        "{}",
        status.stdout
    );

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
    ok(
        &guide
            .step("/app/server --migrate-only", new, &[])
            .await
            .server(),
        0,
    );
    ok(
        &guide
            .step("/app/server migrate verify", new, &[])
            .await
            .server(),
        0,
    );
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
    let runner = Release {
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
    let pid = runner.id().unwrap().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-9", &pid])
            .status()
            .unwrap()
            .success()
    );
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
        .step("/app/server migrate status", image, &[])
        .await
        .server();
    ok(&status, 6);
    assert!(status.stdout.contains("Migration lock:     free"));
    guide.learn("version", after(&status.stdout, "Dirty:"));
    assert_eq!(guide.known["version"], "2");

    let repair = guide
        .step("/app/server migrate repair", image, &[])
        .await
        .server();
    ok(&repair, 9);
    assert!(
        repair
            .stdout
            .contains("Failing statement: CREATE INDEX CONCURRENTLY items_sku_idx ON items (sku);")
            && repair.stdout.contains("The migration lock is free"),
        "{}",
        repair.stdout
    );
    let (index, table) = invalid_index(&repair.stdout);
    assert_eq!((index.as_str(), table.as_str()), ("items_sku_idx", "items"));
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
        .step(
            "/app/server migrate repair --version <version> --mark-reverted --yes",
            image,
            &[],
        )
        .await
        .server();
    ok(&repaired, 0);
    assert!(repaired.stdout.contains("Migration 2 marked reverted"));
    ok(
        &guide
            .step("/app/server --migrate-only", image, &[])
            .await
            .server(),
        0,
    );
    ok(
        &guide
            .step("/app/server migrate verify", image, &[])
            .await
            .server(),
        0,
    );
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

    let column = after(&predeploy.stderr, "Key (")
        .split(')')
        .next()
        .unwrap()
        .to_string();
    assert_eq!(column, "email");

    let mut guide = Guide::new("dirty-after-failed-unique-index", &db);
    let repair = guide
        .step("/app/server migrate repair", image, &[])
        .await
        .server();
    ok(&repair, 9);
    assert!(
        repair.stdout.contains(
            "Failing statement: CREATE UNIQUE INDEX CONCURRENTLY users_email_key ON users (email);"
        ),
        "{}",
        repair.stdout
    );
    let (index, table) = invalid_index(&repair.stdout);
    guide.learn(
        "version",
        after(&repair.stdout, "Migration ")
            .split(' ')
            .next()
            .unwrap(),
    );
    guide.learn("index", &index);
    guide.learn("table", &table);
    guide.learn("column", &column);

    let sessions = guide
        .step(
            "psql \"$EXTERNAL_DATABASE_URL\" -c \"SELECT pid, state, query_start, query FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'agent-backend migrate';\"",
            image,
            &[],
        )
        .await
        .sql();
    assert!(no_active_session(&sessions));
    let duplicates = guide
        .step(
            "psql \"$EXTERNAL_DATABASE_URL\" -c \"SELECT <column>, count(*) FROM <table> GROUP BY <column> HAVING count(*) > 1;\"",
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
    ok(
        &guide
            .step(
                "/app/server migrate repair --version <version> --mark-reverted --yes",
                image,
                &[],
            )
            .await
            .server(),
        0,
    );
    ok(
        &guide
            .step("/app/server --migrate-only", image, &[])
            .await
            .server(),
        0,
    );
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
        .step("/app/server migrate status", Image::Built, &[])
        .await
        .server();
    ok(&status, 8);
    let pid = after(&status.stdout, "Migration lock:     held by pid ")
        .split(' ')
        .next()
        .unwrap()
        .to_string();
    assert!(
        predeploy.stderr.contains(&format!("pid {pid} ")),
        "{}",
        predeploy.stderr
    );
    guide.learn("pid", &pid);

    let session = guide
        .step(
            "psql \"$EXTERNAL_DATABASE_URL\" -c \"SELECT pid, application_name, state, xact_start, state_change, query FROM pg_stat_activity WHERE pid = <pid>;\"",
            Image::Built,
            &[],
        )
        .await
        .sql();
    assert_eq!(session.len(), 1);
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
    ok(
        &guide
            .step("/app/server --migrate-only", Image::Built, &[])
            .await
            .server(),
        0,
    );
    guide.done();
}

#[tokio::test]
async fn edited_file_restore_it_and_add_a_new_migration() {
    let db = TestDb::empty().await;
    let original = ("1_notes.sql", "CREATE TABLE notes (id int PRIMARY KEY);\n");
    let v1 = SetDir::new(&[original]);
    let edited = SetDir::new(&[(
        "1_notes.sql",
        "CREATE TABLE notes (id int PRIMARY KEY, body text);\n",
    )]);
    let restored = SetDir::new(&[
        original,
        (
            "2_notes_body.sql",
            "ALTER TABLE notes ADD COLUMN body text;\n",
        ),
    ]);
    ok(
        &Image::Release(v1.dir.path())
            .run(&db.url, &[], &["--migrate-only"])
            .await,
        0,
    );
    let new = Image::Release(edited.dir.path());
    let predeploy = new.run(&db.url, &[], &["--migrate-only"]).await;
    ok(&predeploy, 6);
    assert!(predeploy.stderr.contains("was edited after it ran"));

    let mut guide = Guide::new("edited-file", &db);
    let status = guide
        .step("/app/server migrate status", new, &[])
        .await
        .server();
    ok(&status, 6);
    guide.learn("version", after(&status.stdout, "Checksum mismatch:"));
    let show = guide
        .step("/app/server migrate show <version>", new, &[])
        .await
        .server();
    ok(&show, 0);
    assert!(
        show.stdout.contains("checksum mismatch") && show.stdout.contains("body text"),
        "{}",
        show.stdout
    );
    let new = Image::Release(restored.dir.path());
    ok(
        &guide
            .step("/app/server --migrate-only", new, &[])
            .await
            .server(),
        0,
    );
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
        .step(
            "/app/server migrate rollback <previous> --dry-run",
            newer_image,
            &[],
        )
        .await
        .server();
    ok(&plan, 0);
    assert!(
        plan.stdout.contains("would rollback 1 migration(s)")
            && plan.stdout.contains("2_badges.down.sql"),
        "{}",
        plan.stdout
    );
    let rolled = guide
        .step(
            "/app/server migrate rollback <previous> --yes",
            newer_image,
            &[],
        )
        .await
        .server();
    ok(&rolled, 0);
    let mut conn = db.connect().await;
    assert!(!table_exists(&mut conn, "badges").await);
    assert_eq!(
        ready(serving.base.clone()).await,
        200,
        "the serving release"
    );
    ok(
        &guide
            .step(
                "/app/server migrate verify",
                Image::Release(old.dir.path()),
                &[],
            )
            .await
            .server(),
        0,
    );
    guide.done();
    serving.signal("TERM");
    assert_eq!(serving.wait().await, Some(0));
}
