//! Metrics and traces of a serving process: `/metrics` after known traffic (exact deltas, route
//! templates as labels) and after answers the connection layer gives on its own, the migration
//! figures of its pre-serve stage, who may read `/metrics` in production, and the spans an
//! OTLP receiver gets (over plain HTTP, and over TLS with a private CA: trusted through the
//! system's CA store, or through the OTEL certificate variables with a client certificate) for
//! a request carrying `traceparent`.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use agent_backend::migrate::embedded;
use http_body_util::BodyExt;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use reqwest::Client;
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio_rustls::rustls::{self, ServerConfig};

use crate::support::{
    LOCK_REQUESTED, Running, TestDb, hold_migration_lock, read_until_closed, run_server,
    spawn_server, wait_until,
};

/// One scrape: `(name, sorted labels) -> value`.
pub(crate) struct Scrape {
    samples: HashMap<(String, BTreeMap<String, String>), f64>,
    text: String,
}

impl Scrape {
    fn parse(text: String) -> Self {
        let mut samples = HashMap::new();
        for line in text
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            let (series, value) = line.rsplit_once(' ').expect("sample line");
            let value: f64 = value.parse().unwrap_or_else(|_| panic!("value in {line}"));
            let (name, labels) = match series.split_once('{') {
                None => (series.to_string(), BTreeMap::new()),
                Some((name, rest)) => (
                    name.to_string(),
                    parse_labels(rest.strip_suffix('}').expect("closing brace")),
                ),
            };
            samples.insert((name, labels), value);
        }
        Self { samples, text }
    }

    /// The sample's value, 0 when absent (a counter never incremented).
    pub(crate) fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.samples
            .get(&(name.to_string(), labels))
            .copied()
            .unwrap_or(0.0)
    }

    /// Every label value of `label` on series named `name`.
    fn label_values(&self, name: &str, label: &str) -> Vec<String> {
        self.samples
            .keys()
            .filter(|(n, _)| n == name)
            .filter_map(|(_, labels)| labels.get(label).cloned())
            .collect()
    }
}

/// `a="x",b="y"` (values without escapes, as ours are).
fn parse_labels(text: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut rest = text;
    while let Some((key, after)) = rest.split_once("=\"") {
        let end = after.find('"').expect("closing quote");
        labels.insert(
            key.trim_start_matches(',').to_string(),
            after[..end].to_string(),
        );
        rest = &after[end + 1..];
    }
    labels
}

pub(crate) async fn scrape(http: &Client, base: &str) -> Scrape {
    let resp = http.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    Scrape::parse(resp.text().await.unwrap())
}

const REQUESTS: &str = "http_requests_total";

