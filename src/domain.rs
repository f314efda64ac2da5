//! Validated values of the product API. Request data is parsed into these once, at the edge;
//! a value of one of these types is valid by construction. Failures are [`Invalid`]: the field
//! and what is wrong, which the API answers with 422.
//!
//! Each type owns its rules, and they are written only here: the constraints the OpenAPI
//! document publishes for it ([`Rule`], in JSON Schema's terms: lengths, patterns, ranges) and
//! those it cannot publish (no NUL character, surrounding white space dropped, a bounded JSON
//! size). `api::fields` shows these types to poem-openapi, which takes the document's
//! constraints from the same [`Rule`]s these types check.

use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;
use std::sync::{LazyLock, Mutex, PoisonError};

use regex::Regex;
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

/// A constraint the API document publishes for a field, named by its JSON Schema keyword.
/// A value that breaks one is refused in the same words ("does not satisfy maxLength(200)"),
/// the words poem-openapi's own validators use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    Maximum(i64),
    Minimum(i64),
    /// At most this many characters.
    MaxLength(usize),
    /// At least this many characters.
    MinLength(usize),
    /// A regular expression the text must match somewhere (anchor it to match all of it).
    Pattern(&'static str),
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rule::Maximum(n) => write!(f, "maximum({n}, exclusive: false)"),
            Rule::Minimum(n) => write!(f, "minimum({n}, exclusive: false)"),
            Rule::MaxLength(n) => write!(f, "maxLength({n})"),
            Rule::MinLength(n) => write!(f, "minLength({n})"),
            Rule::Pattern(p) => write!(f, "pattern(\"{p}\")"),
        }
    }
}

impl Rule {
    fn admits_text(self, text: &str) -> bool {
        match self {
            Rule::MaxLength(n) => text.chars().nth(n).is_none(),
            Rule::MinLength(n) => text.chars().count() >= n,
            Rule::Pattern(pattern) => matches(pattern, text),
            Rule::Maximum(_) | Rule::Minimum(_) => true,
        }
    }

    fn admits_number(self, n: i64) -> bool {
        match self {
            Rule::Maximum(max) => n <= max,
            Rule::Minimum(min) => n >= min,
            Rule::MaxLength(_) | Rule::MinLength(_) | Rule::Pattern(_) => true,
        }
    }

    /// The first of `rules` that `admits` refuses, as the field's refusal.
    fn check(
        field: &'static str,
        rules: &[Rule],
        admits: impl Fn(Rule) -> bool,
    ) -> Result<(), Invalid> {
        match rules.iter().find(|rule| !admits(**rule)) {
            Some(rule) => Err(invalid(field, format!("does not satisfy {rule}"))),
            None => Ok(()),
        }
    }
}

