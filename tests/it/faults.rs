//! Under faults and hostile clients (issue 14): races between writes and deletes, SIGTERM past
//! the grace with a query blocked on a row lock, slow and silent clients, a connection flood,
//! sessions terminated under requests, malformed framing, secrets in odd shapes, and the
//! migration lock wait's logging. Each against a `server` process and its own database.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::Client;
use serde_json::{Value, json};
use sqlx::PgConnection;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::support::{
    Running, TestDb, hold_migration_lock, read_until_closed, run_server, settings, spawn_server,
    until,
};

fn addr(server: &Running) -> String {
    server.base.trim_start_matches("http://").to_string()
}

async fn create_conversation(http: &Client, base: &str) -> String {
    let resp = http
        .post(format!("{base}/api/v1/conversations"))
        .json(&json!({ "title": "faults" }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let body: Value = resp.json().await.unwrap();
    body["id"].as_str().unwrap().to_string()
}

/// Holds `conversations.id = id` with `FOR UPDATE` in an open transaction on `conn`.
async fn lock_conversation(conn: &mut PgConnection, id: &str) {
    sqlx::raw_sql("BEGIN").execute(&mut *conn).await.unwrap();
    sqlx::query("SELECT 1 FROM conversations WHERE id = $1::uuid FOR UPDATE")
        .bind(id)
        .execute(&mut *conn)
        .await
        .unwrap();
}

/// Pids of the server's sessions waiting on a lock.
async fn waiting_on_a_lock(conn: &mut PgConnection) -> Vec<i32> {
    sqlx::query_scalar(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() \
         AND application_name = 'agent-backend' AND wait_event_type = 'Lock'",
    )
    .fetch_all(conn)
    .await
    .unwrap()
}

/// Waits (polling) until exactly one server session waits on a lock: its pid.
async fn one_waiting_on_a_lock(conn: &mut PgConnection) -> i32 {
    crate::support::poll(
        "a request waiting on the row lock",
        async || match waiting_on_a_lock(conn).await[..] {
            [pid] => Some(pid),
            _ => None,
        },
    )
    .await
}

async fn messages_of(conn: &mut PgConnection, id: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM messages WHERE conversation_id = $1::uuid")
        .bind(id)
        .fetch_one(conn)
        .await
        .unwrap()
}

/// One HTTP/1.1 response read off a raw connection: status, head, body (by Content-Length).
async fn read_response(stream: &mut TcpStream) -> (u16, String, String) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let parsed = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&got[..end]).to_string();
                let length: usize = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse().unwrap())
                    })
                    .unwrap_or(0);
                if got.len() >= end + 4 + length {
                    let body = String::from_utf8_lossy(&got[end + 4..end + 4 + length]).to_string();
                    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
                    return (status, head, body);
                }
            }
            let n = stream.read(&mut buf).await.unwrap();
            assert!(
                n > 0,
                "closed before a whole response: {:?}",
                String::from_utf8_lossy(&got)
            );
            got.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    parsed.expect("no response within 20 s")
}

fn assert_problem(status: u16, head: &str, body: &str, expected: u16) {
    assert_eq!(status, expected, "{head}\n{body}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/problem+json"),
        "{head}"
    );
    let problem: Value = serde_json::from_str(body).unwrap();
    assert_eq!(problem["status"], expected, "{body}");
}

// --- races ---------------------------------------------------------------------------------

