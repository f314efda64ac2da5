//! UI artifacts (components, forms, charts the agent renders) with optimistic concurrency: an
//! update names the version it was based on (`If-Match: "3"` or `"version": 3`); a stale one
//! gets 412 (If-Match) or 409 (body) and changes nothing. Every version stays readable.

use poem_openapi::param::{Header, Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use sqlx::PgPool;
use time::OffsetDateTime;
use tracing::Instrument;
use uuid::Uuid;

use super::error::{ApiError, ErrorResponse};
use super::idempotency::{Answer, KeyHeader, KeyedJson, Keys};
use super::json::JsonObject;
use super::page::{self, Item, Page, PageSchema, Parent};
use super::{ApiKey, ApiTags};
use crate::db;
use crate::domain::{ArtifactKind, ArtifactSpec, Limit, SeqCursor, TimeCursor, Title};

/// A UI artifact at its current version.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct Artifact {
    pub id: Uuid,
    pub conversation_id: Uuid,
    /// What the client renders: `chart`, `form`, `table`, …
    pub kind: String,
    pub title: String,
    /// The component's specification (a JSON object), as stored: numbers exact at any precision,
    /// written out (`1e-3` as `0.001`); `JSON.parse` rounds them to doubles (see the API
    /// description).
    pub spec: JsonObject,
    /// Starts at 1; each update adds 1. Also the ETag.
    pub version: i32,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

/// One stored version of an artifact.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct ArtifactVersion {
    pub artifact_id: Uuid,
    pub version: i32,
    pub title: String,
    /// The specification of this version, as stored: numbers exact at any precision, written out
    /// (`1e-3` as `0.001`); `JSON.parse` rounds them to doubles (see the API description).
    pub spec: JsonObject,
    pub created_at: OffsetDateTime,
}

/// Body of `POST /conversations/{id}/artifacts`.
#[derive(Debug, Object)]
pub struct NewArtifact {
    /// 1–64 characters: letters, digits, `-`, `_`, `.`.
    pub kind: ArtifactKind,
    /// 1–200 characters, not only white space (trimmed).
    pub title: Title,
    /// The component's specification: a JSON object, at most 256 KiB as stored; numbers kept
    /// exactly at any precision (beyond PostgreSQL's numeric: 422); `JSON.parse` rounds them to
    /// doubles (see the API description).
    pub spec: ArtifactSpec,
}

/// Body of `PATCH /artifacts/{id}`.
#[derive(Debug, Object)]
pub struct ArtifactUpdate {
    pub title: Option<Title>,
    /// The new specification: at most 256 KiB as stored; numbers kept exactly at any precision
    /// (beyond PostgreSQL's numeric: 422); `JSON.parse` rounds them to doubles (see the API
    /// description).
    pub spec: Option<ArtifactSpec>,
    /// The version this update is based on (or send `If-Match`).
    #[oai(validator(minimum(value = "1")))]
    pub version: Option<i32>,
}

impl Item for Artifact {
    const PAGE: PageSchema = PageSchema::named("ArtifactPage");

    fn cursor(&self) -> String {
        TimeCursor::encode(self.created_at, self.id)
    }
}

impl Item for ArtifactVersion {
    const PAGE: PageSchema = PageSchema::named("ArtifactVersionPage");

    fn cursor(&self) -> String {
        self.version.to_string()
    }
}

