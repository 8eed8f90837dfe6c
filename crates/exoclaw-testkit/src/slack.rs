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

/// A press of the button whose value is `value` by `user`, on the message `message_ts` in
/// `channel`: the `block_actions` payload of an interactivity request (Slack's "Handling user
/// interaction").
pub fn block_actions(team: &str, user: &str, channel: &str, message_ts: &str, value: &str) -> Value {
    json!({
        "type": "block_actions", "token": "XXYYZZ", "api_app_id": "A0EXOCLAW", "trigger_id": "1.2.abc",
        "user": {"id": user, "username": user.to_lowercase(), "name": user.to_lowercase(), "team_id": team},
        "team": {"id": team, "domain": "exo"},
        "container": {"type": "message", "message_ts": message_ts, "channel_id": channel, "is_ephemeral": false},
        "channel": {"id": channel, "name": "general"},
        "message": {"type": "message", "ts": message_ts, "user": "U0BOT", "bot_id": "B0BOT", "text": "Approval needed"},
        "response_url": format!("https://hooks.slack.com/actions/{team}/1/x"),
        "actions": [{"type": "button", "action_id": "approval", "block_id": "approval", "value": value,
            "text": {"type": "plain_text", "text": "Approve"}, "action_ts": "1700000001.000200"}],
    })
}

/// The body of an interactivity request carrying `payload`: `payload=` and the JSON, form-encoded.
pub fn interaction_body(payload: &Value) -> String {
    let mut body = String::from("payload=");
    for byte in payload.to_string().bytes() {
        match byte {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' => {
                body.push(char::from(byte))
            }
            b' ' => body.push('+'),
            _ => body.push_str(&format!("%{byte:02X}")),
        }
    }
    body
}

/// The headers Slack puts on an interactivity request: signed as events are, a form body.
pub fn interaction_headers(secret: &str, timestamp: i64, body: &[u8]) -> Vec<(&'static str, String)> {
    let mut headers = headers(secret, timestamp, body);
    headers.retain(|(name, _)| *name != "content-type");
    headers.push(("content-type", "application/x-www-form-urlencoded".to_owned()));
    headers
}

/// The buttons of a Block Kit message body (`chat.postMessage`, `chat.update`): each one's label
/// and value, in order.
pub fn buttons(body: &Value) -> Vec<(String, String)> {
    body["blocks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|block| block["type"] == "actions")
        .flat_map(|block| block["elements"].as_array().cloned().unwrap_or_default())
        .map(|button| {
            let label = button["text"]["text"].as_str().unwrap_or_default().to_owned();
            (label, button["value"].as_str().unwrap_or_default().to_owned())
        })
        .collect()
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
