//! Discord's Gateway: the WebSocket through which a bot hears mentions and direct messages.
//! exoclaw identifies with the `GUILD_MESSAGES | DIRECT_MESSAGES | MESSAGE_CONTENT` intents (and
//! the two message-reaction intents, for approvals by reaction),
//! heartbeats at the interval Discord gives (a heartbeat not acknowledged before the next one
//! means a dead connection), and after any drop reconnects to the `resume_gateway_url` and
//! resumes from the last sequence number, so Discord replays what was sent meanwhile and no
//! message is lost; a message id seen before is not answered twice. A session Discord will not
//! resume is identified afresh. Reconnects back off from 1 s to a minute; a token Discord refuses
//! stops the connection with an error saying so.

use super::{DiscordConfig, Rest, mentions, strip_bot_mention};
use crate::approval::Approvals;
use crate::connection::{ConnectionMonitor, Reporter, Unmonitored};
use crate::files::ChatFiles;
use crate::recent::Recent;
use exoclaw_core::runtime::AgentRuntime;
use exoclaw_types::Inbound;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_util::sync::CancellationToken;

/// `GUILD_MESSAGES (1 << 9) | GUILD_MESSAGE_REACTIONS (1 << 10) | DIRECT_MESSAGES (1 << 12) |
/// DIRECT_MESSAGE_REACTIONS (1 << 13) | MESSAGE_CONTENT (1 << 15)`.
const INTENTS: u64 = (1 << 9) | (1 << 10) | (1 << 12) | (1 << 13) | (1 << 15);
/// How many message ids are remembered so a replayed message is answered once.
const REMEMBERED_MESSAGES: usize = 4_096;
/// The interaction type of a button press (Discord's numbering).
const MESSAGE_COMPONENT: u64 = 3;
/// The longest wait between reconnects.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Gateway opcodes (Discord's numbering).
mod op {
    pub const DISPATCH: u64 = 0;
    pub const HEARTBEAT: u64 = 1;
    pub const IDENTIFY: u64 = 2;
    pub const RESUME: u64 = 6;
    pub const RECONNECT: u64 = 7;
    pub const INVALID_SESSION: u64 = 9;
    pub const HELLO: u64 = 10;
    pub const HEARTBEAT_ACK: u64 = 11;
}

/// What survives a dropped connection.
#[derive(Default)]
struct Session {
    id: Option<String>,
    resume_url: Option<String>,
    seq: Option<u64>,
    bot: Option<String>,
}

/// How one connection ended.
enum Ended {
    /// `stop` was cancelled.
    Stopped,
    /// Dropped, or Discord asked: reconnect and resume.
    Resume,
    /// Discord will not resume this session: identify afresh.
    Identify,
    /// Discord refused the bot (its token, its intents): do not try again.
    Refused(String),
}

/// A bot's Gateway connection.
pub struct DiscordGateway {
    /// The models a message's `[provider/model]` prefix may pick (globs); none: no prefix.
    models: Vec<String>,
    config: DiscordConfig,
    token: String,
    rest: Rest,
    runtime: Arc<dyn AgentRuntime>,
    seen: Mutex<Recent>,
    /// Tool calls waiting for an approval asked in the chat.
    approvals: Approvals,
    /// The shortest time between two edits of a progress message; `None`: no progress message.
    progress: Option<std::time::Duration>,
    /// Where the connection's state goes.
    reporter: Reporter,
}

impl DiscordGateway {
    /// Reports the connection's state to `monitor` as it changes.
    pub fn with_monitor(mut self, monitor: Arc<dyn ConnectionMonitor>) -> Self {
        self.reporter = Reporter::new("discord", monitor);
        self
    }

    /// Asks the user whose message started a turn to approve its gated tool calls (with buttons,
    /// in the channel) as `approvals` says; share them with the Interactions endpoint, which
    /// receives the presses when the application has an Interactions Endpoint URL.
    pub fn with_approvals(mut self, approvals: Approvals) -> Self {
        self.approvals = approvals;
        self
    }

    /// Whether a turn that runs tools shows a progress message while they run, edited as they
    /// do and then replaced by the answer (the default), or answers only when it ends.
    pub fn with_progress(mut self, progress: bool) -> Self {
        self.progress = progress.then_some(crate::progress::INTERVAL);
        self
    }

    /// The shortest time between two edits of a progress message (default 1.5 s, within what
    /// the platform allows); changes in between are shown together. The edit that puts the
    /// answer in never waits.
    pub fn with_progress_interval(mut self, interval: std::time::Duration) -> Self {
        self.progress = self.progress.map(|_| interval);
        self
    }

    /// Lets a message pick one of `models` (globs such as `anthropic/*`) with a `[provider/model]`
    /// prefix; without any, a prefix is just text.
    pub fn with_models(mut self, models: Vec<String>) -> Self {
        self.models = models;
        self
    }

