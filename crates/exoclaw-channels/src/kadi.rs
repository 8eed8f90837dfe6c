//! The KĀDI broker (the template-agent-rust design's message bus), built from its protocol:
//! JSON-RPC 2.0 over a WebSocket. exoclaw says `kadi.session.hello` and gets a nonce, proves its
//! identity with `kadi.session.authenticate` (its Ed25519 public key as base64 DER SPKI and its
//! signature over the nonce), offers each agent as an ability (`kadi.agent.register`: `ask_NAME`
//! runs a turn of that agent) and the tools `[channels.kadi] tools` names (each under exoclaw's
//! permissions, as for an MCP client: only what they allow without asking, each call checked on
//! what it touches and written to the audit log as the agent `kadi`), and subscribes to the Slack and Discord events the broker relays
//! (`slack.app_mention.{bot}`, `discord.mention.{bot}`): those become turns of the agents the
//! bindings pick, exactly as deliveries to `/webhook/slack` and Discord's Gateway do, and the
//! answer is published back (`slack.reply.{bot}`, `discord.reply.{bot}`). Ability requests are
//! answered on their id; `kadi.session.ping` is answered `"pong"`. A dropped connection is
//! reopened with backoff (1 s to a minute), authenticated again and re-subscribed.

use crate::api::run_turn;
use crate::connection::{ConnectionMonitor, Reporter, Unmonitored};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::{Signer, SigningKey};
use exoclaw_core::ToolContext;
use exoclaw_core::runtime::{AgentRuntime, ExposedCall, ExposedTools, Target, TurnInput};
use exoclaw_types::Inbound;
use futures::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

/// The DER prefix of an Ed25519 `SubjectPublicKeyInfo` (RFC 8410): the key's 32 bytes follow.
const SPKI_PREFIX: [u8; 12] = [0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];
/// The longest wait between reconnects.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// How long a handshake step may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(15);

/// `[channels.kadi]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KadiConfig {
    /// The broker's WebSocket URL.
    pub url: String,
    /// The environment variable holding exoclaw's Ed25519 private key: the 32-byte seed in base64.
    pub key_env: String,
    /// The name the broker shows for exoclaw.
    pub display_name: String,
    /// The networks exoclaw joins.
    pub networks: Vec<String>,
    /// The network its subscriptions are in.
    pub network_id: String,
    /// The bot whose Slack and Discord events exoclaw answers (`slack.app_mention.{bot}`).
    pub bot: Option<String>,
    /// More event channels to subscribe to (their events are logged, not answered).
    pub subscribe: Vec<String>,
    /// exoclaw's tools offered as abilities on the broker (names or globs: `["read_file",
    /// "grep"]`, `["*"]`), each only if exoclaw's permissions allow it without asking; none by
    /// default.
    pub tools: Vec<String>,
}

impl Default for KadiConfig {
    fn default() -> Self {
        Self {
            url: "ws://127.0.0.1:8080".into(),
            key_env: "KADI_PRIVATE_KEY".into(),
            display_name: "exoclaw".into(),
            networks: vec!["global".into()],
            network_id: "global".into(),
            bot: None,
            subscribe: Vec::new(),
            tools: Vec::new(),
        }
    }
}

/// Why a KĀDI key cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the KĀDI private key is not a base64 Ed25519 seed of 32 bytes: {0}")]
pub struct BadKey(String);

/// The public key as the broker wants it: base64 of its DER `SubjectPublicKeyInfo`.
pub fn public_key_spki(key: &SigningKey) -> String {
    let mut der = SPKI_PREFIX.to_vec();
    der.extend_from_slice(key.verifying_key().as_bytes());
    BASE64.encode(der)
}

/// The signing key from its base64 seed.
pub fn signing_key(seed_base64: &str) -> Result<SigningKey, BadKey> {
    let seed = BASE64.decode(seed_base64.trim()).map_err(|e| BadKey(e.to_string()))?;
    let seed: [u8; 32] = seed.try_into().map_err(|_| BadKey("not 32 bytes".into()))?;
    Ok(SigningKey::from_bytes(&seed))
}

