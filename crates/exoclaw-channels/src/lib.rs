//! exoclaw's chat channels: platform adapters that verify a platform's deliveries to the
//! gateway's `/webhook/NAME`, submit each message as a turn to the runtime (so the bindings pick
//! the agent and each conversation is its own session), and answer where the message was asked.
//!
//! - [`slack`]: Slack's Events API and Web API.
//! - [`telegram`]: Telegram's Bot API, by webhook.
//! - [`discord`]: Discord's Gateway (mentions, direct messages) and Interactions (slash commands).
//! - [`kadi`]: the KĀDI broker (agents offered as abilities; Slack and Discord events it relays).
//! - [`split_message`]: long answers cut at a platform's limit on markdown boundaries.
//!

mod api;
pub mod breaker;
pub mod discord;
pub mod kadi;
mod recent;
pub mod slack;
mod split;
pub mod telegram;

pub use discord::{DiscordConfig, DiscordGateway, DiscordInteractions};
pub use kadi::{KadiClient, KadiConfig};
pub use slack::{SlackChannel, SlackConfig};
pub use split::split_message;
pub use telegram::{TelegramChannel, TelegramConfig};

use serde::{Deserialize, Serialize};

/// `[channels]`: the built-in chat channels, each off until its table is there.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChannelsConfig {
    /// The models a chat message may pick for its turn with a `[provider/model]` prefix (globs,
    /// such as `anthropic/*`); empty (the default): none, a prefix is just text.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<String>,
    /// `[channels.slack]`: Slack's Events API at `/webhook/slack`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slack: Option<SlackConfig>,
    /// `[channels.telegram]`: Telegram's Bot API webhook at `/webhook/telegram`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub telegram: Option<TelegramConfig>,
    /// `[channels.discord]`: Discord's Gateway, and its Interactions at `/webhook/discord`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub discord: Option<DiscordConfig>,
    /// `[channels.kadi]`: a connection to a KĀDI broker.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kadi: Option<KadiConfig>,
}

impl ChannelsConfig {
    /// Whether no channel is configured.
    pub fn is_empty(&self) -> bool {
        self.models.is_empty()
            && self.slack.is_none()
            && self.telegram.is_none()
            && self.discord.is_none()
            && self.kadi.is_none()
    }
}
