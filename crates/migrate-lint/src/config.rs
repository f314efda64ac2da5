//! What the lint is told besides the SQL: the severity file (`migration-lint.toml`, TOML read
//! with the `toml` crate) and [`Options`]. Whether the engine's default `lock_timeout` is off is
//! not read here: the caller says so (the binary from its configuration, the build from the
//! engine's default).

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use super::rules::{Level, RULES, down_default, rule};

/// The severity file's name, next to `migrations/` (never inside it).
pub const CONFIG_FILE: &str = "migration-lint.toml";

/// The level of each rule: the defaults, overridden by the severity file; down files have
/// levels of their own ([`down_default`], the file's `[down]` table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Severities {
    levels: BTreeMap<&'static str, Level>,
    down: BTreeMap<&'static str, Level>,
}

impl Default for Severities {
    fn default() -> Self {
        Self {
            levels: RULES.iter().map(|r| (r.id, r.default)).collect(),
            down: RULES.iter().map(|r| (r.id, down_default(r.id))).collect(),
        }
    }
}

/// The `[rules]` and `[down]` tables of the severity file (the other top-level entries are
/// read apart).
#[derive(Deserialize)]
struct RulesTable {
    #[serde(default)]
    rules: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    down: BTreeMap<String, Spanned<String>>,
}

impl Severities {
    pub fn level(&self, id: &str) -> Level {
        // INVALID_ALLOW (not configurable) is always an error.
        self.levels.get(id).copied().unwrap_or(Level::Deny)
    }

    /// The levels that apply to down files.
    pub fn for_down(&self) -> Self {
        Self {
            levels: self.down.clone(),
            down: self.down.clone(),
        }
    }

    /// Reads the severity file: `rule-id = "deny" | "warn" | "off"` entries, in a `[rules]`
    /// table or at the top level, and for down files in a `[down]` table. Errors name
    /// `label:line`.
    pub fn parse(label: &str, text: &str) -> Result<Self, String> {
        let at = |span: std::ops::Range<usize>| format!("{label}:{}", line_of(text, span.start));
        let toml_error = |e: toml::de::Error| match e.span() {
            Some(span) => format!("{}: {}", at(span), e.message().trim_end()),
            None => format!("{label}: {}", e.message().trim_end()),
        };
        let top: BTreeMap<String, Spanned<toml::Value>> =
            toml::from_str(text).map_err(toml_error)?;
        let mut entries = Vec::new();
        for (key, value) in top {
            let span = value.span();
            match value.into_inner() {
                toml::Value::String(level) => entries.push((span, key, level)),
                toml::Value::Table(_) if key == "rules" || key == "down" => {}
                _ => {
                    return Err(format!(
                        "{}: expected `rule-id = \"deny\" | \"warn\" | \"off\"` or a `[rules]` table, found {key:?}",
                        at(span)
                    ));
                }
            }
        }
        let table: RulesTable = toml::from_str(text).map_err(toml_error)?;
        let mut entries: Vec<_> = entries
            .into_iter()
            .map(|(s, k, v)| (s, k, v, false))
            .collect();
        for (key, level) in table.rules {
            entries.push((level.span(), key, level.into_inner(), false));
        }
        for (key, level) in table.down {
            entries.push((level.span(), key, level.into_inner(), true));
        }
        // In the file's order, so the first error is the first in the file.
        entries.sort_by_key(|(span, _, _, _)| span.start);
        let mut out = Self::default();
        for (span, key, value, down) in entries {
            let Some(info) = rule(&key) else {
                return Err(format!(
                    "{}: unknown rule {key:?}; known rules: {}",
                    at(span),
                    RULES.iter().map(|r| r.id).collect::<Vec<_>>().join(", ")
                ));
            };
            let Some(level) = Level::parse(&value) else {
                return Err(format!(
                    "{}: unknown level {value:?} for {key}; use \"deny\", \"warn\" or \"off\"",
                    at(span)
                ));
            };
            if down {
                out.down.insert(info.id, level);
            } else {
                out.levels.insert(info.id, level);
            }
        }
        Ok(out)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&'static str, Level)> + '_ {
        self.levels.iter().map(|(k, v)| (*k, *v))
    }
}

/// 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset)
        .map_or(1, |head| head.matches('\n').count() + 1)
}

/// Context the rules need that the SQL does not carry.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// The engine's default `lock_timeout` (`migrations.lock_timeout`) is 0: files without a
    /// `-- lock_timeout:` header run without one.
    pub engine_lock_timeout_off: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::{COLUMN_TYPE, DROP_TABLE};

    #[test]
    fn the_severity_file_is_toml() {
        // Top-level entries and the [rules] table, in the file's order: the first error wins.
        let s = Severities::parse(
            CONFIG_FILE,
            "drop-table = 'warn'\n[rules]\n\"truncate\" = \"off\"\n",
        )
        .expect("valid");
        assert_eq!(s.level(DROP_TABLE), Level::Warn);
        assert_eq!(s.level("truncate"), Level::Off);
        let e = Severities::parse(CONFIG_FILE, "\n\ndrop-table = warn\n").unwrap_err();
        assert!(e.starts_with("migration-lint.toml:3: "), "{e}");
        let e = Severities::parse(CONFIG_FILE, "[rules]\ndrop-table = 1\n").unwrap_err();
        assert!(e.starts_with("migration-lint.toml:2: "), "{e}");
        let e = Severities::parse(CONFIG_FILE, "[other]\nx = \"warn\"\n").unwrap_err();
        assert!(e.contains("found \"other\""), "{e}");
        let e = Severities::parse(
            CONFIG_FILE,
            "[rules]\ndrop-table = \"warn\"\ntruncate = \"never\"\n",
        )
        .unwrap_err();
        assert!(e.starts_with("migration-lint.toml:3: unknown level"), "{e}");
        assert_eq!(
            Severities::parse(CONFIG_FILE, ""),
            Ok(Severities::default())
        );
        // Down files: their own defaults and table.
        let s = Severities::parse(CONFIG_FILE, "[down]\nalter-column-type = \"warn\"\n").unwrap();
        assert_eq!(s.level(COLUMN_TYPE), Level::Deny);
        assert_eq!(s.for_down().level(COLUMN_TYPE), Level::Warn);
        assert_eq!(s.for_down().level(DROP_TABLE), Level::Off);
        let e = Severities::parse(CONFIG_FILE, "[down]\nnope = \"warn\"\n").unwrap_err();
        assert!(e.starts_with("migration-lint.toml:2: unknown rule"), "{e}");
    }
}
