//! Values the API returns as they were stored, declared in the document with the shape the
//! database guarantees (its CHECK constraints and the domain checks): a client generated from
//! `/openapi.json` gets `{ [key: string]: unknown }` for a JSON object, `unknown[]` for the
//! parts array and a union of the four roles, not `unknown` and `string`.
//!
//! Each converts from the column's type (`query_as!` calls `.into()`), so the queries and
//! `.sqlx/` are unchanged, and serialises exactly as the value it wraps.

use std::borrow::Cow;

use poem_openapi::registry::{MetaSchema, MetaSchemaRef, Registry};
use poem_openapi::types::{ParseError, ParseFromJSON, ParseResult, ToJSON, Type};
use serde_json::Value;

use crate::domain::Role;

fn any() -> Box<MetaSchemaRef> {
    Box::new(MetaSchemaRef::Inline(Box::new(MetaSchema::ANY)))
}

/// A JSON object (`metadata`, `spec`): `type: object`, any properties.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonObject(pub Value);

impl From<Value> for JsonObject {
    fn from(value: Value) -> Self {
        Self(value)
    }
}

impl Type for JsonObject {
    const IS_REQUIRED: bool = true;
    own_raw_value!();

    fn name() -> Cow<'static, str> {
        "object".into()
    }

    fn schema_ref() -> MetaSchemaRef {
        MetaSchemaRef::Inline(Box::new(MetaSchema {
            additional_properties: Some(any()),
            ..MetaSchema::new("object")
        }))
    }
}

impl ParseFromJSON for JsonObject {
    fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
        match value {
            Some(v @ Value::Object(_)) => Ok(Self(v)),
            other => Err(ParseError::expected_type(other.unwrap_or_default())),
        }
    }
}

impl ToJSON for JsonObject {
    fn to_json(&self) -> Option<Value> {
        Some(self.0.clone())
    }
}

/// A message's optional `parts`: a JSON array, absent when the message has none.
#[derive(Debug, Clone, PartialEq)]
pub struct OptionalArray(pub Option<Value>);

impl From<Option<Value>> for OptionalArray {
    fn from(value: Option<Value>) -> Self {
        Self(value)
    }
}

impl Type for OptionalArray {
    const IS_REQUIRED: bool = false;
    own_raw_value!();

    fn name() -> Cow<'static, str> {
        "array".into()
    }

    fn schema_ref() -> MetaSchemaRef {
        MetaSchemaRef::Inline(Box::new(MetaSchema {
            items: Some(any()),
            ..MetaSchema::new("array")
        }))
    }

    fn is_none(&self) -> bool {
        self.0.is_none()
    }
}

impl ParseFromJSON for OptionalArray {
    fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
        match value {
            None | Some(Value::Null) => Ok(Self(None)),
            Some(v @ Value::Array(_)) => Ok(Self(Some(v))),
            Some(other) => Err(ParseError::expected_type(other)),
        }
    }
}

impl ToJSON for OptionalArray {
    fn to_json(&self) -> Option<Value> {
        self.0.clone()
    }
}

/// A message's role as stored, declared as the domain's `Role` enum (`user`, `assistant`,
/// `system`, `tool`): the database's CHECK constraint keeps it one of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleName(pub String);

impl From<String> for RoleName {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl Type for RoleName {
    const IS_REQUIRED: bool = true;
    own_raw_value!();

    fn name() -> Cow<'static, str> {
        Role::name()
    }

    fn schema_ref() -> MetaSchemaRef {
        Role::schema_ref()
    }

    fn register(registry: &mut Registry) {
        Role::register(registry);
    }
}

impl ParseFromJSON for RoleName {
    fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
        String::parse_from_json(value)
            .map(Self)
            .map_err(ParseError::propagate)
    }
}

impl ToJSON for RoleName {
    fn to_json(&self) -> Option<Value> {
        Some(Value::String(self.0.clone()))
    }
}