/// Whether `text` matches `pattern`; each pattern is compiled once.
fn matches(pattern: &'static str, text: &str) -> bool {
    static COMPILED: LazyLock<Mutex<HashMap<&'static str, Regex>>> = LazyLock::new(Mutex::default);
    let regex = COMPILED
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .entry(pattern)
        .or_insert_with(|| Regex::new(pattern).expect("the rules' patterns are valid (tested)"))
        .clone();
    regex.is_match(text)
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

/// Serialized size of a JSON value, as sent (compact).
fn json_size(value: &Value) -> usize {
    serde_json::to_vec(value).map_or(usize::MAX, |v| v.len())
}

/// `jsonb` stores every number as PostgreSQL's `numeric`, exactly, which holds at most this many
/// digits before the decimal point…
const NUMERIC_MAX_INTEGER_DIGITS: i64 = 131_072;
/// …and this many after it (its display scale)…
const NUMERIC_MAX_SCALE: i64 = 16_383;
/// …and whose input refuses an exponent of this magnitude or more before anything else
/// (`INT_MAX / 2`), even on a zero.
const NUMERIC_MAX_EXPONENT: i64 = 1_073_741_823;

/// The length of a JSON number as PostgreSQL gives it back from `jsonb`: `numeric` writes the
/// exponent out (`1.5e3` → `1500`, `1e-3` → `0.001`), keeps the digits after the point
/// (`1.50` stays `1.50`, `1.50e1` is `15.0`) and has no negative zero (`-0` → `0`); the value
/// is the same. `None` when `numeric` cannot hold it, and PostgreSQL would refuse the document.
/// `number` is the number as read: serde_json's `arbitrary_precision` keeps the client's digits,
/// spelling an exponent `e+5` or `e-5`.
fn stored_number_len(number: &str) -> Option<usize> {
    let (negative, unsigned) = match number.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, number),
    };
    let (mantissa, exponent) = match unsigned.split_once(['e', 'E']) {
        // An exponent beyond i64 is beyond numeric's too.
        Some((mantissa, exponent)) => (mantissa, exponent.parse::<i64>().ok()?),
        None => (unsigned, 0),
    };
    if exponent.abs() >= NUMERIC_MAX_EXPONENT {
        return None;
    }
    let (integer, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let scale = (fraction.len() as i64 - exponent).max(0);
    if scale > NUMERIC_MAX_SCALE {
        return None;
    }
    let digits = integer.len() + fraction.len();
    let zeros = (integer.bytes().chain(fraction.bytes()))
        .take_while(|&b| b == b'0')
        .count();
    let before_point = if zeros == digits {
        1 // zero: "0", unsigned
    } else {
        let integer_digits = integer.len() as i64 + exponent - zeros as i64;
        if integer_digits > NUMERIC_MAX_INTEGER_DIGITS {
            return None;
        }
        usize::from(negative) + integer_digits.max(1) as usize
    };
    Some(before_point + if scale > 0 { 1 + scale as usize } else { 0 })
}

/// How much longer (or shorter) the document's numbers are as stored than as sent, or the
/// first number `numeric` cannot hold.
fn stored_growth(value: &Value) -> Result<i64, &serde_json::Number> {
    match value {
        Value::Number(n) => {
            let sent = n.as_str();
            let stored = stored_number_len(sent).ok_or(n)?;
            Ok(stored as i64 - sent.len() as i64)
        }
        Value::Array(items) => items.iter().map(stored_growth).sum(),
        Value::Object(map) => map.values().map(stored_growth).sum(),
        _ => Ok(0),
    }
}

/// A number for a refusal: its first 40 characters.
fn shown(number: &serde_json::Number) -> String {
    let text = number.as_str();
    match text.char_indices().nth(40) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

pub const TITLE_MAX: usize = 200;
pub const TOOL_CALL_ID_MAX: usize = 200;
pub const CONTENT_MAX: usize = 200_000;
pub const DOCUMENT_MAX_BYTES: usize = 256 * 1024;
/// Not only white space.
const NOT_BLANK: Rule = Rule::Pattern(r"\S");

/// The rules of one text field.
pub trait TextField: Send + Sync + 'static {
    /// The field's name in refusals.
    const NAME: &'static str;
    /// The published constraints, checked in this order against the text as sent.
    const RULES: &'static [Rule];
    /// Whether surrounding white space is dropped (after the rules).
    const TRIM: bool;
}

/// Text valid under `F`'s rules, without NUL characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text<F>(String, PhantomData<F>);

impl<F: TextField> Text<F> {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        Rule::check(F::NAME, F::RULES, |rule| rule.admits_text(raw))?;
        no_nul(F::NAME, raw)?;
        let text = if F::TRIM { raw.trim() } else { raw };
        Ok(Self(text.to_string(), PhantomData))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    pub fn into_string(self) -> String {
        self.0
    }
}

