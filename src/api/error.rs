//! The one mapping from errors to HTTP: every failure of the API, the framework's own (bad
//! JSON, wrong content type, unknown route) included, becomes an RFC 9457
//! `application/problem+json` body with the right status. Bad input is always a 4xx.

use poem::http::StatusCode;
use poem_openapi::payload::Json;
use poem_openapi::types::{ParseError, ToJSON, Type};
use poem_openapi::{ApiResponse, Object};

use crate::db;
use crate::domain::Invalid;

pub const PROBLEM_JSON: &str = "application/problem+json";

/// RFC 9457 problem details.
#[derive(Debug, Clone, Object)]
pub struct Problem {
    /// A URI reference naming the problem type (`about:blank`: the status says it all).
    #[oai(rename = "type")]
    pub kind: String,
    /// Short summary of the problem type.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong with this request, and what to do about it.
    pub detail: String,
    /// Fields that failed validation (422).
    #[oai(skip_serializing_if_is_none)]
    pub errors: Option<Vec<FieldError>>,
    /// The artifact's current version (409/412).
    #[oai(skip_serializing_if_is_none)]
    pub current_version: Option<i32>,
}

/// One invalid field.
#[derive(Debug, Clone, Object)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl Problem {
    /// The problem `type` for a status: every problem document this service sends has the
    /// type its status gives (the metrics label problems by it).
    pub fn type_for(status: StatusCode) -> &'static str {
        match status {
            StatusCode::UNPROCESSABLE_ENTITY => "/problems/validation",
            StatusCode::CONFLICT
            | StatusCode::PRECONDITION_FAILED
            | StatusCode::PRECONDITION_REQUIRED => "/problems/version-conflict",
            _ => "about:blank",
        }
    }

    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Self {
            kind: Self::type_for(status).to_string(),
            title: status.canonical_reason().unwrap_or("Error").to_string(),
            status: status.as_u16(),
            detail: detail.into(),
            errors: None,
            current_version: None,
        }
    }

    /// 422: one field failed validation.
    pub fn invalid(field: &str, message: &str) -> Self {
        Self {
            errors: Some(vec![FieldError {
                field: field.to_string(),
                message: message.to_string(),
            }]),
            ..Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("{field}: {message}"),
            )
        }
    }

    /// The document as JSON text.
    pub fn to_json_string(&self) -> String {
        self.to_json().map(|v| v.to_string()).unwrap_or_default()
    }

    /// A plain poem response, for errors raised outside the typed handlers.
    pub fn into_response(self) -> poem::Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = self.to_json_string();
        poem::Response::builder()
            .status(status)
            .content_type(PROBLEM_JSON)
            .body(body)
    }
}

/// Why an API call failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Invalid(#[from] Invalid),
    #[error("If-Match must be an artifact version such as \"3\"")]
    BadIfMatch,
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error(
        "this update must name the version it is based on: send If-Match: \"<version>\" or \"version\" in the body"
    )]
    PreconditionRequired,
    #[error(
        "the artifact is at version {current}; this update was based on an older one: reload it and retry"
    )]
    VersionConflict { current: i32, via_if_match: bool },
    /// `api::idempotency`: the key's first request has not answered yet.
    #[error(
        "a request with this Idempotency-Key is still in progress: retry after Retry-After seconds to get its answer"
    )]
    KeyInFlight,
    #[error("the database is busy: no connection became free in time; retry shortly")]
    Busy,
    /// `events.max_streams` streams are open here (or the instance is shutting down).
    #[error(
        "this instance holds as many event streams as it may, or is shutting down; retry \
         shortly (another instance may take it)"
    )]
    TooManyStreams,
    /// The connection to PostgreSQL failed under the request (a restart, a failover, a network
    /// cut, a terminated session, shutdown), or PostgreSQL aborted it to resolve a conflict.
    #[error("the database is unavailable ({0}); retry shortly")]
    Unavailable(String),
    #[error("internal error")]
    Internal(#[source] sqlx::Error),
}

