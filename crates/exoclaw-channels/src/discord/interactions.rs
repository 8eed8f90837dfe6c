//! Discord's Interactions endpoint (`POST /webhook/discord`): slash commands. Every request is
//! signed with the application's Ed25519 key (`X-Signature-Ed25519` over the
//! `X-Signature-Timestamp` followed by the body) and refused otherwise; a `PING` is answered `PONG`; a command is answered at once
//! with a deferred response ("thinking…"), and when its turn ends the response is filled in.
//! The command's options are the question: `/ask question: …` asks "…".

use super::{DiscordConfig, Rest};
use crate::approval::Approvals;
use crate::files::ChatFiles;
use async_trait::async_trait;
use bytes::Bytes;
use ed25519_dalek::{Signature, VerifyingKey};
use exoclaw_core::runtime::webhook::decode_hex;
use exoclaw_core::runtime::{AgentRuntime, Webhook};
use exoclaw_types::Inbound;
use http::HeaderMap;
use serde_json::{Value, json};
use std::sync::Arc;

/// Interaction types (Discord's numbering).
const PING: u64 = 1;
const APPLICATION_COMMAND: u64 = 2;
const MESSAGE_COMPONENT: u64 = 3;
/// Response types.
const PONG: u64 = 1;
const DEFERRED_CHANNEL_MESSAGE: u64 = 5;

/// The Interactions endpoint.
pub struct DiscordInteractions {
    /// The models a message's `[provider/model]` prefix may pick (globs); none: no prefix.
    models: Vec<String>,
    key: VerifyingKey,
    config: DiscordConfig,
    rest: Rest,
    runtime: Arc<dyn AgentRuntime>,
    /// Tool calls waiting for an approval asked in the chat.
    approvals: Approvals,
    /// The shortest time between two edits of a progress message; `None`: no progress message.
    progress: Option<std::time::Duration>,
}

/// Why the application's public key cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the Discord public key is not an Ed25519 public key in hex (64 hex digits): {0}")]
pub struct BadPublicKey(String);

impl DiscordInteractions {
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

    /// The endpoint, verifying with `public_key` (hex, from the application's page) and
    /// answering through the REST API with `bot_token`.
    pub fn new(
        config: &DiscordConfig,
        public_key: &str,
        bot_token: &str,
        runtime: Arc<dyn AgentRuntime>,
    ) -> Result<Self, BadPublicKey> {
        let bytes = decode_hex(public_key.trim()).ok_or_else(|| BadPublicKey("not hex".into()))?;
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| BadPublicKey("not 32 bytes".into()))?;
        let key = VerifyingKey::from_bytes(&bytes).map_err(|e| BadPublicKey(e.to_string()))?;
        Ok(Self {
            models: Vec::new(),
            key,
            config: config.clone(),
            rest: Rest::new(&config.api_base, bot_token),
            runtime,
            approvals: Approvals::default(),
            progress: Some(crate::progress::INTERVAL),
        })
    }

    /// Asks the user whose command started a turn to approve its gated tool calls (with buttons,
    /// in the channel) as `approvals` says; share them with the Gateway connection, whose
    /// prompts' presses arrive here when the application has an Interactions Endpoint URL.
    pub fn with_approvals(mut self, approvals: Approvals) -> Self {
        self.approvals = approvals;
        self
    }

    fn command(&self, interaction: &Value) -> Result<Value, String> {
        let user = interaction["member"]["user"]["id"]
            .as_str()
            .or(interaction["user"]["id"].as_str())
            .unwrap_or_default();
        let guild = interaction["guild_id"].as_str();
        let channel =
            interaction["channel_id"].as_str().or(interaction["channel"]["id"].as_str()).unwrap_or_default();
        if !self.config.allows(user, guild.map(|_| channel)) {
            return Ok(
                json!({"type": 4, "data": {"content": "You are not allowed to use this bot here.", "flags": 64}}),
            );
        }
        let question = options_text(&interaction["data"]);
        let (Some(application), Some(token)) =
            (interaction["application_id"].as_str(), interaction["token"].as_str())
        else {
            return Err("an application command without application_id or token".to_owned());
        };
        let inbound = Inbound {
            channel: "discord".to_owned(),
            account: application.to_owned(),
            peer: if guild.is_some() { channel.to_owned() } else { user.to_owned() },
            guild: guild.map(str::to_owned),
            team: None,
        };
        let place = crate::approval::discord::DiscordPlace {
            rest: self.rest.clone(),
            channel: channel.to_owned(),
            reply_to: None,
        };
        let approver = self.approvals.approver(user, format!("<@{user}>"), channel, place);
        let place = super::InteractionReply {
            rest: self.rest.clone(),
            application: application.to_owned(),
            token: token.to_owned(),
        };
        let attachments = ChatFiles::attach(super::attachments(interaction), self.rest.clone());
        let extras = crate::api::Extras { approver, attachments };
        crate::api::run_turn_asking(
            &self.runtime,
            inbound,
            question,
            &self.models,
            extras,
            self.progress,
            place,
        );
        Ok(json!({"type": DEFERRED_CHANNEL_MESSAGE}))
    }
}

/// A command's options as the question: string values joined (`/ask question: hi` → `hi`), else
/// the command's name.
fn options_text(data: &Value) -> String {
    let values: Vec<&str> = data["options"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|option| option["value"].as_str())
        .collect();
    match values.is_empty() {
        true => data["name"].as_str().unwrap_or_default().to_owned(),
        false => values.join(" "),
    }
}

#[async_trait]
impl Webhook for DiscordInteractions {
    fn verify(&self, headers: &HeaderMap, body: &[u8]) -> Result<(), String> {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let signature = header("x-signature-ed25519").ok_or("no X-Signature-Ed25519 header")?;
        let timestamp = header("x-signature-timestamp").ok_or("no X-Signature-Timestamp header")?;
        let signature = decode_hex(signature).ok_or("X-Signature-Ed25519 is not hex")?;
        let signature: [u8; 64] = signature.try_into().map_err(|_| "X-Signature-Ed25519 is not 64 bytes")?;
        let mut message = timestamp.as_bytes().to_vec();
        message.extend_from_slice(body);
        self.key.verify_strict(&message, &Signature::from_bytes(&signature)).map_err(|_| {
            "the Ed25519 signature does not match (is DISCORD_PUBLIC_KEY the application's?)".to_owned()
        })
    }

    async fn receive(&self, _headers: &HeaderMap, body: Bytes) -> Result<Value, String> {
        let interaction: Value =
            serde_json::from_slice(&body).map_err(|e| format!("not a Discord interaction: {e}"))?;
        match interaction["type"].as_u64() {
            Some(PING) => Ok(json!({"type": PONG})),
            Some(APPLICATION_COMMAND) => self.command(&interaction),
            Some(MESSAGE_COMPONENT) => Ok(crate::approval::discord::component(&self.approvals, &interaction)),
            Some(other) => Err(format!("interactions of type {other} are not handled")),
            None => Err("an interaction without a type".to_owned()),
        }
    }
}
