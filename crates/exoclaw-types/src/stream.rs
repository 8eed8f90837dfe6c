//! What a provider streams back: [`StreamEvent`]s, the [`StopReason`], token [`Usage`], and the
//! [`ChatResponse`] a whole stream adds up to.

use crate::{Message, ToolCall};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One event of a model's streamed answer, in no vendor's format.
///
/// A provider emits, in order: any mix of text, thinking and tool-call events; then at most one
/// [`StreamEvent::Usage`] (omitted when the vendor reported none); then exactly one
/// [`StreamEvent::Finish`]. A tool call appears as `ToolCallStart`, zero or more
/// `ToolCallArgsDelta`, then the assembled `ToolCall`, all sharing one `index`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StreamEvent {
    /// More answer text.
    TextDelta {
        /// The new text.
        text: String,
    },
    /// More visible reasoning.
    ThinkingDelta {
        /// The new reasoning text.
        text: String,
    },
    /// The signature that closes a thinking block (Anthropic).
    ThinkingSignature {
        /// Opaque signature to send back with the thinking.
        signature: String,
    },
    /// A tool call begins.
    ToolCallStart {
        /// Position of the call among this answer's tool calls, from 0.
        index: u32,
        /// The call's id.
        id: String,
        /// The tool's name.
        name: String,
    },
    /// A fragment of a tool call's JSON arguments.
    ToolCallArgsDelta {
        /// Which call, as in [`StreamEvent::ToolCallStart`].
        index: u32,
        /// The next piece of the arguments' JSON text.
        fragment: String,
    },
    /// A tool call, complete, with its arguments parsed.
    ToolCall {
        /// Which call, as in [`StreamEvent::ToolCallStart`].
        index: u32,
        /// The assembled call.
        call: ToolCall,
    },
    /// Token counts for the whole answer, as far as the vendor reported them.
    Usage(Usage),
    /// Which provider instance and model serve this answer. A router sends it first, naming where
    /// the request went (after any fallback); a single provider needs not send it.
    Served {
        /// The provider instance's name.
        provider: String,
        /// The model on it.
        model: String,
    },
    /// The answer is complete.
    Finish {
        /// Why the model stopped.
        reason: StopReason,
    },
}

/// Why the model stopped generating.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// The model finished its answer.
    EndTurn,
    /// The token limit was reached; the answer is cut short.
    MaxTokens,
    /// A stop sequence was produced.
    StopSequence,
    /// The model is waiting for tool results.
    ToolUse,
    /// The vendor's safety system stopped the answer.
    ContentFilter,
    /// The model was repeating itself, so its answer was stopped (exoclaw's embedded model).
    Repetition,
    /// A reason this version of exoclaw does not know, verbatim from the vendor.
    Other(String),
}

/// Token counts of one model call. `None` means the provider did not say — never a silent 0.
///
/// `input_tokens` counts every prompt token, cached or not; `cache_read_tokens` and
/// `cache_write_tokens` say how many of them were read from or written to the prompt cache.
/// `output_tokens` includes reasoning tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Usage {
    /// Prompt tokens, including cached ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_tokens: Option<u64>,
    /// Generated tokens, including reasoning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_tokens: Option<u64>,
    /// Prompt tokens served from the cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_read_tokens: Option<u64>,
    /// Prompt tokens written to the cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_write_tokens: Option<u64>,
}

impl Usage {
    /// Whether the provider reported nothing at all.
    pub fn is_unreported(&self) -> bool {
        *self == Usage::default()
    }

    /// Takes every count `later` reports, keeping ours where it is silent. Vendors report usage in
    /// pieces (Anthropic: input at the start, output at the end) or cumulatively (Gemini).
    pub fn update(&mut self, later: Usage) {
        fn take(slot: &mut Option<u64>, v: Option<u64>) {
            if v.is_some() {
                *slot = v;
            }
        }
        take(&mut self.input_tokens, later.input_tokens);
        take(&mut self.output_tokens, later.output_tokens);
        take(&mut self.cache_read_tokens, later.cache_read_tokens);
        take(&mut self.cache_write_tokens, later.cache_write_tokens);
    }
}

/// A whole answer: what a stream of [`StreamEvent`]s adds up to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ChatResponse {
    /// The assistant message: thinking, text and tool calls in the order they were produced.
    pub message: Message,
    /// Why the model stopped.
    pub stop_reason: StopReason,
    /// Token counts, as far as reported.
    pub usage: Usage,
    /// The provider instance and model that served the answer, when a router chose them
    /// ([`StreamEvent::Served`] in a stream): after a fallback, another than the one asked for.
    /// `None` from a provider called directly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub served: Option<crate::ModelRef>,
}
