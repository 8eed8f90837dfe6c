//! Telegram over the Bot API's webhook (`POST /webhook/telegram`, set with `setWebhook` and a
//! `secret_token`): a delivery must carry that secret in `X-Telegram-Bot-Api-Secret-Token`,
//! updates are recognised by their `update_id` (Telegram redelivers until it gets a 200), and each
//! text message — every one in a private chat, in a group only those naming the bot or replying
//! to it — becomes a turn of the agent the bindings pick (channel `telegram`, peer = the chat). The
//! answer is sent with `sendMessage` as a reply to the message (while the turn's tools run, a
//! progress message edited with `editMessageText`, then into the answer), cut at Telegram's 4,096
//! characters, retried on 429 after the `retry_after` Telegram gives.
//!
//! Without a public URL the bot polls instead ([`poll`]: `getUpdates`, long polling); each
//! update then goes through the same [`TelegramChannel`] as a webhook delivery.

use crate::api::Success;
use crate::approval::Approvals;
use crate::breaker::Breaker;
use crate::files::{ChatFiles, Download, Incoming};
use crate::recent::Recent;
use crate::split::split_message;
use async_trait::async_trait;
use bytes::Bytes;
use exoclaw_core::runtime::{AgentRuntime, OutgoingFile, Webhook};
use exoclaw_types::Inbound;
use http::HeaderMap;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub mod poll;

pub use poll::{PollError, TelegramPoller};

/// The characters of one message exoclaw sends (Telegram's limit is 4,096).
pub const MESSAGE_LIMIT: usize = 4_000;
/// The largest file the agent may send (a bot may upload up to 50 MB).
const MAX_UPLOAD_BYTES: u64 = 50_000_000;
/// How many update ids are remembered to recognise redeliveries.
const REMEMBERED_UPDATES: usize = 4_096;
/// The header carrying the webhook's secret token.
pub const SECRET_HEADER: &str = "x-telegram-bot-api-secret-token";

/// How updates reach exoclaw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", try_from = "String")]
pub enum TelegramMode {
    /// exoclaw asks Telegram for updates (`getUpdates`, long polling): no public URL and no
    /// webhook secret needed, so a bot on a laptop works with its token alone. The default.
    #[default]
    Polling,
    /// Telegram posts updates to `POST /webhook/telegram` (registered with `setWebhook`): needs a
    /// public HTTPS URL and the webhook secret.
    Webhook,
}

impl TryFrom<String> for TelegramMode {
    type Error = String;

    /// Reads `mode`, saying what each value means when it is neither.
    fn try_from(mode: String) -> Result<Self, String> {
        match mode.as_str() {
            "polling" => Ok(Self::Polling),
            "webhook" => Ok(Self::Webhook),
            _ => Err(format!(
                "mode = \"{mode}\" is not a way to reach Telegram: use \"polling\" (exoclaw asks for updates; no public URL needed) or \"webhook\" (Telegram posts to /webhook/telegram)"
            )),
        }
    }
}

/// `[channels.telegram]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelegramConfig {
    /// How updates arrive: `polling` (the default) or `webhook`.
    pub mode: TelegramMode,
    /// The environment variable holding the bot token (from @BotFather).
    pub bot_token_env: String,
    /// The environment variable holding the webhook's secret token (the `secret_token` given to
    /// `setWebhook`); only the `webhook` mode needs it.
    pub webhook_secret_env: String,
    /// The bot's username (without `@`): in groups it answers messages that name it.
    pub bot_username: Option<String>,
    /// The Bot API's base URL.
    pub api_base: String,
    /// Telegram user ids allowed to talk to the agents; empty: everyone.
    pub allow_users: Vec<i64>,
    /// In `polling` mode, how long each `getUpdates` waits for an update before asking again, in
    /// seconds (1 to 50, Telegram's longest; default 30). Shorter suits a proxy that cuts idle
    /// connections.
    #[serde(deserialize_with = "poll_timeout_secs")]
    pub poll_timeout_secs: u64,
}

/// The longest long poll Telegram holds.
pub const MAX_POLL_TIMEOUT_SECS: u64 = 50;

/// `poll_timeout_secs`, read and checked: 1 to 50 seconds.
fn poll_timeout_secs<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    let secs = u64::deserialize(deserializer)?;
    match secs {
        1..=MAX_POLL_TIMEOUT_SECS => Ok(secs),
        _ => Err(serde::de::Error::custom(format!(
            "poll_timeout_secs must be between 1 and {MAX_POLL_TIMEOUT_SECS} (seconds; Telegram holds a poll at most 50 s), not {secs}; the default is 30"
        ))),
    }
}

