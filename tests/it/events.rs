//! Conversation event streams against real processes: two instances on one database, clients
//! that drop and resume, SIGTERM mid-stream, the listener's session terminated and PostgreSQL
//! restarted under it, the cap, and a reader that stops reading.

use std::time::Duration;

use reqwest::{Client, Response, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::cluster::Cluster;
use crate::proxy::{Afterwards, Cut, Plan, Proxy};
use crate::support::{TestDb, poll, spawn_server, until};

/// One frame of a stream: what an `EventSource` dispatches (or a comment / `retry:`).
#[derive(Debug, Default, Clone)]
struct Frame {
    id: Option<i64>,
    event: Option<String>,
    data: Option<String>,
    retry: Option<u64>,
    comments: Vec<String>,
}

impl Frame {
    fn json(&self) -> Value {
        serde_json::from_str(self.data.as_deref().expect("data")).unwrap()
    }
}

/// A client of one stream, reading complete frames only (as `EventSource` does: an event counts
/// once its blank line arrived).
struct Sse {
    resp: Response,
    buf: Vec<u8>,
    /// Bytes read so far.
    read: usize,
}

impl Sse {
    async fn open(base: &str, conversation: &str, last_event_id: Option<i64>) -> Self {
        let resp = request(base, conversation, last_event_id).await;
        assert_eq!(resp.status(), 200, "{:?}", resp.text().await);
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        assert_eq!(resp.headers()["cache-control"], "no-cache");
        Self {
            resp,
            buf: Vec::new(),
            read: 0,
        }
    }

    /// The next frame, `None` when the server ended the stream. At most 30 s.
    async fn next(&mut self) -> Option<Frame> {
        tokio::time::timeout(Duration::from_secs(30), self.frame())
            .await
            .expect("no frame within 30 s")
    }

    /// The next event (a frame with an `id` or an `event`), heartbeats skipped; `None` at the
    /// end. At most 30 s, heartbeats or not.
    async fn next_event(&mut self) -> Option<Frame> {
        tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                let frame = self.frame().await?;
                if frame.id.is_some() || frame.event.is_some() {
                    return Some(frame);
                }
            }
        })
        .await
        .expect("no event within 30 s")
    }

    async fn frame(&mut self) -> Option<Frame> {
        loop {
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\n\n") {
                let block: Vec<u8> = self.buf.drain(..end + 2).collect();
                return Some(parse(&block[..end]));
            }
            match self.resp.chunk().await {
                Ok(Some(chunk)) => {
                    self.read += chunk.len();
                    self.buf.extend_from_slice(&chunk);
                }
                Ok(None) | Err(_) => return None,
            }
        }
    }
}

async fn request(base: &str, conversation: &str, last_event_id: Option<i64>) -> Response {
    let mut req = Client::new().get(format!("{base}/api/v1/conversations/{conversation}/events"));
    if let Some(id) = last_event_id {
        req = req.header("Last-Event-ID", id.to_string());
    }
    tokio::time::timeout(Duration::from_secs(30), req.send())
        .await
        .expect("a stream's head within 30 s")
        .unwrap()
}

/// A client for the requests that are not streams: each answered within 30 s.
fn http() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

fn parse(block: &[u8]) -> Frame {
    let text = std::str::from_utf8(block).expect("UTF-8 frame");
    let mut frame = Frame::default();
    for line in text.split('\n') {
        if let Some(comment) = line.strip_prefix(':') {
            frame.comments.push(comment.trim().to_string());
        } else if let Some((field, value)) = line.split_once(": ") {
            match field {
                "id" => frame.id = Some(value.parse().expect("numeric id")),
                "event" => frame.event = Some(value.to_string()),
                "data" => {
                    assert!(frame.data.is_none(), "one data line per event: {text}");
                    frame.data = Some(value.to_string());
                }
                "retry" => frame.retry = Some(value.parse().expect("retry in ms")),
                other => panic!("unknown field {other} in {text:?}"),
            }
        } else {
            panic!("not an SSE line: {line:?}");
        }
    }
    frame
}

