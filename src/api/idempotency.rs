//! `Idempotency-Key` on the creating POSTs (create a conversation, append a message, create an
//! artifact): a client that retries a request whose answer it never got (a timeout, a cut
//! connection) sends the same key, and gets the first answer instead of a second write. This
//! module owns the rule; a handler hands its write to [`Keys::run`].
//!
//! Per (operation, key), a row of `idempotency_keys`:
//!
//! - **Claim.** The first request inserts the row `in_flight`, in a statement of its own that
//!   commits at once (`INSERT … ON CONFLICT`): concurrent duplicates serialise on the primary
//!   key, and exactly one of them claims it. Each claim has an id of its own.
//! - **Write and complete together.** The handler's write and the row's change to `done`
//!   (the status and the exact bytes of the body answered) commit in one transaction, and the
//!   completion names the claim it holds. A crash before that commit leaves the key in flight
//!   with nothing written; nothing can leave a write committed with its key not done.
//! - **A failed first attempt releases the key.** When the write fails (a 4xx such as the 404 of
//!   a missing conversation, or a 5xx such as a lost connection), the transaction rolls back and
//!   the row is deleted: the retry runs again rather than being answered an error that may no
//!   longer hold (the conversation exists now, the database is back). Only successes are kept.
//! - **A duplicate reads the row.** A different fingerprint (SHA-256 of the method, the path and
//!   the exact body bytes) is a 422 naming the header, whatever the row's state; `done` replays
//!   the stored status and body byte for byte, writing nothing; in flight for less than
//!   `claim_timeout` is a 409 with `Retry-After`. In flight for longer, the first request is
//!   presumed lost (its instance died: a live one has answered by then), and the retry takes the
//!   claim over with an id of its own; should the first one still reach its commit, its
//!   completion finds its claim gone and its write rolls back (it answers 409).
//! - **Expiry.** A row past `expires_at` (`ttl` after the key's first use) is a new key: the
//!   claim replaces it. [`spawn_sweep`] deletes expired rows every `sweep_every`.
//!
//! A request without the header is written as before, in one statement, with no row.

use std::marker::PhantomData;
use std::time::Duration;

use poem::http::StatusCode;
use poem::{Body, IntoResponse, Request, RequestBody, Response};
use poem_openapi::error::ParseParamError;
use poem_openapi::payload::{Json, Payload};
use poem_openapi::registry::{MetaParamIn, MetaRequest, MetaSchemaRef, Registry};
use poem_openapi::types::{ParseFromJSON, ToJSON, Type};
use poem_openapi::{ApiExtractor, ApiExtractorType, ExtractParamOptions};
use sha2::{Digest, Sha256};
use sqlx::{Connection, PgConnection, PgPool};
use tracing::Instrument;
use uuid::Uuid;

use super::error::{ApiError, refuse};
use crate::config::IdempotencySettings;
use crate::db;
use crate::domain::{IdempotencyKey, Invalid};

/// The request header.
pub const HEADER: &str = IdempotencyKey::FIELD;

/// Attempts at claiming a key whose row went away between two statements (released by a failed
/// first attempt, or swept) before answering 409.
const CLAIM_ATTEMPTS: usize = 3;

/// Rows deleted per statement of the sweep: each statement's locks and WAL stay small.
const SWEEP_BATCH: i64 = 1000;

/// The `Idempotency-Key` header, read from its bytes: a value that is not printable ASCII, too
/// long, empty or sent twice is a 422 naming the header, never dropped (poem-openapi's `Header`
/// skips a value that is not visible ASCII, which would write without the key). Declared in the
/// document as an optional header parameter (name it with `#[oai(name = "Idempotency-Key")]`).
pub struct KeyHeader(pub Option<IdempotencyKey>);