#[tokio::test]
async fn metrics_count_requests_by_route_template_after_known_traffic() {
    let db = TestDb::migrated().await;
    let server = spawn_server(&db.url, &[]).await;
    let http = Client::new();
    let api = |path: &str| format!("{}/api/v1{path}", server.base);
    let before = scrape(&http, &server.base).await;

    let created: serde_json::Value = crate::support::json_body(
        http.post(api("/conversations"))
            .json(&json!({ "title": "metrics" })),
    )
    .await;
    let id = created["id"].as_str().unwrap().to_string();
    for _ in 0..3 {
        let resp = http.get(api(&format!("/conversations/{id}"))).send().await;
        assert_eq!(resp.unwrap().status(), 200);
    }
    let missing = uuid::Uuid::new_v4();
    let resp = http.get(api(&format!("/conversations/{missing}"))).send();
    assert_eq!(resp.await.unwrap().status(), 404);
    let resp = http
        .post(api("/conversations"))
        .json(&json!({ "title": "" }))
        .send();
    assert_eq!(resp.await.unwrap().status(), 422);
    let resp = http.get(format!("{}/no/such/{id}", server.base)).send();
    assert_eq!(resp.await.unwrap().status(), 404);

    let after = scrape(&http, &server.base).await;
    let delta =
        |name: &str, labels: &[(&str, &str)]| after.get(name, labels) - before.get(name, labels);
    let by_id = "/api/v1/conversations/{id}";
    let list = "/api/v1/conversations";
    let req = |method, route, class| {
        [
            ("method", method),
            ("route", route),
            ("status_class", class),
        ]
    };
    assert_eq!(delta(REQUESTS, &req("GET", by_id, "2xx")), 3.0);
    assert_eq!(delta(REQUESTS, &req("GET", by_id, "4xx")), 1.0);
    assert_eq!(delta(REQUESTS, &req("POST", list, "2xx")), 1.0);
    assert_eq!(delta(REQUESTS, &req("POST", list, "4xx")), 1.0);
    assert_eq!(delta(REQUESTS, &req("GET", "unmatched", "4xx")), 1.0);
    // The first scrape, counted once it was answered.
    assert_eq!(delta(REQUESTS, &req("GET", "/metrics", "2xx")), 1.0);
    let latency = [("method", "GET"), ("route", by_id)];
    assert_eq!(delta("http_request_duration_seconds_count", &latency), 4.0);
    // Only this scrape is in progress.
    assert_eq!(after.get("http_requests_in_flight", &[]), 1.0);
    let problem = |kind, status| [("status", status), ("type", kind)];
    assert_eq!(
        delta(
            "http_problem_responses_total",
            &problem("about:blank", "404")
        ),
        2.0
    );
    assert_eq!(
        delta(
            "http_problem_responses_total",
            &problem("/problems/validation", "422")
        ),
        1.0
    );
    // Routes are templates: no id anywhere in the exposition, no label value outside the table.
    assert!(!after.text.contains(&id), "an id leaked into a label");
    for route in after.label_values(REQUESTS, "route") {
        assert!(
            route == "unmatched" || route.starts_with('/') && !route.contains(&missing.to_string()),
            "{route}"
        );
    }

    // Five queries ran (create, three reads, the miss): five acquisitions, none timed out.
    assert_eq!(delta("db_pool_acquire_duration_seconds_count", &[]), 5.0);
    assert_eq!(after.get("db_pool_acquire_timeouts_total", &[]), 0.0);
    assert_eq!(after.get("db_pool_acquire_waiting", &[]), 0.0);
    assert_eq!(after.get("db_pool_max_connections", &[]), 10.0);
    let pooled = after.get("db_pool_connections", &[("state", "idle")])
        + after.get("db_pool_connections", &[("state", "in_use")]);
    assert!((1.0..=10.0).contains(&pooled), "{pooled}");
    assert_eq!(
        after.get("db_query_errors_total", &[("sqlstate_class", "23")]),
        0.0
    );
    // The exporter's process collector.
    assert!(after.get("process_resident_memory_bytes", &[]) > 0.0);
    assert!(after.get("process_open_fds", &[]) > 0.0);
}