impl Default for TelegramConfig {
    fn default() -> Self {
        Self {
            mode: TelegramMode::default(),
            bot_token_env: "TELEGRAM_BOT_TOKEN".into(),
            webhook_secret_env: "TELEGRAM_WEBHOOK_SECRET".into(),
            bot_username: None,
            api_base: "https://api.telegram.org".into(),
            allow_users: Vec::new(),
            poll_timeout_secs: 30,
        }
    }
}

#[derive(Deserialize)]
struct Update {
    update_id: i64,
    #[serde(default)]
    message: Option<Message>,
    /// A press of an inline keyboard's button (an approval prompt's).
    #[serde(default)]
    callback_query: Option<Value>,
}

#[derive(Deserialize)]
struct Message {
    message_id: i64,
    chat: Chat,
    #[serde(default)]
    from: Option<User>,
    #[serde(default)]
    text: Option<String>,
    /// A photo's or a document's text.
    #[serde(default)]
    caption: Option<String>,
    /// A photo, in the sizes Telegram keeps (smallest first).
    #[serde(default)]
    photo: Vec<PhotoSize>,
    /// A file sent as a document.
    #[serde(default)]
    document: Option<Document>,
    #[serde(default)]
    reply_to_message: Option<Box<Message>>,
}

#[derive(Deserialize)]
struct PhotoSize {
    file_id: String,
    #[serde(default)]
    file_size: Option<u64>,
}

#[derive(Deserialize)]
struct Document {
    file_id: String,
    #[serde(default)]
    file_name: Option<String>,
    #[serde(default)]
    mime_type: Option<String>,
    #[serde(default)]
    file_size: Option<u64>,
}

impl Message {
    /// The message's files: its photo (the largest size exoclaw downloads) and its document.
    fn files(&self) -> Vec<Incoming> {
        let photo = self
            .photo
            .iter()
            .rev()
            .find(|size| size.file_size.is_none_or(|bytes| bytes <= crate::files::MAX_DOWNLOAD_BYTES))
            .or(self.photo.last())
            .map(|size| Incoming {
                name: "photo.jpg".to_owned(),
                media_type: Some("image/jpeg".to_owned()),
                bytes: size.file_size,
                source: size.file_id.clone(),
                link: None,
            });
        let document = self.document.as_ref().map(|document| Incoming {
            name: document.file_name.clone().unwrap_or_else(|| "document".to_owned()),
            media_type: document.mime_type.clone(),
            bytes: document.file_size,
            source: document.file_id.clone(),
            link: None,
        });
        photo.into_iter().chain(document).collect()
    }
}

#[derive(Deserialize)]
struct Chat {
    id: i64,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
struct User {
    id: i64,
    #[serde(default)]
    is_bot: bool,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    first_name: Option<String>,
}

/// The Telegram channel's webhook.
pub struct TelegramChannel {
    /// The models a message's `[provider/model]` prefix may pick (globs); none: no prefix.
    models: Vec<String>,
    secret: String,
    bot_username: Option<String>,
    allow_users: Vec<i64>,
    send: Arc<Sender>,
    runtime: Arc<dyn AgentRuntime>,
    seen: Mutex<Recent>,
    /// Tool calls waiting for an approval asked in the chat.
    approvals: Approvals,
    /// The shortest time between two edits of a progress message; `None`: no progress message.
    progress: Option<Duration>,
}

/// What the reply tasks share.
pub(crate) struct Sender {
    /// `{api_base}/bot{token}`: the token is part of the URL, which is never logged.
    base: String,
    /// `{api_base}/file/bot{token}`: where files are downloaded from.
    files: String,
    client: reqwest::Client,
    breaker: Breaker,
}

impl TelegramChannel {
    /// Lets a message pick one of `models` (globs such as `anthropic/*`) with a `[provider/model]`
    /// prefix; without any, a prefix is just text.
    pub fn with_models(mut self, models: Vec<String>) -> Self {
        self.models = models;
        self
    }

    /// The channel, checking `webhook_secret` and answering with `bot_token`.
    pub fn new(
        config: &TelegramConfig,
        bot_token: &str,
        webhook_secret: String,
        runtime: Arc<dyn AgentRuntime>,
    ) -> Self {
        let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap_or_default();
        Self {
            secret: webhook_secret,
            bot_username: config
                .bot_username
                .as_ref()
                .map(|name| name.trim_start_matches('@').to_lowercase()),
            allow_users: config.allow_users.clone(),
            send: Arc::new(Sender {
                base: format!("{}/bot{bot_token}", config.api_base.trim_end_matches('/')),
                files: format!("{}/file/bot{bot_token}", config.api_base.trim_end_matches('/')),
                client,
                breaker: Breaker::default(),
            }),
            runtime,
            seen: Mutex::new(Recent::new(REMEMBERED_UPDATES)),
            models: Vec::new(),
            approvals: Approvals::default(),
            progress: Some(crate::progress::INTERVAL),
        }
    }

