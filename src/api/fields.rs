//! The domain types as poem-openapi sees them: request fields and query parameters typed as
//! `crate::domain` values. The document's constraints (`maxLength`, `pattern`, `minimum`, the
//! `Role` enum) are the domain's [`Rule`]s, and parsing is the domain's `parse`: a handler
//! receives valid values and checks nothing.
//!
//! A value of the wrong JSON type fails as the type it replaces would (`String`, `i64`, a map
//! or a list: same name, same schema, same 400); a value the domain refuses is a 422 naming the
//! field ([`error::refuse`]).

use std::borrow::Cow;
use std::collections::BTreeMap;

use poem_openapi::registry::{MetaSchema, MetaSchemaRef, Registry};
use poem_openapi::types::{
    ParseError, ParseFromJSON, ParseFromParameter, ParseResult, ToJSON, Type,
};
use poem_openapi::validation::{MaxLength, Maximum, MinLength, Minimum, Pattern, ValidatorMeta};
use serde_json::Value;

use super::error::refuse;
use crate::domain::{
    Document, IdempotencyKey, JsonField, Limit, Role, Rule, SeqCursor, Shape, Text, TextField,
    TimeCursor,
};

/// Publishes `rules` in `schema`, as poem-openapi's validators of the same name would.
fn publish(rules: &[Rule], schema: &mut MetaSchema) {
    for rule in rules {
        match *rule {
            Rule::Maximum(n) => Maximum::new(n as f64, false).update_meta(schema),
            Rule::Minimum(n) => Minimum::new(n as f64, false).update_meta(schema),
            Rule::MaxLength(n) => MaxLength::new(n).update_meta(schema),
            Rule::MinLength(n) => MinLength::new(n).update_meta(schema),
            Rule::Pattern(p) => Pattern::new(p).update_meta(schema),
        }
    }
}

/// A type whose schema is `T`'s (by name and shape) with `rules` published in it.
fn constrained<T: Type>(rules: &[Rule]) -> MetaSchemaRef {
    let mut schema = match T::schema_ref() {
        MetaSchemaRef::Inline(schema) => *schema,
        reference => return reference,
    };
    publish(rules, &mut schema);
    MetaSchemaRef::Inline(Box::new(schema))
}

impl<F: TextField> Type for Text<F> {
    const IS_REQUIRED: bool = true;
    own_raw_value!();

    fn name() -> Cow<'static, str> {
        String::name()
    }

    fn schema_ref() -> MetaSchemaRef {
        constrained::<String>(F::RULES)
    }
}

impl<F: TextField> ParseFromJSON for Text<F> {
    fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
        let raw = String::parse_from_json(value).map_err(ParseError::propagate)?;
        Self::parse(&raw).map_err(refuse)
    }
}

impl<F: TextField> ToJSON for Text<F> {
    fn to_json(&self) -> Option<Value> {
        Some(Value::from(self.as_str()))
    }
}

impl<F: JsonField> Type for Document<F> {
    const IS_REQUIRED: bool = true;
    own_raw_value!();

    fn name() -> Cow<'static, str> {
        match F::SHAPE {
            Shape::Object => JsonMap::name(),
            Shape::Array => JsonList::name(),
        }
    }

    fn schema_ref() -> MetaSchemaRef {
        match F::SHAPE {
            Shape::Object => JsonMap::schema_ref(),
            Shape::Array => JsonList::schema_ref(),
        }
    }
}

/// What a document field was declared as before it had a domain type: its name and schema
/// (and so its 400 for the wrong JSON type) stay the same.
type JsonMap = BTreeMap<String, Value>;
type JsonList = Vec<Value>;

impl<F: JsonField> ParseFromJSON for Document<F> {
    fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
        let value = match F::SHAPE {
            Shape::Object => JsonMap::parse_from_json(value)
                .map(|map| Value::Object(map.into_iter().collect()))
                .map_err(ParseError::propagate)?,
            Shape::Array => JsonList::parse_from_json(value)
                .map(Value::Array)
                .map_err(ParseError::propagate)?,
        };
        Self::parse(value).map_err(refuse)
    }
}

