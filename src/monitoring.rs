//! Prometheus metrics: the names and labels this service exports, the helpers that record
//! them, and the rendering behind `GET /metrics` (see `http::metrics_access` for who may read
//! it).
//!
//! Recording goes through the `metrics` facade into `metrics-exporter-prometheus`'s recorder,
//! installed once per serving process by [`install`]. With `metrics.enabled = false` no
//! recorder is installed and every `counter!`/`histogram!` call is a no-op, which is how the
//! benchmark measures the cost of the rest.
//!
//! Labels are bounded: routes are templates from the router's table (`http::routes`) (`unmatched` for a path no
//! route serves; `over_capacity` and `unparsed` for the answers the connection layer gives
//! before a request reaches the router), statuses are classes, problem types come from a fixed
//! list, SQLSTATEs are their two-character class.

use std::sync::{LazyLock, OnceLock};
use std::time::Duration;

use metrics::{
    Counter, Gauge, Histogram, Unit, counter, describe_counter, describe_gauge, describe_histogram,
    gauge, histogram,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use sqlx::PgPool;

use crate::migrate::{MigrationSet, Status};

pub const HTTP_REQUESTS: &str = "http_requests_total";
pub const HTTP_DURATION: &str = "http_request_duration_seconds";
pub const HTTP_IN_FLIGHT: &str = "http_requests_in_flight";
pub const HTTP_PROBLEMS: &str = "http_problem_responses_total";
pub const DB_POOL_CONNECTIONS: &str = "db_pool_connections";
pub const DB_POOL_MAX: &str = "db_pool_max_connections";
pub const DB_POOL_WAITING: &str = "db_pool_acquire_waiting";
pub const DB_ACQUIRE_DURATION: &str = "db_pool_acquire_duration_seconds";
pub const DB_ACQUIRE_TIMEOUTS: &str = "db_pool_acquire_timeouts_total";
pub const DB_QUERY_ERRORS: &str = "db_query_errors_total";
pub const MIGRATIONS_EMBEDDED: &str = "migrations_embedded";
pub const MIGRATIONS_APPLIED: &str = "migrations_applied";
pub const MIGRATIONS_PENDING: &str = "migrations_pending";
pub const MIGRATIONS_DIRTY: &str = "migrations_dirty";
pub const MIGRATIONS_NEWEST_APPLIED: &str = "migrations_newest_applied_version";
pub const MIGRATE_STAGE_DURATION: &str = "migrate_stage_duration_seconds";
pub const MIGRATE_STAGE_OUTCOME: &str = "migrate_stage_outcome";
pub const MIGRATE_STAGE_APPLIED: &str = "migrate_stage_applied";
pub const MIGRATE_LOCK_WAIT: &str = "migrate_lock_wait_seconds";
pub const SCHEMA_DRIFT: &str = "schema_drift_differences";
pub const BUILD_INFO: &str = "agent_backend_build_info";
pub const EVENT_STREAMS_OPEN: &str = "event_streams_open";
pub const EVENTS_SENT: &str = "events_sent_total";
pub const EVENT_LOG_READS: &str = "event_log_reads_total";
pub const EVENT_LISTENER_CONNECTED: &str = "event_listener_connected";
pub const EVENT_LISTENER_RECONNECTS: &str = "event_listener_reconnects_total";

/// Latency buckets (seconds) for the request and pool-acquire histograms: 1 ms to 10 s.
const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Outcomes of the pre-serve stage, as `migrate_stage_outcome{outcome}` (1 for the last one).
const OUTCOMES: [&str; 3] = ["up_to_date", "applied", "failed"];

/// The installed recorder's handle, the process collector, and the handles of the metrics
/// without labels that every request touches (registered once: no registry lookup per request).
pub struct Exporter {
    handle: PrometheusHandle,
    process: metrics_process::Collector,
    in_flight: Gauge,
    waiting: Gauge,
    acquire: Histogram,
    acquire_timeouts: Counter,
}

static EXPORTER: OnceLock<Exporter> = OnceLock::new();

/// Why the recorder could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("cannot install the Prometheus recorder: {0}")]
    Install(String),
}

