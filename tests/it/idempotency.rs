//! `Idempotency-Key` on the three creating POSTs (`api::idempotency`), in process over the
//! routes the binary serves, each test on a database of its own: replays byte for byte with
//! one write, 422 for another body, 409 while the first request holds the key, expiry and the
//! sweep (also as the serving process runs it), 50 concurrent duplicates writing once, keys of
//! different operations apart, bad headers, and the document.

use std::sync::Arc;
use std::time::Duration;

use poem::endpoint::BoxEndpoint;
use poem::http::{HeaderValue, StatusCode};
use poem::test::{TestClient, TestResponse};
use serde_json::{Value, json};

use crate::support::{TestDb, app, poll, run_ok, run_server, spawn_server, wait_until};

const KEY: &str = "Idempotency-Key";

struct Api {
    db: TestDb,
    client: TestClient<BoxEndpoint<'static>>,
}

/// One answer, whole: what a replay must repeat.
#[derive(Debug, PartialEq)]
struct Answer {
    status: StatusCode,
    content_type: Option<String>,
    etag: Option<String>,
    retry_after: Option<String>,
    body: Vec<u8>,
}

impl Answer {
    async fn of(resp: TestResponse) -> Self {
        let header = |name: &str| {
            resp.0
                .headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_string())
        };
        let (content_type, etag, retry_after) = (
            header("content-type"),
            header("etag"),
            header("retry-after"),
        );
        let status = resp.0.status();
        let body = resp.0.into_body().into_vec().await.unwrap();
        Self {
            status,
            content_type,
            etag,
            retry_after,
            body,
        }
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }

    /// The problem document, checked for the shape every error has, and its status.
    fn problem(&self, status: u16) -> Value {
        assert_eq!(self.status.as_u16(), status, "{}", self.text());
        assert_eq!(
            self.content_type.as_deref(),
            Some("application/problem+json")
        );
        let body = self.json();
        assert_eq!(body["status"], status, "{body}");
        for field in ["type", "title", "detail"] {
            assert!(body[field].is_string(), "{body}");
        }
        body
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl Api {
    async fn start() -> Self {
        let db = TestDb::migrated().await;
        let client = app(&db, "");
        Self { db, client }
    }

    /// POSTs `body` (these exact bytes) to `/api/v1{path}`, with each of `keys` as an
    /// `Idempotency-Key` header.
    async fn post_raw(&self, path: &str, keys: &[HeaderValue], body: &str) -> Answer {
        let mut request = self
            .client
            .post(format!("/api/v1{path}"))
            .content_type("application/json")
            .header("content-length", body.len());
        for key in keys {
            request = request.header(KEY, key.clone());
        }
        Answer::of(request.body(body.to_string()).send().await).await
    }

    async fn post(&self, path: &str, key: Option<&str>, body: &str) -> Answer {
        let keys: Vec<HeaderValue> = key
            .map(HeaderValue::from_str)
            .into_iter()
            .flatten()
            .collect();
        self.post_raw(path, &keys, body).await
    }

    async fn conversation(&self) -> String {
        let created = self.post("/conversations", None, r#"{"title":"t"}"#).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text());
        created.json()["id"].as_str().unwrap().to_string()
    }

    async fn count(&self, sql: &str) -> i64 {
        let mut conn = self.db.connect().await;
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {sql}")))
            .fetch_one(&mut conn)
            .await
            .unwrap()
    }

    async fn exec(&self, sql: &str) {
        let mut conn = self.db.connect().await;
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
}

/// The three creating operations of a conversation `id`: path, a body, and the table (or
/// tables) a write adds a row to.
fn creating(id: &str) -> [(String, &'static str, &'static [&'static str]); 3] {
    [
        (
            "/conversations".to_string(),
            r#"{"title": "Trip", "metadata": {"n": 1.50, "big": 123456789012345678901234567890}}"#,
            &["conversations"],
        ),
        (
            format!("/conversations/{id}/messages"),
            r#"{"role": "user", "content": "hello", "parts": [{"x": 1e-3}]}"#,
            &["messages"],
        ),
        (
            format!("/conversations/{id}/artifacts"),
            r#"{"kind": "chart", "title": "Sales", "spec": {"type": "bar"}}"#,
            &["ui_artifacts", "ui_artifact_versions"],
        ),
    ]
}

#[tokio::test]
async fn the_same_key_and_body_replay_the_first_answer_byte_for_byte_and_write_once() {
    let api = Api::start().await;
    let id = api.conversation().await;
    for (path, body, tables) in creating(&id) {
        let before: Vec<i64> = counts(&api, tables).await;
        let first = api.post(&path, Some("retry-1"), body).await;
        assert_eq!(
            first.status,
            StatusCode::CREATED,
            "{path}: {}",
            first.text()
        );
        for _ in 0..2 {
            let again = api.post(&path, Some("retry-1"), body).await;
            assert_eq!(again, first, "{path}: the replay is the first answer");
        }
        let after = counts(&api, tables).await;
        let written: Vec<i64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
        assert!(written.iter().all(|&n| n == 1), "{path}: {written:?}");
    }
    // The message was appended once: the conversation's count says so too.
    let conversation = api
        .client
        .get(format!("/api/v1/conversations/{id}"))
        .send()
        .await;
    assert_eq!(Answer::of(conversation).await.json()["message_count"], 1);
    // The artifact's replay carries its ETag, version 1.
    let (path, body, _) = &creating(&id)[2];
    assert_eq!(
        api.post(path, Some("retry-1"), body).await.etag.as_deref(),
        Some("\"1\"")
    );
    // Without a key nothing is kept, and every POST writes.
    assert_eq!(api.count("idempotency_keys").await, 3);
    let (path, body, _) = &creating(&id)[0];
    let a = api.post(path, None, body).await;
    let b = api.post(path, None, body).await;
    assert_ne!(a.json()["id"], b.json()["id"]);
    assert_eq!(api.count("idempotency_keys").await, 3);
}

async fn counts(api: &Api, tables: &[&str]) -> Vec<i64> {
    let mut counts = Vec::new();
    for table in tables {
        counts.push(api.count(table).await);
    }
    counts
}

#[tokio::test]
async fn the_key_with_another_request_is_422_naming_the_header_and_writes_nothing() {
    let api = Api::start().await;
    let id = api.conversation().await;
    let other = api.conversation().await;
    let path = format!("/conversations/{id}/messages");
    let body = r#"{"role":"user","content":"hi"}"#;
    assert_eq!(
        api.post(&path, Some("k"), body).await.status,
        StatusCode::CREATED
    );
    let messages = api.count("messages").await;
    // The same value spelled with a space, another value, another conversation's path.
    for (path, body) in [
        (path.clone(), r#"{"role": "user","content":"hi"}"#),
        (path.clone(), r#"{"role":"user","content":"bye"}"#),
        (format!("/conversations/{other}/messages"), body),
    ] {
        let refused = api.post(&path, Some("k"), body).await;
        let problem = refused.problem(422);
        assert_eq!(problem["type"], "/problems/validation");
        assert_eq!(problem["errors"][0]["field"], KEY, "{problem}");
        assert!(
            problem["detail"]
                .as_str()
                .unwrap()
                .contains("another request"),
            "{problem}"
        );
    }
    assert_eq!(api.count("messages").await, messages);
    // The first request's answer is still the key's.
    let replay = api.post(&path, Some("k"), body).await;
    assert_eq!(replay.status, StatusCode::CREATED);
    assert_eq!(replay.json()["content"], "hi");
}

#[tokio::test]
async fn a_key_whose_first_request_is_in_flight_is_409_with_retry_after_then_taken_over_when_stale()
{
    let api = Api::start().await;
    let body = r#"{"title":"held"}"#;
    // A claim held by hand, as a request still running holds it: this request's fingerprint
    // (SHA-256 of method, path and body bytes, computed by PostgreSQL here).
    api.exec(&format!(
        "INSERT INTO idempotency_keys (operation, key, fingerprint, claim, expires_at) \
         VALUES ('createConversation', 'held', \
                 sha256(convert_to(E'POST\\n/conversations\\n' || '{body}', 'UTF8')), \
                 gen_random_uuid(), now() + interval '1 day')"
    ))
    .await;
    let busy = api.post("/conversations", Some("held"), body).await;
    let problem = busy.problem(409);
    assert_eq!(busy.retry_after.as_deref(), Some("1"));
    assert!(
        problem["detail"].as_str().unwrap().contains("in progress"),
        "{problem}"
    );
    assert_eq!(api.count("conversations").await, 0);
    // Another body under the held key is still another request.
    api.post("/conversations", Some("held"), r#"{"title":"x"}"#)
        .await
        .problem(422);

    // Claimed longer than claim_timeout ago without an answer: its request is presumed lost,
    // and the retry takes the key over, writes once, and is replayed from then on.
    api.exec("UPDATE idempotency_keys SET claimed_at = now() - interval '61 seconds'")
        .await;
    let taken = api.post("/conversations", Some("held"), body).await;
    assert_eq!(taken.status, StatusCode::CREATED, "{}", taken.text());
    assert_eq!(api.post("/conversations", Some("held"), body).await, taken);
    assert_eq!(api.count("conversations").await, 1);
}

/// A first request that outlived `claim_timeout` and was taken over never commits its write:
/// its completion names a claim that is no longer the key's, so its transaction rolls back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_whose_claim_was_taken_over_writes_nothing() {
    let api = Arc::new(Api::start().await);
    let id = api.conversation().await;
    // The append waits on the conversation's row lock, its key claimed.
    let mut holder = api.db.connect().await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "BEGIN; SELECT 1 FROM conversations WHERE id = '{id}' FOR UPDATE"
    )))
    .execute(&mut holder)
    .await
    .unwrap();
    let slow = tokio::spawn({
        let (api, path) = (api.clone(), format!("/conversations/{id}/messages"));
        async move {
            api.post(&path, Some("slow"), r#"{"role":"user","content":"late"}"#)
                .await
        }
    });
    let mut conn = api.db.connect().await;
    wait_until(
        &mut conn,
        "SELECT EXISTS (SELECT 1 FROM idempotency_keys WHERE key = 'slow') \
           AND EXISTS (SELECT 1 FROM pg_stat_activity \
                       WHERE datname = current_database() AND wait_event_type = 'Lock')",
        "the append claimed its key and waits on the row lock",
    )
    .await;
    // A retry took the key over meanwhile (its claim id replaces the first one's).
    sqlx::query("UPDATE idempotency_keys SET claim = gen_random_uuid(), claimed_at = now()")
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::raw_sql("ROLLBACK")
        .execute(&mut holder)
        .await
        .unwrap();
    let late = slow.await.unwrap();
    late.problem(409);
    assert_eq!(late.retry_after.as_deref(), Some("1"));
    assert_eq!(api.count("messages").await, 0, "its write rolled back");
    let (last_seq, state): (i64, String) = sqlx::query_as(
        "SELECT (SELECT last_seq FROM conversations), (SELECT state FROM idempotency_keys)",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(
        (last_seq, state.as_str()),
        (0, "in_flight"),
        "the new claim's, untouched"
    );
}

#[tokio::test]
async fn a_failed_first_attempt_releases_the_key() {
    let api = Api::start().await;
    let missing = uuid::Uuid::new_v4();
    let body = r#"{"role":"user","content":"hi"}"#;
    let path = format!("/conversations/{missing}/messages");
    api.post(&path, Some("k"), body).await.problem(404);
    assert_eq!(api.count("idempotency_keys").await, 0, "a 404 is not kept");
    // A body the domain refuses never claims the key.
    api.post("/conversations", Some("k"), r#"{"title":"   "}"#)
        .await
        .problem(422);
    assert_eq!(api.count("idempotency_keys").await, 0);
    // So the same key works once the request can succeed.
    let id = api.conversation().await;
    let path = format!("/conversations/{id}/messages");
    assert_eq!(
        api.post(&path, Some("k"), body).await.status,
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn an_expired_key_is_a_new_key_and_the_sweep_deletes_expired_keys() {
    let api = Api::start().await;
    let body = r#"{"title":"daily"}"#;
    let first = api.post("/conversations", Some("day"), body).await;
    assert_eq!(first.status, StatusCode::CREATED);
    api.exec("UPDATE idempotency_keys SET expires_at = now() - interval '1 second'")
        .await;
    // Past its window the key is new: a second write, and its answer is the key's now.
    let second = api.post("/conversations", Some("day"), body).await;
    assert_eq!(second.status, StatusCode::CREATED);
    assert_ne!(second.json()["id"], first.json()["id"]);
    assert_eq!(api.count("conversations").await, 2);
    assert_eq!(api.post("/conversations", Some("day"), body).await, second);
    // The window is ttl from the first use (24h by default).
    let mut conn = api.db.connect().await;
    let window: f64 = sqlx::query_scalar(
        "SELECT extract(epoch FROM expires_at - created_at)::float8 FROM idempotency_keys",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert!((window - 86_400.0).abs() < 1.0, "{window}");

    // The sweep deletes what has expired, and only that.
    api.post("/conversations", Some("kept"), body).await;
    api.exec(
        "UPDATE idempotency_keys SET expires_at = now() - interval '1 second' WHERE key = 'day'",
    )
    .await;
    let settings = crate::support::settings(&api.db, "");
    let pool = agent_backend::db::pool(&settings.database);
    assert_eq!(
        agent_backend::api::idempotency::sweep(&pool).await.unwrap(),
        1
    );
    let keys: Vec<String> = sqlx::query_scalar("SELECT key FROM idempotency_keys")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    assert_eq!(keys, ["kept"]);
    // And the periodic task sweeps on its own.
    api.exec("UPDATE idempotency_keys SET expires_at = now() - interval '1 second'")
        .await;
    let task = agent_backend::api::idempotency::spawn_sweep(pool, Duration::from_millis(50));
    poll("the sweep task", async || {
        (api.count("idempotency_keys").await == 0).then_some(())
    })
    .await;
    task.abort();
}

/// The sweep as `server` runs it: spawned at start-up every `idempotency.sweep_every`, and
/// stopped with the server (SIGTERM exits 0).
#[tokio::test]
async fn the_serving_process_sweeps_expired_keys() {
    let db = TestDb::migrated().await;
    let mut conn = db.connect().await;
    sqlx::raw_sql(
        "INSERT INTO idempotency_keys (operation, key, fingerprint, claim, expires_at) \
         VALUES ('createConversation', 'old', sha256('x'), gen_random_uuid(), now() - interval '1 second')",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let mut server = spawn_server(&db.url, &[("APP_IDEMPOTENCY__SWEEP_EVERY", "100ms")]).await;
    poll("the serving process's sweep", async || {
        let left: i64 = sqlx::query_scalar("SELECT count(*) FROM idempotency_keys")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        (left == 0).then_some(())
    })
    .await;
    server.signal("TERM");
    assert_eq!(server.wait().await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_identical_posts_with_one_key_write_once() {
    let api = Arc::new(Api::start().await);
    let id = api.conversation().await;
    for (path, body, tables) in creating(&id).into_iter().take(2) {
        let before = api.count(tables[0]).await;
        let start = Arc::new(tokio::sync::Barrier::new(50));
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let (api, path, start) = (api.clone(), path.clone(), start.clone());
                tokio::spawn(async move {
                    start.wait().await;
                    api.post(&path, Some("once"), body).await
                })
            })
            .collect();
        let mut answers = Vec::new();
        for task in tasks {
            answers.push(task.await.unwrap());
        }
        assert_eq!(api.count(tables[0]).await - before, 1, "{path}: one row");
        let (created, busy): (Vec<&Answer>, Vec<&Answer>) = answers
            .iter()
            .partition(|a| a.status == StatusCode::CREATED);
        assert!(!created.is_empty());
        eprintln!(
            "{path}: {} answered 201 (one write, the rest replays), {} answered 409",
            created.len(),
            busy.len()
        );
        assert!(
            created.iter().all(|a| *a == created[0]),
            "{path}: every 201 is the one answer"
        );
        for refused in &busy {
            refused.problem(409);
            assert_eq!(refused.retry_after.as_deref(), Some("1"));
        }
        // Once it answered, retries replay it.
        assert_eq!(&api.post(&path, Some("once"), body).await, created[0]);
    }
}

#[tokio::test]
async fn one_key_on_different_operations_is_different_keys() {
    let api = Api::start().await;
    let id = api.conversation().await;
    for (path, body, _) in creating(&id) {
        let answer = api.post(&path, Some("shared"), body).await;
        assert_eq!(
            answer.status,
            StatusCode::CREATED,
            "{path}: {}",
            answer.text()
        );
    }
    let mut conn = api.db.connect().await;
    let operations: Vec<String> = sqlx::query_scalar(
        "SELECT operation FROM idempotency_keys WHERE key = 'shared' ORDER BY operation",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(
        operations,
        ["appendMessage", "createArtifact", "createConversation"]
    );
}

#[tokio::test]
async fn a_bad_key_is_422_naming_the_header_and_writes_nothing() {
    let api = Api::start().await;
    let body = r#"{"title":"t"}"#;
    let long = "k".repeat(256);
    let bad: [&[HeaderValue]; 5] = [
        &[HeaderValue::from_static("")],
        &[HeaderValue::from_str(&long).unwrap()],
        &[HeaderValue::from_bytes(b"cl\xc3\xa9").unwrap()],
        &[HeaderValue::from_bytes(b"tab\there").unwrap()],
        &[HeaderValue::from_static("a"), HeaderValue::from_static("b")],
    ];
    for keys in bad {
        let refused = api.post_raw("/conversations", keys, body).await;
        let problem = refused.problem(422);
        assert_eq!(problem["errors"][0]["field"], KEY, "{keys:?}: {problem}");
    }
    assert_eq!(api.count("conversations").await, 0);
    assert_eq!(api.count("idempotency_keys").await, 0);
    // 255 printable ASCII characters, space and `~` included, are a key.
    let widest = format!(" ~{}", "k".repeat(253));
    let ok = api
        .post_raw(
            "/conversations",
            &[HeaderValue::from_str(&widest).unwrap()],
            body,
        )
        .await;
    assert_eq!(ok.status, StatusCode::CREATED, "{}", ok.text());
}

#[tokio::test]
async fn the_document_declares_the_header_on_the_creating_posts_only() {
    let api = Api::start().await;
    let doc = Answer::of(api.client.get("/openapi.json").send().await)
        .await
        .json();
    let mut keyed = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let params = op["parameters"].as_array().cloned().unwrap_or_default();
            let Some(header) = params.iter().find(|p| p["name"] == KEY) else {
                continue;
            };
            assert_eq!(header["in"], "header");
            assert_ne!(header["required"], true, "optional: {header}");
            assert!(
                header["description"]
                    .as_str()
                    .is_some_and(|d| d.contains("retries")),
                "{header}"
            );
            let schema = &header["schema"];
            assert_eq!(
                (&schema["type"], &schema["minLength"], &schema["maxLength"]),
                (&json!("string"), &json!(1), &json!(255)),
                "{header}"
            );
            // 409 says when to retry; 422 covers another request under the key.
            let conflict = &op["responses"]["409"];
            assert!(
                conflict["headers"]["RETRY-AFTER"].is_object(),
                "{path}: {conflict}"
            );
            assert!(op["responses"]["422"].is_object());
            keyed.push(format!("{method} {path}"));
        }
    }
    keyed.sort();
    assert_eq!(
        keyed,
        [
            "post /conversations",
            "post /conversations/{id}/artifacts",
            "post /conversations/{id}/messages",
        ]
    );
    // The answers keep their schemas.
    let created = &doc["paths"]["/conversations"]["post"]["responses"]["201"]["content"];
    assert_eq!(
        created["application/json; charset=utf-8"]["schema"]["$ref"],
        "#/components/schemas/Conversation"
    );
    let description = doc["info"]["description"].as_str().unwrap();
    assert!(description.contains("Idempotency-Key"), "{description}");
}

/// `[idempotency]` is validated like every section: a bad value stops start-up (exit 3)
/// naming its key.
#[tokio::test]
async fn bad_idempotency_settings_stop_start_up_naming_the_key() {
    let url = "postgres://postgres@127.0.0.1:1/none";
    for (var, value, key) in [
        ("APP_IDEMPOTENCY__TTL", "0s", "idempotency.ttl"),
        (
            "APP_IDEMPOTENCY__SWEEP_EVERY",
            "10",
            "idempotency.sweep_every",
        ),
        (
            "APP_IDEMPOTENCY__CLAIM_TIMEOUT",
            "2d",
            "idempotency.claim_timeout",
        ),
    ] {
        let out = run_server(url, &[(var, value)], &["config"]).await;
        assert_eq!(out.code, Some(3), "{var}={value}: {}", out.stderr);
        assert!(out.stderr.contains(key), "{var}={value}: {}", out.stderr);
    }
    let out = run_ok(url, &[], &["config"]).await;
    assert!(
        out.stdout.contains(
            "[idempotency]\nttl = \"86400s\"\nclaim_timeout = \"60s\"\nsweep_every = \"600s\""
        ),
        "{}",
        out.stdout
    );
}
