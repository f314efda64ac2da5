//! What commands print on stdout: a typed view ([`View`]), rendered as text for people or, with
//! `--json`, as one JSON document for scripts (keys sorted, so the output is stable). Logs and
//! prompts go to stderr; nothing else in `cli/` writes to stdout.
//!
//! A closed stdout is not an error: `server migrate history | head` must not panic.

use std::fmt::Display;
use std::io::Write;

use serde::Serialize;

/// A command's result, as data.
pub trait View: Serialize {
    /// The text for people.
    fn text(&self, out: &mut Text);
}

/// A result told in one sentence to people, and as `value` to scripts.
#[derive(Serialize)]
#[serde(transparent)]
pub struct Done<T: Serialize> {
    value: T,
    #[serde(skip)]
    sentence: String,
}

impl<T: Serialize> Done<T> {
    pub fn new(value: T, sentence: impl Into<String>) -> Self {
        Self {
            value,
            sentence: sentence.into(),
        }
    }
}

impl<T: Serialize> View for Done<T> {
    fn text(&self, out: &mut Text) {
        out.line(&self.sentence);
    }
}

/// Text or JSON, as the command line asked.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    json: bool,
}

impl Output {
    pub fn new(json: bool) -> Self {
        Self { json }
    }

    pub fn is_json(&self) -> bool {
        self.json
    }

    /// Prints `view` as one JSON document, or as its text.
    pub fn emit<V: View + ?Sized>(&self, view: &V) {
        if self.json {
            // Through `Value`, whose maps are sorted: the same key order for every command.
            let value = serde_json::to_value(view).unwrap_or_default();
            let text = serde_json::to_string_pretty(&value).unwrap_or_default();
            write_stdout(&format!("{text}\n"));
        } else {
            let mut text = Text::default();
            view.text(&mut text);
            write_stdout(&text.0);
        }
    }
}

/// Writes to stdout, ignoring a closed pipe.
pub fn write_stdout(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.flush();
}

/// Text being built for people.
#[derive(Debug, Default)]
pub struct Text(String);

impl Text {
    /// One line.
    pub fn line(&mut self, line: impl Display) {
        self.0.push_str(&format!("{line}\n"));
    }

    /// `label` padded to `width`, a space, `value`: the key/value lines of `status` and `show`.
    pub fn field(&mut self, label: &str, width: usize, value: impl Display) {
        self.line(format_args!("{label:<width$} {value}"));
    }

    /// Every line of `text`, each indented by `indent`.
    pub fn indented(&mut self, indent: &str, text: &str) {
        for line in text.lines() {
            self.line(format_args!("{indent}{line}"));
        }
    }
}

/// A fixed-width table: the header once, then a line a row.
pub struct Table {
    columns: Vec<Column>,
}

/// A column: its title, the separator before it, its width (the last one may have none) and
/// alignment.
pub struct Column {
    title: &'static str,
    before: &'static str,
    width: usize,
    right: bool,
}

impl Column {
    pub fn left(title: &'static str, width: usize) -> Self {
        Self {
            title,
            before: " ",
            width,
            right: false,
        }
    }

    pub fn right(title: &'static str, width: usize) -> Self {
        Self {
            right: true,
            ..Self::left(title, width)
        }
    }

    /// Separated from the column before by `before` instead of one space.
    pub fn after(self, before: &'static str) -> Self {
        Self { before, ..self }
    }
}

impl Table {
    pub fn new(columns: Vec<Column>) -> Self {
        Self { columns }
    }

    pub fn header(&self, out: &mut Text) {
        let titles: Vec<String> = self.columns.iter().map(|c| c.title.to_string()).collect();
        self.row(out, &titles);
    }

    /// One row; cells beyond the columns are ignored, missing ones are blank.
    pub fn row(&self, out: &mut Text, cells: &[String]) {
        let mut line = String::new();
        for (i, column) in self.columns.iter().enumerate() {
            if i > 0 {
                line.push_str(column.before);
            }
            let cell = cells.get(i).map_or("", String::as_str);
            let width = column.width;
            if column.right {
                line.push_str(&format!("{cell:>width$}"));
            } else {
                line.push_str(&format!("{cell:<width$}"));
            }
        }
        out.line(line);
    }
}

/// `s`, cut to `n` characters with an ellipsis.
pub fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        s.chars().take(n - 1).collect::<String>() + "…"
    }
}

/// Versions as "1, 2, 3", or `none` when there are none.
pub fn list_or(none: &str, versions: &[i64]) -> String {
    if versions.is_empty() {
        none.to_string()
    } else {
        versions
            .iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A row's `installed_on` to the second, in UTC: `2026-11-26T12:00:00Z`.
pub fn timestamp(at: &time::OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339)
        .map(|s| s.chars().take(19).collect::<String>() + "Z")
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_pads_and_aligns_columns() {
        let table = Table::new(vec![
            Column::left("A", 3),
            Column::right("B", 4),
            Column::left("C", 0).after("  "),
        ]);
        let mut out = Text::default();
        table.header(&mut out);
        table.row(&mut out, &["x".into(), "1.5".into(), "yes".into()]);
        assert_eq!(out.0, "A      B  C\nx    1.5  yes\n");
    }

    #[test]
    fn truncate_counts_characters() {
        assert_eq!(truncate("héllo", 5), "héllo");
        assert_eq!(truncate("héllo!", 5), "héll…");
    }
}