/// Seconds a client should wait before retrying a 503 (`Retry-After`).
pub const RETRY_AFTER_SECS: u32 = 1;

/// SQLSTATEs that say the session or the server went away ([`db::is_lost_session`]), or that a
/// transaction lost a race PostgreSQL resolves by aborting one side: the request changed
/// nothing and may be retried.
fn is_transient(code: &str) -> bool {
    db::is_lost_session(code)
        || matches!(
            code,
            "57014" // query_canceled
                | "53300" // too_many_connections
                | "40001" // serialization_failure
                | "40P01" // deadlock_detected
        )
}

/// The parent named by a foreign key whose row vanished under the write (23503): a concurrent
/// delete, so the answer is the parent's 404, as it would have been a moment later.
fn vanished_parent(constraint: Option<&str>) -> &'static str {
    match constraint {
        Some(c) if c.contains("artifact_id") => "artifact",
        Some(c) if c.contains("conversation_id") => "conversation",
        _ => "parent resource",
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        if !matches!(e, sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed) {
            crate::monitoring::query_error(&e);
        }
        match e {
            sqlx::Error::PoolTimedOut => ApiError::Busy,
            sqlx::Error::PoolClosed => ApiError::Unavailable("the server is shutting down".into()),
            sqlx::Error::Io(io) => ApiError::Unavailable(io.kind().to_string()),
            sqlx::Error::Tls(_) => ApiError::Unavailable("TLS handshake failed".into()),
            sqlx::Error::WorkerCrashed => ApiError::Unavailable("connection worker stopped".into()),
            sqlx::Error::Database(db) if db.code().is_some_and(|c| is_transient(&c)) => {
                ApiError::Unavailable(format!("SQLSTATE {}", db.code().unwrap_or_default()))
            }
            sqlx::Error::Database(db) if db.code().as_deref() == Some("23503") => {
                ApiError::NotFound(vanished_parent(db.constraint()))
            }
            // Class 22 (data exception): a value PostgreSQL cannot take. The domain types keep
            // known cases out; should one slip through, it is still the input's fault.
            sqlx::Error::Database(db) if db.code().is_some_and(|c| c.starts_with("22")) => {
                ApiError::Invalid(Invalid {
                    field: "body",
                    message: db.message().to_string(),
                })
            }
            other => ApiError::Internal(other),
        }
    }
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::BadIfMatch => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::VersionConflict {
                via_if_match: true, ..
            } => StatusCode::PRECONDITION_FAILED,
            ApiError::VersionConflict { .. } | ApiError::KeyInFlight => StatusCode::CONFLICT,
            ApiError::PreconditionRequired => StatusCode::PRECONDITION_REQUIRED,
            ApiError::Busy | ApiError::Unavailable(_) | ApiError::TooManyStreams => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn problem(&self) -> Problem {
        let mut problem = Problem::new(self.status(), self.to_string());
        match self {
            ApiError::Invalid(e) => return Problem::invalid(e.field, &e.message),
            ApiError::VersionConflict { current, .. } => problem.current_version = Some(*current),
            ApiError::Internal(e) => {
                tracing::error!(error = %e, "internal error while handling a request");
            }
            ApiError::Unavailable(why) => {
                tracing::warn!(cause = %why, "database unavailable while handling a request");
            }
            _ => {}
        }
        problem
    }
}

