//! Slack over the Events API (`POST /webhook/slack`): every delivery's signature is checked
//! (signing secret, `v0`, the 5-minute timestamp window), `url_verification` is answered,
//! Slack's retries are recognised by their event id and answered once, and the delivery is
//! acknowledged at once while the turn runs. An `app_mention` or a direct message becomes a turn of
//! the agent the bindings pick (channel `slack`, account and team = the workspace, peer = the
//! Slack channel, or the user in a DM); the answer goes back in the thread through the Web API's
//! `chat.postMessage` (while the turn's tools run, a progress message updated with `chat.update`
//! and then replaced by the answer — [`crate::progress`]), cut at Slack's message limit, retried on 429 (after `Retry-After`) and on
//! server errors.
//!
//! Without a public URL the app connects over Socket Mode instead ([`socket`]): the same
//! deliveries arrive over a WebSocket exoclaw opens, and go through the same [`SlackChannel`].

use crate::api::Success;
use crate::approval::Approvals;
use crate::breaker::Breaker;
use crate::files::{ChatFiles, Download, Incoming};
use crate::recent::Recent;
use crate::split::split_message;
use async_trait::async_trait;
use bytes::Bytes;
use exoclaw_core::runtime::webhook::{decode_hex, hmac_sha256_matches};
use exoclaw_core::runtime::{AgentRuntime, OutgoingFile, Webhook};
use exoclaw_types::Inbound;
use http::HeaderMap;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub mod socket;

pub use socket::{SlackSocket, SocketError};

/// How far a delivery's timestamp may be from now (Slack's recommendation: 5 minutes).
const TIMESTAMP_WINDOW_SECS: i64 = 5 * 60;
/// The characters of one message exoclaw sends (Slack truncates past 40,000 and advises 4,000).
pub const MESSAGE_LIMIT: usize = 3_900;
/// The largest file the agent may send (Slack takes up to 1 GB; exoclaw reads a file whole).
const MAX_UPLOAD_BYTES: u64 = 50_000_000;
/// How many event ids are remembered to recognise Slack's retries.
const REMEMBERED_EVENTS: usize = 4_096;

/// `[channels.slack]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SlackConfig {
    /// The environment variable holding the app's signing secret.
    pub signing_secret_env: String,
    /// The environment variable holding the bot token (`xoxb-…`).
    pub bot_token_env: String,
    /// The environment variable holding an app-level token (`xapp-…`, scope
    /// `connections:write`): when set, events arrive over Socket Mode instead of
    /// `/webhook/slack`, and no signing secret is needed.
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "socket::app_token_env")]
    pub app_token_env: Option<String>,
    /// The Web API's base URL.
    pub api_base: String,
    /// Slack user ids allowed to talk to the agents; empty: everyone in the workspace.
    pub allow_users: Vec<String>,
    /// Slack channel ids the agents answer in; empty: every channel the app is in.
    pub allow_channels: Vec<String>,
}

impl Default for SlackConfig {
    fn default() -> Self {
        Self {
            signing_secret_env: "SLACK_SIGNING_SECRET".into(),
            bot_token_env: "SLACK_BOT_TOKEN".into(),
            app_token_env: None,
            api_base: "https://slack.com/api".into(),
            allow_users: Vec::new(),
            allow_channels: Vec::new(),
        }
    }
}

/// The Slack channel's webhook.
pub struct SlackChannel {
    /// The models a message's `[provider/model]` prefix may pick (globs); none: no prefix.
    models: Vec<String>,
    signing_secret: Vec<u8>,
    shared: Arc<Shared>,
    allow_users: Vec<String>,
    allow_channels: Vec<String>,
    runtime: Arc<dyn AgentRuntime>,
    seen: Mutex<Recent>,
    /// Tool calls waiting for an approval asked in the chat.
    approvals: Approvals,
    /// The shortest time between two edits of a progress message; `None`: no progress message.
    progress: Option<Duration>,
}

/// What the reply tasks share.
pub(crate) struct Shared {
    token: String,
    api_base: String,
    client: reqwest::Client,
    breaker: Breaker,
}

