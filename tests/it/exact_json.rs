//! Exact JSON documents (issue 25): `metadata`, `spec` and `parts` keep every number exactly
//! (serde_json's `arbitrary_precision` through to `jsonb` and back), or refuse it with 422
//! naming the field when PostgreSQL's `numeric` cannot hold it; never altered. Through the
//! binary in production mode for the named cases, in process for PostgreSQL's edges and the
//! generated documents. Values are compared as JSON values with numbers as exact decimals
//! (`support::json_difference`), never as `f64`.

use std::cell::Cell;
use std::fmt::Write as _;

use poem::endpoint::BoxEndpoint;
use poem::test::TestClient;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use reqwest::Client;
use serde_json::Value;

use crate::support::{TestDb, app, json_difference, spawn_server};

/// 39 digits: an `f64` keeps 17 (`123456789012345680000000000000000000000`).
const BIG: &str = "123456789012345678901234567890123456789";
/// Beyond `numeric`'s 131072 digits before the point: PostgreSQL refuses it.
const HUGE: &str = "1e200000";

/// A 400-digit decimal, `1.234…` (sent and read back as written).
fn long_decimal() -> String {
    let digits = "1234567890".repeat(40);
    format!("-{}.{}", &digits[..1], &digits[1..])
}

/// `1e-400` as PostgreSQL writes it back: `0.` and 399 zeros before the `1`.
fn tiny_written_out() -> String {
    format!("0.{}1", "0".repeat(399))
}