#[tokio::test]
async fn query_errors_are_counted_by_sqlstate_class() {
    let db = TestDb::migrated().await;
    let server = spawn_server(&db.url, &[]).await;
    let http = Client::new();
    let before = scrape(&http, &server.base).await;
    // A rule of the database's own that the API does not know: PostgreSQL refuses the insert
    // with a check violation (SQLSTATE 23514), which the API answers 500.
    let mut conn = db.connect().await;
    sqlx::raw_sql(
        "ALTER TABLE conversations ADD CONSTRAINT no_forbidden CHECK (title <> 'forbidden')",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let resp = http
        .post(format!("{}/api/v1/conversations", server.base))
        .json(&json!({ "title": "forbidden" }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 500);
    let after = scrape(&http, &server.base).await;
    let class = [("sqlstate_class", "23")];
    let errors =
        after.get("db_query_errors_total", &class) - before.get("db_query_errors_total", &class);
    assert_eq!(errors, 1.0, "{}", after.text);
    let problems = [("status", "500"), ("type", "about:blank")];
    let counted = after.get("http_problem_responses_total", &problems)
        - before.get("http_problem_responses_total", &problems);
    assert_eq!(counted, 1.0);
}

fn embedded_count_and_newest() -> (f64, i64) {
    let set = embedded::migrations();
    (set.len() as f64, set.newest().unwrap())
}

#[tokio::test]
async fn migration_metrics_describe_the_pre_serve_stage() {
    let db = TestDb::empty().await;
    let (count, newest) = embedded_count_and_newest();
    // Another runner holds the migration lock: the stage waits for it.
    let (mut holder, key) = hold_migration_lock(&db, "other-runner").await;
    let url = db.url.clone();
    let starting = tokio::spawn(async move { spawn_server(&url, &[]).await });
    wait_until(&mut holder, LOCK_REQUESTED, "the server waits for the lock").await;
    sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(key)
        .execute(&mut holder)
        .await
        .unwrap();
    let mut server = starting.await.unwrap();
    let http = Client::new();
    let m = scrape(&http, &server.base).await;
    assert_eq!(m.get("migrations_embedded", &[]), count);
    assert_eq!(m.get("migrations_applied", &[]), count);
    assert_eq!(m.get("migrations_pending", &[]), 0.0);
    assert_eq!(m.get("migrations_dirty", &[]), 0.0);
    assert_eq!(
        m.get("migrations_newest_applied_version", &[]),
        newest as f64
    );
    assert_eq!(
        m.get("migrate_stage_outcome", &[("outcome", "applied")]),
        1.0
    );
    assert_eq!(
        m.get("migrate_stage_outcome", &[("outcome", "up_to_date")]),
        0.0
    );
    assert_eq!(
        m.get("migrate_stage_outcome", &[("outcome", "failed")]),
        0.0
    );
    assert_eq!(m.get("migrate_stage_applied", &[]), count);
    assert!(m.get("migrate_stage_duration_seconds", &[]) > 0.0);
    assert!(m.get("migrate_lock_wait_seconds", &[]) > 0.0, "{}", m.text);
    assert_eq!(m.get("schema_drift_differences", &[]), 0.0);
    let newest_label = newest.to_string();
    let build = [
        ("newest_migration", newest_label.as_str()),
        ("version", env!("CARGO_PKG_VERSION")),
    ];
    assert_eq!(m.get("agent_backend_build_info", &build), 1.0, "{}", m.text);
    server.signal("TERM");
    assert_eq!(server.wait().await, Some(0));

    // The next start finds nothing to do, without waiting for the lock.
    let server = spawn_server(&db.url, &[]).await;
    let m = scrape(&http, &server.base).await;
    assert_eq!(
        m.get("migrate_stage_outcome", &[("outcome", "up_to_date")]),
        1.0
    );
    assert_eq!(
        m.get("migrate_stage_outcome", &[("outcome", "applied")]),
        0.0
    );
    assert_eq!(m.get("migrate_stage_applied", &[]), 0.0);
    assert_eq!(m.get("migrations_applied", &[]), count);
}

const API_KEY: &str = "api-key-0123456789abcdef";
const METRICS_TOKEN: &str = "metrics-token-0123456789";

/// A production server on every address (not loopback: the access rule applies), reached
/// over loopback.
async fn production(db: &TestDb, extra: &[(&str, &str)]) -> Running {
    let mut env = vec![
        ("ENVIRONMENT", "production"),
        ("HOST", "0.0.0.0"),
        ("PORT", "0"),
        ("API_KEYS", API_KEY),
    ];
    env.extend_from_slice(extra);
    let mut server = spawn_server(&db.url, &env).await;
    server.base = server.base.replace("0.0.0.0", "127.0.0.1");
    server
}

async fn metrics_status(http: &Client, url: &str, bearer: Option<&str>) -> u16 {
    let mut req = http.get(url);
    if let Some(token) = bearer {
        req = req.bearer_auth(token);
    }
    req.send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn production_metrics_need_their_own_token_or_their_own_port() {
    let db = TestDb::migrated().await;
    let http = Client::new();

    let server = production(&db, &[("METRICS_TOKEN", METRICS_TOKEN)]).await;
    let url = format!("{}/metrics", server.base);
    assert_eq!(metrics_status(&http, &url, None).await, 401);
    assert_eq!(metrics_status(&http, &url, Some(API_KEY)).await, 401);
    assert_eq!(metrics_status(&http, &url, Some(METRICS_TOKEN)).await, 200);
    // And the token does not open the API.
    let api = format!("{}/api/v1/conversations", server.base);
    assert_eq!(metrics_status(&http, &api, Some(METRICS_TOKEN)).await, 401);
    assert_eq!(metrics_status(&http, &api, Some(API_KEY)).await, 200);
    drop(server);

    // No token: not served on the main port; served, open, on server.metrics_port.
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port().to_string()
    };
    let server = production(&db, &[("APP_SERVER__METRICS_PORT", &port)]).await;
    let main = format!("{}/metrics", server.base);
    assert_eq!(metrics_status(&http, &main, None).await, 404);
    let separate = format!("http://127.0.0.1:{port}/metrics");
    assert_eq!(metrics_status(&http, &separate, None).await, 200);
    let api = format!("http://127.0.0.1:{port}/api/v1/conversations");
    assert_eq!(metrics_status(&http, &api, Some(API_KEY)).await, 404);
    drop(server);

    // The API keys can never double as the metrics token.
    let out = run_server(
        &db.url,
        &[
            ("ENVIRONMENT", "production"),
            ("API_KEYS", API_KEY),
            ("METRICS_TOKEN", API_KEY),
        ],
        &["config"],
    )
    .await;
    assert_eq!(out.code, Some(3), "{}", out.stderr);
    assert!(out.stderr.contains("metrics.token"), "{}", out.stderr);
}

#[tokio::test]
async fn metrics_can_be_turned_off() {
    let db = TestDb::migrated().await;
    let server = spawn_server(&db.url, &[("APP_METRICS__ENABLED", "false")]).await;
    let http = Client::new();
    let url = format!("{}/metrics", server.base);
    assert_eq!(metrics_status(&http, &url, None).await, 404);
}

/// A minimal OTLP/HTTP receiver: decodes each `POST /v1/traces` body and keeps its spans.
/// With `tls`, it speaks HTTPS (and answers at `https://localhost:PORT`); a failed handshake
/// just closes that connection.
async fn otlp_receiver(tls: Option<Arc<ServerConfig>>) -> (String, Arc<Mutex<Vec<Span>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let spans: Arc<Mutex<Vec<Span>>> = Arc::default();
    let kept = spans.clone();
    let acceptor = tls.clone().map(tokio_rustls::TlsAcceptor::from);
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let kept = kept.clone();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let kept = kept.clone();
                        async move {
                            assert_eq!(req.uri().path(), "/v1/traces");
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let export = ExportTraceServiceRequest::decode(body).unwrap();
                            let mut kept = kept.lock().unwrap();
                            for resource in export.resource_spans {
                                for scope in resource.scope_spans {
                                    kept.extend(scope.spans);
                                }
                            }
                            let resp = hyper::Response::builder()
                                .header("content-type", "application/x-protobuf")
                                .body(String::new())
                                .unwrap();
                            Ok::<_, Infallible>(resp)
                        }
                    },
                );
                let http1 = hyper::server::conn::http1::Builder::new();
                match acceptor {
                    None => {
                        let io = hyper_util::rt::TokioIo::new(stream);
                        let _ = http1.serve_connection(io, service).await;
                    }
                    Some(acceptor) => {
                        if let Ok(stream) = acceptor.accept(stream).await {
                            let io = hyper_util::rt::TokioIo::new(stream);
                            let _ = http1.serve_connection(io, service).await;
                        }
                    }
                }
            });
        }
    });
    match tls {
        None => (format!("http://{addr}"), spans),
        Some(_) => (format!("https://localhost:{}", addr.port()), spans),
    }
}

