//! Conversations: create, list (newest first, cursor pages, archived filter), get, patch,
//! archive/unarchive, delete (messages and artifacts go with it).

use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use sqlx::PgPool;
use time::OffsetDateTime;
use tracing::Instrument;
use uuid::Uuid;

use super::error::{ApiError, ErrorResponse};
use super::idempotency::{Answer, KeyHeader, KeyedJson, Keys};
use super::json::JsonObject;
use super::page::{self, Item, Page, PageSchema};
use super::{ApiKey, ApiTags};
use crate::db;
use crate::domain::{Limit, Metadata, TimeCursor, Title};

/// A conversation between a user and the agent.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct Conversation {
    pub id: Uuid,
    pub title: String,
    /// Free-form JSON object for the client, as stored: numbers exact at any precision, written out
    /// (`1e-3` as `0.001`); `JSON.parse` rounds them to doubles (see the API description).
    pub metadata: JsonObject,
    pub archived: bool,
    pub archived_at: Option<OffsetDateTime>,
    /// Number of messages (also the sequence number of the newest one).
    pub message_count: i64,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

/// Body of `POST /conversations`.
#[derive(Debug, Object)]
pub struct NewConversation {
    /// 1–200 characters, not only white space (trimmed).
    pub title: Title,
    /// A JSON object (default `{}`), at most 256 KiB as stored; numbers kept exactly at any
    /// precision (beyond PostgreSQL's numeric: 422); `JSON.parse` rounds them to doubles (see the
    /// API description).
    pub metadata: Option<Metadata>,
}

/// Body of `PATCH /conversations/{id}`: the fields to change.
#[derive(Debug, Object)]
pub struct ConversationPatch {
    pub title: Option<Title>,
    /// Replaces the metadata object: at most 256 KiB as stored; numbers kept exactly at any
    /// precision (beyond PostgreSQL's numeric: 422); `JSON.parse` rounds them to doubles (see the
    /// API description).
    pub metadata: Option<Metadata>,
}

impl Item for Conversation {
    const PAGE: PageSchema = PageSchema::described(
        "ConversationPage",
        "One page of conversations, newest first.",
    );

    fn cursor(&self) -> String {
        TimeCursor::encode(self.created_at, self.id)
    }
}

#[derive(ApiResponse)]
pub enum Created {
    #[oai(status = 201)]
    Created(Answer<Conversation>),
}

#[derive(ApiResponse)]
pub enum Deleted {
    /// Deleted, with its messages and artifacts.
    #[oai(status = 204)]
    Deleted,
}

pub struct ConversationsApi {
    pub pool: PgPool,
    pub keys: Keys,
}

type Result<T> = std::result::Result<T, ErrorResponse>;

fn not_found() -> ErrorResponse {
    ApiError::NotFound("conversation").into()
}