impl<F: JsonField> ToJSON for Document<F> {
    fn to_json(&self) -> Option<Value> {
        Some(self.as_value().clone())
    }
}

impl Type for Role {
    const IS_REQUIRED: bool = true;
    own_raw_value!();

    fn name() -> Cow<'static, str> {
        "Role".into()
    }

    fn schema_ref() -> MetaSchemaRef {
        MetaSchemaRef::Reference(Self::name().into_owned())
    }

    fn register(registry: &mut Registry) {
        registry.create_schema::<Self, _>(Self::name().into_owned(), |_| MetaSchema {
            description: Some("Who wrote a message."),
            enum_items: Role::ALL.iter().map(|r| Value::from(r.as_str())).collect(),
            ..MetaSchema::new("string")
        });
    }
}

/// Read as a string first: a role of the wrong JSON type is malformed (400), an unknown one
/// is refused by the domain (422 naming the field).
impl ParseFromJSON for Role {
    fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
        let raw = String::parse_from_json(value).map_err(ParseError::propagate)?;
        Self::parse(&raw).map_err(refuse)
    }
}

impl ToJSON for Role {
    fn to_json(&self) -> Option<Value> {
        Some(Value::from(self.as_str()))
    }
}

/// Optional: an absent `limit` is the default page size.
impl Type for Limit {
    const IS_REQUIRED: bool = false;
    own_raw_value!();

    fn name() -> Cow<'static, str> {
        <Option<i64>>::name()
    }

    fn schema_ref() -> MetaSchemaRef {
        constrained::<i64>(Self::RULES)
    }
}

/// Read as the `Option<i64>` it replaces (same 400 for a non-number), then refused or not by
/// the domain.
impl ParseFromParameter for Limit {
    fn parse_from_parameter(value: &str) -> ParseResult<Self> {
        Self::parse_from_parameters([value])
    }

    fn parse_from_parameters<I: IntoIterator<Item = A>, A: AsRef<str>>(
        values: I,
    ) -> ParseResult<Self> {
        match <Option<i64>>::parse_from_parameters(values).map_err(ParseError::propagate)? {
            Some(n) => Self::parse(n).map_err(refuse),
            None => Ok(Self::default()),
        }
    }
}

/// Declares a cursor: a string parameter of the cursor's pattern, parsed by the domain.
macro_rules! cursor_parameter {
    ($cursor:ty) => {
        impl Type for $cursor {
            const IS_REQUIRED: bool = true;
            own_raw_value!();

            fn name() -> Cow<'static, str> {
                String::name()
            }

            fn schema_ref() -> MetaSchemaRef {
                constrained::<String>(Self::RULES)
            }
        }

        impl ParseFromParameter for $cursor {
            fn parse_from_parameter(value: &str) -> ParseResult<Self> {
                Self::parse(value).map_err(refuse)
            }
        }
    };
}

cursor_parameter!(TimeCursor);
cursor_parameter!(SeqCursor);

/// A string header of the key's rules; read by `api::idempotency::KeyHeader`, which sees the
/// header's bytes (poem-openapi's `Header` drops a value that is not visible ASCII).
impl Type for IdempotencyKey {
    const IS_REQUIRED: bool = false;
    own_raw_value!();

    fn name() -> Cow<'static, str> {
        String::name()
    }

    fn schema_ref() -> MetaSchemaRef {
        constrained::<String>(Self::RULES)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The domain words a refusal as poem-openapi's validators word theirs, so a refused value
    /// reads the same whichever checked it (the `version` field is still checked by one).
    #[test]
    fn rules_read_as_poem_openapi_validators() {
        let samples: [(Rule, String); 5] = [
            (Rule::Maximum(100), Maximum::new(100.0, false).to_string()),
            (Rule::Minimum(1), Minimum::new(1.0, false).to_string()),
            (Rule::MaxLength(200), MaxLength::new(200).to_string()),
            (Rule::MinLength(1), MinLength::new(1).to_string()),
            (Rule::Pattern(r"\S"), Pattern::new(r"\S").to_string()),
        ];
        for (rule, theirs) in samples {
            assert_eq!(rule.to_string(), theirs);
        }
    }
}
