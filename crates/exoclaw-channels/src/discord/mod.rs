//! Discord: mentions and direct messages arrive over the Gateway (a WebSocket exoclaw keeps open:
//! identify, heartbeat, resume after a drop so no message is lost — [`gateway`]), slash commands
//! over the Interactions endpoint (`POST /webhook/discord`, Ed25519-signed — [`interactions`]).
//! Each becomes a turn of the agent the bindings pick (channel `discord`, guild = the server, peer
//! = the Discord channel), answered with the REST API: a reply to the message, or the
//! interaction's deferred response filled in (while the turn's tools run, the progress is shown
//! there and edited into the answer); cut at Discord's 2,000 characters, 429s waited out.

pub mod gateway;
pub mod interactions;

use crate::api::{Success, call};
use crate::files::{Download, Incoming};
use crate::split::split_message;
use bytes::Bytes;
use exoclaw_core::runtime::OutgoingFile;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::time::Duration;

pub use gateway::DiscordGateway;
pub use interactions::DiscordInteractions;

/// The characters of one message exoclaw sends (Discord's limit is 2,000).
pub const MESSAGE_LIMIT: usize = 1_990;
/// The largest file the agent may send (a bot's upload limit on a server without boosts: 10 MiB).
const MAX_UPLOAD_BYTES: u64 = 10 * 1_024 * 1_024;

/// `[channels.discord]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DiscordConfig {
    /// The environment variable holding the bot token.
    pub bot_token_env: String,
    /// The environment variable holding the application's public key (hex), for the
    /// Interactions endpoint; unset: slash commands are not served.
    pub public_key_env: String,
    /// The REST API's base URL.
    pub api_base: String,
    /// The Gateway's URL.
    pub gateway_url: String,
    /// Whether to keep a Gateway connection for mentions and direct messages (default true).
    pub gateway: bool,
    /// Discord user ids allowed to talk to the agents; empty: everyone.
    pub allow_users: Vec<String>,
    /// Discord channel ids the agents answer in (direct messages always); empty: every channel.
    pub allow_channels: Vec<String>,
}

impl Default for DiscordConfig {
    fn default() -> Self {
        Self {
            bot_token_env: "DISCORD_BOT_TOKEN".into(),
            public_key_env: "DISCORD_PUBLIC_KEY".into(),
            api_base: "https://discord.com/api/v10".into(),
            gateway_url: "wss://gateway.discord.gg/?v=10&encoding=json".into(),
            gateway: true,
            allow_users: Vec::new(),
            allow_channels: Vec::new(),
        }
    }
}

impl DiscordConfig {
    /// Whether `user` may start a turn in `channel` (`None`: a direct message).
    pub(crate) fn allows(&self, user: &str, channel: Option<&str>) -> bool {
        (self.allow_users.is_empty() || self.allow_users.iter().any(|u| u == user))
            && (self.allow_channels.is_empty()
                || channel.is_none_or(|c| self.allow_channels.iter().any(|a| a == c)))
    }
}

/// Discord's REST API, with the bot's token.
#[derive(Clone)]
pub(crate) struct Rest {
    base: String,
    authorization: String,
    client: reqwest::Client,
    breaker: std::sync::Arc<crate::breaker::Breaker>,
}

impl Rest {
    pub(crate) fn new(base: &str, token: &str) -> Self {
        let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap_or_default();
        Self {
            base: base.trim_end_matches('/').to_owned(),
            authorization: format!("Bot {token}"),
            client,
            breaker: std::sync::Arc::default(),
        }
    }

