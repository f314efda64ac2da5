//! `GET /conversations/{id}/events`: a conversation's changes as Server-Sent Events, replayed
//! from the log after the client's last id, then live, across instances.
//!
//! This module owns what the route means: the event types and their JSON (the same objects the
//! rest of the API returns), the log query, the resume rule (`Last-Event-ID`, else `?after=`,
//! else from the start of the log), and its refusals (404, 422 past the newest id, 503 over
//! `events.max_streams`). The stream's machinery (fan-out, listener, framing) is
//! `crate::events`.

use poem::IntoResponse;
use poem_openapi::param::{Header, Path, Query};
use poem_openapi::payload::Payload;
use poem_openapi::registry::{MetaSchema, MetaSchemaRef, Registry};
use poem_openapi::types::{ToJSON, Type};
use poem_openapi::{ApiResponse, Object, OpenApi, Union};
use sqlx::PgPool;
use time::OffsetDateTime;
use tracing::Instrument;
use uuid::Uuid;

use super::artifacts::Artifact;
use super::error::{ApiError, ErrorResponse};
use super::json::JsonObject;
use super::messages::Message;
use super::{ApiKey, ApiTags};
use crate::db;
use crate::domain::{Invalid, SeqCursor};
use crate::events::{self, Hub, stream};

/// A conversation as a `conversation.updated`, `conversation.archived` or
/// `conversation.unarchived` event left it.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct ConversationChange {
    pub id: Uuid,
    pub title: String,
    /// As stored (see the API description on numbers).
    pub metadata: JsonObject,
    pub archived: bool,
    pub archived_at: Option<OffsetDateTime>,
    pub updated_at: OffsetDateTime,
}

/// `conversation.deleted`: the last event of a stream; the conversation and its log are gone.
#[derive(Debug, Clone, Object)]
pub struct ConversationDeleted {
    pub id: Uuid,
}

/// The `data` of an event, by its `event` name: `message.created` → `Message`;
/// `artifact.created`, `artifact.updated` → `Artifact` (at the version the event made);
/// `conversation.updated`, `conversation.archived`, `conversation.unarchived` →
/// `ConversationChange`; `conversation.deleted` → `ConversationDeleted`. Each event's `id` is
/// its sequence number in the conversation.
#[derive(Debug, Clone, Union)]
#[oai(one_of)]
pub enum ConversationEvent {
    Message(Message),
    Artifact(Artifact),
    Conversation(ConversationChange),
    Deleted(ConversationDeleted),
}

/// The stream (`text/event-stream`). Its schema describes one event as an SSE parser hands it
/// over (OpenAPI 3.0 has no `itemSchema`: the media type's schema is read per event): `event`
/// (the name), `data` (one line of JSON, a `ConversationEvent`), `id` (the sequence number),
/// `retry`; heartbeat comments are not events.
pub struct EventStreamBody(poem::Body);

/// The event names, as `event:` sends them.
const EVENT_NAMES: [&str; 7] = [
    "message.created",
    "artifact.created",
    "artifact.updated",
    "conversation.updated",
    "conversation.archived",
    "conversation.unarchived",
    "conversation.deleted",
];

impl Payload for EventStreamBody {
    const CONTENT_TYPE: &'static str = "text/event-stream";

    fn schema_ref() -> MetaSchemaRef {
        let string = |description: &'static str| MetaSchema {
            description: Some(description),
            ..MetaSchema::new("string")
        };
        MetaSchemaRef::Inline(Box::new(MetaSchema {
            description: Some(
                "One Server-Sent Event. `data` is one line of JSON: the `ConversationEvent` \
                 its `event` names (see that schema).",
            ),
            required: vec!["event", "data"],
            properties: vec![
                (
                    "event",
                    MetaSchemaRef::Inline(Box::new(MetaSchema {
                        enum_items: EVENT_NAMES.iter().map(|n| (*n).into()).collect(),
                        ..string("The event's name.")
                    })),
                ),
                (
                    // On the wire a string of JSON; parsed, a `ConversationEvent`. OpenAPI 3.0
                    // has no `contentSchema` to say so: the `anyOf` names both (and keeps the
                    // event types in the document).
                    "data",
                    MetaSchemaRef::Inline(Box::new(MetaSchema {
                        description: Some(
                            "The event's JSON, one line: as an SSE parser hands it over a string, \
                             parsed a `ConversationEvent` (`ConversationDeleted` for \
                             `conversation.deleted`).",
                        ),
                        any_of: vec![
                            MetaSchemaRef::Inline(Box::new(MetaSchema::new("string"))),
                            ConversationEvent::schema_ref(),
                        ],
                        ..MetaSchema::ANY
                    })),
                ),
                (
                    "id",
                    MetaSchemaRef::Inline(Box::new(MetaSchema {
                        pattern: Some("^[1-9][0-9]{0,17}$".into()),
                        ..string(
                            "The event's sequence number in the conversation; send the last one \
                             as `Last-Event-ID` to resume.",
                        )
                    })),
                ),
                (
                    "retry",
                    MetaSchemaRef::Inline(Box::new(MetaSchema {
                        description: Some("Milliseconds to wait before reconnecting."),
                        ..MetaSchema::new("integer")
                    })),
                ),
            ],
            ..MetaSchema::new("object")
        }))
    }

    fn register(registry: &mut Registry) {
        ConversationEvent::register(registry);
    }
}