/// Installs the global recorder (once per process) and describes every metric.
pub fn install() -> Result<&'static Exporter, MetricsError> {
    if let Some(exporter) = EXPORTER.get() {
        return Ok(exporter);
    }
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".to_string()), BUCKETS)
        .and_then(|b| b.install_recorder())
        .map_err(|e| MetricsError::Install(e.to_string()))?;
    let process = metrics_process::Collector::default();
    process.describe();
    describe();
    Ok(EXPORTER.get_or_init(|| Exporter {
        handle,
        process,
        in_flight: gauge!(HTTP_IN_FLIGHT),
        waiting: gauge!(DB_POOL_WAITING),
        acquire: histogram!(DB_ACQUIRE_DURATION),
        acquire_timeouts: counter!(DB_ACQUIRE_TIMEOUTS),
    }))
}

/// The installed exporter, when metrics are on.
pub fn exporter() -> Option<&'static Exporter> {
    EXPORTER.get()
}

impl Exporter {
    /// The text exposition: process and pool gauges read now, the rest as recorded.
    pub fn render(&self, pool: &PgPool) -> String {
        self.process.collect();
        let size = pool.size();
        let idle = pool.num_idle() as u32;
        gauge!(DB_POOL_CONNECTIONS, "state" => "idle").set(f64::from(idle));
        gauge!(DB_POOL_CONNECTIONS, "state" => "in_use").set(f64::from(size.saturating_sub(idle)));
        gauge!(DB_POOL_MAX).set(f64::from(pool.options().get_max_connections()));
        self.handle.render()
    }

    /// Drains histogram samples into their buckets; run periodically so memory stays bounded
    /// when nobody scrapes.
    pub fn upkeep(&self) {
        self.handle.run_upkeep();
    }
}

fn describe() {
    describe_counter!(
        HTTP_REQUESTS,
        "HTTP requests answered, by method, route template and status class"
    );
    describe_histogram!(
        HTTP_DURATION,
        Unit::Seconds,
        "HTTP request latency by method and route template"
    );
    describe_gauge!(HTTP_IN_FLIGHT, "HTTP requests being handled now");
    describe_counter!(
        HTTP_PROBLEMS,
        "problem+json responses by problem type and status"
    );
    describe_gauge!(
        DB_POOL_CONNECTIONS,
        "request pool connections by state (idle, in_use)"
    );
    describe_gauge!(
        DB_POOL_MAX,
        "request pool size limit (database.max_connections)"
    );
    describe_gauge!(
        DB_POOL_WAITING,
        "requests waiting for a pooled connection now"
    );
    describe_histogram!(
        DB_ACQUIRE_DURATION,
        Unit::Seconds,
        "time to get a pooled connection"
    );
    describe_counter!(
        DB_ACQUIRE_TIMEOUTS,
        "requests that got no pooled connection within database.acquire_timeout (503)"
    );
    describe_counter!(
        DB_QUERY_ERRORS,
        "failed queries by SQLSTATE class (\"none\": no SQLSTATE, e.g. a lost connection)"
    );
    describe_gauge!(
        EVENT_STREAMS_OPEN,
        "conversation event streams open on this instance"
    );
    describe_counter!(EVENTS_SENT, "conversation events sent on streams");
    describe_counter!(
        EVENT_LOG_READS,
        "reads of the event log by streams (one per conversation and position, shared)"
    );
    describe_gauge!(
        EVENT_LISTENER_CONNECTED,
        "1 while the event listener's session is listening, else 0"
    );
    describe_counter!(
        EVENT_LISTENER_RECONNECTS,
        "times the event listener lost its session and connected again"
    );
    describe_gauge!(MIGRATIONS_EMBEDDED, "migrations embedded in this binary");
    describe_gauge!(
        MIGRATIONS_APPLIED,
        "migrations recorded as applied in the database"
    );
    describe_gauge!(MIGRATIONS_PENDING, "embedded migrations not applied");
    describe_gauge!(
        MIGRATIONS_DIRTY,
        "migrations recorded as started and not finished (success = false)"
    );
    describe_gauge!(
        MIGRATIONS_NEWEST_APPLIED,
        "newest migration version applied successfully"
    );
    describe_gauge!(
        MIGRATE_STAGE_DURATION,
        Unit::Seconds,
        "duration of the last pre-serve stage"
    );
    describe_gauge!(
        MIGRATE_STAGE_OUTCOME,
        "1 for the outcome of the last pre-serve stage"
    );
    describe_gauge!(
        MIGRATE_STAGE_APPLIED,
        "migrations applied by the last pre-serve stage"
    );
    describe_gauge!(
        MIGRATE_LOCK_WAIT,
        Unit::Seconds,
        "time the last migration run waited for the migration lock"
    );
    describe_gauge!(
        SCHEMA_DRIFT,
        "differences between the live schema and the embedded snapshot at the last check"
    );
    describe_gauge!(
        BUILD_INFO,
        "1, labelled with the version and the newest embedded migration"
    );
}

