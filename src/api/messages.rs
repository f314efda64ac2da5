//! Messages of a conversation: append, list in order, get one.
//!
//! Sequence numbers are dense and strictly increasing per conversation under concurrent
//! appends: one statement bumps the conversation's `last_seq` (taking its row lock) and inserts
//! the message with the new value, so appends to one conversation serialise on that row and
//! each gets the next number.

use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use sqlx::PgPool;
use time::OffsetDateTime;
use tracing::Instrument;
use uuid::Uuid;

use super::error::{ApiError, ErrorResponse};
use super::idempotency::{Answer, KeyHeader, KeyedJson, Keys};
use super::json::{OptionalArray, RoleName};
use super::page::{self, Item, Page, PageSchema, Parent};
use super::{ApiKey, ApiTags};
use crate::db;
use crate::domain::{Content, Limit, Parts, Role, SeqCursor, ToolCallId};

/// A message in a conversation.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct Message {
    pub id: Uuid,
    pub conversation_id: Uuid,
    /// 1, 2, 3, … within the conversation, in append order.
    pub seq: i64,
    pub role: RoleName,
    pub content: String,
    /// Structured parts (a JSON array), if any, as stored: numbers exact at any precision, written
    /// out (`1e-3` as `0.001`); `JSON.parse` rounds them to doubles (see the API description).
    pub parts: OptionalArray,
    pub tool_call_id: Option<String>,
    pub created_at: OffsetDateTime,
}

/// Body of `POST /conversations/{id}/messages`. A `role` outside `Role` gets 422 naming it.
#[derive(Debug, Object)]
pub struct AppendMessage {
    pub role: Role,
    /// The text, 1–200000 characters.
    pub content: Content,
    /// Optional structured parts: a JSON array, at most 256 KiB as stored; numbers kept exactly at
    /// any precision (beyond PostgreSQL's numeric: 422); `JSON.parse` rounds them to doubles (see
    /// the API description).
    pub parts: Option<Parts>,
    /// For `tool` messages: the call this answers (1–200 characters, not only white space).
    pub tool_call_id: Option<ToolCallId>,
}

impl Item for Message {
    const PAGE: PageSchema =
        PageSchema::described("MessagePage", "One page of messages in sequence order.");

    fn cursor(&self) -> String {
        self.seq.to_string()
    }
}

#[derive(ApiResponse)]
pub enum Appended {
    #[oai(status = 201)]
    Created(Answer<Message>),
}

pub struct MessagesApi {
    pub pool: PgPool,
    pub keys: Keys,
}

type Result<T> = std::result::Result<T, ErrorResponse>;

#[OpenApi(tag = "ApiTags::Messages")]
impl MessagesApi {
    /// Append a message; it gets the conversation's next sequence number.
    #[oai(
        path = "/conversations/:id/messages",
        method = "post",
        operation_id = "appendMessage"
    )]
    async fn append(
        &self,
        _key: ApiKey,
        id: Path<Uuid>,
        /// Makes retries safe: the same key and body get the first answer, written once. See the
        /// API description.
        #[oai(name = "Idempotency-Key")]
        idempotency_key: KeyHeader,
        body: KeyedJson<AppendMessage>,
    ) -> Result<Appended> {
        let (
            AppendMessage {
                role,
                content,
                parts,
                tool_call_id,
            },
            keyed,
        ) = body.keyed("appendMessage", idempotency_key);
        let write = async move |conn: &mut sqlx::PgConnection| {
            let row = sqlx::query_as!(
                Message,
                r#"WITH c AS (
                   UPDATE conversations SET last_seq = last_seq + 1, updated_at = now()
                   WHERE id = $1 RETURNING id, last_seq
               )
               INSERT INTO messages (conversation_id, seq, role, content, parts, tool_call_id)
               SELECT c.id, c.last_seq, $2, $3, $4, $5 FROM c
               RETURNING id, conversation_id, seq, role, content, parts, tool_call_id, created_at"#,
                id.0,
                role.as_str(),
                content.as_str(),
                parts.map(Parts::into_value),
                tool_call_id.as_ref().map(ToolCallId::as_str),
            )
            .fetch_optional(conn)
            .instrument(db::query_span("messages.append"))
            .await?;
            row.ok_or(ApiError::NotFound("conversation"))
        };
        let answer = self
            .keys
            .run(&self.pool, keyed, poem::http::StatusCode::CREATED, write)
            .await?;
        Ok(Appended::Created(answer))
    }

    /// List a conversation's messages in sequence order.
    #[oai(
        path = "/conversations/:id/messages",
        method = "get",
        operation_id = "listMessages"
    )]
    async fn list(
        &self,
        _key: ApiKey,
        id: Path<Uuid>,
        /// Page size, 1–100 (default 20).
        limit: Query<Limit>,
        /// `next_cursor` of the previous page.
        cursor: Query<Option<SeqCursor>>,
    ) -> Result<Json<Page<Message>>> {
        let after = cursor.0.unwrap_or_default();
        let rows = sqlx::query_as!(
            Message,
            r#"SELECT id, conversation_id, seq, role, content, parts, tool_call_id, created_at
               FROM messages WHERE conversation_id = $1 AND seq > $2
               ORDER BY seq LIMIT $3"#,
            id.0,
            after.get(),
            page::fetch_size(limit.0),
        )
        .fetch_all(&mut *db::acquire(&self.pool).await?)
        .instrument(db::query_span("messages.list"))
        .await?;
        let parent = Parent::Conversation(id.0);
        let page = Page::under(parent, rows, limit.0, &self.pool, "messages.list").await?;
        Ok(Json(page))
    }

    /// Get one message of a conversation.
    #[oai(
        path = "/conversations/:id/messages/:message_id",
        method = "get",
        operation_id = "getMessage"
    )]
    async fn get(
        &self,
        _key: ApiKey,
        id: Path<Uuid>,
        message_id: Path<Uuid>,
    ) -> Result<Json<Message>> {
        sqlx::query_as!(
            Message,
            r#"SELECT id, conversation_id, seq, role, content, parts, tool_call_id, created_at
               FROM messages WHERE conversation_id = $1 AND id = $2"#,
            id.0,
            message_id.0,
        )
        .fetch_optional(&mut *db::acquire(&self.pool).await?)
        .instrument(db::query_span("messages.get"))
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound("message").into())
    }
}
