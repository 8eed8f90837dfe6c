//! Streaming markdown styling for a terminal: answer text arrives a few characters at a time and
//! is styled as it streams, never held back more than a marker's length.
//!
//! What it styles is what a chat answer mostly uses: `# headings`, `**bold**`, `` `code` ``,
//! fenced code blocks and list bullets. The markdown markers themselves stay visible (the answer
//! can still be copied as markdown); only colour and weight are added. Anything else passes
//! through unchanged.

const RESET: &str = "\x1b[0m";
const BOLD: &str = "\x1b[1m";
const HEADING: &str = "\x1b[1;36m";
const CODE: &str = "\x1b[33m";
const FENCE: &str = "\x1b[2m";
const BULLET: &str = "\x1b[36m";

/// Styles a stream of markdown text chunk by chunk.
#[derive(Debug, Default)]
pub struct MarkdownStyler {
    /// At the start of a line (nothing but spaces seen on it yet).
    at_line_start: bool,
    /// Leading characters of the current line not yet decided on (`#`, `` ` ``, `-`, `*`, spaces).
    pending: String,
    in_heading: bool,
    in_fence: bool,
    in_code: bool,
    in_bold: bool,
    /// A lone `*` seen mid-line: the first half of `**`, or an emphasis star.
    star: bool,
    /// Some style was switched on in this line: the line ends with a reset.
    line_styled: bool,
}

impl MarkdownStyler {
    /// A styler at the start of an answer.
    pub fn new() -> Self {
        Self { at_line_start: true, ..Self::default() }
    }

    /// Styles `chunk`, returning what can be printed now.
    pub fn push(&mut self, chunk: &str) -> String {
        let mut out = String::with_capacity(chunk.len() + 16);
        for c in chunk.chars() {
            self.char(c, &mut out);
        }
        out
    }

    /// Whatever is still held back, with every style closed: the end of the answer.
    pub fn finish(&mut self) -> String {
        let mut out = String::new();
        self.flush_star(&mut out);
        if self.at_line_start && !self.pending.is_empty() {
            out.push_str(&std::mem::take(&mut self.pending));
        }
        if self.line_styled {
            out.push_str(RESET);
        }
        *self = Self::new();
        out
    }

    fn char(&mut self, c: char, out: &mut String) {
        if self.at_line_start {
            self.line_start_char(c, out);
        } else {
            self.inline_char(c, out);
        }
    }

    /// Collects a line's first characters until they tell what kind of line it is.
    fn line_start_char(&mut self, c: char, out: &mut String) {
        let trimmed = self.pending.trim_start();
        let undecided = match c {
            '`' => trimmed.chars().all(|p| p == '`') && trimmed.len() < 2,
            '#' => trimmed.chars().all(|p| p == '#'),
            ' ' | '-' | '*' | '+' => trimmed.is_empty(),
            _ => false,
        };
        if c == '\n' {
            let pending = std::mem::take(&mut self.pending);
            out.push_str(&pending);
            self.end_line(out);
            return;
        }
        if undecided {
            self.pending.push(c);
            return;
        }
        let mut pending = std::mem::take(&mut self.pending);
        self.at_line_start = false;
        let marker = pending.trim_start();
        if c == '`' && marker == "``" {
            // A fence opens or closes; its info string (```rust) is dimmed with it.
            pending.push(c);
            self.in_fence = !self.in_fence;
            self.style(out, FENCE);
            out.push_str(&pending);
            // The closing fence's line ends the block; the opening one starts it after the newline.
            self.in_code = false;
            return;
        }
        if self.in_fence {
            self.style(out, CODE);
            out.push_str(&pending);
            out.push(c);
            return;
        }
        if marker.starts_with('#') && c == ' ' {
            self.in_heading = true;
            self.style(out, HEADING);
            out.push_str(&pending);
            out.push(c);
            return;
        }
        if matches!(marker, "-" | "*" | "+") && c == ' ' {
            let indent = &pending[..pending.len() - 1];
            out.push_str(indent);
            self.style(out, BULLET);
            out.push_str(&pending[pending.len() - 1..]);
            out.push_str(RESET);
            out.push(c);
            return;
        }
        // Not a marker after all: the held characters are ordinary text, styled inline.
        for p in pending.chars() {
            self.inline_char(p, out);
        }
        self.inline_char(c, out);
    }