/// Declares a [`TextField`] and its [`Text`] type.
macro_rules! text_field {
    ($(#[$doc:meta])* $text:ident, $field:ident, $name:literal, [$($rule:expr),*], trim: $trim:literal) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $field {}
        impl TextField for $field {
            const NAME: &'static str = $name;
            const RULES: &'static [Rule] = &[$($rule),*];
            const TRIM: bool = $trim;
        }
        $(#[$doc])*
        pub type $text = Text<$field>;
    };
}

text_field!(
    /// A conversation or artifact title: 1–200 characters, not only white space; trimmed.
    Title, TitleField, "title",
    [Rule::MaxLength(TITLE_MAX), Rule::MinLength(1), NOT_BLANK], trim: true
);
text_field!(
    /// A message's text: 1–200000 characters, kept as sent.
    Content, ContentField, "content",
    [Rule::MaxLength(CONTENT_MAX), Rule::MinLength(1)], trim: false
);
text_field!(
    /// The tool call a `tool` message answers: 1–200 characters, not only white space; trimmed.
    ToolCallId, ToolCallIdField, "tool_call_id",
    [Rule::MaxLength(TOOL_CALL_ID_MAX), Rule::MinLength(1), NOT_BLANK], trim: true
);
text_field!(
    /// What kind of artifact the client renders ("chart", "form", …): 1–64 letters, digits,
    /// `-`, `_`, `.`.
    ArtifactKind, ArtifactKindField, "kind",
    [Rule::Pattern("^[A-Za-z0-9._-]{1,64}$")], trim: false
);

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
        Self::ALL
            .into_iter()
            .find(|role| role.as_str() == raw)
            .ok_or_else(|| {
                invalid(
                    "role",
                    format!("{raw:?} is not one of user, assistant, system, tool"),
                )
            })
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

/// The JSON shape a document field takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Object,
    Array,
}

/// The rules of one JSON document field.
pub trait JsonField: Send + Sync + 'static {
    /// The field's name in refusals.
    const NAME: &'static str;
    const SHAPE: Shape;
}

/// A JSON document of `F`'s shape, at most [`DOCUMENT_MAX_BYTES`] as stored (numbers written
/// out as PostgreSQL gives them back), without NUL characters in any key or string, every
/// number within `numeric`'s range. Its numbers are the client's digits, exact (serde_json's
/// `arbitrary_precision`): `jsonb` keeps them exactly, so they read back as the same values.
#[derive(Debug, Clone, PartialEq)]
pub struct Document<F>(Value, PhantomData<F>);

impl<F: JsonField> Document<F> {
    pub fn parse(value: Value) -> Result<Self, Invalid> {
        match (F::SHAPE, &value) {
            (Shape::Object, Value::Object(_)) | (Shape::Array, Value::Array(_)) => {}
            (Shape::Object, _) => return Err(invalid(F::NAME, "must be a JSON object")),
            (Shape::Array, _) => return Err(invalid(F::NAME, "must be a JSON array")),
        }
        if json_has_nul(&value) {
            return Err(invalid(
                F::NAME,
                "must not contain NUL characters (\\u0000)",
            ));
        }
        let growth = stored_growth(&value).map_err(|n| {
            invalid(
                F::NAME,
                format!(
                    "the number {} is beyond what PostgreSQL's numeric holds (at most \
                     {NUMERIC_MAX_INTEGER_DIGITS} digits before the decimal point and \
                     {NUMERIC_MAX_SCALE} after it)",
                    shown(n)
                ),
            )
        })?;
        if json_size(&value) as i64 + growth > DOCUMENT_MAX_BYTES as i64 {
            return Err(invalid(
                F::NAME,
                format!(
                    "is larger than {DOCUMENT_MAX_BYTES} bytes as stored (compact JSON, each \
                     number written out as PostgreSQL gives it back: 1e3 as 1000)"
                ),
            ));
        }
        Ok(Self(value, PhantomData))
    }
    pub fn as_value(&self) -> &Value {
        &self.0
    }
    pub fn into_value(self) -> Value {
        self.0
    }
}