fn attribute(span: &Span, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
        .map(|v| match v {
            AnyValue::StringValue(s) => s.clone(),
            AnyValue::IntValue(i) => i.to_string(),
            other => format!("{other:?}"),
        })
}

#[tokio::test]
async fn traces_reach_an_otlp_receiver_with_the_clients_trace_id() {
    let (endpoint, spans) = otlp_receiver(None).await;
    let db = TestDb::empty().await;
    let mut server = spawn_server(&db.url, &[("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)]).await;
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent_id = "00f067aa0ba902b7";
    let missing = uuid::Uuid::new_v4();
    let resp = Client::new()
        .get(format!("{}/api/v1/conversations/{missing}", server.base))
        .header("traceparent", format!("00-{trace_id}-{parent_id}-01"))
        .header("x-request-id", "trace-test-1")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    // Graceful shutdown flushes the spans still buffered.
    server.signal("TERM");
    assert_eq!(server.wait().await, Some(0));
    let logs = server.stderr.await.unwrap();

    let spans = spans.lock().unwrap().clone();
    let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let ours: Vec<&Span> = spans
        .iter()
        .filter(|s| hex(&s.trace_id) == trace_id)
        .collect();
    let request = ours
        .iter()
        .find(|s| s.name == "GET /api/v1/conversations/{id}")
        .unwrap_or_else(|| panic!("no request span in {:?}", names(&spans)));
    assert_eq!(hex(&request.parent_span_id), parent_id);
    assert_eq!(
        attribute(request, "http.route").as_deref(),
        Some("/api/v1/conversations/{id}")
    );
    assert_eq!(
        attribute(request, "http.response.status_code").as_deref(),
        Some("404")
    );
    for child in ["db.acquire", "conversations.get"] {
        let span = ours
            .iter()
            .find(|s| s.name == child)
            .unwrap_or_else(|| panic!("no {child} span in {:?}", names(&spans)));
        assert_eq!(span.parent_span_id, request.span_id, "{child}");
    }
    // The pre-serve stage: one span per migration it applied.
    for m in embedded::migrations().iter() {
        let name = format!("migration {}", m.version);
        assert!(
            spans.iter().any(|s| s.name == name),
            "no {name} span in {:?}",
            names(&spans)
        );
    }
    // The request's log line carries the trace id beside the request id.
    assert!(
        logs.iter()
            .any(|l| l.contains("trace-test-1") && l.contains(trace_id)),
        "{}",
        logs.join("\n")
    );
}

fn names(spans: &[Span]) -> Vec<&str> {
    spans.iter().map(|s| s.name.as_str()).collect()
}

/// A self-signed certificate for `localhost` and 127.0.0.1: (certificate PEM, key PEM, the
/// certificate and key as rustls takes them).
fn self_signed() -> (
    String,
    String,
    rustls::pki_types::CertificateDer<'static>,
    rustls::pki_types::PrivateKeyDer<'static>,
) {
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let key = rustls::pki_types::PrivatePkcs8KeyDer::from(certified.signing_key.serialize_der());
    (
        certified.cert.pem(),
        certified.signing_key.serialize_pem(),
        certified.cert.der().clone(),
        key.into(),
    )
}

/// Serves one `GET /health/live` carrying `traceparent`, then SIGTERM (exit 0): every log line.
async fn serve_one_traced_request(
    db: &TestDb,
    env: &[(&str, &str)],
    traceparent: &str,
) -> Vec<String> {
    let mut server = spawn_server(&db.url, env).await;
    let resp = Client::new()
        .get(format!("{}/health/live", server.base))
        .header("traceparent", traceparent)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    server.signal("TERM");
    assert_eq!(server.wait().await, Some(0));
    let mut logs = server.startup.clone();
    logs.extend(server.stderr.await.unwrap());
    logs
}

/// A private CA and an HTTPS OTLP receiver (at `https://localhost:PORT`) whose certificate it
/// signed, as a collector on a private network has: (the CA's PEM, the endpoint, its spans).
pub(crate) async fn otlp_receiver_behind_a_private_ca() -> (String, String, Arc<Mutex<Vec<Span>>>) {
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "agent-backend test CA");
    ca.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let key = rustls::pki_types::PrivatePkcs8KeyDer::from(key.serialize_der());
    let tls =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.der().clone()], key.into())
            .unwrap();
    let (endpoint, spans) = otlp_receiver(Some(Arc::new(tls))).await;
    (ca_pem, endpoint, spans)
}

