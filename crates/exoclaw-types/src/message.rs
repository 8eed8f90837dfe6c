//! Conversation messages and the parts they are made of.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// Who said a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Instructions from the application (most APIs take these out of band).
    System,
    /// The person (or program) talking to the agent.
    User,
    /// The model.
    Assistant,
    /// Results of tool calls, fed back to the model.
    Tool,
}

/// A message's identity: a UUIDv7, so ids sort by creation time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct MessageId(pub Uuid);

impl MessageId {
    /// A fresh, time-ordered id.
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }
}

impl Default for MessageId {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Display for MessageId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// One message of a conversation: a role and an ordered list of parts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Message {
    /// Unique, time-ordered id.
    pub id: MessageId,
    /// Who said it.
    pub role: Role,
    /// What was said, in order.
    pub parts: Vec<Part>,
    /// When the message was created.
    pub created_at: DateTime<Utc>,
}

impl Message {
    /// A message with the given role and parts, stamped now.
    pub fn new(role: Role, parts: Vec<Part>) -> Self {
        Self { id: MessageId::new(), role, parts, created_at: Utc::now() }
    }

    /// A user message holding one text part.
    pub fn user(text: impl Into<String>) -> Self {
        Self::new(Role::User, vec![Part::text(text)])
    }

    /// An assistant message holding one text part.
    pub fn assistant(text: impl Into<String>) -> Self {
        Self::new(Role::Assistant, vec![Part::text(text)])
    }

    /// A tool message carrying the results of tool calls.
    pub fn tool_results(results: impl IntoIterator<Item = ToolResult>) -> Self {
        Self::new(Role::Tool, results.into_iter().map(Part::ToolResult).collect())
    }

    /// All text parts joined, without thinking or tool parts.
    pub fn text(&self) -> String {
        self.parts
            .iter()
            .filter_map(|p| match p {
                Part::Text { text } => Some(text.as_str()),
                _ => None,
            })
            .collect()
    }

    /// The tool calls this message makes, in order.
    pub fn tool_calls(&self) -> impl Iterator<Item = &ToolCall> {
        self.parts.iter().filter_map(|p| match p {
            Part::ToolCall(call) => Some(call),
            _ => None,
        })
    }
}

/// One piece of a message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Part {
    /// Plain text.
    Text {
        /// The text.
        text: String,
    },
    /// An image, inline or by URL.
    Image {
        /// Where the image's bytes are.
        source: ImageSource,
    },
    /// The model asks for a tool to be run.
    ToolCall(ToolCall),
    /// The result of running a tool, answering a [`Part::ToolCall`].
    ToolResult(ToolResult),
    /// The model's visible reasoning.
    Thinking {
        /// The reasoning text.
        text: String,
        /// Opaque signature some vendors (Anthropic) require when the thinking is sent back.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signature: Option<String>,
    },
}

impl Part {
    /// A text part.
    pub fn text(text: impl Into<String>) -> Self {
        Part::Text { text: text.into() }
    }
}

/// Where an image's bytes are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ImageSource {
    /// Base64-encoded bytes with their media type (`image/png`, `image/jpeg`, …).
    Base64 {
        /// IANA media type.
        media_type: String,
        /// Standard base64, no data-URL prefix.
        data: String,
    },
    /// A URL the provider fetches itself.
    Url {
        /// The image's URL.
        url: String,
    },
}

/// A request from the model to run a tool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ToolCall {
    /// The call's id, which the matching [`ToolResult::call_id`] repeats.
    pub id: String,
    /// The tool's name.
    pub name: String,
    /// The arguments as JSON. When a model produced arguments that are not valid JSON, they are kept
    /// verbatim as a JSON string so the tool layer can tell the model what was wrong.
    pub arguments: Value,
}

/// The outcome of a tool call, fed back to the model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ToolResult {
    /// The id of the [`ToolCall`] this answers.
    pub call_id: String,
    /// What the tool returned (or the error it reported), as text.
    pub content: String,
    /// Whether the tool failed; the model sees the content either way.
    #[serde(default)]
    pub is_error: bool,
}
