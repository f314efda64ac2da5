//! The product API under `/api/v1` (poem-openapi): conversations, messages, UI artifacts.
//! `/openapi.json` serves its OpenAPI 3 document and `/docs` an interactive UI.
//!
//! Handlers parse input into `crate::domain` types, run compile-time-checked queries
//! (`sqlx::query!` family, offline data in `.sqlx/`), and answer errors through
//! [`error::ErrorResponse`].

pub mod artifacts;
pub mod conversations;
pub mod error;
pub mod messages;

use std::collections::BTreeMap;

use poem_openapi::{OpenApiService, Tags};
use serde_json::Value;
use sqlx::PgPool;

#[derive(Tags)]
pub enum ApiTags {
    /// Conversations between a user and the agent.
    Conversations,
    /// Messages of a conversation.
    Messages,
    /// Components, forms and charts the agent renders, with their versions.
    Artifacts,
}

pub type Apis = (
    conversations::ConversationsApi,
    messages::MessagesApi,
    artifacts::ArtifactsApi,
);

/// The OpenAPI service for `/api/v1`.
pub fn service(pool: PgPool) -> OpenApiService<Apis, ()> {
    OpenApiService::new(
        (
            conversations::ConversationsApi { pool: pool.clone() },
            messages::MessagesApi { pool: pool.clone() },
            artifacts::ArtifactsApi { pool },
        ),
        "agent-backend",
        env!("CARGO_PKG_VERSION"),
    )
    .description(
        "API of the UI agent product. Authentication: `Authorization: Bearer <key>` when API keys \
         are configured (always in production). Errors are RFC 9457 `application/problem+json`.",
    )
    .server("/api/v1")
}

/// A JSON object received as a typed map, back as a `Value` for storage.
fn object(map: BTreeMap<String, Value>) -> Value {
    Value::Object(map.into_iter().collect())
}
