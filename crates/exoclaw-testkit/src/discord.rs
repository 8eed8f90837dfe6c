//! Discord's wire format, for testing the Discord channel without Discord: a Gateway that speaks
//! the published protocol over a real WebSocket on loopback ([`FakeGateway`]: Hello, Identify →
//! READY, heartbeats acknowledged, dispatches numbered, Resume replaying what was missed), the
//! Interactions endpoint's Ed25519 signatures ([`sign_interaction`]), and `MESSAGE_CREATE` payloads.

use ed25519_dalek::{Signer, SigningKey};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

/// The bot's user id the fake Gateway announces in READY.
pub const BOT_ID: &str = "100000000000000001";

/// A fake Gateway on loopback.
pub struct FakeGateway {
    url: String,
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    /// Every payload a client sent, in order.
    received: Vec<Value>,
    /// Every dispatch, with its sequence number (READY is 1).
    sent: Vec<Value>,
    /// The live connection's outbox, if a client is connected (`None` sent: drop it).
    live: Option<mpsc::UnboundedSender<Option<Message>>>,
    /// Connections made.
    connections: usize,
}

impl State {
    fn next_dispatch(&mut self, t: &str, d: Value) -> Value {
        let payload = json!({"op": 0, "s": self.sent.len() + 1, "t": t, "d": d});
        self.sent.push(payload.clone());
        payload
    }
}

impl FakeGateway {
    /// Listens on a free loopback port, heartbeats asked every `heartbeat_ms`.
    pub async fn start(heartbeat_ms: u64) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a loopback port");
        let url = format!("ws://{}", listener.local_addr().expect("an address"));
        let state = Arc::new(Mutex::new(State::default()));
        let (shared, resume_url) = (Arc::clone(&state), url.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let Ok(socket) = tokio_tungstenite::accept_async(stream).await else { continue };
                tokio::spawn(serve(socket, Arc::clone(&shared), resume_url.clone(), heartbeat_ms));
            }
        });
        Self { url, state }
    }

    /// `ws://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// Sends an event to the connected client, numbered; with none connected it waits for a
    /// Resume to be replayed.
    pub fn dispatch(&self, t: &str, d: Value) {
        let mut state = self.state.lock().expect("the fake's state");
        let payload = state.next_dispatch(t, d);
        if let Some(live) = &state.live {
            let _ = live.send(Some(Message::text(payload.to_string())));
        }
    }

    /// Drops the connection without a close frame, as a network failure would.
    pub fn drop_connection(&self) {
        if let Some(live) = self.state.lock().expect("the fake's state").live.take() {
            let _ = live.send(None);
        }
    }

    /// Whether a client is connected and has been told READY or RESUMED.
    pub fn connected(&self) -> bool {
        self.state.lock().expect("the fake's state").live.is_some()
    }

    /// Every payload the clients sent, in order.
    pub fn received(&self) -> Vec<Value> {
        self.state.lock().expect("the fake's state").received.clone()
    }

    /// How many connections were made.
    pub fn connections(&self) -> usize {
        self.state.lock().expect("the fake's state").connections
    }
}

type Socket = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

async fn serve(socket: Socket, state: Arc<Mutex<State>>, resume_url: String, heartbeat_ms: u64) {
    let (mut write, mut read) = socket.split();
    let (outbox, mut to_send) = mpsc::unbounded_channel::<Option<Message>>();
    state.lock().expect("the fake's state").connections += 1;
    let say = |payload: Value| Some(Message::text(payload.to_string()));
    let _ = outbox.send(say(json!({"op": 10, "d": {"heartbeat_interval": heartbeat_ms}})));
    loop {
        tokio::select! {
            out = to_send.recv() => match out {
                Some(Some(message)) => if write.send(message).await.is_err() { return },
                // Dropped: the socket goes without a close frame.
                Some(None) | None => return,
            },
            frame = read.next() => {
                let Some(Ok(Message::Text(text))) = frame else { return };
                let Ok(payload) = serde_json::from_str::<Value>(&text) else { continue };
                let mut guard = state.lock().expect("the fake's state");
                guard.received.push(payload.clone());
                match payload["op"].as_u64() {
                    Some(1) => { let _ = outbox.send(say(json!({"op": 11}))); }
                    Some(2) => {
                        let ready = guard.next_dispatch("READY", json!({
                            "v": 10, "session_id": "fake-session", "resume_gateway_url": resume_url,
                            "user": {"id": BOT_ID, "username": "exobot", "bot": true},
                            "guilds": [],
                        }));
                        let _ = outbox.send(say(ready));
                        guard.live = Some(outbox.clone());
                    }
                    Some(6) => {
                        let after = payload["d"]["seq"].as_u64().unwrap_or(0);
                        let missed: Vec<Value> = guard.sent.iter()
                            .filter(|p| p["s"].as_u64().is_some_and(|s| s > after))
                            .cloned()
                            .collect();
                        for payload in missed {
                            let _ = outbox.send(say(payload));
                        }
                        let resumed = guard.next_dispatch("RESUMED", json!({}));
                        let _ = outbox.send(say(resumed));
                        guard.live = Some(outbox.clone());
                    }
                    _ => {}
                }
            }
        }
    }
}

