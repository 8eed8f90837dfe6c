//! Text from outside (a model, a tool, a client, a stored session) on its way to a terminal or a
//! log line: which characters must not reach one as they are. The CLI shows them escaped, the
//! gateway's log lines too, and session titles are made without them.

/// Whether `c` must not reach a terminal as it is: C0 controls (ESC starts the sequences that move
/// the cursor, clear the screen, retitle the window or write the clipboard; CR and LF forge log
/// lines), DEL, C1 controls (U+009B is a one-character CSI), and the invisible characters that
/// reorder, split or hide the text around them (bidirectional marks, overrides and isolates, line
/// and paragraph separators, zero-width characters).
pub fn is_terminal_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}'
                | '\u{200b}'..='\u{200f}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}'
                | '\u{feff}'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_and_invisible_reordering_marks_are_unsafe_and_text_is_not() {
        for c in ['\u{1b}', '\r', '\n', '\u{7f}', '\u{9b}', '\u{202e}', '\u{2066}', '\u{200b}', '\u{feff}'] {
            assert!(is_terminal_unsafe(c), "{c:?}");
        }
        for c in ['a', 'é', '✓', '中', ' ', '…'] {
            assert!(!is_terminal_unsafe(c), "{c:?}");
        }
    }
}
