//! Health endpoints, open without authentication.
//!
//! - `GET /health/live`: the process answers (no I/O). For restarts.
//! - `GET /health/ready`: the database answers within `database.health_timeout` and the schema is
//!   at the embedded version (nothing pending, dirty or edited). 200, else 503 naming the failed
//!   checks. 503 too once shutdown has begun, so the platform stops routing here. For traffic.
//! - `GET /health`: the same checks plus version, uptime, the request pool (maximum, open, idle,
//!   in use), migration versions and schema drift (the live schema against the embedded
//!   snapshot), for people.
//!
//! Readiness also fails with `"queries"` while one of the instance's own queries does not
//! prepare against the live schema (checked at start-up and with each release heartbeat,
//! `crate::queries::readiness`); `checks.queries.unprepared` names them.
//!
//! Drift costs a catalog query, so its verdict is kept for [`DRIFT_TTL`]; readiness looks at it
//! only with `migrations.on_drift = "error"`.

use std::time::{Duration, Instant};

use poem::http::StatusCode;
use poem::web::{Data, Json};
use poem::{IntoResponse, Response, handler};
use serde::Serialize;
use serde_json::json;

use super::AppState;
use crate::migrate::snapshot::{Difference, Drift, Snapshot};
use crate::migrate::{Migrator, Status, Verdict};

/// The health routes: still answered over `server.max_connections` (`server::RESERVE`).
pub const PATHS: [&str; 3] = ["/health", "/health/live", "/health/ready"];

/// How long a drift verdict is reused by the health endpoints.
pub const DRIFT_TTL: Duration = Duration::from_secs(30);

#[handler]
pub fn live() -> Json<serde_json::Value> {
    Json(json!({ "status": "alive" }))
}

#[derive(Serialize)]
struct DatabaseCheck {
    ok: bool,
    latency_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Serialize)]
struct SchemaCheck {
    ok: bool,
    expected: Option<i64>,
    applied: Option<i64>,
    pending: Vec<i64>,
    dirty: Vec<i64>,
    mismatched: Vec<i64>,
    unknown: Vec<i64>,
}

#[derive(Serialize, Clone)]
pub(crate) struct DriftCheck {
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    not_compared: Option<String>,
    differences: Vec<Difference>,
    /// The policy's verdict: differences found under `on_drift = "error"`.
    #[serde(skip)]
    fails: bool,
}

#[derive(Serialize)]
struct QueriesCheck {
    ok: bool,
    unprepared: Vec<crate::queries::readiness::Unprepared>,
}

struct Probe {
    queries: Option<QueriesCheck>,
    database: DatabaseCheck,
    schema: Option<SchemaCheck>,
    drift: Option<DriftCheck>,
    shutting_down: bool,
}

impl Probe {
    fn failed(&self) -> Vec<&'static str> {
        let mut failed = Vec::new();
        if self.shutting_down {
            failed.push("shutdown");
        }
        if !self.database.ok {
            failed.push("database");
        }
        if self.schema.as_ref().is_some_and(|s| !s.ok) {
            failed.push("schema");
        }
        if self.drift.as_ref().is_some_and(|d| d.fails) {
            failed.push("drift");
        }
        if self.queries.as_ref().is_some_and(|q| !q.ok) {
            failed.push("queries");
        }
        failed
    }

    fn status_code(&self) -> StatusCode {
        if self.failed().is_empty() {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        }
    }
}

