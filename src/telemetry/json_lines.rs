//! Production's JSON log lines: the document tracing-subscriber's `Json` format writes with
//! `flatten_event(true)` and its span list (`timestamp`, `level`, the event's fields, `target`,
//! then `spans` from the root, each with its fields and `name`), written straight into the line.
//!
//! tracing-subscriber's own formatter keeps each span's fields as a JSON object built through a
//! `serde_json::Value` map, and for every event parses each span's object back into a map to
//! write it again (its source calls this a workaround). On the access line that was about a
//! fifth of a request's instructions (bench/profile.py). Here a span's fields are kept as the
//! text of its members and copied into each line as they are. The values are the same; only the
//! order of a span's members differs (declaration order, not sorted), which JSON readers ignore.
//! `same_documents_as_tracing_subscribers_json` holds the two formats to that.

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber, span};
use tracing_log::NormalizeEvent;
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::{FormatEvent, FormatFields, Writer};
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// The event format (`fmt::layer().fmt_fields(SpanMembers).event_format(JsonLines)`).
pub struct JsonLines;

/// How spans keep their fields for [`JsonLines`]: `"name":value` members joined by commas,
/// without the braces, so a line copies them whole.
pub struct SpanMembers;

impl<'w> FormatFields<'w> for SpanMembers {
    fn format_fields<R: RecordFields>(&self, mut writer: Writer<'w>, fields: R) -> fmt::Result {
        let mut members = Members::new(&mut writer, false);
        fields.record(&mut members);
        members.result
    }

    fn add_fields(
        &self,
        current: &mut FormattedFields<Self>,
        fields: &span::Record<'_>,
    ) -> fmt::Result {
        let more = !current.fields.is_empty();
        let mut members = Members::new(&mut current.fields, more);
        fields.record(&mut members);
        members.result
    }
}

impl<S> FormatEvent<S, SpanMembers> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, SpanMembers>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        // Records of the `log` crate arrive with target "log": name their real origin.
        let normalized = event.normalized_metadata();
        let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());
        writer.write_str("{\"timestamp\":\"")?;
        SystemTime.format_time(&mut writer)?;
        write!(writer, "\",\"level\":\"{}\"", meta.level())?;
        let mut members = Members::new(&mut writer, true);
        event.record(&mut members);
        members.result?;
        writer.write_str(",\"target\":")?;
        string(&mut writer, meta.target())?;
        if let Some(scope) = ctx.event_scope() {
            writer.write_str(",\"spans\":[")?;
            for (i, span) in scope.from_root().enumerate() {
                writer.write_str(if i == 0 { "{" } else { ",{" })?;
                let extensions = span.extensions();
                if let Some(fields) = extensions.get::<FormattedFields<SpanMembers>>()
                    && !fields.fields.is_empty()
                {
                    writer.write_str(&fields.fields)?;
                    writer.write_char(',')?;
                }
                writer.write_str("\"name\":")?;
                string(&mut writer, span.name())?;
                writer.write_char('}')?;
            }
            writer.write_char(']')?;
        }
        writer.write_str("}\n")
    }
}

/// Writes visited fields as JSON members: numbers and booleans as such, everything else
/// (strings, `Display` and `Debug` values, errors, 128-bit integers) as a string, as
/// tracing-serde writes them.
struct Members<'a, W: fmt::Write> {
    out: &'a mut W,
    /// Whether a member was written before this one (a comma goes first).
    more: bool,
    result: fmt::Result,
}

impl<'a, W: fmt::Write> Members<'a, W> {
    fn new(out: &'a mut W, more: bool) -> Self {
        Self {
            out,
            more,
            result: Ok(()),
        }
    }

    fn member(&mut self, field: &Field, value: impl FnOnce(&mut W) -> fmt::Result) {
        if self.result.is_ok() {
            self.result = self.write_member(field, value);
        }
    }

    fn write_member(
        &mut self,
        field: &Field,
        value: impl FnOnce(&mut W) -> fmt::Result,
    ) -> fmt::Result {
        if std::mem::replace(&mut self.more, true) {
            self.out.write_char(',')?;
        }
        string(self.out, field.name())?;
        self.out.write_char(':')?;
        value(self.out)
    }
}

impl<W: fmt::Write> Visit for Members<'_, W> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.member(field, |out| {
            out.write_char('"')?;
            write!(Escaped(out), "{value:?}")?;
            out.write_char('"')
        });
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.member(field, |out| string(out, value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.member(field, |out| write!(out, "{value}"));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.member(field, |out| write!(out, "{value}"));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.member(field, |out| {
            out.write_str(if value { "true" } else { "false" })
        });
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        // JSON has no NaN or infinity: serde_json writes null.
        self.member(field, |out| {
            if value.is_finite() {
                write!(out, "{value:?}")
            } else {
                out.write_str("null")
            }
        });
    }
}

