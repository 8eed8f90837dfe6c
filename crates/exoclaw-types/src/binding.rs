//! Which agent answers a conversation: a [`Binding`] as configured (`[[bindings]]`), and the
//! [`Inbound`] address of a message that the gateway matches against them.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One `[[bindings]]` entry: messages whose address matches every field set here go to `agent`.
/// Unset fields match anything. When several bindings match, the most specific wins, in the order
/// peer > guild > team > account > channel; with none, the default agent answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Binding {
    /// The agent that answers.
    pub agent: String,
    /// The channel (`ws`, `slack`, `discord`, `telegram`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// The account on the channel (a Slack workspace, a bot).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// The other side: a user, a DM or a channel id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    /// A Discord guild (server).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guild: Option<String>,
    /// A Slack team or an exoclaw team.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
}

/// Where a message came from, as far as routing it to an agent goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Inbound {
    /// The channel it arrived on.
    pub channel: String,
    /// The account on that channel.
    pub account: String,
    /// Who (or which room) sent it.
    pub peer: String,
    /// The Discord guild, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guild: Option<String>,
    /// The team, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
}