/// The parts of an Events API delivery exoclaw reads.
#[derive(Deserialize)]
struct Delivery {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    challenge: Option<String>,
    #[serde(default)]
    event_id: Option<String>,
    #[serde(default)]
    team_id: Option<String>,
    #[serde(default)]
    event: Option<Event>,
}

#[derive(Deserialize)]
struct Event {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    subtype: Option<String>,
    #[serde(default)]
    bot_id: Option<String>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    text: String,
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    channel_type: Option<String>,
    #[serde(default)]
    ts: Option<String>,
    #[serde(default)]
    thread_ts: Option<String>,
    /// The files shared with the message.
    #[serde(default)]
    files: Vec<SlackFile>,
    /// A `reaction_added`'s emoji name (`white_check_mark`).
    #[serde(default)]
    reaction: Option<String>,
    /// What a `reaction_added` reacted to.
    #[serde(default)]
    item: Option<ReactedItem>,
}

/// The message a reaction was added to.
#[derive(Deserialize)]
struct ReactedItem {
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    ts: Option<String>,
}

/// A file shared in Slack, as an event gives it.
#[derive(Deserialize)]
struct SlackFile {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    mimetype: Option<String>,
    #[serde(default)]
    size: Option<u64>,
    /// Downloadable with the bot token (scope `files:read`).
    #[serde(default)]
    url_private_download: Option<String>,
    #[serde(default)]
    url_private: Option<String>,
    /// The file's page in Slack, for the user.
    #[serde(default)]
    permalink: Option<String>,
}

impl SlackFile {
    fn incoming(self) -> Option<Incoming> {
        let source = self.url_private_download.or(self.url_private)?;
        Some(Incoming {
            name: self.name.unwrap_or_else(|| "file".to_owned()),
            media_type: self.mimetype,
            bytes: self.size,
            source,
            link: self.permalink,
        })
    }
}

/// Where an answer goes.
#[derive(Clone)]
struct ReplyTo {
    channel: String,
    thread_ts: Option<String>,
}

impl SlackChannel {
    /// Lets a message pick one of `models` (globs such as `anthropic/*`) with a `[provider/model]`
    /// prefix; without any, a prefix is just text.
    pub fn with_models(mut self, models: Vec<String>) -> Self {
        self.models = models;
        self
    }

    /// The channel, verifying with `signing_secret` and answering with `bot_token`.
    pub fn new(
        config: &SlackConfig,
        signing_secret: String,
        bot_token: String,
        runtime: Arc<dyn AgentRuntime>,
    ) -> Self {
        let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap_or_default();
        Self {
            signing_secret: signing_secret.into_bytes(),
            shared: Arc::new(Shared {
                token: bot_token,
                api_base: config.api_base.trim_end_matches('/').to_owned(),
                client,
                breaker: Breaker::default(),
            }),
            allow_users: config.allow_users.clone(),
            allow_channels: config.allow_channels.clone(),
            runtime,
            seen: Mutex::new(Recent::new(REMEMBERED_EVENTS)),
            models: Vec::new(),
            approvals: Approvals::default(),
            progress: Some(crate::progress::INTERVAL),
        }
    }

    /// Whether a turn that runs tools shows a progress message in the thread while they run,
    /// updated with `chat.update` and then replaced by the answer (the default), or posts its
    /// answer alone when it ends.
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

    /// Asks the user whose message started a turn to approve its gated tool calls (with
    /// buttons, in the thread) as `approvals` says; shared with the runtime's other channels.
    pub fn with_approvals(mut self, approvals: Approvals) -> Self {
        self.approvals = approvals;
        self
    }

    /// Handles one interaction payload (`block_actions`), however it arrived (the interactivity
    /// request's `payload` form field at `/webhook/slack`, or a Socket Mode `interactive`
    /// envelope's payload): a press of an approval prompt's button. Its effects (the prompt
    /// updated, someone else told they cannot answer) happen on their own tasks, so the caller
    /// can acknowledge at once.
    pub fn handle_interaction(&self, payload: &Value) {
        crate::approval::slack::press(&self.approvals, &self.shared, payload);
    }