/// The drift verdict, from the cache when younger than [`DRIFT_TTL`]. `None` when the catalogs
/// could not be read in time (the database check reports why).
async fn drift(state: &AppState, status: &Status) -> Option<DriftCheck> {
    if let Some((at, check)) = state.drift_cache.lock().ok()?.clone()
        && at.elapsed() < DRIFT_TTL
    {
        return Some(check);
    }
    let table = &state.migrations.bookkeeping().table;
    let actual = tokio::time::timeout(state.health_timeout, async {
        let mut conn = state.pool.acquire().await.ok()?;
        Snapshot::take(&mut conn, table).await.ok()
    })
    .await
    .ok()??;
    let drift = match state.migrations.snapshot() {
        Some(expected) => state.policy.judge_drift(status, expected, &actual),
        None => Drift::no_snapshot(),
    };
    let fails = state.policy.drift_fails(&drift);
    let check = match drift {
        Drift::Checked { differences } => DriftCheck {
            ok: differences.is_empty(),
            not_compared: None,
            differences,
            fails,
        },
        Drift::NotComparable { reason } => DriftCheck {
            ok: true,
            not_compared: Some(reason),
            differences: Vec::new(),
            fails,
        },
    };
    if check.not_compared.is_none() {
        crate::monitoring::drift(check.differences.len());
    }
    if let Ok(mut cache) = state.drift_cache.lock() {
        *cache = Some((Instant::now(), check.clone()));
    }
    Some(check)
}

async fn check(state: &AppState, with_drift: bool) -> Probe {
    let queries = state.queries.unprepared().map(|unprepared| QueriesCheck {
        ok: unprepared.is_empty(),
        unprepared,
    });
    let shutting_down = state.is_shutting_down();
    let started = Instant::now();
    let judged = tokio::time::timeout(state.health_timeout, async {
        let mut conn = state.pool.acquire().await.map_err(|e| e.to_string())?;
        Migrator::judge(state.migrations, state.policy.clone())
            .verdict(&mut conn)
            .await
            .map_err(|e| e.to_string())
    })
    .await
    .unwrap_or_else(|_| {
        Err(format!(
            "no answer within {} ms",
            state.health_timeout.as_millis()
        ))
    });
    let latency_ms = started.elapsed().as_millis() as u64;
    match judged {
        Ok((status, verdict)) => {
            crate::monitoring::schema(&status);
            // Drift costs a catalog query: read it for readiness only when it can fail it.
            let drift = if with_drift || state.policy.drift_can_fail() {
                drift(state, &status).await
            } else {
                None
            };
            let schema = SchemaCheck {
                ok: verdict == Verdict::UpToDate,
                expected: state.migrations.newest(),
                applied: status.newest_applied(),
                pending: status.pending,
                dirty: status.dirty,
                mismatched: status.mismatched,
                unknown: status.unknown,
            };
            Probe {
                database: DatabaseCheck {
                    ok: true,
                    latency_ms,
                    error: None,
                },
                schema: Some(schema),
                drift,
                shutting_down,
                queries,
            }
        }
        Err(error) => Probe {
            database: DatabaseCheck {
                ok: false,
                latency_ms,
                error: Some(error),
            },
            schema: None,
            drift: None,
            shutting_down,
            queries,
        },
    }
}

#[handler]
pub async fn ready(Data(state): Data<&AppState>) -> Response {
    let probe = check(state, false).await;
    let failed = probe.failed();
    let body = json!({
        "status": if failed.is_empty() { "ready" } else { "unavailable" },
        "failed": failed,
        "checks": {
            "database": probe.database,
            "schema": probe.schema,
            "drift": probe.drift,
            "queries": probe.queries,
        },
    });
    Json(body).with_status(probe.status_code()).into_response()
}

#[handler]
pub async fn summary(Data(state): Data<&AppState>) -> Response {
    let probe = check(state, true).await;
    let failed = probe.failed();
    let body = json!({
        "status": if failed.is_empty() { "ok" } else { "unavailable" },
        "failed": failed,
        "version": env!("CARGO_PKG_VERSION"),
        "environment": state.environment,
        "uptime_seconds": state.started.elapsed().as_secs(),
        "shutting_down": probe.shutting_down,
        "database": probe.database,
        "pool": {
            "max": state.pool.options().get_max_connections(),
            "size": state.pool.size(),
            "idle": state.pool.num_idle(),
            "in_use": (state.pool.size() as usize).saturating_sub(state.pool.num_idle()),
        },
        "migrations": {
            "embedded": state.migrations.len(),
            "embedded_newest": state.migrations.newest(),
            "schema": probe.schema,
            "drift": probe.drift,
        },
        "queries": probe.queries,
    });
    Json(body).with_status(probe.status_code()).into_response()
}
