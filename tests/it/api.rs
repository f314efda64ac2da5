//! The product API in process (`poem::test::TestClient` over the routes the binary serves, a
//! real database of its own per test), and the one thing only a process shows: production
//! refuses to start without API keys.

use std::collections::HashSet;
use std::sync::Arc;

use poem::endpoint::BoxEndpoint;
use poem::http::{Method, StatusCode};
use poem::test::{TestClient, TestRequestBuilder, TestResponse};
use serde_json::{Value, json};

use crate::support::{TestDb, app, json_difference, run_server};

type Request<'a> = TestRequestBuilder<'a, BoxEndpoint<'static>>;

struct Api {
    db: TestDb,
    client: TestClient<BoxEndpoint<'static>>,
}

impl Api {
    /// The application over a new migrated database; `config` as [`app`] takes it.
    async fn start(config: &str) -> Self {
        let db = TestDb::migrated().await;
        let client = app(&db, config);
        Self { db, client }
    }

    fn url(path: &str) -> String {
        format!("/api/v1{path}")
    }

    /// A request, its body framed as an HTTP client frames one: the body limit reads
    /// `Content-Length`.
    fn request(&self, method: Method, path: &str, body: Option<(&str, String)>) -> Request<'_> {
        let request = self.client.request(method, Self::url(path));
        match body {
            Some((content_type, body)) => request
                .content_type(content_type)
                .header("content-length", body.len())
                .body(body),
            None => request,
        }
    }

    async fn send(&self, method: Method, path: &str, body: Option<Value>) -> TestResponse {
        let body = body.map(|body| ("application/json", body.to_string()));
        self.request(method, path, body).send().await
    }

    async fn post(&self, path: &str, body: Value) -> TestResponse {
        self.send(Method::POST, path, Some(body)).await
    }

    async fn get(&self, path: &str) -> TestResponse {
        self.send(Method::GET, path, None).await
    }

    async fn patch(&self, path: &str, body: Value) -> TestResponse {
        self.send(Method::PATCH, path, Some(body)).await
    }

    async fn delete(&self, path: &str) -> TestResponse {
        self.send(Method::DELETE, path, None).await
    }

    async fn conversation(&self, title: &str) -> Value {
        ok(
            self.post("/conversations", json!({ "title": title })).await,
            201,
        )
        .await
    }
}

fn header(resp: &TestResponse, name: &str) -> String {
    resp.0
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
        .to_string()
}

async fn text(resp: TestResponse) -> String {
    resp.0.into_body().into_string().await.unwrap()
}

/// The JSON body of a response with the expected status.
async fn ok(resp: TestResponse, status: u16) -> Value {
    let got = resp.0.status();
    let body = text(resp).await;
    assert_eq!(got.as_u16(), status, "{body}");
    if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&body).unwrap()
    }
}

/// The text of a 200 response.
async fn ok_text(resp: TestResponse) -> String {
    assert_eq!(resp.0.status(), StatusCode::OK);
    text(resp).await
}

/// The problem document of an error response, checked for RFC 9457 shape.
async fn problem(resp: TestResponse, status: u16) -> Value {
    assert_eq!(resp.0.status().as_u16(), status);
    assert_eq!(header(&resp, "content-type"), "application/problem+json");
    let body: Value = serde_json::from_str(&text(resp).await).unwrap();
    assert_eq!(body["status"], status, "{body}");
    assert!(
        body["title"].is_string() && body["detail"].is_string() && body["type"].is_string(),
        "{body}"
    );
    body
}

/// Walks every page of a listing; returns the ids in order and the number of pages.
async fn all_pages(api: &Api, path: &str, limit: u32) -> (Vec<String>, usize) {
    let (mut ids, mut pages, mut cursor) = (Vec::new(), 0, None::<String>);
    loop {
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut url = format!("{path}{sep}limit={limit}");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let page = ok(api.get(&url).await, 200).await;
        pages += 1;
        ids.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["id"].as_str().unwrap().to_string()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return (ids, pages),
        }
    }
}