    /// Whether this event was seen before (a retry); remembers it otherwise.
    fn first_time(&self, event_id: &str) -> bool {
        self.seen.lock().map(|mut seen| seen.insert(event_id)).unwrap_or(true)
    }

    fn allowed(&self, user: &str, channel: &str) -> bool {
        (self.allow_users.is_empty() || self.allow_users.iter().any(|u| u == user))
            && (self.allow_channels.is_empty() || self.allow_channels.iter().any(|c| c == channel))
    }

    /// Handles one Events API delivery, however it arrived (the webhook, or a Socket Mode
    /// `events_api` envelope, whose payload is the same body): the only place a delivery is
    /// read, so both ways behave alike. Returns what to answer over HTTP. An event seen before
    /// (same event id: Slack's retry) is not taken again.
    fn handle_delivery(&self, delivery: Delivery) -> Value {
        match delivery.kind.as_str() {
            "url_verification" => json!({"challenge": delivery.challenge.unwrap_or_default()}),
            "event_callback" => {
                let first = delivery.event_id.as_deref().is_none_or(|id| self.first_time(id));
                if first && let Some(event) = delivery.event {
                    self.take(delivery.team_id.as_deref().unwrap_or("default"), event);
                }
                json!({"ok": true})
            }
            _ => json!({"ok": true}),
        }
    }

    /// Submits the event's message as a turn and, on its own task, answers it; a reaction may
    /// answer an approval prompt.
    fn take(&self, team: &str, event: Event) {
        if event.kind == "reaction_added" {
            if let (Some(user), Some(reaction), Some(item)) = (&event.user, &event.reaction, &event.item)
                && let (Some(channel), Some(ts)) = (&item.channel, &item.ts)
            {
                crate::approval::slack::react(&self.approvals, &self.shared, user, reaction, channel, ts);
            }
            return;
        }
        let is_dm = event.channel_type.as_deref() == Some("im");
        let wanted = event.kind == "app_mention" || (event.kind == "message" && is_dm);
        // Edits, joins and bot messages (ours included) are not questions; a message with files is.
        let plain = event.subtype.as_deref().is_none_or(|subtype| subtype == "file_share");
        if !wanted || !plain || event.bot_id.is_some() {
            return;
        }
        let (Some(user), Some(channel)) = (event.user, event.channel) else { return };
        if !self.allowed(&user, &channel) {
            tracing::info!(user = %user, channel = %channel, "a Slack message from outside the allow-lists was ignored");
            return;
        }
        let text = strip_mentions(&event.text);
        let asker = user.clone();
        let inbound = Inbound {
            channel: "slack".to_owned(),
            account: team.to_owned(),
            peer: if is_dm { user } else { channel.clone() },
            guild: None,
            team: Some(team.to_owned()),
        };
        let reply_to =
            ReplyTo { channel, thread_ts: if is_dm { None } else { event.thread_ts.or(event.ts) } };
        let place = crate::approval::slack::SlackPlace {
            shared: Arc::clone(&self.shared),
            channel: reply_to.channel.clone(),
            thread_ts: reply_to.thread_ts.clone(),
        };
        let approver = self.approvals.approver(&asker, format!("<@{asker}>"), &reply_to.channel, place);
        let files = event.files.into_iter().filter_map(SlackFile::incoming).collect();
        let attachments = ChatFiles::attach(files, Arc::clone(&self.shared));
        let place = Reply { shared: Arc::clone(&self.shared), to: reply_to };
        let extras = crate::api::Extras { approver, attachments };
        crate::api::run_turn_asking(&self.runtime, inbound, text, &self.models, extras, self.progress, place);
    }
}

/// Where one turn's answer goes, for its progress message.
struct Reply {
    shared: Arc<Shared>,
    to: ReplyTo,
}

#[async_trait]
impl crate::progress::Place for Reply {
    /// The message's `ts`.
    type Id = String;

    fn limit(&self) -> usize {
        MESSAGE_LIMIT
    }

