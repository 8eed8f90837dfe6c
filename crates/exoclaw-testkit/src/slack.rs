//! Slack's wire format, for testing the Slack channel without Slack: Events API deliveries as
//! Slack sends them (JSON bodies and their `v0` signature headers, per Slack's "Verifying requests
//! from Slack"), and the Web API's answers (`chat.postMessage`), served by a [`ScriptedServer`];
//! and an app in Socket Mode ([`FakeSocketMode`]: `apps.connections.open` and the WebSocket).

use crate::server::{Recorded, Reply, ScriptedServer};
use axum::response::IntoResponse;
use exoclaw_core::runtime::webhook::{hex, hmac_sha256};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

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

/// The app-level token [`FakeSocketMode`] accepts.
pub const APP_TOKEN: &str = "xapp-1-A0EXOCLAW-1-fake";

/// Slack for an app in Socket Mode (<https://api.slack.com/apis/socket-mode>): the Web API
/// (`apps.connections.open` with the app-level token → a WebSocket URL; `chat.postMessage`
/// recorded) and the Socket Mode WebSocket on loopback, which says `hello`, sends the envelopes a
/// test pushes, records their acknowledgements, and sends `disconnect` when told.
pub struct FakeSocketMode {
    api: crate::server::Loopback,
    state: Arc<Mutex<Socket>>,
}

#[derive(Default)]
struct Socket {
    /// `ws://127.0.0.1:PORT`.
    ws_url: String,
    /// The `Authorization` of each `apps.connections.open`.
    opens: Vec<String>,
    /// `chat.postMessage` calls.
    posts: Vec<Recorded>,
    /// The live connection's outbox (the newest one greeted), if any.
    live: Option<mpsc::UnboundedSender<Message>>,
    /// Connections greeted with `hello`.
    connections: usize,
    /// Envelope ids acknowledged, in order.
    acks: Vec<String>,
    /// The last envelope id given.
    envelopes: usize,
}

impl FakeSocketMode {
    /// The Web API and the WebSocket, each on a free loopback port.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a loopback port");
        let state = Arc::new(Mutex::new(Socket {
            ws_url: format!("ws://{}", listener.local_addr().expect("an address")),
            ..Socket::default()
        }));
        let shared = Arc::clone(&state);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let Ok(socket) = tokio_tungstenite::accept_async(stream).await else { continue };
                tokio::spawn(serve_socket(socket, Arc::clone(&shared)));
            }
        });
        let shared = Arc::clone(&state);
        let app = axum::Router::new().fallback(move |request: axum::extract::Request| {
            let state = Arc::clone(&shared);
            async move { web_api_call(state, request).await }
        });
        Self { api: crate::server::Loopback::serve(app).await, state }
    }

    /// `http://127.0.0.1:PORT`, the Web API's `api_base`.
    pub fn api_url(&self) -> String {
        self.api.url()
    }

    /// How many connections were greeted with `hello`.
    pub fn connections(&self) -> usize {
        self.lock().connections
    }

    /// Waits until `count` connections have been greeted and one is live.
    pub async fn connected(&self, count: usize) {
        crate::until(&format!("Socket Mode connection {count}"), || {
            let state = self.lock();
            (state.connections >= count && state.live.is_some()).then_some(())
        })
        .await;
    }

    /// Sends an envelope of `kind` (`events_api`, `interactive`, `slash_commands`) carrying
    /// `payload` on the live connection; its envelope id.
    pub fn push(&self, kind: &str, payload: Value) -> String {
        let mut state = self.lock();
        state.envelopes += 1;
        let id = format!("env-{:04}", state.envelopes);
        let envelope = json!({"envelope_id": id, "type": kind, "payload": payload,
            "accepts_response_payload": kind != "events_api", "retry_attempt": 0, "retry_reason": ""});
        let live = state.live.as_ref().expect("a live Socket Mode connection");
        live.send(Message::text(envelope.to_string())).expect("the connection is open");
        id
    }

    /// Sends `{"type": "disconnect", "reason": reason}` on the live connection, which then counts
    /// as gone: pushes wait for the next one.
    pub fn disconnect(&self, reason: &str) {
        let mut state = self.lock();
        let live = state.live.take().expect("a live Socket Mode connection");
        let message = json!({"type": "disconnect", "reason": reason, "debug_info": {"host": "fake"}});
        let _ = live.send(Message::text(message.to_string()));
    }

    /// The envelope ids acknowledged so far.
    pub fn acks(&self) -> Vec<String> {
        self.lock().acks.clone()
    }

    /// Waits until `id` has been acknowledged.
    pub async fn acknowledged(&self, id: &str) {
        crate::until(&format!("the acknowledgement of {id}"), || {
            self.lock().acks.iter().any(|a| a == id).then_some(())
        })
        .await;
    }

    /// The `Authorization` header of each `apps.connections.open`.
    pub fn opens(&self) -> Vec<String> {
        self.lock().opens.clone()
    }

    /// The `chat.postMessage` calls, once at least `count` have been made (panics after 30 s).
    pub async fn posts(&self, count: usize) -> Vec<Recorded> {
        crate::until(&format!("{count} chat.postMessage calls"), || {
            let posts = self.lock().posts.clone();
            (posts.len() >= count).then_some(posts)
        })
        .await
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Socket> {
        self.state.lock().expect("the fake's state")
    }
}