impl IntoResponse for EventStreamBody {
    fn into_response(self) -> poem::Response {
        poem::Response::builder()
            .content_type(Self::CONTENT_TYPE)
            .header("Cache-Control", "no-cache")
            // Proxies (nginx, Render's) pass each event on at once.
            .header("X-Accel-Buffering", "no")
            .body(self.0)
    }
}

#[derive(ApiResponse)]
pub enum Streamed {
    /// The events after the resume point, then live ones until the client or the server ends
    /// the stream.
    #[oai(status = 200)]
    Events(EventStreamBody),
}

pub struct EventsApi {
    pub pool: PgPool,
    pub hub: Hub,
}

type Result<T> = std::result::Result<T, ErrorResponse>;

#[OpenApi(tag = "ApiTags::Events")]
impl EventsApi {
    /// Stream a conversation's events (Server-Sent Events). Each event carries `id:` (its
    /// sequence number in the conversation: 1, 2, 3, … with no gaps a reader could skip),
    /// `event:` (its name) and `data:` (JSON, see `ConversationEvent`). To resume, send the last
    /// id received as `Last-Event-ID` (browsers' `EventSource` does so when it reconnects) or
    /// `?after=`: the stream replays every later event from the log, then goes live, with no
    /// duplicate and no gap. Without either it starts at the beginning of the log. A comment
    /// line arrives every `events.heartbeat` while idle; when the server shuts down it sends
    /// `retry:` and ends the stream, and the client resumes on another instance.
    #[oai(
        path = "/conversations/:id/events",
        method = "get",
        operation_id = "streamConversationEvents"
    )]
    async fn stream(
        &self,
        _key: ApiKey,
        id: Path<Uuid>,
        /// Resume after this event id (`Last-Event-ID` wins when both are sent).
        after: Query<Option<SeqCursor>>,
        /// The id of the last event received: the stream resumes after it.
        #[oai(name = "Last-Event-ID")]
        last_event_id: Header<Option<SeqCursor>>,
    ) -> Result<Streamed> {
        // Subscribed before anything is read: what lands from here on wakes the stream.
        let subscription = self.hub.subscribe(id.0).ok_or(ApiError::TooManyStreams)?;
        let newest = sqlx::query_scalar!(
            r#"SELECT coalesce(s.last_seq, 0) AS "newest!"
               FROM conversations c
               LEFT JOIN conversation_event_seqs s ON s.conversation_id = c.id
               WHERE c.id = $1"#,
            id.0
        )
        .fetch_optional(&mut *db::acquire(&self.pool).await?)
        .instrument(db::query_span("events.open"))
        .await?
        .ok_or(ApiError::NotFound("conversation"))?;
        let after = last_event_id.0.or(after.0).map_or(0, SeqCursor::get);
        if after > newest {
            return Err(ApiError::Invalid(Invalid {
                field: "after",
                message: format!(
                    "is past the conversation's newest event ({newest}): resume from an id this \
                     stream sent"
                ),
            })
            .into());
        }
        let log = Log {
            pool: self.pool.clone(),
        };
        let body = events::stream::body(subscription, log, id.0, after, self.hub.options());
        Ok(Streamed::Events(EventStreamBody(
            poem::Body::from_bytes_stream(body),
        )))
    }
}

/// The log, read through the request pool.
struct Log {
    pool: PgPool,
}

