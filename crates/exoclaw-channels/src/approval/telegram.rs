//! Approvals in Telegram: the prompt is sent as a reply to the message with an inline keyboard
//! (`sendMessage`, HTML parse mode); a press arrives as an update's `callback_query` (by webhook
//! or long polling, through the one function that handles an update); every press is answered
//! (`answerCallbackQuery` — for someone else, an alert only they see), and the asker's answer
//! replaces the keyboard (`editMessageText`).

use super::{Approvals, Button, Markup, Place, Pressed, parse_button};
use crate::telegram::Sender;
use async_trait::async_trait;
use serde_json::{Value, json};
use std::sync::Arc;

/// A turn's prompts, in its Telegram chat.
pub(crate) struct TelegramPlace {
    pub send: Arc<Sender>,
    pub chat: i64,
    /// The message the prompt replies to (the question).
    pub reply_to: i64,
}

#[async_trait]
impl Place for TelegramPlace {
    fn markup(&self) -> Markup {
        Markup::TelegramHtml
    }

    async fn post(&self, text: &str, buttons: &[Button]) -> Result<String, String> {
        // One button a row: "Approve for this session" does not fit beside the others on a phone.
        let keyboard: Vec<Value> = buttons
            .iter()
            .map(|button| json!([{"text": button.choice.label(), "callback_data": button.value}]))
            .collect();
        let body = json!({
            "chat_id": self.chat,
            "text": text,
            "parse_mode": "HTML",
            "reply_parameters": {"message_id": self.reply_to},
            "reply_markup": {"inline_keyboard": keyboard},
        });
        let sent = self.send.call("sendMessage", &body).await?;
        sent["result"]["message_id"]
            .as_i64()
            .map(|id| id.to_string())
            .ok_or_else(|| "sendMessage: no message_id in the answer".to_owned())
    }

    async fn close(&self, posted: &str, text: &str) {
        edit(&self.send, self.chat, posted, text).await;
    }
}

/// Replaces the text of `message` in `chat` (and its keyboard, which goes).
async fn edit(send: &Sender, chat: i64, message: &str, text: &str) {
    let body = json!({"chat_id": chat, "message_id": message.parse::<i64>().unwrap_or_default(),
        "text": text, "parse_mode": "HTML"});
    if let Err(error) = send.call("editMessageText", &body).await {
        tracing::warn!(chat, "an approval prompt could not be edited in Telegram: {error}");
    }
}

/// How a Telegram user is named in a prompt (HTML): `@username`, else their first name.
pub(crate) fn shown_name(username: Option<&str>, first_name: Option<&str>) -> String {
    let name = match (username, first_name) {
        (Some(username), _) => format!("@{username}"),
        (None, Some(first_name)) => first_name.to_owned(),
        (None, None) => "the person who asked".to_owned(),
    };
    Markup::TelegramHtml.escape(&name)
}

/// Takes a `callback_query`: a press of one of our prompts' buttons answers it if the asker
/// pressed it; every such press is answered so the button stops spinning. Other callback queries
/// are left alone.
pub(crate) fn press(approvals: &Approvals, send: &Arc<Sender>, query: &Value) {
    let (Some(query_id), Some(data)) = (query["id"].as_str(), query["data"].as_str()) else { return };
    if parse_button(data).is_none() {
        return;
    }
    let presser = query["from"]["id"].as_i64().map(|id| id.to_string()).unwrap_or_default();
    let chat = query["message"]["chat"]["id"].as_i64();
    let message = query["message"]["message_id"].as_i64();
    let pressed = match chat {
        Some(chat) => approvals.press(data, &presser, &chat.to_string()),
        None => Pressed::Stale,
    };
    let mut answer = json!({"callback_query_id": query_id});
    let mut edited = None;
    match pressed {
        Pressed::Answered { decision, prompt } => {
            answer["text"] = json!(match decision.approves() {
                true => "Approved",
                false => "Denied",
            });
            let line = super::answered_line(
                decision,
                &shown_name(query["from"]["username"].as_str(), query["from"]["first_name"].as_str()),
            );
            if let (Some(chat), Some(message)) = (chat, message) {
                edited = Some((chat, message.to_string(), format!("{prompt}\n\n{line}")));
            }
        }
        Pressed::NotYours { .. } => {
            answer["text"] = json!(super::not_yours("the person who asked"));
            answer["show_alert"] = json!(true);
        }
        Pressed::Stale => {}
    }
    let send = Arc::clone(send);
    tokio::spawn(async move {
        if let Err(error) = send.call("answerCallbackQuery", &answer).await {
            tracing::warn!("a Telegram button press could not be answered: {error}");
        }
        if let Some((chat, message, text)) = edited {
            edit(&send, chat, &message, &text).await;
        }
    });
}