/// The system's CA store is what an `https://` collector is verified against: its CA in the
/// store (here a bundle named by `SSL_CERT_FILE`; in the image, `/etc/ssl/certs`:
/// tests/it/image.rs) is enough, with no OTEL certificate variable. A store with no CA at all is
/// refused at start-up with its cause, and the service serves without traces.
#[tokio::test]
async fn an_https_collector_is_trusted_through_the_system_ca_store() {
    let (ca_pem, endpoint, spans) = otlp_receiver_behind_a_private_ca().await;
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("ca-certificates.crt");
    std::fs::write(&bundle, &ca_pem).unwrap();
    let empty = dir.path().join("empty.crt");
    std::fs::write(&empty, "").unwrap();
    let db = TestDb::migrated().await;
    let trace_id = "5b8efff798038103d269b633813fc60c";

    for store in [&empty, &bundle] {
        let store = store.display().to_string();
        let env = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("SSL_CERT_FILE", &store),
        ];
        let traceparent = format!("00-{trace_id}-eee19b7ec3c1b174-01");
        let logs = serve_one_traced_request(&db, &env, &traceparent).await;
        let arrived = spans
            .lock()
            .unwrap()
            .iter()
            .any(|s| s.name == "GET /health/live");
        if store.ends_with("empty.crt") {
            assert!(!arrived, "spans arrived with an empty CA store");
            assert!(
                logs.iter().any(
                    |l| l.contains("no CA certificate") && l.contains("serving without traces")
                ),
                "{}",
                logs.join("\n")
            );
        } else {
            assert!(
                arrived,
                "no request span in {:?}",
                names(&spans.lock().unwrap())
            );
        }
    }
}

