//! Validated values of the product API. Request data is parsed into these once, at the edge;
//! a value of one of these types is valid by construction. Failures are [`Invalid`]: the field
//! and what is wrong, which the API answers with 422.

use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

/// A field that failed validation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct Invalid {
    pub field: &'static str,
    pub message: String,
}

fn invalid(field: &'static str, message: impl Into<String>) -> Invalid {
    Invalid {
        field,
        message: message.into(),
    }
}

/// PostgreSQL stores no NUL character in `text` or `jsonb`: refuse it up front (422) rather
/// than let the database fail the statement.
fn no_nul(field: &'static str, text: &str) -> Result<(), Invalid> {
    if text.contains('\0') {
        return Err(invalid(field, "must not contain NUL characters (\\u0000)"));
    }
    Ok(())
}

/// Whether a JSON document holds a NUL character in any key or string.
fn json_has_nul(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(json_has_nul),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || json_has_nul(v)),
        _ => false,
    }
}

/// A JSON document of bounded size without NUL characters.
fn bounded_json(field: &'static str, value: &Value) -> Result<(), Invalid> {
    if json_has_nul(value) {
        return Err(invalid(field, "must not contain NUL characters (\\u0000)"));
    }
    if json_size(value) > DOCUMENT_MAX_BYTES {
        return Err(invalid(
            field,
            format!("is larger than {DOCUMENT_MAX_BYTES} bytes"),
        ));
    }
    Ok(())
}

/// Non-empty (after trimming) text of at most `max` characters.
fn bounded_text(field: &'static str, raw: &str, max: usize) -> Result<String, Invalid> {
    no_nul(field, raw)?;
    let text = raw.trim();
    if text.is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    let len = text.chars().count();
    if len > max {
        return Err(invalid(
            field,
            format!("is {len} characters long; at most {max}"),
        ));
    }
    Ok(text.to_string())
}

/// Serialized size of a JSON value, for bounding stored documents.
fn json_size(value: &Value) -> usize {
    serde_json::to_vec(value).map_or(usize::MAX, |v| v.len())
}

pub const TITLE_MAX: usize = 200;
pub const KIND_MAX: usize = 64;
pub const TOOL_CALL_ID_MAX: usize = 200;
pub const CONTENT_MAX: usize = 200_000;
pub const DOCUMENT_MAX_BYTES: usize = 256 * 1024;

/// A conversation or artifact title.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Title(String);

impl Title {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        bounded_text("title", raw, TITLE_MAX).map(Self)
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Conversation metadata: a JSON object of bounded size.
#[derive(Debug, Clone, PartialEq)]
pub struct Metadata(Value);

impl Metadata {
    pub fn parse(value: Value) -> Result<Self, Invalid> {
        if !value.is_object() {
            return Err(invalid("metadata", "must be a JSON object"));
        }
        bounded_json("metadata", &value)?;
        Ok(Self(value))
    }
    pub fn empty() -> Self {
        Self(Value::Object(serde_json::Map::new()))
    }
    pub fn into_value(self) -> Value {
        self.0
    }
}

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    User,
    Assistant,
    System,
    Tool,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::User, Role::Assistant, Role::System, Role::Tool];

    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        match raw {
            "user" => Ok(Role::User),
            "assistant" => Ok(Role::Assistant),
            "system" => Ok(Role::System),
            "tool" => Ok(Role::Tool),
            other => Err(invalid(
                "role",
                format!("{other:?} is not one of user, assistant, system, tool"),
            )),
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::System => "system",
            Role::Tool => "tool",
        }
    }
}

/// A message to append: role, text, optional structured parts, optional tool call id.
#[derive(Debug, Clone, PartialEq)]
pub struct NewMessage {
    pub role: Role,
    pub content: String,
    pub parts: Option<Value>,
    pub tool_call_id: Option<String>,
}

impl NewMessage {
    pub fn parse(
        role: &str,
        content: &str,
        parts: Option<Value>,
        tool_call_id: Option<&str>,
    ) -> Result<Self, Invalid> {
        let role = Role::parse(role)?;
        if content.is_empty() {
            return Err(invalid("content", "must not be empty"));
        }
        no_nul("content", content)?;
        let len = content.chars().count();
        if len > CONTENT_MAX {
            return Err(invalid(
                "content",
                format!("is {len} characters long; at most {CONTENT_MAX}"),
            ));
        }
        let parts = match parts {
            None | Some(Value::Null) => None,
            Some(p @ Value::Array(_)) => {
                bounded_json("parts", &p)?;
                Some(p)
            }
            Some(_) => return Err(invalid("parts", "must be a JSON array")),
        };
        let tool_call_id = tool_call_id
            .map(|id| bounded_text("tool_call_id", id, TOOL_CALL_ID_MAX))
            .transpose()?;
        Ok(Self {
            role,
            content: content.to_string(),
            parts,
            tool_call_id,
        })
    }
}

/// An artifact kind ("chart", "form", …): a short identifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kind(String);

impl Kind {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let kind = bounded_text("kind", raw, KIND_MAX)?;
        if !kind
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(invalid(
                "kind",
                "may hold only letters, digits, '-', '_' and '.'",
            ));
        }
        Ok(Self(kind))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An artifact's spec: any JSON document except `null`, of bounded size.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec(Value);

impl Spec {
    pub fn parse(value: Value) -> Result<Self, Invalid> {
        if value.is_null() {
            return Err(invalid("spec", "must not be null"));
        }
        bounded_json("spec", &value)?;
        Ok(Self(value))
    }
    pub fn into_value(self) -> Value {
        self.0
    }
}