async fn create_conversation(base: &str) -> String {
    let resp = http()
        .post(format!("{base}/api/v1/conversations"))
        .json(&json!({ "title": "live" }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let body: Value = resp.json().await.unwrap();
    body["id"].as_str().unwrap().to_string()
}

async fn post_message(http: &Client, base: &str, conversation: &str, content: &str) -> Response {
    http.post(format!(
        "{base}/api/v1/conversations/{conversation}/messages"
    ))
    .json(&json!({ "role": "assistant", "content": content }))
    .send()
    .await
    .unwrap()
}

/// Appends `content` through `base`, answered 201.
async fn append(http: &Client, base: &str, conversation: &str, content: &str) {
    let resp = post_message(http, base, conversation, content).await;
    assert_eq!(resp.status(), 201, "appending {content}");
}

/// A new conversation with a stream open on `base` that has shown its first message, `m1`.
async fn streaming(http: &Client, base: &str) -> (String, Sse) {
    let conversation = create_conversation(base).await;
    let mut stream = Sse::open(base, &conversation, None).await;
    append(http, base, &conversation, "m1").await;
    assert_message(&stream.next_event().await.unwrap(), 1);
    (conversation, stream)
}

/// Posts `m1` … `m{n}` in order through `base`, each answered 201.
fn post_messages(base: &str, conversation: &str, n: usize) -> tokio::task::JoinHandle<()> {
    let (base, conversation) = (base.to_string(), conversation.to_string());
    tokio::spawn(async move {
        let http = http();
        for i in 1..=n {
            append(&http, &base, &conversation, &format!("m{i}")).await;
        }
    })
}

/// The `message.created` event `seq` must be: id `seq`, the message `m{seq}`.
fn assert_message(frame: &Frame, seq: i64) {
    assert_eq!(frame.id, Some(seq), "{frame:?}");
    assert_eq!(frame.event.as_deref(), Some("message.created"));
    let data = frame.json();
    assert_eq!(data["seq"], seq);
    assert_eq!(data["content"], format!("m{seq}"));
}

async fn metric(base: &str, name: &str) -> f64 {
    crate::observability::scrape(&http(), base)
        .await
        .get(name, &[])
}

/// A deterministic generator for the drop points (xorshift64*).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

#[tokio::test]
async fn a_stream_on_one_instance_sees_what_is_written_through_another() {
    let db = TestDb::migrated().await;
    let a = spawn_server(&db.url, &[]).await;
    let b = spawn_server(&db.url, &[]).await;
    let http = http();
    let conversation = create_conversation(&b.base).await;

    let mut stream = Sse::open(&a.base, &conversation, None).await;
    let first = stream.next().await.unwrap();
    assert_eq!(
        first.retry,
        Some(1000),
        "the stream opens with retry: {first:?}"
    );

    append(&http, &b.base, &conversation, "m1").await;
    assert_message(&stream.next_event().await.unwrap(), 1);

    let patched = http
        .patch(format!("{}/api/v1/conversations/{conversation}", b.base))
        .header("content-type", "application/json")
        .body(r#"{"title":"renamed","metadata":{"n":1.50}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), 200);
    let updated = stream.next_event().await.unwrap();
    assert_eq!(
        (updated.id, updated.event.as_deref()),
        (Some(2), Some("conversation.updated"))
    );
    assert_eq!(updated.json()["title"], "renamed");
    assert!(
        updated.data.as_deref().unwrap().contains(r#""n":1.50"#),
        "numbers as sent: {updated:?}"
    );

    let artifact: Value = http
        .post(format!(
            "{}/api/v1/conversations/{conversation}/artifacts",
            b.base
        ))
        .json(&json!({ "kind": "chart", "title": "Sales", "spec": { "type": "bar" } }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let created = stream.next_event().await.unwrap();
    assert_eq!(
        (created.id, created.event.as_deref()),
        (Some(3), Some("artifact.created"))
    );
    assert_eq!(
        created.json(),
        artifact,
        "the artifact as the API returned it"
    );
    let artifact_id = artifact["id"].as_str().unwrap();
    let resp = http
        .patch(format!("{}/api/v1/artifacts/{artifact_id}", b.base))
        .header("If-Match", "\"1\"")
        .json(&json!({ "title": "Sales by month" }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let versioned = stream.next_event().await.unwrap();
    assert_eq!(
        (versioned.id, versioned.event.as_deref()),
        (Some(4), Some("artifact.updated"))
    );
    assert_eq!(versioned.json()["version"], 2);

    for (action, seq, event, archived) in [
        ("archive", 5, "conversation.archived", true),
        ("archive", 5, "", true),
        ("unarchive", 6, "conversation.unarchived", false),
    ] {
        let resp = http
            .post(format!(
                "{}/api/v1/conversations/{conversation}/{action}",
                b.base
            ))
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "{action}: {}", resp.status());
        if event.is_empty() {
            continue; // archiving an archived conversation changes nothing: no event
        }
        let frame = stream.next_event().await.unwrap();
        assert_eq!((frame.id, frame.event.as_deref()), (Some(seq), Some(event)));
        assert_eq!(frame.json()["archived"], archived);
    }

    // A release that writes without knowing of events (plain SQL) still logs them.
    let mut conn = db.connect().await;
    sqlx::query(
        "INSERT INTO messages (conversation_id, seq, role, content)
         SELECT id, 2, 'user', 'm7' FROM conversations WHERE id = $1::uuid",
    )
    .bind(&conversation)
    .execute(&mut conn)
    .await
    .unwrap();
    let frame = stream.next_event().await.unwrap();
    assert_eq!(frame.id, Some(7));
    assert_eq!(frame.json()["content"], "m7");

    // The resume point's replay, from either instance, by header or query.
    let mut replay = Sse::open(&b.base, &conversation, Some(5)).await;
    assert_eq!(replay.next_event().await.unwrap().id, Some(6));
    assert_eq!(replay.next_event().await.unwrap().id, Some(7));
    let resp = http
        .get(format!(
            "{}/api/v1/conversations/{conversation}/events?after=6",
            a.base
        ))
        .send()
        .await
        .unwrap();
    let mut by_query = Sse {
        resp,
        buf: Vec::new(),
        read: 0,
    };
    assert_eq!(by_query.next_event().await.unwrap().id, Some(7));

    let deleted = http
        .delete(format!("{}/api/v1/conversations/{conversation}", b.base))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    for s in [&mut stream, &mut replay, &mut by_query] {
        let frame = s.next_event().await.unwrap();
        assert_eq!(frame.event.as_deref(), Some("conversation.deleted"));
        assert_eq!(frame.json()["id"], conversation.as_str());
        assert!(
            s.next().await.is_none(),
            "the stream ends after the deletion"
        );
    }
}

/// Ten streams of one conversation on one instance, at one position, share each read of the
/// log: 30 messages, each seen by all ten before the next is posted, cost one read each (and
/// the streams' first reads), where ten streams reading alone make at least 310. Every stream
/// still gets 1..=30 in order.
#[tokio::test]
async fn streams_of_one_conversation_share_their_reads_of_the_log() {
    let db = TestDb::migrated().await;
    let a = spawn_server(&db.url, &[]).await;
    let http = http();
    let conversation = create_conversation(&a.base).await;
    let mut streams = Vec::new();
    for _ in 0..10 {
        streams.push(Sse::open(&a.base, &conversation, None).await);
    }
    for seq in 1..=30 {
        append(&http, &a.base, &conversation, &format!("m{seq}")).await;
        for stream in &mut streams {
            assert_message(&stream.next_event().await.unwrap(), seq);
        }
    }
    let reads = metric(&a.base, "event_log_reads_total").await;
    assert!(
        (30.0..100.0).contains(&reads),
        "{reads} reads of the log for 10 streams × 30 events"
    );
    assert_eq!(metric(&a.base, "events_sent_total").await, 300.0);
}

#[tokio::test]
async fn refusals_are_problems_unknown_conversation_past_the_newest_id_and_bad_ids() {
    let db = TestDb::migrated().await;
    let a = spawn_server(&db.url, &[]).await;
    let http = http();
    let conversation = create_conversation(&a.base).await;
    append(&http, &a.base, &conversation, "m1").await;
    let unknown = uuid::Uuid::new_v4().to_string();
    for (conv, header, status, field) in [
        (unknown.as_str(), None, 404, None),
        (conversation.as_str(), Some("2"), 422, Some("after")),
        (
            conversation.as_str(),
            Some("-1"),
            422,
            Some("Last-Event-ID"),
        ),
        (
            conversation.as_str(),
            Some("abc"),
            422,
            Some("Last-Event-ID"),
        ),
    ] {
        let mut req = http.get(format!("{}/api/v1/conversations/{conv}/events", a.base));
        if let Some(h) = header {
            req = req.header("Last-Event-ID", h);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status().as_u16(), status, "{conv} {header:?}");
        assert_eq!(
            resp.headers()["content-type"],
            "application/problem+json",
            "{header:?}"
        );
        let body: Value = resp.json().await.unwrap();
        if let Some(field) = field {
            assert_eq!(body["errors"][0]["field"], field, "{body}");
        }
    }
    let mut replay = Sse::open(&a.base, &conversation, Some(1)).await;
    let frame = replay.next().await.unwrap();
    assert_eq!(
        frame.retry,
        Some(1000),
        "at the newest id: no replay, only retry"
    );
}

/// 1,000 messages written through B while a client reads from A and B in turn, dropping its
/// connection after a random number of bytes (often inside a frame) and resuming with the last
/// complete event's id: it gets every event once, in order.
#[tokio::test]
async fn a_thousand_events_resumed_after_random_drops_arrive_once_in_order() {
    const N: i64 = 1000;
    let db = TestDb::migrated().await;
    let a = spawn_server(&db.url, &[]).await;
    let b = spawn_server(&db.url, &[]).await;
    let conversation = create_conversation(&b.base).await;
    let writer = post_messages(&b.base, &conversation, N as usize);

    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut seen: Vec<i64> = Vec::new();
    let mut drops = 0;
    while seen.last().copied().unwrap_or(0) < N {
        let base = if drops % 2 == 0 { &a.base } else { &b.base };
        let mut stream = Sse::open(base, &conversation, seen.last().copied()).await;
        let budget = 1 + rng.below(20_000) as usize;
        loop {
            if stream.read >= budget {
                break; // dropped: what is buffered of a partial frame is lost
            }
            let Some(frame) = stream.next().await else {
                panic!("the server ended a stream");
            };
            if let Some(id) = frame.id {
                assert_message(&frame, id);
                seen.push(id);
                if id == N {
                    break;
                }
            }
        }
        drops += 1;
    }
    writer.await.unwrap();
    assert_eq!(
        seen,
        (1..=N).collect::<Vec<_>>(),
        "every event once, in order"
    );
    assert!(drops > 10, "the client dropped {drops} times");
}

/// A deploy's SIGTERM reaches A while a client streams from it: the stream ends with `retry:`
/// inside the grace, A exits 0, and the client resumes on B from its last id with nothing lost.
#[tokio::test]
async fn sigterm_ends_streams_with_retry_and_the_client_resumes_on_the_other_instance() {
    const N: i64 = 300;
    let db = TestDb::migrated().await;
    let mut a = spawn_server(&db.url, &[]).await;
    let b = spawn_server(&db.url, &[]).await;
    let conversation = create_conversation(&b.base).await;
    let mut stream = Sse::open(&a.base, &conversation, None).await;
    let writer = post_messages(&b.base, &conversation, N as usize);

    let mut seen = Vec::new();
    while seen.len() < 50 {
        if let Some(id) = stream.next_event().await.unwrap().id {
            seen.push(id);
        }
    }
    a.signal("TERM");
    let last_frame = loop {
        let frame = stream.next().await.expect("a last frame before the end");
        match frame.id {
            Some(id) => seen.push(id),
            None if frame.retry.is_some() => break frame,
            None => {}
        }
    };
    assert_eq!(last_frame.comments, ["server shutting down"]);
    assert_eq!(last_frame.retry, Some(1000));
    assert!(
        stream.next().await.is_none(),
        "the stream ends after retry:"
    );
    assert_eq!(a.wait().await, Some(0));

    let mut resumed = Sse::open(&b.base, &conversation, seen.last().copied()).await;
    while *seen.last().unwrap() < N {
        let frame = resumed.next_event().await.unwrap();
        seen.push(frame.id.unwrap());
    }
    writer.await.unwrap();
    assert_eq!(seen, (1..=N).collect::<Vec<_>>());
}

/// The listener's backend is terminated and its reconnects refused while messages land: their
/// notifications are lost for good, and the stream still gets every one of them from the log
/// once the listener is back.
#[tokio::test]
async fn a_terminated_listener_reconnects_and_streams_catch_up_from_the_log() {
    let db = TestDb::migrated().await;
    let proxy = Proxy::start(
        &db.url,
        Plan {
            needle: "never sent".into(),
            cut: Cut::Before,
            times: None,
            afterwards: Afterwards::Pass,
        },
    )
    .await;
    let listen_url = proxy.url(&db.url);
    let a = spawn_server(&db.url, &[("DATABASE_MIGRATION_URL", &listen_url)]).await;
    let http = http();
    let (conversation, mut stream) = streaming(&http, &a.base).await;
    assert_eq!(metric(&a.base, "event_listener_connected").await, 1.0);

    proxy.set_refusing(true);
    let mut admin = db.connect().await;
    let terminated: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE datname = current_database() AND application_name = 'agent-backend listener'",
    )
    .fetch_all(&mut admin)
    .await
    .unwrap();
    assert_eq!(terminated, [true], "one listener session per instance");
    until("the listener to notice", async || {
        metric(&a.base, "event_listener_connected").await == 0.0
    })
    .await;
    for i in 2..=20 {
        append(&http, &a.base, &conversation, &format!("m{i}")).await;
    }

    proxy.set_refusing(false);
    for seq in 2..=20 {
        assert_message(&stream.next_event().await.unwrap(), seq);
    }
    assert_eq!(metric(&a.base, "event_listener_connected").await, 1.0);
    assert!(metric(&a.base, "event_listener_reconnects_total").await >= 1.0);
    assert!(metric(&a.base, "events_sent_total").await >= 20.0);
}

/// PostgreSQL itself restarts (a cluster of the test's own) under an instance with an open
/// stream: the stream stays open, and what is written after the restart arrives.
#[tokio::test]
async fn postgres_restarted_mid_stream_the_stream_catches_up() {
    let cluster = Cluster::start();
    let url = cluster.url("postgres");
    let a = spawn_server(&url, &[]).await;
    let http = http();
    let (conversation, mut stream) = streaming(&http, &a.base).await;

    cluster.restart();
    // The pool finds its sessions dead and opens new ones; a request that met a dead session
    // is answered 503 and wrote nothing (its transaction never committed), so it is sent again.
    for i in 2..=10 {
        let content = format!("m{i}");
        poll("an append after the restart", async || {
            let resp = post_message(&http, &a.base, &conversation, &content).await;
            match resp.status() {
                StatusCode::CREATED => Some(()),
                StatusCode::SERVICE_UNAVAILABLE => None,
                other => panic!("append after restart: {other}"),
            }
        })
        .await;
    }
    for seq in 2..=10 {
        assert_message(&stream.next_event().await.unwrap(), seq);
    }
    until("the listener to be back", async || {
        metric(&a.base, "event_listener_connected").await == 1.0
    })
    .await;
    assert!(metric(&a.base, "event_listener_reconnects_total").await >= 1.0);
}

#[tokio::test]
async fn over_the_cap_a_stream_is_refused_503_with_retry_after() {
    let db = TestDb::migrated().await;
    let a = spawn_server(
        &db.url,
        &[
            ("APP_EVENTS__MAX_STREAMS", "1"),
            ("APP_EVENTS__HEARTBEAT", "1s"),
        ],
    )
    .await;
    let conversation = create_conversation(&a.base).await;
    let held = Sse::open(&a.base, &conversation, None).await;
    let resp = request(&a.base, &conversation, None).await;
    assert_eq!(resp.status(), 503);
    assert!(resp.headers().contains_key("retry-after"));
    assert_eq!(resp.headers()["content-type"], "application/problem+json");
    assert_eq!(metric(&a.base, "event_streams_open").await, 1.0);

    // Closed by the client: the slot is free once the server notices (at the next heartbeat).
    drop(held);
    let reopened = poll("a free slot", async || {
        let resp = request(&a.base, &conversation, None).await;
        (resp.status() == 200).then_some(resp)
    })
    .await;
    assert_eq!(reopened.headers()["content-type"], "text/event-stream");
}

/// A client that opens a stream and stops reading (its receive buffer tiny) while 32 MiB of
/// events land: the server does not buffer them, it cuts the connection after
/// `server.send_timeout`, and its memory stays bounded.
#[tokio::test]
async fn a_reader_that_stops_reading_is_cut_and_memory_stays_bounded() {
    const MESSAGES: usize = 512;
    let db = TestDb::migrated().await;
    let a = spawn_server(&db.url, &[("APP_SERVER__SEND_TIMEOUT", "1s")]).await;
    let pid = a.child.id().unwrap();
    let conversation = create_conversation(&a.base).await;
    let addr = a.base.trim_start_matches("http://").to_string();

    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut client = socket.connect(addr.parse().unwrap()).await.unwrap();
    client
        .write_all(
            format!("GET /api/v1/conversations/{conversation}/events HTTP/1.1\r\nHost: x\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
    let mut head = [0u8; 12];
    client.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    until("the stream to be open", async || {
        metric(&a.base, "event_streams_open").await == 1.0
    })
    .await;
    let rss_before = rss_kib(pid);

    let content = "x".repeat(64 * 1024);
    let http = http();
    for _ in 0..MESSAGES {
        append(&http, &a.base, &conversation, &content).await;
    }
    until("the stalled stream to be cut", async || {
        metric(&a.base, "event_streams_open").await == 0.0
    })
    .await;
    let rss_after = rss_kib(pid);

    let got = crate::support::read_until_closed(&mut client).await;
    let total = MESSAGES * content.len();
    eprintln!(
        "stalled reader: {} of {total} bytes sent before the cut; RSS {rss_before} → {rss_after} KiB",
        got.len()
    );
    assert!(
        got.len() < total / 2,
        "the server sent {} of {total} bytes to a reader that took none",
        got.len()
    );
    assert!(
        rss_after < rss_before + (total / 2 / 1024) as u64,
        "RSS grew from {rss_before} KiB to {rss_after} KiB for a stalled reader"
    );
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// `[events]` is validated like every section: a bad value stops start-up (exit 3) naming its
/// key.
#[tokio::test]
async fn bad_event_settings_stop_start_up_naming_the_key() {
    let url = "postgres://postgres@127.0.0.1:1/none";
    for (var, value, key) in [
        ("APP_EVENTS__MAX_STREAMS", "0", "events.max_streams"),
        ("APP_EVENTS__HEARTBEAT", "500ms", "events.heartbeat"),
        ("APP_EVENTS__RETRY", "0s", "events.retry"),
    ] {
        let out = crate::support::run_server(url, &[(var, value)], &["config"]).await;
        assert_eq!(out.code, Some(3), "{var}={value}: {}", out.stderr);
        crate::support::assert_shows(&out.stderr, key);
    }
}