#[derive(ApiResponse)]
pub enum Created {
    #[oai(status = 201)]
    Created(Answer<Artifact>, #[oai(header = "ETag")] String),
}

#[derive(ApiResponse)]
pub enum Current {
    #[oai(status = 200)]
    Ok(Json<Artifact>, #[oai(header = "ETag")] String),
}

/// An artifact's ETag is its version: `"3"`.
fn etag(row: Artifact) -> (Json<Artifact>, String) {
    let tag = format!("\"{}\"", row.version);
    (Json(row), tag)
}

impl Created {
    /// The created artifact as answered (first or replayed), its ETag read from that answer.
    fn artifact(answer: Answer<Artifact>) -> Self {
        #[derive(serde::Deserialize)]
        struct Version {
            version: i32,
        }
        let version = serde_json::from_slice::<Version>(answer.bytes()).map_or(1, |v| v.version);
        Self::Created(answer, format!("\"{version}\""))
    }
}

impl Current {
    fn artifact(row: Artifact) -> Self {
        let (body, tag) = etag(row);
        Self::Ok(body, tag)
    }
}

/// `"3"`, `W/"3"` or `3` → `Some(3)`; `*` → `None` (any version).
fn parse_if_match(raw: &str) -> std::result::Result<Option<i32>, ApiError> {
    let raw = raw.trim();
    if raw == "*" {
        return Ok(None);
    }
    let raw = raw.strip_prefix("W/").unwrap_or(raw);
    raw.trim_matches('"')
        .parse::<i32>()
        .ok()
        .filter(|v| *v > 0)
        .map(Some)
        .ok_or(ApiError::BadIfMatch)
}

pub struct ArtifactsApi {
    pub pool: PgPool,
    pub keys: Keys,
}

type Result<T> = std::result::Result<T, ErrorResponse>;

#[OpenApi(tag = "ApiTags::Artifacts")]
impl ArtifactsApi {
    /// Create an artifact in a conversation (version 1).
    #[oai(
        path = "/conversations/:id/artifacts",
        method = "post",
        operation_id = "createArtifact"
    )]
    async fn create(
        &self,
        _key: ApiKey,
        id: Path<Uuid>,
        /// Makes retries safe: the same key and body get the first answer, written once. See the
        /// API description.
        #[oai(name = "Idempotency-Key")]
        idempotency_key: KeyHeader,
        body: KeyedJson<NewArtifact>,
    ) -> Result<Created> {
        let (NewArtifact { kind, title, spec }, keyed) =
            body.keyed("createArtifact", idempotency_key);
        let write = async move |conn: &mut sqlx::PgConnection| {
            sqlx::query_as!(
                Artifact,
                r#"WITH a AS (
                   INSERT INTO ui_artifacts (conversation_id, kind, title, spec)
                   SELECT id, $2, $3, $4 FROM conversations WHERE id = $1
                   RETURNING id, conversation_id, kind, title, spec, version, created_at, updated_at
               ), v AS (
                   INSERT INTO ui_artifact_versions (artifact_id, version, title, spec)
                   SELECT id, version, title, spec FROM a
               )
               SELECT id AS "id!", conversation_id AS "conversation_id!", kind AS "kind!",
                      title AS "title!", spec AS "spec!", version AS "version!",
                      created_at AS "created_at!", updated_at AS "updated_at!"
               FROM a"#,
                id.0,
                kind.as_str(),
                title.as_str(),
                spec.into_value(),
            )
            .fetch_optional(conn)
            .instrument(db::query_span("artifacts.create"))
            .await?
            .ok_or(ApiError::NotFound("conversation"))
        };
        let answer = self
            .keys
            .run(&self.pool, keyed, poem::http::StatusCode::CREATED, write)
            .await?;
        Ok(Created::artifact(answer))
    }

    /// List a conversation's artifacts, oldest first.
    #[oai(
        path = "/conversations/:id/artifacts",
        method = "get",
        operation_id = "listArtifacts"
    )]
    async fn list(
        &self,
        _key: ApiKey,
        id: Path<Uuid>,
        /// Page size, 1–100 (default 20).
        limit: Query<Limit>,
        /// `next_cursor` of the previous page.
        cursor: Query<Option<TimeCursor>>,
    ) -> Result<Json<Page<Artifact>>> {
        let after = cursor.0;
        let rows = sqlx::query_as!(
            Artifact,
            r#"SELECT id, conversation_id, kind, title, spec, version, created_at, updated_at
               FROM ui_artifacts
               WHERE conversation_id = $1
                 AND ($2::timestamptz IS NULL OR (created_at, id) > ($2, $3::uuid))
               ORDER BY created_at, id LIMIT $4"#,
            id.0,
            after.map(|c| c.created_at),
            after.map(|c| c.id),
            page::fetch_size(limit.0),
        )
        .fetch_all(&mut *db::acquire(&self.pool).await?)
        .instrument(db::query_span("artifacts.list"))
        .await?;
        let parent = Parent::Conversation(id.0);
        let page = Page::under(parent, rows, limit.0, &self.pool, "artifacts.list").await?;
        Ok(Json(page))
    }

    /// Get an artifact at its current version (`ETag` carries the version).
    #[oai(path = "/artifacts/:id", method = "get", operation_id = "getArtifact")]
    async fn get(&self, _key: ApiKey, id: Path<Uuid>) -> Result<Current> {
        sqlx::query_as!(
            Artifact,
            "SELECT id, conversation_id, kind, title, spec, version, created_at, updated_at
             FROM ui_artifacts WHERE id = $1",
            id.0
        )
        .fetch_optional(&mut *db::acquire(&self.pool).await?)
        .instrument(db::query_span("artifacts.get"))
        .await?
        .map(Current::artifact)
        .ok_or_else(|| ApiError::NotFound("artifact").into())
    }

    /// Update an artifact's title and/or spec, based on a known version (`If-Match` or
    /// `version`; neither → 428). Stores a new version.
    #[oai(
        path = "/artifacts/:id",
        method = "patch",
        operation_id = "updateArtifact"
    )]
    async fn update(
        &self,
        _key: ApiKey,
        id: Path<Uuid>,
        /// The version the update is based on, e.g. `"3"` (the `ETag` of a previous read).
        #[oai(name = "If-Match")]
        if_match: Header<Option<String>>,
        body: Json<ArtifactUpdate>,
        req: &poem::Request,
    ) -> Result<Current> {
        // A value that is not visible ASCII never reaches `if_match`: refuse it rather than
        // update as if no precondition had been sent.
        if req
            .headers()
            .get_all(poem::http::header::IF_MATCH)
            .iter()
            .any(|v| v.to_str().is_err())
        {
            return Err(ApiError::BadIfMatch.into());
        }
        // An empty If-Match is no precondition at all.
        let if_match = if_match.0.filter(|v| !v.trim().is_empty());
        let via_if_match = if_match.is_some();
        let expected = match if_match.as_deref() {
            Some(raw) => parse_if_match(raw)?,
            None => Some(body.version.ok_or(ApiError::PreconditionRequired)?),
        };
        let ArtifactUpdate { title, spec, .. } = body.0;
        let row = sqlx::query_as!(
            Artifact,
            r#"WITH a AS (
                   UPDATE ui_artifacts
                   SET title = coalesce($3, title), spec = coalesce($4, spec),
                       version = version + 1, updated_at = now()
                   WHERE id = $1 AND ($2::int IS NULL OR version = $2)
                   RETURNING id, conversation_id, kind, title, spec, version, created_at, updated_at
               ), v AS (
                   INSERT INTO ui_artifact_versions (artifact_id, version, title, spec)
                   SELECT id, version, title, spec FROM a
               )
               SELECT id AS "id!", conversation_id AS "conversation_id!", kind AS "kind!",
                      title AS "title!", spec AS "spec!", version AS "version!",
                      created_at AS "created_at!", updated_at AS "updated_at!"
               FROM a"#,
            id.0,
            expected,
            title.as_ref().map(Title::as_str),
            spec.map(ArtifactSpec::into_value),
        )
        .fetch_optional(&mut *db::acquire(&self.pool).await?)
        .instrument(db::query_span("artifacts.update"))
        .await?;
        if let Some(row) = row {
            return Ok(Current::artifact(row));
        }
        let current = sqlx::query_scalar!("SELECT version FROM ui_artifacts WHERE id = $1", id.0)
            .fetch_optional(&mut *db::acquire(&self.pool).await?)
            .instrument(db::query_span("artifacts.update"))
            .await?;
        Err(match current {
            None => ApiError::NotFound("artifact"),
            Some(current) => ApiError::VersionConflict {
                current,
                via_if_match,
            },
        }
        .into())
    }

    /// List every stored version of an artifact, oldest first.
    #[oai(
        path = "/artifacts/:id/versions",
        method = "get",
        operation_id = "listArtifactVersions"
    )]
    async fn versions(
        &self,
        _key: ApiKey,
        id: Path<Uuid>,
        /// Page size, 1–100 (default 20).
        limit: Query<Limit>,
        /// `next_cursor` of the previous page.
        cursor: Query<Option<SeqCursor>>,
    ) -> Result<Json<Page<ArtifactVersion>>> {
        let after = cursor.0.unwrap_or_default();
        let rows = sqlx::query_as!(
            ArtifactVersion,
            "SELECT artifact_id, version, title, spec, created_at FROM ui_artifact_versions
             WHERE artifact_id = $1 AND version > $2 ORDER BY version LIMIT $3",
            id.0,
            i32::try_from(after.get()).unwrap_or(i32::MAX),
            page::fetch_size(limit.0),
        )
        .fetch_all(&mut *db::acquire(&self.pool).await?)
        .instrument(db::query_span("artifacts.versions"))
        .await?;
        let parent = Parent::Artifact(id.0);
        let page = Page::under(parent, rows, limit.0, &self.pool, "artifacts.versions").await?;
        Ok(Json(page))
    }

    /// Get one stored version of an artifact.
    #[oai(
        path = "/artifacts/:id/versions/:version",
        method = "get",
        operation_id = "getArtifactVersion"
    )]
    async fn version(
        &self,
        _key: ApiKey,
        id: Path<Uuid>,
        version: Path<i32>,
    ) -> Result<Json<ArtifactVersion>> {
        sqlx::query_as!(
            ArtifactVersion,
            "SELECT artifact_id, version, title, spec, created_at FROM ui_artifact_versions
             WHERE artifact_id = $1 AND version = $2",
            id.0,
            version.0,
        )
        .fetch_optional(&mut *db::acquire(&self.pool).await?)
        .instrument(db::query_span("artifacts.version"))
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound("artifact version").into())
    }
}

#[cfg(test)]
mod tests {
    use super::parse_if_match;

    #[test]
    fn if_match_forms() {
        assert_eq!(parse_if_match("\"3\"").ok(), Some(Some(3)));
        assert_eq!(parse_if_match("W/\"3\"").ok(), Some(Some(3)));
        assert_eq!(parse_if_match("*").ok(), Some(None));
        assert!(parse_if_match("\"abc\"").is_err());
        assert!(parse_if_match("0").is_err());
    }
}