/// Declares a [`JsonField`] and its [`Document`] type.
macro_rules! json_field {
    ($(#[$doc:meta])* $document:ident, $field:ident, $name:literal, $shape:expr) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $field {}
        impl JsonField for $field {
            const NAME: &'static str = $name;
            const SHAPE: Shape = $shape;
        }
        $(#[$doc])*
        pub type $document = Document<$field>;
    };
}

json_field!(
    /// Conversation metadata: a JSON object for the client.
    Metadata, MetadataField, "metadata", Shape::Object
);
json_field!(
    /// An artifact's specification: a JSON object.
    ArtifactSpec, ArtifactSpecField, "spec", Shape::Object
);
json_field!(
    /// A message's structured parts: a JSON array.
    Parts, PartsField, "parts", Shape::Array
);

impl Metadata {
    pub fn empty() -> Self {
        Self(Value::Object(serde_json::Map::new()), PhantomData)
    }
}

/// Page size: 1..=100, default 20.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit(i64);

impl Limit {
    pub const DEFAULT: i64 = 20;
    pub const MAX: i64 = 100;
    pub const RULES: &'static [Rule] = &[Rule::Maximum(Self::MAX), Rule::Minimum(1)];

    pub fn parse(n: i64) -> Result<Self, Invalid> {
        Rule::check("limit", Self::RULES, |rule| rule.admits_number(n))?;
        Ok(Self(n))
    }
    pub fn get(self) -> i64 {
        self.0
    }
}

impl Default for Limit {
    fn default() -> Self {
        Self(Self::DEFAULT)
    }
}

/// A cursor that matches its pattern yet does not decode. The patterns admit only what
/// decodes, so this is never sent; it is refused like any other bad cursor.
fn undecodable() -> Invalid {
    invalid(
        "cursor",
        "invalid cursor: pass back the next_cursor of a previous page unchanged",
    )
}

/// Position after an item ordered by `(created_at, id)`: `<unix micros hex>.<uuid>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeCursor {
    pub created_at: OffsetDateTime,
    pub id: Uuid,
}

impl TimeCursor {
    pub const RULES: &'static [Rule] = &[Rule::Pattern(r"^[0-9a-f]{1,16}\.[0-9a-f]{32}$")];

    pub fn encode(created_at: OffsetDateTime, id: Uuid) -> String {
        let micros = created_at.unix_timestamp_nanos() / 1000;
        format!("{micros:x}.{}", id.simple())
    }

    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        Rule::check("cursor", Self::RULES, |rule| rule.admits_text(raw))?;
        let (micros, id) = raw.split_once('.').ok_or_else(undecodable)?;
        let micros = i128::from_str_radix(micros, 16).map_err(|_| undecodable())?;
        // A well-formed cursor beyond the representable range just points past everything.
        let created_at = OffsetDateTime::from_unix_timestamp_nanos(micros * 1000)
            .unwrap_or(time::PrimitiveDateTime::MAX.assume_utc());
        let id = Uuid::try_parse(id).map_err(|_| undecodable())?;
        Ok(Self { created_at, id })
    }
}

/// Position after a sequence number (a message's `seq`, an artifact's `version`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SeqCursor(i64);

impl SeqCursor {
    pub const RULES: &'static [Rule] = &[Rule::Pattern("^[0-9]{1,18}$")];

    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        Rule::check("cursor", Self::RULES, |rule| rule.admits_text(raw))?;
        raw.parse().map(Self).map_err(|_| undecodable())
    }
    pub fn get(self) -> i64 {
        self.0
    }
}

