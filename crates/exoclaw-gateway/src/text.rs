//! Untrusted text on its way to a log line: [`Escaped`] writes control characters (ANSI escape
//! sequences, newlines that would forge a log line, bidirectional overrides) as `\u{..}` escapes,
//! and cuts what is too long to read. Model names, origins, channel names, client names and the
//! errors that quote them come from clients, and the operator reads the log on a terminal.

use exoclaw_core::text::is_terminal_unsafe;
use std::fmt::{self, Display, Write};

/// Characters of untrusted text shown before it is cut (`…` and how much more there was).
const SHOWN_CHARS: usize = 200;

/// Displays `T` with control and invisible formatting characters escaped, and at most
/// [`SHOWN_CHARS`] characters of it. Formats lazily: nothing is allocated, and a disabled log
/// level never formats it at all.
#[derive(Debug, Clone, Copy)]
pub struct Escaped<T>(pub T);

impl<T: Display> Display for Escaped<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = EscapingWriter { out: f, shown: 0, cut: 0 };
        write!(out, "{}", self.0)?;
        if out.cut > 0 {
            write!(out.out, "…({} more characters)", out.cut)?;
        }
        Ok(())
    }
}

struct EscapingWriter<'a, 'b> {
    out: &'a mut fmt::Formatter<'b>,
    shown: usize,
    cut: usize,
}

impl Write for EscapingWriter<'_, '_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        // Most text needs no escape: write runs of safe characters at once.
        let mut rest = s;
        while !rest.is_empty() {
            if self.shown >= SHOWN_CHARS {
                self.cut += rest.chars().count();
                return Ok(());
            }
            let room = SHOWN_CHARS - self.shown;
            let mut end = 0;
            let mut taken = 0;
            for (at, c) in rest.char_indices() {
                if taken == room || is_terminal_unsafe(c) {
                    break;
                }
                end = at + c.len_utf8();
                taken += 1;
            }
            if end > 0 {
                self.out.write_str(&rest[..end])?;
                self.shown += taken;
                rest = &rest[end..];
                continue;
            }
            // The next character is one to escape.
            let Some(c) = rest.chars().next() else { break };
            write!(self.out, "\\u{{{:x}}}", u32::from(c))?;
            self.shown += 1;
            rest = &rest[c.len_utf8()..];
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_and_ansi_sequences_are_escaped_and_plain_text_is_kept() {
        let shown = Escaped("gpt-4o\u{1b}[31m\r\nFAKE LOG LINE\u{202e}").to_string();
        assert_eq!(shown, "gpt-4o\\u{1b}[31m\\u{d}\\u{a}FAKE LOG LINE\\u{202e}");
        assert_eq!(Escaped("openai/gpt-4o-mini ünïcödé").to_string(), "openai/gpt-4o-mini ünïcödé");
    }

    #[test]
    fn long_text_is_cut_saying_how_much_more_there_was() {
        let shown = Escaped("é".repeat(SHOWN_CHARS + 50)).to_string();
        assert!(shown.starts_with(&"é".repeat(SHOWN_CHARS)), "{shown}");
        assert!(shown.ends_with("…(50 more characters)"), "{shown}");
    }

    #[test]
    fn errors_quoting_client_text_are_escaped_too() {
        let e =
            crate::GatewayError::ModelNotFound { model: "x\u{1b}]0;pwned\u{7}".into(), available: vec![] };
        let shown = Escaped(&e).to_string();
        assert!(!shown.contains('\u{1b}') && !shown.contains('\u{7}'), "{shown}");
        assert!(shown.contains("x\\u{1b}]0;pwned\\u{7}"), "{shown}");
    }
}
