//! Fields of `log_format = "text"` lines, written so that a value cannot forge a line: control
//! characters (a newline, a carriage return, a terminal escape) are escaped, and each value is cut
//! to `MAX_VALUE_CHARS`. Values may come from senders (event ids, error messages quoting a
//! payload); the JSON format escapes them by construction.

use std::fmt;
use tracing::field::{Field, Visit};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::fmt::format::Writer;

/// The most characters of one field value written; the rest is replaced by `…`.
pub const MAX_VALUE_CHARS: usize = 1024;

/// `FormatFields` for the text format: `message` first as is, then `name=value` pairs, like
/// tracing-subscriber's default, with every value escaped and capped.
#[derive(Debug, Default, Clone, Copy)]
pub struct EscapedFields;

impl<'writer> FormatFields<'writer> for EscapedFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'writer>, fields: R) -> fmt::Result {
        let mut visitor = Visitor {
            writer,
            first: true,
            result: Ok(()),
        };
        fields.record(&mut visitor);
        visitor.result
    }
}

struct Visitor<'writer> {
    writer: Writer<'writer>,
    first: bool,
    result: fmt::Result,
}

impl Visit for Visitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        // Quoted, as the default format writes strings.
        self.record_debug(field, &value);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.result.is_err() || field.name().starts_with("log.") {
            return;
        }
        let text = format!("{value:?}");
        let separator = if self.first { "" } else { " " };
        self.first = false;
        let name = field.name().trim_start_matches("r#");
        self.result = if name == "message" {
            write!(self.writer, "{separator}")
        } else {
            write!(self.writer, "{separator}{name}=")
        }
        .and_then(|()| write_escaped(&mut self.writer, &text));
    }
}

/// `text` with control characters escaped (`\n`, `\r`, `\t`, `\u{1b}`) and cut after
/// `MAX_VALUE_CHARS` characters.
pub fn write_escaped(out: &mut impl fmt::Write, text: &str) -> fmt::Result {
    for (i, c) in text.chars().enumerate() {
        if i == MAX_VALUE_CHARS {
            return out.write_char('…');
        }
        match c {
            '\n' => out.write_str("\\n")?,
            '\r' => out.write_str("\\r")?,
            '\t' => out.write_str("\\t")?,
            c if c.is_control() => write!(out, "\\u{{{:x}}}", c as u32)?,
            c => out.write_char(c)?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_value_cannot_start_a_line_and_is_capped() {
        let buffer = Buffer::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer({
                let buffer = buffer.clone();
                move || buffer.clone()
            })
            .with_ansi(false)
            .fmt_fields(EscapedFields)
            .finish();
        let forged = "k1\n2026-12-02T00:00:00Z ERROR hookwise: forged\r\u{1b}[31m";
        let long = "x".repeat(MAX_VALUE_CHARS + 10);
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("request", id = %forged);
            let _entered = span.enter();
            tracing::info!(event = %forged, plain = "a\tb", long, "accepted {}", forged);
        });
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(
            text.contains(r"event=k1\n2026-12-02T00:00:00Z ERROR hookwise: forged\r\u{1b}[31m"),
            "{text}"
        );
        assert!(text.contains(r"accepted k1\n"), "the message too: {text}");
        assert!(text.contains(r#"plain="a\tb""#), "{text}");
        assert!(
            text.contains(&format!("long=\"{}…", "x".repeat(MAX_VALUE_CHARS - 1))),
            "{text}"
        );
        assert!(!text.contains(&"x".repeat(MAX_VALUE_CHARS + 1)), "{text}");
    }
}