/// The method labels (anything else is `OTHER`).
const METHODS: [&str; 8] = [
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "OTHER",
];
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// One route's request counters (by method and status class) and latency histograms (by
/// method), each registered on its first use and kept: recording a request costs no registry
/// lookup and no allocation. Create them after [`install`] (handles made before record nothing).
pub struct RouteMetrics {
    route: String,
    requests: [[OnceLock<Counter>; 5]; 8],
    latency: [OnceLock<Histogram>; 8],
}

impl RouteMetrics {
    pub fn new(route: impl Into<String>) -> Self {
        Self {
            route: route.into(),
            requests: Default::default(),
            latency: Default::default(),
        }
    }

    /// The route template this records under.
    pub fn route(&self) -> &str {
        &self.route
    }

    /// One answered request.
    pub fn record(&self, method: &str, status: u16, elapsed: Duration) {
        let m = self.count(method, status);
        self.latency[m]
            .get_or_init(
                || histogram!(HTTP_DURATION, "method" => METHODS[m], "route" => self.route.clone()),
            )
            .record(elapsed.as_secs_f64());
    }

    /// One answered request, without a latency (there was no request to time); returns the
    /// method's index.
    fn count(&self, method: &str, status: u16) -> usize {
        let m = METHODS.iter().position(|x| *x == method).unwrap_or(7);
        let c = usize::from((status / 100).clamp(1, 5) - 1);
        self.requests[m][c]
            .get_or_init(|| {
                counter!(HTTP_REQUESTS, "method" => METHODS[m], "route" => self.route.clone(), "status_class" => CLASSES[c])
            })
            .increment(1);
        m
    }
}

/// Requests to a path no route serves, under the route label `unmatched`.
pub fn unmatched() -> &'static RouteMetrics {
    static UNMATCHED: LazyLock<RouteMetrics> = LazyLock::new(|| RouteMetrics::new("unmatched"));
    &UNMATCHED
}

/// A connection over `server.max_connections`, answered 503 problem+json (of type `kind`)
/// before any request was read: `route="over_capacity"`, `method="OTHER"`, and a 503 problem.
pub fn over_capacity(kind: &'static str) {
    static OVER: LazyLock<RouteMetrics> = LazyLock::new(|| RouteMetrics::new("over_capacity"));
    OVER.count("OTHER", 503);
    problem(kind, 503);
}

/// A request head hyper could not read, answered by hyper itself with an empty 400, 414 or 431
/// (not problem+json: there is no hook): `route="unparsed"`, `method="OTHER"`.
pub fn unparsed(status: u16) {
    static UNPARSED: LazyLock<RouteMetrics> = LazyLock::new(|| RouteMetrics::new("unparsed"));
    UNPARSED.count("OTHER", status);
}

/// A problem+json answer.
pub fn problem(kind: &'static str, status: u16) {
    counter!(HTTP_PROBLEMS, "type" => kind, "status" => status.to_string()).increment(1);
}

/// A request in progress: counted in [`HTTP_IN_FLIGHT`] until dropped (also when cancelled).
pub struct InFlight;

impl InFlight {
    pub fn begin() -> Self {
        if let Some(e) = exporter() {
            e.in_flight.increment(1.0);
        }
        Self
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(e) = exporter() {
            e.in_flight.decrement(1.0);
        }
    }
}

/// A caller waiting for a pooled connection: counted in [`DB_POOL_WAITING`] until dropped.
/// sqlx 0.9 does not expose its waiter count, so the pool's callers count themselves.
pub struct Waiting;