/// `s` as a JSON string.
fn string(out: &mut impl fmt::Write, s: &str) -> fmt::Result {
    out.write_char('"')?;
    Escaped(out).write_str(s)?;
    out.write_char('"')
}

/// Escapes what passes through it for the inside of a JSON string, as serde_json does: `"`,
/// `\` and the control characters below U+0020.
struct Escaped<'a, W: fmt::Write>(&'a mut W);

impl<W: fmt::Write> fmt::Write for Escaped<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut plain = 0;
        for (i, b) in s.bytes().enumerate() {
            let escape = match b {
                b'"' => "\\\"",
                b'\\' => "\\\\",
                b'\n' => "\\n",
                b'\r' => "\\r",
                b'\t' => "\\t",
                0x08 => "\\b",
                0x0c => "\\f",
                0x00..=0x1f => "",
                _ => continue,
            };
            self.0.write_str(&s[plain..i])?;
            if escape.is_empty() {
                write!(self.0, "\\u{b:04x}")?;
            } else {
                self.0.write_str(escape)?;
            }
            plain = i + 1;
        }
        self.0.write_str(&s[plain..])
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::{Arc, Mutex};

    use proptest::prelude::*;
    use serde_json::Value;
    use tracing_subscriber::fmt::MakeWriter;
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    /// Lines written by one formatter, kept for the test.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Captured;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    impl Captured {
        fn documents(&self) -> Vec<Value> {
            String::from_utf8(self.0.lock().unwrap().clone())
                .unwrap()
                .lines()
                .map(|line| {
                    let mut doc: Value = serde_json::from_str(line)
                        .unwrap_or_else(|e| panic!("{e}: not JSON: {line}"));
                    doc.as_object_mut().unwrap().remove("timestamp");
                    doc
                })
                .collect()
        }
    }

    /// Runs `emit` under both formatters at once and returns both sets of documents.
    fn both(emit: impl FnOnce()) -> (Vec<Value>, Vec<Value>) {
        let (ours, theirs) = (Captured::default(), Captured::default());
        let subscriber = tracing_subscriber::registry()
            .with(
                tracing_subscriber::fmt::layer()
                    .fmt_fields(SpanMembers)
                    .event_format(JsonLines)
                    .with_writer(ours.clone()),
            )
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(false)
                    .with_writer(theirs.clone()),
            );
        tracing::subscriber::with_default(subscriber, emit);
        (ours.documents(), theirs.documents())
    }

    #[test]
    fn same_documents_as_tracing_subscribers_json() {
        let (ours, theirs) = both(|| {
            tracing::info!("no span, no fields");
            let request = tracing::info_span!(
                "request",
                request_id = %"r-1",
                method = %"GET",
                path = %"/a \"quoted\" \\ path\n",
                trace_id = tracing::field::Empty,
                http.response.status_code = tracing::field::Empty,
            );
            let _entered = request.enter();
            request.record("trace_id", tracing::field::display("4bf92f35"));
            request.record("http.response.status_code", 404u64);
            tracing::warn!(status = 404u16, elapsed_us = 17u64, ok = false, "request");
            let inner = tracing::info_span!("migrate.pre_serve");
            let _inner = inner.enter();
            tracing::error!(
                version = -20261124000001i64,
                ratio = 0.25,
                nan = f64::NAN,
                big = 1u128 << 100,
                text = "tab\there, bell\u{7}, é, 🦀",
                debug = ?("a", 1),
                "Applied migration {} in {} ms",
                20261124000001i64,
                3
            );
        });
        assert_eq!(ours.len(), 3);
        assert_eq!(ours, theirs);
    }

    proptest! {
        /// Any text, as a message, an event field and a span field, reads back the same.
        #[test]
        fn any_text_is_escaped_as_serde_json_reads_it(text in any::<String>()) {
            let (ours, theirs) = both(|| {
                let span = tracing::info_span!("s", field = %text);
                let _entered = span.enter();
                tracing::info!(value = text.as_str(), "{text}");
            });
            prop_assert_eq!(&ours, &theirs);
            prop_assert_eq!(&ours[0]["message"], &Value::String(text.clone()));
            prop_assert_eq!(&ours[0]["spans"][0]["field"], &Value::String(text));
        }
    }
}