    /// Calls the REST API: `method` on `path` (from the API's base) with `body`, with the bot's
    /// token when `as_bot` (an interaction's callback is authorised by its own token instead).
    pub(crate) async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &Value,
        as_bot: bool,
    ) -> Result<Value, String> {
        let url = format!("{}{path}", self.base);
        let authorization = as_bot.then_some(self.authorization.as_str());
        call(&self.client, &self.breaker, method, &url, authorization, body, Success::Status).await
    }

    /// [`Rest::send`] with a multipart form carrying `file`: `payload_json` (the message: `body`
    /// with the attachment named) and `files[0]`.
    async fn send_file(
        &self,
        method: reqwest::Method,
        path: &str,
        mut body: Value,
        file: &OutgoingFile,
        bytes: Vec<u8>,
        as_bot: bool,
    ) -> Result<(), String> {
        body["attachments"] = json!([{"id": 0, "filename": file.name}]);
        if let Some(caption) = &file.caption {
            body["content"] = json!(caption);
        }
        let (payload, name, bytes) = (body.to_string(), file.name.clone(), Bytes::from(bytes));
        let form = move || {
            let file = reqwest::multipart::Part::stream(bytes.clone()).file_name(name.clone());
            reqwest::multipart::Form::new().text("payload_json", payload.clone()).part("files[0]", file)
        };
        let url = format!("{}{path}", self.base);
        let authorization = as_bot.then_some(self.authorization.as_str());
        let body = crate::api::Body::Multipart(&form);
        crate::api::send(&self.client, &self.breaker, method, &url, authorization, body, Success::Status)
            .await
            .map(|_| ())
    }

    /// Posts `answer` in `channel` as a reply to `message`, in pieces.
    pub(crate) async fn reply(&self, channel: &str, message: &str, answer: &str) {
        let url = format!("{}/channels/{channel}/messages", self.base);
        for (i, piece) in split_message(answer, MESSAGE_LIMIT).into_iter().enumerate() {
            let mut body = json!({"content": piece, "allowed_mentions": {"parse": []}});
            if i == 0 {
                body["message_reference"] = json!({"message_id": message});
            }
            let sent = call(
                &self.client,
                &self.breaker,
                reqwest::Method::POST,
                &url,
                Some(&self.authorization),
                &body,
                Success::Status,
            )
            .await;
            if let Err(error) = sent {
                tracing::warn!(channel, "the answer could not be posted to Discord: {error}");
                return;
            }
        }
    }

    /// Fills in an interaction's deferred response with `answer` (the rest as follow-ups).
    pub(crate) async fn complete_interaction(&self, application: &str, token: &str, answer: &str) {
        for (i, piece) in split_message(answer, MESSAGE_LIMIT).into_iter().enumerate() {
            let body = json!({"content": piece, "allowed_mentions": {"parse": []}});
            let (method, url) = match i {
                0 => (
                    reqwest::Method::PATCH,
                    format!("{}/webhooks/{application}/{token}/messages/@original", self.base),
                ),
                _ => (reqwest::Method::POST, format!("{}/webhooks/{application}/{token}", self.base)),
            };
            // The interaction's token authorises these calls; the bot's is not sent.
            if let Err(error) =
                call(&self.client, &self.breaker, method, &url, None, &body, Success::Status).await
            {
                tracing::warn!("the answer to a Discord command could not be sent: {error}");
                return;
            }
        }
    }
}

/// Where one turn's answer goes: a reply to `message` in `channel`.
pub(crate) struct MessageReply {
    pub(crate) rest: Rest,
    pub(crate) channel: String,
    pub(crate) message: String,
}

#[async_trait::async_trait]
impl crate::progress::Place for MessageReply {
    /// The message's id.
    type Id = String;

    fn limit(&self) -> usize {
        MESSAGE_LIMIT
    }

    async fn post(&self, text: &str) -> Result<String, String> {
        let body = json!({"content": text, "allowed_mentions": {"parse": []},
            "message_reference": {"message_id": self.message}});
        let path = format!("/channels/{}/messages", self.channel);
        let posted = self.rest.send(reqwest::Method::POST, &path, &body, true).await?;
        posted["id"].as_str().map(str::to_owned).ok_or_else(|| "no message id in Discord's answer".to_owned())
    }

    async fn edit(&self, id: &String, text: &str) -> Result<(), String> {
        let body = json!({"content": text, "allowed_mentions": {"parse": []}});
        let path = format!("/channels/{}/messages/{id}", self.channel);
        self.rest.send(reqwest::Method::PATCH, &path, &body, true).await.map(|_| ())
    }

    async fn more(&self, text: &str) -> Result<(), String> {
        let body = json!({"content": text, "allowed_mentions": {"parse": []}});
        let path = format!("/channels/{}/messages", self.channel);
        self.rest.send(reqwest::Method::POST, &path, &body, true).await.map(|_| ())
    }

    async fn answer(&self, answer: &str) {
        self.rest.reply(&self.channel, &self.message, answer).await;
    }

    fn max_file_bytes(&self) -> u64 {
        MAX_UPLOAD_BYTES
    }

    async fn send_file(&self, file: &OutgoingFile, bytes: Vec<u8>) -> Result<(), String> {
        let body =
            json!({"allowed_mentions": {"parse": []}, "message_reference": {"message_id": self.message}});
        let path = format!("/channels/{}/messages", self.channel);
        self.rest.send_file(reqwest::Method::POST, &path, body, file, bytes, true).await
    }
}

/// Where one slash command's answer goes: its deferred response ("thinking…"), which the
/// progress is shown in and the answer replaces, follow-ups for the rest.
pub(crate) struct InteractionReply {
    pub(crate) rest: Rest,
    pub(crate) application: String,
    pub(crate) token: String,
}

#[async_trait::async_trait]
impl crate::progress::Place for InteractionReply {
    /// The deferred response is the one message: nothing to name.
    type Id = ();