    async fn post(&self, text: &str) -> Result<String, String> {
        let mut body = json!({"channel": self.to.channel, "text": text});
        if let Some(thread) = &self.to.thread_ts {
            body["thread_ts"] = json!(thread);
        }
        let posted = self.shared.post("chat.postMessage", &body).await?;
        posted["ts"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| "chat.postMessage: no ts in Slack's answer".to_owned())
    }

    async fn edit(&self, ts: &String, text: &str) -> Result<(), String> {
        let body = json!({"channel": self.to.channel, "ts": ts, "text": text});
        self.shared.post("chat.update", &body).await.map(|_| ())
    }

    async fn answer(&self, answer: &str) {
        self.shared.answer(&self.to, answer).await;
    }

    fn max_file_bytes(&self) -> u64 {
        MAX_UPLOAD_BYTES
    }

    /// Slack's upload in three steps: reserve (`files.getUploadURLExternal`, form-encoded: it
    /// refuses JSON), send the bytes to the URL it gives, then share the file in the thread
    /// (`files.completeUploadExternal`).
    async fn send_file(&self, file: &OutgoingFile, bytes: Vec<u8>) -> Result<(), String> {
        let arguments = [("filename", file.name.clone()), ("length", bytes.len().to_string())];
        let reserved = self.shared.form("files.getUploadURLExternal", &arguments).await?;
        let (Some(url), Some(id)) = (reserved["upload_url"].as_str(), reserved["file_id"].as_str()) else {
            return Err("files.getUploadURLExternal: no upload_url or file_id in Slack's answer".to_owned());
        };
        let bytes = Bytes::from(bytes);
        let shared = &self.shared;
        crate::api::send(
            &shared.client,
            &shared.breaker,
            reqwest::Method::POST,
            url,
            None,
            crate::api::Body::Bytes(&bytes),
            Success::Status,
        )
        .await
        .map_err(|e| format!("the upload: {e}"))?;
        let mut body = json!({"files": [{"id": id, "title": file.name}], "channel_id": self.to.channel});
        if let Some(thread) = &self.to.thread_ts {
            body["thread_ts"] = json!(thread);
        }
        if let Some(caption) = &file.caption {
            body["initial_comment"] = json!(caption);
        }
        shared.post("files.completeUploadExternal", &body).await.map(|_| ())
    }
}

/// Downloads a file shared in Slack with the bot token — only from Slack itself (a file URL on
/// another host is not sent the token).
#[async_trait]
impl Download for Arc<Shared> {
    async fn download(&self, file: &Incoming, limit: u64) -> Result<Vec<u8>, String> {
        let host = |url: &str| reqwest::Url::parse(url).ok()?.host_str().map(str::to_owned);
        let on_slack = host(&file.source).is_some_and(|on| {
            on == "slack.com" || on.ends_with(".slack.com") || Some(&on) == host(&self.api_base).as_ref()
        });
        if !on_slack {
            return Err("its URL is not on Slack, so it was not fetched with the bot's token".to_owned());
        }
        let authorization = format!("Bearer {}", self.token);
        crate::files::get(&self.client, &file.source, Some(&authorization), limit).await
    }
}

impl Shared {
    /// Posts `answer` in pieces; a piece that cannot be posted is logged and the rest not sent.
    async fn answer(&self, to: &ReplyTo, answer: &str) {
        for piece in split_message(answer, MESSAGE_LIMIT) {
            let mut body = json!({"channel": to.channel, "text": piece});
            if let Some(thread) = &to.thread_ts {
                body["thread_ts"] = json!(thread);
            }
            if let Err(error) = self.post("chat.postMessage", &body).await {
                tracing::warn!(channel = %to.channel, "the answer could not be posted to Slack: {error}");
                return;
            }
        }
    }

    /// Calls the Web API method with form-encoded `arguments` (for the methods that take no JSON).
    async fn form(&self, method: &str, arguments: &[(&str, String)]) -> Result<Value, String> {
        self.call(method, crate::api::Body::Form(arguments)).await
    }

    /// Calls the Web API method with `body`.
    pub(crate) async fn post(&self, method: &str, body: &Value) -> Result<Value, String> {
        self.call(method, crate::api::Body::Json(body)).await
    }

