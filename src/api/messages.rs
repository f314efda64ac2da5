//! Messages of a conversation: append, list in order, get one.
//!
//! Sequence numbers are dense and strictly increasing per conversation under concurrent
//! appends: one statement bumps the conversation's `last_seq` (taking its row lock) and inserts
//! the message with the new value, so appends to one conversation serialise on that row and
//! each gets the next number.

use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use serde_json::Value;
use sqlx::PgPool;
use time::OffsetDateTime;
use tracing::Instrument;
use uuid::Uuid;

use super::error::{ApiError, ErrorResponse};
use super::json::{OptionalArray, RoleName};
use super::{ApiKey, ApiTags};
use crate::db;
use crate::domain::{Limit, NewMessage, parse_seq_cursor};

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
    /// Structured parts (a JSON array), if any.
    pub parts: OptionalArray,
    pub tool_call_id: Option<String>,
    pub created_at: OffsetDateTime,
}

/// Body of `POST /conversations/{id}/messages`. A `role` outside `Role` gets 422 naming it.
#[derive(Debug, Object)]
pub struct AppendMessage {
    pub role: RoleName,
    /// The text, 1–200000 characters.
    #[oai(validator(min_length = 1, max_length = 200000))]
    pub content: String,
    /// Optional structured parts: a JSON array, at most 256 KiB.
    pub parts: Option<Vec<Value>>,
    /// For `tool` messages: the call this answers (1–200 characters, not only white space).
    #[oai(validator(min_length = 1, max_length = 200, pattern = r"\S"))]
    pub tool_call_id: Option<String>,
}

/// One page of messages in sequence order.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct MessagePage {
    pub items: Vec<Message>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

#[derive(ApiResponse)]
pub enum Appended {
    #[oai(status = 201)]
    Created(Json<Message>),
}

pub struct MessagesApi {
    pub pool: PgPool,
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
        body: Json<AppendMessage>,
    ) -> Result<Appended> {
        let AppendMessage {
            role,
            content,
            parts,
            tool_call_id,
        } = body.0;
        let m = NewMessage::parse(
            &role.0,
            &content,
            parts.map(Value::Array),
            tool_call_id.as_deref(),
        )?;
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
            m.role.as_str(),
            m.content,
            m.parts,
            m.tool_call_id,
        )
        .fetch_optional(&mut *db::acquire(&self.pool).await?)
        .instrument(db::query_span("messages.append"))
        .await?;
        row.map(|r| Appended::Created(Json(r)))
            .ok_or_else(|| ApiError::NotFound("conversation").into())
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
        #[oai(validator(minimum(value = "1"), maximum(value = "100")))]
        limit: Query<Option<i64>>,
        /// `next_cursor` of the previous page.
        #[oai(validator(pattern = "^[0-9]{1,18}$"))]
        cursor: Query<Option<String>>,
    ) -> Result<Json<MessagePage>> {
        let limit = Limit::parse(limit.0)?;
        let after = parse_seq_cursor(cursor.0.as_deref())?;
        let mut items = sqlx::query_as!(
            Message,
            r#"SELECT id, conversation_id, seq, role, content, parts, tool_call_id, created_at
               FROM messages WHERE conversation_id = $1 AND seq > $2
               ORDER BY seq LIMIT $3"#,
            id.0,
            after,
            limit.get() + 1,
        )
        .fetch_all(&mut *db::acquire(&self.pool).await?)
        .instrument(db::query_span("messages.list"))
        .await?;
        if items.is_empty() {
            let exists = sqlx::query_scalar!(
                r#"SELECT EXISTS (SELECT 1 FROM conversations WHERE id = $1) AS "e!""#,
                id.0
            )
            .fetch_one(&mut *db::acquire(&self.pool).await?)
            .instrument(db::query_span("messages.list"))
            .await?;
            if !exists {
                return Err(ApiError::NotFound("conversation").into());
            }
        }
        let limit = usize::try_from(limit.get()).unwrap_or(usize::MAX);
        let next_cursor = (items.len() > limit).then(|| {
            items.truncate(limit);
            items.last().map(|m| m.seq.to_string())
        });
        Ok(Json(MessagePage {
            items,
            next_cursor: next_cursor.flatten(),
        }))
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
