//! Turns a stream of [`StreamEvent`]s into the whole [`ChatResponse`] it adds up to.

use crate::{ErrorKind, EventStream, ProviderError};
use exoclaw_types::{ChatResponse, Message, ModelRef, Part, Role, StopReason, StreamEvent, Usage};
use futures::StreamExt;

/// Accumulates stream events into an assistant message, usage and stop reason.
#[derive(Debug, Default)]
pub struct ResponseAssembler {
    parts: Vec<Part>,
    usage: Usage,
    stop: Option<StopReason>,
    served: Option<(String, String)>,
}

impl ResponseAssembler {
    /// An empty assembler.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one event. Deltas extend the last part of their kind; assembled tool calls become parts.
    pub fn push(&mut self, event: StreamEvent) {
        match event {
            StreamEvent::TextDelta { text } => match self.parts.last_mut() {
                Some(Part::Text { text: last }) => last.push_str(&text),
                _ => self.parts.push(Part::Text { text }),
            },
            StreamEvent::ThinkingDelta { text } => match self.parts.last_mut() {
                Some(Part::Thinking { text: last, signature: None }) => last.push_str(&text),
                _ => self.parts.push(Part::Thinking { text, signature: None }),
            },
            StreamEvent::ThinkingSignature { signature } => match self.parts.last_mut() {
                // A signature closes the thinking block it follows; one already closed keeps its own.
                Some(Part::Thinking { signature: slot @ None, .. }) => *slot = Some(signature),
                // Redacted thinking: a signature with no visible text.
                _ => self.parts.push(Part::Thinking { text: String::new(), signature: Some(signature) }),
            },
            StreamEvent::ToolCall { call, .. } => self.parts.push(Part::ToolCall(call)),
            // The assembled `ToolCall` event carries everything these announce.
            StreamEvent::ToolCallStart { .. } | StreamEvent::ToolCallArgsDelta { .. } => {}
            StreamEvent::Usage(usage) => self.usage.update(usage),
            StreamEvent::Served { provider, model } => self.served = Some((provider, model)),
            StreamEvent::Finish { reason } => self.stop = Some(reason),
        }
    }

    /// The provider instance and model a router said serve this answer
    /// ([`StreamEvent::Served`]), if one did.
    pub fn served(&self) -> Option<(&str, &str)> {
        self.served.as_ref().map(|(p, m)| (p.as_str(), m.as_str()))
    }

    /// Whether a [`StreamEvent::Finish`] has been seen.
    pub fn is_finished(&self) -> bool {
        self.stop.is_some()
    }

    /// The token counts reported so far.
    pub fn usage(&self) -> Usage {
        self.usage
    }

    /// What has been assembled so far, as an assistant message, whether or not the stream
    /// finished: the text a user saw before a cancel or a broken stream.
    pub fn into_partial(self) -> Message {
        Message::new(Role::Assistant, self.parts)
    }

    /// The whole answer; a protocol error if the stream never said it was finished.
    pub fn finish(self, provider: &str) -> Result<ChatResponse, ProviderError> {
        let Some(stop_reason) = self.stop else {
            return Err(ProviderError::new(
                ErrorKind::Protocol,
                provider,
                "the answer ended without a finish event",
            ));
        };
        Ok(ChatResponse {
            message: Message::new(Role::Assistant, self.parts),
            stop_reason,
            usage: self.usage,
            served: self
                .served
                .map(|(provider, model)| ModelRef { provider, model: exoclaw_types::ModelId(model) }),
        })
    }
}

/// Reads `events` to the end and assembles the answer; the first error ends it.
pub async fn collect_response(
    provider: &str,
    mut events: EventStream,
) -> Result<ChatResponse, ProviderError> {
    let mut assembler = ResponseAssembler::new();
    while let Some(event) = events.next().await {
        assembler.push(event?);
    }
    assembler.finish(provider)
}

#[cfg(test)]
mod tests {
    use super::*;
    use exoclaw_types::ToolCall;
    use pretty_assertions::assert_eq;
    use serde_json::json;

    #[test]
    fn deltas_merge_into_parts_in_order() {
        let mut a = ResponseAssembler::new();
        for e in [
            StreamEvent::ThinkingDelta { text: "Let me ".into() },
            StreamEvent::ThinkingDelta { text: "think.".into() },
            StreamEvent::ThinkingSignature { signature: "sig".into() },
            StreamEvent::TextDelta { text: "Hel".into() },
            StreamEvent::TextDelta { text: "lo".into() },
            StreamEvent::ToolCallStart { index: 0, id: "c1".into(), name: "t".into() },
            StreamEvent::ToolCallArgsDelta { index: 0, fragment: "{}".into() },
            StreamEvent::ToolCall {
                index: 0,
                call: ToolCall { id: "c1".into(), name: "t".into(), arguments: json!({}) },
            },
            StreamEvent::Usage(Usage { input_tokens: Some(5), ..Usage::default() }),
            StreamEvent::Usage(Usage { output_tokens: Some(9), ..Usage::default() }),
            StreamEvent::Finish { reason: StopReason::ToolUse },
        ] {
            a.push(e);
        }
        let r = a.finish("p").unwrap();
        assert_eq!(
            r.message.parts,
            vec![
                Part::Thinking { text: "Let me think.".into(), signature: Some("sig".into()) },
                Part::text("Hello"),
                Part::ToolCall(ToolCall { id: "c1".into(), name: "t".into(), arguments: json!({}) }),
            ]
        );
        assert_eq!(r.usage, Usage { input_tokens: Some(5), output_tokens: Some(9), ..Usage::default() });
        assert_eq!(r.stop_reason, StopReason::ToolUse);
    }

    #[test]
    fn a_second_signature_after_a_signed_block_is_a_new_redacted_block() {
        let mut a = ResponseAssembler::new();
        a.push(StreamEvent::ThinkingDelta { text: "plan".into() });
        a.push(StreamEvent::ThinkingSignature { signature: "s1".into() });
        a.push(StreamEvent::ThinkingSignature { signature: "s2".into() });
        a.push(StreamEvent::Finish { reason: StopReason::EndTurn });
        assert_eq!(
            a.finish("p").unwrap().message.parts,
            vec![
                Part::Thinking { text: "plan".into(), signature: Some("s1".into()) },
                Part::Thinking { text: String::new(), signature: Some("s2".into()) },
            ]
        );
    }

    #[test]
    fn a_stream_without_finish_is_a_protocol_error() {
        let mut a = ResponseAssembler::new();
        a.push(StreamEvent::TextDelta { text: "partial".into() });
        let err = a.finish("p").unwrap_err();
        assert_eq!(err.kind, ErrorKind::Protocol);
    }
}