/// The error responses every operation documents.
#[derive(Debug, ApiResponse)]
pub enum ErrorResponse {
    /// Malformed JSON, a bad id or cursor, or a bad `If-Match`.
    #[oai(status = 400, content_type = "application/problem+json")]
    BadRequest(Json<Problem>),
    /// Missing or unknown key of the `ApiKey` bearer scheme (`Authorization: Bearer <key>`):
    /// required in production, and in development or test when keys are configured.
    #[oai(status = 401, content_type = "application/problem+json")]
    Unauthorized(Json<Problem>),
    /// No such resource.
    #[oai(status = 404, content_type = "application/problem+json")]
    NotFound(Json<Problem>),
    /// The body's `version` is not the artifact's current version; or the `Idempotency-Key`'s
    /// first request is still in progress (then with `Retry-After`: retry to get its answer).
    #[oai(status = 409, content_type = "application/problem+json")]
    Conflict(Json<Problem>, #[oai(header = "Retry-After")] Option<u32>),
    /// `If-Match` does not name the artifact's current version.
    #[oai(status = 412, content_type = "application/problem+json")]
    PreconditionFailed(Json<Problem>),
    /// The update names no version (neither `If-Match` nor `version`).
    #[oai(status = 428, content_type = "application/problem+json")]
    PreconditionRequired(Json<Problem>),
    /// The body did not arrive whole within `server.body_read_timeout`.
    #[oai(status = 408, content_type = "application/problem+json")]
    RequestTimeout(Json<Problem>),
    /// The body is larger than the configured limit.
    #[oai(status = 413, content_type = "application/problem+json")]
    PayloadTooLarge(Json<Problem>),
    /// The body is not `application/json`.
    #[oai(status = 415, content_type = "application/problem+json")]
    UnsupportedMediaType(Json<Problem>),
    /// A field failed validation (empty or too long, unknown role, limit out of range, …), or
    /// the `Idempotency-Key` is malformed or was first used with another request (method, path
    /// or body).
    #[oai(status = 422, content_type = "application/problem+json")]
    Unprocessable(Json<Problem>),
    /// Unexpected server error (never caused by input).
    #[oai(status = 500, content_type = "application/problem+json")]
    Internal(Json<Problem>),
    /// The database is unreachable, its connection was lost under the request, or its pool is
    /// exhausted: nothing was changed; retry after `Retry-After` seconds.
    #[oai(status = 503, content_type = "application/problem+json")]
    Unavailable(Json<Problem>, #[oai(header = "Retry-After")] u32),
}

impl From<ApiError> for ErrorResponse {
    fn from(e: ApiError) -> Self {
        let problem = Json(e.problem());
        let retry_after = matches!(e, ApiError::KeyInFlight).then_some(RETRY_AFTER_SECS);
        match e.status() {
            StatusCode::BAD_REQUEST => ErrorResponse::BadRequest(problem),
            StatusCode::NOT_FOUND => ErrorResponse::NotFound(problem),
            StatusCode::CONFLICT => ErrorResponse::Conflict(problem, retry_after),
            StatusCode::PRECONDITION_FAILED => ErrorResponse::PreconditionFailed(problem),
            StatusCode::PRECONDITION_REQUIRED => ErrorResponse::PreconditionRequired(problem),
            StatusCode::UNPROCESSABLE_ENTITY => ErrorResponse::Unprocessable(problem),
            StatusCode::SERVICE_UNAVAILABLE => {
                ErrorResponse::Unavailable(problem, RETRY_AFTER_SECS)
            }
            _ => ErrorResponse::Internal(problem),
        }
    }
}

impl From<Invalid> for ErrorResponse {
    fn from(e: Invalid) -> Self {
        ApiError::from(e).into()
    }
}

impl From<sqlx::Error> for ErrorResponse {
    fn from(e: sqlx::Error) -> Self {
        ApiError::from(e).into()
    }
}

/// Errors the framework raised before or around a handler (unparsable JSON or path, wrong
/// content type, body too large, unknown route, method not allowed, unauthorized) as problems.
pub async fn from_poem_error(err: poem::Error) -> poem::Response {
    // A handler's own `ErrorResponse` travels as an error wrapping its finished problem
    // response: send that as it is.
    if err.is_from_response() {
        return err.into_response();
    }
    if let Some(problem) = validation_problem(&err) {
        return problem.into_response();
    }
    let status = err.status();
    let detail = match status {
        StatusCode::NOT_FOUND => "no such route; see /openapi.json".to_string(),
        StatusCode::METHOD_NOT_ALLOWED => {
            "method not allowed on this route; see /openapi.json".to_string()
        }
        StatusCode::INTERNAL_SERVER_ERROR => {
            tracing::error!(error = %err, "internal error while handling a request");
            "internal error".to_string()
        }
        _ => err.to_string(),
    };
    let mut response = Problem::new(status, detail).into_response();
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            poem::http::header::WWW_AUTHENTICATE,
            poem::http::HeaderValue::from_static("Bearer"),
        );
    }
    response
}

