//! An incremental parser for `text/event-stream` (Server-Sent Events), as the WHATWG HTML standard
//! defines it (§9.2 "Server-sent events", the event stream interpretation).
//!
//! Bytes arrive in arbitrary chunks; the parser keeps only the unfinished line between calls and
//! hands each complete event to a callback as borrowed strings, so the hot path allocates nothing
//! per event. Lines may end in LF, CRLF or CR (also when the CR and LF land in different chunks);
//! comments (`:` lines), `id` and `retry` fields are skipped; multi-line `data` is joined with LF.
//!
//! One deliberate leniency: at end of stream, an event whose terminating blank line never arrived is
//! still delivered (the standard discards it). Some servers close the connection right after their
//! last `data:` line, and losing the final chunk of an answer helps nobody.

/// One dispatched event, borrowing the parser's buffers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SseEvent<'a> {
    /// The `event:` field, or `message` when absent.
    pub event: &'a str,
    /// The `data:` lines joined with `\n`.
    pub data: &'a str,
}

/// Incremental SSE parser. Feed it chunks with [`SseParser::feed`], then call [`SseParser::finish`].
#[derive(Debug, Default)]
pub struct SseParser {
    /// Bytes of a line that has not ended yet.
    partial: Vec<u8>,
    data: String,
    event: String,
    has_data: bool,
    /// The previous chunk ended in CR: an LF starting the next one belongs to that line break.
    skip_lf: bool,
    seen_first_line: bool,
}

const BOM: &[u8] = b"\xEF\xBB\xBF";

impl SseParser {
    /// A parser at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses `chunk`, calling `on_event` for every event it completes. Stops at the first error
    /// `on_event` returns.
    pub fn feed<E>(
        &mut self,
        mut chunk: &[u8],
        on_event: &mut impl FnMut(SseEvent<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        if self.skip_lf && !chunk.is_empty() {
            self.skip_lf = false;
            if chunk[0] == b'\n' {
                chunk = &chunk[1..];
            }
        }
        while let Some(end) = memchr::memchr2(b'\n', b'\r', chunk) {
            let mut next = end + 1;
            if chunk[end] == b'\r' {
                match chunk.get(next) {
                    Some(b'\n') => next += 1,
                    Some(_) => {}
                    None => self.skip_lf = true,
                }
            }
            if self.partial.is_empty() {
                self.line(&chunk[..end], on_event)?;
            } else {
                let mut line = std::mem::take(&mut self.partial);
                line.extend_from_slice(&chunk[..end]);
                let result = self.line(&line, on_event);
                line.clear();
                self.partial = line; // keep the allocation
                result?;
            }
            chunk = &chunk[next..];
        }
        self.partial.extend_from_slice(chunk);
        Ok(())
    }

    /// Ends the stream: a last line without a line break, and an event without its blank line, are
    /// still delivered.
    pub fn finish<E>(&mut self, on_event: &mut impl FnMut(SseEvent<'_>) -> Result<(), E>) -> Result<(), E> {
        if !self.partial.is_empty() {
            let line = std::mem::take(&mut self.partial);
            self.line(&line, on_event)?;
        }
        self.dispatch(on_event)
    }

    fn line<E>(
        &mut self,
        mut line: &[u8],
        on_event: &mut impl FnMut(SseEvent<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        if !self.seen_first_line {
            self.seen_first_line = true;
            line = line.strip_prefix(BOM).unwrap_or(line);
        }
        if line.is_empty() {
            return self.dispatch(on_event);
        }
        if line[0] == b':' {
            return Ok(()); // comment
        }
        let (field, value) = match memchr::memchr(b':', line) {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &[][..]),
        };
        match field {
            b"data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.has_data = true;
                push_utf8(&mut self.data, value);
            }
            b"event" => {
                self.event.clear();
                push_utf8(&mut self.event, value);
            }
            // `id` and `retry` matter for reconnecting EventSource clients, not for one response.
            _ => {}
        }
        Ok(())
    }

    fn dispatch<E>(&mut self, on_event: &mut impl FnMut(SseEvent<'_>) -> Result<(), E>) -> Result<(), E> {
        let result = if self.has_data {
            let event = if self.event.is_empty() { "message" } else { self.event.as_str() };
            on_event(SseEvent { event, data: &self.data })
        } else {
            Ok(())
        };
        self.data.clear();
        self.event.clear();
        self.has_data = false;
        result
    }
}

/// Lines are split at ASCII bytes, so a complete line is valid UTF-8 unless the server sent garbage;
/// garbage is replaced (U+FFFD) and then fails JSON parsing with a clear protocol error.
fn push_utf8(out: &mut String, bytes: &[u8]) {
    match std::str::from_utf8(bytes) {
        Ok(s) => out.push_str(s),
        Err(_) => out.push_str(&String::from_utf8_lossy(bytes)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;

    fn parse_chunks(chunks: &[&[u8]]) -> Vec<(String, String)> {
        let mut parser = SseParser::new();
        let mut out = Vec::new();
        let mut sink = |e: SseEvent<'_>| {
            out.push((e.event.to_owned(), e.data.to_owned()));
            Ok::<(), Infallible>(())
        };
        for chunk in chunks {
            parser.feed(chunk, &mut sink).unwrap();
        }
        parser.finish(&mut sink).unwrap();
        out
    }

    fn ev(event: &str, data: &str) -> (String, String) {
        (event.to_owned(), data.to_owned())
    }

    #[test]
    fn named_and_unnamed_events() {
        let got = parse_chunks(&[b"event: ping\ndata: {}\n\ndata: hello\n\n"]);
        assert_eq!(got, vec![ev("ping", "{}"), ev("message", "hello")]);
    }

    #[test]
    fn every_line_ending_and_a_crlf_split_across_chunks() {
        let got = parse_chunks(&[b"data: a\r\n\r\ndata: b\r\rdata: c\r", b"\n\r", b"\n"]);
        assert_eq!(got, vec![ev("message", "a"), ev("message", "b"), ev("message", "c")]);
    }

    #[test]
    fn comments_ids_and_retry_are_skipped_and_multiline_data_joined() {
        let got = parse_chunks(&[b": keep-alive\nid: 7\nretry: 100\ndata: one\ndata:two\n\n"]);
        assert_eq!(got, vec![ev("message", "one\ntwo")]);
    }

    #[test]
    fn events_without_data_are_not_dispatched() {
        let got = parse_chunks(&[b"event: ping\n\n: only a comment\n\ndata:\n\n"]);
        assert_eq!(got, vec![ev("message", "")]);
    }

    #[test]
    fn a_leading_bom_is_ignored() {
        let got = parse_chunks(&[b"\xEF\xBB\xBFdata: x\n\n"]);
        assert_eq!(got, vec![ev("message", "x")]);
    }

    #[test]
    fn a_last_event_without_its_blank_line_is_still_delivered() {
        let got = parse_chunks(&[b"data: {\"done\":true}"]);
        assert_eq!(got, vec![ev("message", "{\"done\":true}")]);
    }

    #[test]
    fn byte_by_byte_equals_all_at_once() {
        let text: &[u8] = b"event: a\r\ndata: 1\r\n\r\n:c\rdata: 2\rdata: 3\r\r";
        let whole = parse_chunks(&[text]);
        let bytes: Vec<&[u8]> = text.chunks(1).collect();
        assert_eq!(parse_chunks(&bytes), whole);
        assert_eq!(whole, vec![ev("a", "1"), ev("message", "2\n3")]);
    }
}
