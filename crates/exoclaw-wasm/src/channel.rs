//! Channel plugins: a chat platform's adapter as a plugin. `parse_incoming` turns a webhook
//! delivery into messages, each becomes a turn of the agent the bindings pick, and when the turn
//! ends `format_outgoing` turns the answer into the platform's HTTP requests, which exoclaw sends
//! — only to the hosts the plugin was granted.

use crate::error::PluginError;
use crate::host::LoadedPlugin;
use exoclaw_core::runtime::{AgentRuntime, Target, TurnInput};
use exoclaw_types::Inbound;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How long a request a channel plugin asked for may take.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);

/// One message a channel plugin found in a delivery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncomingMessage {
    /// Who (or which room) sent it: one session per peer.
    pub peer: String,
    /// What they wrote.
    pub text: String,
    /// The account on the platform (a workspace, a bot); `default` when not said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// Whatever the plugin needs to answer it (a thread, a room), given back to
    /// `format_outgoing`.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub context: Value,
}

/// What `parse_incoming` answers.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Incoming {
    /// The messages, maybe none.
    #[serde(default)]
    pub messages: Vec<IncomingMessage>,
    /// What to answer the platform, if anything in particular.
    #[serde(default)]
    pub response: Option<Value>,
}

/// One HTTP request a channel plugin asks exoclaw to send.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutgoingRequest {
    /// `GET`, `POST`, `PUT`, `PATCH` or `DELETE`; `POST` when not said.
    #[serde(default = "post")]
    pub method: String,
    /// Where.
    pub url: String,
    /// Its headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Its body.
    #[serde(default)]
    pub body: String,
}

fn post() -> String {
    "POST".to_owned()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Outgoing {
    requests: Vec<OutgoingRequest>,
}

/// A loaded channel plugin.
pub struct ChannelPlugin {
    plugin: Arc<LoadedPlugin>,
    hosts: Vec<String>,
    client: reqwest::Client,
}

impl std::fmt::Debug for ChannelPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelPlugin").field("name", &self.plugin.name()).finish_non_exhaustive()
    }
}

impl ChannelPlugin {
    /// `plugin`, which may send requests to `hosts` (its granted host globs).
    pub fn new(plugin: Arc<LoadedPlugin>, hosts: Vec<String>) -> Self {
        let client = reqwest::Client::builder()
            .timeout(DELIVERY_TIMEOUT)
            // A redirect could lead anywhere; the plugin names every host it talks to.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        Self { plugin, hosts, client }
    }

    /// The channel's name (the plugin's).
    pub fn name(&self) -> &str {
        self.plugin.name()
    }

    /// The plugin's `parse_incoming`: a delivery's headers (names lower-case) and body.
    pub async fn parse_incoming(
        &self,
        headers: &BTreeMap<String, String>,
        body: &[u8],
    ) -> Result<Incoming, PluginError> {
        let body = String::from_utf8_lossy(body);
        let input = json!({"headers": headers, "body": body}).to_string().into_bytes();
        let output = self.plugin.call("parse_incoming", input, &CancellationToken::new()).await?;
        serde_json::from_slice(&output).map_err(|e| self.interface("parse_incoming", e))
    }

    /// The plugin's `format_outgoing`: the requests that answer `message` with `reply`.
    pub async fn format_outgoing(
        &self,
        message: &IncomingMessage,
        reply: &str,
    ) -> Result<Vec<OutgoingRequest>, PluginError> {
        let input = json!({"message": message, "reply": reply}).to_string().into_bytes();
        let output = self.plugin.call("format_outgoing", input, &CancellationToken::new()).await?;
        let outgoing: Outgoing =
            serde_json::from_slice(&output).map_err(|e| self.interface("format_outgoing", e))?;
        Ok(outgoing.requests)
    }