/// An `https://` collector behind a private CA that also asks for a client certificate, as a
/// collector on a shared network would: the spans arrive once `OTEL_EXPORTER_OTLP_CERTIFICATE`
/// names its CA and `OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE`/`_CLIENT_KEY` the client's pair.
/// Without the CA the handshake fails (the system's CA store does not vouch for it), nothing
/// arrives, and the service serves and exits as usual.
#[tokio::test]
async fn traces_reach_an_https_otlp_receiver_trusted_through_the_otel_certificate_variables() {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let (server_pem, _, server_cert, server_key) = self_signed();
    let (client_pem, client_key_pem, client_cert, _) = self_signed();
    let mut clients = rustls::RootCertStore::empty();
    clients.add(client_cert).unwrap();
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(clients),
        provider.clone(),
    )
    .build()
    .unwrap();
    let tls = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![server_cert], server_key)
        .unwrap();
    let (endpoint, spans) = otlp_receiver(Some(Arc::new(tls))).await;
    assert!(endpoint.starts_with("https://localhost:"), "{endpoint}");
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let ca = write("collector-ca.pem", &server_pem);
    let client_cert = write("client.pem", &client_pem);
    let client_key = write("client-key.pem", &client_key_pem);
    let db = TestDb::migrated().await;
    let trace_id = "0af7651916cd43dd8448eb211c80319c";

    let traceparent = format!("00-{trace_id}-b7ad6b7169203331-01");
    let serve_one_request =
        async |env: &[(&str, &str)]| serve_one_traced_request(&db, env, &traceparent).await;
    let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();

    // The client certificate alone: the collector's CA is unknown, the handshake fails.
    let logs = serve_one_request(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
        ("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", &client_cert),
        ("OTEL_EXPORTER_OTLP_CLIENT_KEY", &client_key),
    ])
    .await;
    assert!(
        spans.lock().unwrap().is_empty(),
        "spans arrived over TLS to an untrusted certificate\n{}",
        logs.join("\n")
    );
    // And the operator is told why, at the first attempt (the SDK itself says only "network
    // error"), and the SDK's errors reach the log (here, as the process stops at once, the
    // final flush timing out while the exporter retries; in a long-running process,
    // `BatchSpanProcessor.ExportError` once the retries are spent).
    let why: Vec<&String> = logs
        .iter()
        .filter(|l| l.contains("Trace export failed"))
        .collect();
    assert!(
        why.len() == 1
            && why[0].contains("invalid peer certificate")
            && why[0].contains("the collector's certificate is not trusted"),
        "{}",
        logs.join("\n")
    );
    assert!(
        logs.iter()
            .any(|l| l.contains("ERROR") && l.contains("opentelemetry_sdk")),
        "{}",
        logs.join("\n")
    );

    let logs = serve_one_request(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
        ("OTEL_EXPORTER_OTLP_CERTIFICATE", &ca),
        ("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", &client_cert),
        ("OTEL_EXPORTER_OTLP_CLIENT_KEY", &client_key),
    ])
    .await;
    let spans = spans.lock().unwrap().clone();
    let request = spans
        .iter()
        .find(|s| hex(&s.trace_id) == trace_id && s.name == "GET /health/live")
        .unwrap_or_else(|| {
            panic!(
                "no request span in {:?}\n{}",
                names(&spans),
                logs.join("\n")
            )
        });
    assert_eq!(hex(&request.parent_span_id), "b7ad6b7169203331");
}

/// A certificate variable that names no readable PEM: the service warns and serves without
/// traces (it does not refuse to start over its telemetry).
#[tokio::test]
async fn an_unreadable_otel_certificate_is_a_warning_not_a_failure() {
    let db = TestDb::migrated().await;
    let mut server = spawn_server(
        &db.url,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://localhost:4318"),
            ("OTEL_EXPORTER_OTLP_CERTIFICATE", "/nonexistent/ca.pem"),
        ],
    )
    .await;
    let resp = reqwest::get(format!("{}/health/live", server.base))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    server.signal("TERM");
    assert_eq!(server.wait().await, Some(0));
    // Logged at start-up, before "Listening on".
    let logs = &server.startup;
    assert!(
        logs.iter().any(
            |l| l.contains("OTEL_EXPORTER_OTLP_CERTIFICATE=/nonexistent/ca.pem")
                && l.contains("serving without traces")
        ),
        "{}",
        logs.join("\n")
    );
}