    /// Whether a turn that runs tools shows a progress message in the chat while they run,
    /// updated with `editMessageText` and then replaced by the answer (the default), or sends
    /// its answer alone when it ends.
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

    /// Whether the message is for the bot: any in a private chat; in a group, one naming it or
    /// replying to it.
    fn addressed(&self, message: &Message, text: &str) -> bool {
        if message.chat.kind == "private" {
            return true;
        }
        let Some(name) = &self.bot_username else { return false };
        let named = text.to_lowercase().contains(&format!("@{name}"));
        let replied = message.reply_to_message.as_ref().and_then(|m| m.from.as_ref()).is_some_and(|from| {
            from.is_bot && from.username.as_deref().is_some_and(|u| u.eq_ignore_ascii_case(name))
        });
        named || replied
    }

    /// Handles one update, however it arrived (the webhook, or [`poll`]'s `getUpdates`): the only
    /// place an update is read, so both ways behave alike. One seen before (same `update_id`: a
    /// redelivery) is ignored.
    fn handle_update(&self, update: Update) {
        let first =
            self.seen.lock().map(|mut seen| seen.insert(&update.update_id.to_string())).unwrap_or(true);
        if first && let Some(message) = update.message {
            self.take(message);
        }
        if first && let Some(query) = update.callback_query {
            crate::approval::telegram::press(&self.approvals, &self.send, &query);
        }
    }

    /// Asks the user whose message started a turn to approve its gated tool calls (with an
    /// inline keyboard, in the chat) as `approvals` says; shared with the runtime's other
    /// channels.
    pub fn with_approvals(mut self, approvals: Approvals) -> Self {
        self.approvals = approvals;
        self
    }

    fn take(&self, message: Message) {
        // A photo's or a document's text is its caption; a file may come without a word.
        let files = message.files();
        let text = message.text.clone().or_else(|| message.caption.clone()).unwrap_or_default();
        if text.trim().is_empty() && files.is_empty() {
            return;
        }
        let Some(from) = &message.from else { return };
        if from.is_bot || !self.addressed(&message, &text) {
            return;
        }
        if !self.allow_users.is_empty() && !self.allow_users.contains(&from.id) {
            tracing::info!(user = from.id, "a Telegram message from outside the allow-list was ignored");
            return;
        }
        let text = match &self.bot_username {
            Some(name) => remove_ignoring_case(&text, &format!("@{name}")),
            None => text,
        };
        let inbound = Inbound {
            channel: "telegram".to_owned(),
            account: "default".to_owned(),
            peer: message.chat.id.to_string(),
            guild: None,
            team: None,
        };
        let (chat, reply_to) = (message.chat.id, message.message_id);
        let place = crate::approval::telegram::TelegramPlace { send: Arc::clone(&self.send), chat, reply_to };
        let shown =
            crate::approval::telegram::shown_name(from.username.as_deref(), from.first_name.as_deref());
        let approver = self.approvals.approver(&from.id.to_string(), shown, &chat.to_string(), place);
        let place = Reply { send: Arc::clone(&self.send), chat, reply_to };
        let text = text.trim().to_owned();
        let attachments = ChatFiles::attach(files, Arc::clone(&self.send));
        let extras = crate::api::Extras { approver, attachments };
        crate::api::run_turn_asking(&self.runtime, inbound, text, &self.models, extras, self.progress, place);
    }
}

/// Where one turn's answer goes: a reply to the message `reply_to` in `chat`.
struct Reply {
    send: Arc<Sender>,
    chat: i64,
    reply_to: i64,
}

#[async_trait]
impl crate::progress::Place for Reply {
    /// The message's `message_id`.
    type Id = i64;

    fn limit(&self) -> usize {
        MESSAGE_LIMIT
    }

    async fn post(&self, text: &str) -> Result<i64, String> {
        let body =
            json!({"chat_id": self.chat, "text": text, "reply_parameters": {"message_id": self.reply_to}});
        let sent = self.send.call("sendMessage", &body).await?;
        sent["result"]["message_id"]
            .as_i64()
            .ok_or_else(|| "sendMessage: no message_id in Telegram's answer".to_owned())
    }

    async fn edit(&self, message_id: &i64, text: &str) -> Result<(), String> {
        let body = json!({"chat_id": self.chat, "message_id": message_id, "text": text});
        self.send.call("editMessageText", &body).await.map(|_| ())
    }

    async fn answer(&self, answer: &str) {
        self.send.answer(self.chat, self.reply_to, answer).await;
    }