impl Waiting {
    pub fn begin() -> Self {
        if let Some(e) = exporter() {
            e.waiting.increment(1.0);
        }
        Self
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if let Some(e) = exporter() {
            e.waiting.decrement(1.0);
        }
    }
}

pub fn acquired(elapsed: Duration) {
    if let Some(e) = exporter() {
        e.acquire.record(elapsed.as_secs_f64());
    }
}

pub fn acquire_timed_out() {
    if let Some(e) = exporter() {
        e.acquire_timeouts.increment(1);
    }
}

/// A failed query: its SQLSTATE's class (`"23"`), or `"none"` for errors without one.
pub fn query_error(e: &sqlx::Error) {
    let class = match e {
        sqlx::Error::Database(db) => db
            .code()
            .filter(|c| c.len() == 5 && c.bytes().all(|b| b.is_ascii_alphanumeric()))
            .map_or_else(|| "none".to_string(), |c| c[..2].to_string()),
        _ => "none".to_string(),
    };
    counter!(DB_QUERY_ERRORS, "sqlstate_class" => class).increment(1);
}

/// The bookkeeping table compared with the embedded set, as read by the stage or a readiness
/// probe.
pub fn schema(status: &Status) {
    gauge!(MIGRATIONS_APPLIED).set(status.applied.iter().filter(|r| r.success).count() as f64);
    gauge!(MIGRATIONS_PENDING).set(status.pending.len() as f64);
    gauge!(MIGRATIONS_DIRTY).set(status.dirty.len() as f64);
    gauge!(MIGRATIONS_NEWEST_APPLIED).set(status.newest_applied().unwrap_or(0) as f64);
}

/// The last pre-serve stage: how long, how it ended, how many migrations it applied.
pub fn stage(elapsed: Duration, outcome: &'static str, applied: usize) {
    gauge!(MIGRATE_STAGE_DURATION).set(elapsed.as_secs_f64());
    for o in OUTCOMES {
        gauge!(MIGRATE_STAGE_OUTCOME, "outcome" => o).set(if o == outcome { 1.0 } else { 0.0 });
    }
    gauge!(MIGRATE_STAGE_APPLIED).set(applied as f64);
}

pub fn lock_wait(waited: Duration) {
    gauge!(MIGRATE_LOCK_WAIT).set(waited.as_secs_f64());
}

pub fn drift(differences: usize) {
    gauge!(SCHEMA_DRIFT).set(differences as f64);
}

/// `agent_backend_build_info{version, newest_migration} 1` and the embedded count.
pub fn build_info(set: &MigrationSet) {
    let newest = set
        .newest()
        .map_or_else(|| "none".to_string(), |v| v.to_string());
    gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION"), "newest_migration" => newest)
        .set(1.0);
    gauge!(MIGRATIONS_EMBEDDED).set(set.len() as f64);
}

/// An open event stream: counted in [`EVENT_STREAMS_OPEN`] until dropped.
pub struct OpenStream;

impl OpenStream {
    pub fn begin() -> Self {
        gauge!(EVENT_STREAMS_OPEN).increment(1.0);
        Self
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        gauge!(EVENT_STREAMS_OPEN).decrement(1.0);
    }
}

/// `n` events written to a stream.
pub fn events_sent(n: usize) {
    counter!(EVENTS_SENT).increment(n as u64);
}

/// A stream read of the event log went to the database (shared by the streams waiting on it).
pub fn event_log_read() {
    counter!(EVENT_LOG_READS).increment(1);
}

/// The event listener is listening (`true`) or lost its session (`false`); a loss after a
/// connection counts as one reconnect.
pub fn event_listener(connected: bool) {
    gauge!(EVENT_LISTENER_CONNECTED).set(if connected { 1.0 } else { 0.0 });
    if !connected {
        counter!(EVENT_LISTENER_RECONNECTS).increment(1);
    }
}

#[cfg(test)]
mod tests {
    use super::{CLASSES, METHODS};

    #[test]
    fn status_classes_and_methods_index_their_labels() {
        for (status, class) in [(101u16, "1xx"), (200, "2xx"), (404, "4xx"), (503, "5xx")] {
            assert_eq!(CLASSES[usize::from((status / 100).clamp(1, 5) - 1)], class);
        }
        assert_eq!(METHODS.iter().position(|m| *m == "PATCH"), Some(4));
    }
}