#[OpenApi(tag = "ApiTags::Conversations")]
impl ConversationsApi {
    /// Create a conversation.
    #[oai(
        path = "/conversations",
        method = "post",
        operation_id = "createConversation"
    )]
    async fn create(
        &self,
        _key: ApiKey,
        /// Makes retries safe: the same key and body get the first answer, written once. See the
        /// API description.
        #[oai(name = "Idempotency-Key")]
        idempotency_key: KeyHeader,
        body: KeyedJson<NewConversation>,
    ) -> Result<Created> {
        let (NewConversation { title, metadata }, keyed) =
            body.keyed("createConversation", idempotency_key);
        let metadata = metadata.unwrap_or_else(Metadata::empty);
        let write = async move |conn: &mut sqlx::PgConnection| {
            let row = sqlx::query_as!(
                Conversation,
                r#"INSERT INTO conversations (title, metadata) VALUES ($1, $2)
               RETURNING id, title, metadata, archived_at IS NOT NULL AS "archived!", archived_at,
                         last_seq AS message_count, created_at, updated_at"#,
                title.as_str(),
                metadata.into_value(),
            )
            .fetch_one(conn)
            .instrument(db::query_span("conversations.create"))
            .await?;
            Ok(row)
        };
        let answer = self
            .keys
            .run(&self.pool, keyed, poem::http::StatusCode::CREATED, write)
            .await?;
        Ok(Created::Created(answer))
    }

    /// List conversations, newest first.
    #[oai(
        path = "/conversations",
        method = "get",
        operation_id = "listConversations"
    )]
    async fn list(
        &self,
        _key: ApiKey,
        /// Page size, 1–100 (default 20).
        limit: Query<Limit>,
        /// `next_cursor` of the previous page.
        cursor: Query<Option<TimeCursor>>,
        /// `true`: only archived; `false`: only active; absent: all.
        archived: Query<Option<bool>>,
    ) -> Result<Json<Page<Conversation>>> {
        let after = cursor.0;
        let rows = sqlx::query_as!(
            Conversation,
            r#"SELECT id, title, metadata, archived_at IS NOT NULL AS "archived!", archived_at,
                      last_seq AS message_count, created_at, updated_at
               FROM conversations
               WHERE ($1::bool IS NULL OR (archived_at IS NOT NULL) = $1)
                 AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3::uuid))
               ORDER BY created_at DESC, id DESC
               LIMIT $4"#,
            archived.0,
            after.map(|c| c.created_at),
            after.map(|c| c.id),
            page::fetch_size(limit.0),
        )
        .fetch_all(&mut *db::acquire(&self.pool).await?)
        .instrument(db::query_span("conversations.list"))
        .await?;
        Ok(Json(Page::new(rows, limit.0)))
    }

    /// Get one conversation.
    #[oai(
        path = "/conversations/:id",
        method = "get",
        operation_id = "getConversation"
    )]
    async fn get(&self, _key: ApiKey, id: Path<Uuid>) -> Result<Json<Conversation>> {
        sqlx::query_as!(
            Conversation,
            r#"SELECT id, title, metadata, archived_at IS NOT NULL AS "archived!", archived_at,
                      last_seq AS message_count, created_at, updated_at
               FROM conversations WHERE id = $1"#,
            id.0
        )
        .fetch_optional(&mut *db::acquire(&self.pool).await?)
        .instrument(db::query_span("conversations.get"))
        .await?
        .map(Json)
        .ok_or_else(not_found)
    }

    /// Change the title and/or replace the metadata.
    #[oai(
        path = "/conversations/:id",
        method = "patch",
        operation_id = "updateConversation"
    )]
    async fn patch(
        &self,
        _key: ApiKey,
        id: Path<Uuid>,
        body: Json<ConversationPatch>,
    ) -> Result<Json<Conversation>> {
        let ConversationPatch { title, metadata } = body.0;
        sqlx::query_as!(
            Conversation,
            r#"UPDATE conversations
               SET title = coalesce($2, title), metadata = coalesce($3, metadata), updated_at = now()
               WHERE id = $1
               RETURNING id, title, metadata, archived_at IS NOT NULL AS "archived!", archived_at,
                         last_seq AS message_count, created_at, updated_at"#,
            id.0,
            title.as_ref().map(Title::as_str),
            metadata.map(Metadata::into_value),
        )
        .fetch_optional(&mut *db::acquire(&self.pool).await?)
        .instrument(db::query_span("conversations.patch"))
        .await?
        .map(Json)
        .ok_or_else(not_found)
    }

    /// Archive a conversation (idempotent).
    #[oai(
        path = "/conversations/:id/archive",
        method = "post",
        operation_id = "archiveConversation"
    )]
    async fn archive(&self, _key: ApiKey, id: Path<Uuid>) -> Result<Json<Conversation>> {
        self.set_archived(id.0, true).await
    }

    /// Unarchive a conversation (idempotent).
    #[oai(
        path = "/conversations/:id/unarchive",
        method = "post",
        operation_id = "unarchiveConversation"
    )]
    async fn unarchive(&self, _key: ApiKey, id: Path<Uuid>) -> Result<Json<Conversation>> {
        self.set_archived(id.0, false).await
    }

    /// Delete a conversation with its messages and artifacts.
    #[oai(
        path = "/conversations/:id",
        method = "delete",
        operation_id = "deleteConversation"
    )]
    async fn delete(&self, _key: ApiKey, id: Path<Uuid>) -> Result<Deleted> {
        let deleted =
            sqlx::query_scalar!("DELETE FROM conversations WHERE id = $1 RETURNING id", id.0)
                .fetch_optional(&mut *db::acquire(&self.pool).await?)
                .instrument(db::query_span("conversations.delete"))
                .await?;
        deleted.map(|_| Deleted::Deleted).ok_or_else(not_found)
    }
}

impl ConversationsApi {
    async fn set_archived(&self, id: Uuid, archived: bool) -> Result<Json<Conversation>> {
        sqlx::query_as!(
            Conversation,
            r#"UPDATE conversations
               SET archived_at = CASE WHEN $2 THEN coalesce(archived_at, now()) END,
                   updated_at = now()
               WHERE id = $1
               RETURNING id, title, metadata, archived_at IS NOT NULL AS "archived!", archived_at,
                         last_seq AS message_count, created_at, updated_at"#,
            id,
            archived,
        )
        .fetch_optional(&mut *db::acquire(&self.pool).await?)
        .instrument(db::query_span("conversations.set_archived"))
        .await?
        .map(Json)
        .ok_or_else(not_found)
    }
}