/// Every kind of write under a conversation, fired together with its deletion, many times:
/// whatever wins, the losers get 404 (or a version conflict), never a 5xx.
#[tokio::test]
async fn writes_racing_a_delete_never_answer_5xx() {
    let db = TestDb::migrated().await;
    let server = spawn_server(&db.url, &[("APP_DATABASE__MAX_CONNECTIONS", "20")]).await;
    let http = Client::new();
    let base = server.base.clone();
    let mut statuses: BTreeMap<u16, usize> = BTreeMap::new();
    for _ in 0..40 {
        let id = create_conversation(&http, &base).await;
        let artifact: Value = crate::support::json_body(
            http.post(format!("{base}/api/v1/conversations/{id}/artifacts"))
                .json(&json!({ "kind": "chart", "title": "t", "spec": {} })),
        )
        .await;
        let artifact = artifact["id"].as_str().unwrap().to_string();
        let conv = format!("{base}/api/v1/conversations/{id}");
        let mut requests = Vec::new();
        for i in 0..4 {
            requests.push(
                http.post(format!("{conv}/artifacts")).json(
                    &json!({ "kind": "chart", "title": format!("a{i}"), "spec": { "i": i } }),
                ),
            );
            requests.push(
                http.post(format!("{conv}/messages"))
                    .json(&json!({ "role": "user", "content": format!("m{i}") })),
            );
        }
        requests.push(http.patch(&conv).json(&json!({ "title": "renamed" })));
        requests.push(http.post(format!("{conv}/archive")));
        requests.push(http.post(format!("{conv}/unarchive")));
        requests.push(
            http.patch(format!("{base}/api/v1/artifacts/{artifact}"))
                .header("If-Match", "\"1\"")
                .json(&json!({ "title": "v2" })),
        );
        requests.push(http.get(format!("{conv}/messages")));
        requests.push(http.get(format!("{conv}/artifacts")));
        requests.push(http.delete(&conv));
        let handles: Vec<_> = requests
            .into_iter()
            .map(|r| tokio::spawn(async move { r.send().await.unwrap() }))
            .collect();
        for handle in handles {
            let resp = handle.await.unwrap();
            let status = resp.status().as_u16();
            let body = resp.text().await.unwrap();
            assert!(status < 500, "{status}: {body}");
            *statuses.entry(status).or_default() += 1;
        }
    }
    assert!(statuses.contains_key(&204), "{statuses:?}");
    for status in statuses.keys() {
        assert!(
            [200, 201, 204, 404, 409, 412].contains(status),
            "{statuses:?}"
        );
    }
}

// --- shutdown ------------------------------------------------------------------------------

/// SIGTERM while a request waits on a row lock that outlives the grace: the process exits
/// within the grace plus a second, the request's session is ended (its transaction rolls
/// back), and nothing of it is written even once the lock goes.
#[tokio::test]
async fn sigterm_past_the_grace_cancels_a_blocked_request_and_writes_nothing() {
    let db = TestDb::migrated().await;
    let grace = Duration::from_secs(2);
    let mut server = spawn_server(&db.url, &[("APP_SERVER__SHUTDOWN_GRACE", "2s")]).await;
    let http = Client::new();
    let id = create_conversation(&http, &server.base).await;
    let mut blocker = db.connect().await;
    lock_conversation(&mut blocker, &id).await;
    let append = tokio::spawn({
        let url = format!("{}/api/v1/conversations/{id}/messages", server.base);
        let http = http.clone();
        async move {
            http.post(url)
                .json(&json!({ "role": "user", "content": "cut by shutdown" }))
                .send()
                .await
        }
    });
    let mut observer = db.connect().await;
    one_waiting_on_a_lock(&mut observer).await;

    let signalled = Instant::now();
    server.signal("TERM");
    let code = server.wait().await;
    let took = signalled.elapsed();
    assert_eq!(code, Some(0));
    assert!(
        took < grace + Duration::from_secs(1),
        "exited {took:?} after SIGTERM with a {grace:?} grace"
    );
    assert!(took >= grace, "the request had its grace: {took:?}");

    // The client saw a failure: a 503 or a dropped connection, never a 201.
    match append.await.unwrap() {
        Ok(resp) => assert_eq!(resp.status(), 503),
        Err(e) => assert!(!e.is_timeout(), "{e}"),
    }
    assert!(waiting_on_a_lock(&mut observer).await.is_empty());
    sqlx::raw_sql("COMMIT").execute(&mut blocker).await.unwrap();
    assert_eq!(
        messages_of(&mut observer, &id).await,
        0,
        "the cut request wrote"
    );
    let seq: i64 = sqlx::query_scalar("SELECT last_seq FROM conversations WHERE id = $1::uuid")
        .bind(&id)
        .fetch_one(&mut observer)
        .await
        .unwrap();
    assert_eq!(seq, 0);
}