impl<'a> ApiExtractor<'a> for KeyHeader {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::Parameter];
    const PARAM_IS_REQUIRED: bool = false;
    type ParamType = IdempotencyKey;
    type ParamRawType = IdempotencyKey;

    fn register(registry: &mut Registry) {
        IdempotencyKey::register(registry);
    }

    fn param_in() -> Option<MetaParamIn> {
        Some(MetaParamIn::Header)
    }

    fn param_schema_ref() -> Option<MetaSchemaRef> {
        Some(IdempotencyKey::schema_ref())
    }

    fn param_raw_type(&self) -> Option<&IdempotencyKey> {
        self.0.as_ref()
    }

    async fn from_request(
        request: &'a Request,
        _body: &mut RequestBody,
        options: ExtractParamOptions<IdempotencyKey>,
    ) -> poem::Result<Self> {
        let refused = |invalid: Invalid| ParseParamError {
            name: options.name,
            reason: refuse::<String>(invalid).into_message(),
        };
        let mut values = request.headers().get_all(options.name).iter();
        let Some(value) = values.next() else {
            return Ok(Self(None));
        };
        if values.next().is_some() {
            return Err(refused(Invalid {
                field: IdempotencyKey::FIELD,
                message: "is sent more than once; send one key".into(),
            })
            .into());
        }
        IdempotencyKey::parse(value.as_bytes())
            .map(|key| Self(Some(key)))
            .map_err(|invalid| refused(invalid).into())
    }
}

/// What identifies a request for its key: SHA-256 of the method, the path as sent (under
/// `/api/v1`) and the exact body bytes (so a body that differs in one space is another request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    pub fn of(method: &str, path: &str, body: &[u8]) -> Self {
        let mut hash = Sha256::new();
        // Neither a method nor a path holds a line feed: the parts cannot run into each other.
        hash.update(method.as_bytes());
        hash.update(b"\n");
        hash.update(path.as_bytes());
        hash.update(b"\n");
        hash.update(body);
        Self(hash.finalize().into())
    }
}

/// A JSON request body, read exactly as [`Json`] reads it (the same document entry, the same
/// 400/415/422), and, when the request carries an `Idempotency-Key`, its [`Fingerprint`]
/// taken from the bytes as they arrived.
pub struct KeyedJson<T> {
    pub value: T,
    fingerprint: Option<Fingerprint>,
}

impl<T> KeyedJson<T> {
    /// The body's value, and what [`Keys::run`] needs: `operation` (the operation id), the key
    /// and this body's fingerprint.
    pub fn keyed(self, operation: &'static str, key: KeyHeader) -> (T, Keyed) {
        let key = key.0.zip(self.fingerprint);
        (self.value, Keyed { operation, key })
    }
}

impl<'a, T: ParseFromJSON> ApiExtractor<'a> for KeyedJson<T> {
    const TYPES: &'static [ApiExtractorType] = <Json<T> as ApiExtractor<'a>>::TYPES;
    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut Registry) {
        <Json<T> as ApiExtractor<'a>>::register(registry);
    }

    fn request_meta() -> Option<MetaRequest> {
        <Json<T> as ApiExtractor<'a>>::request_meta()
    }

    async fn from_request(
        request: &'a Request,
        body: &mut RequestBody,
        options: ExtractParamOptions<()>,
    ) -> poem::Result<Self> {
        let fingerprint = if request.headers().contains_key(HEADER) {
            // Already in memory: `http::middleware::ReadBody` read it within its bounds.
            let bytes = body.take()?.into_bytes().await?;
            // The path under the API's prefix, as the client sent it (not the route template).
            let print = Fingerprint::of(request.method().as_str(), request.uri().path(), &bytes);
            *body = RequestBody::new(Body::from(bytes));
            Some(print)
        } else {
            None
        };
        let Json(value) =
            <Json<T> as ApiExtractor<'a>>::from_request(request, body, options).await?;
        Ok(Self { value, fingerprint })
    }
}

/// An operation's request as [`Keys::run`] sees it.
pub struct Keyed {
    operation: &'static str,
    key: Option<(IdempotencyKey, Fingerprint)>,
}

