//! Approvals in Slack: the prompt is posted in the conversation's thread with Block Kit buttons
//! (`chat.postMessage`); a press arrives as an interactivity request of type `block_actions`
//! (through `/webhook/slack`, or Socket Mode's `interactive` envelopes); the asker's answer
//! replaces the buttons (`chat.update`), and anyone else is told, where only they see it
//! (`chat.postEphemeral`), that they cannot answer. The asker may also react to the prompt
//! (`reaction_added`, with the `reactions:read` scope): ✅ approves, ❌ denies.

use super::{Approvals, Button, Choice, Markup, Place, Pressed};
use crate::slack::Shared;
use async_trait::async_trait;
use serde_json::{Value, json};
use std::sync::Arc;

/// A turn's prompts, in its Slack conversation.
pub(crate) struct SlackPlace {
    pub shared: Arc<Shared>,
    pub channel: String,
    pub thread_ts: Option<String>,
}

#[async_trait]
impl Place for SlackPlace {
    fn markup(&self) -> Markup {
        Markup::Slack
    }

    async fn post(&self, text: &str, buttons: &[Button]) -> Result<String, String> {
        let mut body = json!({
            "channel": self.channel,
            "text": "Approval needed",
            "blocks": [section(text), actions(buttons)],
        });
        if let Some(thread) = &self.thread_ts {
            body["thread_ts"] = json!(thread);
        }
        let posted = self.shared.post("chat.postMessage", &body).await?;
        posted["ts"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| "chat.postMessage: no ts in the answer".to_owned())
    }

    async fn close(&self, posted: &str, text: &str) {
        update(&self.shared, &self.channel, posted, text).await;
    }
}

/// A `section` block of mrkdwn `text`.
fn section(text: &str) -> Value {
    json!({"type": "section", "text": {"type": "mrkdwn", "text": text}})
}

/// The `actions` block of the prompt's buttons.
fn actions(buttons: &[Button]) -> Value {
    let elements: Vec<Value> = buttons
        .iter()
        .map(|button| {
            let mut element = json!({
                "type": "button",
                "text": {"type": "plain_text", "text": button.choice.label()},
                "action_id": format!("approval_{}", button.choice.key()),
                "value": button.value,
            });
            match button.choice {
                Choice::Approve => element["style"] = json!("primary"),
                Choice::Deny => element["style"] = json!("danger"),
                Choice::ForSession => {}
            }
            element
        })
        .collect();
    json!({"type": "actions", "block_id": "approval", "elements": elements})
}

/// Replaces the message `ts` in `channel` with `text`, without buttons.
async fn update(shared: &Shared, channel: &str, ts: &str, text: &str) {
    let body = json!({"channel": channel, "ts": ts, "text": text, "blocks": [section(text)]});
    if let Err(error) = shared.post("chat.update", &body).await {
        tracing::warn!(channel, "an approval prompt could not be updated in Slack: {error}");
    }
}

/// Takes a `reaction_added` by `user` of `reaction` to the message `ts` in `channel`: the asker's
/// ✅ or ❌ on a prompt answers it (on its own task, the prompt updated); anyone else's changes
/// nothing (a reaction is no request to answer, so they are not told).
pub(crate) fn react(
    approvals: &Approvals,
    shared: &Arc<Shared>,
    user: &str,
    reaction: &str,
    channel: &str,
    ts: &str,
) {
    if let Pressed::Answered { decision, prompt } = approvals.react(ts, reaction, user, channel) {
        let text = format!("{prompt}\n\n{}", super::answered_line(decision, &format!("<@{user}>")));
        let (shared, channel, ts) = (Arc::clone(shared), channel.to_owned(), ts.to_owned());
        tokio::spawn(async move { update(&shared, &channel, &ts, &text).await });
    }
}

/// Takes a `block_actions` interaction `payload`: a press of one of our prompts' buttons answers
/// it (on its own task, the prompt updated) if the asker pressed it. Other interactions are
/// ignored.
pub(crate) fn press(approvals: &Approvals, shared: &Arc<Shared>, payload: &Value) {
    if payload["type"] != "block_actions" {
        return;
    }
    let action = &payload["actions"][0];
    let (Some(value), Some(presser)) = (action["value"].as_str(), payload["user"]["id"].as_str()) else {
        return;
    };
    let channel = payload["container"]["channel_id"].as_str().or(payload["channel"]["id"].as_str());
    let ts = payload["container"]["message_ts"].as_str().or(payload["message"]["ts"].as_str());
    let (Some(channel), Some(ts)) = (channel, ts) else { return };
    let (shared, channel, ts, presser) =
        (Arc::clone(shared), channel.to_owned(), ts.to_owned(), presser.to_owned());
    match approvals.press(value, &presser, &channel) {
        Pressed::Answered { decision, prompt } => {
            let text = format!("{prompt}\n\n{}", super::answered_line(decision, &format!("<@{presser}>")));
            tokio::spawn(async move { update(&shared, &channel, &ts, &text).await });
        }
        Pressed::NotYours { asker } => {
            let mut body = json!({
                "channel": channel, "user": presser, "text": super::not_yours(&format!("<@{asker}>")),
            });
            if let Some(thread) = payload["message"]["thread_ts"].as_str() {
                body["thread_ts"] = json!(thread);
            }
            tokio::spawn(async move {
                if let Err(error) = shared.post("chat.postEphemeral", &body).await {
                    tracing::warn!(channel = %channel, "a press by someone else could not be answered: {error}");
                }
            });
        }
        Pressed::Stale => {}
    }
}