/// One row of the log with what its event shows.
struct Row {
    seq: i64,
    kind: String,
    created_at: OffsetDateTime,
    message_id: Option<Uuid>,
    message_seq: Option<i64>,
    role: Option<String>,
    content: Option<String>,
    parts: Option<serde_json::Value>,
    tool_call_id: Option<String>,
    message_created_at: Option<OffsetDateTime>,
    artifact_id: Option<Uuid>,
    artifact_kind: Option<String>,
    artifact_created_at: Option<OffsetDateTime>,
    version: Option<i32>,
    artifact_title: Option<String>,
    spec: Option<serde_json::Value>,
    version_created_at: Option<OffsetDateTime>,
    title: Option<String>,
    metadata: Option<serde_json::Value>,
    archived_at: Option<OffsetDateTime>,
}

impl Row {
    /// The event's data; `None` for a row whose columns do not fit its kind (written by hand).
    fn data(self, conversation: Uuid) -> Option<ConversationEvent> {
        Some(match self.kind.as_str() {
            "message.created" => ConversationEvent::Message(Message {
                id: self.message_id?,
                conversation_id: conversation,
                seq: self.message_seq?,
                role: self.role?.into(),
                content: self.content?,
                parts: self.parts.into(),
                tool_call_id: self.tool_call_id,
                created_at: self.message_created_at?,
            }),
            "artifact.created" | "artifact.updated" => ConversationEvent::Artifact(Artifact {
                id: self.artifact_id?,
                conversation_id: conversation,
                kind: self.artifact_kind?,
                title: self.artifact_title?,
                spec: self.spec?.into(),
                version: self.version?,
                created_at: self.artifact_created_at?,
                updated_at: self.version_created_at?,
            }),
            _ => ConversationEvent::Conversation(ConversationChange {
                id: conversation,
                title: self.title?,
                metadata: self.metadata?.into(),
                archived: self.archived_at.is_some(),
                archived_at: self.archived_at,
                updated_at: self.created_at,
            }),
        })
    }
}

impl stream::Log for Log {
    async fn after(
        &self,
        conversation: Uuid,
        seq: i64,
        limit: i64,
    ) -> std::result::Result<Vec<stream::Event>, sqlx::Error> {
        // An event whose message or artifact version was deleted outside the API is left out
        // (its id is not sent); the conversation's own deletion ends the stream.
        let rows = sqlx::query_as!(
            Row,
            r#"SELECT e.seq, e.kind, e.created_at,
                      m.id AS "message_id?", m.seq AS "message_seq?", m.role AS "role?",
                      m.content AS "content?", m.parts AS "parts?",
                      m.tool_call_id AS "tool_call_id?", m.created_at AS "message_created_at?",
                      v.artifact_id AS "artifact_id?", a.kind AS "artifact_kind?",
                      a.created_at AS "artifact_created_at?", v.version AS "version?",
                      v.title AS "artifact_title?", v.spec AS "spec?",
                      v.created_at AS "version_created_at?",
                      e.title, e.metadata, e.archived_at
               FROM conversation_events e
               LEFT JOIN messages m ON m.id = e.message_id
               LEFT JOIN ui_artifact_versions v
                      ON v.artifact_id = e.artifact_id AND v.version = e.artifact_version
               LEFT JOIN ui_artifacts a ON a.id = e.artifact_id
               WHERE e.conversation_id = $1 AND e.seq > $2
                 AND (e.message_id IS NULL OR m.id IS NOT NULL)
                 AND (e.artifact_id IS NULL OR a.id IS NOT NULL)
               ORDER BY e.seq
               LIMIT $3"#,
            conversation,
            seq,
            limit,
        )
        .fetch_all(&mut *db::acquire(&self.pool).await?)
        .instrument(db::query_span("events.read"))
        .await?;
        Ok(rows
            .into_iter()
            .filter_map(|row| {
                let (seq, name) = (row.seq, row.kind.clone());
                let data = row.data(conversation)?.to_json()?.to_string();
                Some(stream::Event { seq, name, data })
            })
            .collect())
    }

    async fn exists(&self, conversation: Uuid) -> std::result::Result<bool, sqlx::Error> {
        let found = sqlx::query_scalar!(
            r#"SELECT EXISTS (SELECT 1 FROM conversations WHERE id = $1) AS "found!""#,
            conversation
        )
        .fetch_one(&mut *db::acquire(&self.pool).await?)
        .instrument(db::query_span("events.exists"))
        .await?;
        Ok(found)
    }
}
