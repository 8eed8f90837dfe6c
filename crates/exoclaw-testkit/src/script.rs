//! A scripted model behind a real OpenAI-compatible endpoint: each model call gets the next
//! scripted answer (text, or tool calls), streamed as OpenAI Chat Completions chunks. Drive the
//! `exoclaw` binary (or any OpenAI client) against [`ScriptedServer::url`] to test tool loops end to
//! end without a real model.
//!
//! The chunks follow OpenAI's published streaming format
//! (<https://platform.openai.com/docs/api-reference/chat-streaming/streaming>), as the `openai`
//! fixtures do: a role delta, content deltas, tool-call deltas whose arguments arrive in pieces,
//! a `finish_reason`, a usage chunk, then `data: [DONE]`.

use crate::server::{Reply, ScriptedServer};
use crate::sse::{data, done};
use serde_json::{Value, json};

/// One scripted model answer.
#[derive(Debug, Clone)]
pub enum Answer {
    /// A plain answer, streamed in pieces of a few words.
    Text(String),
    /// One or more tool calls (run in parallel by the agent), each `(id, name, arguments)`.
    ToolCalls(Vec<(String, String, Value)>),
}

impl Answer {
    /// A text answer.
    pub fn text(text: impl Into<String>) -> Self {
        Self::Text(text.into())
    }

    /// A single tool call.
    pub fn tool(id: &str, name: &str, arguments: Value) -> Self {
        Self::ToolCalls(vec![(id.to_owned(), name.to_owned(), arguments)])
    }

    /// Several tool calls in one answer.
    pub fn tools<'a>(calls: impl IntoIterator<Item = (&'a str, &'a str, Value)>) -> Self {
        Self::ToolCalls(calls.into_iter().map(|(id, n, a)| (id.to_owned(), n.to_owned(), a)).collect())
    }

    /// The answer as OpenAI stream chunks.
    pub fn chunks(&self) -> Vec<String> {
        let mut chunks = vec![chunk(json!({"role": "assistant", "content": ""}), None)];
        let finish = match self {
            Answer::Text(text) => {
                for piece in split_keeping_spaces(text) {
                    chunks.push(chunk(json!({"content": piece}), None));
                }
                "stop"
            }
            Answer::ToolCalls(calls) => {
                for (index, (id, name, arguments)) in calls.iter().enumerate() {
                    let arguments = arguments.to_string();
                    let (first, second) = arguments.split_at(arguments.len() / 2);
                    chunks.push(chunk(
                        json!({"tool_calls": [{"index": index, "id": id, "type": "function",
                                "function": {"name": name, "arguments": first}}]}),
                        None,
                    ));
                    chunks.push(chunk(
                        json!({"tool_calls": [{"index": index, "function": {"arguments": second}}]}),
                        None,
                    ));
                }
                "tool_calls"
            }
        };
        chunks.push(chunk(json!({}), Some(finish)));
        chunks.push(data(&json!({
            "id": "chatcmpl-script", "object": "chat.completion.chunk", "created": 1_700_000_000,
            "model": "scripted", "choices": [],
            "usage": {"prompt_tokens": 20, "completion_tokens": 7, "total_tokens": 27},
        })));
        chunks.push(done());
        chunks
    }

    /// The answer as a streamed reply.
    pub fn reply(&self) -> Reply {
        Reply::sse(self.chunks())
    }
}

/// Starts a server answering each model call with the next of `answers`.
pub async fn serve(answers: impl IntoIterator<Item = Answer>) -> ScriptedServer {
    ScriptedServer::start(answers.into_iter().map(|a| a.reply())).await
}

fn chunk(delta: Value, finish: Option<&str>) -> String {
    data(&json!({
        "id": "chatcmpl-script", "object": "chat.completion.chunk", "created": 1_700_000_000,
        "model": "scripted",
        "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
    }))
}

/// `"a b c"` → `["a ", "b ", "c"]`: pieces that concatenate back to the text.
fn split_keeping_spaces(text: &str) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut start = 0;
    for (i, c) in text.char_indices() {
        if c == ' ' {
            pieces.push(&text[start..=i]);
            start = i + 1;
        }
    }
    if start < text.len() {
        pieces.push(&text[start..]);
    }
    pieces
}

/// The messages of a recorded Chat Completions request body.
pub fn request_messages(body: &Value) -> &[Value] {
    body["messages"].as_array().map_or(&[], Vec::as_slice)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_pieces_join_back_to_the_text() {
        assert_eq!(split_keeping_spaces("a bb  c").concat(), "a bb  c");
        assert_eq!(split_keeping_spaces("one"), ["one"]);
    }
}