/// Page size: 1..=100, default 20.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit(i64);

impl Limit {
    pub const DEFAULT: i64 = 20;
    pub const MAX: i64 = 100;

    pub fn parse(raw: Option<i64>) -> Result<Self, Invalid> {
        match raw.unwrap_or(Self::DEFAULT) {
            n @ 1..=Self::MAX => Ok(Self(n)),
            n => Err(invalid(
                "limit",
                format!("{n} is out of range 1..={}", Self::MAX),
            )),
        }
    }
    pub fn get(self) -> i64 {
        self.0
    }
}

/// Why a cursor was refused: it is opaque, so this is the client's error (400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid cursor: pass back the next_cursor of a previous page unchanged")]
pub struct BadCursor;

/// Position after an item ordered by `(created_at, id)`: `<unix micros hex>.<uuid>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeCursor {
    pub created_at: OffsetDateTime,
    pub id: Uuid,
}

impl TimeCursor {
    pub fn encode(created_at: OffsetDateTime, id: Uuid) -> String {
        let micros = created_at.unix_timestamp_nanos() / 1000;
        format!("{micros:x}.{}", id.simple())
    }

    pub fn parse(raw: Option<&str>) -> Result<Option<Self>, BadCursor> {
        let Some(raw) = raw else { return Ok(None) };
        let (micros, id) = raw.split_once('.').ok_or(BadCursor)?;
        if micros.is_empty() || micros.len() > 16 {
            return Err(BadCursor);
        }
        let micros = i128::from_str_radix(micros, 16).map_err(|_| BadCursor)?;
        // A well-formed cursor beyond the representable range just points past everything.
        let created_at = OffsetDateTime::from_unix_timestamp_nanos(micros * 1000)
            .unwrap_or(time::PrimitiveDateTime::MAX.assume_utc());
        let id = Uuid::try_parse(id).map_err(|_| BadCursor)?;
        Ok(Some(Self { created_at, id }))
    }
}

/// Position after a message sequence number.
pub fn parse_seq_cursor(raw: Option<&str>) -> Result<i64, BadCursor> {
    match raw {
        None => Ok(0),
        Some(s) => s.parse::<i64>().ok().filter(|n| *n >= 0).ok_or(BadCursor),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn titles_are_trimmed_non_empty_and_bounded() {
        assert_eq!(
            Title::parse("  Hello ").map(|t| t.as_str().to_string()),
            Ok("Hello".into())
        );
        assert_eq!(Title::parse("   ").unwrap_err().field, "title");
        assert!(Title::parse(&"é".repeat(TITLE_MAX)).is_ok());
        assert!(Title::parse(&"é".repeat(TITLE_MAX + 1)).is_err());
    }

    #[test]
    fn messages_need_a_known_role_text_and_array_parts() {
        assert!(NewMessage::parse("user", "hi", None, None).is_ok());
        assert_eq!(
            NewMessage::parse("robot", "hi", None, None)
                .unwrap_err()
                .field,
            "role"
        );
        assert_eq!(
            NewMessage::parse("user", "", None, None).unwrap_err().field,
            "content"
        );
        let parts = Some(json!({"not": "an array"}));
        assert_eq!(
            NewMessage::parse("user", "hi", parts, None)
                .unwrap_err()
                .field,
            "parts"
        );
        let ok = NewMessage::parse("tool", "x", Some(json!([{"type": "text"}])), Some("call_1"))
            .unwrap();
        assert_eq!(ok.tool_call_id.as_deref(), Some("call_1"));
    }

    #[test]
    fn limits_and_cursors() {
        assert_eq!(Limit::parse(None).unwrap().get(), 20);
        assert!(Limit::parse(Some(0)).is_err());
        assert!(Limit::parse(Some(101)).is_err());
        let at = OffsetDateTime::from_unix_timestamp_nanos(1_700_000_000_123_456_000).unwrap();
        let id = Uuid::new_v4();
        let cursor = TimeCursor::encode(at, id);
        assert_eq!(
            TimeCursor::parse(Some(&cursor)),
            Ok(Some(TimeCursor { created_at: at, id }))
        );
        assert_eq!(TimeCursor::parse(Some("zz.nope")), Err(BadCursor));
        let far = format!("ffffffffffffffff.{}", Uuid::nil().simple());
        assert!(TimeCursor::parse(Some(&far)).unwrap().is_some());
        assert_eq!(parse_seq_cursor(Some("-1")), Err(BadCursor));
    }

    #[test]
    fn nul_characters_are_refused_everywhere() {
        assert_eq!(Title::parse("a\0b").unwrap_err().field, "title");
        assert_eq!(
            NewMessage::parse("user", "a\0", None, None)
                .unwrap_err()
                .field,
            "content"
        );
        assert!(Metadata::parse(json!({ "k\0": 1 })).is_err());
        assert!(Metadata::parse(json!({ "k": ["\0"] })).is_err());
        assert!(Spec::parse(json!({ "a": { "b": "x\0" } })).is_err());
    }

    #[test]
    fn metadata_must_be_an_object() {
        assert!(Metadata::parse(json!({"a": 1})).is_ok());
        assert!(Metadata::parse(json!([1])).is_err());
        assert!(Spec::parse(json!(null)).is_err());
        assert!(Kind::parse("bar-chart").is_ok());
        assert!(Kind::parse("bar chart").is_err());
    }
}
