//! Keyset pages. A listing fetches [`fetch_size`] rows (one more than the page holds) after the
//! cursor; [`Page::new`] keeps `limit` of them and, when there was one more, names the last kept
//! item's cursor as `next_cursor`. A listing under a parent answers an empty page with 404 when
//! the parent does not exist ([`Page::under`]): a page with items proves it does, so the
//! question costs a query only when the page is empty.
//!
//! Every page has the schema `{ items: [T], next_cursor?: string }` under the name the document
//! has always given it (`ConversationPage`, …; [`Item::PAGE`]), which generated clients use.

use std::borrow::Cow;

use poem_openapi::registry::{MetaSchema, MetaSchemaRef, Registry};
use poem_openapi::types::{ToJSON, Type};
use serde_json::Value;
use sqlx::PgPool;
use tracing::Instrument;
use uuid::Uuid;

use super::error::ApiError;
use crate::db;
use crate::domain::Limit;

/// Something listed in pages.
pub trait Item: ToJSON {
    const PAGE: PageSchema;
    /// The cursor naming the position just after this item.
    fn cursor(&self) -> String;
}

/// How the document names and describes a page of some item.
pub struct PageSchema {
    pub name: &'static str,
    pub description: Option<&'static str>,
    /// The description of `next_cursor`, if the page has one.
    pub cursor: Option<&'static str>,
}

impl PageSchema {
    /// A page the document names but does not describe.
    pub const fn named(name: &'static str) -> Self {
        Self {
            name,
            description: None,
            cursor: None,
        }
    }

    /// A page the document describes, `next_cursor` included.
    pub const fn described(name: &'static str, description: &'static str) -> Self {
        Self {
            name,
            description: Some(description),
            cursor: Some("Pass as `cursor` for the next page; absent on the last page."),
        }
    }
}

/// Rows to fetch for a page of `limit` items: one more, to learn whether a next page exists.
pub fn fetch_size(limit: Limit) -> i64 {
    limit.get() + 1
}

/// One page of a listing.
#[derive(Debug)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T: Item> Page<T> {
    /// The page of a [`fetch_size`] fetch.
    pub fn new(mut rows: Vec<T>, limit: Limit) -> Self {
        let limit = usize::try_from(limit.get()).unwrap_or(usize::MAX);
        let next_cursor = if rows.len() > limit {
            rows.truncate(limit);
            rows.last().map(Item::cursor)
        } else {
            None
        };
        Self {
            items: rows,
            next_cursor,
        }
    }

    /// [`Page::new`] of a listing under `parent`: an empty page of a missing parent is its 404.
    pub async fn under(
        parent: Parent,
        rows: Vec<T>,
        limit: Limit,
        pool: &PgPool,
        operation: &'static str,
    ) -> Result<Self, ApiError> {
        if rows.is_empty() {
            parent.ensure_exists(pool, operation).await?;
        }
        Ok(Self::new(rows, limit))
    }
}

impl<T: Item> Type for Page<T> {
    const IS_REQUIRED: bool = true;
    own_raw_value!();

    fn name() -> Cow<'static, str> {
        T::PAGE.name.into()
    }

    fn schema_ref() -> MetaSchemaRef {
        MetaSchemaRef::Reference(T::PAGE.name.to_string())
    }

    /// The schema `#[derive(Object)]` gave each page struct.
    fn register(registry: &mut Registry) {
        registry.create_schema::<Self, _>(T::PAGE.name.to_string(), |registry| {
            <Vec<T>>::register(registry);
            <Option<String>>::register(registry);
            let described = |description: Option<&'static str>| MetaSchema {
                description,
                ..MetaSchema::ANY
            };
            MetaSchema {
                title: Some(T::PAGE.name.to_string()),
                description: T::PAGE.description,
                required: vec!["items"],
                properties: vec![
                    ("items", <Vec<T>>::schema_ref().merge(MetaSchema::ANY)),
                    (
                        "next_cursor",
                        <Option<String>>::schema_ref().merge(described(T::PAGE.cursor)),
                    ),
                ],
                ..MetaSchema::new("object")
            }
        });
    }
}

impl<T: Item> ToJSON for Page<T> {
    fn to_json(&self) -> Option<Value> {
        let mut page = serde_json::Map::new();
        page.insert("items".into(), self.items.to_json().unwrap_or_default());
        if let Some(cursor) = &self.next_cursor {
            page.insert("next_cursor".into(), Value::from(cursor.as_str()));
        }
        Some(Value::Object(page))
    }
}

/// The resource a listing belongs to.
#[derive(Debug, Clone, Copy)]
pub enum Parent {
    Conversation(Uuid),
    Artifact(Uuid),
}

impl Parent {
    /// Passes when the parent exists, else its 404. `operation` names the listing's query span.
    pub async fn ensure_exists(
        self,
        pool: &PgPool,
        operation: &'static str,
    ) -> Result<(), ApiError> {
        let mut conn = db::acquire(pool).await?;
        let (exists, what) = match self {
            Parent::Conversation(id) => (
                sqlx::query_scalar!(
                    r#"SELECT EXISTS (SELECT 1 FROM conversations WHERE id = $1) AS "e!""#,
                    id
                )
                .fetch_one(&mut *conn)
                .instrument(db::query_span(operation))
                .await?,
                "conversation",
            ),
            Parent::Artifact(id) => (
                sqlx::query_scalar!(
                    r#"SELECT EXISTS (SELECT 1 FROM ui_artifacts WHERE id = $1) AS "e!""#,
                    id
                )
                .fetch_one(&mut *conn)
                .instrument(db::query_span(operation))
                .await?,
                "artifact",
            ),
        };
        if exists {
            Ok(())
        } else {
            Err(ApiError::NotFound(what))
        }
    }
}