/// A `MESSAGE_CREATE` from `author` in `channel` (in `guild`, or a DM when `None`), mentioning the
/// bot when `mention` is set.
pub fn message_create(
    id: &str,
    channel: &str,
    guild: Option<&str>,
    author: &str,
    content: &str,
    mention: bool,
) -> Value {
    let mut message = json!({
        "id": id, "channel_id": channel, "content": content, "type": 0,
        "author": {"id": author, "username": format!("user{author}")},
        "mentions": if mention { json!([{"id": BOT_ID, "username": "exobot", "bot": true}]) } else { json!([]) },
    });
    if let Some(guild) = guild {
        message["guild_id"] = json!(guild);
    }
    message
}

/// A `MESSAGE_REACTION_ADD` of `emoji` by `user` on the message `message` in `channel`.
pub fn reaction_add(user: &str, channel: &str, message: &str, emoji: &str) -> Value {
    json!({"user_id": user, "channel_id": channel, "message_id": message, "guild_id": "G1",
        "emoji": {"id": null, "name": emoji}})
}

/// A key pair for the Interactions endpoint: the public key (hex, as the application's page shows
/// it) and a signer.
pub fn interaction_keys() -> (String, SigningKey) {
    let key = SigningKey::from_bytes(&[7u8; 32]);
    let public = key.verifying_key().to_bytes().iter().map(|b| format!("{b:02x}")).collect();
    (public, key)
}

/// The headers Discord puts on an interaction: `X-Signature-Ed25519` over timestamp + body.
pub fn sign_interaction(key: &SigningKey, timestamp: &str, body: &[u8]) -> Vec<(&'static str, String)> {
    let mut message = timestamp.as_bytes().to_vec();
    message.extend_from_slice(body);
    let signature: String = key.sign(&message).to_bytes().iter().map(|b| format!("{b:02x}")).collect();
    vec![("x-signature-ed25519", signature), ("x-signature-timestamp", timestamp.to_owned())]
}

/// A slash command `/NAME question: TEXT` from `user` in `channel` of `guild`.
pub fn command(name: &str, question: &str, user: &str, channel: &str, guild: &str) -> Value {
    json!({
        "id": "900000000000000001", "application_id": "800000000000000001", "type": 2,
        "token": "interaction-token-abc", "version": 1, "guild_id": guild, "channel_id": channel,
        "member": {"user": {"id": user, "username": format!("user{user}")}},
        "data": {"id": "700000000000000001", "name": name, "type": 1,
            "options": [{"name": "question", "type": 3, "value": question}]},
    })
}

/// A press of the button `custom_id` on the message `message` by `user` in `channel` (of `guild`,
/// or a DM when `None`): a `MESSAGE_COMPONENT` interaction (type 3), as the Interactions endpoint
/// receives it and as the Gateway dispatches it in `INTERACTION_CREATE`.
pub fn component_press(
    id: &str,
    user: &str,
    channel: &str,
    guild: Option<&str>,
    message: &str,
    custom_id: &str,
) -> Value {
    let who = json!({"id": user, "username": format!("user{user}")});
    let mut interaction = json!({
        "id": id, "application_id": "800000000000000001", "type": 3,
        "token": format!("component-token-{id}"), "version": 1, "channel_id": channel,
        "message": {"id": message, "channel_id": channel, "author": {"id": BOT_ID, "bot": true}},
        "data": {"custom_id": custom_id, "component_type": 2},
    });
    match guild {
        Some(guild) => {
            interaction["guild_id"] = json!(guild);
            interaction["member"] = json!({"user": who});
        }
        None => interaction["user"] = who,
    }
    interaction
}

/// The buttons of a message body (its components' action rows): each one's label and custom id.
pub fn buttons(body: &Value) -> Vec<(String, String)> {
    body["components"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|row| row["components"].as_array().cloned().unwrap_or_default())
        .map(|button| {
            let label = button["label"].as_str().unwrap_or_default().to_owned();
            (label, button["custom_id"].as_str().unwrap_or_default().to_owned())
        })
        .collect()
}
