//! Archival: where a session's recent window is cut once it grows past its limit, and the
//! prompts that fold the messages cut off into the session's rolling summary.

use exoclaw_types::{Message, Part, Role};

/// Where to cut a session's history of `messages` (the first `through` already summarised) so
/// that at most `window` messages stay after the cut: `None` when it is short enough. The cut is
/// moved back (keeping a message more) rather than leave tool results whose call was archived.
pub fn archival_cut(messages: &[Message], through: usize, window: usize) -> Option<usize> {
    let mut cut = messages.len().checked_sub(window)?;
    while cut > through && messages.get(cut).is_some_and(|m| m.role == Role::Tool) {
        cut -= 1;
    }
    (cut > through).then_some(cut)
}

/// The instructions for a summary.
pub const SUMMARY_PROMPT: &str = "You maintain the running summary of a conversation between a \
user and an AI assistant, so the assistant can continue it without the old messages. Update the \
summary with the new messages: keep every fact the user stated about themselves, their decisions, \
names, numbers, dates, open questions and what the assistant promised or did. Drop small talk. \
Write plain prose or short bullet points, at most 250 words. Answer with the summary only.";

/// The most characters of one message put into a summary request; a long tool output is cut.
pub const MESSAGE_CHARS: usize = 2_000;

/// The user message asking for a summary: the previous summary, then the messages as a
/// transcript.
pub fn summary_request(previous: Option<&str>, messages: &[Message]) -> String {
    let mut text = String::new();
    match previous {
        Some(previous) => text.push_str(&format!("The summary so far:\n{}\n\n", previous.trim())),
        None => text.push_str("There is no summary yet.\n\n"),
    }
    text.push_str("The new messages:\n");
    for message in messages {
        for part in &message.parts {
            let (who, body) = match part {
                Part::Text { text } => (role_name(message.role), text.as_str()),
                Part::ToolCall(call) => ("Assistant called a tool", call.name.as_str()),
                Part::ToolResult(result) => ("Tool result", result.content.as_str()),
                Part::Thinking { .. } | Part::Image { .. } => continue,
            };
            let body: String = body.chars().take(MESSAGE_CHARS).collect();
            text.push_str(&format!("{who}: {}\n", body.trim()));
        }
    }
    text
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::System => "System",
        Role::User => "User",
        Role::Assistant => "Assistant",
        Role::Tool => "Tool",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use exoclaw_types::{ToolCall, ToolResult};

    fn turns(n: usize) -> Vec<Message> {
        (0..n)
            .map(|i| {
                if i % 2 == 0 { Message::user(format!("q{i}")) } else { Message::assistant(format!("a{i}")) }
            })
            .collect()
    }

    #[test]
    fn the_seed_flow_twenty_one_messages_leave_twenty() {
        assert_eq!(archival_cut(&turns(21), 0, 20), Some(1));
        assert_eq!(archival_cut(&turns(20), 0, 20), None);
        assert_eq!(archival_cut(&turns(30), 1, 20), Some(10));
        assert_eq!(archival_cut(&turns(30), 10, 20), None, "already archived that far");
    }

    #[test]
    fn a_cut_never_separates_tool_results_from_their_call() {
        let call = Message::new(
            Role::Assistant,
            vec![Part::ToolCall(ToolCall {
                id: "c".into(),
                name: "ls".into(),
                arguments: serde_json::json!({}),
            })],
        );
        let result = Message::tool_results([ToolResult {
            call_id: "c".into(),
            content: "a b".into(),
            is_error: false,
        }]);
        let mut messages = turns(4);
        messages.extend([call, result.clone(), result, Message::assistant("done")]);
        // A window of 3 would start on the second result: the cut moves back to the call.
        assert_eq!(archival_cut(&messages, 0, 3), Some(4));
    }

    #[test]
    fn the_request_carries_the_previous_summary_and_a_transcript() {
        let text = summary_request(Some("Ada lives in Paris."), &turns(2));
        assert!(text.starts_with("The summary so far:\nAda lives in Paris."));
        assert!(text.ends_with("User: q0\nAssistant: a1\n"));
    }
}