// --- slow clients --------------------------------------------------------------------------

/// A client sending its request head a byte at a time is cut off once `header_read_timeout`
/// has passed, without an answer; so are connections that send nothing at all.
#[tokio::test]
async fn slow_headers_and_silent_connections_are_cut_off_after_header_read_timeout() {
    let db = TestDb::migrated().await;
    let timeout = Duration::from_secs(1);
    let server = spawn_server(&db.url, &[("APP_SERVER__HEADER_READ_TIMEOUT", "1s")]).await;
    let started = Instant::now();
    let mut slow = TcpStream::connect(addr(&server)).await.unwrap();
    let mut silent = Vec::new();
    for _ in 0..5 {
        silent.push(TcpStream::connect(addr(&server)).await.unwrap());
    }
    slow.write_all(b"GET /health/live HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    let (mut reader, mut writer) = slow.into_split();
    let dribble = tokio::spawn(async move {
        // One byte every 100 ms, as long as the server takes them.
        while writer.write_all(b"a").await.is_ok() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let mut got = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(20), reader.read_to_end(&mut got)).await;
    let took = started.elapsed();
    assert!(closed.is_ok(), "the slow client was never cut off");
    assert!(got.is_empty(), "{:?}", String::from_utf8_lossy(&got));
    assert!(
        took >= timeout - Duration::from_millis(50) && took < timeout + Duration::from_secs(4),
        "cut off after {took:?}"
    );
    dribble.abort();
    for mut conn in silent {
        assert!(read_until_closed(&mut conn).await.is_empty());
    }
    assert!(started.elapsed() < timeout + Duration::from_secs(4));

    // A client that sends its head in time is served as before.
    let resp = Client::new()
        .get(format!("{}/health/live", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

/// A kept-alive connection with nothing to ask is closed after `keep_alive_timeout`, which is
/// separate from (here shorter than) the header timeout.
#[tokio::test]
async fn idle_keep_alive_connections_are_closed_after_keep_alive_timeout() {
    let db = TestDb::migrated().await;
    let env = [
        ("APP_SERVER__KEEP_ALIVE_TIMEOUT", "1s"),
        ("APP_SERVER__HEADER_READ_TIMEOUT", "10s"),
    ];
    let server = spawn_server(&db.url, &env).await;
    let mut conn = TcpStream::connect(addr(&server)).await.unwrap();
    for _ in 0..2 {
        conn.write_all(b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let (status, head, _) = read_response(&mut conn).await;
        assert_eq!(status, 200, "{head}");
    }
    let idle_since = Instant::now();
    assert!(read_until_closed(&mut conn).await.is_empty());
    let took = idle_since.elapsed();
    assert!(
        took >= Duration::from_millis(950) && took < Duration::from_secs(5),
        "closed after {took:?} idle"
    );
}

/// A chunked body that announces 2^63 bytes and stalls gets 408 once `body_read_timeout` is
/// over, and its connection is closed.
#[tokio::test]
async fn a_stalled_body_gets_408_after_body_read_timeout() {
    let db = TestDb::migrated().await;
    let server = spawn_server(&db.url, &[("APP_SERVER__BODY_READ_TIMEOUT", "1s")]).await;
    let mut conn = TcpStream::connect(addr(&server)).await.unwrap();
    let started = Instant::now();
    conn.write_all(
        b"POST /api/v1/conversations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
          Transfer-Encoding: chunked\r\n\r\n7fffffffffffffff\r\n{\"title\"",
    )
    .await
    .unwrap();
    let (status, head, body) = read_response(&mut conn).await;
    let took = started.elapsed();
    assert_problem(status, &head, &body, 408);
    assert!(
        took >= Duration::from_millis(950) && took < Duration::from_secs(6),
        "408 after {took:?}"
    );
    assert!(read_until_closed(&mut conn).await.is_empty());
}

/// A client that asks for a large response and does not read it is cut off once writing to it
/// has been blocked for `send_timeout`: it never gets the whole response.
#[tokio::test]
async fn a_client_that_does_not_read_its_response_is_cut_off_after_send_timeout() {
    let db = TestDb::migrated().await;
    let server = spawn_server(&db.url, &[("APP_SERVER__SEND_TIMEOUT", "1s")]).await;
    let http = Client::new();
    let pad = "x".repeat(200_000);
    for i in 0..100 {
        let resp = http
            .post(format!("{}/api/v1/conversations", server.base))
            .json(&json!({ "title": format!("big {i}"), "metadata": { "pad": pad } }))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201);
    }
    // A small receive buffer of our own (no autotuning): the ~20 MB page cannot be buffered.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(16 * 1024).unwrap();
    let mut conn = socket
        .connect(addr(&server).parse().unwrap())
        .await
        .unwrap();
    conn.write_all(b"GET /api/v1/conversations?limit=100 HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    // The client behaves badly: once the server has begun to answer (peeking consumes
    // nothing), it reads nothing for well over send_timeout. Waiting for the first byte rather
    // than a fixed time: on a loaded machine the ~20 MB page takes seconds to build, and a
    // client that reads before the server writes never blocks it.
    let mut first = [0u8; 1];
    tokio::time::timeout(Duration::from_secs(60), conn.peek(&mut first))
        .await
        .expect("the server began to answer within 60 s")
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let got = read_until_closed(&mut conn).await;
    let end = got
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("the response head arrived");
    let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(length > 20_000_000, "{length}");
    let body = got.len() - end - 4;
    assert!(body < length, "the whole response arrived ({body} bytes)");

    let resp = http
        .get(format!("{}/health/live", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

/// One request on a new connection to the server, its answer read whole.
async fn ask(server: &Running, request: &str) -> (TcpStream, u16, String, String) {
    let mut stream = TcpStream::connect(addr(server)).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let (status, head, body) = read_response(&mut stream).await;
    (stream, status, head, body)
}

/// At `max_connections` (here 3, each held open by a kept-alive client): the health routes
/// still answer as they always do, through the reserve (`server::RESERVE` connections over the
/// cap, one request each, then closed), while every other request gets 503 problem+json with
/// `Retry-After` at once and its connection closed. With the reserve full too (eight clients
/// that never finish their request line), a health probe gets the 503 as well. When a
/// connection closes, its slot serves again.
#[tokio::test]
async fn at_the_cap_health_routes_answer_while_api_requests_get_503_with_retry_after() {
    let db = TestDb::migrated().await;
    let server = spawn_server(&db.url, &[("APP_SERVER__MAX_CONNECTIONS", "3")]).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        let (stream, status, ..) =
            ask(&server, "GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert_eq!(status, 200);
        held.push(stream);
    }

    for (path, body_has) in [
        ("/health/live", r#""status":"alive""#),
        ("/health/ready", r#""status":"ready""#),
        ("/health", r#""pool""#),
    ] {
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
        let (mut stream, status, head, body) = ask(&server, &request).await;
        assert_eq!(status, 200, "{path} at the cap: {head}\n{body}");
        assert!(body.contains(body_has), "{path}: {body}");
        assert!(
            head.to_ascii_lowercase().contains("connection: close"),
            "one request per reserved connection: {head}"
        );
        assert!(read_until_closed(&mut stream).await.is_empty());
    }
    let mut head_only = TcpStream::connect(addr(&server)).await.unwrap();
    head_only
        .write_all(b"HEAD /health/ready HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let answer = String::from_utf8_lossy(&read_until_closed(&mut head_only).await).to_string();
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");

    let body = r#"{"title": "over the cap"}"#;
    for request in [
        "GET /api/v1/conversations HTTP/1.1\r\nHost: x\r\n\r\n".to_string(),
        format!(
            "POST /api/v1/conversations HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n\
             content-length: {}\r\n\r\n{body}",
            body.len()
        ),
        "POST /health/live HTTP/1.1\r\nHost: x\r\ncontent-length: 0\r\n\r\n".to_string(),
    ] {
        let (mut stream, status, head, body) = ask(&server, &request).await;
        assert_problem(status, &head, &body, 503);
        assert!(
            head.to_ascii_lowercase().contains("retry-after: 1"),
            "{head}"
        );
        assert!(read_until_closed(&mut stream).await.is_empty());
    }
    let mut conn = db.connect().await;
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM conversations")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(stored, 0, "a request refused at the cap did nothing");

    // The reserve full: eight clients stuck in their request line hold it (for
    // header_read_timeout); the next probe gets the flat 503.
    let mut stuck = Vec::new();
    for _ in 0..8 {
        let mut stream = TcpStream::connect(addr(&server)).await.unwrap();
        stream.write_all(b"GET /health").await.unwrap();
        stuck.push(stream);
    }
    let (_, status, head, body) =
        ask(&server, "GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_problem(status, &head, &body, 503);
    drop(stuck.pop());
    let probe = || async {
        ask(&server, "GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .1
            == 200
    };
    until("a freed reserve slot to serve a probe", probe).await;

    drop(stuck);
    drop(held.pop());
    let base = server.base.clone();
    until("a freed slot to serve an API request", || {
        let url = format!("{base}/api/v1/conversations");
        async move {
            let http = Client::builder().pool_max_idle_per_host(0).build().unwrap();
            http.get(url).send().await.unwrap().status() == 200
        }
    })
    .await;
}

// --- transient database failures -----------------------------------------------------------

/// The session under a request is terminated (as a PostgreSQL restart or failover does): 503
/// problem+json with `Retry-After`, and the same server answers 200 again right after. With
/// `database.idle_check_after = "0s"` every pooled connection is checked before use, so idle
/// sessions terminated too cost no request at all.
#[tokio::test]
async fn a_terminated_session_answers_503_with_retry_after_then_the_server_recovers() {
    let db = TestDb::migrated().await;
    let server = spawn_server(&db.url, &[("APP_DATABASE__IDLE_CHECK_AFTER", "0s")]).await;
    let http = Client::new();
    let id = create_conversation(&http, &server.base).await;
    let mut blocker = db.connect().await;
    lock_conversation(&mut blocker, &id).await;
    let url = format!("{}/api/v1/conversations/{id}/messages", server.base);
    let append = tokio::spawn({
        let (http, url) = (http.clone(), url.clone());
        async move {
            http.post(url)
                .json(&json!({ "role": "user", "content": "x" }))
                .send()
                .await
                .unwrap()
        }
    });
    let mut observer = db.connect().await;
    let pid = one_waiting_on_a_lock(&mut observer).await;
    sqlx::query("SELECT pg_terminate_backend($1)")
        .bind(pid)
        .execute(&mut observer)
        .await
        .unwrap();
    let resp = append.await.unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["retry-after"], "1");
    assert_eq!(resp.headers()["content-type"], "application/problem+json");
    sqlx::raw_sql("COMMIT").execute(&mut blocker).await.unwrap();
    assert_eq!(messages_of(&mut observer, &id).await, 0);

    // Every session of the server's pool goes (idle ones included): still served.
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND application_name = 'agent-backend'",
    )
    .execute(&mut observer)
    .await
    .unwrap();
    let resp = http
        .post(&url)
        .json(&json!({ "role": "user", "content": "after" }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let resp = http
        .get(format!("{}/api/v1/conversations/{id}", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

/// A connection used within `database.idle_check_after` is trusted without a round trip: when
/// its session was terminated while idle, the one request that meets it gets a 503 (problem,
/// `Retry-After`), the connection is dropped, and the next request is served on a new one.
#[tokio::test]
async fn a_recently_used_connection_is_not_checked_and_a_dead_one_costs_one_503() {
    let db = TestDb::migrated().await;
    let server = spawn_server(
        &db.url,
        &[
            ("APP_DATABASE__IDLE_CHECK_AFTER", "1h"),
            ("APP_DATABASE__MAX_CONNECTIONS", "1"),
        ],
    )
    .await;
    let http = Client::new();
    let id = create_conversation(&http, &server.base).await;
    let url = format!("{}/api/v1/conversations/{id}", server.base);
    let mut observer = db.connect().await;
    // With a timeout, pg_terminate_backend returns once the session has ended.
    let ended: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity \
         WHERE datname = current_database() AND application_name = 'agent-backend'",
    )
    .fetch_all(&mut observer)
    .await
    .unwrap();
    assert_eq!(ended, [true], "the pool's one session");
    let resp = http.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["retry-after"], "1");
    assert_eq!(resp.headers()["content-type"], "application/problem+json");
    let resp = http.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 200);
}

/// Releasing a connection into the pool sends what a dropped transaction queued (its
/// ROLLBACK) and reads the answer before the connection is idle, without the ping sqlx 0.9
/// sends there (vendor/README.md): the dropped transaction's row lock is gone at once, not
/// when the connection is next used.
#[tokio::test]
async fn a_dropped_transaction_is_rolled_back_as_its_connection_returns_to_the_pool() {
    let db = TestDb::migrated().await;
    let settings = settings(
        &db,
        "database.max_connections = 1\ndatabase.idle_check_after = \"1h\"",
    );
    let pool = agent_backend::db::pool(&settings.database);
    sqlx::raw_sql("CREATE TABLE held (id int PRIMARY KEY); INSERT INTO held VALUES (1)")
        .execute(&pool)
        .await
        .unwrap();
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("SELECT id FROM held WHERE id = 1 FOR UPDATE")
        .execute(&mut *tx)
        .await
        .unwrap();
    drop(tx);
    // The pool's one connection sits idle afterwards: nothing uses it again in this test.
    let mut other = db.connect().await;
    sqlx::raw_sql("SET lock_timeout = '10s'")
        .execute(&mut other)
        .await
        .unwrap();
    sqlx::query("SELECT id FROM held WHERE id = 1 FOR UPDATE")
        .execute(&mut other)
        .await
        .expect("the dropped transaction's lock is released without another use of its connection");
    let state: String = sqlx::query_scalar(
        "SELECT state FROM pg_stat_activity \
         WHERE datname = current_database() AND application_name = 'agent-backend'",
    )
    .fetch_one(&mut other)
    .await
    .unwrap();
    assert_eq!(state, "idle");
}

// --- framing and methods -------------------------------------------------------------------

/// A chunked body that is malformed or cut short is a 400 (not 413); a repeated query
/// parameter is a 400; a non-ASCII If-Match is a 400; the API documents answer 405 with
/// `Allow` to anything but GET/HEAD.
#[tokio::test]
async fn framing_errors_repeated_parameters_and_document_methods_get_4xx() {
    let db = TestDb::migrated().await;
    let server = spawn_server(&db.url, &[]).await;
    let head = "POST /api/v1/conversations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                Transfer-Encoding: chunked\r\n\r\n";
    for body in ["zz\r\n{}\r\n0\r\n\r\n", "2\r\n{}XX0\r\n\r\n"] {
        let mut conn = TcpStream::connect(addr(&server)).await.unwrap();
        conn.write_all(format!("{head}{body}").as_bytes())
            .await
            .unwrap();
        let (status, head, body) = read_response(&mut conn).await;
        assert_problem(status, &head, &body, 400);
    }
    // Cut short: the client stops sending (half-close) inside a chunk.
    let mut conn = TcpStream::connect(addr(&server)).await.unwrap();
    conn.write_all(format!("{head}10\r\n{{\"title\"").as_bytes())
        .await
        .unwrap();
    conn.shutdown().await.unwrap();
    let (status, head, body) = read_response(&mut conn).await;
    assert_problem(status, &head, &body, 400);

    let http = Client::new();
    let api = format!("{}/api/v1", server.base);
    let id = create_conversation(&http, &server.base).await;
    let resp = http
        .get(format!("{api}/conversations?limit=5&limit=100"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let problem: Value = resp.json().await.unwrap();
    assert!(
        problem["detail"].as_str().unwrap().contains("limit"),
        "{problem}"
    );
    let artifact: Value = crate::support::json_body(
        http.post(format!("{api}/conversations/{id}/artifacts"))
            .json(&json!({ "kind": "chart", "title": "t", "spec": {} })),
    )
    .await;
    let resp = http
        .patch(format!(
            "{api}/artifacts/{}",
            artifact["id"].as_str().unwrap()
        ))
        .header(
            "If-Match",
            reqwest::header::HeaderValue::from_bytes(b"\"\xc3\xa9\"").unwrap(),
        )
        .json(&json!({ "title": "changed" }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let unchanged: Value = http
        .get(format!(
            "{api}/artifacts/{}",
            artifact["id"].as_str().unwrap()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(unchanged["version"], 1);

    for path in ["/openapi.json", "/docs"] {
        let resp = http
            .post(format!("{}{path}", server.base))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 405, "{path}");
        assert_eq!(resp.headers()["allow"], "GET, HEAD", "{path}");
        assert_eq!(
            resp.headers()["content-type"],
            "application/problem+json",
            "{path}"
        );
        let resp = http
            .get(format!("{}{path}", server.base))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{path}");
    }
}

// --- configuration and logs ----------------------------------------------------------------

/// Secrets are read as written: an all-digit API key works, quotes and brackets are part of a
/// key; a DATABASE_URL that does not parse is never echoed past its scheme.
#[tokio::test]
async fn secrets_in_the_environment_are_read_literally() {
    let db = TestDb::migrated().await;
    let digits = "1234567890123456";
    let long_digits = "12345678901234567890123";
    let quoted = "\"quoted-key-0123456789\"";
    let bracketed = "[bracketed-key-0123456789]";
    let keys = format!("{digits},{long_digits},{quoted},{bracketed}");
    let server = spawn_server(&db.url, &[("API_KEYS", &keys)]).await;
    let http = Client::new();
    let url = format!("{}/api/v1/conversations", server.base);
    for (key, status) in [
        (digits, 200),
        (long_digits, 200),
        (quoted, 200),
        (bracketed, 200),
        ("quoted-key-0123456789", 401),
        ("bracketed-key-0123456789", 401),
    ] {
        let resp = http.get(&url).bearer_auth(key).send().await.unwrap();
        assert_eq!(resp.status(), status, "{key}");
    }

    for url in [
        "postgres://app:s3cret-pw-value",
        "postgres://app:s3cret-pw-value@",
        "postgresql://app:s3cret-pw-value@host:port/db",
        "mysql://app:s3cret-pw-value",
        "s3cret-pw-value",
    ] {
        let out = run_server(url, &[], &["config"]).await;
        assert_eq!(out.code, Some(3), "{url}: {}", out.stderr);
        assert!(out.stderr.contains("database.url"), "{}", out.stderr);
        assert!(
            !format!("{}{}", out.stdout, out.stderr).contains("s3cret"),
            "{url}: {}",
            out.stderr
        );
    }
}

/// Waiting for another runner's migration lock is reported by the engine; sqlx's "slow
/// statement" warning does not add to it.
#[tokio::test]
async fn waiting_for_the_migration_lock_logs_no_slow_statement_warning() {
    let db = TestDb::empty().await;
    let _holder = hold_migration_lock(&db, "test-holder").await;
    let env = [("APP_MIGRATIONS__LOCK_WAIT_TIMEOUT", "2s")];
    let out = run_server(&db.url, &env, &["--migrate-only"]).await;
    assert_eq!(out.code, Some(7), "{}", out.stderr);
    crate::support::assert_shows(&out.stderr, "Waiting for the migration lock");
    assert!(!out.stderr.contains("slow statement"), "{}", out.stderr);
}
