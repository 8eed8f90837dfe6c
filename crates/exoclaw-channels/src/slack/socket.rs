//! Slack's Socket Mode, for an app on a machine with no public URL: exoclaw asks for a WebSocket
//! URL with the app-level token (`apps.connections.open`, `xapp-…`), connects to it, and Slack
//! sends over it what it would otherwise post to `/webhook/slack`, each in an envelope that is
//! acknowledged at once (`{"envelope_id": …}`; Slack sends again what is not). An `events_api`
//! envelope carries exactly an Events API `event_callback` body, handled by the same
//! [`SlackChannel`] as a webhook delivery (so a redelivered event is answered once).
//!
//! Slack asks for a new connection now and then (`disconnect`, `refresh_requested` or `warning`):
//! a new one is opened at once. A dropped connection is reopened with backoff (1 s to a minute,
//! with jitter). `link_disabled` (Socket Mode turned off for the app) and an app token Slack
//! refuses stop with an error saying what to fix.

use super::{Delivery, SlackChannel, SlackConfig};
use crate::approval::Approvals;
use crate::backoff::Backoff;
use crate::connection::{ConnectionMonitor, Reporter, Unmonitored};
use crate::discord::gateway::connect;
use exoclaw_core::runtime::AgentRuntime;
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

/// Why Socket Mode stopped for good.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SocketError {
    /// `apps.connections.open` refused the app-level token.
    #[error(
        "Slack refused the app-level token ({error}): set {variable} to an app-level token (xapp-…) with the connections:write scope (the app's Basic Information page), then restart the gateway"
    )]
    Unauthorized {
        /// Slack's error code, such as `invalid_auth`.
        error: String,
        /// The environment variable holding the token.
        variable: String,
    },
    /// Slack turned the app's Socket Mode off (`link_disabled`).
    #[error(
        "Slack closed the Socket Mode connection (link_disabled): turn Socket Mode on in the app's settings, or remove [channels.slack] app_token_env to take events at /webhook/slack, then restart the gateway"
    )]
    LinkDisabled,
}

/// Why `apps.connections.open` gave no URL.
enum Refused {
    /// The token will not do (Slack's auth errors): do not try again.
    Token(String),
    /// Slack asks to wait this long (429).
    RetryAfter(Duration),
    /// Anything else: try again after a backoff.
    Failed(String),
}

/// How one connection ended.
enum Ended {
    /// `stop` was cancelled.
    Stopped,
    /// Slack asked for a new connection (`refresh_requested`, `warning`).
    Refresh,
    /// Slack turned Socket Mode off for the app.
    Disabled,
}

/// A Socket Mode message: `hello`, `disconnect`, or an envelope to acknowledge.
#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    envelope_id: Option<String>,
    #[serde(default)]
    payload: Value,
    #[serde(default)]
    reason: Option<String>,
}

/// A Slack app connected over Socket Mode.
pub struct SlackSocket {
    channel: SlackChannel,
    app_token: String,
    /// The variable holding the app token, named when Slack refuses it.
    app_token_env: String,
    api_base: String,
    client: reqwest::Client,
    /// Where the connection's state (connected, or why not) is reported.
    reporter: Reporter,
}

impl SlackSocket {
    /// The app with the app-level token `app_token` (from the variable `config.app_token_env`),
    /// answering with `bot_token`; its messages are submitted to `runtime`.
    pub fn new(
        config: &SlackConfig,
        app_token: String,
        bot_token: String,
        runtime: Arc<dyn AgentRuntime>,
    ) -> Self {
        let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap_or_default();
        Self {
            // No webhook is served, so no signing secret: the channel refuses any delivery.
            channel: SlackChannel::new(config, String::new(), bot_token, runtime),
            app_token,
            app_token_env: config.app_token_env.clone().unwrap_or_default(),
            api_base: config.api_base.trim_end_matches('/').to_owned(),
            client,
            reporter: Reporter::new("slack", Arc::new(Unmonitored)),
        }
    }

