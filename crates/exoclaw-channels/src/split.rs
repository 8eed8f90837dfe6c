//! Long answers cut to a platform's message limit, on markdown boundaries: between paragraphs,
//! else between lines, else between words, and only as a last resort inside a word. A code
//! block cut in two is closed at the end of one piece and reopened at the start of the next.

/// `text` in pieces of at most `limit` characters (`limit` ≥ 16), in order.
pub fn split_message(text: &str, limit: usize) -> Vec<String> {
    let limit = limit.max(16);
    let mut pieces = Vec::new();
    let mut rest = text.trim_end();
    // Room for a closing and a reopening fence.
    let room = limit - 8;
    while rest.chars().count() > limit {
        let window: String = rest.chars().take(room).collect();
        let cut = ["\n\n", "\n", " "]
            .iter()
            .find_map(|sep| window.rfind(sep).filter(|&at| at > room / 4).map(|at| (at, sep.len())))
            .unwrap_or((window.len(), 0));
        let (piece, skipped) = (&rest[..cut.0], cut.1);
        let mut piece = piece.trim_end().to_owned();
        rest = rest[cut.0 + skipped..].trim_start_matches(['\n', ' ']);
        if piece.matches("```").count() % 2 == 1 {
            piece.push_str("\n```");
            pieces.push(piece);
            let reopened = format!("```\n{rest}");
            return pieces.into_iter().chain(split_message(&reopened, limit)).collect();
        }
        pieces.push(piece);
    }
    if !rest.is_empty() || pieces.is_empty() {
        pieces.push(rest.to_owned());
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_answer_is_one_piece() {
        assert_eq!(split_message("hello", 100), ["hello"]);
        assert_eq!(split_message("", 100), [""]);
    }

    #[test]
    fn a_long_answer_is_cut_between_paragraphs_within_the_limit() {
        let paragraph = "word ".repeat(30).trim_end().to_owned();
        let text = vec![paragraph.clone(); 5].join("\n\n");
        let pieces = split_message(&text, 400);
        assert!(pieces.len() > 1);
        for piece in &pieces {
            assert!(piece.chars().count() <= 400, "{} chars", piece.chars().count());
            assert!(piece.split("\n\n").all(|p| p == paragraph), "a paragraph was cut: {piece:?}");
        }
        assert_eq!(pieces.join("\n\n"), text);
    }

    #[test]
    fn a_word_longer_than_the_limit_is_cut_as_a_last_resort() {
        let text = "x".repeat(100);
        let pieces = split_message(&text, 40);
        assert!(pieces.iter().all(|p| p.chars().count() <= 40));
        assert_eq!(pieces.concat(), text);
    }

    #[test]
    fn a_code_block_cut_in_two_is_closed_and_reopened() {
        let code = (0..40).map(|i| format!("let x{i} = {i};")).collect::<Vec<_>>().join("\n");
        let text = format!("Here:\n```\n{code}\n```");
        let pieces = split_message(&text, 200);
        assert!(pieces.len() > 1);
        for piece in &pieces {
            assert!(piece.chars().count() <= 200);
            assert_eq!(piece.matches("```").count() % 2, 0, "unbalanced fence in {piece:?}");
        }
    }
}
