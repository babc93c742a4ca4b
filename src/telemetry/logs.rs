//! Log lines as JSON objects, one per line, for log pipelines: the event's fields and those of
//! every span around it (a job's `job`, `handler` and `account`; a request's `request_id`) side by
//! side at the top level, so a query for `account = "acme"` finds every line of acme's runs,
//! and, when traces are exported, the `trace_id` that finds the line's trace.

use serde_json::{Map, Value};
use std::fmt;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// `FormatEvent` for `log_format = "json"`; spans' fields must be recorded as JSON
/// (`fmt_fields(JsonFields::new())`).
pub struct FlatJson;

impl<S, N> FormatEvent<S, N> for FlatJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut line = Map::new();
        line.insert(
            "timestamp".into(),
            chrono::Utc::now()
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
                .into(),
        );
        line.insert("level".into(), meta.level().as_str().into());
        line.insert("target".into(), meta.target().into());
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let extensions = span.extensions();
                let Some(fields) = extensions.get::<FormattedFields<N>>() else {
                    continue;
                };
                if let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(fields) {
                    line.extend(fields);
                }
            }
        }
        // The trace this line belongs to, when traces are exported (read outside any span's
        // extensions: the lookup may start the span).
        if let Some(trace_id) = super::trace::current_trace_id() {
            line.insert("trace_id".into(), trace_id.into());
        }
        // The event's own fields last: they win over a span's of the same name.
        event.record(&mut Fields(&mut line));
        writeln!(writer, "{}", Value::Object(line))
    }
}

struct Fields<'a>(&'a mut Map<String, Value>);

/// A logged text cut after `MAX_VALUE_CHARS` characters, as the text format does: values may
/// come from senders, and one line must not carry a whole payload.
fn capped(text: &str) -> String {
    match text.char_indices().nth(super::text::MAX_VALUE_CHARS) {
        None => text.to_string(),
        Some((at, _)) => format!("{}…", &text[..at]),
    }
}

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().into(), capped(&format!("{value:?}")).into());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), capped(value).into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_values_are_capped_like_the_text_format() {
        let limit = super::super::text::MAX_VALUE_CHARS;
        assert_eq!(capped("short"), "short");
        let long = "é".repeat(limit + 10);
        let cut = capped(&long);
        assert_eq!(cut.chars().count(), limit + 1);
        assert!(cut.ends_with('…'));
    }
}
