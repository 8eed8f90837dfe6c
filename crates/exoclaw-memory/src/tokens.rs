//! Counting tokens for the context budget: [`TokenCounter`], and the documented [`Estimate`]
//! used where exoclaw does not have the model's own tokenizer.

use exoclaw_types::{Message, Part};

/// Tokens a message costs beyond its text: the role and the separators every chat format adds
/// (OpenAI's format costs 3 to 4; ChatML `<|im_start|>role\n…<|im_end|>\n` costs 4 to 5).
pub const MESSAGE_OVERHEAD: usize = 5;

/// Tokens counted for an image: OpenAI's high-detail 512×512 tile costs 255, a whole image at
/// most about 1,100; other vendors are in that range.
pub const IMAGE_TOKENS: usize = 1_100;

/// Counts tokens the way a model would.
pub trait TokenCounter: Send + Sync + std::fmt::Debug {
    /// The tokens `text` costs.
    fn count(&self, text: &str) -> usize;

    /// The tokens `message` costs: its parts' text, its tool calls' names and arguments, its
    /// tool results, and [`MESSAGE_OVERHEAD`].
    fn message(&self, message: &Message) -> usize {
        let parts: usize = message
            .parts
            .iter()
            .map(|part| match part {
                Part::Text { text } | Part::Thinking { text, .. } => self.count(text),
                Part::Image { .. } => IMAGE_TOKENS,
                Part::ToolCall(call) => self.count(&call.name) + self.count(&call.arguments.to_string()) + 3,
                Part::ToolResult(result) => self.count(&result.content) + 3,
            })
            .sum();
        parts + MESSAGE_OVERHEAD
    }
}

/// The estimate used when the model's tokenizer is not at hand: one token per three bytes of
/// UTF-8, rounded up.
///
/// It errs on the side of too many: English prose is about four bytes a token with every
/// current vendor's tokenizer (so this counts about a third too many), code and JSON about
/// three, and CJK text three bytes a character at about one token a character. A budget
/// counted this way is therefore kept, at the price of sending a little less history than
/// would fit.
#[derive(Debug, Clone, Copy, Default)]
pub struct Estimate;

impl TokenCounter for Estimate {
    fn count(&self, text: &str) -> usize {
        text.len().div_ceil(3)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use exoclaw_types::{Role, ToolCall, ToolResult};
    use serde_json::json;

    #[test]
    fn the_estimate_rounds_up_and_never_counts_text_as_free() {
        assert_eq!(Estimate.count(""), 0);
        assert_eq!(Estimate.count("a"), 1);
        assert_eq!(Estimate.count("abcd"), 2);
        // "Lyon" in Japanese: 3 characters, 9 bytes.
        assert_eq!(Estimate.count("リヨン"), 3);
    }

    #[test]
    fn a_message_counts_every_part_and_its_overhead() {
        let call = Message::new(
            Role::Assistant,
            vec![
                Part::text("abc"),
                Part::ToolCall(ToolCall { id: "1".into(), name: "read".into(), arguments: json!({"p": 1}) }),
            ],
        );
        // "abc" 1 + "read" 2 + `{"p":1}` 3 + 3, and the overhead.
        assert_eq!(Estimate.message(&call), 1 + 2 + 3 + 3 + MESSAGE_OVERHEAD);
        let result = Message::new(
            Role::Tool,
            vec![Part::ToolResult(ToolResult {
                call_id: "1".into(),
                content: "x".repeat(30),
                is_error: false,
            })],
        );
        assert_eq!(Estimate.message(&result), 10 + 3 + MESSAGE_OVERHEAD);
    }
}