/// Answers given before a request reaches the routes are counted too, under fixed labels: the
/// connection cap's 503 (`over_capacity`, also a 503 problem) and hyper's own 400, 414 and 431
/// for a request head it cannot read (`unparsed`).
#[tokio::test]
async fn answers_from_the_connection_layer_are_counted() {
    let db = TestDb::migrated().await;
    let server = spawn_server(&db.url, &[("APP_SERVER__MAX_CONNECTIONS", "2")]).await;
    let addr = server.base.trim_start_matches("http://").to_string();
    let connect = || tokio::net::TcpStream::connect(addr.clone());

    // Over the cap: two connections held, the third is refused (an API request: the health
    // routes would still be served, through the reserve).
    let held = [connect().await.unwrap(), connect().await.unwrap()];
    let mut extra = connect().await.unwrap();
    extra
        .write_all(b"GET /api/v1/conversations HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let answer = String::from_utf8_lossy(&read_until_closed(&mut extra).await).into_owned();
    assert!(answer.starts_with("HTTP/1.1 503 "), "{answer}");
    drop(held);

    // Heads hyper refuses: not HTTP, a URI over its 64 KiB limit, more than 100 headers.
    let long_uri = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(70_000));
    let many_headers = format!(
        "GET / HTTP/1.1\r\nHost: x\r\n{}\r\n",
        (0..120)
            .map(|i| format!("x-h{i}: v\r\n"))
            .collect::<String>()
    );
    for (head, status) in [
        ("HELLO\r\n\r\n".to_string(), "400"),
        (long_uri, "414"),
        (many_headers, "431"),
    ] {
        // A slot may still be held by a closing connection: retry a refused attempt.
        let answer = loop {
            let mut conn = connect().await.unwrap();
            let _ = conn.write_all(head.as_bytes()).await;
            let answer = String::from_utf8_lossy(&read_until_closed(&mut conn).await).into_owned();
            if !answer.starts_with("HTTP/1.1 503 ") {
                break answer;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        };
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status} ")),
            "{status}: {answer}"
        );
    }

    let http = Client::builder().pool_max_idle_per_host(0).build().unwrap();
    let unparsed = [
        ("method", "OTHER"),
        ("route", "unparsed"),
        ("status_class", "4xx"),
    ];
    // The server counts a refused head as its connection ends, which the client may see
    // first: scrape until all three are counted (or 10 s have passed; the assertion below says
    // what was seen).
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    let scrape = loop {
        let resp = http.get(format!("{}/metrics", server.base)).send().await;
        if let Ok(resp) = resp
            && resp.status() == 200
        {
            let scrape = Scrape::parse(resp.text().await.unwrap());
            if scrape.get(REQUESTS, &unparsed) >= 3.0 || tokio::time::Instant::now() > deadline {
                break scrape;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    let refused = scrape.get(
        REQUESTS,
        &[
            ("method", "OTHER"),
            ("route", "over_capacity"),
            ("status_class", "5xx"),
        ],
    );
    assert!(refused >= 1.0, "{}", scrape.text);
    assert_eq!(
        scrape.get(
            "http_problem_responses_total",
            &[("status", "503"), ("type", "about:blank")]
        ),
        refused,
        "{}",
        scrape.text
    );
    assert_eq!(scrape.get(REQUESTS, &unparsed), 3.0, "{}", scrape.text);
    // Neither is a request the routes saw: no latency, no `unmatched`.
    for line in scrape.text.lines() {
        assert!(
            !(line.starts_with("http_request_duration_seconds")
                && (line.contains("unparsed") || line.contains("over_capacity"))),
            "{line}"
        );
    }
    assert_eq!(
        scrape.get(
            REQUESTS,
            &[
                ("method", "OTHER"),
                ("route", "unmatched"),
                ("status_class", "4xx")
            ]
        ),
        0.0
    );
}
