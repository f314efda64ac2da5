//! Health endpoints, open without authentication.
//!
//! - `GET /health/live`: the process answers (no I/O). For restarts.
//! - `GET /health/ready`: the database answers within `database.health_timeout` and the schema is
//!   at the embedded version (nothing pending, dirty or edited). 200, else 503 naming the failed
//!   checks. 503 too once shutdown has begun, so the platform stops routing here. For traffic.
//! - `GET /health`: the same checks plus version, uptime and migration versions, for people.

use std::time::Instant;

use poem::http::StatusCode;
use poem::web::{Data, Json};
use poem::{IntoResponse, Response, handler};
use serde::Serialize;
use serde_json::json;

use super::AppState;
use crate::migrate::{Status, UnknownPolicy, history};

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

struct Probe {
    database: DatabaseCheck,
    schema: Option<SchemaCheck>,
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

async fn probe(state: &AppState) -> Probe {
    let shutting_down = state.is_shutting_down();
    let started = Instant::now();
    let rows = tokio::time::timeout(state.health_timeout, async {
        let mut conn = state.pool.acquire().await.map_err(|e| e.to_string())?;
        history::read(&mut conn, &state.migrations.bookkeeping().table)
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
    match rows {
        Ok(rows) => {
            let status = Status::compare(state.migrations, rows);
            let strict = state.on_unknown_applied == UnknownPolicy::Error;
            let schema = SchemaCheck {
                ok: status.is_up_to_date() && (!strict || status.unknown.is_empty()),
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
                shutting_down,
            }
        }
        Err(error) => Probe {
            database: DatabaseCheck {
                ok: false,
                latency_ms,
                error: Some(error),
            },
            schema: None,
            shutting_down,
        },
    }
}

#[handler]
pub async fn ready(Data(state): Data<&AppState>) -> Response {
    let probe = probe(state).await;
    let failed = probe.failed();
    let body = json!({
        "status": if failed.is_empty() { "ready" } else { "unavailable" },
        "failed": failed,
        "checks": { "database": probe.database, "schema": probe.schema },
    });
    Json(body).with_status(probe.status_code()).into_response()
}

#[handler]
pub async fn summary(Data(state): Data<&AppState>) -> Response {
    let probe = probe(state).await;
    let failed = probe.failed();
    let body = json!({
        "status": if failed.is_empty() { "ok" } else { "unavailable" },
        "failed": failed,
        "version": env!("CARGO_PKG_VERSION"),
        "environment": state.environment,
        "uptime_seconds": state.started.elapsed().as_secs(),
        "shutting_down": probe.shutting_down,
        "database": probe.database,
        "migrations": {
            "embedded": state.migrations.len(),
            "embedded_newest": state.migrations.newest(),
            "schema": probe.schema,
        },
    });
    Json(body).with_status(probe.status_code()).into_response()
}
