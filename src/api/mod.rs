//! The product API under `/api/v1` (poem-openapi): conversations, messages, UI artifacts.
//! `/openapi.json` serves its OpenAPI 3 document and `/docs` an interactive UI.
//!
//! Requests arrive as `crate::domain` types ([`fields`] shows them to poem-openapi: the document's
//! constraints and the check are the domain's), so handlers check nothing; they run
//! compile-time-checked queries (`sqlx::query!` family, offline data in `.sqlx/`), list in keyset
//! [`page`]s, and answer errors through [`error::ErrorResponse`].
//!
//! Auth is enforced in one place, the `BearerAuth` middleware around `/api/v1`
//! (`http::middleware`). The document declares it: every operation takes an [`ApiKey`]
//! argument, which puts the bearer scheme in `components.securitySchemes` and the operation's
//! `security`, so `/docs` offers "Authorize" and generated clients know to send the key. The
//! argument checks nothing itself.

/// The part of poem-openapi's [`Type`](poem_openapi::types::Type) the API's hand-written types
/// have alike: each is its own raw value (what a field validator would check; none has one).
macro_rules! own_raw_value {
    () => {
        type RawValueType = Self;
        type RawElementValueType = Self;

        fn as_raw_value(&self) -> Option<&Self> {
            Some(self)
        }

        fn raw_element_iter<'a>(&'a self) -> Box<dyn Iterator<Item = &'a Self> + 'a> {
            Box::new(std::iter::once(self))
        }
    };
}

pub mod artifacts;
pub mod conversations;
pub mod error;
pub mod events;
pub mod fields;
pub mod idempotency;
pub mod json;
pub mod messages;
pub mod page;

use poem::{Request, RequestBody};
use poem_openapi::auth::Bearer;
use poem_openapi::registry::Registry;
use poem_openapi::{
    ApiExtractor, ApiExtractorType, ExtractParamOptions, OpenApiService, SecurityScheme, Tags,
};
use sqlx::PgPool;

#[derive(Tags)]
pub enum ApiTags {
    /// Conversations between a user and the agent.
    Conversations,
    /// Messages of a conversation.
    Messages,
    /// Components, forms and charts the agent renders, with their versions.
    Artifacts,
    /// A conversation's changes as they happen (Server-Sent Events), resumable.
    Events,
}

/// An API key, sent as `Authorization: Bearer <key>`. Required in production, where the server
/// starts only with keys configured (`API_KEYS`, at least 16 characters each); in development and
/// test the API is open when no keys are configured. A missing or unknown key gets 401 with a
/// problem body. The health checks, `/openapi.json` and `/docs` never need it.
#[derive(SecurityScheme)]
#[oai(rename = "ApiKey", ty = "bearer")]
#[expect(
    dead_code,
    reason = "only the declaration is used: the derive's extractor, which would refuse a \
              request without the header even where no keys are configured, never runs"
)]
struct BearerScheme(Bearer);

/// Declares on an operation that it needs the bearer key (`security: [{"ApiKey": []}]`).
/// Checks nothing: the `BearerAuth` middleware has already let the request in, or answered
/// 401, and in development without keys there is nothing to check.
pub struct ApiKey;

impl<'a> ApiExtractor<'a> for ApiKey {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::SecurityScheme];
    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut Registry) {
        BearerScheme::register(registry);
    }

    fn security_schemes() -> Vec<&'static str> {
        BearerScheme::security_schemes()
    }

    async fn from_request(
        _request: &'a Request,
        _body: &mut RequestBody,
        _options: ExtractParamOptions<()>,
    ) -> poem::Result<Self> {
        Ok(ApiKey)
    }
}

pub type Apis = (
    conversations::ConversationsApi,
    messages::MessagesApi,
    artifacts::ArtifactsApi,
    events::EventsApi,
);

/// Where the API is mounted (the document's `servers`).
pub const PREFIX: &str = "/api/v1";

/// Every path the API serves (the document's template, `/conversations/{id}`) with its
/// methods, from the operations themselves.
pub fn paths() -> Vec<(String, Vec<poem::http::Method>)> {
    let mut paths: Vec<(String, Vec<poem::http::Method>)> = Vec::new();
    for path in <Apis as poem_openapi::OpenApi>::meta()
        .into_iter()
        .flat_map(|api| api.paths)
    {
        let methods = path.operations.into_iter().map(|op| op.method);
        match paths.iter_mut().find(|(p, _)| *p == path.path) {
            Some((_, known)) => known.extend(methods),
            None => paths.push((path.path, methods.collect())),
        }
    }
    paths
}

/// The OpenAPI service for [`PREFIX`]; event streams register with `hub`.
pub fn service(
    pool: PgPool,
    idempotency: &crate::config::IdempotencySettings,
    hub: crate::events::Hub,
) -> OpenApiService<Apis, ()> {
    let keys = idempotency::Keys::new(idempotency);
    OpenApiService::new(
        (
            conversations::ConversationsApi {
                pool: pool.clone(),
                keys,
            },
            messages::MessagesApi {
                pool: pool.clone(),
                keys,
            },
            artifacts::ArtifactsApi {
                pool: pool.clone(),
                keys,
            },
            events::EventsApi { pool, hub },
        ),
        "agent-backend",
        env!("CARGO_PKG_VERSION"),
    )
    .description(
        "API of the UI agent product. Authentication: every operation declares the `ApiKey` \
         bearer scheme, `Authorization: Bearer <key>`; the server requires it in production and, \
         in development and test, only when API keys are configured. Errors are RFC 9457 \
         `application/problem+json`.\n\n\
         JSON documents (`metadata`, `spec`, `parts`) keep every number exactly, at any \
         precision: PostgreSQL's `jsonb` stores it as `numeric`, and it reads back as the same \
         value, written out (`1E+2` as `100`, `1e-3` as `0.001`, `1.50` as `1.50`, `-0` as \
         `0`). Key order, white space and duplicate keys (the last one wins) are not kept. A \
         number `numeric` cannot hold (over 131072 digits before the point or 16383 after it, \
         e.g. `1e200000`) is refused with 422 naming the field, and so is a document over \
         256 KiB as stored (compact JSON, numbers written out). JavaScript's `JSON.parse` (and \
         so `response.json()`) reads every number as a double: integers beyond 2^53 and long \
         decimals lose digits there, not here; a client that needs them parses the body text \
         with a lossless JSON parser.\n\n\
         Retries: the creating POSTs (a conversation, a message, an artifact) take an optional \
         `Idempotency-Key` header (1–255 printable ASCII characters). A retry with the same key \
         and the same request (method, path and body bytes) gets the first answer, status and \
         body byte for byte, and writes nothing; the same key with another request is 422; a \
         retry while the first request still runs is 409 with `Retry-After`. A failed first \
         attempt (4xx, 5xx) keeps nothing, so its retry runs again. Keys are kept per operation \
         for the server's `idempotency.ttl` after their first use (24 hours by default).",
    )
    .server(PREFIX)
}