/// A success body of type `T`, as the exact bytes sent: the first answer and every replay are
/// the same bytes. In the document it is `T` as JSON, as [`Json<T>`] would be.
pub struct Answer<T> {
    body: Vec<u8>,
    of: PhantomData<fn() -> T>,
}

impl<T> Answer<T> {
    fn new(body: Vec<u8>) -> Self {
        Self {
            body,
            of: PhantomData,
        }
    }

    /// The bytes answered.
    pub fn bytes(&self) -> &[u8] {
        &self.body
    }
}

impl<T: Type> Payload for Answer<T> {
    const CONTENT_TYPE: &'static str = <Json<T> as Payload>::CONTENT_TYPE;

    fn check_content_type(content_type: &str) -> bool {
        <Json<T> as Payload>::check_content_type(content_type)
    }

    fn schema_ref() -> MetaSchemaRef {
        T::schema_ref()
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }
}

impl<T: Type> IntoResponse for Answer<T> {
    fn into_response(self) -> Response {
        Response::builder()
            .content_type(Self::CONTENT_TYPE)
            .body(self.body)
    }
}

/// The rule, with its configuration (`[idempotency]`).
#[derive(Debug, Clone, Copy)]
pub struct Keys {
    ttl: Duration,
    claim_timeout: Duration,
}

/// What the key's row says when this request could not claim it.
enum Found {
    /// Answered: the stored status and body.
    Done { status: i16, body: Vec<u8> },
    /// Its first request still runs (or ran less than `claim_timeout` ago).
    InFlight,
    /// Claimed longer than `claim_timeout` ago without an answer: this claim may take it over.
    Stale { claim: Uuid },
    /// The row went away between the two statements.
    Gone,
}

fn reused() -> ApiError {
    ApiError::Invalid(Invalid {
        field: IdempotencyKey::FIELD,
        message: "was first used with another request (method, path or body); a key names one \
                  request: send a new key for a new request"
            .into(),
    })
}

impl Keys {
    pub fn new(settings: &IdempotencySettings) -> Self {
        Self {
            ttl: settings.ttl,
            claim_timeout: settings.claim_timeout,
        }
    }

    /// Answers `request` with `status` and the body `write` returns, writing at most once per
    /// key: without a key, `write` runs on a pooled connection as it always did; with one, the
    /// key is claimed first and `write` runs in a transaction that also completes the key, or
    /// the stored answer is replayed, or the request is refused (409 in flight, 422 another
    /// request), as the module documentation says.
    pub async fn run<T: ToJSON>(
        &self,
        pool: &PgPool,
        request: Keyed,
        status: StatusCode,
        write: impl AsyncFnOnce(&mut PgConnection) -> Result<T, ApiError>,
    ) -> Result<Answer<T>, ApiError> {
        let mut conn = db::acquire(pool).await?;
        let Some((key, fingerprint)) = request.key else {
            let row = write(&mut *conn).await?;
            return Ok(Answer::new(body_of(&row)));
        };
        let op = request.operation;
        let claim = match self.claim(&mut conn, op, &key, fingerprint).await? {
            Ok(claim) => claim,
            Err(Replay { stored, body }) => {
                if i32::from(stored) != i32::from(status.as_u16()) {
                    return Err(ApiError::Internal(sqlx::Error::Protocol(format!(
                        "the stored answer of {op} has status {stored}; the operation answers {status}"
                    ))));
                }
                tracing::debug!(operation = op, "Idempotency-Key replayed");
                return Ok(Answer::new(body));
            }
        };
        let answered = self
            .write_and_complete(&mut conn, op, &key, claim, status, write)
            .await;
        if answered.is_err() {
            // Also after a commit that failed: had it landed, the key is done and stays.
            self.release(&mut conn, op, &key, claim).await;
        }
        answered
    }

