//! What an agent turn looks like from the outside: [`AgentEvent`]s, the [`TurnOutcome`], sessions
//! and their keys, and the per-call [`UsageRecord`] that metering stores.

use crate::{ErrorCode, StopReason, ToolCall, Usage};
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::fmt;
use uuid::Uuid;

/// A session's identity: a UUIDv7, so ids sort by creation time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct SessionId(pub Uuid);

impl SessionId {
    /// A fresh, time-ordered id.
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }
}

impl Default for SessionId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::str::FromStr for SessionId {
    type Err = uuid::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(Self)
    }
}

/// Which conversation a message belongs to, as the gateway and channels see it:
/// displayed `agent:channel:account:peer`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub struct SessionKey {
    /// The agent answering.
    pub agent: String,
    /// The channel the conversation happens on (`cli`, `slack`, `ws`, …).
    pub channel: String,
    /// The account on that channel (workspace, bot, user id).
    pub account: String,
    /// The other side: a user, a DM or a channel id.
    pub peer: String,
}

impl fmt::Display for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}:{}", self.agent, self.channel, self.account, self.peer)
    }
}

/// What is known about a stored session, without its messages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SessionInfo {
    /// The session's id.
    pub id: SessionId,
    /// The routing key, when the session belongs to a channel conversation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<SessionKey>,
    /// A short human title (the first user message, cut), when one was set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// The `provider/model` last used, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// When the session was created.
    pub created_at: DateTime<Utc>,
    /// When a turn was last committed.
    pub updated_at: DateTime<Utc>,
    /// How many messages the session holds.
    pub message_count: u64,
    /// Whether a turn was interrupted (the process stopped mid-turn) and can be resumed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub interrupted: bool,
    /// How many times its messages were written (turns committed, clears): a history read at
    /// one revision is still the session's history while the revision stays the same; 0 for a
    /// session never written, which has no messages.
    #[serde(default)]
    pub revision: u64,
}

/// How a turn ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TurnOutcome {
    /// The model gave its answer.
    Completed,
    /// The model kept calling tools until the iteration limit; the turn was ended.
    MaxIterations,
    /// The user (or client) cancelled the turn.
    Cancelled,
    /// The turn failed; an [`AgentEvent::Error`] came before.
    Failed,
}

/// Whether a tool only looks, changes things, or reaches outside the machine. Drives permission
/// prompts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ToolEffect {
    /// Reads only (files, listings, searches).
    ReadOnly,
    /// Changes the workspace or runs commands.
    Mutating,
    /// Talks to the outside world (network).
    External,
}

/// What every front end (CLI, gateway, channels) receives while an agent works on a turn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AgentEvent {
    /// The turn began.
    TurnStarted {
        /// The session the turn belongs to.
        session_id: SessionId,
        /// The `provider/model` answering.
        model: String,
    },
    /// More answer text.
    Text {
        /// The new text.
        text: String,
    },
    /// More visible reasoning.
    Thinking {
        /// The new reasoning text.
        text: String,
    },
    /// The model called a tool; it is about to run (or to be approved).
    ToolUse {
        /// The call, with parsed arguments.
        call: ToolCall,
    },
    /// A mutating tool call waits for the user's approval.
    ApprovalNeeded {
        /// The call waiting.
        call: ToolCall,
        /// What kind of change it would make.
        effect: ToolEffect,
    },
    /// A tool finished.
    ToolResult {
        /// The call this answers.
        call_id: String,
        /// The tool's name.
        name: String,
        /// What the tool returned (or its error), as the model sees it.
        content: String,
        /// Whether the tool failed.
        is_error: bool,
        /// How long the tool ran, in milliseconds.
        duration_ms: u64,
    },
    /// Token counts of one model call.
    Usage {
        /// The counts, as far as the provider reported them.
        usage: Usage,
    },
    /// Something the user should know that does not stop the turn: a memory store that could
    /// not be read (the turn goes on with the recent messages alone), an embedder that failed.
    Warning {
        /// What happened and what it means for the answer, for a person.
        message: String,
    },
    /// Something went wrong; `code` says what, as a stable string (`auth`, `timeout`,
    /// `max_iterations`, …).
    Error {
        /// Machine-readable error code.
        code: ErrorCode,
        /// What happened and what to do, for a person.
        message: String,
    },
    /// The turn ended. Always the last event.
    Done {
        /// How it ended.
        outcome: TurnOutcome,
        /// Why the turn's last model call stopped (absent when no model call finished).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stop_reason: Option<StopReason>,
    },
}

/// One model call's metered usage, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct UsageRecord {
    /// When the call finished.
    pub at: DateTime<Utc>,
    /// The session the call served, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<SessionId>,
    /// The agent that made the call.
    pub agent: String,
    /// The provider instance that served it.
    pub provider: String,
    /// The model's name on that provider.
    pub model: String,
    /// Token counts, as reported (or estimated, see `estimated`).
    pub usage: Usage,
    /// Wall time of the call, in milliseconds.
    pub latency_ms: u64,
    /// Time to the first streamed event, in milliseconds, when the call streamed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttft_ms: Option<u64>,
    /// Cost in US dollars, when a price is known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
    /// Whether the token counts were estimated because the provider did not report them.
    #[serde(default)]
    pub estimated: bool,
    /// What the call was for: an answer, or memory's work after a turn.
    #[serde(default, skip_serializing_if = "CallPurpose::is_answer")]
    pub purpose: CallPurpose,
}

/// What a metered model call was for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CallPurpose {
    /// An answer: a turn's model call, or a request to the gateway's `/v1` API.
    #[default]
    Answer,
    /// Memory folding a session's oldest messages into its summary.
    Summary,
    /// Memory extracting the facts a user's message states.
    Facts,
}

impl CallPurpose {
    /// Its name, as stored and shown (`answer`, `summary`, `facts`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Answer => "answer",
            Self::Summary => "summary",
            Self::Facts => "facts",
        }
    }

    /// The purpose named `name` (what [`CallPurpose::as_str`] gives), if any.
    pub fn from_name(name: &str) -> Option<Self> {
        [Self::Answer, Self::Summary, Self::Facts].into_iter().find(|p| p.as_str() == name)
    }

    /// Whether it is [`CallPurpose::Answer`], which serialised records leave out.
    pub fn is_answer(&self) -> bool {
        *self == Self::Answer
    }
}

impl std::fmt::Display for CallPurpose {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