    fn max_file_bytes(&self) -> u64 {
        MAX_UPLOAD_BYTES
    }

    /// `sendDocument` (multipart), as a reply to the question.
    async fn send_file(&self, file: &OutgoingFile, bytes: Vec<u8>) -> Result<(), String> {
        let reply = json!({"message_id": self.reply_to}).to_string();
        let (chat, name, caption) = (self.chat.to_string(), file.name.clone(), file.caption.clone());
        let bytes = Bytes::from(bytes);
        let form = move || {
            let document = reqwest::multipart::Part::stream(bytes.clone()).file_name(name.clone());
            let form = reqwest::multipart::Form::new()
                .text("chat_id", chat.clone())
                .text("reply_parameters", reply.clone())
                .part("document", document);
            match &caption {
                Some(caption) => form.text("caption", caption.clone()),
                None => form,
            }
        };
        let url = format!("{}/sendDocument", self.send.base);
        crate::api::send(
            &self.send.client,
            &self.send.breaker,
            reqwest::Method::POST,
            &url,
            None,
            crate::api::Body::Multipart(&form),
            Success::OkField,
        )
        .await
        .map(|_| ())
        .map_err(|e| format!("sendDocument: {e}"))
    }
}

/// Downloads a file sent to the bot: `getFile` names its path, then the file is fetched from
/// the Bot API's file URL.
#[async_trait]
impl Download for Arc<Sender> {
    async fn download(&self, file: &Incoming, limit: u64) -> Result<Vec<u8>, String> {
        let found = self.call("getFile", &json!({"file_id": file.source})).await?;
        let path = found["result"]["file_path"].as_str().ok_or(
            "getFile: no file_path in Telegram's answer (a file over 20 MB cannot be downloaded by a bot)",
        )?;
        crate::files::get(&self.client, &format!("{}/{path}", self.files), None, limit).await
    }
}

impl Sender {
    /// Calls the Bot API method with `body`.
    pub(crate) async fn call(&self, method: &str, body: &Value) -> Result<Value, String> {
        let url = format!("{}/{method}", self.base);
        crate::api::call(
            &self.client,
            &self.breaker,
            reqwest::Method::POST,
            &url,
            None,
            body,
            Success::OkField,
        )
        .await
        .map_err(|e| format!("{method}: {e}"))
    }

    async fn answer(&self, chat: i64, reply_to: i64, answer: &str) {
        for piece in split_message(answer, MESSAGE_LIMIT) {
            let body = json!({"chat_id": chat, "text": piece, "reply_parameters": {"message_id": reply_to}});
            let url = format!("{}/sendMessage", self.base);
            let sent = crate::api::call(
                &self.client,
                &self.breaker,
                reqwest::Method::POST,
                &url,
                None,
                &body,
                Success::OkField,
            )
            .await;
            if let Err(error) = sent {
                tracing::warn!(chat, "the answer could not be sent to Telegram: sendMessage: {error}");
                return;
            }
        }
    }
}

/// `text` without `needle`, matched regardless of case.
fn remove_ignoring_case(text: &str, needle: &str) -> String {
    let lower = text.to_lowercase();
    match lower.find(&needle.to_lowercase()) {
        Some(at) if lower.len() == text.len() => format!("{}{}", &text[..at], &text[at + needle.len()..]),
        _ => text.to_owned(),
    }
}

#[async_trait]
impl Webhook for TelegramChannel {
    fn verify(&self, headers: &HeaderMap, _body: &[u8]) -> Result<(), String> {
        let given = headers
            .get(SECRET_HEADER)
            .map(|v| v.as_bytes())
            .ok_or("no X-Telegram-Bot-Api-Secret-Token header")?;
        // Constant time: compare every byte whatever the first difference.
        let expected = self.secret.as_bytes();
        if expected.is_empty() {
            // A polling channel has no secret: nothing may pass for one.
            return Err("this Telegram channel polls; it takes no webhook deliveries".to_owned());
        }
        let same = given.len() == expected.len()
            && given.iter().zip(expected).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0;
        match same {
            true => Ok(()),
            false => {
                Err("the secret token does not match (is it the secret_token given to setWebhook?)"
                    .to_owned())
            }
        }
    }

    async fn receive(&self, _headers: &HeaderMap, body: Bytes) -> Result<Value, String> {
        let update: Update =
            serde_json::from_slice(&body).map_err(|e| format!("not a Telegram update: {e}"))?;
        self.handle_update(update);
        Ok(json!({"ok": true}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bots_name_is_taken_out_whatever_its_case() {
        assert_eq!(remove_ignoring_case("@ExoBot what time is it", "@exobot"), " what time is it");
        assert_eq!(remove_ignoring_case("no name here", "@exobot"), "no name here");
    }
}
