//! Telegram's Bot API wire format, for testing the Telegram channel without Telegram: updates as
//! the Bot API delivers them to a webhook, and its answers (`sendMessage`), served by a
//! [`ScriptedServer`].

use crate::server::{Reply, ScriptedServer};
use serde_json::{Value, json};

/// A text message update from `user` (id and username) in the chat `chat` of `kind` (`private`,
/// `group`, `supergroup`).
pub fn message(
    update_id: i64,
    message_id: i64,
    chat: i64,
    kind: &str,
    user: (i64, &str),
    text: &str,
) -> Value {
    json!({
        "update_id": update_id,
        "message": {
            "message_id": message_id,
            "from": {"id": user.0, "is_bot": false, "first_name": user.1, "username": user.1},
            "chat": {"id": chat, "type": kind},
            "date": 1_700_000_000,
            "text": text,
        }
    })
}

/// A press of the inline keyboard button carrying `data`, by `user` (id and username), on the
/// message `message_id` in `chat`: a `callback_query` update.
pub fn callback_query(update_id: i64, user: (i64, &str), chat: i64, message_id: i64, data: &str) -> Value {
    json!({
        "update_id": update_id,
        "callback_query": {
            "id": format!("cq{update_id}"),
            "from": {"id": user.0, "is_bot": false, "first_name": user.1, "username": user.1},
            "message": {
                "message_id": message_id, "date": 1_700_000_000, "text": "Approval needed",
                "from": {"id": 999, "is_bot": true, "first_name": "ExoBot", "username": "ExoBot"},
                "chat": {"id": chat, "type": if chat < 0 { "supergroup" } else { "private" }},
            },
            "chat_instance": "-4242",
            "data": data,
        }
    })
}

/// The inline keyboard of a `sendMessage` body: each button's text and callback data, in order.
pub fn buttons(body: &Value) -> Vec<(String, String)> {
    body["reply_markup"]["inline_keyboard"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|row| row.as_array().cloned().unwrap_or_default())
        .map(|button| {
            let text = button["text"].as_str().unwrap_or_default().to_owned();
            (text, button["callback_data"].as_str().unwrap_or_default().to_owned())
        })
        .collect()
}

/// A Bot API that accepts `count` calls (`{"ok": true, "result": {…}}`), recording them.
pub async fn bot_api(count: usize) -> ScriptedServer {
    ScriptedServer::start((0..count).map(|i| {
        Reply::json(200, &json!({"ok": true, "result": {"message_id": 1000 + i, "date": 1_700_000_000}}))
    }))
    .await
}

/// The Bot API's answer when a bot sends too fast.
pub fn too_many_requests(retry_after: u64) -> Reply {
    Reply::json(
        429,
        &json!({"ok": false, "error_code": 429, "description": format!("Too Many Requests: retry after {retry_after}"),
            "parameters": {"retry_after": retry_after}}),
    )
}