    /// The connection of the bot with `token`, submitting to `runtime`.
    pub fn new(config: &DiscordConfig, token: &str, runtime: Arc<dyn AgentRuntime>) -> Self {
        Self {
            config: config.clone(),
            token: token.to_owned(),
            rest: Rest::new(&config.api_base, token),
            runtime,
            seen: Mutex::new(Recent::new(REMEMBERED_MESSAGES)),
            models: Vec::new(),
            approvals: Approvals::default(),
            progress: Some(crate::progress::INTERVAL),
            reporter: Reporter::new("discord", Arc::new(Unmonitored)),
        }
    }

    /// Keeps the connection until `stop` is cancelled.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        let mut session = Session::default();
        let mut backoff = Duration::from_secs(1);
        loop {
            let url = match (&session.id, &session.resume_url) {
                (Some(_), Some(resume)) => with_query(resume),
                _ => self.config.gateway_url.clone(),
            };
            let ended = self.connection(&url, &mut session, &stop).await;
            let wait = match ended {
                Ok(Ended::Stopped) => return,
                Ok(Ended::Refused(why)) => {
                    tracing::error!(
                        "Discord refused the bot's Gateway connection: {why}; fix [channels.discord] and restart"
                    );
                    self.reporter.disconnected(format!("Discord refused the bot: {why}; not retrying"));
                    return;
                }
                Ok(Ended::Resume) => {
                    self.reporter.disconnected("the connection dropped; resuming");
                    backoff = Duration::from_secs(1);
                    Duration::ZERO
                }
                Ok(Ended::Identify) => {
                    self.reporter.disconnected("Discord ended the session; identifying again");
                    session = Session { bot: session.bot.take(), ..Session::default() };
                    Duration::from_secs(1)
                }
                Err(error) => {
                    tracing::warn!(
                        "the Discord Gateway connection failed: {error}; retrying in {}s",
                        backoff.as_secs()
                    );
                    self.reporter.disconnected(format!("{error}; retrying"));
                    let wait = backoff;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    wait
                }
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = stop.cancelled() => return,
            }
        }
    }

    /// One connection, from Hello to its end.
    async fn connection(
        &self,
        url: &str,
        session: &mut Session,
        stop: &CancellationToken,
    ) -> Result<Ended, String> {
        let (socket, _) = connect(url).await?;
        let (mut write, mut read) = socket.split();
        let interval = loop {
            match read.next().await {
                Some(Ok(Message::Text(text))) => {
                    let payload: Value = serde_json::from_str(&text).map_err(|e| format!("not JSON: {e}"))?;
                    if payload["op"].as_u64() == Some(op::HELLO) {
                        break payload["d"]["heartbeat_interval"].as_u64().unwrap_or(41_250);
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(error)) => return Err(error.to_string()),
                None => return Err("closed before Hello".to_owned()),
            }
        };
        let hello = match (&session.id, session.seq) {
            (Some(id), Some(seq)) => {
                json!({"op": op::RESUME, "d": {"token": self.token, "session_id": id, "seq": seq}})
            }
            _ => json!({"op": op::IDENTIFY, "d": {
                "token": self.token, "intents": INTENTS,
                "properties": {"os": std::env::consts::OS, "browser": "exoclaw", "device": "exoclaw"},
            }}),
        };
        write.send(Message::text(hello.to_string())).await.map_err(|e| e.to_string())?;
        let mut heartbeat = tokio::time::interval(Duration::from_millis(interval.max(100)));
        heartbeat.tick().await;
        let mut acked = true;
        loop {
            tokio::select! {
                () = stop.cancelled() => {
                    let _ = write.send(Message::Close(None)).await;
                    return Ok(Ended::Stopped);
                }
                _ = heartbeat.tick() => {
                    if !acked {
                        tracing::info!("the Discord Gateway stopped acknowledging heartbeats; resuming on a new connection");
                        return Ok(Ended::Resume);
                    }
                    let beat = json!({"op": op::HEARTBEAT, "d": session.seq});
                    if write.send(Message::text(beat.to_string())).await.is_err() {
                        return Ok(Ended::Resume);
                    }
                    acked = false;
                }
                frame = read.next() => match frame {
                    Some(Ok(Message::Text(text))) => {
                        let Ok(payload) = serde_json::from_str::<Value>(&text) else { continue };
                        match payload["op"].as_u64() {
                            Some(op::DISPATCH) => {
                                if let Some(seq) = payload["s"].as_u64() {
                                    session.seq = Some(seq);
                                }
                                self.dispatch(&payload, session);
                            }
                            Some(op::HEARTBEAT) => {
                                let beat = json!({"op": op::HEARTBEAT, "d": session.seq});
                                let _ = write.send(Message::text(beat.to_string())).await;
                            }
                            Some(op::HEARTBEAT_ACK) => acked = true,
                            Some(op::RECONNECT) => return Ok(Ended::Resume),
                            Some(op::INVALID_SESSION) => {
                                return Ok(if payload["d"].as_bool() == Some(true) { Ended::Resume } else { Ended::Identify });
                            }
                            _ => {}
                        }
                    }
                    Some(Ok(Message::Close(frame))) => {
                        let code = frame.as_ref().map(|f| u16::from(f.code));
                        return Ok(match code {
                            Some(4004) => Ended::Refused("authentication failed (4004): check DISCORD_BOT_TOKEN".into()),
                            Some(code @ 4010..=4014) => Ended::Refused(format!(
                                "close code {code}: {}",
                                frame.map(|f| f.reason.to_string()).unwrap_or_default()
                            )),
                            Some(4007 | 4009) => Ended::Identify,
                            _ if frame.as_ref().is_some_and(|f| f.code == CloseCode::Normal) => Ended::Identify,
                            _ => Ended::Resume,
                        });
                    }
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => return Ok(Ended::Resume),
                },
            }
        }
    }

    /// An event: `READY` keeps the session, `MESSAGE_CREATE` may be a question,
    /// `INTERACTION_CREATE` may be a press of an approval prompt's button (a bot without an
    /// Interactions Endpoint URL gets them here).
    fn dispatch(&self, payload: &Value, session: &mut Session) {
        let data = &payload["d"];
        match payload["t"].as_str() {
            Some("READY") => {
                session.id = data["session_id"].as_str().map(str::to_owned);
                session.resume_url = data["resume_gateway_url"].as_str().map(str::to_owned);
                session.bot = data["user"]["id"].as_str().map(str::to_owned);
                tracing::info!("connected to the Discord Gateway");
                self.reporter.connected();
            }
            Some("RESUMED") => self.reporter.connected(),
            Some("MESSAGE_CREATE") => {
                if let Some(bot) = &session.bot {
                    self.message(data, bot);
                }
            }
            // The bot's own reactions are no answers.
            Some("MESSAGE_REACTION_ADD") if session.bot.as_deref() != data["user_id"].as_str() => {
                crate::approval::discord::react(&self.rest, &self.approvals, data);
            }
            Some("INTERACTION_CREATE") if data["type"].as_u64() == Some(MESSAGE_COMPONENT) => {
                let (rest, approvals, interaction) =
                    (self.rest.clone(), self.approvals.clone(), data.clone());
                tokio::spawn(async move {
                    crate::approval::discord::respond(&rest, &approvals, &interaction).await;
                });
            }
            _ => {}
        }
    }

    fn message(&self, message: &Value, bot: &str) {
        let author = message["author"]["id"].as_str().unwrap_or_default();
        let (Some(id), Some(channel)) = (message["id"].as_str(), message["channel_id"].as_str()) else {
            return;
        };
        if message["author"]["bot"].as_bool() == Some(true) || author == bot {
            return;
        }
        let guild = message["guild_id"].as_str();
        if guild.is_some() && !mentions(message, bot) {
            return;
        }
        if !self.config.allows(author, guild.map(|_| channel)) {
            tracing::info!(user = author, "a Discord message from outside the allow-lists was ignored");
            return;
        }
        if !self.seen.lock().map(|mut seen| seen.insert(id)).unwrap_or(true) {
            return;
        }
        let text = strip_bot_mention(message["content"].as_str().unwrap_or_default(), bot);
        let inbound = Inbound {
            channel: "discord".to_owned(),
            account: bot.to_owned(),
            peer: if guild.is_some() { channel.to_owned() } else { author.to_owned() },
            guild: guild.map(str::to_owned),
            team: None,
        };
        let place = crate::approval::discord::DiscordPlace {
            rest: self.rest.clone(),
            channel: channel.to_owned(),
            reply_to: Some(id.to_owned()),
        };
        let approver = self.approvals.approver(author, format!("<@{author}>"), channel, place);
        let place = super::MessageReply {
            rest: self.rest.clone(),
            channel: channel.to_owned(),
            message: id.to_owned(),
        };
        let attachments = ChatFiles::attach(super::attachments(message), self.rest.clone());
        let extras = crate::api::Extras { approver, attachments };
        crate::api::run_turn_asking(&self.runtime, inbound, text, &self.models, extras, self.progress, place);
    }
}

/// The Gateway URL with the version and encoding exoclaw speaks, unless it has a query already.
fn with_query(url: &str) -> String {
    match url.contains('?') {
        true => url.to_owned(),
        false => format!("{}/?v=10&encoding=json", url.trim_end_matches('/')),
    }
}

pub(crate) type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens the WebSocket: TLS (`wss://`) with the aws-lc-rs provider and the Mozilla roots, or plain
/// for `ws://` (tests on loopback). Slack's Socket Mode connects with it too.
pub(crate) async fn connect(
    url: &str,
) -> Result<(Socket, tokio_tungstenite::tungstenite::handshake::client::Response), String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_tungstenite::Connector::Rustls(Arc::new(tls));
    let connecting = tokio_tungstenite::connect_async_tls_with_config(url, None, false, Some(connector));
    match tokio::time::timeout(Duration::from_secs(20), connecting).await {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(_) => Err("no answer within 20 s".to_owned()),
    }
}
