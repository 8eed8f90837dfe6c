//! Keeping what a tool returns small: a head-and-tail byte buffer for command output, line and text
//! truncation with visible markers, and the binary-file sniff.

use std::collections::VecDeque;

/// How far into a file the binary sniff looks.
const SNIFF_BYTES: usize = 8 * 1024;

/// Whether `bytes` (the start of a file or body) look binary: a NUL byte near the start, as git and
/// ripgrep judge it.
pub(crate) fn looks_binary(bytes: &[u8]) -> bool {
    bytes[..bytes.len().min(SNIFF_BYTES)].contains(&0)
}

/// `line` cut to `max_chars` characters, with a marker saying how many were dropped.
pub(crate) fn clip_line(line: &str, max_chars: usize) -> String {
    match line.char_indices().nth(max_chars) {
        None => line.to_owned(),
        Some((cut, _)) => {
            let dropped = line[cut..].chars().count();
            format!("{} [… {dropped} more characters on this line …]", &line[..cut])
        }
    }
}

/// `text` cut to `max_bytes` (on a character boundary), with a marker saying how much was dropped.
pub(crate) fn clip_text(text: &str, max_bytes: usize) -> String {
    if text.len() <= max_bytes {
        return text.to_owned();
    }
    let mut cut = max_bytes;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}\n[… {} bytes truncated …]", &text[..cut], text.len() - cut)
}

/// Collects a stream of bytes, keeping the first and the last `limit / 2` bytes of it and counting
/// the rest, so a long command output shows how it began and how it ended.
#[derive(Debug)]
pub(crate) struct HeadTail {
    head_limit: usize,
    tail_limit: usize,
    head: Vec<u8>,
    tail: VecDeque<u8>,
    total: usize,
}

impl HeadTail {
    /// A buffer keeping at most `limit` bytes in all.
    pub(crate) fn new(limit: usize) -> Self {
        let head_limit = limit / 2;
        let tail_limit = limit - head_limit;
        Self { head_limit, tail_limit, head: Vec::new(), tail: VecDeque::new(), total: 0 }
    }

    /// Adds bytes.
    pub(crate) fn push(&mut self, mut bytes: &[u8]) {
        self.total += bytes.len();
        let room = self.head_limit - self.head.len();
        if room > 0 {
            let take = room.min(bytes.len());
            self.head.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
        }
        if bytes.len() >= self.tail_limit {
            self.tail.clear();
            self.tail.extend(&bytes[bytes.len() - self.tail_limit..]);
        } else {
            self.tail.extend(bytes);
            let excess = self.tail.len().saturating_sub(self.tail_limit);
            self.tail.drain(..excess);
        }
    }

    /// How many bytes were pushed in all.
    pub(crate) fn total(&self) -> usize {
        self.total
    }

    /// The text, with `[… N bytes truncated …]` between head and tail when bytes were dropped.
    /// Invalid UTF-8 shows as `�`; a character split by the cut is dropped rather than mangled.
    pub(crate) fn finish(self) -> String {
        let tail: Vec<u8> = self.tail.into_iter().collect();
        let kept = self.head.len() + tail.len();
        if kept == self.total {
            let mut all = self.head;
            all.extend_from_slice(&tail);
            return String::from_utf8_lossy(&all).into_owned();
        }
        let head = trim_incomplete_end(&self.head);
        let tail = trim_incomplete_start(&tail);
        let dropped = self.total - head.len() - tail.len();
        format!(
            "{}\n[… {dropped} bytes truncated …]\n{}",
            String::from_utf8_lossy(head),
            String::from_utf8_lossy(tail)
        )
    }
}

/// `bytes` without a UTF-8 sequence cut off at its end.
fn trim_incomplete_end(bytes: &[u8]) -> &[u8] {
    match std::str::from_utf8(bytes) {
        Err(e) if e.error_len().is_none() => &bytes[..e.valid_up_to()],
        _ => bytes,
    }
}

/// `bytes` without the continuation bytes of a UTF-8 sequence cut off at its start.
fn trim_incomplete_start(bytes: &[u8]) -> &[u8] {
    let skip = bytes.iter().take(3).take_while(|b| (**b & 0b1100_0000) == 0b1000_0000).count();
    &bytes[skip..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_tail_keeps_everything_under_the_limit() {
        let mut buf = HeadTail::new(10);
        buf.push(b"hello");
        buf.push(b"world");
        assert_eq!(buf.finish(), "helloworld");
    }

    #[test]
    fn head_tail_keeps_both_ends_and_counts_the_middle() {
        let mut buf = HeadTail::new(8);
        for chunk in [&b"abcdef"[..], b"ghijkl", b"mnop", b"qrstuvwxyz"] {
            buf.push(chunk);
        }
        assert_eq!(buf.total(), 26);
        assert_eq!(buf.finish(), "abcd\n[… 18 bytes truncated …]\nwxyz");
    }

    #[test]
    fn head_tail_does_not_split_characters() {
        let mut buf = HeadTail::new(6);
        buf.push("ééééééé".as_bytes()); // 14 bytes
        let text = buf.finish();
        assert!(!text.contains('\u{FFFD}'), "{text}");
        assert!(text.starts_with("é\n[… "), "{text}");
    }

    #[test]
    fn clipping_marks_what_was_dropped() {
        assert_eq!(clip_line("abcdef", 4), "abcd [… 2 more characters on this line …]");
        assert_eq!(clip_line("abc", 4), "abc");
        assert_eq!(clip_text("héllo", 2), "h\n[… 5 bytes truncated …]");
    }

    #[test]
    fn nul_means_binary() {
        assert!(looks_binary(b"ab\0cd"));
        assert!(!looks_binary("plain text, é".as_bytes()));
    }
}