fn parse(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn assert_same(got: &Value, sent: &Value, what: &str) {
    if let Some(difference) = json_difference(got, sent, "$") {
        panic!("{what}: read back altered at {difference}");
    }
}

const API_KEY: &str = "exact-json-key-0123456789";

struct Http {
    client: Client,
    base: String,
}

impl Http {
    /// Sends `body` as written (a JSON text no serializer reformatted) and returns the status
    /// and the body as received.
    async fn send(&self, method: reqwest::Method, path: &str, body: Option<&str>) -> (u16, String) {
        let mut req = self
            .client
            .request(method, format!("{}/api/v1{path}", self.base))
            .bearer_auth(API_KEY);
        if let Some(body) = body {
            req = req
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let resp = req.send().await.unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    }

    async fn expect(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&str>,
        status: u16,
    ) -> Value {
        let (got, text) = self.send(method, path, body).await;
        assert_eq!(got, status, "{path}: {text}");
        parse(&text)
    }

    /// A 422 naming `field`, and nothing else.
    async fn refused(&self, method: reqwest::Method, path: &str, body: &str, field: &str) {
        let problem = self.expect(method, path, Some(body), 422).await;
        assert_eq!(problem["errors"][0]["field"], field, "{problem}");
        assert_eq!(problem["errors"].as_array().map(Vec::len), Some(1));
    }
}

/// The three named numbers in every document field, through the binary in production mode
/// (JSON logs, an API key, loopback): written raw, read back raw. The 39-digit integer and the
/// 400-digit decimal come back digit for digit, `1e-400` as the same value written out
/// (`jsonb` stores `numeric`, which writes exponents out), in the POST's answer and in every
/// read. A number beyond `numeric` is a 422 naming the field, in create and update alike, and
/// stores nothing.
#[tokio::test]
async fn big_long_and_tiny_numbers_round_trip_exactly_through_the_binary() {
    use reqwest::Method;
    let db = TestDb::migrated().await;
    let server = spawn_server(
        &db.url,
        &[
            ("ENVIRONMENT", "production"),
            ("HOST", "127.0.0.1"),
            ("PORT", "0"),
            ("API_KEYS", API_KEY),
        ],
    )
    .await;
    let http = Http {
        client: Client::new(),
        base: server.base.clone(),
    };
    let long = long_decimal();
    let object = format!(
        r#"{{"big": {BIG}, "long": {long}, "tiny": 1e-400, "nested": [{BIG}, {{"x": {long}}}]}}"#
    );
    let array = format!(r#"[{BIG}, {long}, 1e-400, {{"n": [{BIG}]}}]"#);
    let sent_object = parse(&object);
    let sent_array = parse(&array);
    // What each read must show, as text: the digits as sent, 1e-400 written out.
    let shows_exactly = |what: &str, raw: &str| {
        for digits in [BIG, long.as_str(), tiny_written_out().as_str()] {
            assert!(raw.contains(digits), "{what} lost {digits}: {raw}");
        }
    };

    // metadata: create, read, list, replace.
    let body = format!(r#"{{"title": "exact", "metadata": {object}}}"#);
    let created = http
        .expect(Method::POST, "/conversations", Some(&body), 201)
        .await;
    assert_same(&created["metadata"], &sent_object, "POST metadata");
    let id = created["id"].as_str().unwrap().to_string();
    let (status, raw) = http
        .send(Method::GET, &format!("/conversations/{id}"), None)
        .await;
    assert_eq!(status, 200);
    shows_exactly("GET metadata", &raw);
    assert_same(&parse(&raw)["metadata"], &sent_object, "GET metadata");
    let (_, raw) = http.send(Method::GET, "/conversations", None).await;
    assert_same(
        &parse(&raw)["items"][0]["metadata"],
        &sent_object,
        "list metadata",
    );
    let patched = http
        .expect(
            Method::PATCH,
            &format!("/conversations/{id}"),
            Some(&format!(r#"{{"metadata": {{"again": {object}}}}}"#)),
            200,
        )
        .await;
    assert_same(
        &patched["metadata"]["again"],
        &sent_object,
        "PATCH metadata",
    );

    // parts: append, read, list.
    let body =
        format!(r#"{{"role": "tool", "content": "c", "tool_call_id": "t", "parts": {array}}}"#);
    let message = http
        .expect(
            Method::POST,
            &format!("/conversations/{id}/messages"),
            Some(&body),
            201,
        )
        .await;
    assert_same(&message["parts"], &sent_array, "POST parts");
    let (_, raw) = http
        .send(
            Method::GET,
            &format!(
                "/conversations/{id}/messages/{}",
                message["id"].as_str().unwrap()
            ),
            None,
        )
        .await;
    shows_exactly("GET parts", &raw);
    assert_same(&parse(&raw)["parts"], &sent_array, "GET parts");
    let (_, raw) = http
        .send(Method::GET, &format!("/conversations/{id}/messages"), None)
        .await;
    assert_same(&parse(&raw)["items"][0]["parts"], &sent_array, "list parts");

    // spec: create, read, update (If-Match), every version.
    let body = format!(r#"{{"kind": "chart", "title": "exact", "spec": {object}}}"#);
    let artifact = http
        .expect(
            Method::POST,
            &format!("/conversations/{id}/artifacts"),
            Some(&body),
            201,
        )
        .await;
    assert_same(&artifact["spec"], &sent_object, "POST spec");
    let aid = artifact["id"].as_str().unwrap().to_string();
    let (_, raw) = http
        .send(Method::GET, &format!("/artifacts/{aid}"), None)
        .await;
    shows_exactly("GET spec", &raw);
    assert_same(&parse(&raw)["spec"], &sent_object, "GET spec");
    let updated = http
        .expect(
            Method::PATCH,
            &format!("/artifacts/{aid}"),
            Some(&format!(r#"{{"version": 1, "spec": {{"v2": {object}}}}}"#)),
            200,
        )
        .await;
    assert_same(&updated["spec"]["v2"], &sent_object, "PATCH spec");
    let (_, raw) = http
        .send(Method::GET, &format!("/artifacts/{aid}/versions"), None)
        .await;
    let versions = parse(&raw);
    assert_same(&versions["items"][0]["spec"], &sent_object, "version 1");
    assert_same(
        &versions["items"][1]["spec"]["v2"],
        &sent_object,
        "version 2",
    );

    // Beyond numeric: refused, naming the field; nothing stored.
    let huge_object = format!(r#"{{"ok": {BIG}, "n": [1, {{"deep": {HUGE}}}]}}"#);
    let huge_array = format!("[{BIG}, {HUGE}]");
    let refusals = [
        (
            Method::POST,
            "/conversations".to_string(),
            format!(r#"{{"title": "huge", "metadata": {huge_object}}}"#),
            "metadata",
        ),
        (
            Method::PATCH,
            format!("/conversations/{id}"),
            format!(r#"{{"metadata": {huge_object}}}"#),
            "metadata",
        ),
        (
            Method::POST,
            format!("/conversations/{id}/messages"),
            format!(r#"{{"role": "user", "content": "c", "parts": {huge_array}}}"#),
            "parts",
        ),
        (
            Method::POST,
            format!("/conversations/{id}/artifacts"),
            format!(r#"{{"kind": "chart", "title": "huge", "spec": {huge_object}}}"#),
            "spec",
        ),
        (
            Method::PATCH,
            format!("/artifacts/{aid}"),
            format!(r#"{{"version": 2, "spec": {huge_object}}}"#),
            "spec",
        ),
    ];
    for (method, path, body, field) in refusals {
        http.refused(method, &path, &body, field).await;
    }
    let mut conn = db.connect().await;
    let counts: (i64, i64, i64, i32) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM conversations), (SELECT count(*) FROM messages), \
                (SELECT count(*) FROM ui_artifact_versions), \
                (SELECT version FROM ui_artifacts)",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(counts, (1, 1, 2, 2), "a refused document stored nothing");
    let stored: String =
        sqlx::query_scalar("SELECT (metadata -> 'again' ->> 'big') FROM conversations")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(stored, BIG, "the database holds the digits as sent");
}

/// In process: the API accepts a number exactly when PostgreSQL's `jsonb` does (asked
/// directly, at `numeric`'s edges) and answers with PostgreSQL's own text for it; the size
/// limit counts numbers as stored, to the byte; nesting within the parser's limit is kept.
#[tokio::test]
async fn numerics_edges_are_postgresqls_and_the_size_limit_counts_numbers_as_stored() {
    let db = TestDb::migrated().await;
    let api = app(&db, "");
    let mut conn = db.connect().await;
    let edges = [
        "-0",
        "-0.0",
        "0e-5",
        "1E+2",
        "1.50e1",
        "1e-16383",
        "1e-16384",
        "0e-16384",
        "1.5e-16382",
        "1.5e-16383",
        "-1e131071",
        "1e131072",
        "9.9e131071",
        "0.0001e131075",
        "0.0001e131076",
        "0e200000",
        HUGE,
        "1e-1073741823",
        "1e99999999999999999999",
    ];
    for number in edges {
        let postgres: Result<String, _> = sqlx::query_scalar("SELECT ($1::text::jsonb)::text")
            .bind(number)
            .fetch_one(&mut conn)
            .await;
        let body = format!(r#"{{"title": "edge", "metadata": {{"n": {number}}}}}"#);
        let resp = post(&api, "/conversations", body).await;
        match postgres {
            Ok(text) => {
                assert_eq!(resp.0, 201, "{number}: PostgreSQL takes it: {}", resp.1);
                let raw = resp.1;
                assert!(
                    raw.contains(&format!(r#""metadata":{{"n":{text}}}"#)),
                    "{number} is not answered as PostgreSQL writes it ({text}): {}",
                    &raw[..raw.len().min(300)]
                );
            }
            Err(e) => {
                assert_eq!(resp.0, 422, "{number}: PostgreSQL refuses it ({e})");
                let problem = parse(&resp.1);
                assert_eq!(problem["errors"][0]["field"], "metadata", "{problem}");
            }
        }
    }

    // The limit is 256 KiB as stored, compact: 15 numbers of 16385 characters each (7 sent)
    // and a string padding the document to exactly the limit fit; one byte more does not.
    let numbers = vec!["1e-16383"; 15].join(",");
    let doc = |pad: usize| format!(r#"{{"n":[{numbers}],"p":"{}"}}"#, "x".repeat(pad));
    let resp = post(
        &api,
        "/conversations",
        format!(r#"{{"title":"t","metadata":{}}}"#, doc(0)),
    )
    .await;
    assert_eq!(resp.0, 201, "{}", &resp.1[..200]);
    let stored = serde_json::to_string(&parse(&resp.1)["metadata"])
        .unwrap()
        .len();
    let pad = 256 * 1024 - stored;
    let resp = post(
        &api,
        "/conversations",
        format!(r#"{{"title":"t","metadata":{}}}"#, doc(pad)),
    )
    .await;
    assert_eq!(resp.0, 201, "exactly the limit as stored");
    let resp = post(
        &api,
        "/conversations",
        format!(r#"{{"title":"t","metadata":{}}}"#, doc(pad + 1)),
    )
    .await;
    assert_eq!(resp.0, 422, "a byte over the limit as stored");
    assert!(resp.1.contains("as stored"), "{}", resp.1);

    // 120 levels deep (serde_json reads at most 128) come back as sent.
    let deep = format!("{}{BIG}{}", "[".repeat(120), "]".repeat(120));
    let resp = post(
        &api,
        "/conversations",
        format!(r#"{{"title":"deep","metadata":{{"d":{deep}}}}}"#),
    )
    .await;
    assert_eq!(resp.0, 201);
    assert_same(
        &parse(&resp.1)["metadata"]["d"],
        &parse(&deep),
        "deep nesting",
    );
    // Past serde_json's 128 levels the body does not parse: 400, as the README says.
    let deeper = format!("{}1{}", "[".repeat(200), "]".repeat(200));
    let resp = post(
        &api,
        "/conversations",
        format!(r#"{{"title":"deep","metadata":{{"d":{deeper}}}}}"#),
    )
    .await;
    assert_eq!(resp.0, 400, "past serde_json's nesting limit: {}", resp.1);
}

async fn post(api: &TestClient<BoxEndpoint<'static>>, path: &str, body: String) -> (u16, String) {
    let resp = api
        .post(format!("/api/v1{path}"))
        .content_type("application/json")
        .header("content-length", body.len())
        .body(body)
        .send()
        .await;
    let status = resp.0.status().as_u16();
    (status, resp.0.into_body().into_string().await.unwrap())
}

async fn get(api: &TestClient<BoxEndpoint<'static>>, path: &str) -> Value {
    let resp = api.get(format!("/api/v1{path}")).send().await;
    assert_eq!(resp.0.status().as_u16(), 200);
    parse(&resp.0.into_body().into_string().await.unwrap())
}

// --- generated documents -------------------------------------------------------------------

/// Number texts of every JSON shape: big integers, long fractions, exponents in both cases
/// with and without a sign, negative zeros, i64 and u64 edges.
fn number() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => proptest::string::string_regex(
            "-?(0|[1-9][0-9]{0,60})(\\.[0-9]{1,450})?([eE][+-]?[0-9]{1,3})?"
        )
        .unwrap(),
        1 => prop::sample::select(vec![
            "-0", "-0.0", "0.000", "0e-5", "-0E+9", "1E+2", "1e2", "10E-1", "1.50", "-1.0e0",
            "9223372036854775807", "-9223372036854775808", "18446744073709551615",
            "18446744073709551616", "123456789012345678901234567890123456789", "1e-400",
        ])
        .prop_map(str::to_string),
    ]
}

/// Text without NUL (which PostgreSQL cannot store, refused with 422 elsewhere): control
/// characters, quotes, backslashes, astral-plane characters.
fn text() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            3 => any::<char>(),
            1 => prop::sample::select(vec!['"', '\\', '\n', '\u{1}', '\u{7f}', '\u{2028}', '😀', 'é']),
        ]
        .prop_filter("NUL", |c| *c != '\0'),
        0..12,
    )
    .prop_map(|chars| chars.into_iter().collect())
}

/// A JSON value, nested up to 6 levels.
fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        1 => Just(Value::Null),
        1 => any::<bool>().prop_map(Value::Bool),
        4 => number().prop_map(|n| parse(&n)),
        2 => text().prop_map(Value::String),
    ];
    leaf.prop_recursive(6, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(text(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A document of one shape (an object, or an array), and the text sent for it.
fn document(object: bool) -> impl Strategy<Value = (Value, String)> {
    let shape = if object {
        prop::collection::btree_map(text(), value(), 0..6)
            .prop_map(|m| Value::Object(m.into_iter().collect()))
            .boxed()
    } else {
        prop::collection::vec(value(), 0..6)
            .prop_map(Value::Array)
            .boxed()
    };
    (shape, any::<u64>()).prop_map(|(value, seed)| {
        let mut text = String::new();
        Writer { seed }.write(&value, &mut text);
        (value, text)
    })
}

/// Writes JSON as a hostile client might: random white space, characters escaped as
/// `\uXXXX` at random (astral ones as surrogate pairs), exponents re-spelt (`e+5` as `E5`).
struct Writer {
    seed: u64,
}

impl Writer {
    fn coin(&mut self, one_in: u64) -> bool {
        // xorshift64
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        self.seed.is_multiple_of(one_in)
    }

    fn space(&mut self, out: &mut String) {
        if self.coin(4) {
            out.push_str([" ", "\n", "\t ", "\r\n  "][(self.seed % 4) as usize]);
        }
    }

    fn string(&mut self, s: &str, out: &mut String) {
        out.push('"');
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                c if (c as u32) < 0x20 || self.coin(5) => {
                    let mut units = [0u16; 2];
                    for unit in c.encode_utf16(&mut units) {
                        let _ = write!(out, "\\u{unit:04X}");
                    }
                }
                c => out.push(c),
            }
        }
        out.push('"');
    }

    fn write(&mut self, value: &Value, out: &mut String) {
        self.space(out);
        match value {
            Value::Number(n) => {
                let text = n.to_string();
                let text = if self.coin(2) {
                    text.replace("e+", "E")
                } else {
                    text
                };
                out.push_str(&text);
            }
            Value::String(s) => self.string(s, out),
            Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    self.write(item, out);
                }
                self.space(out);
                out.push(']');
            }
            Value::Object(map) => {
                out.push('{');
                for (i, (k, v)) in map.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    self.space(out);
                    self.string(k, out);
                    self.space(out);
                    out.push(':');
                    self.write(v, out);
                }
                self.space(out);
                out.push('}');
            }
            other => out.push_str(&other.to_string()),
        }
        self.space(out);
    }
}

/// Generated documents (1,000 cases), each written as a hostile client would, through the
/// routes the binary serves, over one real database: the object as a conversation's
/// `metadata` and an artifact's `spec`, the array as a message's `parts`; what the POST
/// answers and what a GET reads back equal what was sent, numbers compared exactly.
#[test]
fn any_document_reads_back_as_the_same_value() {
    const CASES: u32 = 1000;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (db, api) = rt.block_on(async {
        let db = TestDb::migrated().await;
        let api = app(&db, "");
        (db, api)
    });
    let conversation = rt.block_on(async {
        let (status, body) = post(&api, "/conversations", r#"{"title":"parts"}"#.into()).await;
        assert_eq!(status, 201);
        parse(&body)["id"].as_str().unwrap().to_string()
    });
    let ran = Cell::new(0u32);
    let mut runner = TestRunner::new(Config {
        cases: CASES,
        failure_persistence: None,
        ..Config::default()
    });
    let outcome = runner.run(
        &(document(true), document(false)),
        |((object, object_text), (array, array_text))| {
            ran.set(ran.get() + 1);
            rt.block_on(async {
                let check =
                    |got: &Value, sent: &Value, what: &str, text: &str| match json_difference(
                        got, sent, "$",
                    ) {
                        None => Ok(()),
                        Some(d) => Err(TestCaseError::fail(format!("{what}: {d}\nsent: {text}"))),
                    };
                let created = |status: u16, body: &str| {
                    if status == 201 {
                        Ok(parse(body))
                    } else {
                        Err(TestCaseError::fail(format!("{status}: {body}")))
                    }
                };
                let (status, body) = post(
                    &api,
                    "/conversations",
                    format!(r#"{{"title":"p","metadata":{object_text}}}"#),
                )
                .await;
                let c = created(status, &body)?;
                check(&c["metadata"], &object, "POST metadata", &object_text)?;
                let read = get(
                    &api,
                    &format!("/conversations/{}", c["id"].as_str().unwrap()),
                )
                .await;
                check(&read["metadata"], &object, "GET metadata", &object_text)?;

                let (status, body) = post(
                    &api,
                    &format!("/conversations/{conversation}/messages"),
                    format!(r#"{{"role":"user","content":"c","parts":{array_text}}}"#),
                )
                .await;
                let m = created(status, &body)?;
                check(&m["parts"], &array, "POST parts", &array_text)?;
                let read = get(
                    &api,
                    &format!(
                        "/conversations/{conversation}/messages/{}",
                        m["id"].as_str().unwrap()
                    ),
                )
                .await;
                check(&read["parts"], &array, "GET parts", &array_text)?;

                let (status, body) = post(
                    &api,
                    &format!("/conversations/{conversation}/artifacts"),
                    format!(r#"{{"kind":"k","title":"t","spec":{object_text}}}"#),
                )
                .await;
                let a = created(status, &body)?;
                check(&a["spec"], &object, "POST spec", &object_text)?;
                let read = get(&api, &format!("/artifacts/{}", a["id"].as_str().unwrap())).await;
                check(&read["spec"], &object, "GET spec", &object_text)
            })
        },
    );
    if let Err(e) = outcome {
        panic!("{e}");
    }
    drop(api);
    drop(db);
    assert!(ran.get() >= CASES, "{} cases ran", ran.get());
    eprintln!("exact JSON: {} generated cases passed", ran.get());
}