    fn limit(&self) -> usize {
        MESSAGE_LIMIT
    }

    async fn post(&self, text: &str) -> Result<(), String> {
        self.edit(&(), text).await
    }

    async fn edit(&self, (): &(), text: &str) -> Result<(), String> {
        let body = json!({"content": text, "allowed_mentions": {"parse": []}});
        let path = format!("/webhooks/{}/{}/messages/@original", self.application, self.token);
        // The interaction's token authorises these calls; the bot's is not sent.
        self.rest.send(reqwest::Method::PATCH, &path, &body, false).await.map(|_| ())
    }

    async fn more(&self, text: &str) -> Result<(), String> {
        let body = json!({"content": text, "allowed_mentions": {"parse": []}});
        let path = format!("/webhooks/{}/{}", self.application, self.token);
        self.rest.send(reqwest::Method::POST, &path, &body, false).await.map(|_| ())
    }

    async fn answer(&self, answer: &str) {
        self.rest.complete_interaction(&self.application, &self.token, answer).await;
    }

    fn max_file_bytes(&self) -> u64 {
        MAX_UPLOAD_BYTES
    }

    /// A follow-up message with the file (authorised by the interaction's token).
    async fn send_file(&self, file: &OutgoingFile, bytes: Vec<u8>) -> Result<(), String> {
        let body = json!({"allowed_mentions": {"parse": []}});
        let path = format!("/webhooks/{}/{}", self.application, self.token);
        self.rest.send_file(reqwest::Method::POST, &path, body, file, bytes, false).await
    }
}

/// Downloads a message's attachment from Discord's CDN (no token needed, none sent); only
/// from Discord itself.
#[async_trait::async_trait]
impl Download for Rest {
    async fn download(&self, file: &Incoming, limit: u64) -> Result<Vec<u8>, String> {
        let host = |url: &str| reqwest::Url::parse(url).ok()?.host_str().map(str::to_owned);
        let on_discord = host(&file.source).is_some_and(|on| {
            ["discordapp.com", "discordapp.net", "discord.com"]
                .iter()
                .any(|domain| on == *domain || on.ends_with(&format!(".{domain}")))
                || Some(&on) == host(&self.base).as_ref()
        });
        if !on_discord {
            return Err("its URL is not on Discord's CDN".to_owned());
        }
        crate::files::get(&self.client, &file.source, None, limit).await
    }
}

/// A message's attachments (`MESSAGE_CREATE`'s `attachments`), or a command's (its attachment
/// options, in `data.resolved.attachments`).
pub(crate) fn attachments(message: &Value) -> Vec<Incoming> {
    let listed = message["attachments"].as_array().into_iter().flatten();
    let resolved =
        message["data"]["resolved"]["attachments"].as_object().into_iter().flat_map(|map| map.values());
    listed.chain(resolved).filter_map(attachment).collect()
}

/// An attachment object.
fn attachment(attachment: &Value) -> Option<Incoming> {
    let url = attachment["url"].as_str()?;
    Some(Incoming {
        name: attachment["filename"].as_str().unwrap_or("file").to_owned(),
        media_type: attachment["content_type"].as_str().map(str::to_owned),
        bytes: attachment["size"].as_u64(),
        source: url.to_owned(),
        link: Some(url.to_owned()),
    })
}

/// The text without mentions of `bot` (`<@ID>`, `<@!ID>`).
pub(crate) fn strip_bot_mention(text: &str, bot: &str) -> String {
    text.replace(&format!("<@{bot}>"), "").replace(&format!("<@!{bot}>"), "").trim().to_owned()
}

/// Whether a `MESSAGE_CREATE` mentions `bot`.
pub(crate) fn mentions(message: &Value, bot: &str) -> bool {
    message["mentions"].as_array().is_some_and(|list| list.iter().any(|m| m["id"] == bot))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bots_mention_is_taken_out_in_both_forms() {
        assert_eq!(strip_bot_mention("<@42> hi", "42"), "hi");
        assert_eq!(strip_bot_mention("hey <@!42> there", "42"), "hey  there");
        assert_eq!(strip_bot_mention("<@7> hi", "42"), "<@7> hi");
    }

    #[test]
    fn allow_lists_hold_for_channels_but_not_direct_messages() {
        let config = DiscordConfig { allow_channels: vec!["C1".into()], ..DiscordConfig::default() };
        assert!(config.allows("U1", Some("C1")));
        assert!(!config.allows("U1", Some("C2")));
        assert!(config.allows("U1", None));
        let config = DiscordConfig { allow_users: vec!["U1".into()], ..DiscordConfig::default() };
        assert!(!config.allows("U2", None));
    }
}
