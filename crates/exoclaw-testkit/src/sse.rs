//! Builders for `text/event-stream` text, as vendors send it.

use serde_json::Value;

/// A named event: `event: NAME\ndata: JSON\n\n` (Anthropic's style).
pub fn event(name: &str, data: &Value) -> String {
    format!("event: {name}\ndata: {data}\n\n")
}

/// An unnamed event: `data: JSON\n\n` (OpenAI's and Gemini's style).
pub fn data(data: &Value) -> String {
    format!("data: {data}\n\n")
}

/// OpenAI's end marker, `data: [DONE]`.
pub fn done() -> String {
    "data: [DONE]\n\n".to_owned()
}

/// An SSE comment line, as used for keep-alives and, in fixtures, to cite the wire format's source.
pub fn comment(text: &str) -> String {
    format!(": {text}\n")
}