/// A request the domain refused while poem-openapi parsed it (`api::fields`), or that an
/// OpenAPI validator refused (length, pattern, range), is a validation failure: 422 with the
/// field. A body or parameter that does not parse at all stays 400.
fn validation_problem(err: &poem::Error) -> Option<Problem> {
    use poem_openapi::error::{ParseParamError, ParseRequestPayloadError};
    let (field, reason, parameter) = if let Some(e) = err.downcast_ref::<ParseParamError>() {
        (e.name.to_string(), e.reason.as_str(), true)
    } else if let Some(e) = err.downcast_ref::<ParseRequestPayloadError>() {
        let field = e
            .reason
            .split("field `")
            .nth(1)
            .and_then(|rest| rest.split('`').next())
            .unwrap_or("body")
            .to_string();
        (field, e.reason.as_str(), false)
    } else {
        return None;
    };
    if let Some(refusal) = Refusal::find(reason) {
        // A parameter is named as the request names it (`Last-Event-ID`, `after`), whatever
        // domain type it parses into; a body's field as the domain names it.
        let field = if parameter { &field } else { &refusal.field };
        return Some(Problem::invalid(field, &refusal.message));
    }
    let message = reason.split("verification failed. ").nth(1)?;
    Some(Problem::invalid(
        &field,
        &format!("does not satisfy {message}"),
    ))
}

/// poem-openapi's parse errors carry only text: a domain refusal travels in it as this marker
/// and the [`Invalid`] as JSON, and [`validation_problem`] reads it back.
const REFUSED: &str = "refused by the domain: ";

#[derive(serde::Serialize, serde::Deserialize)]
struct Refusal {
    field: String,
    message: String,
}

impl Refusal {
    fn find(reason: &str) -> Option<Self> {
        let (_, json) = reason.split_once(REFUSED)?;
        serde_json::Deserializer::from_str(json)
            .into_iter()
            .next()?
            .ok()
    }
}

/// A parse error for a value the domain refused: a 422 naming the field, whatever type is
/// being parsed around it.
pub fn refuse<T: Type>(invalid: Invalid) -> ParseError<T> {
    let refusal = Refusal {
        field: invalid.field.to_string(),
        message: invalid.message,
    };
    let json = serde_json::to_string(&refusal).unwrap_or_default();
    ParseError::custom(format!("{REFUSED}{json}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A refusal survives poem-openapi's wrapping: the "failed to parse" prefix, and the
    /// "(occurred while parsing …)" suffixes of the objects around it.
    #[test]
    fn refusals_read_back_through_the_wrapping() {
        let invalid = Invalid {
            field: "role",
            message: r#""x) (occurred" is not one of user, assistant, system, tool"#.into(),
        };
        let error: ParseError<String> = refuse(invalid.clone());
        let reason = format!(
            r#"{} (occurred while parsing "AppendMessage")"#,
            error.into_message()
        );
        let found = Refusal::find(&reason).unwrap();
        assert_eq!(
            (found.field.as_str(), found.message),
            (invalid.field, invalid.message)
        );
        assert!(Refusal::find(r#"Expected input type "string", found 5."#).is_none());
    }
}
