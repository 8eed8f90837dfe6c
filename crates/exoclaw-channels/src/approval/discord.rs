//! Approvals in Discord: the prompt is posted in the channel with a row of buttons (message
//! components, REST); a press is an interaction of type 3 (`MESSAGE_COMPONENT`), arriving at the
//! Interactions endpoint (answered in the HTTP response) or, for a bot without one, over the
//! Gateway as `INTERACTION_CREATE` (answered by POSTing the same response to the interaction's
//! callback). The asker's answer updates the prompt in place (response type 7,
//! `UPDATE_MESSAGE`, the buttons gone); anyone else gets an ephemeral message saying they cannot
//! answer; a stale press is acknowledged and changes nothing (type 6). The asker may also react to
//! the prompt (✅ approves, ❌ denies; `MESSAGE_REACTION_ADD` over the Gateway): the prompt is then
//! edited the same way; anyone else's reaction changes nothing.

use super::{Approvals, Button, Choice, Markup, Place, Pressed};
use crate::discord::Rest;
use async_trait::async_trait;
use serde_json::{Value, json};

/// Response types (Discord's numbering).
const CHANNEL_MESSAGE: u64 = 4;
const DEFERRED_UPDATE_MESSAGE: u64 = 6;
const UPDATE_MESSAGE: u64 = 7;
/// Only the user who pressed sees the message.
const EPHEMERAL: u64 = 1 << 6;

/// A turn's prompts, in its Discord channel.
pub(crate) struct DiscordPlace {
    pub rest: Rest,
    pub channel: String,
    /// The message the prompt replies to (the question), if there is one (not for a command).
    pub reply_to: Option<String>,
}

#[async_trait]
impl Place for DiscordPlace {
    fn markup(&self) -> Markup {
        Markup::Discord
    }

    async fn post(&self, text: &str, buttons: &[Button]) -> Result<String, String> {
        let buttons: Vec<Value> = buttons
            .iter()
            .map(|button| {
                let style = match button.choice {
                    Choice::Approve => 3,    // success
                    Choice::ForSession => 1, // primary
                    Choice::Deny => 4,       // danger
                };
                json!({"type": 2, "style": style, "label": button.choice.label(), "custom_id": button.value})
            })
            .collect();
        let mut body = json!({
            "content": text,
            "allowed_mentions": {"parse": []},
            "components": [{"type": 1, "components": buttons}],
        });
        if let Some(message) = &self.reply_to {
            body["message_reference"] = json!({"message_id": message});
        }
        let path = format!("/channels/{}/messages", self.channel);
        let posted = self.rest.send(reqwest::Method::POST, &path, &body, true).await?;
        posted["id"].as_str().map(str::to_owned).ok_or_else(|| "no message id in Discord's answer".to_owned())
    }

    async fn close(&self, posted: &str, text: &str) {
        let path = format!("/channels/{}/messages/{posted}", self.channel);
        let body = json!({"content": text, "components": [], "allowed_mentions": {"parse": []}});
        if let Err(error) = self.rest.send(reqwest::Method::PATCH, &path, &body, true).await {
            tracing::warn!(channel = %self.channel, "an approval prompt could not be edited in Discord: {error}");
        }
    }
}

/// The response to a `MESSAGE_COMPONENT` interaction: the prompt updated with the asker's answer,
/// an ephemeral refusal for anyone else, or an acknowledgement that changes nothing.
pub(crate) fn component(approvals: &Approvals, interaction: &Value) -> Value {
    let presser = interaction["member"]["user"]["id"]
        .as_str()
        .or(interaction["user"]["id"].as_str())
        .unwrap_or_default();
    let channel = interaction["channel_id"].as_str().or(interaction["channel"]["id"].as_str());
    let value = interaction["data"]["custom_id"].as_str().unwrap_or_default();
    let pressed = match channel {
        Some(channel) if !presser.is_empty() => approvals.press(value, presser, channel),
        _ => Pressed::Stale,
    };
    match pressed {
        Pressed::Answered { decision, prompt } => {
            let line = super::answered_line(decision, &format!("<@{presser}>"));
            json!({"type": UPDATE_MESSAGE, "data": {
                "content": format!("{prompt}\n\n{line}"), "components": [], "allowed_mentions": {"parse": []},
            }})
        }
        Pressed::NotYours { asker } => json!({"type": CHANNEL_MESSAGE, "data": {
            "content": super::not_yours(&format!("<@{asker}>")), "flags": EPHEMERAL,
            "allowed_mentions": {"parse": []},
        }}),
        Pressed::Stale => json!({"type": DEFERRED_UPDATE_MESSAGE}),
    }
}

/// Takes a `MESSAGE_REACTION_ADD` event: the asker's ✅ or ❌ on a prompt answers it (the prompt
/// edited on its own task, the buttons gone); anyone else's reaction changes nothing.
pub(crate) fn react(rest: &Rest, approvals: &Approvals, reaction: &Value) {
    let (Some(user), Some(channel), Some(message), Some(emoji)) = (
        reaction["user_id"].as_str(),
        reaction["channel_id"].as_str(),
        reaction["message_id"].as_str(),
        reaction["emoji"]["name"].as_str(),
    ) else {
        return;
    };
    if let Pressed::Answered { decision, prompt } = approvals.react(message, emoji, user, channel) {
        let text = format!("{prompt}\n\n{}", super::answered_line(decision, &format!("<@{user}>")));
        let place = DiscordPlace { rest: rest.clone(), channel: channel.to_owned(), reply_to: None };
        let message = message.to_owned();
        tokio::spawn(async move { place.close(&message, &text).await });
    }
}

/// Answers a component `interaction` that came over the Gateway: the response POSTed to its
/// callback (authorised by the interaction's token, not the bot's).
pub(crate) async fn respond(rest: &Rest, approvals: &Approvals, interaction: &Value) {
    let (Some(id), Some(token)) = (interaction["id"].as_str(), interaction["token"].as_str()) else { return };
    let response = component(approvals, interaction);
    let path = format!("/interactions/{id}/{token}/callback");
    if let Err(error) = rest.send(reqwest::Method::POST, &path, &response, false).await {
        tracing::warn!("a Discord button press could not be answered: {error}");
    }
}