    /// `write` and the key's completion under `claim`, in one transaction.
    async fn write_and_complete<T: ToJSON>(
        &self,
        conn: &mut PgConnection,
        op: &'static str,
        key: &IdempotencyKey,
        claim: Uuid,
        status: StatusCode,
        write: impl AsyncFnOnce(&mut PgConnection) -> Result<T, ApiError>,
    ) -> Result<Answer<T>, ApiError> {
        let mut tx = conn.begin().await?;
        let body = body_of(&write(&mut *tx).await?);
        let completed = sqlx::query!(
            "UPDATE idempotency_keys SET state = 'done', status = $4, response = $5
             WHERE operation = $1 AND key = $2 AND claim = $3 AND state = 'in_flight'",
            op,
            key.as_str(),
            claim,
            status.as_u16() as i16,
            &body,
        )
        .execute(&mut *tx)
        .instrument(db::query_span("idempotency.complete"))
        .await?
        .rows_affected();
        if completed == 0 {
            // Taken over by a retry after `claim_timeout`: that retry writes, not this one
            // (dropping `tx` rolls this write back).
            return Err(ApiError::KeyInFlight);
        }
        tx.commit().await?;
        Ok(Answer::new(body))
    }

    /// Claims the key for this request (a new claim id), or says what its row holds.
    async fn claim(
        &self,
        conn: &mut PgConnection,
        op: &'static str,
        key: &IdempotencyKey,
        fingerprint: Fingerprint,
    ) -> Result<Result<Uuid, Replay>, ApiError> {
        let mine = Uuid::new_v4();
        for _ in 0..CLAIM_ATTEMPTS {
            // A new key, or one past its expiry (replaced whole): claimed.
            let claimed = sqlx::query_scalar!(
                "INSERT INTO idempotency_keys (operation, key, fingerprint, claim, expires_at)
                 VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5))
                 ON CONFLICT (operation, key) DO UPDATE
                 SET fingerprint = EXCLUDED.fingerprint, state = 'in_flight',
                     claim = EXCLUDED.claim, status = NULL, response = NULL,
                     created_at = now(), claimed_at = now(), expires_at = EXCLUDED.expires_at
                 WHERE idempotency_keys.expires_at <= now()
                 RETURNING claim",
                op,
                key.as_str(),
                &fingerprint.0[..],
                mine,
                self.ttl.as_secs_f64(),
            )
            .fetch_optional(&mut *conn)
            .instrument(db::query_span("idempotency.claim"))
            .await?;
            if claimed.is_some() {
                return Ok(Ok(mine));
            }
            match self.find(conn, op, key, fingerprint).await? {
                Found::Done { status, body } => {
                    return Ok(Err(Replay {
                        stored: status,
                        body,
                    }));
                }
                Found::InFlight => return Err(ApiError::KeyInFlight),
                Found::Stale { claim } => {
                    let taken = sqlx::query_scalar!(
                        "UPDATE idempotency_keys SET claim = $4, claimed_at = now()
                         WHERE operation = $1 AND key = $2 AND claim = $3 AND state = 'in_flight'
                         RETURNING claim",
                        op,
                        key.as_str(),
                        claim,
                        mine,
                    )
                    .fetch_optional(&mut *conn)
                    .instrument(db::query_span("idempotency.take_over"))
                    .await?;
                    if taken.is_some() {
                        tracing::warn!(
                            operation = op,
                            "Idempotency-Key taken over: its first request claimed it over {} ago \
                             without answering",
                            crate::migrate::duration::render(self.claim_timeout)
                        );
                        return Ok(Ok(mine));
                    }
                }
                Found::Gone => {}
            }
        }
        Err(ApiError::KeyInFlight)
    }

    /// The row of a key this request could not claim; a different fingerprint is a 422.
    async fn find(
        &self,
        conn: &mut PgConnection,
        op: &'static str,
        key: &IdempotencyKey,
        fingerprint: Fingerprint,
    ) -> Result<Found, ApiError> {
        let row = sqlx::query!(
            r#"SELECT fingerprint, claim, status, response,
                      claimed_at <= now() - make_interval(secs => $3) AS "stale!"
               FROM idempotency_keys WHERE operation = $1 AND key = $2"#,
            op,
            key.as_str(),
            self.claim_timeout.as_secs_f64(),
        )
        .fetch_optional(&mut *conn)
        .instrument(db::query_span("idempotency.find"))
        .await?;
        let Some(row) = row else {
            return Ok(Found::Gone);
        };
        if row.fingerprint != fingerprint.0 {
            return Err(reused());
        }
        Ok(match (row.status, row.response) {
            (Some(status), Some(body)) => Found::Done { status, body },
            _ if row.stale => Found::Stale { claim: row.claim },
            _ => Found::InFlight,
        })
    }

    /// Gives the key up after a failed first attempt, so that a retry runs again. A release
    /// that fails (the connection is gone) leaves the key in flight until `claim_timeout`, when
    /// a retry takes it over: nothing was written either way.
    async fn release(
        &self,
        conn: &mut PgConnection,
        op: &'static str,
        key: &IdempotencyKey,
        claim: Uuid,
    ) {
        let released = sqlx::query!(
            "DELETE FROM idempotency_keys
             WHERE operation = $1 AND key = $2 AND claim = $3 AND state = 'in_flight'",
            op,
            key.as_str(),
            claim,
        )
        .execute(&mut *conn)
        .instrument(db::query_span("idempotency.release"))
        .await;
        if let Err(e) = released {
            tracing::warn!(
                operation = op,
                "Idempotency-Key not released after a failed request ({e}): retries get 409 until \
                 idempotency.claim_timeout, then run again"
            );
        }
    }
}