    /// Sends `request`, if its host was granted.
    pub async fn send(&self, request: &OutgoingRequest) -> Result<(), PluginError> {
        let url = reqwest::Url::parse(&request.url).map_err(|e| PluginError::Interface {
            plugin: self.name().to_owned(),
            function: "format_outgoing".to_owned(),
            problem: format!("`{}` is not a URL: {e}", request.url),
        })?;
        let shown = format!("{}://{}{}", url.scheme(), url.host_str().unwrap_or(""), url.path());
        let host = url.host_str().unwrap_or_default().trim_matches(['[', ']']).to_owned();
        let granted = matches!(url.scheme(), "http" | "https")
            && self.hosts.iter().any(|pattern| exoclaw_types::glob_match(pattern, &host));
        if !granted {
            let hosts = if self.hosts.is_empty() { "none".to_owned() } else { self.hosts.join(", ") };
            return Err(PluginError::HostNotGranted { plugin: self.name().to_owned(), host, granted: hosts });
        }
        let method =
            reqwest::Method::from_bytes(request.method.to_ascii_uppercase().as_bytes()).map_err(|_| {
                PluginError::Interface {
                    plugin: self.name().to_owned(),
                    function: "format_outgoing".to_owned(),
                    problem: format!("`{}` is not an HTTP method", request.method),
                }
            })?;
        let mut builder = self.client.request(method, url).body(request.body.clone());
        for (name, value) in &request.headers {
            builder = builder.header(name, value);
        }
        let delivery = |reason: String| PluginError::Delivery {
            plugin: self.name().to_owned(),
            url: shown.clone(),
            reason,
        };
        let response = builder.send().await.map_err(|e| delivery(e.without_url().to_string()))?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            let body: String = body.chars().take(300).collect();
            return Err(delivery(format!("the platform answered {status}: {body}")));
        }
        Ok(())
    }

    /// Takes a verified delivery: parses it, submits a turn for each message (channel = the
    /// plugin's name) and, on its own task, answers each when its turn ends. Returns what to
    /// answer the platform at once.
    pub async fn receive(
        self: &Arc<Self>,
        runtime: Arc<dyn AgentRuntime>,
        headers: &BTreeMap<String, String>,
        body: &[u8],
    ) -> Result<Value, PluginError> {
        let incoming = self.parse_incoming(headers, body).await?;
        let count = incoming.messages.len();
        for message in incoming.messages {
            let inbound = Inbound {
                channel: self.name().to_owned(),
                account: message.account.clone().unwrap_or_else(|| "default".to_owned()),
                peer: message.peer.clone(),
                guild: None,
                team: None,
            };
            let handle = match runtime
                .submit(Target::Inbound { inbound, agent: None }, TurnInput::message(&message.text))
            {
                Ok(handle) => handle,
                Err(error) => {
                    tracing::warn!(channel = %self.name(), peer = %message.peer, "a channel message could not be submitted: {error}");
                    continue;
                }
            };
            let this = Arc::clone(self);
            tokio::spawn(async move {
                let reply = handle.reply_text().await;
                if let Err(error) = this.answer(&message, &reply).await {
                    tracing::warn!(channel = %this.name(), peer = %message.peer, "the reply could not be sent: {error}");
                }
            });
        }
        Ok(incoming.response.unwrap_or_else(|| json!({"ok": true, "messages": count})))
    }

    /// Formats `reply` to `message` and sends the requests, in order.
    pub async fn answer(&self, message: &IncomingMessage, reply: &str) -> Result<(), PluginError> {
        for request in self.format_outgoing(message, reply).await? {
            self.send(&request).await?;
        }
        Ok(())
    }

    fn interface(&self, function: &str, error: serde_json::Error) -> PluginError {
        PluginError::Interface {
            plugin: self.name().to_owned(),
            function: function.to_owned(),
            problem: error.to_string(),
        }
    }
}

/// A channel plugin served at the gateway's `/webhook/NAME`: deliveries must carry exoclaw's
/// signature ([`SIGNATURE_HEADER`](exoclaw_core::runtime::webhook::SIGNATURE_HEADER)) made with
/// `secret`; each message becomes a turn of `runtime`.
pub struct PluginWebhook {
    channel: Arc<ChannelPlugin>,
    secret: Vec<u8>,
    runtime: Arc<dyn AgentRuntime>,
}

impl PluginWebhook {
    /// `channel`, verified with `secret`, submitting to `runtime`.
    pub fn new(channel: Arc<ChannelPlugin>, secret: Vec<u8>, runtime: Arc<dyn AgentRuntime>) -> Self {
        Self { channel, secret, runtime }
    }
}

#[async_trait::async_trait]
impl exoclaw_core::runtime::Webhook for PluginWebhook {
    fn verify(&self, headers: &http::HeaderMap, body: &[u8]) -> Result<(), String> {
        exoclaw_core::runtime::webhook::verify_signature(&self.secret, headers, body)
    }

    async fn receive(&self, headers: &http::HeaderMap, body: bytes::Bytes) -> Result<Value, String> {
        let headers: BTreeMap<String, String> = headers
            .iter()
            .filter_map(|(name, value)| Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned())))
            .collect();
        self.channel.receive(Arc::clone(&self.runtime), &headers, &body).await.map_err(|e| e.to_string())
    }
}
