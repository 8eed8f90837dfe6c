//! Slack's wire format, for testing the Slack channel without Slack: Events API deliveries as
//! Slack sends them (JSON bodies and their `v0` signature headers, per Slack's "Verifying requests
//! from Slack"), and the Web API's answers (`chat.postMessage`), served by a [`ScriptedServer`].

use crate::server::{Reply, ScriptedServer};
use exoclaw_core::runtime::webhook::{hex, hmac_sha256};
use serde_json::{Value, json};

/// `v0=<hex HMAC-SHA256 of "v0:{timestamp}:{body}">` with the app's signing secret.
pub fn signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let timestamp = timestamp.to_string();
    format!("v0={}", hex(&hmac_sha256(secret.as_bytes(), &[b"v0:", timestamp.as_bytes(), b":", body])))
}

/// The headers Slack puts on a delivery of `body` sent at `timestamp` (Unix seconds).
pub fn headers(secret: &str, timestamp: i64, body: &[u8]) -> Vec<(&'static str, String)> {
    vec![
        ("x-slack-request-timestamp", timestamp.to_string()),
        ("x-slack-signature", signature(secret, timestamp, body)),
        ("content-type", "application/json".to_owned()),
    ]
}

/// The `url_verification` handshake Slack sends when the request URL is set.
pub fn url_verification(challenge: &str) -> Value {
    json!({"token": "Jhj5dZrVaK7ZwHHjRyZWjbDl", "challenge": challenge, "type": "url_verification"})
}

/// An `event_callback` carrying `event`.
pub fn event_callback(event_id: &str, team: &str, event: Value) -> Value {
    json!({
        "token": "XXYYZZ", "team_id": team, "api_app_id": "A0EXOCLAW", "type": "event_callback",
        "event_id": event_id, "event_time": 1_700_000_000,
        "authorizations": [{"team_id": team, "user_id": "U0BOT", "is_bot": true}],
        "event": event,
    })
}

/// `<@U0BOT> text` said by `user` in `channel` at `ts`, as an `app_mention`.
pub fn mention(event_id: &str, team: &str, channel: &str, user: &str, text: &str, ts: &str) -> Value {
    event_callback(
        event_id,
        team,
        json!({"type": "app_mention", "user": user, "text": format!("<@U0BOT> {text}"), "ts": ts,
            "channel": channel, "event_ts": ts}),
    )
}

/// `text` sent to the bot by `user` in a direct message.
pub fn direct_message(event_id: &str, team: &str, user: &str, text: &str, ts: &str) -> Value {
    event_callback(
        event_id,
        team,
        json!({"type": "message", "channel_type": "im", "user": user, "text": text, "ts": ts,
            "channel": format!("D{user}"), "event_ts": ts}),
    )
}

/// A Web API that accepts `count` calls (`{"ok": true, …}`), recording them.
pub async fn web_api(count: usize) -> ScriptedServer {
    ScriptedServer::start(
        (0..count).map(|i| {
            Reply::json(200, &json!({"ok": true, "channel": "C1", "ts": format!("1700000000.{i:06}")}))
        }),
    )
    .await
}