/// A stored answer to send again.
struct Replay {
    stored: i16,
    body: Vec<u8>,
}

/// The body as poem-openapi's `Json` would send it (`serde_json` of `to_json`).
fn body_of<T: ToJSON>(value: &T) -> Vec<u8> {
    serde_json::to_vec(&value.to_json()).unwrap_or_else(|_| b"null".to_vec())
}

/// Deletes the expired keys, in batches; returns how many.
pub async fn sweep(pool: &PgPool) -> Result<u64, sqlx::Error> {
    let mut deleted = 0;
    loop {
        let batch = sqlx::query!(
            "DELETE FROM idempotency_keys WHERE (operation, key) IN (
                 SELECT operation, key FROM idempotency_keys WHERE expires_at <= now()
                 ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED
             )",
            SWEEP_BATCH,
        )
        .execute(&mut *db::acquire(pool).await?)
        .instrument(db::query_span("idempotency.sweep"))
        .await?
        .rows_affected();
        deleted += batch;
        if batch < SWEEP_BATCH as u64 {
            return Ok(deleted);
        }
    }
}

/// Sweeps expired keys every `every` (the first at once), off the request path, until the task
/// is aborted (at shutdown). A failed sweep is a warning; the next one retries.
pub fn spawn_sweep(pool: PgPool, every: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            match sweep(&pool).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(deleted = n, "Deleted {n} expired idempotency key(s)"),
                Err(e) => tracing::warn!("Idempotency key sweep failed: {e}; retrying later"),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_cover_method_path_and_every_body_byte() {
        let base = Fingerprint::of("POST", "/api/v1/conversations", br#"{"title":"a"}"#);
        assert_eq!(
            base,
            Fingerprint::of("POST", "/api/v1/conversations", br#"{"title":"a"}"#)
        );
        for other in [
            Fingerprint::of("POST", "/api/v1/conversations", br#"{"title": "a"}"#),
            Fingerprint::of("PUT", "/api/v1/conversations", br#"{"title":"a"}"#),
            Fingerprint::of("POST", "/api/v1/conversation", br#"s{"title":"a"}"#),
        ] {
            assert_ne!(base, other);
        }
    }
}
