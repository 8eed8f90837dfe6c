//! A KĀDI broker on loopback, for testing exoclaw's KĀDI client: JSON-RPC 2.0 over a WebSocket,
//! as the protocol describes it — `kadi.session.hello` hands out a nonce, `kadi.session.authenticate`
//! checks the Ed25519 signature over it against the base64 DER SPKI public key, `kadi.agent.register`
//! and `kadi.event.subscribe` are recorded, `kadi.event.publish` is kept for the test to read; the
//! test delivers events, requests abilities and pings.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::{Signature, VerifyingKey};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

/// A broker on loopback.
pub struct FakeBroker {
    url: String,
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    /// Every request a client made, by method, in order.
    requests: Vec<Value>,
    /// The authenticated client's outbox (`None` sent: drop the connection).
    live: Option<mpsc::UnboundedSender<Option<Value>>>,
    /// Answers awaited by the test, by request id.
    waiting: HashMap<u64, oneshot::Sender<Value>>,
    next_id: u64,
    connections: usize,
    authenticated: usize,
}

impl FakeBroker {
    /// Listens on a free loopback port.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a loopback port");
        let url = format!("ws://{}", listener.local_addr().expect("an address"));
        let state = Arc::new(Mutex::new(State { next_id: 1000, ..State::default() }));
        let shared = Arc::clone(&state);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let Ok(socket) = tokio_tungstenite::accept_async(stream).await else { continue };
                tokio::spawn(serve(socket, Arc::clone(&shared)));
            }
        });
        Self { url, state }
    }

    /// `ws://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// How many clients authenticated (a reconnect counts again).
    pub fn authenticated(&self) -> usize {
        self.state.lock().expect("the broker's state").authenticated
    }

    /// How many connections were made.
    pub fn connections(&self) -> usize {
        self.state.lock().expect("the broker's state").connections
    }

    /// The params of every request made with `method`, in order.
    pub fn requests(&self, method: &str) -> Vec<Value> {
        let state = self.state.lock().expect("the broker's state");
        state.requests.iter().filter(|r| r["method"] == method).map(|r| r["params"].clone()).collect()
    }

    /// Relays an event to the subscribed client (`kadi.event.delivery`).
    pub fn deliver(&self, channel: &str, data: Value) {
        let state = self.state.lock().expect("the broker's state");
        if let Some(live) = &state.live {
            let params = json!({"channel": channel, "data": data, "networkId": "global"});
            let _ =
                live.send(Some(json!({"jsonrpc": "2.0", "method": "kadi.event.delivery", "params": params})));
        }
    }

    /// Sends the client a request and waits for its whole answer (`result` or `error`).
    pub async fn request(&self, method: &str, params: Value) -> Value {
        let (answer, answered) = oneshot::channel();
        {
            let mut state = self.state.lock().expect("the broker's state");
            state.next_id += 1;
            let id = state.next_id;
            state.waiting.insert(id, answer);
            let live = state.live.as_ref().expect("a connected client");
            let _ = live.send(Some(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})));
        }
        answered.await.expect("an answer")
    }

    /// Drops the client's connection without a close frame.
    pub fn drop_connection(&self) {
        if let Some(live) = self.state.lock().expect("the broker's state").live.take() {
            let _ = live.send(None);
        }
    }
}

type Socket = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

async fn serve(socket: Socket, state: Arc<Mutex<State>>) {
    let (mut write, mut read) = socket.split();
    let (outbox, mut to_send) = mpsc::unbounded_channel::<Option<Value>>();
    state.lock().expect("the broker's state").connections += 1;
    let mut nonce = String::new();
    loop {
        tokio::select! {
            out = to_send.recv() => match out {
                Some(Some(message)) => if write.send(Message::text(message.to_string())).await.is_err() { return },
                Some(None) | None => return,
            },
            frame = read.next() => {
                let Some(Ok(Message::Text(text))) = frame else { return };
                let Ok(message) = serde_json::from_str::<Value>(&text) else { continue };
                let mut guard = state.lock().expect("the broker's state");
                let Some(method) = message["method"].as_str() else {
                    // An answer to one of the test's requests.
                    if let Some(waiting) = message["id"].as_u64().and_then(|id| guard.waiting.remove(&id)) {
                        let _ = waiting.send(message);
                    }
                    continue;
                };
                guard.requests.push(message.clone());
                let id = message["id"].clone();
                let params = &message["params"];
                let answer = match method {
                    "kadi.session.hello" => {
                        nonce = format!("nonce-{}", guard.connections);
                        Ok(json!({"nonce": nonce, "protocol": "kadi/1"}))
                    }
                    "kadi.session.authenticate" => match verify(params, &nonce) {
                        Ok(()) => {
                            guard.authenticated += 1;
                            guard.live = Some(outbox.clone());
                            Ok(json!({"agentId": format!("agent-{}", guard.authenticated)}))
                        }
                        Err(why) => Err(why),
                    },
                    "kadi.agent.register" | "kadi.event.subscribe" | "kadi.event.publish" => Ok(json!({"ok": true})),
                    other => Err(format!("unknown method {other}")),
                };
                let reply = match answer {
                    Ok(result) => json!({"jsonrpc": "2.0", "id": id, "result": result}),
                    Err(message) => json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32001, "message": message}}),
                };
                let _ = outbox.send(Some(reply));
            }
        }
    }
}

/// Checks an authenticate request: the signature over `nonce` by the key in `publicKey`.
fn verify(params: &Value, nonce: &str) -> Result<(), String> {
    if params["nonce"] != nonce {
        return Err("not the nonce this session was given".into());
    }
    let der = BASE64.decode(params["publicKey"].as_str().unwrap_or_default()).map_err(|e| e.to_string())?;
    let key: [u8; 32] = der.get(12..).and_then(|k| k.try_into().ok()).ok_or("not an Ed25519 SPKI")?;
    let key = VerifyingKey::from_bytes(&key).map_err(|e| e.to_string())?;
    let signature =
        BASE64.decode(params["signature"].as_str().unwrap_or_default()).map_err(|e| e.to_string())?;
    let signature: [u8; 64] = signature.try_into().map_err(|_| "not a 64-byte signature")?;
    key.verify_strict(nonce.as_bytes(), &Signature::from_bytes(&signature))
        .map_err(|_| "the signature does not verify".into())
}