    /// Calls `method` with `body`, authorised by the bot token.
    async fn call(&self, method: &str, body: crate::api::Body<'_>) -> Result<Value, String> {
        let url = format!("{}/{method}", self.api_base);
        let authorization = format!("Bearer {}", self.token);
        crate::api::send(
            &self.client,
            &self.breaker,
            reqwest::Method::POST,
            &url,
            Some(&authorization),
            body,
            Success::OkField,
        )
        .await
        .map_err(|e| format!("{method}: {e}"))
    }
}

/// The value of `name` in an `application/x-www-form-urlencoded` body, decoded.
fn form_field(body: &[u8], name: &str) -> Option<String> {
    let body = std::str::from_utf8(body).ok()?;
    let (_, value) = body.split('&').filter_map(|pair| pair.split_once('=')).find(|(key, _)| *key == name)?;
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok())?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// The text without the `<@U…>` mentions of the bot (or anyone) Slack puts in it.
pub(crate) fn strip_mentions(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("<@") {
        out.push_str(&rest[..start]);
        match rest[start..].find('>') {
            Some(end) => rest = &rest[start + end + 1..],
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[async_trait]
impl Webhook for SlackChannel {
    fn verify(&self, headers: &HeaderMap, body: &[u8]) -> Result<(), String> {
        if self.signing_secret.is_empty() {
            // A Socket Mode channel has no signing secret: nothing may pass for one.
            return Err("this Slack channel uses Socket Mode; it takes no webhook deliveries".to_owned());
        }
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let timestamp = header("x-slack-request-timestamp").ok_or("no X-Slack-Request-Timestamp header")?;
        let sent: i64 = timestamp.parse().map_err(|_| "X-Slack-Request-Timestamp is not a number")?;
        if (chrono::Utc::now().timestamp() - sent).abs() > TIMESTAMP_WINDOW_SECS {
            return Err("the timestamp is more than 5 minutes from now (a replayed delivery?)".to_owned());
        }
        let signature = header("x-slack-signature").ok_or("no X-Slack-Signature header")?;
        let expected = signature
            .strip_prefix("v0=")
            .and_then(decode_hex)
            .ok_or("X-Slack-Signature is not `v0=<hex>`")?;
        match hmac_sha256_matches(
            &self.signing_secret,
            &[b"v0:", timestamp.as_bytes(), b":", body],
            &expected,
        ) {
            true => Ok(()),
            false => {
                Err("the signature does not match (is SLACK_SIGNING_SECRET the app's signing secret?)"
                    .to_owned())
            }
        }
    }

    async fn receive(&self, headers: &HeaderMap, body: Bytes) -> Result<Value, String> {
        // A button press is an interactivity request: a form whose `payload` field is the JSON.
        let form = headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        if form || body.starts_with(b"payload=") {
            let payload = form_field(&body, "payload").ok_or("an interactivity request without a payload")?;
            let payload: Value = serde_json::from_str(&payload)
                .map_err(|e| format!("not a Slack interaction payload: {e}"))?;
            self.handle_interaction(&payload);
            return Ok(json!({}));
        }
        let delivery: Delivery =
            serde_json::from_slice(&body).map_err(|e| format!("not a Slack Events API delivery: {e}"))?;
        Ok(self.handle_delivery(delivery))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mentions_are_taken_out_of_the_question() {
        assert_eq!(strip_mentions("<@U0BOT> what time is it?"), "what time is it?");
        assert_eq!(strip_mentions("ask <@U1|alice> and <@U2>"), "ask and");
        assert_eq!(strip_mentions("no mention"), "no mention");
        assert_eq!(strip_mentions("broken <@U1"), "broken <@U1");
    }

    #[test]
    fn a_form_field_is_percent_decoded() {
        let body = b"token=x&payload=%7B%22a%22%3A+%22b%C3%A9%26c%22%7D";
        assert_eq!(form_field(body, "payload").as_deref(), Some("{\"a\": \"b\u{e9}&c\"}"));
        assert_eq!(form_field(body, "missing"), None);
        assert_eq!(form_field(b"payload=%zz", "payload"), None);
    }
}