    /// Asks the user whose message started a turn to approve its gated tool calls (buttons in
    /// the thread; presses arrive as `interactive` envelopes) as `approvals` says.
    pub fn with_approvals(mut self, approvals: Approvals) -> Self {
        self.channel = self.channel.with_approvals(approvals);
        self
    }

    /// Reports whether the app is connected, and what went wrong last, to `monitor`.
    pub fn with_monitor(mut self, monitor: Arc<dyn ConnectionMonitor>) -> Self {
        self.reporter = Reporter::new("slack", monitor);
        self
    }

    /// Whether a turn that runs tools shows a progress message while they run (the default);
    /// see [`SlackChannel::with_progress`].
    pub fn with_progress(mut self, progress: bool) -> Self {
        self.channel = self.channel.with_progress(progress);
        self
    }

    /// Lets a message pick one of `models` (globs such as `anthropic/*`) with a `[provider/model]`
    /// prefix; without any, a prefix is just text.
    pub fn with_models(mut self, models: Vec<String>) -> Self {
        self.channel = self.channel.with_models(models);
        self
    }

    /// Keeps a connection until `stop` is cancelled (`Ok`), or until Slack refuses the app token
    /// or turns Socket Mode off (`Err`, saying what to fix).
    pub async fn run(self: Arc<Self>, stop: CancellationToken) -> Result<(), SocketError> {
        let mut backoff = Backoff::default();
        loop {
            let opened = tokio::select! {
                opened = self.open() => opened,
                () = stop.cancelled() => return Ok(()),
            };
            let wait = match opened {
                Ok(url) => match self.connection(&url, &mut backoff, &stop).await {
                    Ok(Ended::Stopped) => return Ok(()),
                    Ok(Ended::Disabled) => return Err(self.stopped(SocketError::LinkDisabled)),
                    Ok(Ended::Refresh) => continue,
                    Err(why) => {
                        self.reporter.disconnected(format!("the connection dropped: {why}"));
                        let wait = backoff.next();
                        tracing::warn!(
                            "the Slack Socket Mode connection dropped: {why}; reconnecting in {}s",
                            wait.as_secs()
                        );
                        wait
                    }
                },
                Err(Refused::Token(error)) => {
                    let variable = self.app_token_env.clone();
                    return Err(self.stopped(SocketError::Unauthorized { error, variable }));
                }
                Err(Refused::RetryAfter(after)) => after,
                Err(Refused::Failed(why)) => {
                    self.reporter.disconnected(format!("apps.connections.open: {why}"));
                    let wait = backoff.next();
                    tracing::warn!(
                        "Slack gave no Socket Mode connection (apps.connections.open: {why}); retrying in {}s",
                        wait.as_secs()
                    );
                    wait
                }
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = stop.cancelled() => return Ok(()),
            }
        }
    }

    /// Reports `error` as why the app is not connected, and returns it.
    fn stopped(&self, error: SocketError) -> SocketError {
        self.reporter.disconnected(error.to_string());
        error
    }