    fn inline_char(&mut self, c: char, out: &mut String) {
        if c == '\n' {
            self.flush_star(out);
            self.end_line(out);
            return;
        }
        if self.in_fence {
            out.push(c);
            return;
        }
        if c == '`' && !self.star {
            self.in_code = !self.in_code;
            if self.in_code {
                self.style(out, CODE);
                out.push(c);
            } else {
                out.push(c);
                out.push_str(RESET);
                self.restore(out);
            }
            return;
        }
        if self.in_code {
            out.push(c);
            return;
        }
        if c == '*' {
            if self.star {
                self.star = false;
                self.in_bold = !self.in_bold;
                if self.in_bold {
                    self.style(out, BOLD);
                    out.push_str("**");
                } else {
                    out.push_str("**");
                    out.push_str(RESET);
                    self.restore(out);
                }
            } else {
                self.star = true;
            }
            return;
        }
        self.flush_star(out);
        out.push(c);
    }

    fn style(&mut self, out: &mut String, style: &str) {
        out.push_str(style);
        self.line_styled = true;
    }

    /// Re-applies the styles still open after a reset.
    fn restore(&mut self, out: &mut String) {
        if self.in_heading {
            self.style(out, HEADING);
        }
        if self.in_bold {
            self.style(out, BOLD);
        }
    }

    fn flush_star(&mut self, out: &mut String) {
        if std::mem::take(&mut self.star) {
            out.push('*');
        }
    }

    fn end_line(&mut self, out: &mut String) {
        if std::mem::take(&mut self.line_styled) {
            out.push_str(RESET);
        }
        // Headings, inline code and bold never run past the end of a line; a fence does.
        self.in_heading = false;
        self.in_code = false;
        self.in_bold = false;
        out.push('\n');
        self.at_line_start = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    /// Styles `text` split into chunks of `size` characters.
    fn styled(text: &str, size: usize) -> String {
        let mut styler = MarkdownStyler::new();
        let chars: Vec<char> = text.chars().collect();
        let mut out: String =
            chars.chunks(size).map(|c| styler.push(&c.iter().collect::<String>())).collect();
        out.push_str(&styler.finish());
        out
    }

    fn strip(styled: &str) -> String {
        let mut out = String::new();
        let mut chars = styled.chars();
        while let Some(c) = chars.next() {
            if c == '\x1b' {
                for c in chars.by_ref() {
                    if c == 'm' {
                        break;
                    }
                }
            } else {
                out.push(c);
            }
        }
        out
    }

    const SAMPLE: &str = "# Title\nSome **bold** and `code`, a * star.\n- item one\n  * nested\n```rust\nfn main() {}\n```\n2 * 3 = 6\n";

    #[test]
    fn the_text_is_unchanged_apart_from_styles_however_it_is_split() {
        for size in [1, 2, 3, 7, 1000] {
            assert_eq!(strip(&styled(SAMPLE, size)), SAMPLE, "chunks of {size}");
        }
    }

    #[test]
    fn the_styling_does_not_depend_on_how_the_text_is_split() {
        let whole = styled(SAMPLE, 1000);
        for size in [1, 2, 5] {
            assert_eq!(styled(SAMPLE, size), whole, "chunks of {size}");
        }
    }

    #[test]
    fn headings_bold_code_and_bullets_are_styled() {
        let out = styled(SAMPLE, 1000);
        assert!(out.starts_with(&format!("{HEADING}# Title{RESET}\n")), "{out:?}");
        assert!(out.contains(&format!("{BOLD}**bold**{RESET}")), "{out:?}");
        assert!(out.contains(&format!("{CODE}`code`{RESET}")), "{out:?}");
        assert!(out.contains(&format!("{BULLET}-{RESET} item")), "{out:?}");
        assert!(out.contains(&format!("  {BULLET}*{RESET} nested")), "{out:?}");
        assert!(out.contains(&format!("{CODE}fn main() {{}}")), "{out:?}");
        assert!(out.contains("2 * 3 = 6"), "{out:?}");
    }

    #[test]
    fn styles_never_leak_past_the_end() {
        let out = styled("an **unclosed bold", 3);
        assert!(out.ends_with(RESET), "{out:?}");
        assert_eq!(strip(&out), "an **unclosed bold");
    }
}
