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