/// exoclaw on the broker.
pub struct KadiClient {
    /// The models a message's `[provider/model]` prefix may pick (globs); none: no prefix.
    models: Vec<String>,
    config: KadiConfig,
    key: SigningKey,
    runtime: Arc<dyn AgentRuntime>,
    /// The tools `config.tools` may offer, as the permissions let callers outside a turn run them.
    tools: Option<ExposedTools>,
    /// Where the connection's state goes.
    reporter: Reporter,
}

/// The name the audit log gives calls of tools made by agents on the broker.
pub const KADI_AUDIT_AGENT: &str = "kadi";

/// What a refused call's message says about letting it run.
pub const KADI_ASK_HINT: &str =
    "allow it with a rule (`exoclaw permissions`) to offer it to the broker's agents";

/// How one connection ended.
enum Ended {
    Stopped,
    Dropped,
}

impl KadiClient {
    /// Lets a message pick one of `models` (globs such as `anthropic/*`) with a `[provider/model]`
    /// prefix; without any, a prefix is just text.
    pub fn with_models(mut self, models: Vec<String>) -> Self {
        self.models = models;
        self
    }

    /// Offers those of `tools` that `[channels.kadi] tools` names as abilities.
    pub fn with_tools(mut self, tools: ExposedTools) -> Self {
        self.tools = Some(tools);
        self
    }

    /// The client, identified by `key`, submitting to `runtime`.
    pub fn new(config: &KadiConfig, key: SigningKey, runtime: Arc<dyn AgentRuntime>) -> Self {
        let reporter = Reporter::new("kadi", Arc::new(Unmonitored));
        Self { config: config.clone(), key, runtime, models: Vec::new(), tools: None, reporter }
    }

    /// Reports the connection's state to `monitor` as it changes.
    pub fn with_monitor(mut self, monitor: Arc<dyn ConnectionMonitor>) -> Self {
        self.reporter = Reporter::new("kadi", monitor);
        self
    }

    /// The tools offered as abilities: those the configuration names and the permissions offer.
    fn offered_tools(&self) -> Vec<(exoclaw_types::ToolSpec, exoclaw_types::ToolEffect)> {
        let Some(tools) = &self.tools else { return Vec::new() };
        tools.specs().into_iter().filter(|(spec, _)| self.names_tool(&spec.name)).collect()
    }

    /// Whether `[channels.kadi] tools` names the tool `name`.
    fn names_tool(&self, name: &str) -> bool {
        self.config.tools.iter().any(|pattern| exoclaw_types::glob_match(pattern, name))
    }

    /// The event channels subscribed to.
    fn channels(&self) -> Vec<String> {
        let mut channels: Vec<String> = match &self.config.bot {
            Some(bot) => vec![format!("slack.app_mention.{bot}"), format!("discord.mention.{bot}")],
            None => Vec::new(),
        };
        channels.extend(self.config.subscribe.iter().cloned());
        channels
    }

