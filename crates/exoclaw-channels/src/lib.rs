//! exoclaw's chat channels: platform adapters that verify a platform's deliveries to the
//! gateway's `/webhook/NAME`, submit each message as a turn to the runtime (so the bindings pick
//! the agent and each conversation is its own session), and answer where the message was asked.
//!
//! - [`slack`]: Slack's Events API (by webhook or Socket Mode) and Web API.
//! - [`telegram`]: Telegram's Bot API, by long polling or webhook.
//! - [`discord`]: Discord's Gateway (mentions, direct messages) and Interactions (slash commands).
//! - [`kadi`]: the KĀDI broker (agents offered as abilities; Slack and Discord events it relays).
//! - [`split_message`]: long answers cut at a platform's limit on markdown boundaries.
//! - [`approval`]: gated tool calls asked about in the chat, answered by the user who asked.
//! - `progress`: a message saying which tools run, edited as they do and then into the answer.
//! - `files`: a message's files given to the model, and the files the agent sends uploaded.
//!

mod api;
pub mod approval;
mod backoff;
pub mod breaker;
pub mod connection;
pub mod discord;
mod files;
pub mod kadi;
mod progress;
mod recent;
pub mod slack;
mod split;
pub mod telegram;

pub use approval::{ApprovalMode, Approvals};
pub use connection::{ConnectionMonitor, Unmonitored};
pub use discord::{DiscordConfig, DiscordGateway, DiscordInteractions};
pub use kadi::{KADI_ASK_HINT, KADI_AUDIT_AGENT, KadiClient, KadiConfig};
pub use slack::{SlackChannel, SlackConfig, SlackSocket};
pub use split::split_message;
pub use telegram::{TelegramChannel, TelegramConfig, TelegramMode, TelegramPoller};

use serde::{Deserialize, Serialize};

/// `[channels]`: the built-in chat channels, each off until its table is there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChannelsConfig {
    /// The models a chat message may pick for its turn with a `[provider/model]` prefix (globs,
    /// such as `anthropic/*`); empty (the default): none, a prefix is just text.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<String>,
    /// What a tool call the agent's permissions say to ask about does in a chat: `ask` (the
    /// default) posts a prompt with buttons that only the user whose message started the turn
    /// can answer; `refuse` refuses it without asking.
    #[serde(skip_serializing_if = "is_default_mode")]
    pub approvals: ApprovalMode,
    /// How long an approval prompt waits for its answer, in seconds (1 to 86,400; default 300):
    /// unanswered, the call is denied.
    #[serde(deserialize_with = "approval::timeout_secs", skip_serializing_if = "is_default_timeout")]
    pub approval_timeout_secs: u64,
    /// Whether a turn that runs tools shows a progress message while they run ("Working… running
    /// `read_file`"), edited into the answer when the turn ends (default true); false: the answer
    /// alone, posted when the turn ends.
    #[serde(skip_serializing_if = "is_true")]
    pub progress: bool,
    /// `[channels.slack]`: Slack's Events API at `/webhook/slack`, or over Socket Mode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slack: Option<SlackConfig>,
    /// `[channels.telegram]`: Telegram's Bot API, by long polling or at `/webhook/telegram`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub telegram: Option<TelegramConfig>,
    /// `[channels.discord]`: Discord's Gateway, and its Interactions at `/webhook/discord`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub discord: Option<DiscordConfig>,
    /// `[channels.kadi]`: a connection to a KĀDI broker.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kadi: Option<KadiConfig>,
}

impl Default for ChannelsConfig {
    fn default() -> Self {
        Self {
            models: Vec::new(),
            approvals: ApprovalMode::default(),
            approval_timeout_secs: approval::DEFAULT_TIMEOUT_SECS,
            progress: true,
            slack: None,
            telegram: None,
            discord: None,
            kadi: None,
        }
    }
}

fn is_default_mode(mode: &ApprovalMode) -> bool {
    *mode == ApprovalMode::default()
}

fn is_true(value: &bool) -> bool {
    *value
}

fn is_default_timeout(secs: &u64) -> bool {
    *secs == approval::DEFAULT_TIMEOUT_SECS
}

impl ChannelsConfig {
    /// Whether no channel is configured.
    pub fn is_empty(&self) -> bool {
        self.models.is_empty()
            && is_default_mode(&self.approvals)
            && is_default_timeout(&self.approval_timeout_secs)
            && self.progress
            && self.slack.is_none()
            && self.telegram.is_none()
            && self.discord.is_none()
            && self.kadi.is_none()
    }
}
