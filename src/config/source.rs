//! Where a configuration value came from, and a figment error told in those words.
//!
//! figment names a value's source by its provider: for a value given in code (how the literal
//! environment variables are merged) that is a Rust type and a line of `config.rs`, and for an
//! environment variable the key in capitals (`DATABASE.MAX_CONNECTIONS`). Its errors also speak
//! serde (`expected u32`, `untagged enum Raw`). The reader set a file key or a variable: an
//! error here names the key, says what is wrong in plain words, and names the file or the
//! variable that gave the value.

use figment::error::{Actual, Kind};
use figment::value::{Dict, Map};
use figment::{Metadata, Profile, Provider, Source};

/// Metadata name of the `APP_<SECTION>__<KEY>` variables; the variable is spelled from the key.
const APP_VARS: &str = "APP_ environment variables";
/// Metadata name prefix of a provider that reads one environment variable.
const ONE_VAR: &str = "the environment variable ";

/// A provider under the name a reader knows it by.
pub(super) struct Named<P> {
    provider: P,
    name: String,
}

impl<P: Provider> Named<P> {
    /// `provider` reads the environment variable `var` alone.
    pub(super) fn variable(provider: P, var: &str) -> Self {
        Self {
            provider,
            name: format!("{ONE_VAR}{var}"),
        }
    }

    /// `provider` reads the `APP_<SECTION>__<KEY>` variables.
    pub(super) fn app_vars(provider: P) -> Self {
        Self {
            provider,
            name: APP_VARS.to_string(),
        }
    }
}

impl<P: Provider> Provider for Named<P> {
    fn metadata(&self) -> Metadata {
        Metadata::named(self.name.clone())
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        self.provider.data()
    }
}

/// One figment error as `key: what is wrong (where the value came from)`. `secret`: whether
/// the value of a key may not be shown (database URLs, API keys, tokens).
pub(super) fn describe(e: &figment::Error, secret: impl Fn(&str) -> bool) -> String {
    let field = match &e.kind {
        Kind::MissingField(f) => Some(f.as_ref()),
        Kind::UnknownField(f, _) => Some(f.as_str()),
        Kind::DuplicateField(f) => Some(*f),
        _ => None,
    };
    let mut path: Vec<&str> = e.path.iter().map(String::as_str).collect();
    // figment's path ends with an unknown field, not with a missing one.
    if let Some(field) = field.filter(|f| path.last() != Some(f)) {
        path.push(field);
    }
    let key = path.join(".");
    let what = match &e.kind {
        // Our own message may name the key already (a URL that does not parse); a file that is
        // not TOML has no key at all.
        Kind::Message(m) if key.is_empty() || m.starts_with(&format!("{key} ")) => {
            return format!("{}{}", one_line(m), origin(e, &path));
        }
        Kind::Message(m) => one_line(m),
        Kind::MissingField(_) => "has no value".to_string(),
        Kind::UnknownField(_, known) => {
            let section = &path[..path.len() - 1];
            let parent = if section.is_empty() {
                "the top level".to_string()
            } else {
                format!("[{}]", section.join("."))
            };
            format!(
                "is not a key: {parent} has {}",
                known
                    .iter()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
        Kind::DuplicateField(_) => "is given twice".to_string(),
        Kind::UnknownVariant(v, known) => format!(
            "{v:?} is not one of {}",
            known
                .iter()
                .map(|k| format!("\"{k}\""))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Kind::InvalidType(actual, expected) | Kind::InvalidValue(actual, expected) => {
            let found = if secret(&key) {
                "another value".to_string()
            } else {
                found(actual)
            };
            format!("must be {}, not {found}", expected_words(expected))
        }
        Kind::InvalidLength(n, expected) => format!(
            "has {n} item(s), but must have {}",
            expected_words(expected)
        ),
        Kind::ISizeOutOfRange(v) => format!("{v} is out of range"),
        Kind::USizeOutOfRange(v) => format!("{v} is out of range"),
        Kind::Unsupported(_) | Kind::UnsupportedKey(..) => {
            "has a kind of value configuration does not take".to_string()
        }
    };
    if key.is_empty() {
        return format!("the configuration {what}{}", origin(e, &path));
    }
    format!("{key}: {what}{}", origin(e, &path))
}

/// A message on one line: the TOML parser's shows the offending line under a caret, which
/// the line and column it names already point at.
fn one_line(message: &str) -> String {
    let snippet = |l: &str| {
        let l = l.trim_start_matches(|c: char| c.is_ascii_digit() || c == ' ');
        l.starts_with('|')
    };
    message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !snippet(l))
        .collect::<Vec<_>>()
        .join(": ")
}

/// ` (from the environment variable X)`, ` (in <file>)`, or nothing when figment does not know.
fn origin(e: &figment::Error, path: &[&str]) -> String {
    let Some(md) = &e.metadata else {
        return String::new();
    };
    if md.name == APP_VARS {
        return format!(
            " (from {ONE_VAR}APP_{})",
            path.join("__").to_ascii_uppercase()
        );
    }
    if md.name.starts_with(ONE_VAR) {
        return format!(" (from {})", md.name);
    }
    match &md.source {
        Some(Source::File(file)) => format!(" (in {})", file.display()),
        _ => String::new(),
    }
}

/// serde's name of what a key takes, in words: `u32` is "a whole number from 0 to 4294967295".
fn expected_words(expected: &str) -> String {
    let range = |max: u128| format!("a whole number from 0 to {max}");
    match expected {
        "u8" => range(u8::MAX.into()),
        "u16" => range(u16::MAX.into()),
        "u32" => range(u32::MAX.into()),
        "u64" | "usize" => range(u64::MAX.into()),
        "i8" | "i16" | "i32" | "i64" | "isize" => "a whole number".to_string(),
        "f32" | "f64" => "a number".to_string(),
        "a sequence" => "a list".to_string(),
        "a map" => "a table of keys".to_string(),
        e if e.starts_with("struct ") => "a table of keys".to_string(),
        e if (e.starts_with("a ") || e.starts_with("an ")) && !e.contains("::") => e.to_string(),
        _ => "a value of another kind".to_string(),
    }
}

/// A value as the reader wrote it, in words.
fn found(actual: &Actual) -> String {
    match actual {
        Actual::Bool(b) => format!("{b}"),
        Actual::Unsigned(v) => format!("the number {v}"),
        Actual::Signed(v) => format!("the number {v}"),
        Actual::Float(v) => format!("the number {v}"),
        Actual::Char(c) => format!("the text {:?}", c.to_string()),
        Actual::Str(s) => format!("the text {s:?}"),
        Actual::Seq => "a list".to_string(),
        Actual::Map => "a table".to_string(),
        Actual::Unit | Actual::Option => "nothing".to_string(),
        _ => "a value of another kind".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::{expected_words, one_line};

    #[test]
    fn serde_names_become_words() {
        assert_eq!(expected_words("u16"), "a whole number from 0 to 65535");
        assert_eq!(expected_words("a string"), "a string");
        assert_eq!(expected_words("struct ServerSettings"), "a table of keys");
        assert_eq!(
            expected_words("alloc::string::String"),
            "a value of another kind"
        );
    }

    #[test]
    fn a_toml_parse_error_is_one_line() {
        let m = "TOML parse error at line 1, column 6\n  |\n1 | this is = not toml [\n  |      ^\nexpected `.`, `=`\n";
        assert_eq!(
            one_line(m),
            "TOML parse error at line 1, column 6: expected `.`, `=`"
        );
    }
}