    /// Asks Slack for a connection URL (`apps.connections.open`).
    async fn open(&self) -> Result<String, Refused> {
        let response = self
            .client
            .post(format!("{}/apps.connections.open", self.api_base))
            .bearer_auth(&self.app_token)
            .send()
            .await
            .map_err(|e| Refused::Failed(e.to_string()))?;
        let status = response.status();
        if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            let after = response.headers().get("retry-after").and_then(|v| v.to_str().ok()?.parse().ok());
            return Err(Refused::RetryAfter(
                Duration::from_secs(after.unwrap_or(1)).min(crate::backoff::MAX),
            ));
        }
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        match (answer["ok"].as_bool(), answer["url"].as_str(), answer["error"].as_str()) {
            (Some(true), Some(url), _) => Ok(url.to_owned()),
            (_, _, Some(error)) if refuses_token(error) => Err(Refused::Token(error.to_owned())),
            (_, _, Some(error)) => Err(Refused::Failed(error.to_owned())),
            _ => Err(Refused::Failed(format!("{status} without a URL"))),
        }
    }

    /// One connection, from its opening to its end; `Err` when it dropped.
    async fn connection(
        &self,
        url: &str,
        backoff: &mut Backoff,
        stop: &CancellationToken,
    ) -> Result<Ended, String> {
        let (socket, _) = connect(url).await?;
        let (mut write, mut read) = socket.split();
        loop {
            let frame = tokio::select! {
                () = stop.cancelled() => {
                    let _ = write.send(Message::Close(None)).await;
                    return Ok(Ended::Stopped);
                }
                frame = read.next() => frame,
            };
            // Pings are answered by tungstenite as it reads.
            let text = match frame {
                Some(Ok(Message::Text(text))) => text,
                Some(Ok(Message::Close(frame))) => {
                    return Err(format!("closed ({})", frame.map(|f| f.to_string()).unwrap_or_default()));
                }
                Some(Ok(_)) => continue,
                Some(Err(error)) => return Err(error.to_string()),
                None => return Err("closed".to_owned()),
            };
            let envelope: Envelope = match serde_json::from_str(&text) {
                Ok(envelope) => envelope,
                Err(error) => {
                    tracing::warn!("Slack sent a Socket Mode message exoclaw cannot read: {error}");
                    continue;
                }
            };
            if let Some(id) = &envelope.envelope_id {
                // At once, before any turn runs: Slack sends again what is not acknowledged soon.
                let ack = json!({"envelope_id": id}).to_string();
                write.send(Message::text(ack)).await.map_err(|e| e.to_string())?;
            }
            match envelope.kind.as_str() {
                "hello" => {
                    tracing::info!("connected to Slack over Socket Mode");
                    self.reporter.connected();
                    *backoff = Backoff::default();
                }
                "disconnect" => {
                    return Ok(match envelope.reason.as_deref() {
                        Some("link_disabled") => Ended::Disabled,
                        // `refresh_requested`, `warning`, and any reason to come: a new connection.
                        _ => Ended::Refresh,
                    });
                }
                "events_api" => match serde_json::from_value::<Delivery>(envelope.payload) {
                    Ok(delivery) => {
                        self.channel.handle_delivery(delivery);
                    }
                    Err(error) => {
                        tracing::warn!("a Socket Mode event is not an Events API delivery: {error}")
                    }
                },
                // Button presses (chat approvals): the same handling as at `/webhook/slack`.
                "interactive" => self.channel.handle_interaction(&envelope.payload),
                "slash_commands" => {
                    tracing::info!(
                        "a Slack slash command arrived over Socket Mode; exoclaw does not answer them"
                    );
                }
                other => tracing::debug!(kind = other, "a Socket Mode message exoclaw does not use"),
            }
        }
    }
}

/// Whether Slack's `error` from `apps.connections.open` means the token will never do.
fn refuses_token(error: &str) -> bool {
    matches!(
        error,
        "not_authed"
            | "invalid_auth"
            | "account_inactive"
            | "token_revoked"
            | "token_expired"
            | "not_allowed_token_type"
            | "missing_scope"
            | "no_permission"
    )
}

/// Reads `app_token_env`: the name of an environment variable. Refuses an empty name, and a token
/// written where its variable's name belongs (without echoing it: it is a secret).
pub(super) fn app_token_env<'de, D>(deserializer: D) -> Result<Option<String>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let name = String::deserialize(deserializer)?;
    if name.starts_with("xapp-") || name.starts_with("xoxb-") {
        return Err(serde::de::Error::custom(
            "app_token_env names the environment variable holding the app-level token, not the token itself: \
             put the token in a variable (export SLACK_APP_TOKEN=xapp-…) and write app_token_env = \"SLACK_APP_TOKEN\"",
        ));
    }
    if name.trim().is_empty() {
        return Err(serde::de::Error::custom(
            "app_token_env is empty: name the environment variable holding the app-level token (such as \"SLACK_APP_TOKEN\"), or leave it out to take events at /webhook/slack",
        ));
    }
    Ok(Some(name))
}