/// The `Idempotency-Key` header of a creating POST: 1–255 printable ASCII characters (space
/// to `~`), taken as sent. What a key means is `api::idempotency`'s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub const FIELD: &'static str = "Idempotency-Key";
    pub const MAX: usize = 255;
    pub const RULES: &'static [Rule] = &[
        Rule::MinLength(1),
        Rule::MaxLength(Self::MAX),
        Rule::Pattern("^[ -~]+$"),
    ];

    /// The header's bytes as they arrived: anything but printable ASCII (UTF-8, control
    /// characters) is refused, never dropped.
    pub fn parse(raw: &[u8]) -> Result<Self, Invalid> {
        let text = std::str::from_utf8(raw)
            .map_err(|_| invalid(Self::FIELD, format!("does not satisfy {}", Self::RULES[2])))?;
        Rule::check(Self::FIELD, Self::RULES, |rule| rule.admits_text(text))?;
        Ok(Self(text.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
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
        assert_eq!(
            Title::parse("   ").unwrap_err().message,
            r#"does not satisfy pattern("\S")"#
        );
        assert!(Title::parse(&"é".repeat(TITLE_MAX)).is_ok());
        assert_eq!(
            Title::parse(&"é".repeat(TITLE_MAX + 1)).unwrap_err(),
            invalid("title", "does not satisfy maxLength(200)")
        );
        assert_eq!(
            Title::parse("").unwrap_err().message,
            "does not satisfy minLength(1)"
        );
    }

    #[test]
    fn messages_need_a_known_role_text_and_array_parts() {
        assert_eq!(Role::parse("tool"), Ok(Role::Tool));
        assert_eq!(
            Role::parse("robot").unwrap_err().to_string(),
            r#"role: "robot" is not one of user, assistant, system, tool"#
        );
        assert_eq!(Content::parse("").unwrap_err().field, "content");
        assert_eq!(Content::parse(" hi ").unwrap().as_str(), " hi ");
        assert_eq!(
            Parts::parse(json!({"not": "an array"})).unwrap_err().field,
            "parts"
        );
        assert!(Parts::parse(json!([{"type": "text"}])).is_ok());
        assert_eq!(ToolCallId::parse(" call_1 ").unwrap().as_str(), "call_1");
    }

    #[test]
    fn kinds_are_short_identifiers() {
        assert!(ArtifactKind::parse("bar-chart").is_ok());
        assert!(ArtifactKind::parse("bar chart").is_err());
        assert!(ArtifactKind::parse(&"k".repeat(64)).is_ok());
        assert!(ArtifactKind::parse(&"k".repeat(65)).is_err());
    }

    #[test]
    fn limits_and_cursors() {
        assert_eq!(Limit::default().get(), 20);
        assert_eq!(
            Limit::parse(0).unwrap_err().message,
            "does not satisfy minimum(1, exclusive: false)"
        );
        assert_eq!(
            Limit::parse(101).unwrap_err().message,
            "does not satisfy maximum(100, exclusive: false)"
        );
        assert_eq!(Limit::parse(100).map(Limit::get), Ok(100));
        let at = OffsetDateTime::from_unix_timestamp_nanos(1_700_000_000_123_456_000).unwrap();
        let id = Uuid::new_v4();
        let cursor = TimeCursor::encode(at, id);
        assert_eq!(
            TimeCursor::parse(&cursor),
            Ok(TimeCursor { created_at: at, id })
        );
        assert_eq!(TimeCursor::parse("zz.nope").unwrap_err().field, "cursor");
        let far = format!("ffffffffffffffff.{}", Uuid::nil().simple());
        assert!(TimeCursor::parse(&far).is_ok());
        assert!(SeqCursor::parse("-1").is_err());
        assert_eq!(
            SeqCursor::parse("999999999999999999").map(SeqCursor::get),
            Ok(999_999_999_999_999_999)
        );
    }

    #[test]
    fn nul_characters_are_refused_everywhere() {
        assert_eq!(Title::parse("a\0b").unwrap_err().field, "title");
        assert_eq!(Content::parse("a\0").unwrap_err().field, "content");
        assert!(Metadata::parse(json!({ "k\0": 1 })).is_err());
        assert!(Metadata::parse(json!({ "k": ["\0"] })).is_err());
        assert!(ArtifactSpec::parse(json!({ "a": { "b": "x\0" } })).is_err());
    }

    #[test]
    fn idempotency_keys_are_printable_ascii_of_1_to_255() {
        assert_eq!(
            IdempotencyKey::parse(b"order 42/retry~").map(|k| k.as_str().to_string()),
            Ok("order 42/retry~".into())
        );
        assert!(IdempotencyKey::parse("k".repeat(255).as_bytes()).is_ok());
        for bad in [
            &b""[..],
            "k".repeat(256).as_bytes(),
            b"tab\there",
            b"nul\0",
            "clé".as_bytes(),
            b"\xff",
        ] {
            assert_eq!(
                IdempotencyKey::parse(bad).unwrap_err().field,
                "Idempotency-Key",
                "{bad:?}"
            );
        }
    }

    #[test]
    fn every_pattern_compiles() {
        let rules = [
            TitleField::RULES,
            ContentField::RULES,
            ToolCallIdField::RULES,
            ArtifactKindField::RULES,
            TimeCursor::RULES,
            SeqCursor::RULES,
            IdempotencyKey::RULES,
        ];
        for rule in rules.iter().flat_map(|rules| rules.iter()) {
            // Panics on a pattern that does not compile.
            rule.admits_text("");
        }
    }

    /// What PostgreSQL 15 answers for `length(('<n>'::jsonb)::text)`, or refuses ("value
    /// overflows numeric format"); tests/it/api.rs asks PostgreSQL itself at these edges.
    #[test]
    fn numbers_are_measured_as_postgresql_writes_them_back() {
        let cases: &[(&str, Option<usize>)] = &[
            ("0", Some(1)),
            ("-0", Some(1)),
            ("-0.0", Some(3)),
            ("1E+2", Some(3)),
            ("1.50e1", Some(4)),
            ("0e-5", Some(7)),
            ("-1.5e-3", Some(7)),
            ("123456789012345678901234567890123456789", Some(39)),
            ("1e-400", Some(402)),
            ("1e-16383", Some(16385)),
            ("1e-16384", None),
            ("0e-16384", None),
            ("0.0e-16383", None),
            ("1.5e-16382", Some(16385)),
            ("1.5e-16383", None),
            ("1e131071", Some(131_072)),
            ("-1e131071", Some(131_073)),
            ("1e131072", None),
            ("9.9e131071", Some(131_072)),
            ("0.0001e131075", Some(131_072)),
            ("0e200000", Some(1)),
            ("1e200000", None),
            ("0e1073741823", None),
            ("1e-99999999999999999999", None),
        ];
        for &(number, expected) in cases {
            assert_eq!(stored_number_len(number), expected, "{number}");
        }
    }

    #[test]
    fn documents_keep_numbers_exactly_within_numerics_range() {
        let doc = |text: &str| serde_json::from_str::<Value>(text).unwrap();
        let exact = doc(r#"{"n": 123456789012345678901234567890123456789, "d": 1.50}"#);
        let kept = Metadata::parse(exact.clone()).unwrap();
        assert_eq!(
            serde_json::to_string(kept.as_value()).unwrap(),
            r#"{"d":1.50,"n":123456789012345678901234567890123456789}"#
        );
        let refused = Parts::parse(doc("[1, {\"x\": [1e200000]}]")).unwrap_err();
        assert_eq!(refused.field, "parts");
        assert!(refused.message.contains("1e+200000"), "{}", refused.message);
        // 6 bytes sent, 131 073 stored, twice: over the limit as stored.
        let expanding = doc(r#"{"a": 1e131071, "b": 1e131071}"#);
        let refused = ArtifactSpec::parse(expanding).unwrap_err();
        assert!(refused.message.contains("as stored"), "{}", refused.message);
    }

    #[test]
    fn documents_have_their_shape_and_a_bounded_size() {
        assert!(Metadata::parse(json!({"a": 1})).is_ok());
        assert!(Metadata::parse(json!([1])).is_err());
        assert!(ArtifactSpec::parse(json!(null)).is_err());
        let big = json!({ "x": "y".repeat(DOCUMENT_MAX_BYTES) });
        assert!(Metadata::parse(big).is_err());
    }
}