    /// Keeps the connection until `stop` is cancelled.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        let mut backoff = Duration::from_secs(1);
        loop {
            match self.connection(&stop).await {
                Ok(Ended::Stopped) => return,
                Ok(Ended::Dropped) => {
                    tracing::info!("the KĀDI broker connection dropped; reconnecting");
                    self.reporter.disconnected("the connection dropped; reconnecting");
                    backoff = Duration::from_secs(1);
                }
                Err(error) => {
                    tracing::warn!(
                        "the KĀDI broker connection failed: {error}; retrying in {}s",
                        backoff.as_secs()
                    );
                    self.reporter.disconnected(format!("{error}; retrying"));
                }
            }
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                () = stop.cancelled() => return,
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    async fn connection(self: &Arc<Self>, stop: &CancellationToken) -> Result<Ended, String> {
        let (socket, _) =
            tokio::time::timeout(STEP_TIMEOUT, tokio_tungstenite::connect_async(self.config.url.as_str()))
                .await
                .map_err(|_| "no answer within 15 s".to_owned())?
                .map_err(|e| e.to_string())?;
        let (mut write, mut read) = socket.split();
        let mut rpc = Handshake { next_id: 0 };

        let hello = rpc.call(&mut write, &mut read, "kadi.session.hello", json!({"role": "agent"})).await?;
        let nonce = hello["nonce"].as_str().ok_or("kadi.session.hello gave no nonce")?.to_owned();
        let signature = BASE64.encode(self.key.sign(nonce.as_bytes()).to_bytes());
        let params = json!({"publicKey": public_key_spki(&self.key), "signature": signature, "nonce": nonce, "wantNewId": true});
        let identity = rpc.call(&mut write, &mut read, "kadi.session.authenticate", params).await?;
        let mut abilities: Vec<Value> = self
            .runtime
            .agents()
            .into_iter()
            .map(|agent| {
                json!({
                    "name": format!("ask_{}", agent.name),
                    "description": agent.description.unwrap_or_else(|| format!("Ask exoclaw's {} agent", agent.name)),
                    "inputSchema": {"type": "object", "properties": {"message": {"type": "string"}}, "required": ["message"]},
                })
            })
            .collect();
        abilities.extend(self.offered_tools().into_iter().map(|(spec, _)| {
            json!({"name": spec.name, "description": spec.description, "inputSchema": spec.input_schema})
        }));
        let register = json!({"tools": abilities, "networks": self.config.networks, "displayName": self.config.display_name});
        rpc.call(&mut write, &mut read, "kadi.agent.register", register).await?;
        let subscribe = json!({"channels": self.channels(), "networkId": self.config.network_id});
        rpc.call(&mut write, &mut read, "kadi.event.subscribe", subscribe).await?;
        tracing::info!(agent = %identity["agentId"].as_str().unwrap_or("?"), "connected to the KĀDI broker");
        self.reporter.connected();

        // From here answers are written by whoever has them, through one outbox.
        let (outbox, mut to_send) = mpsc::unbounded_channel::<Value>();
        let mut next_id = rpc.next_id;
        loop {
            tokio::select! {
                () = stop.cancelled() => {
                    let _ = write.send(Message::Close(None)).await;
                    return Ok(Ended::Stopped);
                }
                Some(message) = to_send.recv() => {
                    if write.send(Message::text(message.to_string())).await.is_err() {
                        return Ok(Ended::Dropped);
                    }
                }
                frame = read.next() => match frame {
                    Some(Ok(Message::Text(text))) => {
                        let Ok(message) = serde_json::from_str::<Value>(&text) else { continue };
                        self.incoming(message, &outbox, &mut next_id);
                    }
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return Ok(Ended::Dropped),
                    Some(Ok(_)) => {}
                },
            }
        }
    }

    /// A request, a notification or an answer from the broker.
    fn incoming(self: &Arc<Self>, message: Value, outbox: &mpsc::UnboundedSender<Value>, next_id: &mut u64) {
        let Some(method) = message["method"].as_str() else { return };
        let id = message.get("id").cloned();
        let params = &message["params"];
        match (method, id) {
            ("kadi.session.ping", Some(id)) => {
                let _ = outbox.send(json!({"jsonrpc": "2.0", "id": id, "result": "pong"}));
            }
            ("kadi.ability.request", Some(id)) => self.ability(id, params, outbox),
            ("kadi.event.delivery", _) => self.event(params, outbox, next_id),
            (other, Some(id)) => {
                let error = json!({"code": -32601, "message": format!("exoclaw does not handle {other}")});
                let _ = outbox.send(json!({"jsonrpc": "2.0", "id": id, "error": error}));
            }
            _ => {}
        }
    }

    /// `ask_NAME {message}`: a turn of that agent in a new session; a tool's name: a call of that
    /// tool. Answered on the request's id.
    fn ability(&self, id: Value, params: &Value, outbox: &mpsc::UnboundedSender<Value>) {
        let tool = params["toolName"].as_str().unwrap_or_default();
        let asks_an_agent = tool
            .strip_prefix("ask_")
            .is_some_and(|agent| self.runtime.agents().iter().any(|a| a.name == agent));
        if !asks_an_agent && let Some(tools) = self.tools.as_ref().filter(|_| self.names_tool(tool)) {
            let (tools, tool, input, outbox) =
                (tools.clone(), tool.to_owned(), params["toolInput"].clone(), outbox.clone());
            tokio::spawn(async move {
                let answer = call_tool(&tools, &tool, input, &format!("kadi-{id}")).await;
                let mut reply = json!({"jsonrpc": "2.0", "id": id});
                if let (Some(reply), Some(answer)) = (reply.as_object_mut(), answer.as_object()) {
                    reply.extend(answer.clone());
                }
                let _ = outbox.send(reply);
            });
            return;
        }
        let message = params["toolInput"]["message"].as_str().unwrap_or_default().to_owned();
        let Some(agent) = tool.strip_prefix("ask_").map(str::to_owned) else {
            let error = json!({"code": -32602, "message": format!("no ability {tool}")});
            let _ = outbox.send(json!({"jsonrpc": "2.0", "id": id, "error": error}));
            return;
        };
        let target = Target::New { agent: Some(agent) };
        let outbox = outbox.clone();
        match self.runtime.submit(target, TurnInput::message(message)) {
            Ok(handle) => {
                tokio::spawn(async move {
                    let answer = match handle.report().await {
                        Ok(report) => match &report.error {
                            Some(failure) => json!({"error": {"code": -32000, "message": failure.message}}),
                            None => json!({"result": {"text": report.text()}}),
                        },
                        Err(error) => json!({"error": {"code": -32000, "message": error.to_string()}}),
                    };
                    let mut reply = json!({"jsonrpc": "2.0", "id": id});
                    if let (Some(reply), Some(answer)) = (reply.as_object_mut(), answer.as_object()) {
                        reply.extend(answer.clone());
                    }
                    let _ = outbox.send(reply);
                });
            }
            Err(error) => {
                let error = json!({"code": -32000, "message": error.to_string()});
                let _ = outbox.send(json!({"jsonrpc": "2.0", "id": id, "error": error}));
            }
        }
    }

    /// A Slack or Discord event relayed by the broker: a turn, its answer published back.
    fn event(&self, params: &Value, outbox: &mpsc::UnboundedSender<Value>, next_id: &mut u64) {
        let channel = params["channel"].as_str().unwrap_or_default();
        let data = &params["data"];
        let Some(bot) = &self.config.bot else { return };
        let (platform, inbound, reply) = if channel == format!("slack.app_mention.{bot}") {
            let Some(room) = data["channel"].as_str() else { return };
            let team = data["team"].as_str().unwrap_or("kadi");
            let thread = data["thread_ts"].as_str().or(data["ts"].as_str());
            let inbound = Inbound {
                channel: "slack".into(),
                account: team.into(),
                peer: room.into(),
                guild: None,
                team: Some(team.into()),
            };
            ("slack", inbound, json!({"channel": room, "thread_ts": thread}))
        } else if channel == format!("discord.mention.{bot}") {
            let Some(room) = data["channel_id"].as_str().or(data["channel"].as_str()) else { return };
            let guild = data["guild_id"].as_str();
            let inbound = Inbound {
                channel: "discord".into(),
                account: bot.clone(),
                peer: room.into(),
                guild: guild.map(str::to_owned),
                team: None,
            };
            (
                "discord",
                inbound,
                json!({"channel_id": room, "message_id": data["id"].as_str().or(data["message_id"].as_str())}),
            )
        } else {
            tracing::info!(channel, "a KĀDI event on a channel exoclaw does not answer");
            return;
        };
        let text = data["text"].as_str().or(data["content"].as_str()).unwrap_or_default();
        let text = crate::discord::strip_bot_mention(&crate::slack::strip_mentions(text), bot);
        let topic = format!("{platform}.reply.{bot}");
        let network = self.config.network_id.clone();
        let outbox = outbox.clone();
        *next_id += 1;
        let id = *next_id;
        run_turn(&self.runtime, inbound, text, &self.models, move |answer| async move {
            let mut data = reply;
            data["text"] = json!(answer);
            let publish = json!({"channel": topic, "data": data, "networkId": network});
            let _ = outbox
                .send(json!({"jsonrpc": "2.0", "id": id, "method": "kadi.event.publish", "params": publish}));
        });
    }
}

/// A call of the exposed tool `name` for an agent on the broker: `{"result": {"text"}}` or
/// `{"error": {code, message}}`.
async fn call_tool(tools: &ExposedTools, name: &str, input: Value, call_id: &str) -> Value {
    let ctx = ToolContext {
        workspace_root: tools.workspace.clone(),
        cancel: CancellationToken::new(),
        session: None,
    };
    match tools.call(name, input, &ctx, call_id).await {
        Ok(ExposedCall::Ran(Ok(text))) => json!({"result": {"text": text}}),
        Ok(ExposedCall::Ran(Err(error))) => json!({"error": {"code": -32000, "message": error.to_string()}}),
        Ok(ExposedCall::Refused(why)) => json!({"error": {"code": -32001, "message": why}}),
        Err(not_offered) => json!({"error": {"code": -32602, "message": not_offered.to_string()}}),
    }
}

/// The handshake's request–answer steps, before the connection is shared.
struct Handshake {
    next_id: u64,
}

type Write = futures::stream::SplitSink<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    Message,
>;
type Read = futures::stream::SplitStream<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
>;

impl Handshake {
    /// Sends `method` and waits for its answer (answering the broker's pings meanwhile).
    async fn call(
        &mut self,
        write: &mut Write,
        read: &mut Read,
        method: &str,
        params: Value,
    ) -> Result<Value, String> {
        self.next_id += 1;
        let id = self.next_id;
        let request = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        write.send(Message::text(request.to_string())).await.map_err(|e| e.to_string())?;
        let answer = async {
            while let Some(frame) = read.next().await {
                let Message::Text(text) = frame.map_err(|e| e.to_string())? else { continue };
                let Ok(message) = serde_json::from_str::<Value>(&text) else { continue };
                if message["method"] == "kadi.session.ping"
                    && let Some(ping) = message.get("id")
                {
                    let pong = json!({"jsonrpc": "2.0", "id": ping, "result": "pong"});
                    write.send(Message::text(pong.to_string())).await.map_err(|e| e.to_string())?;
                    continue;
                }
                if message["id"].as_u64() == Some(id) && message.get("method").is_none() {
                    if let Some(error) = message.get("error") {
                        return Err(format!("{method}: {}", error["message"].as_str().unwrap_or("refused")));
                    }
                    return Ok(message["result"].clone());
                }
            }
            Err(format!("the broker closed the connection during {method}"))
        };
        tokio::time::timeout(STEP_TIMEOUT, answer)
            .await
            .map_err(|_| format!("no answer to {method} within 15 s"))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_public_key_is_der_spki_in_base64() {
        let key = SigningKey::from_bytes(&[1u8; 32]);
        let der = BASE64.decode(public_key_spki(&key)).unwrap();
        assert_eq!(der.len(), 44);
        assert_eq!(der[..12], SPKI_PREFIX);
        assert_eq!(der[12..], key.verifying_key().to_bytes());
        assert!(signing_key(&BASE64.encode([1u8; 32])).is_ok());
        assert!(signing_key("not base64!").is_err());
        assert!(signing_key(&BASE64.encode([1u8; 16])).is_err());
    }
}