async fn web_api_call(
    state: Arc<Mutex<Socket>>,
    request: axum::extract::Request,
) -> axum::response::Response {
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap_or_default();
    let authorization =
        parts.headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let mut state = state.lock().expect("the fake's state");
    let answer = match parts.uri.path() {
        "/apps.connections.open" => {
            state.opens.push(authorization.clone());
            match authorization == format!("Bearer {APP_TOKEN}") {
                true => {
                    json!({"ok": true, "url": format!("{}/link/?ticket=t{}", state.ws_url, state.opens.len())})
                }
                false if authorization.starts_with("Bearer xoxb-") => {
                    json!({"ok": false, "error": "not_allowed_token_type"})
                }
                false => json!({"ok": false, "error": "invalid_auth"}),
            }
        }
        "/chat.postMessage" => {
            state.posts.push(Recorded {
                method: parts.method.to_string(),
                path: parts.uri.path().to_owned(),
                query: None,
                headers: [("authorization".to_owned(), authorization)].into(),
                body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
                raw: bytes.clone(),
            });
            json!({"ok": true, "channel": "C1", "ts": format!("1700000001.{:06}", state.posts.len())})
        }
        _ => json!({"ok": false, "error": "unknown_method"}),
    };
    axum::Json(answer).into_response()
}

type WebSocket = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

async fn serve_socket(socket: WebSocket, state: Arc<Mutex<Socket>>) {
    let (mut write, mut read) = socket.split();
    let (outbox, mut to_send) = mpsc::unbounded_channel::<Message>();
    let hello = json!({"type": "hello", "num_connections": 1,
        "debug_info": {"host": "fake", "approximate_connection_time": 18060},
        "connection_info": {"app_id": "A0EXOCLAW"}});
    let _ = outbox.send(Message::text(hello.to_string()));
    {
        let mut state = state.lock().expect("the fake's state");
        state.connections += 1;
        state.live = Some(outbox);
    }
    loop {
        tokio::select! {
            out = to_send.recv() => match out {
                Some(message) => if write.send(message).await.is_err() { return },
                None => return,
            },
            frame = read.next() => {
                let Some(Ok(Message::Text(text))) = frame else { return };
                let Ok(ack) = serde_json::from_str::<Value>(&text) else { continue };
                if let Some(id) = ack["envelope_id"].as_str() {
                    state.lock().expect("the fake's state").acks.push(id.to_owned());
                }
            }
        }
    }
}