#[tokio::test]
async fn conversations_round_trip() {
    let api = Api::start("").await;
    let created = ok(
        api.post(
            "/conversations",
            json!({ "title": "  Trip planning ", "metadata": { "pinned": true } }),
        )
        .await,
        201,
    )
    .await;
    let id = created["id"].as_str().unwrap();
    assert_eq!(created["title"], "Trip planning");
    assert_eq!(created["metadata"], json!({ "pinned": true }));
    assert_eq!(created["archived"], false);
    assert_eq!(
        ok(api.get(&format!("/conversations/{id}")).await, 200).await,
        created
    );

    let patched = ok(
        api.patch(
            &format!("/conversations/{id}"),
            json!({ "title": "Renamed" }),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(
        (patched["title"].clone(), patched["metadata"].clone()),
        (json!("Renamed"), json!({ "pinned": true }))
    );
    let patched = ok(
        api.patch(
            &format!("/conversations/{id}"),
            json!({ "metadata": { "x": 1 } }),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(
        (patched["title"].clone(), patched["metadata"].clone()),
        (json!("Renamed"), json!({ "x": 1 }))
    );

    let other = api.conversation("Other").await;
    let archived = ok(
        api.post(&format!("/conversations/{id}/archive"), json!({}))
            .await,
        200,
    )
    .await;
    assert_eq!(archived["archived"], true);
    let only_archived = ok(api.get("/conversations?archived=true").await, 200).await;
    assert_eq!(only_archived["items"].as_array().unwrap().len(), 1);
    assert_eq!(only_archived["items"][0]["id"], id);
    let active = ok(api.get("/conversations?archived=false").await, 200).await;
    assert_eq!(active["items"][0]["id"], other["id"]);
    assert_eq!(active["items"].as_array().unwrap().len(), 1);
    let unarchived = ok(
        api.post(&format!("/conversations/{id}/unarchive"), json!({}))
            .await,
        200,
    )
    .await;
    assert_eq!(unarchived["archived"], false);

    ok(
        api.post(
            &format!("/conversations/{id}/messages"),
            json!({ "role": "user", "content": "hi" }),
        )
        .await,
        201,
    )
    .await;
    let deleted = api.delete(&format!("/conversations/{id}")).await;
    assert_eq!(deleted.0.status(), StatusCode::NO_CONTENT);
    problem(api.get(&format!("/conversations/{id}")).await, 404).await;
    problem(api.get(&format!("/conversations/{id}/messages")).await, 404).await;
    problem(api.delete(&format!("/conversations/{id}")).await, 404).await;
}

#[tokio::test]
async fn conversation_pages_cover_everything_once_newest_first() {
    let api = Api::start("").await;
    let mut created = Vec::new();
    for i in 0..7 {
        created.push(
            api.conversation(&format!("c{i}")).await["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let (ids, pages) = all_pages(&api, "/conversations", 3).await;
    assert_eq!(pages, 3);
    created.reverse();
    assert_eq!(ids, created, "newest first, no duplicates, no gaps");
}

#[tokio::test]
async fn messages_append_list_and_get() {
    let api = Api::start("").await;
    let id = api.conversation("Chat").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut sent = Vec::new();
    for (i, role) in ["system", "user", "assistant", "tool", "user"]
        .iter()
        .enumerate()
    {
        let body = json!({
            "role": role,
            "content": format!("message {i}"),
            "parts": [{ "type": "text", "text": format!("message {i}") }],
            "tool_call_id": if *role == "tool" { json!("call_1") } else { Value::Null },
        });
        let m = ok(
            api.post(&format!("/conversations/{id}/messages"), body)
                .await,
            201,
        )
        .await;
        assert_eq!(m["seq"], i as i64 + 1);
        sent.push(m);
    }
    let (ids, pages) = all_pages(&api, &format!("/conversations/{id}/messages"), 2).await;
    assert_eq!(pages, 3);
    assert_eq!(
        ids,
        sent.iter()
            .map(|m| m["id"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    );
    let one = ok(
        api.get(&format!(
            "/conversations/{id}/messages/{}",
            sent[3]["id"].as_str().unwrap()
        ))
        .await,
        200,
    )
    .await;
    assert_eq!(one, sent[3]);
    assert_eq!(one["tool_call_id"], "call_1");
    let conversation = ok(api.get(&format!("/conversations/{id}")).await, 200).await;
    assert_eq!(conversation["message_count"], 5);
    let missing = uuid::Uuid::new_v4();
    problem(
        api.get(&format!("/conversations/{id}/messages/{missing}"))
            .await,
        404,
    )
    .await;
    problem(
        api.post(
            &format!("/conversations/{missing}/messages"),
            json!({ "role": "user", "content": "x" }),
        )
        .await,
        404,
    )
    .await;
}

#[tokio::test]
async fn fifty_concurrent_appends_get_sequence_one_to_fifty() {
    let api = Api::start("").await;
    let id = api.conversation("Busy").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let api = Arc::new(api);
    let path = format!("/conversations/{id}/messages");
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let (api, path) = (api.clone(), path.clone());
            tokio::spawn(async move {
                let body = json!({ "role": "user", "content": format!("m{i}") });
                ok(api.post(&path, body).await, 201).await["seq"]
                    .as_i64()
                    .unwrap()
            })
        })
        .collect();
    let mut seqs = Vec::new();
    for t in tasks {
        seqs.push(t.await.unwrap());
    }
    seqs.sort_unstable();
    assert_eq!(
        seqs,
        (1..=50).collect::<Vec<_>>(),
        "dense, no gaps, no duplicates"
    );
    let listed = ok(
        api.get(&format!("/conversations/{id}/messages?limit=100"))
            .await,
        200,
    )
    .await;
    let listed: Vec<i64> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(listed, (1..=50).collect::<Vec<_>>());
}

#[tokio::test]
async fn artifacts_keep_every_version_under_optimistic_concurrency() {
    let api = Api::start("").await;
    let cid = api.conversation("Dashboard").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let resp = api
        .post(
            &format!("/conversations/{cid}/artifacts"),
            json!({ "kind": "bar-chart", "title": "Sales", "spec": { "bars": [1, 2] } }),
        )
        .await;
    assert_eq!(header(&resp, "etag"), "\"1\"");
    let created = ok(resp, 201).await;
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(created["version"], 1);

    let update = |if_match: Option<&str>, body: Value| {
        let body = Some(("application/json", body.to_string()));
        let mut req = api.request(Method::PATCH, &format!("/artifacts/{id}"), body);
        if let Some(tag) = if_match {
            req = req.header("If-Match", tag);
        }
        req.send()
    };
    let v2 = update(Some("\"1\""), json!({ "spec": { "bars": [1, 2, 3] } })).await;
    assert_eq!(header(&v2, "etag"), "\"2\"");
    let v2 = ok(v2, 200).await;
    assert_eq!(
        (v2["version"].clone(), v2["title"].clone()),
        (json!(2), json!("Sales"))
    );

    let stale = problem(update(Some("\"1\""), json!({ "title": "Lost" })).await, 412).await;
    assert_eq!(stale["current_version"], 2);
    let stale = problem(
        update(None, json!({ "title": "Lost", "version": 1 })).await,
        409,
    )
    .await;
    assert_eq!(stale["current_version"], 2);
    problem(update(None, json!({ "title": "No version" })).await, 428).await;
    problem(update(Some("soon"), json!({ "title": "x" })).await, 400).await;
    let v3 = ok(
        update(None, json!({ "title": "Sales by month", "version": 2 })).await,
        200,
    )
    .await;
    assert_eq!(v3["version"], 3);

    let current = api.get(&format!("/artifacts/{id}")).await;
    assert_eq!(header(&current, "etag"), "\"3\"");
    assert_eq!(ok(current, 200).await, v3);
    let versions = ok(api.get(&format!("/artifacts/{id}/versions")).await, 200).await;
    let titles: Vec<&str> = versions["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["Sales", "Sales", "Sales by month"]);
    let first = ok(api.get(&format!("/artifacts/{id}/versions/1")).await, 200).await;
    assert_eq!(first["spec"], json!({ "bars": [1, 2] }));
    problem(api.get(&format!("/artifacts/{id}/versions/9")).await, 404).await;

    let listed = ok(
        api.get(&format!("/conversations/{cid}/artifacts")).await,
        200,
    )
    .await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);
    problem(
        api.get(&format!("/artifacts/{}", uuid::Uuid::new_v4()))
            .await,
        404,
    )
    .await;
}

/// JSON numbers at the edges of f64 survive PostgreSQL's `numeric` (jsonb) and come back equal
/// (as decimals: jsonb writes exponents out): found by schemathesis as a 500 when
/// `1.7976931348623157e308` was read back.
#[tokio::test]
async fn extreme_json_numbers_round_trip() {
    let api = Api::start("").await;
    let cid = api.conversation("Numbers").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let spec = json!({
        "max": f64::MAX,
        "min": -f64::MAX,
        "tiny": 5e-324,
        "subnormal": -1.401298464324817e-45,
        "big": 57536007100989277313849003868160.0,
        "u64": u64::MAX,
        "i64": i64::MIN,
    });
    let created = ok(
        api.post(
            &format!("/conversations/{cid}/artifacts"),
            json!({ "kind": "chart", "title": "Edges", "spec": spec }),
        )
        .await,
        201,
    )
    .await;
    assert_eq!(json_difference(&created["spec"], &spec, "$"), None);
    let id = created["id"].as_str().unwrap();
    let read = ok(api.get(&format!("/artifacts/{id}")).await, 200).await;
    assert_eq!(json_difference(&read["spec"], &spec, "$"), None);
    let conv = ok(
        api.post("/conversations", json!({ "title": "t", "metadata": spec }))
            .await,
        201,
    )
    .await;
    let got = ok(
        api.get(&format!("/conversations/{}", conv["id"].as_str().unwrap()))
            .await,
        200,
    )
    .await;
    assert_eq!(json_difference(&got["metadata"], &spec, "$"), None);
}

#[tokio::test]
async fn malformed_requests_get_a_4xx_problem() {
    let api = Api::start("server.body_limit_bytes = 2048").await;
    let id = api.conversation("Errors").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let raw = |body: &str, content_type: &str| {
        let body = Some((content_type, body.to_string()));
        api.request(Method::POST, "/conversations", body).send()
    };
    problem(raw("{\"title\":", "application/json").await, 400).await;
    problem(raw("{}", "application/json").await, 400).await;
    problem(raw("[1, 2]", "application/json").await, 400).await;
    problem(
        raw("title=x", "application/x-www-form-urlencoded").await,
        415,
    )
    .await;
    problem(api.get("/conversations/not-a-uuid").await, 400).await;
    // A cursor off the documented pattern is a validation failure naming it.
    let p = problem(api.get("/conversations?cursor=garbage").await, 422).await;
    assert_eq!(p["errors"][0]["field"], "cursor");
    let bad = format!("/conversations?cursor=abc.{}", "g".repeat(32));
    problem(api.get(&bad).await, 422).await;
    problem(
        api.get(&format!("/conversations/{}", uuid::Uuid::new_v4()))
            .await,
        404,
    )
    .await;
    problem(api.get("/no-such-route").await, 404).await;

    // 405 names what the resource does support (RFC 9110), API and health alike.
    let wrong = api.delete(&format!("/conversations/{id}/messages")).await;
    assert_eq!(header(&wrong, "allow"), "GET, HEAD, POST");
    problem(wrong, 405).await;
    let wrong = api.client.post("/health/ready").send().await;
    assert_eq!(header(&wrong, "allow"), "GET, HEAD");
    problem(wrong, 405).await;
    let big = json!({ "title": "x".repeat(4000) });
    problem(api.post("/conversations", big).await, 413).await;
    // The wrong JSON type where the schema wants an object or array is malformed: 400.
    let wrong_types = [
        (
            "/conversations".to_string(),
            json!({ "title": "ok", "metadata": [1] }),
        ),
        (
            format!("/conversations/{id}/messages"),
            json!({ "role": "user", "content": "x", "parts": {} }),
        ),
        (
            format!("/conversations/{id}/artifacts"),
            json!({ "kind": "chart", "title": "t", "spec": null }),
        ),
    ];
    for (path, body) in wrong_types {
        problem(api.post(&path, body.clone()).await, 400).await;
    }
    problem(api.get("/conversations?limit=ten").await, 400).await;
}

/// A value its domain type refuses is a 422 naming the field, worded as the document's
/// constraint it breaks where it breaks one.
#[tokio::test]
async fn refused_fields_get_a_422_naming_them() {
    let api = Api::start("").await;
    let id = api.conversation("Errors").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let validation = [
        (
            "/conversations".to_string(),
            json!({ "title": "" }),
            "title",
        ),
        (
            "/conversations".to_string(),
            json!({ "title": "x".repeat(201) }),
            "title",
        ),
        (
            format!("/conversations/{id}/messages"),
            json!({ "role": "robot", "content": "x" }),
            "role",
        ),
        (
            format!("/conversations/{id}/messages"),
            json!({ "role": "user", "content": "" }),
            "content",
        ),
        (
            format!("/conversations/{id}/artifacts"),
            json!({ "kind": "a b", "title": "t", "spec": {} }),
            "kind",
        ),
    ];
    for (path, body, field) in validation {
        let p = problem(api.post(&path, body.clone()).await, 422).await;
        assert_eq!(p["errors"][0]["field"], field, "{body}");
    }
    // PostgreSQL stores no NUL character: found by schemathesis as a 500, now a 422.
    let nul = [
        json!({ "title": "a\u{0}b" }),
        json!({ "title": "ok", "metadata": { "k\u{0}": 1 } }),
        json!({ "title": "ok", "metadata": { "k": ["\u{0}"] } }),
    ];
    for body in nul {
        problem(api.post("/conversations", body).await, 422).await;
    }
    // Whitespace-only text passes a length check but not the domain's: still 422.
    let p = problem(
        api.post("/conversations", json!({ "title": "   " })).await,
        422,
    )
    .await;
    assert_eq!(p["errors"][0]["field"], "title");
    for limit in ["0", "101", "-5"] {
        let p = problem(api.get(&format!("/conversations?limit={limit}")).await, 422).await;
        assert_eq!(p["errors"][0]["field"], "limit");
    }
}

/// Refusals read as they always have: the whole problem body is the API's contract.
#[tokio::test]
async fn refusals_keep_their_wording() {
    let api = Api::start("").await;
    let id = api.conversation("Wording").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let long = api
        .post("/conversations", json!({ "title": "x".repeat(201) }))
        .await;
    assert_eq!(
        problem(long, 422).await,
        json!({
            "type": "/problems/validation",
            "title": "Unprocessable Entity",
            "status": 422,
            "detail": "title: does not satisfy maxLength(200)",
            "errors": [{ "field": "title", "message": "does not satisfy maxLength(200)" }],
        })
    );
    let robot = json!({ "role": "robot", "content": "x" });
    let robot = api
        .post(&format!("/conversations/{id}/messages"), robot)
        .await;
    assert_eq!(
        problem(robot, 422).await["detail"],
        r#"role: "robot" is not one of user, assistant, system, tool"#
    );
    let limit = problem(api.get("/conversations?limit=0").await, 422).await;
    assert_eq!(
        limit["detail"],
        "limit: does not satisfy minimum(1, exclusive: false)"
    );
}

#[tokio::test]
async fn api_keys_guard_the_api_but_not_health_or_docs() {
    let key = "test-key-0123456789abcdef";
    let api = Api::start(&format!(
        r#"auth.api_keys = "{key},another-key-0123456789""#
    ))
    .await;
    let missing = api.get("/conversations").await;
    assert_eq!(header(&missing, "www-authenticate"), "Bearer");
    problem(missing, 401).await;
    let with_key = |key: &str| {
        api.client
            .get(Api::url("/conversations"))
            .header("Authorization", format!("Bearer {key}"))
            .send()
    };
    problem(with_key("not-the-key-at-all").await, 401).await;
    assert_eq!(with_key(key).await.0.status(), StatusCode::OK);
    for open in ["/health/live", "/health/ready", "/openapi.json"] {
        let resp = api.client.get(open).send().await;
        assert_eq!(resp.0.status(), StatusCode::OK, "{open}");
    }
}

#[tokio::test]
async fn production_refuses_to_start_without_api_keys() {
    let db = TestDb::migrated().await;
    let out = run_server(&db.url, &[("ENVIRONMENT", "production")], &[]).await;
    assert_eq!(out.code, Some(3), "{}", out.stderr);
    assert!(out.stderr.contains("auth.api_keys"), "{}", out.stderr);
}

#[tokio::test]
async fn request_ids_are_honoured_or_generated() {
    let api = Api::start("").await;
    let with_id = |path: &str, id: &str| {
        api.client
            .get(Api::url(path))
            .header("X-Request-Id", id)
            .send()
    };
    let resp = with_id("/conversations", "client-id-42").await;
    assert_eq!(header(&resp, "x-request-id"), "client-id-42");
    let resp = api.get("/conversations").await;
    let generated = header(&resp, "x-request-id");
    assert!(uuid::Uuid::parse_str(&generated).is_ok(), "{generated}");
    let resp = with_id("/nope", "bad id with spaces").await;
    assert_ne!(header(&resp, "x-request-id"), "bad id with spaces");
}

#[tokio::test]
async fn an_exhausted_pool_answers_503_not_a_hang() {
    let api = Api::start(
        r#"database.max_connections = 1
           database.acquire_timeout = "300ms""#,
    )
    .await;
    let api = Arc::new(api);
    let id = api.conversation("Locked").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    // Lock the conversation row so an append holds the server's only connection while waiting.
    let mut locker = api.db.connect().await;
    sqlx::raw_sql("BEGIN").execute(&mut locker).await.unwrap();
    sqlx::query("SELECT 1 FROM conversations WHERE id = $1::uuid FOR UPDATE")
        .bind(&id)
        .execute(&mut locker)
        .await
        .unwrap();
    let append = {
        let (api, path) = (api.clone(), format!("/conversations/{id}/messages"));
        tokio::spawn(async move {
            let body = json!({ "role": "user", "content": "x" });
            api.post(&path, body).await.0.status()
        })
    };
    let mut observer = api.db.connect().await;
    loop {
        let waiting: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE datname = current_database() \
             AND application_name = 'agent-backend' AND wait_event_type = 'Lock')",
        )
        .fetch_one(&mut observer)
        .await
        .unwrap();
        if waiting {
            break;
        }
        tokio::task::yield_now().await;
    }
    let busy = api.get(&format!("/conversations/{id}")).await;
    assert_eq!(header(&busy, "retry-after"), "1");
    let busy = problem(busy, 503).await;
    assert!(busy["detail"].as_str().unwrap().contains("retry"), "{busy}");
    sqlx::raw_sql("COMMIT").execute(&mut locker).await.unwrap();
    assert_eq!(
        append.await.unwrap(),
        201,
        "the waiting append completes once the lock goes"
    );
}

#[tokio::test]
async fn openapi_document_lists_every_operation_and_its_errors() {
    let api = Api::start("").await;
    let doc = ok(api.client.get("/openapi.json").send().await, 200).await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let mut operations = HashSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            operations.insert(op["operationId"].as_str().unwrap().to_string());
            let responses = op["responses"].as_object().unwrap();
            for status in ["400", "401", "404", "413", "415", "422", "503"] {
                assert!(
                    responses.contains_key(status),
                    "{method} {path} does not document {status}"
                );
            }
            assert!(
                responses["422"]["content"]["application/problem+json"].is_object(),
                "{method} {path}: problem+json"
            );
        }
    }
    for expected in [
        "createConversation",
        "listConversations",
        "getConversation",
        "updateConversation",
        "archiveConversation",
        "unarchiveConversation",
        "deleteConversation",
        "appendMessage",
        "listMessages",
        "getMessage",
        "createArtifact",
        "listArtifacts",
        "getArtifact",
        "updateArtifact",
        "listArtifactVersions",
        "getArtifactVersion",
    ] {
        assert!(operations.contains(expected), "{expected}");
    }
    let docs = api.client.get("/docs").send().await;
    assert_eq!(docs.0.status(), StatusCode::OK);
}

#[tokio::test]
async fn openapi_document_declares_the_bearer_scheme_on_every_api_operation() {
    let key = "test-key-0123456789abcdef";
    let api = Api::start(&format!(r#"auth.api_keys = "{key}""#)).await;
    let open = |path: &'static str| api.client.get(path).send();
    // The document and the UI that reads it stay open while the API needs the key.
    let doc: Value = ok(open("/openapi.json").await, 200).await;
    // Swagger UI renders the document embedded in the page: with a security scheme in it, the
    // page has its "Authorize" button.
    let docs: String = ok_text(open("/docs").await)
        .await
        .split_whitespace()
        .collect();
    assert!(
        docs.contains(r#""securitySchemes":{"ApiKey":{"type":"http""#),
        "/docs embeds a document without the ApiKey scheme"
    );
    problem(api.get("/conversations").await, 401).await;

    let scheme = &doc["components"]["securitySchemes"]["ApiKey"];
    assert_eq!(scheme["type"], "http", "{scheme}");
    assert_eq!(scheme["scheme"], "bearer", "{scheme}");
    let description = scheme["description"].as_str().unwrap();
    for says in ["production", "development", "/openapi.json"] {
        assert!(description.contains(says), "{description}");
    }
    assert!(
        doc.get("security").is_none(),
        "no document-wide requirement"
    );
    let mut operations = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        assert!(
            path.starts_with('/') && !path.starts_with("/health"),
            "{path}"
        );
        for (method, op) in item.as_object().unwrap() {
            assert_eq!(op["security"], json!([{ "ApiKey": [] }]), "{method} {path}");
            operations += 1;
        }
    }
    assert_eq!(operations, 17);

    // Shapes the generated TypeScript types rely on.
    let schemas = &doc["components"]["schemas"];
    assert_eq!(
        schemas["Role"]["enum"],
        json!(["user", "assistant", "system", "tool"])
    );
    for (schema, field, ty) in [
        ("Conversation", "metadata", "object"),
        ("Artifact", "spec", "object"),
        ("ArtifactVersion", "spec", "object"),
        ("Message", "parts", "array"),
    ] {
        assert_eq!(
            schemas[schema]["properties"][field]["type"], ty,
            "{schema}.{field}"
        );
    }
    for schema in ["Message", "AppendMessage"] {
        assert_eq!(
            schemas[schema]["properties"]["role"]["$ref"],
            "#/components/schemas/Role"
        );
    }
}
